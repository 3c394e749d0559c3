"""The desk officer's and supervisor's pages (服务台): the department queue by due time in SLA colours,
a case page with timeline, instant answer and every action the case allows, and the supervisor's
escalations, approvals and central dispatch queue.

Every action calls the same desk service the API calls (desk.handling, desk.outcome), which checks the
state machine and who may act, through the one page-action helper :func:`web.cases.case_action`; the
pages only offer the actions the case's status allows and show the services' refusals in Chinese.
The forms are validated with the API's body schemas. A desk officer sees the cases of their own
department (joint handling included); another department's case is not found (404), as in the API.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from auth.models import Role
from auth.service import Principal
from catalog import service as catalog_service
from core.deps import AppSettings, DbSession
from core.errors import FieldError, ValidationFailed
from core.responses import download_response
from desk import attachments as case_files
from desk import clock, handling, lifecycle, outcome, queries, sla
from desk.models import STATUS_LABELS, Case, EventKind
from desk.schemas import (
    DecisionIn,
    DepartmentTargetIn,
    ExtensionIn,
    KindIn,
    NoteIn,
    NoteOnFirmIn,
    ReasonIn,
    RequiredNoteIn,
    ResolveIn,
)
from web import attachments as web_files
from web import views
from web.cases import SUPERVISORS, UNIT_LABELS, CaseRow, case_action, case_rows, form_body, staff_case_context
from web.deps import WebAllow
from web.forms import PageForm
from web.templating import ROLE_HOME, WebRoute, register_nav, render, templates

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
COLOUR_LABELS = {"green": "正常", "yellow": "黄色预警", "orange": "橙色预警", "red": "红色预警"}
CLOCK_STATUSES = [str(s) for s in clock.CLOCK_STATUSES]


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
    filters = queries.CaseFilters(
        status=statuses,
        kind=kind if kind in sla.KINDS else None,
        sla_state=sla_state if sla_state in sla.STATE_LABELS else None,
        department_id=department if supervisor and department else None,
        q=(q or "").strip() or None,
        sort="due" if view == "running" or status else "received",
    )
    items, total = queries.list_cases(
        db=db, actor=officer, filters=filters, offset=(page - 1) * QUEUE_PAGE_SIZE, limit=QUEUE_PAGE_SIZE
    )
    pages = max(1, math.ceil(total / QUEUE_PAGE_SIZE))
    handed_over = _handed_over(db, request, officer)
    dept_name = None
    if officer.role == Role.desk and officer.department_id:
        dept = queries.department_names(db, [officer.department_id]).get(officer.department_id)
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
            "departments": [
                (d.id, d.name) for d in catalog_service.list_departments(db=db, home_region=settings.home_region)
            ]
            if supervisor
            else [],
            "status_labels": STATUS_LABELS,
            "kind_labels": sla.KIND_LABELS,
            "state_labels": sla.STATE_LABELS,
            "page_links": views.page_links(request, page, pages),
            "handed_over": handed_over,
        },
    )


def _handed_over(db: Any, request: Request, officer: Principal) -> str | None:
    """Return the notice for a case the officer has just handed to another department, if `?case=` names one.

    Only the officer who transferred it last is told where it went (the case itself is no longer theirs to see).
    """
    raw = request.query_params.get("case")
    if request.query_params.get("done") != "transfer" or not raw or not raw.isdigit():
        return None
    case = db.get(Case, int(raw))
    last = case.events[-1] if case is not None and case.events else None
    if last is None or last.kind != EventKind.transferred or last.actor_id != officer.user_id:
        return None
    to = (last.data or {}).get("department_name") or "其他部门"
    return f"工单 {case.number} 已转办至{to}，已不在本部门队列中。"


# ---------------------------------------------------------------- the case page


@router.get("/cases/{case_id}")
def case_page(request: Request, db: DbSession, settings: AppSettings, officer: Handler, case_id: int) -> Response:
    """A case: content, time limits, the instant answer given, timeline, and the actions it allows now."""
    case = lifecycle.get_case(db=db, case_id=case_id, actor=officer)
    context = staff_case_context(db, settings, case, officer)
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
    "attach": "已上传答复附件，企业可以下载",
}


def _approve(form: PageForm) -> bool:
    decision = form.get("decision")
    if decision not in ("approve", "reject"):
        raise ValidationFailed(errors=[FieldError("decision", "请选择批准或驳回", "required")])
    return decision == "approve"


@router.post("/cases/{case_id}/accept")
def accept(
    request: Request, db: DbSession, settings: AppSettings, officer: Handler, case_id: int, form: PageForm
) -> Response:
    """Accept (签收) a dispatched case for the department."""

    def call() -> object:
        body = form_body(form, NoteIn, "note")
        return handling.accept(db=db, settings=settings, case_id=case_id, actor=officer, note=body.note)

    return case_action(request, db, settings, officer, case_id, "accept", call, form=form)


@router.post("/cases/{case_id}/contact")
def contact(
    request: Request, db: DbSession, settings: AppSettings, officer: Handler, case_id: int, form: PageForm
) -> Response:
    """Record that the firm was contacted (stops the contact clock)."""

    def call() -> object:
        body = form_body(form, NoteIn, "note")
        return handling.contact(db=db, settings=settings, case_id=case_id, actor=officer, note=body.note)

    return case_action(request, db, settings, officer, case_id, "contact", call, form=form)


@router.post("/cases/{case_id}/reply")
def reply(
    request: Request, db: DbSession, settings: AppSettings, officer: Handler, case_id: int, form: PageForm
) -> Response:
    """Give the firm a phased reply (阶段性答复)."""

    def call() -> object:
        body = form_body(form, RequiredNoteIn, "note")
        return handling.reply(db=db, settings=settings, case_id=case_id, actor=officer, note=body.note)

    return case_action(request, db, settings, officer, case_id, "reply", call, form=form)


@router.post("/cases/{case_id}/resolve")
def resolve(
    request: Request, db: DbSession, settings: AppSettings, officer: Handler, case_id: int, form: PageForm
) -> Response:
    """Give the final reply (办结); the firm is asked to rate it."""

    def call() -> object:
        body = form_body(form, ResolveIn, "resolution")
        return handling.resolve(db=db, settings=settings, case_id=case_id, actor=officer, resolution=body.resolution)

    return case_action(request, db, settings, officer, case_id, "resolve", call, form=form)


@router.post("/cases/{case_id}/transfer")
def transfer(
    request: Request, db: DbSession, settings: AppSettings, officer: Handler, case_id: int, form: PageForm
) -> Response:
    """Hand the case to another department (转办)."""

    def call() -> object:
        body = form_body(form, DepartmentTargetIn, "department_id", "note")
        return handling.transfer(
            db=db, settings=settings, case_id=case_id, actor=officer, department_id=body.department_id, note=body.note
        )

    return case_action(request, db, settings, officer, case_id, "transfer", call, form=form)


@router.post("/cases/{case_id}/return-request")
def return_request(
    request: Request, db: DbSession, settings: AppSettings, officer: Handler, case_id: int, form: PageForm
) -> Response:
    """Ask to give the case back (退单) because it is not the department's; a supervisor decides."""

    def call() -> object:
        body = form_body(form, ReasonIn, "reason")
        return handling.request_return(db=db, settings=settings, case_id=case_id, actor=officer, reason=body.reason)

    return case_action(request, db, settings, officer, case_id, "return-request", call, form=form)


