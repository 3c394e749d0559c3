"""Pages of applications (申报进度) and 免申即享 payouts.

Firms: their applications with each status change, withdrawing, and the 免申即享 payouts they received.
Staff: the applications of the policies they answer for (desk officers: their department's; curators and
admins: all; supervisors read), one status change at a time or the department's result list imported with
the row report on the page, the eligible firms that never applied (pushed to through the targeted push),
and 免申即享 rosters: freeze, confirm or exclude with a reason, record payouts one by one or imported.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from applications import exempt, lifecycle, service, stats
from applications import io as applications_io
from applications.lifecycle import ACTION_FOR_STATUS, TRANSITIONS
from applications.models import EXEMPT_LABELS, STATUS_LABELS, Application, ApplicationStatus
from auth.models import Role
from auth.service import Principal
from catalog.models import Policy, PolicyStatus, PolicyType
from core.config import Settings
from core.deps import AppSettings, DbSession
from core.errors import FieldError, HuiqiError, PayloadTooLarge, ValidationFailed
from core.tabular import ImportReport
from matcher.lists import ListPending
from web.deps import WebAllow, WebFirm
from web.forms import FormErrors, PageForm, form_values
from web.templating import WebRoute, redirect, register_nav, render

firm_router = APIRouter(prefix="/me", route_class=WebRoute, include_in_schema=False)
staff_router = APIRouter(prefix="/staff", route_class=WebRoute, include_in_schema=False)

Reader = Annotated[Principal, Depends(WebAllow(Role.desk, Role.curator, Role.admin, Role.supervisor))]
Manager = Annotated[Principal, Depends(WebAllow(Role.desk, Role.curator, Role.admin))]

register_nav("申报进度", "/me/applications", (Role.enterprise,), order=35)
register_nav("申报办理", "/staff/applications", (Role.desk, Role.curator, Role.admin, Role.supervisor), order=125)
register_nav("免申即享", "/staff/exempt", (Role.desk, Role.curator, Role.admin), order=126)

PAGE_SIZE = 30
STAFF_STATUSES = {s: STATUS_LABELS[s] for s in ACTION_FOR_STATUS}


def _parse_amount(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise ValidationFailed(errors=[FieldError("amount", "兑现金额应为数字（万元）", "invalid")]) from None


def _parse_date(text: str | None, field: str) -> dt.date | None:
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValidationFailed(errors=[FieldError(field, "日期格式应为 YYYY-MM-DD", "invalid")]) from None


def _id(text: str | None, field: str) -> int:
    if not text or not text.isdigit() or len(text) > 15:
        raise ValidationFailed(errors=[FieldError(field, "编号无效", "invalid")])
    return int(text)


def _upload(form: Any, settings: Settings) -> tuple[str, bytes] | None:
    upload = form.get("file")
    if upload is None or isinstance(upload, str) or not upload.filename:
        return None
    limit = settings.upload_max_mb * 1024 * 1024
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"文件超过 {settings.upload_max_mb} MB，请拆分后分批导入")
    return upload.filename, data


def next_statuses(app: Application) -> dict[str, str]:
    """The statuses a department may set from the application's current one (by the one table)."""
    current = ApplicationStatus(app.status)
    return {s: label for s, label in STAFF_STATUSES.items() if current in TRANSITIONS[ACTION_FOR_STATUS[s]]}


# ---------------------------------------------------------------- the firm


@firm_router.get("/applications")
def my_applications(request: Request, db: DbSession, firm: WebFirm) -> Response:
    """The firm's applications with their status, and the 免申即享 payouts it received."""
    items, total = service.list_applications(db=db, actor=firm, limit=200)
    return render(
        request,
        "me_applications.html",
        {
            "applications": items,
            "total": total,
            "labels": STATUS_LABELS,
            "payouts": exempt.payouts_for_firm(db=db, enterprise_id=firm.own_enterprise_id),
        },
    )


