"""The sender: pick the outbox rows that are due, resolve each firm's recipient, call the channel once
per row and record the outcome; retries follow `push.channels.backoff`. Rows held for a firm's
daily or weekly digest are left to `push.digests`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import ColumnElement, and_, not_, select
from sqlalchemy.orm import Session

from auth import phone as auth_phone
from core.config import Settings
from core.db import utcnow
from matcher import feedback as matcher_feedback
from profiles.models import Enterprise
from push import events
from push.channels import (
    Channel,
    DeliveryResult,
    EmailRecipient,
    Message,
    SmsRecipient,
    WebhookRecipient,
    backoff,
    is_webhook_format,
    message_kind,
    normalize_phone,
)
from push.models import Delivery, PushPreference
from push.preferences import DIGEST_FREQUENCIES, preferences_for
from push.unsubscribe import unsubscribe_url

log = logging.getLogger(__name__)


MAX_ATTEMPTS = 12
UNVERIFIED_PHONE = "接收短信的手机号未经验证码验证，不发送短信"
# Why a row could not be handed to a channel; the job leaves unconfigured channels out of `channels`.
CHANNEL_NOT_CONFIGURED = {
    "email": "邮件服务器（SMTP）未配置，无法发送邮件",
    "sms": "短信网关未配置，无法发送短信",
    "webhook": "Webhook 通道未配置",
}


def _recipient(channel: str, pref: PushPreference, firm_name: str) -> tuple[Any, str | None]:
    """Return the channel's recipient from a firm's preferences, or None and why not."""
    if channel == "email":
        return (
            (EmailRecipient(address=pref.email, name=firm_name), None) if pref.email else (None, "企业未设置接收邮箱")
        )
    if channel == "sms":
        return (SmsRecipient(phone=pref.phone), None) if pref.phone else (None, "企业未设置接收短信的手机号")
    if channel == "webhook":
        if not pref.webhook_url:
            return None, "企业未设置 Webhook 地址"
        stored, fmt = pref.webhook_format, None
        if stored:
            if not is_webhook_format(stored):
                return None, f"不支持的 Webhook 格式：{stored}"
            fmt = stored
        return WebhookRecipient(url=pref.webhook_url, secret=pref.webhook_secret or "", format=fmt), None
    return None, f"不支持的推送方式：{channel}"


def _record(row: Delivery, result: DeliveryResult, now: dt.datetime) -> str:
    """Apply one attempt's outcome to its row: sent, failed with a later retry, or dead."""
    row.attempts += 1
    row.last_error = None if result.ok else result.detail[:500]
    if result.ok:
        row.status, row.sent_at = "sent", now
    elif result.retryable and row.attempts < MAX_ATTEMPTS:
        wait = backoff(row.attempts)
        if result.retry_after is not None:
            wait = max(wait, result.retry_after)
        row.status, row.next_attempt_at = "failed", now + wait
    else:
        row.status = "dead"
    return row.status


def held_for_digest() -> ColumnElement[bool]:
    """SQL condition: a new-match row beyond the inbox of a firm on a daily or weekly digest.

    Such rows are not sent one by one: `push.digests.send_digest` folds them into the firm's next
    digest. A firm that switches back to instant gets its waiting rows sent individually.
    """
    return and_(
        Delivery.kind == "new_match",
        Delivery.channel != "inbox",
        Delivery.enterprise_id.in_(
            select(PushPreference.enterprise_id).where(PushPreference.frequency.in_(DIGEST_FREQUENCIES))
        ),
    )