@router.post("/cases/{case_id}/extension-request")
def extension_request(
    request: Request, db: DbSession, settings: AppSettings, officer: Handler, case_id: int, form: PageForm
) -> Response:
    """Ask for more time (延期申请) before the close deadline; a supervisor decides."""

    def call() -> object:
        body = form_body(form, ExtensionIn, "amount", "unit", "reason")
        return handling.request_extension(db=db, settings=settings, case_id=case_id, actor=officer, extension_in=body)

    return case_action(request, db, settings, officer, case_id, "extension-request", call, form=form)


@router.post("/cases/{case_id}/pause")
def pause(
    request: Request, db: DbSession, settings: AppSettings, officer: Handler, case_id: int, form: PageForm
) -> Response:
    """Stop the clocks while waiting on the firm (挂起)."""

    def call() -> object:
        body = form_body(form, ReasonIn, "reason")
        return handling.pause(db=db, settings=settings, case_id=case_id, actor=officer, reason=body.reason)

    return case_action(request, db, settings, officer, case_id, "pause", call, form=form)


@router.post("/cases/{case_id}/resume")
def resume(
    request: Request, db: DbSession, settings: AppSettings, officer: Handler, case_id: int, form: PageForm
) -> Response:
    """Restart the clocks."""

    def call() -> object:
        body = form_body(form, NoteIn, "note")
        return handling.resume(db=db, settings=settings, case_id=case_id, actor=officer, note=body.note)

    return case_action(request, db, settings, officer, case_id, "resume", call, form=form)


@router.post("/cases/{case_id}/kind")
def correct_kind(
    request: Request, db: DbSession, settings: AppSettings, officer: Handler, case_id: int, form: PageForm
) -> Response:
    """Correct the kind of the case; the time limits follow the new kind."""

    def call() -> object:
        body = form_body(form, KindIn, "kind", "note")
        return handling.correct_kind(
            db=db, settings=settings, case_id=case_id, actor=officer, kind=body.kind, note=body.note
        )

    return case_action(request, db, settings, officer, case_id, "kind", call, form=form)


@router.post("/cases/{case_id}/close")
def close(
    request: Request, db: DbSession, settings: AppSettings, officer: Handler, case_id: int, form: PageForm
) -> Response:
    """Close (归档) a rated case; supervisors may close a resolved one the firm did not rate, with a reason."""

    def call() -> object:
        body = form_body(form, NoteIn, "note")
        return outcome.close(db=db, settings=settings, case_id=case_id, actor=officer, note=body.note)

    return case_action(request, db, settings, officer, case_id, "close", call, form=form)


