"""The scheduler that runs every domain's jobs, in exactly one process at a time.

Domains declare jobs in their `jobs.py` by calling `registry.register(...)` at import time with
a `"module:function"` reference (the job store is persistent, so callables are stored by name).
Any number of processes may start a `HuiqiScheduler` — `huiqi worker`, or the API process via
`start_in_process`; a lease in the database (`core.lease`) lets exactly one of them run the
APScheduler instance, and a crashed holder's lease expires so another takes over.

Jobs live in APScheduler's SQLAlchemy job store in the application database (table
`apscheduler_jobs`, created by migration 0003). `enqueue` writes a one-shot job straight into
that table — from any process, optionally inside the caller's transaction — and the holder
notices it within `poll_interval` seconds because its lease thread wakes APScheduler that often
(APScheduler 3 only wakes up by itself for jobs added in its own process).

A stalled holder (paused longer than the TTL) can overlap with its successor for at most one
lease check; jobs must be idempotent, and `run_items` keeps one bad item from failing the rest.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import logging
import os
import pickle
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from apscheduler.job import Job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from apscheduler.util import datetime_to_utc_timestamp
from sqlalchemy import Column, Float, LargeBinary, MetaData, Table, Unicode, inspect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from core import lease
from core.config import Settings
from core.db import Database, upsert_insert

logger = logging.getLogger(__name__)

# Each domain's scheduled work; a module that does not exist yet is skipped.
DOMAIN_JOB_MODULES = ("catalog.jobs", "matcher.jobs", "push.jobs", "desk.jobs")

DEFAULT_TIMEZONE = "Asia/Shanghai"
DEFAULT_POLL_INTERVAL = 0.5
DEFAULT_LEASE_NAME = "scheduler"
JOBS_TABLE = "apscheduler_jobs"
# Ids of enqueued one-shot jobs start with this; every other job id is a registered name.
ONCE_PREFIX = "once:"
# An enqueued job whose id is still running when it is enqueued again must run again, not be
# dropped as "max instances reached" (a one-shot job has no later run to fall back on).
ONCE_MAX_INSTANCES = 100
JOB_DEFAULTS = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 300}
TRIGGERS: dict[str, type] = {"cron": CronTrigger, "interval": IntervalTrigger, "date": DateTrigger}
_FUNC_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")

# The same table APScheduler's SQLAlchemyJobStore defines, for inserting enqueued jobs directly.
_jobs_table = Table(
    JOBS_TABLE,
    MetaData(),
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)


# --------------------------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class JobSpec:
    """One registered job: what to call and when."""

    name: str
    func_ref: str
    trigger: str
    trigger_args: Mapping[str, Any]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """Return a short digest of the definition; a stored job with the same one is left as is."""
        text = repr(
            (self.func_ref, self.trigger, sorted(self.trigger_args.items()), self.args, sorted(self.kwargs.items()))
        )
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    @property
    def job_name(self) -> str:
        """Return the APScheduler job name: the registered name and the definition's fingerprint."""
        return f"{self.name}#{self.fingerprint}"


class JobRegistry:
    """Named job definitions that the lease holder keeps in the job store."""

    def __init__(self) -> None:
        self._jobs: dict[str, JobSpec] = {}

    def register(
        self,
        name: str,
        func_ref: str,
        trigger: str,
        *,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        **trigger_args: Any,
    ) -> JobSpec:
        """Register a job by name: func_ref is "module:function", trigger is cron, interval or date."""
        if not name or name.startswith(ONCE_PREFIX):
            raise ValueError(f"job name must be non-empty and not start with {ONCE_PREFIX!r}: {name!r}")
        if not isinstance(func_ref, str) or not _FUNC_REF.match(func_ref):
            raise ValueError(f"job {name!r}: func_ref must be a 'module:function' string, got {func_ref!r}")
        if trigger not in TRIGGERS:
            raise ValueError(f"job {name!r}: trigger must be one of {sorted(TRIGGERS)}, got {trigger!r}")
        try:  # fail at import time, not in the worker hours later
            TRIGGERS[trigger](**{"timezone": DEFAULT_TIMEZONE, **trigger_args})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"job {name!r}: bad {trigger} trigger arguments {trigger_args!r}: {exc}") from exc
        spec = JobSpec(name, func_ref, trigger, dict(trigger_args), tuple(args), dict(kwargs or {}))
        existing = self._jobs.get(name)
        if existing is not None and existing != spec:
            raise ValueError(f"job {name!r} is already registered with a different definition")
        self._jobs[name] = spec
        return spec

    def get(self, name: str) -> JobSpec | None:
        """Return the job registered under name, if any."""
        return self._jobs.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._jobs

    def __iter__(self) -> Iterator[JobSpec]:
        return iter(list(self._jobs.values()))

    def __len__(self) -> int:
        return len(self._jobs)


