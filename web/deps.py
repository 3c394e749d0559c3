"""Browser sign-in, role checks and CSRF protection for the web pages.

Sign-in: the web login issues the same JWT the API hands out (`core.security.create_access_token`)
and stores it in the `huiqi_session` cookie (HttpOnly, SameSite=Lax, Secure over HTTPS). Only the
web routes read that cookie, through `web_principal`; the API keeps its bearer-token and API-key
authentication unchanged and never looks at cookies, so a cookie cannot be replayed against it.

CSRF: signed double-submit. Every browser gets a random `huiqi_csrf` cookie (HttpOnly); pages embed
`HMAC(secret_key, cookie)` as a hidden form field and a `<meta name="csrf-token">` that app.js copies
into the `X-CSRF-Token` header of htmx requests. An unsafe request (POST, PUT, PATCH, DELETE) to a
web route passes only when the token it carries matches the HMAC of its cookie, and when its
`Origin` (or, lacking that, `Referer`) names this site. A forged cross-site form knows neither the
cookie nor the secret, and SameSite=Lax already keeps the session cookie off cross-site POSTs.
The check is part of the access dependencies (`WebAllow`, `web_public`), so no web POST can skip it.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request
from fastapi.responses import Response

from auth import service as auth_service
from auth.models import Role
from auth.service import Principal
from core import security
from core.config import Settings
from core.deps import AppSettings, DbSession

SESSION_COOKIE = "huiqi_session"
CSRF_COOKIE = "huiqi_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class LoginRequired(Exception):
    """The page needs a signed-in user; the browser is sent to /login?next=…"""


class WebForbidden(Exception):
    """The signed-in user's role may not open this page."""


class CsrfFailed(Exception):
    """An unsafe request without a valid CSRF token or from another site."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ---------------------------------------------------------------- session cookie


def web_principal(request: Request, db: DbSession, settings: AppSettings) -> Principal | None:
    """Return the user signed in through the session cookie, or None; kept on request.state for templates."""
    cached = getattr(request.state, "principal_resolved", False)
    if cached:
        return request.state.principal
    principal = None
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        claims = security.decode_access_token(settings=settings, token=token)
        principal = auth_service.principal_for_token(db=db, claims=claims) if claims else None
        # An expired or revoked session is dropped when the next page is rendered.
        request.state.clear_session = principal is None
    request.state.principal = principal
    request.state.principal_resolved = True
    return principal


def _is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def set_session_cookie(response: Response, *, request: Request, settings: Settings, token: str) -> None:
    """Store the signed-in user's JWT in the HttpOnly session cookie."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.access_token_minutes * 60,
        httponly=True,
        samesite="lax",
        secure=_is_https(request),
        path="/",
    )


def clear_session_cookie(response: Response) -> None:
    """Sign the browser out."""
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")


# ---------------------------------------------------------------- CSRF


def csrf_secret(request: Request) -> str:
    """Return the browser's CSRF cookie value, making one (set on the response by `render`) if absent."""
    raw = getattr(request.state, "csrf_raw", None)
    if raw:
        return raw
    raw = request.cookies.get(CSRF_COOKIE) or ""
    if len(raw) < 32:
        raw = secrets.token_urlsafe(32)
        request.state.csrf_new = True
    request.state.csrf_raw = raw
    return raw


def rotate_csrf(request: Request) -> None:
    """Give the browser a new CSRF secret (on sign-in and sign-out)."""
    request.state.csrf_raw = secrets.token_urlsafe(32)
    request.state.csrf_new = True


def csrf_token(request: Request, settings: Settings) -> str:
    """Return the token forms must send back: an HMAC of the CSRF cookie under the secret key."""
    return security.sign(settings=settings, message="csrf:" + csrf_secret(request))


def set_csrf_cookie(response: Response, request: Request) -> None:
    """Send a newly made CSRF secret to the browser."""
    if getattr(request.state, "csrf_new", False):
        response.set_cookie(
            CSRF_COOKIE, request.state.csrf_raw, httponly=True, samesite="lax", secure=_is_https(request), path="/"
        )


def _same_origin(request: Request) -> bool:
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        # Browsers send Origin on every cross-site POST; a request without it is not a cross-site form.
        return True
    if source == "null":
        return False
    parts = urlsplit(source)
    host = request.headers.get("host", "")
    return parts.netloc == host


async def verify_csrf(request: Request, settings: Settings) -> None:
    """Refuse an unsafe request whose CSRF token or origin is wrong."""
    if request.method not in UNSAFE_METHODS:
        return
    if not _same_origin(request):
        raise CsrfFailed("请求来源与本站不一致，已拒绝")
    cookie = request.cookies.get(CSRF_COOKIE)
    sent = request.headers.get(CSRF_HEADER)
    if not sent:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
    if not cookie or not sent:
        raise CsrfFailed("页面已过期，请刷新页面后重试")
    expected = security.sign(settings=settings, message="csrf:" + cookie)
    if not hmac.compare_digest(expected.encode(), sent.encode("utf-8", "replace")):
        raise CsrfFailed("页面已过期，请刷新页面后重试")


# ---------------------------------------------------------------- access declarations


class WebAllow:
    """Admit only signed-in users with one of the roles; check CSRF on unsafe requests.

    Anonymous visitors are sent to the sign-in page, other roles get the 403 page.
    tests/web/test_web_roles.py walks every web route and reads these declarations.
    """

    def __init__(self, *roles: Role) -> None:
        self.roles = frozenset(roles)

    async def __call__(
        self, request: Request, settings: AppSettings, principal: Annotated[Principal | None, Depends(web_principal)]
    ) -> Principal:
        if principal is None:
            raise LoginRequired()
        if principal.role not in self.roles:
            raise WebForbidden()
        await verify_csrf(request, settings)
        return principal

    def __repr__(self) -> str:
        return f"WebAllow({', '.join(sorted(self.roles))})"


async def web_public(
    request: Request, settings: AppSettings, principal: Annotated[Principal | None, Depends(web_principal)]
) -> Principal | None:
    """Admit anyone (checking CSRF on unsafe requests); return the signed-in user if any."""
    await verify_csrf(request, settings)
    return principal


WebVisitor = Annotated[Principal | None, Depends(web_public)]
WebFirm = Annotated[Principal, Depends(WebAllow(Role.enterprise))]


def safe_next(target: str | None, default: str = "/") -> str:
    """Return a local path to go to after sign-in; anything pointing off-site becomes `default`."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target
