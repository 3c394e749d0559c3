"""A case's clocks: the site's SLA profile and working calendar, due times, the running stage and its colour.

:mod:`desk.sla` is the pure calculator (profiles, targets, pauses, extensions, states) and knows no
case; this module applies it to a :class:`desk.models.Case` — reading its profile code, kind, start,
pauses and approved extensions, and storing its due times and SLA state. The SLA scan
(:mod:`desk.jobs`) and every transition (:func:`desk.lifecycle.transition`) move the clocks through
the functions here.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import and_
from sqlalchemy import case as sql_case
from sqlalchemy.sql.elements import ColumnElement

from core.config import Settings
from core.db import utcnow
from core.errors import FieldError, ValidationFailed
from core.workcal import WorkCalendar, calendar_from_dict, load_arrangement
from desk import sla
from desk.models import Case, CaseStatus

log = logging.getLogger(__name__)

S = CaseStatus

# States whose clocks run (the case waits on the platform or a department).
CLOCK_STATUSES = frozenset({S.submitted, S.dispatched, S.accepted, S.in_progress, S.reopened})

# How a transition moves the clocks: refresh the stored colour, recompute the due times (pauses, extensions,
# kind), or restart them from now (asking for a person after an instant answer, reopening).
ClockMove = Literal["refresh", "recompute", "restart"]

# ---------------------------------------------------------------- site SLA profile and calendar

_calendar_lock = threading.Lock()
_calendar_cache: dict[tuple[Any, ...], WorkCalendar] = {}


def site_profile(settings: Settings) -> sla.SlaProfile:
    """Return the site's SLA profile from settings: a preset code or a JSON profile."""
    raw = (settings.desk_sla_profile or "").strip()
    if raw.startswith("{"):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValidationFailed(
                "HUIQI_DESK_SLA_PROFILE 不是有效的 JSON",
                errors=[FieldError("desk_sla_profile", str(exc), "json_invalid")],
            ) from exc
        return sla.profile_from_dict(data)
    profile = sla.PRESETS.get(raw)
    if profile is None:
        raise ValidationFailed(
            errors=[
                FieldError(
                    "desk_sla_profile", f"未知的时限预设 {raw}（可选：{'、'.join(sla.PRESETS)}，或 JSON 配置）", "enum"
                )
            ]
        )
    return profile


def profile_for(code: str, settings: Settings) -> sla.SlaProfile:
    """Return the profile a case was received under: the site's, or a preset of that code."""
    site = site_profile(settings)
    if code == site.code:
        return site
    if code in sla.PRESETS:
        return sla.PRESETS[code]
    log.warning("case SLA profile %s is no longer configured; using the site profile %s", code, site.code)
    return site


def arrangements_dir(settings: Settings) -> Path:
    """Return the directory whose *.json year arrangements (国务院放假安排) the desk calendar loads."""
    return Path(settings.var_dir) / "calendar"


def site_calendar(settings: Settings) -> WorkCalendar:
    """Return the site's working calendar: settings' hours and exceptions plus loaded year arrangements."""
    folder = arrangements_dir(settings)
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    key = (settings.desk_calendar, settings.timezone, tuple((f.name, f.stat().st_mtime_ns) for f in files))
    with _calendar_lock:
        cached = _calendar_cache.get(key)
        if cached is not None:
            return cached
    raw = (settings.desk_calendar or "").strip()
    try:
        data = json.loads(raw) if raw else {}
    except json.JSONDecodeError as exc:
        raise ValidationFailed(
            "HUIQI_DESK_CALENDAR 不是有效的 JSON", errors=[FieldError("desk_calendar", str(exc), "json_invalid")]
        ) from exc
    data = {"tz": settings.timezone, **data}
    calendar = calendar_from_dict(data, arrangements=[load_arrangement(f) for f in files])
    with _calendar_lock:
        _calendar_cache.clear()
        _calendar_cache[key] = calendar
    return calendar


def site_tz(settings: Settings) -> dt.tzinfo:
    """Return the desk calendar's time zone."""
    return site_calendar(settings).tz


# ---------------------------------------------------------------- due times


def _pauses(case: Case) -> list[sla.Pause]:
    return [sla.Pause(p.start, p.end) for p in case.pauses]


def _final_stage(due: Mapping[sla.Stage, Any]) -> sla.Stage | None:
    for stage in reversed(sla.STAGES):  # close, reply, contact
        if stage in due:
            return stage
    return None