@firm_router.get("/applications/{application_id}")
def my_application(request: Request, db: DbSession, firm: WebFirm, application_id: int) -> Response:
    """One application: status, outcome and the history of changes (who, when, note)."""
    app = lifecycle.get_application(db=db, application_id=application_id, actor=firm)
    return render(
        request,
        "me_application.html",
        {"app": app, "labels": STATUS_LABELS, "can_withdraw": lifecycle.allowed(app, "withdraw")},
    )


@firm_router.post("/applications/{application_id}/withdraw")
def withdraw(request: Request, db: DbSession, firm: WebFirm, application_id: int, form: PageForm) -> Response:
    """The firm withdraws its application (撤回)."""
    note = form_values(form, ("note",))["note"]
    service.withdraw(db=db, actor=firm, application_id=application_id, note=note)
    return redirect(request, f"/me/applications/{application_id}")


# ---------------------------------------------------------------- staff: applications


def _policy_choices(db: Session, actor: Principal, policy_type: PolicyType) -> list[Policy]:
    q = select(Policy).where(
        Policy.policy_type == policy_type, Policy.status.in_([PolicyStatus.published, PolicyStatus.expired])
    )
    if actor.role == Role.desk:
        q = q.where(lifecycle.department_column() == (actor.department_id or -1))
    return list(db.scalars(q.order_by(Policy.title)))


def _never_applied_count(db: Session, policy_id: int) -> int | None:
    """The eligible firms that never applied, or None while the policy's list is not complete."""
    try:
        return len(stats.never_applied_ids(db=db, policy_id=policy_id))
    except ListPending:
        return None


def _list_context(
    db: Session, actor: Principal, policy_id: int | None, status: str | None, page: int
) -> dict[str, Any]:
    items, total = service.list_applications(
        db=db, actor=actor, policy_id=policy_id, status=status, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE
    )
    policies = _policy_choices(db, actor, PolicyType.application)
    chosen = next((p for p in policies if p.id == policy_id), None)
    return {
        "applications": items,
        "total": total,
        "labels": STATUS_LABELS,
        "policies": policies,
        "policy": chosen,
        "policy_id": policy_id,
        "status": status or "",
        "can_manage": chosen is not None and lifecycle.can_manage(chosen, actor),
        "never_applied": _never_applied_count(db, chosen.id) if chosen else 0,
        "pages": max(1, math.ceil(total / PAGE_SIZE)),
        "page": page,
        "report": None,
    }


@staff_router.get("/applications")
def staff_applications(
    request: Request,
    db: DbSession,
    staff: Reader,
    policy_id: Annotated[int | None, Query(ge=1, le=2**53 - 1)] = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
    pushed: Annotated[int | None, Query(ge=0, le=10**9)] = None,
) -> Response:
    """Applications of the policies the staff member answers for, by policy and status; import and push."""
    status = status if status in STATUS_LABELS else None
    context = _list_context(db, staff, policy_id, status, page)
    context["pushed"] = pushed
    return render(request, "staff_applications.html", context)


@staff_router.post("/applications/import")
def staff_import_results(
    request: Request, db: DbSession, settings: AppSettings, staff: Manager, form: PageForm
) -> Response:
    """Import the department's result list for a policy; the row report is shown on the page."""
    policy_id = _id(form_values(form, ("policy_id",))["policy_id"], "policy_id")
    partial = form.get("partial") in ("1", "on", "true")
    context = _list_context(db, staff, policy_id, None, 1)
    upload = _upload(form, settings)
    if upload is None:
        context["error"] = "请选择要导入的文件（CSV 或 XLSX）"
        return render(request, "staff_applications.html", context, status_code=422)
    filename, data = upload
    try:
        report: ImportReport = applications_io.import_results(
            db=db, actor=staff, policy_id=policy_id, data=data, filename=filename, partial=partial
        )
    except HuiqiError as exc:
        db.rollback()
        context["error"] = exc.message
        return render(request, "staff_applications.html", context, status_code=exc.status_code)
    db.flush()
    context = _list_context(db, staff, policy_id, None, 1)
    context |= {"report": report, "filename": filename, "summary": report.summary(), "report_title": "申报结果"}
    return render(request, "staff_applications.html", context, status_code=422 if report.rejected else 200)


