"""What the staff's and the firm's case pages share: cases shaped for lists and detail pages, and the one
helper that runs a desk action posted from a page.

The firm's pages show exactly :func:`desk.queries.firm_view` of a case (the API does the same):
only a confident instant answer, only the events meant for the firm, no officer's name.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from auth.models import Role
from auth.service import Principal
from catalog import service as catalog_service
from core.config import Settings
from core.errors import HuiqiError
from desk import attachments as case_files
from desk import clock, lifecycle, queries, sla
from desk.models import CHANNEL_LABELS, EVENT_LABELS, RATING_LABELS, STATUS_LABELS, Case, CaseStatus
from web import attachments as web_files
from web.forms import FormErrors, form_values
from web.templating import redirect, render

SUPERVISORS = (Role.supervisor, Role.admin)
UNIT_LABELS = {"working_days": "个工作日", "working_hours": "个工作小时", "calendar_days": "个自然日", "hours": "小时"}
ROUTING_LABELS = {
    "policy": "按相关政策的承办部门",
    "classifier": "按诉求内容自动分拨",
    "keywords": "按关键词规则",
    "dispatch": "统一分拨",
    "manual": "人工指定",
}
# Where a staff action may send the browser back to instead of the case page.
STAFF_BACK = ("/desk/supervision", "/desk/queue")

Body = TypeVar("Body", bound=BaseModel)

# ---------------------------------------------------------------- shaping


@dataclass
class CaseRow:
    """A case in a list, with the clock it is on now and the names to show."""

    case: Case
    sla: clock.SlaView
    department: str | None
    enterprise: str | None
    kind_label: str
    status_label: str
    colour: str  # green / yellow / orange / red / none (no clock runs)
    colour_label: str


def case_rows(db: Session, cases: list[Case], settings: Settings) -> list[CaseRow]:
    """Shape cases for a list: SLA stage, due time and colour computed now, department and firm names."""
    departments = queries.department_names(db, (c.department_id for c in cases))
    enterprises = queries.enterprise_names(db, (c.enterprise_id for c in cases))
    calendar = clock.site_calendar(settings)
    rows = []
    for c in cases:
        view = clock.sla_view(c, settings=settings, calendar=calendar)
        dept = departments.get(c.department_id) if c.department_id else None
        rows.append(
            CaseRow(
                case=c,
                sla=view,
                department=dept.name if dept else None,
                enterprise=enterprises.get(c.enterprise_id) if c.enterprise_id else None,
                kind_label=sla.KIND_LABELS.get(c.kind, c.kind),
                status_label=STATUS_LABELS.get(c.status, c.status),
                colour=view.colour or "none",
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


def due_items(case: Case, view: clock.SlaView) -> list[DueItem]:
    """Return the case's time limits in order, each done, running or waiting."""
    done = {"contact": case.contacted_at, "reply": case.first_reply_at, "close": case.resolved_at}
    dues = {"contact": case.contact_due_at, "reply": case.reply_due_at, "close": case.close_due_at}
    return [
        DueItem(stage, sla.STAGE_LABELS[stage], due, done[stage], view.stage == stage)
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


def _system_actor(kind: str, actor_role: str | None) -> str | None:
    if kind == "answered_instantly":
        return "系统自动答复"
    if kind == "dispatched" and actor_role in ("enterprise", "api_key", "system"):
        return "系统自动分拨"  # routing on intake is the system's, whoever submitted
    return None


def timeline_view(db: Session, case: Case, principal: Principal) -> list[EventView]:
    """Return the events the principal may read, newest last; firms see departments, not officers' names."""
    if principal.role == Role.enterprise:
        events = queries.firm_view(case).events
        departments = queries.department_names(db, (e.department_id for e in events))
        out = []
        for e in events:
            actor = _system_actor(e.kind, e.actor_role) or e.actor_name
            if actor is None:
                dept = departments.get(e.department_id) if e.department_id else None
                actor = dept.name if dept else "服务台"
            out.append(EventView(kind=e.kind, label=e.label, at=e.at, actor=actor, note=e.note, internal=False))
        return out
    return [
        EventView(
            kind=e.kind,
            label=EVENT_LABELS.get(e.kind, e.kind),
            at=e.at,
            actor=_system_actor(e.kind, e.actor_role) or e.actor_name,
            note=e.note,
            internal=not e.visible_to_firm,
            data=dict(e.data or {}),
        )
        for e in queries.timeline(case, principal)
    ]


def instant_answer_view(answer: dict[str, Any] | None) -> dict[str, Any] | None:
    """Return an instant answer for a page, its citations linked to the policy pages."""
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
                # A policy's document number means something to people; an FAQ entry's code (faq-004) does not.
                "code": c.get("code") if c.get("source") == "policy" else None,
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


def available_actions(case: Case, principal: Principal) -> set[str]:
    """Return the actions to offer on the case page: what its status allows and the principal may do.

    Only an offer: the desk services check the same rules again when an action is posted.
    """
    supervisor = principal.role in SUPERVISORS
    lead = (
        principal.role == Role.desk and case.department_id is not None and case.department_id == principal.department_id
    )
    acts: set[str] = {"note"} if lifecycle.allowed(case, "note") else set()
    if supervisor or lead:
        acts.add("attach")  # reply files: desk.attachments admits the same people (lifecycle.require_handler)
        for action in ("contact", "reply", "resolve", "transfer", "correct_kind"):
            if lifecycle.allowed(case, action):
                acts.add(action)
        if lifecycle.allowed(case, "accept") and case.department_id is not None:
            acts.add("accept")
        if lifecycle.allowed(case, "pause") and not case.paused:
            acts.add("pause")
        if lifecycle.allowed(case, "resume") and case.paused:
            acts.add("resume")
        if lifecycle.allowed(case, "request_return") and case.department_id is not None and case.return_request is None:
            acts.add("request_return")
        if lifecycle.allowed(case, "request_extension") and case.extension_request is None:
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
        if case.extension_request is not None and lifecycle.allowed(case, "decide_extension"):
            acts.add("decide_extension")
        if lifecycle.allowed(case, "reopen"):
            acts.add("reopen")
    return acts


def _policy(db: Session, case: Case) -> Any:
    return catalog_service.get_policy(db=db, policy_id=case.related_policy_id) if case.related_policy_id else None


def staff_case_context(
    db: Session, settings: Settings, case: Case, principal: Principal, errors: FormErrors | None = None
) -> dict[str, Any]:
    """Return what the staff's case page shows: everything, the draft answer too, and the actions allowed now."""
    row = case_rows(db, [case], settings)[0]
    departments = queries.department_names(db, [case.department_id, *(d.department_id for d in case.departments)])
    joint = [
        departments[d.department_id].name
        for d in case.departments
        if d.role != "lead" and d.department_id in departments
    ]
    by_code = {d.code: d for d in catalog_service.list_departments(db=db)}
    candidates = [
        (by_code[code].id, by_code[code].name, score)
        for code, score in case.routing_candidates or []
        if code in by_code
    ]
    return {
        "case": case,
        "row": row,
        "dues": due_items(case, row.sla),
        "timeline": timeline_view(db, case, principal),
        "answer": instant_answer_view(case.instant_answer),
        "actions": available_actions(case, principal),
        "errors": errors or FormErrors(),
        "joint": joint,
        "candidates": candidates,
        "policy": _policy(db, case),
        "departments": [
            (d.id, d.name) for d in catalog_service.home_first(list(by_code.values()), settings.home_region)
        ],
        "channel_label": CHANNEL_LABELS.get(case.channel, case.channel),
        "routing_label": ROUTING_LABELS.get(case.routing_method or "", ""),
        "rating_labels": RATING_LABELS,
        "kind_labels": sla.KIND_LABELS,
        "unit_labels": UNIT_LABELS,
        "supervisor": principal.role in SUPERVISORS,
        **_files_context(db, settings, case),
    }


def firm_case_context(
    db: Session, settings: Settings, case: Case, firm: Principal, errors: FormErrors | None = None
) -> dict[str, Any]:
    """Return what the firm's case page shows: its view of the case (desk.queries.firm_view), limits, rating."""
    row = case_rows(db, [case], settings)[0]
    return {
        "case": case,
        "row": row,
        "dues": due_items(case, row.sla),
        "timeline": timeline_view(db, case, firm),
        "answer": instant_answer_view(queries.firm_view(case).instant_answer),
        "errors": errors or FormErrors(),
        "rating_labels": RATING_LABELS,
        "can_rate": case.status == CaseStatus.resolved
        or (case.status == CaseStatus.closed and case.rating is None and case.dispatched_at is None),
        "answered": case.status == CaseStatus.answered,
        "pending": case.intake_done_at is None,
        "open": case.status not in (CaseStatus.closed,),
        "policy": _policy(db, case),
        **_files_context(db, settings, case),
    }


def _files_context(db: Session, settings: Settings, case: Case) -> dict[str, Any]:
    """The case's attachments and the upload form's hints (both case pages)."""
    return {
        "attachments": case_files.attachments_of(db, case),
        "attachment_accept": web_files.ACCEPT,
        "attachment_hint": web_files.upload_hint(settings),
    }


# ---------------------------------------------------------------- the one page-action helper


def form_body(form: FormData, model: type[Body], *names: str, **values: Any) -> Body:
    """Validate posted fields with the API's body schema (blank fields left out), so pages refuse what the API refuses."""
    posted = {k: v for k, v in form_values(form, names).items() if v is not None}
    return model(**{**posted, **values})


def case_action(
    request: Request,
    db: Session,
    settings: Settings,
    principal: Principal,
    case_id: int,
    name: str,
    call: Callable[[], Any],
    *,
    form: FormData | None = None,
) -> Response:
    """Run one desk action posted from a case page: back to the page with `done=name`, or the refusal on it.

    The action is the same desk service the API calls; a refused one is rolled back and the case page
    is shown again (422) with the reasons by field. Staff forms may name a list to go back to (`back`).
    """
    try:
        result = call()
    except ValidationError as exc:
        db.rollback()
        errors = FormErrors.from_validation(exc)
    except HuiqiError as exc:
        db.rollback()
        errors = FormErrors.from_domain(exc)
    else:
        if principal.role == Role.enterprise:
            if name == "rated" and isinstance(result, Case) and result.status == CaseStatus.reopened:
                name = "reopened"
            return redirect(request, f"/me/cases/{case_id}?done={name}")
        back = form.get("back") if form is not None else None
        if back in STAFF_BACK:
            return redirect(request, f"{back}?done={name}")
        if isinstance(result, Case) and not lifecycle.can_see(result, principal):
            # The case left the officer's department (转办): back to their queue, saying where it went.
            return redirect(request, f"/desk/queue?{urlencode({'done': name, 'case': result.id})}")
        return redirect(request, f"/desk/cases/{case_id}?done={name}#timeline")
    case = lifecycle.get_case(db=db, case_id=case_id, actor=principal)
    if principal.role == Role.enterprise:
        return render(
            request, "me_case.html", firm_case_context(db, settings, case, principal, errors), status_code=422
        )
    context = staff_case_context(db, settings, case, principal, errors)
    context["failed"] = name
    return render(request, "desk_case.html", context, status_code=422)