def recompute_due(
    case: Case, *, settings: Settings, calendar: WorkCalendar | None = None, now: dt.datetime | None = None
) -> list[str]:
    """Set the case's contact / reply / close due times from its profile, pauses and approved extensions.

    Returns the provisional-calendar warnings (also stored on the case); a provisional deadline is
    flagged, never refused.
    """
    calendar = calendar or site_calendar(settings)
    profile = profile_for(case.sla_profile, settings)
    pauses = _pauses(case)
    due = sla.due_times(
        profile=profile, kind=case.kind, received_at=case.sla_started_at, calendar=calendar, pauses=pauses
    )
    final = _final_stage(due)
    if final and case.extensions:
        bounded = sla.effective_pauses(pauses, calendar=calendar, max_working_days=profile.max_pause_working_days)
        for ext in case.extensions:
            target = sla.SlaTarget(final, ext["amount"], ext["unit"])
            due[final] = sla.extend(due[final], by=target, calendar=calendar, pauses=bounded)
    case.contact_due_at = due["contact"].due_at if "contact" in due else None
    case.reply_due_at = due["reply"].due_at if "reply" in due else None
    case.close_due_at = due["close"].due_at if "close" in due else None
    warnings = list(dict.fromkeys(w for d in due.values() for w in d.warnings))
    case.due_provisional = any(d.provisional for d in due.values())
    case.due_warnings = warnings
    refresh_sla_state(case, settings=settings, calendar=calendar, now=now)
    return warnings


def move_clocks(case: Case, how: ClockMove, *, settings: Settings, now: dt.datetime) -> None:
    """Move the case's clocks after a change: refresh its colour, recompute its due times, or restart them now."""
    if how == "restart":
        case.sla_started_at = now
    if how in ("recompute", "restart"):
        recompute_due(case, settings=settings, now=now)
    else:
        refresh_sla_state(case, settings=settings, now=now)


def pause_allowance(case: Case, *, settings: Settings, calendar: WorkCalendar) -> tuple[dt.timedelta, dt.timedelta]:
    """Return (working time all pauses of the case may take, working time its ended pauses took)."""
    profile = profile_for(case.sla_profile, settings)
    allowance = calendar.day_length * profile.max_pause_working_days
    used = sum((calendar.working_time_between(p.start, p.end) for p in case.pauses if p.end), dt.timedelta(0))
    return allowance, used


# ---------------------------------------------------------------- the running stage


def active_due(case: Case) -> tuple[sla.Stage, dt.datetime] | None:
    """Return the stage the case's clock is running for and its due time; None when no clock runs.

    Contact until the firm was contacted, then the (phased) reply until the first reply, then
    closing until the department resolves it.
    """
    if case.status not in CLOCK_STATUSES:
        return None
    if case.contact_due_at is not None and case.contacted_at is None:
        return "contact", case.contact_due_at
    if case.reply_due_at is not None and case.first_reply_at is None:
        return "reply", case.reply_due_at
    if case.close_due_at is not None and case.resolved_at is None:
        return "close", case.close_due_at
    return None


def active_due_expression() -> ColumnElement[Any]:
    """The SQL form of :func:`active_due`'s due time, for ordering queues by deadline."""
    return sql_case(
        (and_(Case.contact_due_at.is_not(None), Case.contacted_at.is_(None)), Case.contact_due_at),
        (and_(Case.reply_due_at.is_not(None), Case.first_reply_at.is_(None)), Case.reply_due_at),
        else_=Case.close_due_at,
    )


@dataclass(frozen=True)
class SlaView:
    """The clock a case is on now, for lists and detail pages."""

    stage: str | None
    due_at: dt.datetime | None
    state: str | None
    state_label: str | None
    colour: str | None


def sla_view(
    case: Case, *, settings: Settings, calendar: WorkCalendar | None = None, now: dt.datetime | None = None
) -> SlaView:
    """Return the running stage, its due time, state (on_track … red) and colour, computed now."""
    current = active_due(case)
    if current is None:
        return SlaView(None, None, None, None, None)
    stage, due_at = current
    calendar = calendar or site_calendar(settings)
    profile = profile_for(case.sla_profile, settings)
    target = next((t for t in profile.targets(case.kind) if t.stage == stage), None)
    state = sla.sla_state(
        due_at=due_at,
        now=now or utcnow(),
        calendar=calendar,
        rule=profile.escalation,
        received_at=case.sla_started_at,
        clock=target.clock if target else "working",
    )
    return SlaView(stage, due_at, state, sla.STATE_LABELS[state], sla.colour(state))


def refresh_sla_state(
    case: Case, *, settings: Settings, calendar: WorkCalendar | None = None, now: dt.datetime | None = None
) -> None:
    """Store the case's current SLA state (on_track when no clock runs). Escalation is desk.jobs' work."""
    view = sla_view(case, settings=settings, calendar=calendar, now=now)
    case.sla_state = view.state or "on_track"
