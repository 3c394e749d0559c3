"""Matching end to end: recommendations with reasons, the calculator, eligible-firm lists, search,
tag suggestions and batch results — on the real e5 embedder and FAISS index."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text

from auth.models import Role
from catalog import service as catalog_service
from catalog.schemas import PolicyUpdate, TagIn
from core import codes, tabular
from core.db import InSession
from matcher import recommend, runs, store
from matcher.models import MatchResult
from profiles import sizing as profiles_sizing
from tests import factories

RD_RULE = {
    "all": [
        {"field": "region_code", "op": "within_region", "value": ["442000"]},
        {"field": "rd_ratio", "op": "gte", "value": 5},
    ]
}


@pytest.fixture
def vocab(db):  # type: ignore[no-untyped-def]
    for name, kind, syn in [
        ("高新技术企业", "qualification", ["高企"]),
        ("租金减免", "benefit", ["房租补贴", "租金补贴"]),
        ("研发补助", "benefit", []),
        ("灯饰照明", "industry", ["灯饰"]),
    ]:
        catalog_service.create_tag(db=db, tag_in=TagIn(name=name, kind=kind, synonyms=syn))


def test_firm_sees_eligible_policy_with_reasons_and_near_miss_with_what_is_missing(
    db, client, auth_headers, matcher, vocab
) -> None:  # type: ignore[no-untyped-def]
    ok = factories.make_policy(db, publish=True, title="中山市研发投入后补助资金", rules=RD_RULE, tags=["研发补助"])
    strict = factories.make_policy(
        db,
        publish=True,
        title="中山市高强度研发企业奖励",
        rules={
            "all": [
                {"field": "region_code", "op": "within_region", "value": ["442000"]},
                {"field": "rd_ratio", "op": "gte", "value": 8},
            ]
        },
    )
    firm = factories.make_enterprise(db, rd_expense=96, annual_revenue=3000)  # 3.2%
    factories.make_policy(
        db,
        publish=True,
        title="中山市研发比例三成企业奖励",
        rules={"all": [{"field": "rd_ratio", "op": "gte", "value": 3}]},
    )
    factories.match(db, matcher)
    headers = auth_headers(Role.enterprise, enterprise_id=firm.id)
    body = client.get(
        "/api/v1/enterprises/me/recommendations", params={"include": "ineligible"}, headers=headers
    ).json()
    assert body["state"] == "ready"
    by_title = {r["policy"]["title"]: r for r in body["items"]}
    assert by_title["中山市研发比例三成企业奖励"]["status"] == "eligible"
    miss = by_title[ok.title]
    assert miss["status"] == "ineligible"
    assert miss["missing"][0]["reason"] == "研发费用占营业收入比例需 ≥ 5%，当前 3.2%"
    assert by_title[strict.title]["status"] == "ineligible"
    assert body["changes"] and "研发费用占营业收入比例" in body["changes"][0]["description"]


def test_ineligible_policies_are_left_out_unless_asked_for(db, client, auth_headers, matcher, vocab) -> None:  # type: ignore[no-untyped-def]
    policy = factories.make_policy(db, publish=True, rules=RD_RULE)
    firm = factories.make_enterprise(db, rd_expense=0, annual_revenue=3000)
    factories.match(db, matcher)
    headers = auth_headers(Role.enterprise, enterprise_id=firm.id)
    items = client.get("/api/v1/enterprises/me/recommendations", headers=headers).json()["items"]
    assert policy.id not in [r["policy"]["id"] for r in items]


def test_likely_policy_names_the_fields_to_fill(db, client, auth_headers, matcher, vocab) -> None:  # type: ignore[no-untyped-def]
    policy = factories.make_policy(db, publish=True, rules=RD_RULE)
    firm = factories.make_enterprise(db, rd_expense=None)
    factories.match(db, matcher)
    body = client.get(f"/api/v1/enterprises/{firm.id}/recommendations", headers=auth_headers(Role.curator)).json()
    [rec] = [r for r in body["items"] if r["policy"]["id"] == policy.id]
    assert rec["status"] == "likely"
    assert "年研发费用" in rec["fields_to_fill"]
    assert rec["components"]["rules"] < 1.0


def test_needs_text_tags_the_firm_and_overlaps_with_the_policy(db, matcher, vocab) -> None:  # type: ignore[no-untyped-def]
    rent = factories.make_policy(
        db,
        publish=True,
        title="中山市小微企业房租补贴",
        tags=["租金减免"],
        summary="对租用厂房的小微企业给予租金补贴。",
    )
    firm = factories.make_enterprise(db, needs="厂房租金压力大，想申请房租补贴")
    factories.match(db, matcher)
    page = recommend.recommend(db=db, matcher=matcher, enterprise_id=firm.id)
    assert page.tags["租金减免"] == "经营范围或需求中提及"
    [rec] = [r for r in page.items if r.policy.id == rent.id]
    assert rec.needs_overlap == ["租金减免"] and "租金减免" in rec.shared_tags
    assert rec.similarity is not None and rec.components.semantic > 0


def test_the_worker_stores_each_firms_best_and_each_policys_list(db, matcher, vocab) -> None:  # type: ignore[no-untyped-def]
    policy = factories.make_policy(db, publish=True)
    firm = factories.make_enterprise(db)
    assert store.read(db, firm.id) is None  # nothing is computed until the worker runs
    factories.match(db, matcher)
    stored = store.read(db, firm.id)
    [item] = [i for i in stored.items if i["policy"] == policy.id]
    assert item["status"] == 2 and stored.eligible >= 1 and stored.profile_at == firm.profile_updated_at
    row = db.get(MatchResult, (firm.id, policy.id))
    assert row.status == "eligible" and row.policy_version == 1 and row.condition_states == [2]


def test_calculator_needs_no_account_and_resolves_abbreviations(db, client, vocab) -> None:  # type: ignore[no-untyped-def]
    policy = factories.make_policy(
        db, publish=True, rules={"all": [{"field": "qualifications", "op": "has_any", "value": ["高新技术企业"]}]}
    )
    r = client.post(
        "/api/v1/match/calculator", json={"region_code": "442000", "qualifications": ["高企"], "needs": "研发补助"}
    )
    assert r.status_code == 200, r.text
    [rec] = [x for x in r.json()["items"] if x["policy"]["id"] == policy.id]
    assert rec["status"] == "eligible"


def test_calculator_refuses_bad_codes_with_a_reason(client) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/match/calculator", json={"industry_code": "Z99"})
    assert r.status_code == 422 and "行业" in r.json()["errors"][0]["reason"]


def test_calculator_is_rate_limited(test_settings, database, db, matcher) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from api.app import create_app
    from core.deps import get_db

    app = create_app(test_settings.model_copy(update={"calculator_per_minute": 2}), database=database, matcher=matcher)
    app.dependency_overrides[get_db] = lambda: db
    with TestClient(app) as c:
        codes = [c.post("/api/v1/match/calculator", json={}).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_eligible_enterprises_list_and_csv_export(db, client, auth_headers, matcher, vocab) -> None:  # type: ignore[no-untyped-def]
    policy = factories.make_policy(
        db, publish=True, policy_type="exempt", rules=RD_RULE, apply_end_on=None, apply_start_on=None
    )
    good = factories.make_enterprise(db, rd_expense=300, annual_revenue=3000)
    factories.make_enterprise(db, rd_expense=30, annual_revenue=3000)
    unknown = factories.make_enterprise(db, rd_expense=None)
    headers = auth_headers(Role.curator)
    pending = client.get(f"/api/v1/policies/{policy.id}/eligible-enterprises", headers=headers)
    assert pending.status_code == 409 and pending.json()["code"] == "matcher.list_pending"  # reading never computes
    factories.match(db, matcher)
    page = client.get(f"/api/v1/policies/{policy.id}/eligible-enterprises", headers=headers).json()
    ids = [x["enterprise_id"] for x in page["items"]]
    assert good.id in ids and unknown.id not in ids
    assert page["items"][0]["contact_phone"] == "138****8000"
    likely = client.get(
        f"/api/v1/policies/{policy.id}/eligible-enterprises", params={"status": "likely"}, headers=headers
    ).json()
    assert unknown.id in [x["enterprise_id"] for x in likely["items"]]
    csv = client.get(f"/api/v1/policies/{policy.id}/eligible-enterprises", params={"format": "csv"}, headers=headers)
    text = csv.content.decode("utf-8-sig")
    assert text.splitlines()[0].startswith("统一社会信用代码,企业名称") and good.credit_code in text
    # Issue 14 item 5: people read labels and names (小型, 中山市, 计算机制造); codes keep their own columns.
    for fmt in ("csv", "xlsx"):
        data = client.get(
            f"/api/v1/policies/{policy.id}/eligible-enterprises", params={"format": fmt}, headers=headers
        ).content
        table = tabular.read_table(data, f"eligible.{fmt}")
        [row] = [r.cells for r in table.rows if r.cells["统一社会信用代码"] == good.credit_code]
        assert (
            row["企业规模"] == profiles_sizing.SIZE_LABELS[good.size_class] and row["企业规模代码"] == good.size_class
        )
        assert row["所在地区"] == "中山市" and row["所在地区代码"] == "442000"
        assert row["所属行业"] == codes.industry_name("C3911") and row["行业代码"] == "C3911"
        assert row["匹配结论"] == "符合"
        assert not {"small", "medium", "micro", "large", "eligible"} & {row["企业规模"], row["匹配结论"]}


def test_search_finds_by_meaning_traditional_and_abbreviation(db, client, vocab) -> None:  # type: ignore[no-untyped-def]
    hi = factories.make_policy(
        db, publish=True, title="中山市高新技术企业认定奖励", summary="对首次通过认定的高新技术企业给予一次性奖励。"
    )
    rent = factories.make_policy(
        db, publish=True, title="中山市小微企业房租补贴", summary="对租用厂房的小微企业按租金的一定比例给予补贴。"
    )
    for q, want in [("高企认定有什么奖励", hi.id), ("廠房租金太貴了有沒有補貼", rent.id)]:
        hits = client.get("/api/v1/policies/search", params={"q": q}).json()
        assert hits and hits[0]["policy"]["id"] == want, (q, [h["policy"]["title"] for h in hits])


def test_withdrawn_policy_leaves_the_search_index(db, client, vocab) -> None:  # type: ignore[no-untyped-def]
    policy = factories.make_policy(
        db, publish=True, title="中山市灯饰企业展会补贴", summary="支持灯饰企业参加国内外展会。"
    )
    assert policy.id in [
        h["policy"]["id"] for h in client.get("/api/v1/policies/search", params={"q": "灯饰展会"}).json()
    ]
    catalog_service.withdraw_policy(db=db, policy_id=policy.id, actor=None)
    db.flush()
    assert policy.id not in [
        h["policy"]["id"] for h in client.get("/api/v1/policies/search", params={"q": "灯饰展会"}).json()
    ]


def test_tag_suggestions_from_rules_and_text_can_be_accepted(db, client, auth_headers, vocab) -> None:  # type: ignore[no-untyped-def]
    policy = factories.make_policy(
        db,
        publish=True,
        title="中山市灯饰企业高企培育奖励",
        rules={"all": [{"field": "qualifications", "op": "has_any", "value": ["高新技术企业"]}]},
    )
    headers = auth_headers(Role.curator)
    suggestions = client.get(f"/api/v1/policies/{policy.id}/tag-suggestions", headers=headers).json()
    by_tag = {s["tag"]: s for s in suggestions}
    assert by_tag["高新技术企业"]["source"] == "rule"
    assert by_tag["灯饰照明"]["source"] == "keyword"
    r = client.post(f"/api/v1/policies/{policy.id}/tag-suggestions/{by_tag['灯饰照明']['id']}/accept", headers=headers)
    assert r.json()["status"] == "accepted"
    detail = client.get(f"/api/v1/policies/{policy.id}", headers=headers).json()
    assert "灯饰照明" in [t["name"] for t in detail["tags"]] and detail["version"] == 2
    again = client.get(f"/api/v1/policies/{policy.id}/tag-suggestions", headers=headers).json()
    assert "灯饰照明" not in [s["tag"] for s in again]


def test_full_run_and_changed_policies(db, matcher, vocab) -> None:  # type: ignore[no-untyped-def]
    policy = factories.make_policy(db, publish=True, rules=RD_RULE)
    good = factories.make_enterprise(db, rd_expense=300, annual_revenue=3000)
    report = runs.rematch_all(InSession(db), matcher)
    assert report.firms >= 1 and not report.stopped
    [item] = [i for i in store.read(db, good.id).items if i["policy"] == policy.id]
    assert item["status"] == 2
    assert policy.id not in runs.changed_policy_ids(db)
    catalog_service.update_policy(
        db=db,
        policy_id=policy.id,
        policy_in=PolicyUpdate(apply_end_on=dt.date.today() + dt.timedelta(days=90)),
        actor=None,
    )
    db.flush()
    assert policy.id in runs.changed_policy_ids(db)


def test_stored_results_are_served_until_the_profile_changes_then_marked_stale(db, matcher, vocab) -> None:  # type: ignore[no-untyped-def]
    from profiles import service as profiles_service
    from profiles.schemas import EnterpriseUpdate

    factories.make_policy(db, publish=True, rules=RD_RULE)
    factories.make_policy(db, publish=True)
    firm = factories.make_enterprise(db, rd_expense=300, annual_revenue=3000)
    factories.match(db, matcher)
    first = recommend.recommend(db=db, matcher=matcher, enterprise_id=firm.id)
    second = recommend.recommend(db=db, matcher=matcher, enterprise_id=firm.id)
    assert first.state == second.state == "ready"
    assert [(r.policy.id, r.verdict.status, r.score) for r in second.items] == [
        (r.policy.id, r.verdict.status, r.score) for r in first.items
    ]
    profiles_service.update_enterprise(
        db=db, enterprise_id=firm.id, enterprise_in=EnterpriseUpdate(rd_expense=30), actor=factories_admin()
    )
    db.flush()
    stale = recommend.recommend(db=db, matcher=matcher, enterprise_id=firm.id)
    assert stale.state == "stale" and len(stale.items) == len(first.items)  # served, never recomputed in a read
    factories.match(db, matcher)
    third = recommend.recommend(db=db, matcher=matcher, enterprise_id=firm.id)
    assert third.state == "ready" and len(third.items) == len(first.items) - 1


def test_a_newly_published_policy_reaches_stored_results_through_its_queued_job(db, matcher, vocab) -> None:  # type: ignore[no-untyped-def]
    firm = factories.make_enterprise(db)
    factories.make_policy(db, publish=True)
    factories.match(db, matcher)
    new = factories.make_policy(db, publish=True)
    assert db.scalar(
        text("SELECT count(*) FROM apscheduler_jobs WHERE id = :id"), {"id": f"once:matcher-list-{new.id}"}
    )
    before = recommend.recommend(db=db, matcher=matcher, enterprise_id=firm.id)
    assert before.state == "stale" and new.id not in [r.policy.id for r in before.items]
    runs.list_policy(InSession(db), matcher, new.id)
    after = recommend.recommend(db=db, matcher=matcher, enterprise_id=firm.id)
    assert new.id in [r.policy.id for r in after.items]


def factories_admin():  # type: ignore[no-untyped-def]
    from auth.service import Principal

    return Principal(id=0, role=Role.admin, name="测试")


def test_not_relevant_feedback_drops_the_policy_and_is_logged_with_components(
    db, client, auth_headers, matcher, vocab
) -> None:  # type: ignore[no-untyped-def]
    from matcher.models import Feedback

    policy = factories.make_policy(db, publish=True)
    other = factories.make_policy(db, publish=True)
    firm = factories.make_enterprise(db)
    factories.match(db, matcher)
    headers = auth_headers(Role.enterprise, enterprise_id=firm.id)
    ids = [
        r["policy"]["id"] for r in client.get("/api/v1/enterprises/me/recommendations", headers=headers).json()["items"]
    ]
    assert policy.id in ids
    r = client.post(
        "/api/v1/enterprises/me/feedback", json={"policy_id": policy.id, "action": "not_relevant"}, headers=headers
    )
    assert r.status_code == 201 and r.json()["action_label"] == "不相关"
    items = client.get("/api/v1/enterprises/me/recommendations", headers=headers).json()["items"]
    assert policy.id not in [x["policy"]["id"] for x in items] and other.id in [x["policy"]["id"] for x in items]
    row = db.query(Feedback).filter_by(enterprise_id=firm.id, policy_id=policy.id).one()
    assert row.components["status"] == "eligible"


def test_interested_feedback_raises_the_score_and_is_shown(db, client, auth_headers, matcher, vocab) -> None:  # type: ignore[no-untyped-def]
    policy = factories.make_policy(db, publish=True)
    firm = factories.make_enterprise(db)
    factories.match(db, matcher)
    headers = auth_headers(Role.enterprise, enterprise_id=firm.id)
    before = {
        x["policy"]["id"]: x
        for x in client.get("/api/v1/enterprises/me/recommendations", headers=headers).json()["items"]
    }
    client.post(
        "/api/v1/enterprises/me/feedback", json={"policy_id": policy.id, "action": "interested"}, headers=headers
    )
    after = {
        x["policy"]["id"]: x
        for x in client.get("/api/v1/enterprises/me/recommendations", headers=headers).json()["items"]
    }
    assert after[policy.id]["components"]["adjustment"] == 0.05
    assert after[policy.id]["score"] == pytest.approx(before[policy.id]["score"] + 0.05, abs=1e-3)
    assert after[policy.id]["feedback"] == "interested"


def test_feedback_on_a_draft_policy_is_refused(db, client, auth_headers) -> None:  # type: ignore[no-untyped-def]
    draft = factories.make_policy(db)
    firm = factories.make_enterprise(db)
    r = client.post(
        "/api/v1/enterprises/me/feedback",
        json={"policy_id": draft.id, "action": "applied"},
        headers=auth_headers(Role.enterprise, enterprise_id=firm.id),
    )
    assert r.status_code == 404


def test_feedback_naming_another_firms_push_is_refused(db, client, auth_headers) -> None:  # type: ignore[no-untyped-def]
    from push.models import Delivery

    policy = factories.make_policy(db, publish=True)
    mine, other = factories.make_enterprise(db), factories.make_enterprise(db)
    theirs = Delivery(
        enterprise_id=other.id,
        policy_id=policy.id,
        policy_version=policy.version,
        kind="new_match",
        channel="inbox",
        title="新政策",
        body="新政策",
        status="sent",
    )
    db.add(theirs)
    db.flush()
    headers = auth_headers(Role.enterprise, enterprise_id=mine.id)
    body = {"policy_id": policy.id, "action": "interested", "source": "push", "delivery_id": theirs.id}
    refused = client.post("/api/v1/enterprises/me/feedback", json=body, headers=headers)
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "delivery_id"
    own = client.post(
        "/api/v1/enterprises/me/feedback",
        json=body,
        headers=auth_headers(Role.enterprise, enterprise_id=other.id),
    )
    assert own.status_code == 201


def test_calculator_names_every_bad_field_in_one_422(client) -> None:  # type: ignore[no-untyped-def]
    """Issue 14 item 3: every field's error at once, each under its field, not only the first."""
    r = client.post(
        "/api/v1/match/calculator",
        json={"industry_code": "软件", "region_code": "12", "employees": -1, "credit_standing": "很好"},
    )
    assert r.status_code == 422, r.text
    fields = {e["field"]: e["reason"] for e in r.json()["errors"]}
    assert set(fields) == {"industry_code", "region_code", "employees", "credit_standing"}
    assert "应用软件开发（I6513）" in fields["industry_code"]  # the closest rows are offered


