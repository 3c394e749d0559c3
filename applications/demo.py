"""Demo applications and 免申即享 payouts, so the pages and the dashboard's charts have something to show.

Applications in every status (with their histories dated over the last weeks, each change told to the
firm's inbox at its time), and for a few 免申即享 policies a roster with confirmed, excluded and paid
firms. The worker has not matched anything when the demo loads, so the demo's rosters take the firms the
rules engine judges eligible now (``matcher.batch.judge_all``, the engine the worker's lists come from);
staff freeze later rosters from the stored lists. Policies given a history are dated as published before
it. Idempotent: nothing is added when applications exist.
"""

from __future__ import annotations

import datetime as dt
import random

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from applications import exempt, lifecycle
from applications.lifecycle import ACTION_FOR_STATUS
from applications.models import Application
from auth.models import Role, User
from auth.service import Principal, principal_for_user
from catalog.models import Policy, PolicyStatus, PolicyType
from core.db import utcnow
from matcher import batch as matcher_batch
from matcher.eligibility import STATUS_CODES
from profiles.models import Enterprise

SEED = 20261206
POLICIES = 14
EXEMPT_POLICIES = 3
# The path each demo application takes (its last status is where it stays).
PATHS: list[list[str]] = [
    [],
    ["accepted"],
    ["accepted", "reviewing"],
    ["accepted", "reviewing", "publicized"],
    ["accepted", "reviewing", "publicized", "paid"],
    ["accepted", "reviewing", "publicized", "paid"],
    ["accepted", "reviewing", "rejected"],
    ["withdrawn"],
]
REJECTIONS = [
    "研发投入占比未达到申报条件",
    "申报材料不完整，逾期未补正",
    "上年度存在失信记录",
    "同一项目已获其他市级资金支持",
]
EXCLUSIONS = ["企业已迁出本市", "当年度存在重大安全生产事故", "已享受同类扶持政策"]


def _officer(db: Session, department_id: int) -> Principal | None:
    user = db.scalar(
        select(User).where(User.role == Role.desk, User.department_id == department_id).order_by(User.id).limit(1)
    )
    return principal_for_user(user) if user is not None else None


def _firm_principal(db: Session, enterprise_id: int) -> Principal | None:
    user = db.scalar(select(User).where(User.enterprise_id == enterprise_id).order_by(User.id).limit(1))
    return principal_for_user(user) if user is not None else None


def _backdate(policy: Policy, when: dt.datetime) -> None:
    if policy.published_at is None or policy.published_at > when:
        policy.published_at = when


def load_demo_applications(*, db: Session, now: dt.datetime | None = None) -> dict[str, int]:
    """Add the demo applications and payouts (none when applications exist); return the counts."""
    if db.scalar(select(func.count()).select_from(Application)):
        return {"applications": 0, "exempt_paid": 0}
    now = now or utcnow()
    rng = random.Random(SEED)
    firm_ids = list(db.scalars(select(Enterprise.id).order_by(Enterprise.id)))
    if not firm_ids:
        return {"applications": 0, "exempt_paid": 0}
    demo_firm = db.scalar(select(User.enterprise_id).where(User.username == "firm"))
    policies = list(
        db.scalars(
            select(Policy)
            .where(Policy.status == PolicyStatus.published, Policy.policy_type == PolicyType.application)
            .order_by(Policy.id)
            .limit(POLICIES)
        )
    )
    added = 0
    for k, policy in enumerate(policies):
        officer = _officer(db, lifecycle.policy_department_id(policy))
        start = now - dt.timedelta(days=rng.randint(45, 80))
        _backdate(policy, start - dt.timedelta(days=rng.randint(5, 20)))
        chosen = rng.sample(firm_ids, min(len(firm_ids), rng.randint(8, 16)))
        if demo_firm is not None and k < 3 and demo_firm not in chosen:
            chosen[0] = demo_firm  # the demo firm follows a few applications of its own
        for i, enterprise_id in enumerate(chosen):
            path = PATHS[(i + k) % len(PATHS)]
            if enterprise_id == demo_firm:
                path = PATHS[[4, 2, 0][k]]
            _one(db, rng, policy, enterprise_id, path, officer, start + dt.timedelta(days=rng.randint(0, 10)), now)
            added += 1
    paid = _exempt(db, rng, now, demo_firm)
    db.flush()
    return {"applications": added, "exempt_paid": paid}


