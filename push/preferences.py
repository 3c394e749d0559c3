"""A firm's push preferences (channels, frequency, quiet hours, weekly cap, contacts) and its
subscriptions to policy categories and keywords.
"""

from __future__ import annotations

import re
import secrets
import urllib.parse
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from auth import phone as auth_phone
from catalog.models import Category, Policy
from core.config import Settings
from core.errors import Conflict, FieldError, NotFound, ValidationFailed
from core.netguard import AddressGuard, Unresolvable, UnsafeAddress
from core.text import normalize
from profiles.models import Enterprise
from push.channels import WEBHOOK_FORMATS, normalize_phone
from push.models import PushPreference, Subscription
from push.outbox import chunks
from push.schemas import PreferencesIn, SubscriptionIn

CHANNELS = ("inbox", "email", "sms", "webhook")
FREQUENCIES = ("instant", "daily", "weekly")
DIGEST_FREQUENCIES = ("daily", "weekly")  # new matches beyond the inbox wait for the digest (push.digests)
DEFAULTS: dict[str, Any] = {
    "channels": ["inbox"],
    "frequency": "instant",
    "quiet_start": "22:00",
    "quiet_end": "08:00",
    "weekly_cap": 10,
    "webhook_format": "huiqi",
    "unsubscribed_all": False,
}
WEEKLY_CAP_MAX = 100
_HHMM = re.compile(r"([01]\d|2[0-3]):[0-5]\d")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")


def default_preference(db: Session, enterprise_id: int) -> PushPreference:
    firm = db.get(Enterprise, enterprise_id)
    if firm is None:
        raise NotFound("企业不存在", code="profiles.enterprise_not_found")
    return PushPreference(
        enterprise_id=enterprise_id,
        channels=list(DEFAULTS["channels"]),
        frequency=DEFAULTS["frequency"],
        quiet_start=DEFAULTS["quiet_start"],
        quiet_end=DEFAULTS["quiet_end"],
        weekly_cap=DEFAULTS["weekly_cap"],
        webhook_format=DEFAULTS["webhook_format"],
        unsubscribed_all=False,
        email=firm.contact_email,
        phone=firm.contact_phone,
    )


def phone_verified(*, db: Session, prefs: PushPreference) -> bool:
    """Tell whether the number a firm's SMS would go to is verified."""
    number = normalize_phone(prefs.phone or "")
    return auth_phone.is_verified(db=db, enterprise_id=prefs.enterprise_id, phone=number)


def get_preferences(*, db: Session, enterprise_id: int) -> PushPreference:
    """Return a firm's preferences, or unsaved defaults (contacts from its profile) when it has none."""
    row = db.get(PushPreference, enterprise_id)
    return row if row is not None else default_preference(db, enterprise_id)


def preferences_for(db: Session, enterprise_ids: Sequence[int]) -> dict[int, PushPreference]:
    """Return preferences for many firms at once, defaults (not added to the session) for the rest."""
    out: dict[int, PushPreference] = {}
    for chunk in chunks(list(enterprise_ids), 500):
        out.update(
            {
                p.enterprise_id: p
                for p in db.scalars(select(PushPreference).where(PushPreference.enterprise_id.in_(chunk)))
            }
        )
        missing = [eid for eid in chunk if eid not in out]
        if missing:
            for eid, email, phone in db.execute(
                select(Enterprise.id, Enterprise.contact_email, Enterprise.contact_phone).where(
                    Enterprise.id.in_(missing)
                )
            ):
                out[eid] = PushPreference(
                    enterprise_id=eid,
                    channels=list(DEFAULTS["channels"]),
                    frequency=DEFAULTS["frequency"],
                    quiet_start=DEFAULTS["quiet_start"],
                    quiet_end=DEFAULTS["quiet_end"],
                    weekly_cap=DEFAULTS["weekly_cap"],
                    webhook_format=DEFAULTS["webhook_format"],
                    unsubscribed_all=False,
                    email=email,
                    phone=phone,
                )
    return out


