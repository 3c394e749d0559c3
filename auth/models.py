"""User accounts and API keys."""

from __future__ import annotations

import datetime as dt
import enum
from typing import TYPE_CHECKING

from sqlalchemy import Boolean, Enum, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, utcnow

if TYPE_CHECKING:  # auth sits below catalog and profiles; the relationships resolve by class name
    from catalog.models import Department
    from profiles.models import Enterprise


class Role(enum.StrEnum):
    admin = "admin"
    curator = "curator"  # maintains the catalog
    desk = "desk"  # desk officer, bound to a department
    supervisor = "supervisor"  # sees all desk work
    enterprise = "enterprise"  # a firm's user, bound to one enterprise


ROLE_LABELS = {
    "admin": "系统管理员",
    "curator": "政策管理员",
    "desk": "业务专员",
    "supervisor": "督办人员",
    "enterprise": "企业用户",
}

_role_type = Enum(Role, name="user_role", native_enum=False, length=20, values_callable=lambda x: [m.value for m in x])


class User(Base):
    """A person who signs in; the role decides what they may do."""

    __tablename__ = "user_account"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(60), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    display_name: Mapped[str] = mapped_column(String(60))
    role: Mapped[Role] = mapped_column(_role_type)
    # Desk officers act for one department; firm users for one enterprise.
    department_id: Mapped[int | None] = mapped_column(ForeignKey("department.id", ondelete="RESTRICT"), index=True)
    enterprise_id: Mapped[int | None] = mapped_column(ForeignKey("enterprise.id", ondelete="CASCADE"), index=True)
    email: Mapped[str | None] = mapped_column(String(120))
    phone: Mapped[str | None] = mapped_column(String(40))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Every token carries the version it was issued under ("tv"); signing out everywhere, a password
    # change, a role change or deactivation bumps it, and older tokens stop working on their next request.
    token_version: Mapped[int] = mapped_column(default=0, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[dt.datetime | None]

    department: Mapped[Department | None] = relationship("Department")
    enterprise: Mapped[Enterprise | None] = relationship("Enterprise")


class ApiKey(Base):
    """A key for a system integration (e.g. the 12345 hotline); only its hash is stored."""

    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    prefix: Mapped[str] = mapped_column(String(12), unique=True)  # shown in listings to tell keys apart
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[Role] = mapped_column(_role_type)
    # What the key may do within its role (auth.scopes.SCOPES), comma-separated, e.g. "desk:intake".
    scopes: Mapped[str] = mapped_column(String(200), default="desk:intake", server_default="full")
    department_id: Mapped[int | None] = mapped_column(ForeignKey("department.id", ondelete="RESTRICT"))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]

    @property
    def scope_list(self) -> list[str]:
        """Return the key's scopes as a list."""
        return [s for s in (self.scopes or "").split(",") if s]


class PhoneCode(Base):
    """A one-time code sent by SMS to prove someone holds a mobile number; only its HMAC is stored.

    `purpose` binds a code to what it may verify: "signup" (a registration) or "firm:<id>" (a firm's
    push preferences), so a code asked for one cannot be spent on the other.
    """

    __tablename__ = "phone_code"

    id: Mapped[int] = mapped_column(primary_key=True)
    phone: Mapped[str] = mapped_column(String(20), index=True)  # 11 digits, normalised
    purpose: Mapped[str] = mapped_column(String(40))
    code_hash: Mapped[str] = mapped_column(String(64))  # HMAC-SHA256(secret key, purpose|phone|code)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    # Wrong guesses so far; at MAX_ATTEMPTS the code is spent, however many remain untried.
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    used_at: Mapped[dt.datetime | None]


class VerifiedPhone(Base):
    """A mobile number a firm proved it holds (by a code at sign-up or on its push preferences).

    SMS goes only to a number listed here for the firm; changing the firm's number removes the old row.
    """

    __tablename__ = "verified_phone"

    id: Mapped[int] = mapped_column(primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprise.id", ondelete="CASCADE"))
    phone: Mapped[str] = mapped_column(String(20))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))
    verified_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    # A number is verified once per firm; verifying it again refreshes verified_at.
    __table_args__ = (UniqueConstraint("enterprise_id", "phone"),)
