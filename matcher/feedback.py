"""Firms' word on policies (感兴趣 / 不相关 / 已申报): recorded here, read here by everyone.

Feedback is append-only; a firm's latest word on a policy is what counts. Every reader — the
recommendation list, push fan-out and digests, targeting, the funnel — goes through `_latest`,
the one query that decides "latest".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.orm import Session

from catalog.models import Policy, PolicyStatus, PolicyType
from core import events
from core.errors import FieldError, NotFound, ValidationFailed
from matcher import store
from matcher.models import Feedback
from matcher.ranking import Weights, urgency_score

FEEDBACK_ACTIONS = {"interested": "感兴趣", "not_relevant": "不相关", "applied": "已申报"}
# Per-firm score adjustments from its latest word on a policy; "not relevant" hides the policy.
FEEDBACK_ADJUSTMENTS = {"interested": 0.05, "applied": -0.15}
NOT_RELEVANT = "not_relevant"


def record_feedback(
    *,
    db: Session,
    enterprise_id: int,
    policy_id: int,
    action: str,
    source: str = "recommendation",
    delivery_id: int | None = None,
    user_id: int | None = None,
    weights: Weights | None = None,
    today: dt.date | None = None,
) -> Feedback:
    """Log a firm's feedback on a policy, with the ranking components it saw (urgency as of today).

    `delivery_id` names the push the feedback answers; the caller checks it is this firm's.
    """
    if action not in FEEDBACK_ACTIONS:
        raise ValidationFailed(errors=[FieldError("action", "取值应为 interested、not_relevant 或 applied", "invalid")])
    policy = db.get(Policy, policy_id)
    if policy is None or policy.status not in (PolicyStatus.published, PolicyStatus.expired):
        raise NotFound("政策不存在", code="catalog.policy_not_found")
    components: dict[str, Any] = {}
    stored = store.read(db, enterprise_id)
    seen = stored.items[stored.items["policy"] == policy_id] if stored is not None else []
    if len(seen):
        item = seen[0]
        rules, tags, semantic = (int(item[k]) / store.SCALE for k in ("rules", "tags", "semantic"))
        w = weights or Weights()
        components = {
            "status": "eligible" if int(item["status"]) == 2 else "likely",
            "rules": rules,
            "tags": tags,
            "semantic": semantic,
            # Urgency is added when a list is read, so it is computed here as the firm saw it today.
            "urgency": urgency_score(policy.apply_end_on, today or dt.date.today(), w)
            if policy.policy_type == PolicyType.application
            else 0.0,
            "score": round(w.rules * rules + w.tags * tags + w.semantic * semantic, 4),
        }
    row = Feedback(
        enterprise_id=enterprise_id,
        policy_id=policy_id,
        action=action,
        source=source,
        delivery_id=delivery_id,
        user_id=user_id,
        components=components,
    )
    db.add(row)
    db.flush()
    if action == "applied":
        # A firm that says it applied has an application (申报) from now on: the applications package opens it.
        events.emit(events.PolicyApplied(db=db, enterprise_id=enterprise_id, policy_id=policy_id, user_id=user_id))
    return row


def _latest(db: Session, *where: Any) -> dict[tuple[int, int], str]:
    """Return the latest action per (firm, policy) among the feedback rows matching `where`."""
    latest: dict[tuple[int, int], str] = {}
    rows = db.execute(
        select(Feedback.enterprise_id, Feedback.policy_id, Feedback.action)
        .where(*where)
        .order_by(Feedback.created_at, Feedback.id)
    )
    for enterprise_id, policy_id, action in rows:
        latest[(enterprise_id, policy_id)] = action
    return latest


def latest_for_firm(*, db: Session, enterprise_id: int, policy_ids: Iterable[int] | None = None) -> dict[int, str]:
    """Return a firm's latest action per policy (only the given policies, when given)."""
    if policy_ids is None:  # every page of recommendations reads this: a prepared statement
        rows = db.connection().execute(_FIRM_LATEST, {"enterprise_id": enterprise_id})
        return {policy_id: action for policy_id, action in rows}
    where = [Feedback.enterprise_id == enterprise_id]
    if policy_ids is not None:
        where.append(Feedback.policy_id.in_(sorted(set(policy_ids))))
    return {pid: action for (_, pid), action in _latest(db, *where).items()}


