"""Scheduled notifications with a controlled clock: digests, deadline reminders, quiet hours, policy
change notices, profile reminders and policy expiry — each exactly once per key."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
import time_machine
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from catalog import jobs as catalog_jobs
from catalog import service as catalog_service
from catalog.models import PolicyStatus
from catalog.schemas import PolicyUpdate
from core.db import InSession, utcnow
from core.netguard import AddressGuard
from matcher import feedback as matcher_feedback
from matcher import runs
from matcher.models import MatchResult
from push import changes, digests, fanout, outbox, preferences, reminders, rules, sender
from push.channels import SmsChannel, WebhookChannel, sms_length
from push.models import Delivery, PushPreference
from push.schemas import PreferencesIn
from tests import factories
from tests.support.receiver import Receiver, running

SHANGHAI = dt.timezone(dt.timedelta(hours=8))

# The test receivers listen on 127.0.0.1: admitted through the allow-list, as HUIQI_WEBHOOK_ALLOW_HOSTS would.
LOCAL = AddressGuard("127.0.0.1/32")


def at(*args: int) -> dt.datetime:
    """A moment in Shanghai local time."""
    return dt.datetime(*args, tzinfo=SHANGHAI)  # type: ignore[misc]


# ---------------------------------------------------------------- a real local HTTP receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running() as server:
        yield server


@pytest.fixture
def webhook() -> Iterator[WebhookChannel]:
    with WebhookChannel(timeout=2.0, guard=LOCAL) as channel:
        yield channel


# ---------------------------------------------------------------- helpers


def _firm(db: Session, **prefs: Any):  # type: ignore[no-untyped-def]
    firm = factories.make_enterprise(db, contact_email="boss@example.cn")
    if "sms" in prefs.get("channels", []):
        factories.verify_phone(db, firm.id, prefs.get("phone") or "13800138000")
    if prefs:
        preferences.update_preferences(db=db, enterprise_id=firm.id, prefs_in=PreferencesIn(**prefs), guard=LOCAL)
    return firm


def _rows(db: Session, enterprise_id: int, kind: str, channel: str | None = None) -> list[Delivery]:
    q = select(Delivery).where(Delivery.enterprise_id == enterprise_id, Delivery.kind == kind)
    if channel is not None:
        q = q.where(Delivery.channel == channel)
    return list(db.scalars(q.order_by(Delivery.id)))


def _digest_settings(test_settings, **update: Any):  # type: ignore[no-untyped-def]
    return test_settings.model_copy(update=update)


# ---------------------------------------------------------------- the clock


def test_digest_period_follows_local_time_and_the_configured_weekday(test_settings) -> None:  # type: ignore[no-untyped-def]
    wednesday = _digest_settings(test_settings, push_weekly_digest_weekday=2, push_digest_time="08:30")

    assert rules.digest_period(at(2026, 11, 23, 8, 59), "daily", test_settings) is None
    assert rules.digest_period(at(2026, 11, 23, 9, 0), "daily", test_settings) == "2026-11-23"
    # 07:30 in Shanghai is still the previous day in UTC: the local date names the period.
    early = _digest_settings(test_settings, push_digest_time="07:00")
    assert rules.digest_period(at(2026, 11, 24, 7, 30), "daily", early) == "2026-11-24"
    assert rules.digest_period(at(2026, 11, 23, 9, 0), "weekly", test_settings) == "2026-W48"  # Monday
    assert rules.digest_period(at(2026, 11, 29, 23, 59), "weekly", test_settings) == "2026-W48"  # Sunday
    assert rules.digest_period(at(2026, 11, 30, 8, 59), "weekly", test_settings) is None  # next Monday, early
    assert rules.digest_period(at(2026, 11, 24, 12, 0), "weekly", wednesday) is None  # Tuesday
    assert rules.digest_period(at(2026, 11, 25, 8, 29), "weekly", wednesday) is None
    assert rules.digest_period(at(2026, 11, 25, 8, 30), "weekly", wednesday) == "2026-W48"
    assert rules.digest_period(at(2026, 12, 31, 9, 0), "weekly", test_settings) == "2026-W53"
    assert rules.digest_period(at(2026, 11, 23, 12, 0), "instant", test_settings) is None
    assert rules.months_before(dt.datetime(2026, 8, 31, 1, tzinfo=dt.UTC), 6) == dt.datetime(
        2026, 2, 28, 1, tzinfo=dt.UTC
    )
    assert rules.months_before(dt.datetime(2026, 3, 15, tzinfo=dt.UTC), 6) == dt.datetime(2025, 9, 15, tzinfo=dt.UTC)


# ---------------------------------------------------------------- digests


def test_daily_digest_fires_at_nine_local_once_per_day_and_is_sent_as_one_message(
    db: Session, matcher, test_settings, receiver, webhook
) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel(at(2026, 11, 23, 7, 30), tick=False) as clock:
        firm = _firm(db, channels=["inbox", "webhook"], frequency="daily", webhook_url=receiver.url("/hook"))
        first = factories.make_policy(db, publish=True, apply_end_on=dt.date(2026, 12, 23))
        other = factories.make_policy(db, publish=True, apply_end_on=dt.date(2026, 12, 24))
        fanout.fan_out_policy(db=db, matcher=matcher, policy_id=first.id)
        fanout.fan_out_policy(db=db, matcher=matcher, policy_id=other.id)
        held = _rows(db, firm.id, "new_match", "webhook")
        assert [r.status for r in held] == ["pending", "pending"]
        assert [r.status for r in _rows(db, firm.id, "new_match", "inbox")] == ["sent", "sent"]

        # The sender leaves held rows alone, even long after their nominal time.
        sent = sender.send_due(db=db, channels={"webhook": webhook}, settings=test_settings, now=at(2026, 11, 24, 12))
        assert sent["picked"] == 0 and not receiver.bodies()

        clock.move_to(at(2026, 11, 23, 8, 59))
        digests.run_digests(db=db, now=utcnow(), settings=test_settings)
        assert not _rows(db, firm.id, "digest")

        clock.move_to(at(2026, 11, 23, 9, 0))
        report = digests.run_digests(db=db, now=utcnow(), settings=test_settings, base_url="https://hq.example")
        (digest,) = _rows(db, firm.id, "digest")
        assert report.ok and report.total == 1
        assert (digest.channel, digest.status, digest.dedupe_key, digest.policy_id) == (
            "webhook",
            "pending",
            "2026-11-23",
            None,
        )
        assert digest.title.startswith("政策汇总（11月23日）：2 项")
        assert f"《{first.title}》" in digest.body and f"《{other.title}》" in digest.body
        assert "申报截止：2026年12月23日（还剩 30 天）" in digest.body
        assert f"https://hq.example/policies/{first.id}" in digest.body
        assert [p["policy_id"] for p in digest.payload["policies"]] == [first.id, other.id]
        assert {(r.status, r.last_error) for r in held} == {("skipped", "已并入每日汇总（2026-11-23）")}

        # Sent as one message through the firm's channel.
        counts = sender.send_due(db=db, channels={"webhook": webhook}, settings=test_settings, now=utcnow())
        assert counts["sent"] == 1 and digest.status == "sent"
        (payload,) = receiver.bodies()
        assert payload["kind"] == "digest" and len(payload["data"]["policies"]) == 2

        # Later that day: a new match waits for tomorrow, however often the job runs.
        clock.move_to(at(2026, 11, 23, 15, 0))
        third = factories.make_policy(db, publish=True)
        fanout.fan_out_policy(db=db, matcher=matcher, policy_id=third.id)
        for hour in (15, 18, 23):
            clock.move_to(at(2026, 11, 23, hour, 30))
            digests.run_digests(db=db, now=utcnow(), settings=test_settings)
        assert len(_rows(db, firm.id, "digest")) == 1

        clock.move_to(at(2026, 11, 24, 9, 0))
        digests.run_digests(db=db, now=utcnow(), settings=test_settings)
        digests.run_digests(db=db, now=utcnow(), settings=test_settings)
        written = _rows(db, firm.id, "digest")
        assert [d.dedupe_key for d in written] == ["2026-11-23", "2026-11-24"]
        assert [p["policy_id"] for p in written[1].payload["policies"]] == [third.id]


def test_weekly_digest_goes_out_on_the_configured_weekday(db: Session, matcher, test_settings) -> None:  # type: ignore[no-untyped-def]
    settings = _digest_settings(test_settings, push_weekly_digest_weekday=2)  # Wednesdays
    with time_machine.travel(at(2026, 11, 23, 10, 0), tick=False) as clock:  # a Monday
        firm = _firm(db, channels=["inbox", "email"], frequency="weekly")
        policy = factories.make_policy(db, publish=True)
        fanout.fan_out_policy(db=db, matcher=matcher, policy_id=policy.id)

        for moment in (at(2026, 11, 23, 10, 0), at(2026, 11, 24, 9, 30), at(2026, 11, 25, 8, 59)):
            clock.move_to(moment)
            digests.run_digests(db=db, now=utcnow(), settings=settings)
        assert not _rows(db, firm.id, "digest")

        clock.move_to(at(2026, 11, 25, 9, 0))
        digests.run_digests(db=db, now=utcnow(), settings=settings)
        clock.move_to(at(2026, 11, 27, 9, 0))
        digests.run_digests(db=db, now=utcnow(), settings=settings)
        (digest,) = _rows(db, firm.id, "digest")
        assert (digest.channel, digest.dedupe_key) == ("email", "2026-W48")
        assert digest.title.startswith("政策汇总（2026年第48周）：1 项")
        assert "每周汇总" in digest.body

        clock.move_to(at(2026, 11, 30, 10, 0))
        later = factories.make_policy(db, publish=True)
        fanout.fan_out_policy(db=db, matcher=matcher, policy_id=later.id)
        clock.move_to(at(2026, 12, 2, 9, 5))
        digests.run_digests(db=db, now=utcnow(), settings=settings)
        assert [d.dedupe_key for d in _rows(db, firm.id, "digest")] == ["2026-W48", "2026-W49"]


def test_empty_digest_is_not_sent_and_instant_firms_are_not_held(db: Session, matcher, test_settings) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel(at(2026, 11, 23, 7, 0), tick=False) as clock:
        daily = _firm(db, channels=["inbox", "email"], frequency="daily")
        instant = _firm(db, channels=["inbox", "email"])
        policy = factories.make_policy(db, publish=True)
        fanout.fan_out_policy(db=db, matcher=matcher, policy_id=policy.id)
        matcher_feedback.record_feedback(db=db, enterprise_id=daily.id, policy_id=policy.id, action="not_relevant")

        clock.move_to(at(2026, 11, 23, 9, 0))
        digests.run_digests(db=db, now=utcnow(), settings=test_settings)

        assert not _rows(db, daily.id, "digest")
        (held,) = _rows(db, daily.id, "new_match", "email")
        assert (held.status, held.last_error) == ("skipped", "企业已反馈该政策不相关")
        (direct,) = _rows(db, instant.id, "new_match", "email")
        assert direct.status == "pending" and not _rows(db, instant.id, "digest")


def test_firm_back_on_instant_gets_its_held_rows_sent_one_by_one(db: Session, matcher, test_settings) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel(at(2026, 11, 23, 7, 0), tick=False):
        firm = _firm(db, channels=["inbox", "email"], frequency="daily")
        policy = factories.make_policy(db, publish=True)
        fanout.fan_out_policy(db=db, matcher=matcher, policy_id=policy.id)
        later = at(2026, 11, 24, 12)
        assert sender.send_due(db=db, channels={}, settings=test_settings, now=later)["picked"] == 0

        preferences.update_preferences(db=db, enterprise_id=firm.id, prefs_in=PreferencesIn(frequency="instant"))
        counts = sender.send_due(db=db, channels={}, settings=test_settings, now=later)

    (row,) = _rows(db, firm.id, "new_match", "email")
    assert counts["picked"] == 1 and row.attempts == 1  # no SMTP in tests: it died with a reason
    assert "SMTP" in (row.last_error or "")


# ---------------------------------------------------------------- deadline reminders


def _deadline_setup(db: Session, matcher):  # type: ignore[no-untyped-def]
    policy = factories.make_policy(
        db, publish=True, apply_start_on=dt.date(2026, 10, 1), apply_end_on=dt.date(2026, 11, 20)
    )
    firms = {name: _firm(db) for name in ("keen", "applied", "uninterested")}
    outside = factories.make_enterprise(
        db, region_code="440300", credit_code=factories.credit_code(factories.n() * 31337, region="440300")
    )
    runs.list_policy(InSession(db), matcher, policy.id)
    matcher_feedback.record_feedback(db=db, enterprise_id=firms["applied"].id, policy_id=policy.id, action="applied")
    matcher_feedback.record_feedback(
        db=db, enterprise_id=firms["uninterested"].id, policy_id=policy.id, action="not_relevant"
    )
    return policy, firms, outside


def test_deadline_reminders_fire_seven_and_one_days_before_only_for_firms_still_interested(
    db: Session, matcher, test_settings
) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel(at(2026, 11, 1, 10, 0), tick=False) as clock:
        policy, firms, outside = _deadline_setup(db, matcher)

        def run(*moment: int) -> None:
            clock.move_to(at(*moment))
            reminders.run_reminders(db=db, now=utcnow(), settings=test_settings)

        def keys(firm_id: int) -> list[str]:
            return [r.dedupe_key for r in _rows(db, firm_id, "deadline_reminder", "inbox")]

        run(2026, 11, 12, 9, 30)  # 8 days before
        run(2026, 11, 13, 8, 59)  # 7 days before, before the send time
        assert keys(firms["keen"].id) == []

        run(2026, 11, 13, 9, 0)
        assert keys(firms["keen"].id) == ["7d:2026-11-20"]
        (row,) = _rows(db, firms["keen"].id, "deadline_reminder")
        assert row.title == f"申报截止提醒：《{policy.title}》还剩 7 天"
        assert "2026年11月20日 截止" in row.body and row.policy_id == policy.id

        for moment in ((2026, 11, 13, 17, 0), (2026, 11, 16, 9, 0), (2026, 11, 18, 9, 0)):
            run(*moment)
        assert keys(firms["keen"].id) == ["7d:2026-11-20"]

        run(2026, 11, 19, 9, 0)
        run(2026, 11, 20, 9, 0)  # the deadline day: the 1-day reminder is not repeated
        assert keys(firms["keen"].id) == ["7d:2026-11-20", "1d:2026-11-20"]
        run(2026, 11, 21, 9, 0)  # closed

    assert keys(firms["keen"].id) == ["7d:2026-11-20", "1d:2026-11-20"]
    assert not _rows(db, firms["applied"].id, "deadline_reminder")
    assert not _rows(db, firms["uninterested"].id, "deadline_reminder")
    assert not _rows(db, outside.id, "deadline_reminder")


def test_reminder_for_a_policy_found_late_counts_down_from_the_days_left(db: Session, matcher, test_settings) -> None:  # type: ignore[no-untyped-def]
    settings = _digest_settings(test_settings, push_reminder_days="3")
    with time_machine.travel(at(2026, 11, 18, 9, 30), tick=False):
        policy = factories.make_policy(
            db, publish=True, apply_start_on=dt.date(2026, 11, 1), apply_end_on=dt.date(2026, 11, 20)
        )
        firm = _firm(db)
        runs.list_policy(InSession(db), matcher, policy.id)
        reminders.run_reminders(db=db, now=utcnow(), settings=settings)

    (row,) = _rows(db, firm.id, "deadline_reminder")
    assert row.dedupe_key == "3d:2026-11-20" and "还剩 2 天" in row.title


def test_one_firm_with_broken_data_does_not_stop_the_others_reminders(db: Session, matcher, test_settings) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel(at(2026, 11, 13, 9, 30), tick=False):
        policy = factories.make_policy(
            db, publish=True, apply_start_on=dt.date(2026, 11, 1), apply_end_on=dt.date(2026, 11, 20)
        )
        broken = _firm(db, channels=["inbox", "sms"], phone="13800138000")
        fine = _firm(db)
        db.get(PushPreference, broken.id).quiet_start = "99:99"  # corrupt row written around validation
        db.flush()
        runs.list_policy(InSession(db), matcher, policy.id)

        reminders.run_reminders(db=db, now=utcnow(), settings=test_settings)
        assert not _rows(db, broken.id, "deadline_reminder")
        assert [r.channel for r in _rows(db, fine.id, "deadline_reminder")] == ["inbox"]

        db.get(PushPreference, broken.id).quiet_start = "22:00"  # repaired: the next run catches up
        db.flush()
        reminders.run_reminders(db=db, now=utcnow(), settings=test_settings)

    assert sorted(r.channel for r in _rows(db, broken.id, "deadline_reminder")) == ["inbox", "sms"]
    assert len(_rows(db, fine.id, "deadline_reminder")) == 1


# ---------------------------------------------------------------- quiet hours


def test_quiet_hours_delay_the_sms_until_they_end(db: Session, matcher, test_settings, receiver, webhook) -> None:  # type: ignore[no-untyped-def]
    gateway = SmsChannel(gateway_url=receiver.url("/hook"), secret="gw-secret", webhook=webhook)
    with time_machine.travel(at(2026, 11, 13, 9, 0), tick=False) as clock:
        policy = factories.make_policy(
            db, publish=True, apply_start_on=dt.date(2026, 11, 1), apply_end_on=dt.date(2026, 11, 20)
        )
        firm = _firm(
            db, channels=["inbox", "sms", "email"], phone="13912345678", quiet_start="07:00", quiet_end="10:30"
        )
        runs.list_policy(InSession(db), matcher, policy.id)
        reminders.run_reminders(db=db, now=utcnow(), settings=test_settings)
        rows = {r.channel: r for r in _rows(db, firm.id, "deadline_reminder")}
        assert rows["sms"].next_attempt_at == at(2026, 11, 13, 10, 30)
        assert rows["email"].next_attempt_at == at(2026, 11, 13, 9, 0)

        clock.move_to(at(2026, 11, 13, 10, 29))
        early = sender.send_due(db=db, channels={"sms": gateway}, settings=test_settings, now=utcnow())
        assert rows["sms"].status == "pending" and not receiver.bodies()
        assert early["sent"] == 0

        clock.move_to(at(2026, 11, 13, 10, 30))
        sender.send_due(db=db, channels={"sms": gateway}, settings=test_settings, now=utcnow())

    assert rows["sms"].status == "sent"
    (sms,) = receiver.bodies()
    assert sms["phone"] == "13912345678" and sms["text"].startswith("【惠企】申报截止提醒")
    assert sms_length(sms["text"]) <= 70 * sms["segments"]


# ---------------------------------------------------------------- policy changed


V1_RULES = {
    "all": [
        {"field": "region_code", "op": "within_region", "value": ["442000"]},
        {"field": "employees", "op": "gte", "value": 100},
    ]
}
V2_RULES = {
    "all": [
        {"field": "region_code", "op": "within_region", "value": ["442000"]},
        {"field": "employees", "op": "gte", "value": 50},
        {"field": "rd_expense", "op": "gte", "value": 100},
    ]
}


def test_policy_change_notices_each_kind_exactly_once(db: Session, matcher, test_settings) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel(at(2026, 11, 23, 10, 0), tick=False):
        stays = factories.make_enterprise(db, employees=200, rd_expense=150)
        drops = factories.make_enterprise(db, employees=120, rd_expense=50)
        joins = factories.make_enterprise(db, employees=60, rd_expense=150)
        deaf = factories.make_enterprise(db, employees=200, rd_expense=150)
        policy = factories.make_policy(db, publish=True, rules=V1_RULES, apply_end_on=dt.date(2026, 12, 23))
        fanout.fan_out_policy(db=db, matcher=matcher, policy_id=policy.id)
        matcher_feedback.record_feedback(db=db, enterprise_id=deaf.id, policy_id=policy.id, action="not_relevant")
        catalog_service.update_policy(
            db=db,
            policy_id=policy.id,
            policy_in=PolicyUpdate(rules=V2_RULES, apply_end_on=dt.date(2027, 1, 15), note="放宽人数并增加研发要求"),
            actor=None,
        )
        assert policy.version == 2

        counts = changes.policy_change_notices(
            db=db, policy_id=policy.id, from_version=1, now=utcnow(), settings=test_settings
        )
        again = changes.policy_change_notices(
            db=db, policy_id=policy.id, from_version=1, now=utcnow(), settings=test_settings
        )

    def notices(firm_id: int) -> list[tuple[str, int]]:
        return [(r.dedupe_key, r.policy_version) for r in _rows(db, firm_id, "policy_changed", "inbox")]

    assert notices(stays.id) == [("deadline_moved", 2)]
    assert notices(drops.id) == [("no_longer_eligible", 2)]
    assert notices(joins.id) == [("became_eligible", 2)]
    assert notices(deaf.id) == []
    assert counts["created"] == 3 and again["created"] == 0
    (moved,) = _rows(db, stays.id, "policy_changed")
    assert "申报截止日期由 2026年12月23日 调整为 2027年1月15日" in moved.body
    (lost,) = _rows(db, drops.id, "policy_changed")
    assert "暂不符合申报条件" in lost.body and "年研发费用" in lost.body
    (joined,) = _rows(db, joins.id, "policy_changed")
    assert joined.title.startswith("政策变更：贵企业现已符合") and "2027年1月15日" in joined.body
    # The edit queued the matcher's own re-match (its subscriber to PolicyRevised); once it runs,
    # the stored results follow the new version.
    assert db.scalar(text("SELECT count(*) FROM apscheduler_jobs WHERE id = 'once:matcher-rematch-changed'")) == 1
    runs.list_policy(InSession(db), matcher, policy.id)
    results = dict(
        db.execute(
            select(MatchResult.enterprise_id, MatchResult.status).where(
                MatchResult.policy_id == policy.id, MatchResult.policy_version == 2
            )
        ).all()
    )
    assert results.get(joins.id) == "eligible" and results.get(stays.id) == "eligible"
    assert results.get(drops.id) in (None, "ineligible")


def test_editing_a_published_policy_queues_one_change_job(client, db: Session, auth_headers) -> None:  # type: ignore[no-untyped-def]
    headers = auth_headers("curator")
    published = factories.make_policy(db, publish=True)
    draft = factories.make_policy(db)
    db.commit()

    def queued() -> list[str]:
        return list(db.scalars(text("SELECT id FROM apscheduler_jobs WHERE id LIKE 'once:policy-changed-%'")))

    assert (
        client.patch(f"/api/v1/policies/{draft.id}", headers=headers, json={"summary": "草稿修改。"}).status_code == 200
    )
    assert queued() == []
    first = client.patch(f"/api/v1/policies/{published.id}", headers=headers, json={"summary": "修订后的说明。"})
    second = client.patch(f"/api/v1/policies/{published.id}", headers=headers, json={"summary": "再次修订。"})
    same = client.patch(f"/api/v1/policies/{published.id}", headers=headers, json={"summary": "再次修订。"})

    assert first.status_code == second.status_code == same.status_code == 200
    assert second.json()["version"] == 3 and same.json()["version"] == 3
    assert queued() == [f"once:policy-changed-{published.id}"]  # one job covers both edits


# ---------------------------------------------------------------- profile freshness


RD_RULES = {
    "all": [
        {"field": "region_code", "op": "within_region", "value": ["442000"]},
        {"field": "rd_ratio", "op": "gte", "value": 3},
    ]
}


def test_profile_reminder_names_missing_fields_once_per_month(db: Session, matcher, test_settings) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel(at(2026, 3, 2, 10, 0), tick=False) as clock:
        old = factories.make_enterprise(db)  # complete, but not touched since March
        clock.move_to(at(2026, 11, 20, 10, 0))
        gaps = factories.make_enterprise(db, rd_expense=None)  # fresh, but the R&D policy cannot be judged
        fresh = factories.make_enterprise(db)
        policy = factories.make_policy(db, publish=True, rules=RD_RULES)
        runs.list_policy(InSession(db), matcher, policy.id)

        def run(*moment: int) -> None:
            clock.move_to(at(*moment))
            reminders.run_profile_reminders(db=db, now=utcnow(), settings=test_settings)

        run(2026, 11, 23, 8, 30)
        assert not _rows(db, old.id, "profile_reminder")
        run(2026, 11, 23, 9, 30)
        run(2026, 11, 23, 15, 0)
        run(2026, 11, 30, 9, 30)

        (stale,) = _rows(db, old.id, "profile_reminder")
        assert stale.dedupe_key == "2026-11" and stale.channel == "inbox"
        assert "2026年3月2日 以来未更新（已超过 6 个月）" in stale.body
        (missing,) = _rows(db, gaps.id, "profile_reminder")
        assert "1 项“可能符合”的政策" in missing.body and "年研发费用" in missing.body
        assert missing.payload["missing_fields"] == ["rd_expense"]
        assert not _rows(db, fresh.id, "profile_reminder")

        run(2026, 12, 1, 9, 30)
    assert [r.dedupe_key for r in _rows(db, old.id, "profile_reminder")] == ["2026-11", "2026-12"]


# ---------------------------------------------------------------- expiry and job registration


def test_expire_job_expires_policies_past_valid_to_on_by_local_date(db: Session, test_settings) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel(at(2026, 12, 1, 10, 0), tick=False) as clock:
        ending = factories.make_policy(db, publish=True, valid_to_on=dt.date(2026, 12, 31))
        lasting = factories.make_policy(db, publish=True, valid_to_on=dt.date(2027, 6, 30))

        clock.move_to(at(2026, 12, 31, 23, 50))
        assert ending.id not in catalog_jobs.expire_policies(db=db, now=utcnow(), settings=test_settings)
        clock.move_to(at(2027, 1, 1, 0, 10))  # still 2026-12-31 in UTC
        expired = catalog_jobs.expire_policies(db=db, now=utcnow(), settings=test_settings)

    assert ending.id in expired and lasting.id not in expired
    assert (ending.status, lasting.status) == (PolicyStatus.expired, PolicyStatus.published)


def test_jobs_are_registered(db: Session) -> None:
    from core import scheduler
    from push import jobs

    names = {spec.name: spec.func_ref for spec in scheduler.registry}

    assert {"catalog.jobs", "push.jobs"} <= set(scheduler.DOMAIN_JOB_MODULES)
    assert callable(catalog_jobs.expire_policies_job)
    assert names["push.digests"] == "push.jobs:digest_job"
    assert names["push.deadline_reminders"] == "push.jobs:deadline_reminder_job"
    assert names["push.profile_reminders"] == "push.jobs:profile_reminder_job"
    assert names["catalog.expire_policies"] == "catalog.jobs:expire_policies_job"
    job_id = scheduler.enqueue(jobs.POLICY_CHANGED_JOB, db=db, kwargs={"policy_id": 1, "from_version": 1}, job_id="x")
    assert job_id == "once:x"


def test_the_database_keeps_pushes_about_no_policy_unique_per_period(db: Session) -> None:
    """Digests and profile reminders have no policy; a partial unique index still makes them exactly once."""
    firm = factories.make_enterprise(db)
    row = {
        "enterprise_id": firm.id,
        "policy_id": None,
        "kind": "digest",
        "dedupe_key": "2026-11-23",
        "channel": "email",
        "title": "惠企政策日报",
        "body": "今日新匹配政策 2 条",
    }
    assert outbox.insert_deliveries(db=db, rows=[row]) == 1
    assert outbox.insert_deliveries(db=db, rows=[row]) == 0
    assert outbox.insert_deliveries(db=db, rows=[{**row, "dedupe_key": "2026-11-24"}]) == 1
    count = db.scalar(select(text("count(*)")).select_from(Delivery).where(Delivery.enterprise_id == firm.id))
    assert count == 2
