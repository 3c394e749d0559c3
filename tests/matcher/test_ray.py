"""The Ray engine writes exactly what the local engine writes (a local Ray instance, PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import delete, select

from core.db import Database
from matcher import runs, store
from matcher.models import FirmMatch, MatchRun, PolicyMatchState
from tests.support.pg_schema import demo_schema

ray = pytest.importorskip("ray")


@pytest.fixture
def shared_database() -> Iterator[tuple[Database, str]]:
    """A PostgreSQL schema of its own with the demo catalog and 60 firms, committed for other processes."""
    with demo_schema("hq_ray", needs="Ray engine tests") as (database, url):
        yield database, url


def _stored(database: Database) -> dict[int, tuple[list[int], list[int], list[int], int, int]]:
    with database.session() as db:
        out = {}
        for row in db.scalars(select(FirmMatch)):
            items, near = store.decode(row.payload)
            out[row.enterprise_id] = (
                items["policy"].tolist(),
                items["status"].tolist(),
                near["policy"].tolist(),
                row.eligible,
                row.likely,
            )
        return out


def test_the_ray_engine_writes_what_the_local_engine_writes(shared_database, matcher) -> None:  # type: ignore[no-untyped-def]
    from matcher.ray_engine import RayEngine

    database, url = shared_database
    runs.embed_firms(database, matcher)
    local = runs.rematch_all(database, matcher, width=16)
    expected = _stored(database)
    with database.session() as db:
        counts = dict(db.execute(select(PolicyMatchState.policy_id, PolicyMatchState.eligible)).tuples().all())
    with database.writer_session() as db:
        db.execute(delete(FirmMatch))
        db.execute(delete(MatchRun))
        db.execute(delete(PolicyMatchState))
    settings = matcher.settings.model_copy(update={"database_url": url, "ray_workers": 2})
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        distributed = runs.rematch_all(database, matcher, width=16, engine=RayEngine(settings))
    finally:
        ray.shutdown()
    assert local.chunks == distributed.chunks == 4 and distributed.firms == 60 and not distributed.stopped
    assert _stored(database) == expected
    # The actors report the CPU each chunk took in their own process (the driver's getrusage cannot see it).
    assert 0 < distributed.details["chunk_cpu_max_s"] <= distributed.details["chunk_cpu_s"]
    with database.session() as db:
        assert dict(db.execute(select(PolicyMatchState.policy_id, PolicyMatchState.eligible)).tuples().all()) == counts


def test_embed_on_ray_embeds_every_stale_firm_once(shared_database, matcher) -> None:  # type: ignore[no-untyped-def]
    from matcher import vectors
    from matcher.models import FirmVector
    from matcher.ray_engine import embed_on_ray

    database, url = shared_database
    settings = matcher.settings.model_copy(update={"database_url": url, "ray_workers": 2})
    with database.session() as db:
        stale = vectors.stale_ids(db, model_id=matcher.embedder.model_id)
    assert len(stale) == 60
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        done = list(embed_on_ray(settings, stale, batch=25))
    finally:
        ray.shutdown()
    assert sorted(b for _, b in done) == [10, 25, 25] and sum(n for n, _ in done) == 60
    with database.session() as db:
        assert vectors.stale_ids(db, model_id=matcher.embedder.model_id) == []
        rows = dict(db.execute(select(FirmVector.enterprise_id, FirmVector.vector)).tuples().all())
    assert sorted(rows) == sorted(stale)
    # The same vectors the local engine computes for the same texts.
    with database.writer_session() as db:
        db.execute(delete(FirmVector))
    assert runs.embed_firms(database, matcher) == 60
    with database.session() as db:
        local = dict(db.execute(select(FirmVector.enterprise_id, FirmVector.vector)).tuples().all())
    assert local == rows
