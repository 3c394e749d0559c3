"""Each firm's ranked matches, packed into one row (`firm_match`): written in bulk, read by key.

The payload is binary and versioned: a header, the top candidates (eligible or likely, best first)
and the near misses (ineligible on exactly one condition). A candidate keeps what ranking and the
card need and cannot be cheaply re-derived: its verdict, its rule / tag / semantic components and
the raw cosine. Since format 2 the payload ends with the worded verdicts of every candidate and near
miss and the firm's change suggestions ("what would open more policies"), computed by the batch
(`matcher.wording`), zlib-compressed JSON; a page reads them instead of judging rule trees. A
format-1 payload (no wording) is still read: its pages word the reasons when read.

Measured alternative (bench/recommend_http.py reports both): one row per stored item. A blob costs
one primary-key read per request and one row per firm per batch write; rows cost ~70 rows per firm
written and an ordered range read.
"""

from __future__ import annotations

import datetime as dt
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import bindparam, delete, insert, select
from sqlalchemy.orm import Session

from core.db import driver_cursor, utcnow
from matcher.models import FirmMatch

FORMAT = 2
_HEADER = struct.Struct("<BHH")  # format, candidates, near misses
_WORDS = struct.Struct("<I")  # format 2: length of the compressed wording that ends the payload
ITEM = np.dtype(
    [
        ("policy", "<i4"),
        ("status", "i1"),  # 2 eligible, 1 likely
        ("rules", "<u2"),  # components ×10⁴ (they are stored rounded to four places)
        ("tags", "<u2"),
        ("semantic", "<u2"),
        ("cosine", "<i2"),  # raw cosine ×10⁴; NO_COSINE when the firm has no vector yet
        ("base", "<f4"),  # weighted rules + tags + semantic; urgency and feedback are added on read
    ]
)
NEAR = np.dtype([("policy", "<i4"), ("base", "<f4")])
NO_COSINE = -32768
SCALE = 10_000


@dataclass
class Stored:
    """A firm's stored matches, decoded."""

    enterprise_id: int
    revision: int
    profile_at: dt.datetime
    computed_at: dt.datetime
    eligible: int
    likely: int
    items: np.ndarray  # ITEM records, best first
    near: np.ndarray  # NEAR records, best first
    words: bytes = b""  # compressed wording (format 2), decoded by matcher.wording when a page needs it


def header(items: int, near: int) -> bytes:
    """Return a payload's header for this many candidates and near misses (records follow it)."""
    return _HEADER.pack(FORMAT, items, near)


# zlib level of the stored wording. Measured on 20,000 firms' page wording (408 MB of JSON, 20 KB a firm):
# level 6 (zlib's default) 1.74 CPU s and 26.8 MB; level 3 0.92 s and 30.5 MB (+14 %); level 1 0.90 s and
# 31.2 MB (+16 %). Levels 1-3 share zlib's fast strategy; 3 finds more matches for the same time.
# Decompressing costs the same (0.56 s) whatever the level.
WORDS_LEVEL = 3


def words_section(words: bytes | None) -> bytes:
    """Return the wording section that ends a format-2 payload (`matcher.wording.pack`, stored compressed)."""
    packed = zlib.compress(words, WORDS_LEVEL) if words else b""
    return _WORDS.pack(len(packed)) + packed


def encode(items: np.ndarray, near: np.ndarray, words: bytes | None = None) -> bytes:
    """Pack candidates and near misses (ITEM and NEAR records), and their wording when given, into a payload.

    `words` is the serialised wording (`matcher.wording.pack`); it is stored compressed.
    """
    return (
        header(len(items), len(near))
        + items.astype(ITEM).tobytes()
        + near.astype(NEAR).tobytes()
        + words_section(words)
    )


def _split(payload: bytes) -> tuple[np.ndarray, np.ndarray, bytes]:
    version, n_items, n_near = _HEADER.unpack_from(payload)
    if version not in (1, FORMAT):
        raise ValueError(f"unknown firm_match payload format {version}")
    start = _HEADER.size
    items = np.frombuffer(payload, dtype=ITEM, count=n_items, offset=start)
    start += n_items * ITEM.itemsize
    near = np.frombuffer(payload, dtype=NEAR, count=n_near, offset=start)
    start += n_near * NEAR.itemsize
    if version == 1:
        return items, near, b""
    (size,) = _WORDS.unpack_from(payload, start)
    start += _WORDS.size
    return items, near, bytes(payload[start : start + size])


