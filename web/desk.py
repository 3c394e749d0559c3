"""The desk officer's and supervisor's pages (服务台): the department queue by due time in SLA colours,
a case page with timeline, instant answer and every action the case allows, and the supervisor's
escalations, approvals and central dispatch queue.

Every action calls the desk service (desk/service.py), which checks the state machine and who may
act; the pages only offer the actions the case's status allows and show the service's refusals in
Chinese. A desk officer sees the cases of their own department (joint handling included); another
department's case is not found (404), as in the API.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError

from auth.models import Role
from auth.service import Principal
from catalog import service as catalog_service
from core.config import Settings
from core.deps import AppSettings, DbSession
from core.errors import FieldError, HuiqiError, ValidationFailed
from desk import service as desk_service
from desk import sla
from desk.models import CHANNEL_LABELS, EVENT_LABELS, RATING_LABELS, STATUS_LABELS, Case, CaseStatus
from desk.schemas import ExtensionIn
from web import views
from web.deps import WebAllow
from web.forms import FormErrors, form_values
from web.templating import ROLE_HOME, WebRoute, redirect, register_nav, render, templates

router = APIRouter(prefix="/desk", route_class=WebRoute, include_in_schema=False)
Handler = Annotated[Principal, Depends(WebAllow(Role.desk, Role.supervisor, Role.admin))]
Supervisor = Annotated[Principal, Depends(WebAllow(Role.supervisor, Role.admin))]

register_nav("工单队列", "/desk/queue", (Role.desk, Role.supervisor, Role.admin), order=140)
register_nav("督办", "/desk/supervision", (Role.supervisor, Role.admin), order=150)
ROLE_HOME.setdefault(Role.desk, "/desk/queue")
ROLE_HOME.setdefault(Role.supervisor, "/desk/supervision")

templates.env.globals.setdefault("STAGE_LABELS", sla.STAGE_LABELS)

QUEUE_PAGE_SIZE = 20
SUPERVISION_LIMIT = 50
SUPERVISORS = (Role.supervisor, Role.admin)
COLOUR_LABELS = {"green": "正常", "yellow": "黄色预警", "orange": "橙色预警", "red": "红色预警"}
OPEN_STATUSES = [str(s) for s in desk_service.OPEN_STATUSES]
CLOCK_STATUSES = [str(s) for s in desk_service.CLOCK_STATUSES]
UNIT_LABELS = {"working_days": "个工作日", "working_hours": "个工作小时", "calendar_days": "个自然日", "hours": "小时"}
ROUTING_LABELS = {
    "policy": "按相关政策的承办部门",
    "classifier": "按诉求内容自动分拨",
    "keywords": "按关键词规则",
    "dispatch": "统一分拨",
    "manual": "人工指定",
}


# ---------------------------------------------------------------- shaping (also used by the firm's pages)


@dataclass
class CaseRow:
    """A case in a list, with the clock it is on now and the names to show."""

    case: Case
    sla: desk_service.SlaView
    department: str | None
    enterprise: str | None
    kind_label: str
    status_label: str
    colour: str  # green / yellow / orange / red / none (no clock runs)
    colour_label: str


def case_rows(db: Any, cases: list[Case], settings: Settings) -> list[CaseRow]:
    """Shape cases for a list: SLA stage, due time and colour computed now, department and firm names."""
    departments = desk_service.department_names(db, (c.department_id for c in cases))
    enterprises = desk_service.enterprise_names(db, (c.enterprise_id for c in cases))
    calendar = desk_service.site_calendar(settings)
    rows = []
    for c in cases:
        view = desk_service.sla_view(c, settings=settings, calendar=calendar)
        dept = departments.get(c.department_id) if c.department_id else None
        colour = view.colour or "none"
        rows.append(
            CaseRow(
                case=c,
                sla=view,
                department=dept.name if dept else None,
                enterprise=enterprises.get(c.enterprise_id) if c.enterprise_id else None,
                kind_label=sla.KIND_LABELS.get(c.kind, c.kind),  # type: ignore[call-overload]
                status_label=STATUS_LABELS.get(c.status, c.status),
                colour=colour,
                colour_label=view.state_label or "不计时",
            )
        )
    return rows


@dataclass
class DueItem:
    """One time limit of a case: contact, reply or close."""

    stage: str
    label: str
    due_at: dt.datetime
    done_at: dt.datetime | None
    running: bool


def due_items(case: Case, view: desk_service.SlaView) -> list[DueItem]:
    """Return the case's time limits in order, each done, running or waiting."""
    done = {"contact": case.contacted_at, "reply": case.first_reply_at, "close": case.resolved_at}
    dues = {"contact": case.contact_due_at, "reply": case.reply_due_at, "close": case.close_due_at}
    return [
        DueItem(stage, sla.STAGE_LABELS[stage], due, done[stage], view.stage == stage)  # type: ignore[index]
        for stage, due in dues.items()
        if due is not None
    ]


