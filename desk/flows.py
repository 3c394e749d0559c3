"""Staged intake: the desk's one flow that commits, so a submission never holds the database while it thinks.

A request used to write its case in one transaction that also embedded the question, searched the
knowledge base and ran the routing classifier; on SQLite that transaction holds the only write lock
throughout, and a burst of submissions queued behind it until "database is locked". Here intake
runs the stages of :mod:`desk.intake` in transactions of their own:

(a) check the submission and resolve its idempotency key (reads, in the request's read transaction);
(b) write the case in a short write transaction and commit it — the acknowledgement (case number,
    status ``submitted``, clocks running from receipt);
(c) compute the instant answer and the routing with no write transaction open (reads only);
(d) record them in a second short write transaction, exactly once (:func:`desk.intake.record_outcome`).

The response carries the outcome when (c) and (d) ran in time; a process holds at most
:data:`ANSWER_SLOTS` computations at once, and a request that cannot get a slot within
:data:`ANSWER_WAIT_SECONDS` answers with the acknowledgement alone. The ``desk.finish_intake`` job
(:func:`finish_pending`, every minute) records the outcome of every case left without one — by a
busy process or by one that died between (b) and (d).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from auth.service import Principal
from core.config import Settings
from core.db import Database, utcnow, write_stage
from core.scheduler import ItemsReport, run_items
from desk import intake
from desk.models import Case
from desk.schemas import CaseIn

if TYPE_CHECKING:
    from matcher.engine import Matcher

log = logging.getLogger(__name__)

# Instant answers and routing computed at once per process (2 cores: more only queue for the CPU).
ANSWER_SLOTS = 2
# How long an acknowledged submission waits for a slot before answering without its outcome.
ANSWER_WAIT_SECONDS = 1.0
# Cases younger than this are left to the request that made them (it may still be computing).
PENDING_GRACE = dt.timedelta(seconds=15)

answer_slots = threading.BoundedSemaphore(ANSWER_SLOTS)


def submit(
    *,
    db: Session,
    matcher: Matcher | None,
    settings: Settings,
    actor: Principal | None,
    case_in: CaseIn,
) -> Case:
    """File a case in stages and commit each: acknowledged first, then answered or routed when there is time.

    For a route marked ``core.deps.writes_in_stages`` (its session begins as a reader). Returns the
    case, ``replayed`` for a repeated idempotency key; its status is still ``submitted`` when the
    outcome is left to the job.
    """
    now = utcnow()
    case = intake.prepare(db=db, settings=settings, actor=actor, case_in=case_in, now=now)
    if case.replayed:
        return case
    with write_stage(db):
        case = intake.receive(
            db=db, settings=settings, actor=actor, case=case, department_id=case_in.department_id, now=now
        )
    if case.replayed or case.intake_done_at is not None:
        return case
    if not answer_slots.acquire(timeout=ANSWER_WAIT_SECONDS):
        log.info("intake of %s acknowledged; its answer and routing are left to desk.finish_intake", case.number)
        return case
    try:
        outcome = intake.decide(db=db, matcher=matcher, settings=settings, case=case)
    except Exception:
        log.exception("intake of %s: answer or routing failed; desk.finish_intake retries it", case.number)
        db.rollback()
        return case
    finally:
        answer_slots.release()
    try:
        with write_stage(db):
            intake.record_outcome(db=db, settings=settings, case_id=case.id, outcome=outcome, actor=actor, now=utcnow())
    except Exception:
        log.exception("intake of %s: recording the outcome failed; desk.finish_intake retries it", case.number)
    return case


def finish_pending(
    *,
    database: Database,
    matcher: Matcher | None,
    settings: Settings,
    now: dt.datetime | None = None,
    grace: dt.timedelta = PENDING_GRACE,
) -> ItemsReport:
    """Record the intake outcome of acknowledged cases left without one; each case on its own, exactly once."""
    now = now or utcnow()
    with database.session() as session:
        ids = intake.pending_intake_ids(db=session, received_before=now - grace)

    def finish(case_id: int) -> None:
        session = database.sessionmaker()
        try:
            case = session.get(Case, case_id)
            if case is None or case.intake_done_at is not None:
                return
            outcome = intake.decide(db=session, matcher=matcher, settings=settings, case=case)
            with write_stage(session):
                done = intake.record_outcome(
                    db=session, settings=settings, case_id=case_id, outcome=outcome, actor=None, now=utcnow()
                )
            if done is not None:
                log.info("desk.finish_intake: %s %s", done.number, done.status)
        finally:
            session.close()

    return run_items(ids, finish, name="desk.finish_intake", key=str)