def _blank(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def address_guard(settings: Settings) -> AddressGuard:
    """Return the guard firm webhook URLs are checked with (public addresses plus HUIQI_WEBHOOK_ALLOW_HOSTS)."""
    return AddressGuard(settings.webhook_allow_hosts)


def update_preferences(
    *, db: Session, enterprise_id: int, prefs_in: PreferencesIn, guard: AddressGuard | None = None
) -> PushPreference:
    """Change a firm's preferences (only the fields given), checking channels against their contacts.

    A new webhook URL is resolved and refused when it points at a loopback, private, link-local, multicast,
    reserved or unspecified address (unless `guard`'s allow-list admits it); deliveries check it again.
    """
    current = get_preferences(db=db, enterprise_id=enterprise_id)
    data = prefs_in.model_dump(exclude_unset=True)
    merged = {
        name: data[name] if name in data else getattr(current, name)
        for name in (
            "channels",
            "frequency",
            "quiet_start",
            "quiet_end",
            "weekly_cap",
            "email",
            "phone",
            "webhook_url",
            "webhook_secret",
            "webhook_format",
            "unsubscribed_all",
        )
    }
    errors: list[FieldError] = []
    channels = merged["channels"] if merged["channels"] is not None else list(DEFAULTS["channels"])
    unknown = [c for c in channels if c not in CHANNELS]
    if unknown:
        errors.append(
            FieldError("channels", f"不支持的推送方式：{'、'.join(unknown)}（可选 inbox、email、sms、webhook）")
        )
    # The inbox is the record of every push; it cannot be switched off, only the other channels.
    channels = ["inbox", *[c for c in CHANNELS[1:] if c in channels]]
    if merged["frequency"] not in FREQUENCIES:
        errors.append(FieldError("frequency", "推送频率应为 instant（即时）、daily（每日汇总）或 weekly（每周汇总）"))
    for name in ("quiet_start", "quiet_end"):
        if merged[name] is None or not _HHMM.fullmatch(str(merged[name])):
            errors.append(FieldError(name, "时间格式应为 HH:MM（24 小时制），例如 22:00"))
    cap = merged["weekly_cap"]
    if cap is None or not 0 <= cap <= WEEKLY_CAP_MAX:
        errors.append(FieldError("weekly_cap", f"每周推送上限应为 0–{WEEKLY_CAP_MAX} 之间的整数"))
    email = _blank(merged["email"])
    if email is not None and not _EMAIL.fullmatch(email):
        errors.append(FieldError("email", "邮箱地址格式不正确"))
    elif email is None and "email" in channels:
        errors.append(FieldError("email", "选择邮件推送时必须填写接收邮箱", "required"))
    phone = _blank(merged["phone"])
    if phone is not None:
        normalised = normalize_phone(phone)
        if normalised is None:
            errors.append(FieldError("phone", "手机号格式不正确（应为 11 位大陆手机号）"))
        else:
            phone = normalised
    elif "sms" in channels:
        errors.append(FieldError("phone", "选择短信推送时必须填写手机号", "required"))
    webhook_url = _blank(merged["webhook_url"])
    if webhook_url is not None:
        parts = urllib.parse.urlsplit(webhook_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            errors.append(FieldError("webhook_url", "Webhook 地址须以 http:// 或 https:// 开头并包含主机名"))
        elif "webhook_url" in data:
            try:
                (guard or AddressGuard()).check_url(webhook_url)
            except UnsafeAddress as exc:
                errors.append(FieldError("webhook_url", f"Webhook {exc}", "unsafe_address"))
            except Unresolvable:
                pass  # a name that does not resolve yet; every delivery resolves and checks it again
            except ValueError:
                errors.append(FieldError("webhook_url", "Webhook 地址格式不正确"))
    elif "webhook" in channels:
        errors.append(FieldError("webhook_url", "选择 Webhook 推送时必须填写地址", "required"))
    fmt = merged["webhook_format"] or "huiqi"
    if fmt not in WEBHOOK_FORMATS:
        errors.append(FieldError("webhook_format", "Webhook 格式应为 huiqi、wecom、dingtalk 或 feishu"))
    if errors:
        raise ValidationFailed(errors=errors)
    old_phone = normalize_phone(current.phone or "")
    saved = db.get(PushPreference, enterprise_id) is not None
    sms_was_on = saved and "sms" in (current.channels or [])
    # SMS is switched on only for a number the firm proved it holds (a code sent to it, push.phone).
    switching_on = "sms" in channels and (not sms_was_on or phone != old_phone)
    if switching_on and not auth_phone.is_verified(db=db, enterprise_id=enterprise_id, phone=phone):
        raise ValidationFailed(
            "开启短信推送前请先验证手机号",
            code="auth.phone_unverified",
            errors=[FieldError("phone", "请先获取短信验证码并完成验证，再开启短信推送", "unverified")],
        )
    if saved and old_phone is not None and phone != old_phone:
        auth_phone.forget(db=db, enterprise_id=enterprise_id, phone=old_phone)  # a changed number is unverified
    secret = _blank(merged["webhook_secret"])
    if webhook_url is not None and secret is None and fmt == "huiqi":
        # Huiqi-format deliveries are always signed; a firm that gives no secret gets one.
        secret = "whsec_" + secrets.token_urlsafe(24)
    row = db.get(PushPreference, enterprise_id)
    if row is None:
        row = PushPreference(enterprise_id=enterprise_id)
        db.add(row)
    row.channels = channels
    row.frequency = merged["frequency"]
    row.quiet_start = merged["quiet_start"]
    row.quiet_end = merged["quiet_end"]
    row.weekly_cap = cap
    row.email = email
    row.phone = phone
    row.webhook_url = webhook_url
    row.webhook_secret = secret
    row.webhook_format = fmt
    row.unsubscribed_all = bool(merged["unsubscribed_all"])
    db.flush()
    return row


def list_subscriptions(*, db: Session, enterprise_id: int) -> list[Subscription]:
    """Return a firm's subscriptions, newest first."""
    return list(
        db.scalars(
            select(Subscription)
            .where(Subscription.enterprise_id == enterprise_id)
            .order_by(Subscription.created_at.desc(), Subscription.id.desc())
        )
    )


def create_subscription(*, db: Session, enterprise_id: int, subscription_in: SubscriptionIn) -> Subscription:
    """Follow a category (by code) or a keyword; following an unsubscribed one again reactivates it."""
    kind = subscription_in.kind
    value = normalize(subscription_in.value).strip()
    if kind == "category":
        if db.scalar(select(Category.id).where(Category.code == value)) is None:
            raise ValidationFailed(errors=[FieldError("value", f"政策分类不存在：{value}", "not_found")])
    elif kind == "keyword":
        if not 2 <= len(value) <= 20:
            raise ValidationFailed(errors=[FieldError("value", "关键词应为 2–20 个字", "length")])
    else:
        raise ValidationFailed(errors=[FieldError("kind", "订阅类型应为 category（政策分类）或 keyword（关键词）")])
    existing = db.scalar(
        select(Subscription).where(
            Subscription.enterprise_id == enterprise_id, Subscription.kind == kind, Subscription.value == value
        )
    )
    if existing is not None:
        if existing.active:
            raise Conflict(
                "已订阅该内容", code="push.subscription_exists", errors=[FieldError("value", "已订阅该内容", "taken")]
            )
        existing.active = True
        db.flush()
        return existing
    row = Subscription(enterprise_id=enterprise_id, kind=kind, value=value, active=True)
    db.add(row)
    db.flush()
    return row


def get_subscription(*, db: Session, enterprise_id: int, subscription_id: int) -> Subscription:
    """Return a firm's own subscription; another firm's is reported as absent."""
    row = db.get(Subscription, subscription_id)
    if row is None or row.enterprise_id != enterprise_id:
        raise NotFound("订阅不存在", code="push.subscription_not_found")
    return row


def delete_subscription(*, db: Session, enterprise_id: int, subscription_id: int) -> None:
    """Stop following a category or keyword."""
    db.delete(get_subscription(db=db, enterprise_id=enterprise_id, subscription_id=subscription_id))
    db.flush()


def policy_subscribers(db: Session, policy: Policy) -> dict[int, int]:
    """Return firm → subscription id for firms following one of the policy's categories or keywords."""
    codes = set()
    for cat in policy.categories:
        codes.add(cat.code)
        if cat.parent is not None:
            codes.add(cat.parent.code)  # following a 大类 covers its 小类
    text = normalize(" ".join(filter(None, [policy.title, policy.summary, policy.search_text])))
    out: dict[int, int] = {}
    for sub in db.scalars(select(Subscription).where(Subscription.active.is_(True)).order_by(Subscription.id)):
        if (sub.kind == "category" and sub.value in codes) or (
            sub.kind == "keyword" and sub.value and sub.value in text
        ):
            out.setdefault(sub.enterprise_id, sub.id)
    return out
