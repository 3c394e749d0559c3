"""Applications (申报): a firm applies (or says it did), withdraws; its department moves the status.

Every status change goes through :func:`applications.lifecycle.move`. Nothing here commits: the
request dependency (or ``session_scope``) does.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from applications import lifecycle
from applications.lifecycle import ACTION_FOR_STATUS, S
from applications.models import Application, ApplicationStatus
from auth.models import Role
from auth.service import Principal
from catalog.models import Policy, PolicyStatus, PolicyType
from core.db import utcnow
from core.errors import FieldError, NotFound, ValidationFailed
from matcher import feedback as matcher_feedback

SOURCES = {"firm": "企业申报", "import": "部门结果导入", "staff": "工作人员登记"}
MAX_NOTE = 500


def visible_policy(db: Session, policy_id: int) -> Policy:
    """Return a published (or expired) policy, or raise NotFound."""
    policy = db.get(Policy, policy_id)
    if policy is None or policy.status not in (PolicyStatus.published, PolicyStatus.expired):
        raise NotFound("政策不存在", code="catalog.policy_not_found")
    return policy


def require_application_type(policy: Policy, field: str = "policy_id") -> None:
    if policy.policy_type != PolicyType.application:
        why = (
            "免申即享政策无需申报，符合条件的企业由部门直接兑现"
            if policy.policy_type == PolicyType.exempt
            else "该政策无需申报"
        )
        raise ValidationFailed(
            why, code="applications.not_applicable", errors=[FieldError(field, why, "not_applicable")]
        )


def _note(text: str | None, field: str = "note") -> str | None:
    text = (text or "").strip()
    if len(text) > MAX_NOTE:
        raise ValidationFailed(errors=[FieldError(field, f"不能超过 {MAX_NOTE} 个字", "too_long")])
    return text or None


# ---------------------------------------------------------------- the firm


def apply(
    *, db: Session, actor: Principal, policy_id: int, weights: Any = None, source: str = "application"
) -> Application:
    """A firm applies for a policy (or says it applied elsewhere): its 已申报 feedback and its application.

    The feedback announces `PolicyApplied`, whose subscriber opens the application (so the 已申报 buttons
    of the recommendation list and policy page open one too). Re-applying after withdrawing reopens it.
    """
    enterprise_id = actor.own_enterprise_id
    policy = visible_policy(db, policy_id)
    require_application_type(policy)
    matcher_feedback.record_feedback(
        db=db,
        enterprise_id=enterprise_id,
        policy_id=policy.id,
        action="applied",
        source=source,
        user_id=actor.user_id,
        weights=weights,
    )
    app = find(db, enterprise_id, policy.id)
    assert app is not None  # opened by the subscriber of PolicyApplied
    return app


def open_for_firm(*, db: Session, enterprise_id: int, policy_id: int, actor: Principal | None) -> Application | None:
    """Open (or reopen after a withdrawal) the firm's application for a policy that takes applications.

    Idempotent: an open or decided application is returned as it is; a policy without applications
    (免申即享, 普惠告知) gets none.
    """
    policy = db.get(Policy, policy_id)
    if policy is None or policy.policy_type != PolicyType.application:
        return None
    app = find(db, enterprise_id, policy_id)
    if app is None:
        now = utcnow()
        app = Application(
            enterprise_id=enterprise_id,
            policy_id=policy_id,
            status=S.submitted,
            source="firm",
            submitted_at=now,
            updated_at=now,
        )
        db.add(app)
        db.flush()
        lifecycle.record(db, app, "submit", actor=actor, from_status=None, at=now)
    elif app.status == S.withdrawn:
        lifecycle.move(db, app, "reapply", actor=actor)
    return app


def withdraw(*, db: Session, actor: Principal, application_id: int, note: str | None = None) -> Application:
    """The firm withdraws its application (撤回) while it is not decided."""
    app = lifecycle.get_application(db=db, application_id=application_id, actor=actor)
    if actor.role != Role.enterprise:
        raise ValidationFailed(
            "只有申报企业可以撤回",
            code="applications.not_owner",
            errors=[FieldError("application_id", "只有申报企业可以撤回", "not_owner")],
        )
    lifecycle.move(db, app, "withdraw", actor=actor, note=_note(note))
    return app


def find(db: Session, enterprise_id: int, policy_id: int) -> Application | None:
    """Return the firm's application for a policy, if any."""
    return db.scalar(
        select(Application).where(Application.enterprise_id == enterprise_id, Application.policy_id == policy_id)
    )


