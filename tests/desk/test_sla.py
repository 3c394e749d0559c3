"""The desk's SLA clock: presets, due times, pauses, extensions, the 黄橙红 escalation and site profiles."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import ValidationFailed
from core.workcal import WorkCalendar
from desk import sla
from desk.sla import (
    JIANGMEN,
    KINDS,
    PRESETS,
    XUZHOU_135,
    ZHONGSHAN,
    EscalationRule,
    Pause,
    SlaTarget,
    due_times,
    extend,
    sla_state,
)

TZ = ZoneInfo("Asia/Shanghai")
CAL = WorkCalendar()
RULE = EscalationRule()
DOC = Path(__file__).resolve().parents[2] / "docs" / "calendar.md"


def at(y: int, m: int, d: int, h: int = 0, mi: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, h, mi, tzinfo=TZ)


def dues(profile: sla.SlaProfile, kind: str, received: dt.datetime, **kw) -> dict[str, dt.datetime]:
    return {
        s: d.due_at for s, d in due_times(profile=profile, kind=kind, received_at=received, calendar=CAL, **kw).items()
    }


# -- presets -----------------------------------------------------------------------------------


def test_presets_are_listed_by_code() -> None:
    assert set(PRESETS) == {"zhongshan", "xuzhou_135", "jiangmen"}
    assert all(set(p.targets_by_kind) == set(KINDS) for p in PRESETS.values())


def test_zhongshan_contacts_in_an_hour_replies_in_three_and_closes_in_five_working_days() -> None:
    assert dues(ZHONGSHAN, "complaint", at(2026, 3, 2, 10)) == {
        "contact": at(2026, 3, 2, 11),
        "reply": at(2026, 3, 5, 18),
        "close": at(2026, 3, 9, 18),
    }


def test_zhongshan_contact_hour_received_at_night_falls_in_the_first_working_hour() -> None:
    assert dues(ZHONGSHAN, "help", at(2026, 3, 6, 22))["contact"] == at(2026, 3, 9, 10)


def test_zhongshan_case_received_before_spring_festival_is_due_after_it() -> None:
    got = dues(ZHONGSHAN, "consultation", at(2026, 2, 12, 10))
    assert got["reply"] == at(2026, 2, 24, 18)  # 2-13, 2-14 (make-up Saturday), 2-24
    assert got["close"] == at(2026, 2, 26, 18)


@pytest.mark.parametrize(
    ("kind", "due"),
    [
        ("consultation", at(2026, 3, 9, 18)),
        ("help", at(2026, 3, 11, 18)),
        ("suggestion", at(2026, 3, 11, 18)),
        ("complaint", at(2026, 3, 13, 18)),
        ("report", at(2026, 3, 13, 18)),
    ],
)
def test_xuzhou_135_closes_in_one_three_or_five_working_days(kind: str, due: dt.datetime) -> None:
    assert dues(XUZHOU_135, kind, at(2026, 3, 6, 16)) == {"close": due}


def test_jiangmen_counts_clock_time_through_national_day() -> None:
    got = due_times(profile=JIANGMEN, kind="complaint", received_at=at(2026, 10, 1, 10), calendar=CAL)
    assert {s: d.due_at for s, d in got.items()} == {
        "contact": at(2026, 10, 1, 11),
        "reply": at(2026, 10, 2, 10),
        "close": at(2026, 10, 8, 10),
    }
    assert not any(d.provisional for d in got.values())


def test_national_day_make_up_saturday_counts_for_xuzhou() -> None:
    assert dues(XUZHOU_135, "help", at(2026, 10, 8, 10)) == {"close": at(2026, 10, 12, 18)}  # 10-9, 10-10, 10-12


def test_due_times_into_2027_are_provisional_with_a_warning() -> None:
    got = due_times(profile=ZHONGSHAN, kind="complaint", received_at=at(2026, 12, 30, 10), calendar=CAL)
    assert got["contact"].due_at == at(2026, 12, 30, 11) and not got["contact"].provisional
    assert got["reply"].due_at == at(2027, 1, 5, 18)  # 12-31, 1-4, 1-5
    assert got["reply"].provisional
    assert got["close"].warnings == ["2027年放假安排尚未导入，截止时间按周末和法定节假日推算，可能有误"]


def test_unknown_kind_is_refused_with_the_field() -> None:
    with pytest.raises(ValidationFailed) as exc:
        dues(ZHONGSHAN, "praise", at(2026, 3, 2, 10))
    assert exc.value.errors[0].field == "kind"


# -- pauses ------------------------------------------------------------------------------------


def test_pause_stops_the_clock() -> None:
    pause = Pause(at(2026, 3, 3, 9), at(2026, 3, 3, 18))  # one working day waiting on the firm
    got = dues(ZHONGSHAN, "complaint", at(2026, 3, 2, 10), pauses=[pause])
    assert got["contact"] == at(2026, 3, 2, 11)  # before the pause: unchanged
    assert got["close"] == at(2026, 3, 10, 18)


def test_long_pause_counts_only_up_to_the_maximum() -> None:
    pause = Pause(at(2026, 3, 3, 9), at(2026, 3, 31, 18))
    assert dues(ZHONGSHAN, "complaint", at(2026, 3, 2, 10), pauses=[pause])["close"] == at(2026, 3, 16, 18)


def test_open_pause_counts_as_its_whole_allowance() -> None:
    pause = Pause(at(2026, 3, 3, 9))
    assert dues(ZHONGSHAN, "complaint", at(2026, 3, 2, 10), pauses=[pause])["close"] == at(2026, 3, 16, 18)


def test_pause_allowance_is_shared_by_all_pauses_of_a_case() -> None:
    pauses = [Pause(at(2026, 3, 3, 9), at(2026, 3, 5, 18)), Pause(at(2026, 3, 10, 9), at(2026, 3, 12, 18))]
    got = sla.effective_pauses(pauses, calendar=CAL, max_working_days=5)
    assert got == [(at(2026, 3, 3, 9), at(2026, 3, 5, 18)), (at(2026, 3, 10, 9), at(2026, 3, 11, 18))]


def test_no_pause_allowance_ignores_pauses() -> None:
    profile = sla.profile_from_dict({"preset": "zhongshan", "max_pause_working_days": 0})
    got = dues(profile, "complaint", at(2026, 3, 2, 10), pauses=[Pause(at(2026, 3, 3, 9), at(2026, 3, 3, 18))])
    assert got["close"] == at(2026, 3, 9, 18)


def test_pause_stops_a_clock_time_target_too() -> None:
    pause = Pause(at(2026, 10, 1, 10, 20), at(2026, 10, 1, 10, 50))
    assert dues(JIANGMEN, "help", at(2026, 10, 1, 10), pauses=[pause])["contact"] == at(2026, 10, 1, 11, 30)


def test_pause_ending_before_it_starts_is_refused() -> None:
    with pytest.raises(ValueError):
        Pause(at(2026, 3, 3, 9), at(2026, 3, 2, 9))


# -- extensions --------------------------------------------------------------------------------


def test_extension_counts_on_from_the_old_due_time() -> None:
    close = due_times(profile=ZHONGSHAN, kind="help", received_at=at(2026, 3, 2, 10), calendar=CAL)["close"]
    new = extend(close, by=SlaTarget("close", 2, "working_days"), calendar=CAL)
    assert new.due_at == at(2026, 3, 11, 18)


def test_extension_over_spring_festival_skips_the_holiday() -> None:
    close = due_times(profile=ZHONGSHAN, kind="help", received_at=at(2026, 2, 6, 10), calendar=CAL)["close"]
    assert close.due_at == at(2026, 2, 13, 18)
    assert extend(close, by=SlaTarget("close", 2, "working_days"), calendar=CAL).due_at == at(2026, 2, 24, 18)


def test_extension_into_an_unknown_year_becomes_provisional() -> None:
    close = due_times(profile=ZHONGSHAN, kind="help", received_at=at(2026, 12, 18, 10), calendar=CAL)["close"]
    assert close.due_at == at(2026, 12, 25, 18) and not close.provisional
    new = extend(close, by=SlaTarget("close", 5, "working_days"), calendar=CAL)
    assert new.due_at == at(2027, 1, 4, 18)  # 12-28..12-31, [1-1 元旦 and the weekend], 1-4
    assert new.provisional and len(new.warnings) == 1


# -- escalation --------------------------------------------------------------------------------

DUE = at(2026, 3, 9, 18)  # Monday closing time
RECEIVED = at(2026, 3, 2, 10)


@pytest.mark.parametrize(
    ("now", "state"),
    [
        (at(2026, 3, 3, 10), "on_track"),
        (at(2026, 3, 6, 10), "on_track"),  # 14 working hours of 43.5 left
        (at(2026, 3, 9, 10), "due_soon"),  # 6.5 of 43.5 left: under 20%
        (at(2026, 3, 9, 17, 30), "due_soon"),
        (at(2026, 3, 9, 18), "due_soon"),
        (at(2026, 3, 9, 18, 1), "yellow"),
        (at(2026, 3, 12, 17, 59), "yellow"),
        (at(2026, 3, 12, 18), "orange"),  # 3 working days past due
        (at(2026, 3, 14, 12), "orange"),  # the weekend adds nothing
        (at(2026, 3, 16, 17, 59), "orange"),
        (at(2026, 3, 16, 18), "red"),  # 5 working days past due
    ],
)
def test_escalation_states_follow_working_days_past_due(now: dt.datetime, state: str) -> None:
    assert sla_state(due_at=DUE, now=now, calendar=CAL, rule=RULE, received_at=RECEIVED) == state


def test_escalation_thresholds_are_configurable() -> None:
    rule = EscalationRule(yellow_after_working_days=1, orange_after_working_days=2, red_after_working_days=3)
    states = [
        sla_state(due_at=DUE, now=now, calendar=CAL, rule=rule)
        for now in (at(2026, 3, 10, 10), at(2026, 3, 10, 18), at(2026, 3, 11, 18), at(2026, 3, 12, 18))
    ]
    assert states == ["due_soon", "yellow", "orange", "red"]


def test_escalation_past_due_skips_spring_festival() -> None:
    due = at(2026, 2, 13, 18)
    now = at(2026, 2, 25, 18)  # 2-14, 2-24, 2-25 worked since
    assert sla_state(due_at=due, now=now, calendar=CAL, rule=RULE) == "orange"


def test_due_soon_thresholds_are_parameters() -> None:
    quiet = EscalationRule(due_soon_fraction=0, due_soon_hours=0)
    assert (
        sla_state(due_at=DUE, now=at(2026, 3, 9, 17, 30), calendar=CAL, rule=quiet, received_at=RECEIVED) == "on_track"
    )
    eager = EscalationRule(due_soon_fraction=0.5)
    assert sla_state(due_at=DUE, now=at(2026, 3, 6, 10), calendar=CAL, rule=eager, received_at=RECEIVED) == "due_soon"


def test_hour_threshold_does_not_make_a_sixty_minute_target_due_soon_at_once() -> None:
    received, due = at(2026, 10, 1, 10), at(2026, 10, 1, 11)
    state = lambda now: sla_state(due_at=due, now=now, calendar=CAL, rule=RULE, received_at=received, clock="calendar")  # noqa: E731
    assert state(at(2026, 10, 1, 10, 5)) == "on_track"
    assert state(at(2026, 10, 1, 10, 50)) == "due_soon"  # under 20% of 60 minutes


def test_colours_keep_green_until_overdue() -> None:
    assert [sla.colour(s) for s in ("on_track", "due_soon", "yellow", "orange", "red")] == [
        "green",
        "green",
        "yellow",
        "orange",
        "red",
    ]
    assert sla.STATE_LABELS["due_soon"] == "即将到期"


def test_thresholds_out_of_order_are_refused() -> None:
    with pytest.raises(ValueError):
        EscalationRule(orange_after_working_days=6, red_after_working_days=5)


# -- targets and site profiles -----------------------------------------------------------------


def test_target_reads_as_a_chinese_phrase() -> None:
    assert SlaTarget("close", 5, "working_days").label == "5个工作日内办结"
    assert SlaTarget("contact", 60, "minutes").label == "60分钟内联系企业"
    assert SlaTarget("reply", 1.5, "working_days").clock == "working"
    assert JIANGMEN.targets("help")[2].clock == "calendar"


def test_target_with_no_time_is_refused() -> None:
    with pytest.raises(ValueError):
        SlaTarget("close", 0, "working_days")


def test_fractional_working_days_count_as_working_time() -> None:
    profile = sla.profile_from_dict(
        {
            "code": "x",
            "name": "试",
            "targets_by_kind": {"*": [{"stage": "reply", "amount": 0.5, "unit": "working_days"}]},
        }
    )
    assert dues(profile, "help", at(2026, 3, 2, 10))["reply"] == at(2026, 3, 2, 15, 15)  # 3h45m of working time


@pytest.mark.parametrize("code", sorted(PRESETS))
def test_presets_round_trip_through_settings(code: str) -> None:
    profile = PRESETS[code]
    data = json.loads(json.dumps(sla.profile_to_dict(profile)))
    assert sla.profile_from_dict(data) == profile


def test_doc_profiles_are_valid_settings() -> None:
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)]
    profiles = [sla.profile_from_dict(b) for b in blocks if "targets_by_kind" in b or "preset" in b]
    assert [p.code for p in profiles] == ["zhongshan-huangpu", "rudong"]
    huangpu = profiles[0]
    assert huangpu.targets("consultation") == (
        SlaTarget("contact", 1, "working_hours"),
        SlaTarget("close", 1, "working_days"),
    )
    assert huangpu.targets("complaint") == ZHONGSHAN.targets("complaint")
    assert huangpu.escalation.orange_after_working_days == 2 and huangpu.escalation.yellow_after_working_days == 0
    assert huangpu.max_pause_working_days == 10


def test_wildcard_fills_kinds_not_listed() -> None:
    profile = sla.profile_from_dict(
        {
            "code": "x",
            "name": "试",
            "targets_by_kind": {
                "*": [{"stage": "close", "amount": 5, "unit": "working_days"}],
                "consultation": [{"stage": "close", "amount": 1, "unit": "working_days"}],
            },
        }
    )
    assert profile.targets("consultation") == (SlaTarget("close", 1, "working_days"),)
    assert profile.targets("report") == (SlaTarget("close", 5, "working_days"),)


def test_bad_settings_name_each_field() -> None:
    with pytest.raises(ValidationFailed) as exc:
        sla.profile_from_dict(
            {
                "code": "x",
                "targets_by_kind": {
                    "consultation": [{"stage": "answer", "amount": -1, "unit": "days"}],
                    "praise": [],
                },
                "escalation": {"orange_after_working_days": "3"},
                "colour": "red",
            }
        )
    fields = {e.field for e in exc.value.errors}
    assert {
        "name",
        "colour",
        "targets_by_kind.consultation[0].stage",
        "targets_by_kind.consultation[0].amount",
        "targets_by_kind.consultation[0].unit",
        "targets_by_kind.praise",
        "targets_by_kind.help",
        "escalation.orange_after_working_days",
    } <= fields


def test_unknown_preset_is_refused() -> None:
    with pytest.raises(ValidationFailed) as exc:
        sla.profile_from_dict({"preset": "beijing"})
    assert exc.value.errors[0].field == "preset"


def test_escalation_out_of_order_in_settings_is_refused() -> None:
    with pytest.raises(ValidationFailed) as exc:
        sla.profile_from_dict({"preset": "xuzhou_135", "escalation": {"orange_after_working_days": 9}})
    assert exc.value.errors[0].field == "escalation"


# -- properties --------------------------------------------------------------------------------

_received = st.datetimes(min_value=dt.datetime(2025, 12, 1), max_value=dt.datetime(2027, 2, 28), timezones=st.just(TZ))


@settings(max_examples=100, deadline=None)
@given(
    received=_received,
    kind=st.sampled_from(KINDS),
    pause_at=st.integers(min_value=0, max_value=20 * 24 * 60),
    pause_len=st.one_of(st.none(), st.integers(min_value=0, max_value=40 * 24 * 60)),
)
def test_stages_fall_due_in_order_and_a_pause_adds_at_most_its_allowance(
    received: dt.datetime, kind: str, pause_at: int, pause_len: int | None
) -> None:
    start = received + dt.timedelta(minutes=pause_at)
    pause = Pause(start, None if pause_len is None else start + dt.timedelta(minutes=pause_len))
    plain = due_times(profile=ZHONGSHAN, kind=kind, received_at=received, calendar=CAL)
    paused = due_times(profile=ZHONGSHAN, kind=kind, received_at=received, calendar=CAL, pauses=[pause])
    for got in (plain, paused):
        assert received < got["contact"].due_at <= got["reply"].due_at <= got["close"].due_at
    for stage in plain:
        assert paused[stage].due_at >= plain[stage].due_at
        assert CAL.working_days_between(plain[stage].due_at, paused[stage].due_at) <= ZHONGSHAN.max_pause_working_days
