"""Intake in stages: the acknowledgement first, the outcome (answer or routing) recorded exactly once after it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from auth.models import Role
from auth.service import principal_for_user
from core import security
from core.config import Settings
from core.scheduler import load_job_modules, registry
from desk import flows, intake
from desk.models import Case
from desk.schemas import CaseIn
from tests import factories
from web.deps import SESSION_COOKIE

COMPLAINT = "补贴资金迟迟没有拨付，打了几次电话都说在走流程。"


def _received(db: Session, settings: Settings, actor: Any, now: dt.datetime, **kw: Any) -> Case:
    case_in = CaseIn(kind="complaint", content=COMPLAINT, **kw)
    case = intake.prepare(db=db, settings=settings, actor=actor, case_in=case_in, now=now)
    return intake.receive(
        db=db, settings=settings, actor=actor, case=case, department_id=case_in.department_id, now=now
    )


def test_acknowledged_case_waits_for_its_outcome_which_is_recorded_once(db: Session, test_settings: Settings) -> None:
    dept = factories.make_department(db)
    policy = factories.make_policy(db, publish=True, department=dept)
    firm = principal_for_user(factories.make_user(db, role=Role.enterprise))
    now = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
    case = _received(db, test_settings, firm, now, related_policy_id=policy.id)
    assert case.status == "submitted" and case.intake_done_at is None and case.number.startswith("HQ")
    assert case.close_due_at is not None  # the clocks run from receipt, before any outcome
    assert [e.kind for e in case.events] == ["submitted"]
    assert case.id in intake.pending_intake_ids(db=db, received_before=now + dt.timedelta(seconds=1))
    assert case.id not in intake.pending_intake_ids(db=db, received_before=now)  # still the request's own

    outcome = intake.decide(db=db, matcher=None, settings=test_settings, case=case)
    assert outcome.answer is None and outcome.decision is not None and outcome.decision.department_id == dept.id
    later = now + dt.timedelta(seconds=30)
    first = intake.record_outcome(
        db=db, settings=test_settings, case_id=case.id, outcome=outcome, actor=None, now=later
    )
    second = intake.record_outcome(
        db=db, settings=test_settings, case_id=case.id, outcome=outcome, actor=None, now=later
    )
    assert first is case and second is None
    assert case.status == "dispatched" and case.department_id == dept.id and case.intake_done_at == later
    assert [e.kind for e in case.events] == ["submitted", "dispatched"]
    assert case.events[-1].actor_role == "system"  # the job records for nobody in particular
    assert case.id not in intake.pending_intake_ids(db=db, received_before=later)


def test_staff_naming_the_department_leave_nothing_to_decide(db: Session, test_settings: Settings) -> None:
    dept = factories.make_department(db)
    enterprise = factories.make_enterprise(db)
    boss = principal_for_user(factories.make_user(db, role=Role.supervisor))
    now = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
    case = _received(
        db, test_settings, boss, now, channel="hotline", enterprise_id=enterprise.id, department_id=dept.id
    )
    assert case.status == "dispatched" and case.routing_method == "manual" and case.intake_done_at == now
    assert intake.pending_intake_ids(db=db, received_before=now + dt.timedelta(hours=1)) == []


def test_whole_intake_in_one_transaction_records_the_outcome(db: Session, test_settings: Settings) -> None:
    firm = principal_for_user(factories.make_user(db, role=Role.enterprise))
    case = intake.submit_case(
        db=db, matcher=None, settings=test_settings, actor=firm, case_in=CaseIn(kind="help", content=COMPLAINT)
    )
    assert case.status == "dispatched" and case.intake_done_at is not None


@pytest.fixture
def busy() -> Iterator[None]:
    """Every answer slot taken, as under a burst of submissions; no waiting for one."""
    wait = flows.ANSWER_WAIT_SECONDS
    flows.ANSWER_WAIT_SECONDS = 0.01
    held = 0
    while flows.answer_slots.acquire(blocking=False):
        held += 1
    try:
        yield
    finally:
        for _ in range(held):
            flows.answer_slots.release()
        flows.ANSWER_WAIT_SECONDS = wait


def test_a_busy_process_acknowledges_at_once_and_the_outcome_follows(  # type: ignore[no-untyped-def]
    db: Session, client: TestClient, test_settings: Settings, busy: None
) -> None:
    dept = factories.make_department(db)
    policy = factories.make_policy(db, publish=True, department=dept)
    user = factories.make_user(db, role=Role.enterprise)
    token = security.create_access_token(settings=test_settings, subject=str(user.id))
    body = {"kind": "complaint", "content": COMPLAINT, "related_policy_id": policy.id}
    r = client.post("/api/v1/desk/cases", json=body, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 201, r.text
    ack = r.json()
    assert ack["status"] == "submitted" and ack["number"].startswith("HQ") and ack["department"] is None
    assert ack["close_due_at"] is not None and [e["kind"] for e in ack["events"]] == ["submitted"]
    client.cookies.set(SESSION_COOKIE, token)
    page = client.get(f"/me/cases/{ack['id']}?new=1")
    assert "系统正在分析您的诉求" in page.text and ack["number"] in page.text

    case = db.get(Case, ack["id"])
    assert case is not None and case.intake_done_at is None
    outcome = intake.decide(db=db, matcher=None, settings=test_settings, case=case)
    intake.record_outcome(
        db=db, settings=test_settings, case_id=case.id, outcome=outcome, actor=None, now=case.created_at
    )
    later = client.get(f"/api/v1/desk/cases/{ack['id']}", headers={"Authorization": f"Bearer {token}"}).json()
    assert later["status"] == "dispatched" and later["department"]["id"] == dept.id
    assert [e["kind"] for e in later["events"]] == ["submitted", "dispatched"]


def test_the_intake_job_is_registered() -> None:
    load_job_modules()
    spec = registry.get("desk.finish_intake")
    assert spec is not None and spec.func_ref == "desk.jobs:finish_intake_job"
    assert spec.trigger == "interval" and spec.trigger_args == {"minutes": 1}