@staff_router.post("/applications/never-applied/push")
def staff_push_never_applied(
    request: Request, db: DbSession, settings: AppSettings, staff: Manager, form: PageForm
) -> Response:
    """Send the policy to its eligible firms that never applied (a targeted push, in the push history)."""
    values = form_values(form, ("policy_id", "message"))
    policy_id = _id(values["policy_id"], "policy_id")
    result = stats.push_never_applied(
        db=db,
        actor=staff,
        policy_id=policy_id,
        channels=["inbox"],
        message=(values["message"] or "")[:500] or None,
        settings=settings,
        base_url=settings.public_base_url,
    )
    return redirect(request, f"/staff/applications?policy_id={policy_id}&pushed={result['enterprises']}")


def _detail(
    request: Request,
    db: Session,
    staff: Principal,
    app: Application,
    errors: FormErrors | None = None,
    values: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "staff_application.html",
        {
            "app": app,
            "labels": STATUS_LABELS,
            "next_statuses": next_statuses(app) if lifecycle.can_manage(app.policy, staff) else {},
            "errors": errors or FormErrors(),
            "values": values or {},
        },
        status_code=status_code,
    )


@staff_router.get("/applications/{application_id}")
def staff_application(request: Request, db: DbSession, staff: Reader, application_id: int) -> Response:
    """One application with its history and the status changes the table allows."""
    app = lifecycle.get_application(db=db, application_id=application_id, actor=staff)
    return _detail(request, db, staff, app)


@staff_router.post("/applications/{application_id}/status")
def staff_set_status(request: Request, db: DbSession, staff: Manager, application_id: int, form: PageForm) -> Response:
    """Set an application's status (已受理 … 已兑现 with amount, 未通过 with reason)."""
    app = lifecycle.get_application(db=db, application_id=application_id, actor=staff)
    values = form_values(form, ("status", "note", "amount", "paid_on", "reason"))
    try:
        service.set_status(
            db=db,
            actor=staff,
            app=app,
            status=values["status"] or "",
            note=values["note"],
            amount=_parse_amount(values["amount"]),
            paid_on=_parse_date(values["paid_on"], "paid_on"),
            reason=values["reason"],
        )
    except HuiqiError as exc:
        db.rollback()
        app = lifecycle.get_application(db=db, application_id=application_id, actor=staff)
        return _detail(request, db, staff, app, FormErrors.from_domain(exc), values, status_code=exc.status_code)
    return redirect(request, f"/staff/applications/{application_id}")


# ---------------------------------------------------------------- staff: 免申即享


def _exempt_context(db: Session, staff: Principal, policy_id: int | None, status: str | None) -> dict[str, Any]:
    policies = _policy_choices(db, staff, PolicyType.exempt)
    chosen = next((p for p in policies if p.id == policy_id), None)
    roster = exempt.latest_roster(db, chosen.id) if chosen else None
    entries: list[Any] = []
    if roster is not None:
        entries, _ = exempt.entries(db=db, roster_id=roster.id, status=status, limit=500)
    return {
        "policies": policies,
        "policy": chosen,
        "roster": roster,
        "rosters": exempt.rosters(db=db, policy_id=chosen.id) if chosen else [],
        "counts": exempt.counts(db, roster.id) if roster else {},
        "entries": entries,
        "labels": EXEMPT_LABELS,
        "status": status or "",
        "report": None,
        "error": None,
    }


