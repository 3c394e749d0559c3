"""Webhook channel: signed Huiqi-format deliveries and the WeCom, DingTalk and Feishu bot formats;
signatures and their verification (the receiver's side).
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import hashlib
import hmac
import json
import logging
import urllib.parse
from collections.abc import Mapping
from decimal import Decimal
from http import HTTPStatus
from typing import Any

import httpx

from core.netguard import AddressGuard, Unresolvable, UnsafeAddress
from push.channels.base import (
    DELIVERY_HEADER,
    PAYLOAD_VERSION,
    WEBHOOK_FORMATS,
    DeliveryResult,
    Message,
    WebhookFormat,
    WebhookRecipient,
    dead_result,
    is_http_url,
    one_line,
    retry_result,
    sent_result,
)

log = logging.getLogger(__name__)


SIGNATURE_HEADER = "X-Huiqi-Signature"
TIMESTAMP_HEADER = "X-Huiqi-Timestamp"
DEFAULT_USER_AGENT = "Huiqi-Webhook/1"
# Bot error codes that mean "too many messages now, try later"; any other non-zero code is permanent.
_BOT_RATE_LIMITED: dict[str, frozenset[int]] = {
    "wecom": frozenset({45009}),
    "dingtalk": frozenset({130101}),
    "feishu": frozenset({11232}),
}
# WeCom rejects markdown content over 4096 bytes; Feishu rejects bodies over 20 KB (DingTalk alike).
_BOT_CONTENT_BYTES = {"wecom": 4096, "dingtalk": 18_000, "feishu": 18_000}


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


def _fit_bytes(text: str, limit: int) -> str:
    """Cut text to at most `limit` UTF-8 bytes on a character boundary, marking the cut with an ellipsis."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode("utf-8", "ignore") + "…"


def _bot_markdown(message: Message) -> str:
    lines = [f"**{one_line(message.title)}**", "", message.body_text.strip()]
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
        return {"msgtype": "markdown", "markdown": {"title": one_line(message.title), "text": content}}
    if format == "feishu":
        parts = [one_line(message.title), message.body_text.strip()]
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
                    return retry_result(f"机器人限流（错误码 {code}），稍后重试", status_code=status)
                return dead_result(f"机器人拒绝消息（错误码 {code}）", status_code=status)
            return sent_result(f"机器人已接收（HTTP {status}）", status_code=status)
        return sent_result(f"接收方已确认（HTTP {status}）", status_code=status, provider_id=_provider_id(response))
    # The status code and its standard phrase only: the remote body (which an internal service could fill
    # with anything) is never stored in last_error nor shown to staff.
    shown = _status_text(status)
    if status in (408, 429) or status >= 500:
        return retry_result(f"接收方暂时不可用（{shown}）", status_code=status, retry_after=_retry_after(response))
    if 300 <= status < 400:
        return dead_result(f"接收地址返回重定向（{shown}），请改为配置最终地址", status_code=status)
    return dead_result(f"接收方拒绝请求（{shown}）", status_code=status)


def _status_text(status: int) -> str:
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


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
            return dead_result(f"Webhook 通道收到了错误的接收方类型（{type(recipient).__name__}）")
        fmt = recipient.format or self.format
        if fmt not in WEBHOOK_FORMATS:
            return dead_result(f"不支持的 Webhook 格式：{fmt}")
        if fmt == "huiqi" and not recipient.secret:
            return dead_result("Webhook 未配置签名密钥，无法签名推送")
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
        if not is_http_url(url):
            return dead_result("Webhook 地址无效：须以 http:// 或 https:// 开头并包含主机名")
        host = urllib.parse.urlsplit(url).hostname
        target_url, extra_headers, extensions = url, {}, {}
        if guard is not None:
            # Resolve and check now, then connect to the checked address (DNS rebinding cannot swap it).
            try:
                target = guard.check_url(url)
            except UnsafeAddress as exc:
                return dead_result(f"Webhook 地址不可用：{exc}")
            except Unresolvable as exc:
                return retry_result(f"Webhook 地址暂时不可用：{exc}")
            target_url, extra_headers = target.url, {"Host": target.host_header}
            if url.lower().startswith("https:"):
                extensions = {"sni_hostname": target.host}
        try:
            body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=_json_default).encode()
        except (TypeError, ValueError) as exc:
            return dead_result(f"推送数据无法序列化为 JSON：{exc}")
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
            result = retry_result(f"请求超时：{self.timeout:g} 秒内未收到 {host} 的应答")
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            result = dead_result(f"Webhook 地址无效：{exc}")
        except httpx.ConnectError as exc:
            result = retry_result(f"无法连接 {host}：{exc}")
        except httpx.TransportError as exc:
            result = retry_result(f"与 {host} 通信中断：{exc or type(exc).__name__}")
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
