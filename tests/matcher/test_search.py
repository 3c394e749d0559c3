"""The one search face (matcher.search.find): keyword index + vocabulary expansion + semantic fusion + cut-off."""

from __future__ import annotations

from pathlib import Path

import pytest

from matcher import search, search_eval
from matcher.engine import Matcher
from tests import factories

DATA = Path(__file__).resolve().parent.parent / "data"


def test_nonsense_query_has_true_total_zero_over_http(db, client) -> None:  # type: ignore[no-untyped-def]
    factories.make_policy(
        db, publish=True, title="中山市小微企业房租补贴", summary="对租用厂房的小微企业给予租金补贴。"
    )
    factories.make_policy(db, publish=True, title="失业保险稳岗返还", summary="未裁员的参保企业返还失业保险费。")
    response = client.get("/api/v1/policies/search", params={"q": "zzqqxx不存在的政策"})
    assert response.status_code == 200
    assert response.json() == []
    assert response.headers["X-Total-Count"] == "0"
    assert response.headers["X-Search-Mode"] == "hybrid"
    found = client.get("/api/v1/policies/search", params={"q": "没裁员能返还失业保险吗"})
    assert found.json()[0]["policy"]["title"] == "失业保险稳岗返还"
    assert int(found.headers["X-Total-Count"]) >= 1


def test_abbreviation_expands_from_titles_on_a_catalog_without_tags(db, matcher) -> None:  # type: ignore[no-untyped-def]
    hi = factories.make_policy(
        db, publish=True, title="中山市高新技术企业认定奖励", summary="对首次通过认定的企业给予一次性奖励。"
    )
    # A name mined from titles must recur: 高新技术企业 heads two titles here.
    factories.make_policy(db, publish=True, title="高新技术企业培育入库补助", summary="入库培育的企业给予补助。")
    factories.make_policy(db, publish=True, title="中山市规模以上工业企业奖励", summary="对首次升规的企业给予奖励。")
    factories.make_policy(db, publish=True, title="中山市新企业开办补贴", summary="新开办企业给予补贴。")
    result = search.find(db=db, matcher=matcher, q="高企认定", limit=5)
    assert result.expansions.get("高企") == ("高新技术企业",)
    assert result.hits[0].policy.id == hi.id and result.hits[0].keyword
    # 新企 occurs as itself in titles (新企业): not read as an abbreviation of 新技术企业.
    assert "新企" not in search.find(db=db, matcher=matcher, q="新企业开办", limit=5).expansions


def test_two_character_query_is_answered_by_the_short_term_fallback(db, matcher) -> None:  # type: ignore[no-untyped-def]
    jobs = factories.make_policy(db, publish=True, title="稳岗补贴申领", summary="稳岗补贴按规定发放。")
    result = search.find(db=db, matcher=matcher, q="稳岗", limit=5)
    assert result.hits[0].policy.id == jobs.id and result.hits[0].keyword


def test_keyword_only_answers_while_the_embedder_loads(db, test_settings) -> None:  # type: ignore[no-untyped-def]
    policy = factories.make_policy(
        db, publish=True, title="技术改造项目贷款贴息", summary="技改项目三年期以上贷款按基准利率的40%贴息。"
    )
    cold = Matcher(test_settings)
    cold.wait_for_model = False  # as the API does at start-up, before the model is loaded
    try:
        assert not cold.semantic_ready
        result = search.find(db=db, matcher=cold, q="技改项目贷款贴息", limit=5)
        assert result.mode == "keyword"
        assert [h.policy.id for h in result.hits] == [policy.id]
        assert result.hits[0].semantic is None
        assert search.find(db=db, matcher=cold, q="zzqqxx不存在的政策").total == 0
        assert not cold.semantic_ready  # nothing waited for the model
    finally:
        cold.close()


