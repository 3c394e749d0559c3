"""Matcher tables: enterprise tags, tag suggestions for curators, persisted match results."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, utcnow


class EnterpriseTag(Base):
    """A tag an enterprise carries, derived from its attributes or texts (enterprise side of 双向标签)."""

    __tablename__ = "enterprise_tag"

    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprise.id", ondelete="CASCADE"), primary_key=True)
    tag_id: Mapped[int] = mapped_column(ForeignKey("tag.id", ondelete="CASCADE"), primary_key=True, index=True)
    reason: Mapped[str] = mapped_column(String(40))  # why the firm has it: 企业规模, 所属行业 …


class PolicyTagSuggestion(Base):
    """A tag the matcher proposes for a policy; a curator accepts or rejects it."""

    __tablename__ = "policy_tag_suggestion"

    id: Mapped[int] = mapped_column(primary_key=True)
    policy_id: Mapped[int] = mapped_column(ForeignKey("policy.id", ondelete="CASCADE"), index=True)
    tag_id: Mapped[int] = mapped_column(ForeignKey("tag.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(20))  # keyword / rule / classifier
    score: Mapped[float] = mapped_column(Float, default=1.0)
    status: Mapped[str] = mapped_column(String(12), default="pending")  # pending / accepted / rejected
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))
    decided_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    # One open suggestion per tag; a rejected one is remembered so it is not proposed again.
    __table_args__ = (Index("uq_policy_tag_suggestion_policy_tag", "policy_id", "tag_id", unique=True),)


class MatchResult(Base):
    """The verdict and score of one enterprise for one policy version, as last computed."""

    __tablename__ = "match_result"

    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprise.id", ondelete="CASCADE"), primary_key=True)
    policy_id: Mapped[int] = mapped_column(ForeignKey("policy.id", ondelete="CASCADE"), primary_key=True)
    policy_version: Mapped[int] = mapped_column(Integer)
    # eligible / likely / ineligible — ineligible rows are kept only for near misses (one condition
    # short), which feed "what would open more policies" without storing every failed pair.
    status: Mapped[str] = mapped_column(String(12))
    score: Mapped[float] = mapped_column(Float)
    rule_score: Mapped[float] = mapped_column(Float)
    tag_score: Mapped[float] = mapped_column(Float)
    semantic_score: Mapped[float] = mapped_column(Float)
    similarity: Mapped[float | None] = mapped_column(Float)  # raw cosine, shown to the firm as a reason
    shared_tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Reasons in compact form: the state of each rule condition in document order
    # (2 met, 1 unknown, 0 not met); the Chinese wording is rendered from rules + profile on read.
    condition_states: Mapped[list[int]] = mapped_column(JSON, default=list)
    computed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    # The 免申即享 list reads by policy and verdict; a firm's list by enterprise and verdict.
    __table_args__ = (
        Index("ix_match_result_policy_status", "policy_id", "status"),
        Index("ix_match_result_enterprise_status", "enterprise_id", "status"),
    )


class PolicyMatchState(Base):
    """When a policy was last matched against every firm, even if no firm qualified, and what it found."""

    __tablename__ = "policy_match_state"

    policy_id: Mapped[int] = mapped_column(ForeignKey("policy.id", ondelete="CASCADE"), primary_key=True)
    policy_version: Mapped[int] = mapped_column(Integer)
    matched_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Denormalised counts of that run, for coverage figures without scanning every firm's matches.
    eligible: Mapped[int] = mapped_column(Integer, default=0)
    likely: Mapped[int] = mapped_column(Integer, default=0)
    # Whether match_result holds this policy's whole eligible / likely list (written on demand: staff
    # lists, 免申即享); every firm's ranked matches live in firm_match either way.
    listed: Mapped[bool] = mapped_column(Boolean, default=False)


class MatcherState(Base):
    """One row: the catalog revision every firm's stored matches have caught up with."""

    __tablename__ = "matcher_state"

    id: Mapped[int] = mapped_column(primary_key=True)  # always 1
    matched_revision: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class FirmTagState(Base):
    """When a firm's tags were derived, and with which vocabulary: tags are derived again only when
    the profile changed since, or the vocabulary did (its signature differs)."""

    __tablename__ = "firm_tag_state"

    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprise.id", ondelete="CASCADE"), primary_key=True)
    vocabulary: Mapped[str] = mapped_column(String(32))
    tagged_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class FirmMatch(Base):
    """A firm's ranked policies, ready to serve: the top candidates and the near misses, packed.

    Written by the batch pipeline (matcher/pipeline.py) and patched when one policy changes; read
    by one primary-key lookup per request (matcher/store.py has the format).
    """

    __tablename__ = "firm_match"

    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprise.id", ondelete="CASCADE"), primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger)  # catalog revision the matches were computed at
    profile_at: Mapped[dt.datetime]  # the profile_updated_at they were computed from
    computed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Denormalised counts over every open policy (not only the stored top), for figures and reminders.
    eligible: Mapped[int] = mapped_column(Integer, default=0)
    likely: Mapped[int] = mapped_column(Integer, default=0)
    payload: Mapped[bytes] = mapped_column(LargeBinary)


