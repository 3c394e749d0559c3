"""A named lease in the application database: at most one process holds it at a time.

The scheduler uses it so that, of every process that starts one, exactly one runs jobs. Each
operation is one atomic statement, safe under concurrency on SQLite (writers serialise on the
database lock) and PostgreSQL (INSERT ... ON CONFLICT DO UPDATE locks the row and re-checks the
WHERE clause against the latest version):

* `acquire` inserts the row, or takes it over when this holder already has it or it has expired;
* `renew` extends it only while this holder is still the holder of record;
* `release` expires it at once so another process need not wait out the TTL.

Time comes from Python (`core.db.utcnow()`, aware UTC), never from the database, so the same
code and tests behave alike on both backends and a test can pass its own clock (`now=`). Hosts
sharing a database must therefore keep their clocks synchronised (NTP) to well within the TTL.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import String, case, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, table_of, upsert_insert, utcnow

# Tables other programs own that live in our database but not in our metadata; Alembic's
# autogenerate and the migration test must neither drop nor diff them.
EXTERNAL_TABLES = frozenset({"apscheduler_jobs"})
# The catalog's keyword index (migration 0011) is raw SQL, not metadata: SQLite's FTS5 table, its
# vocabulary view and shadow tables (policy_fts_*), PostgreSQL's expression index on the text.
EXTERNAL_TABLE_PREFIXES = ("policy_fts",)
EXTERNAL_INDEXES = frozenset({"ix_policy_trgm"})


class SchedulerLease(Base):
    """Who may run scheduled jobs, and until when."""

    __tablename__ = "scheduler_lease"

    # The primary key is the conflict target that makes acquire a single atomic upsert.
    name: Mapped[str] = mapped_column(String(60), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))  # host:pid:uuid of the holding process
    acquired_at: Mapped[dt.datetime]
    renewed_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Tell Alembic to leave objects it does not model alone (APScheduler's job store, the keyword index)."""
    if type_ == "table" and name is not None:
        return not (name in EXTERNAL_TABLES or name.startswith(EXTERNAL_TABLE_PREFIXES))
    return not (type_ == "index" and name in EXTERNAL_INDEXES)


def _ttl(ttl: float | dt.timedelta) -> dt.timedelta:
    delta = ttl if isinstance(ttl, dt.timedelta) else dt.timedelta(seconds=ttl)
    if delta <= dt.timedelta(0):
        raise ValueError("lease ttl must be positive")
    return delta


def acquire(
    *, engine: Engine, name: str, holder: str, ttl: float | dt.timedelta, now: dt.datetime | None = None
) -> bool:
    """Take or keep the lease for ttl seconds if it is free, expired or already ours; tell whether we hold it."""
    now = now or utcnow()
    table = table_of(SchedulerLease)
    ins = upsert_insert(engine, table).values(
        name=name, holder=holder, acquired_at=now, renewed_at=now, expires_at=now + _ttl(ttl)
    )
    stmt = ins.on_conflict_do_update(
        index_elements=[table.c.name],
        set_={
            "holder": ins.excluded.holder,
            # Keeping a lease we already hold is a renewal: the original acquisition time stays.
            "acquired_at": case(
                (table.c.holder == ins.excluded.holder, table.c.acquired_at), else_=ins.excluded.acquired_at
            ),
            "renewed_at": ins.excluded.renewed_at,
            "expires_at": ins.excluded.expires_at,
        },
        where=or_(table.c.holder == ins.excluded.holder, table.c.expires_at <= ins.excluded.renewed_at),
    ).returning(table.c.holder)
    with engine.begin() as conn:
        return conn.execute(stmt).first() is not None


def renew(*, engine: Engine, name: str, holder: str, ttl: float | dt.timedelta, now: dt.datetime | None = None) -> bool:
    """Extend our lease by ttl seconds from now; tell whether we still hold it.

    Renewal succeeds even just after expiry if nobody took the lease over: a process can only
    have run jobs in between by becoming the holder of record, which this statement checks.
    """
    now = now or utcnow()
    table = table_of(SchedulerLease)
    stmt = (
        update(table)
        .where(table.c.name == name, table.c.holder == holder)
        .values(renewed_at=now, expires_at=now + _ttl(ttl))
    )
    with engine.begin() as conn:
        return conn.execute(stmt).rowcount == 1


def release(*, engine: Engine, name: str, holder: str, now: dt.datetime | None = None) -> bool:
    """Expire our lease now so another process can take it at once; tell whether it was ours."""
    now = now or utcnow()
    table = table_of(SchedulerLease)
    stmt = update(table).where(table.c.name == name, table.c.holder == holder).values(expires_at=now)
    with engine.begin() as conn:
        return conn.execute(stmt).rowcount == 1


def current_holder(*, engine: Engine, name: str, now: dt.datetime | None = None) -> str | None:
    """Return who holds the lease now, or None when it is free or expired."""
    now = now or utcnow()
    table = table_of(SchedulerLease)
    stmt = select(table.c.holder).where(table.c.name == name, table.c.expires_at > now)
    with engine.connect() as conn:
        return conn.execute(stmt).scalar_one_or_none()
