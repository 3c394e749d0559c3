"""Delivery channels: signed webhooks (and chat-bot formats), email over SMTP, SMS through a gateway.

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

import base64
import datetime as dt
import email.utils
import hashlib
import hmac
import html
import json
import logging
import random
import re
import smtplib
import ssl
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from http import HTTPStatus
from typing import Any, Literal, Protocol, TypeGuard, get_args, runtime_checkable

import httpx

from core.netguard import AddressGuard, Unresolvable, UnsafeAddress
from core.text import mask_phone

log = logging.getLogger(__name__)

MessageKind = Literal[
    "new_match",
    "digest",
    "deadline_reminder",
    "policy_changed",
    "profile_reminder",
    "manual",
    "desk_notice",
    "case_update",
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

SIGNATURE_HEADER = "X-Huiqi-Signature"
TIMESTAMP_HEADER = "X-Huiqi-Timestamp"
DELIVERY_HEADER = "X-Huiqi-Delivery"
DEFAULT_USER_AGENT = "Huiqi-Webhook/1"

# Mainland mobile numbers: 11 digits, 1 then 3–9 (after stripping +86 / 0086 and separators).
_MOBILE = re.compile(r"1[3-9]\d{9}")
_PHONE_SEPARATORS = re.compile(r"[\s\-()]")
# A concatenated SMS part loses 3 UCS-2 characters to the 6-byte user data header.
SMS_SINGLE = 70
SMS_UDH_CHARS = 3

# Bot error codes that mean "too many messages now, try later"; any other non-zero code is permanent.
_BOT_RATE_LIMITED: dict[str, frozenset[int]] = {
    "wecom": frozenset({45009}),
    "dingtalk": frozenset({130101}),
    "feishu": frozenset({11232}),
}
# WeCom rejects markdown content over 4096 bytes; Feishu rejects bodies over 20 KB (DingTalk alike).
_BOT_CONTENT_BYTES = {"wecom": 4096, "dingtalk": 18_000, "feishu": 18_000}


# ---------------------------------------------------------------- messages and results


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


def _sent(detail: str, *, status_code: int | None = None, provider_id: str | None = None) -> DeliveryResult:
    return DeliveryResult(ok=True, retryable=False, detail=detail, status_code=status_code, provider_id=provider_id)


def _retry(detail: str, *, status_code: int | None = None, retry_after: dt.timedelta | None = None) -> DeliveryResult:
    return DeliveryResult(ok=False, retryable=True, detail=detail, status_code=status_code, retry_after=retry_after)


def _dead(detail: str, *, status_code: int | None = None) -> DeliveryResult:
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


# ---------------------------------------------------------------- backoff


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


# ---------------------------------------------------------------- signatures


def _body_bytes(body: bytes | str) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else body


def compute_signature(secret: str, timestamp: str | int, body: bytes | str) -> str:
    """Return the X-Huiqi-Signature value: sha256=hex(HMAC-SHA256(secret, f"{timestamp}." + raw body))."""
    mac = hmac.new(secret.encode("utf-8"), str(timestamp).encode("ascii") + b"." + _body_bytes(body), hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str,
    timestamp: str | int,
    body: bytes | str,
    header: str | None,
    *,
    tolerance_seconds: float = 300,
    now: dt.datetime | float | None = None,
) -> bool:
    """Tell whether a delivery is authentic and fresh: the signature matches and the timestamp is within tolerance.

    `body` must be the raw request body exactly as received (not re-serialised JSON); `timestamp` is
    the X-Huiqi-Timestamp header, `header` the X-Huiqi-Signature header.
    """
    if not secret or not header:
        return False
    try:
        sent = int(str(timestamp).strip())
    except ValueError:
        return False
    if now is None:
        current = dt.datetime.now(dt.UTC).timestamp()
    elif isinstance(now, dt.datetime):
        current = now.timestamp()
    else:
        current = float(now)
    if abs(current - sent) > tolerance_seconds:
        return False
    expected = compute_signature(secret, str(timestamp).strip(), body)
    return hmac.compare_digest(expected.encode("ascii"), header.strip().encode("utf-8", "replace"))


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """Return DingTalk's robot signature: base64(HMAC-SHA256(secret, f"{timestamp_ms}\\n{secret}"))."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode("ascii")


