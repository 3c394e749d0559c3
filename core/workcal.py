"""The working-day calendar: which days are worked, and deadlines counted in working time.

Whether a day is a working day is decided by the first source that knows, in this order:

1. the site's own ``extra_workdays`` / ``extra_holidays``;
2. a loaded :class:`YearArrangement` (the State Council's notice for that year, loaded by staff);
3. the ``chinese-calendar`` package, for the years it ships data for (1.11.0: 2004–2026);
4. the *provisional rule*: Saturdays and Sundays off, plus the statutory holidays of
   《全国年节及纪念日放假办法》 computed for that year (元旦, 春节 from the lunar calendar, 清明 from
   the solar term, 劳动节, 端午, 中秋, 国庆). It knows nothing of 调休 make-up days, so a deadline
   that counts or skips such a day is marked ``provisional`` and carries a Chinese warning. A case is
   never refused for it.

Arrangement file (JSON; ``docs/calendar.md`` has the complete 2026 example)::

    {
      "year": 2027,
      "source": "国务院办公厅关于2027年部分节假日安排的通知",
      "holidays": [{"name": "元旦", "dates": ["2027-01-01", "2027-01-02", "2027-01-03"]}, ...],
      "workdays": ["2027-02-07", ...],
      "note": "optional free text"
    }

``holidays`` lists every day off of each holiday block, weekends inside the block included; ``workdays``
lists the make-up working days (调休上班), which must be Saturdays or Sundays. Dates must lie in the
stated year, or in the December before it (the 2019 notice, for one, put 2018-12-29/30/31 in its
元旦 block). Days the file does not list follow the weekend rule.

Counting conventions (all documented in ``docs/calendar.md``):

- *working time* is time inside ``work_hours`` on working days, in the calendar's time zone;
- ``add_working_days(start, n)``: the day of receipt never counts (民法典第二百零一条); the deadline
  is the end of the last work window on the n-th working day after it. Received Friday 16:00, one
  working day → Monday 18:00; received Saturday → Monday 18:00 as well;
- pauses are instants when the clock stands still; they are passed in already bounded (desk/sla.py).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import chinese_calendar
from lunardate import LunarDate

from core.errors import FieldError, ValidationFailed

log = logging.getLogger(__name__)

UTC = dt.UTC
ONE_DAY = dt.timedelta(days=1)
# A deadline search walks day by day; beyond this many days something is misconfigured
# (e.g. a site that declared every day a holiday).
MAX_SCAN_DAYS = 3660

YearStatus = Literal["official", "loaded", "provisional"]
Interval = tuple[dt.datetime, dt.datetime]

# Years whose official arrangement ships with the installed chinese-calendar package.
OFFICIAL_YEARS: frozenset[int] = frozenset(d.year for d in (*chinese_calendar.holidays, *chinese_calendar.workdays))

PROVISIONAL_WARNING = "{year}年放假安排尚未导入，截止时间按周末和法定节假日推算，可能有误"


# ---------------------------------------------------------------------------------------------
# Statutory holidays (the provisional rule)


@dataclass(frozen=True)
class StatutoryHoliday:
    """One holiday of 《全国年节及纪念日放假办法》: where it falls and how many days it lasts."""

    name: str
    calendar: Literal["gregorian", "lunar", "solar_term"]
    month: int = 0
    day: int = 0
    first_offset: int = 0  # days from the anchor to the first day off (春节 -1 = 农历除夕)
    days: int = 1


@dataclass(frozen=True)
class StatutoryEdition:
    """One edition of the holiday regulation, in force from ``since_year``."""

    since_year: int
    source: str
    holidays: tuple[StatutoryHoliday, ...]


_COMMON = (
    StatutoryHoliday("清明节", "solar_term"),
    StatutoryHoliday("端午节", "lunar", 5, 5),
    StatutoryHoliday("中秋节", "lunar", 8, 15),
    StatutoryHoliday("国庆节", "gregorian", 10, 1, days=3),
)

# Dated as the law dates them; the first edition also stands in for any earlier year.
STATUTORY_EDITIONS: tuple[StatutoryEdition, ...] = (
    StatutoryEdition(
        2008,
        "《全国年节及纪念日放假办法》（2007年修订，国务院令第513号）",
        (
            StatutoryHoliday("元旦", "gregorian", 1, 1),
            StatutoryHoliday("春节", "lunar", 1, 1, first_offset=-1, days=3),  # 除夕、初一、初二
            StatutoryHoliday("劳动节", "gregorian", 5, 1),
            *_COMMON,
        ),
    ),
    StatutoryEdition(
        2014,
        "《全国年节及纪念日放假办法》（2013年修订，国务院令第644号）",
        (
            StatutoryHoliday("元旦", "gregorian", 1, 1),
            StatutoryHoliday("春节", "lunar", 1, 1, days=3),  # 初一至初三
            StatutoryHoliday("劳动节", "gregorian", 5, 1),
            *_COMMON,
        ),
    ),
    StatutoryEdition(
        2025,
        "《全国年节及纪念日放假办法》（2024年修订，国务院令第795号）",
        (
            StatutoryHoliday("元旦", "gregorian", 1, 1),
            StatutoryHoliday("春节", "lunar", 1, 1, first_offset=-1, days=4),  # 除夕、初一至初三
            StatutoryHoliday("劳动节", "gregorian", 5, 1, days=2),
            *_COMMON,
        ),
    ),
)


def statutory_edition(year: int) -> StatutoryEdition:
    """Return the edition of the holiday regulation in force in a year."""
    chosen = STATUTORY_EDITIONS[0]
    for edition in STATUTORY_EDITIONS:
        if edition.since_year <= year:
            chosen = edition
    return chosen


def qingming(year: int) -> dt.date:
    """Return the date of the 清明 solar term (寿星公式 [Y×D+C]−L, valid 1900–2099)."""
    y = year % 100
    c = 5.59 if year < 2000 else 4.81
    if not 1900 <= year <= 2099:
        log.warning("qingming(%s) is outside 1900–2099; the formula may be a day off", year)
    return dt.date(year, 4, int(y * 0.2422 + c) - y // 4)


@lru_cache(maxsize=256)
def _statutory(year: int) -> tuple[tuple[dt.date, str], ...]:
    out: dict[dt.date, str] = {}
    for h in statutory_edition(year).holidays:
        if h.calendar == "gregorian":
            anchor = dt.date(year, h.month, h.day)
        elif h.calendar == "solar_term":
            anchor = qingming(year)
        else:
            try:
                anchor = LunarDate(year, h.month, h.day).to_solar_date()
            except ValueError:  # lunardate covers 1900–2099 only
                log.warning("no lunar date for %s in %s; %s left out of the provisional rule", h.name, year, h.name)
                continue
        first = anchor + dt.timedelta(days=h.first_offset)
        for i in range(h.days):
            out[first + dt.timedelta(days=i)] = h.name
    return tuple(sorted(out.items()))


def statutory_holidays(year: int) -> dict[dt.date, str]:
    """Return the statutory holiday dates of a year (no 调休) with their names, as the provisional rule sees them."""
    return dict(_statutory(year))


# ---------------------------------------------------------------------------------------------
# Year arrangements (the State Council notice)


@dataclass(frozen=True)
class YearArrangement:
    """A year's official holiday arrangement: days off, make-up working days, and where it came from."""

    year: int
    holidays: frozenset[dt.date]
    workdays: frozenset[dt.date]
    source: str
    names: Mapping[dt.date, str] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        errors = [
            *_check_span(self.year, sorted(self.holidays), "holidays"),
            *_check_span(self.year, sorted(self.workdays), "workdays"),
            *_check_overlap(self.holidays, self.workdays),
        ]
        if errors:
            raise ValidationFailed(f"{self.year}年放假安排有误", errors=errors)


