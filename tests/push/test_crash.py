"""Crash safety, for real: `run_worker` processes killed with SIGKILL in the middle of a large fan-out
and in the middle of sending; the standby worker takes the lease over and finishes. Every intended
delivery then exists exactly once and ends sent, through a real local HTTP server and a real SMTP
server (aiosmtpd). A third test fails a fan-out part way in process and runs what its guard runs.

Each test builds its own database (a SQLite file, or a private PostgreSQL schema) because worker
processes only see committed data: the taxonomy, a few thousand synthetic firms, preferences,
subscriptions and feedback, and one broad published policy. What should be delivered is computed
independently of the fan-out: the scalar eligibility engine on every firm's stored profile plus the
documented rules (eligible, or likely and subscribed; minus "not relevant" and unsubscribed firms).
To land the kill inside the fan-out, a database trigger makes writing one firm of the second chunk
take seconds; the worker is killed while that chunk is open.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email
import email.policy
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import selectinload

from catalog import demo
from core import lease, migrate
from core.config import get_settings
from core.db import Database, get_database
from core.scheduler import JOBS_TABLE, ONCE_PREFIX, enqueue
from matcher import eligibility
from matcher.models import Feedback
from profiles.models import Enterprise
from profiles.synth import synth_enterprises
from push.jobs import FAN_OUT_JOB, fan_out_guard_id, fan_out_job
from push.models import Delivery, PushPreference, Subscription
from tests import factories
from tests.support.receiver import Receiver, running

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
FIRMS = 3000
LEASE_TTL = 2.0
RESUME_AFTER = 10.0  # the guard re-runs an interrupted fan-out this long after its last progress; longer than
# a chunk can take on a loaded machine, else the guard starts beside the live run and leaves the store
CHUNK = 40  # firms per committed chunk: the fan-out of ~2,000 firms takes about 50 commits
KEYWORD = "灯饰照明"
RULES = {
    "all": [
        {"field": "region_code", "op": "within_region", "value": ["440000"]},
        {"field": "employees", "op": "gte", "value": 5},  # unknown headcount makes a firm likely
        {"field": "established_on", "op": "years_since_gte", "value": 1},
    ]
}

WORKER = """
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s: %(message)s")
from core.config import get_settings
from core.scheduler import JobRegistry, run_worker
import push.jobs  # imported before competing for the lease: importing it takes seconds
lease_name = sys.argv[1]
registry = JobRegistry()
registry.register("push.send_due", "push.jobs:send_due_job", "interval", seconds=0.3)
run_worker(get_settings(), registry=registry, lease_ttl=float(sys.argv[2]), poll_interval=0.1, lease_name=lease_name)
"""


# ---------------------------------------------------------------- a fresh database per test


@dataclass
class FreshDb:
    database: Database
    child_url: str  # what worker processes connect to (PostgreSQL: with the private schema)
    backend: str


def _postgres_url() -> str | None:
    url = os.environ.get("HUIQI_TEST_POSTGRES_URL")
    if url:
        return url
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=0.5).close()
    except OSError:
        return None
    return DEFAULT_PG


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FreshDb]:
    """A database of its own, migrated to head, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'crash.db'}"
        migrate.upgrade(url=url)
        database = Database(url)
        yield FreshDb(database, url, "sqlite")
        database.dispose()
        return
    base = _postgres_url()
    if base is None:
        if os.environ.get("HUIQI_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL is required (HUIQI_TEST_REQUIRE_POSTGRES=1) but no server answered")
        pytest.skip("PostgreSQL tests skipped: HUIQI_TEST_POSTGRES_URL is unset and no server answered on 5432")
    schema = f"hq_crash_{uuid.uuid4().hex[:10]}"
    admin = Database(base)
    with admin.engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    database = Database(base, connect_args={"options": f"-csearch_path={schema}"})
    try:
        with database.engine.connect() as conn:
            migrate.upgrade(connection=conn)
        child = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        yield FreshDb(database, child.render_as_string(hide_password=False), "postgresql")
    finally:
        database.dispose()
        with admin.engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


# ---------------------------------------------------------------- real receivers


@pytest.fixture
def hooks() -> Iterator[Receiver]:
    with running() as server:
        yield server


@dataclass
class _Mailbox:
    received: list[str] = field(default_factory=list)  # X-Huiqi-Delivery of every message accepted

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.received.append(str(message["X-Huiqi-Delivery"]))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp() -> Iterator[tuple[_Mailbox, int]]:
    mailbox = _Mailbox()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield mailbox, port
    controller.stop()


