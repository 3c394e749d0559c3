"""One firm's news of its own affairs (a case, an application, a payout): written the same way for all.

The inbox row is delivered at once and the firm's other chosen channels go through the outbox under
the weekly cap and quiet hours; something long past (an import, the demo's history) is recorded in the
inbox at its time only. `dedupe_key` makes a notice unique per firm, kind and channel.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from core.config import Settings
from push import outbox, preferences, rules
from push.outbox import insert_deliveries
from push.scheduled import base_row, channel_rows


def firm_notice(
    *,
    db: Session,
    enterprise_id: int,
    kind: str,
    dedupe_key: str,
    title: str,
    body: str,
    url: str,
    payload: dict[str, Any],
    now: dt.datetime,
    settings: Settings,
    at: dt.datetime | None = None,
) -> int:
    """Write a firm's notice (inbox at once, other chosen channels through the outbox); return the rows written.

    Nothing is written when the firm unsubscribed from everything or was told already (same dedupe key).
    """
    pref = preferences.get_preferences(db=db, enterprise_id=enterprise_id)
    if pref.unsubscribed_all:
        return 0
    when = rules.aware(at) if at is not None else now
    past = now - when > dt.timedelta(days=1)
    base = base_row(
        enterprise_id=enterprise_id,
        policy_id=None,
        policy_version=0,
        kind=kind,
        dedupe_key=dedupe_key,
        title=title[:200],
        body=body,
        url=url,
        payload=payload,
        now=when if past else now,
    )
    if past:
        rows = channel_rows(base=base, pref=pref, now=when, pushed_recently={}, settings=settings)[:1]
        return insert_deliveries(db=db, rows=rows)
    pushed = outbox.recent_push_counts(db, [enterprise_id], now)
    return insert_deliveries(
        db=db, rows=channel_rows(base=base, pref=pref, now=now, pushed_recently=pushed, settings=settings)
    )