def test_search_page_shows_the_empty_state_in_chinese(db, client) -> None:  # type: ignore[no-untyped-def]
    factories.make_policy(
        db, publish=True, title="中山市小微企业房租补贴", summary="对租用厂房的小微企业给予租金补贴。"
    )
    page = client.get("/policies", params={"q": "zzqqxx不存在的政策"})
    assert page.status_code == 200
    assert "搜索结果：0 项" in page.text
    assert "没有找到与“zzqqxx不存在的政策”相关的政策" in page.text


def test_product_is_never_below_the_bare_embedding_on_the_held_out_test_split(db, matcher) -> None:  # type: ignore[no-untyped-def]
    if db.bind.dialect.name != "sqlite":
        pytest.skip("quality evaluation runs on SQLite only; the index itself is tested on both")
    search_eval.load_catalog(db, DATA / "search_policies.json")
    cases = search_eval.load_cases(DATA / "search_eval.csv", split="test")
    result = search_eval.evaluate(db=db, matcher=matcher, cases=cases)
    assert result["unknown_expected"] == []
    product, bare = result["systems"]["product"], result["systems"]["bare_e5"]
    assert result["n"] == len(cases) >= 40
    report = search_eval.format_report(result)
    assert product["hit_at_1"] >= bare["hit_at_1"], report
    assert product["mrr"] >= bare["mrr"], report
    assert product["recall_at_5"] >= bare["recall_at_5"], report


def test_eval_file_reads_csv_and_xlsx_and_names_a_missing_column(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd

    frame = pd.DataFrame({"Query": ["稳岗返还怎么申请"], "expected": ["失业保险稳岗返还"], "split": ["test"]})
    frame.to_excel(tmp_path / "set.xlsx", index=False)
    assert search_eval.load_cases(tmp_path / "set.xlsx", split="test") == [
        {"query": "稳岗返还怎么申请", "expected": "失业保险稳岗返还", "split": "test"}
    ]
    (tmp_path / "bad.csv").write_text("question,policy\n稳岗,失业保险稳岗返还\n", encoding="utf-8")
    with pytest.raises(search_eval.EvalFileError, match="缺少列 query, expected"):
        search_eval.load_cases(tmp_path / "bad.csv")
    (tmp_path / "empty.csv").write_text("query,expected\n稳岗,\n", encoding="utf-8")
    with pytest.raises(search_eval.EvalFileError, match="第 2 行"):
        search_eval.load_cases(tmp_path / "empty.csv")


def test_the_route_s_cards_from_the_policy_set_equal_the_loaded_policies(db, matcher) -> None:  # type: ignore[no-untyped-def]
    """The search route takes open policies' cards from the policy set (no load); they must be the loaded ones'."""
    import datetime as dt

    from catalog import service as catalog_service
    from matcher import router

    today = dt.date.today()
    for k in range(3):
        factories.make_policy(db, publish=True, title=f"稳岗补贴申领第{k}批", summary="稳岗补贴按规定发放。")
    closed = factories.make_policy(  # published, its window over: not in the policy set, loaded
        db,
        publish=True,
        title="稳岗补贴申领往期",
        summary="稳岗补贴按规定发放。",
        apply_start_on=today - dt.timedelta(days=40),
        apply_end_on=today - dt.timedelta(days=1),
    )
    withdrawn = factories.make_policy(db, publish=True, title="稳岗补贴申领已撤回", summary="稳岗补贴按规定发放。")
    catalog_service.withdraw_policy(db=db, policy_id=withdrawn.id, actor=None)
    matcher.policy_sets.clear()
    plain = search.find(db=db, matcher=matcher, q="稳岗补贴", limit=10, today=today)
    carded = search.find(db=db, matcher=matcher, q="稳岗补贴", limit=10, today=today, cards=True)
    assert [h.policy.id for h in carded.hits] == [h.policy.id for h in plain.hits]
    assert withdrawn.id not in [h.policy.id for h in carded.hits]
    assert len(carded.hits) >= 4 and closed.id in [h.policy.id for h in carded.hits]
    assert [router._card(h.policy, today) for h in carded.hits] == [router._card(h.policy, today) for h in plain.hits]
    assert any(not isinstance(h.policy, type(plain.hits[0].policy)) for h in carded.hits)  # read from the set