@dataclass
class EventView:
    """One entry of a timeline as shown: label, when, who, what was said."""

    kind: str
    label: str
    at: dt.datetime
    actor: str | None
    note: str | None
    internal: bool
    data: dict[str, Any] = field(default_factory=dict)


def timeline_view(db: Any, case: Case, principal: Principal) -> list[EventView]:
    """Return the events the principal may read, newest last; firms see departments, not officers' names."""
    events = desk_service.timeline(case, principal)
    departments = desk_service.department_names(db, (e.department_id for e in events))
    firm = principal.role == Role.enterprise
    out = []
    for e in events:
        actor = e.actor_name
        if e.kind == "answered_instantly":
            actor = "系统自动答复"
        elif e.kind == "dispatched" and e.actor_role in ("enterprise", "api_key", "system"):
            actor = "系统自动分拨"  # routing on intake is the system's, whoever submitted
        elif firm and e.actor_role not in ("enterprise", "system"):
            dept = departments.get(e.department_id) if e.department_id else None
            actor = dept.name if dept else "服务台"
        out.append(
            EventView(
                kind=e.kind,
                label=EVENT_LABELS.get(e.kind, e.kind),
                at=e.at,
                actor=actor,
                note=e.note,
                internal=not e.visible_to_firm,
                data={} if firm else dict(e.data or {}),
            )
        )
    return out


def instant_answer_view(case: Case) -> dict[str, Any] | None:
    """Return the instant answer the system gave, its citations linked to the policy pages."""
    answer = case.instant_answer
    if not isinstance(answer, dict) or not answer.get("text"):
        return None
    citations = []
    for c in answer.get("citations") or []:
        if not isinstance(c, dict):
            continue
        href = f"/policies/{c['id']}" if c.get("source") == "policy" and isinstance(c.get("id"), int) else None
        citations.append(
            {
                "source": "政策" if c.get("source") == "policy" else "常见问题",
                "title": c.get("title") or "",
                "code": c.get("code"),
                "passage": c.get("passage") or "",
                "href": href,
            }
        )
    return {
        "text": answer.get("text") or "",
        "confident": bool(answer.get("confident")),
        "confidence": answer.get("confidence"),
        "citations": citations,
    }


def _allowed(case: Case, action: str) -> bool:
    return CaseStatus(case.status) in desk_service.TRANSITIONS[action]


def available_actions(case: Case, principal: Principal) -> set[str]:
    """Return the actions to offer on the case page: what its status allows and the principal may do.

    Only an offer: the desk service checks the same rules again when an action is posted.
    """
    supervisor = principal.role in SUPERVISORS
    lead = (
        principal.role == Role.desk and case.department_id is not None and case.department_id == principal.department_id
    )
    acts: set[str] = {"note"} if _allowed(case, "note") else set()
    if supervisor or lead:
        for action in ("contact", "reply", "resolve", "transfer", "correct_kind"):
            if _allowed(case, action):
                acts.add(action)
        if _allowed(case, "accept") and case.department_id is not None:
            acts.add("accept")
        if _allowed(case, "pause") and not case.paused:
            acts.add("pause")
        if _allowed(case, "resume") and case.paused:
            acts.add("resume")
        if _allowed(case, "request_return") and case.department_id is not None and case.return_request is None:
            acts.add("request_return")
        if _allowed(case, "request_extension") and case.extension_request is None:
            acts.add("request_extension")
        if case.status == CaseStatus.rated:
            acts.add("close")
    if supervisor:
        if case.status == CaseStatus.resolved:
            acts.add("close")
        if case.status == CaseStatus.dispatched and case.department_id is None:
            acts.add("assign")
            acts.discard("transfer")
        if case.return_request is not None:
            acts.add("decide_return")
        if case.extension_request is not None and _allowed(case, "decide_extension"):
            acts.add("decide_extension")
        if _allowed(case, "reopen"):
            acts.add("reopen")
    return acts