# ---------------------------------------------------------------- the world and what it should receive


@dataclass
class World:
    policy_id: int
    version: int
    expected: set[tuple[int, str]]  # (firm, channel) rows the fan-out must write
    webhook_rows: int
    email_rows: int

    def inbox_count(self) -> int:
        return sum(1 for _, channel in self.expected if channel == "inbox")


def build_world(fresh: FreshDb, hook_url: Callable[[str], str]) -> World:
    """Commit the taxonomy, firms with preferences, subscriptions and feedback and one published policy;
    return the deliveries the fan-out must produce, judged by the scalar engine."""
    database = fresh.database
    with database.session() as db:
        demo.load_taxonomy(db=db)
    synth_enterprises(engine=database.engine, count=FIRMS, seed=20261123)
    # The rule's "established a year or more" flips at local midnight on a firm's anniversary; the
    # workers judge on their own clock, so keep every anniversary away from the days the test may span.
    today = dt.datetime.now(ZoneInfo("Asia/Shanghai")).date()
    anniversary = (
        today.replace(year=today.year - 1) if (today.month, today.day) != (2, 29) else today - dt.timedelta(365)
    )
    with database.session() as db:
        near = Enterprise.established_on.between(anniversary - dt.timedelta(2), anniversary + dt.timedelta(2))
        for firm in db.scalars(select(Enterprise).where(near)):
            firm.established_on -= dt.timedelta(days=10)
    with database.session() as db:
        policy = factories.make_policy(
            # Not announced: each test queues the fan-out itself, with small chunks and a short resume delay.
            db,
            publish=True,
            announce=False,
            title=f"中山市{KEYWORD}产业扶持资金",
            region_codes=["440000"],
            rules=RULES,
        )
        policy_id, version = policy.id, policy.version
        ids = list(db.scalars(select(Enterprise.id).order_by(Enterprise.id)))
        webhook = set(ids[::15])
        mail = set(ids[3::23]) - webhook
        unsubscribed = set(ids[5::41])
        hidden = set(ids[7::37])
        subscribed = set(ids[::2])
        for eid in webhook | mail | unsubscribed:
            pref = PushPreference(enterprise_id=eid, channels=["inbox"], unsubscribed_all=eid in unsubscribed)
            if eid in webhook:
                pref.channels = ["inbox", "webhook"]
                pref.webhook_url, pref.webhook_secret = hook_url(f"/hook/{eid}"), "whsec_crash_test"
            elif eid in mail:
                pref.channels, pref.email = ["inbox", "email"], f"firm{eid}@crash.example"
            db.add(pref)
        for eid in subscribed:
            db.add(Subscription(enterprise_id=eid, kind="keyword", value=KEYWORD, active=True))
        for eid in hidden:
            db.add(Feedback(enterprise_id=eid, policy_id=policy_id, action="not_relevant", source="push"))

    # What should happen, judged independently: the scalar engine on each stored profile.
    today = dt.datetime.now(ZoneInfo("Asia/Shanghai")).date()
    expected: set[tuple[int, str]] = set()
    with database.session() as db:
        prefs = {p.enterprise_id: p for p in db.scalars(select(PushPreference))}
        for firm in db.scalars(select(Enterprise).options(selectinload(Enterprise.qualifications))):
            status = eligibility.evaluate(RULES, eligibility.profile_facts(firm, today), today=today).status
            wanted = status == eligibility.ELIGIBLE or (status == eligibility.LIKELY and firm.id in subscribed)
            pref = prefs.get(firm.id)
            if not wanted or firm.id in hidden or (pref is not None and pref.unsubscribed_all):
                continue
            expected.add((firm.id, "inbox"))
            for channel in pref.channels if pref is not None else []:
                expected.add((firm.id, channel))
    world = World(
        policy_id=policy_id,
        version=version,
        expected=expected,
        webhook_rows=sum(1 for _, c in expected if c == "webhook"),
        email_rows=sum(1 for _, c in expected if c == "email"),
    )
    # The case is only interesting if every kind of firm is there.
    assert world.inbox_count() > 1500 and world.webhook_rows > 50 and world.email_rows > 30
    assert any((eid, "inbox") in expected for eid in subscribed) and any(
        (eid, "inbox") not in expected for eid in hidden
    )
    return world


# ---------------------------------------------------------------- workers


