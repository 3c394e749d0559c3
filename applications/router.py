"""HTTP routes of applications (申报进度) and 免申即享 rosters, under /api/v1.

Firms apply, follow and withdraw their own applications; the policy's department (desk officers) and
curators and admins move statuses one by one or by importing the department's result list; supervisors
read. Another firm's or another department's application answers 404.
"""

from __future__ import annotations

import datetime as dt
from enum import Enum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from applications import exempt, lifecycle, service, stats
from applications import io as applications_io
from applications.models import EXEMPT_LABELS, Application, ExemptEntry, ExemptRoster
from applications.schemas import (
    ApplicationEventOut,
    ApplicationOut,
    ApplyIn,
    DecisionIn,
    EntryOut,
    NeverAppliedPushIn,
    PayoutIn,
    PayoutOut,
    RosterIn,
    RosterOut,
    StatusIn,
    WithdrawIn,
)
from auth.deps import Allow
from auth.models import Role
from auth.service import Principal
from core.deps import UPLOAD_OPENAPI, AppSettings, DbSession, Paging, UploadedFile
from core.errors import NotFound
from core.schemas import Id, Page
from core.tabular import ImportFailed, ImportReport

router = APIRouter()
TAGS: list[str | Enum] = ["申报与兑现"]

Firm = Annotated[Principal, Depends(Allow(Role.enterprise))]
Reader = Annotated[Principal, Depends(Allow(Role.enterprise, Role.desk, Role.curator, Role.admin, Role.supervisor))]
Manager = Annotated[Principal, Depends(Allow(Role.desk, Role.curator, Role.admin))]
FigureReader = Annotated[Principal, Depends(Allow(Role.desk, Role.curator, Role.admin, Role.supervisor))]
_FAILED: dict[int | str, dict[str, Any]] = {
    422: {"description": "有行未通过校验，未写入任何数据；响应体含完整报告（report）"}
}
PartialParam = Annotated[bool, Query(description="部分导入：写入无误的行，仅报告有误的行")]


def application_out(app: Application, *, with_events: bool = True) -> ApplicationOut:
    """Return an application as the API shows it."""
    return ApplicationOut(
        id=app.id,
        enterprise_id=app.enterprise_id,
        enterprise_name=app.enterprise.name,
        credit_code=app.enterprise.credit_code,
        policy_id=app.policy_id,
        policy_title=app.policy.title,
        status=app.status,
        status_label=lifecycle.status_label(app.status),
        source=app.source,
        amount=app.amount,
        paid_on=app.paid_on,
        reason=app.reason,
        submitted_at=app.submitted_at,
        updated_at=app.updated_at,
        events=[ApplicationEventOut.model_validate(e) for e in app.events] if with_events else [],
    )


def roster_out(db: Any, roster: ExemptRoster) -> RosterOut:
    return RosterOut(
        id=roster.id,
        policy_id=roster.policy_id,
        policy_title=roster.policy.title,
        frozen_on=roster.frozen_on,
        frozen_at=roster.frozen_at,
        policy_version=roster.policy_version,
        created_by_name=roster.created_by_name,
        note=roster.note,
        counts=exempt.counts(db, roster.id),
    )


def entry_out(entry: ExemptEntry) -> EntryOut:
    return EntryOut(
        id=entry.id,
        roster_id=entry.roster_id,
        enterprise_id=entry.enterprise_id,
        enterprise_name=entry.enterprise.name,
        credit_code=entry.enterprise.credit_code,
        status=entry.status,
        status_label=EXEMPT_LABELS.get(entry.status, entry.status),
        match_status=entry.match_status,
        reason=entry.reason,
        amount=entry.amount,
        paid_on=entry.paid_on,
        decided_by_name=entry.decided_by_name,
        decided_at=entry.decided_at,
    )


def _checked(report: ImportReport) -> ImportReport:
    if report.rejected:
        raise ImportFailed(report)
    return report


# ---------------------------------------------------------------- figures (before /applications/{id})


@router.get("/applications/figures", tags=TAGS)
def application_figures(
    db: DbSession,
    actor: FigureReader,
    department_id: Annotated[Id | None, Query(description="只看该部门的政策（业务专员固定为本部门）")] = None,
    date_from: Annotated[dt.date | None, Query(description="统计起始日（含）")] = None,
    date_to: Annotated[dt.date | None, Query(description="统计截止日（含）")] = None,
) -> dict[str, Any]:
    """Applications, approval rate, amount paid, median days to payout, eligible firms that never applied,
    per policy and per department, and the funnel recommended → viewed → interested → applied → paid."""
    return stats.figures(db=db, actor=actor, department_id=department_id, start=date_from, end=date_to)


