"""The one loader of many firms' facts: profile columns, valid qualifications and stored tags.

Batch matching, push fan-out and change notices, curators' previews and targeting all judge firms
through a `FactsFrame` built here. Rows come through the driver in blocks and are parsed a column
at a time by pandas (not ORM objects): a million firms' columns arrive in seconds.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from catalog.fields import FIELDS
from catalog.models import Tag
from core.db import driver_cursor
from matcher.eligibility import FactsFrame
from matcher.models import EnterpriseTag
from profiles.models import Enterprise, EnterpriseQualification

# Profile columns a rule may test (years since establishment derive from the date).
COLUMNS = tuple(name for name, f in FIELDS.items() if f.type != "set" and name != "years_established")


def _fetch(db: Session, stmt: Select[Any], names: Sequence[str]) -> pd.DataFrame:
    connection = db.connection()
    cursor = driver_cursor(connection)
    try:
        cursor.execute(*_compiled(stmt, connection.dialect))
        parts = [
            pd.DataFrame.from_records(batch, columns=list(names))
            for batch in iter(lambda: cursor.fetchmany(100_000), [])
        ]
    finally:
        cursor.close()
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(names))


def _compiled(stmt: Select[Any], dialect: Any) -> tuple[str, Any]:
    compiled = stmt.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.params
    if dialect.paramstyle in ("qmark", "numeric"):
        return str(compiled), tuple(params[name] for name in compiled.positiontup or ())
    return str(compiled), params


def _where(stmt: Select[Any], column: Any, ids: np.ndarray | None, id_range: tuple[int, int] | None) -> Select[Any]:
    if id_range is not None:
        stmt = stmt.where(column.between(*id_range))
    if ids is not None:
        stmt = stmt.where(column.in_([int(i) for i in ids]))
    return stmt


def qualification_ends(
    db: Session, *, today: dt.date, ids: np.ndarray | None = None, id_range: tuple[int, int] | None = None
) -> dict[int, dt.date]:
    """Return, per firm (all, an id range, or given ids), the last valid day of its first qualification to expire.

    Only qualifications still valid `today` count (those that expired before are no longer facts).
    `matcher.wording.valid_through` ends the stored verdicts' validity there.
    """
    end = func.min(EnterpriseQualification.valid_until_on)
    stmt = _where(
        select(EnterpriseQualification.enterprise_id, end)
        .where(EnterpriseQualification.valid_until_on >= today)
        .group_by(EnterpriseQualification.enterprise_id),
        EnterpriseQualification.enterprise_id,
        ids,
        id_range,
    )
    return {int(eid): day for eid, day in db.execute(stmt).tuples()}


def load_frame(
    db: Session,
    *,
    today: dt.date,
    ids: np.ndarray | None = None,
    id_range: tuple[int, int] | None = None,
    fields: Collection[str] | None = None,
    members: Mapping[str, Collection[str]] | None = None,
    extra: Sequence[str] = (),
) -> tuple[FactsFrame, pd.DataFrame]:
    """Return the facts of firms (all, an id range, or given ids) in id order, and the raw columns.

    `fields` limits the profile columns read (default every one a rule may test); `members` limits
    the set fields to those names (default: every qualification and tag). `extra` names more
    `Enterprise` columns to return in the DataFrame (e.g. profile_updated_at). A firm's
    qualifications and tags are always known: an empty set when it holds none.
    """
    if fields is None:
        wanted = COLUMNS
    else:
        chosen = {"established_on" if n == "years_established" else n for n in fields}
        wanted = tuple(n for n in COLUMNS if n in chosen)
    names = ["id", *wanted, *(c for c in extra if c not in wanted)]
    stmt = _where(
        select(*(getattr(Enterprise, n) for n in names)).order_by(Enterprise.id), Enterprise.id, ids, id_range
    )
    table = _fetch(db, stmt, names)
    firm_ids = table["id"].to_numpy(np.int64)
    frame = FactsFrame.from_dataframe(table[["id", *wanted]], today=today)
    set_fields = [n for n in ("qualifications", "tags") if members is None or n in members]
    if fields is not None:
        set_fields = [n for n in set_fields if n in fields or (members and n in members)]
    for name in set_fields:
        names_wanted = None if members is None or name not in members else sorted(members[name])
        if name == "qualifications":
            valid = or_(
                EnterpriseQualification.valid_until_on.is_(None), EnterpriseQualification.valid_until_on >= today
            )
            held = (
                select(EnterpriseQualification.enterprise_id, Tag.name)
                .join(Tag, Tag.id == EnterpriseQualification.tag_id)
                .where(valid)
            )
            column = EnterpriseQualification.enterprise_id
        else:
            held = select(EnterpriseTag.enterprise_id, Tag.name).join(Tag, Tag.id == EnterpriseTag.tag_id)
            column = EnterpriseTag.enterprise_id
        if names_wanted is not None:
            held = held.where(Tag.name.in_(names_wanted))
        if id_range is not None:
            held = held.where(column.between(*id_range))
        elif ids is not None and len(ids) <= 5_000:
            held = held.where(column.in_([int(i) for i in ids]))
        pairs = _fetch(db, held, ["enterprise_id", "name"])
        matrix: dict[str, np.ndarray] = {n: np.zeros(len(firm_ids), dtype=bool) for n in names_wanted or ()}
        if len(pairs):
            rows = np.searchsorted(firm_ids, pairs["enterprise_id"].to_numpy(np.int64))
            inside = (rows < len(firm_ids)) & (firm_ids[np.minimum(rows, len(firm_ids) - 1)] == pairs["enterprise_id"])
            for tag, group in pd.Series(rows[inside]).groupby(pairs["name"].to_numpy()[inside]):
                column_ = matrix.setdefault(str(tag), np.zeros(len(firm_ids), dtype=bool))
                column_[group.to_numpy()] = True
        frame.sets[name] = matrix
        frame.set_known[name] = np.ones(len(firm_ids), dtype=bool)
    return frame, table


def tag_sets(frame: FactsFrame, field: str = "tags") -> list[frozenset[str]]:
    """Return each firm's members of a set field as Python sets (for shared-tag wording and tag matrices).

    Firms holding the same members share one frozenset, built once per distinct combination the
    way each firm's own would be (members added in column order), so it iterates alike.
    """
    columns = frame.sets.get(field, {})
    if not columns or not frame.size:
        return [frozenset() for _ in range(frame.size)]
    names = list(columns)
    matrix = np.column_stack([np.asarray(columns[name], dtype=bool) for name in names])
    packed = np.ascontiguousarray(np.packbits(matrix, axis=1))
    keys = packed.view(np.dtype((np.void, packed.shape[1]))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    shared = []
    for row in first.tolist():
        members: set[str] = set()
        for j in np.flatnonzero(matrix[row]).tolist():
            members.add(names[j])
        shared.append(frozenset(members))
    return [shared[k] for k in inverse.ravel().tolist()]


class FactsCache:
    """Every firm's facts for curators' live previews, rebuilt only when firms, profiles or firm tags change.

    Owned by the `Matcher` of a process (not a module global), so its lifetime is the app's.
    """

    def __init__(self) -> None:
        self._signature: tuple[Any, ...] | None = None
        self._frame: FactsFrame | None = None
        self._lock = threading.Lock()

    def frame(self, db: Session, *, today: dt.date) -> FactsFrame:
        """Return every firm's facts as of today."""
        count, latest = db.execute(select(func.count(), func.max(Enterprise.profile_updated_at))).one()
        tag_rows = db.scalar(select(func.count()).select_from(EnterpriseTag)) or 0
        signature = (count, latest, tag_rows, today)
        with self._lock:
            if self._frame is not None and self._signature == signature:
                return self._frame
        frame, _ = load_frame(db, today=today)
        with self._lock:
            self._signature, self._frame = signature, frame
        return frame