def spawn_worker(fresh: FreshDb, lease_name: str, log: Path, smtp_port: int, var_dir: Path) -> subprocess.Popen[bytes]:
    """Start a worker process: the real scheduler and jobs, sending every 0.3 s, a 2 s lease."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HUIQI_ENV": "test",
        "HUIQI_SECRET_KEY": "t" * 48,
        "HUIQI_DATABASE_URL": fresh.child_url,
        "HUIQI_VAR_DIR": str(var_dir),
        "HUIQI_MODELS_DIR": str(var_dir / "models"),
        "HUIQI_SMTP_HOST": "127.0.0.1",
        "HUIQI_SMTP_PORT": str(smtp_port),
        "HUIQI_SMTP_SENDER": "惠企服务 <noreply@huiqi.example>",
        "HUIQI_WEBHOOK_TIMEOUT": "5",
        "HUIQI_WEBHOOK_ALLOW_HOSTS": "127.0.0.1/32",  # the test's receiver is local
    }
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", WORKER, lease_name, str(LEASE_TTL)], cwd=ROOT, env=env, stdout=out, stderr=out
        )


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Poll predicate until it returns something truthy or timeout seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def holder_process(
    fresh: FreshDb, lease_name: str, procs: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes] | None:
    """Return the worker process holding the lease, if any."""
    holder = lease.current_holder(engine=fresh.database.engine, name=lease_name)
    pid = int(holder.split(":")[1]) if holder else None
    return next((p for p in procs if p.pid == pid and p.poll() is None), None)


def kill_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


def stall_insert_of(fresh: FreshDb, enterprise_id: int) -> None:
    """Make writing one firm's rows take seconds: the chunk holding it stays open (uncommitted) that long."""
    with fresh.database.engine.begin() as conn:
        if fresh.backend == "sqlite":
            # Triggers cannot sleep; a cross join of ~350M rows keeps the insert busy for seconds.
            conn.exec_driver_sql(
                "CREATE TRIGGER crash_test_stall BEFORE INSERT ON push_delivery "
                f"WHEN NEW.enterprise_id = {int(enterprise_id)} BEGIN "
                "SELECT count(*) FROM enterprise AS a, enterprise AS b, enterprise AS c WHERE c.id <= 40; END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION crash_test_stall() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN PERFORM pg_sleep(4); RETURN NEW; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER crash_test_stall BEFORE INSERT ON push_delivery FOR EACH ROW "
                f"WHEN (NEW.enterprise_id = {int(enterprise_id)}) EXECUTE FUNCTION crash_test_stall()"
            )


def remove_stall(fresh: FreshDb) -> None:
    with fresh.database.engine.begin() as conn:
        conn.exec_driver_sql(
            "DROP TRIGGER crash_test_stall" + ("" if fresh.backend == "sqlite" else " ON push_delivery")
        )


# ---------------------------------------------------------------- checks


def deliveries(fresh: FreshDb, policy_id: int) -> list[tuple[int, int, str, str]]:
    """Return (id, firm, channel, status) of the policy's outbox rows."""
    with fresh.database.engine.connect() as conn:
        return [
            tuple(r)  # type: ignore[misc]
            for r in conn.execute(
                select(Delivery.id, Delivery.enterprise_id, Delivery.channel, Delivery.status).where(
                    Delivery.policy_id == policy_id
                )
            )
        ]


def count_rows(fresh: FreshDb, policy_id: int, channel: str | None = None, status: str | None = None) -> int:
    q = select(func.count()).select_from(Delivery).where(Delivery.policy_id == policy_id)
    if channel:
        q = q.where(Delivery.channel == channel)
    if status:
        q = q.where(Delivery.status == status)
    with fresh.database.engine.connect() as conn:
        return conn.execute(q).scalar_one()


def guard_queued(fresh: FreshDb, world: World) -> bool:
    with fresh.database.engine.connect() as conn:
        job_id = ONCE_PREFIX + fan_out_guard_id(world.policy_id, world.version)
        return conn.execute(text(f"SELECT count(*) FROM {JOBS_TABLE} WHERE id = :id"), {"id": job_id}).scalar_one() == 1


def all_done(fresh: FreshDb, world: World) -> bool:
    rows = deliveries(fresh, world.policy_id)
    return len(rows) == len(world.expected) and all(status == "sent" for *_, status in rows)


