"""The delivery outbox: the one way rows are written into `Delivery`.

The outbox is written in the caller's transaction with INSERT … ON CONFLICT DO NOTHING on its
unique key (firm, policy, kind, version, dedupe key, channel), so deciding to push twice for the
same policy version creates nothing new and a crash before commit loses the decision and its rows
together. The sender (`push.sender`) picks due rows later.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from push.models import Delivery


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def upsert_insert(db: Session) -> Any:
    """Return the dialect's insert construct, which has ON CONFLICT DO NOTHING."""
    dialect = db.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert
    if dialect == "sqlite":
        return sqlite.insert
    raise NotImplementedError(f"the outbox needs INSERT … ON CONFLICT, not available for {dialect}")


def insert_deliveries(*, db: Session, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert outbox rows, ignoring those whose unique key already exists; return how many were new.

    One executemany per set of keys the rows carry (the statement is compiled once, absent
    columns take their defaults); its rowcount is what was really inserted, on both drivers.
    """
    stmt = upsert_insert(db)(Delivery.__table__).on_conflict_do_nothing()
    by_keys: dict[frozenset[str], list[Mapping[str, Any]]] = {}
    for row in rows:
        by_keys.setdefault(frozenset(row), []).append(row)
    return sum(
        max(db.execute(stmt.execution_options(preserve_rowcount=True), group).rowcount, 0) for group in by_keys.values()
    )
