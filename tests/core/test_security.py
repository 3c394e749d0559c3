"""Bearer tokens: a decoded token is remembered, but never past its expiry nor under another secret."""

from __future__ import annotations

import jwt
import pytest

from core import security
from core.config import Settings


def _settings(secret: str) -> Settings:
    return Settings(secret_key=secret, access_token_minutes=5)


def test_a_remembered_token_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings("s" * 48)
    token = security.create_access_token(settings=settings, subject="7", claims={"tv": 2})
    first = security.decode_access_token(settings=settings, token=token)
    assert first is not None and first["sub"] == "7" and first["tv"] == 2
    first["sub"] = "8"  # callers get a copy: what is remembered cannot be changed through it
    assert security.decode_access_token(settings=settings, token=token)["sub"] == "7"  # type: ignore[index]
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    monkeypatch.setattr(security.time, "time", lambda: exp - 1)
    assert security.decode_access_token(settings=settings, token=token) is not None
    monkeypatch.setattr(security.time, "time", lambda: exp)  # PyJWT's rule: expired once exp <= now
    assert security.decode_access_token(settings=settings, token=token) is None


def test_a_remembered_token_is_refused_under_another_secret_and_forgeries_never_pass() -> None:
    signed = _settings("a" * 48)
    token = security.create_access_token(settings=signed, subject="7")
    assert security.decode_access_token(settings=signed, token=token) is not None
    assert security.decode_access_token(settings=_settings("b" * 48), token=token) is None
    head, body, _ = token.split(".")
    forged = f"{head}.{body}.{'A' * 43}"
    for _ in range(2):
        assert security.decode_access_token(settings=signed, token=forged) is None
