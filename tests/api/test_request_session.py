"""The request's own session and the bearer check, as served (no test session swapped in).

Other API tests run every request inside the test's rolled-back transaction; these build the app
over a database of their own so the real `core.deps.get_db` (async: the session is made on the event
loop, ended on a worker thread) and `auth.deps.optional_principal` are what runs: writes commit,
failures roll back, no connection is left checked out, more requests than pooled connections all
answer, and a token revoked by another process (another connection pool) stops working at the very
next request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import anyio.to_thread
import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.pool import QueuePool

from api.app import create_app
from auth.models import Role, User
from core import security
from core.config import Settings
from core.db import Database
from tests import factories
from tests.conftest import migrated_database

PASSWORD = "Tongguo-2026!"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def own_database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    with migrated_database(request.param, tmp_path_factory) as database:
        yield database


@pytest.fixture
def served(own_database: Database, test_settings: Settings, matcher: Any) -> Iterator[TestClient]:
    app = create_app(test_settings, database=own_database, matcher=matcher)
    with TestClient(app, raise_server_exceptions=True) as client:
        yield client


def _user(database: Database, role: Role = Role.curator) -> tuple[int, str]:
    with database.session() as db:
        user = factories.make_user(db, role=role, password=PASSWORD)
        db.flush()
        return user.id, user.username


def _bearer(settings: Settings, user_id: int, version: int = 0) -> dict[str, str]:
    token = security.create_access_token(settings=settings, subject=str(user_id), claims={"tv": version})
    return {"Authorization": f"Bearer {token}"}


def test_a_token_revoked_elsewhere_fails_at_the_next_request(
    served: TestClient, own_database: Database, test_settings: Settings
) -> None:
    user_id, _ = _user(own_database)
    headers = _bearer(test_settings, user_id)
    for _ in range(3):  # warm: nothing about the user is kept between requests
        assert served.get("/api/v1/auth/me", headers=headers).status_code == 200
    # Another process (its own pool) signs the user out everywhere.
    other = Database(own_database.url, **_connect_args(own_database))
    try:
        with other.session() as db:
            db.execute(update(User).where(User.id == user_id).values(token_version=User.token_version + 1))
    finally:
        other.dispose()
    r = served.get("/api/v1/auth/me", headers=headers)
    assert r.status_code == 401 and r.json()["code"] == "auth.invalid_token"
    assert served.get("/api/v1/auth/me", headers=_bearer(test_settings, user_id, version=1)).status_code == 200


def test_a_deactivated_user_fails_at_the_next_request(
    served: TestClient, own_database: Database, test_settings: Settings
) -> None:
    user_id, _ = _user(own_database)
    headers = _bearer(test_settings, user_id)
    assert served.get("/api/v1/auth/me", headers=headers).status_code == 200
    with own_database.session() as db:
        db.execute(update(User).where(User.id == user_id).values(is_active=False))
    assert served.get("/api/v1/auth/me", headers=headers).status_code == 401


def _firm_user(database: Database) -> tuple[int, int]:
    with database.session() as db:
        user = factories.make_user(db, role=Role.enterprise, password=PASSWORD)
        db.flush()
        return user.id, user.enterprise_id  # type: ignore[return-value]


def test_recommendations_check_the_caller_in_their_one_hop(
    served: TestClient, own_database: Database, test_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recommendation routes check the caller on the thread that reads (`auth.deps.Caller.verify`):
    one hop to a worker thread per request, and the same answers as every other route gives."""
    user_id, enterprise_id = _firm_user(own_database)
    other_id = _firm_user(own_database)[1]
    headers = _bearer(test_settings, user_id)
    hops: list[str] = []
    run_sync = anyio.to_thread.run_sync

    async def counted(func: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(getattr(func, "__qualname__", "?"))
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    mine = served.get("/api/v1/enterprises/me/recommendations", headers=headers)
    assert mine.status_code == 200, mine.text
    assert mine.json()["enterprise_id"] == enterprise_id
    assert len(hops) == 1, hops  # the caller's check, the read and the commit on one worker thread
    by_id = served.get(f"/api/v1/enterprises/{enterprise_id}/recommendations", headers=headers)
    assert by_id.status_code == 200 and by_id.json()["enterprise_id"] == enterprise_id
    # Another firm's list: not found, as for any firm-owned object.
    theirs = served.get(f"/api/v1/enterprises/{other_id}/recommendations", headers=headers)
    assert theirs.status_code == 404 and theirs.json()["code"] == "profiles.enterprise_not_found"
    # A role the route does not admit: 403; staff may read a firm's list by id.
    curator = _bearer(test_settings, _user(own_database, Role.curator)[0])
    assert served.get("/api/v1/enterprises/me/recommendations", headers=curator).status_code == 403
    assert served.get(f"/api/v1/enterprises/{enterprise_id}/recommendations", headers=curator).status_code == 200
    # No or a bad token: 401 before any thread; signed out elsewhere or deactivated: 401 at the next request.
    assert served.get("/api/v1/enterprises/me/recommendations").status_code == 401
    bad = served.get("/api/v1/enterprises/me/recommendations", headers={"Authorization": "Bearer not-a-token"})
    assert bad.status_code == 401 and bad.json()["code"] == "auth.invalid_token"
    with own_database.session() as db:
        db.execute(update(User).where(User.id == user_id).values(token_version=User.token_version + 1))
    revoked = served.get("/api/v1/enterprises/me/recommendations", headers=headers)
    assert revoked.status_code == 401 and revoked.json()["code"] == "auth.invalid_token"
    headers = _bearer(test_settings, user_id, version=1)
    assert served.get("/api/v1/enterprises/me/recommendations", headers=headers).status_code == 200
    with own_database.session() as db:
        db.execute(update(User).where(User.id == user_id).values(is_active=False))
    assert served.get(f"/api/v1/enterprises/{enterprise_id}/recommendations", headers=headers).status_code == 401
    pool = own_database.engine.pool
    assert isinstance(pool, QueuePool) and pool.checkedout() == 0


def test_writes_commit_and_failures_leave_no_connection_checked_out(
    served: TestClient, own_database: Database, test_settings: Settings
) -> None:
    user_id, username = _user(own_database)
    signed = served.post("/api/v1/auth/token", data={"username": username, "password": PASSWORD})
    assert signed.status_code == 200, signed.text
    headers = {"Authorization": f"Bearer {signed.json()['access_token']}"}
    assert served.get("/api/v1/auth/me", headers=headers).status_code == 200
    # A writer request: its commit is seen by another session, and the old token no longer works.
    assert served.post("/api/v1/auth/logout", headers=headers).status_code == 204
    with own_database.session() as db:
        assert db.scalar(select(User.token_version).where(User.id == user_id)) == 1
    assert served.get("/api/v1/auth/me", headers=headers).status_code == 401
    # Failures of every kind end their session too.
    admin = _bearer(test_settings, _user(own_database, Role.admin)[0])
    assert served.get("/api/v1/users/99999999", headers=admin).status_code == 404
    assert served.get("/api/v1/users?page=0", headers=admin).status_code == 422
    assert served.get("/api/v1/auth/me", headers={"Authorization": "Bearer not-a-token"}).status_code == 401
    assert served.get("/api/v1/auth/me").status_code == 401
    # A write refused after changing the user in the session is rolled back, not committed: the name stays.
    bad = served.patch(f"/api/v1/users/{user_id}", headers=admin, json={"display_name": "新名字", "role": "desk"})
    assert bad.status_code == 422, bad.text
    with own_database.session() as db:
        assert db.scalar(select(User.display_name).where(User.id == user_id)) != "新名字"
    pool = own_database.engine.pool
    assert isinstance(pool, QueuePool) and pool.checkedout() == 0


def test_more_concurrent_requests_than_pooled_connections(
    own_database: Database, test_settings: Settings, matcher: Any
) -> None:
    """Requests waiting for a connection must never stop the event loop that the requests holding
    one need to finish: 24 signed-in requests at once through a pool of 2 all answer, promptly."""
    small = Database(own_database.url, pool_size=2, max_overflow=0, pool_timeout=10, **_connect_args(own_database))
    app = create_app(test_settings, database=small, matcher=matcher)
    headers = [_bearer(test_settings, _user(own_database)[0]) for _ in range(3)]

    async def burst() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
            return await asyncio.gather(*(client.get("/api/v1/auth/me", headers=headers[k % 3]) for k in range(24)))

    started = time.perf_counter()
    try:
        responses = asyncio.run(burst())
    finally:
        small.dispose()
    assert [r.status_code for r in responses] == [200] * 24
    assert time.perf_counter() - started < 10  # a stalled loop shows as waiting out the pool's timeout


def _connect_args(database: Database) -> dict[str, Any]:
    """Return what opens the same database (PostgreSQL test databases live in a schema of their own)."""
    if database.url.startswith("sqlite"):
        return {}
    schema = database.engine.dialect.default_schema_name
    return {"connect_args": {"options": f"-csearch_path={schema}"}}


def test_more_concurrent_requests_than_threads_and_connections(
    own_database: Database, test_settings: Settings, matcher: Any
) -> None:
    """With every worker thread and every pooled connection wanted at once, requests still answer
    promptly: requests holding a connection must never wait for a thread that requests waiting for a
    connection hold (seen as 30 s stalls and 500s at 128 clients in bench.serving)."""
    small = Database(own_database.url, pool_size=2, max_overflow=1, pool_timeout=8, **_connect_args(own_database))
    app = create_app(test_settings, database=small, matcher=matcher)
    headers = [_bearer(test_settings, _user(own_database)[0]) for _ in range(3)]

    async def burst() -> list[httpx.Response]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = 4
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
            paths = ("/api/v1/auth/me", "/api/v1/enterprises/me/recommendations", "/api/v1/policies")
            return await asyncio.gather(
                *(client.get(paths[k % 3], headers=headers[k % 3]) for k in range(60)),
            )

    started = time.perf_counter()
    try:
        responses = asyncio.run(burst())
    finally:
        small.dispose()
    assert all(r.status_code < 500 for r in responses), sorted({r.status_code for r in responses})
    assert time.perf_counter() - started < 8  # a deadlock shows as waiting out the pool's timeout