def feishu_sign(secret: str, timestamp: int) -> str:
    """Return Feishu's bot signature: base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}", empty message))."""
    mac = hmac.new(f"{timestamp}\n{secret}".encode(), b"", hashlib.sha256)
    return base64.b64encode(mac.digest()).decode("ascii")


# ---------------------------------------------------------------- webhook payloads


def _snippet(text: str, limit: int = 200) -> str:
    text = _one_line(text)
    return text if len(text) <= limit else text[:limit] + "…"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _fit_bytes(text: str, limit: int) -> str:
    """Cut text to at most `limit` UTF-8 bytes on a character boundary, marking the cut with an ellipsis."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode("utf-8", "ignore") + "…"


def _bot_markdown(message: Message) -> str:
    lines = [f"**{_one_line(message.title)}**", "", message.body_text.strip()]
    if message.url:
        lines += ["", f"[查看详情]({message.url})"]
    if message.unsubscribe_url:
        lines += ["", f"[退订此类通知]({message.unsubscribe_url})"]
    return "\n".join(lines)


def render_webhook_payload(
    message: Message, *, format: WebhookFormat = "huiqi", now: dt.datetime | None = None
) -> dict[str, Any]:
    """Return the JSON object POSTed for a message in the given format (huiqi or a chat bot's markdown/text)."""
    if format == "huiqi":
        sent_at = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        return {
            "version": PAYLOAD_VERSION,
            "id": message.idempotency_key,
            "kind": message.kind,
            "title": message.title,
            "text": message.body_text,
            "url": message.url,
            "unsubscribe_url": message.unsubscribe_url,
            "data": message.data,
            "sent_at": sent_at.isoformat(timespec="seconds"),
        }
    if format == "wecom":
        content = _fit_bytes(_bot_markdown(message), _BOT_CONTENT_BYTES["wecom"])
        return {"msgtype": "markdown", "markdown": {"content": content}}
    if format == "dingtalk":
        content = _fit_bytes(_bot_markdown(message), _BOT_CONTENT_BYTES["dingtalk"])
        return {"msgtype": "markdown", "markdown": {"title": _one_line(message.title), "text": content}}
    if format == "feishu":
        parts = [_one_line(message.title), message.body_text.strip()]
        if message.url:
            parts.append(f"查看详情：{message.url}")
        if message.unsubscribe_url:
            parts.append(f"退订此类通知：{message.unsubscribe_url}")
        text = _fit_bytes("\n".join(parts), _BOT_CONTENT_BYTES["feishu"])
        return {"msg_type": "text", "content": {"text": text}}
    raise ValueError(f"unknown webhook format {format!r}; expected one of {WEBHOOK_FORMATS}")


def _json_default(value: Any) -> Any:
    # Policy data carries dates and amounts; everything else must already be JSON.
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _is_http_url(url: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _retry_after(response: httpx.Response) -> dt.timedelta | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return dt.timedelta(seconds=int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(when - dt.datetime.now(dt.UTC), dt.timedelta(0))


def _provider_id(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("id"), str | int) and not isinstance(body.get("id"), bool):
        return str(body["id"])
    return response.headers.get("X-Request-Id")


def _bot_error(fmt: str, response: httpx.Response) -> tuple[int, str] | None:
    """Return (code, message) when a bot answered HTTP 200 with a non-zero error code."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    if fmt == "feishu":
        code, msg = body.get("code", body.get("StatusCode", 0)), body.get("msg", body.get("StatusMessage", ""))
    else:
        code, msg = body.get("errcode", 0), body.get("errmsg", "")
    try:
        code = int(code or 0)
    except (TypeError, ValueError):
        return None
    return (code, str(msg)) if code else None


def _classify_response(response: httpx.Response, *, fmt: str) -> DeliveryResult:
    status = response.status_code
    if 200 <= status < 300:
        if fmt in _BOT_RATE_LIMITED:
            error = _bot_error(fmt, response)
            if error is not None:
                code, _ = error
                # Only the numeric code is kept: nothing the remote side wrote is stored or shown.
                if code in _BOT_RATE_LIMITED[fmt]:
                    return _retry(f"机器人限流（错误码 {code}），稍后重试", status_code=status)
                return _dead(f"机器人拒绝消息（错误码 {code}）", status_code=status)
            return _sent(f"机器人已接收（HTTP {status}）", status_code=status)
        return _sent(f"接收方已确认（HTTP {status}）", status_code=status, provider_id=_provider_id(response))
    # The status code and its standard phrase only: the remote body (which an internal service could fill
    # with anything) is never stored in last_error nor shown to staff.
    shown = _status_text(status)
    if status in (408, 429) or status >= 500:
        return _retry(f"接收方暂时不可用（{shown}）", status_code=status, retry_after=_retry_after(response))
    if 300 <= status < 400:
        return _dead(f"接收地址返回重定向（{shown}），请改为配置最终地址", status_code=status)
    return _dead(f"接收方拒绝请求（{shown}）", status_code=status)


def _status_text(status: int) -> str:
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


# ---------------------------------------------------------------- webhook channel


class WebhookChannel:
    """POST a signed JSON payload to the recipient's URL; one attempt per call, no redirects followed."""

    name = "webhook"

    def __init__(
        self,
        *,
        timeout: float = 5.0,
        user_agent: str = DEFAULT_USER_AGENT,
        client: httpx.Client | None = None,
        format: WebhookFormat = "huiqi",
        guard: AddressGuard | None = None,
    ) -> None:
        if format not in WEBHOOK_FORMATS:
            raise ValueError(f"unknown webhook format {format!r}; expected one of {WEBHOOK_FORMATS}")
        self.timeout = timeout
        # Recipients' URLs come from firms: only public addresses (plus HUIQI_WEBHOOK_ALLOW_HOSTS) are reached.
        self.guard = guard or AddressGuard()
        self.user_agent = user_agent
        self.format = format
        self._owns_client = client is None
        # Redirects are refused: a signed POST must reach the configured endpoint or fail visibly.
        self._client = client or httpx.Client(timeout=timeout, follow_redirects=False)

    def close(self) -> None:
        """Close the HTTP client if this channel created it."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> WebhookChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, message: Message, recipient: Any) -> DeliveryResult:
        """Deliver a message to a webhook recipient in its format, signed with its secret."""
        if not isinstance(recipient, WebhookRecipient):
            return _dead(f"Webhook 通道收到了错误的接收方类型（{type(recipient).__name__}）")
        fmt = recipient.format or self.format
        if fmt not in WEBHOOK_FORMATS:
            return _dead(f"不支持的 Webhook 格式：{fmt}")
        if fmt == "huiqi" and not recipient.secret:
            return _dead("Webhook 未配置签名密钥，无法签名推送")
        now = dt.datetime.now(dt.UTC)
        payload = render_webhook_payload(message, format=fmt, now=now)
        url = recipient.url
        if recipient.secret and fmt == "dingtalk":
            # DingTalk robots with signing enabled expect timestamp (ms) and sign in the query string.
            ts_ms = int(now.timestamp() * 1000)
            query = urllib.parse.urlencode({"timestamp": ts_ms, "sign": dingtalk_sign(recipient.secret, ts_ms)})
            url = f"{url}{'&' if '?' in url else '?'}{query}"
        elif recipient.secret and fmt == "feishu":
            ts = int(now.timestamp())
            payload = {"timestamp": str(ts), "sign": feishu_sign(recipient.secret, ts), **payload}
        return self._post(
            url,
            secret=recipient.secret,
            payload=payload,
            delivery_id=message.idempotency_key,
            now=now,
            fmt=fmt,
            guard=self.guard,
        )

    def post(
        self,
        url: str,
        *,
        secret: str,
        payload: Mapping[str, Any],
        delivery_id: str,
        now: dt.datetime | None = None,
    ) -> DeliveryResult:
        """POST any JSON payload with the Huiqi headers and signature, and classify the answer.

        For operator-configured endpoints (the SMS gateway), which may well be internal: no address guard.
        """
        return self._post(
            url, secret=secret, payload=payload, delivery_id=delivery_id, now=now, fmt="huiqi", guard=None
        )

    def _post(
        self,
        url: str,
        *,
        secret: str,
        payload: Mapping[str, Any],
        delivery_id: str,
        now: dt.datetime | None,
        fmt: str,
        guard: AddressGuard | None,
    ) -> DeliveryResult:
        if not _is_http_url(url):
            return _dead("Webhook 地址无效：须以 http:// 或 https:// 开头并包含主机名")
        host = urllib.parse.urlsplit(url).hostname
        target_url, extra_headers, extensions = url, {}, {}
        if guard is not None:
            # Resolve and check now, then connect to the checked address (DNS rebinding cannot swap it).
            try:
                target = guard.check_url(url)
            except UnsafeAddress as exc:
                return _dead(f"Webhook 地址不可用：{exc}")
            except Unresolvable as exc:
                return _retry(f"Webhook 地址暂时不可用：{exc}")
            target_url, extra_headers = target.url, {"Host": target.host_header}
            if url.lower().startswith("https:"):
                extensions = {"sni_hostname": target.host}
        try:
            body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=_json_default).encode()
        except (TypeError, ValueError) as exc:
            return _dead(f"推送数据无法序列化为 JSON：{exc}")
        timestamp = str(int((now or dt.datetime.now(dt.UTC)).timestamp()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": self.user_agent,
            TIMESTAMP_HEADER: timestamp,
            DELIVERY_HEADER: delivery_id,
        }
        if secret:
            headers[SIGNATURE_HEADER] = compute_signature(secret, timestamp, body)
        headers.update(extra_headers)
        try:
            response = self._client.post(
                target_url, content=body, headers=headers, timeout=self.timeout, extensions=extensions
            )
        except httpx.TimeoutException:
            result = _retry(f"请求超时：{self.timeout:g} 秒内未收到 {host} 的应答")
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            result = _dead(f"Webhook 地址无效：{exc}")
        except httpx.ConnectError as exc:
            result = _retry(f"无法连接 {host}：{exc}")
        except httpx.TransportError as exc:
            result = _retry(f"与 {host} 通信中断：{exc or type(exc).__name__}")
        else:
            result = _classify_response(response, fmt=fmt)
        log.log(
            logging.INFO if result.ok else logging.WARNING,
            "webhook delivery %s to %s: ok=%s retryable=%s %s",
            delivery_id,
            host,
            result.ok,
            result.retryable,
            result.detail,
        )
        return result


# ---------------------------------------------------------------- email


class _MailPolicy(EmailPolicy):
    """SMTP policy (CRLF, RFC 2047 for non-ASCII) that leaves long ASCII URL headers unfolded.

    The default folder turns an unbreakable header longer than 78 characters into encoded words,
    which would corrupt List-Unsubscribe URLs; RFC 5322 allows lines up to 998 characters.
    """

    _unfolded = frozenset({"list-unsubscribe", "list-unsubscribe-post", "message-id", "x-huiqi-delivery"})

    def fold(self, name: str, value: Any) -> str:
        if name.lower() in self._unfolded and str(value).isascii() and len(name) + len(str(value)) < 990:
            return f"{name}: {value}{self.linesep}"
        return super().fold(name, value)

    def fold_binary(self, name: str, value: Any) -> bytes:
        if name.lower() in self._unfolded and str(value).isascii() and len(name) + len(str(value)) < 990:
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


MAIL_POLICY = _MailPolicy(linesep="\r\n")

_FONT_STACK = "'PingFang SC','Microsoft YaHei',sans-serif"
_EMAIL_HTML = """<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
</head>
<body style="margin:0;padding:0;background:#f4f5f7;">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="background:#f4f5f7;">
<tr><td align="center" style="padding:24px 12px;">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="max-width:600px;background:#ffffff;border-radius:8px;font-family:{font};color:#1f2329;">
<tr><td style="padding:24px 28px 4px;font-size:13px;color:#8f959e;font-family:{font};">惠企 · {label}</td></tr>
<tr><td style="padding:0 28px;"><h1 style="margin:0 0 16px;font-size:20px;line-height:1.5;font-weight:600;font-family:{font};">{title}</h1></td></tr>
<tr><td style="padding:0 28px;font-size:15px;line-height:1.8;font-family:{font};">{content}</td></tr>
{button}<tr><td style="padding:16px 28px 24px;border-top:1px solid #e5e6eb;font-size:12px;line-height:1.6;color:#8f959e;font-family:{font};">您收到此邮件，是因为订阅了惠企政策通知。{unsubscribe}</td></tr>
</table>
</td></tr>
</table>
</body>
</html>
"""
_EMAIL_BUTTON = (
    '<tr><td style="padding:24px 28px;"><a href="{url}" style="display:inline-block;padding:10px 24px;'
    "background:#1664ff;color:#ffffff;text-decoration:none;border-radius:4px;font-size:15px;"
    'font-family:{font};">查看详情</a></td></tr>\n'
)
_EMAIL_UNSUBSCRIBE = '<a href="{url}" style="color:#8f959e;text-decoration:underline;">退订此类通知</a>'


def _text_to_html(text: str) -> str:
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    return "\n".join(
        '<p style="margin:0 0 12px;">' + "<br>".join(html.escape(line) for line in p.splitlines()) + "</p>"
        for p in paragraphs
    )


def render_email_html(message: Message) -> str:
    """Return the HTML part: a single-column card with the content, a button to the policy and an unsubscribe footer."""
    font = _FONT_STACK  # a constant without double quotes: safe inside style="…"
    button = (
        _EMAIL_BUTTON.format(url=html.escape(message.url, quote=True), font=font) if _is_http_url(message.url) else ""
    )
    unsubscribe = (
        _EMAIL_UNSUBSCRIBE.format(url=html.escape(message.unsubscribe_url, quote=True))
        if message.unsubscribe_url and _is_http_url(message.unsubscribe_url)
        else ""
    )
    return _EMAIL_HTML.format(
        title=html.escape(_one_line(message.title)),
        label=html.escape(KIND_LABELS.get(message.kind, "通知")),
        content=message.body_html if message.body_html is not None else _text_to_html(message.body_text),
        button=button,
        unsubscribe=unsubscribe,
        font=font,
    )


def render_email_text(message: Message) -> str:
    """Return the plain-text part: title, body, the link and the unsubscribe link."""
    lines = [_one_line(message.title), "", message.body_text.strip()]
    if message.url:
        lines += ["", f"查看详情：{message.url}"]
    lines += ["", "——", "您收到此邮件，是因为订阅了惠企政策通知。"]
    if message.unsubscribe_url:
        lines.append(f"退订此类通知：{message.unsubscribe_url}")
    return "\n".join(lines) + "\n"


_MSGID_SAFE = re.compile(r"[A-Za-z0-9._\-]{1,64}")


def message_id_for(idempotency_key: str, domain: str = "huiqi.local") -> str:
    """Return the Message-ID for a delivery: the same key always gives the same id, so resends are recognisable."""
    local = (
        idempotency_key
        if _MSGID_SAFE.fullmatch(idempotency_key)
        else hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:32]
    )
    return f"<huiqi.{local}@{domain}>"


def _parse_sender(sender: str) -> Address:
    name, addr = email.utils.parseaddr(sender)
    if not addr or "@" not in addr:
        raise ValueError(f"发件人地址无效：{sender!r}")
    return Address(display_name=name, addr_spec=addr)


def _recipient_address(recipient: EmailRecipient | str) -> Address:
    if isinstance(recipient, str):
        recipient = EmailRecipient(address=recipient)
    address = recipient.address.strip()
    if "\n" in address or "\r" in address or address.count("@") != 1:
        raise ValueError("邮箱地址格式不正确")
    local, _, domain = address.partition("@")
    if not local or "." not in domain or domain.startswith(".") or domain.endswith("."):
        raise ValueError("邮箱地址格式不正确")
    return Address(display_name=_one_line(recipient.name), addr_spec=address)


def render_email(
    message: Message,
    *,
    sender: str | None = None,
    to: EmailRecipient | str | None = None,
    now: dt.datetime | None = None,
) -> EmailMessage:
    """Build the multipart/alternative email (plain text + HTML) with RFC 2047 Chinese headers and List-Unsubscribe."""
    msg = EmailMessage(policy=MAIL_POLICY)
    domain = "huiqi.local"
    if sender is not None:
        from_address = _parse_sender(sender)
        msg["From"] = from_address
        domain = from_address.domain or domain
    if to is not None:
        msg["To"] = _recipient_address(to)
    msg["Subject"] = _one_line(message.title)
    msg["Date"] = email.utils.format_datetime((now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC))
    msg["Message-ID"] = message_id_for(message.idempotency_key, domain)
    if message.unsubscribe_url:
        msg["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
        # RFC 8058 one-click unsubscribe is only defined for an HTTPS URI.
        if message.unsubscribe_url.startswith("https://"):
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    # RFC 3834: automatic mail, so auto-responders stay quiet.
    msg["Auto-Submitted"] = "auto-generated"
    msg[DELIVERY_HEADER] = (
        message.idempotency_key
        if message.idempotency_key.isascii()
        else (hashlib.sha256(message.idempotency_key.encode()).hexdigest())
    )
    msg["X-Huiqi-Kind"] = message.kind
    # base64 keeps Chinese text 7-bit clean for any relay, and is shorter than quoted-printable for CJK.
    msg.set_content(render_email_text(message), subtype="plain", charset="utf-8", cte="base64")
    msg.add_alternative(render_email_html(message), subtype="html", charset="utf-8", cte="base64")
    return msg


def _smtp_text(raw: bytes | str) -> str:
    return _snippet(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw))


def _classify_smtp_code(code: int, text: str, what: str) -> DeliveryResult:
    if 400 <= code < 500:
        return _retry(f"{what}暂时失败（SMTP {code}）：{text}", status_code=code)
    return _dead(f"{what}被拒绝（SMTP {code}）：{text}", status_code=code)


def _mask_email(address: str) -> str:
    local, _, domain = address.partition("@")
    return (local[:1] + "***@" + domain) if domain else "***"


class EmailChannel:
    """Send a Message as one email through an SMTP server (plain, STARTTLS or implicit TLS)."""

    name = "email"

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        use_tls: bool = False,
        use_ssl: bool = False,
        timeout: float = 10,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if use_tls and use_ssl:
            raise ValueError("use_tls (STARTTLS) and use_ssl (implicit TLS) are exclusive")
        self.host = host
        self.port = port
        self.sender = sender
        self.username = username
        self.password = password
        self.use_tls = use_tls
        self.use_ssl = use_ssl
        self.timeout = timeout
        self.ssl_context = ssl_context

    def _connect(self) -> smtplib.SMTP:
        if self.use_ssl:
            return smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=self.ssl_context or ssl.create_default_context()
            )
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        if self.use_tls:
            try:
                smtp.starttls(context=self.ssl_context or ssl.create_default_context())
            except BaseException:
                smtp.close()
                raise
        return smtp

    def send(self, message: Message, recipient: Any) -> DeliveryResult:
        """Deliver a message to one mailbox and classify the SMTP outcome."""
        if not isinstance(recipient, EmailRecipient):
            return _dead(f"邮件通道收到了错误的接收方类型（{type(recipient).__name__}）")
        if not self.host:
            return _dead("邮件服务器（SMTP）未配置")
        try:
            envelope_from = _parse_sender(self.sender).addr_spec
        except ValueError as exc:
            return _dead(str(exc))
        try:
            msg = render_email(message, sender=self.sender, to=recipient)
        except ValueError as exc:
            return _dead(f"{exc}：{_mask_email(recipient.address)}")
        result = self._deliver(msg, envelope_from, recipient.address.strip())
        log.log(
            logging.INFO if result.ok else logging.WARNING,
            "email delivery %s to %s: ok=%s retryable=%s %s",
            message.idempotency_key,
            _mask_email(recipient.address),
            result.ok,
            result.retryable,
            result.detail,
        )
        return result

    def _deliver(self, msg: EmailMessage, envelope_from: str, address: str) -> DeliveryResult:
        try:
            with self._connect() as smtp:
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(msg, from_addr=envelope_from, to_addrs=[address])
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()), (550, b""))
            return _classify_smtp_code(code, _smtp_text(text), "收件人")
        except smtplib.SMTPAuthenticationError as exc:
            if 400 <= exc.smtp_code < 500:
                return _retry(
                    f"SMTP 认证暂时失败（{exc.smtp_code}）：{_smtp_text(exc.smtp_error)}", status_code=exc.smtp_code
                )
            return _dead(
                f"SMTP 认证失败，请检查用户名和密码（{exc.smtp_code}）：{_smtp_text(exc.smtp_error)}",
                status_code=exc.smtp_code,
            )
        except smtplib.SMTPSenderRefused as exc:
            return _classify_smtp_code(exc.smtp_code, _smtp_text(exc.smtp_error), "发件人")
        except smtplib.SMTPDataError as exc:
            return _classify_smtp_code(exc.smtp_code, _smtp_text(exc.smtp_error), "邮件")
        except smtplib.SMTPResponseException as exc:  # connect / HELO errors and the rest
            return _classify_smtp_code(exc.smtp_code, _smtp_text(exc.smtp_error), "SMTP 会话")
        except smtplib.SMTPNotSupportedError as exc:
            return _dead(f"邮件服务器不支持所需功能（如 STARTTLS、AUTH 或 SMTPUTF8）：{exc}")
        except smtplib.SMTPServerDisconnected as exc:
            return _retry(f"邮件服务器断开连接：{exc}")
        except ssl.SSLCertVerificationError as exc:
            return _dead(f"邮件服务器证书校验失败：{exc.verify_message or exc}")
        except ssl.SSLEOFError as exc:
            return _retry(f"TLS 连接被中断：{exc}")
        except ssl.SSLError as exc:
            return _dead(f"TLS 握手失败，请检查 use_tls / use_ssl 与端口是否匹配：{exc}")
        except smtplib.SMTPException as exc:  # before OSError: SMTPException subclasses it
            return _retry(f"SMTP 错误：{exc}")
        except TimeoutError:
            return _retry(f"连接邮件服务器 {self.host}:{self.port} 超时（{self.timeout:g} 秒）")
        except OSError as exc:  # refused, unreachable, DNS failure
            return _retry(f"无法连接邮件服务器 {self.host}:{self.port}：{exc}")
        return _sent(f"邮件服务器已接收（{self.host}）")


# ---------------------------------------------------------------- SMS


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


def normalize_phone(phone: str) -> str | None:
    """Return a mainland mobile number as 11 digits (dropping +86 and separators), or None if it is not one."""
    digits = _PHONE_SEPARATORS.sub("", phone or "")
    for prefix in ("+86", "0086", "86"):
        if digits.startswith(prefix) and len(digits) == len(prefix) + 11:
            digits = digits[len(prefix) :]
            break
    return digits if _MOBILE.fullmatch(digits) else None


def render_sms(message: Message, *, sign_name: str = "【惠企】", link: str | None = None) -> str:
    """Return the SMS text: sign, a sentence built from the kind and title, and the (short) link.

    The title is shortened with an ellipsis so the whole text fits one 70-character segment when the
    rest leaves room for at least a few characters of it.
    """
    link = message.url if link is None else link
    label = KIND_LABELS.get(message.kind, "通知")
    title = _one_line(message.title).rstrip("。.!！")
    lead = "" if title.startswith(label) or message.kind in ("manual", "desk_notice", "case_update") else f"{label}："
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
            return _dead(f"短信通道收到了错误的接收方类型（{type(recipient).__name__}）")
        if not self.gateway_url:
            return _dead("短信网关地址未配置")
        if not self.secret:
            return _dead("短信网关签名密钥未配置")
        phone = normalize_phone(recipient.phone)
        if phone is None:
            return _dead(f"手机号格式不正确（应为 11 位大陆手机号）：{mask_phone(recipient.phone.strip())}")
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
