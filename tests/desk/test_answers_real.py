"""Instant answers on the held-out real set (tests/data/answers_*): floors against the plain baseline.

45 public policy texts of many cities, 180 clause questions and 36 unanswerable ones (sources in
tests/data/README.md). Everything is tuned on the ``tune`` rows and measured on the ``test`` rows
through `desk.answer.answer_question`, beside char TF-IDF passage retrieval tuned the same way.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ValidationFailed
from desk import answer as answer_mod
from desk import answers_data, answers_eval
from matcher import search_eval
from tests import factories

DATA = Path(__file__).resolve().parent.parent / "data"
FIGURES = ("precision", "coverage", "top1")


def _held_out(db, matcher, settings):  # type: ignore[no-untyped-def]
    questions = answers_eval.read_labelled(DATA / "answers_eval.csv", db=db)
    return answers_eval.evaluate_answers(db=db, matcher=matcher, settings=settings, questions=questions)


@pytest.fixture
def real_kb(db):  # type: ignore[no-untyped-def]
    if db.bind.dialect.name != "sqlite":
        pytest.skip("quality evaluation runs on SQLite only; retrieval itself is tested on both")
    search_eval.load_catalog(db, DATA / "answers_policies.json")
    return db


def test_held_out_answers_reach_the_goal_and_never_fall_below_the_baseline(real_kb, matcher, test_settings) -> None:  # type: ignore[no-untyped-def]
    result = _held_out(real_kb, matcher, test_settings)
    report = answers_eval.format_answers_report(result)
    product, base = result["product"], result["baseline"]
    assert result["held_out"] and result["test"] >= 100 and product["answerable"] >= 80, report
    assert product["precision"] >= 0.9 and product["coverage"] >= 0.6, report
    for figure in FIGURES:
        assert product[figure] >= base[figure], (figure, report)
    # Questions naming another city than the policy's are refused, and the quoted clause answers.
    assert product["false_answers"] <= 0.5, report
    assert product["passage_hits"] >= 0.85, report


@pytest.mark.slow
@pytest.mark.timeout(1800)  # embeds 1,200 FAQ texts (question + answer, question alone): ~90 s on an idle 2-core box
def test_600_faq_entries_never_hurt_the_held_out_answers(real_kb, matcher, test_settings) -> None:  # type: ignore[no-untyped-def]
    closed = _held_out(real_kb, matcher, test_settings)["product"]
    entries = answers_data.load_faq(real_kb, DATA / "answers_faq.json")
    assert len(entries) == 600
    result = _held_out(real_kb, matcher, test_settings)
    report = answers_eval.format_answers_report(result)
    assert result["faq_cv"]["folds"] == 5 and len(result["faq_cv"]["table"]) == len(answers_eval.FAQ_THRESHOLDS)
    for figure in FIGURES:
        assert result["product"][figure] >= closed[figure], (figure, closed, report)


def test_a_policy_titled_with_its_city_is_never_given_to_a_question_naming_another(db, matcher) -> None:  # type: ignore[no-untyped-def]
    assert answer_mod.title_places("成都市工业企业“小升规”奖励") == {"成都"}
    assert answer_mod.title_places("新乡高新区关于企业上市挂牌的奖励办法") == {"新乡"}
    assert answer_mod.title_places("制造业新型技术改造城市试点奖补（广州、深圳）") == {"广州", "深圳"}
    assert answer_mod.title_places("政府性融资担保发展管理办法") == frozenset()
    mine = factories.make_policy(
        db,
        publish=True,
        title="枣阳市就业见习补贴",
        summary="见习单位按最低工资标准的70%领取补贴。",
        full_text="一、补贴标准：见习补贴为当地最低工资标准的70%。\n二、咨询电话：0710-6326230。",
    )
    asked_here = answer_mod.retrieve(db=db, matcher=matcher, question="枣阳见习补贴咨询电话是多少")
    assert asked_here.candidates[0].id == mine.id
    elsewhere = answer_mod.retrieve(db=db, matcher=matcher, question="郑州就业见习补贴咨询电话是多少")
    assert mine.id not in {c.id for c in elsewhere.candidates if c.source == "policy"}
    mentions = answer_mod.place_mentions("郑州就业见习补贴", ["枣阳"])
    assert not answer_mod.place_fits(mentions, [], frozenset({"枣阳"}))
    assert answer_mod.place_fits(mentions, [], frozenset())  # a nationwide policy fits every place
    assert answer_mod.place_fits(answer_mod.place_mentions("广东出口信保资助"), ["442000"], frozenset({"中山"}))


def test_the_eval_file_reads_split_and_evidence_and_refuses_another_split(db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    good = tmp_path / "set.csv"
    good.write_text("question,policy,evidence,split\n稳岗返还比例多少,失业保险稳岗返还,60%,test\n", encoding="utf-8")
    [row] = answers_eval.read_labelled(good, db=db)
    assert row["split"] == "test" and row["evidence"] == "60%" and row["answerable"]
    bad = tmp_path / "bad.csv"
    bad.write_text("question,policy,split\n稳岗返还比例多少,失业保险稳岗返还,train\n", encoding="utf-8")
    with pytest.raises(ValidationFailed) as info:
        answers_eval.read_labelled(bad, db=db)
    assert info.value.code == "desk.eval_bad_split"
