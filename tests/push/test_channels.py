"""Channels against real local servers: an HTTP server that succeeds, fails, stalls and hangs up; an SMTP server."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import random
import socket
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from email.header import decode_header, make_header
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from core.netguard import AddressGuard
from push.channels import (
    Channel,
    DeliveryResult,
    EmailChannel,
    EmailRecipient,
    Message,
    SmsChannel,
    SmsRecipient,
    WebhookChannel,
    WebhookRecipient,
    backoff,
    compute_signature,
    dingtalk_sign,
    feishu_sign,
    message_id_for,
    normalize_phone,
    render_email,
    render_sms,
    render_webhook_payload,
    sms_length,
    sms_segments,
    split_sms,
    verify_signature,
)
from tests.support.receiver import Receiver, running

SECRET = "whsec_test_0123456789abcdef"
SENDER = "惠企服务 <noreply@huiqi.example>"

# The test receivers listen on 127.0.0.1: admitted through the allow-list, as HUIQI_WEBHOOK_ALLOW_HOSTS would.
LOCAL = AddressGuard("127.0.0.1/32")


def make_message(**overrides: Any) -> Message:
    fields: dict[str, Any] = {
        "kind": "new_match",
        "title": "新政策匹配：深圳市专精特新中小企业奖励",
        "body_text": "贵企业符合《深圳市专精特新中小企业奖励》的申报条件。\n申报截止：2026年12月31日。",
        "url": "https://huiqi.example/policies/42",
        "unsubscribe_url": "https://huiqi.example/unsubscribe?token=abc",
        "data": {"policy_id": 42, "deadline": dt.date(2026, 12, 31), "enterprise_id": 7},
        "idempotency_key": "delivery-1001",
    }
    fields.update(overrides)
    return Message(**fields)


# ---------------------------------------------------------------- a real local HTTP server


@pytest.fixture
def http_server() -> Iterator[Receiver]:
    with running() as server:
        yield server


@pytest.fixture
def webhook() -> Iterator[WebhookChannel]:
    with WebhookChannel(timeout=2.0, guard=LOCAL) as channel:
        yield channel


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


# ---------------------------------------------------------------- webhook


def test_webhook_channel_satisfies_the_channel_protocol(webhook: WebhookChannel) -> None:
    assert isinstance(webhook, Channel)
    assert webhook.name == "webhook"


def test_webhook_posts_the_documented_payload_and_headers(http_server: Receiver, webhook: WebhookChannel) -> None:
    result = webhook.send(make_message(), WebhookRecipient(http_server.url("/ok"), SECRET))

    assert result == DeliveryResult(
        ok=True, retryable=False, detail=result.detail, status_code=200, provider_id="rcv-1"
    )
    [request] = http_server.requests
    payload = request.json()
    assert payload["version"] == 1
    assert payload["id"] == "delivery-1001"
    assert payload["kind"] == "new_match"
    assert payload["title"] == "新政策匹配：深圳市专精特新中小企业奖励"
    assert payload["text"].startswith("贵企业符合")
    assert payload["url"] == "https://huiqi.example/policies/42"
    assert payload["data"] == {"policy_id": 42, "deadline": "2026-12-31", "enterprise_id": 7}
    assert dt.datetime.fromisoformat(payload["sent_at"]).tzinfo is not None
    assert "深圳".encode() in request.body  # UTF-8, not \u escapes
    assert request.headers["content-type"] == "application/json; charset=utf-8"
    assert request.headers["x-huiqi-delivery"] == "delivery-1001"
    assert request.headers["x-huiqi-signature"].startswith("sha256=")
    assert abs(int(request.headers["x-huiqi-timestamp"]) - time.time()) < 60


def test_webhook_signature_verifies_over_timestamp_and_raw_body(http_server: Receiver, webhook: WebhookChannel) -> None:
    webhook.send(make_message(), WebhookRecipient(http_server.url("/ok"), SECRET))
    [request] = http_server.requests
    timestamp, header = request.headers["x-huiqi-timestamp"], request.headers["x-huiqi-signature"]

    assert header == compute_signature(SECRET, timestamp, request.body)
    assert verify_signature(SECRET, timestamp, request.body, header)


def test_signature_fails_with_a_wrong_secret_or_a_tampered_body(http_server: Receiver, webhook: WebhookChannel) -> None:
    webhook.send(make_message(), WebhookRecipient(http_server.url("/ok"), SECRET))
    [request] = http_server.requests
    timestamp, header = request.headers["x-huiqi-timestamp"], request.headers["x-huiqi-signature"]

    assert not verify_signature("another-secret", timestamp, request.body, header)
    assert not verify_signature(SECRET, timestamp, request.body.replace(b"42", b"43"), header)
    assert not verify_signature(SECRET, str(int(timestamp) + 1), request.body, header)
    assert not verify_signature(SECRET, timestamp, request.body, None)


def test_signature_fails_for_a_timestamp_outside_the_tolerance() -> None:
    body = b'{"id":"x"}'
    sent = 1_800_000_000
    header = compute_signature(SECRET, sent, body)

    assert verify_signature(SECRET, str(sent), body, header, now=sent + 300)
    assert not verify_signature(SECRET, str(sent), body, header, now=sent + 301)
    assert not verify_signature(SECRET, str(sent), body, header, now=sent - 301)
    assert not verify_signature(SECRET, str(sent), body, header, now=dt.datetime.fromtimestamp(sent + 3600, dt.UTC))
    assert not verify_signature(SECRET, "not-a-number", body, header, now=sent)


def test_http_500_is_retryable(http_server: Receiver, webhook: WebhookChannel) -> None:
    result = webhook.send(make_message(), WebhookRecipient(http_server.url("/status/500"), SECRET))

    assert (result.ok, result.retryable, result.status_code) == (False, True, 500)
    assert "HTTP 500" in result.detail


def test_http_429_is_retryable_and_carries_retry_after(http_server: Receiver, webhook: WebhookChannel) -> None:
    result = webhook.send(make_message(), WebhookRecipient(http_server.url("/status/429"), SECRET))

    assert (result.ok, result.retryable, result.status_code) == (False, True, 429)
    assert result.retry_after == dt.timedelta(seconds=120)


def test_http_400_is_dead_with_the_status_but_never_the_remote_body(
    http_server: Receiver, webhook: WebhookChannel
) -> None:
    result = webhook.send(make_message(), WebhookRecipient(http_server.url("/status/400"), SECRET))

    assert (result.ok, result.retryable, result.status_code) == (False, False, 400)
    assert result.detail == "接收方拒绝请求（HTTP 400 Bad Request）"
    assert "失败原因：测试" not in result.detail  # what the receiver wrote is not stored nor shown


def test_redirect_is_dead_and_not_followed(http_server: Receiver, webhook: WebhookChannel) -> None:
    result = webhook.send(make_message(), WebhookRecipient(http_server.url("/status/302"), SECRET))

    assert (result.ok, result.retryable, result.status_code) == (False, False, 302)
    assert [r.path for r in http_server.requests] == ["/status/302"]


def test_timeout_is_retryable(http_server: Receiver) -> None:
    with WebhookChannel(timeout=0.3, guard=LOCAL) as channel:
        started = time.monotonic()
        result = channel.send(make_message(), WebhookRecipient(http_server.url("/sleep/1.5"), SECRET))

    assert (result.ok, result.retryable, result.status_code) == (False, True, None)
    assert "超时" in result.detail
    assert time.monotonic() - started < 1.2


def test_connection_closed_without_answer_is_retryable(http_server: Receiver, webhook: WebhookChannel) -> None:
    result = webhook.send(make_message(), WebhookRecipient(http_server.url("/close"), SECRET))

    assert (result.ok, result.retryable) == (False, True)
    assert len(http_server.requests) == 1


def test_connection_refused_is_retryable(webhook: WebhookChannel) -> None:
    result = webhook.send(make_message(), WebhookRecipient(f"http://127.0.0.1:{closed_port()}/hook", SECRET))

    assert (result.ok, result.retryable) == (False, True)
    assert "无法连接" in result.detail


@pytest.mark.parametrize(
    ("recipient", "reason"),
    [
        (WebhookRecipient("http://127.0.0.1:9/hook", ""), "签名密钥"),
        (WebhookRecipient("ftp://example.com/hook", SECRET), "地址无效"),
        (WebhookRecipient("not a url", SECRET), "地址无效"),
        (EmailRecipient("a@example.com"), "接收方类型"),
    ],
)
def test_bad_configuration_is_dead_with_a_chinese_reason(webhook: WebhookChannel, recipient: Any, reason: str) -> None:
    result = webhook.send(make_message(), recipient)

    assert (result.ok, result.retryable) == (False, False)
    assert reason in result.detail


def test_unserialisable_data_is_dead(http_server: Receiver, webhook: WebhookChannel) -> None:
    result = webhook.send(make_message(data={"x": object()}), WebhookRecipient(http_server.url("/ok"), SECRET))

    assert (result.ok, result.retryable) == (False, False)
    assert http_server.requests == []


# ---------------------------------------------------------------- chat-bot formats


def test_wecom_format_posts_markdown_and_still_signs(http_server: Receiver) -> None:
    http_server.replies["wecom"] = (200, {"errcode": 0, "errmsg": "ok"})
    with WebhookChannel(format="wecom", guard=LOCAL) as channel:
        result = channel.send(make_message(), WebhookRecipient(http_server.url("/reply/wecom"), SECRET))

    assert result.ok
    [request] = http_server.requests
    payload = request.json()
    assert payload["msgtype"] == "markdown"
    content = payload["markdown"]["content"]
    assert content.startswith("**新政策匹配：深圳市专精特新中小企业奖励**")
    assert "[查看详情](https://huiqi.example/policies/42)" in content
    assert verify_signature(
        SECRET, request.headers["x-huiqi-timestamp"], request.body, request.headers["x-huiqi-signature"]
    )


def test_recipient_format_overrides_the_channel_default(http_server: Receiver, webhook: WebhookChannel) -> None:
    http_server.replies["ding"] = (200, {"errcode": 0, "errmsg": "ok"})
    result = webhook.send(
        make_message(), WebhookRecipient(http_server.url("/reply/ding?access_token=t"), SECRET, "dingtalk")
    )

    assert result.ok
    [request] = http_server.requests
    payload = request.json()
    assert payload["msgtype"] == "markdown"
    assert payload["markdown"]["title"] == "新政策匹配：深圳市专精特新中小企业奖励"
    assert "贵企业符合" in payload["markdown"]["text"]
    # DingTalk's own signature rides in the query string next to the access token.
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.path).query)
    assert query["access_token"] == ["t"]
    assert query["sign"] == [dingtalk_sign(SECRET, int(query["timestamp"][0]))]


def test_feishu_format_posts_text_with_its_body_signature(http_server: Receiver) -> None:
    http_server.replies["feishu"] = (200, {"code": 0, "msg": "success", "data": {}})
    with WebhookChannel(format="feishu", guard=LOCAL) as channel:
        result = channel.send(make_message(), WebhookRecipient(http_server.url("/reply/feishu"), SECRET))

    assert result.ok
    payload = http_server.requests[0].json()
    assert payload["msg_type"] == "text"
    assert payload["content"]["text"].startswith("新政策匹配：深圳市专精特新中小企业奖励\n")
    assert "查看详情：https://huiqi.example/policies/42" in payload["content"]["text"]
    assert payload["sign"] == feishu_sign(SECRET, int(payload["timestamp"]))


def test_feishu_without_a_secret_sends_no_bot_signature(http_server: Receiver) -> None:
    http_server.replies["feishu"] = (200, {"code": 0, "msg": "success"})
    with WebhookChannel(format="feishu", guard=LOCAL) as channel:
        result = channel.send(make_message(), WebhookRecipient(http_server.url("/reply/feishu"), ""))

    assert result.ok
    [request] = http_server.requests
    assert "sign" not in request.json()
    assert "x-huiqi-signature" not in request.headers


@pytest.mark.parametrize(
    ("fmt", "reply", "retryable"),
    [
        ("wecom", {"errcode": 45009, "errmsg": "api freq out of limit"}, True),
        ("dingtalk", {"errcode": 130101, "errmsg": "send too fast"}, True),
        ("feishu", {"code": 11232, "msg": "frequency limited"}, True),
        ("wecom", {"errcode": 93000, "errmsg": "invalid webhook url"}, False),
        ("dingtalk", {"errcode": 310000, "errmsg": "keywords not in content"}, False),
        ("feishu", {"code": 19021, "msg": "sign match fail"}, False),
    ],
)
def test_bot_error_code_in_a_200_answer_is_a_failure(
    http_server: Receiver, fmt: str, reply: dict[str, Any], retryable: bool
) -> None:
    http_server.replies["bot"] = (200, reply)
    with WebhookChannel(format=fmt, guard=LOCAL) as channel:  # type: ignore[arg-type]
        result = channel.send(make_message(), WebhookRecipient(http_server.url("/reply/bot"), SECRET))

    assert (result.ok, result.retryable, result.status_code) == (False, retryable, 200)


def test_wecom_markdown_is_cut_to_its_4096_byte_limit() -> None:
    payload = render_webhook_payload(make_message(body_text="政策" * 3000), format="wecom")

    content = payload["markdown"]["content"]
    assert len(content.encode()) <= 4096
    assert content.endswith("…")


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError):
        WebhookChannel(format="slack")  # type: ignore[arg-type]


# ---------------------------------------------------------------- backoff


def test_backoff_doubles_from_thirty_seconds() -> None:
    delays = [backoff(n, jitter=0).total_seconds() for n in range(1, 11)]

    assert delays == [30, 60, 120, 240, 480, 960, 1920, 3840, 7680, 15360]


def test_backoff_is_capped_at_six_hours() -> None:
    assert backoff(11, jitter=0) == dt.timedelta(hours=6)
    assert backoff(10_000, jitter=0) == dt.timedelta(hours=6)
    assert backoff(10_000, factor=1e10, jitter=0) == dt.timedelta(hours=6)  # overflow still lands on the cap


def test_backoff_jitter_stays_within_ten_percent_and_under_the_cap() -> None:
    rng = random.Random(7)
    for attempt in (1, 4, 9):
        exact = 30 * 2 ** (attempt - 1)
        samples = [backoff(attempt, rng=rng).total_seconds() for _ in range(200)]
        assert all(0.9 * exact <= s <= 1.1 * exact for s in samples)
        assert len(set(samples)) > 100  # jitter actually spreads retries
    capped = [backoff(20, rng=rng) for _ in range(200)]
    assert all(dt.timedelta(hours=6) * 0.9 <= d <= dt.timedelta(hours=6) for d in capped)


def test_backoff_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError):
        backoff(0)


# ---------------------------------------------------------------- email rendering


def test_render_email_is_multipart_alternative_with_encoded_chinese_headers() -> None:
    msg = render_email(make_message(), sender=SENDER, to=EmailRecipient("boss@firm.example", "王总"))
    raw = msg.as_bytes()

    assert raw.isascii()  # RFC 2047 headers and base64 bodies: 7-bit clean for any relay
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert b"Subject: =?utf-8?" in raw
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == "新政策匹配：深圳市专精特新中小企业奖励"
    assert parsed["From"].addresses[0].display_name == "惠企服务"
    assert parsed["To"].addresses[0].addr_spec == "boss@firm.example"
    assert parsed["List-Unsubscribe"] == "<https://huiqi.example/unsubscribe?token=abc>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["Message-ID"] == "<huiqi.delivery-1001@huiqi.example>"


def test_render_email_html_escapes_content_and_has_button_font_stack_and_unsubscribe() -> None:
    msg = render_email(make_message(title="<script>alert(1)</script>政策", body_text="A & B <b>\n第二行"))
    html_part = msg.get_body(("html",)).get_content()
    text_part = msg.get_body(("plain",)).get_content()

    assert "<script>" not in html_part
    assert "&lt;script&gt;alert(1)&lt;/script&gt;政策" in html_part
    assert "A &amp; B &lt;b&gt;<br>第二行" in html_part
    assert "'PingFang SC','Microsoft YaHei',sans-serif" in html_part
    assert 'href="https://huiqi.example/policies/42"' in html_part
    assert "退订此类通知" in html_part
    assert "查看详情：https://huiqi.example/policies/42" in text_part
    assert "退订此类通知：https://huiqi.example/unsubscribe?token=abc" in text_part


def test_render_email_uses_trusted_body_html_when_given() -> None:
    msg = render_email(make_message(body_html="<ul><li>政策一</li></ul>"))

    assert "<ul><li>政策一</li></ul>" in msg.get_body(("html",)).get_content()


def test_long_unsubscribe_url_is_not_folded_into_encoded_words() -> None:
    url = "https://huiqi.example/unsubscribe?token=" + "a" * 200
    raw = render_email(make_message(unsubscribe_url=url)).as_bytes()

    assert f"List-Unsubscribe: <{url}>\r\n".encode() in raw


def test_plain_http_unsubscribe_gets_no_one_click_header() -> None:
    msg = render_email(make_message(unsubscribe_url="http://localhost:8000/unsubscribe?t=x"))

    assert msg["List-Unsubscribe"] == "<http://localhost:8000/unsubscribe?t=x>"
    assert msg["List-Unsubscribe-Post"] is None


def test_message_id_is_stable_per_idempotency_key() -> None:
    assert message_id_for("delivery-1") == message_id_for("delivery-1")
    assert message_id_for("delivery-1") != message_id_for("delivery-2")
    odd = message_id_for("推送 <1>@x")
    assert odd == message_id_for("推送 <1>@x") and odd.isascii() and " " not in odd


# ---------------------------------------------------------------- email over a real SMTP server


class _Collector:
    def __init__(self) -> None:
        self.envelopes: list[Any] = []
        self.rcpt_reply: str | None = None
        self.data_reply: str | None = None

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_reply:
            return self.data_reply
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


@dataclass
class _Smtp:
    handler: _Collector
    port: int

    def channel(self, **kw: Any) -> EmailChannel:
        return EmailChannel(host="127.0.0.1", port=self.port, sender=SENDER, timeout=5, **kw)


@pytest.fixture
def smtp_server() -> Iterator[_Smtp]:
    handler = _Collector()
    # aiosmtpd's Controller probes its own port on start, so it needs a concrete free port, not 0.
    controller = Controller(handler, hostname="127.0.0.1", port=closed_port())
    controller.start()
    yield _Smtp(handler, controller.port)
    controller.stop()


def test_email_is_delivered_and_parses_back(smtp_server: _Smtp) -> None:
    result = smtp_server.channel().send(make_message(), EmailRecipient("boss@firm.example", "王总"))

    assert (result.ok, result.retryable) == (True, False)
    [envelope] = smtp_server.handler.envelopes
    assert envelope.mail_from == "noreply@huiqi.example"
    assert envelope.rcpt_tos == ["boss@firm.example"]
    parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
    raw_subject = email.message_from_bytes(envelope.content, policy=email.policy.compat32)["Subject"]
    assert raw_subject.startswith("=?utf-8?")  # RFC 2047 on the wire, no SMTPUTF8 needed
    assert str(make_header(decode_header(raw_subject))) == "新政策匹配：深圳市专精特新中小企业奖励"
    assert parsed["Subject"] == "新政策匹配：深圳市专精特新中小企业奖励"
    assert parsed["To"].addresses[0].display_name == "王总"
    assert "贵企业符合《深圳市专精特新中小企业奖励》" in parsed.get_body(("plain",)).get_content()
    assert "查看详情" in parsed.get_body(("html",)).get_content()
    assert parsed["List-Unsubscribe"] == "<https://huiqi.example/unsubscribe?token=abc>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["Message-ID"] == "<huiqi.delivery-1001@huiqi.example>"
    assert parsed["X-Huiqi-Delivery"] == "delivery-1001"


def test_resend_carries_the_same_message_id(smtp_server: _Smtp) -> None:
    channel = smtp_server.channel()
    channel.send(make_message(), EmailRecipient("boss@firm.example"))
    channel.send(make_message(), EmailRecipient("boss@firm.example"))

    ids = [email.message_from_bytes(e.content)["Message-ID"] for e in smtp_server.handler.envelopes]
    assert len(ids) == 2 and ids[0] == ids[1]


def test_smtp_451_is_retryable(smtp_server: _Smtp) -> None:
    smtp_server.handler.rcpt_reply = "451 4.7.1 Greylisted, try again later"

    result = smtp_server.channel().send(make_message(), EmailRecipient("boss@firm.example"))

    assert (result.ok, result.retryable, result.status_code) == (False, True, 451)
    assert "Greylisted" in result.detail


def test_smtp_550_is_dead(smtp_server: _Smtp) -> None:
    smtp_server.handler.data_reply = "550 5.7.1 Message rejected as spam"

    result = smtp_server.channel().send(make_message(), EmailRecipient("boss@firm.example"))

    assert (result.ok, result.retryable, result.status_code) == (False, False, 550)


def test_smtp_connection_refused_is_retryable() -> None:
    channel = EmailChannel(host="127.0.0.1", port=closed_port(), sender=SENDER, timeout=2)

    result = channel.send(make_message(), EmailRecipient("boss@firm.example"))

    assert (result.ok, result.retryable) == (False, True)


def test_starttls_against_a_server_without_it_is_dead(smtp_server: _Smtp) -> None:
    result = smtp_server.channel(use_tls=True).send(make_message(), EmailRecipient("boss@firm.example"))

    assert (result.ok, result.retryable) == (False, False)
    assert smtp_server.handler.envelopes == []


@pytest.mark.parametrize("address", ["not-an-address", "a@b", "a@@b.cn", "x@y.cn\r\nBcc: z@evil.example"])
def test_invalid_email_address_is_dead_without_connecting(address: str) -> None:
    channel = EmailChannel(host="127.0.0.1", port=closed_port(), sender=SENDER)

    result = channel.send(make_message(), EmailRecipient(address))

    assert (result.ok, result.retryable) == (False, False)
    assert "邮箱地址" in result.detail


def test_missing_smtp_host_is_dead() -> None:
    result = EmailChannel(host="", port=25, sender=SENDER).send(make_message(), EmailRecipient("a@b.cn"))

    assert (result.ok, result.retryable) == (False, False)
    assert "未配置" in result.detail


# ---------------------------------------------------------------- SMS


def test_sms_segments_follow_the_70_and_67_rule() -> None:
    assert sms_segments("") == []
    assert sms_segments("政" * 70) == ["政" * 70]
    two = sms_segments("政" * 71)
    assert [len(s) for s in two] == [67, 4]
    assert [len(s) for s in sms_segments("政" * 134)] == [67, 67]
    assert [len(s) for s in sms_segments("政" * 135)] == [67, 67, 1]
    assert "".join(sms_segments("策" * 200)) == "策" * 200


def test_sms_counts_an_emoji_as_two_units_and_never_splits_it() -> None:
    text = "政" * 66 + "🎉" + "策" * 10

    assert sms_length("🎉") == 2
    parts = split_sms(text)
    assert parts[0] == "政" * 66 and parts[1].startswith("🎉")
    assert all(sms_length(p) <= 67 for p in parts)


def test_render_sms_fits_one_segment_by_shortening_the_title() -> None:
    message = make_message(title="关于组织申报2026年度深圳市工业和信息化局中小企业服务体系建设专项扶持计划项目的通知")
    text = render_sms(message, sign_name="【惠企】", link="https://hq.example/p/42")

    assert text.startswith("【惠企】新政策匹配：关于组织申报")
    assert text.endswith("，详情：https://hq.example/p/42")
    assert "…" in text
    assert sms_length(text) <= 70


@pytest.mark.parametrize(
    ("phone", "normalized"),
    [
        ("13800138000", "13800138000"),
        ("+86 138-0013-8000", "13800138000"),
        ("008619912345678", "19912345678"),
        ("12800138000", None),
        ("1380013800", None),
        ("010-12345678", None),
        ("", None),
    ],
)
def test_normalize_phone_accepts_mainland_mobiles_only(phone: str, normalized: str | None) -> None:
    assert normalize_phone(phone) == normalized


def test_gateway_receives_signed_json(http_server: Receiver, webhook: WebhookChannel) -> None:
    channel = SmsChannel(gateway_url=http_server.url("/ok"), secret="gw-secret", webhook=webhook)

    result = channel.send(make_message(url="https://hq.example/p/42"), SmsRecipient("+86 138 0013 8000"))

    assert (result.ok, result.provider_id) == (True, "rcv-1")
    [request] = http_server.requests
    payload = request.json()
    assert payload["phone"] == "13800138000"
    assert payload["id"] == "delivery-1001"
    assert payload["text"].startswith("【惠企】")
    assert payload["text"].endswith("https://hq.example/p/42")
    assert payload["segments"] == len(sms_segments(payload["text"])) == 1
    assert request.headers["x-huiqi-delivery"] == "delivery-1001"
    assert verify_signature(
        "gw-secret", request.headers["x-huiqi-timestamp"], request.body, request.headers["x-huiqi-signature"]
    )


def test_long_sms_is_reported_as_several_segments(http_server: Receiver, webhook: WebhookChannel) -> None:
    channel = SmsChannel(
        gateway_url=http_server.url("/ok"), secret="gw-secret", webhook=webhook, shorten=lambda url: url
    )

    channel.send(
        make_message(url="https://huiqi.example/policies/42?from=sms&campaign=" + "x" * 60), SmsRecipient("13800138000")
    )

    payload = http_server.requests[0].json()
    assert payload["segments"] == len(sms_segments(payload["text"])) >= 2


def test_sms_uses_the_shortener_for_the_link(http_server: Receiver, webhook: WebhookChannel) -> None:
    channel = SmsChannel(
        gateway_url=http_server.url("/ok"), secret="s", webhook=webhook, shorten=lambda url: "https://hq.cn/s/1"
    )

    channel.send(make_message(), SmsRecipient("13800138000"))

    assert http_server.requests[0].json()["text"].endswith("详情：https://hq.cn/s/1")


@pytest.mark.parametrize("phone", ["12345", "12800138000", "139001380001", "abc"])
def test_invalid_phone_is_dead_without_calling_the_gateway(
    http_server: Receiver, webhook: WebhookChannel, phone: str
) -> None:
    channel = SmsChannel(gateway_url=http_server.url("/ok"), secret="gw-secret", webhook=webhook)

    result = channel.send(make_message(), SmsRecipient(phone))

    assert (result.ok, result.retryable) == (False, False)
    assert "手机号" in result.detail
    assert http_server.requests == []


def test_gateway_failure_is_classified_like_a_webhook(http_server: Receiver, webhook: WebhookChannel) -> None:
    channel = SmsChannel(gateway_url=http_server.url("/status/503"), secret="gw-secret", webhook=webhook)

    result = channel.send(make_message(), SmsRecipient("13800138000"))

    assert (result.ok, result.retryable, result.status_code) == (False, True, 503)


def test_unconfigured_gateway_is_dead(webhook: WebhookChannel) -> None:
    result = SmsChannel(gateway_url="", secret="", webhook=webhook).send(make_message(), SmsRecipient("13800138000"))

    assert (result.ok, result.retryable) == (False, False)
    assert "未配置" in result.detail


# ---------------------------------------------------------------- messages


def test_message_refuses_an_unknown_kind_or_an_empty_key() -> None:
    with pytest.raises(ValueError):
        make_message(kind="spam")
    with pytest.raises(ValueError):
        make_message(idempotency_key="")


def test_recipient_repr_hides_the_secret() -> None:
    assert SECRET not in repr(WebhookRecipient("https://x.example/hook", SECRET))


def test_payload_is_identical_for_each_attempt_but_the_timestamp() -> None:
    message = make_message()
    first = render_webhook_payload(message, now=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    second = render_webhook_payload(message, now=dt.datetime(2026, 1, 2, tzinfo=dt.UTC))

    assert {k: v for k, v in first.items() if k != "sent_at"} == {k: v for k, v in second.items() if k != "sent_at"}
    assert first["sent_at"] == "2026-01-01T00:00:00+00:00"
