"""Reading cases: filtered lists and queues, escalations, pending approvals, timelines, names, and the firm's view.

:func:`firm_view` is the one statement of what the firm that filed a case may see of it — the API
(:mod:`desk.router`) and the firm's pages (:mod:`web.firm_desk`) both show exactly that.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.sql.elements import ColumnElement

from auth.models import Role, User
from auth.service import Principal
from catalog.models import Department
from core.config import Settings
from core.db import utcnow
from desk.clock import CLOCK_STATUSES, active_due_expression
from desk.lifecycle import OPEN_STATUSES, SUPERVISORS
from desk.models import EVENT_LABELS, Case, CaseDepartment, CaseEvent, CaseStatus, EventKind
from profiles.models import Enterprise

S = CaseStatus

# ---------------------------------------------------------------- lists and queues


@dataclass
class CaseFilters:
    """Filters of the case list; every field optional."""

    status: list[str] | None = None
    kind: str | None = None
    channel: str | None = None
    department_id: int | None = None
    enterprise_id: int | None = None
    sla_state: str | None = None
    supervised: bool | None = None
    open_only: bool = False
    overdue: bool = False
    in_queue: bool = False  # central dispatch queue only
    q: str | None = None
    sort: str = "received"  # received (newest first) / due (earliest deadline first)


def _scoped(actor: Principal | None) -> ColumnElement[bool] | None:
    """Return the WHERE clause limiting cases to the actor's scope (None = everything)."""
    if actor is None or actor.role in SUPERVISORS or actor.role == Role.curator:
        return None
    if actor.via_api_key:
        return Case.api_key_id == actor.id
    if actor.role == Role.enterprise:
        return Case.enterprise_id == actor.enterprise_id if actor.enterprise_id else Case.id.is_(None)
    if actor.role == Role.desk and actor.department_id is not None:
        joint = exists().where(CaseDepartment.case_id == Case.id, CaseDepartment.department_id == actor.department_id)
        return or_(Case.department_id == actor.department_id, joint)
    return Case.id.is_(None)


def list_cases(
    *,
    db: Session,
    actor: Principal | None,
    filters: CaseFilters | None = None,
    offset: int = 0,
    limit: int = 50,
    now: dt.datetime | None = None,
) -> tuple[list[Case], int]:
    """Return a page of the cases the actor may see, filtered, and the total count."""
    f = filters or CaseFilters()
    now = now or utcnow()
    q = select(Case)
    scope = _scoped(actor)
    if scope is not None:
        q = q.where(scope)
    if f.status:
        q = q.where(Case.status.in_(f.status))
    if f.open_only:
        q = q.where(Case.status.in_([str(s) for s in OPEN_STATUSES]))
    if f.kind:
        q = q.where(Case.kind == f.kind)
    if f.channel:
        q = q.where(Case.channel == f.channel)
    if f.department_id is not None:
        q = q.where(
            or_(
                Case.department_id == f.department_id,
                exists().where(CaseDepartment.case_id == Case.id, CaseDepartment.department_id == f.department_id),
            )
        )
    if f.enterprise_id is not None:
        q = q.where(Case.enterprise_id == f.enterprise_id)
    if f.sla_state:
        q = q.where(Case.sla_state == f.sla_state)
    if f.supervised is not None:
        q = q.where(Case.supervised.is_(f.supervised))
    if f.in_queue:
        q = q.where(Case.department_id.is_(None), Case.status == S.dispatched)
    if f.overdue:
        q = q.where(Case.status.in_([str(s) for s in CLOCK_STATUSES]), active_due_expression() < now)
    if f.q:
        like = f"%{f.q.strip()}%"
        q = q.where(or_(Case.title.like(like), Case.content.like(like), Case.number.like(like)))
    total = db.scalar(select(func.count()).select_from(q.subquery())) or 0
    if f.sort == "due":
        due = active_due_expression()
        q = q.order_by(due.is_(None), due, Case.id)
    else:
        q = q.order_by(Case.received_at.desc(), Case.id.desc())
    items = list(db.scalars(q.options(selectinload(Case.departments)).offset(offset).limit(limit)))
    return items, total


def queue(
    *, db: Session, actor: Principal | None, offset: int = 0, limit: int = 50, now: dt.datetime | None = None
) -> tuple[list[Case], int]:
    """Return the open cases in the actor's scope whose clock runs, earliest deadline first."""
    filters = CaseFilters(status=[str(s) for s in CLOCK_STATUSES], sort="due")
    return list_cases(db=db, actor=actor, filters=filters, offset=offset, limit=limit, now=now)


