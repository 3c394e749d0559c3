"""Desk tables: cases (企业诉求工单), their append-only timeline, joint departments, pauses, FAQ entries.

A case's ``department_id`` is its lead (承办) department; None while it waits in the central dispatch
queue (统一分拨). Joint handling (会办) lists the lead and the assisting departments in
``desk_case_department``. Every change of a case appends a :class:`CaseEvent`; events are never
updated or deleted.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, utcnow
from desk.sla import Kind

# Python None is stored as SQL NULL (not JSON null), so "IS NULL" finds the empty ones.
NullableJSON = JSON(none_as_null=True)
INTAKE_PENDING = text("intake_done_at IS NULL")


class CaseStatus(enum.StrEnum):
    submitted = "submitted"  # received, not yet answered or dispatched
    answered = "answered"  # instant answer shown; the firm may accept it or ask for a person
    dispatched = "dispatched"  # sent to a department (or waiting in the central queue when department_id is None)
    accepted = "accepted"  # the department took it on
    in_progress = "in_progress"  # phased replies given
    resolved = "resolved"  # the department gave its final reply; waiting for the firm's rating
    rated = "rated"  # rated satisfied / basically satisfied
    reopened = "reopened"  # rated dissatisfied (or reopened by a supervisor): back to the department, supervised
    closed = "closed"


STATUS_LABELS: dict[str, str] = {
    "submitted": "已受理",
    "answered": "已即时答复",
    "dispatched": "已分拨",
    "accepted": "已签收",
    "in_progress": "办理中",
    "resolved": "已办结待评价",
    "rated": "已评价",
    "reopened": "已重办（督办）",
    "closed": "已关闭",
}


class Channel(enum.StrEnum):
    web = "web"
    api = "api"
    hotline = "hotline"  # 12345
    proxy = "proxy"  # 代提: staff file on behalf of a firm after a visit
    import_ = "import"  # bulk import of a 12345 export


CHANNEL_LABELS: dict[str, str] = {
    "web": "网上提交",
    "api": "系统对接",
    "hotline": "12345热线",
    "proxy": "走访代提",
    "import": "批量导入",
}


class Rating(enum.StrEnum):
    satisfied = "satisfied"
    basically_satisfied = "basically_satisfied"
    dissatisfied = "dissatisfied"


RATING_LABELS: dict[str, str] = {"satisfied": "满意", "basically_satisfied": "基本满意", "dissatisfied": "不满意"}


class EventKind(enum.StrEnum):
    submitted = "submitted"
    answered_instantly = "answered_instantly"
    accepted_answer = "accepted_answer"
    asked_for_person = "asked_for_person"
    dispatched = "dispatched"
    assigned = "assigned"
    transferred = "transferred"
    returned = "returned"
    return_requested = "return_requested"
    return_rejected = "return_rejected"
    accepted = "accepted"
    contacted = "contacted"
    replied = "replied"
    resolved = "resolved"
    rated = "rated"
    closed = "closed"
    reopened = "reopened"
    supervised = "supervised"
    revisited = "revisited"
    extension_requested = "extension_requested"
    extension_approved = "extension_approved"
    extension_rejected = "extension_rejected"
    joint_added = "joint_added"
    paused = "paused"
    resumed = "resumed"
    escalated = "escalated"
    kind_corrected = "kind_corrected"
    note = "note"


EVENT_LABELS: dict[str, str] = {
    "submitted": "提交诉求",
    "answered_instantly": "即时答复",
    "accepted_answer": "企业采纳答复",
    "asked_for_person": "企业要求人工办理",
    "dispatched": "分拨",
    "assigned": "人工分拨",
    "transferred": "转办",
    "returned": "退单",
    "return_requested": "申请退单",
    "return_rejected": "退单申请被驳回",
    "accepted": "签收",
    "contacted": "联系企业",
    "replied": "阶段性答复",
    "resolved": "办结答复",
    "rated": "评价",
    "closed": "关闭",
    "reopened": "重新办理",
    "supervised": "督办",
    "revisited": "回访",
    "extension_requested": "申请延期",
    "extension_approved": "延期获批",
    "extension_rejected": "延期被驳回",
    "joint_added": "增加会办部门",
    "paused": "挂起（等待企业）",
    "resumed": "恢复计时",
    "escalated": "升级督办",
    "kind_corrected": "更正诉求类型",
    "note": "备注",
}


class RoutingMethod(enum.StrEnum):
    policy = "policy"  # the related policy's handling department
    classifier = "classifier"  # the trained text classifier
    keywords = "keywords"  # keyword rules
    dispatch = "dispatch"  # not confident: central dispatch queue
    manual = "manual"  # set by staff (assign / transfer / 代提 with a department)


class Case(Base):
    """One enquiry, request for help, complaint, report or suggestion from a firm (诉求工单)."""

    __tablename__ = "desk_case"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(40), unique=True)  # e.g. HQ20261123-000123
    kind: Mapped[Kind] = mapped_column(String(20), index=True)
    kind_detected: Mapped[bool] = mapped_column(Boolean, default=False)  # guessed from the text, not given
    kind_confidence: Mapped[float | None] = mapped_column(Float)
    title: Mapped[str] = mapped_column(String(200))
    content: Mapped[str] = mapped_column(Text)
    channel: Mapped[str] = mapped_column(String(20), index=True)
    enterprise_id: Mapped[int | None] = mapped_column(ForeignKey("enterprise.id", ondelete="SET NULL"), index=True)
    submitted_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_key.id", ondelete="SET NULL"))
    external_ref: Mapped[str | None] = mapped_column(String(80))  # e.g. the 12345 order number
    contact_name: Mapped[str | None] = mapped_column(String(60))
    contact_phone: Mapped[str | None] = mapped_column(String(40))
    related_policy_id: Mapped[int | None] = mapped_column(ForeignKey("policy.id", ondelete="SET NULL"), index=True)
    # Lead (承办) department; None = central dispatch queue (统一分拨).
    department_id: Mapped[int | None] = mapped_column(ForeignKey("department.id", ondelete="RESTRICT"), index=True)
    status: Mapped[str] = mapped_column(String(20), index=True, default=CaseStatus.submitted)
    routing_method: Mapped[str | None] = mapped_column(String(20))
    routing_confidence: Mapped[float | None] = mapped_column(Float)
    routing_candidates: Mapped[list[Any] | None] = mapped_column(NullableJSON)  # [[department code, score], ...]
    instant_answer: Mapped[dict[str, Any] | None] = mapped_column(NullableJSON)  # desk.answer.InstantAnswer.to_dict()
    idempotency_scope: Mapped[str | None] = mapped_column(String(40))  # "user:<id>" / "apikey:<id>"
    idempotency_key: Mapped[str | None] = mapped_column(String(100))
    visit_record: Mapped[dict[str, Any] | None] = mapped_column(
        NullableJSON
    )  # 代提 {visited_on, visitor, location, note}
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    resolution: Mapped[str | None] = mapped_column(Text)  # the final reply (办结答复)

    # SLA clock (desk/sla.py)
    sla_profile: Mapped[str] = mapped_column(String(40))
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Where the clocks start: received_at, or when the firm asked for a person after an instant answer.
    sla_started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    contact_due_at: Mapped[dt.datetime | None]
    reply_due_at: Mapped[dt.datetime | None]
    close_due_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    due_provisional: Mapped[bool] = mapped_column(Boolean, default=False)
    due_warnings: Mapped[list[str]] = mapped_column(JSON, default=list)
    sla_state: Mapped[str] = mapped_column(String(20), default="on_track", index=True)
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)  # 0 none, 1 yellow, 2 orange, 3 red
    paused: Mapped[bool] = mapped_column(Boolean, default=False)  # a pause (waiting on the firm) is open
    # Approved extensions (延期), applied in order to the close deadline: [{amount, unit, reason, approved_at, ...}]
    extensions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # A pending extension request: {amount, unit, reason, requested_at, requested_by_id}; None when none pending.
    extension_request: Mapped[dict[str, Any] | None] = mapped_column(NullableJSON)
    extension_requested_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    # A pending return (退单) request: {reason, requested_at, requested_by_id, department_id}.
    return_request: Mapped[dict[str, Any] | None] = mapped_column(NullableJSON)
    return_requested_at: Mapped[dt.datetime | None] = mapped_column(index=True)

    dispatched_at: Mapped[dt.datetime | None]
    accepted_at: Mapped[dt.datetime | None]
    contacted_at: Mapped[dt.datetime | None]
    first_reply_at: Mapped[dt.datetime | None]
    resolved_at: Mapped[dt.datetime | None]
    closed_at: Mapped[dt.datetime | None]
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    supervised: Mapped[bool] = mapped_column(Boolean, default=False)  # 督办
    rating: Mapped[str | None] = mapped_column(String(30))
    rating_comment: Mapped[str | None] = mapped_column(Text)
    rated_at: Mapped[dt.datetime | None]
    # When intake recorded its outcome (instant answer or dispatch); NULL between the acknowledgement and
    # that record — the claim that makes the outcome exactly once, and what the desk.finish_intake job looks for.
    intake_done_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    # Set (not stored) by desk.intake when an idempotency key returned an existing case.
    replayed = False

    events: Mapped[list[CaseEvent]] = relationship(
        back_populates="case", order_by="CaseEvent.id", cascade="all, delete-orphan", passive_deletes=True
    )
    departments: Mapped[list[CaseDepartment]] = relationship(
        back_populates="case", cascade="all, delete-orphan", passive_deletes=True
    )
    pauses: Mapped[list[CasePause]] = relationship(
        back_populates="case", order_by="CasePause.start", cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (
        # The same idempotency key from the same caller never makes a second case.
        Index("uq_desk_case_idempotency", "idempotency_scope", "idempotency_key", unique=True),
        Index("ix_desk_case_department_status", "department_id", "status"),
        # The few cases still waiting for their intake outcome, found without reading the others.
        Index("ix_desk_case_intake_pending", "id", sqlite_where=INTAKE_PENDING, postgresql_where=INTAKE_PENDING),
    )


class CaseEvent(Base):
    """One entry of a case's timeline: who did what, when, from which status to which."""

    __tablename__ = "desk_case_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("desk_case.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(30), index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))  # None = system
    actor_role: Mapped[str | None] = mapped_column(String(20))  # role, or "system" / "api_key"
    actor_name: Mapped[str | None] = mapped_column(String(80))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("department.id", ondelete="SET NULL"))
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str | None] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    visible_to_firm: Mapped[bool] = mapped_column(Boolean, default=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)

    case: Mapped[Case] = relationship(back_populates="events")


