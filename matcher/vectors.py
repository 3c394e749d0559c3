"""Firm profile vectors (`firm_vector`): embedded once per profile text, read per chunk by the pipeline.

A firm's vector blends its profile text and, when it wrote one, its needs text, as
`NEEDS_SHARE × needs + (1 − NEEDS_SHARE) × profile`. Cosine with a policy is linear in the vector,
so the pipeline's one matrix product gives the same similarity the two separate ones would.

Only firms whose profile changed since they were embedded are read again, and of those only
texts that really changed are embedded (the digest of both texts is kept); embedding runs with no
transaction open, and vectors are written in short transactions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sqlalchemy import and_, inspect, or_, select
from sqlalchemy.orm import Session

from catalog.models import Tag
from core.db import Database, utcnow
from matcher.embeddings import compose_enterprise_text
from matcher.models import FirmVector
from profiles.models import Enterprise, EnterpriseQualification

NEEDS_SHARE = 0.6  # weight of the needs text in the semantic similarity, when a firm wrote one
EMBED_BATCH = 64
READ_BATCH = 2_000


def firm_texts(row: Any, qualifications: Sequence[str], industry_name: Callable[[str], str | None]) -> tuple[str, str]:
    """Return (profile text, needs text) of a firm row (attributes of `Enterprise`)."""
    code = row.industry_code
    profile = compose_enterprise_text(
        industry=industry_name(code) if code else None,
        business_scope=row.business_scope,
        products=row.products,
        needs=row.needs,
        qualifications=qualifications,
    )
    return profile, (row.needs or "").strip()


def text_key(model_id: str, profile: str, needs: str) -> str:
    """Return the digest that says whether a firm's embedded texts changed."""
    return hashlib.blake2b(f"{model_id}\x00{profile}\x00{needs}".encode(), digest_size=16).hexdigest()


def blend(profile: np.ndarray, needs: np.ndarray | None) -> np.ndarray:
    """Blend a profile vector with a needs vector (None: the profile alone)."""
    if needs is None:
        return profile
    return (1 - NEEDS_SHARE) * profile + NEEDS_SHARE * needs


def stale_ids(db: Session, *, model_id: str, enterprise_ids: Sequence[int] | None = None) -> list[int]:
    """Return firms with no vector of this model, or one older than their profile."""
    q = (
        select(Enterprise.id)
        .outerjoin(FirmVector, FirmVector.enterprise_id == Enterprise.id)
        .where(
            or_(
                FirmVector.enterprise_id.is_(None),
                FirmVector.model_id != model_id,
                FirmVector.embedded_at < Enterprise.profile_updated_at,
            )
        )
        .order_by(Enterprise.id)
    )
    if enterprise_ids is not None:
        wanted = sorted(set(enterprise_ids))
        out: list[int] = []
        for start in range(0, len(wanted), 900):
            out.extend(db.scalars(q.where(Enterprise.id.in_(wanted[start : start + 900]))))
        return out
    return list(db.scalars(q))


def _texts(db: Session, ids: Sequence[int], today: dt.date, model_id: str) -> dict[int, tuple[str, str, str]]:
    from core.codes import industry_name

    rows = db.execute(
        select(
            Enterprise.id,
            Enterprise.industry_code,
            Enterprise.business_scope,
            Enterprise.products,
            Enterprise.needs,
        ).where(Enterprise.id.in_(list(ids)))
    ).all()
    quals: dict[int, list[str]] = {}
    for eid, name in db.execute(
        select(EnterpriseQualification.enterprise_id, Tag.name)
        .join(Tag, Tag.id == EnterpriseQualification.tag_id)
        .where(
            EnterpriseQualification.enterprise_id.in_(list(ids)),
            or_(EnterpriseQualification.valid_until_on.is_(None), EnterpriseQualification.valid_until_on >= today),
        )
        .order_by(EnterpriseQualification.id)
    ):
        quals.setdefault(eid, []).append(name)
    out = {}
    for row in rows:
        profile, needs = firm_texts(row, quals.get(row.id, []), industry_name)
        out[row.id] = (profile, needs, text_key(model_id, profile, needs))
    return out


def text_keys(db: Session, ids: Sequence[int], *, model_id: str, today: dt.date | None = None) -> dict[int, str]:
    """Return each firm's current text digest (`text_key`): what `embed` compares to decide whether to embed."""
    today = today or dt.date.today()
    out: dict[int, str] = {}
    for start in range(0, len(ids), 900):
        out.update({eid: key for eid, (_, _, key) in _texts(db, ids[start : start + 900], today, model_id).items()})
    return out