class FirmVector(Base):
    """A firm's profile embedding (profile text blended with its needs), for batch similarity."""

    __tablename__ = "firm_vector"

    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprise.id", ondelete="CASCADE"), primary_key=True)
    model_id: Mapped[str] = mapped_column(String(120))
    text_key: Mapped[str] = mapped_column(String(32))  # digest of the texts embedded: re-embed when it differs
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float16, the embedder's dimension
    embedded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class MatchRun(Base):
    """One batch run over every firm, checkpointed per chunk so a killed run resumes where it stopped."""

    __tablename__ = "match_run"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # all / changed / firms
    key: Mapped[str] = mapped_column(String(64))  # what the run computes; a resumed run must have the same key
    revision: Mapped[int] = mapped_column(BigInteger)
    # Chunk k holds the firms with ids in [first_id + k·width, first_id + (k+1)·width): stable when
    # firms are added or removed while a killed run waits to resume.
    first_id: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    chunks: Mapped[int] = mapped_column(Integer)
    chunks_done: Mapped[int] = mapped_column(Integer, default=0)
    firms: Mapped[int] = mapped_column(Integer)
    firms_done: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(12), default="running")  # running / done / stopped
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]

    # A resumed run is found by what it computes.
    __table_args__ = (Index("ix_match_run_key_status", "key", "status"),)


class MatchRunChunk(Base):
    """A chunk of a run whose results are committed; written in the same transaction as them."""

    __tablename__ = "match_run_chunk"

    run_id: Mapped[int] = mapped_column(ForeignKey("match_run.id", ondelete="CASCADE"), primary_key=True)
    chunk_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    firms: Mapped[int] = mapped_column(Integer)
    # Per-policy eligible and likely counts of the chunk (int32 pairs, in the run's policy order),
    # summed when the run ends so a resumed run reports the same figures as an uninterrupted one.
    counts: Mapped[bytes] = mapped_column(LargeBinary)
    done_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ListRun(Base):
    """A listing of policies against every firm (their `match_result` rows), checkpointed per unit of firms.

    Unit k holds the firms with ids in [first_id + k·width, first_id + (k+1)·width). Each unit's rows
    are written with its checkpoint (`list_run_unit`), so a listing stopped or killed resumes at the
    units not written. Its policies (`list_run_policy`) are marked not listed when it starts and listed,
    with the summed counts, when its last unit is written.
    """

    __tablename__ = "list_run"

    id: Mapped[int] = mapped_column(primary_key=True)
    # list: lists only (the firms' stored matches include the policies); patch: one policy's list and
    # every firm's stored matches patched with it.
    kind: Mapped[str] = mapped_column(String(12))
    key: Mapped[str] = mapped_column(String(64))  # what the listing computes with (day, weights, model, vocabulary)
    first_id: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    units: Mapped[int] = mapped_column(Integer)
    units_done: Mapped[int] = mapped_column(Integer, default=0)
    policies: Mapped[int] = mapped_column(Integer)  # length of the per-unit counts (positions of list_run_policy)
    status: Mapped[str] = mapped_column(String(12), default="running")  # running / done / abandoned
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]

    __table_args__ = (Index("ix_list_run_status_kind", "status", "kind"),)


class ListRunPolicy(Base):
    """A policy of a listing, at the version it is listed at; dropped (not active) when it is no longer
    wanted or was edited while the listing waited: the listing then neither writes nor records it."""

    __tablename__ = "list_run_policy"

    run_id: Mapped[int] = mapped_column(ForeignKey("list_run.id", ondelete="CASCADE"), primary_key=True)
    policy_id: Mapped[int] = mapped_column(ForeignKey("policy.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)  # in the per-unit counts
    policy_version: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class ListRunUnit(Base):
    """A unit of a listing whose rows are committed; written in the same transaction as them."""

    __tablename__ = "list_run_unit"

    run_id: Mapped[int] = mapped_column(ForeignKey("list_run.id", ondelete="CASCADE"), primary_key=True)
    unit_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    firms: Mapped[int] = mapped_column(Integer)
    # Eligible and likely counts of the unit per policy position (int32 pairs, zlib), summed at the end.
    counts: Mapped[bytes] = mapped_column(LargeBinary)
    done_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Feedback(Base):
    """A firm's word on a policy: interested, not relevant, applied. Append-only; the latest counts."""

    __tablename__ = "policy_feedback"

    id: Mapped[int] = mapped_column(primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprise.id", ondelete="CASCADE"))
    policy_id: Mapped[int] = mapped_column(ForeignKey("policy.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(20))  # interested / not_relevant / applied
    source: Mapped[str] = mapped_column(String(20), default="recommendation")  # recommendation / push / policy_page
    delivery_id: Mapped[int | None]  # the push it answers, when it came from one (no FK: push depends on matcher)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))
    # Ranking components at the time, so `huiqi train ranker` learns from what the firm saw.
    components: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_policy_feedback_firm_policy", "enterprise_id", "policy_id", "created_at"),)
