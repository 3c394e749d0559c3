"""The catalog's keyword index over policy title, summary and full text, for Chinese.

Chinese has no spaces, so words cannot be split on whitespace. The index works on character
trigrams instead, which need no dictionary:

- **SQLite**: an external-content FTS5 table ``policy_fts`` (tokenizer ``trigram``) over
  ``policy.title``, ``policy.search_text`` (normalised title + summary + 文号) and
  ``policy.full_text``, kept in step with ``policy`` by triggers (migration 0011), ranked by
  FTS5's ``bm25()``; ``policy_fts_vocab`` gives each trigram's document frequency.
- **PostgreSQL**: the ``pg_trgm`` extension and a GIN trigram index on the same text
  (migration 0011), so ``LIKE '%…%'`` on it is an index search; hits are ranked by IDF-weighted
  matches. Where the extension could not be created the same SQL runs as a scan.

A query is cut into character trigrams (within runs of Chinese characters, letters and digits).
Runs of one or two characters (稳岗, 高企), which no trigram can match, are looked up with
``LIKE`` on the short ``search_text`` column. Every hit carries its *coverage*: the IDF-weighted
share of the query's trigrams and short terms found in the policy, so callers can cut off hits
that only share a common fragment such as 的政策.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

from catalog.models import PolicyStatus
from core.text import normalize

# Runs of characters that carry meaning: CJK ideographs, Latin letters and digits (after NFKC, lower case).
_RUNS = re.compile(r"[0-9a-z\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
MAX_GRAMS = 96  # a 200-character query has at most ~200 trigrams; the first ones are plenty
MATCH_GRAMS = 24  # the rarest trigrams go into the index query; all of them count for coverage
COMMON_SHARE = 0.5  # a trigram in more than half of all policies finds nothing worth ranking by
CANDIDATES = 50
# Column weights for bm25(): a word in the title says more than one in the summary or the body.
BM25_WEIGHTS = (4.0, 2.0, 1.0)
# PostgreSQL: the text the trigram index covers (the same expression as in migration 0011).
PG_DOC = "lower(coalesce(search_text, '') || ' ' || coalesce(full_text, ''))"


@dataclass(frozen=True)
class QueryTerms:
    """A query cut for the index: trigrams, short terms and phrases they may also be spelt as."""

    grams: tuple[str, ...]
    shorts: tuple[str, ...]
    # The trigrams of each run in query order, so matched phrases (consecutive trigrams) can be found.
    runs: tuple[tuple[str, ...], ...] = ()
    # Each unit is satisfied by any of its alternatives: an abbreviation and its full names.
    alternatives: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.grams and not self.shorts and not self.alternatives


def trigrams(run: str) -> list[str]:
    """Return the character trigrams of one run, in order."""
    return [run[i : i + 3] for i in range(len(run) - 2)]


def split_query(text: str, *, alternatives: Mapping[str, Sequence[str]] | None = None) -> QueryTerms:
    """Cut normalised query text into trigrams and short terms; `alternatives` map a term to full names."""
    grams: list[str] = []
    shorts: list[str] = []
    runs: list[tuple[str, ...]] = []
    alts = {
        normalize(k).lower(): tuple(dict.fromkeys(normalize(v).lower() for v in vs if v))
        for k, vs in (alternatives or {}).items()
    }
    keys = sorted((k for k in alts if k), key=len, reverse=True)
    for run in _RUNS.findall(normalize(text).lower()):
        if len(run) >= 3:
            grams.extend(trigrams(run))
            runs.append(tuple(trigrams(run)))
        else:
            shorts.append(run)
        if keys and len(run) > 2:
            # What is left of a run around an abbreviation is a term of its own (高企认定 → 认定).
            for piece in re.split("|".join(re.escape(k) for k in keys), run):
                if 0 < len(piece) < 3 and piece != run:
                    shorts.append(piece)
    return QueryTerms(
        grams=tuple(dict.fromkeys(grams))[:MAX_GRAMS],
        shorts=tuple(s for s in dict.fromkeys(shorts) if s not in alts)[:6],
        alternatives={k: v for k, v in alts.items() if v},
        runs=tuple(runs),
    )


@dataclass(frozen=True)
class LexicalHit:
    """A policy the index found: its rank score (higher is better), query coverage (0–1) and phrase weight.

    `phrase` is the length of the longest stretch of the query found in the policy (see `phrase`).
    """

    policy_id: int
    score: float
    coverage: float
    phrase: int = 0


def backend(db: Session) -> str:
    """Return 'fts5', 'pg_trgm' or 'scan': how this database answers keyword queries."""
    dialect = db.get_bind().dialect.name
    if dialect == "sqlite":
        found = db.execute(text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'policy_fts'")).first()
        return "fts5" if found else "scan"
    if dialect == "postgresql":
        return "pg_trgm" if pg_trgm_schema(db) else "scan"
    return "scan"


def pg_trgm_schema(db: Session) -> str | None:
    """Return the schema pg_trgm is installed in, or None when the extension is absent."""
    return db.execute(
        text(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
            "WHERE e.extname = 'pg_trgm'"
        )
    ).scalar()


def _policy_count(db: Session) -> int:
    return int(db.execute(text("SELECT count(*) FROM policy")).scalar() or 0)


def _doc_frequencies(db: Session, kind: str, grams: Sequence[str], shorts: Sequence[str]) -> dict[str, int]:
    """Return how many policies contain each trigram / short term (any status)."""
    out: dict[str, int] = {}
    if grams and kind == "fts5":
        stmt = text("SELECT term, doc FROM policy_fts_vocab WHERE term IN :terms").bindparams(
            bindparam("terms", expanding=True)
        )
        out.update({t: int(d) for t, d in db.execute(stmt, {"terms": list(grams)})})
        out.update({g: 0 for g in grams if g not in out})
    elif grams:
        out.update(_count_like(db, grams, PG_DOC if kind == "pg_trgm" else _scan_doc(db)))
    if shorts:
        out.update(_count_like(db, shorts, "search_text"))
    return out


def _fts5_short(db: Session, term: str) -> tuple[list[str], int]:
    """Return the indexed trigrams that start with a one- or two-character term, and its document count.

    A trigram index cannot look up fewer than three characters, but every occurrence of 稳岗 not at the
    very end of a column starts a trigram (稳岗补, 稳岗返, 稳岗 …), and the vocabulary is sorted by term.
    """
    rows = db.execute(
        text("SELECT term FROM policy_fts_vocab WHERE term >= :lo AND term < :hi ORDER BY doc DESC LIMIT :n"),
        {"lo": term, "hi": term + "\U0010ffff", "n": MATCH_GRAMS},
    ).all()
    grams = [r[0] for r in rows if len(r[0]) == 3]
    if not grams:
        return [], 0
    query = " OR ".join(f'"{_quote(g)}"' for g in grams)
    count = db.execute(text("SELECT count(*) FROM policy_fts WHERE policy_fts MATCH :q"), {"q": query}).scalar()
    return grams, int(count or 0)


def _quote(gram: str) -> str:
    # An FTS5 string: double quotes doubled (vocabulary trigrams may hold any character).
    return gram.replace('"', '""')


def _scan_doc(db: Session) -> str:
    if db.get_bind().dialect.name == "sqlite":
        return "lower(coalesce(search_text, '') || ' ' || coalesce(full_text, ''))"
    return PG_DOC


def _count_like(db: Session, terms: Sequence[str], column: str) -> dict[str, int]:
    """Count the policies whose `column` contains each term, in one statement."""
    parts = ", ".join(f"(SELECT count(*) FROM policy WHERE {column} LIKE :p{i})" for i in range(len(terms)))
    row = db.execute(text(f"SELECT {parts}"), {f"p{i}": f"%{t}%" for i, t in enumerate(terms)}).one()
    return {t: int(n) for t, n in zip(terms, row, strict=True)}


def _idf(n: int, df: int) -> float:
    # BM25's IDF, floored at a small positive value so a very common term still counts a little.
    return max(0.05, math.log(1 + (n - df + 0.5) / (df + 0.5)))


def search(db: Session, terms: QueryTerms, *, limit: int = CANDIDATES) -> list[LexicalHit]:
    """Return published policies matching the terms, best first, each with its coverage of the query."""
    if terms.empty:
        return []
    kind = backend(db)
    alt_terms = [a for alts in terms.alternatives.values() for a in alts]
    alt_grams = [g for a in alt_terms for g in trigrams(a)]
    alt_shorts = [a for a in alt_terms if len(a) < 3]
    all_grams = list(dict.fromkeys([*terms.grams, *alt_grams]))
    short_terms = list(dict.fromkeys([*terms.shorts, *alt_shorts]))
    prefixed: dict[str, list[str]] = {}
    if kind == "fts5":
        df = _doc_frequencies(db, kind, all_grams, [])
        for term in short_terms:
            prefixed[term], df[term] = _fts5_short(db, term)
    else:
        df = _doc_frequencies(db, kind, all_grams, short_terms)
    n = max(1, _policy_count(db))
    idf = {t: _idf(n, d) for t, d in df.items()}
    # Retrieval: the rarest trigrams that occur at all (a trigram in no policy finds nothing).
    present = sorted((g for g in all_grams if df.get(g, 0) > 0), key=lambda g: df[g])
    # Very common trigrams only slow the index query down; in a tiny catalog keep the rarest anyway.
    informative = [g for g in present if df[g] <= COMMON_SHARE * n] or present[:3]
    informative = informative[:MATCH_GRAMS]
    shorts = [s for s in dict.fromkeys([*terms.shorts, *alt_shorts]) if df.get(s, 0)]
    ranked: dict[int, float] = {}
    if kind == "fts5":
        # A short term is found through the trigrams that start with it (稳岗 → 稳岗补, 稳岗返, …).
        extended = [*informative, *(g for s in shorts for g in prefixed.get(s, ()))]
        if extended:
            ranked = _fts5_rank(db, list(dict.fromkeys(extended))[: 2 * MATCH_GRAMS], limit)
    else:
        if informative:
            ranked = _like_rank(db, informative, idf, limit, PG_DOC if kind == "pg_trgm" else _scan_doc(db))
        if shorts:
            for pid, score in _like_rank(db, shorts, idf, limit, "search_text").items():
                ranked[pid] = ranked.get(pid, 0.0) + score
    if not ranked:
        return []
    texts = _texts(db, list(ranked))
    hits = []
    for pid, score in ranked.items():
        doc = texts.get(pid)
        if doc is None:  # not published
            continue
        hits.append(LexicalHit(pid, score, round(coverage(terms, doc, idf), 4), phrase(terms, doc)))
    hits.sort(key=lambda h: (-h.score, -h.coverage, h.policy_id))
    return hits[:limit]


def coverage(terms: QueryTerms, doc: str, idf: dict[str, float]) -> float:
    """Return the IDF-weighted share of the query's units (trigrams, short terms, abbreviations) in `doc`.

    An abbreviation counts as found when the policy has it or any of its full names; the trigrams
    that straddle an abbreviation and its neighbours are then not held against the policy.
    """
    total = found = 0.0
    spared: set[str] = set()
    for key, alts in terms.alternatives.items():
        weight = max(1.0, max((idf.get(a, 0.0) if len(a) < 3 else _phrase_idf(a, idf) for a in alts), default=1.0))
        total += weight
        if key in doc or any(a in doc for a in alts):
            found += weight
            spared.update(g for g in terms.grams if any(c in key for c in g))
    for g in terms.grams:
        w = idf.get(g, 1.0)
        if g in spared and g not in doc:
            continue
        total += w
        if g in doc:
            found += w
    for s in terms.shorts:
        w = idf.get(s, 1.0)
        total += w
        if s in doc:
            found += w
    return found / total if total else 0.0


def phrase(terms: QueryTerms, doc: str) -> int:
    """Return the length in characters of the longest stretch of the query found in the policy.

    Consecutive matched trigrams make a stretch (失业保险 in 企业没有裁员能申请失业保险返还吗: 4);
    an abbreviation found as itself or as one of its full names counts as its full name's length.
    """
    best = 0
    for run in terms.runs:
        count = 0
        for g in run:
            count = count + 1 if g in doc else 0
            if count:
                best = max(best, count + 2)
    for s in terms.shorts:
        if s in doc:
            best = max(best, len(s))
    for key, alts in terms.alternatives.items():
        found = [a for a in (key, *alts) if a in doc]
        if found:
            best = max(best, max(len(a) for a in found))
    return best


def _phrase_idf(phrase: str, idf: dict[str, float]) -> float:
    grams = trigrams(phrase)
    return sum(idf.get(g, 1.0) for g in grams) / len(grams) if grams else 1.0


def _fts5_rank(db: Session, grams: Sequence[str], limit: int) -> dict[int, float]:
    """FTS5: OR of the trigrams (each a quoted phrase), ranked by bm25 (negated: higher is better)."""
    query = " OR ".join(f'"{_quote(g)}"' for g in grams)
    w = ", ".join(str(x) for x in BM25_WEIGHTS)
    rows = db.execute(
        text(f"SELECT rowid, bm25(policy_fts, {w}) AS r FROM policy_fts WHERE policy_fts MATCH :q ORDER BY r LIMIT :n"),
        {"q": query, "n": limit},
    ).all()
    return {int(pid): -float(r) for pid, r in rows}


def _like_rank(db: Session, terms: Sequence[str], idf: dict[str, float], limit: int, doc: str) -> dict[int, float]:
    """Rank published policies by the IDF-weighted terms their text contains, title matches counting double.

    On PostgreSQL with pg_trgm each ``LIKE '%…%'`` of three or more characters is a trigram index search.
    """
    params: dict[str, object] = {"published": PolicyStatus.published.value, "n": limit * 2}
    score_parts, where_parts = [], []
    for i, t in enumerate(terms):
        params[f"p{i}"] = f"%{t}%"
        params[f"w{i}"] = idf.get(t, 1.0)
        score_parts.append(
            f"(CASE WHEN {doc} LIKE :p{i} THEN :w{i} ELSE 0 END + CASE WHEN lower(title) LIKE :p{i} THEN :w{i} ELSE 0 END)"
        )
        where_parts.append(f"{doc} LIKE :p{i}")
    sql = (
        f"SELECT id, {' + '.join(score_parts)} AS s FROM policy "
        f"WHERE status = :published AND ({' OR '.join(where_parts)}) ORDER BY s DESC, id LIMIT :n"
    )
    return {int(pid): float(s) for pid, s in db.execute(text(sql), params)}


def _texts(db: Session, ids: Sequence[int]) -> dict[int, str]:
    """Return the searchable text (lower case) of the published policies among `ids`."""
    stmt = text(
        "SELECT id, title, search_text, full_text FROM policy WHERE id IN :ids AND status = :published"
    ).bindparams(bindparam("ids", expanding=True))
    rows = db.execute(stmt, {"ids": list(ids), "published": PolicyStatus.published.value})
    return {int(pid): f"{t or ''} {s or ''} {f or ''}".lower() for pid, t, s, f in rows}
