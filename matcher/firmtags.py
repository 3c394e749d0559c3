"""Firms' side of the dual tags, derived from their profile and texts and stored (`enterprise_tag`).

Tags are derived again only for firms whose profile changed since they were tagged, or that were
tagged with another vocabulary (`firm_tag_state` keeps when and with which signature).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence

from sqlalchemy import delete, insert, or_, select
from sqlalchemy.orm import Session

from catalog.fields import FIELDS
from catalog.models import Tag
from core.db import utcnow
from matcher import eligibility
from matcher import tags as tags_mod
from matcher.models import EnterpriseTag, FirmTagState
from profiles.models import Enterprise, EnterpriseQualification

_COLUMNS = tuple(n for n, f in FIELDS.items() if f.type != "set" and n != "years_established")


def vocabulary_signature(vocab: tags_mod.Vocabulary) -> str:
    """Return a digest of the vocabulary: names, kinds and synonyms."""
    entries = sorted(vocab.tags.values(), key=lambda i: i.name)
    text = "\n".join(f"{info.name}\t{info.kind}\t{'|'.join(sorted(info.synonyms))}" for info in entries)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def stale_ids(db: Session, *, signature: str) -> list[int]:
    """Return firms never tagged, tagged before their profile last changed, or with another vocabulary."""
    return list(
        db.scalars(
            select(Enterprise.id)
            .outerjoin(FirmTagState, FirmTagState.enterprise_id == Enterprise.id)
            .where(
                (FirmTagState.enterprise_id.is_(None))
                | (FirmTagState.tagged_at < Enterprise.profile_updated_at)
                | (FirmTagState.vocabulary != signature)
            )
            .order_by(Enterprise.id)
        )
    )


def derive(
    db: Session, enterprise_ids: Sequence[int], vocab: tags_mod.Vocabulary, *, today: dt.date
) -> dict[int, dict[str, str]]:
    """Return tag → why for each firm, from its stored profile (no write)."""
    ids = list(enterprise_ids)
    rows = db.execute(
        select(
            Enterprise.id,
            *(getattr(Enterprise, n) for n in _COLUMNS),
            Enterprise.business_scope,
            Enterprise.products,
            Enterprise.needs,
        ).where(Enterprise.id.in_(ids))
    ).all()
    held: dict[int, set[str]] = {}
    for eid, name in db.execute(
        select(EnterpriseQualification.enterprise_id, Tag.name)
        .join(Tag, Tag.id == EnterpriseQualification.tag_id)
        .where(
            EnterpriseQualification.enterprise_id.in_(ids),
            or_(EnterpriseQualification.valid_until_on.is_(None), EnterpriseQualification.valid_until_on >= today),
        )
    ):
        held.setdefault(eid, set()).add(name)
    out = {}
    for row in rows:
        facts: dict[str, object] = {n: eligibility._clean_fact(n, getattr(row, n)) for n in _COLUMNS}
        established = facts.get("established_on")
        facts["years_established"] = (
            eligibility.whole_years(established, today) if isinstance(established, dt.date) else None
        )
        facts["qualifications"] = frozenset(held.get(row.id, ()))
        out[row.id] = tags_mod.enterprise_tags(facts, (row.business_scope, row.products, row.needs), vocab)
    return out


def store(db: Session, derived: dict[int, dict[str, str]], vocab: tags_mod.Vocabulary) -> None:
    """Replace the stored tags of these firms and record that they are current."""
    ids = list(derived)
    signature = vocabulary_signature(vocab)
    now = utcnow()
    for start in range(0, len(ids), 900):
        part = ids[start : start + 900]
        db.execute(delete(EnterpriseTag).where(EnterpriseTag.enterprise_id.in_(part)))
        db.execute(delete(FirmTagState).where(FirmTagState.enterprise_id.in_(part)))
    for start in range(0, len(ids), 5_000):
        db.execute(
            insert(FirmTagState),
            [{"enterprise_id": eid, "vocabulary": signature, "tagged_at": now} for eid in ids[start : start + 5_000]],
        )
    rows = [
        {"enterprise_id": eid, "tag_id": vocab.tags[name].id, "reason": why}
        for eid, tags in derived.items()
        for name, why in tags.items()
    ]
    for start in range(0, len(rows), 5_000):
        db.execute(insert(EnterpriseTag), rows[start : start + 5_000])


def sync(db: Session, enterprise_ids: Sequence[int], *, today: dt.date) -> dict[int, dict[str, str]]:
    """Derive and store the tags of these firms; return them."""
    vocab = tags_mod.Vocabulary.from_db(db)
    derived: dict[int, dict[str, str]] = {}
    ids = list(enterprise_ids)
    for start in range(0, len(ids), 900):
        derived.update(derive(db, ids[start : start + 900], vocab, today=today))
    store(db, derived, vocab)
    return derived