def decode(payload: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Unpack a payload into (candidates, near misses)."""
    items, near, _ = _split(payload)
    return items, near


def decode_words(payload: bytes) -> bytes:
    """Return a payload's serialised wording (`matcher.wording.unpack` reads it); empty when it has none."""
    return words_of(_split(payload)[2])


def words_of(compressed: bytes) -> bytes:
    """Decompress stored wording (empty stays empty)."""
    return zlib.decompress(compressed) if compressed else b""


_COLUMNS = (
    FirmMatch.enterprise_id,
    FirmMatch.revision,
    FirmMatch.profile_at,
    FirmMatch.computed_at,
    FirmMatch.eligible,
    FirmMatch.likely,
    FirmMatch.payload,
)
# One prepared statement: a page reads it per request.
_READ = select(*_COLUMNS).where(FirmMatch.enterprise_id == bindparam("enterprise_id"))


def _stored(row: Any) -> Stored:
    items, near, words = _split(row.payload)
    return Stored(
        row.enterprise_id, row.revision, row.profile_at, row.computed_at, row.eligible, row.likely, items, near, words
    )


def read(db: Session, enterprise_id: int) -> Stored | None:
    """Return a firm's stored matches, or None when none were computed yet."""
    row = db.connection().execute(_READ, {"enterprise_id": enterprise_id}).first()
    return None if row is None else _stored(row)


def read_many(db: Session, enterprise_ids: Sequence[int]) -> dict[int, Stored]:
    """Return the stored matches of several firms (those that have some)."""
    out: dict[int, Stored] = {}
    for start in range(0, len(enterprise_ids), 900):
        chunk = list(enterprise_ids[start : start + 900])
        for row in db.execute(select(*_COLUMNS).where(FirmMatch.enterprise_id.in_(chunk))):
            out[row.enterprise_id] = _stored(row)
    return out


@dataclass
class Row:
    """One firm's matches ready to write."""

    enterprise_id: int
    revision: int
    profile_at: dt.datetime
    eligible: int
    likely: int
    payload: bytes


def write(db: Session, rows: Sequence[Row]) -> int:
    """Replace the stored matches of these firms (bulk: COPY on PostgreSQL, executemany elsewhere)."""
    if not rows:
        return 0
    now = utcnow()
    ids = [r.enterprise_id for r in rows]
    for start in range(0, len(ids), 900):
        db.execute(delete(FirmMatch).where(FirmMatch.enterprise_id.in_(ids[start : start + 900])))
    if db.get_bind().dialect.name == "postgresql":
        _copy(db, rows, now)
    else:
        db.execute(
            insert(FirmMatch),
            [
                {
                    "enterprise_id": r.enterprise_id,
                    "revision": r.revision,
                    "profile_at": r.profile_at,
                    "computed_at": now,
                    "eligible": r.eligible,
                    "likely": r.likely,
                    "payload": r.payload,
                }
                for r in rows
            ],
        )
    return len(rows)


def _copy(db: Session, rows: Sequence[Row], now: dt.datetime) -> None:
    """COPY the rows in text format, built as one buffer per few thousand rows (no per-value adaptation)."""
    at = now.isoformat()
    copy_lines(
        db,
        "firm_match (enterprise_id, revision, profile_at, computed_at, eligible, likely, payload)",
        # bytea as hex; COPY's text format reads a backslash as an escape, hence "\\x".
        (
            f"{r.enterprise_id}\t{r.revision}\t{r.profile_at.isoformat()}\t{at}\t{r.eligible}\t{r.likely}"
            f"\t\\\\x{r.payload.hex()}\n"
            for r in rows
        ),
    )


COPY_PART = 5_000  # lines per buffer written to COPY


def copy_lines(db: Session, target: str, lines: Iterable[str], part: int = COPY_PART) -> int:
    """COPY lines of text format (tab-separated, newline-terminated, escaped: `copy_text`) into
    `target` ("table (columns …)") on PostgreSQL, one buffer per `part` lines; return the lines written.

    The bulk write of the batch: firms' stored matches (`write`) and the kept lists' rows
    (`matcher.runs`). Runs in the session's transaction.
    """
    cursor = driver_cursor(db.connection())
    written = 0
    with cursor.copy(f"COPY {target} FROM STDIN") as copy:
        buffer: list[str] = []
        for line in lines:
            buffer.append(line)
            if len(buffer) >= part:
                copy.write("".join(buffer).encode())
                written += len(buffer)
                buffer = []
        if buffer:
            copy.write("".join(buffer).encode())
            written += len(buffer)
    return written


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text(value: str | None) -> str:
    """Return a text value as COPY's text format reads it: NULL as \\N, backslash and separators escaped."""
    return "\\N" if value is None else value.translate(_COPY_ESCAPES)


def remove(db: Session, enterprise_ids: Sequence[int]) -> None:
    """Forget the stored matches of these firms."""
    for start in range(0, len(enterprise_ids), 900):
        db.execute(delete(FirmMatch).where(FirmMatch.enterprise_id.in_(list(enterprise_ids[start : start + 900]))))