class CaseDepartment(Base):
    """A department handling a case: the lead (承办) or an assisting one (会办)."""

    __tablename__ = "desk_case_department"

    case_id: Mapped[int] = mapped_column(ForeignKey("desk_case.id", ondelete="CASCADE"), primary_key=True)
    department_id: Mapped[int] = mapped_column(
        ForeignKey("department.id", ondelete="RESTRICT"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String(10), default="lead")  # lead / assist
    added_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    case: Mapped[Case] = relationship(back_populates="departments")


class CasePause(Base):
    """A time the case's clocks stand still while waiting on the firm (挂起); end is None while it lasts."""

    __tablename__ = "desk_case_pause"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("desk_case.id", ondelete="CASCADE"), index=True)
    start: Mapped[dt.datetime]
    end: Mapped[dt.datetime | None]
    reason: Mapped[str] = mapped_column(String(500))

    case: Mapped[Case] = relationship(back_populates="pauses")


class FaqEntry(Base):
    """A curated question and answer of the knowledge base, or a resolved answer promoted by staff."""

    __tablename__ = "desk_faq"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)  # e.g. faq-001
    question: Mapped[str] = mapped_column(String(500))
    answer: Mapped[str] = mapped_column(Text)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("department.id", ondelete="SET NULL"), index=True)
    keywords: Mapped[list[str]] = mapped_column(JSON, default=list)
    related_policies: Mapped[list[str]] = mapped_column(JSON, default=list)  # policy titles, as curated
    source: Mapped[str] = mapped_column(String(10), default="curated")  # curated / promoted
    case_id: Mapped[int | None] = mapped_column(ForeignKey("desk_case.id", ondelete="SET NULL"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (UniqueConstraint("case_id", name="uq_desk_faq_case_id"),)


class PolicyRating(Base):
    """A firm's rating of a policy it viewed or applied to (政企互动): 1–5 stars and an optional comment.

    One per firm and policy; the firm edits it in place (`updated_at`). Comments are user text: stored as
    written (length-capped by the schema), escaped wherever they are shown.
    """

    __tablename__ = "policy_rating"

    id: Mapped[int] = mapped_column(primary_key=True)
    policy_id: Mapped[int] = mapped_column(ForeignKey("policy.id", ondelete="CASCADE"))
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprise.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))
    stars: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)  # hot topics read a window of it

    __table_args__ = (
        # One rating per firm and policy; rating again edits it.
        UniqueConstraint("policy_id", "enterprise_id"),
    )
