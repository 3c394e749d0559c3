"""Issue 15 parts 2 and 3: 免申即享 rosters frozen from the matcher's stored list, confirmed or excluded with a
reason, paid one by one or by import (the firm told "已为您兑现 X 万元"); figures per policy and department,
the funnel, and the eligible firms that never applied — pushed to through the staff's targeted push."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select

from applications import stats
from auth.models import Role
from auth.service import principal_for_user
from core import security
from push.models import Delivery
from tests import factories


def _headers(settings: Any, user: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {security.create_access_token(settings=settings, subject=str(user.id))}"}


@pytest.fixture
def world(db, test_settings) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    dept, other = factories.make_department(db), factories.make_department(db)
    firms = {
        "a": factories.make_enterprise(db, region_code="442000"),
        "b": factories.make_enterprise(db, region_code="442000"),
        "c": factories.make_enterprise(db, region_code="440106"),  # outside the policies' region
    }
    users = {
        "a": factories.make_user(db, role=Role.enterprise, enterprise_id=firms["a"].id),
        "b": factories.make_user(db, role=Role.enterprise, enterprise_id=firms["b"].id),
        "officer": factories.make_user(db, role=Role.desk, department_id=dept.id),
        "stranger": factories.make_user(db, role=Role.desk, department_id=other.id),
        "curator": factories.make_user(db, role=Role.curator),
    }
    return {
        "dept": dept,
        "firms": firms,
        "users": users,
        "h": {k: _headers(test_settings, u) for k, u in users.items()},
    }


def _upload(client: Any, url: str, text: str, headers: dict[str, str]) -> Any:
    return client.post(url, files={"file": ("兑现.csv", text.encode("utf-8"), "text/csv")}, headers=headers)


def test_exempt_roster_confirm_exclude_and_payout(client, db, matcher, world) -> None:  # type: ignore[no-untyped-def]
    h, firms = world["h"], world["firms"]
    policy = factories.make_policy(db, department=world["dept"], policy_type="exempt", publish=True, announce=False)
    url = f"/api/v1/policies/{policy.id}/exempt-rosters"
    # The list is the worker's: until it is made, freezing is refused.
    r = client.post(url, json={}, headers=h["officer"])
    assert r.status_code == 409 and r.json()["code"] == "applications.list_pending"
    factories.match(db, matcher)
    assert client.post(url, json={}, headers=h["stranger"]).status_code == 404
    r = client.post(url, json={"note": "2026年第一批"}, headers=h["officer"])
    assert r.status_code == 201, r.text
    roster = r.json()
    assert roster["counts"] == {"pending": 2, "confirmed": 0, "excluded": 0, "paid": 0}
    assert roster["frozen_on"] == dt.date.today().isoformat() or roster["frozen_on"]
    entries = client.get(f"/api/v1/exempt-rosters/{roster['id']}/entries", headers=h["officer"]).json()["items"]
    by_firm = {e["enterprise_id"]: e for e in entries}
    assert set(by_firm) == {firms["a"].id, firms["b"].id}
    assert client.get(f"/api/v1/exempt-rosters/{roster['id']}/entries", headers=h["stranger"]).status_code == 404

    a, b = by_firm[firms["a"].id]["id"], by_firm[firms["b"].id]["id"]
    # Excluding needs a reason; paying needs a confirmed firm.
    r = client.post(f"/api/v1/exempt-entries/{b}/decision", json={"action": "exclude"}, headers=h["officer"])
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "reason"
    r = client.post(
        f"/api/v1/exempt-entries/{b}/decision", json={"action": "exclude", "reason": "已迁出本市"}, headers=h["officer"]
    )
    assert r.json()["status"] == "excluded" and r.json()["reason"] == "已迁出本市"
    r = client.post(f"/api/v1/exempt-entries/{a}/payout", json={"amount": 5}, headers=h["officer"])
    assert r.status_code == 409 and r.json()["code"] == "applications.exempt_illegal_transition"
    r = client.post(f"/api/v1/exempt-entries/{a}/decision", json={"action": "confirm"}, headers=h["officer"])
    assert r.json()["status"] == "confirmed" and r.json()["decided_by_name"] == world["users"]["officer"].display_name
    r = client.post(f"/api/v1/exempt-entries/{a}/payout", json={"amount": 5}, headers=h["officer"])
    assert r.status_code == 200 and r.json()["status"] == "paid"

    inbox = client.get("/api/v1/inbox", headers=h["a"]).json()["items"]
    assert [m["title"] for m in inbox] == [f"已为您兑现 5 万元：{policy.title}"]
    assert "免申即享，无需申报" in inbox[0]["body"]
    assert client.get("/api/v1/inbox", headers=h["b"]).json()["total"] == 0
    payouts = client.get("/api/v1/my/payouts", headers=h["a"]).json()
    assert [(p["policy_id"], p["amount"]) for p in payouts] == [(policy.id, 5)]

    # The department's payout list: the paid firm again (same amount) is unchanged, the excluded one refused.
    today = dt.date.today().isoformat()
    head = "统一社会信用代码,企业名称,兑现金额（万元）,兑现日期\n"
    text = head + f"{firms['a'].credit_code},,5,{today}\n{firms['b'].credit_code},,3,{today}\n"
    r = _upload(client, f"/api/v1/exempt-rosters/{roster['id']}/payouts/import", text, h["officer"])
    assert r.status_code == 422
    assert [(e["row"], e["column"], e["code"]) for e in r.json()["report"]["errors"]] == [
        (3, "统一社会信用代码", "not_confirmed")
    ]
    # Confirmed again, B is paid by the import; a second import changes nothing and tells nobody twice.
    client.post(f"/api/v1/exempt-entries/{b}/decision", json={"action": "confirm"}, headers=h["officer"])
    r = _upload(client, f"/api/v1/exempt-rosters/{roster['id']}/payouts/import", text, h["officer"])
    assert (r.json()["updated"], r.json()["unchanged"]) == (1, 1)
    r = _upload(client, f"/api/v1/exempt-rosters/{roster['id']}/payouts/import", text, h["officer"])
    assert (r.json()["updated"], r.json()["unchanged"]) == (0, 2)
    told = db.scalars(
        select(Delivery.enterprise_id).where(Delivery.kind == "exempt_payout", Delivery.channel == "inbox")
    ).all()
    assert sorted(told) == sorted([firms["a"].id, firms["b"].id])

    # Figures: the payouts count for the policy and its department.
    figures = client.get("/api/v1/applications/figures", headers=h["curator"]).json()
    row = next(p for p in figures["policies"] if p["policy_id"] == policy.id)
    assert (row["paid"], row["amount_paid"], row["eligible"]) == (2, 8.0, 2)
    assert row["median_days_to_payout"] == 0.0
    dept = next(d for d in figures["departments"] if d["department_id"] == world["dept"].id)
    assert dept["amount_paid"] == 8.0
    # Another department's officer sees only its own (nothing here).
    other = client.get("/api/v1/applications/figures", headers=h["stranger"]).json()
    assert all(p["policy_id"] != policy.id for p in other["policies"])


def test_application_figures_funnel_and_the_never_applied_push(client, db, matcher, world) -> None:  # type: ignore[no-untyped-def]
    h, firms = world["h"], world["firms"]
    policy = factories.make_policy(db, department=world["dept"], publish=True, announce=False)
    factories.match(db, matcher)
    app_id = client.post("/api/v1/applications", json={"policy_id": policy.id}, headers=h["a"]).json()["id"]
    client.post(f"/api/v1/applications/{app_id}/status", json={"status": "paid", "amount": 10}, headers=h["officer"])
    r = client.get(f"/api/v1/policies/{policy.id}/never-applied", headers=h["officer"])
    assert r.json()["enterprise_ids"] == [firms["b"].id]
    assert stats.never_applied_ids(db=db, policy_id=policy.id) == [firms["b"].id]

    figures = client.get("/api/v1/applications/figures", headers=h["officer"]).json()
    row = next(p for p in figures["policies"] if p["policy_id"] == policy.id)
    assert (row["applications"], row["approved"], row["approval_rate"], row["amount_paid"]) == (1, 1, 1.0, 10.0)
    assert (row["eligible"], row["never_applied"]) == (2, 1)
    funnel = {s["stage"]: s["count"] for s in figures["funnel"]}
    assert funnel["recommended"] >= 2 and funnel["applied"] == 1 and funnel["paid"] == 1

    # Push the policy to the firms that never applied: a targeted push reaching B only.
    r = client.post(
        f"/api/v1/policies/{policy.id}/never-applied/push", json={"message": "请尽快申报"}, headers=h["officer"]
    )
    assert r.status_code == 201, r.text
    assert r.json()["enterprises"] == 1
    pushed = db.scalars(
        select(Delivery.enterprise_id).where(Delivery.kind == "manual", Delivery.policy_id == policy.id)
    ).all()
    assert set(pushed) == {firms["b"].id}
    assert (
        client.post(f"/api/v1/policies/{policy.id}/never-applied/push", json={}, headers=h["stranger"]).status_code
        == 404
    )
    assert principal_for_user(world["users"]["officer"]).department_id == world["dept"].id


def test_the_monthly_report_and_the_dashboard_carry_the_figures(client, db, matcher, world, test_settings) -> None:  # type: ignore[no-untyped-def]
    from auth.service import principal_for_user
    from desk import clock
    from desk import stats as desk_stats
    from web.dashboard import dashboard_data

    h, firms = world["h"], world["firms"]
    policy = factories.make_policy(db, department=world["dept"], publish=True, announce=False)
    factories.match(db, matcher)
    app_id = client.post("/api/v1/applications", json={"policy_id": policy.id}, headers=h["b"]).json()["id"]
    client.post(f"/api/v1/applications/{app_id}/status", json={"status": "paid", "amount": 7.5}, headers=h["curator"])

    calendar = clock.site_calendar(test_settings)
    month = dt.date.today().strftime("%Y-%m")
    book = desk_stats.read_report(desk_stats.monthly_report(db=db, calendar=calendar, month=month, tz=str(calendar.tz)))
    rows = {r[0]: r for r in book[desk_stats.SHEET_APPLICATIONS][1:]}
    assert rows[policy.title][3] == 1 and rows[policy.title][8] == 7.5 and rows[policy.title][11] == 1
    depts = {r[0]: r for r in book[desk_stats.SHEET_APPLICATION_DEPARTMENTS][1:]}
    assert depts[world["dept"].name][7] == 7.5

    officer = principal_for_user(world["users"]["officer"])
    data = dashboard_data(db=db, settings=test_settings, principal=officer)
    assert data["applications"]["totals"]["amount_paid"] == 7.5
    assert [p["policy_id"] for p in data["applications"]["policies"]] == [policy.id]
    assert firms["a"].id in stats.never_applied_ids(db=db, policy_id=policy.id)
