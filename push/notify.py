"""Scheduled and event-driven notifications beyond the instant fan-out.

- Digests: a firm on a daily or weekly frequency does not get each new match beyond its inbox at
  once; fan-out writes those rows as pending and `push.sender.send_due` holds them back
  (`held_for_digest`). From `push_digest_time` (weekly: on `push_weekly_digest_weekday`) the
  digest folds them into one message per channel, keyed by its period ("2026-11-23", "2026-W48").
- Deadline reminders: `push_reminder_days` days before a published, open policy's deadline, to
  the firms matched eligible or likely, unless their latest word on it is applied / not relevant.
- Policy changed: after an edit of a published policy, the firms are judged under the old and
  the new rules and told what changed for them — became eligible, no longer eligible, deadline moved.
- Profile freshness: firms whose profile is older than `profile_freshness_months`, or that lack the
  fields keeping "likely" policies undecided, are asked to update it, at most once a month.

Every function takes the clock (`now`, aware) and the settings, so tests decide the time. Each
message is an outbox row written with the decision; repeats are impossible by key: policy rows by
the outbox's unique key, rows about no policy (digests, profile reminders) by a check made while
holding the firm's row lock. Items are processed independently with `core.scheduler.run_items`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import exists, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased, selectinload

from catalog.fields import label_of
from catalog.models import Policy, PolicyStatus, PolicyVersion
from core.config import Settings
from core.db import Database
from core.scheduler import ItemsReport, run_items
from matcher import batch as matcher_batch
from matcher import eligibility
from matcher import feedback as matcher_feedback
from matcher.eligibility import ELIGIBLE, INELIGIBLE, LIKELY, STATUS_CODES
from profiles.derived import FIELD_LABELS
from profiles.models import Enterprise
from push import preferences, rules
from push.models import Delivery, PushPreference

log = logging.getLogger(__name__)

# Site paths the messages link to (made absolute with HUIQI_PUBLIC_BASE_URL).
POLICY_PATH = "/policies/{id}"
RECOMMENDATIONS_PATH = "/recommendations"
PROFILE_PATH = "/profile"

DIGEST_LABELS = {"daily": "每日汇总", "weekly": "每周汇总"}
# Change kinds of a policy_changed notice; each is its own row (dedupe key) per firm and version.
BECAME_ELIGIBLE = "became_eligible"
NO_LONGER_ELIGIBLE = "no_longer_eligible"
DEADLINE_MOVED = "deadline_moved"
CHANGE_KINDS = (BECAME_ELIGIBLE, NO_LONGER_ELIGIBLE, DEADLINE_MOVED)
# Latest feedback that stops deadline reminders: the firm has applied, or does not care.
NO_REMINDER_FEEDBACK = ("applied", "not_relevant")

_ELIGIBLE, _LIKELY, _INELIGIBLE = STATUS_CODES[ELIGIBLE], STATUS_CODES[LIKELY], STATUS_CODES[INELIGIBLE]
_STATUS_OF_CODE = {code: status for status, code in STATUS_CODES.items()}

T = TypeVar("T")


# ---------------------------------------------------------------- clock


def local_tz(settings: Settings) -> ZoneInfo:
    """Return the time zone scheduled pushes follow (HUIQI_TIMEZONE)."""
    return ZoneInfo(getattr(settings, "timezone", "Asia/Shanghai") or "Asia/Shanghai")


def _local(now: dt.datetime, settings: Settings) -> dt.datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(local_tz(settings))


def send_time(settings: Settings) -> dt.time:
    """Return the local time of day from which scheduled pushes go out (HUIQI_PUSH_DIGEST_TIME)."""
    hours, minutes = settings.push_digest_time.split(":")
    return dt.time(int(hours), int(minutes))


def window_open(now: dt.datetime, settings: Settings) -> bool:
    """Tell whether today's scheduled pushes may go out: local time has reached the send time."""
    return _local(now, settings).time() >= send_time(settings)


