"""Push jobs: the outbox sender every 30 seconds, event-driven fan-out queued by publishing and
change notices queued by editing a published policy, and the scheduled notifications of
`push.digests` and `push.reminders` — digests, deadline reminders, profile reminders. The scheduled
ones tick often and decide themselves whether anything is due (from HUIQI_PUSH_DIGEST_TIME local time), so a changed
setting needs no re-registration and a worker that was down catches up; keys make each run idempotent."""

from __future__ import annotations

import datetime as dt
import logging
import pickle
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.date import DateTrigger
from apscheduler.util import datetime_to_utc_timestamp
from sqlalchemy import column, delete, select, table, update
from sqlalchemy.orm import Session

from core import scheduler
from core.config import Settings, get_settings
from core.db import get_database, rowcount, session_scope, utcnow
from core.netguard import AddressGuard
from core.scheduler import registry
from push import changes, digests, fanout, reminders, sender
from push.channels import Channel, EmailChannel, SmsChannel, WebhookChannel

log = logging.getLogger(__name__)

registry.register("push.send_due", "push.jobs:send_due_job", "interval", seconds=30)
registry.register("push.digests", "push.jobs:digest_job", "interval", minutes=1)
registry.register("push.deadline_reminders", "push.jobs:deadline_reminder_job", "interval", minutes=10)
registry.register("push.profile_reminders", "push.jobs:profile_reminder_job", "interval", minutes=30)

POLICY_CHANGED_JOB = "push.jobs:policy_changed_job"
POLICY_CHANGED_RETRIES = 5


def build_channels(settings: Settings) -> tuple[dict[str, Channel], list[WebhookChannel]]:
    """Build the channels the settings configure; rows of an unconfigured channel die with a Chinese reason.

    Returns the channels and the webhook clients to close afterwards.
    """
    timeout = settings.webhook_timeout
    webhook = WebhookChannel(timeout=timeout, guard=AddressGuard(settings.webhook_allow_hosts))
    channels: dict[str, Channel] = {"webhook": webhook}
    smtp_host = settings.smtp_host
    smtp_sender = settings.smtp_sender
    if smtp_host and smtp_sender:
        channels["email"] = EmailChannel(
            host=smtp_host,
            port=settings.smtp_port,
            sender=smtp_sender,
            username=settings.smtp_username,
            password=settings.smtp_password,
            use_tls=settings.smtp_use_tls,
            use_ssl=settings.smtp_use_ssl,
        )
    gateway = settings.sms_gateway_url
    gateway_secret = settings.sms_gateway_secret
    if gateway and gateway_secret:
        channels["sms"] = SmsChannel(gateway_url=gateway, secret=gateway_secret, webhook=webhook)
    return channels, [webhook]


def send_due_job() -> dict[str, Any]:
    """Send every due outbox row once, in its own unit of work."""
    settings = get_settings()
    channels, closers = build_channels(settings)
    try:
        with session_scope(settings) as db:
            # SQLite: end the read before the slow sends, so recording the outcomes does not fail when
            # another connection (the lease renewal, a fan-out) commits meanwhile. PostgreSQL keeps the
            # transaction: its row locks keep a second sender off these rows.
            sqlite = db.get_bind().dialect.name == "sqlite"
            counts = sender.send_due(
                db=db,
                channels=channels,
                settings=settings,
                base_url=settings.public_base_url,
                before_sending=db.commit if sqlite else None,
            )
    finally:
        for closer in closers:
            closer.close()
    if counts["picked"]:
        log.info("push.send_due: %s", counts)
    return counts


FAN_OUT_JOB = "push.jobs:fan_out_job"
# A fan-out that makes no progress for this long (its worker died) is run again by its guard.
FAN_OUT_RESUME_AFTER = 60.0
FAN_OUT_MAX_ATTEMPTS = 5  # runs of one fan-out after which no new guard is queued (a persistent failure)
_GUARD_MARGIN_S = 5.0  # a guard this close to due (at most half its delay) is left to run: it may be starting
_jobs = table(scheduler.JOBS_TABLE, column("id"), column("next_run_time"), column("job_state"))


def fan_out_guard_id(policy_id: int, version: int) -> str:
    """Return the queued-job id of the guard that re-runs an interrupted fan-out of a policy version."""
    return f"fanout-guard-{policy_id}-v{version}"


