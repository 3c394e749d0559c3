"""What the applications package does when others announce something (see core.events).

A firm marking a policy 已申报 (recommendation card, policy page, API feedback) opens its application,
in the same transaction as the feedback.
"""

from __future__ import annotations

from applications import service
from auth.models import User
from auth.service import principal_for_user
from core import events


def on_policy_applied(event: events.PolicyApplied) -> None:
    """Open (or reopen) the firm's application for the policy it says it applied for."""
    user = event.db.get(User, event.user_id) if event.user_id is not None else None
    actor = principal_for_user(user) if user is not None else None
    service.open_for_firm(db=event.db, enterprise_id=event.enterprise_id, policy_id=event.policy_id, actor=actor)


events.bus.subscribe(events.PolicyApplied, on_policy_applied)
