"""The desk's case lifecycle: intake, instant answers, routing, the state machine, SLA clocks, ratings, FAQ.

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

Who may act: the firm on its own case (accept or reject the instant answer, rate); the lead
department's desk officers (accept, contact, reply, resolve, pause, extension and return requests,
transfer, joint handling); supervisors and admins (everything a department can, plus dispatch from
the central queue, decisions on returns and extensions, reopening, closing). Desk officers of an
assisting (会办) department see the case and may add notes.

Services never commit; the request dependency or ``session_scope`` does.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy import case as sql_case
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.sql.elements import ColumnElement

from auth.models import Role, User
from auth.service import Principal
from catalog.models import Department, Policy
from core.config import Settings
from core.db import utcnow
from core.errors import Conflict, FieldError, InvalidState, NotFound, PermissionDenied, ValidationFailed
from core.workcal import WorkCalendar, calendar_from_dict, load_arrangement
from desk import sla
from desk.answer import answer_question
from desk.kinds import detect_kind
from desk.models import (
    EVENT_LABELS,
    STATUS_LABELS,
    Case,
    CaseDepartment,
    CaseEvent,
    CasePause,
    CaseStatus,
    Channel,
    EventKind,
    FaqEntry,
    Rating,
    RoutingMethod,
)
from desk.routing import route_case
from desk.schemas import (
    AttachmentIn,
    CaseIn,
    ExtensionIn,
    FaqIn,
    FaqUpdate,
    PromoteIn,
)
from profiles.models import Enterprise

if TYPE_CHECKING:
    from matcher.engine import Matcher

log = logging.getLogger(__name__)

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

# States whose clocks run (the case waits on the platform or a department).
CLOCK_STATUSES = frozenset({S.submitted, S.dispatched, S.accepted, S.in_progress, S.reopened})
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

# Attachments the desk accepts (metadata only; files live in the document store).
ALLOWED_CONTENT_TYPES = frozenset(
    {
        "application/pdf",
        "application/ofd",
        "image/jpeg",
        "image/png",
        "image/gif",
        "image/webp",
        "text/plain",
        "text/csv",
        "application/msword",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.ms-excel",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/zip",
        "audio/mpeg",
        "audio/wav",
        "video/mp4",
    }
)


class IllegalTransition(InvalidState):
    """An action the case's current status does not allow."""

    code = "desk.illegal_transition"
    message = "当前状态不允许此操作"


def _status_label(status: str) -> str:
    return STATUS_LABELS.get(status, status)


def check_transition(case: Case, action: str) -> CaseStatus:
    """Return the status `action` leads to from the case's status, or raise IllegalTransition."""
    table = TRANSITIONS[action]
    current = CaseStatus(case.status)
    target = table.get(current)
    if target is None:
        targets = list(dict.fromkeys(table.values()))
        goal = "、".join(f"“{_status_label(t)}”" for t in targets)
        allowed = "、".join(f"“{_status_label(s)}”" for s in table)
        raise IllegalTransition(
            f"工单当前为“{_status_label(current)}”，不能{ACTION_LABELS[action]}（转为{goal}）；"
            f"仅{allowed}状态可以{ACTION_LABELS[action]}",
            errors=[
                FieldError("status", f"“{_status_label(current)}”状态不能{ACTION_LABELS[action]}", "illegal_transition")
            ],
        )
    return target


# ---------------------------------------------------------------- site SLA profile and calendar

_calendar_lock = threading.Lock()
_calendar_cache: dict[tuple[Any, ...], WorkCalendar] = {}


def site_profile(settings: Settings) -> sla.SlaProfile:
    """Return the site's SLA profile from settings: a preset code or a JSON profile."""
    return _profile_from_setting(settings.desk_sla_profile)


def _profile_from_setting(raw: str) -> sla.SlaProfile:
    raw = (raw or "").strip()
    if raw.startswith("{"):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValidationFailed(
                "HUIQI_DESK_SLA_PROFILE 不是有效的 JSON",
                errors=[FieldError("desk_sla_profile", str(exc), "json_invalid")],
            ) from exc
        return sla.profile_from_dict(data)
    profile = sla.PRESETS.get(raw)
    if profile is None:
        raise ValidationFailed(
            errors=[
                FieldError(
                    "desk_sla_profile", f"未知的时限预设 {raw}（可选：{'、'.join(sla.PRESETS)}，或 JSON 配置）", "enum"
                )
            ]
        )
    return profile


def profile_for(code: str, settings: Settings) -> sla.SlaProfile:
    """Return the profile a case was received under: the site's, or a preset of that code."""
    site = site_profile(settings)
    if code == site.code:
        return site
    if code in sla.PRESETS:
        return sla.PRESETS[code]
    log.warning("case SLA profile %s is no longer configured; using the site profile %s", code, site.code)
    return site


def arrangements_dir(settings: Settings) -> Path:
    """Return the directory whose *.json year arrangements (国务院放假安排) the desk calendar loads."""
    return Path(settings.var_dir) / "calendar"


def site_calendar(settings: Settings) -> WorkCalendar:
    """Return the site's working calendar: settings' hours and exceptions plus loaded year arrangements."""
    folder = arrangements_dir(settings)
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    key = (settings.desk_calendar, settings.timezone, tuple((f.name, f.stat().st_mtime_ns) for f in files))
    with _calendar_lock:
        cached = _calendar_cache.get(key)
        if cached is not None:
            return cached
    raw = (settings.desk_calendar or "").strip()
    try:
        data = json.loads(raw) if raw else {}
    except json.JSONDecodeError as exc:
        raise ValidationFailed(
            "HUIQI_DESK_CALENDAR 不是有效的 JSON", errors=[FieldError("desk_calendar", str(exc), "json_invalid")]
        ) from exc
    data = {"tz": settings.timezone, **data}
    calendar = calendar_from_dict(data, arrangements=[load_arrangement(f) for f in files])
    with _calendar_lock:
        _calendar_cache.clear()
        _calendar_cache[key] = calendar
    return calendar


# ---------------------------------------------------------------- due times


def _pauses(case: Case) -> list[sla.Pause]:
    return [sla.Pause(p.start, p.end) for p in case.pauses]


def _final_stage(due: dict[str, Any]) -> str | None:
    for stage in ("close", "reply", "contact"):
        if stage in due:
            return stage
    return None


