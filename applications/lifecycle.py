"""The application's state machine, its one transition helper, and who may see and move an application.

State machine (every change goes through :data:`TRANSITIONS` and appends an :class:`ApplicationEvent`)::

    submitted 已申报 ─accept→ accepted 已受理 ─review→ reviewing 审核中 ─publicize→ publicized 公示 ─pay→ paid 已兑现
        (a department's result list may skip steps: review, publicize, pay and reject also start earlier)
    submitted|accepted|reviewing|publicized ─reject→ rejected 未通过 (reason)
    submitted|accepted|reviewing ─withdraw (the firm)→ withdrawn 撤回 ─reapply (the firm)→ submitted

Paid, rejected are final. Who moves: the firm applies, withdraws and re-applies its own; the policy's
department (desk officers of the policy's handling department, or its issuing department when it
names none) and curators and admins do everything else. Supervisors read.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func
from sqlalchemy.orm import Session

from applications.models import STATUS_LABELS, Application, ApplicationEvent, ApplicationStatus
from auth.models import Role
from auth.service import Principal
from catalog.models import Policy
from core import events
from core.db import utcnow
from core.errors import FieldError, InvalidState, NotFound

S = ApplicationStatus

TRANSITIONS: dict[str, dict[ApplicationStatus, ApplicationStatus]] = {
    "submit": {},  # the first status of a new application (no from-status)
    "accept": {S.submitted: S.accepted},
    "review": {S.submitted: S.reviewing, S.accepted: S.reviewing},
    "publicize": {S.submitted: S.publicized, S.accepted: S.publicized, S.reviewing: S.publicized},
    "pay": {S.submitted: S.paid, S.accepted: S.paid, S.reviewing: S.paid, S.publicized: S.paid},
    "reject": {S.submitted: S.rejected, S.accepted: S.rejected, S.reviewing: S.rejected, S.publicized: S.rejected},
    "withdraw": {S.submitted: S.withdrawn, S.accepted: S.withdrawn, S.reviewing: S.withdrawn},
    "reapply": {S.withdrawn: S.submitted},
}
ACTION_LABELS: dict[str, str] = {
    "submit": "申报",
    "accept": "受理",
    "review": "转入审核",
    "publicize": "公示",
    "pay": "兑现",
    "reject": "不予通过",
    "withdraw": "撤回",
    "reapply": "重新申报",
}
# The action that leads to each status a department sets (pages, API, the result-list import).
ACTION_FOR_STATUS: dict[str, str] = {
    "accepted": "accept",
    "reviewing": "review",
    "publicized": "publicize",
    "paid": "pay",
    "rejected": "reject",
}
FIRM_ACTIONS = frozenset({"submit", "withdraw", "reapply"})
STAFF_ACTIONS = frozenset(ACTION_FOR_STATUS.values())
MANAGERS = frozenset({Role.curator, Role.admin})
READERS = frozenset({Role.curator, Role.admin, Role.supervisor})
# Approved: on public notice or paid (公示、已兑现); decided: approved or refused.
APPROVED = frozenset({S.publicized, S.paid})
DECIDED = APPROVED | {S.rejected}
OPEN = frozenset({S.submitted, S.accepted, S.reviewing, S.publicized})


class IllegalTransition(InvalidState):
    """A change the application's current status does not allow."""

    code = "applications.illegal_transition"
    message = "申报当前状态不允许此操作"


def status_label(status: str) -> str:
    """Return the Chinese name of a status."""
    return STATUS_LABELS.get(status, status)


def allowed(app: Application, action: str) -> bool:
    """Tell whether the table allows `action` from the application's status (for offering actions on pages)."""
    return ApplicationStatus(app.status) in TRANSITIONS[action]


def check_transition(app: Application, action: str, field: str = "status") -> ApplicationStatus:
    """Return the status `action` leads to from the application's status, or raise IllegalTransition."""
    table = TRANSITIONS[action]
    current = ApplicationStatus(app.status)
    target = table.get(current)
    if target is None:
        label = ACTION_LABELS[action]
        allowed_from = "、".join(f"“{status_label(s)}”" for s in table) or "无"
        raise IllegalTransition(
            f"申报当前为“{status_label(current)}”，不能{label}；仅{allowed_from}状态可以{label}",
            errors=[FieldError(field, f"“{status_label(current)}”状态不能{label}", "illegal_transition")],
        )
    return target


