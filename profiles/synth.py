"""Bulk-load synthetic enterprises (up to millions) for benchmarks and batch-matching tests.

Rows come from profiles.generate and go to the database with SQLAlchemy Core executemany, one
transaction per batch, ids assigned up front from max(id) + 1 so qualifications can be written in
the same batch without reading ids back. This is a loading tool: it assumes no other writer inserts
enterprises while it runs.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine

from catalog.models import Tag, TagKind
from core.db import advance_id_sequences, table_of, utcnow
from profiles.generate import generate_enterprises, reissue_taken_codes
from profiles.models import Enterprise, EnterpriseQualification

log = logging.getLogger(__name__)

_ENTERPRISE = table_of(Enterprise)
_QUALIFICATION = table_of(EnterpriseQualification)


def synth_enterprises(
    *,
    engine: Engine,
    count: int,
    seed: int,
    batch_size: int = 10_000,
    progress: Callable[[int], None] | None = None,
    today: dt.date | None = None,
) -> int:
    """Insert count generated enterprises with their qualifications in batches; return the number inserted.

    progress, when given, is called after each committed batch with the number of rows inserted so far.
    Credit codes already in the table are reissued, so loading into a non-empty database is safe.
    """
    if count < 0:
        raise ValueError("count must not be negative")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    today = today or dt.date.today()
    with engine.connect() as conn:
        tag_ids = {
            name: tag_id
            for tag_id, name in conn.execute(
                select(Tag.id, Tag.name).where(Tag.kind == TagKind.qualification).order_by(Tag.id)
            )
        }
        next_id = (conn.scalar(select(func.max(_ENTERPRISE.c.id))) or 0) + 1
        next_qualification_id = (conn.scalar(select(func.max(_QUALIFICATION.c.id))) or 0) + 1
        taken = set(conn.scalars(select(_ENTERPRISE.c.credit_code)))

    rows = reissue_taken_codes(
        generate_enterprises(seed=seed, count=count, qualification_names=list(tag_ids), today=today),
        taken=taken,
        seed=seed,
    )
    started = time.perf_counter()
    done = 0
    while batch := list(itertools.islice(rows, batch_size)):
        now = utcnow()
        enterprises: list[dict[str, Any]] = []
        qualifications: list[dict[str, Any]] = []
        for row in batch:
            held = row.pop("qualifications")
            row["id"] = next_id
            row["profile_updated_at"] = row["created_at"] = row["updated_at"] = now
            enterprises.append(row)
            for name, until in held:
                qualifications.append(
                    {
                        "id": next_qualification_id,
                        "enterprise_id": next_id,
                        "tag_id": tag_ids[name],
                        "valid_until_on": until,
                    }
                )
                next_qualification_id += 1
            next_id += 1
        with engine.begin() as conn:
            conn.execute(insert(_ENTERPRISE), enterprises)
            if qualifications:
                conn.execute(insert(_QUALIFICATION), qualifications)
        done += len(batch)
        if progress is not None:
            progress(done)
        log.debug("synth: %d enterprises inserted", done)

    if done:
        # Ids were assigned here, not drawn from the serial sequences: move them past the new rows.
        with engine.begin() as conn:
            advance_id_sequences(conn, ("enterprise", "enterprise_qualification"))
    elapsed = time.perf_counter() - started
    log.info("synth: inserted %d enterprises in %.1f s (%.0f rows/s)", done, elapsed, done / elapsed if elapsed else 0)
    return done
