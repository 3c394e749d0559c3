"""Figures of applications and payouts: per policy and per department — applications, approval rate,
amount paid, median days from publication to payout, eligible firms that never applied — and the
funnel recommended → viewed → interested → applied → paid.

Grouped SQL per question; the matcher's stored results are read through its faces (``matcher.batch``),
the funnel's views through push's (``push.stats``). Desk officers see their own department only.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from applications import lifecycle
from applications.lifecycle import APPROVED, S
from applications.models import Application, ExemptEntry
from auth.models import Role
from auth.service import Principal
from catalog.models import Department, Policy, PolicyStatus, PolicyType
from core.errors import FieldError, NotFound, ValidationFailed
from matcher import batch as matcher_batch
from matcher import feedback as matcher_feedback
from matcher.eligibility import ELIGIBLE, LIKELY
from matcher.lists import ListPending
from push import stats as push_stats
from push import targeting
from push.schemas import ManualPushIn, TargetFilters

FUNNEL_STAGES = (
    ("recommended", "系统推荐"),
    ("viewed", "查看政策"),
    ("interested", "感兴趣"),
    ("applied", "提交申报"),
    ("paid", "获得兑现"),
)


@dataclass
class PolicyFigures:
    policy_id: int
    title: str
    policy_type: str
    department_id: int
    department_name: str
    applications: int = 0
    approved: int = 0
    rejected: int = 0
    paid: int = 0  # applications paid + 免申即享 firms paid
    amount_paid: float = 0.0
    days_to_payout: list[int] = field(default_factory=list)
    eligible: int = 0
    never_applied: int = 0
    list_pending: bool = False  # its list of eligible firms is not complete: eligible / never applied not counted

    @property
    def approval_rate(self) -> float | None:
        decided = self.approved + self.rejected
        return round(self.approved / decided, 4) if decided else None

    @property
    def median_days(self) -> float | None:
        return float(statistics.median(self.days_to_payout)) if self.days_to_payout else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "policy_id": self.policy_id,
            "title": self.title,
            "policy_type": self.policy_type,
            "department_id": self.department_id,
            "department_name": self.department_name,
            "applications": self.applications,
            "approved": self.approved,
            "rejected": self.rejected,
            "approval_rate": self.approval_rate,
            "paid": self.paid,
            "amount_paid": round(self.amount_paid, 2),
            "median_days_to_payout": self.median_days,
            "eligible": self.eligible,
            "never_applied": self.never_applied,
            "list_pending": self.list_pending,
        }


def scope_of(actor: Principal, department_id: int | None) -> int | None:
    """Desk officers see their own department; others the department they pick, or everything."""
    if actor.role == Role.desk:
        return actor.department_id if actor.department_id is not None else -1
    return department_id


def _policies(db: Session, department_id: int | None) -> list[Policy]:
    q = select(Policy).where(
        Policy.status.in_([PolicyStatus.published, PolicyStatus.expired]),
        Policy.policy_type.in_([PolicyType.application, PolicyType.exempt]),
    )
    if department_id is not None:
        q = q.where(lifecycle.department_column() == department_id)
    return list(db.scalars(q.order_by(Policy.id)))


def _in_period(column: Any, start: dt.date | None, end: dt.date | None) -> list[Any]:
    out = []
    if start is not None:
        out.append(column >= start)
    if end is not None:
        out.append(column <= end)
    return out


def policy_figures(
    *, db: Session, department_id: int | None = None, start: dt.date | None = None, end: dt.date | None = None
) -> list[PolicyFigures]:
    """Return each application / 免申即享 policy's figures (applications in the period, payouts in the period)."""
    policies = _policies(db, department_id)
    if not policies:
        return []
    ids = [p.id for p in policies]
    depts = {d.id: d.name for d in db.scalars(select(Department))}
    out: dict[int, PolicyFigures] = {}
    for p in policies:
        dept_id = lifecycle.policy_department_id(p)
        out[p.id] = PolicyFigures(p.id, p.title, str(p.policy_type), dept_id, depts.get(dept_id, ""))
    published = {p.id: p.published_at.date() if p.published_at else None for p in policies}
    live = {p.id for p in policies if p.status == PolicyStatus.published}

    # Applications made in the period (withdrawn ones are not counted), and how they ended.
    since = dt.datetime.combine(start, dt.time.min, tzinfo=dt.UTC) if start else None
    until = dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC) if end else None
    where = [Application.policy_id.in_(ids), Application.status != S.withdrawn]
    if since is not None:
        where.append(Application.submitted_at >= since)
    if until is not None:
        where.append(Application.submitted_at < until)
    rows = db.execute(
        select(
            Application.policy_id,
            func.count(),
            func.sum(case((Application.status.in_([s.value for s in APPROVED]), 1), else_=0)),
            func.sum(case((Application.status == S.rejected, 1), else_=0)),
        )
        .where(*where)
        .group_by(Application.policy_id)
    )
    for pid, n, approved, rejected in rows:
        f = out[pid]
        f.applications, f.approved, f.rejected = int(n), int(approved or 0), int(rejected or 0)

    # Payouts dated in the period: applications and 免申即享 firms.
    paid_apps = select(Application.policy_id, Application.amount, Application.paid_on).where(
        Application.policy_id.in_(ids), Application.status == S.paid, *_in_period(Application.paid_on, start, end)
    )
    paid_exempt = select(ExemptEntry.policy_id, ExemptEntry.amount, ExemptEntry.paid_on).where(
        ExemptEntry.policy_id.in_(ids), ExemptEntry.status == "paid", *_in_period(ExemptEntry.paid_on, start, end)
    )
    for q in (paid_apps, paid_exempt):
        for pid, amount, paid_on in db.execute(q):
            f = out[pid]
            f.paid += 1
            f.amount_paid += float(amount or 0)
            if paid_on is not None and published.get(pid) is not None:
                f.days_to_payout.append(max(0, (paid_on - published[pid]).days))

    # Eligible firms (the matcher's stored lists) and those of them that never applied; a list not
    # complete (being written, or stale after a full run) is reported pending, not counted as empty.
    eligible = matcher_batch.match_counts(db=db, policy_ids=ids, statuses=[ELIGIBLE])
    for pid, f in out.items():
        count = eligible.get(pid)
        f.list_pending = count is None and pid in live  # no list is kept for an expired policy
        f.eligible = count or 0
        if f.policy_type == PolicyType.application and f.eligible:
            f.never_applied = db.scalar(select(func.count()).select_from(_never_applied_query(pid).subquery())) or 0
    return list(out.values())


