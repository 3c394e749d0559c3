"""Matching work for the worker: the catch-up, one policy's list, the nightly full run.

Requests never compute matches: publishing or editing a policy queues `list_policy_job` (the
policy judged against every firm: its list, and each firm's stored best patched); a profile change
queues the catch-up, which re-scores changed firms; the catch-up also runs every 15 minutes and
when a worker starts, and a full run every night re-scores everyone against the day's windows.
Each job checks `scheduler.stopping()` between chunks, so a worker asked to stop does so promptly
and the run resumes where it stopped.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from core import scheduler
from core.config import get_settings
from core.db import get_database
from core.scheduler import registry
from matcher import runs
from matcher.engine import Matcher

log = logging.getLogger(__name__)

REMATCH_JOB = "matcher.jobs:rematch_changed_job"
LIST_JOB = "matcher.jobs:list_policy_job"
# One queued catch-up at a time: a change made before it starts is covered by it.
QUEUED_REMATCH_ID = "matcher-rematch-changed"


def _matcher() -> Matcher:
    return Matcher(get_settings())


def rematch_changed_job() -> dict[str, object]:
    """Catch up: new and changed firms, edited policies, everything when nothing is stored yet."""
    settings = get_settings()
    matcher = _matcher()
    try:
        report = runs.rematch_changed(get_database(settings), matcher, should_stop=scheduler.stopping)
        log.log(
            logging.INFO if report.firms or report.policies else logging.DEBUG,
            "catch-up (%s): %s firms, %s policies, %s embedded in %.1f s%s",
            report.kind,
            report.firms,
            report.policies,
            report.embedded,
            report.seconds,
            " (stopped; resumes on the next run)" if report.stopped else "",
        )
        return {"kind": report.kind, "firms": report.firms, "policies": report.policies, "stopped": report.stopped}
    finally:
        matcher.close()


def rematch_all_job() -> dict[str, object]:
    """Re-score every firm (nightly): deadlines and firms' ages move with the date."""
    settings = get_settings()
    matcher = _matcher()
    try:
        database = get_database(settings)
        engine = None
        if settings.match_workers > 1:  # spawned: this process runs the scheduler's threads, forking it is unsafe
            engine = runs.ProcessEngine(database, settings.match_workers, scheduler.stopping, start_method="spawn")
        report = runs.rematch_all(database, matcher, should_stop=scheduler.stopping, engine=engine)
        log.info(
            "full run: %s firms in %s chunks (%s resumed) in %.1f s",
            report.firms,
            report.chunks,
            report.resumed,
            report.seconds,
        )
        return {"firms": report.firms, "stopped": report.stopped}
    finally:
        matcher.close()


def list_policy_job(policy_id: int) -> dict[str, int]:
    """Judge one policy against every firm: its eligible list, and every firm's stored best patched."""
    settings = get_settings()
    matcher = _matcher()
    try:
        counts = runs.list_policy(get_database(settings), matcher, policy_id, should_stop=scheduler.stopping)
        log.info(
            "policy %s judged against %s firms: %s eligible, %s likely",
            policy_id,
            counts["firms"],
            counts["eligible"],
            counts["likely"],
        )
        return counts
    finally:
        matcher.close()


def queue_catch_up(db: Session) -> None:
    """Queue the catch-up, in the caller's transaction."""
    scheduler.enqueue(REMATCH_JOB, db=db, job_id=QUEUED_REMATCH_ID)


def queue_policy(db: Session, *, policy_id: int) -> None:
    """Queue the judging of one policy against every firm, in the caller's transaction."""
    scheduler.enqueue(LIST_JOB, db=db, kwargs={"policy_id": policy_id}, job_id=f"matcher-list-{policy_id}")


registry.register("matcher.rematch_changed", REMATCH_JOB, "interval", minutes=15)
registry.register("matcher.rematch_all", "matcher.jobs:rematch_all_job", "cron", hour=2, minute=30)