def test_calculator_takes_an_industry_by_its_name_and_lists_industries_by_words(client) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/match/calculator", json={"industry_code": "应用软件开发"})
    assert r.status_code == 200, r.text
    rows = client.get("/api/v1/industries", params={"q": "软件开发"}).json()
    assert rows[0] == {"code": "I651", "name": "软件开发", "level": "中类", "parent": "I65"}
    assert "I6513" in [row["code"] for row in rows]
    assert [
        row["code"] for row in client.get("/api/v1/industries", params={"q": "软件开发", "level": "小类"}).json()
    ] == [
        "I6511",
        "I6512",
        "I6513",
        "I6519",
    ]


def test_search_loads_only_the_policies_it_shows(db, client, vocab, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from matcher import search as search_mod

    made = [
        factories.make_policy(db, publish=True, title=f"中山市研发费用补助第{k}批", summary="对企业研发投入给予补助。")
        for k in range(12)
    ]
    withdrawn = made[0]
    catalog_service.withdraw_policy(db=db, policy_id=withdrawn.id, actor=None)
    db.flush()
    loaded: list[int] = []
    real = search_mod.load_policies

    def counting(session, ids):  # type: ignore[no-untyped-def]
        loaded.extend(ids)
        return real(session, ids)

    monkeypatch.setattr(search_mod, "load_policies", counting)
    hits = client.get("/api/v1/policies/search", params={"q": "研发费用补助", "limit": 3}).json()
    assert len(hits) == 3 and withdrawn.id not in [h["policy"]["id"] for h in hits]
    # A page of candidates at a time (the best few), never all fused candidates (12 keyword hits here).
    assert len(loaded) <= 6, loaded