# ---------------------------------------------------------------- applications


@router.post("/applications", response_model=ApplicationOut, status_code=201, tags=TAGS)
def apply(request: Request, db: DbSession, actor: Firm, body: ApplyIn) -> ApplicationOut:
    """A firm applies for a policy (or records that it applied): 已申报, followed on its pages."""
    app = service.apply(db=db, actor=actor, policy_id=body.policy_id, weights=request.app.state.matcher.weights)
    return application_out(app)


@router.get("/applications", response_model=Page[ApplicationOut], tags=TAGS)
def list_applications(
    db: DbSession,
    actor: Reader,
    paging: Paging,
    policy_id: Annotated[Id | None, Query(description="只看该政策")] = None,
    status: Annotated[str | None, Query(max_length=20, description="状态")] = None,
    enterprise_id: Annotated[Id | None, Query(description="只看该企业（工作人员）")] = None,
) -> Page[ApplicationOut]:
    """Applications the caller may see: a firm its own, a desk officer its department's policies', others all."""
    items, total = service.list_applications(
        db=db,
        actor=actor,
        policy_id=policy_id,
        status=status,
        enterprise_id=enterprise_id,
        offset=paging.offset,
        limit=paging.page_size,
    )
    return Page(
        items=[application_out(a, with_events=False) for a in items],
        total=total,
        page=paging.page,
        page_size=paging.page_size,
    )


@router.get("/applications/{application_id}", response_model=ApplicationOut, tags=TAGS)
def get_application(db: DbSession, actor: Reader, application_id: Id) -> ApplicationOut:
    """One application with its status history (who, when, note)."""
    return application_out(lifecycle.get_application(db=db, application_id=application_id, actor=actor))


@router.post("/applications/{application_id}/withdraw", response_model=ApplicationOut, tags=TAGS)
def withdraw(db: DbSession, actor: Firm, application_id: Id, body: WithdrawIn) -> ApplicationOut:
    """The firm withdraws its application (撤回) before it is decided."""
    return application_out(service.withdraw(db=db, actor=actor, application_id=application_id, note=body.note))


@router.post("/applications/{application_id}/status", response_model=ApplicationOut, tags=TAGS)
def set_status(db: DbSession, actor: Manager, application_id: Id, body: StatusIn) -> ApplicationOut:
    """The policy's department (or a curator) moves an application: 已受理, 审核中, 公示, 已兑现 (amount), 未通过 (reason)."""
    app = service.update_status(
        db=db,
        actor=actor,
        application_id=application_id,
        status=body.status,
        note=body.note,
        amount=body.amount,
        paid_on=body.paid_on,
        reason=body.reason,
    )
    return application_out(app)


@router.post(
    "/policies/{policy_id}/applications/import",
    response_model=ImportReport,
    tags=TAGS,
    responses=_FAILED,
    openapi_extra=UPLOAD_OPENAPI,
)
def import_results(
    db: DbSession, actor: Manager, policy_id: Id, file: UploadedFile, partial: PartialParam = False
) -> ImportReport:
    """Import the department's result list (CSV/XLSX) for a policy, matched by credit code; re-importing changes nothing."""
    report = applications_io.import_results(
        db=db, actor=actor, policy_id=policy_id, data=file.data, filename=file.filename, partial=partial
    )
    return _checked(report)


@router.get("/policies/{policy_id}/never-applied", tags=TAGS)
def never_applied(db: DbSession, actor: Manager, policy_id: Id) -> dict[str, Any]:
    """The firms stored as eligible for a policy that never applied (ids; staff can push the policy to them)."""
    policy = service.visible_policy(db, policy_id)
    if not lifecycle.can_manage(policy, actor):
        raise NotFound("政策不存在", code="catalog.policy_not_found")
    ids = stats.never_applied_ids(db=db, policy_id=policy.id)
    return {"policy_id": policy.id, "total": len(ids), "enterprise_ids": ids[:5000]}


@router.post("/policies/{policy_id}/never-applied/push", tags=TAGS, status_code=201)
def push_never_applied(
    db: DbSession, settings: AppSettings, actor: Manager, policy_id: Id, body: NeverAppliedPushIn
) -> dict[str, Any]:
    """Send the policy to its eligible firms that never applied (a targeted push, recorded in push history)."""
    return stats.push_never_applied(
        db=db,
        actor=actor,
        policy_id=policy_id,
        channels=body.channels,
        message=body.message,
        settings=settings,
        base_url=settings.public_base_url,
    )


