"""Tokens end with the session: sign-out everywhere, a new password and a new role revoke old cookies and bearers."""

from __future__ import annotations

import re

import pytest

from auth.models import Role
from tests import factories
from web.deps import SESSION_COOKIE

PASSWORD = "Factory-pass-2026"
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


def _csrf(client) -> str:  # type: ignore[no-untyped-def]
    return CSRF_META.search(client.get("/login").text).group(1)


def _sign_in_both(client, db, role: Role = Role.curator):  # type: ignore[no-untyped-def]
    """Sign a user in through the login form (cookie) and the token route (bearer); return user, cookie, bearer."""
    user = factories.make_user(db, role=role, password=PASSWORD)
    login = client.post(
        "/login",
        data={"csrf_token": _csrf(client), "username": user.username, "password": PASSWORD},
        follow_redirects=False,
    )
    assert login.status_code == 303
    cookie = client.cookies.get(SESSION_COOKIE)
    token = client.post("/api/v1/auth/token", data={"username": user.username, "password": PASSWORD}).json()
    return user, cookie, {"Authorization": f"Bearer {token['access_token']}"}


def _cookie_works(client, cookie: str) -> bool:  # type: ignore[no-untyped-def]
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, cookie)
    page = client.get("/dashboard", follow_redirects=False)
    return page.status_code == 200


def test_web_logout_ends_every_session_of_the_user(db, client) -> None:  # type: ignore[no-untyped-def]
    user, cookie, bearer = _sign_in_both(client, db)
    assert _cookie_works(client, cookie)
    assert client.get("/api/v1/auth/me", headers=bearer).status_code == 200
    client.cookies.set(SESSION_COOKIE, cookie)
    out = client.post("/logout", data={"csrf_token": _csrf(client)}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/api/v1/auth/me", headers=bearer).status_code == 401
    assert not _cookie_works(client, cookie)


def test_api_logout_revokes_the_old_bearer_and_cookie(db, client) -> None:  # type: ignore[no-untyped-def]
    user, cookie, bearer = _sign_in_both(client, db)
    assert client.post("/api/v1/auth/logout", headers=bearer).status_code == 204
    r = client.get("/api/v1/auth/me", headers=bearer)
    assert r.status_code == 401 and r.json()["code"] == "auth.invalid_token"
    assert not _cookie_works(client, cookie)
    # Signing in again works.
    fresh = client.post("/api/v1/auth/token", data={"username": user.username, "password": PASSWORD}).json()
    assert (
        client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {fresh['access_token']}"}).status_code == 200
    )


def test_admin_password_change_revokes_old_tokens(db, client, auth_headers) -> None:  # type: ignore[no-untyped-def]
    user, cookie, bearer = _sign_in_both(client, db)
    r = client.patch(
        f"/api/v1/users/{user.id}", json={"password": "Another-pass-2027"}, headers=auth_headers(Role.admin)
    )
    assert r.status_code == 200
    assert client.get("/api/v1/auth/me", headers=bearer).status_code == 401
    assert not _cookie_works(client, cookie)


def test_own_password_change_revokes_old_tokens_and_returns_a_new_one(db, client) -> None:  # type: ignore[no-untyped-def]
    user, cookie, bearer = _sign_in_both(client, db)
    wrong = client.post(
        "/api/v1/auth/password", json={"current_password": "nope", "new_password": "Another-pass-2027"}, headers=bearer
    )
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "current_password"
    r = client.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "Another-pass-2027"},
        headers=bearer,
    )
    assert r.status_code == 200
    assert client.get("/api/v1/auth/me", headers=bearer).status_code == 401
    assert not _cookie_works(client, cookie)
    assert (
        client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {r.json()['access_token']}"}).status_code
        == 200
    )


