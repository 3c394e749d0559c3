"""Tables of applications (申报), their status history, and 免申即享 rosters with their entries."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from catalog.models import Money, Policy
from core.db import Base, utcnow
from profiles.models import Enterprise


class ApplicationStatus(enum.StrEnum):
    submitted = "submitted"  # 已申报
    accepted = "accepted"  # 已受理
    reviewing = "reviewing"  # 审核中
    publicized = "publicized"  # 公示
    paid = "paid"  # 已兑现
    rejected = "rejected"  # 未通过
    withdrawn = "withdrawn"  # 撤回


STATUS_LABELS: dict[str, str] = {
    "submitted": "已申报",
    "accepted": "已受理",
    "reviewing": "审核中",
    "publicized": "公示",
    "paid": "已兑现",
    "rejected": "未通过",
    "withdrawn": "已撤回",
}


class ExemptStatus(enum.StrEnum):
    pending = "pending"  # 待确认
    confirmed = "confirmed"  # 已确认
    excluded = "excluded"  # 已排除
    paid = "paid"  # 已兑现


EXEMPT_LABELS: dict[str, str] = {"pending": "待确认", "confirmed": "已确认", "excluded": "已排除", "paid": "已兑现"}


class Application(Base):
    """A firm's application (申报) for a policy: one per firm and policy, its status and outcome."""

    __tablename__ = "application"

    id: Mapped[int] = mapped_column(primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprise.id", ondelete="CASCADE"), index=True)
    policy_id: Mapped[int] = mapped_column(ForeignKey("policy.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(20), index=True)
    source: Mapped[str] = mapped_column(String(20))  # firm (the firm applied here) / import / staff
    amount: Mapped[float | None] = mapped_column(Money)  # 万元, when paid
    paid_on: Mapped[dt.date | None] = mapped_column(Date)
    reason: Mapped[str | None] = mapped_column(String(500))  # why it did not pass
    submitted_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    policy: Mapped[Policy] = relationship(lazy="joined")
    enterprise: Mapped[Enterprise] = relationship(lazy="joined")
    events: Mapped[list[ApplicationEvent]] = relationship(
        back_populates="application", cascade="all, delete-orphan", order_by="ApplicationEvent.id"
    )

    __table_args__ = (UniqueConstraint("enterprise_id", "policy_id"),)


class ApplicationEvent(Base):
    """One change of an application's status: who, when, from what to what, and the note."""

    __tablename__ = "application_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("application.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(20))
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))
    actor_role: Mapped[str] = mapped_column(String(20))
    actor_name: Mapped[str] = mapped_column(String(60))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    application: Mapped[Application] = relationship(back_populates="events")


class ExemptRoster(Base):
    """A dated snapshot (名单) of the firms eligible for a 免申即享 policy, frozen by staff."""

    __tablename__ = "exempt_roster"

    id: Mapped[int] = mapped_column(primary_key=True)
    policy_id: Mapped[int] = mapped_column(ForeignKey("policy.id", ondelete="CASCADE"), index=True)
    frozen_on: Mapped[dt.date] = mapped_column(Date)
    frozen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    policy_version: Mapped[int]
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))
    created_by_name: Mapped[str] = mapped_column(String(60))
    note: Mapped[str | None] = mapped_column(String(200))

    policy: Mapped[Policy] = relationship(lazy="joined")
    entries: Mapped[list[ExemptEntry]] = relationship(
        back_populates="roster", cascade="all, delete-orphan", order_by="ExemptEntry.id"
    )


class ExemptEntry(Base):
    """One firm of a roster: confirmed or excluded (with the reason), and its payout."""

    __tablename__ = "exempt_entry"

    id: Mapped[int] = mapped_column(primary_key=True)
    roster_id: Mapped[int] = mapped_column(ForeignKey("exempt_roster.id", ondelete="CASCADE"))
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprise.id", ondelete="CASCADE"), index=True)
    policy_id: Mapped[int] = mapped_column(ForeignKey("policy.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(20))
    match_status: Mapped[str] = mapped_column(String(20))  # the matcher's verdict when frozen
    reason: Mapped[str | None] = mapped_column(String(500))
    amount: Mapped[float | None] = mapped_column(Money)
    paid_on: Mapped[dt.date | None] = mapped_column(Date)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))
    decided_by_name: Mapped[str | None] = mapped_column(String(60))
    decided_at: Mapped[dt.datetime | None]

    roster: Mapped[ExemptRoster] = relationship(back_populates="entries")
    enterprise: Mapped[Enterprise] = relationship(lazy="joined")

    __table_args__ = (
        UniqueConstraint("roster_id", "enterprise_id"),
        Index("ix_exempt_entry_roster_status", "roster_id", "status"),
    )