def embed(
    database: Database,
    encode: Callable[[list[str], str], np.ndarray],
    *,
    model_id: str,
    enterprise_ids: Sequence[int] | None = None,
    today: dt.date | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    encode_batch: int = EMBED_BATCH,
) -> int:
    """Embed the firms whose texts changed (all stale firms, or the given ones); return how many were embedded.

    `encode(texts, role)` embeds through the cache, `encode_batch` firms at a time. `progress(done, total)` is
    called per batch.
    """
    today = today or dt.date.today()
    with database.session() as db:
        stale = stale_ids(db, model_id=model_id, enterprise_ids=enterprise_ids)
    embedded = 0
    for start in range(0, len(stale), READ_BATCH):
        if should_stop and should_stop():
            break
        batch = stale[start : start + READ_BATCH]
        with database.session() as db:
            texts = _texts(db, batch, today, model_id)
            known = dict(
                db.execute(
                    select(FirmVector.enterprise_id, FirmVector.text_key).where(
                        FirmVector.enterprise_id.in_(batch), FirmVector.model_id == model_id
                    )
                )
                .tuples()
                .all()
            )
        todo = [eid for eid in batch if eid in texts and known.get(eid) != texts[eid][2]]
        unchanged = [eid for eid in batch if eid in texts and known.get(eid) == texts[eid][2]]
        rows = []
        for k in range(0, len(todo), encode_batch):
            part = todo[k : k + encode_batch]
            profiles = encode([texts[eid][0] for eid in part], "query")
            with_needs = [eid for eid in part if texts[eid][1]]
            needs = encode([texts[eid][1] for eid in with_needs], "query") if with_needs else None
            needs_row = {eid: i for i, eid in enumerate(with_needs)}
            for i, eid in enumerate(part):
                j = needs_row.get(eid)
                vector = blend(profiles[i], needs[j] if needs is not None and j is not None else None)
                rows.append((eid, texts[eid][2], vector.astype(np.float16).tobytes()))
            embedded += len(part)
            if progress:
                progress(min(start + k + len(part), len(stale)), len(stale))
            if should_stop and should_stop():
                break
        _write(database, rows, unchanged, model_id)
        if progress and not todo:
            progress(min(start + len(batch), len(stale)), len(stale))
    return embedded


def _write(database: Database, rows: list[tuple[int, str, bytes]], unchanged: list[int], model_id: str) -> None:
    now = utcnow()
    with database.writer_session() as db:
        if rows:
            ids = [r[0] for r in rows]
            db.query(FirmVector).filter(FirmVector.enterprise_id.in_(ids)).delete(synchronize_session=False)
            db.bulk_insert_mappings(
                inspect(FirmVector),
                [
                    {"enterprise_id": eid, "model_id": model_id, "text_key": key, "vector": blob, "embedded_at": now}
                    for eid, key, blob in rows
                ],
            )
        if unchanged:
            db.query(FirmVector).filter(
                and_(FirmVector.enterprise_id.in_(unchanged), FirmVector.model_id == model_id)
            ).update({FirmVector.embedded_at: now}, synchronize_session=False)


def load(db: Session, enterprise_ids: np.ndarray, *, model_id: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (vectors float32 aligned with the ids, whether each firm has one)."""
    out = np.zeros((len(enterprise_ids), dim), dtype=np.float32)
    has = np.zeros(len(enterprise_ids), dtype=bool)
    if not len(enterprise_ids):
        return out, has
    position = {int(eid): i for i, eid in enumerate(enterprise_ids)}
    lo, hi = int(enterprise_ids.min()), int(enterprise_ids.max())
    q = select(FirmVector.enterprise_id, FirmVector.vector).where(
        FirmVector.model_id == model_id, FirmVector.enterprise_id.between(lo, hi)
    )
    if len(enterprise_ids) < (hi - lo + 1) // 4:  # sparse ids: ask for them, not the range
        q = q.where(FirmVector.enterprise_id.in_([int(e) for e in enterprise_ids]))
    for eid, blob in db.execute(q):
        i = position.get(eid)
        if i is not None and len(blob) == dim * 2:
            out[i] = np.frombuffer(blob, dtype=np.float16)
            has[i] = True
    return out, has