def _actor_fields(actor: Principal | None) -> dict[str, Any]:
    if actor is None:
        return {"actor_id": None, "actor_role": "system", "actor_name": "系统"}
    return {
        "actor_id": actor.user_id,
        "actor_role": "api_key" if actor.via_api_key else str(actor.role),
        "actor_name": actor.name[:60],
    }


def record(
    db: Session,
    app: Application,
    action: str,
    *,
    actor: Principal | None,
    from_status: str | None,
    note: str | None = None,
    data: dict[str, Any] | None = None,
    at: dt.datetime | None = None,
) -> ApplicationEvent:
    """Append the event of a change and announce it (push tells the firm; see push.subscribers)."""
    event = ApplicationEvent(
        application=app,
        action=action,
        from_status=from_status,
        to_status=app.status,
        note=note,
        data=data or {},
        at=at or utcnow(),
        **_actor_fields(actor),
    )
    db.add(event)
    db.flush()
    policy = db.get(Policy, app.policy_id)
    events.emit(
        events.ApplicationStatusChanged(
            db=db,
            application_id=app.id,
            event_id=event.id,
            enterprise_id=app.enterprise_id,
            policy_id=app.policy_id,
            policy_title=policy.title if policy is not None else "",
            status=app.status,
            status_label=status_label(app.status),
            note=note,
            amount=app.amount if app.status == S.paid else None,
            paid_on=app.paid_on if app.status == S.paid else None,
            by_firm=action in FIRM_ACTIONS,
            at=event.at,
        )
    )
    return event


def move(
    db: Session,
    app: Application,
    action: str,
    *,
    actor: Principal | None,
    note: str | None = None,
    data: dict[str, Any] | None = None,
    at: dt.datetime | None = None,
    field: str = "status",
) -> ApplicationEvent:
    """Check `action` against TRANSITIONS, set the new status and record the change (the one way status moves)."""
    target = check_transition(app, action, field)
    before = app.status
    app.status = target
    app.updated_at = at or utcnow()
    return record(db, app, action, actor=actor, from_status=before, note=note, data=data, at=at)


# ---------------------------------------------------------------- who may see and move


def policy_department_id(policy: Policy) -> int:
    """Return the department answering for a policy's applications: its handling department, else the issuer."""
    return policy.handling_department_id or policy.issuing_department_id


def department_column() -> Any:
    """The same rule as a SQL expression over Policy (for scoped lists and figures)."""
    return func.coalesce(Policy.handling_department_id, Policy.issuing_department_id)


def can_see(app: Application, actor: Principal) -> bool:
    """Firms see their own; desk officers their department's policies'; curators, admins, supervisors all."""
    if actor.role in READERS:
        return True
    if actor.role == Role.enterprise:
        return actor.enterprise_id is not None and app.enterprise_id == actor.enterprise_id
    if actor.role == Role.desk:
        return actor.department_id is not None and policy_department_id(app.policy) == actor.department_id
    return False


def get_application(*, db: Session, application_id: int, actor: Principal) -> Application:
    """Return an application the actor may see, or raise NotFound (also outside the actor's scope)."""
    app = db.get(Application, application_id)
    if app is None or not can_see(app, actor):
        raise NotFound("申报记录不存在", code="applications.not_found")
    return app


def can_manage(policy: Policy, actor: Principal | None) -> bool:
    """Tell whether the actor may move applications (and 免申即享 lists) of a policy."""
    if actor is None or actor.role in MANAGERS:
        return True
    return (
        actor.role == Role.desk
        and not actor.via_api_key
        and actor.department_id is not None
        and policy_department_id(policy) == actor.department_id
    )


def require_manager(policy: Policy, actor: Principal | None) -> None:
    """Admit the policy's department and curators and admins; to another department the policy's work is 404."""
    if not can_manage(policy, actor):
        raise NotFound("该政策不归本部门办理", code="applications.not_department")
