"""How scheduled notices (digests, reminders, change notices) are decided and written: outbox rows per
chosen channel under the weekly cap and quiet hours, one firm at a time under its row lock, each
item in its own savepoint so one failure does not stop the run.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.config import Settings
from core.db import Database
from core.scheduler import ItemsReport, run_items
from profiles.models import Enterprise
from push import outbox, preferences, rules
from push.models import Delivery, PushPreference

log = logging.getLogger(__name__)


T = TypeVar("T")


def other_channels(pref: PushPreference) -> list[str]:
    return [c for c in pref.channels or [] if c in preferences.CHANNELS and c != "inbox"]


def base_row(
    *,
    enterprise_id: int,
    policy_id: int | None,
    policy_version: int,
    kind: str,
    dedupe_key: str,
    title: str,
    body: str,
    url: str,
    payload: dict[str, Any],
    now: dt.datetime,
) -> dict[str, Any]:
    return {
        "enterprise_id": enterprise_id,
        "policy_id": policy_id,
        "policy_version": policy_version,
        "kind": kind,
        "dedupe_key": dedupe_key,
        "attempts": 0,
        "last_error": None,
        "title": title[:200],
        "body": body,
        "url": url,
        "payload": payload,
        "created_at": now,
        "read_at": None,
        "clicked_at": None,
    }


def channel_rows(
    *,
    base: Mapping[str, Any],
    pref: PushPreference,
    now: dt.datetime,
    pushed_recently: dict[int, int],
    settings: Settings,
    inbox: bool = True,
) -> list[dict[str, Any]]:
    """Return a message's outbox rows: the inbox (delivered at once) and one per other chosen channel.

    Like fan-out: beyond the inbox, a firm over its weekly cap gets the rows recorded as skipped,
    and SMS waits for the end of its quiet hours.
    """
    rows: list[dict[str, Any]] = []
    if inbox:
        rows.append(dict(base) | {"channel": "inbox", "status": "sent", "next_attempt_at": now, "sent_at": now})
    others = other_channels(pref)
    if not others:
        return rows
    over_cap = rules.over_weekly_cap(pushed_recently, int(base["enterprise_id"]), pref.weekly_cap)
    for channel in others:
        # Scheduled notices are not held for a digest: they go out now, SMS after the quiet hours.
        due = (
            now
            if over_cap
            else rules.due_at(now, channel=channel, timing=pref, settings=settings, hold_for_digest=False)
        )
        rows.append(outbox.channel_row(base, channel, now=now, due=due, over_cap=over_cap))
    return rows


def lock_firm(db: Session, enterprise_id: int) -> str | None:
    """Hold the firm's row until the transaction ends, so two runs never decide for it at once.

    Returns the firm's name, or None when it no longer exists.
    """
    q = select(Enterprise.name).where(Enterprise.id == enterprise_id)
    if db.get_bind().dialect.name == "postgresql":
        q = q.with_for_update()
    # SQLite has one writer at a time: a concurrent writer's commit makes this transaction's write fail.
    return db.scalar(q)


def already_decided(db: Session, enterprise_id: int, kind: str, dedupe_key: str) -> bool:
    """Tell whether a message about no particular policy was already decided for this key."""
    return (
        db.scalar(
            select(Delivery.id)
            .where(
                Delivery.enterprise_id == enterprise_id,
                Delivery.policy_id.is_(None),
                Delivery.kind == kind,
                Delivery.dedupe_key == dedupe_key,
            )
            .limit(1)
        )
        is not None
    )


def process_items(
    items: Sequence[T],
    handler: Callable[[Session, T], Any],
    *,
    name: str,
    key: Callable[[T], object],
    db: Session | None,
    database: Database | None,
    chunk: int = 100,
) -> ItemsReport:
    """Run handler per item, each in a savepoint so a failing item is logged and the rest go on.

    With a database, items run in sessions of `chunk` items, each committed on its own (a failed
    commit loses only that chunk, which the next run picks up again); otherwise in savepoints of db.
    """

    def in_savepoint(session: Session) -> Callable[[T], None]:
        def run(item: T) -> None:
            with session.begin_nested():
                handler(session, item)

        return run

    if database is None:
        if db is None:
            raise ValueError("give db or database")
        return run_items(items, in_savepoint(db), name=name, key=key)
    report = ItemsReport(name=name)
    for start in range(0, len(items), chunk):
        part = items[start : start + chunk]
        try:
            with database.session() as session:
                done = run_items(part, in_savepoint(session), name=name, key=key)
        except Exception:
            log.exception(
                "%s: items %d–%d could not be committed; retried on the next run", name, start, start + len(part)
            )
            done = ItemsReport(name=name, total=len(part), failed_keys=[str(key(item)) for item in part])
        report.total += done.total
        report.succeeded += done.succeeded
        report.failed_keys.extend(done.failed_keys)
    return report


def candidates(
    select_items: Callable[..., list[T]], *, db: Session | None, database: Database | None, **kw: Any
) -> list[T]:
    if database is not None:
        with database.session() as session:
            return select_items(db=session, **kw)
    if db is None:
        raise ValueError("give db or database")
    return select_items(db=db, **kw)


def run_scheduled(
    select_items: Callable[..., list[T]],
    send: Callable[..., int],
    *,
    name: str,
    key: Callable[[T], object],
    now: dt.datetime,
    settings: Settings,
    db: Session | None,
    database: Database | None,
    base_url: str,
) -> ItemsReport:
    """Find the due items of one kind of scheduled notice, then write each (a failing item is logged, the rest go on)."""
    items = candidates(select_items, db=db, database=database, now=now, settings=settings)
    return process_items(
        items,
        lambda s, item: send(db=s, item=item, now=now, settings=settings, base_url=base_url),
        name=name,
        key=key,
        db=db,
        database=database,
    )
