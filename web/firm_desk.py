"""A firm's enquiry pages (我的诉求): submit an enquiry, see the instant answer with its sources or the case
number, handling department and time limits, follow the timeline, accept the answer or ask for a
person, add a supplement, and rate the outcome. Everything goes through desk/service.py.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError

from auth.models import Role
from catalog import service as catalog_service
from core.config import Settings
from core.deps import AppSettings, DbSession
from core.errors import FieldError, HuiqiError, ValidationFailed
from desk import service as desk_service
from desk import sla
from desk.models import RATING_LABELS, Case, CaseStatus, Rating
from desk.schemas import CaseIn
from matcher.deps import MatcherDep
from profiles import service as profiles_service
from web import views
from web.deps import WebFirm
from web.desk import case_rows, due_items, instant_answer_view, timeline_view
from web.forms import FormErrors, form_values, keep
from web.templating import WebRoute, redirect, register_nav, render

router = APIRouter(prefix="/me/cases", route_class=WebRoute, include_in_schema=False)

register_nav("我的诉求", "/me/cases", (Role.enterprise,), order=55)

PAGE_SIZE = 10
CASE_FIELDS = ("kind", "title", "content", "contact_name", "contact_phone", "related_policy_id")
DONE_TEXT = {
    "accepted": "感谢您的反馈，工单已关闭。",
    "person": "已转人工办理，承办部门会在时限内联系您。",
    "rated": "感谢您的评价！",
    "reopened": "已收到您的评价，工单已重新办理并列入督办。",
    "note": "补充说明已提交，承办部门可以看到。",
}


def _firm_case(db: Any, firm: Any, case_id: int) -> Case:
    """Return the firm's own case; another firm's is not found."""
    return desk_service.get_case(db=db, case_id=case_id, actor=firm)


@router.get("")
def my_cases(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    firm: WebFirm,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    """The firm's enquiries, newest first, with their status and time limits."""
    items, total = desk_service.list_cases(db=db, actor=firm, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    return render(
        request,
        "me_cases.html",
        {"rows": case_rows(db, items, settings), "total": total, "page_links": views.page_links(request, page, pages)},
    )


def _new_context(db: Any, firm: Any, values: dict[str, Any], errors: FormErrors) -> dict[str, Any]:
    policy = None
    raw = values.get("related_policy_id")
    if raw and str(raw).isdigit():
        try:
            policy = catalog_service.get_visible_policy(db=db, policy_id=int(raw), actor=firm)
        except HuiqiError:
            policy = None
    return {"values": keep(values), "errors": errors, "kind_labels": sla.KIND_LABELS, "policy": policy}


@router.get("/new")
def new_case(
    request: Request, db: DbSession, firm: WebFirm, policy_id: Annotated[int | None, Query()] = None
) -> Response:
    """The enquiry form; from a policy page the policy is filled in."""
    ent = profiles_service.get_enterprise(db=db, enterprise_id=firm.enterprise_id)
    values = {
        "kind": "",
        "contact_name": ent.contact_name or "",
        "contact_phone": ent.contact_phone or "",
        "related_policy_id": str(policy_id or ""),
    }
    return render(request, "me_case_new.html", _new_context(db, firm, values, FormErrors()))


@router.post("/new")
async def submit_case(
    request: Request, db: DbSession, settings: AppSettings, matcher: MatcherDep, firm: WebFirm
) -> Response:
    """Submit an enquiry: a consultation may be answered at once, anything else goes to a department."""
    form = await request.form()
    values = form_values(form, CASE_FIELDS)
    data = {k: v for k, v in values.items() if v is not None}
    try:
        case = desk_service.submit_case(db=db, matcher=matcher, settings=settings, actor=firm, case_in=CaseIn(**data))
    except ValidationError as exc:
        errors = FormErrors.from_validation(exc)
    except HuiqiError as exc:
        db.rollback()
        errors = FormErrors.from_domain(exc)
    else:
        return redirect(request, f"/me/cases/{case.id}?new=1")
    return render(request, "me_case_new.html", _new_context(db, firm, values, errors), status_code=422)


def _case_context(db: Any, settings: Settings, case: Case, firm: Any, errors: FormErrors | None = None) -> dict:
    row = case_rows(db, [case], settings)[0]
    return {
        "case": case,
        "row": row,
        "dues": due_items(case, row.sla),
        "timeline": timeline_view(db, case, firm),
        "answer": instant_answer_view(case),
        "errors": errors or FormErrors(),
        "rating_labels": RATING_LABELS,
        "can_rate": case.status == CaseStatus.resolved
        or (case.status == CaseStatus.closed and case.rating is None and case.dispatched_at is None),
        "answered": case.status == CaseStatus.answered,
        "open": case.status not in (CaseStatus.closed,),
        "policy": catalog_service.get_policy(db=db, policy_id=case.related_policy_id)
        if case.related_policy_id
        else None,
    }


@router.get("/{case_id}")
def case_page(request: Request, db: DbSession, settings: AppSettings, firm: WebFirm, case_id: int) -> Response:
    """One enquiry: the instant answer or where it is being handled, the time limits, the timeline, rating."""
    case = _firm_case(db, firm, case_id)
    context = _case_context(db, settings, case, firm)
    context["new"] = request.query_params.get("new") == "1"
    context["done"] = DONE_TEXT.get(request.query_params.get("done") or "")
    return render(request, "me_case.html", context)


async def _firm_act(
    request: Request, db: Any, settings: Settings, firm: Any, case_id: int, call: Any, done: str
) -> Response:
    form = await request.form()
    values = form_values(form, ("rating", "comment", "note"))
    try:
        result = call(values)
    except ValidationError as exc:
        db.rollback()
        errors = FormErrors.from_validation(exc)
    except HuiqiError as exc:
        db.rollback()
        errors = FormErrors.from_domain(exc)
    else:
        if done == "rated" and isinstance(result, Case) and result.status == CaseStatus.reopened:
            done = "reopened"
        return redirect(request, f"/me/cases/{case_id}?done={done}")
    case = _firm_case(db, firm, case_id)
    return render(request, "me_case.html", _case_context(db, settings, case, firm, errors), status_code=422)


def _rating(values: dict[str, Any], required: bool) -> Rating | None:
    raw = values.get("rating")
    if raw in Rating.__members__:
        return Rating(raw)
    if required:
        raise ValidationFailed(errors=[FieldError("rating", "请选择满意、基本满意或不满意", "required")])
    return None


@router.post("/{case_id}/accept-answer")
async def accept_answer(
    request: Request, db: DbSession, settings: AppSettings, firm: WebFirm, case_id: int
) -> Response:
    """The instant answer solved it: the case closes, rated if a rating was given."""
    return await _firm_act(
        request,
        db,
        settings,
        firm,
        case_id,
        lambda v: desk_service.accept_answer(
            db=db, settings=settings, case_id=case_id, actor=firm, rating=_rating(v, False), comment=v["comment"]
        ),
        "accepted",
    )


@router.post("/{case_id}/ask-for-person")
async def ask_for_person(
    request: Request, db: DbSession, settings: AppSettings, firm: WebFirm, case_id: int
) -> Response:
    """The instant answer did not help: route the case to a department, the answer attached."""
    return await _firm_act(
        request,
        db,
        settings,
        firm,
        case_id,
        lambda v: desk_service.ask_for_person(db=db, settings=settings, case_id=case_id, actor=firm, note=v["note"]),
        "person",
    )


@router.post("/{case_id}/rate")
async def rate(request: Request, db: DbSession, settings: AppSettings, firm: WebFirm, case_id: int) -> Response:
    """Rate the outcome: 满意 / 基本满意 / 不满意 (不满意 reopens the case under supervision)."""
    return await _firm_act(
        request,
        db,
        settings,
        firm,
        case_id,
        lambda v: desk_service.rate(
            db=db, settings=settings, case_id=case_id, actor=firm, rating=_rating(v, True), comment=v["comment"]
        ),
        "rated",
    )


@router.post("/{case_id}/note")
async def add_note(request: Request, db: DbSession, settings: AppSettings, firm: WebFirm, case_id: int) -> Response:
    """Add a supplement to the enquiry (visible to the handling department)."""

    def call(v: dict[str, Any]) -> Case:
        if not v["note"]:
            raise ValidationFailed(errors=[FieldError("note", "补充内容不能为空", "required")])
        return desk_service.add_note(db=db, case_id=case_id, actor=firm, note=v["note"])

    return await _firm_act(request, db, settings, firm, case_id, call, "note")
