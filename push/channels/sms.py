"""SMS channel: messages fitted to SMS segments, sent through the gateway (a signed webhook)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from core.text import mask_phone, normalize_phone
from push.channels.base import (
    KIND_LABELS,
    PAYLOAD_VERSION,
    DeliveryResult,
    Message,
    SmsRecipient,
    dead_result,
    one_line,
)
from push.channels.webhook import WebhookChannel

# A concatenated SMS part loses 3 UCS-2 characters to the 6-byte user data header.
SMS_SINGLE = 70
SMS_UDH_CHARS = 3


def _utf16_units(ch: str) -> int:
    # Carriers count UCS-2 code units: a character outside the BMP (an emoji) takes two.
    return 2 if ord(ch) > 0xFFFF else 1


def sms_length(text: str) -> int:
    """Return the length of an SMS text as carriers count it (UCS-2 code units)."""
    return sum(_utf16_units(ch) for ch in text)


def split_sms(text: str, segment: int = SMS_SINGLE) -> list[str]:
    """Split a text into the parts a carrier sends: one if it fits `segment`, else parts of `segment − 3`."""
    if not text:
        return []
    if sms_length(text) <= segment:
        return [text]
    part = segment - SMS_UDH_CHARS
    parts: list[str] = []
    current: list[str] = []
    used = 0
    for ch in text:
        width = _utf16_units(ch)
        if used + width > part:
            parts.append("".join(current))
            current, used = [], 0
        current.append(ch)
        used += width
    if current:
        parts.append("".join(current))
    return parts


def sms_segments(text: str) -> list[str]:
    """Return the segments a Chinese SMS is billed as: ≤ 70 characters is one, longer is parts of 67."""
    return split_sms(text, SMS_SINGLE)


def render_sms(message: Message, *, sign_name: str = "【惠企】", link: str | None = None) -> str:
    """Return the SMS text: sign, a sentence built from the kind and title, and the (short) link.

    The title is shortened with an ellipsis so the whole text fits one 70-character segment when the
    rest leaves room for at least a few characters of it.
    """
    link = message.url if link is None else link
    label = KIND_LABELS.get(message.kind, "通知")
    title = one_line(message.title).rstrip("。.!！")
    lead = (
        ""
        if title.startswith(label)
        or message.kind in ("manual", "desk_notice", "case_update", "application", "exempt_payout")
        else f"{label}："
    )
    tail = f"，详情：{link}" if link else "。"
    budget = SMS_SINGLE - sms_length(sign_name + lead + tail)
    if sms_length(title) > budget >= 8:
        cut, used = [], 0
        for ch in title:
            if used + _utf16_units(ch) > budget - 1:
                break
            cut.append(ch)
            used += _utf16_units(ch)
        title = "".join(cut) + "…"
    return f"{sign_name}{lead}{title}{tail}"


class SmsChannel:
    """Send a short text through the configured SMS gateway, as a signed POST via the webhook machinery."""

    name = "sms"

    def __init__(
        self,
        *,
        gateway_url: str,
        secret: str,
        webhook: WebhookChannel,
        sign_name: str = "【惠企】",
        shorten: Callable[[str], str] | None = None,
    ) -> None:
        self.gateway_url = gateway_url
        self.secret = secret
        self.webhook = webhook
        self.sign_name = sign_name
        # A link shortener keeps the text within one segment; the identity is fine for short paths.
        self.shorten = shorten

    def send(self, message: Message, recipient: Any) -> DeliveryResult:
        """Validate the phone, render and segment the text, and hand it to the gateway."""
        if not isinstance(recipient, SmsRecipient):
            return dead_result(f"短信通道收到了错误的接收方类型（{type(recipient).__name__}）")
        if not self.gateway_url:
            return dead_result("短信网关地址未配置")
        if not self.secret:
            return dead_result("短信网关签名密钥未配置")
        phone = normalize_phone(recipient.phone)
        if phone is None:
            return dead_result(f"手机号格式不正确（应为 11 位大陆手机号）：{mask_phone(recipient.phone.strip())}")
        link = self.shorten(message.url) if (self.shorten and message.url) else message.url
        text = render_sms(message, sign_name=self.sign_name, link=link)
        now = dt.datetime.now(dt.UTC)
        payload = {
            "version": PAYLOAD_VERSION,
            "id": message.idempotency_key,
            "phone": phone,
            "text": text,
            "segments": len(sms_segments(text)),
            "sent_at": now.isoformat(timespec="seconds"),
        }
        return self.webhook.post(
            self.gateway_url, secret=self.secret, payload=payload, delivery_id=message.idempotency_key, now=now
        )

    def send_code(self, *, phone: str, code: str, minutes: int, key: str) -> DeliveryResult:
        """Send a one-time verification code (not an outbox delivery: the number is being verified)."""
        if not self.gateway_url or not self.secret:
            return dead_result("短信网关未配置")
        number = normalize_phone(phone)
        if number is None:
            return dead_result(f"手机号格式不正确（应为 11 位大陆手机号）：{mask_phone(phone.strip())}")
        text = f"{self.sign_name}您的验证码为 {code}，{minutes} 分钟内有效。如非本人操作，请忽略本短信。"
        now = dt.datetime.now(dt.UTC)
        payload = {
            "version": PAYLOAD_VERSION,
            "id": key,
            "phone": number,
            "text": text,
            "segments": len(sms_segments(text)),
            "sent_at": now.isoformat(timespec="seconds"),
        }
        return self.webhook.post(self.gateway_url, secret=self.secret, payload=payload, delivery_id=key, now=now)
