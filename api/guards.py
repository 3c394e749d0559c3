"""ASGI middlewares that guard every request before a route sees it.

- `SecurityHeaders`: a strict Content-Security-Policy (a fresh nonce per request, no inline handlers,
  no third-party origins), nosniff, no framing and a same-origin referrer on every response.
"""

from __future__ import annotations

import secrets
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