def _one(
    db: Session,
    rng: random.Random,
    policy: Policy,
    enterprise_id: int,
    path: list[str],
    officer: Principal | None,
    at: dt.datetime,
    now: dt.datetime,
) -> None:
    firm = _firm_principal(db, enterprise_id)
    app = Application(
        enterprise_id=enterprise_id,
        policy_id=policy.id,
        status="submitted",
        source="firm" if firm is not None or rng.random() < 0.7 else "import",
        submitted_at=at,
        updated_at=at,
    )
    db.add(app)
    db.flush()
    lifecycle.record(db, app, "submit", actor=firm, from_status=None, at=at)
    for status in path:
        at = min(at + dt.timedelta(days=rng.randint(3, 9), hours=rng.randint(1, 8)), now - dt.timedelta(hours=2))
        if status == "withdrawn":
            lifecycle.move(db, app, "withdraw", actor=firm, note="材料准备不足，暂不申报", at=at)
            continue
        note = None
        if status == "paid":
            top = policy.max_amount or 50
            app.amount = round(rng.uniform(max(1.0, top * 0.2), top), 1)
            app.paid_on = at.date()
            note = "资金已拨付至企业基本账户"
        elif status == "rejected":
            app.reason = note = rng.choice(REJECTIONS)
        elif status == "accepted":
            note = "材料齐全，已受理"
        lifecycle.move(db, app, ACTION_FOR_STATUS[status], actor=officer, note=note, at=at)


def _exempt(db: Session, rng: random.Random, now: dt.datetime, demo_firm: int | None) -> int:
    policies = list(
        db.scalars(
            select(Policy)
            .where(Policy.status == PolicyStatus.published, Policy.policy_type == PolicyType.exempt)
            .order_by(Policy.id)
            .limit(EXEMPT_POLICIES)
        )
    )
    paid = 0
    for policy in policies:
        ids, codes = matcher_batch.judge_all(db=db, rules=policy.rules, today=now.date())
        eligible = [int(eid) for eid, code in zip(ids, codes, strict=True) if code == STATUS_CODES["eligible"]]
        if not eligible:
            continue
        picked = sorted(rng.sample(eligible, min(len(eligible), 30)))
        if demo_firm is not None and demo_firm in eligible and demo_firm not in picked:
            picked.append(demo_firm)
        officer = _officer(db, lifecycle.policy_department_id(policy))
        frozen = now - dt.timedelta(days=rng.randint(20, 40))
        _backdate(policy, frozen - dt.timedelta(days=rng.randint(10, 30)))
        roster = exempt.make_roster(
            db,
            policy,
            dict.fromkeys(picked, "eligible"),
            actor=officer,
            note="演示批次",
            policy_version=policy.version,
            at=frozen,
        )
        top = policy.max_amount or 20
        for i, entry in enumerate(roster.entries):
            at = frozen + dt.timedelta(days=2, hours=i % 8)
            if i % 10 == 3:
                exempt.decide_entry(db, entry, officer, "exclude", rng.choice(EXCLUSIONS), at=at)
                continue
            exempt.decide_entry(db, entry, officer, "confirm", None, at=at)
            if i % 3 != 2 or entry.enterprise_id == demo_firm:
                when = at + dt.timedelta(days=rng.randint(5, 15))
                amount = round(rng.uniform(max(0.5, top * 0.1), top), 1)
                exempt.pay_entry(db, entry, officer, amount, when.date(), at=when)
                paid += 1
    return paid
