"""Jinja2 templates, the role-aware navigation, page rendering and the web error pages.

Navigation is a registry: each entry names the roles that see it, so the curator, desk officer,
supervisor and dashboard pages add their own entries (`register_nav`) and a role's landing page
(`ROLE_HOME`) without touching the layout.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from applications.models import STATUS_LABELS as APPLICATION_LABELS
from auth.models import ROLE_LABELS, Role
from auth.service import Principal
from catalog.models import LEVEL_LABELS, STATUS_LABELS, TYPE_LABELS
from core.config import Settings
from core.errors import HuiqiError
from web.attachments import filesize
from web.deps import (
    CsrfFailed,
    LoginRequired,
    WebForbidden,
    clear_session_cookie,
    csrf_token,
    safe_next,
    set_csrf_cookie,
)
from web.forms import FIELD_LABELS

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
WEEKDAYS = "一二三四五六日"


@dataclass(frozen=True)
class NavItem:
    """One link of the top navigation."""

    label: str
    href: str
    roles: frozenset[str] | None  # None: everyone, signed in or not
    order: int = 100


NAV: list[NavItem] = []
# Where each role lands after signing in; staff pages will point their role at their own start page.
ROLE_HOME: dict[str, str] = {Role.enterprise: "/me/recommendations"}


def register_nav(label: str, href: str, roles: tuple[Role, ...] | None = None, order: int = 100) -> None:
    """Add a navigation link shown to the given roles (everyone when None)."""
    NAV.append(NavItem(label, href, frozenset(roles) if roles is not None else None, order))
    NAV.sort(key=lambda item: item.order)


register_nav("政策库", "/policies", order=10)
register_nav("政策计算器", "/calculator", order=20)
register_nav("我的推荐", "/me/recommendations", (Role.enterprise,), order=30)
register_nav("企业画像", "/me/profile", (Role.enterprise,), order=40)
register_nav("消息", "/me/inbox", (Role.enterprise,), order=50)
register_nav("推送设置", "/me/preferences", (Role.enterprise,), order=60)


def nav_for(principal: Principal | None) -> list[NavItem]:
    """Return the navigation links a visitor sees."""
    role = principal.role if principal else None
    return [item for item in NAV if item.roles is None or (role is not None and role in item.roles)]


def home_for(principal: Principal) -> str:
    """Return the page a user lands on after signing in."""
    return ROLE_HOME.get(principal.role, "/")


# ---------------------------------------------------------------- filters


def _date(value: dt.date | dt.datetime | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        local = value.astimezone(dt.timezone(dt.timedelta(hours=8)))
        return f"{local.year}年{local.month}月{local.day}日 {local:%H:%M}"
    return f"{value.year}年{value.month}月{value.day}日"


def _days_left_text(days: int | None) -> str:
    if days is None:
        return "常年受理"
    if days < 0:
        return "已截止"
    if days == 0:
        return "今天截止"
    return f"还剩 {days} 天"


def _days_left_class(days: int | None) -> str:
    if days is None:
        return "deadline-none"
    if days < 0:
        return "deadline-closed"
    if days <= 7:
        return "deadline-urgent"
    if days <= 30:
        return "deadline-soon"
    return "deadline-open"


def _amount(value: float | None) -> str:
    if value is None:
        return ""
    text = f"{value:,.2f}".rstrip("0").rstrip(".")
    return f"{text} 万元"


def _percent(value: float | None) -> str:
    if value is None:
        return "—"
    if 0 < value * 100 < 0.5:  # one answered case in hundreds is not "0%"
        return "<1"
    return f"{round(value * 100)}"


# Phone numbers as people write them: 0760-88312617, (0760) 8831 2617, 138 0013 8000, +86 13800138000,
# and short service lines (12345, 12366). Digits only go into the tel: link.
_PHONE = re.compile(
    r"(?<![\w\d])(?:\+?86[\s-]?)?(?:\(?0\d{2,3}\)?[\s-]?\d{3,4}[\s-]?\d{4}(?:-\d{1,6})?|1[3-9]\d[\s-]?\d{4}[\s-]?\d{4}|123\d{2})(?![\w\d])"
)


def _tel(text: str | None) -> Markup:
    """Escape text and make every phone number in it a tel: link (tappable on a phone)."""
    escaped = str(escape(text or ""))

    def link(match: re.Match[str]) -> str:
        digits = re.sub(r"[^\d+]", "", match.group(0))
        return f'<a href="tel:{digits}" class="tel">{match.group(0)}</a>'

    return Markup(_PHONE.sub(link, escaped))


templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
templates.env.filters.update(
    date=_date,
    days_left_text=_days_left_text,
    days_left_class=_days_left_class,
    amount=_amount,
    percent=_percent,
    tel=_tel,
    filesize=filesize,
)
templates.env.globals.update(
    APPLICATION_LABELS=APPLICATION_LABELS,
    LEVEL_LABELS=LEVEL_LABELS,
    TYPE_LABELS=TYPE_LABELS,
    STATUS_LABELS=STATUS_LABELS,
    ROLE_LABELS=ROLE_LABELS,
    FIELD_LABELS=FIELD_LABELS,
)


# ---------------------------------------------------------------- rendering


def render(request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200) -> HTMLResponse:
    """Render a page with the visitor, navigation and CSRF token filled in; send new cookies along."""
    settings: Settings = request.app.state.settings
    principal = getattr(request.state, "principal", None)
    ctx = {
        "principal": principal,
        "nav": nav_for(principal),
        "csrf_token": csrf_token(request, settings),
        "csp_nonce": getattr(request.state, "csp_nonce", ""),
        "path": request.url.path,
        "today": dt.date.today(),
        **(context or {}),
    }
    response = templates.TemplateResponse(request, name, ctx, status_code=status_code)
    set_csrf_cookie(response, request)
    if getattr(request.state, "clear_session", False):
        clear_session_cookie(response)
    return response


def redirect(request: Request, url: str, status_code: int = 303) -> Response:
    """Send the browser elsewhere (htmx requests get HX-Redirect so the whole page changes)."""
    if request.headers.get("hx-request"):
        response: Response = Response(status_code=204, headers={"HX-Redirect": url})
    else:
        response = RedirectResponse(url, status_code=status_code)
    set_csrf_cookie(response, request)
    return response


def error_page(request: Request, status_code: int, title: str, message: str) -> HTMLResponse:
    """Render the Chinese error page."""
    return render(request, "error.html", {"title": title, "message": message, "status": status_code}, status_code)


_ERROR_TITLES = {
    400: "请求有误",
    401: "请先登录",
    403: "没有权限",
    404: "页面不存在",
    409: "操作未完成",
    413: "内容过大",
    422: "填写有误",
    429: "操作过于频繁",
}


def login_url(request: Request) -> str:
    """Return the sign-in address that comes back to the current page.

    A GET comes back to itself; a form or htmx POST comes back to the page it was sent from
    (HX-Current-URL or Referer, same site only), since its own address answers only POST.
    """
    if request.method == "GET":
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    else:
        target = "/"
        for source in (request.headers.get("hx-current-url"), request.headers.get("referer")):
            parts = urlsplit(source or "")
            if parts.netloc and parts.netloc == request.headers.get("host"):
                target = parts.path + (f"?{parts.query}" if parts.query else "")
                break
    return "/login?next=" + quote(safe_next(target), safe="")


class WebRoute(APIRoute):
    """A page route: access refusals and domain errors become Chinese HTML pages, not JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired:
                return redirect(request, login_url(request))
            except WebForbidden:
                return error_page(
                    request, 403, "没有权限", "您当前的账号无权访问此页面。如需使用，请换用有相应权限的账号登录。"
                )
            except CsrfFailed as exc:
                return error_page(request, 403, "请求未通过安全校验", exc.reason)
            except RequestValidationError:
                return error_page(request, 400, "请求有误", "地址中的参数不正确，请返回上一页重新操作。")
            except HuiqiError as exc:
                title = _ERROR_TITLES.get(exc.status_code, "操作未完成")
                message = exc.message
                if exc.errors:
                    message += "：" + "；".join(e.reason for e in exc.errors)
                response = error_page(request, exc.status_code, title, message)
                if exc.headers and "Retry-After" in exc.headers:
                    response.headers["Retry-After"] = exc.headers["Retry-After"]
                return response

        return route
