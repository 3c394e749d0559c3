"""API keys carry scopes: a 12345 hotline key (desk:intake) files and reads its own cases, nothing else."""

from __future__ import annotations

from typing import Any

import pytest

from auth.models import Role
from tests import factories

DESK = "/api/v1/desk"


def _key(client, admin: dict[str, str], **body: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/api-keys", json={"name": "12345热线对接"} | body, headers=admin)
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture
def world(db, client, auth_headers):  # type: ignore[no-untyped-def]
    dept = factories.make_department(db)
    policy = factories.make_policy(db, publish=True, department=dept)
    firm = factories.make_enterprise(db)
    return {
        "admin": auth_headers(Role.admin),
        "firm": auth_headers(Role.enterprise, enterprise_id=firm.id),
        "dept": dept,
        "firm_id": firm.id,
        "policy": policy,
    }


def _complaint(world: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {
        "kind": "complaint",
        "title": "热线来电：补贴未拨付",
        "content": "企业来电反映去年申请的研发补助公示已经三个月，资金一直没有拨付。",
        "related_policy_id": world["policy"].id,
        "enterprise_id": world["firm_id"],
        "channel": "hotline",
    } | kw


def test_intake_key_files_and_reads_only_its_own_cases(client, world) -> None:  # type: ignore[no-untyped-def]
    hotline = _key(client, world["admin"], role="desk", department_id=world["dept"].id, scopes=["desk:intake"])
    assert hotline["scopes"] == ["desk:intake"]
    key = {"X-API-Key": hotline["key"]}
    filed = client.post(f"{DESK}/cases", json=_complaint(world), headers=key)
    assert filed.status_code == 201, filed.text
    assert client.get(f"{DESK}/cases/{filed.json()['id']}", headers=key).status_code == 200
    firm_case = client.post(
        f"{DESK}/cases", json=_complaint(world, channel=None, enterprise_id=None), headers=world["firm"]
    )
    assert firm_case.status_code == 201
    listed = client.get(f"{DESK}/cases", headers=key).json()
    assert [c["id"] for c in listed["items"]] == [filed.json()["id"]]
    assert client.get(f"{DESK}/cases/{firm_case.json()['id']}", headers=key).status_code in (403, 404)
    # Nothing else, although a desk officer (its role) could do all of these.
    denied = [
        client.get(f"{DESK}/queue", headers=key),
        client.post(f"{DESK}/cases/{filed.json()['id']}/accept", json={}, headers=key),
        client.post(f"{DESK}/faq", json={"code": "k1", "question": "问？", "answer": "答。"}, headers=key),
        client.get("/api/v1/desk/stats", headers=key),
        client.get(f"/api/v1/enterprises/{world['firm_id']}", headers=key),
    ]
    assert [r.status_code for r in denied] == [403] * len(denied)
    assert denied[0].json()["code"] == "auth.scope_denied" and "权限范围" in denied[0].json()["message"]


def test_read_scope_reads_what_the_role_may_and_writes_nothing(client, world) -> None:  # type: ignore[no-untyped-def]
    reader = _key(client, world["admin"], role="supervisor", scopes=["read"])
    key = {"X-API-Key": reader["key"]}
    assert client.get(f"{DESK}/queue", headers=key).status_code == 200
    assert client.post(f"{DESK}/cases", json=_complaint(world), headers=key).status_code == 403


def test_full_scope_keeps_the_roles_rights(client, world) -> None:  # type: ignore[no-untyped-def]
    full = _key(client, world["admin"], role="supervisor", scopes=["full"])
    key = {"X-API-Key": full["key"]}
    assert client.get(f"{DESK}/queue", headers=key).status_code == 200
    assert client.post(f"{DESK}/cases", json=_complaint(world), headers=key).status_code == 201
    assert client.get("/api/v1/users", headers=key).status_code == 403  # still only a supervisor


def test_key_list_shows_scopes_and_unknown_scopes_are_refused(client, world) -> None:  # type: ignore[no-untyped-def]
    _key(client, world["admin"], role="desk", department_id=world["dept"].id)  # default: desk:intake
    listed = client.get("/api/v1/api-keys", headers=world["admin"]).json()
    assert listed[0]["scopes"] == ["desk:intake"]
    bad = client.post(
        "/api/v1/api-keys", json={"name": "x", "role": "supervisor", "scopes": ["admin:all"]}, headers=world["admin"]
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"].startswith("scopes")


def test_admin_key_page_creates_lists_scopes_and_revokes(db, client, test_settings, world) -> None:  # type: ignore[no-untyped-def]
    import re

    from auth import service as auth_service
    from web.deps import SESSION_COOKIE

    admin = factories.make_user(db, role=Role.admin)
    client.cookies.set(SESSION_COOKIE, auth_service.access_token_for(settings=test_settings, user=admin))
    page = client.get("/admin/api-keys")
    assert page.status_code == 200 and "权限范围" in page.text
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text).group(1)
    form = {"csrf_token": csrf, "name": "12345热线", "role": "desk", "department_id": str(world["dept"].id)}
    made = client.post("/admin/api-keys", data=form | {"scopes": ["desk:intake"]})
    assert made.status_code == 201 and 'id="new-key"' in made.text
    plain = re.search(r'<code id="new-key">([^<]+)</code>', made.text).group(1)
    listed = client.get("/api/v1/api-keys", headers=world["admin"]).json()
    assert listed[0]["scopes"] == ["desk:intake"] and plain.startswith(listed[0]["prefix"])
    assert "desk:intake" in client.get("/admin/api-keys").text
    refused = client.post("/admin/api-keys", data=form | {"scopes": ["everything"]})
    assert refused.status_code == 422 and 'id="scopes-error"' in refused.text
    # Revoking from the page stops the key at once.
    assert client.get(f"{DESK}/cases", headers={"X-API-Key": plain}).status_code == 200
    client.post("/admin/api-keys/revoke", data={"csrf_token": csrf, "key_id": str(listed[0]["id"])})
    assert client.get(f"{DESK}/cases", headers={"X-API-Key": plain}).status_code == 401
    # Other roles cannot open the page.
    client.cookies.set(
        SESSION_COOKIE,
        auth_service.access_token_for(settings=test_settings, user=factories.make_user(db, role=Role.curator)),
    )
    assert client.get("/admin/api-keys", follow_redirects=False).status_code == 403