@router.post("/cases/{case_id}/note")
def note(
    request: Request, db: DbSession, settings: AppSettings, officer: Handler, case_id: int, form: PageForm
) -> Response:
    """Add a remark to the timeline (internal unless marked visible to the firm)."""

    def call() -> object:
        visible = form.get("visible_to_firm") in ("1", "on", "true")
        body = form_body(form, NoteOnFirmIn, "note", visible_to_firm=visible)
        return handling.add_note(
            db=db, settings=settings, case_id=case_id, actor=officer, note=body.note, visible_to_firm=visible
        )

    return case_action(request, db, settings, officer, case_id, "note", call, form=form)


# ---------------------------------------------------------------- supervisors


@router.post("/cases/{case_id}/assign")
def assign(
    request: Request, db: DbSession, settings: AppSettings, boss: Supervisor, case_id: int, form: PageForm
) -> Response:
    """Send a case from the central dispatch queue (统一分拨) to a department."""

    def call() -> object:
        body = form_body(form, DepartmentTargetIn, "department_id", "note")
        return handling.assign(
            db=db, settings=settings, case_id=case_id, actor=boss, department_id=body.department_id, note=body.note
        )

    return case_action(request, db, settings, boss, case_id, "assign", call, form=form)


@router.post("/cases/{case_id}/return-decision")
def return_decision(
    request: Request, db: DbSession, settings: AppSettings, boss: Supervisor, case_id: int, form: PageForm
) -> Response:
    """Approve a return request (back to the central queue) or reject it."""

    def call() -> object:
        body = form_body(form, DecisionIn, "note", approve=_approve(form))
        return handling.decide_return(
            db=db, settings=settings, case_id=case_id, actor=boss, approve=body.approve, note=body.note
        )

    return case_action(request, db, settings, boss, case_id, "return-decision", call, form=form)


@router.post("/cases/{case_id}/extension-decision")
def extension_decision(
    request: Request, db: DbSession, settings: AppSettings, boss: Supervisor, case_id: int, form: PageForm
) -> Response:
    """Approve an extension (the time limits move on) or reject it."""

    def call() -> object:
        body = form_body(form, DecisionIn, "note", approve=_approve(form))
        return handling.decide_extension(
            db=db, settings=settings, case_id=case_id, actor=boss, approve=body.approve, note=body.note
        )

    return case_action(request, db, settings, boss, case_id, "extension-decision", call, form=form)


@router.post("/cases/{case_id}/reopen")
def reopen(
    request: Request, db: DbSession, settings: AppSettings, boss: Supervisor, case_id: int, form: PageForm
) -> Response:
    """Reopen a resolved, rated or closed case under supervision (督办)."""

    def call() -> object:
        body = form_body(form, ReasonIn, "reason")
        return outcome.reopen(db=db, settings=settings, case_id=case_id, actor=boss, reason=body.reason)

    return case_action(request, db, settings, boss, case_id, "reopen", call, form=form)


@router.get("/supervision")
def supervision(request: Request, db: DbSession, settings: AppSettings, boss: Supervisor) -> Response:
    """Escalations by colour, requests waiting for approval, and the central dispatch queue with assignment."""
    escalated, escalated_total = queries.escalations(db=db, actor=boss, settings=settings, limit=SUPERVISION_LIMIT)
    rows = case_rows(db, escalated, settings)
    groups: dict[str, list[CaseRow]] = {"red": [], "orange": [], "yellow": [], "other": []}
    for row in rows:
        groups[row.colour if row.colour in ("red", "orange", "yellow") else "other"].append(row)
    pending, pending_total = queries.pending_approvals(db=db, actor=boss, limit=SUPERVISION_LIMIT)
    dispatch, dispatch_total = queries.list_cases(
        db=db,
        actor=boss,
        filters=queries.CaseFilters(in_queue=True, sort="due"),
        limit=SUPERVISION_LIMIT,
    )
    departments = catalog_service.list_departments(db=db, home_region=settings.home_region)
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


# ---------------------------------------------------------------- attachments


@router.post("/cases/{case_id}/attachments")
def add_attachment(
    request: Request, db: DbSession, settings: AppSettings, officer: Handler, case_id: int, form: PageForm
) -> Response:
    """Upload a reply file (答复附件) for the firm: the lead department's officers, supervisors and admins."""

    def call() -> object:
        name, data = web_files.posted_file(form, settings)
        return case_files.attach_to_case(db, settings=settings, case_id=case_id, actor=officer, name=name, data=data)

    return case_action(request, db, settings, officer, case_id, "attach", call, form=form)


@router.get("/cases/{case_id}/attachments/{attachment_id}")
def attachment(db: DbSession, settings: AppSettings, officer: Handler, case_id: int, attachment_id: int) -> Response:
    """Download a case's file (the firm's evidence or a reply file), if the case is the officer's to see."""
    row = case_files.get_case_attachment(db, case_id=case_id, attachment_id=attachment_id, actor=officer)
    return download_response(settings=settings, attachment=row)
