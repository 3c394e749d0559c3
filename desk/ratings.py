"""Policy ratings (政企互动): a firm rates a policy it has seen or applied to; staff read the comments.

A firm rates a policy 1–5 stars with an optional comment, once per policy (rating again edits its
rating). It may rate only a policy it has engaged with — `may_rate` is the one rule, so when
applications replace the 已申报 mark only that function changes. Everyone sees a policy's average and
count; the comments are for staff (curators, supervisors, admins, and desk officers for their own
department's policies) and feed the hot topics (desk.topics). A firm sees only its own comment.
Comments are hostile text: capped at COMMENT_MAX characters, NUL refused, escaped where shown.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from auth.models import Role
from auth.service import Principal
from catalog.models import Policy, PolicyStatus
from core.db import utcnow
from core.errors import FieldError, NotFound, PermissionDenied, ValidationFailed
from desk.models import PolicyRating
from matcher import feedback as matcher_feedback
from profiles.models import Enterprise
from push import events as push_events

STARS = (1, 2, 3, 4, 5)
COMMENT_MAX = 500
STAR_LABELS = {1: "很不满意", 2: "不满意", 3: "一般", 4: "满意", 5: "非常满意"}
# Staff who read every policy's comments; desk officers read those of their department's policies.
COMMENT_READERS = (Role.curator, Role.admin, Role.supervisor, Role.desk)


def may_rate(*, db: Session, enterprise_id: int, policy_id: int) -> bool:
    """Tell whether a firm may rate a policy: it viewed the policy (page or push) or applied to it."""
    return push_events.has_seen(
        db=db, enterprise_id=enterprise_id, policy_id=policy_id
    ) or matcher_feedback.has_applied(db=db, enterprise_id=enterprise_id, policy_id=policy_id)


def _visible_policy(db: Session, policy_id: int) -> Policy:
    policy = db.get(Policy, policy_id)
    if policy is None or policy.status not in (PolicyStatus.published, PolicyStatus.expired):
        raise NotFound("政策不存在", code="catalog.policy_not_found")
    return policy


def clean_comment(comment: str | None) -> str | None:
    """Return a comment stripped (None when empty); refuse NUL and text past COMMENT_MAX characters."""
    text = (comment or "").strip()
    if "\x00" in text:
        raise ValidationFailed(errors=[FieldError("comment", "评价内容含有不允许的字符（NUL）", "nul")])
    if len(text) > COMMENT_MAX:
        raise ValidationFailed(errors=[FieldError("comment", f"评价内容不能超过 {COMMENT_MAX} 字", "too_long")])
    return text or None


def rate_policy(
    *, db: Session, enterprise_id: int, policy_id: int, stars: int, comment: str | None, user_id: int | None = None
) -> PolicyRating:
    """Record (or edit) a firm's rating of a policy it viewed or applied to."""
    _visible_policy(db, policy_id)
    if stars not in STARS:
        raise ValidationFailed(errors=[FieldError("stars", "评分应为 1–5 之间的整数", "invalid")])
    text = clean_comment(comment)
    if not may_rate(db=db, enterprise_id=enterprise_id, policy_id=policy_id):
        raise PermissionDenied("查看或申报过该政策后才能评价", code="desk.rating_not_allowed")
    row = own_rating(db=db, enterprise_id=enterprise_id, policy_id=policy_id)
    now = utcnow()
    if row is None:
        row = PolicyRating(enterprise_id=enterprise_id, policy_id=policy_id, created_at=now)
        db.add(row)
    row.stars, row.comment, row.user_id, row.updated_at = stars, text, user_id, now
    db.flush()
    return row


def own_rating(*, db: Session, enterprise_id: int, policy_id: int) -> PolicyRating | None:
    """Return a firm's rating of a policy, if it has rated it."""
    return db.scalar(
        select(PolicyRating).where(PolicyRating.enterprise_id == enterprise_id, PolicyRating.policy_id == policy_id)
    )


