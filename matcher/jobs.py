"""Scheduled matching work: keep stored results and the firm index in step with the database."""

from __future__ import annotations

import logging

from core.config import get_settings
from core.db import get_database
from core.scheduler import registry
from matcher import service

log = logging.getLogger(__name__)

REMATCH_JOB = "matcher.jobs:rematch_changed_job"


def rematch_changed_job() -> None:
    """Embed new or changed firm profiles, re-match changed policies and refresh stale firms."""
    settings = get_settings()
    matcher = service.Matcher(settings)
    try:
        totals = service.rematch(database=get_database(settings), matcher=matcher)
        log.info("re-matched %(policies)s policies and %(firms)s firms (%(failed)s failed)", totals)
    finally:
        matcher.close()


registry.register("matcher.rematch_changed", REMATCH_JOB, "interval", minutes=15)
