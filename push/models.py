"""Push tables: per-firm preferences and subscriptions, the delivery outbox (which is also the
in-app inbox), and staff's targeted pushes. Feedback lives with the matcher, whose ranking uses it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, utcnow


class PushPreference(Base):
    """How and how often a firm wants to hear from us; absent means the defaults."""

    __tablename__ = "push_preference"

    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprise.id", ondelete="CASCADE"), primary_key=True)
    channels: Mapped[list[str]] = mapped_column(JSON, default=lambda: ["inbox"])  # inbox / email / sms / webhook
    frequency: Mapped[str] = mapped_column(String(10), default="instant")  # instant / daily / weekly
    quiet_start: Mapped[str] = mapped_column(String(5), default="22:00")  # no SMS from …
    quiet_end: Mapped[str] = mapped_column(String(5), default="08:00")  # … until
    weekly_cap: Mapped[int] = mapped_column(Integer, default=10)  # pushes per week beyond the inbox
    email: Mapped[str | None] = mapped_column(String(120))
    phone: Mapped[str | None] = mapped_column(String(40))
    webhook_url: Mapped[str | None] = mapped_column(String(500))
    webhook_secret: Mapped[str | None] = mapped_column(String(200))
    webhook_format: Mapped[str] = mapped_column(String(10), default="huiqi")
    unsubscribed_all: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Subscription(Base):
    """A category or keyword a firm follows; matching policies are pushed even when only likely."""

    __tablename__ = "push_subscription"

    id: Mapped[int] = mapped_column(primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprise.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(10))  # category / keyword
    value: Mapped[str] = mapped_column(String(60))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    # A firm follows a category or keyword once.
    __table_args__ = (UniqueConstraint("enterprise_id", "kind", "value"),)


class Delivery(Base):
    """One push of one message to one firm through one channel: the outbox row.

    Created in the same transaction as the decision to push, and unique per (firm, policy, kind,
    policy version, channel), so a crash can neither lose a push nor send it twice. Rows of the
    inbox channel are the in-app inbox.
    """

    __tablename__ = "push_delivery"

    id: Mapped[int] = mapped_column(primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprise.id", ondelete="CASCADE"))
    policy_id: Mapped[int | None] = mapped_column(ForeignKey("policy.id", ondelete="CASCADE"), index=True)
    # 0 for pushes about no particular policy version (digests use the digest's period key instead).
    policy_version: Mapped[int] = mapped_column(Integer, default=0)
    kind: Mapped[str] = mapped_column(String(20))  # new_match / digest / deadline_reminder / policy_changed / manual …
    dedupe_key: Mapped[str] = mapped_column(String(40), default="")  # period of a digest, reminder day, manual push id
    channel: Mapped[str] = mapped_column(String(10))  # inbox / email / sms / webhook
    status: Mapped[str] = mapped_column(String(10), default="pending")  # pending / sent / failed / dead / skipped
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(String(500))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(String(500))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None]
    read_at: Mapped[dt.datetime | None]  # inbox: read; other channels: opened (tracked link)
    clicked_at: Mapped[dt.datetime | None]

    __table_args__ = (
        # Exactly once: the same decision for the same version through the same channel is one row.
        UniqueConstraint("enterprise_id", "policy_id", "kind", "policy_version", "dedupe_key", "channel"),
        # NULLs are distinct in a unique constraint, so pushes about no policy (digests, profile
        # reminders) get their own partial unique index: one per firm, kind, period and channel.
        Index(
            "uq_push_delivery_no_policy",
            "enterprise_id",
            "kind",
            "dedupe_key",
            "channel",
            unique=True,
            sqlite_where=text("policy_id IS NULL"),
            postgresql_where=text("policy_id IS NULL"),
        ),
        # The sender picks due rows; the inbox lists a firm's rows newest first.
        Index("ix_push_delivery_due", "status", "next_attempt_at"),
        Index("ix_push_delivery_firm_channel", "enterprise_id", "channel", "created_at"),
    )


class ManualPush(Base):
    """A targeted push (人工定向) a staff member sent: the filter, the reach and who sent it."""

    __tablename__ = "push_manual"

    id: Mapped[int] = mapped_column(primary_key=True)
    policy_id: Mapped[int] = mapped_column(ForeignKey("policy.id", ondelete="CASCADE"))
    filters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    channels: Mapped[list[str]] = mapped_column(JSON, default=list)
    enterprise_count: Mapped[int] = mapped_column(Integer, default=0)
    note: Mapped[str | None] = mapped_column(String(200))
    message: Mapped[str | None] = mapped_column(Text)  # what firms read besides the policy; kept for re-delivery
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PolicyEvent(Base):
    """One thing a firm did with a policy, for the funnel: viewed its page, ran the calculator and saw
    it, opened or clicked a push about it. Append-only; the funnel counts distinct firms per kind."""

    __tablename__ = "policy_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprise.id", ondelete="CASCADE"))
    policy_id: Mapped[int] = mapped_column(ForeignKey("policy.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(12))  # viewed / calculator / opened / clicked
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("push_delivery.id", ondelete="SET NULL"))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    # The funnel counts distinct firms per policy and kind; the firm id makes the index covering.
    __table_args__ = (Index("ix_policy_event_policy_kind", "policy_id", "kind", "enterprise_id"),)
