"""GET requests that serve matches never write: every INSERT, UPDATE or DELETE a request issues is counted.

The firm's recommendations (API and page), a staff view of a firm's list, a policy's eligible firms,
the match status and search — with stored matches that are current, and again when they are stale
(a profile changed, a policy edited): stale results are served marked stale, nothing is computed or
written in the request, and the worker's catch-up is what refreshes them. What a GET may cause after
its response — the funnel's "seen" count, in a short transaction of its own (`events.policies_seen`)
— is the only write allowed, and only to that table.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event

from auth.models import Role
from auth.service import Principal
from catalog import service as catalog_service
from catalog.schemas import PolicyUpdate
from profiles import service as profiles_service
from profiles.schemas import EnterpriseUpdate
from tests import factories

WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)
ALLOWED = ("policy_event",)  # the funnel's after-response "seen" rows


@pytest.fixture
def writes(database: Any) -> Iterator[list[str]]:
    seen: list[str] = []

    def listen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if WRITE.match(statement) and not any(t in statement for t in ALLOWED):
            seen.append(statement.split("\n")[0][:200])

    event.listen(database.engine, "before_cursor_execute", listen)
    yield seen
    event.remove(database.engine, "before_cursor_execute", listen)


def _gets(client: Any, firm_h: dict[str, str], staff_h: dict[str, str], firm_id: int, policy_id: int) -> None:
    for path, headers in [
        ("/api/v1/enterprises/me/recommendations", firm_h),
        ("/api/v1/enterprises/me/recommendations?include=likely,ineligible&page=2&limit=5", firm_h),
        (f"/api/v1/enterprises/{firm_id}/recommendations", staff_h),
        (f"/api/v1/policies/{policy_id}/eligible-enterprises", staff_h),
        ("/api/v1/match/status", staff_h),
        ("/api/v1/policies/search?q=资金扶持", firm_h),
    ]:
        r = client.get(path, headers=headers)
        assert r.status_code == 200, (path, r.text[:300])
    r = client.get("/me/recommendations", headers={"Cookie": f"huiqi_session={firm_h['Authorization'].split()[1]}"})
    assert r.status_code == 200, r.text[:300]


def test_gets_that_serve_matches_never_write(db, client, auth_headers, matcher, writes) -> None:  # type: ignore[no-untyped-def]
    policies = [factories.make_policy(db, publish=True) for _ in range(3)]
    firm = factories.make_enterprise(db, rd_expense=None)
    factories.match(db, matcher)
    firm_h = auth_headers(Role.enterprise, enterprise_id=firm.id)
    staff_h = auth_headers(Role.curator)
    db.flush()
    assert writes  # the listener sees the set-up's writes
    writes.clear()
    _gets(client, firm_h, staff_h, firm.id, policies[0].id)
    assert writes == []

    # Stale: a profile change and a policy edit. Served marked stale, still nothing written.
    actor = Principal(id=1, role=Role.enterprise, name="企业", enterprise_id=firm.id)
    profiles_service.update_enterprise(
        db=db, enterprise_id=firm.id, enterprise_in=EnterpriseUpdate(employees=80), actor=actor
    )
    catalog_service.update_policy(
        db=db, policy_id=policies[1].id, policy_in=PolicyUpdate(summary="修改后的摘要。"), actor=None
    )
    db.flush()
    writes.clear()
    body = client.get("/api/v1/enterprises/me/recommendations", headers=firm_h).json()
    assert body["state"] == "stale" and body["items"]
    _gets(client, firm_h, staff_h, firm.id, policies[0].id)
    assert writes == []
