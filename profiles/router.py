"""HTTP routes of enterprise profiles and the code tables behind them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy.orm import Session

from auth import phone as auth_phone
from auth import service as auth_service
from auth.deps import AdminUser, CuratorUser, EnterpriseUser, FirmEditor, FirmReader, FirmStaff, public
from auth.schemas import Token
from core import codes
from core.deps import AppSettings, DbSession, Paging
from core.schemas import Id, Page
from core.text import mask_name, mask_phone
from profiles import service
from profiles.models import Enterprise, EnterpriseClaim
from profiles.schemas import (
    ClaimDecisionIn,
    ClaimOut,
    EnterpriseFilters,
    EnterpriseIn,
    EnterpriseOut,
    EnterpriseUpdate,
    RegisterIn,
)

router = APIRouter()


def _out(ent: Enterprise, *, masked: bool = False) -> EnterpriseOut:
    data = service.describe(ent)
    if masked:
        data["contact_phone"] = mask_phone(data["contact_phone"])
        data["contact_name"] = mask_name(data["contact_name"])
        data["contact_email"] = None
    return EnterpriseOut.model_validate(data)


@router.post("/auth/register", response_model=Token, status_code=201, tags=["认证"], dependencies=[Depends(public)])
def register(db: DbSession, settings: AppSettings, register_in: RegisterIn) -> Token:
    """Register a firm: its profile and its first user, then sign in.

    The answer is the same whether or not the credit code is already registered: for a known code the
    account waits (inactive) for staff to confirm the claim (GET /enterprise-claims).
    """
    try:
        user, _ = service.register(db=db, register_in=register_in, settings=settings)
    except auth_phone.PhoneCodeRejected as exc:
        auth_phone.commit_then_raise(db, exc)  # the wrong guess counts; nothing else was written
    return auth_service.issue_token(settings=settings, user=user)


def claim_out(db: Session, claim: EnterpriseClaim) -> ClaimOut:
    """Shape a claim with its firm and account names."""
    out = ClaimOut.model_validate(claim)
    out.enterprise_name = claim.enterprise.name if claim.enterprise else None
    out.credit_code = claim.enterprise.credit_code if claim.enterprise else None
    user = auth_service.get_user(db=db, user_id=claim.user_id) if claim.user_id else None
    out.username = user.username if user else None
    out.status_label = service.CLAIM_STATUS_LABELS.get(claim.status, claim.status)
    return out


@router.get("/enterprise-claims", response_model=Page[ClaimOut], tags=["企业"])
def list_claims(
    db: DbSession,
    actor: FirmStaff,
    paging: Paging,
    status: Annotated[str | None, Query(pattern="^(pending|approved|rejected)$")] = "pending",
) -> Page[ClaimOut]:
    """Registrations against firms already on the platform, waiting for staff to confirm (pending by default)."""
    items, total = service.list_claims(db=db, status=status, offset=paging.offset, limit=paging.page_size)
    return Page(items=[claim_out(db, c) for c in items], total=total, page=paging.page, page_size=paging.page_size)


@router.post("/enterprise-claims/{claim_id}/approve", response_model=ClaimOut, tags=["企业"])
def approve_claim(db: DbSession, actor: FirmStaff, claim_id: Id, body: ClaimDecisionIn | None = None) -> ClaimOut:
    """Confirm a claim: the account becomes active for the firm."""
    claim = service.decide_claim(db=db, claim_id=claim_id, approve=True, actor=actor, note=body.note if body else None)
    return claim_out(db, claim)


@router.post("/enterprise-claims/{claim_id}/reject", response_model=ClaimOut, tags=["企业"])
def reject_claim(db: DbSession, actor: FirmStaff, claim_id: Id, body: ClaimDecisionIn | None = None) -> ClaimOut:
    """Refuse a claim: the account stays inactive."""
    claim = service.decide_claim(db=db, claim_id=claim_id, approve=False, actor=actor, note=body.note if body else None)
    return claim_out(db, claim)


@router.get("/enterprises", response_model=Page[EnterpriseOut], tags=["企业"])
def list_enterprises(
    db: DbSession,
    actor: FirmStaff,
    paging: Paging,
    q: Annotated[str | None, Query(description="企业名称或统一社会信用代码")] = None,
    region: Annotated[str | None, Query(pattern=r"^\d{6}$")] = None,
    industry: Annotated[str | None, Query(description="行业代码前缀，如 C39")] = None,
    size_class: Annotated[str | None, Query(pattern="^(large|medium|small|micro)$")] = None,
    qualification: str | None = None,
) -> Page[Any]:
    """Search enterprises (staff); contacts are masked in listings."""
    filters = EnterpriseFilters(
        q=q, region=region, industry=industry, size_class=size_class, qualification=qualification
    )
    items, total = service.list_enterprises(db=db, filters=filters, offset=paging.offset, limit=paging.page_size)
    return Page(items=[_out(e, masked=True) for e in items], total=total, page=paging.page, page_size=paging.page_size)


@router.post("/enterprises", response_model=EnterpriseOut, status_code=201, tags=["企业"])
def create_enterprise(db: DbSession, actor: CuratorUser, enterprise_in: EnterpriseIn) -> EnterpriseOut:
    """Create an enterprise profile on a firm's behalf (staff)."""
    return _out(service.create_enterprise(db=db, enterprise_in=enterprise_in))


