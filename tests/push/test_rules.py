"""One place for push timing and limits (`push.rules`): the configured time zone moves quiet hours,
digests and the statistics' days alike, and one function decides when a firm is over its weekly cap,
for fan-out, targeted pushes and scheduled notices."""

from __future__ import annotations

import datetime as dt
import pathlib

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from push import fanout, outbox, preferences, rules, scheduled, stats, targeting
from push.models import Delivery
from push.schemas import ManualPushIn, PreferencesIn, TargetFilters
from tests import factories

UTC = dt.UTC
# 23:00 in Shanghai, 15:00 in UTC: inside 22:00–08:00 quiet hours in one zone, outside in the other.
LATE_IN_SHANGHAI = dt.datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


def _zones(test_settings):  # type: ignore[no-untyped-def]
    shanghai = test_settings.model_copy(update={"timezone": "Asia/Shanghai"})
    utc = test_settings.model_copy(update={"timezone": "UTC"})
    return shanghai, utc


def _rows(db: Session, policy_id: int, enterprise_id: int) -> dict[str, Delivery]:
    return {
        r.channel: r
        for r in db.scalars(
            select(Delivery).where(Delivery.policy_id == policy_id, Delivery.enterprise_id == enterprise_id)
        )
    }


def test_quiet_hours_follow_the_configured_time_zone_in_every_path(db: Session, matcher, test_settings) -> None:  # type: ignore[no-untyped-def]
    shanghai, utc = _zones(test_settings)
    firm = factories.make_enterprise(db)
    factories.verify_phone(db, firm.id)
    preferences.update_preferences(
        db=db,
        enterprise_id=firm.id,
        prefs_in=PreferencesIn(channels=["inbox", "sms"], phone="13800138000", quiet_start="22:00", quiet_end="08:00"),
    )
    pref = preferences.get_preferences(db=db, enterprise_id=firm.id)
    end_of_quiet_in_shanghai = dt.datetime(2026, 11, 26, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai

    # Fan-out.
    first, second = factories.make_policy(db, publish=True), factories.make_policy(db, publish=True)
    fanout.fan_out_policy(db=db, matcher=matcher, policy_id=first.id, now=LATE_IN_SHANGHAI, settings=shanghai)
    fanout.fan_out_policy(db=db, matcher=matcher, policy_id=second.id, now=LATE_IN_SHANGHAI, settings=utc)
    assert _rows(db, first.id, firm.id)["sms"].next_attempt_at == end_of_quiet_in_shanghai
    assert _rows(db, second.id, firm.id)["sms"].next_attempt_at == LATE_IN_SHANGHAI

    # A targeted push.
    third = factories.make_policy(db, publish=True)
    push_in = ManualPushIn(
        policy_id=third.id, filters=TargetFilters(enterprise_ids=[firm.id]), channels=["inbox", "sms"], message="请申报"
    )
    row, _ = targeting.send(db=db, push_in=push_in, created_by_id=None, now=LATE_IN_SHANGHAI, settings=utc)
    sms = db.scalar(
        select(Delivery).where(Delivery.dedupe_key == targeting.dedupe_key(row.id), Delivery.channel == "sms")
    )
    assert sms is not None and sms.next_attempt_at == LATE_IN_SHANGHAI

    # Scheduled notices (digests, reminders, change notices) build their rows with `channel_rows`.
    base = {"enterprise_id": firm.id, "policy_id": None, "kind": "profile_reminder"}
    for settings, due in ((shanghai, end_of_quiet_in_shanghai), (utc, LATE_IN_SHANGHAI)):
        made = scheduled.channel_rows(base=base, pref=pref, now=LATE_IN_SHANGHAI, pushed_recently={}, settings=settings)
        assert {r["channel"]: r["next_attempt_at"] for r in made}["sms"] == due


def test_digest_time_follows_the_configured_time_zone_and_matches_the_digest_period(test_settings) -> None:  # type: ignore[no-untyped-def]
    shanghai, utc = _zones(test_settings)
    expected = {
        # The next 09:00 local: 26 Nov 09:00 in Shanghai is 01:00 UTC; in UTC it is 09:00.
        "Asia/Shanghai": dt.datetime(2026, 11, 26, 1, 0, tzinfo=UTC),
        "UTC": dt.datetime(2026, 11, 26, 9, 0, tzinfo=UTC),
    }
    for settings in (shanghai, utc):
        due = rules.next_digest_at(LATE_IN_SHANGHAI, "daily", settings=settings)
        assert due == expected[settings.timezone]
        # Rows held for a digest fall due exactly when the digest for their day does.
        assert rules.digest_period(due - dt.timedelta(minutes=1), "daily", settings) is None
        assert rules.digest_period(due, "daily", settings) == "2026-11-26"
        assert rules.window_open(due, settings) and not rules.window_open(due - dt.timedelta(minutes=1), settings)
    weekly = test_settings.model_copy(
        update={"timezone": "UTC", "push_weekly_digest_weekday": 2, "push_digest_time": "07:30"}
    )
    due = rules.next_digest_at(LATE_IN_SHANGHAI, "weekly", settings=weekly)  # a Wednesday, after 07:30
    assert due == dt.datetime(2026, 12, 2, 7, 30, tzinfo=UTC)
    assert rules.digest_period(due, "weekly", weekly) == "2026-W49"


def test_statistics_days_follow_the_configured_time_zone(db: Session, matcher, test_settings) -> None:  # type: ignore[no-untyped-def]
    shanghai, utc = _zones(test_settings)
    factories.make_enterprise(db)
    policy = factories.make_policy(db, publish=True)
    at = dt.datetime(2026, 11, 25, 20, 0, tzinfo=UTC)  # 26 Nov 04:00 in Shanghai
    assert fanout.fan_out_policy(db=db, matcher=matcher, policy_id=policy.id, now=at, settings=utc)["created"] >= 1
    pushed = db.scalar(select(func.count()).select_from(Delivery).where(Delivery.policy_id == policy.id))
    the_26th = stats.DeliveryFilters(
        policy_id=policy.id, date_from=dt.date(2026, 11, 26), date_to=dt.date(2026, 11, 26)
    )
    for settings, day, on_the_26th in ((shanghai, "2026-11-26", pushed), (utc, "2026-11-25", 0)):
        by_day = stats.delivery_stats(
            db=db, filters=stats.DeliveryFilters(policy_id=policy.id), group_by="day", settings=settings
        )
        assert [(r["key"], r["total"]) for r in by_day["rows"]] == [(day, pushed)]
        _, total = stats.list_deliveries(db=db, filters=the_26th, settings=settings)
        assert total == on_the_26th


def test_over_cap_is_decided_by_one_rule_for_fan_out_targeting_and_scheduled_notices(
    db: Session, matcher, test_settings
) -> None:  # type: ignore[no-untyped-def]
    pushed: dict[int, int] = {}
    assert rules.over_weekly_cap(pushed, 7, 2) is False and pushed == {7: 1}
    assert rules.over_weekly_cap(pushed, 7, 2) is False and pushed == {7: 2}
    assert rules.over_weekly_cap(pushed, 7, 2) is True and pushed == {7: 2}  # an over-cap push is not counted
    assert rules.over_weekly_cap({}, 8, 0) is True

    firm = factories.make_enterprise(db)
    preferences.update_preferences(
        db=db,
        enterprise_id=firm.id,
        prefs_in=PreferencesIn(channels=["inbox", "email"], email="cap@firm.cn", weekly_cap=1),
    )
    pref = preferences.get_preferences(db=db, enterprise_id=firm.id)
    now = dt.datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
    first, second, third = (factories.make_policy(db, publish=True) for _ in range(3))
    fanout.fan_out_policy(db=db, matcher=matcher, policy_id=first.id, now=now, settings=test_settings)
    assert _rows(db, first.id, firm.id)["email"].status == "pending"
    assert outbox.recent_push_counts(db, [firm.id], now) == {firm.id: 1}
    # The push of a week ago no longer counts.
    assert outbox.recent_push_counts(db, [firm.id], now + rules.CAP_WINDOW + dt.timedelta(seconds=1)) == {}

    # At its cap of one push a week, every path records the email as skipped with the same reason.
    fanout.fan_out_policy(db=db, matcher=matcher, policy_id=second.id, now=now, settings=test_settings)
    capped = _rows(db, second.id, firm.id)["email"]
    assert (capped.status, capped.last_error) == ("skipped", rules.OVER_CAP)
    push_in = ManualPushIn(
        policy_id=third.id,
        filters=TargetFilters(enterprise_ids=[firm.id]),
        channels=["inbox", "email"],
        message="请申报",
    )
    row, counts = targeting.send(db=db, push_in=push_in, created_by_id=None, now=now, settings=test_settings)
    assert counts["over_cap"] == 1
    email = db.scalar(
        select(Delivery).where(Delivery.dedupe_key == targeting.dedupe_key(row.id), Delivery.channel == "email")
    )
    assert email is not None and (email.status, email.last_error) == ("skipped", rules.OVER_CAP)
    made = scheduled.channel_rows(
        base={"enterprise_id": firm.id},
        pref=pref,
        now=now,
        pushed_recently=outbox.recent_push_counts(db, [firm.id], now),
        settings=test_settings,
    )
    assert [(r["channel"], r["status"], r.get("last_error")) for r in made] == [
        ("inbox", "sent", None),
        ("email", "skipped", rules.OVER_CAP),
    ]


def test_no_push_module_but_rules_compares_against_the_weekly_cap_or_hard_codes_a_time_zone() -> None:
    push_dir = pathlib.Path(rules.__file__).parent
    for path in sorted(push_dir.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        if path.name != "rules.py":
            assert ">= pref.weekly_cap" not in text and ">= f.weekly_cap" not in text, path.name
        assert '"Asia/Shanghai"' not in text, path.name
