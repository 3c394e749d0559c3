"""免申即享: policies that pay without an application.

Staff freeze the firms the matcher stored as eligible into a dated roster (名单), confirm or exclude
each firm (an exclusion names its reason), and record payouts one by one or by importing the
department's payout list; each payout tells the firm "已为您兑现 X 万元" (``core.events.ExemptPaid``).
The matcher is read through its faces (``matcher.batch``, ``matcher.lists``), never its tables.

Entry states (one table, like applications)::

    pending 待确认 ─confirm→ confirmed 已确认 ─pay→ paid 已兑现
    pending|confirmed ─exclude (reason)→ excluded 已排除 ─confirm→ confirmed
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from applications import lifecycle
from applications.models import EXEMPT_LABELS, ExemptEntry, ExemptRoster, ExemptStatus
from auth.service import Principal
from catalog.models import Policy, PolicyStatus, PolicyType
from core import events
from core.db import utcnow
from core.errors import Conflict, FieldError, InvalidState, NotFound, ValidationFailed
from matcher import batch as matcher_batch
from matcher import lists as matcher_lists
from matcher.eligibility import ELIGIBLE

E = ExemptStatus
TRANSITIONS: dict[str, dict[ExemptStatus, ExemptStatus]] = {
    "confirm": {E.pending: E.confirmed, E.excluded: E.confirmed},
    "exclude": {E.pending: E.excluded, E.confirmed: E.excluded},
    "pay": {E.confirmed: E.paid},
}
ACTION_LABELS = {"confirm": "确认", "exclude": "排除", "pay": "兑现"}


class IllegalExemptTransition(InvalidState):
    """A change the roster entry's current status does not allow."""

    code = "applications.exempt_illegal_transition"
    message = "名单中该企业的当前状态不允许此操作"


def exempt_policy(db: Session, policy_id: int) -> Policy:
    """Return a published 免申即享 policy, or refuse."""
    policy = db.get(Policy, policy_id)
    if policy is None:
        raise NotFound("政策不存在", code="catalog.policy_not_found")
    if policy.policy_type != PolicyType.exempt:
        raise ValidationFailed(
            "只有免申即享政策有兑现名单",
            code="applications.not_exempt",
            errors=[FieldError("policy_id", "该政策不是免申即享政策", "not_exempt")],
        )
    return policy


def freeze(*, db: Session, actor: Principal | None, policy_id: int, note: str | None = None) -> ExemptRoster:
    """Freeze the firms the matcher stores as eligible for a 免申即享 policy into a dated roster."""
    policy = exempt_policy(db, policy_id)
    lifecycle.require_manager(policy, actor)
    if policy.status != PolicyStatus.published:
        raise InvalidState("政策未发布，不能生成兑现名单", code="applications.policy_not_published")
    state = matcher_lists.state(db, policy)
    try:
        if not state.listed:
            raise matcher_lists.ListPending
        # Reads the flag again with the rows: a listing started since is refused, not read half written.
        firms = matcher_batch.matched_firms(db=db, policy_id=policy.id, statuses=[ELIGIBLE])
    except matcher_lists.ListPending:
        raise Conflict("该政策的符合条件企业名单正在生成，请稍后再试", code="applications.list_pending") from None
    return make_roster(db, policy, firms, actor=actor, note=note, policy_version=state.policy_version or policy.version)


def make_roster(
    db: Session,
    policy: Policy,
    firms: dict[int, str],
    *,
    actor: Principal | None,
    note: str | None,
    policy_version: int,
    at: dt.datetime | None = None,
) -> ExemptRoster:
    """Write a roster of the given firms (firm → the matcher's verdict), all pending, dated `at` (now)."""
    now = at or utcnow()
    roster = ExemptRoster(
        policy_id=policy.id,
        frozen_on=now.date(),
        frozen_at=now,
        policy_version=policy_version,
        created_by_id=actor.user_id if actor else None,
        created_by_name=(actor.name if actor else "系统")[:60],
        note=(note or "").strip()[:200] or None,
    )
    db.add(roster)
    db.flush()
    db.add_all(
        ExemptEntry(roster_id=roster.id, enterprise_id=eid, policy_id=policy.id, status=E.pending, match_status=verdict)
        for eid, verdict in sorted(firms.items())
    )
    db.flush()
    return roster


def get_roster(*, db: Session, roster_id: int, actor: Principal) -> ExemptRoster:
    """Return a roster the actor may manage (404 for another department's)."""
    roster = db.get(ExemptRoster, roster_id)
    if roster is None or not lifecycle.can_manage(roster.policy, actor):
        raise NotFound("兑现名单不存在", code="applications.roster_not_found")
    return roster


def latest_roster(db: Session, policy_id: int) -> ExemptRoster | None:
    """Return the policy's latest roster."""
    return db.scalar(
        select(ExemptRoster).where(ExemptRoster.policy_id == policy_id).order_by(ExemptRoster.id.desc()).limit(1)
    )


def rosters(*, db: Session, policy_id: int) -> list[ExemptRoster]:
    """Return a policy's rosters, latest first."""
    return list(
        db.scalars(select(ExemptRoster).where(ExemptRoster.policy_id == policy_id).order_by(ExemptRoster.id.desc()))
    )


def counts(db: Session, roster_id: int) -> dict[str, int]:
    """Return the roster's firms per status."""
    rows = db.execute(
        select(ExemptEntry.status, func.count()).where(ExemptEntry.roster_id == roster_id).group_by(ExemptEntry.status)
    )
    out = {s.value: 0 for s in ExemptStatus}
    out.update({status: int(n) for status, n in rows})
    return out


