"""Enterprise profiles: create, update, search, self-registration."""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session, selectinload

from auth import phone as auth_phone
from auth import service as auth_service
from auth.models import Role, User
from auth.passwords import check_password_policy
from auth.schemas import UserIn
from auth.service import Principal
from catalog import service as catalog_service
from catalog.models import TagKind
from core import codes, events
from core.config import Settings, get_settings
from core.db import utcnow
from core.errors import Conflict, FieldError, InvalidState, NotFound, PermissionDenied, ValidationFailed
from core.text import normalize, normalize_phone
from profiles import derived
from profiles.models import Enterprise, EnterpriseClaim, EnterpriseQualification
from profiles.schemas import EnterpriseFilters, EnterpriseIn, EnterpriseUpdate, QualificationIn, RegisterIn
from profiles.sizing import SIZE_LABELS

log = logging.getLogger(__name__)


def get_enterprise(*, db: Session, enterprise_id: int) -> Enterprise:
    """Return an enterprise or raise NotFound."""
    ent = db.get(Enterprise, enterprise_id)
    if ent is None:
        raise NotFound("企业不存在", code="profiles.enterprise_not_found")
    return ent


def get_visible_enterprise(*, db: Session, enterprise_id: int, actor: Principal) -> Enterprise:
    """Return an enterprise the caller may see; another firm's profile is reported as absent."""
    if actor.role == Role.enterprise and actor.enterprise_id != enterprise_id:
        raise NotFound("企业不存在", code="profiles.enterprise_not_found")
    return get_enterprise(db=db, enterprise_id=enterprise_id)


def get_by_credit_code(*, db: Session, credit_code: str) -> Enterprise | None:
    """Return the enterprise with this credit code, if any."""
    return db.scalar(select(Enterprise).where(Enterprise.credit_code == credit_code.upper()))


def list_enterprises(
    *, db: Session, filters: EnterpriseFilters, offset: int = 0, limit: int = 20
) -> tuple[list[Enterprise], int]:
    """Search enterprises by name/credit code and filter by region, industry, size and qualification."""
    q = select(Enterprise)
    if filters.q:
        term = normalize(filters.q)
        q = q.where(or_(Enterprise.name.contains(term), Enterprise.credit_code == term.upper()))
    if filters.region:
        code = filters.region
        if code.endswith("0000"):
            q = q.where(Enterprise.region_code.startswith(code[:2]))
        elif code.endswith("00"):
            q = q.where(Enterprise.region_code.startswith(code[:4]))
        else:
            q = q.where(Enterprise.region_code == code)
    if filters.industry:
        q = q.where(Enterprise.industry_code.startswith(filters.industry.upper()))
    if filters.size_class:
        q = q.where(Enterprise.size_class == filters.size_class)
    if filters.qualification:
        tags = catalog_service.resolve_tags(db=db, names=[filters.qualification], field="qualification")
        q = q.where(
            exists().where(
                and_(
                    EnterpriseQualification.enterprise_id == Enterprise.id, EnterpriseQualification.tag_id == tags[0].id
                )
            )
        )
    total = db.scalar(select(func.count()).select_from(q.subquery())) or 0
    rows = db.scalars(
        q.options(selectinload(Enterprise.qualifications)).order_by(Enterprise.id).offset(offset).limit(limit)
    )
    return list(rows), total


def _set_qualifications(db: Session, ent: Enterprise, quals: list[QualificationIn]) -> None:
    tags = catalog_service.resolve_tags(db=db, names=[q.name for q in quals], field="qualifications")
    errors = [
        FieldError(f"qualifications[{i}]", f"「{tag.name}」不是资质类标签", "not_a_qualification")
        for i, tag in enumerate(tags)
        if tag.kind != TagKind.qualification
    ]
    if errors:
        raise ValidationFailed(errors=errors)
    by_tag = {q.tag_id: q for q in ent.qualifications}
    wanted = {}
    for q, tag in zip(quals, tags, strict=False):
        wanted[tag.id] = q.valid_until_on
    ent.qualifications = [_qualification(by_tag.get(tag_id), tag_id, until) for tag_id, until in wanted.items()]


