"""The case's state machine, its one transition helper, the timeline, and who may see and act on a case.

State machine (every change goes through :data:`TRANSITIONS` and appends a :class:`CaseEvent`)::

    submitted ─answer→ answered ─accept_answer→ closed
        │                  └─ask_for_person→ dispatched (the instant answer stays attached)
        └─dispatch→ dispatched (to a department, or the central queue when department_id is None)
    dispatched ─assign→ dispatched (from the central queue, by a dispatcher)
    dispatched|accepted|in_progress ─transfer→ dispatched (another department, 转办)
    dispatched|accepted|in_progress ─return (approved 退单)→ dispatched in the central queue
    dispatched ─accept→ accepted ─reply→ in_progress ─resolve→ resolved
    resolved ─rate_ok→ rated ─close→ closed
    resolved ─rate_bad→ reopened (督办) ─reply→ in_progress … ─resolve→ resolved ─revisit (回访)→ resolved …
    resolved|rated|closed ─reopen (supervisor)→ reopened

Actions that keep the status (contact, pause, resume, extension and return requests, joint handling,
kind correction, notes) are in the same table with the status mapped to itself, so every action is
refused outside the states the table lists, with the code ``desk.illegal_transition``.

Every action goes through :func:`transition` (or its one-line form :func:`move`): it checks the table,
lets the action change the case, sets the new status, writes the timeline event and moves the clocks.

Who may act: the firm on its own case (accept or reject the instant answer, rate); the lead
department's desk officers (accept, contact, reply, resolve, pause, extension and return requests,
transfer, joint handling); supervisors and admins (everything a department can, plus dispatch from
the central queue, decisions on returns and extensions, reopening, closing). Desk officers of an
assisting (会办) department see the case and may add notes.

The operations are split by stage: :mod:`desk.intake` (submitting), :mod:`desk.handling` (the
department's work), :mod:`desk.outcome` (answers accepted, ratings, closing, reopening),
:mod:`desk.queries` (lists and what a firm may see), :mod:`desk.faq`. They never commit; the
request dependency or ``session_scope`` does (the staged intake in :mod:`desk.flows` is the exception).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from auth.models import Role
from auth.service import Principal
from catalog.models import Department
from core import events
from core.config import Settings
from core.db import utcnow
from core.errors import FieldError, InvalidState, NotFound, PermissionDenied, ValidationFailed
from desk.clock import ClockMove, move_clocks
from desk.models import STATUS_LABELS, Case, CaseDepartment, CaseEvent, CaseStatus, EventKind

S = CaseStatus

# ---------------------------------------------------------------- the state machine

# action → {from status: to status}. Actions mapping a status to itself change no status but are
# only allowed in the listed states.
TRANSITIONS: dict[str, dict[CaseStatus, CaseStatus]] = {
    "answer": {S.submitted: S.answered},
    "dispatch": {S.submitted: S.dispatched},
    "accept_answer": {S.answered: S.closed},
    "ask_for_person": {S.answered: S.dispatched},
    "assign": {S.dispatched: S.dispatched},
    "transfer": {S.dispatched: S.dispatched, S.accepted: S.dispatched, S.in_progress: S.dispatched},
    "return": {S.dispatched: S.dispatched, S.accepted: S.dispatched, S.in_progress: S.dispatched},
    "accept": {S.dispatched: S.accepted},
    "reply": {S.accepted: S.in_progress, S.in_progress: S.in_progress, S.reopened: S.in_progress},
    "resolve": {S.accepted: S.resolved, S.in_progress: S.resolved, S.reopened: S.resolved},
    "rate_ok": {S.resolved: S.rated, S.closed: S.closed},
    "rate_bad": {S.resolved: S.reopened, S.closed: S.reopened},
    "rate_answer_bad": {S.closed: S.dispatched},  # a late 不满意 on an accepted instant answer: to a person
    "close": {S.rated: S.closed, S.resolved: S.closed},
    "reopen": {S.resolved: S.reopened, S.rated: S.reopened, S.closed: S.reopened},
    "revisit": {S.resolved: S.resolved, S.rated: S.rated, S.closed: S.closed},
    # status-keeping actions
    "contact": {S.accepted: S.accepted, S.in_progress: S.in_progress, S.reopened: S.reopened},
    "request_return": {S.dispatched: S.dispatched, S.accepted: S.accepted, S.in_progress: S.in_progress},
    "reject_return": {S.dispatched: S.dispatched, S.accepted: S.accepted, S.in_progress: S.in_progress},
    "request_extension": {S.accepted: S.accepted, S.in_progress: S.in_progress, S.reopened: S.reopened},
    "decide_extension": {S.accepted: S.accepted, S.in_progress: S.in_progress, S.reopened: S.reopened},
    "add_joint": {
        S.dispatched: S.dispatched,
        S.accepted: S.accepted,
        S.in_progress: S.in_progress,
        S.reopened: S.reopened,
    },
    "pause": {S.accepted: S.accepted, S.in_progress: S.in_progress, S.reopened: S.reopened},
    "resume": {S.accepted: S.accepted, S.in_progress: S.in_progress, S.reopened: S.reopened},
    "correct_kind": {s: s for s in CaseStatus if s != S.closed},
    "note": {s: s for s in CaseStatus},
    "promote": {S.resolved: S.resolved, S.rated: S.rated, S.closed: S.closed},
}

ACTION_LABELS: dict[str, str] = {
    "answer": "即时答复",
    "dispatch": "分拨",
    "accept_answer": "采纳即时答复",
    "ask_for_person": "转人工办理",
    "assign": "人工分拨",
    "transfer": "转办",
    "return": "退单",
    "accept": "签收",
    "reply": "阶段性答复",
    "resolve": "办结",
    "rate_ok": "评价",
    "rate_bad": "评价",
    "rate_answer_bad": "评价",
    "close": "关闭",
    "reopen": "重新办理",
    "revisit": "回访",
    "contact": "登记联系企业",
    "request_return": "申请退单",
    "reject_return": "驳回退单",
    "request_extension": "申请延期",
    "decide_extension": "审批延期",
    "add_joint": "增加会办部门",
    "pause": "挂起",
    "resume": "恢复计时",
    "correct_kind": "更正诉求类型",
    "note": "添加备注",
    "promote": "收录为常见问题",
}

OPEN_STATUSES = frozenset({S.submitted, S.answered, S.dispatched, S.accepted, S.in_progress, S.reopened})
SUPERVISORS = frozenset({Role.supervisor, Role.admin})

# Event kinds the firm sees in its timeline unless the caller says otherwise.
FIRM_VISIBLE: frozenset[str] = frozenset(
    {
        EventKind.submitted,
        EventKind.answered_instantly,
        EventKind.accepted_answer,
        EventKind.asked_for_person,
        EventKind.dispatched,
        EventKind.assigned,
        EventKind.transferred,
        EventKind.accepted,
        EventKind.contacted,
        EventKind.replied,
        EventKind.resolved,
        EventKind.rated,
        EventKind.closed,
        EventKind.reopened,
        EventKind.revisited,
        EventKind.extension_approved,
        EventKind.joint_added,
        EventKind.paused,
        EventKind.resumed,
        EventKind.kind_corrected,
    }
)


class IllegalTransition(InvalidState):
    """An action the case's current status does not allow."""

    code = "desk.illegal_transition"
    message = "当前状态不允许此操作"


