"""Demo enterprises: a realistic population of firms for the demo database and manual testing."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.models import Tag, TagKind
from profiles.generate import generate_enterprises, reissue_taken_codes
from profiles.models import Enterprise, EnterpriseQualification

_FLUSH_EVERY = 500  # keeps the unit of work small while loading thousands of firms


def load_demo_enterprises(*, db: Session, count: int = 2000, seed: int = 20261123, today: dt.date | None = None) -> int:
    """Add count generated enterprises and their qualifications to the session; return count.

    Qualifications are granted only for names in the qualification tag vocabulary, so load the
    taxonomy first. Credit codes already present are reissued. The caller commits.
    """
    today = today or dt.date.today()
    tag_ids = {
        tag.name: tag.id for tag in db.scalars(select(Tag).where(Tag.kind == TagKind.qualification).order_by(Tag.id))
    }
    taken = set(db.scalars(select(Enterprise.credit_code)))
    rows = reissue_taken_codes(
        generate_enterprises(seed=seed, count=count, qualification_names=list(tag_ids), today=today),
        taken=taken,
        seed=seed,
    )
    for i, row in enumerate(rows, start=1):
        held = row.pop("qualifications")
        enterprise = Enterprise(**row)
        enterprise.qualifications = [
            EnterpriseQualification(tag_id=tag_ids[name], valid_until_on=until) for name, until in held
        ]
        db.add(enterprise)
        if i % _FLUSH_EVERY == 0:
            db.flush()
    db.flush()
    return count


def demo_firm_id(*, db: Session) -> int | None:
    """Return the firm the demo firm user signs in as: a complete 中山 profile, else the first firm."""
    complete = db.scalar(
        select(Enterprise.id)
        .where(Enterprise.region_code == "442000", Enterprise.completeness == 100)
        .order_by(Enterprise.id)
        .limit(1)
    )
    return complete or db.scalar(select(Enterprise.id).order_by(Enterprise.id).limit(1))
