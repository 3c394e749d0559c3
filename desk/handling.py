"""Handling: what departments and dispatchers do with a case between intake and its outcome.

Accept (签收), contact the firm, phased replies, resolve (办结), transfer (转办), return requests and
decisions (退单), extension requests and decisions (延期), joint handling (会办), pause and resume
(挂起), assignment from the central queue (人工分拨), kind correction and notes. Each one is a
transition of :data:`desk.lifecycle.TRANSITIONS` made through :func:`desk.lifecycle.transition`.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from auth.models import Role
from auth.service import Principal
from core.config import Settings
from core.db import utcnow
from core.errors import Conflict, FieldError, InvalidState, ValidationFailed
from desk import sla
from desk.clock import pause_allowance, recompute_due, site_calendar
from desk.lifecycle import (
    IllegalTransition,
    add_event,
    department,
    department_data,
    get_case,
    handler_department_ids,
    move,
    require_handler,
    require_supervisor,
    set_lead,
    transition,
)
from desk.models import Case, CaseDepartment, CasePause, EventKind, RoutingMethod
from desk.schemas import ExtensionIn

# ---------------------------------------------------------------- helpers


def end_open_pause(
    db: Session, case: Case, actor: Principal | None, now: dt.datetime, note: str, *, settings: Settings
) -> bool:
    """Close a pause still open and recompute the due times; return whether there was one."""
    open_pause = next((p for p in case.pauses if p.end is None), None)
    if open_pause is None:
        return False
    open_pause.end = max(now, open_pause.start)
    case.paused = False
    add_event(db, case, EventKind.resumed, actor, note=note, at=now)
    db.flush()
    recompute_due(case, settings=settings, now=now)
    return True


def clear_requests(case: Case) -> None:
    """Drop pending return and extension requests (the case moved on)."""
    case.return_request = None
    case.return_requested_at = None
    case.extension_request = None
    case.extension_requested_at = None


def _in_queue(what: str) -> IllegalTransition:
    return IllegalTransition(what, errors=[FieldError("status", "无承办部门", "in_queue")])


def _before_deadline(case: Case, now: dt.datetime, what: str) -> None:
    final = case.close_due_at or case.reply_due_at or case.contact_due_at
    if final is not None and now > final:
        raise InvalidState(
            f"已超过办结时限（{final.isoformat(timespec='minutes')}），不能{what}", code="desk.extension_too_late"
        )


# ---------------------------------------------------------------- dispatch, transfer, return, joint handling


def assign(
    *,
    db: Session,
    settings: Settings,
    case_id: int,
    actor: Principal | None,
    department_id: int,
    note: str | None = None,
    now: dt.datetime | None = None,
) -> Case:
    """A dispatcher sends a case from the central queue (统一分拨) to a department."""
    now = now or utcnow()
    case = get_case(db=db, case_id=case_id, actor=actor)
    require_supervisor(actor, "人工分拨")
    with transition(db, case, "assign", EventKind.assigned, actor=actor, settings=settings, now=now) as step:
        if case.department_id is not None:
            raise IllegalTransition(
                "工单已有承办部门，不在统一分拨队列中；如需改派请转办",
                errors=[FieldError("department_id", "工单已分拨至部门", "not_in_queue")],
            )
        dept = department(db, department_id)
        set_lead(db, case, dept.id, now)
        case.routing_method = RoutingMethod.manual
        case.dispatched_at = now
        step.describe(note or f"人工分拨至{dept.name}", data={"department": dept.code, "department_name": dept.name})
    return case


def transfer(
    *,
    db: Session,
    settings: Settings,
    case_id: int,
    actor: Principal | None,
    department_id: int,
    note: str | None = None,
    now: dt.datetime | None = None,
) -> Case:
    """Hand a case to another department (转办); it must accept it again. The clocks run on."""
    now = now or utcnow()
    case = get_case(db=db, case_id=case_id, actor=actor)
    require_handler(case, actor, "转办")
    with transition(db, case, "transfer", EventKind.transferred, actor=actor, settings=settings, now=now) as step:
        if department_id == case.department_id:
            raise ValidationFailed(errors=[FieldError("department_id", "不能转办给当前承办部门", "same_department")])
        dept = department(db, department_id)
        before = department_data(db, case.department_id)
        # The transferring department acts: the firm's timeline names it, not the receiving one.
        step.department_id = case.department_id
        end_open_pause(db, case, actor, now, "转办，恢复计时", settings=settings)
        clear_requests(case)
        set_lead(db, case, dept.id, now)
        case.routing_method = RoutingMethod.manual
        case.dispatched_at = now
        step.describe(
            note or f"转办至{dept.name}",
            data={"from": before["department"], "to": dept.code, "department_name": dept.name},
        )
    return case


def request_return(
    *,
    db: Session,
    settings: Settings,
    case_id: int,
    actor: Principal | None,
    reason: str,
    now: dt.datetime | None = None,
) -> Case:
    """The lead department asks to give a case back (退单) because it is not theirs, with a reason."""
    now = now or utcnow()
    case = get_case(db=db, case_id=case_id, actor=actor)
    require_handler(case, actor, "申请退单")
    with transition(
        db, case, "request_return", EventKind.return_requested, actor=actor, settings=settings, now=now, note=reason
    ):
        if case.department_id is None:
            raise _in_queue("工单在统一分拨队列中，无需退单")
        if case.return_request is not None:
            raise Conflict("已有待审批的退单申请", code="desk.return_pending")
        case.return_request = {
            "reason": reason,
            "requested_at": now.isoformat(),
            "requested_by_id": actor.user_id if actor else None,
            "department_id": case.department_id,
        }
        case.return_requested_at = now
    return case


def decide_return(
    *,
    db: Session,
    settings: Settings,
    case_id: int,
    actor: Principal | None,
    approve: bool,
    note: str | None = None,
    now: dt.datetime | None = None,
) -> Case:
    """A dispatcher decides a return request: approved → back to the central queue; rejected → stays."""
    now = now or utcnow()
    case = get_case(db=db, case_id=case_id, actor=actor)
    require_supervisor(actor, "审批退单")
    request = case.return_request
    if request is None:
        raise InvalidState("没有待审批的退单申请", code="desk.no_return_request")
    if not approve:
        with transition(
            db,
            case,
            "reject_return",
            EventKind.return_rejected,
            actor=actor,
            settings=settings,
            now=now,
            note=note or "退单申请被驳回",
        ):
            case.return_request = None
            case.return_requested_at = None
        return case
    with transition(
        db,
        case,
        "return",
        EventKind.returned,
        actor=actor,
        settings=settings,
        now=now,
        note=note or f"退单获批：{request['reason']}",
        data={"department_id": request.get("department_id")},
        visible_to_firm=False,
    ):
        end_open_pause(db, case, actor, now, "退单，恢复计时", settings=settings)
        clear_requests(case)
        set_lead(db, case, None, now)
        case.routing_method = RoutingMethod.dispatch
    return case


def add_joint(
    *,
    db: Session,
    settings: Settings,
    case_id: int,
    actor: Principal | None,
    department_id: int,
    note: str | None = None,
    now: dt.datetime | None = None,
) -> Case:
    """Add an assisting department (会办); the lead department stays responsible."""
    now = now or utcnow()
    case = get_case(db=db, case_id=case_id, actor=actor)
    require_handler(case, actor, "发起会办")
    with transition(db, case, "add_joint", EventKind.joint_added, actor=actor, settings=settings, now=now) as step:
        if case.department_id is None:
            raise _in_queue("工单尚无承办部门，请先分拨")
        dept = department(db, department_id)
        if dept.id in handler_department_ids(case):
            raise Conflict(f"{dept.name}已在办理此工单", code="desk.already_joint")
        case.departments.append(CaseDepartment(department_id=dept.id, role="assist", added_at=now))
        step.describe(note or f"{dept.name}参与会办", data={"department": dept.code, "department_name": dept.name})
    return case


# ---------------------------------------------------------------- handling by the department


def accept(
    *,
    db: Session,
    settings: Settings,
    case_id: int,
    actor: Principal | None,
    note: str | None = None,
    now: dt.datetime | None = None,
) -> Case:
    """The lead department accepts (签收) a dispatched case."""
    now = now or utcnow()
    case = get_case(db=db, case_id=case_id, actor=actor)
    require_handler(case, actor, "签收")
    if case.department_id is None:
        raise _in_queue("工单在统一分拨队列中，请先分拨到部门")
    with transition(
        db, case, "accept", EventKind.accepted, actor=actor, settings=settings, now=now, note=note or "承办部门已签收"
    ):
        case.accepted_at = case.accepted_at or now
    return case


def contact(
    *,
    db: Session,
    settings: Settings,
    case_id: int,
    actor: Principal | None,
    note: str | None = None,
    now: dt.datetime | None = None,
) -> Case:
    """Record that the department contacted the firm (stops the contact clock)."""
    now = now or utcnow()
    case = get_case(db=db, case_id=case_id, actor=actor)
    require_handler(case, actor, "登记联系企业")
    with transition(
        db, case, "contact", EventKind.contacted, actor=actor, settings=settings, now=now, note=note or "已联系企业"
    ):
        case.contacted_at = case.contacted_at or now
    return case


def reply(
    *,
    db: Session,
    settings: Settings,
    case_id: int,
    actor: Principal | None,
    note: str,
    now: dt.datetime | None = None,
) -> Case:
    """Give the firm a phased reply (阶段性答复); the first one stops the reply clock."""
    now = now or utcnow()
    case = get_case(db=db, case_id=case_id, actor=actor)
    require_handler(case, actor, "答复")
    if not note or not note.strip():
        raise ValidationFailed(errors=[FieldError("note", "答复内容不能为空", "required")])
    with transition(db, case, "reply", EventKind.replied, actor=actor, settings=settings, now=now, note=note):
        case.contacted_at = case.contacted_at or now
        case.first_reply_at = case.first_reply_at or now
    return case


def resolve(
    *,
    db: Session,
    settings: Settings,
    case_id: int,
    actor: Principal | None,
    resolution: str,
    now: dt.datetime | None = None,
) -> Case:
    """Give the final reply (办结); the firm is asked to rate it."""
    now = now or utcnow()
    case = get_case(db=db, case_id=case_id, actor=actor)
    require_handler(case, actor, "办结")
    if not resolution or not resolution.strip():
        raise ValidationFailed(errors=[FieldError("resolution", "办结答复不能为空", "required")])
    with transition(db, case, "resolve", EventKind.resolved, actor=actor, settings=settings, now=now, note=resolution):
        end_open_pause(db, case, actor, now, "办结，结束挂起", settings=settings)
        case.resolution = resolution
        case.contacted_at = case.contacted_at or now
        case.first_reply_at = case.first_reply_at or now
        case.resolved_at = now
        clear_requests(case)
    return case


def pause(
    *,
    db: Session,
    settings: Settings,
    case_id: int,
    actor: Principal | None,
    reason: str,
    now: dt.datetime | None = None,
) -> Case:
    """Stop the clocks while waiting on the firm (挂起); all pauses together are bounded by the profile."""
    now = now or utcnow()
    case = get_case(db=db, case_id=case_id, actor=actor)
    require_handler(case, actor, "挂起")
    with transition(
        db, case, "pause", EventKind.paused, actor=actor, settings=settings, now=now, note=reason, clocks="recompute"
    ) as step:
        if case.paused or any(p.end is None for p in case.pauses):
            raise InvalidState("工单已挂起", code="desk.already_paused")
        calendar = site_calendar(settings)
        allowance, used = pause_allowance(case, settings=settings, calendar=calendar)
        if used >= allowance:
            days = allowance / calendar.day_length
            raise InvalidState(f"挂起时间已用满 {days:g} 个工作日，不能再挂起", code="desk.pause_allowance_used")
        case.pauses.append(CasePause(start=now, end=None, reason=reason))
        case.paused = True
        step.describe(reason, data={"allowance_left_working_days": round((allowance - used) / calendar.day_length, 2)})
    return case


def resume(
    *,
    db: Session,
    settings: Settings,
    case_id: int,
    actor: Principal | None,
    note: str | None = None,
    now: dt.datetime | None = None,
) -> Case:
    """Restart the clocks (the firm answered) and recompute the due times."""
    now = now or utcnow()
    case = get_case(db=db, case_id=case_id, actor=actor)
    require_handler(case, actor, "恢复计时")
    with transition(
        db,
        case,
        "resume",
        EventKind.resumed,
        actor=actor,
        settings=settings,
        now=now,
        note=note or "企业已答复，恢复计时",
        clocks="recompute",
    ):
        open_pause = next((p for p in case.pauses if p.end is None), None)
        if open_pause is None:
            raise InvalidState("工单未挂起", code="desk.not_paused")
        open_pause.end = max(now, open_pause.start)
        case.paused = False
    return case


def request_extension(
    *,
    db: Session,
    settings: Settings,
    case_id: int,
    actor: Principal | None,
    extension_in: ExtensionIn,
    now: dt.datetime | None = None,
) -> Case:
    """The lead department asks for more time (延期申请), before the close deadline."""
    now = now or utcnow()
    case = get_case(db=db, case_id=case_id, actor=actor)
    require_handler(case, actor, "申请延期")
    with transition(
        db, case, "request_extension", EventKind.extension_requested, actor=actor, settings=settings, now=now
    ) as step:
        _before_deadline(case, now, "申请延期")
        if case.extension_request is not None:
            raise Conflict("已有待审批的延期申请", code="desk.extension_pending")
        target = sla.SlaTarget("close", extension_in.amount, extension_in.unit)  # validates amount and unit
        case.extension_request = {
            "amount": extension_in.amount,
            "unit": extension_in.unit,
            "reason": extension_in.reason,
            "requested_at": now.isoformat(),
            "requested_by_id": actor.user_id if actor else None,
        }
        case.extension_requested_at = now
        step.describe(
            f"申请延期{target.label.replace('内办结', '')}：{extension_in.reason}",
            data={"amount": extension_in.amount, "unit": extension_in.unit},
        )
    return case


def decide_extension(
    *,
    db: Session,
    settings: Settings,
    case_id: int,
    actor: Principal | None,
    approve: bool,
    note: str | None = None,
    now: dt.datetime | None = None,
) -> Case:
    """A supervisor approves (before the deadline; due times move on via desk.sla.extend) or rejects."""
    now = now or utcnow()
    case = get_case(db=db, case_id=case_id, actor=actor)
    require_supervisor(actor, "审批延期")
    kind = EventKind.extension_approved if approve else EventKind.extension_rejected
    with transition(
        db, case, "decide_extension", kind, actor=actor, settings=settings, now=now, clocks="recompute"
    ) as step:
        request = case.extension_request
        if request is None:
            raise InvalidState("没有待审批的延期申请", code="desk.no_extension_request")
        if approve:
            _before_deadline(case, now, "批准延期")
        case.extension_request = None
        case.extension_requested_at = None
        if not approve:
            step.clocks = "refresh"  # nothing changed the due times
            step.describe(note or "延期申请被驳回")
        else:
            old = case.close_due_at
            case.extensions = [
                *case.extensions,
                {**request, "approved_at": now.isoformat(), "approved_by_id": actor.user_id if actor else None},
            ]
            step.move_clocks()  # the event names the new close deadline
            new = case.close_due_at
            step.describe(
                note or f"延期获批，办结时限延至{new.isoformat(timespec='minutes') if new else '—'}",
                data={"from": old.isoformat() if old else None, "to": new.isoformat() if new else None},
            )
    return case


def correct_kind(
    *,
    db: Session,
    settings: Settings,
    case_id: int,
    actor: Principal | None,
    kind: str,
    note: str | None = None,
    now: dt.datetime | None = None,
) -> Case:
    """Staff correct the kind (e.g. a detected 咨询 that is really a 投诉); due times follow the new kind."""
    now = now or utcnow()
    case = get_case(db=db, case_id=case_id, actor=actor)
    require_handler(case, actor, "更正诉求类型")
    if kind not in sla.KINDS:
        raise ValidationFailed(
            errors=[FieldError("kind", f"取值不在允许范围内（可选：{'、'.join(sla.KINDS)}）", "enum")]
        )
    with transition(
        db, case, "correct_kind", EventKind.kind_corrected, actor=actor, settings=settings, now=now, clocks="recompute"
    ) as step:
        if kind == case.kind:
            raise ValidationFailed(errors=[FieldError("kind", "与当前类型相同", "unchanged")])
        old = case.kind
        case.kind = kind
        step.describe(
            note or f"诉求类型由“{sla.KIND_LABELS[old]}”更正为“{sla.KIND_LABELS[kind]}”",
            data={"from": old, "to": kind, "was_detected": case.kind_detected},
        )
    return case


def add_note(
    *,
    db: Session,
    settings: Settings,
    case_id: int,
    actor: Principal | None,
    note: str,
    visible_to_firm: bool = False,
    now: dt.datetime | None = None,
) -> Case:
    """Add a note to the timeline: the firm's supplements (always visible to it) or staff's remarks."""
    now = now or utcnow()
    case = get_case(db=db, case_id=case_id, actor=actor)
    is_firm = actor is not None and actor.role == Role.enterprise
    move(
        db,
        case,
        "note",
        EventKind.note,
        actor=actor,
        settings=settings,
        now=now,
        note=note,
        visible_to_firm=True if is_firm else visible_to_firm,
    )
    return case