@dataclass(frozen=True)
class _FanOutGuard:
    """A one-shot fan_out_job queued `resume_after` seconds ahead and moved ahead after every chunk.

    APScheduler removes a one-shot job from its store when it starts it, so a worker killed in the
    middle of a fan-out would leave no trace of the work. The guard is that trace, in the same job
    store: while the fan-out makes progress it stays in the future; when the worker dies it comes
    due and whichever process holds the lease then runs the fan-out again, which skips what the
    dead run committed. A run that finishes deletes it.
    """

    policy_id: int
    version: int
    resume_after: float
    chunk_size: int
    attempt: int
    timezone: str

    @property
    def job_id(self) -> str:
        return scheduler.ONCE_PREFIX + fan_out_guard_id(self.policy_id, self.version)

    def arm(self, db: Session) -> None:
        """Queue the guard, or move it to `resume_after` seconds from now, in db's transaction.

        Its first statement writes, so on SQLite a transaction opened by it holds the write lock
        before it reads anything (a read-then-write transaction fails when another writer commits
        in between).
        """
        tz = ZoneInfo(self.timezone)
        run_at = (utcnow() + dt.timedelta(seconds=self.resume_after)).astimezone(tz)
        mine = _jobs.c.id == self.job_id
        moved = db.execute(update(_jobs).where(mine).values(next_run_time=datetime_to_utc_timestamp(run_at)))
        if rowcount(moved):
            # The column tells the scheduler when the job is due; its state says what to run, when.
            job = pickle.loads(db.scalar(select(_jobs.c.job_state).where(mine)) or b"")
            job["trigger"] = DateTrigger(run_at, timezone=tz)
            job["next_run_time"] = run_at
            db.execute(update(_jobs).where(mine).values(job_state=pickle.dumps(job, pickle.HIGHEST_PROTOCOL)))
            return
        scheduler.enqueue(
            FAN_OUT_JOB,
            db=db,
            kwargs={
                "policy_id": self.policy_id,
                "resume_after": self.resume_after,
                "chunk_size": self.chunk_size,
                "attempt": self.attempt + 1,
            },
            run_at=run_at,
            job_id=fan_out_guard_id(self.policy_id, self.version),
            timezone=self.timezone,
        )

    def disarm(self, db: Session) -> None:
        """Delete the guard unless it is about to run (a run then finds nothing left and stops)."""
        # Never delete a job the scheduler may be starting: its own removal of it would fail.
        margin = min(_GUARD_MARGIN_S, self.resume_after / 2)
        soon = datetime_to_utc_timestamp(utcnow() + dt.timedelta(seconds=margin))
        db.execute(delete(_jobs).where(_jobs.c.id == self.job_id, _jobs.c.next_run_time > soon))


def queue_fan_out(db: Session, *, policy_id: int, version: int, timezone: str | None = None) -> None:
    """Queue the fan-out of a just-published policy version, in the publish's transaction.

    Its guard is queued too, `FAN_OUT_RESUME_AFTER` seconds ahead: APScheduler drops the one-shot
    job when it starts it, and a worker killed before the job arms the guard itself would otherwise
    leave no trace of the work. The run then moves this guard ahead as it makes progress.
    """
    scheduler.enqueue(FAN_OUT_JOB, db=db, kwargs={"policy_id": policy_id}, job_id=f"fanout-{policy_id}-v{version}")
    run_at = utcnow() + dt.timedelta(seconds=FAN_OUT_RESUME_AFTER)
    scheduler.enqueue(
        FAN_OUT_JOB,
        db=db,
        kwargs={"policy_id": policy_id, "attempt": 2},
        run_at=run_at,
        job_id=fan_out_guard_id(policy_id, version),
        timezone=timezone or scheduler.DEFAULT_TIMEZONE,
    )


def queue_change_notices(db: Session, *, policy_id: int, from_version: int) -> None:
    """Queue the notices about an edit of a published policy, in the edit's transaction.

    One queued job per policy: a later edit before it runs is covered by it, since it compares
    from_version with the version current then.
    """
    scheduler.enqueue(
        POLICY_CHANGED_JOB,
        db=db,
        kwargs={"policy_id": policy_id, "from_version": from_version},
        job_id=f"policy-changed-{policy_id}",
    )


