"""Reminders: deadline reminders (`push_reminder_days` days before a published, open policy's
deadline, to the firms matched eligible or likely, unless their latest word on it is applied / not
relevant) and profile freshness reminders (firms whose profile is older than
`profile_freshness_months`, or that lack the fields keeping "likely" policies undecided, at most once
a month).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from catalog.fields import label_of
from catalog.models import Policy, PolicyStatus
from core.config import Settings
from core.db import Database
from core.scheduler import ItemsReport, run_items
from matcher import batch as matcher_batch
from matcher import eligibility
from matcher import feedback as matcher_feedback
from matcher.eligibility import ELIGIBLE, LIKELY
from matcher.lists import ListPending
from profiles.derived import FIELD_LABELS
from profiles.models import Enterprise
from push import outbox, preferences, rules
from push.messages import POLICY_PATH, PROFILE_PATH, cn_date, link
from push.models import Delivery, PushPreference
from push.outbox import insert_deliveries
from push.rules import local_tz, months_before, to_local, window_open
from push.scheduled import already_decided, base_row, channel_rows, lock_firm, run_scheduled

log = logging.getLogger(__name__)

# Latest feedback that stops deadline reminders: the firm has applied, or does not care.
NO_REMINDER_FEEDBACK = ("applied", "not_relevant")


@dataclass(frozen=True)
class ReminderItem:
    """A published, open policy whose deadline reminder `days` before `deadline` is due."""

    policy_id: int
    days: int
    deadline: dt.date

    @property
    def dedupe_key(self) -> str:
        """Return the outbox key: the reminder day and the deadline it counts down to."""
        return f"{self.days}d:{self.deadline.isoformat()}"


def reminder_candidates(*, db: Session, now: dt.datetime, settings: Settings) -> list[ReminderItem]:
    """Return the policies whose deadline reminder is due today.

    With reminder days 7 and 1, a policy 7…2 days from its deadline is due for the 7-day reminder
    and 1…0 days for the 1-day one; each is written once, so a day the job missed is caught up
    by the next run and a firm never gets the 7-day reminder after the 1-day one.
    """
    days = settings.reminder_days
    if not days or not window_open(now, settings):
        return []
    today = to_local(now, settings).date()
    rows = db.execute(
        select(Policy.id, Policy.apply_end_on)
        .where(
            Policy.status == PolicyStatus.published,
            Policy.apply_end_on >= today,
            Policy.apply_end_on <= today + dt.timedelta(days=max(days)),
            or_(Policy.apply_start_on.is_(None), Policy.apply_start_on <= today),
        )
        .order_by(Policy.apply_end_on, Policy.id)
    )
    items = []
    for pid, deadline in rows:
        left = (deadline - today).days
        items.append(ReminderItem(pid, min(d for d in days if d >= left), deadline))
    return items


def _reminder_text(policy: Policy, status: str, today: dt.date) -> tuple[str, str]:
    left = (policy.apply_end_on - today).days if policy.apply_end_on else 0
    when = "今天截止" if left <= 0 else f"还剩 {left} 天"
    title = f"申报截止提醒：《{policy.title}》{when}"
    verdict = "符合" if status == ELIGIBLE else "可能符合（部分条件有待核实）"
    lines = [
        f"贵企业{verdict}《{policy.title}》的申报条件，申报将于 {cn_date(policy.apply_end_on)} 截止（{when}）。",
        "尚未申报的请尽快准备材料；已申报的可在惠企中标记“已申报”，此后不再提醒。",
    ]
    if policy.apply_url:
        lines.append(f"申报入口：{policy.apply_url}")
    if policy.interpreter_name:
        lines.append(f"政策解读人：{policy.interpreter_name}（{policy.interpreter_contact or ''}）")
    return title, "\n".join(lines)


def send_reminders(*, db: Session, item: ReminderItem, now: dt.datetime, settings: Settings, base_url: str = "") -> int:
    """Write a policy's deadline reminder for each matched firm not yet reminded; return rows written."""
    policy = db.get(Policy, item.policy_id)
    if policy is None or policy.status != PolicyStatus.published or policy.apply_end_on != item.deadline:
        return 0
    today = to_local(now, settings).date()
    try:
        matched = matcher_batch.matched_firms(db=db, policy_id=policy.id, statuses=[ELIGIBLE, LIKELY])
    except ListPending:
        # Its list is being written (or was made stale by a full run): never remind from half a list. The
        # policy stays due, so the next run (the job runs through the day) reminds its firms.
        log.info("deadline reminders of policy %s wait for its list", policy.id)
        return 0
    reminded = set(
        db.scalars(
            select(Delivery.enterprise_id).where(
                Delivery.policy_id == policy.id,
                Delivery.kind == "deadline_reminder",
                Delivery.dedupe_key == item.dedupe_key,
                Delivery.channel == "inbox",
            )
        )
    )
    latest = matcher_feedback.latest_for_policy(db=db, policy_id=policy.id)
    targets = [
        (eid, status)
        for eid, status in sorted(matched.items())
        if eid not in reminded and latest.get(eid) not in NO_REMINDER_FEEDBACK
    ]
    if not targets:
        return 0
    prefs = preferences.preferences_for(db, [eid for eid, _ in targets])
    pushed = outbox.recent_push_counts(db, [eid for eid, _ in targets], now)
    url = link(base_url, POLICY_PATH.format(id=policy.id))
    rows: list[dict[str, Any]] = []

    def build(target: tuple[int, str]) -> None:
        eid, status = target
        pref = prefs.get(eid)
        if pref is None or pref.unsubscribed_all:
            return
        title, body = _reminder_text(policy, status, today)
        payload = {
            "policy_id": policy.id,
            "policy_title": policy.title,
            "deadline": item.deadline.isoformat(),
            "days_before": item.days,
            "enterprise_id": eid,
            "match_status": status,
        }
        base = base_row(
            enterprise_id=eid,
            policy_id=policy.id,
            policy_version=0,  # a reminder is about the deadline, not a version: an edit does not repeat it
            kind="deadline_reminder",
            dedupe_key=item.dedupe_key,
            title=title,
            body=body,
            url=url,
            payload=payload,
            now=now,
        )
        # Built in full before it is kept, so a firm that fails leaves no partial rows.
        rows.extend(channel_rows(base=base, pref=pref, now=now, pushed_recently=pushed, settings=settings))

    # One firm's bad data (say, corrupt quiet hours) is logged and retried next run; the rest go on.
    run_items(targets, build, name=f"push.deadline_reminders policy {policy.id}", key=lambda t: f"enterprise {t[0]}")
    return insert_deliveries(db=db, rows=rows)


