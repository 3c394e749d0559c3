"""Push jobs: the outbox sender every 30 seconds, and event-driven fan-out queued by publishing."""

from __future__ import annotations

import logging
from typing import Any

from core.config import Settings, get_settings
from core.db import session_scope
from core.scheduler import registry
from push import service
from push.channels import Channel, EmailChannel, SmsChannel, WebhookChannel

log = logging.getLogger(__name__)

registry.register("push.send_due", "push.jobs:send_due_job", "interval", seconds=30)


def build_channels(settings: Settings) -> tuple[dict[str, Channel], list[WebhookChannel]]:
    """Build the channels the settings configure; rows of an unconfigured channel die with a Chinese reason.

    Returns the channels and the webhook clients to close afterwards.
    """
    timeout = float(getattr(settings, "webhook_timeout", 5.0) or 5.0)
    webhook = WebhookChannel(timeout=timeout)
    channels: dict[str, Channel] = {"webhook": webhook}
    smtp_host = getattr(settings, "smtp_host", None)
    smtp_sender = getattr(settings, "smtp_sender", None)
    if smtp_host and smtp_sender:
        channels["email"] = EmailChannel(
            host=smtp_host,
            port=int(getattr(settings, "smtp_port", 25) or 25),
            sender=smtp_sender,
            username=getattr(settings, "smtp_username", None),
            password=getattr(settings, "smtp_password", None),
            use_tls=bool(getattr(settings, "smtp_use_tls", False)),
            use_ssl=bool(getattr(settings, "smtp_use_ssl", False)),
        )
    gateway = getattr(settings, "sms_gateway_url", None)
    gateway_secret = getattr(settings, "sms_gateway_secret", None)
    if gateway and gateway_secret:
        channels["sms"] = SmsChannel(gateway_url=gateway, secret=gateway_secret, webhook=webhook)
    return channels, [webhook]


def send_due_job() -> dict[str, Any]:
    """Send every due outbox row once, in its own unit of work."""
    settings = get_settings()
    channels, closers = build_channels(settings)
    try:
        with session_scope(settings) as db:
            counts = service.send_due(
                db=db, channels=channels, settings=settings, base_url=getattr(settings, "public_base_url", "") or ""
            )
    finally:
        for closer in closers:
            closer.close()
    if counts["picked"]:
        log.info("push.send_due: %s", counts)
    return counts


def fan_out_job(policy_id: int) -> dict[str, Any]:
    """Fan a published policy out to its matching firms (queued by publishing; exactly once per version)."""
    from catalog.models import Policy, PolicyStatus
    from matcher.service import Matcher

    settings = get_settings()
    matcher = Matcher(settings)
    try:
        with session_scope(settings) as db:
            policy = db.get(Policy, policy_id)
            if policy is None or policy.status != PolicyStatus.published:
                # Withdrawn (or deleted) before the job ran: nothing to announce.
                log.info("fan-out of policy %s skipped: not published", policy_id)
                return {"policy_id": policy_id, "created": 0}
            return service.fan_out_policy(
                db=db, matcher=matcher, policy_id=policy_id, base_url=getattr(settings, "public_base_url", "") or ""
            )
    finally:
        matcher.close()
