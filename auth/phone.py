"""Verified phones: one-time SMS codes, and the numbers each firm has proved it holds.

A code is 6 digits from `secrets`, stored only as HMAC-SHA256 under the app's secret key (bound to its
phone and purpose), valid for HUIQI_PHONE_CODE_MINUTES, spent after MAX_ATTEMPTS wrong guesses or one
right one, and compared in constant time. Asking for a new code voids the earlier ones of the same
number and purpose. Sending is push's job (push.phone, through the SMS adapter) and is rate-limited per
number and per client (auth.throttle.PhoneCodeThrottle).

A wrong guess must count even though the request that made it fails: `check_code` flushes the count
and raises `PhoneCodeRejected`; the caller commits before letting the error out (see
`commit_then_raise`), so the failed request keeps the count and nothing else.

SMS goes only to a number in `verified_phone` for the firm (push.sender checks it for every SMS);
`forget` removes a number when the firm changes it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from typing import NoReturn

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from auth.models import PhoneCode, VerifiedPhone
from core.config import Settings
from core.db import utcnow
from core.errors import FieldError, ValidationFailed

CODE_DIGITS = 6
MAX_ATTEMPTS = 5
SIGNUP = "signup"
KEEP_CODES = dt.timedelta(days=1)


def firm_purpose(enterprise_id: int) -> str:
    """Return the purpose of a code a firm asks for on its push preferences."""
    return f"firm:{enterprise_id}"


class PhoneCodeRejected(ValidationFailed):
    """A code did not verify; the attempt is counted in the session and must be committed before raising."""


def new_code() -> str:
    """Return a fresh 6-digit code from the system's secure random source."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def _digest(settings: Settings, *, phone: str, purpose: str, code: str) -> str:
    message = f"phone-code|{purpose}|{phone}|{code}".encode()
    return hmac.new(settings.secret_key.encode(), message, hashlib.sha256).hexdigest()


def issue_code(
    *, db: Session, settings: Settings, phone: str, purpose: str, now: dt.datetime | None = None
) -> tuple[PhoneCode, str]:
    """Store a new code for a normalised number and purpose (voiding earlier ones); return it and its digits."""
    now = now or utcnow()
    # Codes of this number older than a day are of no use to anyone: drop them (the table stays small).
    db.execute(delete(PhoneCode).where(PhoneCode.phone == phone, PhoneCode.created_at < now - KEEP_CODES))
    db.execute(
        update(PhoneCode)
        .where(PhoneCode.phone == phone, PhoneCode.purpose == purpose, PhoneCode.used_at.is_(None))
        .values(used_at=now)
    )
    code = new_code()
    row = PhoneCode(
        phone=phone,
        purpose=purpose,
        code_hash=_digest(settings, phone=phone, purpose=purpose, code=code),
        created_at=now,
        expires_at=now + dt.timedelta(minutes=settings.phone_code_minutes),
        attempts=0,
    )
    db.add(row)
    db.flush()
    return row, code


def _rejected(message: str, code: str, field: str) -> PhoneCodeRejected:
    return PhoneCodeRejected(message, code=code, errors=[FieldError(field, message, code.split(".")[-1])])


def check_code(
    *,
    db: Session,
    settings: Settings,
    phone: str,
    purpose: str,
    code: str | None,
    field: str = "code",
    now: dt.datetime | None = None,
) -> None:
    """Spend the number's current code if `code` matches; raise PhoneCodeRejected naming `field` otherwise."""
    now = now or utcnow()
    row = db.scalar(
        select(PhoneCode)
        .where(PhoneCode.phone == phone, PhoneCode.purpose == purpose, PhoneCode.used_at.is_(None))
        .order_by(PhoneCode.created_at.desc(), PhoneCode.id.desc())
        .limit(1)
        .with_for_update()
    )
    if row is None:
        raise _rejected("请先获取短信验证码", "auth.phone_code_missing", field)
    if row.attempts >= MAX_ATTEMPTS:
        raise _rejected(f"验证码错误已达 {MAX_ATTEMPTS} 次，请重新获取", "auth.phone_code_attempts", field)
    if row.expires_at <= now:
        raise _rejected("验证码已过期，请重新获取", "auth.phone_code_expired", field)
    given = (code or "").strip()
    expected = row.code_hash
    actual = _digest(settings, phone=phone, purpose=purpose, code=given)
    if not (given.isdigit() and len(given) == CODE_DIGITS) or not hmac.compare_digest(actual, expected):
        row.attempts += 1
        db.flush()
        left = MAX_ATTEMPTS - row.attempts
        if left <= 0:
            raise _rejected(f"验证码错误已达 {MAX_ATTEMPTS} 次，请重新获取", "auth.phone_code_attempts", field)
        raise _rejected(f"验证码不正确，还可以再试 {left} 次", "auth.phone_code_invalid", field)
    row.used_at = now
    db.flush()


def commit_then_raise(db: Session, exc: PhoneCodeRejected) -> NoReturn:
    """Keep a rejected code's attempt count (commit what the request wrote so far: only the count), then raise."""
    db.commit()
    raise exc


def mark_verified(
    *, db: Session, enterprise_id: int, phone: str, user_id: int | None = None, now: dt.datetime | None = None
) -> VerifiedPhone:
    """Record that a firm holds a (normalised) number."""
    now = now or utcnow()
    row = db.scalar(
        select(VerifiedPhone).where(VerifiedPhone.enterprise_id == enterprise_id, VerifiedPhone.phone == phone)
    )
    if row is None:
        row = VerifiedPhone(enterprise_id=enterprise_id, phone=phone)
        db.add(row)
    row.user_id, row.verified_at = user_id, now
    db.flush()
    return row


def is_verified(*, db: Session, enterprise_id: int, phone: str | None) -> bool:
    """Tell whether a firm has verified this (normalised) number."""
    if not phone:
        return False
    return (
        db.scalar(
            select(VerifiedPhone.id).where(VerifiedPhone.enterprise_id == enterprise_id, VerifiedPhone.phone == phone)
        )
        is not None
    )


def verified_pairs(*, db: Session, enterprise_ids: Iterable[int]) -> set[tuple[int, str]]:
    """Return the (firm, number) pairs verified for these firms."""
    wanted = sorted(set(enterprise_ids))
    out: set[tuple[int, str]] = set()
    for i in range(0, len(wanted), 500):
        rows = db.execute(
            select(VerifiedPhone.enterprise_id, VerifiedPhone.phone).where(
                VerifiedPhone.enterprise_id.in_(wanted[i : i + 500])
            )
        )
        out.update((int(eid), str(phone)) for eid, phone in rows)
    return out


def forget(*, db: Session, enterprise_id: int, phone: str | None) -> None:
    """Clear a firm's verification of a number it no longer uses."""
    if phone:
        db.execute(
            delete(VerifiedPhone).where(VerifiedPhone.enterprise_id == enterprise_id, VerifiedPhone.phone == phone)
        )
