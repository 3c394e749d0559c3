"""What every delivery channel shares: the message, the result, recipients, the channel protocol,
backoff and result helpers.

A channel sends one `Message` to one recipient and reports a `DeliveryResult`; it never raises
for a delivery failure and never retries by itself. The outbox owns retries: it reads
`retryable` to choose between another attempt (after `backoff(attempt)`) and the dead state.

Classification, the same for every channel:

- network errors, timeouts, HTTP 5xx / 408 / 429, SMTP 4xx       → retryable
- HTTP 4xx (other than 408 / 429), HTTP 3xx, SMTP 5xx             → not retryable (dead)
- bad configuration (missing secret, invalid address or phone)    → not retryable, Chinese detail

The webhook wire format, its signature and the SMS gateway contract are documented in
docs/webhooks.md; `verify_signature` is the receiver's side of the signature.
"""

from __future__ import annotations

import datetime as dt
import random
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeGuard, get_args, runtime_checkable

MessageKind = Literal[
    "new_match",
    "digest",
    "deadline_reminder",
    "policy_changed",
    "profile_reminder",
    "manual",
    "desk_notice",
    "case_update",
    "application",
    "exempt_payout",
]
MESSAGE_KINDS: tuple[str, ...] = (
    "new_match",
    "digest",
    "deadline_reminder",
    "policy_changed",
    "profile_reminder",
    "manual",
    "desk_notice",
    "case_update",
    "application",
    "exempt_payout",
)
KIND_LABELS: dict[str, str] = {
    "new_match": "新政策匹配",
    "digest": "政策汇总",
    "deadline_reminder": "申报截止提醒",
    "policy_changed": "政策变更提醒",
    "profile_reminder": "企业信息更新提醒",
    "manual": "通知",
    "desk_notice": "诉求办理通知",
    "case_update": "诉求办理进展",
    "application": "申报进度",
    "exempt_payout": "免申即享兑现",
}
WebhookFormat = Literal["huiqi", "wecom", "dingtalk", "feishu"]
WEBHOOK_FORMATS: tuple[str, ...] = ("huiqi", "wecom", "dingtalk", "feishu")


def message_kind(value: str) -> MessageKind:
    """Return a stored message kind as a known one; raise ValueError for any other."""
    for kind in get_args(MessageKind):
        if value == kind:
            return kind
    raise ValueError(f"unknown message kind {value!r}; expected one of {MESSAGE_KINDS}")


def is_webhook_format(value: object) -> TypeGuard[WebhookFormat]:
    """Tell whether a stored or configured value names a webhook payload format."""
    return value in WEBHOOK_FORMATS


PAYLOAD_VERSION = 1
DELIVERY_HEADER = "X-Huiqi-Delivery"


@dataclass(frozen=True, kw_only=True)
class Message:
    """One notification to deliver, independent of the channel.

    `body_html` is a trusted HTML fragment built by our own code (it is inserted unescaped into the
    email template); when absent, `body_text` is escaped and used. `idempotency_key` is the outbox
    row's key: every attempt of the same delivery carries it, and receivers dedupe on it.
    """

    kind: MessageKind
    title: str
    body_text: str
    url: str
    idempotency_key: str
    body_html: str | None = None
    unsubscribe_url: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in MESSAGE_KINDS:
            raise ValueError(f"unknown message kind {self.kind!r}; expected one of {MESSAGE_KINDS}")
        if not self.idempotency_key:
            raise ValueError("idempotency_key must not be empty")
        if not self.title.strip():
            raise ValueError("title must not be empty")


@dataclass(frozen=True)
class DeliveryResult:
    """What one attempt achieved: sent, worth retrying, or dead — with a Chinese detail for staff."""

    ok: bool
    retryable: bool
    detail: str
    status_code: int | None = None
    provider_id: str | None = None
    # The receiver asked us to wait (HTTP Retry-After); the outbox should not retry sooner.
    retry_after: dt.timedelta | None = None


def sent_result(detail: str, *, status_code: int | None = None, provider_id: str | None = None) -> DeliveryResult:
    return DeliveryResult(ok=True, retryable=False, detail=detail, status_code=status_code, provider_id=provider_id)


def retry_result(
    detail: str, *, status_code: int | None = None, retry_after: dt.timedelta | None = None
) -> DeliveryResult:
    return DeliveryResult(ok=False, retryable=True, detail=detail, status_code=status_code, retry_after=retry_after)


def dead_result(detail: str, *, status_code: int | None = None) -> DeliveryResult:
    return DeliveryResult(ok=False, retryable=False, detail=detail, status_code=status_code)


@dataclass(frozen=True)
class WebhookRecipient:
    """An HTTP endpoint and the secret its deliveries are signed with.

    `format` overrides the channel's default payload format for this endpoint (a WeCom bot next to
    an enterprise's own system). For DingTalk and Feishu bots with signing enabled, `secret` is the
    bot's signing secret and is also used for the bot's own signature.
    """

    url: str
    secret: str = field(repr=False)
    format: WebhookFormat | None = None


@dataclass(frozen=True)
class EmailRecipient:
    """A mailbox and the name shown in the To header."""

    address: str
    name: str = ""


@dataclass(frozen=True)
class SmsRecipient:
    """A mainland mobile number."""

    phone: str


Recipient = WebhookRecipient | EmailRecipient | SmsRecipient


@runtime_checkable
class Channel(Protocol):
    """Anything that can deliver a Message to a recipient and classify the outcome."""

    name: str

    def send(self, message: Message, recipient: Any) -> DeliveryResult:
        """Deliver once; report the outcome, never raise for a delivery failure."""
        ...


def backoff(
    attempt: int,
    *,
    base: dt.timedelta | float = dt.timedelta(seconds=30),
    factor: float = 2.0,
    cap: dt.timedelta | float = dt.timedelta(hours=6),
    jitter: float = 0.1,
    rng: random.Random | None = None,
) -> dt.timedelta:
    """Return the wait after failed attempt number `attempt` (1-based): base·factor^(attempt−1), jittered, capped.

    Jitter is ±`jitter` of the delay (spreads retries of a burst of failures), and the result never
    exceeds `cap`. With the defaults: 30 s, 1 min, 2 min, 4 min … 4 h 16 min, then 6 h.
    """
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    if not 0 <= jitter < 1:
        raise ValueError("jitter must be in [0, 1)")
    base_s = base.total_seconds() if isinstance(base, dt.timedelta) else float(base)
    cap_s = cap.total_seconds() if isinstance(cap, dt.timedelta) else float(cap)
    try:
        delay = min(base_s * factor ** (attempt - 1), cap_s)
    except OverflowError:
        delay = cap_s
    if jitter:
        delay *= 1 + (rng or random).uniform(-jitter, jitter)
    return dt.timedelta(seconds=min(max(delay, 0.0), cap_s))


def one_line(text: str) -> str:
    return " ".join(text.split())


def is_http_url(url: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def snippet(text: str, limit: int = 200) -> str:
    text = one_line(text)
    return text if len(text) <= limit else text[:limit] + "…"