def _never_applied_query(policy_id: int) -> Any:
    firms = matcher_batch.matched_firms_query(policy_id=policy_id, statuses=[ELIGIBLE]).subquery()
    firm = firms.c[0]
    applied = select(Application.enterprise_id).where(Application.policy_id == policy_id)
    return select(firm).where(firm.not_in(applied))


def never_applied_ids(*, db: Session, policy_id: int, limit: int | None = None) -> list[int]:
    """Return the firms the matcher stores as eligible for a policy that never applied for it.

    Raises `matcher.lists.ListPending` while the policy's list is not complete (the query then selects
    nobody: an empty answer would read as "every eligible firm applied")."""
    if not matcher_batch.policy_listed(db=db, policy_id=policy_id):
        raise ListPending
    q = _never_applied_query(policy_id)
    col = q.selected_columns[0]
    q = q.order_by(col)
    if limit is not None:
        q = q.limit(limit)
    return [int(x) for x in db.scalars(q)]


def department_figures(rows: list[PolicyFigures]) -> list[dict[str, Any]]:
    """Sum policy figures per department (the median over all the department's payouts)."""
    by: dict[int, list[PolicyFigures]] = defaultdict(list)
    for f in rows:
        by[f.department_id].append(f)
    out = []
    for dept_id, items in by.items():
        total = PolicyFigures(0, "", "", dept_id, items[0].department_name)
        for f in items:
            total.applications += f.applications
            total.approved += f.approved
            total.rejected += f.rejected
            total.paid += f.paid
            total.amount_paid += f.amount_paid
            total.days_to_payout += f.days_to_payout
            total.eligible += f.eligible
            total.never_applied += f.never_applied
        d = total.as_dict()
        d.pop("policy_id"), d.pop("title"), d.pop("policy_type")
        d["policies"] = len(items)
        out.append(d)
    out.sort(key=lambda d: (-d["amount_paid"], -d["applications"], d["department_name"]))
    return out


