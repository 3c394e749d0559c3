"""Push timing and limits, in one place: time zone, quiet hours, send window, digest periods and
the weekly cap (when a firm is over it, and what counts towards it).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.config import Settings
from push.models import Delivery
from push.outbox import chunks

OVER_CAP = "超过每周推送上限"
DIGEST_HOUR = 9  # daily and weekly digests go out at 09:00 local time (weekly: on Mondays)
LOCAL_TZ = ZoneInfo("Asia/Shanghai")


def _hhmm(value: str) -> dt.time:
    hours, minutes = value.split(":")
    return dt.time(int(hours), int(minutes))


def quiet_until(when: dt.datetime, *, quiet_start: str, quiet_end: str, tz: dt.tzinfo = LOCAL_TZ) -> dt.datetime:
    """Return `when` if it is outside the quiet hours, else the end of the quiet period (in UTC)."""
    start, end = _hhmm(quiet_start), _hhmm(quiet_end)
    if start == end:
        return when
    local = when.astimezone(tz)
    t = local.time()
    if start > end:  # spans midnight, e.g. 22:00–08:00
        if t >= start:
            resume = dt.datetime.combine(local.date() + dt.timedelta(days=1), end, tzinfo=tz)
        elif t < end:
            resume = dt.datetime.combine(local.date(), end, tzinfo=tz)
        else:
            return when
    elif start <= t < end:
        resume = dt.datetime.combine(local.date(), end, tzinfo=tz)
    else:
        return when
    return resume.astimezone(dt.UTC)


def next_digest_at(when: dt.datetime, frequency: str, *, tz: dt.tzinfo = LOCAL_TZ) -> dt.datetime:
    """Return when a daily (next 09:00) or weekly (next Monday 09:00) digest goes out; `when` for instant."""
    if frequency not in ("daily", "weekly"):
        return when
    local = when.astimezone(tz)
    at = dt.datetime.combine(local.date(), dt.time(DIGEST_HOUR), tzinfo=tz)
    if frequency == "daily":
        if at <= local:
            at += dt.timedelta(days=1)
    else:
        at += dt.timedelta(days=(7 - local.weekday()) % 7)
        if at <= local:
            at += dt.timedelta(days=7)
    return at.astimezone(dt.UTC)


def aware(value: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; every stored timestamp is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def recent_push_counts(db: Session, enterprise_ids: Sequence[int], since: dt.datetime) -> dict[int, int]:
    """Count pushes beyond the inbox per firm since a moment (one push through two channels counts once)."""
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


def local_tz(settings: Settings) -> ZoneInfo:
    """Return the time zone scheduled pushes follow (HUIQI_TIMEZONE)."""
    return ZoneInfo(getattr(settings, "timezone", "Asia/Shanghai") or "Asia/Shanghai")


def to_local(now: dt.datetime, settings: Settings) -> dt.datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(local_tz(settings))


def send_time(settings: Settings) -> dt.time:
    """Return the local time of day from which scheduled pushes go out (HUIQI_PUSH_DIGEST_TIME)."""
    hours, minutes = settings.push_digest_time.split(":")
    return dt.time(int(hours), int(minutes))


def window_open(now: dt.datetime, settings: Settings) -> bool:
    """Tell whether today's scheduled pushes may go out: local time has reached the send time."""
    return to_local(now, settings).time() >= send_time(settings)


def digest_period(now: dt.datetime, frequency: str, settings: Settings) -> str | None:
    """Return the period whose digest is due at `now` ("2026-11-23" daily, "2026-W48" weekly), or None.

    A daily digest is due from the send time each day; a weekly one from the send time on the
    configured weekday until the end of that ISO week.
    """
    local = to_local(now, settings)
    at = send_time(settings)
    if frequency == "daily":
        return local.date().isoformat() if local.time() >= at else None
    if frequency == "weekly":
        weekday = settings.push_weekly_digest_weekday
        if local.weekday() > weekday or (local.weekday() == weekday and local.time() >= at):
            year, week, _ = local.date().isocalendar()
            return f"{year}-W{week:02d}"
    return None


def months_before(now: dt.datetime, months: int) -> dt.datetime:
    """Return the same moment `months` calendar months earlier (the day clipped to the month's end)."""
    month_index = now.year * 12 + (now.month - 1) - months
    year, month = divmod(month_index, 12)
    month += 1
    next_month = dt.date(year + (month == 12), month % 12 + 1, 1)
    last_day = (next_month - dt.timedelta(days=1)).day
    return now.replace(year=year, month=month, day=min(now.day, last_day))
