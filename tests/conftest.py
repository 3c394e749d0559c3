"""Shared fixtures: a migrated database on SQLite and PostgreSQL, rolled-back sessions, an API client.

Every test that asks for `db` (or `client`) runs once per backend. PostgreSQL is used when
HUIQI_TEST_POSTGRES_URL is set or a server answers on 127.0.0.1:5432; otherwise those runs are
skipped with one line saying why, unless HUIQI_TEST_REQUIRE_POSTGRES=1 (CI), which fails instead.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from api.app import create_app
from auth.models import Role
from core import migrate, security
from core.config import Settings
from core.db import Database, InSession
from core.deps import get_database, get_db

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
_pg_skip_reason: list[str] = []


def postgres_url() -> tuple[str | None, str | None]:
    """Return (url, None) when PostgreSQL is usable, else (None, why not)."""
    url = os.environ.get("HUIQI_TEST_POSTGRES_URL")
    if url:
        return url, None
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=0.5).close()
    except OSError:
        return None, "HUIQI_TEST_POSTGRES_URL is unset and no server answered on 127.0.0.1:5432"
    return DEFAULT_PG, None


def _require_postgres() -> bool:
    return os.environ.get("HUIQI_TEST_REQUIRE_POSTGRES") == "1"


@pytest.fixture(scope="session", autouse=True)
def _cheap_password_hashing() -> Iterator[None]:
    """Use argon2 with minimal cost in tests: same code path, a fraction of the time."""
    from pwdlib import PasswordHash
    from pwdlib.hashers.argon2 import Argon2Hasher

    original = security._hasher
    security._hasher = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1),))
    yield
    security._hasher = original


@pytest.fixture(scope="session")
def test_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings for tests: test environment, a private secret, a temporary var dir."""
    return Settings(
        env="test",
        secret_key="t" * 48,
        var_dir=tmp_path_factory.mktemp("var"),
        models_dir=tmp_path_factory.mktemp("models"),
        demo_users=False,
        scheduler_enabled=False,  # the test client must not run domain jobs against the shared database
        warm_up=False,  # tests build what they use
        webhook_allow_hosts="127.0.0.1/32",  # the tests' webhook receivers are real local servers
    )


def _make_database(backend: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Database, Callable[[], None]]:
    if backend == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "huiqi.db"
        database = Database(f"sqlite:///{path}")
        return database, database.dispose
    url, why = postgres_url()
    if url is None:
        if _require_postgres():
            pytest.fail(f"PostgreSQL is required (HUIQI_TEST_REQUIRE_POSTGRES=1) but unusable: {why}")
        _pg_skip_reason[:] = [why or "unknown"]
        pytest.skip(f"PostgreSQL tests skipped: {why}")
    # A private schema per test session keeps runs (and xdist workers) apart in one database.
    schema = f"hq_test_{uuid.uuid4().hex[:10]}"
    admin = Database(url)
    try:
        with admin.engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # server answered the port but refused us
        admin.dispose()
        if _require_postgres():
            pytest.fail(f"PostgreSQL is required but unusable: {exc}")
        _pg_skip_reason[:] = [str(exc).splitlines()[0]]
        pytest.skip(f"PostgreSQL tests skipped: {exc}")
    database = Database(url, connect_args={"options": f"-csearch_path={schema}"})

    def cleanup() -> None:
        database.dispose()
        with admin.engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return database, cleanup


@contextmanager
def migrated_database(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """Yield a new database of the backend migrated to head through Alembic; removed afterwards."""
    database, cleanup = _make_database(backend, tmp_path_factory)
    with database.engine.connect() as conn:
        migrate.upgrade(connection=conn)
    yield database
    cleanup()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """A database migrated to head through Alembic, once per backend per test session."""
    with migrated_database(request.param, tmp_path_factory) as database:
        yield database


@pytest.fixture
def db(database: Database) -> Iterator[Session]:
    """A session inside a transaction that is rolled back after the test."""
    connection = database.engine.connect()
    outer = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        yield session
    finally:
        session.close()
        outer.rollback()
        connection.close()


@pytest.fixture(scope="session")
def matcher(test_settings: Settings):  # type: ignore[no-untyped-def]
    """One matcher (real e5 embedder, cache and indexes under the test var dir) for the session."""
    from matcher.engine import Matcher

    m = Matcher(test_settings)
    yield m
    m.close()


@pytest.fixture
def app(test_settings: Settings, database: Database, db: Session, matcher):  # type: ignore[no-untyped-def]
    """The application wired to the test session, so HTTP calls see and roll back test data."""
    application = create_app(test_settings, database=database, matcher=matcher)

    def _test_db() -> Iterator[Session]:
        # Keep what the test built so far: a failing request then rolls back only its own work.
        db.commit()
        try:
            yield db
            db.commit()  # releases the savepoint; the outer transaction is still rolled back
        except BaseException:
            db.rollback()
            raise

    application.dependency_overrides[get_db] = _test_db
    # Work done after the response (funnel events) joins the test's transaction too.
    application.dependency_overrides[get_database] = lambda: InSession(db)
    return application


@pytest.fixture
def client(app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """An HTTP client for the test app."""
    with TestClient(app, raise_server_exceptions=True) as c:
        yield c


@pytest.fixture
def auth_headers(db: Session, test_settings: Settings) -> Callable[..., dict[str, str]]:
    """Return a function making a user of a role and the bearer header that signs them in."""
    from tests import factories

    def make(role: Role | str, **kw: Any) -> dict[str, str]:
        user = factories.make_user(db, role=Role(role), **kw)
        token = security.create_access_token(settings=test_settings, subject=str(user.id))
        return {"Authorization": f"Bearer {token}"}

    return make


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    if _pg_skip_reason:
        terminalreporter.write_line(f"PostgreSQL tests were skipped: {_pg_skip_reason[0]}", yellow=True, bold=True)
