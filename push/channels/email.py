"""Email channel: messages rendered as text and HTML, sent over SMTP."""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import html
import logging
import re
import smtplib
import ssl
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from typing import Any

from push.channels.base import (
    DELIVERY_HEADER,
    KIND_LABELS,
    DeliveryResult,
    EmailRecipient,
    Message,
    dead_result,
    is_http_url,
    one_line,
    retry_result,
    sent_result,
    snippet,
)

log = logging.getLogger(__name__)


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
        _EMAIL_BUTTON.format(url=html.escape(message.url, quote=True), font=font) if is_http_url(message.url) else ""
    )
    unsubscribe = (
        _EMAIL_UNSUBSCRIBE.format(url=html.escape(message.unsubscribe_url, quote=True))
        if message.unsubscribe_url and is_http_url(message.unsubscribe_url)
        else ""
    )
    return _EMAIL_HTML.format(
        title=html.escape(one_line(message.title)),
        label=html.escape(KIND_LABELS.get(message.kind, "通知")),
        content=message.body_html if message.body_html is not None else _text_to_html(message.body_text),
        button=button,
        unsubscribe=unsubscribe,
        font=font,
    )


def render_email_text(message: Message) -> str:
    """Return the plain-text part: title, body, the link and the unsubscribe link."""
    lines = [one_line(message.title), "", message.body_text.strip()]
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
    return Address(display_name=one_line(recipient.name), addr_spec=address)


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
    msg["Subject"] = one_line(message.title)
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
    return snippet(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw))


def _classify_smtp_code(code: int, text: str, what: str) -> DeliveryResult:
    if 400 <= code < 500:
        return retry_result(f"{what}暂时失败（SMTP {code}）：{text}", status_code=code)
    return dead_result(f"{what}被拒绝（SMTP {code}）：{text}", status_code=code)


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
            return dead_result(f"邮件通道收到了错误的接收方类型（{type(recipient).__name__}）")
        if not self.host:
            return dead_result("邮件服务器（SMTP）未配置")
        try:
            envelope_from = _parse_sender(self.sender).addr_spec
        except ValueError as exc:
            return dead_result(str(exc))
        try:
            msg = render_email(message, sender=self.sender, to=recipient)
        except ValueError as exc:
            return dead_result(f"{exc}：{_mask_email(recipient.address)}")
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
                return retry_result(
                    f"SMTP 认证暂时失败（{exc.smtp_code}）：{_smtp_text(exc.smtp_error)}", status_code=exc.smtp_code
                )
            return dead_result(
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
            return dead_result(f"邮件服务器不支持所需功能（如 STARTTLS、AUTH 或 SMTPUTF8）：{exc}")
        except smtplib.SMTPServerDisconnected as exc:
            return retry_result(f"邮件服务器断开连接：{exc}")
        except ssl.SSLCertVerificationError as exc:
            return dead_result(f"邮件服务器证书校验失败：{exc.verify_message or exc}")
        except ssl.SSLEOFError as exc:
            return retry_result(f"TLS 连接被中断：{exc}")
        except ssl.SSLError as exc:
            return dead_result(f"TLS 握手失败，请检查 use_tls / use_ssl 与端口是否匹配：{exc}")
        except smtplib.SMTPException as exc:  # before OSError: SMTPException subclasses it
            return retry_result(f"SMTP 错误：{exc}")
        except TimeoutError:
            return retry_result(f"连接邮件服务器 {self.host}:{self.port} 超时（{self.timeout:g} 秒）")
        except OSError as exc:  # refused, unreachable, DNS failure
            return retry_result(f"无法连接邮件服务器 {self.host}:{self.port}：{exc}")
        return sent_result(f"邮件服务器已接收（{self.host}）")