def _check_span(year: int, dates: Iterable[dt.date], where: str) -> list[FieldError]:
    errors = []
    for d in dates:
        if not (d.year == year or (d.year == year - 1 and d.month == 12)):
            errors.append(
                FieldError(
                    where, f"{d.isoformat()} 不在{year}年内（只允许{year}年的日期及上一年12月的日期）", "out_of_year"
                )
            )
    return errors


def _check_overlap(holidays: Iterable[dt.date], workdays: Iterable[dt.date]) -> list[FieldError]:
    both = sorted(set(holidays) & set(workdays))
    return [FieldError("workdays", f"{d.isoformat()} 既列为放假日又列为上班日", "conflict") for d in both]


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ARRANGEMENT_KEYS = {"year", "source", "holidays", "workdays", "note"}


def _parse_date(value: Any, where: str, errors: list[FieldError]) -> dt.date | None:
    if not isinstance(value, str) or not _DATE.match(value):
        errors.append(FieldError(where, "日期格式应为 YYYY-MM-DD", "date_parsing"))
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        errors.append(FieldError(where, f"{value} 不是有效日期", "date_parsing"))
        return None


def load_arrangement(data: Mapping[str, Any] | str | os.PathLike[str]) -> YearArrangement:
    """Read and validate a year's arrangement from a JSON file path or an already parsed dict."""
    if not isinstance(data, Mapping):
        path = Path(data)
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
        except FileNotFoundError as exc:
            raise ValidationFailed("放假安排文件不存在", errors=[FieldError("file", str(path), "not_found")]) from exc
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValidationFailed(
                "放假安排文件不是有效的 JSON", errors=[FieldError("file", str(exc), "json_invalid")]
            ) from exc
        if not isinstance(data, Mapping):
            raise ValidationFailed("放假安排文件应为 JSON 对象", errors=[FieldError("file", "应为对象", "dict_type")])

    errors: list[FieldError] = []
    for key in sorted(set(data) - _ARRANGEMENT_KEYS):
        errors.append(FieldError(key, "不允许的字段", "extra_forbidden"))
    year = data.get("year")
    if isinstance(year, bool) or not isinstance(year, int) or not 1900 <= year <= 2099:
        errors.append(FieldError("year", "年份应为 1900–2099 之间的整数", "int_type"))
        year = None
    source = data.get("source")
    if not isinstance(source, str) or not source.strip():
        errors.append(
            FieldError(
                "source", "必填项未填写：请写明通知名称（如“国务院办公厅关于2027年部分节假日安排的通知”）", "missing"
            )
        )

    names: dict[dt.date, str] = {}
    where_of: dict[dt.date, str] = {}
    holidays_in = data.get("holidays")
    if not isinstance(holidays_in, list) or not holidays_in:
        errors.append(FieldError("holidays", "应为非空列表", "list_type"))
        holidays_in = []
    for i, block in enumerate(holidays_in):
        at = f"holidays[{i}]"
        if not isinstance(block, Mapping):
            errors.append(FieldError(at, '应为对象：{"name": ..., "dates": [...]}', "dict_type"))
            continue
        for key in sorted(set(block) - {"name", "dates"}):
            errors.append(FieldError(f"{at}.{key}", "不允许的字段", "extra_forbidden"))
        name = block.get("name")
        if not isinstance(name, str) or not name.strip():
            errors.append(FieldError(f"{at}.name", "必填项未填写", "missing"))
            name = ""
        dates = block.get("dates")
        if not isinstance(dates, list) or not dates:
            errors.append(FieldError(f"{at}.dates", "应为非空日期列表", "list_type"))
            continue
        for j, raw in enumerate(dates):
            d = _parse_date(raw, f"{at}.dates[{j}]", errors)
            if d is None:
                continue
            if d in names:
                errors.append(
                    FieldError(f"{at}.dates[{j}]", f"{d.isoformat()} 重复（已见于 {where_of[d]}）", "duplicate")
                )
                continue
            names[d] = name.strip()
            where_of[d] = f"{at}.dates[{j}]"
            if year is not None:
                errors.extend(FieldError(f"{at}.dates[{j}]", e.reason, e.code) for e in _check_span(year, [d], ""))

    workdays: set[dt.date] = set()
    workdays_in = data.get("workdays", [])
    if not isinstance(workdays_in, list):
        errors.append(FieldError("workdays", "应为日期列表（没有调休上班日时写 []）", "list_type"))
        workdays_in = []
    for j, raw in enumerate(workdays_in):
        at = f"workdays[{j}]"
        d = _parse_date(raw, at, errors)
        if d is None:
            continue
        if d in workdays:
            errors.append(FieldError(at, f"{d.isoformat()} 重复", "duplicate"))
            continue
        if d.weekday() < 5:
            errors.append(
                FieldError(
                    at,
                    f"{d.isoformat()} 是星期{'一二三四五'[d.weekday()]}，本来就上班，调休上班日应为周六或周日",
                    "not_weekend",
                )
            )
        if d in names:
            errors.append(FieldError(at, f"{d.isoformat()} 既列为放假日（{where_of[d]}）又列为上班日", "conflict"))
        if year is not None:
            errors.extend(FieldError(at, e.reason, e.code) for e in _check_span(year, [d], ""))
        workdays.add(d)

    if errors:
        label = f"{year}年放假安排" if year else "放假安排"
        raise ValidationFailed(f"{label}校验未通过", errors=errors)
    assert year is not None and isinstance(source, str)
    return YearArrangement(
        year=year, holidays=frozenset(names), workdays=frozenset(workdays), source=source.strip(), names=names
    )