def _qualification(
    existing: EnterpriseQualification | None, tag_id: int, until: dt.date | None
) -> EnterpriseQualification:
    if existing is not None:
        existing.valid_until_on = until
        return existing
    return EnterpriseQualification(tag_id=tag_id, valid_until_on=until)


def _apply(db: Session, ent: Enterprise, data: dict) -> None:
    quals = data.pop("qualifications", None)
    if "name" in data and data["name"]:
        data["name"] = normalize(data["name"])
    for key, value in data.items():
        setattr(ent, key, value)
    if quals is not None:
        _set_qualifications(db, ent, [q if isinstance(q, QualificationIn) else QualificationIn(**q) for q in quals])
    derived.refresh(ent)
    ent.profile_updated_at = utcnow()


def create_enterprise(*, db: Session, enterprise_in: EnterpriseIn) -> Enterprise:
    """Create an enterprise profile; the credit code must be new."""
    if get_by_credit_code(db=db, credit_code=enterprise_in.credit_code):
        raise Conflict(
            "该统一社会信用代码的企业已存在",
            code="profiles.enterprise_exists",
            errors=[FieldError("credit_code", "统一社会信用代码已存在", "taken")],
        )
    ent = Enterprise(credit_code=enterprise_in.credit_code)
    data = enterprise_in.model_dump(exclude={"credit_code"}, exclude_unset=True)
    if enterprise_in.qualifications is not None:
        data["qualifications"] = enterprise_in.qualifications
    _apply(db, ent, data)
    db.add(ent)
    db.flush()
    events.emit(events.ProfileChanged(db=db, enterprise_id=ent.id))
    return ent


def update_enterprise(
    *, db: Session, enterprise_id: int, enterprise_in: EnterpriseUpdate, actor: Principal
) -> Enterprise:
    """Update a profile; firms may change only their own."""
    if actor.role == Role.enterprise and actor.enterprise_id != enterprise_id:
        raise NotFound("企业不存在", code="profiles.enterprise_not_found")
    ent = get_enterprise(db=db, enterprise_id=enterprise_id)
    data = enterprise_in.model_dump(exclude_unset=True)
    if "name" in data and not data["name"]:
        raise ValidationFailed(errors=[FieldError("name", "企业名称不能为空", "required")])
    if enterprise_in.qualifications is not None:
        data["qualifications"] = enterprise_in.qualifications
    old_phone = ent.contact_phone
    _apply(db, ent, data)
    old_mobile = normalize_phone(old_phone or "")
    if "contact_phone" in data and old_mobile and old_mobile != normalize_phone(ent.contact_phone or ""):
        auth_phone.forget(db=db, enterprise_id=ent.id, phone=old_mobile)  # a changed number is unverified
    db.flush()
    events.emit(events.ProfileChanged(db=db, enterprise_id=ent.id))
    return ent


def delete_enterprise(*, db: Session, enterprise_id: int, actor: Principal) -> None:
    """Delete an enterprise and its users (admins only)."""
    if actor.role != Role.admin:
        raise PermissionDenied()
    ent = get_enterprise(db=db, enterprise_id=enterprise_id)
    for user in db.scalars(select(User).where(User.enterprise_id == ent.id)):
        db.delete(user)
    db.delete(ent)
    db.flush()


def register(*, db: Session, register_in: RegisterIn, settings: Settings | None = None) -> tuple[User, Enterprise]:
    """Register a firm: create its enterprise profile and its first user in one transaction.

    With `phone_code` (sent to the contact phone by POST /auth/phone-codes) the number is verified for the
    new firm. A wrong code raises auth.phone.PhoneCodeRejected before anything is written, its attempt
    counted in the session: the caller commits that (auth.phone.commit_then_raise).
    """
    check_password_policy(register_in.password, username=register_in.username)
    verified = None
    if register_in.phone_code is not None:
        verified = normalize_phone(register_in.enterprise.contact_phone or "")
        if verified is None:
            raise ValidationFailed(
                errors=[FieldError("enterprise.contact_phone", "验证手机号时联系电话应为 11 位大陆手机号", "invalid")]
            )
        auth_phone.check_code(
            db=db,
            settings=settings or get_settings(),
            phone=verified,
            purpose=auth_phone.SIGNUP,
            code=register_in.phone_code,
            field="phone_code",
        )
    existing = get_by_credit_code(db=db, credit_code=register_in.enterprise.credit_code)
    if existing is not None:
        return _claim(db=db, enterprise=existing, register_in=register_in), existing
    ent = create_enterprise(db=db, enterprise_in=register_in.enterprise)
    user = auth_service.create_user(
        db=db,
        user_in=UserIn(
            username=register_in.username,
            password=register_in.password,
            display_name=register_in.display_name,
            role=Role.enterprise,
            enterprise_id=ent.id,
            phone=register_in.enterprise.contact_phone,
            email=register_in.enterprise.contact_email,
        ),
    )
    if not ent.contact_name:
        ent.contact_name = register_in.display_name
        derived.refresh(ent)
    if verified is not None:
        auth_phone.mark_verified(db=db, enterprise_id=ent.id, phone=verified, user_id=user.id)
    return user, ent