def status_label(status: str) -> str:
    """Return the Chinese name of a status."""
    return STATUS_LABELS.get(status, status)


def allowed(case: Case, action: str) -> bool:
    """Tell whether the table allows `action` from the case's status (for offering actions on pages)."""
    return CaseStatus(case.status) in TRANSITIONS[action]


def check_transition(case: Case, action: str) -> CaseStatus:
    """Return the status `action` leads to from the case's status, or raise IllegalTransition."""
    table = TRANSITIONS[action]
    current = CaseStatus(case.status)
    target = table.get(current)
    if target is None:
        targets = list(dict.fromkeys(table.values()))
        goal = "、".join(f"“{status_label(t)}”" for t in targets)
        allowed_from = "、".join(f"“{status_label(s)}”" for s in table)
        raise IllegalTransition(
            f"工单当前为“{status_label(current)}”，不能{ACTION_LABELS[action]}（转为{goal}）；"
            f"仅{allowed_from}状态可以{ACTION_LABELS[action]}",
            errors=[
                FieldError("status", f"“{status_label(current)}”状态不能{ACTION_LABELS[action]}", "illegal_transition")
            ],
        )
    return target


# ---------------------------------------------------------------- the timeline


def _actor_fields(actor: Principal | None) -> dict[str, Any]:
    if actor is None:
        return {"actor_id": None, "actor_role": "system", "actor_name": "系统"}
    return {
        "actor_id": actor.user_id,
        "actor_role": "api_key" if actor.via_api_key else str(actor.role),
        "actor_name": actor.name,
    }


