"""What push does when other domains announce something (see core.events).

Publishing queues the fan-out to eligible firms; a new version of a published policy queues the
change notices; firms seeing policies are counted for the push funnel. All in the emitter's
transaction, so nothing is queued for a change that rolls back.
"""

from __future__ import annotations

from sqlalchemy import select

from core import events
from core.config import get_settings
from core.db import utcnow
from core.errors import FieldError, ValidationFailed
from push import applications, cases, jobs
from push import events as engagement
from push.models import Delivery


def on_policy_published(event: events.PolicyPublished) -> None:
    """Queue the fan-out of the new version to eligible firms."""
    jobs.queue_fan_out(event.db, policy_id=event.policy_id, version=event.version)


def on_policy_revised(event: events.PolicyRevised) -> None:
    """Queue the notices telling matched firms what changed."""
    jobs.queue_change_notices(event.db, policy_id=event.policy_id, from_version=event.from_version)


def on_delivery_cited(event: events.DeliveryCited) -> None:
    """Refuse a firm's request that names a push it did not receive."""
    owner = event.db.scalar(select(Delivery.enterprise_id).where(Delivery.id == event.delivery_id))
    if owner != event.enterprise_id:
        raise ValidationFailed(errors=[FieldError("delivery_id", "该推送记录不存在", "not_found")])


def on_policies_seen(event: events.PoliciesSeen) -> None:
    """Count a firm's views and calculator results in the push funnel."""
    engagement.record_seen(db=event.db, enterprise_id=event.enterprise_id, policy_ids=event.policy_ids, kind=event.kind)


def on_case_updated(event: events.CaseUpdated) -> None:
    """Tell the firm of news of its case (a few outbox rows; the sender delivers email, SMS and webhooks)."""
    settings = get_settings()
    cases.case_update_notice(
        db=event.db,
        enterprise_id=event.enterprise_id,
        case_id=event.case_id,
        event_id=event.event_id,
        kind=event.kind,
        number=event.number,
        case_title=event.title,
        note=event.note,
        department_name=event.department_name,
        now=utcnow(),
        settings=settings,
        base_url=settings.public_base_url or "",
        at=event.at,
    )


def on_application_status_changed(event: events.ApplicationStatusChanged) -> None:
    """Tell the firm its application moved (not of what it did itself: applying, withdrawing)."""
    if event.by_firm:
        return
    settings = get_settings()
    applications.application_notice(
        db=event.db,
        enterprise_id=event.enterprise_id,
        application_id=event.application_id,
        event_id=event.event_id,
        policy_id=event.policy_id,
        policy_title=event.policy_title,
        status=event.status,
        status_label=event.status_label,
        note=event.note,
        amount=event.amount,
        paid_on=event.paid_on,
        now=utcnow(),
        settings=settings,
        base_url=settings.public_base_url or "",
        at=event.at,
    )


def on_exempt_paid(event: events.ExemptPaid) -> None:
    """Tell the firm a 免申即享 policy paid it."""
    settings = get_settings()
    applications.exempt_payout_notice(
        db=event.db,
        enterprise_id=event.enterprise_id,
        entry_id=event.entry_id,
        policy_id=event.policy_id,
        policy_title=event.policy_title,
        amount=event.amount,
        paid_on=event.paid_on,
        now=utcnow(),
        settings=settings,
        base_url=settings.public_base_url or "",
        at=event.at,
    )


events.bus.subscribe(events.PolicyPublished, on_policy_published)
events.bus.subscribe(events.ApplicationStatusChanged, on_application_status_changed)
events.bus.subscribe(events.ExemptPaid, on_exempt_paid)
events.bus.subscribe(events.CaseUpdated, on_case_updated)
events.bus.subscribe(events.PolicyRevised, on_policy_revised)
events.bus.subscribe(events.PoliciesSeen, on_policies_seen)
events.bus.subscribe(events.DeliveryCited, on_delivery_cited)