def arrangement_warnings(arrangement: YearArrangement) -> list[str]:
    """List statutory holidays the arrangement leaves out: likely a typo or a file for the wrong year."""
    out = []
    for d, name in statutory_holidays(arrangement.year).items():
        if d not in arrangement.holidays:
            out.append(f"{d.isoformat()}（{name}）是法定节假日，但未列入{arrangement.year}年放假日期，请核对")
    return out


def arrangement_to_dict(arrangement: YearArrangement) -> dict[str, Any]:
    """Return the arrangement in the file format, holiday blocks grouped by name."""
    blocks: dict[str, list[str]] = {}
    for d in sorted(arrangement.holidays):
        blocks.setdefault(arrangement.names.get(d, "") or "放假", []).append(d.isoformat())
    return {
        "year": arrangement.year,
        "source": arrangement.source,
        "holidays": [{"name": n, "dates": ds} for n, ds in blocks.items()],
        "workdays": [d.isoformat() for d in sorted(arrangement.workdays)],
    }


# ---------------------------------------------------------------------------------------------
# The calendar


@dataclass(frozen=True)
class Deadline:
    """A computed due time; provisional when a day was decided by the provisional rule."""

    due_at: dt.datetime
    provisional: bool = False
    warnings: list[str] = field(default_factory=list)


