"""The SLA scan: yellow → orange → red on the official calendar, one event per level, one email per recipient."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select
from sqlalchemy.orm import Session

from auth.models import Role, User
from auth.service import Principal, principal_for_user
from core import migrate
from core.config import Settings
from core.db import Database
from core.scheduler import load_job_modules, registry
from desk import handling, intake, jobs, outcome
from desk.models import Case, CaseEvent
from desk.schemas import CaseIn
from tests import factories
from tests.support.mailbox import Mailbox, free_port, smtp_server

CST = ZoneInfo("Asia/Shanghai")
# Xuzhou "135": a consultation is closed within 1 working day. Received Tuesday 2026-09-29 10:00, it is due
# Wednesday 09-30 18:00, the last working day before 国庆 (10-01 … 10-07 off; Saturday 10-10 is a make-up
# working day, Sunday 10-11 is off).
RECEIVED = dt.datetime(2026, 9, 29, 10, 0, tzinfo=CST)
DUE = dt.datetime(2026, 9, 30, 18, 0, tzinfo=CST)
RED_ADDRESS = "jjjc@discipline.example"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    with smtp_server() as served:
        yield served


def _settings(base: Settings, port: int | None, **kw: Any) -> Settings:
    smtp = {"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_sender": "惠企服务 <noreply@huiqi.example>"}
    return base.model_copy(
        update={
            "desk_sla_profile": "xuzhou_135",
            "desk_red_alert_email": RED_ADDRESS,
            **(smtp if port else {"smtp_host": None, "smtp_sender": None}),
            **kw,
        }
    )


@dataclass
class World:
    db: Session
    dept_id: int
    supervisor: Principal
    desk_email: str
    supervisor_email: str


def _world(db: Session) -> World:
    n = factories.n()
    dept = factories.make_department(db)
    other = factories.make_department(db)
    desk_email, sup_email = f"desk{n}@dept.example", f"sup{n}@yshj.example"
    factories.make_user(db, role=Role.desk, department_id=dept.id, email=desk_email, display_name="王专员")
    factories.make_user(db, role=Role.desk, department_id=dept.id, display_name="无邮箱专员")  # told of nothing
    factories.make_user(db, role=Role.desk, department_id=other.id, email=f"other{n}@dept.example")
    sup = factories.make_user(db, role=Role.supervisor, email=sup_email, display_name="李督办")
    return World(db, dept.id, principal_for_user(sup), desk_email, sup_email)


def _submit(world: World, settings: Settings, now: dt.datetime = RECEIVED) -> Case:
    case_in = CaseIn(
        kind="consultation",
        title="稳岗返还什么时候到账",
        content="我们去年没有裁员，稳岗返还什么时候到账？",
        channel="hotline",
        department_id=world.dept_id,
    )
    return intake.submit_case(
        db=world.db, matcher=None, settings=settings, actor=world.supervisor, case_in=case_in, now=now
    )


def _scan_at(when: dt.datetime, settings: Settings, db: Session) -> jobs.ScanReport:
    with time_machine.travel(when, tick=False):
        return jobs.sla_scan(settings=settings, db=db)


def _escalations(db: Session, case: Case) -> list[CaseEvent]:
    events = db.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id, CaseEvent.kind == "escalated"))
    return sorted(events, key=lambda e: e.id)


def _notes(db: Session, case: Case) -> list[CaseEvent]:
    events = db.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id, CaseEvent.kind == "note"))
    return [e for e in events if "notification_for" in (e.data or {})]


def _ours(handler: Mailbox, world: World) -> list[tuple[str, str, str]]:
    mine = {world.desk_email, world.supervisor_email, RED_ADDRESS}
    return [m for m in handler.mails() if m[0] in mine]


def test_the_scan_job_is_registered() -> None:
    load_job_modules()
    spec = registry.get("desk.sla_scan")
    assert spec is not None and spec.func_ref == "desk.jobs:sla_scan_job"
    assert spec.trigger == "interval" and spec.trigger_args == {"minutes": 5}


def test_yellow_orange_red_across_national_day_each_once(
    db: Session, test_settings: Settings, smtp: tuple[Mailbox, int]
) -> None:
    handler, port = smtp
    settings = _settings(test_settings, port)
    world = _world(db)
    case = _submit(world, settings)
    assert case.close_due_at == DUE

    # Before the deadline: nothing.
    _scan_at(dt.datetime(2026, 9, 30, 17, 0, tzinfo=CST), settings, db)
    assert case.escalation_level == 0 and case.sla_state in ("on_track", "due_soon")
    assert _escalations(db, case) == [] and _ours(handler, world) == []

    # Just overdue: yellow, the department's officer with an email is told.
    _scan_at(dt.datetime(2026, 9, 30, 18, 5, tzinfo=CST), settings, db)
    assert (case.sla_state, case.escalation_level) == ("yellow", 1)
    assert [m[0] for m in _ours(handler, world)] == [world.desk_email]
    assert "黄色预警" in _ours(handler, world)[0][1] and case.number in _ours(handler, world)[0][1]
    [yellow] = _escalations(db, case)
    assert yellow.data["level"] == 1 and yellow.data["stage"] == "close" and not yellow.visible_to_firm
    assert yellow.data["without_email"] == ["无邮箱专员"]

    # The whole National Day holiday and the weekend after it are not working days: still yellow, nothing new.
    for when in (dt.datetime(2026, 10, 5, 12, 0), dt.datetime(2026, 10, 10, 12, 0)):
        _scan_at(when.replace(tzinfo=CST), settings, db)
        assert (case.sla_state, case.escalation_level) == ("yellow", 1)
    assert len(_escalations(db, case)) == 1 and len(_ours(handler, world)) == 1

    # 3 working days past due (10-08, 10-09 and the make-up Saturday 10-10): orange, supervisors too.
    _scan_at(dt.datetime(2026, 10, 10, 18, 5, tzinfo=CST), settings, db)
    assert (case.sla_state, case.escalation_level) == ("orange", 2)
    assert sorted(m[0] for m in _ours(handler, world)[1:]) == sorted([world.desk_email, world.supervisor_email])

    # Sunday 10-11 is off; Monday 12:00 is 3.4 working days: still orange. Tuesday 10-13 18:00 is 5: red.
    _scan_at(dt.datetime(2026, 10, 13, 12, 0, tzinfo=CST), settings, db)
    assert case.sla_state == "orange" and len(_ours(handler, world)) == 3
    _scan_at(dt.datetime(2026, 10, 13, 18, 1, tzinfo=CST), settings, db)
    assert (case.sla_state, case.escalation_level) == ("red", 3)
    red_mails = _ours(handler, world)[3:]
    assert sorted(m[0] for m in red_mails) == sorted([world.desk_email, world.supervisor_email, RED_ADDRESS])
    assert all("红色预警" in subject for _, subject, _ in red_mails)

    # Scanning again changes nothing: one event per level, one email per recipient and level.
    _scan_at(dt.datetime(2026, 10, 14, 9, 0, tzinfo=CST), settings, db)
    assert [e.data["level"] for e in _escalations(db, case)] == [1, 2, 3]
    assert len(_ours(handler, world)) == 6
    assert len({m[2] for m in _ours(handler, world)}) == 6  # distinct Message-IDs
    notes = _notes(db, case)
    assert len(notes) == 3 and all(r["status"] == "sent" for n in notes for r in n.data["results"])
    assert "纪检监察" in notes[-1].note


def test_a_scan_after_downtime_writes_every_level_and_mails_once(
    db: Session, test_settings: Settings, smtp: tuple[Mailbox, int]
) -> None:
    handler, port = smtp
    settings = _settings(test_settings, port)
    world = _world(db)
    case = _submit(world, settings)
    _scan_at(dt.datetime(2026, 10, 20, 10, 0, tzinfo=CST), settings, db)
    assert [e.data["level"] for e in _escalations(db, case)] == [1, 2, 3]
    # Only the red event carries recipients: each person gets one mail, not three.
    assert [bool(e.data["recipients"]) for e in _escalations(db, case)] == [False, False, True]
    assert sorted(m[0] for m in _ours(handler, world)) == sorted(
        [world.desk_email, world.supervisor_email, RED_ADDRESS]
    )


def test_unreachable_smtp_is_retried_on_the_next_scan(
    db: Session, test_settings: Settings, smtp: tuple[Mailbox, int]
) -> None:
    handler, port = smtp
    world = _world(db)
    down = _settings(test_settings, free_port())
    case = _submit(world, down)
    report = _scan_at(dt.datetime(2026, 9, 30, 18, 30, tzinfo=CST), down, db)
    assert report.pending == 1 and report.sent == 0
    assert len(_escalations(db, case)) == 1 and _notes(db, case) == []

    up = _settings(test_settings, port)
    report = _scan_at(dt.datetime(2026, 9, 30, 18, 35, tzinfo=CST), up, db)
    assert report.sent == 1 and [m[0] for m in _ours(handler, world)] == [world.desk_email]
    _scan_at(dt.datetime(2026, 9, 30, 18, 40, tzinfo=CST), up, db)
    assert len(_ours(handler, world)) == 1 and len(_notes(db, case)) == 1


def test_without_smtp_the_escalation_stands_and_the_failure_is_recorded_once(
    db: Session, test_settings: Settings
) -> None:
    settings = _settings(test_settings, None)
    world = _world(db)
    case = _submit(world, settings)
    _scan_at(dt.datetime(2026, 9, 30, 18, 30, tzinfo=CST), settings, db)
    _scan_at(dt.datetime(2026, 9, 30, 18, 45, tzinfo=CST), settings, db)
    assert case.escalation_level == 1 and len(_escalations(db, case)) == 1
    [note] = _notes(db, case)
    assert note.data["results"][0]["status"] == "dead" and "SMTP" in note.data["results"][0]["detail"]


def test_resolving_clears_the_colour_and_a_reopened_round_is_chased_again(
    db: Session, test_settings: Settings, smtp: tuple[Mailbox, int]
) -> None:
    handler, port = smtp
    settings = _settings(test_settings, port)
    world = _world(db)
    case = _submit(world, settings)
    _scan_at(dt.datetime(2026, 9, 30, 18, 30, tzinfo=CST), settings, db)
    assert case.escalation_level == 1

    late = dt.datetime(2026, 10, 8, 9, 30, tzinfo=CST)
    officer = principal_for_user(db.scalars(select(User).where(User.email == world.desk_email)).one())
    for fn, kw in ((handling.accept, {}), (handling.resolve, {"resolution": "已核实，本月底前到账。"})):
        fn(db=db, settings=settings, case_id=case.id, actor=officer, now=late, **kw)
    _scan_at(late + dt.timedelta(minutes=5), settings, db)
    assert (case.sla_state, case.escalation_level) == ("on_track", 0)

    # 不满意 reopens with fresh clocks (due the next working day); missing it is a new yellow.
    outcome.reopen(db=db, settings=settings, case_id=case.id, actor=world.supervisor, reason="企业不满意", now=late)
    assert case.close_due_at == dt.datetime(2026, 10, 9, 18, 0, tzinfo=CST)
    _scan_at(dt.datetime(2026, 10, 9, 18, 10, tzinfo=CST), settings, db)
    assert [e.data["level"] for e in _escalations(db, case) if e.data.get("reason") == "sla"] == [1, 1]
    assert [m[0] for m in _ours(handler, world)] == [world.desk_email, world.desk_email]


def test_the_job_path_commits_each_case_on_its_own(
    tmp_path: Any, test_settings: Settings, smtp: tuple[Mailbox, int]
) -> None:
    handler, port = smtp
    database = Database(f"sqlite:///{tmp_path / 'jobs.db'}")
    try:
        with database.engine.connect() as conn:
            migrate.upgrade(connection=conn)
        settings = _settings(test_settings, port)
        with database.session() as db:
            world = _world(db)
            case_id = _submit(world, settings).id
            second_id = _submit(world, settings).id
        with time_machine.travel(dt.datetime(2026, 10, 10, 18, 5, tzinfo=CST), tick=False):
            report = jobs.sla_scan(settings=settings, database=database)
        assert report.cases == 2 and report.failed_cases == [] and report.levels == {"yellow": 2, "orange": 2, "red": 0}
        assert report.sent == 4  # per case: the officer and the supervisor, for orange only
        with database.session() as db:
            for cid in (case_id, second_id):
                case = db.get(Case, cid)
                assert case is not None and (case.sla_state, case.escalation_level) == ("orange", 2)
                assert len(_escalations(db, case)) == 2 and len(_notes(db, case)) == 1
        assert len(handler.envelopes) == 4
    finally:
        database.dispose()
