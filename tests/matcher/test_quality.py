"""Matching quality on the demo catalog against tests/data/matching_eval.json: floors a change must not
break. The floors sit a few points below what was measured, so a real regression fails and noise
does not; when a change improves the figures, raise the floors with it."""

from __future__ import annotations

import datetime as dt

import pytest

from catalog.demo import load_demo_catalog
from matcher import evaluation

TODAY = dt.date(2026, 11, 23)  # the day the eligibility cases are written for

# Measured on the demo catalog with the bundled e5 embedder (117 need cases, 89 eligibility cases):
# Hit@1 0.863, Recall@5 0.910, MRR 0.895; by style Hit@1 plain 0.867, paraphrase 0.818,
# traditional 0.933, abbreviation 0.882, colloquial 0.812; eligibility accuracy 1.000.
HIT_AT_1_FLOOR = 0.82
RECALL_AT_5_FLOOR = 0.87
MRR_FLOOR = 0.85
# A style has 15–34 cases, so one miss moves it 3–7 points; this floor only catches a collapse
# (e.g. traditional characters no longer normalised).
STYLE_HIT_AT_1_FLOOR = 0.70
BLEND_MRR_FLOOR = 0.70


@pytest.fixture
def demo_catalog(db):  # type: ignore[no-untyped-def]
    if db.bind.dialect.name != "sqlite":
        pytest.skip("quality evaluation runs on SQLite only: slow-ish, and the logic is backend-independent")
    load_demo_catalog(db=db, actor=None, today=TODAY)
    return db


@pytest.fixture(scope="module")
def eval_set() -> dict:
    return evaluation.load_eval_set()


def test_search_finds_relevant_policies_at_or_above_the_measured_floors(demo_catalog, matcher, eval_set) -> None:  # type: ignore[no-untyped-def]
    result = evaluation.evaluate_search(db=demo_catalog, matcher=matcher, cases=eval_set["need_cases"], k=5)
    worst = [(m["query"], m["expected"], m["got"]) for m in result["misses"][:5]]
    assert result["n"] == len(eval_set["need_cases"])
    assert result["hit_at_1"] >= HIT_AT_1_FLOOR, worst
    assert result["recall_at_k"] >= RECALL_AT_5_FLOOR, worst
    assert result["mrr"] >= MRR_FLOOR, worst
    assert set(result["by_style"]) == set(evaluation.STYLES)
    low = {style: s["hit_at_1"] for style, s in result["by_style"].items() if s["hit_at_1"] < STYLE_HIT_AT_1_FLOOR}
    assert not low, low


def test_every_eligibility_boundary_case_gets_its_expected_verdict(demo_catalog, eval_set) -> None:  # type: ignore[no-untyped-def]
    result = evaluation.evaluate_eligibility(db=demo_catalog, cases=eval_set["eligibility_cases"])
    assert result["unknown_policies"] == []
    assert result["n"] == len(eval_set["eligibility_cases"])
    assert result["failures"] == []
    assert result["accuracy"] == 1.0
    confusion = evaluation.confusion_frame(result["confusion"])
    assert int(confusion.to_numpy().trace()) == result["n"]


def test_blend_ablation_ranks_by_meaning_better_with_semantics_than_with_rules_alone(
    demo_catalog, matcher, eval_set
) -> None:  # type: ignore[no-untyped-def]
    cases = eval_set["need_cases"][::4]  # every fourth case keeps this quick and still covers every style
    frame = evaluation.evaluate_blend(db=demo_catalog, matcher=matcher, cases=cases, today=TODAY)
    assert list(frame.index) == list(evaluation.blend_variants(matcher.weights))
    assert (frame["n"] == len(cases)).all()
    # A firm known only by its words: rule evidence cannot tell policies apart, meaning can.
    assert frame.loc["semantic_only", "mrr"] > frame.loc["rules_only", "mrr"] + 0.3
    assert frame.loc["all", "delta_mrr"] == 0.0
    # The default blend must keep most of what meaning alone achieves for a needs-only firm
    # (measured on all 117 cases with the default weights: all 0.819, semantic only 0.832).
    assert frame.loc["all", "mrr"] >= BLEND_MRR_FLOOR


def test_report_shows_search_metrics_by_style_and_eligibility_accuracy(demo_catalog, matcher, eval_set) -> None:  # type: ignore[no-untyped-def]
    result = {
        "search": evaluation.evaluate_search(db=demo_catalog, matcher=matcher, cases=eval_set["need_cases"][:10]),
        "eligibility": evaluation.evaluate_eligibility(db=demo_catalog, cases=eval_set["eligibility_cases"][:10]),
    }
    report = evaluation.format_report(result)
    for text in ("Hit@1", "R@5", "MRR", "准确率 accuracy 1.000", "总体 overall", "eligible"):
        assert text in report
    for style in {c["style"] for c in eval_set["need_cases"][:10]}:
        assert evaluation.STYLE_LABELS[style] in report