@dataclass(frozen=True)
class Summary:
    """A policy's ratings in figures: how many, the average, and how many gave each number of stars."""

    policy_id: int
    count: int
    average: float | None
    distribution: dict[int, int]

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as JSON-ready data (star counts keyed "1" … "5")."""
        return {
            "policy_id": self.policy_id,
            "count": self.count,
            "average": self.average,
            "distribution": {str(k): v for k, v in self.distribution.items()},
        }


def summaries(*, db: Session, policy_ids: Iterable[int]) -> dict[int, Summary]:
    """Return the rating summary of each policy (policies nobody rated have count 0)."""
    wanted = sorted(set(policy_ids))
    counts: dict[int, dict[int, int]] = {pid: dict.fromkeys(STARS, 0) for pid in wanted}
    if wanted:
        rows = db.execute(
            select(PolicyRating.policy_id, PolicyRating.stars, func.count())
            .where(PolicyRating.policy_id.in_(wanted))
            .group_by(PolicyRating.policy_id, PolicyRating.stars)
        )
        for pid, stars, n in rows:
            counts[pid][int(stars)] = int(n)
    out = {}
    for pid, dist in counts.items():
        total = sum(dist.values())
        average = round(sum(k * v for k, v in dist.items()) / total, 2) if total else None
        out[pid] = Summary(policy_id=pid, count=total, average=average, distribution=dist)
    return out


def summary(*, db: Session, policy_id: int) -> Summary:
    """Return a published policy's rating summary (anyone may see it)."""
    _visible_policy(db, policy_id)
    return summaries(db=db, policy_ids=[policy_id])[policy_id]


def check_comment_reader(*, db: Session, actor: Principal, policy_id: int) -> Policy:
    """Return the policy when the caller may read its comments; a desk officer only their department's."""
    policy = db.get(Policy, policy_id)
    if policy is None:
        raise NotFound("政策不存在", code="catalog.policy_not_found")
    if actor.role not in COMMENT_READERS:
        raise PermissionDenied()
    departments = {policy.issuing_department_id, policy.handling_department_id}
    if actor.role == Role.desk and (actor.department_id is None or actor.department_id not in departments):
        raise NotFound("政策不存在", code="catalog.policy_not_found")
    return policy


def list_ratings(
    *, db: Session, actor: Principal, policy_id: int, offset: int = 0, limit: int = 50, with_comment: bool = False
) -> tuple[list[dict[str, Any]], int]:
    """Return a policy's ratings with firm names and comments, newest first, and the total (staff only)."""
    check_comment_reader(db=db, actor=actor, policy_id=policy_id)
    q = select(PolicyRating, Enterprise.name).join(Enterprise, Enterprise.id == PolicyRating.enterprise_id)
    q = q.where(PolicyRating.policy_id == policy_id)
    if with_comment:
        q = q.where(PolicyRating.comment.is_not(None))
    total = db.scalar(select(func.count()).select_from(q.subquery())) or 0
    rows = db.execute(q.order_by(PolicyRating.updated_at.desc(), PolicyRating.id.desc()).offset(offset).limit(limit))
    items = [
        {
            "id": r.id,
            "policy_id": r.policy_id,
            "enterprise_id": r.enterprise_id,
            "enterprise_name": name,
            "stars": r.stars,
            "stars_label": STAR_LABELS[r.stars],
            "comment": r.comment,
            "created_at": r.created_at,
            "updated_at": r.updated_at,
        }
        for r, name in rows
    ]
    return items, total


def comments_between(
    *, db: Session, start: dt.datetime, end: dt.datetime, department_id: int | None = None, limit: int = 3000
) -> list[dict[str, Any]]:
    """Return rating comments written or edited in [start, end), newest first (a department's policies only, if given)."""
    q = (
        select(PolicyRating.id, PolicyRating.policy_id, PolicyRating.stars, PolicyRating.comment, Policy.title)
        .join(Policy, Policy.id == PolicyRating.policy_id)
        .where(
            PolicyRating.comment.is_not(None),
            PolicyRating.updated_at >= start,
            PolicyRating.updated_at < end,
        )
    )
    if department_id is not None:
        q = q.where(or_(Policy.issuing_department_id == department_id, Policy.handling_department_id == department_id))
    rows = db.execute(q.order_by(PolicyRating.updated_at.desc(), PolicyRating.id.desc()).limit(limit))
    return [
        {"rating_id": rid, "policy_id": pid, "stars": stars, "comment": comment, "policy_title": title}
        for rid, pid, stars, comment, title in rows
    ]
