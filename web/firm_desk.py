"""A firm's enquiry pages (我的诉求): submit an enquiry, see the instant answer with its sources or the case
number, handling department and time limits, follow the timeline, accept the answer or ask for a
person, add a supplement, and rate the outcome.

Everything goes through the desk services the API calls (submission: the staged intake of
desk/flows.py), and a case is shown as :func:`desk.queries.firm_view` says — as in the API.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError

from auth.models import Role
from catalog import service as catalog_service
from core import attachments as files
from core.db import write_stage
from core.deps import AppSettings, DbSession, ReleasedReads, writes_in_stages
from core.errors import FieldError, HuiqiError, ValidationFailed
from core.files import safe_display_name
from core.responses import download_response
from desk import attachments as case_files
from desk import flows, handling, lifecycle, outcome, queries, sla
from desk.schemas import AcceptAnswerIn, CaseIn, NoteIn, NoteOnFirmIn, RateIn
from matcher.deps import MatcherDep
from profiles import service as profiles_service
from web import attachments as web_files
from web import views
from web.cases import case_action, case_rows, firm_case_context, form_body
from web.deps import WebFirm
from web.forms import FormErrors, PageForm, form_values, keep
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
    "attached": "材料已上传，承办部门可以看到。",
    "files_failed": "诉求已提交，但附件未能保存，请在下方“上传材料”中重新上传。",
}


@router.get("")
def my_cases(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    firm: WebFirm,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    """The firm's enquiries, newest first, with their status and time limits."""
    items, total = queries.list_cases(db=db, actor=firm, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    return render(
        request,
        "me_cases.html",
        {"rows": case_rows(db, items, settings), "total": total, "page_links": views.page_links(request, page, pages)},
    )


def _new_context(db: Any, settings: Any, firm: Any, values: dict[str, Any], errors: FormErrors) -> dict[str, Any]:
    policy = None
    raw = values.get("related_policy_id")
    if raw and str(raw).isdigit():
        try:
            policy = catalog_service.get_visible_policy(db=db, policy_id=int(raw), actor=firm)
        except HuiqiError:
            policy = None
    return {
        "values": keep(values),
        "errors": errors,
        "kind_labels": sla.KIND_LABELS,
        "policy": policy,
        "attachment_accept": web_files.ACCEPT,
        "attachment_hint": web_files.upload_hint(settings) + f"，最多 {settings.attachment_max_per_object} 个",
    }


@router.get("/new")
def new_case(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    firm: WebFirm,
    policy_id: Annotated[int | None, Query()] = None,
) -> Response:
    """The enquiry form; from a policy page the policy is filled in."""
    ent = profiles_service.get_enterprise(db=db, enterprise_id=firm.own_enterprise_id)
    values = {
        "kind": "",
        "contact_name": ent.contact_name or "",
        "contact_phone": ent.contact_phone or "",
        "related_policy_id": str(policy_id or ""),
    }
    return render(request, "me_case_new.html", _new_context(db, settings, firm, values, FormErrors()))


@router.post("/new")
@writes_in_stages
def submit_case(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    matcher: MatcherDep,
    firm: WebFirm,
    _released: ReleasedReads,
    form: PageForm,
) -> Response:
    """Submit an enquiry, with evidence files if any: a consultation may be answered at once, anything else goes
    to a department. The files are checked before the enquiry is filed, so a refused file files nothing."""
    values = form_values(form, CASE_FIELDS)
    try:
        evidence = web_files.posted_files(form, "files", settings)
        if len(evidence) > settings.attachment_max_per_object:
            reason = f"最多上传 {settings.attachment_max_per_object} 个附件"
            raise ValidationFailed(reason, errors=[FieldError("files", reason, "file.too_many")])
        for name, data in evidence:
            try:
                files.check_file(name=name, data=data, settings=settings)
            except HuiqiError as exc:
                reason = f"“{safe_display_name(name)}”：" + "；".join(e.reason for e in exc.errors)
                raise ValidationFailed(exc.message, errors=[FieldError("files", reason, exc.code)]) from exc
        case_in = CaseIn(**{k: v for k, v in values.items() if v is not None})
        case = flows.submit(db=db, matcher=matcher, settings=settings, actor=firm, case_in=case_in)
    except ValidationError as exc:
        errors = FormErrors.from_validation(exc)
    except HuiqiError as exc:
        db.rollback()
        errors = FormErrors.from_domain(exc)
    else:
        try:
            if evidence:
                with write_stage(db):  # the files in one transaction: all of them, or none
                    for name, data in evidence:
                        case_files.attach_to_case(
                            db, settings=settings, case_id=case.id, actor=firm, name=name, data=data
                        )
        except HuiqiError:  # the case is filed (committed); the firm adds the files on its page
            db.rollback()
            return redirect(request, f"/me/cases/{case.id}?new=1&done=files_failed")
        return redirect(request, f"/me/cases/{case.id}?new=1")
    return render(request, "me_case_new.html", _new_context(db, settings, firm, values, errors), status_code=422)


@router.get("/{case_id}")
def case_page(request: Request, db: DbSession, settings: AppSettings, firm: WebFirm, case_id: int) -> Response:
    """One enquiry: the instant answer or where it is being handled, the time limits, the timeline, rating."""
    case = lifecycle.get_case(db=db, case_id=case_id, actor=firm)
    context = firm_case_context(db, settings, case, firm)
    context["new"] = request.query_params.get("new") == "1"
    context["done"] = DONE_TEXT.get(request.query_params.get("done") or "")
    return render(request, "me_case.html", context)


@router.post("/{case_id}/accept-answer")
def accept_answer(
    request: Request, db: DbSession, settings: AppSettings, firm: WebFirm, case_id: int, form: PageForm
) -> Response:
    """The instant answer solved it: the case closes, rated if a rating was given."""

    def call() -> object:
        body = form_body(form, AcceptAnswerIn, "rating", "comment")
        return outcome.accept_answer(
            db=db, settings=settings, case_id=case_id, actor=firm, rating=body.rating, comment=body.comment
        )

    return case_action(request, db, settings, firm, case_id, "accepted", call)


@router.post("/{case_id}/ask-for-person")
def ask_for_person(
    request: Request, db: DbSession, settings: AppSettings, firm: WebFirm, case_id: int, form: PageForm
) -> Response:
    """The instant answer did not help: route the case to a department, the answer attached."""

    def call() -> object:
        body = form_body(form, NoteIn, "note")
        return outcome.ask_for_person(db=db, settings=settings, case_id=case_id, actor=firm, note=body.note)

    return case_action(request, db, settings, firm, case_id, "person", call)


@router.post("/{case_id}/rate")
def rate(
    request: Request, db: DbSession, settings: AppSettings, firm: WebFirm, case_id: int, form: PageForm
) -> Response:
    """Rate the outcome: 满意 / 基本满意 / 不满意 (不满意 reopens the case under supervision)."""

    def call() -> object:
        body = form_body(form, RateIn, "rating", "comment")
        return outcome.rate(
            db=db, settings=settings, case_id=case_id, actor=firm, rating=body.rating, comment=body.comment
        )

    return case_action(request, db, settings, firm, case_id, "rated", call)


@router.post("/{case_id}/note")
def add_note(
    request: Request, db: DbSession, settings: AppSettings, firm: WebFirm, case_id: int, form: PageForm
) -> Response:
    """Add a supplement to the enquiry (visible to the handling department)."""

    def call() -> object:
        body = form_body(form, NoteOnFirmIn, "note")
        return handling.add_note(db=db, settings=settings, case_id=case_id, actor=firm, note=body.note)

    return case_action(request, db, settings, firm, case_id, "note", call)


@router.post("/{case_id}/attachments")
def add_attachment(
    request: Request, db: DbSession, settings: AppSettings, firm: WebFirm, case_id: int, form: PageForm
) -> Response:
    """Add evidence (证据材料) to the enquiry: PDF, DOCX, XLSX, PNG or JPEG, checked by content."""

    def call() -> object:
        name, data = web_files.posted_file(form, settings)
        return case_files.attach_to_case(db, settings=settings, case_id=case_id, actor=firm, name=name, data=data)

    return case_action(request, db, settings, firm, case_id, "attached", call)


@router.get("/{case_id}/attachments/{attachment_id}")
def attachment(db: DbSession, settings: AppSettings, firm: WebFirm, case_id: int, attachment_id: int) -> Response:
    """Download a file of the firm's own enquiry (its evidence or the department's reply files)."""
    row = case_files.get_case_attachment(db, case_id=case_id, attachment_id=attachment_id, actor=firm)
    return download_response(settings=settings, attachment=row)