@router.get("/enterprises/me", response_model=EnterpriseOut, tags=["企业"])
def get_my_enterprise(db: DbSession, actor: EnterpriseUser) -> EnterpriseOut:
    """Show the signed-in firm's own profile."""
    return _out(service.get_enterprise(db=db, enterprise_id=actor.own_enterprise_id))


@router.patch("/enterprises/me", response_model=EnterpriseOut, tags=["企业"])
def update_my_enterprise(db: DbSession, actor: EnterpriseUser, enterprise_in: EnterpriseUpdate) -> EnterpriseOut:
    """Update the signed-in firm's own profile."""
    return _out(
        service.update_enterprise(
            db=db, enterprise_id=actor.own_enterprise_id, enterprise_in=enterprise_in, actor=actor
        )
    )


@router.get("/enterprises/{enterprise_id}", response_model=EnterpriseOut, tags=["企业"])
def get_enterprise(db: DbSession, actor: FirmReader, enterprise_id: Id) -> EnterpriseOut:
    """Show an enterprise (staff, or the firm itself)."""
    return _out(service.get_visible_enterprise(db=db, enterprise_id=enterprise_id, actor=actor))


@router.patch("/enterprises/{enterprise_id}", response_model=EnterpriseOut, tags=["企业"])
def update_enterprise(
    db: DbSession, actor: FirmEditor, enterprise_id: Id, enterprise_in: EnterpriseUpdate
) -> EnterpriseOut:
    """Update an enterprise (curators and admins, or the firm itself)."""
    return _out(service.update_enterprise(db=db, enterprise_id=enterprise_id, enterprise_in=enterprise_in, actor=actor))


@router.delete("/enterprises/{enterprise_id}", status_code=204, tags=["企业"])
def delete_enterprise(db: DbSession, actor: AdminUser, enterprise_id: Id) -> Response:
    """Delete an enterprise and its users."""
    service.delete_enterprise(db=db, enterprise_id=enterprise_id, actor=actor)
    return Response(status_code=204)


@router.get("/industries", tags=["代码表"], dependencies=[Depends(public)])
def list_industries(
    level: Annotated[Literal["门类", "大类", "中类", "小类"] | None, Query(description="门类/大类/中类/小类")] = None,
    q: Annotated[str | None, Query(max_length=40, description="按名称或代码查找，如 软件开发、C39")] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="按 q 查找时最多返回的条数")] = 20,
) -> list[dict]:
    """Return the GB/T 4754-2017 industry table, or with `q` the rows whose name or code matches, best first."""
    if q is not None and q.strip():
        rows = codes.search_industries(q, limit=limit if level is None else 400)
        return [r for r in rows if level is None or r["level"] == level][:limit]
    return codes.list_industries(level)


@router.get("/regions", tags=["代码表"], dependencies=[Depends(public)])
def list_regions(parent: Annotated[str | None, Query(pattern=r"^\d{6}$")] = None) -> list[dict]:
    """Return GB/T 2260 regions, optionally the children of one."""
    return codes.list_regions(parent)
