"""Password hashing, signed tokens and API keys."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import time
from typing import Any

import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from core.config import Settings

_hasher = PasswordHash((Argon2Hasher(),))
JWT_ALGORITHM = "HS256"
API_KEY_PREFIX = "hq_"


def hash_password(password: str) -> str:
    """Hash a password with argon2."""
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str) -> bool:
    """Check a password against its argon2 hash."""
    try:
        return _hasher.verify(password, password_hash)
    except Exception:  # malformed hash: treat as a failed check, never as a crash
        return False


def create_access_token(*, settings: Settings, subject: str, claims: dict[str, Any] | None = None) -> str:
    """Issue a signed JWT for a user id, valid for settings.access_token_minutes."""
    now = dt.datetime.now(dt.UTC)
    payload = {
        "sub": subject,
        "iat": now,
        "exp": now + dt.timedelta(minutes=settings.access_token_minutes),
        **(claims or {}),
    }
    return jwt.encode(payload, settings.secret_key, algorithm=JWT_ALGORITHM)


def decode_access_token(*, settings: Settings, token: str) -> dict[str, Any] | None:
    """Return the token's claims, or None when it is invalid or expired.

    Every authenticated request decodes its token, so a token that passed the signature check is
    remembered with its claims (per secret): later requests only compare its expiry with the clock.
    Nothing else about a valid token changes with time; whether its user may still use it (signed
    out, new password, new role, deactivated) is read from the database on every request.
    """
    key = (settings.secret_key, token)
    claims = _decoded.get(key)
    if claims is None:
        try:
            claims = jwt.decode(
                token, settings.secret_key, algorithms=[JWT_ALGORITHM], options={"require": ["exp", "sub"]}
            )
        except jwt.PyJWTError:
            return None
        if len(_decoded) >= _DECODED_MAX:
            _decoded.clear()
        _decoded[key] = claims
    # PyJWT's rule: expired once exp <= now.
    return dict(claims) if time.time() < claims["exp"] else None


_DECODED_MAX = 4096
_decoded: dict[tuple[str, str], dict[str, Any]] = {}


def new_api_key() -> tuple[str, str, str]:
    """Make an API key; return (plain key shown once, its lookup prefix, its hash)."""
    plain = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return plain, plain[:12], hash_api_key(plain)


def hash_api_key(plain: str) -> str:
    """Hash an API key; keys are long random strings, so a fast hash is safe."""
    return hashlib.sha256(plain.encode()).hexdigest()


def sign(*, settings: Settings, message: str) -> str:
    """Return an HMAC-SHA256 hex signature of message under the secret key."""
    return hmac.new(settings.secret_key.encode(), message.encode(), hashlib.sha256).hexdigest()