@router.get("/my/payouts", response_model=list[PayoutOut], tags=TAGS)
def my_payouts(db: DbSession, actor: Firm) -> list[PayoutOut]:
    """The firm's 免申即享 payouts (no application needed)."""
    return [
        PayoutOut(policy_id=e.policy_id, policy_title=e.roster.policy.title, amount=e.amount or 0, paid_on=e.paid_on)
        for e in exempt.payouts_for_firm(db=db, enterprise_id=actor.own_enterprise_id)
    ]


# ---------------------------------------------------------------- 免申即享 rosters


@router.post("/policies/{policy_id}/exempt-rosters", response_model=RosterOut, status_code=201, tags=TAGS)
def freeze_roster(db: DbSession, actor: Manager, policy_id: Id, body: RosterIn) -> RosterOut:
    """Freeze the firms the matcher stores as eligible for a 免申即享 policy into a dated roster."""
    return roster_out(db, exempt.freeze(db=db, actor=actor, policy_id=policy_id, note=body.note))


@router.get("/policies/{policy_id}/exempt-rosters", response_model=list[RosterOut], tags=TAGS)
def list_rosters(db: DbSession, actor: Manager, policy_id: Id) -> list[RosterOut]:
    """A 免申即享 policy's rosters, latest first."""
    policy = exempt.exempt_policy(db, policy_id)
    if not lifecycle.can_manage(policy, actor):
        raise NotFound("政策不存在", code="catalog.policy_not_found")
    return [roster_out(db, r) for r in exempt.rosters(db=db, policy_id=policy.id)]


@router.get("/exempt-rosters/{roster_id}/entries", response_model=Page[EntryOut], tags=TAGS)
def roster_entries(
    db: DbSession,
    actor: Manager,
    paging: Paging,
    roster_id: Id,
    status: Annotated[str | None, Query(max_length=20, description="pending、confirmed、excluded 或 paid")] = None,
) -> Page[EntryOut]:
    """A roster's firms with their status, reason and payout."""
    roster = exempt.get_roster(db=db, roster_id=roster_id, actor=actor)
    items, total = exempt.entries(
        db=db, roster_id=roster.id, status=status, offset=paging.offset, limit=paging.page_size
    )
    return Page(items=[entry_out(e) for e in items], total=total, page=paging.page, page_size=paging.page_size)


@router.post("/exempt-rosters/{roster_id}/confirm-pending", response_model=RosterOut, tags=TAGS)
def confirm_pending(db: DbSession, actor: Manager, roster_id: Id) -> RosterOut:
    """Confirm every firm of the roster still pending."""
    exempt.confirm_pending(db=db, actor=actor, roster_id=roster_id)
    return roster_out(db, exempt.get_roster(db=db, roster_id=roster_id, actor=actor))


@router.post("/exempt-entries/{entry_id}/decision", response_model=EntryOut, tags=TAGS)
def decide(db: DbSession, actor: Manager, entry_id: Id, body: DecisionIn) -> EntryOut:
    """Confirm a firm of the roster, or exclude it with a reason."""
    return entry_out(exempt.decide(db=db, actor=actor, entry_id=entry_id, action=body.action, reason=body.reason))


@router.post("/exempt-entries/{entry_id}/payout", response_model=EntryOut, tags=TAGS)
def payout(db: DbSession, actor: Manager, entry_id: Id, body: PayoutIn) -> EntryOut:
    """Record a confirmed firm's payout; the firm is told "已为您兑现 X 万元"."""
    return entry_out(exempt.pay(db=db, actor=actor, entry_id=entry_id, amount=body.amount, paid_on=body.paid_on))


@router.post(
    "/exempt-rosters/{roster_id}/payouts/import",
    response_model=ImportReport,
    tags=TAGS,
    responses=_FAILED,
    openapi_extra=UPLOAD_OPENAPI,
)
def import_payouts(
    db: DbSession, actor: Manager, roster_id: Id, file: UploadedFile, partial: PartialParam = False
) -> ImportReport:
    """Import the department's payout list (CSV/XLSX) against a roster, matched by credit code; idempotent."""
    report = applications_io.import_payouts(
        db=db, actor=actor, roster_id=roster_id, data=file.data, filename=file.filename, partial=partial
    )
    return _checked(report)