def send_due(
    *,
    db: Session,
    channels: Mapping[str, Channel],
    settings: Settings,
    now: dt.datetime | None = None,
    limit: int = 500,
    base_url: str = "",
    before_sending: Callable[[], None] | None = None,
) -> dict[str, int]:
    """Send the outbox rows that are due through their channels and record each outcome; return counts.

    `before_sending`, when given, is called once everything is read and before the first send; the
    job commits there on SQLite, so the outcomes are written in a transaction that starts by writing
    (a SQLite transaction that read, then writes after another connection committed, fails).
    """
    now = now or utcnow()
    q = (
        select(Delivery)
        .where(
            Delivery.status.in_(["pending", "failed"]),
            Delivery.next_attempt_at <= now,
            Delivery.channel != "inbox",
            not_(held_for_digest()),
        )
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .limit(limit)
    )
    if db.get_bind().dialect.name == "postgresql":
        # Two senders never pick the same row; each takes what the other has not locked.
        q = q.with_for_update(skip_locked=True)
    rows = list(db.scalars(q))
    counts = {"picked": len(rows), "sent": 0, "failed": 0, "dead": 0, "skipped": 0}
    if not rows:
        return counts
    firm_ids = sorted({r.enterprise_id for r in rows})
    prefs = preferences_for(db, firm_ids)
    names = dict(db.execute(select(Enterprise.id, Enterprise.name).where(Enterprise.id.in_(firm_ids))).tuples().all())
    dropped = matcher_feedback.not_relevant_pairs(
        db=db, pairs=((r.enterprise_id, r.policy_id) for r in rows if r.policy_id is not None)
    )
    # SMS goes only to numbers the firm has verified (auth.phone); this is the one place SMS is sent.
    verified = auth_phone.verified_pairs(db=db, enterprise_ids={r.enterprise_id for r in rows if r.channel == "sms"})
    if before_sending is not None:
        before_sending()
    for row in rows:
        if (row.enterprise_id, row.policy_id) in dropped:
            # The firm called the policy "not relevant" after the decision to push it.
            row.status, row.last_error = "skipped", "企业已反馈该政策不相关"
            counts["skipped"] += 1
            continue
        try:
            status = _send_one(
                row,
                channels,
                prefs.get(row.enterprise_id),
                names.get(row.enterprise_id, ""),
                settings,
                now,
                base_url,
                verified,
            )
        except Exception as exc:  # a channel must not raise; if one does, the row is retried, not the batch lost
            log.exception("delivery %s raised", row.id)
            status = _record(row, DeliveryResult(ok=False, retryable=True, detail=f"发送时发生内部错误：{exc}"), now)
        counts[status] = counts.get(status, 0) + 1
    db.flush()
    return counts


def _send_one(
    row: Delivery,
    channels: Mapping[str, Channel],
    pref: PushPreference | None,
    firm_name: str,
    settings: Settings,
    now: dt.datetime,
    base_url: str,
    verified: set[tuple[int, str]],
) -> str:
    if pref is None or pref.unsubscribed_all or row.channel not in (pref.channels or []):
        # The firm changed its mind after the decision: record why the row was not sent.
        row.status, row.last_error = "skipped", "企业已退订或取消了该推送方式"
        return "skipped"
    if row.channel == "sms" and (row.enterprise_id, normalize_phone(pref.phone or "") or "") not in verified:
        # An unverified number gets no SMS, whoever queued the row (fan-out, reminders, targeted pushes).
        row.status, row.last_error = "skipped", UNVERIFIED_PHONE
        return "skipped"
    channel = channels.get(row.channel)
    if channel is None:
        return _record(
            row,
            DeliveryResult(
                ok=False,
                retryable=False,
                detail=CHANNEL_NOT_CONFIGURED.get(row.channel, f"推送方式未配置：{row.channel}"),
            ),
            now,
        )
    recipient, why = _recipient(row.channel, pref, firm_name)
    if recipient is None:
        return _record(row, DeliveryResult(ok=False, retryable=False, detail=why or "接收方未设置"), now)
    sub_id = (row.payload or {}).get("subscription_id")
    scope = f"sub:{sub_id}" if sub_id else "all"
    message = Message(
        kind=message_kind(row.kind),
        title=row.title,
        body_text=row.body,
        # A tracked link: following it records the click (the funnel's "opened") and lands on row.url.
        url=events.click_url(settings=settings, delivery_id=row.id, base_url=base_url)
        if row.url or row.policy_id is not None
        else "",
        idempotency_key=f"d{row.id}",
        unsubscribe_url=unsubscribe_url(
            settings=settings, enterprise_id=row.enterprise_id, scope=scope, base_url=base_url
        ),
        data=dict(row.payload or {}),
    )
    return _record(row, channel.send(message, recipient), now)
