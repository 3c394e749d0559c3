"""Scheduled matching work: keep stored results and the firm index in step with the database."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from core import scheduler
from core.config import get_settings
from core.db import get_database
from core.scheduler import registry
from matcher import service

log = logging.getLogger(__name__)

REMATCH_JOB = "matcher.jobs:rematch_changed_job"
# One queued catch-up at a time: an edit made before it starts is covered by it.
QUEUED_REMATCH_ID = "matcher-rematch-changed"


def rematch_changed_job() -> None:
    """Embed new or changed firm profiles, re-match changed policies and refresh stale firms."""
    settings = get_settings()
    matcher = service.Matcher(settings)
    try:
        totals = service.rematch(database=get_database(settings), matcher=matcher)
        log.info("re-matched %(policies)s policies and %(firms)s firms (%(failed)s failed)", totals)
    finally:
        matcher.close()


def queue_policy_rematch(db: Session, *, policy_id: int) -> None:
    """Queue the catch-up that re-matches changed policies, in the caller's transaction."""
    del policy_id  # the catch-up finds every policy edited since it was last matched
    scheduler.enqueue(REMATCH_JOB, db=db, job_id=QUEUED_REMATCH_ID)


registry.register("matcher.rematch_changed", REMATCH_JOB, "interval", minutes=15)
