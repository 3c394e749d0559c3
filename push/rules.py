"""Push timing and limits, in one place: the time zone (from settings), local days, the send window,
digest periods, quiet hours, and the weekly cap (when a firm is over it).

What counts towards the cap is read from the outbox (`push.outbox.recent_push_counts`); whether a
firm is over it is decided by `over_weekly_cap` alone, for fan-out, targeted pushes and every
scheduled notice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import MutableMapping
from typing import Protocol
from zoneinfo import ZoneInfo

from core.config import Settings

OVER_CAP = "超过每周推送上限"
CAP_WINDOW = dt.timedelta(days=7)  # the weekly cap counts pushes beyond the inbox in the last 7 days


# ---------------------------------------------------------------- time zone and local days


def local_tz(settings: Settings) -> ZoneInfo:
    """Return the time zone every push follows (HUIQI_TIMEZONE): quiet hours, send window, digests,
    reminders, the policy's "today" at fan-out and the statistics' local days."""
    return ZoneInfo(settings.timezone)


def to_local(now: dt.datetime, settings: Settings) -> dt.datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(local_tz(settings))


def local_day_start(day: dt.date, settings: Settings) -> dt.datetime:
    """Return the UTC moment a local calendar day starts."""
    return dt.datetime.combine(day, dt.time(), tzinfo=local_tz(settings)).astimezone(dt.UTC)


def aware(value: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; every stored timestamp is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def months_before(now: dt.datetime, months: int) -> dt.datetime:
    """Return the same moment `months` calendar months earlier (the day clipped to the month's end)."""
    month_index = now.year * 12 + (now.month - 1) - months
    year, month = divmod(month_index, 12)
    month += 1
    next_month = dt.date(year + (month == 12), month % 12 + 1, 1)
    last_day = (next_month - dt.timedelta(days=1)).day
    return now.replace(year=year, month=month, day=min(now.day, last_day))


# ---------------------------------------------------------------- send window and digests


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


def next_digest_at(when: dt.datetime, frequency: str, *, settings: Settings) -> dt.datetime:
    """Return when a daily (next send time) or weekly (next send time on the digest weekday) digest goes
    out, in UTC; `when` for instant. The same send time and weekday as `digest_period`."""
    if frequency not in ("daily", "weekly"):
        return when
    tz = local_tz(settings)
    local = when.astimezone(tz)
    at = dt.datetime.combine(local.date(), send_time(settings), tzinfo=tz)
    if frequency == "daily":
        if at <= local:
            at += dt.timedelta(days=1)
    else:
        at += dt.timedelta(days=(settings.push_weekly_digest_weekday - local.weekday()) % 7)
        if at <= local:
            at += dt.timedelta(days=7)
    return at.astimezone(dt.UTC)


# ---------------------------------------------------------------- quiet hours


def _hhmm(value: str) -> dt.time:
    hours, minutes = value.split(":")
    return dt.time(int(hours), int(minutes))


def quiet_until(when: dt.datetime, *, quiet_start: str, quiet_end: str, tz: dt.tzinfo) -> dt.datetime:
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


class Timing(Protocol):
    """A firm's timing preferences (a `PushPreference`, or a row with the same columns)."""

    frequency: str
    quiet_start: str
    quiet_end: str


def due_at(
    now: dt.datetime, *, channel: str, timing: Timing, settings: Settings, hold_for_digest: bool = True
) -> dt.datetime:
    """Return when a message beyond the inbox may go out: with `hold_for_digest`, at the firm's next digest
    for a daily or weekly frequency (else now), and for SMS not before its quiet hours end."""
    due = next_digest_at(now, timing.frequency, settings=settings) if hold_for_digest else now
    if channel == "sms":
        due = quiet_until(due, quiet_start=timing.quiet_start, quiet_end=timing.quiet_end, tz=local_tz(settings))
    return due


# ---------------------------------------------------------------- weekly cap


def cap_window_start(now: dt.datetime) -> dt.datetime:
    """Return the moment from which pushes count towards the weekly cap at `now`."""
    return now - CAP_WINDOW


def over_weekly_cap(pushed_recently: MutableMapping[int, int], enterprise_id: int, weekly_cap: int) -> bool:
    """Decide whether a push beyond the inbox is over the firm's weekly cap; if not, count it.

    `pushed_recently` holds each firm's pushes in the cap window (`push.outbox.recent_push_counts`)
    and is updated, so the decisions of one run add up. Over the cap, the push's rows beyond the inbox
    are written as skipped with `OVER_CAP`; one push through several channels counts once.
    """
    if pushed_recently.get(enterprise_id, 0) >= weekly_cap:
        return True
    pushed_recently[enterprise_id] = pushed_recently.get(enterprise_id, 0) + 1
    return False
