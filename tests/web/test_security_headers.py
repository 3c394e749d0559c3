"""Every page answers with the security headers: a strict CSP, nosniff, no framing, a same-origin referrer.

Walks every GET page route (public, firm and staff routers) anonymously and as each role, with real
ids filled in, and checks each HTML response's headers; the templates carry no inline event handler
the policy would refuse (they moved to static/app.js).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi.routing import APIRoute
from sqlalchemy import select

from applications import service as applications_service
from auth.models import Role
from auth.service import principal_for_user
from catalog import attachments as policy_files
from core import security
from desk import attachments as case_files
from desk import intake
from desk.schemas import CaseIn
from push import fanout
from push import preferences as push_preferences
from push.models import Delivery
from push.schemas import SubscriptionIn
from tests import factories
from tests.support import sample_files
from web import STAFF_ROUTERS, WEB_ROUTERS
from web.deps import SESSION_COOKIE

TEMPLATES = Path(__file__).resolve().parents[2] / "web" / "templates"
GET_ROUTES = sorted(
    {
        r.path
        for router in (*WEB_ROUTERS, *STAFF_ROUTERS)
        for r in router.routes
        if isinstance(r, APIRoute) and "GET" in r.methods
    }
)


def assert_secure_headers(response: Any, where: str) -> None:
    """The headers every HTML response must carry, and a CSP that refuses inline script."""
    headers = response.headers
    csp = headers.get("content-security-policy", "")
    directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
    assert directives.get("default-src") == ["'self'"], f"{where}: CSP {csp!r}"
    script = directives.get("script-src", [])
    assert "'self'" in script and any(s.startswith("'nonce-") for s in script), f"{where}: script-src {script}"
    assert not {"'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'", "*", "data:"} & set(script), where
    assert directives.get("frame-ancestors") == ["'none'"], where
    assert directives.get("object-src") == ["'none'"], where
    assert directives.get("base-uri") == ["'none'"], where
    assert headers.get("x-content-type-options") == "nosniff", where
    assert headers.get("x-frame-options") == "DENY", where
    assert headers.get("referrer-policy") == "same-origin", where


def test_every_get_page_as_every_role_carries_the_security_headers(db, client, test_settings) -> None:  # type: ignore[no-untyped-def]
    assert len(GET_ROUTES) >= 25
    dept = factories.make_department(db)
    firm = factories.make_enterprise(db)
    policy = factories.make_policy(db, publish=True)
    fanout.fan_out_policy(db=db, policy_id=policy.id)
    delivery = db.scalar(select(Delivery.id).where(Delivery.enterprise_id == firm.id, Delivery.channel == "inbox"))
    sub = push_preferences.create_subscription(
        db=db, enterprise_id=firm.id, subscription_in=SubscriptionIn(kind="keyword", value="数字经济")
    )
    boss = principal_for_user(factories.make_user(db, role=Role.supervisor))
    case = intake.submit_case(
        db=db,
        matcher=None,
        settings=test_settings,
        actor=boss,
        case_in=CaseIn(
            kind="help",
            title="研发费用加计扣除备案后系统查不到",
            content="我们上周在系统里做了研发费用加计扣除备案，但现在查询不到记录，请帮忙核实。",
            channel="hotline",
            department_id=dept.id,
            enterprise_id=firm.id,
        ),
    )
    application = applications_service.open_for_firm(db=db, enterprise_id=firm.id, policy_id=policy.id, actor=None)
    assert application is not None
    ids = {
        "application_id": application.id,
        "policy_id": policy.id,
        "case_id": case.id,
        "delivery_id": delivery,
        "subscription_id": sub.id,
        "suggestion_id": 1,
        "decision": "reject",
    }
    # Downloads are checked too: a policy's file on the policy route, the case's file on the case routes.
    policy_file = policy_files.attach_to_policy(
        db,
        policy_id=policy.id,
        kind="guide",
        name="指南.pdf",
        data=sample_files.pdf(),
        user=None,
        settings=test_settings,
    )
    case_file = case_files.attach_to_case(
        db, settings=test_settings, case_id=case.id, actor=None, name="答复.png", data=sample_files.png()
    )
    users: dict[Role | None, Any] = {None: None}
    for role in Role:
        kw = {"enterprise_id": firm.id} if role == Role.enterprise else {}
        if role == Role.desk:
            kw = {"department_id": dept.id}
        users[role] = factories.make_user(db, role=role, **kw)
    checked = 0
    html = 0
    for role, user in users.items():
        client.cookies.clear()
        if user is not None:
            client.cookies.set(
                SESSION_COOKIE, security.create_access_token(settings=test_settings, subject=str(user.id))
            )
        for template in GET_ROUTES:
            values = {**ids, "attachment_id": policy_file.id if template.startswith("/policies/") else case_file.id}
            path = re.sub(r"\{(\w+)\}", lambda m, v=values: str(v[m.group(1)]), template)
            response = client.get(path, follow_redirects=False)
            where = f"GET {path} as {role or 'anonymous'} ({response.status_code})"
            assert response.status_code < 500, where
            assert_secure_headers(response, where)
            checked += 1
            if response.headers.get("content-type", "").startswith("text/html"):
                html += 1
                markup = re.sub(r"<script type=\"application/json\".*?</script>", "", response.text, flags=re.S)
                assert not re.search(r"<[^>]+\son[a-z]+\s*=", markup), f"{where}: inline event handler in the page"
    assert html >= len(GET_ROUTES)  # every page was rendered for at least one role
    # Outside the page routers too: the 404 page, the API, the static files and Swagger UI.
    for path in ("/no-such-page", "/api/v1/policies", "/static/app.js", "/openapi.json", "/docs", "/healthz"):
        response = client.get(path, headers={"accept": "text/html"})
        assert_secure_headers(response, f"GET {path}")
    docs = client.get("/docs")
    nonce = re.search(r"'nonce-([^']+)'", docs.headers["content-security-policy"]).group(1)  # type: ignore[union-attr]
    inline = re.findall(r"<script(?![^>]*\ssrc=)([^>]*)>", docs.text)
    assert inline and all(f'nonce="{nonce}"' in attrs for attrs in inline)


def test_templates_have_no_inline_event_handlers_or_javascript_urls() -> None:
    found = []
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text(encoding="utf-8")
        for match in re.finditer(r"<[^>]*?\s(on[a-z]+)\s*=|javascript:", text):
            found.append(f"{template.name}: {match.group(0)[:60]}")
    assert not found, found


def test_every_response_gets_a_fresh_nonce(client) -> None:  # type: ignore[no-untyped-def]
    first = client.get("/login").headers["content-security-policy"]
    second = client.get("/login").headers["content-security-policy"]
    assert first != second