def recompute_due(
    case: Case, *, settings: Settings, calendar: WorkCalendar | None = None, now: dt.datetime | None = None
) -> list[str]:
    """Set the case's contact / reply / close due times from its profile, pauses and approved extensions.

    Returns the provisional-calendar warnings (also stored on the case); a provisional deadline is
    flagged, never refused.
    """
    calendar = calendar or site_calendar(settings)
    profile = profile_for(case.sla_profile, settings)
    pauses = _pauses(case)
    due = sla.due_times(
        profile=profile, kind=case.kind, received_at=case.sla_started_at, calendar=calendar, pauses=pauses
    )
    final = _final_stage(due)
    if final and case.extensions:
        bounded = sla.effective_pauses(pauses, calendar=calendar, max_working_days=profile.max_pause_working_days)
        for ext in case.extensions:
            target = sla.SlaTarget(final, ext["amount"], ext["unit"])
            due[final] = sla.extend(due[final], by=target, calendar=calendar, pauses=bounded)
    case.contact_due_at = due["contact"].due_at if "contact" in due else None
    case.reply_due_at = due["reply"].due_at if "reply" in due else None
    case.close_due_at = due["close"].due_at if "close" in due else None
    warnings = list(dict.fromkeys(w for d in due.values() for w in d.warnings))
    case.due_provisional = any(d.provisional for d in due.values())
    case.due_warnings = warnings
    refresh_sla_state(case, settings=settings, calendar=calendar, now=now)
    return warnings


def active_due(case: Case) -> tuple[sla.Stage, dt.datetime] | None:
    """Return the stage the case's clock is running for and its due time; None when no clock runs.

    Contact until the firm was contacted, then the (phased) reply until the first reply, then
    closing until the department resolves it.
    """
    if case.status not in CLOCK_STATUSES:
        return None
    if case.contact_due_at is not None and case.contacted_at is None:
        return "contact", case.contact_due_at
    if case.reply_due_at is not None and case.first_reply_at is None:
        return "reply", case.reply_due_at
    if case.close_due_at is not None and case.resolved_at is None:
        return "close", case.close_due_at
    return None


def active_due_expression() -> ColumnElement[Any]:
    """The SQL form of :func:`active_due`'s due time, for ordering queues by deadline."""
    return sql_case(
        (and_(Case.contact_due_at.is_not(None), Case.contacted_at.is_(None)), Case.contact_due_at),
        (and_(Case.reply_due_at.is_not(None), Case.first_reply_at.is_(None)), Case.reply_due_at),
        else_=Case.close_due_at,
    )


@dataclass(frozen=True)
class SlaView:
    """The clock a case is on now, for lists and detail pages."""

    stage: str | None
    due_at: dt.datetime | None
    state: str | None
    state_label: str | None
    colour: str | None


def sla_view(
    case: Case, *, settings: Settings, calendar: WorkCalendar | None = None, now: dt.datetime | None = None
) -> SlaView:
    """Return the running stage, its due time, state (on_track … red) and colour, computed now."""
    current = active_due(case)
    if current is None:
        return SlaView(None, None, None, None, None)
    stage, due_at = current
    calendar = calendar or site_calendar(settings)
    profile = profile_for(case.sla_profile, settings)
    target = next((t for t in profile.targets(case.kind) if t.stage == stage), None)
    state = sla.sla_state(
        due_at=due_at,
        now=now or utcnow(),
        calendar=calendar,
        rule=profile.escalation,
        received_at=case.sla_started_at,
        clock=target.clock if target else "working",
    )
    return SlaView(stage, due_at, state, sla.STATE_LABELS[state], sla.colour(state))


def refresh_sla_state(
    case: Case, *, settings: Settings, calendar: WorkCalendar | None = None, now: dt.datetime | None = None
) -> None:
    """Store the case's current SLA state (on_track when no clock runs). Escalation is desk.jobs' work."""
    view = sla_view(case, settings=settings, calendar=calendar, now=now)
    case.sla_state = view.state or "on_track"


# ---------------------------------------------------------------- events and permissions


def _actor_fields(actor: Principal | None) -> dict[str, Any]:
    if actor is None:
        return {"actor_id": None, "actor_role": "system", "actor_name": "系统"}
    return {
        "actor_id": actor.user_id,
        "actor_role": "api_key" if actor.via_api_key else str(actor.role),
        "actor_name": actor.name,
    }


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
    return event


def _move(
    db: Session,
    case: Case,
    action: str,
    kind: EventKind,
    actor: Principal | None,
    *,
    now: dt.datetime,
    note: str | None = None,
    data: dict[str, Any] | None = None,
    visible_to_firm: bool | None = None,
) -> CaseEvent:
    """Apply a transition of the table and record it."""
    before = case.status
    target = check_transition(case, action)
    case.status = target
    case.updated_at = now
    return add_event(
        db,
        case,
        kind,
        actor,
        note=note,
        data=data,
        visible_to_firm=visible_to_firm,
        from_status=before,
        to_status=target,
        at=now,
    )


def _is_supervisor(actor: Principal | None) -> bool:
    return actor is None or actor.role in SUPERVISORS


def _handler_department_ids(db: Session, case: Case) -> set[int]:
    return {d.department_id for d in case.departments} | ({case.department_id} if case.department_id else set())


def can_see(db: Session, case: Case, actor: Principal | None) -> bool:
    """Tell whether the actor may see the case at all (firms: their own; desk: their department's, joint incl.)."""
    if actor is None or actor.role in SUPERVISORS or actor.role == Role.curator:
        return True
    if actor.via_api_key:
        return case.api_key_id == actor.id
    if actor.role == Role.enterprise:
        return actor.enterprise_id is not None and case.enterprise_id == actor.enterprise_id
    if actor.role == Role.desk:
        return actor.department_id is not None and actor.department_id in _handler_department_ids(db, case)
    return False


def get_case(*, db: Session, case_id: int, actor: Principal | None) -> Case:
    """Return a case the actor may see, or raise NotFound (also for cases outside the actor's scope)."""
    case = db.get(Case, case_id)
    if case is None or not can_see(db, case, actor):
        raise NotFound("工单不存在", code="case_not_found")
    return case


def _require_handler(case: Case, actor: Principal | None, what: str) -> None:
    """Admit the lead department's desk officers, supervisors and admins."""
    if _is_supervisor(actor):
        return
    assert actor is not None
    if actor.role == Role.desk and not actor.via_api_key and case.department_id == actor.department_id:
        return
    raise PermissionDenied(f"只有承办部门或督办人员可以{what}", code="desk.not_handler")


