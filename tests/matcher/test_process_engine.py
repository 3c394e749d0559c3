"""The process engine (`huiqi match --all --workers N`) writes exactly what the local engine writes (PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import delete, select

from core.db import Database
from matcher import runs
from matcher.models import FirmMatch, MatchRun, MatchRunChunk, PolicyMatchState
from tests.support.pg_schema import demo_schema


@pytest.fixture
def shared_database() -> Iterator[Database]:
    """A PostgreSQL schema of its own with the demo catalog and 60 firms, committed for other processes."""
    with demo_schema("hq_proc", needs="the process engine's tests") as (database, url):
        yield database


def _stored(database: Database) -> dict[int, tuple[int, int, int, bytes]]:
    with database.session() as db:
        rows = db.execute(
            select(FirmMatch.enterprise_id, FirmMatch.revision, FirmMatch.eligible, FirmMatch.likely, FirmMatch.payload)
        )
        return {eid: (rev, el, lk, bytes(payload)) for eid, rev, el, lk, payload in rows}


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_the_process_engine_writes_what_the_local_engine_writes(shared_database, matcher, start_method) -> None:  # type: ignore[no-untyped-def]
    """Forked (the command line) or spawned (the nightly job in `huiqi worker`): the local engine's rows."""
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
    engine = runs.ProcessEngine(database, 2, start_method=start_method)
    parallel = runs.rematch_all(database, matcher, width=16, engine=engine)
    assert local.chunks == parallel.chunks == 4 and parallel.firms == 60 and not parallel.stopped
    assert len(expected) == 60 and _stored(database) == expected  # byte for byte
    # Each chunk's CPU is measured in the process that scored it (the parent only waits) and summed.
    for report in (local, parallel):
        assert 0 < report.details["chunk_cpu_max_s"] <= report.details["chunk_cpu_s"]
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


def test_scoring_runs_blas_on_one_thread_whatever_the_process_allows() -> None:
    """A GEMM's last bits depend on its thread count; every engine scores on one thread so rows match."""
    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits(limits=2), runs.scoring_threads():
        blas = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    assert blas and set(blas) == {1}


def test_the_nightly_job_scores_in_the_processes_the_settings_name(shared_database, matcher, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`HUIQI_MATCH_WORKERS=2`: the worker's nightly full run scores its chunks in 2 spawned processes."""
    from core import scheduler
    from matcher import jobs

    database = shared_database
    runs.embed_firms(database, matcher)
    settings = matcher.settings.model_copy(update={"match_workers": 2, "match_chunk_width": 16})
    engines: list[runs.ProcessEngine] = []
    real = runs.ProcessEngine

    def recorded(*args, **kwargs):  # type: ignore[no-untyped-def]
        engines.append(real(*args, **kwargs))
        return engines[-1]

    # A worker run in process earlier in the suite leaves its stop flag set: this job runs in a fresh worker.
    monkeypatch.setattr(scheduler, "_stopping", threading.Event())
    monkeypatch.setattr(jobs, "get_settings", lambda: settings)
    monkeypatch.setattr(jobs, "get_database", lambda _settings: database)
    monkeypatch.setattr(jobs, "_matcher", lambda: matcher)
    monkeypatch.setattr(matcher, "close", lambda: None)  # the session's matcher outlives the job
    monkeypatch.setattr(matcher, "settings", settings)  # chunks of 16 firms: 4 chunks for 2 processes
    monkeypatch.setattr(runs, "ProcessEngine", recorded)
    assert jobs.rematch_all_job() == {"firms": 60, "stopped": False}
    assert [(e.workers, e.start_method) for e in engines] == [(2, "spawn")]
    with database.session() as db:
        assert db.scalar(select(MatchRun.status)) == "done"
        assert sorted(db.scalars(select(MatchRunChunk.chunk_no))) == [0, 1, 2, 3]