def run_reminders(
    *,
    now: dt.datetime,
    settings: Settings,
    db: Session | None = None,
    database: Database | None = None,
    base_url: str = "",
) -> ItemsReport:
    """Write every due deadline reminder, one policy at a time."""
    return run_scheduled(
        reminder_candidates,
        send_reminders,
        name="push.deadline_reminders",
        key=lambda item: f"policy {item.policy_id} {item.dedupe_key}",
        now=now,
        settings=settings,
        db=db,
        database=database,
        base_url=base_url,
    )


@dataclass(frozen=True)
class ProfileItem:
    """A firm that may need a profile reminder this period."""

    enterprise_id: int
    period: str


def profile_period(now: dt.datetime, settings: Settings) -> str:
    """Return the profile reminder's period: the local month, "2026-11"."""
    local = to_local(now, settings)
    return f"{local.year}-{local.month:02d}"


def profile_candidates(*, db: Session, now: dt.datetime, settings: Settings) -> list[ProfileItem]:
    """Return firms with a stale profile or undecided ("likely") open policies, not yet reminded this month."""
    if not window_open(now, settings):
        return []
    period = profile_period(now, settings)
    today = to_local(now, settings).date()
    cutoff = months_before(now, settings.profile_freshness_months)
    stale = set(db.scalars(select(Enterprise.id).where(Enterprise.profile_updated_at < cutoff)))
    undecided = matcher_batch.firms_with_open_likely(db=db, today=today)
    ids = sorted(stale | undecided)
    reminded: set[int] = set()
    unsubscribed: set[int] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        reminded.update(
            db.scalars(
                select(Delivery.enterprise_id).where(
                    Delivery.enterprise_id.in_(chunk),
                    Delivery.policy_id.is_(None),
                    Delivery.kind == "profile_reminder",
                    Delivery.dedupe_key == period,
                )
            )
        )
        unsubscribed.update(
            db.scalars(
                select(PushPreference.enterprise_id).where(
                    PushPreference.enterprise_id.in_(chunk), PushPreference.unsubscribed_all.is_(True)
                )
            )
        )
    return [ProfileItem(eid, period) for eid in ids if eid not in reminded and eid not in unsubscribed]