def assert_exactly_once_and_sent(fresh: FreshDb, world: World, hooks: Receiver, mailbox: _Mailbox) -> None:
    rows = deliveries(fresh, world.policy_id)
    keys = Counter((eid, channel) for _, eid, channel, _ in rows)
    assert not [k for k, n in keys.items() if n > 1]  # the unique key holds
    assert set(keys) == world.expected  # nobody missing, nobody extra
    assert len(rows) == len(world.expected)
    assert Counter(status for *_, status in rows) == Counter({"sent": len(world.expected)})
    with fresh.database.engine.connect() as conn:
        dupes = conn.execute(
            select(Delivery.enterprise_id, Delivery.channel)
            .where(Delivery.policy_id == world.policy_id)
            .group_by(Delivery.enterprise_id, Delivery.channel, Delivery.kind, Delivery.policy_version)
            .having(func.count() > 1)
        ).all()
    assert dupes == []
    # Every row beyond the inbox reached its receiver; a receiver deduplicating by X-Huiqi-Delivery
    # sees each exactly once (a send cut short by a kill may have reached it before it was recorded).
    with hooks.lock:
        hook_ids = set(hooks.delivery_ids())
    assert hook_ids == {f"d{rid}" for rid, _, channel, _ in rows if channel == "webhook"}
    assert set(mailbox.received) == {f"d{rid}" for rid, _, channel, _ in rows if channel == "email"}


# ---------------------------------------------------------------- the tests


def test_a_worker_killed_in_the_middle_of_a_fan_out_is_finished_by_the_next(
    fresh: FreshDb, hooks: Receiver, smtp: tuple[_Mailbox, int], tmp_path: Path
) -> None:
    mailbox, smtp_port = smtp
    world = build_world(fresh, hooks.url)
    lease_name = f"crash-{uuid.uuid4().hex[:8]}"
    procs = [spawn_worker(fresh, lease_name, tmp_path / f"w{i}.log", smtp_port, tmp_path / "var") for i in range(2)]

    def logs() -> str:
        return "\n".join(f"--- w{i}\n" + (tmp_path / f"w{i}.log").read_text(errors="replace") for i in range(2))

    try:
        first = wait_for(lambda: holder_process(fresh, lease_name, procs), timeout=120)
        assert first is not None, logs()
        # Firms are written in id order, CHUNK at a time: writing this firm's rows, in the second
        # chunk, takes seconds. The first chunk is committed by then, the second is open.
        stalled = sorted(eid for eid, channel in world.expected if channel == "inbox")[CHUNK + CHUNK // 2]
        stall_insert_of(fresh, stalled)
        # Queued as publishing queues it, with a short resume delay and small chunks for the test.
        enqueue(
            FAN_OUT_JOB,
            db=fresh.database.engine,
            kwargs={"policy_id": world.policy_id, "resume_after": RESUME_AFTER, "chunk_size": CHUNK},
            job_id=f"fanout-{world.policy_id}-v{world.version}",
        )
        assert wait_for(lambda: count_rows(fresh, world.policy_id, "inbox"), timeout=60, interval=0.01), logs()
        first.send_signal(signal.SIGKILL)  # in the middle of the second chunk
        first.wait(timeout=10)
        written = count_rows(fresh, world.policy_id, "inbox")
        assert written == CHUNK < world.inbox_count(), (written, world.inbox_count())
        remove_stall(fresh)
        assert guard_queued(fresh, world)  # the job itself left the store when it started; its guard did not

        # The standby takes the lease when it expires and the guard runs the fan-out again.
        assert wait_for(lambda: all_done(fresh, world), timeout=60, interval=0.2), logs()
        second = holder_process(fresh, lease_name, procs)
        assert second is not None and second is not first
        assert_exactly_once_and_sent(fresh, world, hooks, mailbox)
        assert wait_for(lambda: not guard_queued(fresh, world), timeout=10), logs()  # finished: the guard is gone
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=20) == 0, logs()
    finally:
        kill_all(procs)


