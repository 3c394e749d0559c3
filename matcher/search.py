"""Policy search: semantic neighbours of the query fused with keyword hits from the catalog's index.

The one search face of the service (the API, the pages, the desk and the evaluation call it):

- **Keywords**: the catalog's Chinese trigram index (`catalog.search_index`: FTS5 bm25 on SQLite,
  pg_trgm on PostgreSQL), with abbreviations and synonyms expanded from the vocabulary itself —
  tag names and synonyms, category and topic names, and programme names quoted in titles
  (“专精特新”); an abbreviation such as 高企 or 规上 is recognised as an ordered pick of a
  vocabulary name's characters (高新技术企业, 规模以上企业) without a hand list.
- **Meaning**: the e5 embedding of the (expanded) query against the policy index.
- **Fusion**: weighted reciprocal rank fusion; the keyword half only counts hits that cover
  enough of the query (`KEYWORD_MIN_COVERAGE`) or a stretch of it (`KEYWORD_MIN_PHRASE`), so a shared fragment such as 的政策 does not
  reorder the semantic list.
- **Cut-off**: a hit is kept when it covers the query's words or is semantically close in
  absolute terms and relative to the best; the total counts the kept hits, so a nonsense query
  has total 0.
- While the embedder is still loading, answers come from keywords alone, marked ``mode="keyword"``.

The constants below were chosen on the tuning split of tests/data/search_eval.csv (see
tests/data/README.md); `huiqi eval search FILE` reports the product beside its plain baselines.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog import search_index
from catalog import service as catalog_service
from catalog.models import Category, Policy, PolicyStatus, Topic
from core.text import normalize
from matcher import tags as tags_mod
from matcher.engine import load_policies

RRF_K = 60
SEMANTIC_WEIGHT = 1.0
KEYWORD_WEIGHT = 1.0
KEYWORD_MIN_COVERAGE = 0.5  # share of the query's (IDF-weighted) trigrams a keyword hit must contain,
KEYWORD_MIN_PHRASE = 4  # or the length of the longest stretch of the query it contains (失业保险)
SEMANTIC_MIN = 0.80  # e5 cosine below which a neighbour is not shown without keyword support
SEMANTIC_GAP = 0.05  # nor one this far below the best neighbour
SEMANTIC_DEPTH = 50
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]+")
_QUOTED = re.compile(r"[“\"「『《]([^”\"」』》]{2,16})[”\"」』》]")


@dataclass
class SearchHit:
    policy: Policy
    score: float
    semantic: float | None
    keyword: bool
    coverage: float | None = None


@dataclass
class SearchResult:
    """Hits shown (best first, at most `limit`), how many passed the cut-off, and how they were found."""

    hits: list[SearchHit]
    total: int
    mode: str  # "hybrid" or "keyword" (embedder still loading)
    expansions: dict[str, tuple[str, ...]] = field(default_factory=dict)


# ---------------------------------------------------------------- expansion from the vocabulary


@dataclass
class Expander:
    """Abbreviations and synonyms → full names, derived from the catalog's own vocabulary."""

    vocab: tags_mod.Vocabulary
    names: list[str]
    abbreviations: dict[str, set[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.names:
            for abbr in _abbreviations(name):
                self.abbreviations.setdefault(abbr, set()).add(name)

    def expand(self, text: str) -> dict[str, tuple[str, ...]]:
        """Return {term in the query: full names it stands for}."""
        out: dict[str, tuple[str, ...]] = {}
        lowered = normalize(text).lower()
        for canonical, terms in self.vocab.find_in_text(lowered).items():
            for term in terms:
                if normalize(canonical).lower() != term:
                    out[term] = (canonical,)
        for run in _CJK.findall(lowered):
            for size in (4, 3, 2):
                for i in range(len(run) - size + 1):
                    piece = run[i : i + size]
                    if piece in out or any(piece in k for k in out):
                        continue
                    names = self.abbreviations.get(piece)
                    if names and len(names) <= 3 and not any(n in lowered for n in names):
                        out[piece] = tuple(sorted(names, key=len))
        return out


def _abbreviations(name: str) -> Iterable[str]:
    """Ordered picks of a name's characters that start with its first and skip at least one (高新技术企业 → 高企)."""
    chars = normalize(name).lower()
    if len(chars) < 4 or not _CJK.fullmatch(chars):
        return []
    rest = chars[1:]
    out: set[str] = set()
    # 2 characters: first + one from the third on; 3–4: first + increasing picks, not a plain prefix.
    for j in range(1, len(rest)):
        out.add(chars[0] + rest[j])
        for k in range(j + 1, len(rest)):
            out.add(chars[0] + rest[j] + rest[k])
    for j in range(len(rest)):
        for k in range(j + 1, len(rest)):
            for m in range(k + 1, len(rest)):
                out.add(chars[0] + rest[j] + rest[k] + rest[m])
    return [a for a in out if a not in chars]


_expanders: dict[tuple[Any, ...], Expander] = {}
_expanders_lock = threading.Lock()


def expander(db: Session) -> Expander:
    """Return the expander for the catalog as it stands (cached per catalog revision)."""
    key = (str(db.get_bind().engine.url), *catalog_service.revision_stamp(db=db))
    found = _expanders.get(key)
    if found is not None:
        return found
    vocab = tags_mod.Vocabulary.from_db(db)
    names = set(vocab.tags)
    names |= set(db.scalars(select(Category.name)))
    names |= set(db.scalars(select(Topic.name)))
    for title in db.scalars(select(Policy.title).where(Policy.status == PolicyStatus.published)):
        names |= {m for m in _QUOTED.findall(title or "")}
    built = Expander(vocab=vocab, names=sorted(n for n in names if n and len(n) <= 16))
    with _expanders_lock:
        if len(_expanders) > 8:
            _expanders.clear()
        _expanders[key] = built
    return built


def expanded_text(text: str, expansions: dict[str, tuple[str, ...]]) -> str:
    """Return the query with the full names of its abbreviations appended (what the embedder sees)."""
    extra = [n for names in expansions.values() for n in names if n not in text]
    return text + "".join(f" {n}" for n in dict.fromkeys(extra))


# ---------------------------------------------------------------- search


def find(
    *,
    db: Session,
    matcher: Any,
    q: str,
    limit: int = 10,
    region: str | None = None,
    today: dt.date | None = None,
    cutoff: bool = True,
) -> SearchResult:
    """Hybrid search over published policies; hits below the relevance cut-off are left out of hits and total."""
    text = normalize(q)
    if not text:
        return SearchResult([], 0, "hybrid")
    expansions = expander(db).expand(text)
    terms = search_index.split_query(text, alternatives=expansions)
    lexical = search_index.search(db, terms)
    keyword = [h for h in lexical if _qualifies(h)] if cutoff else lexical
    keyword_rank = {h.policy_id: rank for rank, h in enumerate(keyword)}
    coverage = {h.policy_id: h.coverage for h in lexical}

    semantic: dict[int, tuple[int, float]] = {}
    # While the API is still loading the model, answer by words alone rather than make the caller wait.
    ready = bool(matcher is not None and matcher.semantic_ready)
    index = matcher.policy_index(db) if ready else None
    if index is not None and len(index):
        vector = matcher.encode([expanded_text(text, expansions)], "query")
        scores, ids = index.search(vector, min(len(index), SEMANTIC_DEPTH))
        semantic = {
            int(i): (rank, float(s)) for rank, (s, i) in enumerate(zip(scores[0], ids[0], strict=True)) if i >= 0
        }
    best = max((s for _, s in semantic.values()), default=0.0)

    fused: dict[int, float] = {}
    for pid, (rank, sim) in semantic.items():
        if cutoff and pid not in keyword_rank and (sim < SEMANTIC_MIN or sim < best - SEMANTIC_GAP):
            continue
        fused[pid] = fused.get(pid, 0.0) + SEMANTIC_WEIGHT / (RRF_K + rank)
    for pid, rank in keyword_rank.items():
        fused[pid] = fused.get(pid, 0.0) + KEYWORD_WEIGHT / (RRF_K + rank)
    if region:
        ps = matcher.policy_sets.get(db, today=today or dt.date.today())
        allowed = {int(pid) for pid in ps.ids[ps.applicable(region)]} | set(keyword_rank)
        fused = {pid: s for pid, s in fused.items() if pid in allowed}
    ordered = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ordered[:limit]
    policies = {p.id: p for p in load_policies(db, [pid for pid, _ in shown])}
    hits = [
        SearchHit(
            policy=policies[pid],
            score=round(score * RRF_K, 4),
            semantic=semantic.get(pid, (None, None))[1],
            keyword=pid in keyword_rank,
            coverage=coverage.get(pid),
        )
        for pid, score in shown
        if pid in policies and policies[pid].status == PolicyStatus.published
    ]
    return SearchResult(hits, len(ordered), "hybrid" if index is not None else "keyword", expansions)


def _qualifies(hit: search_index.LexicalHit) -> bool:
    return hit.coverage >= KEYWORD_MIN_COVERAGE or hit.phrase >= KEYWORD_MIN_PHRASE


def search(
    *, db: Session, matcher: Any, q: str, limit: int = 10, region: str | None = None, today: dt.date | None = None
) -> list[SearchHit]:
    """Return candidate policies best first without the relevance cut-off (callers that score them again)."""
    return find(db=db, matcher=matcher, q=q, limit=limit, region=region, today=today, cutoff=False).hits