_FIRM_LATEST = (
    select(Feedback.policy_id, Feedback.action)
    .where(Feedback.enterprise_id == bindparam("enterprise_id"))
    .order_by(Feedback.created_at, Feedback.id)
)


def latest_for_firms(
    *,
    db: Session,
    enterprise_ids: Iterable[int] | None = None,
    enterprise_range: tuple[int, int] | None = None,
) -> dict[tuple[int, int], str]:
    """Return the latest action per (firm, policy) of some firms (given ids, or ids in a range) — for a batch chunk."""
    where = []
    if enterprise_ids is not None:
        where.append(Feedback.enterprise_id.in_(sorted(set(enterprise_ids))))
    if enterprise_range is not None:
        where.append(Feedback.enterprise_id.between(*enterprise_range))
    return _latest(db, *where)


def latest_for_policy(
    *, db: Session, policy_id: int, enterprise_range: tuple[int, int] | None = None
) -> dict[int, str]:
    """Return each firm's latest action on a policy (firms with ids in `enterprise_range`, when given)."""
    where = [Feedback.policy_id == policy_id]
    if enterprise_range is not None:
        where.append(Feedback.enterprise_id.between(*enterprise_range))
    return {eid: action for (eid, _), action in _latest(db, *where).items()}


def not_relevant_firms(*, db: Session, policy_id: int, enterprise_range: tuple[int, int] | None = None) -> set[int]:
    """Return the firms whose latest word on a policy is "not relevant"."""
    latest = latest_for_policy(db=db, policy_id=policy_id, enterprise_range=enterprise_range)
    return {eid for eid, action in latest.items() if action == NOT_RELEVANT}


def not_relevant_pairs(*, db: Session, pairs: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
    """Return the (firm, policy) pairs among `pairs` whose latest feedback is "not relevant"."""
    wanted = set(pairs)
    if not wanted:
        return set()
    latest = _latest(
        db,
        Feedback.enterprise_id.in_({e for e, _ in wanted}),
        Feedback.policy_id.in_({p for _, p in wanted}),
    )
    return {pair for pair, action in latest.items() if action == NOT_RELEVANT and pair in wanted}


def adjustments(latest: Mapping[int, str]) -> tuple[set[int], dict[int, float]]:
    """Turn a firm's latest feedback into hidden policies and score adjustments."""
    hidden = {pid for pid, action in latest.items() if action == NOT_RELEVANT}
    shifts = {pid: FEEDBACK_ADJUSTMENTS[a] for pid, a in latest.items() if a in FEEDBACK_ADJUSTMENTS}
    return hidden, shifts


def firms_with_action_query(*, policy_id: int, action: str) -> Select[tuple[int]]:
    """Return a query of the firms that ever gave `action` on a policy (for funnels counting distinct firms)."""
    return select(Feedback.enterprise_id).where(Feedback.policy_id == policy_id, Feedback.action == action)


def has_applied(*, db: Session, enterprise_id: int, policy_id: int) -> bool:
    """Tell whether a firm ever marked a policy 已申报."""
    q = firms_with_action_query(policy_id=policy_id, action="applied").where(Feedback.enterprise_id == enterprise_id)
    return db.scalar(q.limit(1)) is not None


def action_counts(*, db: Session, policy_ids: Iterable[int], action: str) -> dict[int, int]:
    """Return policy → number of distinct firms that ever gave `action` on it (funnels over many policies)."""
    ids = sorted(set(policy_ids))
    if not ids:
        return {}
    rows = db.execute(
        select(Feedback.policy_id, func.count(func.distinct(Feedback.enterprise_id)))
        .where(Feedback.policy_id.in_(ids), Feedback.action == action)
        .group_by(Feedback.policy_id)
    )
    return {int(pid): int(n) for pid, n in rows}