def statuses_for_firm(*, db: Session, enterprise_id: int, policy_ids: list[int] | None = None) -> dict[int, str]:
    """Return the firm's application status per policy (for recommendation cards and the policy page)."""
    q = select(Application.policy_id, Application.status).where(Application.enterprise_id == enterprise_id)
    if policy_ids is not None:
        if not policy_ids:
            return {}
        q = q.where(Application.policy_id.in_(sorted(set(policy_ids))))
    return {pid: status for pid, status in db.execute(q)}


# ---------------------------------------------------------------- the department


def check_outcome(
    status: str,
    amount: float | None,
    paid_on: dt.date | None,
    reason: str | None,
    *,
    today: dt.date | None = None,
    reason_field: str = "reason",
) -> tuple[float | None, dt.date | None, str | None]:
    """Validate what a status change carries: paid needs an amount (and a date, today by default), refused a reason."""
    errors = []
    if status not in ACTION_FOR_STATUS:
        shown = "、".join(f"{k}（{lifecycle.status_label(k)}）" for k in ACTION_FOR_STATUS)
        errors.append(FieldError("status", f"状态应为 {shown} 之一", "invalid"))
    if status == S.paid:
        if amount is None:
            errors.append(FieldError("amount", "已兑现须填写兑现金额（万元）", "required"))
        elif not (0 < amount < 1e9):
            errors.append(FieldError("amount", "兑现金额应为大于 0 的数字（万元）", "invalid"))
        today = today or dt.date.today()
        paid_on = paid_on or today
        if paid_on > today:
            errors.append(FieldError("paid_on", "兑现日期不能晚于今天", "invalid"))
    elif amount is not None or paid_on is not None:
        errors.append(
            FieldError("amount" if amount is not None else "paid_on", "只有“已兑现”可以填写金额和日期", "not_allowed")
        )
    reason = _note(reason, reason_field)
    if status == S.rejected and not reason:
        errors.append(FieldError(reason_field, "未通过须说明原因", "required"))
    if errors:
        raise ValidationFailed(errors=errors)
    return amount, paid_on, reason


def set_status(
    *,
    db: Session,
    actor: Principal | None,
    app: Application,
    status: str,
    note: str | None = None,
    amount: float | None = None,
    paid_on: dt.date | None = None,
    reason: str | None = None,
) -> Application:
    """Move an application to the status its department set (with the amount when paid, the reason when refused)."""
    lifecycle.require_manager(app.policy, actor)
    amount, paid_on, reason = check_outcome(status, amount, paid_on, reason)
    action = ACTION_FOR_STATUS[status]
    lifecycle.check_transition(app, action)
    if status == S.paid:
        app.amount, app.paid_on = amount, paid_on
    if status == S.rejected:
        app.reason = reason
    lifecycle.move(db, app, action, actor=actor, note=_note(note) or (reason if status == S.rejected else None))
    return app


def update_status(*, db: Session, actor: Principal, application_id: int, **change: Any) -> Application:
    """Move the application a request names (404 outside the actor's scope)."""
    app = lifecycle.get_application(db=db, application_id=application_id, actor=actor)
    return set_status(db=db, actor=actor, app=app, **change)


# ---------------------------------------------------------------- lists


def scoped_query(actor: Principal) -> Any:
    """Return the applications the actor may see, joined with their policies."""
    q = select(Application).join(Policy, Policy.id == Application.policy_id)
    if actor.role == Role.enterprise:
        q = q.where(Application.enterprise_id == actor.own_enterprise_id)
    elif actor.role == Role.desk:
        q = q.where(lifecycle.department_column() == (actor.department_id or -1))
    elif actor.role not in lifecycle.READERS:
        q = q.where(Application.id == -1)
    return q


def list_applications(
    *,
    db: Session,
    actor: Principal,
    policy_id: int | None = None,
    status: str | None = None,
    enterprise_id: int | None = None,
    offset: int = 0,
    limit: int = 20,
) -> tuple[list[Application], int]:
    """Return a page of the applications the actor may see, latest change first."""
    if status is not None and status not in set(ApplicationStatus):
        raise ValidationFailed(errors=[FieldError("status", "状态取值无效", "invalid")])
    q = scoped_query(actor)
    if policy_id is not None:
        q = q.where(Application.policy_id == policy_id)
    if status is not None:
        q = q.where(Application.status == status)
    if enterprise_id is not None:
        q = q.where(Application.enterprise_id == enterprise_id)
    total = db.scalar(select(func.count()).select_from(q.subquery())) or 0
    rows = db.scalars(q.order_by(Application.updated_at.desc(), Application.id.desc()).offset(offset).limit(limit))
    return list(rows), total