# Timeline events the firm is told of at once (inbox and its chosen channels), with the case link.
FIRM_NEWS = frozenset({EventKind.replied, EventKind.resolved, EventKind.transferred, EventKind.extension_approved})


def _tell_the_firm(db: Session, case: Case, event: CaseEvent) -> None:
    """Announce a firm-visible reply, resolution, transfer or delay (push delivers it; see push.subscribers)."""
    if event.kind not in FIRM_NEWS or not event.visible_to_firm or case.enterprise_id is None:
        return
    department = db.get(Department, case.department_id) if case.department_id is not None else None
    events.emit(
        events.CaseUpdated(
            db=db,
            case_id=case.id,
            event_id=event.id,
            enterprise_id=case.enterprise_id,
            kind=event.kind,
            number=case.number,
            title=case.title,
            note=event.note,
            department_name=department.name if department is not None else None,
            at=event.at,
        )
    )


def add_event(
    db: Session,
    case: Case,
    kind: EventKind | str,
    actor: Principal | None,
    *,
    note: str | None = None,
    data: dict[str, Any] | None = None,
    visible_to_firm: bool | None = None,
    from_status: str | None = None,
    to_status: str | None = None,
    department_id: int | None = None,
    at: dt.datetime | None = None,
) -> CaseEvent:
    """Append one event to the case's timeline (the only way the timeline grows)."""
    event = CaseEvent(
        case=case,
        kind=str(kind),
        note=note,
        data=data or {},
        visible_to_firm=(kind in FIRM_VISIBLE) if visible_to_firm is None else visible_to_firm,
        from_status=from_status if from_status is not None else case.status,
        to_status=to_status if to_status is not None else case.status,
        department_id=department_id if department_id is not None else case.department_id,
        at=at or utcnow(),
        **_actor_fields(actor),
    )
    db.add(event)
    if event.kind in FIRM_NEWS and event.visible_to_firm and case.enterprise_id is not None:
        db.flush()  # the notice names the event
        _tell_the_firm(db, case, event)
    return event


# ---------------------------------------------------------------- the one transition helper


@dataclass
class Step:
    """A transition under way: the status it leads to, how it will be recorded and how the clocks move."""

    db: Session
    case: Case
    action: str
    before: str
    target: CaseStatus
    kind: EventKind
    actor: Principal | None
    settings: Settings
    now: dt.datetime
    note: str | None = None
    data: dict[str, Any] | None = None
    visible_to_firm: bool | None = None
    clocks: ClockMove = "refresh"
    clocks_moved: bool = False
    event: CaseEvent | None = None
    department_id: int | None = None  # the department acting, when not the case's lead after the step (转办)

    def describe(
        self, note: str | None, *, data: dict[str, Any] | None = None, visible_to_firm: bool | None = None
    ) -> None:
        """Set the note and data of the event that will record the transition."""
        self.note = note
        if data is not None:
            self.data = data
        if visible_to_firm is not None:
            self.visible_to_firm = visible_to_firm

    def move_clocks(self) -> None:
        """Set the new status and move the clocks now (when the event must name the new due times)."""
        self.case.status = self.target
        move_clocks(self.case, self.clocks, settings=self.settings, now=self.now)
        self.clocks_moved = True


@contextmanager
def transition(
    db: Session,
    case: Case,
    action: str,
    kind: EventKind,
    *,
    actor: Principal | None,
    settings: Settings,
    now: dt.datetime,
    note: str | None = None,
    data: dict[str, Any] | None = None,
    visible_to_firm: bool | None = None,
    clocks: ClockMove = "refresh",
) -> Iterator[Step]:
    """Check `action` against TRANSITIONS, let the block change the case, then record the transition.

    On leaving the block: the case takes the new status, its clocks move (`clocks`: refresh the stored
    colour, recompute the due times, or restart them from `now`), and one event of `kind` records
    the change with both statuses. Nothing is recorded when the check or the block raises.
    """
    step = Step(
        db=db,
        case=case,
        action=action,
        before=case.status,
        target=check_transition(case, action),
        kind=kind,
        actor=actor,
        settings=settings,
        now=now,
        note=note,
        data=data,
        visible_to_firm=visible_to_firm,
        clocks=clocks,
    )
    yield step
    case.status = step.target
    case.updated_at = now
    if not step.clocks_moved:
        move_clocks(case, step.clocks, settings=settings, now=now)
    step.event = add_event(
        db,
        case,
        kind,
        actor,
        note=step.note,
        data=step.data,
        visible_to_firm=step.visible_to_firm,
        from_status=step.before,
        to_status=step.target,
        department_id=step.department_id,
        at=now,
    )
    db.flush()


