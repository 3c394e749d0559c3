"""Every web page declares who may open it, and the declaration holds over HTTP.

Walks every route of web.WEB_ROUTERS (the browser pages, outside the API's ROUTERS): a route with
neither a `WebAllow(...)` nor the `web_public` dependency fails; anonymous visitors of a protected
page are sent to /login?next=…; every role outside the allowed set gets the Chinese 403 page;
allowed roles get through; a firm acting on another firm's subscription or message gets 404 or
changes nothing. Also: CSRF (signed double-submit plus origin check), the session cookie's flags,
that the API ignores the cookie, safe `next` redirects and the local vendor files.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.routing import APIRoute
from sqlalchemy import select

from applications import service as applications_service
from auth.models import Role
from catalog import attachments as policy_files
from core import security
from push import fanout as push_fanout
from push import preferences as push_preferences
from push.models import Delivery, Subscription
from push.schemas import SubscriptionIn
from tests import factories
from tests.support import sample_files
from web import WEB_ROUTERS
from web.deps import CSRF_COOKIE, SESSION_COOKIE, WebAllow, web_public

PUBLIC = "public"
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def declared_access(route: APIRoute) -> frozenset[Role] | str | None:
    """Return the roles a page admits, PUBLIC, or None when it declares nothing."""
    stack = list(route.dependant.dependencies)
    found: frozenset[Role] | str | None = None
    while stack:
        dep = stack.pop()
        if isinstance(dep.call, WebAllow):
            return dep.call.roles
        if dep.call is web_public:
            found = PUBLIC
        stack.extend(dep.dependencies)
    return found


ROUTES = [(r.path, r) for router in WEB_ROUTERS for r in router.routes if isinstance(r, APIRoute)]
ROUTE_IDS = [f"{sorted(r.methods)[0]} {path}" for path, r in ROUTES]


def test_every_page_route_is_walked_and_kept_out_of_the_api_schema(app) -> None:  # type: ignore[no-untyped-def]
    assert len(ROUTES) >= 20
    schema_paths = set(app.openapi()["paths"])
    assert not [path for path, _ in ROUTES if path in schema_paths]


@pytest.mark.parametrize("path,route", ROUTES, ids=ROUTE_IDS)
def test_page_declares_who_may_open_it(path: str, route: APIRoute) -> None:
    assert declared_access(route) is not None, f"{path} has no WebAllow(...) or web_public dependency"


def _csrf(client) -> str:  # type: ignore[no-untyped-def]
    """Open a page as a browser would and read the CSRF token it embeds (the cookie is kept by the client)."""
    page = client.get("/login", follow_redirects=True)
    match = CSRF_META.search(page.text)
    assert match, "page has no CSRF token"
    return match.group(1)


def _sign_in(client, db, settings, role: Role, **kw: Any):  # type: ignore[no-untyped-def]
    """Make a user of the role and sign in through the login form, as a browser does."""
    user = factories.make_user(db, role=role, password="Factory-pass-2026", **kw)
    token = _csrf(client)
    response = client.post(
        "/login",
        data={"csrf_token": token, "username": user.username, "password": "Factory-pass-2026"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return user


def _fill(path: str, ids: dict[str, Any]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: str(ids[m.group(1)]), path)


@pytest.mark.parametrize("template,route", ROUTES, ids=ROUTE_IDS)
def test_page_enforces_its_roles(template: str, route: APIRoute, db, client, test_settings) -> None:  # type: ignore[no-untyped-def]
    access = declared_access(route)
    method = sorted(route.methods)[0]
    own = factories.make_enterprise(db)
    other = factories.make_enterprise(db)
    policy = factories.make_policy(db, publish=True)
    push_fanout.fan_out_policy(db=db, policy_id=policy.id)
    own_delivery = db.scalar(select(Delivery.id).where(Delivery.enterprise_id == own.id, Delivery.channel == "inbox"))
    other_delivery = db.scalar(
        select(Delivery.id).where(Delivery.enterprise_id == other.id, Delivery.channel == "inbox")
    )
    assert own_delivery and other_delivery
    own_sub = push_preferences.create_subscription(
        db=db, enterprise_id=own.id, subscription_in=SubscriptionIn(kind="keyword", value="数字经济")
    )
    other_sub = push_preferences.create_subscription(
        db=db, enterprise_id=other.id, subscription_in=SubscriptionIn(kind="keyword", value="数字经济")
    )
    guide = policy_files.attach_to_policy(
        db,
        policy_id=policy.id,
        kind="guide",
        name="指南.pdf",
        data=sample_files.pdf(),
        user=None,
        settings=test_settings,
    )
    application = applications_service.open_for_firm(db=db, enterprise_id=own.id, policy_id=policy.id, actor=None)
    assert application is not None
    ids = {
        "policy_id": policy.id,
        "delivery_id": own_delivery,
        "subscription_id": own_sub.id,
        "attachment_id": guide.id,
        "application_id": application.id,
    }
    path = _fill(template, ids)

    def call(target: str = path) -> Any:
        if method == "GET":
            return client.get(target, follow_redirects=False)
        token = _csrf(client)
        return client.post(target, data={"csrf_token": token}, follow_redirects=False)

    client.cookies.clear()
    anonymous = call()
    if access == PUBLIC:
        assert anonymous.status_code not in (401, 403), f"public {method} {path} refused an anonymous visitor"
        assert "/login?next=" not in anonymous.headers.get("location", "")
        return
    assert anonymous.status_code == 303, f"{method} {path} let an anonymous visitor through ({anonymous.status_code})"
    assert anonymous.headers["location"].startswith("/login?next=")
    if method == "GET":
        assert anonymous.headers["location"] == "/login?next=" + path.replace("/", "%2F")
    for role in sorted(Role, key=lambda r: r in access):
        client.cookies.clear()
        _sign_in(client, db, test_settings, role, **({"enterprise_id": own.id} if role == Role.enterprise else {}))
        response = call()
        if role in access:
            assert response.status_code not in (401, 403), (
                f"{role} should open {method} {path}, got {response.status_code}"
            )
            assert "/login" not in response.headers.get("location", "")
        else:
            assert response.status_code == 403, (
                f"{role} should be refused on {method} {path}, got {response.status_code}"
            )
            assert "没有权限" in response.text and 'lang="zh-CN"' in response.text
    if "{subscription_id}" in template or "{delivery_id}" in template:
        # A firm acting on another firm's object: not found, or nothing happens to it.
        client.cookies.clear()
        _sign_in(client, db, test_settings, Role.enterprise, enterprise_id=own.id)
        foreign = _fill(template, {**ids, "delivery_id": other_delivery, "subscription_id": other_sub.id})
        response = call(foreign)
        if "{subscription_id}" in template:
            assert response.status_code == 404
            assert "页面不存在" in response.text or "不存在" in response.text
            assert db.get(Subscription, other_sub.id) is not None
        else:
            db.expire_all()
            assert db.get(Delivery, other_delivery).read_at is None


# ---------------------------------------------------------------- sign-in, session cookie, CSRF


def test_sign_in_sets_an_httponly_lax_cookie_the_api_ignores(db, client) -> None:  # type: ignore[no-untyped-def]
    firm = factories.make_enterprise(db)
    factories.make_user(
        db, role=Role.enterprise, enterprise_id=firm.id, username="cookie_firm", password="Factory-pass-2026"
    )
    token = _csrf(client)
    response = client.post(
        "/login",
        data={"csrf_token": token, "username": "cookie_firm", "password": "Factory-pass-2026"},
        follow_redirects=False,
    )
    assert response.status_code == 303 and response.headers["location"] == "/me/recommendations"
    cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower() and "Path=/" in cookie
    # A new CSRF secret after signing in.
    assert any(h.startswith(CSRF_COOKIE + "=") for h in response.headers.get_list("set-cookie"))
    assert client.get("/me/profile", follow_redirects=False).status_code == 200
    # The API authenticates by bearer token or API key only: the browser cookie opens nothing there.
    assert client.get("/api/v1/enterprises/me").status_code == 401


def test_wrong_password_is_refused_in_chinese(db, client) -> None:  # type: ignore[no-untyped-def]
    factories.make_user(db, role=Role.curator, username="wrong_pw", password="Factory-pass-2026")
    token = _csrf(client)
    response = client.post("/login", data={"csrf_token": token, "username": "wrong_pw", "password": "nope-nope-nope"})
    assert response.status_code == 401
    assert "用户名或密码错误" in response.text
    assert SESSION_COOKIE not in response.cookies


@pytest.mark.parametrize(
    "target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"]
)
def test_next_never_leaves_the_site(db, client, target: str) -> None:  # type: ignore[no-untyped-def]
    user = factories.make_user(db, role=Role.enterprise, password="Factory-pass-2026")
    token = _csrf(client)
    response = client.post(
        "/login",
        data={"csrf_token": token, "username": user.username, "password": "Factory-pass-2026", "next": target},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/me/recommendations"  # the firm's start page instead


def test_next_brings_the_user_back(db, client) -> None:  # type: ignore[no-untyped-def]
    firm = factories.make_enterprise(db)
    factories.make_user(
        db, role=Role.enterprise, enterprise_id=firm.id, username="back_firm", password="Factory-pass-2026"
    )
    assert (
        client.get("/me/inbox?unread=1", follow_redirects=False).headers["location"]
        == "/login?next=%2Fme%2Finbox%3Funread%3D1"
    )
    token = _csrf(client)
    response = client.post(
        "/login",
        data={
            "csrf_token": token,
            "username": "back_firm",
            "password": "Factory-pass-2026",
            "next": "/me/inbox?unread=1",
        },
        follow_redirects=False,
    )
    assert response.headers["location"] == "/me/inbox?unread=1"


def test_post_without_or_with_a_forged_csrf_token_is_refused(db, client, test_settings) -> None:  # type: ignore[no-untyped-def]
    firm = factories.make_enterprise(db)
    _sign_in(client, db, test_settings, Role.enterprise, enterprise_id=firm.id)
    _csrf(client)
    missing = client.post("/me/preferences/unsubscribe-all", data={}, follow_redirects=False)
    assert missing.status_code == 403 and "页面已过期" in missing.text
    forged = client.post("/me/preferences/unsubscribe-all", data={"csrf_token": "0" * 64}, follow_redirects=False)
    assert forged.status_code == 403
    # A token minted for another browser's cookie does not fit this one.
    other_token = security.sign(settings=test_settings, message="csrf:" + "x" * 43)
    assert client.post("/me/preferences/unsubscribe-all", data={"csrf_token": other_token}).status_code == 403
    assert push_preferences.get_preferences(db=db, enterprise_id=firm.id).unsubscribed_all is False
    # The right token, in the form or in the header htmx sends, passes.
    token = _csrf(client)
    ok = client.post("/me/preferences/unsubscribe-all", data={"csrf_token": token}, follow_redirects=False)
    assert ok.status_code == 303
    assert (
        client.post("/me/preferences/resubscribe", headers={"X-CSRF-Token": token}, follow_redirects=False).status_code
        == 303
    )


def test_cross_site_origin_is_refused_even_with_a_token(db, client, test_settings) -> None:  # type: ignore[no-untyped-def]
    firm = factories.make_enterprise(db)
    _sign_in(client, db, test_settings, Role.enterprise, enterprise_id=firm.id)
    token = _csrf(client)
    response = client.post(
        "/me/preferences/unsubscribe-all", data={"csrf_token": token}, headers={"Origin": "https://evil.example"}
    )
    assert response.status_code == 403 and "来源" in response.text
    same = client.post(
        "/me/preferences/unsubscribe-all",
        data={"csrf_token": token},
        headers={"Origin": "http://testserver"},
        follow_redirects=False,
    )
    assert same.status_code == 303


def test_login_form_itself_needs_the_csrf_token(db, client) -> None:  # type: ignore[no-untyped-def]
    factories.make_user(db, role=Role.curator, username="csrf_login", password="Factory-pass-2026")
    response = client.post(
        "/login", data={"username": "csrf_login", "password": "Factory-pass-2026"}, follow_redirects=False
    )
    assert response.status_code == 403
    assert SESSION_COOKIE not in response.cookies


def test_expired_or_forged_session_counts_as_signed_out(db, client, test_settings) -> None:  # type: ignore[no-untyped-def]
    client.cookies.set(SESSION_COOKIE, "not-a-jwt")
    response = client.get("/me/profile", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/login")
    page = client.get("/", follow_redirects=False)
    assert page.status_code == 200
    # The stale cookie is dropped.
    assert any(
        h.startswith(SESSION_COOKIE + '=""') or "Max-Age=0" in h
        for h in page.headers.get_list("set-cookie")
        if h.startswith(SESSION_COOKIE)
    )


def test_logout_drops_the_session(db, client, test_settings) -> None:  # type: ignore[no-untyped-def]
    firm = factories.make_enterprise(db)
    _sign_in(client, db, test_settings, Role.enterprise, enterprise_id=firm.id)
    token = _csrf(client)
    response = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303
    assert client.get("/me/profile", follow_redirects=False).status_code == 303


# ---------------------------------------------------------------- pages and files


def test_vendor_files_come_from_node_modules_and_pages_use_no_cdn(client) -> None:  # type: ignore[no-untyped-def]
    for url, marker in (
        ("/static/vendor/htmx/htmx.min.js", "htmx"),
        ("/static/vendor/echarts/echarts.min.js", "echarts"),
        ("/static/vendor/pico/pico.min.css", "Pico CSS"),
        ("/static/app.css", "PingFang SC"),
        ("/static/app.js", "X-CSRF-Token"),
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        assert marker in response.text[:5000] or marker in response.text, url
    page = client.get("/").text
    assert 'lang="zh-CN"' in page and 'name="viewport"' in page
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources and not [s for s in sources if s.startswith(("http:", "https:", "//"))]


def test_unknown_page_is_a_chinese_404_and_the_api_keeps_json(client) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/no-such-page", headers={"Accept": "text/html"})
    assert page.status_code == 404 and "页面不存在" in page.text
    api = client.get("/api/v1/no-such-thing", headers={"Accept": "text/html"})
    assert api.status_code == 404 and api.json()["code"] == "not_found"


def test_signup_shows_the_api_validation_messages_by_each_field(db, client) -> None:  # type: ignore[no-untyped-def]
    token = _csrf(client)
    response = client.post(
        "/signup",
        data={
            "csrf_token": token,
            "username": "a",
            "password": "short",
            "password2": "short",
            "display_name": "张三",
            "name": "中山市表单测试有限公司",
            "credit_code": "123",
            "contact_phone": "12ab",
        },
    )
    assert response.status_code == 422
    text = response.text
    assert 'id="username-error"' in text and "长度不足" in text
    assert 'id="credit_code-error"' in text
    assert "联系电话应为手机号或带区号的固定电话" in text
    assert 'value="中山市表单测试有限公司"' in text  # what was typed is kept
    assert 'value="short"' not in text  # passwords are never echoed


def test_a_refused_profile_change_keeps_the_stored_profile(db, client, test_settings) -> None:  # type: ignore[no-untyped-def]
    firm = factories.make_enterprise(db, employees=50)
    _sign_in(client, db, test_settings, Role.enterprise, enterprise_id=firm.id)
    token = _csrf(client)
    form = {
        "csrf_token": token,
        "name": firm.name,
        "employees": "90",
        "qualifications": ["不存在的资质"],
    }
    response = client.post("/me/profile", data=form)
    assert response.status_code == 422
    assert "不存在的资质" in response.text or "标签" in response.text
    db.expire_all()
    assert db.get(type(firm), firm.id).employees == 50


def test_a_form_posted_after_the_session_ended_comes_back_to_its_page(client) -> None:  # type: ignore[no-untyped-def]
    token = _csrf(client)
    response = client.post(
        "/me/inbox/1/read",
        data={"csrf_token": token},
        headers={"Referer": "http://testserver/me/inbox?page=2"},
        follow_redirects=False,
    )
    assert response.headers["location"] == "/login?next=%2Fme%2Finbox%3Fpage%3D2"
    # htmx says where it is; another site's address is never used.
    htmx = client.post(
        "/me/recommendations/1/feedback",
        data={"csrf_token": token},
        headers={"HX-Request": "true", "HX-Current-URL": "https://evil.example/me/recommendations"},
        follow_redirects=False,
    )
    assert htmx.status_code == 204 and htmx.headers["HX-Redirect"] == "/login?next=%2F"