def _aware(value: dt.datetime, name: str) -> None:
    if not isinstance(value, dt.datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")


def _merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sort intervals (as UTC instants) and merge the ones that overlap or touch."""
    out: list[Interval] = []
    checked = []
    for a, b in intervals:
        _aware(a, "pause start")
        _aware(b, "pause end")
        checked.append((a.astimezone(UTC), b.astimezone(UTC)))
    for a, b in sorted(checked):
        if b <= a:
            continue
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _subtract(a: dt.datetime, b: dt.datetime, holes: Sequence[Interval]) -> list[Interval]:
    """Return the parts of [a, b) not covered by the sorted, merged holes."""
    out = []
    cur = a
    for ha, hb in holes:
        if hb <= cur:
            continue
        if ha >= b:
            break
        if ha > cur:
            out.append((cur, ha))
        cur = max(cur, hb)
        if cur >= b:
            break
    if cur < b:
        out.append((cur, b))
    return out


class WorkCalendar:
    """Working days and hours of one site: official calendar, loaded arrangements, site exceptions."""

    def __init__(
        self,
        *,
        work_hours: Sequence[tuple[dt.time, dt.time]] = ((dt.time(9), dt.time(12)), (dt.time(13, 30), dt.time(18))),
        extra_holidays: Iterable[dt.date] = (),
        extra_workdays: Iterable[dt.date] = (),
        arrangements: Mapping[int, YearArrangement] | Iterable[YearArrangement] = {},  # noqa: B006 - never mutated
        tz: str = "Asia/Shanghai",
    ) -> None:
        windows = tuple((s, e) for s, e in work_hours)
        if not windows:
            raise ValueError("work_hours must have at least one window")
        for i, (s, e) in enumerate(windows):
            if s.tzinfo is not None or e.tzinfo is not None:
                raise ValueError("work_hours are local times without tzinfo")
            if not s < e:
                raise ValueError(f"work window {s}–{e} must start before it ends")
            if i and windows[i - 1][1] > s:
                raise ValueError("work windows must be sorted and must not overlap")
        self.work_hours = windows
        self.tz = ZoneInfo(tz)
        self.extra_holidays = frozenset(extra_holidays)
        self.extra_workdays = frozenset(extra_workdays)
        both = self.extra_holidays & self.extra_workdays
        if both:
            raise ValueError(f"dates both extra holiday and extra workday: {sorted(both)}")
        self.arrangements: dict[int, YearArrangement] = {}
        self._listed: dict[dt.date, bool] = {}
        # chinese_calendar.is_workday costs ~80 µs; SLA scans and statistics ask about the same days often.
        self._decided: dict[dt.date, tuple[bool, bool]] = {}
        for arr in arrangements.values() if isinstance(arrangements, Mapping) else arrangements:
            self.load(arr)

    def load(self, arrangement: YearArrangement) -> None:
        """Load (or replace) a year's arrangement; it overrides chinese-calendar for that year."""
        self.arrangements[arrangement.year] = arrangement
        self._decided = {}
        # A notice may reach into the previous December; for such a date the notice of its own year wins.
        self._listed = {}
        for own_year in (False, True):
            for arr in self.arrangements.values():
                for d in arr.holidays | arr.workdays:
                    if (d.year == arr.year) == own_year:
                        self._listed[d] = d in arr.workdays
        log.info("loaded holiday arrangement for %s from %s", arrangement.year, arrangement.source)

    @property
    def day_length(self) -> dt.timedelta:
        """Return the working time of one full working day."""
        return sum(
            (dt.datetime.combine(dt.date.min, e) - dt.datetime.combine(dt.date.min, s) for s, e in self.work_hours),
            dt.timedelta(),
        )

    # -- days ----------------------------------------------------------------------------------

    def _decide(self, d: dt.date) -> tuple[bool, bool]:
        """Return (is a working day, decided by the provisional rule), memoised per calendar."""
        decided = self._decided.get(d)
        if decided is None:
            decided = self._decided[d] = self._decide_uncached(d)
        return decided

    def _decide_uncached(self, d: dt.date) -> tuple[bool, bool]:
        if d in self.extra_workdays:
            return True, False
        if d in self.extra_holidays:
            return False, False
        listed = self._listed.get(d)
        if listed is not None:
            return listed, False
        if d.year in self.arrangements:
            return d.weekday() < 5, False
        if d.year in OFFICIAL_YEARS:
            return chinese_calendar.is_workday(d), False
        return d.weekday() < 5 and d not in statutory_holidays(d.year), True

    def is_workday(self, d: dt.date) -> bool:
        """Tell whether a date is a working day at this site."""
        return self._decide(d)[0]

    def is_provisional(self, d: dt.date) -> bool:
        """Tell whether the provisional rule (no official data for the year) decided this date."""
        return self._decide(d)[1]

    def year_status(self, year: int) -> YearStatus:
        """Return where the year's arrangement comes from: loaded by staff, the package, or provisional."""
        if year in self.arrangements:
            return "loaded"
        if year in OFFICIAL_YEARS:
            return "official"
        return "provisional"

    def provisional_years(self, start: dt.date, end: dt.date) -> list[int]:
        """List the years between two dates that still lack an official arrangement (for a staff reminder)."""
        return [y for y in range(start.year, end.year + 1) if self.year_status(y) == "provisional"]

    def next_workday(self, d: dt.date) -> dt.date:
        """Return the first working day strictly after a date."""
        for _ in range(MAX_SCAN_DAYS):
            d += ONE_DAY
            if self.is_workday(d):
                return d
        raise ValueError(f"no working day within {MAX_SCAN_DAYS} days after {d}")

    def _windows(self, d: dt.date) -> list[Interval]:
        if not self.is_workday(d):
            return []
        return [
            (
                dt.datetime.combine(d, s, tzinfo=self.tz).astimezone(UTC),
                dt.datetime.combine(d, e, tzinfo=self.tz).astimezone(UTC),
            )
            for s, e in self.work_hours
        ]

    def _deadline(self, start: dt.datetime, due: dt.datetime) -> Deadline:
        """Wrap a due time, flagging the provisional years among the days from start to due."""
        first, last = start.astimezone(self.tz).date(), due.astimezone(self.tz).date()
        years: set[int] = set()
        d = first
        while d <= last:
            if d.year not in years and self.is_provisional(d):
                years.add(d.year)
            d += ONE_DAY
        warnings = [PROVISIONAL_WARNING.format(year=y) for y in sorted(years)]
        if warnings:
            log.info("provisional deadline %s (no arrangement for %s)", due.isoformat(), sorted(years))
        return Deadline(due_at=due.astimezone(self.tz), provisional=bool(years), warnings=warnings)

    # -- time ----------------------------------------------------------------------------------

    def add_working_time(
        self, start: dt.datetime, duration: dt.timedelta, *, pauses: Sequence[Interval] = ()
    ) -> Deadline:
        """Return the instant when `duration` of working time has passed after `start`, skipping pauses."""
        _aware(start, "start")
        if duration < dt.timedelta(0):
            raise ValueError("duration must not be negative")
        holes = _merge(pauses)
        cursor = start.astimezone(UTC)
        if duration == dt.timedelta(0):
            return self._deadline(start, cursor)
        remaining = duration
        day = start.astimezone(self.tz).date()
        for _ in range(MAX_SCAN_DAYS):
            for ws, we in self._windows(day):
                if we <= cursor:
                    continue
                for a, b in _subtract(max(ws, cursor), we, holes):
                    if b - a >= remaining:
                        return self._deadline(start, a + remaining)
                    remaining -= b - a
            day += ONE_DAY
        raise ValueError(f"no deadline within {MAX_SCAN_DAYS} days of {start.isoformat()}")

    def add_working_days(self, start: dt.datetime, n: int, *, pauses: Sequence[Interval] = ()) -> Deadline:
        """Return the end of the n-th working day after the day of `start`, moved later by paused working time."""
        _aware(start, "start")
        if isinstance(n, bool) or int(n) != n or n < 1:
            raise ValueError("n must be a whole number of working days, at least 1")
        d = start.astimezone(self.tz).date()
        for _ in range(int(n)):
            d = self.next_workday(d)
        due = self._windows(d)[-1][1]
        holes = _merge(pauses)
        if holes:
            paused = self.working_time_between(start, due) - self.working_time_between(start, due, pauses=holes)
            if paused > dt.timedelta(0):
                due = self.add_working_time(due, paused, pauses=holes).due_at
        return self._deadline(start, due)

    def add_calendar_time(
        self, start: dt.datetime, duration: dt.timedelta, *, pauses: Sequence[Interval] = ()
    ) -> Deadline:
        """Return start + duration in plain clock time, moved later by the paused time in between."""
        _aware(start, "start")
        if duration < dt.timedelta(0):
            raise ValueError("duration must not be negative")
        cursor, remaining = start.astimezone(UTC), duration
        for a, b in _merge(pauses):
            if b <= cursor:
                continue
            if a > cursor:
                if a - cursor >= remaining:
                    break
                remaining -= a - cursor
            cursor = max(cursor, b)
        return Deadline(due_at=(cursor + remaining).astimezone(self.tz))

    def working_time_between(self, a: dt.datetime, b: dt.datetime, *, pauses: Sequence[Interval] = ()) -> dt.timedelta:
        """Return the working time from a to b, less pauses (negative when b is before a)."""
        _aware(a, "a")
        _aware(b, "b")
        if b < a:
            return -self.working_time_between(b, a, pauses=pauses)
        holes = _merge(pauses)
        a_utc, b_utc = a.astimezone(UTC), b.astimezone(UTC)
        total = dt.timedelta(0)
        day, last = a.astimezone(self.tz).date(), b.astimezone(self.tz).date()
        while day <= last:
            for ws, we in self._windows(day):
                s, e = max(ws, a_utc), min(we, b_utc)
                if s < e:
                    total += sum((y - x for x, y in _subtract(s, e, holes)), dt.timedelta(0))
            day += ONE_DAY
        return total

    def working_days_between(self, a: dt.datetime, b: dt.datetime, *, pauses: Sequence[Interval] = ()) -> float:
        """Return the working time from a to b in working days (full days of work hours; fractional)."""
        return self.working_time_between(a, b, pauses=pauses) / self.day_length


def _parse_time(value: Any, where: str, errors: list[FieldError]) -> dt.time | None:
    if isinstance(value, dt.time):
        return value
    if isinstance(value, str) and re.match(r"^\d{1,2}:\d{2}$", value):
        h, m = (int(x) for x in value.split(":"))
        if h < 24 and m < 60:
            return dt.time(h, m)
    errors.append(FieldError(where, "时间格式应为 HH:MM", "time_parsing"))
    return None


def calendar_from_dict(
    data: Mapping[str, Any], *, arrangements: Mapping[int, YearArrangement] | Iterable[YearArrangement] = ()
) -> WorkCalendar:
    """Build a site's calendar from settings: work_hours [["09:00","12:00"],...], extra_holidays, extra_workdays, tz."""
    errors: list[FieldError] = []
    for key in sorted(set(data) - {"work_hours", "extra_holidays", "extra_workdays", "tz"}):
        errors.append(FieldError(key, "不允许的字段", "extra_forbidden"))
    hours = []
    for i, pair in enumerate(data.get("work_hours", [["09:00", "12:00"], ["13:30", "18:00"]])):
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            errors.append(FieldError(f"work_hours[{i}]", '应为 [开始, 结束]，如 ["09:00", "12:00"]', "invalid"))
            continue
        s, e = (_parse_time(v, f"work_hours[{i}]", errors) for v in pair)
        if s and e:
            hours.append((s, e))
    days: dict[str, list[dt.date]] = {}
    for key in ("extra_holidays", "extra_workdays"):
        days[key] = [d for j, raw in enumerate(data.get(key, [])) if (d := _parse_date(raw, f"{key}[{j}]", errors))]
    tz = data.get("tz", "Asia/Shanghai")
    try:
        ZoneInfo(tz)
    except Exception:
        errors.append(FieldError("tz", "未知时区", "invalid"))
    both = set(days["extra_holidays"]) & set(days["extra_workdays"])
    errors.extend(
        FieldError("extra_workdays", f"{d.isoformat()} 既列为放假日又列为上班日", "conflict") for d in sorted(both)
    )
    if not errors:
        try:
            return WorkCalendar(
                work_hours=hours,
                tz=tz,
                arrangements=arrangements,
                extra_holidays=days["extra_holidays"],
                extra_workdays=days["extra_workdays"],
            )
        except ValueError as exc:
            log.debug("calendar settings refused: %s", exc)
            errors.append(FieldError("work_hours", "工作时段应按时间先后排列、互不重叠，且开始早于结束", "invalid"))
    raise ValidationFailed("工作日历配置有误", errors=errors)