# ---------------------------------------------------------------- the queue


@router.get("/queue")
def queue(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    officer: Handler,
    status: str | None = None,
    kind: str | None = None,
    sla_state: str | None = None,
    department: Annotated[int | None, Query()] = None,
    q: Annotated[str | None, Query(max_length=100)] = None,
    view: str = "running",
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    """The department's cases, earliest deadline first, coloured by SLA state (supervisors: every department)."""
    supervisor = officer.role in SUPERVISORS
    statuses = [status] if status in STATUS_LABELS else (CLOCK_STATUSES if view == "running" else None)
    filters = desk_service.CaseFilters(
        status=statuses,
        kind=kind if kind in sla.KINDS else None,
        sla_state=sla_state if sla_state in sla.STATE_LABELS else None,
        department_id=department if supervisor and department else None,
        q=(q or "").strip() or None,
        sort="due" if view == "running" or status else "received",
    )
    items, total = desk_service.list_cases(
        db=db, actor=officer, filters=filters, offset=(page - 1) * QUEUE_PAGE_SIZE, limit=QUEUE_PAGE_SIZE
    )
    pages = max(1, math.ceil(total / QUEUE_PAGE_SIZE))
    dept_name = None
    if officer.role == Role.desk and officer.department_id:
        dept = desk_service.department_names(db, [officer.department_id]).get(officer.department_id)
        dept_name = dept.name if dept else None
    return render(
        request,
        "desk_queue.html",
        {
            "rows": case_rows(db, items, settings),
            "total": total,
            "view": view if view in ("running", "all") else "running",
            "filters": {"status": status or "", "kind": kind or "", "sla_state": sla_state or "", "q": q or ""},
            "department": department,
            "supervisor": supervisor,
            "dept_name": dept_name,
            "departments": [(d.id, d.name) for d in catalog_service.list_departments(db=db)] if supervisor else [],
            "status_labels": STATUS_LABELS,
            "kind_labels": sla.KIND_LABELS,
            "state_labels": sla.STATE_LABELS,
            "page_links": views.page_links(request, page, pages),
        },
    )


# ---------------------------------------------------------------- the case page


def _case_context(
    db: Any, settings: Settings, case: Case, principal: Principal, errors: FormErrors | None = None
) -> dict[str, Any]:
    row = case_rows(db, [case], settings)[0]
    departments = desk_service.department_names(db, [case.department_id, *(d.department_id for d in case.departments)])
    joint = [
        departments[d.department_id].name
        for d in case.departments
        if d.role != "lead" and d.department_id in departments
    ]
    candidates = []
    by_code = {d.code: d for d in catalog_service.list_departments(db=db)}
    for code, score in case.routing_candidates or []:
        if code in by_code:
            candidates.append((by_code[code].id, by_code[code].name, score))
    return {
        "case": case,
        "row": row,
        "dues": due_items(case, row.sla),
        "timeline": timeline_view(db, case, principal),
        "answer": instant_answer_view(case),
        "actions": available_actions(case, principal),
        "errors": errors or FormErrors(),
        "joint": joint,
        "candidates": candidates,
        "policy": catalog_service.get_policy(db=db, policy_id=case.related_policy_id)
        if case.related_policy_id
        else None,
        "departments": [(d.id, d.name) for d in by_code.values()],
        "channel_label": CHANNEL_LABELS.get(case.channel, case.channel),
        "routing_label": ROUTING_LABELS.get(case.routing_method or "", ""),
        "rating_labels": RATING_LABELS,
        "kind_labels": sla.KIND_LABELS,
        "unit_labels": UNIT_LABELS,
        "supervisor": principal.role in SUPERVISORS,
    }


@router.get("/cases/{case_id}")
def case_page(request: Request, db: DbSession, settings: AppSettings, officer: Handler, case_id: int) -> Response:
    """A case: content, time limits, the instant answer given, timeline, and the actions it allows now."""
    case = desk_service.get_case(db=db, case_id=case_id, actor=officer)
    context = _case_context(db, settings, case, officer)
    context["done"] = request.query_params.get("done")
    context["done_labels"] = ACTION_DONE
    return render(request, "desk_case.html", context)


ACTION_DONE = {
    "accept": "已签收",
    "contact": "已登记联系企业",
    "reply": "已答复企业",
    "resolve": "已办结，等待企业评价",
    "transfer": "已转办",
    "return-request": "已提交退单申请，等待督办人员审批",
    "extension-request": "已提交延期申请，等待督办人员审批",
    "pause": "已挂起，计时暂停",
    "resume": "已恢复计时",
    "close": "工单已关闭归档",
    "note": "已添加备注",
    "kind": "已更正诉求类型",
    "assign": "已分拨至部门",
    "return-decision": "已处理退单申请",
    "extension-decision": "已处理延期申请",
    "reopen": "已重新办理",
}


async def _act(
    request: Request,
    db: Any,
    settings: Settings,
    principal: Principal,
    case_id: int,
    name: str,
    call: Callable[[dict[str, Any]], Any],
    fields: tuple[str, ...] = ("note",),
) -> Response:
    """Run one desk action from a posted form; back to the case (or where the form says) or its refusal."""
    form = await request.form()
    values = form_values(form, (*fields, "back"))
    try:
        call(values)
    except ValidationError as exc:
        db.rollback()
        errors = FormErrors.from_validation(exc)
    except HuiqiError as exc:
        db.rollback()
        errors = FormErrors.from_domain(exc)
    else:
        back = values.get("back")
        if back in ("/desk/supervision", "/desk/queue"):
            return redirect(request, f"{back}?done={name}")
        return redirect(request, f"/desk/cases/{case_id}?done={name}#timeline")
    case = desk_service.get_case(db=db, case_id=case_id, actor=principal)
    context = _case_context(db, settings, case, principal, errors)
    context["failed"] = name
    return render(request, "desk_case.html", context, status_code=422)


def _required(values: dict[str, Any], name: str, reason: str) -> str:
    value = values.get(name)
    if not value:
        raise ValidationFailed(errors=[FieldError(name, reason, "required")])
    return value


def _department_id(values: dict[str, Any]) -> int:
    raw = values.get("department_id")
    if not raw or not str(raw).isdigit():
        raise ValidationFailed(errors=[FieldError("department_id", "请选择部门", "required")])
    return int(raw)


@router.post("/cases/{case_id}/accept")
async def accept(request: Request, db: DbSession, settings: AppSettings, officer: Handler, case_id: int) -> Response:
    """Accept (签收) a dispatched case for the department."""
    return await _act(
        request,
        db,
        settings,
        officer,
        case_id,
        "accept",
        lambda v: desk_service.accept(db=db, settings=settings, case_id=case_id, actor=officer, note=v["note"]),
    )


@router.post("/cases/{case_id}/contact")
async def contact(request: Request, db: DbSession, settings: AppSettings, officer: Handler, case_id: int) -> Response:
    """Record that the firm was contacted (stops the contact clock)."""
    return await _act(
        request,
        db,
        settings,
        officer,
        case_id,
        "contact",
        lambda v: desk_service.contact(db=db, settings=settings, case_id=case_id, actor=officer, note=v["note"]),
    )


@router.post("/cases/{case_id}/reply")
async def reply(request: Request, db: DbSession, settings: AppSettings, officer: Handler, case_id: int) -> Response:
    """Give the firm a phased reply (阶段性答复)."""
    return await _act(
        request,
        db,
        settings,
        officer,
        case_id,
        "reply",
        lambda v: desk_service.reply(
            db=db,
            settings=settings,
            case_id=case_id,
            actor=officer,
            note=_required(v, "note", "答复内容不能为空"),
        ),
    )


@router.post("/cases/{case_id}/resolve")
async def resolve(request: Request, db: DbSession, settings: AppSettings, officer: Handler, case_id: int) -> Response:
    """Give the final reply (办结); the firm is asked to rate it."""
    return await _act(
        request,
        db,
        settings,
        officer,
        case_id,
        "resolve",
        lambda v: desk_service.resolve(
            db=db,
            settings=settings,
            case_id=case_id,
            actor=officer,
            resolution=_required(v, "resolution", "办结答复不能为空"),
        ),
        fields=("resolution",),
    )


@router.post("/cases/{case_id}/transfer")
async def transfer(request: Request, db: DbSession, settings: AppSettings, officer: Handler, case_id: int) -> Response:
    """Hand the case to another department (转办)."""
    return await _act(
        request,
        db,
        settings,
        officer,
        case_id,
        "transfer",
        lambda v: desk_service.transfer(
            db=db, settings=settings, case_id=case_id, actor=officer, department_id=_department_id(v), note=v["note"]
        ),
        fields=("department_id", "note"),
    )


@router.post("/cases/{case_id}/return-request")
async def return_request(
    request: Request, db: DbSession, settings: AppSettings, officer: Handler, case_id: int
) -> Response:
    """Ask to give the case back (退单) because it is not the department's; a supervisor decides."""
    return await _act(
        request,
        db,
        settings,
        officer,
        case_id,
        "return-request",
        lambda v: desk_service.request_return(
            db=db, settings=settings, case_id=case_id, actor=officer, reason=_required(v, "reason", "请填写退单理由")
        ),
        fields=("reason",),
    )


@router.post("/cases/{case_id}/extension-request")
async def extension_request(
    request: Request, db: DbSession, settings: AppSettings, officer: Handler, case_id: int
) -> Response:
    """Ask for more time (延期申请) before the close deadline; a supervisor decides."""

    def call(v: dict[str, Any]) -> Any:
        body = ExtensionIn(amount=v["amount"] or 0, unit=v["unit"] or "working_days", reason=v["reason"] or "")
        return desk_service.request_extension(
            db=db, settings=settings, case_id=case_id, actor=officer, extension_in=body
        )

    return await _act(
        request, db, settings, officer, case_id, "extension-request", call, fields=("amount", "unit", "reason")
    )


@router.post("/cases/{case_id}/pause")
async def pause(request: Request, db: DbSession, settings: AppSettings, officer: Handler, case_id: int) -> Response:
    """Stop the clocks while waiting on the firm (挂起)."""
    return await _act(
        request,
        db,
        settings,
        officer,
        case_id,
        "pause",
        lambda v: desk_service.pause(
            db=db, settings=settings, case_id=case_id, actor=officer, reason=_required(v, "reason", "请填写挂起原因")
        ),
        fields=("reason",),
    )


@router.post("/cases/{case_id}/resume")
async def resume(request: Request, db: DbSession, settings: AppSettings, officer: Handler, case_id: int) -> Response:
    """Restart the clocks."""
    return await _act(
        request,
        db,
        settings,
        officer,
        case_id,
        "resume",
        lambda v: desk_service.resume(db=db, settings=settings, case_id=case_id, actor=officer, note=v["note"]),
    )


@router.post("/cases/{case_id}/kind")
async def correct_kind(
    request: Request, db: DbSession, settings: AppSettings, officer: Handler, case_id: int
) -> Response:
    """Correct the kind of the case; the time limits follow the new kind."""
    return await _act(
        request,
        db,
        settings,
        officer,
        case_id,
        "kind",
        lambda v: desk_service.correct_kind(
            db=db, settings=settings, case_id=case_id, actor=officer, kind=v["kind"] or "", note=v["note"]
        ),
        fields=("kind", "note"),
    )


@router.post("/cases/{case_id}/close")
async def close(request: Request, db: DbSession, settings: AppSettings, officer: Handler, case_id: int) -> Response:
    """Close (归档) a rated case; supervisors may close a resolved one the firm did not rate, with a reason."""
    return await _act(
        request,
        db,
        settings,
        officer,
        case_id,
        "close",
        lambda v: desk_service.close(db=db, settings=settings, case_id=case_id, actor=officer, note=v["note"]),
    )


@router.post("/cases/{case_id}/note")
async def note(request: Request, db: DbSession, settings: AppSettings, officer: Handler, case_id: int) -> Response:
    """Add a remark to the timeline (internal unless marked visible to the firm)."""
    form = await request.form()
    visible = form.get("visible_to_firm") in ("1", "on", "true")
    return await _act(
        request,
        db,
        settings,
        officer,
        case_id,
        "note",
        lambda v: desk_service.add_note(
            db=db,
            case_id=case_id,
            actor=officer,
            note=_required(v, "note", "备注内容不能为空"),
            visible_to_firm=visible,
        ),
    )


# ---------------------------------------------------------------- supervisors


@router.post("/cases/{case_id}/assign")
async def assign(request: Request, db: DbSession, settings: AppSettings, boss: Supervisor, case_id: int) -> Response:
    """Send a case from the central dispatch queue (统一分拨) to a department."""
    return await _act(
        request,
        db,
        settings,
        boss,
        case_id,
        "assign",
        lambda v: desk_service.assign(
            db=db, settings=settings, case_id=case_id, actor=boss, department_id=_department_id(v), note=v["note"]
        ),
        fields=("department_id", "note"),
    )


def _decision(values: dict[str, Any]) -> bool:
    if values.get("decision") not in ("approve", "reject"):
        raise ValidationFailed(errors=[FieldError("decision", "请选择批准或驳回", "required")])
    return values["decision"] == "approve"


@router.post("/cases/{case_id}/return-decision")
async def return_decision(
    request: Request, db: DbSession, settings: AppSettings, boss: Supervisor, case_id: int
) -> Response:
    """Approve a return request (back to the central queue) or reject it."""
    return await _act(
        request,
        db,
        settings,
        boss,
        case_id,
        "return-decision",
        lambda v: desk_service.decide_return(
            db=db, settings=settings, case_id=case_id, actor=boss, approve=_decision(v), note=v["note"]
        ),
        fields=("decision", "note"),
    )


@router.post("/cases/{case_id}/extension-decision")
async def extension_decision(
    request: Request, db: DbSession, settings: AppSettings, boss: Supervisor, case_id: int
) -> Response:
    """Approve an extension (the time limits move on) or reject it."""
    return await _act(
        request,
        db,
        settings,
        boss,
        case_id,
        "extension-decision",
        lambda v: desk_service.decide_extension(
            db=db, settings=settings, case_id=case_id, actor=boss, approve=_decision(v), note=v["note"]
        ),
        fields=("decision", "note"),
    )


@router.post("/cases/{case_id}/reopen")
async def reopen(request: Request, db: DbSession, settings: AppSettings, boss: Supervisor, case_id: int) -> Response:
    """Reopen a resolved, rated or closed case under supervision (督办)."""
    return await _act(
        request,
        db,
        settings,
        boss,
        case_id,
        "reopen",
        lambda v: desk_service.reopen(
            db=db, settings=settings, case_id=case_id, actor=boss, reason=_required(v, "reason", "请填写重办原因")
        ),
        fields=("reason",),
    )


@router.get("/supervision")
def supervision(request: Request, db: DbSession, settings: AppSettings, boss: Supervisor) -> Response:
    """Escalations by colour, requests waiting for approval, and the central dispatch queue with assignment."""
    escalated, escalated_total = desk_service.escalations(db=db, actor=boss, settings=settings, limit=SUPERVISION_LIMIT)
    rows = case_rows(db, escalated, settings)
    groups: dict[str, list[CaseRow]] = {"red": [], "orange": [], "yellow": [], "other": []}
    for row in rows:
        groups[row.colour if row.colour in ("red", "orange", "yellow") else "other"].append(row)
    pending, pending_total = desk_service.pending_approvals(db=db, actor=boss, limit=SUPERVISION_LIMIT)
    dispatch, dispatch_total = desk_service.list_cases(
        db=db,
        actor=boss,
        filters=desk_service.CaseFilters(in_queue=True, sort="due"),
        limit=SUPERVISION_LIMIT,
    )
    departments = catalog_service.list_departments(db=db)
    by_code = {d.code: d for d in departments}
    suggestions = {
        c.id: [
            (by_code[code].id, by_code[code].name, score)
            for code, score in (c.routing_candidates or [])
            if code in by_code
        ][:3]
        for c in dispatch
    }
    return render(
        request,
        "desk_supervision.html",
        {
            "groups": groups,
            "escalated_total": escalated_total,
            "pending": case_rows(db, pending, settings),
            "pending_total": pending_total,
            "dispatch": case_rows(db, dispatch, settings),
            "dispatch_total": dispatch_total,
            "suggestions": suggestions,
            "departments": [(d.id, d.name) for d in departments],
            "unit_labels": UNIT_LABELS,
            "colour_labels": COLOUR_LABELS,
            "done": request.query_params.get("done"),
            "done_labels": ACTION_DONE,
        },
    )