def _require_supervisor(actor: Principal | None, what: str) -> None:
    if not _is_supervisor(actor):
        raise PermissionDenied(f"只有督办人员或管理员可以{what}", code="desk.not_supervisor")


def _require_firm(case: Case, actor: Principal | None, what: str) -> None:
    if actor is None:
        return
    if actor.role != Role.enterprise or actor.enterprise_id != case.enterprise_id:
        raise PermissionDenied(f"只有提交诉求的企业可以{what}", code="desk.not_owner")


def _department(db: Session, department_id: int, field: str = "department_id") -> Department:
    dept = db.get(Department, department_id)
    if dept is None:
        raise ValidationFailed(errors=[FieldError(field, f"部门 {department_id} 不存在", "unknown_department")])
    return dept


def _set_lead(db: Session, case: Case, department_id: int | None, now: dt.datetime) -> None:
    """Make a department the lead (or clear it for the central queue), keeping assisting ones."""
    for row in list(case.departments):
        if row.role == "lead" or row.department_id == department_id:
            case.departments.remove(row)
    db.flush()
    case.department_id = department_id
    if department_id is not None:
        case.departments.append(CaseDepartment(department_id=department_id, role="lead", added_at=now))


def _dept_data(db: Session, department_id: int | None) -> dict[str, Any]:
    if department_id is None:
        return {"department": None, "department_name": "统一分拨中心"}
    dept = db.get(Department, department_id)
    return {"department": dept.code if dept else None, "department_name": dept.name if dept else None}


