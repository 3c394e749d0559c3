"""The working-day calendar: official days, make-up days, provisional years, working-time arithmetic."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import chinese_calendar
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import workcal
from core.errors import ValidationFailed
from core.workcal import WorkCalendar, load_arrangement, statutory_holidays

TZ = ZoneInfo("Asia/Shanghai")
DOC = Path(__file__).resolve().parents[2] / "docs" / "calendar.md"
CAL = WorkCalendar()


def at(y: int, m: int, d: int, h: int = 0, mi: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, h, mi, tzinfo=TZ)


def doc_json_blocks() -> list[dict]:
    return [json.loads(b) for b in re.findall(r"```json\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)]


# A clearly hypothetical 2027 arrangement (NOT the official notice, which was not published when this
# was written): a 9-day Spring Festival with two make-up weekends, shaped like recent years.
SAMPLE_2027 = {
    "year": 2027,
    "source": "测试用示例（非官方）",
    "holidays": [
        {"name": "元旦", "dates": ["2027-01-01", "2027-01-02", "2027-01-03"]},
        {"name": "春节", "dates": [f"2027-02-{d:02d}" for d in range(5, 14)]},
        {"name": "清明节", "dates": ["2027-04-03", "2027-04-04", "2027-04-05"]},
        {"name": "劳动节", "dates": ["2027-05-01", "2027-05-02", "2027-05-03", "2027-05-04", "2027-05-05"]},
        {"name": "端午节", "dates": ["2027-06-09"]},
        {"name": "中秋节", "dates": ["2027-09-15"]},
        {"name": "国庆节", "dates": [f"2027-10-{d:02d}" for d in range(1, 8)]},
    ],
    "workdays": ["2027-01-31", "2027-02-20", "2027-04-25", "2027-10-09"],
}


# -- which days are worked ---------------------------------------------------------------------


def test_make_up_saturday_is_a_working_day() -> None:
    assert dt.date(2026, 2, 14).weekday() == 5
    assert CAL.is_workday(dt.date(2026, 2, 14))
    assert CAL.is_workday(dt.date(2026, 2, 28))
    assert not CAL.is_workday(dt.date(2026, 2, 21))


def test_spring_festival_2026_weekdays_are_holidays() -> None:
    assert not any(CAL.is_workday(dt.date(2026, 2, d)) for d in range(16, 21))
    assert CAL.is_workday(dt.date(2026, 2, 24))


def test_package_years_are_official_and_later_years_provisional() -> None:
    assert CAL.year_status(2026) == "official"
    assert CAL.year_status(2027) == "provisional"
    assert not CAL.is_provisional(dt.date(2026, 12, 31))
    assert CAL.is_provisional(dt.date(2027, 1, 4))
    assert CAL.provisional_years(dt.date(2026, 11, 1), dt.date(2027, 3, 1)) == [2027]


def test_provisional_rule_takes_weekends_and_statutory_days_off() -> None:
    assert not CAL.is_workday(dt.date(2027, 1, 1))  # 元旦, a Friday
    assert not CAL.is_workday(dt.date(2027, 2, 8))  # 春节 初三, a Monday
    assert CAL.is_workday(dt.date(2027, 2, 9))
    assert not CAL.is_workday(dt.date(2027, 10, 1))
    assert CAL.is_workday(dt.date(2027, 10, 4))  # the rest of the golden week only the notice can give


def test_statutory_holidays_2027_follow_the_2025_regulation() -> None:
    got = statutory_holidays(2027)
    assert [d for d, n in got.items() if n == "春节"] == [dt.date(2027, 2, d) for d in (5, 6, 7, 8)]
    assert [d for d, n in got.items() if n == "劳动节"] == [dt.date(2027, 5, 1), dt.date(2027, 5, 2)]
    assert [d for d, n in got.items() if n == "国庆节"] == [dt.date(2027, 10, d) for d in (1, 2, 3)]
    assert got[dt.date(2027, 4, 5)] == "清明节"
    assert got[dt.date(2027, 6, 9)] == "端午节"
    assert got[dt.date(2027, 9, 15)] == "中秋节"
    assert len(got) == 13


def test_statutory_holidays_before_2025_follow_the_2013_regulation() -> None:
    got = statutory_holidays(2024)
    assert [d for d, n in got.items() if n == "春节"] == [dt.date(2024, 2, d) for d in (10, 11, 12)]
    assert [d for d, n in got.items() if n == "劳动节"] == [dt.date(2024, 5, 1)]


@pytest.mark.parametrize("year", [2024, 2025, 2026])
def test_provisional_holidays_are_official_holidays_in_recent_years(year: int) -> None:
    official = {d for d in chinese_calendar.holidays if d.year == year}
    assert set(statutory_holidays(year)) <= official


@pytest.mark.parametrize("year", range(2008, 2027))
def test_provisional_holidays_are_days_off_in_every_package_year(year: int) -> None:
    # chinese-calendar leaves some weekend days out of its holiday table (2012-06-23), so ask is_holiday.
    assert [d for d in statutory_holidays(year) if not chinese_calendar.is_holiday(d)] == []


def test_qingming_formula_matches_the_package_solar_terms() -> None:
    for year in range(1900, 2100):
        terms = chinese_calendar.get_solar_terms(dt.date(year, 4, 1), dt.date(year, 4, 30))
        assert workcal.qingming(year) == next(d for d, name in terms if name == "清明"), year


def test_site_extra_days_win_over_the_official_calendar() -> None:
    cal = WorkCalendar(extra_holidays=[dt.date(2026, 3, 4)], extra_workdays=[dt.date(2026, 10, 3)])
    assert not cal.is_workday(dt.date(2026, 3, 4))
    assert cal.is_workday(dt.date(2026, 10, 3))


def test_site_extra_holiday_moves_a_deadline() -> None:
    start = at(2026, 3, 2, 10)  # Monday
    assert CAL.add_working_days(start, 2).due_at == at(2026, 3, 4, 18)
    cal = WorkCalendar(extra_holidays=[dt.date(2026, 3, 3)])
    assert cal.add_working_days(start, 2).due_at == at(2026, 3, 5, 18)


def test_extra_day_cannot_be_both_holiday_and_workday() -> None:
    with pytest.raises(ValueError):
        WorkCalendar(extra_holidays=[dt.date(2026, 3, 3)], extra_workdays=[dt.date(2026, 3, 3)])


def test_overlapping_work_hours_are_refused() -> None:
    with pytest.raises(ValueError):
        WorkCalendar(work_hours=((dt.time(9), dt.time(13)), (dt.time(12), dt.time(18))))


# -- working time ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("received", "due"),
    [
        (at(2026, 3, 2, 17, 59), at(2026, 3, 3, 9, 59)),  # one minute before closing
        (at(2026, 3, 2, 20), at(2026, 3, 3, 10)),  # after hours
        (at(2026, 3, 2, 12, 30), at(2026, 3, 2, 14, 30)),  # at lunch
        (at(2026, 3, 2, 11, 30), at(2026, 3, 2, 14)),  # across lunch
        (at(2026, 3, 2, 7), at(2026, 3, 2, 10)),  # before opening
        (at(2026, 3, 6, 17, 30), at(2026, 3, 9, 9, 30)),  # Friday evening → Monday
        (at(2026, 3, 2, 17), at(2026, 3, 2, 18)),  # ends exactly at closing, not next morning
    ],
)
def test_one_working_hour_respects_work_hours(received: dt.datetime, due: dt.datetime) -> None:
    assert CAL.add_working_time(received, dt.timedelta(hours=1)).due_at == due


def test_working_time_uses_the_site_work_hours() -> None:
    cal = WorkCalendar(work_hours=((dt.time(8, 30), dt.time(17, 30)),))
    assert cal.day_length == dt.timedelta(hours=9)
    assert cal.add_working_time(at(2026, 3, 2, 17), dt.timedelta(hours=1)).due_at == at(2026, 3, 3, 9)


def test_working_time_before_spring_festival_is_due_after_it() -> None:
    due = CAL.add_working_time(at(2026, 2, 14, 17), dt.timedelta(hours=2))  # the make-up Saturday
    assert due.due_at == at(2026, 2, 24, 10)
    assert not due.provisional and due.warnings == []


def test_due_time_is_in_the_calendar_time_zone() -> None:
    start = dt.datetime(2026, 3, 2, 2, tzinfo=dt.UTC)  # 10:00 in Shanghai
    due = CAL.add_working_time(start, dt.timedelta(hours=1)).due_at
    assert due.tzinfo == TZ and due == at(2026, 3, 2, 11)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError):
        CAL.add_working_time(dt.datetime(2026, 3, 2, 10), dt.timedelta(hours=1))


def test_pause_stops_the_working_clock() -> None:
    pause = (at(2026, 3, 2, 10), at(2026, 3, 2, 15))  # 2h + 1.5h of working time
    due = CAL.add_working_time(at(2026, 3, 2, 9), dt.timedelta(hours=2), pauses=[pause])
    assert due.due_at == at(2026, 3, 2, 16)


def test_calendar_time_ignores_weekends_but_not_pauses() -> None:
    start = at(2026, 10, 1, 10)
    assert CAL.add_calendar_time(start, dt.timedelta(days=7)).due_at == at(2026, 10, 8, 10)
    paused = CAL.add_calendar_time(start, dt.timedelta(hours=24), pauses=[(at(2026, 10, 1, 12), at(2026, 10, 1, 14))])
    assert paused.due_at == at(2026, 10, 2, 12)


# -- working days ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("received", "n", "due"),
    [
        (at(2026, 3, 6, 16), 1, at(2026, 3, 9, 18)),  # Friday 16:00 → Monday 18:00
        (at(2026, 3, 7, 11), 1, at(2026, 3, 9, 18)),  # Saturday → counting starts Monday
        (at(2026, 3, 9, 8), 1, at(2026, 3, 10, 18)),  # before opening: the day of receipt still never counts
        (at(2026, 3, 2, 10), 5, at(2026, 3, 9, 18)),
    ],
)
def test_working_days_end_at_closing_of_the_nth_working_day(received: dt.datetime, n: int, due: dt.datetime) -> None:
    assert CAL.add_working_days(received, n).due_at == due


def test_case_received_before_spring_festival_is_due_after_it() -> None:
    # 2-13 Friday, 2-14 make-up Saturday, 2-15..2-23 off.
    assert CAL.add_working_days(at(2026, 2, 12, 10), 3).due_at == at(2026, 2, 24, 18)
    assert CAL.add_working_days(at(2026, 2, 13, 10), 1).due_at == at(2026, 2, 14, 18)
    assert CAL.add_working_days(at(2026, 2, 13, 10), 2).due_at == at(2026, 2, 24, 18)


def test_national_day_2026_counts_its_make_up_weekend_days() -> None:
    assert CAL.add_working_days(at(2026, 9, 18, 10), 1).due_at == at(2026, 9, 20, 18)  # Sunday 9-20 worked
    due = CAL.add_working_days(at(2026, 9, 30, 10), 5)
    assert due.due_at == at(2026, 10, 13, 18)  # 10-8, 10-9, 10-10 (Sat), 10-12, 10-13
    assert not due.provisional


def test_received_on_a_holiday_counts_from_the_next_working_day() -> None:
    assert CAL.add_working_days(at(2026, 10, 3, 9), 1).due_at == at(2026, 10, 8, 18)


def test_pause_moves_a_working_day_deadline_by_the_paused_working_time() -> None:
    start = at(2026, 3, 2, 10)
    pause = (at(2026, 3, 3, 9), at(2026, 3, 4, 18))  # two full working days
    assert CAL.add_working_days(start, 3, pauses=[pause]).due_at == at(2026, 3, 9, 18)


def test_zero_or_fractional_working_days_are_refused() -> None:
    with pytest.raises(ValueError):
        CAL.add_working_days(at(2026, 3, 2, 10), 0)
    with pytest.raises(ValueError):
        CAL.add_working_days(at(2026, 3, 2, 10), 1.5)  # type: ignore[arg-type]


def test_working_time_and_days_between() -> None:
    assert CAL.working_time_between(at(2026, 3, 6, 16), at(2026, 3, 9, 10)) == dt.timedelta(hours=3)
    assert CAL.working_time_between(at(2026, 3, 9, 10), at(2026, 3, 6, 16)) == -dt.timedelta(hours=3)
    assert CAL.working_days_between(at(2026, 3, 9, 18), at(2026, 3, 12, 18)) == 3.0
    assert CAL.working_days_between(at(2026, 2, 13, 18), at(2026, 2, 24, 18)) == 2.0  # 2-14 and 2-24


# -- across the year boundary ------------------------------------------------------------------


def test_deadline_into_an_unknown_year_is_computed_and_marked_provisional() -> None:
    due = CAL.add_working_days(at(2026, 12, 30, 10), 5)
    # 12-31, [1-1 元旦, 1-2/1-3 weekend], 1-4, 1-5, 1-6, 1-7
    assert due.due_at == at(2027, 1, 7, 18)
    assert due.provisional
    assert due.warnings == ["2027年放假安排尚未导入，截止时间按周末和法定节假日推算，可能有误"]


def test_loading_the_year_makes_the_same_deadline_official() -> None:
    cal = WorkCalendar(arrangements={2027: load_arrangement(SAMPLE_2027)})
    assert cal.year_status(2027) == "loaded"
    due = cal.add_working_days(at(2026, 12, 30, 10), 5)
    assert due.due_at == at(2027, 1, 7, 18)
    assert not due.provisional and due.warnings == []


def test_loaded_arrangement_can_change_a_provisional_deadline() -> None:
    start = at(2027, 2, 3, 10)  # Wednesday before Spring Festival
    provisional = CAL.add_working_days(start, 5)
    assert provisional.due_at == at(2027, 2, 12, 18)  # 2-4, then 2-9..2-12 after 除夕–初三
    assert provisional.provisional
    cal = WorkCalendar(arrangements=[load_arrangement(SAMPLE_2027)])
    official = cal.add_working_days(start, 5)
    assert official.due_at == at(2027, 2, 18, 18)  # 2-4, then 2-15..2-18 after the 9-day holiday
    assert not official.provisional


def test_arrangement_reaching_into_previous_december_overrides_the_package() -> None:
    data = {"year": 2027, "source": "测试", "holidays": [{"name": "元旦", "dates": ["2026-12-31", "2027-01-01"]}]}
    cal = WorkCalendar(arrangements=[load_arrangement(data)])
    assert not cal.is_workday(dt.date(2026, 12, 31))
    assert CAL.is_workday(dt.date(2026, 12, 31))


def test_site_extra_workday_wins_over_a_loaded_arrangement() -> None:
    cal = WorkCalendar(arrangements=[load_arrangement(SAMPLE_2027)], extra_workdays=[dt.date(2027, 2, 10)])
    assert cal.is_workday(dt.date(2027, 2, 10))
    assert not cal.is_workday(dt.date(2027, 2, 11))


def test_loaded_arrangement_overrides_the_package_for_its_year() -> None:
    data = {"year": 2026, "source": "测试更正", "holidays": [{"name": "元旦", "dates": ["2026-01-01"]}]}
    cal = WorkCalendar(arrangements=[load_arrangement(data)])
    assert cal.year_status(2026) == "loaded"
    assert cal.is_workday(dt.date(2026, 1, 2))  # the package says holiday; the loaded file lists only 1-1


# -- the arrangement file ----------------------------------------------------------------------


def test_doc_example_is_the_official_2026_arrangement() -> None:
    (block,) = [b for b in doc_json_blocks() if "year" in b]
    arr = load_arrangement(block)
    assert arr.holidays == {d for d in chinese_calendar.holidays if d.year == 2026}
    assert arr.workdays == {d for d in chinese_calendar.workdays if d.year == 2026 and d.weekday() >= 5}
    assert workcal.arrangement_warnings(arr) == []
    cal = WorkCalendar(arrangements=[arr])
    days = [dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in range(365)]
    assert [cal.is_workday(d) for d in days] == [chinese_calendar.is_workday(d) for d in days]


def test_doc_calendar_setting_builds_a_calendar() -> None:
    (block,) = [b for b in doc_json_blocks() if "work_hours" in b]
    cal = workcal.calendar_from_dict(block)
    assert cal.day_length == dt.timedelta(hours=6, minutes=30)
    assert not cal.is_workday(dt.date(2026, 7, 1))


def test_arrangement_loads_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "2027.json"
    path.write_text(json.dumps(SAMPLE_2027, ensure_ascii=False), encoding="utf-8")
    arr = load_arrangement(path)
    assert arr.year == 2027 and arr.source == "测试用示例（非官方）"
    assert arr.names[dt.date(2027, 2, 10)] == "春节"
    assert workcal.arrangement_to_dict(arr)["workdays"] == SAMPLE_2027["workdays"]


def test_missing_file_is_refused_with_a_reason(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed) as exc:
        load_arrangement(tmp_path / "none.json")
    assert exc.value.errors[0].field == "file"


def _errors(data: dict) -> dict[str, str]:
    with pytest.raises(ValidationFailed) as exc:
        load_arrangement(data)
    out: dict[str, str] = {}
    for e in exc.value.errors:
        out[e.field] = f"{out.get(e.field, '')}{e.reason}；"
    return out


def test_date_outside_the_stated_year_is_refused() -> None:
    data = {**SAMPLE_2027, "workdays": ["2028-01-08"]}
    assert "不在2027年内" in _errors(data)["workdays[0]"]


def test_date_both_holiday_and_workday_is_refused() -> None:
    data = {**SAMPLE_2027, "workdays": ["2027-02-06"]}
    assert "既列为放假日" in _errors(data)["workdays[0]"]


def test_make_up_workday_on_a_weekday_is_refused() -> None:
    data = {**SAMPLE_2027, "workdays": ["2027-03-09"]}
    assert "周六或周日" in _errors(data)["workdays[0]"]


def test_malformed_arrangement_names_each_field() -> None:
    errors = _errors({"year": "2027", "holidays": [{"name": "", "dates": ["2027-13-01"]}], "extra": 1})
    assert set(errors) == {"year", "source", "holidays[0].name", "holidays[0].dates[0]", "extra"}


def test_arrangement_missing_a_statutory_day_is_flagged() -> None:
    data = {**SAMPLE_2027, "holidays": SAMPLE_2027["holidays"][1:]}  # no 元旦
    warnings = workcal.arrangement_warnings(load_arrangement(data))
    assert warnings == ["2027-01-01（元旦）是法定节假日，但未列入2027年放假日期，请核对"]


# -- properties --------------------------------------------------------------------------------

_starts = st.datetimes(min_value=dt.datetime(2025, 11, 1), max_value=dt.datetime(2027, 11, 30), timezones=st.just(TZ))
_durations = st.integers(min_value=0, max_value=60 * 7 * 15).map(lambda m: dt.timedelta(minutes=m))


@settings(max_examples=200, deadline=None)
@given(start=_starts, duration=_durations)
def test_added_working_time_is_exactly_the_working_time_between(start: dt.datetime, duration: dt.timedelta) -> None:
    due = CAL.add_working_time(start, duration)
    assert due.due_at >= start
    assert CAL.working_time_between(start, due.due_at) == duration
    assert due.provisional == (due.due_at.year >= 2027)


@settings(max_examples=100, deadline=None)
@given(
    start=_starts,
    n=st.integers(min_value=1, max_value=10),
    pause_at=st.integers(min_value=0, max_value=10 * 24 * 60),
    pause_len=st.integers(min_value=0, max_value=5 * 24 * 60),
)
def test_working_days_deadline_keeps_the_unpaused_working_time(
    start: dt.datetime, n: int, pause_at: int, pause_len: int
) -> None:
    pause = (start + dt.timedelta(minutes=pause_at), start + dt.timedelta(minutes=pause_at + pause_len))
    plain = CAL.add_working_days(start, n)
    paused = CAL.add_working_days(start, n, pauses=[pause])
    assert paused.due_at >= plain.due_at > start
    assert CAL.working_time_between(start, paused.due_at, pauses=[pause]) == CAL.working_time_between(
        start, plain.due_at
    )
