"""Catalog tables: departments, the category taxonomy, the tag vocabulary, policies and versions."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    Enum,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, utcnow

Money = Numeric(14, 2, asdecimal=False)  # 万元 with two decimals, read back as float


class PolicyLevel(enum.StrEnum):
    national = "national"
    provincial = "provincial"
    municipal = "municipal"
    county = "county"


class PolicyType(enum.StrEnum):
    application = "application"  # 申报类
    exempt = "exempt"  # 免申即享
    informational = "informational"  # 普惠告知


class PolicyStatus(enum.StrEnum):
    draft = "draft"
    published = "published"
    expired = "expired"
    withdrawn = "withdrawn"


class TagKind(enum.StrEnum):
    industry = "industry"
    size = "size"
    qualification = "qualification"
    benefit = "benefit"
    stage = "stage"
    region = "region"


LEVEL_LABELS = {"national": "国家级", "provincial": "省级", "municipal": "市级", "county": "区县级"}
TYPE_LABELS = {"application": "申报类", "exempt": "免申即享", "informational": "普惠告知"}
STATUS_LABELS = {"draft": "草稿", "published": "已发布", "expired": "已过期", "withdrawn": "已撤回"}
TAG_KIND_LABELS = {
    "industry": "行业",
    "size": "规模",
    "qualification": "资质",
    "benefit": "扶持方式",
    "stage": "发展阶段",
    "region": "区域",
}


def _enum(e: type[enum.Enum], name: str) -> Enum:
    # Stored as plain strings with a CHECK constraint: portable and readable in SQL.
    return Enum(e, name=name, native_enum=False, length=20, values_callable=lambda x: [m.value for m in x])


class Department(Base):
    """An issuing or handling unit (发文/承办单位)."""

    __tablename__ = "department"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)  # stable key for imports and demo data
    name: Mapped[str] = mapped_column(String(120), unique=True)
    short_name: Mapped[str] = mapped_column(String(40))
    region_code: Mapped[str] = mapped_column(String(6))
    contact_phone: Mapped[str | None] = mapped_column(String(40))
    contact_email: Mapped[str | None] = mapped_column(String(120))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Category(Base):
    """A node of the two-level policy taxonomy (大类 / 小类)."""

    __tablename__ = "category"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(String(60))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("category.id", ondelete="RESTRICT"), index=True)
    sort_order: Mapped[int] = mapped_column(default=0)

    parent: Mapped[Category | None] = relationship(remote_side=[id], back_populates="children")
    children: Mapped[list[Category]] = relationship(back_populates="parent", order_by="Category.sort_order")

    # A sub-class name may repeat under different parents, never under the same one.
    __table_args__ = (UniqueConstraint("parent_id", "name"),)


class Tag(Base):
    """A term of the shared vocabulary used to tag both policies and enterprises."""

    __tablename__ = "tag"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(60), unique=True)
    kind: Mapped[TagKind] = mapped_column(_enum(TagKind, "tag_kind"))
    synonyms: Mapped[list[str]] = mapped_column(JSON, default=list)  # abbreviations and variants
    description: Mapped[str | None] = mapped_column(Text)


class Topic(Base):
    """A topic column (专栏) that groups policies for a campaign or audience."""

    __tablename__ = "topic"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(60), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    sort_order: Mapped[int] = mapped_column(default=0)


policy_category = Table(
    "policy_category",
    Base.metadata,
    Column("policy_id", ForeignKey("policy.id", ondelete="CASCADE"), primary_key=True),
    Column("category_id", ForeignKey("category.id", ondelete="RESTRICT"), primary_key=True, index=True),
)
policy_tag = Table(
    "policy_tag",
    Base.metadata,
    Column("policy_id", ForeignKey("policy.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", ForeignKey("tag.id", ondelete="RESTRICT"), primary_key=True, index=True),
)
policy_topic = Table(
    "policy_topic",
    Base.metadata,
    Column("policy_id", ForeignKey("policy.id", ondelete="CASCADE"), primary_key=True),
    Column("topic_id", ForeignKey("topic.id", ondelete="RESTRICT"), primary_key=True, index=True),
)


class Policy(Base):
    """A support policy (惠企政策) with its summary, interpreter, window and eligibility rules."""

    __tablename__ = "policy"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    doc_number: Mapped[str | None] = mapped_column(String(80), unique=True)  # 文号; import key when present
    issuing_department_id: Mapped[int] = mapped_column(ForeignKey("department.id", ondelete="RESTRICT"), index=True)
    handling_department_id: Mapped[int | None] = mapped_column(
        ForeignKey("department.id", ondelete="SET NULL"), index=True
    )
    level: Mapped[PolicyLevel] = mapped_column(_enum(PolicyLevel, "policy_level"))
    policy_type: Mapped[PolicyType] = mapped_column(_enum(PolicyType, "policy_type"))
    summary: Mapped[str | None] = mapped_column(Text)
    interpretation: Mapped[str | None] = mapped_column(Text)
    interpreter_name: Mapped[str | None] = mapped_column(String(60))
    interpreter_contact: Mapped[str | None] = mapped_column(String(120))
    full_text: Mapped[str | None] = mapped_column(Text)
    apply_start_on: Mapped[dt.date | None] = mapped_column(Date)
    apply_end_on: Mapped[dt.date | None] = mapped_column(Date, index=True)
    valid_from_on: Mapped[dt.date | None] = mapped_column(Date)
    valid_to_on: Mapped[dt.date | None] = mapped_column(Date)
    max_amount: Mapped[float | None] = mapped_column(Money)
    amount_text: Mapped[str | None] = mapped_column(String(500))
    apply_url: Mapped[str | None] = mapped_column(String(500))
    rules: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[PolicyStatus] = mapped_column(
        _enum(PolicyStatus, "policy_status"), default=PolicyStatus.draft, index=True
    )
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[int] = mapped_column(Integer, default=0)  # number of the latest PolicyVersion; 0 = never published
    # Denormalised: simplified, NFKC title + summary + 文号 so keyword search is one indexed column.
    search_text: Mapped[str] = mapped_column(Text, default="")
    published_at: Mapped[dt.datetime | None]
    withdrawn_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))

    issuing_department: Mapped[Department] = relationship(foreign_keys=[issuing_department_id], lazy="joined")
    handling_department: Mapped[Department | None] = relationship(foreign_keys=[handling_department_id])
    categories: Mapped[list[Category]] = relationship(secondary=policy_category, order_by="Category.code")
    tags: Mapped[list[Tag]] = relationship(secondary=policy_tag, order_by="Tag.name")
    topics: Mapped[list[Topic]] = relationship(secondary=policy_topic, order_by="Topic.sort_order")
    regions: Mapped[list[PolicyRegion]] = relationship(
        cascade="all, delete-orphan", order_by="PolicyRegion.region_code", lazy="selectin"
    )

    @property
    def region_codes(self) -> list[str]:
        """Return the GB/T 2260 codes the policy applies to; empty means everywhere."""
        return [r.region_code for r in self.regions]

    # One department does not issue two policies with the same title: the import key without 文号.
    # (status, updated_at): the published set's count and last change read from the index alone
    # (the matcher's policy index checks it on every search).
    __table_args__ = (
        UniqueConstraint("issuing_department_id", "title"),
        Index("ix_policy_status_updated", "status", "updated_at"),
    )


class PolicyRegion(Base):
    """A region a policy applies to; a table (not JSON) so region filters are indexed SQL."""

    __tablename__ = "policy_region"

    policy_id: Mapped[int] = mapped_column(ForeignKey("policy.id", ondelete="CASCADE"), primary_key=True)
    region_code: Mapped[str] = mapped_column(String(6), primary_key=True, index=True)


class PolicyVersion(Base):
    """An immutable snapshot of a policy, written on publish and on every edit after it."""

    __tablename__ = "policy_version"

    id: Mapped[int] = mapped_column(primary_key=True)
    policy_id: Mapped[int] = mapped_column(ForeignKey("policy.id", ondelete="CASCADE"), index=True)
    version: Mapped[int]
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)
    note: Mapped[str | None] = mapped_column(String(200))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    # Version numbers are per policy and never reused.
    __table_args__ = (UniqueConstraint("policy_id", "version"),)


class CatalogRevision(Base):
    """One row counting changes that matching depends on (publish, edit, withdraw, taxonomy).

    Serving compares it with the revision a firm's stored matches were computed at: one indexed read
    says whether they are current, however large the catalog.
    """

    __tablename__ = "catalog_revision"

    id: Mapped[int] = mapped_column(primary_key=True)  # always 1
    revision: Mapped[int] = mapped_column(BigInteger)
    changed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PolicyIntake(Base):
    """What intake read from a policy document and proposed for the draft made from it.

    The curator reviews these proposals in the editor (each with its source sentence and confidence);
    the sections keep the document's structure for passage retrieval. The original file itself is
    kept by the policy attachments, not here.
    """

    __tablename__ = "policy_intake"

    id: Mapped[int] = mapped_column(primary_key=True)
    policy_id: Mapped[int] = mapped_column(ForeignKey("policy.id", ondelete="CASCADE"), unique=True)
    filename: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(10))  # pdf, docx, html, text
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    sections: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    proposals: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # fields, conditions, tags, duplicates
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))