# The registry domains fill from their jobs.py, like a router collects routes.
registry = JobRegistry()


def default_registry() -> JobRegistry:
    """Return the registry the domains' jobs modules register into."""
    return registry


def load_job_modules(modules: Iterable[str] = DOMAIN_JOB_MODULES) -> list[str]:
    """Import each domain's jobs module so it registers its jobs; return the ones found."""
    loaded = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            # Only a missing jobs module (or package) is skipped; a broken import inside one is an error.
            if exc.name and (module == exc.name or module.startswith(exc.name + ".")):
                logger.debug("job module %s not present; skipped", module)
                continue
            raise
        loaded.append(module)
    return loaded


# --------------------------------------------------------------------------------------------
# Enqueueing one-shot jobs


def enqueue(
    func_ref: str,
    *,
    db: Session | Connection | Engine,
    args: Iterable[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    run_at: dt.datetime | None = None,
    job_id: str | None = None,
    timezone: str = DEFAULT_TIMEZONE,
) -> str:
    """Queue func_ref(*args, **kwargs) to run once on the lease holder, now or at run_at; return the job id.

    Given a Session or Connection the job is written in that transaction, so it runs only if
    the caller commits (and after the commit is visible). A job_id already queued and not yet
    started is kept, not duplicated; the job should read current state when it runs.
    """
    if not isinstance(func_ref, str) or not _FUNC_REF.match(func_ref):
        raise ValueError(f"func_ref must be a 'module:function' string, got {func_ref!r}")
    tz = ZoneInfo(timezone)
    run_at = run_at or dt.datetime.now(tz)
    if run_at.tzinfo is None:
        raise ValueError("run_at must be timezone-aware")
    run_at = run_at.astimezone(tz)
    # Building a real Job imports func_ref and checks the arguments against its signature now.
    job = Job(
        SimpleNamespace(timezone=tz),  # Job only asks its scheduler for the timezone here
        id=ONCE_PREFIX + (job_id or uuid.uuid4().hex),
        func=func_ref,
        args=tuple(args),
        kwargs=dict(kwargs or {}),
        name=func_ref,
        trigger=DateTrigger(run_at, timezone=tz),
        executor="default",
        misfire_grace_time=None,  # event-driven work runs however late the holder gets to it
        coalesce=True,
        max_instances=ONCE_MAX_INSTANCES,
        next_run_time=run_at,
    )
    values = {
        "id": job.id,
        "next_run_time": datetime_to_utc_timestamp(run_at),
        "job_state": pickle.dumps(job.__getstate__(), pickle.HIGHEST_PROTOCOL),
    }
    stmt = upsert_insert(db, _jobs_table).values(**values).on_conflict_do_nothing(index_elements=["id"])
    if isinstance(db, Engine):
        with db.begin() as conn:
            conn.execute(stmt)
    else:
        db.execute(stmt)
    logger.debug("enqueued %s as %s to run at %s", func_ref, job.id, run_at.isoformat())
    return job.id


# --------------------------------------------------------------------------------------------
# Running items independently


@dataclass
class ItemsReport:
    """What a run over items did: how many succeeded, and the keys of those that failed."""

    name: str
    total: int = 0
    succeeded: int = 0
    failed_keys: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        """Return the number of items that failed."""
        return len(self.failed_keys)

    @property
    def ok(self) -> bool:
        """Tell whether every item succeeded."""
        return not self.failed_keys


T = TypeVar("T")


def _default_key(item: Any) -> object:
    return getattr(item, "id", item)


def run_items(
    items: Iterable[T],
    handler: Callable[..., Any],
    *,
    name: str,
    key: Callable[[T], object] = _default_key,
    database: Database | None = None,
) -> ItemsReport:
    """Run handler on every item independently: one failure is logged with its key and the rest go on.

    Without a database the handler is called as handler(item); with one, as handler(db, item)
    inside its own session, committed on success and rolled back on failure.
    """
    report = ItemsReport(name=name)
    for index, item in enumerate(items):
        report.total += 1
        try:
            item_key = str(key(item))
        except Exception:
            item_key = f"#{index}"
        try:
            if database is None:
                handler(item)
            else:
                with database.session() as session:
                    handler(session, item)
        except Exception:
            logger.exception("%s: item %s failed; it will be retried on the next run", name, item_key)
            report.failed_keys.append(item_key)
        else:
            report.succeeded += 1
    log = logger.warning if report.failed_keys else logger.info
    log("%s: %d items, %d succeeded, %d failed", name, report.total, report.succeeded, report.failed)
    return report


# --------------------------------------------------------------------------------------------
# The scheduler


class _SharedEngineJobStore(SQLAlchemyJobStore):
    """SQLAlchemyJobStore on the application's engine, which it must not dispose of on shutdown."""

    def shutdown(self) -> None:
        pass


def make_holder_id() -> str:
    """Return a lease holder id unique to this process: host:pid:uuid."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class HuiqiScheduler:
    """APScheduler in the application database, running jobs only while this process holds the lease."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        *,
        registry: JobRegistry | None = None,
        run_jobs: bool | None = None,
        lease_ttl: float | None = None,
        timezone: str | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        lease_name: str = DEFAULT_LEASE_NAME,
    ) -> None:
        self.settings = settings
        self.database = database
        if registry is None:
            load_job_modules()
            registry = default_registry()
        self.registry = registry
        self.run_jobs = settings.scheduler_enabled if run_jobs is None else run_jobs
        self.lease_ttl = float(lease_ttl or settings.scheduler_lease_ttl)
        self.timezone = timezone or settings.timezone
        self.poll_interval = poll_interval
        if self.lease_ttl <= 0 or poll_interval <= 0:
            raise ValueError("lease_ttl and poll_interval must be positive")
        self.lease_name = lease_name
        self.holder = make_holder_id()
        self._scheduler = self._new_scheduler()
        self._holding = False
        self._valid_until = 0.0  # monotonic deadline of the lease as last confirmed
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None
        self._started = False

    def _new_scheduler(self) -> BackgroundScheduler:
        return BackgroundScheduler(
            timezone=self.timezone,
            jobstores={"default": _SharedEngineJobStore(engine=self.database.engine, tablename=JOBS_TABLE)},
            job_defaults=dict(JOB_DEFAULTS),
        )

    @property
    def is_holder(self) -> bool:
        """Tell whether this process holds the lease and is running jobs."""
        return self._holding

    def start(self) -> None:
        """Start competing for the lease (a no-op unless run_jobs); jobs run only while it is held."""
        if self._started:
            return
        self._started = True
        _stopping.clear()
        if not self.run_jobs:
            logger.info("scheduler: this process only enqueues jobs; another process runs them")
            return
        tables = set(inspect(self.database.engine).get_table_names())
        missing = {"scheduler_lease", JOBS_TABLE} - tables
        if missing:
            raise RuntimeError(f"scheduler tables {sorted(missing)} are missing; run `huiqi migrate` first")
        self._scheduler.start(paused=True)
        self._stop.clear()
        self._keeper = threading.Thread(target=self._keep_lease, name="huiqi-scheduler-lease", daemon=True)
        self._keeper.start()
        logger.info("scheduler started as %s (lease %r, ttl %.1fs)", self.holder, self.lease_name, self.lease_ttl)

    def stop(self, *, wait: bool = True) -> None:
        """Stop running jobs; with wait, let running jobs finish and hand the lease over at once."""
        if not self._started:
            return
        self._started = False
        self._stop.set()
        _stopping.set()
        if self._keeper is not None:
            self._keeper.join(timeout=self.lease_ttl)
            self._keeper = None
        if self._scheduler.running:
            self._scheduler.shutdown(wait=wait)
        # Without wait a job may still be running here: let the lease expire rather than overlap.
        if self._holding and wait:
            try:
                lease.release(engine=self.database.engine, name=self.lease_name, holder=self.holder)
                logger.info("scheduler lease %r released by %s", self.lease_name, self.holder)
            except Exception:
                logger.warning("scheduler lease %r could not be released; it expires by itself", self.lease_name)
        self._holding = False
        # A BackgroundScheduler cannot be started twice; a later start() gets a fresh one.
        self._scheduler = self._new_scheduler()

    def enqueue(
        self,
        func_ref: str,
        *,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        run_at: dt.datetime | None = None,
        job_id: str | None = None,
        db: Session | Connection | None = None,
    ) -> str:
        """Queue a one-shot job for the lease holder (in db's transaction when given); return its id."""
        return enqueue(
            func_ref,
            db=db if db is not None else self.database.engine,
            args=args,
            kwargs=kwargs,
            run_at=run_at,
            job_id=job_id,
            timezone=self.timezone,
        )

    def sync_jobs(self) -> None:
        """Make the job store hold exactly the registered jobs, keeping unchanged ones' schedules."""
        wanted = {spec.name: spec for spec in self.registry}
        for job in self._scheduler.get_jobs():
            if not job.id.startswith(ONCE_PREFIX) and job.id not in wanted:
                self._scheduler.remove_job(job.id)
                logger.info("scheduler: removed job %s, no longer registered", job.id)
        for spec in wanted.values():
            existing = self._scheduler.get_job(spec.name)
            if existing is not None and existing.name == spec.job_name:
                continue  # same definition: replacing it would reset an interval job's schedule
            try:
                self._scheduler.add_job(
                    spec.func_ref,
                    spec.trigger,
                    id=spec.name,
                    name=spec.job_name,
                    args=spec.args,
                    kwargs=dict(spec.kwargs),
                    replace_existing=True,
                    **spec.trigger_args,
                )
            except Exception:
                logger.exception("scheduler: job %s (%s) could not be scheduled", spec.name, spec.func_ref)
            else:
                logger.info("scheduler: scheduled job %s (%s)", spec.name, spec.func_ref)

    # -- lease keeping -------------------------------------------------------------------

    def _keep_lease(self) -> None:
        next_check = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_check:
                self._check_lease()
                next_check = time.monotonic() + self.lease_ttl / 3
            if self._holding:
                # Jobs enqueued by other processes reach the store without waking APScheduler.
                self._scheduler.wakeup()
            self._stop.wait(min(self.poll_interval, self.lease_ttl / 3))

    def _check_lease(self) -> None:
        started = time.monotonic()
        try:
            op = lease.renew if self._holding else lease.acquire
            held = op(engine=self.database.engine, name=self.lease_name, holder=self.holder, ttl=self.lease_ttl)
        except Exception as exc:
            # A database hiccup: keep running while the lease we last confirmed is still valid.
            held = self._holding and started < self._valid_until
            logger.warning("scheduler lease %r check failed: %s", self.lease_name, exc)
        if held:
            self._valid_until = started + self.lease_ttl
        if held and not self._holding:
            self._gain()
        elif not held and self._holding:
            self._lose()

    def _gain(self) -> None:
        logger.info("scheduler lease %r acquired by %s; running jobs", self.lease_name, self.holder)
        self._holding = True
        try:
            self.sync_jobs()
        except Exception:
            logger.exception("scheduler: registered jobs could not be synchronised")
        self._scheduler.resume()

    def _lose(self) -> None:
        logger.warning("scheduler lease %r lost by %s; pausing jobs", self.lease_name, self.holder)
        self._holding = False
        self._scheduler.pause()


