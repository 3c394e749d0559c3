"""The curator's review of an intake draft by API: accept / edit / reject each proposal, the live eligible
count, publishing refused while a proposal is undecided; only curators and admins may review."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy.orm import Session

from auth.models import Role
from catalog.models import Policy, PolicyStatus
from tests import factories
from tests.support import intake_docs as docs


def _draft(client: Any, headers: dict[str, str], db: Session) -> dict[str, Any]:
    dept = factories.make_department(db, name="中山市工业和信息化局", short_name="中山工信", region_code="442000")
    response = client.post(
        "/api/v1/intake",
        headers=headers,
        files={"file": ("notice.txt", docs.NOTICE.encode(), "text/plain")},
        params={"department": dept.code},
    )
    assert response.status_code == 201, response.text
    return response.json()["drafts"][0]


def _review(client: Any, headers: dict[str, str], policy_id: int) -> dict[str, Any]:
    response = client.get(f"/api/v1/intake/{policy_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def _decide(client: Any, headers: dict[str, str], policy_id: int, key: str, **body: Any) -> Any:
    return client.post(f"/api/v1/intake/{policy_id}/proposals/{key}", headers=headers, json=body)


def _key(review: dict[str, Any], field: str, op: str | None = None) -> str:
    return next(
        p["key"]
        for p in review["proposals"]
        if p["kind"] == "condition" and p["coded"] and p["name"] == field and (op is None or p["proposed"]["op"] == op)
    )


def test_curator_decides_every_proposal_the_count_follows_and_then_publishes(
    client: Any, auth_headers: Any, db: Session
) -> None:
    headers = auth_headers(Role.curator)
    # Firms the proposed conditions tell apart: revenue 3000 / 8000 万元, 50 / 500 employees.
    for revenue, employees in ((3000, 50), (8000, 50), (8000, 500), (1000, 50)):
        factories.make_enterprise(db, annual_revenue=revenue, employees=employees, rd_expense=revenue * 0.05)
    draft = _draft(client, headers, db)
    pid = draft["policy_id"]
    review = _review(client, headers, pid)
    assert review["undecided"] == len(review["proposals"]) > 5
    kinds = {p["kind"] for p in review["proposals"]}
    assert kinds >= {"field", "condition"}
    assert any(p["kind"] == "condition" and not p["coded"] for p in review["proposals"])  # confirmed by hand
    assert all(p["source"] for p in review["proposals"] if p["kind"] != "tag")
    first = review["preview"]
    assert first["total"] >= 4 and first["errors"] == []

    revenue = _key(review, "annual_revenue", "gte")
    # Edit the revenue threshold: the draft's rules change and fewer firms qualify.
    edited = _decide(client, headers, pid, revenue, decision="edit", value="5000万元")
    assert edited.status_code == 200, edited.text
    body = edited.json()
    assert body["proposal"]["status"] == "edited"
    assert body["proposal"]["current"] == {"field": "annual_revenue", "op": "gte", "value": 5000}
    db.expire_all()
    rules = db.get(Policy, pid).rules
    assert {"field": "annual_revenue", "op": "gte", "value": 5000} in rules["all"]
    assert {"field": "annual_revenue", "op": "gte", "value": 2000} not in rules["all"]
    assert body["preview"]["eligible"] + body["preview"]["likely"] <= first["eligible"] + first["likely"]

    # Reject the employee ceiling: it leaves the rules.
    employees = _key(review, "employees")
    rejected = _decide(client, headers, pid, employees, decision="reject")
    assert rejected.status_code == 200, rejected.text
    db.expire_all()
    assert all(n.get("field") != "employees" for n in db.get(Policy, pid).rules["all"])

    # The draft is completed by hand, then publishing is refused while proposals wait.
    cat = factories.make_category(db)
    patch = client.patch(
        f"/api/v1/policies/{pid}",
        headers=headers,
        json={
            "summary": "对专精特新中小企业给予一次性奖励。",
            "interpreter_name": "李明",
            "interpreter_contact": "0760-88881234",
            "categories": [cat.code],
            "apply_end_on": (dt.date.today() + dt.timedelta(days=30)).isoformat(),
            "valid_to_on": None,
        },
    )
    assert patch.status_code == 200, patch.text
    refused = client.post(f"/api/v1/policies/{pid}/publish", headers=headers)
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "catalog.intake_undecided"
    assert refused.json()["errors"][0]["field"] == "intake"
    db.expire_all()
    assert db.get(Policy, pid).status == PolicyStatus.draft

    left = [p for p in _review(client, headers, pid)["proposals"] if p["status"] == "pending"]
    for p in left:
        # Dates and the deadline were set by hand above: accepting the proposed past ones would undo that.
        decision = "reject" if p["key"] in ("field-apply_end_on", "field-apply_start_on") else "accept"
        answer = _decide(client, headers, pid, p["key"], decision=decision)
        assert answer.status_code == 200, (p, answer.text)
    assert _review(client, headers, pid)["undecided"] == 0
    published = client.post(f"/api/v1/policies/{pid}/publish", headers=headers)
    assert published.status_code == 200, published.text
    assert published.json()["status"] == "published"


def test_reviewing_is_for_curators_and_admins_only(client: Any, auth_headers: Any, db: Session) -> None:
    draft = _draft(client, auth_headers(Role.curator), db)
    pid = draft["policy_id"]
    assert client.get(f"/api/v1/intake/{pid}").status_code == 401
    assert _decide(client, {}, pid, "field-title", decision="accept").status_code == 401
    for role in (Role.enterprise, Role.desk, Role.supervisor):
        headers = auth_headers(role)
        assert client.get(f"/api/v1/intake/{pid}", headers=headers).status_code == 403, role
        assert _decide(client, headers, pid, "field-title", decision="accept").status_code == 403, role
    admin = auth_headers(Role.admin)
    assert _review(client, admin, pid)["policy_id"] == pid
    assert _decide(client, admin, pid, "field-title", decision="accept").status_code == 200
    db.expire_all()
    # Nothing the refused roles sent was recorded: only the admin's decision.
    statuses = {p["key"]: p["status"] for p in _review(client, admin, pid)["proposals"]}
    assert statuses["field-title"] == "accepted"
    assert sum(1 for s in statuses.values() if s != "pending") == 1


def _cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


@pytest.mark.parametrize(
    ("key", "body", "code", "field"),
    [
        ("field-title", {"decision": "maybe"}, "catalog.intake_bad_decision", "decision"),
        ("field-title", {"decision": "reject"}, "catalog.intake_required_field", "decision"),
        ("field-doc_number", {"decision": "edit", "value": "  "}, "catalog.intake_value_required", "value"),
        ("field-max_amount", {"decision": "edit", "value": "很多"}, "catalog.intake_bad_value", "value"),
        ("REVENUE", {"decision": "edit", "value": "两千万"}, "catalog.intake_bad_rule", "value"),
        ("REVENUE", {"decision": "edit", "op": "has_any", "value": "1"}, "catalog.intake_bad_op", "op"),
        ("bad key!", {"decision": "accept"}, "catalog.intake_bad_key", "key"),
    ],
)
def test_bad_decisions_get_a_chinese_reason_naming_the_field_and_change_nothing(
    client: Any, auth_headers: Any, db: Session, key: str, body: dict[str, Any], code: str, field: str
) -> None:
    headers = auth_headers(Role.curator)
    draft = _draft(client, headers, db)
    pid = draft["policy_id"]
    review = _review(client, headers, pid)
    if key == "REVENUE":
        key = _key(review, "annual_revenue")
    db.expire_all()
    before = (db.get(Policy, pid).rules, db.get(Policy, pid).max_amount, db.get(Policy, pid).doc_number)
    response = _decide(client, headers, pid, key, **body)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["code"] == code and _cjk(answer["message"])
    assert [e["field"] for e in answer["errors"]] == [field]
    db.expire_all()
    assert (db.get(Policy, pid).rules, db.get(Policy, pid).max_amount, db.get(Policy, pid).doc_number) == before
    assert _review(client, headers, pid)["undecided"] == review["undecided"]


def test_unknown_policy_proposal_or_a_hand_made_policy_is_not_found(
    client: Any, auth_headers: Any, db: Session
) -> None:
    headers = auth_headers(Role.curator)
    draft = _draft(client, headers, db)
    hand_made = factories.make_policy(db)
    assert client.get("/api/v1/intake/999999", headers=headers).status_code == 404
    missing = client.get(f"/api/v1/intake/{hand_made.id}", headers=headers)
    assert missing.status_code == 404 and missing.json()["code"] == "catalog.intake_not_found"
    gone = _decide(client, headers, draft["policy_id"], "condition-99", decision="accept")
    assert gone.status_code == 404 and gone.json()["code"] == "catalog.intake_proposal_not_found"
    extra = _decide(client, headers, draft["policy_id"], "field-title", decision="accept", note="x")
    assert extra.status_code == 422
