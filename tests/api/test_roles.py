"""Every route declares who may call it, and the declaration holds over HTTP.

Walks every route in the OpenAPI schema: a route with neither an `Allow(...)` nor the `public`
dependency fails; anonymous callers get 401 on protected routes; each role outside the allowed
set gets 403; allowed roles get past the check; a firm asking for another firm's object gets 404.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.routing import APIRoute

from api.app import API_PREFIX, ROUTERS, create_app
from auth.deps import Allow, public
from auth.models import Role
from core.config import Settings
from core.db import Database
from tests import factories

PUBLIC = "public"


def declared_access(route: APIRoute) -> frozenset[Role] | str | None:
    """Return the roles a route admits, PUBLIC, or None when it declares nothing."""
    stack = list(route.dependant.dependencies)
    found: frozenset[Role] | str | None = None
    while stack:
        dep = stack.pop()
        if isinstance(dep.call, Allow):
            return dep.call.roles
        if dep.call is public:
            found = PUBLIC
        stack.extend(dep.dependencies)
    return found


def _routes() -> list[tuple[str, APIRoute]]:
    return [(API_PREFIX + r.path, r) for router in ROUTERS for r in router.routes if isinstance(r, APIRoute)]


ROUTES = _routes()
ROUTE_IDS = [f"{sorted(r.methods)[0]} {path}" for path, r in ROUTES]


def test_every_operation_in_the_openapi_schema_is_walked() -> None:
    app = create_app(Settings(env="test", secret_key="s" * 40), database=Database("sqlite://"))
    in_schema = {(m.upper(), p) for p, ops in app.openapi()["paths"].items() for m in ops}
    walked = {(m, path) for path, r in ROUTES for m in r.methods}
    assert in_schema == walked


@pytest.mark.parametrize("path,route", ROUTES, ids=ROUTE_IDS)
def test_route_declares_who_may_call_it(path: str, route: APIRoute) -> None:
    assert declared_access(route) is not None, f"{path} has no Allow(...) or public dependency"


def _fill(path: str, ids: dict[str, Any]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: str(ids.get(m.group(1), 1)), path)


@pytest.mark.parametrize("template,route", ROUTES, ids=ROUTE_IDS)
def test_route_enforces_its_roles(template: str, route: APIRoute, db, client, auth_headers) -> None:  # type: ignore[no-untyped-def]
    access = declared_access(route)
    method = sorted(route.methods)[0]
    own = factories.make_enterprise(db)
    other = factories.make_enterprise(db)
    policy = factories.make_policy(db, publish=True)
    ids = {
        "policy_id": policy.id,
        "enterprise_id": own.id,
        "department_id": policy.issuing_department_id,
        "category_id": policy.categories[0].id,
        "tag_id": factories.make_tag(db).id,
        "user_id": factories.make_user(db, role=Role.curator).id,
        "key_id": 1,
        "version": 1,
    }
    path = _fill(template, ids)

    def call(headers: dict[str, str] | None) -> int:
        kwargs: dict[str, Any] = {"headers": headers or {}}
        if method in ("POST", "PATCH", "PUT"):
            kwargs["json"] = {}
        return client.request(method, path, **kwargs).status_code

    anonymous = call(None)
    if access == PUBLIC:
        assert anonymous not in (401, 403), f"public {method} {path} refused an anonymous caller"
        return
    assert anonymous == 401, f"{method} {path} let an anonymous caller through ({anonymous})"
    headers = {
        role: auth_headers(role, **({"enterprise_id": own.id} if role == Role.enterprise else {})) for role in Role
    }
    # Refusals first: an allowed call may delete what later calls need.
    for role in sorted(Role, key=lambda r: r in access):
        status = call(headers[role])
        if role in access:
            assert status not in (401, 403), f"{role} should pass {method} {path}, got {status}"
        else:
            assert status == 403, f"{role} should be refused on {method} {path}, got {status}"
    if Role.enterprise in access and "{enterprise_id}" in template:
        other_path = _fill(template, {**ids, "enterprise_id": other.id})
        firm = auth_headers(Role.enterprise, enterprise_id=factories.make_enterprise(db).id)
        kwargs: dict[str, Any] = {"headers": firm}
        if method in ("POST", "PATCH", "PUT"):
            kwargs["json"] = {}
        assert client.request(method, other_path, **kwargs).status_code == 404