def get_entry(*, db: Session, entry_id: int, actor: Principal) -> ExemptEntry:
    """Return a roster entry the actor may manage (404 otherwise)."""
    entry = db.get(ExemptEntry, entry_id)
    if entry is None or not lifecycle.can_manage(entry.roster.policy, actor):
        raise NotFound("名单中没有该企业", code="applications.entry_not_found")
    return entry


def _move(
    entry: ExemptEntry, action: str, actor: Principal | None, field: str = "status", at: dt.datetime | None = None
) -> None:
    current = ExemptStatus(entry.status)
    target = TRANSITIONS[action].get(current)
    if target is None:
        label = ACTION_LABELS[action]
        raise IllegalExemptTransition(
            f"该企业当前为“{EXEMPT_LABELS[current]}”，不能{label}",
            errors=[FieldError(field, f"“{EXEMPT_LABELS[current]}”状态不能{label}", "illegal_transition")],
        )
    entry.status = target
    entry.decided_by_id = actor.user_id if actor else None
    entry.decided_by_name = (actor.name if actor else "系统")[:60]
    entry.decided_at = at or utcnow()


def decide(*, db: Session, actor: Principal, entry_id: int, action: str, reason: str | None = None) -> ExemptEntry:
    """Confirm a firm of the roster, or exclude it with a reason."""
    entry = get_entry(db=db, entry_id=entry_id, actor=actor)
    return decide_entry(db, entry, actor, action, reason)


def decide_entry(
    db: Session,
    entry: ExemptEntry,
    actor: Principal | None,
    action: str,
    reason: str | None,
    at: dt.datetime | None = None,
) -> ExemptEntry:
    """Confirm an entry, or exclude it with a reason (the one way an entry is decided)."""
    if action not in ("confirm", "exclude"):
        raise ValidationFailed(errors=[FieldError("action", "取值应为 confirm（确认）或 exclude（排除）", "invalid")])
    reason = (reason or "").strip() or None
    if reason and len(reason) > 500:
        raise ValidationFailed(errors=[FieldError("reason", "不能超过 500 个字", "too_long")])
    if action == "exclude" and not reason:
        raise ValidationFailed(errors=[FieldError("reason", "排除企业须说明原因", "required")])
    _move(entry, action, actor, at=at)
    entry.reason = reason if action == "exclude" else None
    db.flush()
    return entry


def confirm_pending(*, db: Session, actor: Principal, roster_id: int) -> int:
    """Confirm every firm of the roster still pending; return how many."""
    roster = get_roster(db=db, roster_id=roster_id, actor=actor)
    n = 0
    for entry in roster.entries:
        if entry.status == E.pending:
            _move(entry, "confirm", actor)
            n += 1
    db.flush()
    return n


def check_payout(amount: float | None, paid_on: dt.date | None, today: dt.date | None = None) -> tuple[float, dt.date]:
    """Validate a payout: an amount above 0 (万元) and a date not in the future (today by default)."""
    errors = []
    today = today or dt.date.today()
    if amount is None:
        errors.append(FieldError("amount", "须填写兑现金额（万元）", "required"))
    elif not (0 < amount < 1e9):
        errors.append(FieldError("amount", "兑现金额应为大于 0 的数字（万元）", "invalid"))
    paid_on = paid_on or today
    if paid_on > today:
        errors.append(FieldError("paid_on", "兑现日期不能晚于今天", "invalid"))
    if errors:
        raise ValidationFailed(errors=errors)
    assert amount is not None
    return amount, paid_on


def pay_entry(
    db: Session,
    entry: ExemptEntry,
    actor: Principal | None,
    amount: float | None,
    paid_on: dt.date | None,
    at: dt.datetime | None = None,
) -> ExemptEntry:
    """Record a confirmed firm's payout and tell the firm (the one way an entry is paid)."""
    amount, paid_on = check_payout(amount, paid_on)
    _move(entry, "pay", actor, at=at)
    entry.amount, entry.paid_on = amount, paid_on
    db.flush()
    policy = db.get(Policy, entry.policy_id)
    events.emit(
        events.ExemptPaid(
            db=db,
            entry_id=entry.id,
            enterprise_id=entry.enterprise_id,
            policy_id=entry.policy_id,
            policy_title=policy.title if policy else "",
            amount=amount,
            paid_on=paid_on,
            at=entry.decided_at,
        )
    )
    return entry


def pay(
    *, db: Session, actor: Principal, entry_id: int, amount: float | None, paid_on: dt.date | None = None
) -> ExemptEntry:
    """Record the payout of one confirmed firm (a request naming the entry)."""
    entry = get_entry(db=db, entry_id=entry_id, actor=actor)
    return pay_entry(db, entry, actor, amount, paid_on)


def entries(
    *, db: Session, roster_id: int, status: str | None = None, offset: int = 0, limit: int = 50
) -> tuple[list[ExemptEntry], int]:
    """Return a page of a roster's firms."""
    if status is not None and status not in set(ExemptStatus):
        raise ValidationFailed(
            errors=[FieldError("status", "状态应为 pending、confirmed、excluded 或 paid", "invalid")]
        )
    q = select(ExemptEntry).where(ExemptEntry.roster_id == roster_id)
    if status is not None:
        q = q.where(ExemptEntry.status == status)
    total = db.scalar(select(func.count()).select_from(q.subquery())) or 0
    return list(db.scalars(q.order_by(ExemptEntry.id).offset(offset).limit(limit))), total


def payouts_for_firm(*, db: Session, enterprise_id: int) -> list[ExemptEntry]:
    """Return a firm's 免申即享 payouts (for its pages), latest first."""
    return list(
        db.scalars(
            select(ExemptEntry)
            .where(ExemptEntry.enterprise_id == enterprise_id, ExemptEntry.status == E.paid)
            .order_by(ExemptEntry.paid_on.desc(), ExemptEntry.id.desc())
        )
    )
