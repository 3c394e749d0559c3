"""The scheduler: a database lease lets one process run jobs, a survivor takes over, items fail alone."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from sqlalchemy import MetaData, delete, select, text
from sqlalchemy.engine import make_url

from core import lease
from core.config import Settings
from core.db import Base, Database
from core.lease import SchedulerLease
from core.scheduler import (
    JOBS_TABLE,
    ONCE_PREFIX,
    HuiqiScheduler,
    JobRegistry,
    enqueue,
    load_job_modules,
    run_items,
    start_in_process,
    stop_in_process,
)

ROOT = Path(__file__).resolve().parents[2]
T0 = dt.datetime(2030, 1, 1, 8, 0, tzinfo=dt.UTC)
TICK = "tests.core.test_scheduler:record_tick"
WORKER_TTL = 2.0
# These schedulers exist to run jobs (the API's default, HUIQI_SCHEDULER_ENABLED=false, only enqueues).
SETTINGS = Settings(env="test", secret_key="t" * 48, scheduler_enabled=True)


def record_tick(path: str, tag: str = "tick") -> None:
    """Append this process's pid, the time and a tag to path: the job the tests schedule."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"{os.getpid()} {time.time():.6f} {tag}\n")


def read_ticks(path: Path) -> list[tuple[int, float, str]]:
    """Return the (pid, time, tag) lines record_tick wrote, skipping a half-written last line."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 3:
            rows.append((int(parts[0]), float(parts[1]), parts[2]))
    return rows


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Poll predicate until it returns something truthy or timeout seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def child_url(database: Database) -> str:
    """Return a URL a child process can use to reach the same database (and PostgreSQL test schema)."""
    if database.engine.dialect.name == "sqlite":
        return database.url
    with database.engine.connect() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
    url = make_url(database.url).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


def spawn(code: str, *args: str, log: Path) -> subprocess.Popen[bytes]:
    """Start a Python child running code with args, its output going to log."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, env=env, stdout=out, stderr=out)


def kill_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """Kill every child still running and reap it."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):  # a child stuck in the kernel
            proc.wait(timeout=10)


@pytest.fixture
def lease_name() -> str:
    """A lease name no other test uses."""
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def clean(database: Database) -> Iterator[Database]:
    """The migrated database, with leases and scheduled jobs removed after the test."""
    yield database
    with database.engine.begin() as conn:
        conn.execute(delete(SchedulerLease.__table__))
        conn.execute(text(f"DELETE FROM {JOBS_TABLE}"))


def job_rows(database: Database) -> dict[str, float | None]:
    """Return the job store's rows as id -> next_run_time."""
    with database.engine.connect() as conn:
        return dict(conn.execute(text(f"SELECT id, next_run_time FROM {JOBS_TABLE}")).all())


# ---------------------------------------------------------------------------------------------
# Lease semantics, with a controlled clock


def test_a_free_lease_goes_to_the_first_holder_only(clean: Database, lease_name: str) -> None:
    engine = clean.engine
    assert lease.acquire(engine=engine, name=lease_name, holder="a", ttl=10, now=T0)
    assert not lease.acquire(engine=engine, name=lease_name, holder="b", ttl=10, now=T0)
    assert lease.current_holder(engine=engine, name=lease_name, now=T0) == "a"


def test_the_holder_keeps_its_lease_and_its_acquisition_time(clean: Database, lease_name: str) -> None:
    engine = clean.engine
    assert lease.acquire(engine=engine, name=lease_name, holder="a", ttl=10, now=T0)
    assert lease.renew(engine=engine, name=lease_name, holder="a", ttl=10, now=T0 + dt.timedelta(seconds=8))
    assert lease.acquire(engine=engine, name=lease_name, holder="a", ttl=10, now=T0 + dt.timedelta(seconds=15))
    with engine.connect() as conn:
        row = conn.execute(select(SchedulerLease.__table__).where(SchedulerLease.name == lease_name)).one()
    assert row.acquired_at.replace(tzinfo=dt.UTC) == T0
    assert row.expires_at.replace(tzinfo=dt.UTC) == T0 + dt.timedelta(seconds=25)
    # Renewed at 8 s and 15 s, the lease is still live at 20 s, past the first TTL.
    assert not lease.acquire(engine=engine, name=lease_name, holder="b", ttl=10, now=T0 + dt.timedelta(seconds=20))