def funnel(*, db: Session, policy_ids: list[int]) -> list[dict[str, Any]]:
    """Return the funnel over application policies in (firm, policy) pairs: recommended (stored eligible or
    likely) → viewed (policy page) → interested (感兴趣) → applied (申报, withdrawn not counted) → paid (已兑现)."""
    ids = sorted(set(policy_ids))
    recommended = {  # policies whose list is not complete are left out (the dashboard says how many)
        pid: n for pid, n in matcher_batch.match_counts(db=db, policy_ids=ids, statuses=[ELIGIBLE, LIKELY]).items() if n
    }
    viewed = push_stats.seen_counts(db=db, policy_ids=ids, kind="viewed")
    interested = matcher_feedback.action_counts(db=db, policy_ids=ids, action="interested")
    counts: dict[str, int] = {
        "recommended": sum(recommended.values()),
        "viewed": sum(viewed.values()),
        "interested": sum(interested.values()),
        "applied": 0,
        "paid": 0,
    }
    if ids:
        row = db.execute(
            select(func.count(), func.sum(case((Application.status == S.paid, 1), else_=0))).where(
                Application.policy_id.in_(ids), Application.status != S.withdrawn
            )
        ).one()
        counts["applied"], counts["paid"] = int(row[0] or 0), int(row[1] or 0)
    first = counts["recommended"]
    return [
        {"stage": k, "label": label, "count": counts[k], "rate": round(counts[k] / first, 4) if first else None}
        for k, label in FUNNEL_STAGES
    ]


def figures(
    *,
    db: Session,
    actor: Principal,
    department_id: int | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> dict[str, Any]:
    """Everything the dashboard and the report show: totals, per policy, per department, the funnel."""
    scope = scope_of(actor, department_id)
    rows = policy_figures(db=db, department_id=scope, start=start, end=end)
    days = [d for f in rows for d in f.days_to_payout]
    decided = sum(f.approved + f.rejected for f in rows)
    totals = {
        "applications": sum(f.applications for f in rows),
        "approved": sum(f.approved for f in rows),
        "rejected": sum(f.rejected for f in rows),
        "approval_rate": round(sum(f.approved for f in rows) / decided, 4) if decided else None,
        "paid": sum(f.paid for f in rows),
        "amount_paid": round(sum(f.amount_paid for f in rows), 2),
        "median_days_to_payout": float(statistics.median(days)) if days else None,
        "never_applied": sum(f.never_applied for f in rows),
        "lists_pending": sum(1 for f in rows if f.list_pending),
    }
    by_policy = sorted(
        (f.as_dict() for f in rows if f.applications or f.paid or f.never_applied),
        key=lambda d: (-d["amount_paid"], -d["applications"], d["policy_id"]),
    )
    return {
        "scope": scope,
        "period": {"start": start.isoformat() if start else None, "end": end.isoformat() if end else None},
        "totals": totals,
        "policies": by_policy,
        "departments": department_figures(rows),
        "funnel": funnel(db=db, policy_ids=[f.policy_id for f in rows if f.policy_type == PolicyType.application]),
    }


def push_never_applied(
    *,
    db: Session,
    actor: Principal,
    policy_id: int,
    channels: list[str],
    message: str | None,
    settings: Any,
    base_url: str = "",
) -> dict[str, Any]:
    """Send a policy to its eligible firms that never applied, through the staff's targeted push."""
    policy = db.get(Policy, policy_id)
    if policy is None or policy.status != PolicyStatus.published:
        raise NotFound("政策不存在或未发布", code="catalog.policy_not_found")
    lifecycle.require_manager(policy, actor)
    ids = never_applied_ids(db=db, policy_id=policy.id, limit=targeting.MAX_ENTERPRISE_IDS)
    if not ids:
        raise ValidationFailed(
            "没有尚未申报的符合条件企业",
            code="applications.nobody_to_push",
            errors=[FieldError("policy_id", "该政策没有尚未申报的符合条件企业", "empty")],
        )
    push_in = ManualPushIn(
        policy_id=policy.id,
        filters=TargetFilters(enterprise_ids=ids),
        channels=channels,
        message=message,
        note="提醒尚未申报的符合条件企业",
    )
    row, counts = targeting.send(
        db=db, push_in=push_in, created_by_id=actor.user_id, base_url=base_url, settings=settings
    )
    return {"manual_push_id": row.id, "enterprises": len(ids), "created": counts["created"]}
