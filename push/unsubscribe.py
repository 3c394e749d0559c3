"""Signed one-click unsubscribe: tokens, links, and applying them."""

from __future__ import annotations

import hmac
import re
import urllib.parse
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from core import security
from core.config import Settings
from core.errors import FieldError, NotFound, ValidationFailed
from push.models import Delivery, PushPreference, Subscription
from push.preferences import default_preference

TOKEN_VERSION = "v1"


def _token_message(enterprise_id: int, scope: str) -> str:
    return f"unsubscribe:{TOKEN_VERSION}:{enterprise_id}:{scope}"


def unsubscribe_token(*, settings: Settings, enterprise_id: int, scope: str) -> str:
    """Return a signed token that unsubscribes a firm from everything ("all") or one subscription ("sub:<id>")."""
    if scope != "all" and not re.fullmatch(r"sub:\d+", scope):
        raise ValueError(f"scope must be 'all' or 'sub:<id>', got {scope!r}")
    signature = security.sign(settings=settings, message=_token_message(enterprise_id, scope))
    return f"{TOKEN_VERSION}.{enterprise_id}.{scope}.{signature}"


def verify_unsubscribe_token(*, settings: Settings, token: str) -> tuple[int, str] | None:
    """Return (enterprise id, scope) of an authentic token, or None for a forged or malformed one."""
    parts = (token or "").strip().split(".")
    if len(parts) != 4 or parts[0] != TOKEN_VERSION or not parts[1].isdigit():
        return None
    _, firm, scope, signature = parts
    if scope != "all" and not re.fullmatch(r"sub:\d+", scope):
        return None
    expected = security.sign(settings=settings, message=_token_message(int(firm), scope))
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        return None
    return int(firm), scope


def unsubscribe_url(*, settings: Settings, enterprise_id: int, scope: str, base_url: str = "") -> str:
    """Return the one-click unsubscribe link for a firm and scope."""
    token = unsubscribe_token(settings=settings, enterprise_id=enterprise_id, scope=scope)
    return f"{base_url.rstrip('/')}/api/v1/push/unsubscribe?token={urllib.parse.quote(token, safe='')}"


def _verified(settings: Settings, token: str) -> tuple[int, str]:
    verified = verify_unsubscribe_token(settings=settings, token=token)
    if verified is None:
        raise ValidationFailed(
            "退订链接无效或已被篡改",
            code="push.invalid_unsubscribe_token",
            errors=[FieldError("token", "退订链接无效或已被篡改")],
        )
    return verified


def describe_unsubscribe(*, db: Session, settings: Settings, token: str) -> str:
    """Say in Chinese what a signed unsubscribe link would stop, changing nothing (the confirmation page)."""
    enterprise_id, scope = _verified(settings, token)
    if scope == "all":
        return "退订惠企的全部政策推送（站内信仍会保留）"
    sub = db.get(Subscription, int(scope.removeprefix("sub:")))
    if sub is None or sub.enterprise_id != enterprise_id:
        raise NotFound("订阅不存在或已删除", code="push.subscription_not_found")
    label = "政策分类" if sub.kind == "category" else "关键词"
    return f"退订{label}“{sub.value}”的推送"


def unsubscribe(*, db: Session, settings: Settings, token: str) -> dict[str, Any]:
    """Apply a signed unsubscribe link: stop one subscription or every push beyond the inbox; idempotent."""
    enterprise_id, scope = _verified(settings, token)
    if scope == "all":
        pref = db.get(PushPreference, enterprise_id)
        if pref is None:
            pref = default_preference(db, enterprise_id)
            db.add(pref)
        pref.unsubscribed_all = True
        # What was decided but not yet sent is not sent either.
        db.execute(
            update(Delivery)
            .where(
                Delivery.enterprise_id == enterprise_id,
                Delivery.status.in_(["pending", "failed"]),
                Delivery.channel != "inbox",
            )
            .values(status="skipped", last_error="企业已退订")
        )
        message = "您已退订惠企的全部政策推送。如需恢复，请登录后在“推送设置”中重新开启。"
    else:
        sub = db.get(Subscription, int(scope.removeprefix("sub:")))
        if sub is None or sub.enterprise_id != enterprise_id:
            raise NotFound("订阅不存在或已删除", code="push.subscription_not_found")
        sub.active = False
        label = "政策分类" if sub.kind == "category" else "关键词"
        message = f"您已退订{label}“{sub.value}”的推送。"
    db.flush()
    return {"enterprise_id": enterprise_id, "scope": scope, "message": message}