def test_a_live_lease_cannot_be_taken_until_it_expires(clean: Database, lease_name: str) -> None:
    engine = clean.engine
    assert lease.acquire(engine=engine, name=lease_name, holder="a", ttl=10, now=T0)
    just_before = T0 + dt.timedelta(seconds=10) - dt.timedelta(microseconds=1)
    assert not lease.acquire(engine=engine, name=lease_name, holder="b", ttl=10, now=just_before)
    assert lease.acquire(engine=engine, name=lease_name, holder="b", ttl=10, now=T0 + dt.timedelta(seconds=10))


def test_after_a_takeover_the_old_holder_can_neither_renew_nor_reacquire(clean: Database, lease_name: str) -> None:
    engine = clean.engine
    later = T0 + dt.timedelta(seconds=11)
    assert lease.acquire(engine=engine, name=lease_name, holder="a", ttl=10, now=T0)
    assert lease.acquire(engine=engine, name=lease_name, holder="b", ttl=10, now=later)
    assert not lease.renew(engine=engine, name=lease_name, holder="a", ttl=10, now=later)
    assert not lease.acquire(engine=engine, name=lease_name, holder="a", ttl=10, now=later)
    assert lease.current_holder(engine=engine, name=lease_name, now=later) == "b"


def test_an_expired_lease_nobody_took_can_still_be_renewed_by_its_holder(clean: Database, lease_name: str) -> None:
    engine = clean.engine
    assert lease.acquire(engine=engine, name=lease_name, holder="a", ttl=10, now=T0)
    assert lease.current_holder(engine=engine, name=lease_name, now=T0 + dt.timedelta(seconds=12)) is None
    assert lease.renew(engine=engine, name=lease_name, holder="a", ttl=10, now=T0 + dt.timedelta(seconds=12))
    assert lease.current_holder(engine=engine, name=lease_name, now=T0 + dt.timedelta(seconds=12)) == "a"


def test_release_frees_the_lease_at_once_and_only_for_its_holder(clean: Database, lease_name: str) -> None:
    engine = clean.engine
    assert lease.acquire(engine=engine, name=lease_name, holder="a", ttl=10, now=T0)
    assert not lease.release(engine=engine, name=lease_name, holder="b", now=T0)
    assert not lease.acquire(engine=engine, name=lease_name, holder="b", ttl=10, now=T0 + dt.timedelta(seconds=1))
    assert lease.release(engine=engine, name=lease_name, holder="a", now=T0 + dt.timedelta(seconds=1))
    assert lease.acquire(engine=engine, name=lease_name, holder="b", ttl=10, now=T0 + dt.timedelta(seconds=1))


def test_a_lease_ttl_must_be_positive(clean: Database, lease_name: str) -> None:
    with pytest.raises(ValueError, match="positive"):
        lease.acquire(engine=clean.engine, name=lease_name, holder="a", ttl=0)


# ---------------------------------------------------------------------------------------------
# Lease under concurrency