def move(
    db: Session,
    case: Case,
    action: str,
    kind: EventKind,
    *,
    actor: Principal | None,
    settings: Settings,
    now: dt.datetime,
    note: str | None = None,
    data: dict[str, Any] | None = None,
    visible_to_firm: bool | None = None,
    clocks: ClockMove = "refresh",
) -> CaseEvent:
    """Apply a transition that changes nothing else (the one-line form of :func:`transition`)."""
    with transition(
        db,
        case,
        action,
        kind,
        actor=actor,
        settings=settings,
        now=now,
        note=note,
        data=data,
        visible_to_firm=visible_to_firm,
        clocks=clocks,
    ) as step:
        pass
    assert step.event is not None
    return step.event


# ---------------------------------------------------------------- who may see and act


def is_supervisor(actor: Principal | None) -> bool:
    """Tell whether the actor decides like a supervisor (supervisors, admins and the system)."""
    return actor is None or actor.role in SUPERVISORS


def handler_department_ids(case: Case) -> set[int]:
    """Return the departments handling the case: the lead and the assisting (会办) ones."""
    return {d.department_id for d in case.departments} | ({case.department_id} if case.department_id else set())


def can_see(case: Case, actor: Principal | None) -> bool:
    """Tell whether the actor may see the case at all (firms: their own; desk: their department's, joint incl.)."""
    if actor is None or actor.role in SUPERVISORS or actor.role == Role.curator:
        return True
    if actor.via_api_key:
        return case.api_key_id == actor.id
    if actor.role == Role.enterprise:
        return actor.enterprise_id is not None and case.enterprise_id == actor.enterprise_id
    if actor.role == Role.desk:
        return actor.department_id is not None and actor.department_id in handler_department_ids(case)
    return False


def get_case(*, db: Session, case_id: int, actor: Principal | None) -> Case:
    """Return a case the actor may see, or raise NotFound (also for cases outside the actor's scope)."""
    case = db.get(Case, case_id)
    if case is None or not can_see(case, actor):
        raise NotFound("工单不存在", code="desk.case_not_found")
    return case


def require_handler(case: Case, actor: Principal | None, what: str) -> None:
    """Admit the lead department's desk officers, supervisors and admins."""
    if is_supervisor(actor):
        return
    assert actor is not None
    if actor.role == Role.desk and not actor.via_api_key and case.department_id == actor.department_id:
        return
    raise PermissionDenied(f"只有承办部门或督办人员可以{what}", code="desk.not_handler")


def require_supervisor(actor: Principal | None, what: str) -> None:
    """Admit supervisors and admins."""
    if not is_supervisor(actor):
        raise PermissionDenied(f"只有督办人员或管理员可以{what}", code="desk.not_supervisor")


def require_firm(case: Case, actor: Principal | None, what: str) -> None:
    """Admit the firm that filed the case."""
    if actor is None:
        return
    if actor.role != Role.enterprise or actor.enterprise_id != case.enterprise_id:
        raise PermissionDenied(f"只有提交诉求的企业可以{what}", code="desk.not_owner")


# ---------------------------------------------------------------- departments


def department(db: Session, department_id: int, field: str = "department_id") -> Department:
    """Return a department named in a request, or refuse the field."""
    dept = db.get(Department, department_id)
    if dept is None:
        raise ValidationFailed(errors=[FieldError(field, f"部门 {department_id} 不存在", "unknown_department")])
    return dept


def set_lead(db: Session, case: Case, department_id: int | None, now: dt.datetime) -> None:
    """Make a department the lead (or clear it for the central queue), keeping assisting ones."""
    for row in list(case.departments):
        if row.role == "lead" or row.department_id == department_id:
            case.departments.remove(row)
    db.flush()
    case.department_id = department_id
    if department_id is not None:
        case.departments.append(CaseDepartment(department_id=department_id, role="lead", added_at=now))


def department_data(db: Session, department_id: int | None) -> dict[str, Any]:
    """Return a department's code and name for event data (the central queue when None)."""
    if department_id is None:
        return {"department": None, "department_name": "统一分拨中心"}
    dept = db.get(Department, department_id)
    return {"department": dept.code if dept else None, "department_name": dept.name if dept else None}
