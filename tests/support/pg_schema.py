"""A PostgreSQL schema of its own (empty, or migrated with the demo catalog and demo firms committed), so that other
processes (Ray workers, forked chunk workers) see the same data the test does."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from catalog import demo
from core import migrate
from core.db import Database
from profiles import demo as profiles_demo
from tests.conftest import postgres_url


@contextmanager
def private_schema(prefix: str, *, needs: str = "these tests") -> Iterator[str]:
    """Yield the URL of a new, empty PostgreSQL schema that other processes can use too; it is dropped
    afterwards. Skips (or fails under CI) without PostgreSQL."""
    base, why = postgres_url()
    if base is None:
        if os.environ.get("HUIQI_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required but unusable: {why}")
        pytest.skip(f"{needs} need PostgreSQL: {why}")
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = Database(base)
    with admin.engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield (
            make_url(base)
            .update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def demo_schema(prefix: str, *, firms: int = 60, needs: str = "these tests") -> Iterator[tuple[Database, str]]:
    """Yield the database and its URL, migrated, with the demo catalog and firms; the schema is dropped afterwards."""
    with private_schema(prefix, needs=needs) as url:
        database = Database(url)
        try:
            migrate.upgrade(url=url)
            with database.session() as db:
                demo.load_demo_catalog(db=db, actor=None)
                profiles_demo.load_demo_enterprises(db=db, count=firms)
            yield database, url
        finally:
            database.dispose()
