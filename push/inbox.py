"""A firm's inbox (站内信): listing, unread count, marking read."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session

from core.db import rowcount, utcnow
from push.models import Delivery


def _inbox_query(enterprise_id: int) -> Select[tuple[Delivery]]:
    return select(Delivery).where(Delivery.enterprise_id == enterprise_id, Delivery.channel == "inbox")


def unread_count(*, db: Session, enterprise_id: int) -> int:
    """Return how many inbox messages a firm has not read."""
    q = _inbox_query(enterprise_id).where(Delivery.read_at.is_(None))
    return db.scalar(select(func.count()).select_from(q.subquery())) or 0


def list_inbox(
    *, db: Session, enterprise_id: int, unread_only: bool = False, offset: int = 0, limit: int = 20
) -> tuple[list[Delivery], int, int]:
    """Return a page of a firm's inbox, newest first, with the total and the unread count."""
    q = _inbox_query(enterprise_id)
    if unread_only:
        q = q.where(Delivery.read_at.is_(None))
    total = db.scalar(select(func.count()).select_from(q.subquery())) or 0
    rows = list(db.scalars(q.order_by(Delivery.created_at.desc(), Delivery.id.desc()).offset(offset).limit(limit)))
    return rows, total, unread_count(db=db, enterprise_id=enterprise_id)


def mark_read(
    *,
    db: Session,
    enterprise_id: int,
    delivery_ids: Sequence[int] = (),
    all: bool = False,
    now: dt.datetime | None = None,
) -> int:
    """Mark some (or all) of a firm's unread inbox messages read; return how many changed."""
    if not all and not delivery_ids:
        return 0
    stmt = update(Delivery).where(
        Delivery.enterprise_id == enterprise_id, Delivery.channel == "inbox", Delivery.read_at.is_(None)
    )
    if not all:
        stmt = stmt.where(Delivery.id.in_(list(delivery_ids)))
    result = db.execute(stmt.values(read_at=now or utcnow()).execution_options(synchronize_session="fetch"))
    return max(rowcount(result) or 0, 0)