def digest_period(now: dt.datetime, frequency: str, settings: Settings) -> str | None:
    """Return the period whose digest is due at `now` ("2026-11-23" daily, "2026-W48" weekly), or None.

    A daily digest is due from the send time each day; a weekly one from the send time on the
    configured weekday until the end of that ISO week.
    """
    local = _local(now, settings)
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


def _cn_date(day: dt.date | None) -> str:
    return f"{day.year}年{day.month}月{day.day}日" if day else "长期受理"


def _link(base_url: str, path: str) -> str:
    return f"{base_url.rstrip('/')}{path}"


# ---------------------------------------------------------------- shared building blocks


def _other_channels(pref: PushPreference) -> list[str]:
    return [c for c in pref.channels or [] if c in preferences.CHANNELS and c != "inbox"]


def _base_row(
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


def _channel_rows(
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
    others = _other_channels(pref)
    if not others:
        return rows
    eid = int(base["enterprise_id"])
    over_cap = pushed_recently.get(eid, 0) >= pref.weekly_cap
    if not over_cap:
        pushed_recently[eid] = pushed_recently.get(eid, 0) + 1
    for channel in others:
        if over_cap:
            rows.append(
                dict(base)
                | {
                    "channel": channel,
                    "status": "skipped",
                    "next_attempt_at": now,
                    "sent_at": None,
                    "last_error": rules.OVER_CAP,
                }
            )
            continue
        due = now
        if channel == "sms":
            due = rules.quiet_until(now, quiet_start=pref.quiet_start, quiet_end=pref.quiet_end, tz=local_tz(settings))
        rows.append(dict(base) | {"channel": channel, "status": "pending", "next_attempt_at": due, "sent_at": None})
    return rows


INSERT_CHUNK = 1000


def _insert(db: Session, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert outbox rows, skipping those whose unique key exists; return how many were new.

    One cached statement run as executemany (batched into multi-row INSERTs by the driver layer),
    so thousands of reminders cost a few round trips and no per-batch SQL compilation.
    """
    if not rows:
        return 0
    dialect = db.get_bind().dialect.name
    if dialect == "postgresql":
        insert = postgresql.insert
    elif dialect == "sqlite":
        insert = sqlite.insert
    else:
        raise NotImplementedError(f"the outbox needs INSERT … ON CONFLICT, not available for {dialect}")
    table = Delivery.__table__
    stmt = insert(table).on_conflict_do_nothing().returning(table.c.id)
    created = 0
    for start in range(0, len(rows), INSERT_CHUNK):
        created += len(db.execute(stmt, [dict(r) for r in rows[start : start + INSERT_CHUNK]]).all())
    return created


def _lock_firm(db: Session, enterprise_id: int) -> str | None:
    """Hold the firm's row until the transaction ends, so two runs never decide for it at once.

    Returns the firm's name, or None when it no longer exists.
    """
    q = select(Enterprise.name).where(Enterprise.id == enterprise_id)
    if db.get_bind().dialect.name == "postgresql":
        q = q.with_for_update()
    # SQLite has one writer at a time: a concurrent writer's commit makes this transaction's write fail.
    return db.scalar(q)


def _already(db: Session, enterprise_id: int, kind: str, dedupe_key: str) -> bool:
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


def _process(
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


def _candidates(
    select_items: Callable[..., list[T]], *, db: Session | None, database: Database | None, **kw: Any
) -> list[T]:
    if database is not None:
        with database.session() as session:
            return select_items(db=session, **kw)
    if db is None:
        raise ValueError("give db or database")
    return select_items(db=db, **kw)


# ---------------------------------------------------------------- digests


@dataclass(frozen=True)
class DigestItem:
    """A firm whose digest for a period is due and not yet written."""

    enterprise_id: int
    frequency: str
    period: str


def digest_candidates(*, db: Session, now: dt.datetime, settings: Settings) -> list[DigestItem]:
    """Return the firms with new matches held for a digest that is due now and not yet written."""
    out: list[DigestItem] = []
    for frequency in preferences.DIGEST_FREQUENCIES:
        period = digest_period(now, frequency, settings)
        if period is None:
            continue
        done = aliased(Delivery)
        rows = db.scalars(
            select(Delivery.enterprise_id)
            .join(PushPreference, PushPreference.enterprise_id == Delivery.enterprise_id)
            .where(
                Delivery.status == "pending",
                Delivery.kind == "new_match",
                Delivery.channel != "inbox",
                PushPreference.frequency == frequency,
                ~exists().where(
                    done.enterprise_id == Delivery.enterprise_id,
                    done.policy_id.is_(None),
                    done.kind == "digest",
                    done.dedupe_key == period,
                ),
            )
            .distinct()
        )
        out.extend(DigestItem(eid, frequency, period) for eid in sorted(set(rows)))
    return out


def _digest_text(
    firm_name: str, frequency: str, period: str, listed: list[tuple[Any, str]], today: dt.date, base_url: str
) -> tuple[str, str]:
    if frequency == "daily":
        day = dt.date.fromisoformat(period)
        when = f"{day.month}月{day.day}日"
    else:
        year, week = period.split("-W")
        when = f"{year}年第{int(week)}周"
    title = f"政策汇总（{when}）：{len(listed)} 项新政策与贵企业匹配"
    lines = [
        f"{firm_name}，您好：" if firm_name else "您好：",
        f"以下 {len(listed)} 项惠企政策与贵企业匹配（{when}{DIGEST_LABELS[frequency]}）：",
    ]
    for i, (policy, status) in enumerate(listed, 1):
        verdict = "符合申报条件" if status == ELIGIBLE else "可能符合（部分条件有待核实）"
        if policy.apply_end_on:
            left = (policy.apply_end_on - today).days
            deadline = f"申报截止：{_cn_date(policy.apply_end_on)}（还剩 {left} 天）" if left > 0 else "今天截止申报"
        else:
            deadline = "申报截止：长期受理"
        lines.append(f"{i}. 《{policy.title}》——{verdict}，{deadline}")
        lines.append(f"   详情：{_link(base_url, POLICY_PATH.format(id=policy.id))}")
    lines.append("如某项政策与贵企业无关，可在惠企中标记“不相关”，此后不再推送。")
    return title, "\n".join(lines)


def send_digest(*, db: Session, item: DigestItem, now: dt.datetime, settings: Settings, base_url: str = "") -> int:
    """Fold a firm's held new matches into one digest per channel for the period; return rows written.

    Held rows are marked skipped with the reason (folded into the digest, or why a policy was
    left out: withdrawn, closed, marked not relevant). Nothing is written when no policy is left.
    """
    eid = item.enterprise_id
    firm_name = _lock_firm(db, eid)
    if firm_name is None or _already(db, eid, "digest", item.period):
        return 0
    pref = preferences.get_preferences(db=db, enterprise_id=eid)
    if pref.frequency != item.frequency:
        return 0  # changed since selection: instant firms get their rows from send_due, others next run
    held = list(
        db.scalars(
            select(Delivery)
            .where(
                Delivery.enterprise_id == eid,
                Delivery.status == "pending",
                Delivery.kind == "new_match",
                Delivery.channel != "inbox",
            )
            .order_by(Delivery.created_at, Delivery.id)
        )
    )
    if not held:
        return 0
    today = _local(now, settings).date()
    pids = sorted({r.policy_id for r in held if r.policy_id is not None})
    policies = {
        p.id: p
        for p in db.execute(
            select(Policy.id, Policy.title, Policy.status, Policy.apply_end_on).where(Policy.id.in_(pids))
        )
    }
    latest = matcher_feedback.latest_for_firm(db=db, enterprise_id=eid, policy_ids=pids)
    channels = _other_channels(pref)
    label = DIGEST_LABELS[item.frequency]
    listed: dict[int, tuple[Any, str]] = {}  # policy id → (id, title, status, deadline row; match status)
    for row in held:
        policy = policies.get(row.policy_id) if row.policy_id is not None else None
        if pref.unsubscribed_all or not channels:
            reason = "企业已退订或取消了该推送方式"
        elif policy is None or policy.status != PolicyStatus.published:
            reason = "政策已不在发布状态，未列入汇总"
        elif latest.get(policy.id) == "not_relevant":
            reason = "企业已反馈该政策不相关"
        elif policy.apply_end_on is not None and policy.apply_end_on < today:
            reason = "申报已截止，未列入汇总"
        else:
            reason = f"已并入{label}（{item.period}）"
            listed.setdefault(policy.id, (policy, (row.payload or {}).get("match_status") or ELIGIBLE))
        row.status, row.last_error = "skipped", reason
    db.flush()
    if not listed:
        return 0  # an empty digest is not sent
    ordered = sorted(listed.values(), key=lambda pair: (pair[0].apply_end_on or dt.date.max, pair[0].id))
    title, body = _digest_text(firm_name, item.frequency, item.period, ordered, today, base_url)
    payload = {
        "enterprise_id": eid,
        "frequency": item.frequency,
        "period": item.period,
        "policies": [
            {
                "policy_id": p.id,
                "policy_title": p.title,
                "deadline": p.apply_end_on.isoformat() if p.apply_end_on else None,
                "url": _link(base_url, POLICY_PATH.format(id=p.id)),
                "match_status": status,
            }
            for p, status in ordered
        ],
    }
    base = _base_row(
        enterprise_id=eid,
        policy_id=None,
        policy_version=0,
        kind="digest",
        dedupe_key=item.period,
        title=title,
        body=body,
        url=_link(base_url, RECOMMENDATIONS_PATH),
        payload=payload,
        now=now,
    )
    # The folded rows were just marked skipped, so the digest counts as one push against the cap.
    pushed = rules.recent_push_counts(db, [eid], now - dt.timedelta(days=7))
    rows = _channel_rows(base=base, pref=pref, now=now, pushed_recently=pushed, settings=settings, inbox=False)
    return _insert(db, rows)


def run_digests(
    *,
    now: dt.datetime,
    settings: Settings,
    db: Session | None = None,
    database: Database | None = None,
    base_url: str = "",
) -> ItemsReport:
    """Write every due digest, one firm at a time (a failing firm is logged and retried next run)."""
    items = _candidates(digest_candidates, db=db, database=database, now=now, settings=settings)
    return _process(
        items,
        lambda s, item: send_digest(db=s, item=item, now=now, settings=settings, base_url=base_url),
        name="push.digests",
        key=lambda item: f"enterprise {item.enterprise_id} {item.period}",
        db=db,
        database=database,
    )


# ---------------------------------------------------------------- deadline reminders


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
    today = _local(now, settings).date()
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
        f"贵企业{verdict}《{policy.title}》的申报条件，申报将于 {_cn_date(policy.apply_end_on)} 截止（{when}）。",
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
    today = _local(now, settings).date()
    matched = matcher_batch.matched_firms(db=db, policy_id=policy.id, statuses=[ELIGIBLE, LIKELY])
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
    pushed = rules.recent_push_counts(db, [eid for eid, _ in targets], now - dt.timedelta(days=7))
    url = _link(base_url, POLICY_PATH.format(id=policy.id))
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
        base = _base_row(
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
        rows.extend(_channel_rows(base=base, pref=pref, now=now, pushed_recently=pushed, settings=settings))

    # One firm's bad data (say, corrupt quiet hours) is logged and retried next run; the rest go on.
    run_items(targets, build, name=f"push.deadline_reminders policy {policy.id}", key=lambda t: f"enterprise {t[0]}")
    return _insert(db, rows)


def run_reminders(
    *,
    now: dt.datetime,
    settings: Settings,
    db: Session | None = None,
    database: Database | None = None,
    base_url: str = "",
) -> ItemsReport:
    """Write every due deadline reminder, one policy at a time."""
    items = _candidates(reminder_candidates, db=db, database=database, now=now, settings=settings)
    return _process(
        items,
        lambda s, item: send_reminders(db=s, item=item, now=now, settings=settings, base_url=base_url),
        name="push.deadline_reminders",
        key=lambda item: f"policy {item.policy_id} {item.dedupe_key}",
        db=db,
        database=database,
    )


# ---------------------------------------------------------------- policy changed


def _change_text(
    kind: str,
    policy: Policy,
    *,
    old_status: str,
    new_status: str,
    old_deadline: dt.date | None,
    new_deadline: dt.date | None,
    reasons: str,
) -> tuple[str, str]:
    head = f"《{policy.title}》已修订（第 {policy.version} 版）。"
    if kind == BECAME_ELIGIBLE:
        title = f"政策变更：贵企业现已符合《{policy.title}》的申报条件"
        lines = [head + "按修订后的条件，贵企业符合申报条件。"]
        if old_status == LIKELY:
            lines.append("此前为“可能符合”，现已确认符合。")
        lines.append(f"申报截止：{_cn_date(new_deadline)}。")
    elif kind == NO_LONGER_ELIGIBLE:
        title = f"政策变更：《{policy.title}》的申报条件已调整"
        verdict = "需补充信息后才能判断是否符合申报条件" if new_status == LIKELY else "暂不符合申报条件"
        lines = [head + f"按修订后的条件，贵企业{verdict}" + (f"：{reasons}。" if reasons else "。")]
        if policy.interpreter_name:
            lines.append(f"如有疑问，请联系政策解读人{policy.interpreter_name}（{policy.interpreter_contact or ''}）。")
    else:
        title = f"政策变更：《{policy.title}》申报截止日期调整"
        if old_deadline and new_deadline:
            moved = f"申报截止日期由 {_cn_date(old_deadline)} 调整为 {_cn_date(new_deadline)}。"
        elif new_deadline:
            moved = f"新设申报截止日期：{_cn_date(new_deadline)}。"
        else:
            moved = f"取消了原定于 {_cn_date(old_deadline)} 的申报截止日期，以申报指南为准。"
        lines = [head + moved]
    return title, "\n".join(lines)


def _snapshot(db: Session, policy_id: int, version: int) -> dict[str, Any] | None:
    return db.scalar(
        select(PolicyVersion.snapshot).where(PolicyVersion.policy_id == policy_id, PolicyVersion.version == version)
    )


def _day(value: Any) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


def policy_change_notices(
    *,
    db: Session,
    policy_id: int,
    from_version: int,
    now: dt.datetime,
    settings: Settings,
    base_url: str = "",
) -> dict[str, Any]:
    """Re-judge every firm under a published policy's previous and current version and tell the firms
    what changed for them; return counts.

    Both versions are judged against the firms' current profiles, so a notice reports the policy's
    change only. Became eligible: eligible now and not before. No longer eligible: eligible before
    (or likely and following the policy's category or keyword) and now ineligible, or eligible
    before and now only likely. Deadline moved: pushed-to before and after (eligible, or likely
    and following it) and the deadline differs. One row per (firm, policy, version, change kind)
    and channel, so a rerun writes nothing new. Firms whose latest word is "not relevant" and
    firms that unsubscribed are left out.

    Counts: per change kind, the firms it was decided for (a rerun decides the same); `created`,
    the outbox rows actually written (0 on a rerun).
    """
    counts: dict[str, Any] = {"policy_id": policy_id, "created": 0, **{k: 0 for k in CHANGE_KINDS}}
    policy = db.scalar(
        select(Policy).where(Policy.id == policy_id).options(selectinload(Policy.categories), selectinload(Policy.tags))
    )
    if policy is None or policy.status != PolicyStatus.published or policy.version <= from_version:
        log.info("policy %s change notices skipped: not published or unchanged since v%s", policy_id, from_version)
        return counts
    before = _snapshot(db, policy.id, from_version)
    after = _snapshot(db, policy.id, policy.version)
    if before is None or after is None:
        log.warning("policy %s: version %s or %s missing; no change notices", policy_id, from_version, policy.version)
        return counts
    counts["policy_version"] = policy.version
    today = _local(now, settings).date()
    # Both versions judged on the same firms' facts; the matcher re-matches the policy on its own
    # (it subscribes to PolicyRevised), so stored results follow the current version.
    ids, old = matcher_batch.judge_all(db=db, rules=before.get("rules"), today=today)
    ids_new, new = matcher_batch.judge_all(db=db, rules=after.get("rules"), today=today)
    if not len(ids) or not np.array_equal(ids, ids_new):
        return counts
    subscribers = preferences.policy_subscribers(db, policy)
    following = np.isin(ids, np.fromiter(subscribers, dtype=ids.dtype, count=len(subscribers)))
    told_before = (old == _ELIGIBLE) | ((old == _LIKELY) & following)
    told_after = (new == _ELIGIBLE) | ((new == _LIKELY) & following)
    old_deadline, new_deadline = _day(before.get("apply_end_on")), _day(after.get("apply_end_on"))
    became = (new == _ELIGIBLE) & (old != _ELIGIBLE)
    lost = (told_before & (new == _INELIGIBLE)) | ((old == _ELIGIBLE) & (new == _LIKELY))
    moved = told_before & told_after & ~became & ~lost if old_deadline != new_deadline else np.zeros_like(became)
    changes: list[tuple[int, int, str]] = []  # (row in ctx, firm, kind)
    for mask, kind in ((became, BECAME_ELIGIBLE), (lost, NO_LONGER_ELIGIBLE), (moved, DEADLINE_MOVED)):
        changes.extend((int(i), int(ids[i]), kind) for i in np.nonzero(mask)[0])
    if not changes:
        log.info("policy %s v%s: no firm's outlook changed", policy.id, policy.version)
        return counts
    hidden = matcher_feedback.not_relevant_firms(db=db, policy_id=policy.id)
    # A firm already told about this version as a new match (fan-out) needs no "became eligible" too.
    announced = set(
        db.scalars(
            select(Delivery.enterprise_id).where(
                Delivery.policy_id == policy.id,
                Delivery.kind == "new_match",
                Delivery.policy_version == policy.version,
                Delivery.channel == "inbox",
            )
        )
    )
    changes = [c for c in changes if c[1] not in hidden and not (c[2] == BECAME_ELIGIBLE and c[1] in announced)]
    firm_ids = sorted({eid for _, eid, _ in changes})
    prefs = preferences.preferences_for(db, firm_ids)
    pushed = rules.recent_push_counts(db, firm_ids, now - dt.timedelta(days=7))
    # Reasons for those who lost eligibility, in the engine's words, from their full profiles.
    losers = sorted({eid for _, eid, kind in changes if kind == NO_LONGER_ELIGIBLE})
    firms: dict[int, Enterprise] = {}
    for start in range(0, len(losers), 500):
        firms.update(
            {
                f.id: f
                for f in db.scalars(
                    select(Enterprise)
                    .where(Enterprise.id.in_(losers[start : start + 500]))
                    .options(selectinload(Enterprise.qualifications))
                )
            }
        )
    url = _link(base_url, POLICY_PATH.format(id=policy.id))
    rows: list[dict[str, Any]] = []

    def build(change: tuple[int, int, str]) -> None:
        i, eid, kind = change
        pref = prefs.get(eid)
        if pref is None or pref.unsubscribed_all:
            return
        old_status, new_status = _STATUS_OF_CODE[int(old[i])], _STATUS_OF_CODE[int(new[i])]
        reasons = ""
        if kind == NO_LONGER_ELIGIBLE and eid in firms:
            facts = eligibility.profile_facts(firms[eid], today, tags=matcher_batch.firm_tags(db=db, enterprise_id=eid))
            reasons = eligibility.evaluate(after.get("rules"), facts, today=today).summary
        title, body = _change_text(
            kind,
            policy,
            old_status=old_status,
            new_status=new_status,
            old_deadline=old_deadline,
            new_deadline=new_deadline,
            reasons=reasons,
        )
        payload = {
            "policy_id": policy.id,
            "policy_title": policy.title,
            "policy_version": policy.version,
            "change": kind,
            "enterprise_id": eid,
            "old_status": old_status,
            "new_status": new_status,
            "match_status": new_status,
            "old_deadline": old_deadline.isoformat() if old_deadline else None,
            "deadline": new_deadline.isoformat() if new_deadline else None,
            # Heard of it through a subscription: its unsubscribe link stops that subscription only.
            "subscription_id": subscribers.get(eid) if new_status != ELIGIBLE and old_status != ELIGIBLE else None,
        }
        base = _base_row(
            enterprise_id=eid,
            policy_id=policy.id,
            policy_version=policy.version,
            kind="policy_changed",
            dedupe_key=kind,
            title=title,
            body=body,
            url=url,
            payload=payload,
            now=now,
        )
        rows.extend(_channel_rows(base=base, pref=pref, now=now, pushed_recently=pushed, settings=settings))
        counts[kind] += 1

    run_items(changes, build, name=f"push.policy_changed policy {policy.id}", key=lambda c: f"enterprise {c[1]} {c[2]}")
    counts["created"] = _insert(db, rows)
    log.info("policy %s v%s (from v%s) change notices: %s", policy.id, policy.version, from_version, counts)
    return counts


# ---------------------------------------------------------------- profile freshness


@dataclass(frozen=True)
class ProfileItem:
    """A firm that may need a profile reminder this period."""

    enterprise_id: int
    period: str


def profile_period(now: dt.datetime, settings: Settings) -> str:
    """Return the profile reminder's period: the local month, "2026-11"."""
    local = _local(now, settings)
    return f"{local.year}-{local.month:02d}"


def profile_candidates(*, db: Session, now: dt.datetime, settings: Settings) -> list[ProfileItem]:
    """Return firms with a stale profile or undecided ("likely") open policies, not yet reminded this month."""
    if not window_open(now, settings):
        return []
    period = profile_period(now, settings)
    today = _local(now, settings).date()
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
            f"贵企业的画像自 {_cn_date(stale_since)} 以来未更新（已超过 {months} 个月）。"
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
    if _lock_firm(db, eid) is None or _already(db, eid, "profile_reminder", item.period):
        return 0
    firm = db.scalar(select(Enterprise).where(Enterprise.id == eid).options(selectinload(Enterprise.qualifications)))
    if firm is None:
        return 0
    pref = preferences.get_preferences(db=db, enterprise_id=eid)
    if pref.unsubscribed_all:
        return 0
    today = _local(now, settings).date()
    months = settings.profile_freshness_months
    updated = rules.aware(firm.profile_updated_at)
    stale = updated < months_before(now, months)
    fields, undecided = blocking_fields(db=db, enterprise=firm, today=today)
    if not stale and not fields:
        return 0
    url = _link(base_url, PROFILE_PATH)
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
    base = _base_row(
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
    pushed = rules.recent_push_counts(db, [eid], now - dt.timedelta(days=7))
    return _insert(db, _channel_rows(base=base, pref=pref, now=now, pushed_recently=pushed, settings=settings))


def run_profile_reminders(
    *,
    now: dt.datetime,
    settings: Settings,
    db: Session | None = None,
    database: Database | None = None,
    base_url: str = "",
) -> ItemsReport:
    """Write this period's profile reminders, one firm at a time."""
    items = _candidates(profile_candidates, db=db, database=database, now=now, settings=settings)
    return _process(
        items,
        lambda s, item: send_profile_reminder(db=s, item=item, now=now, settings=settings, base_url=base_url),
        name="push.profile_reminders",
        key=lambda item: f"enterprise {item.enterprise_id} {item.period}",
        db=db,
        database=database,
    )