def race_threads(engine: Any, name: str, n: int) -> dict[str, bool]:
    """Let n threads try to acquire the lease at the same moment; return who got it."""
    barrier = threading.Barrier(n)
    results: dict[str, bool] = {}

    def race(holder: str) -> None:
        barrier.wait(timeout=10)
        results[holder] = lease.acquire(engine=engine, name=name, holder=holder, ttl=30)

    threads = [threading.Thread(target=race, args=(f"t{i}",)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


@pytest.mark.parametrize("state", ["free", "expired"])
def test_threads_racing_for_a_lease_leave_exactly_one_holder(clean: Database, state: str) -> None:
    threads_per_round, rounds = 10, 4
    for _ in range(rounds):
        name = f"race-{uuid.uuid4().hex[:8]}"
        if state == "expired":
            an_hour_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
            assert lease.acquire(engine=clean.engine, name=name, holder="gone", ttl=1, now=an_hour_ago)
        results = race_threads(clean.engine, name, threads_per_round)
        assert len(results) == threads_per_round
        winners = [h for h, won in results.items() if won]
        assert len(winners) == 1, results
        assert lease.current_holder(engine=clean.engine, name=name) == winners[0]


RACER = """
import os, sys, time
from pathlib import Path
from core import lease
from core.db import Database
url, name, ready, go = sys.argv[1:5]
database = Database(url)
database.engine.connect().close()
Path(ready).touch()
deadline = time.monotonic() + 30
while not os.path.exists(go) and time.monotonic() < deadline:
    time.sleep(0.002)
won = lease.acquire(engine=database.engine, name=name, holder=f"p{os.getpid()}", ttl=30)
print("won" if won else "lost", flush=True)
"""


def test_processes_racing_for_a_lease_leave_exactly_one_holder(
    clean: Database, lease_name: str, tmp_path: Path
) -> None:
    n = 4
    url = child_url(clean)
    go = tmp_path / "go"
    procs = []
    try:
        for i in range(n):
            procs.append(
                spawn(RACER, url, lease_name, str(tmp_path / f"ready{i}"), str(go), log=tmp_path / f"r{i}.log")
            )
        assert wait_for(lambda: all((tmp_path / f"ready{i}").exists() for i in range(n)), timeout=30)
        go.touch()
        for proc in procs:
            proc.wait(timeout=30)
        outcomes = {proc.pid: (tmp_path / f"r{i}.log").read_text().strip() for i, proc in enumerate(procs)}
        assert sorted(outcomes.values()) == ["lost"] * (n - 1) + ["won"], outcomes
        winner = next(pid for pid, outcome in outcomes.items() if outcome == "won")
        assert lease.current_holder(engine=clean.engine, name=lease_name) == f"p{winner}"
    finally:
        kill_all(procs)


# ---------------------------------------------------------------------------------------------
# Real worker processes


WORKER = """
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s: %(message)s")
from core.config import Settings
from core.scheduler import JobRegistry, run_worker
url, lease_name, ticks, ttl = sys.argv[1:5]
registry = JobRegistry()
registry.register("test.tick", "tests.core.test_scheduler:record_tick", "interval", seconds=0.5, args=[ticks])
settings = Settings(env="test", secret_key="t" * 48, database_url=url)
run_worker(settings, registry=registry, lease_ttl=float(ttl), poll_interval=0.2, lease_name=lease_name)
"""


def test_two_workers_run_jobs_on_one_and_the_survivor_takes_over_after_a_kill(
    clean: Database, lease_name: str, tmp_path: Path
) -> None:
    ticks = tmp_path / "ticks.txt"
    ticks.touch()
    url = child_url(clean)
    procs = [
        spawn(WORKER, url, lease_name, str(ticks), str(WORKER_TTL), log=tmp_path / f"worker{i}.log") for i in range(2)
    ]

    def logs() -> str:
        return "\n".join((tmp_path / f"worker{i}.log").read_text() for i in range(2))

    def first(pred: Callable[[tuple[int, float, str]], bool]) -> tuple[int, float, str] | None:
        return next((row for row in read_ticks(ticks) if pred(row)), None)

    try:
        assert wait_for(lambda: first(lambda r: r[2] == "tick"), timeout=20), logs()
        time.sleep(1.5)  # both workers are up by now; the standby must not be running the job
        pids = {pid for pid, _, tag in read_ticks(ticks) if tag == "tick"}
        assert len(pids) == 1, logs()
        holder_pid = pids.pop()
        assert holder_pid in {p.pid for p in procs}
        holder_id = lease.current_holder(engine=clean.engine, name=lease_name)
        assert holder_id is not None and holder_id.split(":")[1] == str(holder_pid)

        # A job enqueued from this (third) process runs promptly on the holder.
        sent = time.time()
        enqueue(TICK, db=clean.engine, args=[str(ticks), "once-1"])
        ran = wait_for(lambda: first(lambda r: r[2] == "once-1"), timeout=5)
        assert ran is not None, logs()
        assert ran[0] == holder_pid
        assert ran[1] - sent <= 2.0, f"enqueue to start took {ran[1] - sent:.3f}s"

        # Kill the holder outright; the standby takes over once the lease expires.
        holder = next(p for p in procs if p.pid == holder_pid)
        survivor = next(p for p in procs if p.pid != holder_pid)
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        killed = time.time()
        took_over = wait_for(lambda: first(lambda r: r[0] == survivor.pid and r[1] > killed), timeout=WORKER_TTL + 8)
        assert took_over is not None, logs()
        assert took_over[1] - killed <= WORKER_TTL + WORKER_TTL / 3 + 2.0
        assert not [r for r in read_ticks(ticks) if r[0] == holder_pid and r[1] > killed]

        sent = time.time()
        enqueue(TICK, db=clean.engine, args=[str(ticks), "once-2"])
        ran = wait_for(lambda: first(lambda r: r[2] == "once-2"), timeout=5)
        assert ran is not None and ran[0] == survivor.pid, logs()
        assert ran[1] - sent <= 2.0

        # SIGTERM stops the survivor cleanly and hands the lease back at once.
        survivor.send_signal(signal.SIGTERM)
        assert survivor.wait(timeout=15) == 0, logs()
        assert lease.current_holder(engine=clean.engine, name=lease_name) is None
    finally:
        kill_all(procs)


# ---------------------------------------------------------------------------------------------
# The scheduler in one process


def make_scheduler(database: Database, registry: JobRegistry, lease_name: str, **kw: Any) -> HuiqiScheduler:
    """Build a scheduler with a short lease on the test database."""
    return HuiqiScheduler(SETTINGS, database, registry=registry, lease_ttl=2, lease_name=lease_name, **kw)


def test_an_in_process_holder_starts_a_job_enqueued_elsewhere_within_two_seconds(
    clean: Database, lease_name: str, tmp_path: Path
) -> None:
    ticks = tmp_path / "ticks.txt"
    ticks.touch()
    scheduler = make_scheduler(clean, JobRegistry(), lease_name)
    scheduler.start()
    try:
        assert wait_for(lambda: scheduler.is_holder, timeout=5)
        latencies = []
        for i in range(3):
            sent = time.time()
            # Written straight to the table, as another process would: nothing wakes APScheduler.
            enqueue(TICK, db=clean.engine, args=[str(ticks), f"once-{i}"])
            row = wait_for(lambda i=i: next((r for r in read_ticks(ticks) if r[2] == f"once-{i}"), None), timeout=5)
            assert row is not None
            latencies.append(row[1] - sent)
        assert max(latencies) <= 2.0, latencies
        assert wait_for(lambda: not job_rows(clean), timeout=3)  # one-shot jobs leave the store
    finally:
        scheduler.stop()


def test_restarting_keeps_an_unchanged_job_and_replaces_a_changed_one(clean: Database, lease_name: str) -> None:
    def cycle(registry: JobRegistry) -> dict[str, float | None]:
        scheduler = make_scheduler(clean, registry, lease_name)
        scheduler.start()
        try:
            assert wait_for(lambda: scheduler.is_holder, timeout=5)
        finally:
            scheduler.stop()
        return job_rows(clean)

    first = JobRegistry()
    first.register("test.hourly", TICK, "interval", hours=1, args=["/dev/null"])
    first.register("test.retired", TICK, "cron", hour=3, args=["/dev/null"])
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    queued = enqueue(TICK, db=clean.engine, args=["/dev/null"], run_at=later)

    rows1 = cycle(first)
    assert set(rows1) == {"test.hourly", "test.retired", queued}
    time.sleep(0.05)
    rows2 = cycle(first)
    assert rows2 == rows1  # same definitions: nothing duplicated, no schedule reset

    second = JobRegistry()
    second.register("test.hourly", TICK, "interval", hours=2, args=["/dev/null"])
    rows3 = cycle(second)
    assert set(rows3) == {"test.hourly", queued}  # retired job removed, enqueued one kept
    assert rows3["test.hourly"] > rows1["test.hourly"]


def test_a_process_that_does_not_run_jobs_never_takes_the_lease(clean: Database, lease_name: str) -> None:
    scheduler = make_scheduler(clean, JobRegistry(), lease_name, run_jobs=False)
    scheduler.start()
    try:
        time.sleep(0.3)
        assert not scheduler.is_holder
        assert lease.current_holder(engine=clean.engine, name=lease_name) is None
        job_id = scheduler.enqueue(TICK, args=["/dev/null"], run_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
        assert job_id in job_rows(clean)
    finally:
        scheduler.stop()


def test_start_in_process_puts_a_running_scheduler_on_the_app_state(clean: Database, lease_name: str) -> None:
    state = SimpleNamespace(settings=SETTINGS, db=clean)
    start_in_process(state)
    try:
        assert wait_for(lambda: state.scheduler.is_holder, timeout=5)
        assert lease.current_holder(engine=clean.engine, name=state.scheduler.lease_name) == state.scheduler.holder
    finally:
        stop_in_process(state)
    assert lease.current_holder(engine=clean.engine, name=state.scheduler.lease_name) is None


# ---------------------------------------------------------------------------------------------
# Enqueueing


def test_a_job_enqueued_in_a_rolled_back_transaction_never_exists(clean: Database) -> None:
    with clean.engine.connect() as conn:
        tx = conn.begin()
        job_id = enqueue(TICK, db=conn, args=["/dev/null"], run_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
        assert conn.execute(text(f"SELECT count(*) FROM {JOBS_TABLE}")).scalar_one() == 1
        tx.rollback()
    assert job_id not in job_rows(clean)


def test_enqueueing_the_same_job_id_twice_queues_it_once(clean: Database) -> None:
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    first = enqueue(TICK, db=clean.engine, args=["/dev/null"], run_at=later, job_id="fanout:policy:1")
    again = enqueue(TICK, db=clean.engine, args=["/dev/null"], run_at=later, job_id="fanout:policy:1")
    assert first == again == f"{ONCE_PREFIX}fanout:policy:1"
    assert list(job_rows(clean)) == [first]


def test_enqueue_rejects_arguments_the_function_does_not_take(clean: Database) -> None:
    with pytest.raises(ValueError):
        enqueue(TICK, db=clean.engine, kwargs={"nonsense": 1})
    with pytest.raises(ValueError, match="module:function"):
        enqueue("not a reference", db=clean.engine)
    assert job_rows(clean) == {}


# ---------------------------------------------------------------------------------------------
# Registry


def test_registry_rejects_bad_references_triggers_and_redefinitions() -> None:
    registry = JobRegistry()
    registry.register("push.digest", "push.jobs:send_digest", "cron", hour=9, minute=0)
    registry.register("push.digest", "push.jobs:send_digest", "cron", hour=9, minute=0)  # re-import is fine
    assert len(registry) == 1 and "push.digest" in registry
    with pytest.raises(ValueError, match="different definition"):
        registry.register("push.digest", "push.jobs:send_digest", "cron", hour=10)
    with pytest.raises(ValueError, match="module:function"):
        registry.register("x", "push.jobs.send_digest", "cron", hour=9)
    with pytest.raises(ValueError, match="trigger must be"):
        registry.register("x", "push.jobs:send_digest", "weekly")
    with pytest.raises(ValueError, match="bad cron trigger"):
        registry.register("x", "push.jobs:send_digest", "cron", hour=25)
    with pytest.raises(ValueError, match="must be non-empty"):
        registry.register(f"{ONCE_PREFIX}x", "push.jobs:send_digest", "interval", minutes=5)


def test_missing_job_modules_are_skipped_but_broken_ones_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_job_modules(("hq_absent_domain.jobs", "hq_absent_module")) == []
    (tmp_path / "hq_broken_jobs.py").write_text("import hq_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError):
        load_job_modules(("hq_broken_jobs",))


# ---------------------------------------------------------------------------------------------
# run_items


def test_run_items_isolates_a_failing_item_and_reports_its_key(caplog: pytest.LogCaptureFixture) -> None:
    done = []

    def handle(item: int) -> None:
        if item == 2:
            raise RuntimeError("boom")
        done.append(item)

    with caplog.at_level(logging.ERROR, logger="core.scheduler"):
        report = run_items([1, 2, 3], handle, name="test.items")
    assert done == [1, 3]
    assert (report.total, report.succeeded, report.failed, report.failed_keys) == (3, 2, 1, ["2"])
    assert not report.ok
    assert any("test.items" in r.getMessage() and "item 2 failed" in r.getMessage() for r in caplog.records)


def test_run_items_gives_each_item_its_own_transaction(clean: Database) -> None:
    prefix = f"items-{uuid.uuid4().hex[:6]}-"

    def handle(db: Any, item: str) -> None:
        db.add(SchedulerLease(name=prefix + item, holder="x", acquired_at=T0, renewed_at=T0, expires_at=T0))
        db.flush()
        if item == "b":
            raise RuntimeError("b is bad")

    report = run_items(["a", "b", "c"], handle, name="test.tx", key=str, database=clean)
    assert report.failed_keys == ["b"] and report.succeeded == 2
    with clean.engine.connect() as conn:
        names = set(conn.execute(select(SchedulerLease.name).where(SchedulerLease.name.like(prefix + "%"))).scalars())
    assert names == {prefix + "a", prefix + "c"}


# ---------------------------------------------------------------------------------------------
# Schema


def test_migration_creates_the_job_store_table_as_apscheduler_defines_it(database: Database) -> None:
    store_table = SQLAlchemyJobStore(engine=database.engine, tablename=JOBS_TABLE).jobs_t
    with database.engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "include_name": lambda name, type_, parent: type_ != "table" or name == JOBS_TABLE,
            },
        )
        assert compare_metadata(ctx, store_table.metadata) == []


def test_migration_creates_the_lease_table_as_the_model_defines_it(database: Database) -> None:
    metadata = MetaData(naming_convention=Base.metadata.naming_convention)
    SchedulerLease.__table__.to_metadata(metadata)
    with database.engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "include_name": lambda name, type_, parent: type_ != "table" or name == "scheduler_lease",
            },
        )
        assert compare_metadata(ctx, metadata) == []