def escalations(
    *, db: Session, actor: Principal | None, settings: Settings, offset: int = 0, limit: int = 50
) -> tuple[list[Case], int]:
    """Return open cases that are escalated (yellow and beyond), supervised or repeatedly reopened."""
    q = select(Case).where(
        Case.status.in_([str(s) for s in OPEN_STATUSES | {S.resolved}]),
        or_(
            Case.escalation_level > 0,
            Case.sla_state.in_(["yellow", "orange", "red"]),
            Case.supervised.is_(True),
            Case.reopen_count >= settings.desk_reopen_escalate_after,
        ),
    )
    scope = _scoped(actor)
    if scope is not None:
        q = q.where(scope)
    total = db.scalar(select(func.count()).select_from(q.subquery())) or 0
    q = q.order_by(Case.escalation_level.desc(), Case.reopen_count.desc(), Case.close_due_at, Case.id)
    return list(db.scalars(q.offset(offset).limit(limit))), total


def pending_approvals(
    *, db: Session, actor: Principal | None, offset: int = 0, limit: int = 50
) -> tuple[list[Case], int]:
    """Return cases with a return (退单) or extension (延期) request waiting for a decision."""
    q = select(Case).where(or_(Case.return_requested_at.is_not(None), Case.extension_requested_at.is_not(None)))
    scope = _scoped(actor)
    if scope is not None:
        q = q.where(scope)
    total = db.scalar(select(func.count()).select_from(q.subquery())) or 0
    first = func.coalesce(Case.return_requested_at, Case.extension_requested_at)
    return list(db.scalars(q.order_by(first, Case.id).offset(offset).limit(limit))), total


# ---------------------------------------------------------------- timelines and what a firm sees


def timeline(case: Case, actor: Principal | None) -> list[CaseEvent]:
    """Return the case's events the actor may read (firms: only those visible to the firm)."""
    events = list(case.events)
    if actor is not None and actor.role == Role.enterprise:
        events = [e for e in events if e.visible_to_firm]
    return events


def event_label(kind: str) -> str:
    """Return the Chinese label of an event kind."""
    return EVENT_LABELS.get(kind, kind)


# Fields of a case that are the desk's internals: a firm gets them empty.
FIRM_HIDDEN_FIELDS: Mapping[str, Any] = MappingProxyType(
    {
        "routing_candidates": None,
        "routing_confidence": None,
        "extension_request": None,
        "return_request": None,
        "extensions": [],
        "due_warnings": [],
        "external_ref": None,
        "visit_record": None,
    }
)


@dataclass(frozen=True)
class FirmEvent:
    """An event as the firm sees it: no event data, and a staff member's name left out."""

    id: int
    kind: str
    label: str
    at: dt.datetime
    note: str | None
    actor_role: str | None
    actor_name: str | None  # only the firm's own people and the system are named
    department_id: int | None
    from_status: str | None
    to_status: str | None


@dataclass(frozen=True)
class FirmView:
    """What the firm that filed a case may see of it, beyond the case's own public fields."""

    instant_answer: dict[str, Any] | None  # only an answer the desk was confident enough to give
    events: list[FirmEvent]  # only the events meant for the firm
    hidden: Mapping[str, Any] = field(default_factory=lambda: FIRM_HIDDEN_FIELDS)  # fields shown to the firm empty


def firm_answer(case: Case) -> dict[str, Any] | None:
    """Return the instant answer the firm was given: a confident one it was answered with; a draft below the
    threshold, or an answer recorded on a case that was routed instead, stays with staff."""
    answer = case.instant_answer
    given = any(e.kind == EventKind.answered_instantly for e in case.events)
    if given and isinstance(answer, dict) and answer.get("confident") and answer.get("text"):
        return answer
    return None


def firm_view(case: Case) -> FirmView:
    """Return what the firm may see of its case: the confident answer and the events meant for it."""
    events = [
        FirmEvent(
            id=e.id,
            kind=e.kind,
            label=event_label(e.kind),
            at=e.at,
            note=e.note,
            actor_role=e.actor_role,
            actor_name=e.actor_name if e.actor_role in ("enterprise", "system") else None,
            department_id=e.department_id,
            from_status=e.from_status,
            to_status=e.to_status,
        )
        for e in case.events
        if e.visible_to_firm
    ]
    return FirmView(instant_answer=firm_answer(case), events=events)


# ---------------------------------------------------------------- names for responses


def department_names(db: Session, ids: Iterable[int | None]) -> dict[int, Department]:
    """Return the departments of the given ids."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return {d.id: d for d in db.scalars(select(Department).where(Department.id.in_(wanted)))}


def enterprise_names(db: Session, ids: Iterable[int | None]) -> dict[int, str]:
    """Return the names of the given enterprises."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return dict(db.execute(select(Enterprise.id, Enterprise.name).where(Enterprise.id.in_(wanted))).tuples().all())


def desk_officer_emails(db: Session, department_id: int) -> list[str]:
    """Return the e-mail addresses of a department's active desk officers (for notifications)."""
    return [
        e
        for e in db.scalars(
            select(User.email).where(
                User.role == Role.desk, User.department_id == department_id, User.is_active.is_(True)
            )
        )
        if e
    ]
