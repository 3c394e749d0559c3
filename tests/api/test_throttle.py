"""Sign-in throttling: by account and by client, on the API token route and the web login form."""

from __future__ import annotations

import re

from auth.models import Role
from core.ratelimit import RateLimiter
from tests import factories

PASSWORD = "Factory-pass-2026"
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
CHINESE = re.compile(r"[\u4e00-\u9fff]")


def _token(client, username: str, password: str):  # type: ignore[no-untyped-def]
    return client.post("/api/v1/auth/token", data={"username": username, "password": password})


def test_guessing_one_account_is_throttled_even_for_the_right_password(db, client) -> None:  # type: ignore[no-untyped-def]
    user = factories.make_user(db, role=Role.curator, password=PASSWORD)
    codes = [_token(client, user.username, f"wrong-guess-{i}").status_code for i in range(25)]
    assert codes[:8] == [401] * 8  # the default allows 8 attempts per account in 15 minutes
    assert set(codes[8:]) == {429}
    right = _token(client, user.username, PASSWORD)
    assert right.status_code == 429
    assert right.json()["code"] == "auth.sign_in_throttled" and CHINESE.search(right.json()["message"])
    assert 1 <= int(right.headers["Retry-After"]) <= 15 * 60
    # Another account is not locked by it (the client still has attempts left).
    other = factories.make_user(db, role=Role.curator, password=PASSWORD)
    assert _token(client, other.username, PASSWORD).status_code == 200


def test_the_account_limit_is_case_insensitive(db, client) -> None:  # type: ignore[no-untyped-def]
    user = factories.make_user(db, role=Role.curator, username="CaseUser", password=PASSWORD)
    for i in range(8):
        _token(client, "caseuser" if i % 2 else "CASEUSER", "nope-nope-nope")
    assert _token(client, "CaseUser", PASSWORD).status_code == 429
    assert user.id


def test_a_successful_sign_in_resets_the_account_count(db, client) -> None:  # type: ignore[no-untyped-def]
    user = factories.make_user(db, role=Role.curator, password=PASSWORD)
    for _ in range(7):
        assert _token(client, user.username, "nope-nope-nope").status_code == 401
    assert _token(client, user.username, PASSWORD).status_code == 200
    for _ in range(7):
        assert _token(client, user.username, "nope-nope-nope").status_code == 401


def test_one_client_spraying_many_accounts_is_throttled(db, client) -> None:  # type: ignore[no-untyped-def]
    codes = [_token(client, f"spray{i}", "Spray-pass-2026").status_code for i in range(45)]
    assert codes[:40] == [401] * 40 and set(codes[40:]) == {429}


def test_web_login_form_is_throttled_with_a_chinese_page(db, client) -> None:  # type: ignore[no-untyped-def]
    user = factories.make_user(db, role=Role.curator, password=PASSWORD)
    csrf = CSRF_META.search(client.get("/login").text).group(1)

    def post(password: str):  # type: ignore[no-untyped-def]
        data = {"csrf_token": csrf, "username": user.username, "password": password}
        return client.post("/login", data=data, follow_redirects=False)

    assert [post("nope-nope-nope").status_code for _ in range(8)] == [401] * 8
    page = post(PASSWORD)
    assert page.status_code == 429 and "登录尝试过于频繁" in page.text
    assert int(page.headers["Retry-After"]) >= 1
    # The API and the form share the count: the token route is refused too.
    assert _token(client, user.username, PASSWORD).status_code == 429


def test_rate_limiter_retry_after_counts_down_to_the_window_end() -> None:
    limiter = RateLimiter(2, window=30)
    limiter.check("a")
    limiter.check("a")
    try:
        limiter.check("a")
    except Exception as exc:  # noqa: BLE001
        assert exc.status_code == 429 and 1 <= int(exc.headers["Retry-After"]) <= 30  # type: ignore[attr-defined]
    else:
        raise AssertionError("third call in the window was allowed")
    limiter.check("b")  # other keys are independent


def test_anonymous_search_is_rate_limited_signed_in_search_is_not(client, auth_headers) -> None:  # type: ignore[no-untyped-def]
    client.app.state.search_limiter = RateLimiter(2, namespace="search")  # HUIQI_SEARCH_PER_MINUTE=2
    codes = [client.get("/api/v1/policies/search", params={"q": f"研发费用{i}"}).status_code for i in range(3)]
    assert codes == [200, 200, 429]
    refused = client.get("/api/v1/policies/search", params={"q": "研发"})
    assert CHINESE.search(refused.json()["message"]) and int(refused.headers["Retry-After"]) >= 1
    firm = auth_headers(Role.enterprise)
    assert client.get("/api/v1/policies/search", params={"q": "研发"}, headers=firm).status_code == 200
    # The policy library page embeds the same queries: limited the same way for anonymous visitors.
    assert client.get("/policies", params={"q": "研发"}).status_code == 429
    assert client.get("/policies").status_code == 200  # browsing without a query embeds nothing


def test_guessing_the_current_password_on_password_change_is_throttled(db, client) -> None:  # type: ignore[no-untyped-def]
    user = factories.make_user(db, role=Role.curator, password=PASSWORD)
    bearer = {"Authorization": f"Bearer {_token(client, user.username, PASSWORD).json()['access_token']}"}
    body = {"new_password": "Another-pass-2027"}
    codes = [
        client.post("/api/v1/auth/password", json=body | {"current_password": f"guess-{i}"}, headers=bearer).status_code
        for i in range(9)
    ]
    assert codes == [422] * 8 + [429]