def _claim(*, db: Session, enterprise: Enterprise, register_in: RegisterIn) -> User:
    """Register against a firm already on the platform: an inactive account and a claim staff confirm.

    The caller gets the same answer as any registration; nothing of the firm is shown to them, and the
    account can sign in only after staff approve the claim.
    """
    user = auth_service.create_user(
        db=db,
        user_in=UserIn(
            username=register_in.username,
            password=register_in.password,
            display_name=register_in.display_name,
            role=Role.enterprise,
            enterprise_id=enterprise.id,
            phone=register_in.enterprise.contact_phone,
            email=register_in.enterprise.contact_email,
        ),
    )
    user.is_active = False
    db.add(
        EnterpriseClaim(
            enterprise_id=enterprise.id,
            user_id=user.id,
            display_name=register_in.display_name,
            contact_phone=register_in.enterprise.contact_phone,
            contact_email=register_in.enterprise.contact_email,
        )
    )
    db.flush()
    return user


CLAIM_STATUS_LABELS = {"pending": "待确认", "approved": "已通过", "rejected": "已拒绝"}


def list_claims(
    *, db: Session, status: str | None = "pending", offset: int = 0, limit: int = 50
) -> tuple[list[EnterpriseClaim], int]:
    """Return claims (pending by default), oldest first, with the total count."""
    q = select(EnterpriseClaim)
    if status:
        q = q.where(EnterpriseClaim.status == status)
    total = db.scalar(select(func.count()).select_from(q.subquery())) or 0
    return list(db.scalars(q.order_by(EnterpriseClaim.id).offset(offset).limit(limit))), total


def decide_claim(
    *, db: Session, claim_id: int, approve: bool, actor: Principal, note: str | None = None
) -> EnterpriseClaim:
    """Approve (the account becomes active for the firm) or reject (it stays inactive) a pending claim."""
    claim = db.get(EnterpriseClaim, claim_id)
    if claim is None:
        raise NotFound("认领申请不存在", code="profiles.claim_not_found")
    if claim.status != "pending":
        raise InvalidState("该认领申请已处理", code="profiles.claim_decided")
    claim.status = "approved" if approve else "rejected"
    claim.decided_at = utcnow()
    claim.decided_by_id = actor.user_id
    claim.note = note
    user = db.get(User, claim.user_id) if claim.user_id else None
    if user is not None:
        user.is_active = approve
        if not approve:
            auth_service.revoke_tokens(user)
    db.flush()
    return claim


def describe(ent: Enterprise) -> dict:
    """Return the enterprise as a dict with names and labels resolved, for responses."""
    data = {c.key: getattr(ent, c.key) for c in Enterprise.__table__.columns}
    data["qualifications"] = [
        {"name": q.tag.name, "tag_id": q.tag_id, "valid_until_on": q.valid_until_on} for q in ent.qualifications
    ]
    data["region_name"] = codes.region_name(ent.region_code) if ent.region_code else None
    data["industry_name"] = codes.industry_name(ent.industry_code) if ent.industry_code else None
    data["years_established"] = derived.years_since(ent.established_on)
    data["size_label"] = SIZE_LABELS.get(ent.size_class or "")
    data["missing_labels"] = [derived.FIELD_LABELS.get(f, f) for f in ent.missing_fields or []]
    return data