def test_role_change_revokes_old_tokens(db, client, auth_headers) -> None:  # type: ignore[no-untyped-def]
    user, cookie, bearer = _sign_in_both(client, db, role=Role.curator)
    r = client.patch(f"/api/v1/users/{user.id}", json={"role": "supervisor"}, headers=auth_headers(Role.admin))
    assert r.status_code == 200 and r.json()["role"] == "supervisor"
    # The old token still says curator; it must not keep curator rights (nor any others).
    assert client.get("/api/v1/auth/me", headers=bearer).status_code == 401
    assert client.post("/api/v1/policies", json={}, headers=bearer).status_code == 401
    assert not _cookie_works(client, cookie)


def test_a_changed_name_keeps_sessions(db, client, auth_headers) -> None:  # type: ignore[no-untyped-def]
    user, cookie, bearer = _sign_in_both(client, db)
    client.patch(f"/api/v1/users/{user.id}", json={"display_name": "改名"}, headers=auth_headers(Role.admin))
    assert client.get("/api/v1/auth/me", headers=bearer).status_code == 200


@pytest.mark.parametrize(
    "password,code",
    [("12345678aa", "too_common"), ("1234567890", "too_common"), ("qwertyuiop", "too_common"), ("short", None)],
)
def test_admin_user_creation_refuses_weak_passwords(client, auth_headers, password, code) -> None:  # type: ignore[no-untyped-def]
    r = client.post(
        "/api/v1/users",
        json={"username": "weakling", "password": password, "display_name": "弱", "role": "curator"},
        headers=auth_headers(Role.admin),
    )
    assert r.status_code == 422
    error = r.json()["errors"][0]
    assert error["field"] == "password" and re.search(r"[\u4e00-\u9fff]", error["reason"])
    if code:
        assert error["code"] == code


def test_password_equal_to_username_is_refused(client, auth_headers) -> None:  # type: ignore[no-untyped-def]
    r = client.post(
        "/api/v1/users",
        json={"username": "Wang.Fang-2026x", "password": "wang.fang-2026X", "display_name": "王", "role": "curator"},
        headers=auth_headers(Role.admin),
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "password"
    assert r.json()["errors"][0]["code"] == "same_as_username"


def test_signup_refuses_12345678_naming_the_field(client) -> None:  # type: ignore[no-untyped-def]
    body = {
        "username": "weakfirm",
        "password": "12345678",
        "display_name": "张三",
        "enterprise": {"name": "中山市弱口令测试有限公司", "credit_code": factories.credit_code(424242)},
    }
    r = client.post("/api/v1/auth/register", json=body)
    assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == ["password"]
    body["password"] = "1234567890"
    r = client.post("/api/v1/auth/register", json=body)
    assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == ["password"], r.json()
    assert r.json()["errors"][0]["code"] == "too_common"
    body["password"] = "Strong-firm-pass-9"
    assert client.post("/api/v1/auth/register", json=body).status_code == 201


def test_password_change_refuses_a_weak_new_password(db, client) -> None:  # type: ignore[no-untyped-def]
    user, _, bearer = _sign_in_both(client, db)
    r = client.post(
        "/api/v1/auth/password", json={"current_password": PASSWORD, "new_password": "password1234"}, headers=bearer
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "new_password"
    assert client.get("/api/v1/auth/me", headers=bearer).status_code == 200  # nothing changed


def test_demo_passwords_pass_the_policy() -> None:
    from auth.demo import DEMO_USERS
    from auth.passwords import password_problem

    for username, password, *_ in DEMO_USERS:
        assert password_problem(password, username=username) is None, username


def test_web_signup_shows_the_password_policy_by_the_field(client) -> None:  # type: ignore[no-untyped-def]
    form = {
        "csrf_token": _csrf(client),
        "username": "webweak",
        "password": "1234567890",
        "password2": "1234567890",
        "display_name": "张三",
        "name": "中山市弱口令网页测试有限公司",
        "credit_code": factories.credit_code(515151),
    }
    page = client.post("/signup", data=form, follow_redirects=False)
    assert page.status_code == 422 and 'id="password-error"' in page.text and "常见" in page.text
    same = client.post("/signup", data=form | {"password": "webweak", "password2": "webweak"}, follow_redirects=False)
    assert same.status_code == 422 and 'id="password-error"' in same.text