def test_a_worker_killed_while_sending_leaves_the_rest_to_the_next(
    fresh: FreshDb, hooks: Receiver, smtp: tuple[_Mailbox, int], tmp_path: Path
) -> None:
    mailbox, smtp_port = smtp
    world = build_world(fresh, hooks.url)
    hooks.delay = 0.01  # a slow receiver: sending the webhook rows takes a second or two
    lease_name = f"crash-{uuid.uuid4().hex[:8]}"
    procs = [spawn_worker(fresh, lease_name, tmp_path / f"w{i}.log", smtp_port, tmp_path / "var") for i in range(2)]

    def logs() -> str:
        return "\n".join(f"--- w{i}\n" + (tmp_path / f"w{i}.log").read_text(errors="replace") for i in range(2))

    try:
        first = wait_for(lambda: holder_process(fresh, lease_name, procs), timeout=120)
        assert first is not None, logs()
        enqueue(
            FAN_OUT_JOB,
            db=fresh.database.engine,
            kwargs={"policy_id": world.policy_id, "resume_after": RESUME_AFTER},
            job_id=f"fanout-{world.policy_id}-v{world.version}",
        )
        # Kill the holder once the receiver has had some webhook deliveries, well before all.
        assert wait_for(lambda: len(hooks.delivery_ids()) >= 10, timeout=60, interval=0.01), logs()
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        with hooks.lock:
            before_kill = len(hooks.delivery_ids())
        assert before_kill < world.webhook_rows
        assert count_rows(fresh, world.policy_id) == len(world.expected)  # the fan-out had finished
        pending = count_rows(fresh, world.policy_id, "webhook") - count_rows(fresh, world.policy_id, "webhook", "sent")
        assert pending > 0

        assert wait_for(lambda: all_done(fresh, world), timeout=60, interval=0.2), logs()
        second = holder_process(fresh, lease_name, procs)
        assert second is not None and second is not first
        assert_exactly_once_and_sent(fresh, world, hooks, mailbox)
        # What the killed worker had sent but not recorded went out again, under the same delivery id.
        with hooks.lock:
            assert len(hooks.delivery_ids()) >= world.webhook_rows
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=20) == 0, logs()
    finally:
        kill_all(procs)


def test_a_fan_out_that_fails_part_way_is_finished_by_its_guard(
    fresh: FreshDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process: a run that dies after some chunks leaves its guard queued; the guard's run finishes."""
    world = build_world(fresh, lambda path: f"http://127.0.0.1:9{path}")
    monkeypatch.setenv("HUIQI_DATABASE_URL", fresh.child_url)
    monkeypatch.setenv("HUIQI_ENV", "test")
    monkeypatch.setenv("HUIQI_SECRET_KEY", "t" * 48)
    get_settings.cache_clear()
    # The database refuses rows once 500 exist: the run fails in the middle, like a lost connection.
    with fresh.database.engine.begin() as conn:
        if fresh.backend == "sqlite":
            conn.exec_driver_sql(
                "CREATE TRIGGER crash_test_refuse BEFORE INSERT ON push_delivery "
                "WHEN (SELECT count(*) FROM push_delivery) >= 500 BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION crash_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF (SELECT count(*) FROM push_delivery) >= 500 THEN RAISE EXCEPTION 'refused'; END IF; "
                "RETURN NEW; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER crash_test_refuse BEFORE INSERT ON push_delivery "
                "FOR EACH ROW EXECUTE FUNCTION crash_test_refuse()"
            )
    try:
        started = dt.datetime.now(dt.UTC)
        with pytest.raises(DBAPIError, match="refused"):
            fan_out_job(world.policy_id, resume_after=600.0, chunk_size=50)
        partial = count_rows(fresh, world.policy_id)
        assert 0 < partial <= 500 < len(world.expected)

        # The guard waits in the job store, due once the run has made no progress for resume_after.
        with fresh.database.engine.connect() as conn:
            due, state = conn.execute(
                text(f"SELECT next_run_time, job_state FROM {JOBS_TABLE} WHERE id = :id"),
                {"id": ONCE_PREFIX + fan_out_guard_id(world.policy_id, world.version)},
            ).one()
        job = pickle.loads(state)
        assert job["func"] == FAN_OUT_JOB
        assert job["kwargs"] == {"policy_id": world.policy_id, "resume_after": 600.0, "chunk_size": 50, "attempt": 2}
        assert started.timestamp() + 590 < due < time.time() + 610

        with fresh.database.engine.begin() as conn:
            conn.exec_driver_sql(
                "DROP TRIGGER crash_test_refuse" + ("" if fresh.backend == "sqlite" else " ON push_delivery")
            )
        # What the lease holder runs when the guard comes due.
        counts = fan_out_job(*job["args"], **job["kwargs"])
        assert counts["created"] == len(world.expected) - partial
        rows = deliveries(fresh, world.policy_id)
        assert len(rows) == len(world.expected)
        assert {(eid, channel) for _, eid, channel, _ in rows} == world.expected
        assert not guard_queued(fresh, world)  # a finished run leaves no guard behind
        # Running it again writes nothing and leaves nothing queued, even with a short resume delay.
        assert fan_out_job(world.policy_id, resume_after=3.0)["created"] == 0
        assert not guard_queued(fresh, world)
    finally:
        get_database().dispose()
        get_settings.cache_clear()
