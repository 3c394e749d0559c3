"""Firms' side of the dual tags, derived from their profile and texts and stored (`enterprise_tag`).

Tags are derived again only for firms whose profile changed since they were tagged, or that were
tagged with another vocabulary (`firm_tag_state` keeps when and with which signature).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, any_, delete, insert, literal, or_, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from catalog.models import Tag
from core.db import Database, driver_cursor, utcnow
from matcher import eligibility
from matcher import tags as tags_mod
from matcher.models import EnterpriseTag, FirmTagState
from profiles.models import Enterprise, EnterpriseQualification


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


BATCH = 5_000  # firms per transaction of `sync_all`
_FACTS = ("size_class", "industry_code", "region_code", "established_on", "export_revenue")  # what tagging reads
_REASONS: dict[str, str] = {}  # reason → the same escaped for COPY's text format


def _in_ids(column: Any, ids: Sequence[int], dialect: str) -> Any:
    """`column IN ids` as one array parameter on PostgreSQL (any count), a plain IN elsewhere (≤ 900 ids)."""
    if dialect == "postgresql":
        return column == any_(literal(list(ids), ARRAY(BigInteger)))
    return column.in_(list(ids))


def _parts(ids: Sequence[int], dialect: str) -> list[list[int]]:
    step = (len(ids) or 1) if dialect == "postgresql" else 900
    return [list(ids[i : i + step]) for i in range(0, len(ids), step)]


def derive(
    db: Session,
    enterprise_ids: Sequence[int],
    vocab: tags_mod.Vocabulary,
    *,
    today: dt.date,
    tagger: tags_mod.EnterpriseTagger | None = None,
) -> dict[int, dict[str, str]]:
    """Return tag → why for each firm, from its stored profile (no write); Core reads, no ORM objects."""
    tagger = tagger or tags_mod.EnterpriseTagger(vocab)
    dialect = db.get_bind().dialect.name
    held: dict[int, set[str]] = {}
    rows: list[Any] = []
    for part in _parts(enterprise_ids, dialect):
        rows.extend(
            db.execute(
                select(
                    Enterprise.id,
                    *(getattr(Enterprise, n) for n in _FACTS),
                    Enterprise.business_scope,
                    Enterprise.products,
                    Enterprise.needs,
                ).where(_in_ids(Enterprise.id, part, dialect))
            )
        )
        for eid, name in db.execute(
            select(EnterpriseQualification.enterprise_id, Tag.name)
            .join(Tag, Tag.id == EnterpriseQualification.tag_id)
            .where(
                _in_ids(EnterpriseQualification.enterprise_id, part, dialect),
                or_(EnterpriseQualification.valid_until_on.is_(None), EnterpriseQualification.valid_until_on >= today),
            )
        ):
            held.setdefault(eid, set()).add(name)
    out = {}
    for row in rows:
        facts: dict[str, object] = {n: eligibility._clean_fact(n, getattr(row, n)) for n in _FACTS}
        established = facts["established_on"]
        facts["years_established"] = (
            eligibility.whole_years(established, today) if isinstance(established, dt.date) else None
        )
        facts["qualifications"] = frozenset(held.get(row.id, ()))
        out[row.id] = tagger.tags(facts, (row.business_scope, row.products, row.needs))
    return out


def store(db: Session, derived: dict[int, dict[str, str]], vocab: tags_mod.Vocabulary) -> None:
    """Replace the stored tags of these firms and record that they are current (COPY on PostgreSQL)."""
    ids = list(derived)
    signature = vocabulary_signature(vocab)
    now = utcnow()
    dialect = db.get_bind().dialect.name
    for part in _parts(ids, dialect):
        db.execute(delete(EnterpriseTag).where(_in_ids(EnterpriseTag.enterprise_id, part, dialect)))
        db.execute(delete(FirmTagState).where(_in_ids(FirmTagState.enterprise_id, part, dialect)))
    if not ids:
        return
    tag_ids = {name: info.id for name, info in vocab.tags.items()}
    if dialect == "postgresql":
        _copy(db, derived, tag_ids, signature, now)
        return
    for start in range(0, len(ids), 5_000):
        db.execute(
            insert(FirmTagState),
            [{"enterprise_id": eid, "vocabulary": signature, "tagged_at": now} for eid in ids[start : start + 5_000]],
        )
    rows = [
        {"enterprise_id": eid, "tag_id": tag_ids[name], "reason": why}
        for eid, tags in derived.items()
        for name, why in tags.items()
    ]
    for start in range(0, len(rows), 5_000):
        db.execute(insert(EnterpriseTag), rows[start : start + 5_000])


def _escape(text: str) -> str:
    """Escape a value for COPY's text format."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _copy(
    db: Session, derived: dict[int, dict[str, str]], tag_ids: dict[str, int], signature: str, now: dt.datetime
) -> None:
    """COPY the firms' tag rows and tag states in text format, one buffer per few thousand firms."""
    cursor = driver_cursor(db.connection())
    reasons = _REASONS
    ids = list(derived)
    with cursor.copy("COPY enterprise_tag (enterprise_id, tag_id, reason) FROM STDIN") as copy:
        for start in range(0, len(ids), 2_000):
            lines = []
            for eid in ids[start : start + 2_000]:
                for name, why in derived[eid].items():
                    escaped = reasons.get(why)
                    if escaped is None:
                        escaped = reasons[why] = _escape(why)
                    lines.append(f"{eid}\t{tag_ids[name]}\t{escaped}\n")
            copy.write("".join(lines).encode())
    at, sig = now.isoformat(), _escape(signature)
    with cursor.copy("COPY firm_tag_state (enterprise_id, vocabulary, tagged_at) FROM STDIN") as copy:
        for start in range(0, len(ids), 20_000):
            copy.write("".join(f"{eid}\t{sig}\t{at}\n" for eid in ids[start : start + 20_000]).encode())


def sync(
    db: Session, enterprise_ids: Sequence[int], *, today: dt.date, vocab: tags_mod.Vocabulary | None = None
) -> dict[int, dict[str, str]]:
    """Derive and store the tags of these firms; return them."""
    vocab = vocab or tags_mod.Vocabulary.from_db(db)
    derived = derive(db, enterprise_ids, vocab, today=today)
    store(db, derived, vocab)
    return derived


def sync_all(database: Database, enterprise_ids: Sequence[int], *, today: dt.date, batch: int = BATCH) -> int:
    """Derive and store the tags of many firms, `batch` firms per short transaction; return how many."""
    with database.session() as db:
        vocab = tags_mod.Vocabulary.from_db(db)
    tagger = tags_mod.EnterpriseTagger(vocab)
    ids = list(enterprise_ids)
    for start in range(0, len(ids), batch):
        part = ids[start : start + batch]
        with database.writer_session() as db:
            store(db, derive(db, part, vocab, today=today, tagger=tagger), vocab)
    return len(ids)