@staff_router.get("/exempt")
def staff_exempt(
    request: Request,
    db: DbSession,
    staff: Manager,
    policy_id: Annotated[int | None, Query(ge=1, le=2**53 - 1)] = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    """免申即享 policies: the latest roster with each firm to confirm, exclude or pay."""
    status = status if status in EXEMPT_LABELS else None
    return render(request, "staff_exempt.html", _exempt_context(db, staff, policy_id, status))


def _exempt_error(request: Request, db: Session, staff: Principal, policy_id: int | None, exc: HuiqiError) -> Response:
    db.rollback()
    context = _exempt_context(db, staff, policy_id, None)
    message = exc.message + ("：" + "；".join(e.reason for e in exc.errors) if exc.errors else "")
    context["error"] = message
    return render(request, "staff_exempt.html", context, status_code=exc.status_code)


@staff_router.post("/exempt/freeze")
def staff_freeze(request: Request, db: DbSession, staff: Manager, form: PageForm) -> Response:
    """Freeze today's eligible list of a 免申即享 policy into a roster."""
    values = form_values(form, ("policy_id", "note"))
    policy_id = _id(values["policy_id"], "policy_id")
    try:
        exempt.freeze(db=db, actor=staff, policy_id=policy_id, note=values["note"])
    except HuiqiError as exc:
        return _exempt_error(request, db, staff, policy_id, exc)
    return redirect(request, f"/staff/exempt?policy_id={policy_id}")


@staff_router.post("/exempt/rosters/{roster_id}/confirm-pending")
def staff_confirm_pending(request: Request, db: DbSession, staff: Manager, roster_id: int) -> Response:
    """Confirm every firm of the roster still pending."""
    roster = exempt.get_roster(db=db, roster_id=roster_id, actor=staff)
    exempt.confirm_pending(db=db, actor=staff, roster_id=roster.id)
    return redirect(request, f"/staff/exempt?policy_id={roster.policy_id}")


@staff_router.post("/exempt/entries/{entry_id}/decide")
def staff_decide(request: Request, db: DbSession, staff: Manager, entry_id: int, form: PageForm) -> Response:
    """Confirm a firm of the roster, or exclude it with a reason."""
    entry = exempt.get_entry(db=db, entry_id=entry_id, actor=staff)
    policy_id = entry.policy_id
    values = form_values(form, ("action", "reason"))
    try:
        exempt.decide(db=db, actor=staff, entry_id=entry.id, action=values["action"] or "", reason=values["reason"])
    except HuiqiError as exc:
        return _exempt_error(request, db, staff, policy_id, exc)
    return redirect(request, f"/staff/exempt?policy_id={policy_id}#entry-{entry_id}")


@staff_router.post("/exempt/entries/{entry_id}/pay")
def staff_pay(request: Request, db: DbSession, staff: Manager, entry_id: int, form: PageForm) -> Response:
    """Record a confirmed firm's payout; the firm is told "已为您兑现 X 万元"."""
    entry = exempt.get_entry(db=db, entry_id=entry_id, actor=staff)
    policy_id = entry.policy_id
    values = form_values(form, ("amount", "paid_on"))
    try:
        exempt.pay(
            db=db,
            actor=staff,
            entry_id=entry.id,
            amount=_parse_amount(values["amount"]),
            paid_on=_parse_date(values["paid_on"], "paid_on"),
        )
    except HuiqiError as exc:
        return _exempt_error(request, db, staff, policy_id, exc)
    return redirect(request, f"/staff/exempt?policy_id={policy_id}#entry-{entry_id}")


@staff_router.post("/exempt/rosters/{roster_id}/import")
def staff_import_payouts(
    request: Request, db: DbSession, settings: AppSettings, staff: Manager, roster_id: int, form: PageForm
) -> Response:
    """Import the department's payout list against the roster; the row report is shown on the page."""
    roster = exempt.get_roster(db=db, roster_id=roster_id, actor=staff)
    policy_id = roster.policy_id
    partial = form.get("partial") in ("1", "on", "true")
    upload = _upload(form, settings)
    if upload is None:
        context = _exempt_context(db, staff, policy_id, None) | {"error": "请选择要导入的文件（CSV 或 XLSX）"}
        return render(request, "staff_exempt.html", context, status_code=422)
    filename, data = upload
    try:
        report = applications_io.import_payouts(
            db=db, actor=staff, roster_id=roster.id, data=data, filename=filename, partial=partial
        )
    except HuiqiError as exc:
        return _exempt_error(request, db, staff, policy_id, exc)
    context = _exempt_context(db, staff, policy_id, None)
    context |= {"report": report, "filename": filename, "summary": report.summary(), "report_title": "兑现清单"}
    return render(request, "staff_exempt.html", context, status_code=422 if report.rejected else 200)
