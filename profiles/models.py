"""Enterprise profiles and their qualifications."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Date, ForeignKey, Integer, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from catalog.models import Tag
from core.db import Base, utcnow

Money = Numeric(14, 2, asdecimal=False)  # 万元 with two decimals, read back as float


class Enterprise(Base):
    """A market entity (企业) with validated attributes and derived ones stored beside them."""

    __tablename__ = "enterprise"

    id: Mapped[int] = mapped_column(primary_key=True)
    credit_code: Mapped[str] = mapped_column(String(18), unique=True)  # 统一社会信用代码, checksum-validated
    name: Mapped[str] = mapped_column(String(200), index=True)
    region_code: Mapped[str | None] = mapped_column(String(6), index=True)  # GB/T 2260
    industry_code: Mapped[str | None] = mapped_column(String(6), index=True)  # GB/T 4754-2017, e.g. C3911
    established_on: Mapped[dt.date | None] = mapped_column(Date)
    registered_capital: Mapped[float | None] = mapped_column(Money)
    employees: Mapped[int | None] = mapped_column(Integer)
    annual_revenue: Mapped[float | None] = mapped_column(Money)
    total_assets: Mapped[float | None] = mapped_column(Money)
    rd_expense: Mapped[float | None] = mapped_column(Money)
    export_revenue: Mapped[float | None] = mapped_column(Money)
    credit_standing: Mapped[str | None] = mapped_column(String(20))
    tax_credit_level: Mapped[str | None] = mapped_column(String(2))
    business_scope: Mapped[str | None] = mapped_column(Text)
    products: Mapped[str | None] = mapped_column(Text)
    needs: Mapped[str | None] = mapped_column(Text)
    contact_name: Mapped[str | None] = mapped_column(String(60))
    contact_phone: Mapped[str | None] = mapped_column(String(40))
    contact_email: Mapped[str | None] = mapped_column(String(120))

    # Derived in profiles/derived.py on every write, stored so listings and batch matching need no recompute.
    size_class: Mapped[str | None] = mapped_column(String(10), index=True)
    rd_ratio: Mapped[float | None]
    completeness: Mapped[int] = mapped_column(default=0)  # percent of commonly required fields filled
    missing_fields: Mapped[list[str]] = mapped_column(JSON, default=list)
    profile_updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    qualifications: Mapped[list[EnterpriseQualification]] = relationship(
        back_populates="enterprise", cascade="all, delete-orphan", order_by="EnterpriseQualification.id"
    )


class EnterpriseQualification(Base):
    """A qualification (资质) an enterprise holds, from the tag vocabulary, with its expiry."""

    __tablename__ = "enterprise_qualification"

    id: Mapped[int] = mapped_column(primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprise.id", ondelete="CASCADE"), index=True)
    tag_id: Mapped[int] = mapped_column(ForeignKey("tag.id", ondelete="RESTRICT"))
    valid_until_on: Mapped[dt.date | None] = mapped_column(Date)

    enterprise: Mapped[Enterprise] = relationship(back_populates="qualifications")
    tag: Mapped[Tag] = relationship(lazy="joined")

    # A firm holds each qualification once; renewals update valid_until_on.
    __table_args__ = (UniqueConstraint("enterprise_id", "tag_id"),)


class EnterpriseClaim(Base):
    """Someone registered with the credit code of a firm already on the platform: staff confirm or refuse.

    Registration answers the same whether or not the code is known (no one learns which firms are registered
    by trying codes); for a known code the new account stays inactive until staff approve the claim.
    """

    __tablename__ = "enterprise_claim"

    id: Mapped[int] = mapped_column(primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprise.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))
    display_name: Mapped[str] = mapped_column(String(60))
    contact_phone: Mapped[str | None] = mapped_column(String(40))
    contact_email: Mapped[str | None] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)  # pending / approved / rejected
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[dt.datetime | None]
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))
    note: Mapped[str | None] = mapped_column(String(200))

    enterprise: Mapped[Enterprise] = relationship()
