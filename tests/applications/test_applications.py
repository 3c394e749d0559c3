"""Issue 15 part 1: applications (申报) — the transition table, who may see and move which application,
the department's result-list import (row report, idempotent), and the firm's notices through push."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select

from applications import lifecycle, service
from applications.lifecycle import IllegalTransition
from applications.models import Application, ApplicationEvent
from auth.models import Role
from auth.service import principal_for_user
from core import security
from core.errors import ValidationFailed
from matcher import feedback as matcher_feedback
from push.models import Delivery
from tests import factories


def _headers(settings: Any, user: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {security.create_access_token(settings=settings, subject=str(user.id))}"}


@pytest.fixture
def world(db, test_settings) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    dept, other = factories.make_department(db), factories.make_department(db)
    policy = factories.make_policy(db, department=dept, publish=True, announce=False)
    firm_a, firm_b = factories.make_enterprise(db), factories.make_enterprise(db)
    users = {
        "a": factories.make_user(db, role=Role.enterprise, enterprise_id=firm_a.id),
        "b": factories.make_user(db, role=Role.enterprise, enterprise_id=firm_b.id),
        "officer": factories.make_user(db, role=Role.desk, department_id=dept.id),
        "stranger": factories.make_user(db, role=Role.desk, department_id=other.id),
        "curator": factories.make_user(db, role=Role.curator),
        "supervisor": factories.make_user(db, role=Role.supervisor),
    }
    db.flush()
    return {
        "dept": dept,
        "policy": policy,
        "firm_a": firm_a,
        "firm_b": firm_b,
        "users": users,
        "h": {k: _headers(test_settings, u) for k, u in users.items()},
        "p": {k: principal_for_user(u) for k, u in users.items()},
    }


def _notices(db: Any, enterprise_id: int) -> list[Delivery]:
    return list(
        db.scalars(
            select(Delivery)
            .where(Delivery.enterprise_id == enterprise_id, Delivery.kind.in_(["application", "exempt_payout"]))
            .order_by(Delivery.id)
        )
    )


def test_every_change_follows_the_table_and_is_recorded(db, world) -> None:  # type: ignore[no-untyped-def]
    p, policy = world["p"], world["policy"]
    app = service.apply(db=db, actor=p["a"], policy_id=policy.id)
    assert app.status == "submitted" and app.source == "firm"
    # Applying twice keeps one application.
    assert service.apply(db=db, actor=p["a"], policy_id=policy.id).id == app.id
    service.set_status(db=db, actor=p["officer"], app=app, status="accepted", note="材料齐全")
    with pytest.raises(IllegalTransition) as exc:
        lifecycle.move(db, app, "reapply", actor=p["a"])
    assert exc.value.code == "applications.illegal_transition" and exc.value.errors[0].field == "status"
    with pytest.raises(ValidationFailed) as bad:
        service.set_status(db=db, actor=p["officer"], app=app, status="paid")
    assert [e.field for e in bad.value.errors] == ["amount"]
    with pytest.raises(ValidationFailed) as bad:
        service.set_status(db=db, actor=p["officer"], app=app, status="rejected")
    assert [e.field for e in bad.value.errors] == ["reason"]
    service.set_status(db=db, actor=p["officer"], app=app, status="reviewing")
    service.set_status(db=db, actor=p["officer"], app=app, status="publicized")
    service.set_status(db=db, actor=p["officer"], app=app, status="paid", amount=12.5, paid_on=dt.date.today())
    assert (app.status, app.amount) == ("paid", 12.5)
    # Paid is final: neither refused nor withdrawn afterwards.
    with pytest.raises(IllegalTransition):
        service.set_status(db=db, actor=p["officer"], app=app, status="rejected", reason="材料不全")
    with pytest.raises(IllegalTransition):
        service.withdraw(db=db, actor=p["a"], application_id=app.id)
    history = [(e.from_status, e.to_status, e.actor_name) for e in app.events]
    assert history == [
        (None, "submitted", world["users"]["a"].display_name),
        ("submitted", "accepted", world["users"]["officer"].display_name),
        ("accepted", "reviewing", world["users"]["officer"].display_name),
        ("reviewing", "publicized", world["users"]["officer"].display_name),
        ("publicized", "paid", world["users"]["officer"].display_name),
    ]
    assert app.events[1].note == "材料齐全"


def test_withdraw_and_apply_again(db, world) -> None:  # type: ignore[no-untyped-def]
    p, policy = world["p"], world["policy"]
    app = service.apply(db=db, actor=p["a"], policy_id=policy.id)
    service.withdraw(db=db, actor=p["a"], application_id=app.id, note="材料准备不足")
    assert app.status == "withdrawn"
    assert service.apply(db=db, actor=p["a"], policy_id=policy.id).status == "submitted"
    assert [e.action for e in app.events] == ["submit", "withdraw", "reapply"]


def test_the_applied_button_opens_an_application(db, world) -> None:  # type: ignore[no-untyped-def]
    """The recommendation card's and policy page's 已申报 (feedback "applied") makes a real application."""
    firm = world["firm_a"]
    matcher_feedback.record_feedback(db=db, enterprise_id=firm.id, policy_id=world["policy"].id, action="applied")
    app = service.find(db, firm.id, world["policy"].id)
    assert app is not None and app.status == "submitted"
    assert service.statuses_for_firm(db=db, enterprise_id=firm.id) == {world["policy"].id: "submitted"}


def test_exempt_policies_take_no_application(db, world, client) -> None:  # type: ignore[no-untyped-def]
    exempt_policy = factories.make_policy(
        db, department=world["dept"], policy_type="exempt", publish=True, announce=False
    )
    r = client.post("/api/v1/applications", json={"policy_id": exempt_policy.id}, headers=world["h"]["a"])
    assert r.status_code == 422 and r.json()["code"] == "applications.not_applicable"
    # The 已申报 mark on it stays a mark: no application.
    matcher_feedback.record_feedback(
        db=db, enterprise_id=world["firm_a"].id, policy_id=exempt_policy.id, action="applied"
    )
    assert service.find(db, world["firm_a"].id, exempt_policy.id) is None


def test_firms_see_only_their_own_applications(client, world) -> None:  # type: ignore[no-untyped-def]
    h, policy = world["h"], world["policy"]
    r = client.post("/api/v1/applications", json={"policy_id": policy.id}, headers=h["a"])
    assert r.status_code == 201, r.text
    app_id = r.json()["id"]
    assert r.json()["status_label"] == "已申报"
    assert client.get(f"/api/v1/applications/{app_id}", headers=h["b"]).status_code == 404
    assert client.get("/api/v1/applications", headers=h["b"]).json()["total"] == 0
    mine = client.get("/api/v1/applications", headers=h["a"]).json()
    assert [a["id"] for a in mine["items"]] == [app_id]
    # Another firm cannot withdraw it, and a firm cannot move statuses.
    assert client.post(f"/api/v1/applications/{app_id}/withdraw", json={}, headers=h["b"]).status_code == 404
    r = client.post(f"/api/v1/applications/{app_id}/status", json={"status": "accepted"}, headers=h["a"])
    assert r.status_code == 403


def test_departments_move_only_their_policies_applications(client, world) -> None:  # type: ignore[no-untyped-def]
    h, policy = world["h"], world["policy"]
    app_id = client.post("/api/v1/applications", json={"policy_id": policy.id}, headers=h["a"]).json()["id"]
    # Another department's officer does not see it at all.
    assert client.get(f"/api/v1/applications/{app_id}", headers=h["stranger"]).status_code == 404
    r = client.post(f"/api/v1/applications/{app_id}/status", json={"status": "accepted"}, headers=h["stranger"])
    assert r.status_code == 404
    assert client.get("/api/v1/applications", headers=h["stranger"]).json()["total"] == 0
    # The policy's department does; a supervisor reads but may not move.
    r = client.post(f"/api/v1/applications/{app_id}/status", json={"status": "accepted"}, headers=h["officer"])
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    assert client.get(f"/api/v1/applications/{app_id}", headers=h["supervisor"]).status_code == 200
    r = client.post(f"/api/v1/applications/{app_id}/status", json={"status": "reviewing"}, headers=h["supervisor"])
    assert r.status_code == 403
    # A curator moves any; an illegal step is a 409 naming the field.
    r = client.post(
        f"/api/v1/applications/{app_id}/status",
        json={"status": "paid", "amount": 20, "paid_on": dt.date.today().isoformat()},
        headers=h["curator"],
    )
    assert r.status_code == 200, r.text
    r = client.post(f"/api/v1/applications/{app_id}/status", json={"status": "accepted"}, headers=h["curator"])
    assert r.status_code == 409 and r.json()["code"] == "applications.illegal_transition"
    assert r.json()["errors"][0]["field"] == "status"
    events = client.get(f"/api/v1/applications/{app_id}", headers=h["a"]).json()["events"]
    assert [e["to_status"] for e in events] == ["submitted", "accepted", "paid"]


def test_the_firm_is_told_of_each_change_in_its_inbox(client, db, world) -> None:  # type: ignore[no-untyped-def]
    h, policy, firm = world["h"], world["policy"], world["firm_a"]
    app_id = client.post("/api/v1/applications", json={"policy_id": policy.id}, headers=h["a"]).json()["id"]
    assert _notices(db, firm.id) == []  # not told of its own act
    client.post(f"/api/v1/applications/{app_id}/status", json={"status": "accepted"}, headers=h["officer"])
    client.post(f"/api/v1/applications/{app_id}/status", json={"status": "paid", "amount": 8.5}, headers=h["officer"])
    inbox = client.get("/api/v1/inbox", headers=h["a"]).json()["items"]
    titles = [m["title"] for m in inbox]
    assert f"已为您兑现 8.5 万元：{policy.title}" in titles
    assert f"申报已受理：{policy.title}" in titles
    rows = _notices(db, firm.id)
    assert {r.channel for r in rows} == {"inbox"} and len(rows) == 2
    assert all(r.url.endswith(f"/me/applications/{app_id}") for r in rows)
    # The other firm heard nothing.
    assert client.get("/api/v1/inbox", headers=h["b"]).json()["total"] == 0


RESULT_HEADER = "统一社会信用代码,企业名称,状态,兑现金额（万元）,兑现日期,说明\n"


def _upload(client: Any, url: str, text: str, headers: dict[str, str], name: str = "结果.csv") -> Any:
    return client.post(url, files={"file": (name, text.encode("utf-8"), "text/csv")}, headers=headers)


def test_the_result_list_import_reports_bad_rows_and_is_idempotent(client, db, world) -> None:  # type: ignore[no-untyped-def]
    h, policy, a, b = world["h"], world["policy"], world["firm_a"], world["firm_b"]
    client.post("/api/v1/applications", json={"policy_id": policy.id}, headers=h["a"])
    url = f"/api/v1/policies/{policy.id}/applications/import"
    today = dt.date.today().isoformat()
    bad = (
        RESULT_HEADER
        + f"{a.credit_code},{a.name},已兑现,,{today},\n"  # row 2: paid without an amount
        + f"{b.credit_code},{b.name},通过了,,,\n"  # row 3: unknown status
        + "91440000MA00000000,某公司,已受理,,,\n"  # row 4: bad credit code
        + f"{b.credit_code},{b.name},未通过,,,\n"  # row 5: refused without a reason
    )
    r = _upload(client, url, bad, h["officer"])
    assert r.status_code == 422, r.text
    problems = {(e["row"], e["column"]) for e in r.json()["report"]["errors"]}
    assert problems == {(2, "兑现金额（万元）"), (3, "状态"), (4, "统一社会信用代码"), (5, "说明")}
    assert db.scalar(select(func.count()).select_from(Application).where(Application.policy_id == policy.id)) == 1
    assert _notices(db, a.id) == []  # nothing half-written, nobody told

    good = (
        RESULT_HEADER
        + f"{a.credit_code},{a.name},已兑现,15,{today},按评审结果拨付\n"
        + f"{b.credit_code},{b.name},未通过,,,研发投入不足\n"
    )
    # Another department may not import it.
    r = _upload(client, url, good, h["stranger"])
    assert r.status_code == 404 and r.json()["code"] == "applications.not_department"
    r = _upload(client, url, good, h["officer"])
    assert r.status_code == 200, r.text
    assert (r.json()["created"], r.json()["updated"], r.json()["unchanged"]) == (1, 1, 0)
    app_b = service.find(db, b.id, policy.id)
    assert app_b is not None and app_b.source == "import" and app_b.reason == "研发投入不足"
    events = db.scalar(select(func.count()).select_from(ApplicationEvent))
    told = len(_notices(db, a.id)) + len(_notices(db, b.id))
    assert told == 2
    # Again: nothing changes, nobody is told twice.
    r = _upload(client, url, good, h["officer"])
    assert (r.json()["created"], r.json()["updated"], r.json()["unchanged"]) == (0, 0, 2)
    assert db.scalar(select(func.count()).select_from(ApplicationEvent)) == events
    assert len(_notices(db, a.id)) + len(_notices(db, b.id)) == told
    # A different amount for a paid application is refused, naming the row and column.
    changed = RESULT_HEADER + f"{a.credit_code},{a.name},已兑现,16,{today},\n"
    r = _upload(client, url, changed, h["officer"])
    assert r.status_code == 422
    assert [(e["row"], e["column"]) for e in r.json()["report"]["errors"]] == [(2, "兑现金额（万元）")]