def blocking_fields(*, db: Session, enterprise: Enterprise, today: dt.date) -> tuple[Counter[str], int]:
    """Return the profile fields that keep a firm's open "likely" policies undecided (field → number of
    policies), and how many such policies there are, judged on its current profile."""
    tags = matcher_batch.firm_tags(db=db, enterprise_id=enterprise.id)
    facts = eligibility.profile_facts(enterprise, today, tags=tags)
    fields: Counter[str] = Counter()
    undecided = 0
    policy_ids = matcher_batch.open_likely_policy_ids(db=db, enterprise_id=enterprise.id, today=today)
    for policy in db.scalars(select(Policy).where(Policy.id.in_(policy_ids)).order_by(Policy.id)):
        verdict = eligibility.evaluate(policy.rules, facts, today=today)
        if verdict.status == LIKELY and verdict.fields_to_fill:
            undecided += 1
            fields.update(verdict.fields_to_fill)
    return fields, undecided


def _field_label(name: str) -> str:
    return FIELD_LABELS.get(name) or label_of(name)


def _profile_text(
    *, stale_since: dt.date | None, months: int, fields: Counter[str], undecided: int, gaps: Iterable[str], url: str
) -> tuple[str, str]:
    title = "请更新企业信息，获取更准确的政策匹配"
    lines = []
    if stale_since is not None:
        lines.append(
            f"贵企业的画像自 {cn_date(stale_since)} 以来未更新（已超过 {months} 个月）。"
            "营业收入、从业人数、研发费用、资质等信息的变化会影响政策匹配结果，请及时核对更新。"
        )
    if fields:
        named = "、".join(_field_label(name) for name, _ in fields.most_common())
        lines.append(f"补充以下信息后，系统即可判断 {undecided} 项“可能符合”的政策是否符合申报条件：{named}。")
    else:
        missing = [_field_label(name) for name in gaps]
        if missing:
            lines.append(f"目前尚未填写：{'、'.join(missing)}。")
    lines.append(f"更新入口：{url}")
    return title, "\n".join(lines)


def send_profile_reminder(
    *, db: Session, item: ProfileItem, now: dt.datetime, settings: Settings, base_url: str = ""
) -> int:
    """Remind one firm to update its profile, naming the missing fields; at most once per period."""
    eid = item.enterprise_id
    if lock_firm(db, eid) is None or already_decided(db, eid, "profile_reminder", item.period):
        return 0
    firm = db.scalar(select(Enterprise).where(Enterprise.id == eid).options(selectinload(Enterprise.qualifications)))
    if firm is None:
        return 0
    pref = preferences.get_preferences(db=db, enterprise_id=eid)
    if pref.unsubscribed_all:
        return 0
    today = to_local(now, settings).date()
    months = settings.profile_freshness_months
    updated = rules.aware(firm.profile_updated_at)
    stale = updated < months_before(now, months)
    fields, undecided = blocking_fields(db=db, enterprise=firm, today=today)
    if not stale and not fields:
        return 0
    url = link(base_url, PROFILE_PATH)
    title, body = _profile_text(
        stale_since=updated.astimezone(local_tz(settings)).date() if stale else None,
        months=months,
        fields=fields,
        undecided=undecided,
        gaps=firm.missing_fields or [],
        url=url,
    )
    payload = {
        "enterprise_id": eid,
        "period": item.period,
        "stale": stale,
        "profile_updated_at": updated.isoformat(),
        "missing_fields": [name for name, _ in fields.most_common()] or list(firm.missing_fields or []),
        "undecided_policies": undecided,
    }
    base = base_row(
        enterprise_id=eid,
        policy_id=None,
        policy_version=0,
        kind="profile_reminder",
        dedupe_key=item.period,
        title=title,
        body=body,
        url=url,
        payload=payload,
        now=now,
    )
    pushed = outbox.recent_push_counts(db, [eid], now)
    return insert_deliveries(
        db=db, rows=channel_rows(base=base, pref=pref, now=now, pushed_recently=pushed, settings=settings)
    )


def run_profile_reminders(
    *,
    now: dt.datetime,
    settings: Settings,
    db: Session | None = None,
    database: Database | None = None,
    base_url: str = "",
) -> ItemsReport:
    """Write this period's profile reminders, one firm at a time."""
    return run_scheduled(
        profile_candidates,
        send_profile_reminder,
        name="push.profile_reminders",
        key=lambda item: f"enterprise {item.enterprise_id} {item.period}",
        now=now,
        settings=settings,
        db=db,
        database=database,
        base_url=base_url,
    )