def fan_out_job(
    policy_id: int,
    resume_after: float = FAN_OUT_RESUME_AFTER,
    chunk_size: int = fanout.FAN_OUT_CHUNK,
    attempt: int = 1,
) -> dict[str, Any]:
    """Fan a published policy out to its matching firms (queued by publishing; exactly once per version).

    Crash-safe: rows are committed a chunk of firms at a time, and a guard job (`_FanOutGuard`)
    re-runs the fan-out `resume_after` seconds after its last progress if this run dies; the rerun
    writes only what is missing. Up to FAN_OUT_MAX_ATTEMPTS runs are guarded.
    """
    from catalog.models import Policy, PolicyStatus

    settings = get_settings()
    database = get_database(settings)
    with database.session() as db:
        policy = db.get(Policy, policy_id)
        version = policy.version if policy is not None and policy.status == PolicyStatus.published else None
    if version is None:
        # Withdrawn (or deleted) before the job ran: nothing to announce.
        log.info("fan-out of policy %s skipped: not published", policy_id)
        return {"policy_id": policy_id, "created": 0}
    guard = None
    if attempt <= FAN_OUT_MAX_ATTEMPTS:
        guard = _FanOutGuard(
            policy_id=policy_id,
            version=version,
            resume_after=resume_after,
            chunk_size=chunk_size,
            attempt=attempt,
            timezone=settings.timezone,
        )
        with database.session() as db:
            guard.arm(db)  # before any work: from here on a crash leaves a trace
    else:
        log.error(
            "fan-out of policy %s: attempt %s runs unguarded (the limit is %s)",
            policy_id,
            attempt,
            FAN_OUT_MAX_ATTEMPTS,
        )
    with database.session() as db:

        def checkpoint() -> None:
            # Commit what is written so far; the next chunk's transaction opens with the guard's move.
            db.commit()
            if guard is not None:
                guard.arm(db)

        counts = fanout.fan_out_policy(
            db=db,
            policy_id=policy_id,
            base_url=_base_url(settings),
            chunk_size=chunk_size,
            checkpoint=checkpoint,
            settings=settings,
        )
    if guard is not None:
        with database.session() as db:
            guard.disarm(db)
    return counts


# ---------------------------------------------------------------- scheduled notifications (push.digests, push.reminders, push.changes)


def _base_url(settings: Settings) -> str:
    return settings.public_base_url


def digest_job() -> dict[str, Any]:
    """Write the daily and weekly digests that are due, each firm in its own transaction."""
    settings = get_settings()
    report = digests.run_digests(
        database=get_database(settings), now=utcnow(), settings=settings, base_url=_base_url(settings)
    )
    return {"firms": report.total, "failed": report.failed}


def deadline_reminder_job() -> dict[str, Any]:
    """Write the deadline reminders that are due, each policy in its own transaction."""
    settings = get_settings()
    report = reminders.run_reminders(
        database=get_database(settings), now=utcnow(), settings=settings, base_url=_base_url(settings)
    )
    return {"policies": report.total, "failed": report.failed}


def profile_reminder_job() -> dict[str, Any]:
    """Write this month's profile reminders, each firm in its own transaction."""
    settings = get_settings()
    report = reminders.run_profile_reminders(
        database=get_database(settings), now=utcnow(), settings=settings, base_url=_base_url(settings)
    )
    return {"firms": report.total, "failed": report.failed}


def policy_changed_job(policy_id: int, from_version: int, attempt: int = 1) -> dict[str, Any]:
    """Re-judge the firms for an edited published policy and tell them what changed.

    Queued by catalog's update route as `policy-changed-<id>`: one queued job per policy, so edits
    made before it starts are covered by the job already queued (it compares `from_version` with
    whatever version is current when it runs).

    A failure is logged and the job queued again with backoff, up to POLICY_CHANGED_RETRIES times;
    rows already written make a rerun write nothing twice.
    """
    settings = get_settings()
    try:
        with session_scope(settings) as db:
            return changes.policy_change_notices(
                db=db,
                policy_id=policy_id,
                from_version=from_version,
                now=utcnow(),
                settings=settings,
                base_url=_base_url(settings),
            )
    except Exception:
        log.exception("change notices of policy %s (from v%s) failed, attempt %s", policy_id, from_version, attempt)
        if attempt >= POLICY_CHANGED_RETRIES:
            raise
        scheduler.enqueue(
            POLICY_CHANGED_JOB,
            db=get_database(settings).engine,
            kwargs={"policy_id": policy_id, "from_version": from_version, "attempt": attempt + 1},
            run_at=utcnow() + dt.timedelta(minutes=2**attempt),
            job_id=f"policy-changed-{policy_id}-from-v{from_version}-try{attempt + 1}",
            timezone=settings.timezone,
        )
        return {"policy_id": policy_id, "created": 0, "retry": attempt + 1}
