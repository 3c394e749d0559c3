"""Sign-in, tokens, API keys and the error body shape."""

from __future__ import annotations

from auth.models import Role
from tests import factories


def test_password_sign_in_issues_a_token_that_works(db, client) -> None:  # type: ignore[no-untyped-def]
    factories.make_user(db, role=Role.curator, username="wangfang", password="right-password")
    r = client.post("/api/v1/auth/token", data={"username": "wangfang", "password": "right-password"})
    assert r.status_code == 200 and r.json()["role"] == "curator"
    me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {r.json()['access_token']}"})
    assert me.json()["username"] == "wangfang"


def test_wrong_password_gets_chinese_message_and_stable_code(db, client) -> None:  # type: ignore[no-untyped-def]
    factories.make_user(db, role=Role.curator, username="wangfang2", password="right-password")
    r = client.post("/api/v1/auth/token", data={"username": "wangfang2", "password": "wrong-password"})
    assert r.status_code == 401
    assert r.json() == {"code": "auth.bad_credentials", "message": "用户名或密码错误"}


def test_tampered_token_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/api/v1/auth/me", headers={"Authorization": "Bearer not.a.token"})
    assert r.status_code == 401 and r.json()["code"] == "auth.invalid_token"


def test_deactivated_user_token_stops_working(db, client, auth_headers) -> None:  # type: ignore[no-untyped-def]
    user = factories.make_user(db, role=Role.curator)
    from core import security

    token = security.create_access_token(settings=client.app.state.settings, subject=str(user.id))
    user.is_active = False
    db.flush()
    assert client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_api_key_is_shown_once_works_and_stops_after_revocation(client, auth_headers) -> None:  # type: ignore[no-untyped-def]
    admin = auth_headers(Role.admin)
    r = client.post("/api/v1/api-keys", json={"name": "12345热线对接", "role": "supervisor"}, headers=admin)
    assert r.status_code == 201
    key = r.json()["key"]
    listed = client.get("/api/v1/api-keys", headers=admin).json()
    assert all("key" not in k for k in listed)
    assert client.get("/api/v1/users", headers={"X-API-Key": key}).status_code == 403  # supervisor, not admin
    assert client.get("/api/v1/policies/1/versions", headers={"X-API-Key": key}).status_code != 401
    client.post(f"/api/v1/api-keys/{r.json()['id']}/revoke", headers=admin)
    assert client.get("/api/v1/policies/1/versions", headers={"X-API-Key": key}).status_code == 401


def test_desk_user_without_department_is_refused(client, auth_headers) -> None:  # type: ignore[no-untyped-def]
    r = client.post(
        "/api/v1/users",
        json={"username": "deskless", "password": "Factory-pass-2026", "display_name": "无部门", "role": "desk"},
        headers=auth_headers(Role.admin),
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "department_id"


def test_unknown_route_returns_the_standard_error_shape(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/api/v1/no-such-thing")
    assert r.status_code == 404 and r.json()["code"] == "not_found" and r.json()["message"]


def test_validation_errors_carry_field_and_chinese_reason(client, auth_headers) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/policies", json={"title": "短"}, headers=auth_headers(Role.curator))
    assert r.status_code == 422
    errors = {e["field"]: e["reason"] for e in r.json()["errors"]}
    assert errors["title"].startswith("长度不足")
    assert errors["issuing_department"] == "必填项未填写"
