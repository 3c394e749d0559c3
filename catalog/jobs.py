"""Catalog jobs: policies whose validity has ended are marked expired."""

from __future__ import annotations

import datetime as dt
import logging
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from catalog import service
from core.config import Settings, get_settings
from core.db import session_scope, utcnow
from core.scheduler import registry

log = logging.getLogger(__name__)

# Hourly at :05, so the day's expiries happen soon after local midnight even when the worker was
# down at midnight; the query is indexed and a run with nothing due changes nothing.
registry.register("catalog.expire_policies", "catalog.jobs:expire_policies_job", "cron", minute=5)


def expire_policies(*, db: Session, now: dt.datetime, settings: Settings) -> list[int]:
    """Expire published policies whose valid_to_on is before today's local date; return their ids."""
    today = now.astimezone(ZoneInfo(settings.timezone)).date()
    return service.expire_due_policies(db=db, today=today)


def expire_policies_job() -> list[int]:
    """Mark policies past their validity as expired, in one transaction."""
    settings = get_settings()
    with session_scope(settings) as db:
        expired = expire_policies(db=db, now=utcnow(), settings=settings)
    if expired:
        log.info("expired %d policies past their validity: %s", len(expired), expired)
    return expired