def _end_open_pause(
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


# ---------------------------------------------------------------- intake


def _scope(actor: Principal | None) -> str:
    if actor is None:
        return "system"
    return f"apikey:{actor.id}" if actor.via_api_key else f"user:{actor.user_id}"


def _by_idempotency_key(db: Session, scope: str, key: str) -> Case | None:
    return db.scalar(select(Case).where(Case.idempotency_scope == scope, Case.idempotency_key == key))


def _intake_rules(
    db: Session, actor: Principal | None, case_in: CaseIn, settings: Settings, now: dt.datetime
) -> tuple[str, int | None]:
    """Check who may file what through which channel; return (channel, enterprise id)."""
    errors: list[FieldError] = []
    channel = case_in.channel
    enterprise_id = case_in.enterprise_id
    if actor is not None and actor.role == Role.enterprise and not actor.via_api_key:
        if channel not in (None, Channel.web):
            errors.append(FieldError("channel", "企业用户只能网上提交（web）", "not_allowed"))
        if enterprise_id not in (None, actor.enterprise_id):
            errors.append(FieldError("enterprise_id", "只能为本企业提交诉求", "not_allowed"))
        for name in ("department_id", "visit_record", "received_at", "external_ref"):
            if getattr(case_in, name) is not None:
                errors.append(FieldError(name, "企业用户不能填写此项", "not_allowed"))
        channel, enterprise_id = Channel.web, actor.enterprise_id
    elif actor is not None and actor.via_api_key:
        channel = channel or Channel.api
        if channel not in (Channel.api, Channel.hotline, Channel.import_):
            errors.append(FieldError("channel", "系统对接只能使用 api、hotline 或 import 渠道", "not_allowed"))
    elif actor is not None:
        if actor.role not in (Role.desk, Role.supervisor, Role.admin):
            errors.append(FieldError("channel", "该角色不能代企业提交诉求", "not_allowed"))
        channel = channel or Channel.proxy
        if channel not in (Channel.proxy, Channel.hotline, Channel.import_):
            errors.append(
                FieldError("channel", "工作人员只能代提（proxy）、录入热线（hotline）或导入（import）", "not_allowed")
            )
    else:
        channel = channel or Channel.import_

    if channel == Channel.proxy:
        if actor is not None and (actor.via_api_key or actor.role == Role.enterprise):
            errors.append(FieldError("channel", "代提只能由工作人员办理", "not_allowed"))
        if case_in.visit_record is None:
            errors.append(FieldError("visit_record", "代提必须填写走访记录（走访日期、走访人、地点）", "required"))
        elif case_in.visit_record.visited_on > now.astimezone(site_tz(settings)).date():
            errors.append(FieldError("visit_record.visited_on", "走访日期不能晚于今天", "future_date"))
        if enterprise_id is None:
            errors.append(FieldError("enterprise_id", "代提必须指明企业", "required"))
    elif case_in.visit_record is not None and channel != Channel.proxy:
        errors.append(FieldError("visit_record", "只有代提需要走访记录", "not_allowed"))

    if enterprise_id is not None and db.get(Enterprise, enterprise_id) is None:
        errors.append(FieldError("enterprise_id", f"企业 {enterprise_id} 不存在", "unknown_enterprise"))
    if case_in.related_policy_id is not None and db.get(Policy, case_in.related_policy_id) is None:
        errors.append(FieldError("related_policy_id", f"政策 {case_in.related_policy_id} 不存在", "unknown_policy"))
    if case_in.department_id is not None and db.get(Department, case_in.department_id) is None:
        errors.append(FieldError("department_id", f"部门 {case_in.department_id} 不存在", "unknown_department"))
    if case_in.received_at is not None:
        if case_in.received_at.tzinfo is None:
            errors.append(FieldError("received_at", "受理时间须带时区，如 2026-11-23T09:30:00+08:00", "naive_datetime"))
        elif case_in.received_at > now + dt.timedelta(minutes=5):
            errors.append(FieldError("received_at", "受理时间不能晚于当前时间", "future_datetime"))
    errors.extend(check_attachments(case_in.attachments, settings=settings))
    if errors:
        raise ValidationFailed("诉求提交信息有误", errors=errors)
    return str(channel), enterprise_id


def site_tz(settings: Settings) -> dt.tzinfo:
    """Return the desk calendar's time zone."""
    return site_calendar(settings).tz


def check_attachments(attachments: Iterable[AttachmentIn], *, settings: Settings) -> list[FieldError]:
    """Return the problems of attachment metadata: size over the upload limit, type, duplicates."""
    errors = []
    limit = settings.upload_max_mb * 1024 * 1024
    seen: set[str] = set()
    for i, att in enumerate(attachments):
        if att.size > limit:
            errors.append(
                FieldError(f"attachments[{i}].size", f"附件超过 {settings.upload_max_mb} MB 上限", "too_large")
            )
        if att.content_type.lower() not in ALLOWED_CONTENT_TYPES:
            errors.append(
                FieldError(
                    f"attachments[{i}].content_type",
                    f"不支持的附件类型 {att.content_type}（支持 PDF、OFD、图片、Word、Excel、文本、压缩包、音视频）",
                    "unsupported_type",
                )
            )
        if att.sha256 in seen:
            errors.append(FieldError(f"attachments[{i}].sha256", "同一文件重复上传", "duplicate"))
        seen.add(att.sha256)
    return errors


def _title_of(case_in: CaseIn) -> str:
    if case_in.title:
        return case_in.title
    first = case_in.content.strip().splitlines()[0]
    return first if len(first) <= 30 else first[:30] + "…"


def _question_of(title: str, content: str) -> str:
    return content if title.rstrip("…") in content else f"{title}\n{content}"


def case_number(case: Case, tz: dt.tzinfo) -> str:
    """Return the human case number: HQ + local date of receipt + the case id, e.g. HQ20261123-000123."""
    return f"HQ{case.received_at.astimezone(tz):%Y%m%d}-{case.id:06d}"


def submit_case(
    *,
    db: Session,
    matcher: Matcher | None,
    settings: Settings,
    actor: Principal | None,
    case_in: CaseIn,
    now: dt.datetime | None = None,
) -> Case:
    """File a case: detect its kind, answer a consultation at once when confident, else route it.

    The same idempotency key from the same caller returns the case it first made (``case.replayed``
    is then True), also under concurrent retries: the unique index on (scope, key) decides and the
    loser of the race reads the winner's case. ``matcher=None`` skips instant answers (imports).
    """
    now = now or utcnow()
    scope = _scope(actor)
    key = case_in.idempotency_key
    if key:
        existing = _by_idempotency_key(db, scope, key)
        if existing is not None:
            existing.replayed = True
            return existing
    channel, enterprise_id = _intake_rules(db, actor, case_in, settings, now)

    if case_in.kind is not None:
        kind, kind_detected, kind_confidence = case_in.kind, False, None
    else:
        kind, kind_confidence = detect_kind(f"{case_in.title or ''}\n{case_in.content}")
        kind_detected = True
    title = _title_of(case_in)
    received_at = case_in.received_at.astimezone(dt.UTC) if case_in.received_at else now
    calendar = site_calendar(settings)
    profile = site_profile(settings)

    answer = None
    if kind == "consultation" and matcher is not None and case_in.department_id is None:
        answer = answer_question(
            db=db, matcher=matcher, question=_question_of(title, case_in.content), settings=settings
        )
    decision = None
    if (answer is None or not answer.confident) and case_in.department_id is None:
        decision = route_case(
            db=db, content=case_in.content, title=title, related_policy_id=case_in.related_policy_id, settings=settings
        )

    case = Case(
        number=f"tmp-{uuid.uuid4().hex}",
        kind=kind,
        kind_detected=kind_detected,
        kind_confidence=kind_confidence,
        title=title,
        content=case_in.content,
        channel=channel,
        enterprise_id=enterprise_id,
        submitted_by_id=actor.user_id if actor else None,
        api_key_id=actor.id if actor and actor.via_api_key else None,
        external_ref=case_in.external_ref,
        contact_name=case_in.contact_name,
        contact_phone=case_in.contact_phone,
        related_policy_id=case_in.related_policy_id,
        status=S.submitted,
        idempotency_scope=scope if key else None,
        idempotency_key=key,
        visit_record=case_in.visit_record.model_dump(mode="json") if case_in.visit_record else None,
        attachments=[a.model_dump() for a in case_in.attachments],
        instant_answer=answer.to_dict() if answer is not None else None,
        sla_profile=profile.code,
        received_at=received_at,
        sla_started_at=received_at,
        extensions=[],
        due_warnings=[],
        created_at=now,
        updated_at=now,
    )
    recompute_due(case, settings=settings, calendar=calendar, now=now)
    try:
        with db.begin_nested():
            db.add(case)
            db.flush()
            case.number = case_number(case, calendar.tz)
            add_event(
                db,
                case,
                EventKind.submitted,
                actor,
                at=now,
                note=f"收到{sla.KIND_LABELS[kind]}：{title}",
                data={"channel": channel, "kind": kind, "kind_detected": kind_detected, "number": case.number},
            )
            if case.due_warnings:
                add_event(
                    db,
                    case,
                    EventKind.note,
                    actor,
                    at=now,
                    visible_to_firm=False,
                    note="；".join(case.due_warnings),
                    data={"warnings": case.due_warnings, "provisional": True},
                )
            if answer is not None and answer.confident:
                _move(
                    db,
                    case,
                    "answer",
                    EventKind.answered_instantly,
                    actor,
                    now=now,
                    note=answer.text,
                    data={"confidence": answer.confidence, "citations": len(answer.citations)},
                )
            elif decision is not None:
                _route(db, case, decision, actor, action="dispatch", now=now)
            else:
                _dispatch_manually(db, case, case_in.department_id, actor, action="dispatch", now=now)
            db.flush()
    except IntegrityError:
        if not key:
            raise
        existing = _by_idempotency_key(db, scope, key)
        if existing is None:
            raise
        log.info("idempotent replay of %s key %s raced; returning case %s", scope, key, existing.number)
        existing.replayed = True
        return existing
    return case


def _route(db: Session, case: Case, decision: Any, actor: Principal | None, *, action: str, now: dt.datetime) -> None:
    """Dispatch by a routing decision: to its department, or to the central queue when it has none."""
    case.routing_method = decision.method if decision.department_id is not None else RoutingMethod.dispatch
    case.routing_confidence = decision.confidence
    case.routing_candidates = [[c, round(float(s), 4)] for c, s in decision.candidates]
    _set_lead(db, case, decision.department_id, now)
    case.dispatched_at = now
    data = _dept_data(db, decision.department_id)
    note = f"分拨至{data['department_name']}" if decision.department_id else "暂无法自动确定承办部门，已进入统一分拨"
    _move(
        db,
        case,
        action,
        EventKind.dispatched,
        actor,
        now=now,
        note=note,
        data={**data, "method": str(case.routing_method)},
    )


def _dispatch_manually(
    db: Session, case: Case, department_id: int | None, actor: Principal | None, *, action: str, now: dt.datetime
) -> None:
    case.routing_method = RoutingMethod.manual if department_id else RoutingMethod.dispatch
    case.routing_confidence = None
    case.routing_candidates = None
    _set_lead(db, case, department_id, now)
    case.dispatched_at = now
    data = _dept_data(db, department_id)
    _move(
        db,
        case,
        action,
        EventKind.dispatched,
        actor,
        now=now,
        note=f"分拨至{data['department_name']}",
        data={**data, "method": str(case.routing_method)},
    )


# ---------------------------------------------------------------- the firm's answers to an instant answer


def accept_answer(
    *,
    db: Session,
    settings: Settings,
    case_id: int,
    actor: Principal | None,
    rating: Rating | None = None,
    comment: str | None = None,
    now: dt.datetime | None = None,
) -> Case:
    """The firm accepts the instant answer: the case closes (and is rated when a rating is given)."""
    now = now or utcnow()
    case = get_case(db=db, case_id=case_id, actor=actor)
    _require_firm(case, actor, "采纳答复")
    _move(db, case, "accept_answer", EventKind.accepted_answer, actor, now=now, note="企业采纳即时答复")
    case.closed_at = now
    add_event(db, case, EventKind.closed, actor, note="即时答复已采纳，工单关闭", at=now)
    if rating is not None:
        _rate(db, case, actor, Rating(rating), comment, settings=settings, now=now)
    db.flush()
    return case


def ask_for_person(
    *,
    db: Session,
    settings: Settings,
    case_id: int,
    actor: Principal | None,
    note: str | None = None,
    now: dt.datetime | None = None,
) -> Case:
    """The firm wants a person: the case is routed with the instant answer attached; clocks start now."""
    now = now or utcnow()
    case = get_case(db=db, case_id=case_id, actor=actor)
    _require_firm(case, actor, "转人工")
    check_transition(case, "ask_for_person")
    _to_person(db, case, actor, note=note, action="ask_for_person", settings=settings, now=now)
    db.flush()
    return case


def _to_person(
    db: Session,
    case: Case,
    actor: Principal | None,
    *,
    note: str | None,
    action: str,
    settings: Settings,
    now: dt.datetime,
) -> None:
    add_event(
        db,
        case,
        EventKind.asked_for_person,
        actor,
        at=now,
        note=note or "企业要求人工办理",
        data={"instant_answer_attached": case.instant_answer is not None},
    )
    case.sla_started_at = now
    case.closed_at = None
    decision = route_case(
        db=db, content=case.content, title=case.title, related_policy_id=case.related_policy_id, settings=settings
    )
    _route(db, case, decision, actor, action=action, now=now)
    recompute_due(case, settings=settings, now=now)


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
    _require_supervisor(actor, "人工分拨")
    check_transition(case, "assign")
    if case.department_id is not None:
        raise IllegalTransition(
            "工单已有承办部门，不在统一分拨队列中；如需改派请转办",
            code="desk.illegal_transition",
            errors=[FieldError("department_id", "工单已分拨至部门", "not_in_queue")],
        )
    dept = _department(db, department_id)
    _set_lead(db, case, dept.id, now)
    case.routing_method = RoutingMethod.manual
    case.dispatched_at = now
    _move(
        db,
        case,
        "assign",
        EventKind.assigned,
        actor,
        now=now,
        note=note or f"人工分拨至{dept.name}",
        data={"department": dept.code, "department_name": dept.name},
    )
    db.flush()
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
    _require_handler(case, actor, "转办")
    check_transition(case, "transfer")
    if department_id == case.department_id:
        raise ValidationFailed(errors=[FieldError("department_id", "不能转办给当前承办部门", "same_department")])
    dept = _department(db, department_id)
    before = _dept_data(db, case.department_id)
    _end_open_pause(db, case, actor, now, "转办，恢复计时", settings=settings)
    _clear_requests(case)
    _set_lead(db, case, dept.id, now)
    case.routing_method = RoutingMethod.manual
    case.dispatched_at = now
    _move(
        db,
        case,
        "transfer",
        EventKind.transferred,
        actor,
        now=now,
        note=note or f"转办至{dept.name}",
        data={"from": before["department"], "to": dept.code, "department_name": dept.name},
    )
    db.flush()
    return case


def _clear_requests(case: Case) -> None:
    case.return_request = None
    case.return_requested_at = None
    case.extension_request = None
    case.extension_requested_at = None


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
    _require_handler(case, actor, "申请退单")
    check_transition(case, "request_return")
    if case.department_id is None:
        raise IllegalTransition(
            "工单在统一分拨队列中，无需退单", errors=[FieldError("status", "无承办部门", "in_queue")]
        )
    if case.return_request is not None:
        raise Conflict("已有待审批的退单申请", code="desk.return_pending")
    case.return_request = {
        "reason": reason,
        "requested_at": now.isoformat(),
        "requested_by_id": actor.user_id if actor else None,
        "department_id": case.department_id,
    }
    case.return_requested_at = now
    case.updated_at = now
    add_event(db, case, EventKind.return_requested, actor, note=reason, at=now)
    db.flush()
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
    _require_supervisor(actor, "审批退单")
    if case.return_request is None:
        raise InvalidState("没有待审批的退单申请", code="desk.no_return_request")
    request = case.return_request
    if approve:
        check_transition(case, "return")
        _end_open_pause(db, case, actor, now, "退单，恢复计时", settings=settings)
        _clear_requests(case)
        _set_lead(db, case, None, now)
        case.routing_method = RoutingMethod.dispatch
        _move(
            db,
            case,
            "return",
            EventKind.returned,
            actor,
            now=now,
            visible_to_firm=False,
            note=note or f"退单获批：{request['reason']}",
            data={"department_id": request.get("department_id")},
        )
    else:
        check_transition(case, "reject_return")
        case.return_request = None
        case.return_requested_at = None
        _move(db, case, "reject_return", EventKind.return_rejected, actor, now=now, note=note or "退单申请被驳回")
    db.flush()
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
    _require_handler(case, actor, "发起会办")
    check_transition(case, "add_joint")
    if case.department_id is None:
        raise IllegalTransition("工单尚无承办部门，请先分拨", errors=[FieldError("status", "无承办部门", "in_queue")])
    dept = _department(db, department_id)
    if dept.id in _handler_department_ids(db, case):
        raise Conflict(f"{dept.name}已在办理此工单", code="desk.already_joint")
    case.departments.append(CaseDepartment(department_id=dept.id, role="assist", added_at=now))
    case.updated_at = now
    add_event(
        db,
        case,
        EventKind.joint_added,
        actor,
        at=now,
        note=note or f"{dept.name}参与会办",
        data={"department": dept.code, "department_name": dept.name},
    )
    db.flush()
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
    _require_handler(case, actor, "签收")
    if case.department_id is None:
        raise IllegalTransition(
            "工单在统一分拨队列中，请先分拨到部门", errors=[FieldError("status", "无承办部门", "in_queue")]
        )
    _move(db, case, "accept", EventKind.accepted, actor, now=now, note=note or "承办部门已签收")
    case.accepted_at = case.accepted_at or now
    db.flush()
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
    _require_handler(case, actor, "登记联系企业")
    _move(db, case, "contact", EventKind.contacted, actor, now=now, note=note or "已联系企业")
    case.contacted_at = case.contacted_at or now
    refresh_sla_state(case, settings=settings, now=now)
    db.flush()
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
    _require_handler(case, actor, "答复")
    if not note or not note.strip():
        raise ValidationFailed(errors=[FieldError("note", "答复内容不能为空", "required")])
    _move(db, case, "reply", EventKind.replied, actor, now=now, note=note)
    case.contacted_at = case.contacted_at or now
    case.first_reply_at = case.first_reply_at or now
    refresh_sla_state(case, settings=settings, now=now)
    db.flush()
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
    _require_handler(case, actor, "办结")
    if not resolution or not resolution.strip():
        raise ValidationFailed(errors=[FieldError("resolution", "办结答复不能为空", "required")])
    check_transition(case, "resolve")
    _end_open_pause(db, case, actor, now, "办结，结束挂起", settings=settings)
    _move(db, case, "resolve", EventKind.resolved, actor, now=now, note=resolution)
    case.resolution = resolution
    case.contacted_at = case.contacted_at or now
    case.first_reply_at = case.first_reply_at or now
    case.resolved_at = now
    _clear_requests(case)
    refresh_sla_state(case, settings=settings, now=now)
    db.flush()
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
    _require_handler(case, actor, "挂起")
    check_transition(case, "pause")
    if case.paused or any(p.end is None for p in case.pauses):
        raise InvalidState("工单已挂起", code="desk.already_paused")
    calendar = site_calendar(settings)
    profile = profile_for(case.sla_profile, settings)
    allowance = calendar.day_length * profile.max_pause_working_days
    used = sum((calendar.working_time_between(p.start, p.end) for p in case.pauses if p.end), dt.timedelta(0))
    if used >= allowance:
        raise InvalidState(
            f"挂起时间已用满 {profile.max_pause_working_days:g} 个工作日，不能再挂起", code="desk.pause_allowance_used"
        )
    case.pauses.append(CasePause(start=now, end=None, reason=reason))
    case.paused = True
    case.updated_at = now
    left = (allowance - used) / calendar.day_length
    _move(
        db,
        case,
        "pause",
        EventKind.paused,
        actor,
        now=now,
        note=reason,
        data={"allowance_left_working_days": round(left, 2)},
    )
    db.flush()
    recompute_due(case, settings=settings, calendar=calendar, now=now)
    db.flush()
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
    _require_handler(case, actor, "恢复计时")
    check_transition(case, "resume")
    open_pause = next((p for p in case.pauses if p.end is None), None)
    if open_pause is None:
        raise InvalidState("工单未挂起", code="desk.not_paused")
    open_pause.end = max(now, open_pause.start)
    case.paused = False
    case.updated_at = now
    _move(db, case, "resume", EventKind.resumed, actor, now=now, note=note or "企业已答复，恢复计时")
    db.flush()
    recompute_due(case, settings=settings, now=now)
    db.flush()
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
    _require_handler(case, actor, "申请延期")
    check_transition(case, "request_extension")
    _before_deadline(case, now, "申请延期")
    if case.extension_request is not None:
        raise Conflict("已有待审批的延期申请", code="desk.extension_pending")
    sla.SlaTarget("close", extension_in.amount, extension_in.unit)  # validates amount and unit
    case.extension_request = {
        "amount": extension_in.amount,
        "unit": extension_in.unit,
        "reason": extension_in.reason,
        "requested_at": now.isoformat(),
        "requested_by_id": actor.user_id if actor else None,
    }
    case.extension_requested_at = now
    case.updated_at = now
    label = sla.SlaTarget("close", extension_in.amount, extension_in.unit).label.replace("内办结", "")
    add_event(
        db,
        case,
        EventKind.extension_requested,
        actor,
        at=now,
        note=f"申请延期{label}：{extension_in.reason}",
        data={"amount": extension_in.amount, "unit": extension_in.unit},
    )
    db.flush()
    return case


def _before_deadline(case: Case, now: dt.datetime, what: str) -> None:
    final = case.close_due_at or case.reply_due_at or case.contact_due_at
    if final is not None and now > final:
        raise InvalidState(
            f"已超过办结时限（{final.isoformat(timespec='minutes')}），不能{what}", code="desk.extension_too_late"
        )


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
    _require_supervisor(actor, "审批延期")
    check_transition(case, "decide_extension")
    request = case.extension_request
    if request is None:
        raise InvalidState("没有待审批的延期申请", code="desk.no_extension_request")
    if approve:
        _before_deadline(case, now, "批准延期")
        old = case.close_due_at
        case.extensions = [
            *case.extensions,
            {**request, "approved_at": now.isoformat(), "approved_by_id": actor.user_id if actor else None},
        ]
        case.extension_request = None
        case.extension_requested_at = None
        recompute_due(case, settings=settings, now=now)
        add_event(
            db,
            case,
            EventKind.extension_approved,
            actor,
            at=now,
            note=note
            or f"延期获批，办结时限延至{case.close_due_at.isoformat(timespec='minutes') if case.close_due_at else '—'}",
            data={
                "from": old.isoformat() if old else None,
                "to": case.close_due_at.isoformat() if case.close_due_at else None,
            },
        )
    else:
        case.extension_request = None
        case.extension_requested_at = None
        add_event(db, case, EventKind.extension_rejected, actor, note=note or "延期申请被驳回", at=now)
    case.updated_at = now
    db.flush()
    return case


# ---------------------------------------------------------------- rating, closing, reopening, revisits


def rate(
    *,
    db: Session,
    settings: Settings,
    case_id: int,
    actor: Principal | None,
    rating: Rating,
    comment: str | None = None,
    now: dt.datetime | None = None,
) -> Case:
    """The firm rates the outcome. 不满意 reopens the case under supervision (or sends an instant answer to a person)."""
    now = now or utcnow()
    case = get_case(db=db, case_id=case_id, actor=actor)
    _require_firm(case, actor, "评价")
    _rate(db, case, actor, Rating(rating), comment, settings=settings, now=now)
    db.flush()
    return case


def _rate(
    db: Session,
    case: Case,
    actor: Principal | None,
    rating: Rating,
    comment: str | None,
    *,
    settings: Settings,
    now: dt.datetime,
) -> None:
    if case.status == S.closed and case.rating is not None:
        raise IllegalTransition(
            "工单已评价并关闭，不能重复评价", errors=[FieldError("rating", "已评价", "already_rated")]
        )
    from_status = case.status
    never_dispatched = case.dispatched_at is None
    if rating == Rating.dissatisfied:
        action = "rate_answer_bad" if from_status == S.closed and never_dispatched else "rate_bad"
    else:
        action = "rate_ok"
    check_transition(case, action)
    case.rating = rating
    case.rating_comment = comment
    case.rated_at = now
    label = {"satisfied": "满意", "basically_satisfied": "基本满意", "dissatisfied": "不满意"}[rating]
    data = {"rating": str(rating)}
    if action == "rate_ok":
        _move(db, case, action, EventKind.rated, actor, now=now, note=comment or label, data=data)
        return
    add_event(db, case, EventKind.rated, actor, note=comment or label, data=data, at=now)
    if action == "rate_answer_bad":
        _to_person(db, case, actor, note="企业对即时答复不满意，转人工办理", action=action, settings=settings, now=now)
        return
    _reopen(
        db,
        case,
        actor,
        action=action,
        note=f"企业评价不满意，重新办理{('：' + comment) if comment else ''}",
        settings=settings,
        now=now,
    )


def _reopen(
    db: Session, case: Case, actor: Principal | None, *, action: str, note: str, settings: Settings, now: dt.datetime
) -> None:
    """Reopen under supervision (督办): a new round with fresh clocks; repeated reopening escalates."""
    if case.department_id is None:
        raise IllegalTransition(
            "工单没有承办部门，不能重新办理", errors=[FieldError("status", "无承办部门", "in_queue")]
        )
    _move(db, case, action, EventKind.reopened, actor, now=now, note=note)
    case.reopen_count += 1
    case.supervised = True
    case.resolved_at = None
    case.closed_at = None
    case.sla_started_at = now
    case.extensions = []
    case.escalation_level = 0
    recompute_due(case, settings=settings, now=now)
    add_event(
        db,
        case,
        EventKind.supervised,
        None,
        at=now,
        note=f"列入督办（第{case.reopen_count}次重办）",
        data={"reopen_count": case.reopen_count},
    )
    if case.reopen_count >= settings.desk_reopen_escalate_after:
        add_event(
            db,
            case,
            EventKind.escalated,
            None,
            at=now,
            visible_to_firm=False,
            note=f"工单已重办{case.reopen_count}次，升级至督办人员",
            data={"reason": "repeated_reopen", "reopen_count": case.reopen_count, "to": "supervisor"},
        )


def close(
    *,
    db: Session,
    settings: Settings,
    case_id: int,
    actor: Principal | None,
    note: str | None = None,
    now: dt.datetime | None = None,
) -> Case:
    """Close (归档) a rated case; a supervisor may also close a resolved case the firm did not rate."""
    now = now or utcnow()
    case = get_case(db=db, case_id=case_id, actor=actor)
    if case.status == S.resolved:
        _require_supervisor(actor, "关闭未评价的工单")
        if not note:
            raise ValidationFailed(
                errors=[FieldError("note", "关闭未评价的工单须说明原因（如企业逾期未评价）", "required")]
            )
    else:
        _require_handler(case, actor, "关闭工单")
    _move(db, case, "close", EventKind.closed, actor, now=now, note=note or "工单已归档")
    case.closed_at = now
    db.flush()
    return case


def reopen(
    *,
    db: Session,
    settings: Settings,
    case_id: int,
    actor: Principal | None,
    reason: str,
    now: dt.datetime | None = None,
) -> Case:
    """A supervisor reopens a resolved, rated or closed case for another round (督办)."""
    now = now or utcnow()
    case = get_case(db=db, case_id=case_id, actor=actor)
    _require_supervisor(actor, "重新办理")
    check_transition(case, "reopen")
    _reopen(db, case, actor, action="reopen", note=reason, settings=settings, now=now)
    db.flush()
    return case


def revisit(
    *,
    db: Session,
    settings: Settings,
    case_id: int,
    actor: Principal | None,
    note: str,
    rating: Rating | None = None,
    comment: str | None = None,
    now: dt.datetime | None = None,
) -> Case:
    """Record a revisit (回访) of the firm by staff, with the rating it gave on the phone, if any."""
    now = now or utcnow()
    case = get_case(db=db, case_id=case_id, actor=actor)
    _require_handler(case, actor, "回访")
    _move(db, case, "revisit", EventKind.revisited, actor, now=now, note=note)
    if rating is not None:
        _rate(db, case, actor, Rating(rating), comment, settings=settings, now=now)
    db.flush()
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
    _require_handler(case, actor, "更正诉求类型")
    if kind not in sla.KINDS:
        raise ValidationFailed(
            errors=[FieldError("kind", f"取值不在允许范围内（可选：{'、'.join(sla.KINDS)}）", "enum")]
        )
    check_transition(case, "correct_kind")
    if kind == case.kind:
        raise ValidationFailed(errors=[FieldError("kind", "与当前类型相同", "unchanged")])
    old = case.kind
    case.kind = kind
    case.updated_at = now
    recompute_due(case, settings=settings, now=now)
    add_event(
        db,
        case,
        EventKind.kind_corrected,
        actor,
        at=now,
        note=note or f"诉求类型由“{sla.KIND_LABELS[old]}”更正为“{sla.KIND_LABELS[kind]}”",
        data={"from": old, "to": kind, "was_detected": case.kind_detected},
    )
    db.flush()
    return case


def add_note(
    *,
    db: Session,
    case_id: int,
    actor: Principal | None,
    note: str,
    visible_to_firm: bool = False,
    now: dt.datetime | None = None,
) -> Case:
    """Add a note to the timeline: the firm's supplements (always visible to it) or staff's remarks."""
    now = now or utcnow()
    case = get_case(db=db, case_id=case_id, actor=actor)
    check_transition(case, "note")
    is_firm = actor is not None and actor.role == Role.enterprise
    add_event(db, case, EventKind.note, actor, note=note, visible_to_firm=True if is_firm else visible_to_firm, at=now)
    case.updated_at = now
    db.flush()
    return case


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


def timeline(case: Case, actor: Principal | None) -> list[CaseEvent]:
    """Return the case's events the actor may read (firms: only those visible to the firm)."""
    events = list(case.events)
    if actor is not None and actor.role == Role.enterprise:
        events = [e for e in events if e.visible_to_firm]
    return events


def event_label(kind: str) -> str:
    """Return the Chinese label of an event kind."""
    return EVENT_LABELS.get(kind, kind)


# ---------------------------------------------------------------- FAQ


def promote_to_faq(
    *,
    db: Session,
    case_id: int,
    actor: Principal | None,
    promote_in: PromoteIn | None = None,
    now: dt.datetime | None = None,
) -> FaqEntry:
    """Turn a resolved case's answer into an FAQ entry of the knowledge base (source "promoted")."""
    now = now or utcnow()
    promote_in = promote_in or PromoteIn()
    case = get_case(db=db, case_id=case_id, actor=actor)
    if actor is not None and actor.role == Role.desk:
        _require_handler(case, actor, "收录常见问题")
    check_transition(case, "promote")
    answer = promote_in.answer or case.resolution
    if not answer:
        raise ValidationFailed(errors=[FieldError("answer", "工单没有办结答复，请填写答案", "required")])
    if db.scalar(select(FaqEntry.id).where(FaqEntry.case_id == case.id)) is not None:
        raise Conflict("该工单的答复已收录为常见问题", code="desk.already_promoted")
    code = promote_in.code or f"faq-case-{case.id}"
    if db.scalar(select(FaqEntry.id).where(FaqEntry.code == code)) is not None:
        raise Conflict(f"常见问题编码 {code} 已存在", code="desk.faq_exists")
    entry = FaqEntry(
        code=code,
        question=promote_in.question or case.title,
        answer=answer,
        department_id=case.department_id,
        keywords=promote_in.keywords,
        related_policies=[],
        source="promoted",
        case_id=case.id,
        active=True,
        created_at=now,
        updated_at=now,
    )
    db.add(entry)
    add_event(
        db,
        case,
        EventKind.note,
        actor,
        at=now,
        visible_to_firm=False,
        note=f"答复已收录为常见问题 {code}",
        data={"faq_code": code},
    )
    db.flush()
    return entry


def list_faq(
    *,
    db: Session,
    actor: Principal | None,
    q: str | None = None,
    department_id: int | None = None,
    source: str | None = None,
    include_inactive: bool = False,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[FaqEntry], int]:
    """Return FAQ entries; only staff see inactive ones."""
    stmt = select(FaqEntry)
    if not (include_inactive and actor is not None and actor.is_staff):
        stmt = stmt.where(FaqEntry.active.is_(True))
    if q:
        like = f"%{q.strip()}%"
        stmt = stmt.where(or_(FaqEntry.question.like(like), FaqEntry.answer.like(like), FaqEntry.code.like(like)))
    if department_id is not None:
        stmt = stmt.where(FaqEntry.department_id == department_id)
    if source:
        stmt = stmt.where(FaqEntry.source == source)
    total = db.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    return list(db.scalars(stmt.order_by(FaqEntry.code).offset(offset).limit(limit))), total


def get_faq(*, db: Session, faq_id: int, actor: Principal | None) -> FaqEntry:
    """Return an FAQ entry (inactive ones only to staff) or raise NotFound."""
    entry = db.get(FaqEntry, faq_id)
    if entry is None or (not entry.active and not (actor is not None and actor.is_staff)):
        raise NotFound("常见问题不存在", code="faq_not_found")
    return entry


def _faq_department(actor: Principal | None, department_id: int | None) -> int | None:
    """Desk officers curate their own department's entries only."""
    if actor is not None and actor.role == Role.desk:
        if department_id not in (None, actor.department_id):
            raise PermissionDenied("业务专员只能维护本部门的常见问题", code="desk.not_own_faq")
        return actor.department_id
    return department_id


def create_faq(*, db: Session, actor: Principal | None, faq_in: FaqIn, now: dt.datetime | None = None) -> FaqEntry:
    """Add a curated FAQ entry."""
    now = now or utcnow()
    department_id = _faq_department(actor, faq_in.department_id)
    if department_id is not None:
        _department(db, department_id)
    if db.scalar(select(FaqEntry.id).where(FaqEntry.code == faq_in.code)) is not None:
        raise Conflict(f"常见问题编码 {faq_in.code} 已存在", code="desk.faq_exists")
    entry = FaqEntry(
        **faq_in.model_dump(exclude={"department_id"}),
        department_id=department_id,
        source="curated",
        created_at=now,
        updated_at=now,
    )
    db.add(entry)
    db.flush()
    return entry


def update_faq(
    *, db: Session, actor: Principal | None, faq_id: int, faq_in: FaqUpdate, now: dt.datetime | None = None
) -> FaqEntry:
    """Change an FAQ entry."""
    entry = get_faq(db=db, faq_id=faq_id, actor=actor)
    _faq_department(actor, entry.department_id)
    data = faq_in.model_dump(exclude_unset=True)
    if "department_id" in data:
        data["department_id"] = _faq_department(actor, data["department_id"])
        if data["department_id"] is not None:
            _department(db, data["department_id"])
    for key, value in data.items():
        setattr(entry, key, value)
    entry.updated_at = now or utcnow()
    db.flush()
    return entry


def delete_faq(*, db: Session, actor: Principal | None, faq_id: int) -> None:
    """Delete an FAQ entry (answers already given keep their quoted passages)."""
    entry = get_faq(db=db, faq_id=faq_id, actor=actor)
    _faq_department(actor, entry.department_id)
    db.delete(entry)
    db.flush()


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
