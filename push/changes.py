"""Policy changed: after an edit of a published policy, the firms are judged under the old and the new
rules and told what changed for them — became eligible, no longer eligible, deadline moved.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from catalog.models import Policy, PolicyStatus, PolicyVersion
from core.config import Settings
from core.scheduler import run_items
from matcher import batch as matcher_batch
from matcher import eligibility
from matcher import feedback as matcher_feedback
from matcher.eligibility import ELIGIBLE, INELIGIBLE, LIKELY, STATUS_CODES
from profiles.models import Enterprise
from push import outbox, preferences
from push.messages import POLICY_PATH, cn_date, link
from push.models import Delivery
from push.outbox import insert_deliveries
from push.rules import to_local
from push.scheduled import base_row, channel_rows

log = logging.getLogger(__name__)


# Change kinds of a policy_changed notice; each is its own row (dedupe key) per firm and version.
BECAME_ELIGIBLE = "became_eligible"
NO_LONGER_ELIGIBLE = "no_longer_eligible"
DEADLINE_MOVED = "deadline_moved"
CHANGE_KINDS = (BECAME_ELIGIBLE, NO_LONGER_ELIGIBLE, DEADLINE_MOVED)
_ELIGIBLE, _LIKELY, _INELIGIBLE = STATUS_CODES[ELIGIBLE], STATUS_CODES[LIKELY], STATUS_CODES[INELIGIBLE]
_STATUS_OF_CODE = {code: status for status, code in STATUS_CODES.items()}


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
        lines.append(f"申报截止：{cn_date(new_deadline)}。")
    elif kind == NO_LONGER_ELIGIBLE:
        title = f"政策变更：《{policy.title}》的申报条件已调整"
        verdict = "需补充信息后才能判断是否符合申报条件" if new_status == LIKELY else "暂不符合申报条件"
        lines = [head + f"按修订后的条件，贵企业{verdict}" + (f"：{reasons}。" if reasons else "。")]
        if policy.interpreter_name:
            lines.append(f"如有疑问，请联系政策解读人{policy.interpreter_name}（{policy.interpreter_contact or ''}）。")
    else:
        title = f"政策变更：《{policy.title}》申报截止日期调整"
        if old_deadline and new_deadline:
            moved = f"申报截止日期由 {cn_date(old_deadline)} 调整为 {cn_date(new_deadline)}。"
        elif new_deadline:
            moved = f"新设申报截止日期：{cn_date(new_deadline)}。"
        else:
            moved = f"取消了原定于 {cn_date(old_deadline)} 的申报截止日期，以申报指南为准。"
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
    today = to_local(now, settings).date()
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
    pushed = outbox.recent_push_counts(db, firm_ids, now)
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
    url = link(base_url, POLICY_PATH.format(id=policy.id))
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
        base = base_row(
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
        rows.extend(channel_rows(base=base, pref=pref, now=now, pushed_recently=pushed, settings=settings))
        counts[kind] += 1

    run_items(changes, build, name=f"push.policy_changed policy {policy.id}", key=lambda c: f"enterprise {c[1]} {c[2]}")
    counts["created"] = insert_deliveries(db=db, rows=rows)
    log.info("policy %s v%s (from v%s) change notices: %s", policy.id, policy.version, from_version, counts)
    return counts