# --------------------------------------------------------------------------------------------
# Stopping

# Set while this process is stopping its scheduler (SIGTERM, Ctrl-C): long jobs check `stopping()`
# between chunks and return, leaving the rest for the next run (they are resumable).
_stopping = threading.Event()


def stopping() -> bool:
    """Tell whether this process was asked to stop; long jobs return at their next chunk boundary."""
    return _stopping.is_set()


# --------------------------------------------------------------------------------------------
# Entry points


def run_worker(
    settings: Settings,
    *,
    database: Database | None = None,
    registry: JobRegistry | None = None,
    lease_ttl: float | None = None,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    lease_name: str = DEFAULT_LEASE_NAME,
    stop_event: threading.Event | None = None,
) -> None:
    """Run the scheduler in this process until SIGTERM or SIGINT (or stop_event), for `huiqi worker`."""
    own_database = database is None
    database = database or Database(settings.resolved_database_url)
    scheduler = HuiqiScheduler(
        settings,
        database,
        registry=registry,
        run_jobs=True,  # a worker exists to run jobs, whatever the API's setting says
        lease_ttl=lease_ttl,
        poll_interval=poll_interval,
        lease_name=lease_name,
    )
    stop = stop_event or threading.Event()
    previous: dict[int, Any] = {}

    def on_signal(*_: object) -> None:
        _stopping.set()
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        scheduler.start()
        logger.info("worker %s waiting for the scheduler lease", scheduler.holder)
        while not stop.wait(1.0):
            pass
        logger.info("worker %s stopping", scheduler.holder)
    finally:
        scheduler.stop(wait=True)
        for number, handler in previous.items():
            signal.signal(number, handler)
        if own_database:
            database.dispose()


def start_in_process(app_state: Any) -> HuiqiScheduler:
    """Start a scheduler on the API's settings and database and keep it on app_state.scheduler."""
    scheduler = HuiqiScheduler(app_state.settings, app_state.db)
    scheduler.start()
    app_state.scheduler = scheduler
    return scheduler


def stop_in_process(app_state: Any) -> None:
    """Stop the scheduler start_in_process put on app_state, if any."""
    scheduler: HuiqiScheduler | None = getattr(app_state, "scheduler", None)
    if scheduler is not None:
        scheduler.stop(wait=True)
