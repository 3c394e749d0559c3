"""ASGI middlewares that guard every request before a route sees it.

- `SecurityHeaders`: a strict Content-Security-Policy (a fresh nonce per request, no inline handlers,
  no third-party origins), nosniff, no framing and a same-origin referrer on every response.
- `BodyLimit`: a request body past HUIQI_UPLOAD_MAX_MB is refused (413) by its Content-Length before
  a byte is read, or as soon as the bytes streamed in pass the limit (chunked or lying bodies). Every
  upload passes it first: import files are then held to the same limit (core.deps.read_upload) and
  attachments to HUIQI_ATTACHMENT_MAX_MB, which settings keep at or below it (core.deps.read_attachment).
- `RefuseNul`: a NUL character in the path, a query parameter, a JSON body or a form field, or a JSON
  integer past 2**53 - 1, is refused (422 naming the field) before any route sees it: PostgreSQL
  cannot store NUL in text, and no database column holds such an integer.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import parse_qsl

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core import jsonsafe
from core.schemas import MAX_INT

# Swagger UI (/docs) is FastAPI's page: its script and style come from this CDN.
_DOCS_CDN = "https://cdn.jsdelivr.net"


def content_security_policy(nonce: str, *, docs: bool = False) -> str:
    """The policy: our own origin only; inline <script>/<style> only with this response's nonce.

    Inline style *attributes* stay allowed (style-src-attr): ECharts writes its tooltip markup with
    them and two templates size a bar with one; they cannot run script. Inline event handlers and
    javascript: URLs are refused (script-src has no 'unsafe-inline' and no 'unsafe-hashes').
    """
    extra = f" {_DOCS_CDN}" if docs else ""
    return "; ".join(
        (
            "default-src 'self'",
            f"script-src 'self' 'nonce-{nonce}'{extra}",
            f"style-src 'self' 'nonce-{nonce}'{extra}",
            "style-src-attr 'unsafe-inline'",
            "img-src 'self' data:" + (" https://fastapi.tiangolo.com" if docs else ""),
            "font-src 'self' data:",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


class SecurityHeaders:
    """Add the security headers to every HTTP response and put the CSP nonce in scope["state"]."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(18)
        state: dict[str, Any] = scope.setdefault("state", {})
        state["csp_nonce"] = nonce
        docs = scope.get("path", "") == "/docs"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = content_security_policy(nonce, docs=docs)
                headers["X-Content-Type-Options"] = "nosniff"
                headers["X-Frame-Options"] = "DENY"
                headers["Referrer-Policy"] = "same-origin"
                headers["Cross-Origin-Opener-Policy"] = "same-origin"
                headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=(), payment=()"
            await send(message)

        await self.app(scope, receive, send_with_headers)


# Multipart framing (boundaries, part headers, the other fields) on top of the file itself.
_MULTIPART_SLACK = 256 * 1024


def _too_large(limit_mb: int, attachment_mb: int) -> dict[str, Any]:
    reason = f"请求内容超过 {limit_mb} MB 的上限"
    return {
        "code": "payload_too_large",
        "message": f"{reason}：导入文件请拆分后分批导入，附件每个不超过 {attachment_mb} MB",
        "errors": [{"field": "body", "reason": reason, "code": "payload_too_large"}],
    }


class BodyLimit:
    """Refuse request bodies larger than the upload limit, early.

    A declared Content-Length past the limit gets 413 before anything is read. Otherwise the bytes
    are counted as the app reads them; past the limit the read fails with 413 (HTTPException, which
    FastAPI passes through body parsing to the error handlers), and nothing more is read.
    Authentication comes first where the body is large: routes taking a file read it with
    core.deps.read_upload, declared after their principal.
    """

    def __init__(self, app: ASGIApp, settings: Any) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit_mb = self.settings.upload_max_mb
        limit = limit_mb * 1024 * 1024 + _MULTIPART_SLACK
        declared = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
        if declared is not None and (declared < 0 or declared > limit):
            status = 413 if declared > limit else 400
            body = (
                _too_large(limit_mb, self.settings.attachment_max_mb)
                if status == 413
                else {"code": "bad_request", "message": "Content-Length 不正确"}
            )
            await JSONResponse(body, status_code=status, headers={"Connection": "close"})(scope, receive, send)
            return
        seen = 0

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise StarletteHTTPException(
                        413, detail=_too_large(limit_mb, self.settings.attachment_max_mb)["message"]
                    )
            return message

        await self.app(scope, counted_receive, send)


_NUL_REASON = "含有不允许的空字符（\\u0000）"
_BUFFERED_TYPES = ("application/json", "application/x-www-form-urlencoded")


_HUGE_REASON = f"数值超出允许范围（绝对值至多 {MAX_INT}）"


def _bad_field(scope: Scope, body: bytes) -> tuple[str, str, str] | None:
    """Return (field, reason, code) of the first input holding a NUL or a JSON integer past MAX_INT, else None."""
    if "\x00" in scope.get("path", ""):
        return "path", _NUL_REASON, "nul_character"
    query = scope.get("query_string", b"").decode("latin-1")
    if "%00" in query or "\x00" in query:
        for name, value in parse_qsl(query, keep_blank_values=True):
            if "\x00" in name or "\x00" in value:
                return name.replace("\x00", "\\u0000"), _NUL_REASON, "nul_character"
    if not body:
        return None
    content_type = _header(scope, b"content-type")
    if content_type.startswith("application/x-www-form-urlencoded"):
        text = body.decode("utf-8", "replace")
        for name, value in parse_qsl(text, keep_blank_values=True):
            if "\x00" in name or "\x00" in value:
                return name.replace("\x00", "\\u0000"), _NUL_REASON, "nul_character"
        return None
    try:
        document = jsonsafe.loads(body)
    except ValueError:
        return ("body", _NUL_REASON, "nul_character") if b"\x00" in body else None  # the route says the rest
    if field := jsonsafe.find_nul(document):
        return field, _NUL_REASON, "nul_character"
    if field := jsonsafe.find_huge_int(document, MAX_INT):
        return field, _HUGE_REASON, "number_too_large"
    return None


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1").lower()
    return ""


class RefuseNul:
    """Refuse a request carrying a NUL character in its path, query, JSON body or form fields (422).

    JSON and url-encoded bodies are read here in full (BodyLimit, outside, caps them) and handed on
    unchanged; multipart uploads pass through (their files are binary; read_table refuses NUL cells).
    A page (outside /api/) gets the Chinese error page, the API the JSON error shape.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = b""
        buffered = False
        if _header(scope, b"content-type").startswith(_BUFFERED_TYPES):
            chunks = []
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    break
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
            buffered = True
        bad = _bad_field(scope, body)
        if bad is not None:
            await self._refuse(scope, *bad)(scope, receive, send)
            return
        if not buffered:
            await self.app(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    def _refuse(scope: Scope, field: str, reason: str, code: str) -> Response:
        if not scope.get("path", "").startswith("/api/") and "text/html" in _header(scope, b"accept"):
            from web.templating import error_page

            return error_page(Request(scope), 422, "填写有误", f"{field} {reason}")
        body = {
            "code": code,
            "message": f"输入{reason}",
            "errors": [{"field": field, "reason": reason, "code": code}],
        }
        return JSONResponse(body, status_code=422)
