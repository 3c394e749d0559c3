"""The process engine (`huiqi match --all --workers N`) writes exactly what the local engine writes (PostgreSQL)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import delete, select, text
from sqlalchemy.engine import make_url

from catalog import demo
from core import migrate
from core.db import Database
from matcher import runs
from matcher.models import FirmMatch, MatchRun, MatchRunChunk, PolicyMatchState
from profiles import demo as profiles_demo
from tests.conftest import postgres_url


@pytest.fixture
def shared_database() -> Iterator[Database]:
    """A PostgreSQL schema of its own with the demo catalog and 60 firms, committed for other processes."""
    base, why = postgres_url()
    if base is None:
        if os.environ.get("HUIQI_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required but unusable: {why}")
        pytest.skip(f"the process engine's tests need PostgreSQL: {why}")
    schema = f"hq_proc_{uuid.uuid4().hex[:10]}"
    admin = Database(base)
    with admin.engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    database = Database(url)
    try:
        migrate.upgrade(url=url)
        with database.session() as db:
            demo.load_demo_catalog(db=db, actor=None)
            profiles_demo.load_demo_enterprises(db=db, count=60)
        yield database
    finally:
        database.dispose()
        with admin.engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _stored(database: Database) -> dict[int, tuple[int, int, int, bytes]]:
    with database.session() as db:
        rows = db.execute(
            select(FirmMatch.enterprise_id, FirmMatch.revision, FirmMatch.eligible, FirmMatch.likely, FirmMatch.payload)
        )
        return {eid: (rev, el, lk, bytes(payload)) for eid, rev, el, lk, payload in rows}


def test_the_process_engine_writes_what_the_local_engine_writes(shared_database, matcher) -> None:  # type: ignore[no-untyped-def]
    database = shared_database
    runs.embed_firms(database, matcher)
    local = runs.rematch_all(database, matcher, width=16)
    expected = _stored(database)
    with database.session() as db:
        counts = dict(db.execute(select(PolicyMatchState.policy_id, PolicyMatchState.eligible)).tuples().all())
    with database.writer_session() as db:
        db.execute(delete(FirmMatch))
        db.execute(delete(MatchRun))
        db.execute(delete(PolicyMatchState))
    parallel = runs.rematch_all(database, matcher, width=16, engine=runs.ProcessEngine(database, 2))
    assert local.chunks == parallel.chunks == 4 and parallel.firms == 60 and not parallel.stopped
    assert len(expected) == 60 and _stored(database) == expected  # byte for byte
    with database.session() as db:
        assert dict(db.execute(select(PolicyMatchState.policy_id, PolicyMatchState.eligible)).tuples().all()) == counts
        assert sorted(db.scalars(select(MatchRunChunk.chunk_no))) == [0, 1, 2, 3]
        assert db.scalar(select(MatchRun.status)) == "done"


def test_a_stopped_process_run_resumes_without_redoing_chunks(shared_database, matcher) -> None:  # type: ignore[no-untyped-def]
    database = shared_database
    runs.embed_firms(database, matcher)
    # Asked after the first chunk comes back: the pool stops, a chunk cut short writes nothing.
    first = runs.rematch_all(database, matcher, width=8, engine=runs.ProcessEngine(database, 2, lambda: True))
    assert first.stopped and first.chunks == 8
    with database.session() as db:
        done = set(db.scalars(select(MatchRunChunk.chunk_no)))
    assert 1 <= len(done) < 8
    second = runs.rematch_all(database, matcher, width=8, engine=runs.ProcessEngine(database, 2))
    assert not second.stopped and second.resumed == len(done)
    with database.session() as db:
        assert sorted(db.scalars(select(MatchRunChunk.chunk_no))) == list(range(8))
        assert len(_stored(database)) == 60
