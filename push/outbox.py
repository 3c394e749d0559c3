"""The delivery outbox: the one way rows are written into `Delivery`.

The outbox is written in the caller's transaction with INSERT … ON CONFLICT DO NOTHING on its
unique key (firm, policy, kind, version, dedupe key, channel), so deciding to push twice for the
same policy version creates nothing new and a crash before commit loses the decision and its rows
together. The sender (`push.sender`) picks due rows later.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import rowcount, table_of, upsert_insert
from push.models import Delivery
from push.rules import OVER_CAP, cap_window_start


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def insert_deliveries(*, db: Session, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert outbox rows, ignoring those whose unique key already exists; return how many were new.

    One executemany per set of keys the rows carry (the statement is compiled once, absent
    columns take their defaults); its rowcount is what was really inserted, on both drivers.
    """
    stmt = upsert_insert(db, table_of(Delivery)).on_conflict_do_nothing()
    by_keys: dict[frozenset[str], list[Mapping[str, Any]]] = {}
    for row in rows:
        by_keys.setdefault(frozenset(row), []).append(row)
    return sum(
        max(rowcount(db.execute(stmt.execution_options(preserve_rowcount=True), group)), 0)
        for group in by_keys.values()
    )


def recent_push_counts(db: Session, enterprise_ids: Sequence[int], now: dt.datetime) -> dict[int, int]:
    """Count pushes beyond the inbox per firm in the weekly cap's window before `now` (one push through two
    channels counts once); `push.rules.over_weekly_cap` decides with these counts."""
    since = cap_window_start(now)
    counts: dict[int, int] = {}
    for chunk in chunks(list(enterprise_ids), 500):
        pushes = db.execute(
            select(
                Delivery.enterprise_id, Delivery.policy_id, Delivery.kind, Delivery.policy_version, Delivery.dedupe_key
            )
            .where(
                Delivery.enterprise_id.in_(list(chunk)),
                Delivery.channel != "inbox",
                Delivery.status != "skipped",
                Delivery.created_at >= since,
            )
            .distinct()
        )
        for eid, *_ in pushes:
            counts[eid] = counts.get(eid, 0) + 1
    return counts


def channel_row(
    base: Mapping[str, Any], channel: str, *, now: dt.datetime, due: dt.datetime, over_cap: bool
) -> dict[str, Any]:
    """Return a message's outbox row for one channel beyond the inbox: pending until `due`, or, over the
    firm's weekly cap (`push.rules.over_weekly_cap`), recorded as skipped with the reason."""
    if over_cap:
        return dict(base) | {
            "channel": channel,
            "status": "skipped",
            "next_attempt_at": now,
            "sent_at": None,
            "last_error": OVER_CAP,
        }
    return dict(base) | {"channel": channel, "status": "pending", "next_attempt_at": due, "sent_at": None}
