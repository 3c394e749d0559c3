"""Digests: a firm on a daily or weekly frequency does not get each new match beyond its inbox at once;
fan-out writes those rows as pending and `push.sender.send_due` holds them back (`held_for_digest`).
From `push_digest_time` (weekly: on `push_weekly_digest_weekday`) the digest folds them into one
message per channel, keyed by its period ("2026-11-23", "2026-W48").
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session, aliased

from catalog.models import Policy, PolicyStatus
from core.config import Settings
from core.db import Database
from core.scheduler import ItemsReport
from matcher import feedback as matcher_feedback
from matcher.eligibility import ELIGIBLE
from push import outbox, preferences
from push.messages import POLICY_PATH, RECOMMENDATIONS_PATH, cn_date, link
from push.models import Delivery, PushPreference
from push.outbox import insert_deliveries
from push.rules import digest_period, to_local
from push.scheduled import already_decided, base_row, channel_rows, lock_firm, other_channels, run_scheduled

DIGEST_LABELS = {"daily": "每日汇总", "weekly": "每周汇总"}


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
            deadline = f"申报截止：{cn_date(policy.apply_end_on)}（还剩 {left} 天）" if left > 0 else "今天截止申报"
        else:
            deadline = "申报截止：长期受理"
        lines.append(f"{i}. 《{policy.title}》——{verdict}，{deadline}")
        lines.append(f"   详情：{link(base_url, POLICY_PATH.format(id=policy.id))}")
    lines.append("如某项政策与贵企业无关，可在惠企中标记“不相关”，此后不再推送。")
    return title, "\n".join(lines)


def send_digest(*, db: Session, item: DigestItem, now: dt.datetime, settings: Settings, base_url: str = "") -> int:
    """Fold a firm's held new matches into one digest per channel for the period; return rows written.

    Held rows are marked skipped with the reason (folded into the digest, or why a policy was
    left out: withdrawn, closed, marked not relevant). Nothing is written when no policy is left.
    """
    eid = item.enterprise_id
    firm_name = lock_firm(db, eid)
    if firm_name is None or already_decided(db, eid, "digest", item.period):
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
    today = to_local(now, settings).date()
    pids = sorted({r.policy_id for r in held if r.policy_id is not None})
    policies = {
        p.id: p
        for p in db.execute(
            select(Policy.id, Policy.title, Policy.status, Policy.apply_end_on).where(Policy.id.in_(pids))
        )
    }
    latest = matcher_feedback.latest_for_firm(db=db, enterprise_id=eid, policy_ids=pids)
    channels = other_channels(pref)
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
                "url": link(base_url, POLICY_PATH.format(id=p.id)),
                "match_status": status,
            }
            for p, status in ordered
        ],
    }
    base = base_row(
        enterprise_id=eid,
        policy_id=None,
        policy_version=0,
        kind="digest",
        dedupe_key=item.period,
        title=title,
        body=body,
        url=link(base_url, RECOMMENDATIONS_PATH),
        payload=payload,
        now=now,
    )
    # The folded rows were just marked skipped, so the digest counts as one push against the cap.
    pushed = outbox.recent_push_counts(db, [eid], now)
    rows = channel_rows(base=base, pref=pref, now=now, pushed_recently=pushed, settings=settings, inbox=False)
    return insert_deliveries(db=db, rows=rows)


def run_digests(
    *,
    now: dt.datetime,
    settings: Settings,
    db: Session | None = None,
    database: Database | None = None,
    base_url: str = "",
) -> ItemsReport:
    """Write every due digest, one firm at a time (a failing firm is logged and retried next run)."""
    return run_scheduled(
        digest_candidates,
        send_digest,
        name="push.digests",
        key=lambda item: f"enterprise {item.enterprise_id} {item.period}",
        now=now,
        settings=settings,
        db=db,
        database=database,
        base_url=base_url,
    )
