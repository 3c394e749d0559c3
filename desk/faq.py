"""The FAQ of the knowledge base: curated entries, and resolved answers promoted from cases."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from auth.models import Role
from auth.service import Principal
from core.config import Settings
from core.db import utcnow
from core.errors import Conflict, FieldError, NotFound, PermissionDenied, ValidationFailed
from desk.lifecycle import department, get_case, require_handler, transition
from desk.models import EventKind, FaqEntry
from desk.schemas import FaqIn, FaqUpdate, PromoteIn


def promote_to_faq(
    *,
    db: Session,
    settings: Settings,
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
        require_handler(case, actor, "收录常见问题")
    with transition(
        db, case, "promote", EventKind.note, actor=actor, settings=settings, now=now, visible_to_firm=False
    ) as step:
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
            # An officer's promotion is their department's entry, never a site-wide one.
            department_id=case.department_id or (actor.department_id if actor and actor.role == Role.desk else None),
            keywords=promote_in.keywords,
            related_policies=[],
            source="promoted",
            case_id=case.id,
            active=True,
            created_at=now,
            updated_at=now,
        )
        db.add(entry)
        step.describe(f"答复已收录为常见问题 {code}", data={"faq_code": code})
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
        raise NotFound("常见问题不存在", code="desk.faq_not_found")
    return entry


def _faq_department(actor: Principal | None, department_id: int | None) -> int | None:
    """Desk officers curate their own department's entries only (a new entry without one becomes theirs)."""
    if actor is not None and actor.role == Role.desk:
        if department_id not in (None, actor.department_id):
            raise PermissionDenied("业务专员只能维护本部门的常见问题", code="desk.not_own_faq")
        return actor.department_id
    return department_id


def _may_edit(actor: Principal | None, entry: FaqEntry) -> None:
    """Site-wide entries (no department) feed every firm's instant answers: curators and admins only."""
    if actor is None or actor.role != Role.desk:
        return
    if entry.department_id is None:
        raise PermissionDenied("全站通用的常见问题只能由政策管理员或系统管理员维护", code="desk.site_wide_faq")
    if entry.department_id != actor.department_id:
        raise PermissionDenied("业务专员只能维护本部门的常见问题", code="desk.not_own_faq")


def create_faq(*, db: Session, actor: Principal | None, faq_in: FaqIn, now: dt.datetime | None = None) -> FaqEntry:
    """Add a curated FAQ entry."""
    now = now or utcnow()
    department_id = _faq_department(actor, faq_in.department_id)
    if department_id is not None:
        department(db, department_id)
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
    _may_edit(actor, entry)
    data = faq_in.model_dump(exclude_unset=True)
    if "department_id" in data:
        data["department_id"] = _faq_department(actor, data["department_id"])
        if data["department_id"] is not None:
            department(db, data["department_id"])
    for key, value in data.items():
        setattr(entry, key, value)
    entry.updated_at = now or utcnow()
    db.flush()
    return entry


def delete_faq(*, db: Session, actor: Principal | None, faq_id: int) -> None:
    """Delete an FAQ entry (answers already given keep their quoted passages)."""
    entry = get_faq(db=db, faq_id=faq_id, actor=actor)
    _may_edit(actor, entry)
    db.delete(entry)
    db.flush()
