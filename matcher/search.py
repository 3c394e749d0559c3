"""Policy search: semantic neighbours of the query fused with keyword hits from the catalog's index.

The one search face of the service (the API, the pages, the desk and the evaluation call it):

- **Keywords**: the catalog's Chinese trigram index (`catalog.search_index`: FTS5 bm25 on SQLite,
  pg_trgm on PostgreSQL), with abbreviations and synonyms expanded from the vocabulary itself —
  tag names and synonyms, category and topic names, and programme names quoted in titles
  (“专精特新”); an abbreviation such as 高企 or 规上 is recognised as an ordered pick of a
  vocabulary name's characters (高新技术企业, 规模以上企业) without a hand list.
- **Meaning**: the e5 embedding of the (expanded) query against the policy index.
- **Fusion**: weighted reciprocal rank fusion; the keyword half only counts hits that cover
  enough of the query (`KEYWORD_MIN_COVERAGE`), so a shared fragment such as 的政策 does not
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
# Chosen on the tuning split of tests/data/search_eval.csv with scripts/tune_search.py (best Hit@1 and MRR
# with no hits for any of its nonsense queries; the plateau was flat in the gap and for coverage 0.3–0.5).
SEMANTIC_WEIGHT = 1.0
KEYWORD_WEIGHT = 1.0
KEYWORD_MIN_COVERAGE = 0.4  # share of the query's (IDF-weighted) trigrams a keyword hit must contain
# A hit that only shares one stretch of the query (4+ characters) did not help on the tuning split:
# 0 switches that rule off; `Params(min_phrase=4)` switches it on.
KEYWORD_MIN_PHRASE = 0
SEMANTIC_MIN = 0.87  # e5 cosine below which a neighbour is not shown without keyword support
SEMANTIC_GAP = 0.05  # nor one this far below the best neighbour
SEMANTIC_DEPTH = 50
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]+")
_QUOTED = re.compile(r"[“\"「『《]([^”\"」』》]{2,16})[”\"」』》]")
# Programme names inside titles end in words like these (高新技术企业认定奖励 → 高新技术企业).
_NAME_ENDS = (
    "企业|中心|园区|基地|平台|基金|贷款|保险|返还|补贴|补助|奖励|资助|工程|计划|项目|证书|人才|装备|材料|工作室|学徒制"
)
_TITLE_NAME = re.compile(rf"[\u4e00-\u9fff]{{2,10}}?(?:{_NAME_ENDS})")
MAX_NAME = 8


@dataclass
class SearchHit:
    policy: Policy  # or, from `find(cards=True)`, the open policy's `PolicyInfo` (the fields a card shows)
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
    # True when the keyword candidates filled their pool: more policies match than were ranked,
    # so `total` is a lower bound (shown as "50+ 项").
    more: bool = False


# ---------------------------------------------------------------- expansion from the vocabulary


@dataclass
class Expander:
    """Abbreviations and synonyms → full names, derived from the catalog's own vocabulary."""

    vocab: tags_mod.Vocabulary
    names: list[str]
    titles: list[str] = field(default_factory=list)  # published titles, normalised, lower case
    texts: list[str] = field(default_factory=list)  # published search texts (title + summary), lower case
    mined: set[str] = field(default_factory=set)  # names found in titles only (not tags, categories, topics)
    abbreviations: dict[str, set[str]] = field(default_factory=dict)
    _counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.names:
            for abbr in _abbreviations(name):
                self.abbreviations.setdefault(abbr, set()).add(name)

    def title_count(self, term: str) -> int:
        """Return in how many published titles a term occurs (cached)."""
        if term not in self._counts:
            self._counts[term] = sum(term in t for t in self.titles)
        return self._counts[term]

    def text_count(self, term: str) -> int:
        """Return in how many published titles and summaries a term occurs (cached)."""
        key = "\0" + term
        if key not in self._counts:
            self._counts[key] = sum(term in t for t in self.texts)
        return self._counts[key]

    def embedding_text(self, text: str, expansions: dict[str, tuple[str, ...]] | None = None) -> str:
        """Return the text the embedder sees: the query plus the vocabulary names its terms stand for.

        Only names from the curated vocabulary (tags, categories, topics) are added: a name mined
        from titles helps the keyword half but would pull the query's meaning off course if wrong.
        """
        expansions = self.expand(text) if expansions is None else expansions
        kept = {k: v for k, v in expansions.items() if not any(n in self.mined for n in v)}
        return expanded_text(text, kept)

    def _full_names(self, piece: str) -> list[str]:
        # A pick is read as an abbreviation only of names more common in titles than the pick itself:
        # 高企 → 高新技术企业, but 新企 (as in 新企业) is not 新技术企业.
        names = self.abbreviations.get(piece) or ()
        if not names or len(names) > 3:
            return []
        # A pick that the catalog itself writes (创业, 能补) is a word of its own, not an abbreviation.
        if self.text_count(piece):
            return []
        counts = {n: self.title_count(n) for n in names}
        top = max(counts.values())
        # Of several readings keep the established ones: 高企 is 高新技术企业 (in many titles) rather
        # than 高新区科技型企业 (in one); a name mined from titles must recur (a tail cut mid-word such
        # as 能提升培训补贴 seldom does); curated names always count.
        kept = [n for n in names if n not in self.mined or (counts[n] >= 2 and 2 * counts[n] >= top)]
        return sorted(kept, key=len)

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
                    names = self._full_names(piece)
                    if names and not any(n in lowered for n in names):
                        out[piece] = tuple(names)
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
    curated = set(vocab.tags)
    curated |= set(db.scalars(select(Category.name)))
    curated |= set(db.scalars(select(Topic.name)))
    rows = db.execute(select(Policy.title, Policy.search_text).where(Policy.status == PolicyStatus.published)).all()
    mined: set[str] = set()
    for title, _ in rows:
        mined |= set(_QUOTED.findall(title or ""))
        mined |= set(title_names(title or ""))
    mined -= curated
    built = Expander(
        vocab=vocab,
        names=sorted(n for n in curated | mined if n and len(n) <= 16),
        titles=[normalize(t).lower() for t, _ in rows],
        texts=[(st or "").lower() for _, st in rows],
        mined=mined,
    )
    with _expanders_lock:
        if len(_expanders) > 8:
            _expanders.clear()
        _expanders[key] = built
    return built


def title_names(title: str) -> list[str]:
    """Return programme-name candidates in a title: runs ending in a name word, and their tails.

    中山市高新技术企业认定奖励 → 中山市高新技术企业, 山市高新技术企业, …, 高新技术企业, 新技术企业, 技术企业;
    the abbreviation map later keeps only the tails an abbreviation in a query actually picks.
    """
    out: list[str] = []
    for run in _CJK.findall(normalize(title)):
        for match in _TITLE_NAME.finditer(run):
            name = match.group(0)
            out += [name[i:] for i in range(len(name) - 3) if len(name) - i <= MAX_NAME]
    return out


def expanded_text(text: str, expansions: dict[str, tuple[str, ...]]) -> str:
    """Return the query with the full names of its abbreviations appended (what the embedder sees)."""
    extra = [n for names in expansions.values() for n in names if n not in text]
    return text + "".join(f" {n}" for n in dict.fromkeys(extra))


# ---------------------------------------------------------------- search


@dataclass(frozen=True)
class Params:
    """The fusion and cut-off constants (defaults above; `scripts/tune_search.py` searches over them)."""

    semantic_weight: float = SEMANTIC_WEIGHT
    keyword_weight: float = KEYWORD_WEIGHT
    min_coverage: float = KEYWORD_MIN_COVERAGE
    min_phrase: int = KEYWORD_MIN_PHRASE
    semantic_min: float = SEMANTIC_MIN
    semantic_gap: float = SEMANTIC_GAP


@dataclass
class Evidence:
    """What both halves found for one query, before fusion."""

    semantic: dict[int, tuple[int, float]]  # policy id → (rank, cosine)
    lexical: list[search_index.LexicalHit]
    expansions: dict[str, tuple[str, ...]]
    semantic_ready: bool


def gather(*, db: Session, matcher: Any, text: str) -> Evidence:
    """Run the keyword index and (when the embedder is loaded) the semantic index for normalised text."""
    expansions = expander(db).expand(text)
    terms = search_index.split_query(text, alternatives=expansions)
    lexical = search_index.search(db, terms)
    semantic: dict[int, tuple[int, float]] = {}
    # While the API is still loading the model, answer by words alone rather than make the caller wait.
    ready = bool(matcher is not None and matcher.semantic_ready)
    index = matcher.policy_index(db) if ready else None
    if index is not None and len(index):
        vector = matcher.encode([expander(db).embedding_text(text, expansions)], "query")
        scores, ids = index.search(vector, min(len(index), SEMANTIC_DEPTH))
        semantic = {
            int(i): (rank, float(s)) for rank, (s, i) in enumerate(zip(scores[0], ids[0], strict=True)) if i >= 0
        }
    return Evidence(semantic, lexical, expansions, ready)


def fuse(evidence: Evidence, *, params: Params | None = None, cutoff: bool = True) -> tuple[dict[int, float], set[int]]:
    """Return (policy id → fused score, ids the keyword half vouches for)."""
    p = params or Params()
    # Hits that share only a fragment with the query (的政策) never enter the fusion.
    keyword = [
        h for h in evidence.lexical if h.coverage >= p.min_coverage or (p.min_phrase and h.phrase >= p.min_phrase)
    ]
    keyword_rank = {h.policy_id: rank for rank, h in enumerate(keyword)}
    best = max((s for _, s in evidence.semantic.values()), default=0.0)
    fused: dict[int, float] = {}
    for pid, (rank, sim) in evidence.semantic.items():
        if cutoff and pid not in keyword_rank and (sim < p.semantic_min or sim < best - p.semantic_gap):
            continue
        fused[pid] = fused.get(pid, 0.0) + p.semantic_weight / (RRF_K + rank)
    for pid, rank in keyword_rank.items():
        fused[pid] = fused.get(pid, 0.0) + p.keyword_weight / (RRF_K + rank)
    return fused, set(keyword_rank)


def find(
    *,
    db: Session,
    matcher: Any,
    q: str,
    limit: int = 10,
    region: str | None = None,
    today: dt.date | None = None,
    cutoff: bool = True,
    cards: bool = False,
) -> SearchResult:
    """Hybrid search over published policies; hits below the relevance cut-off are left out of hits and total.

    `cards=True` (the search route, which shows cards only): a hit open today is the process's
    `PolicySet` entry (`PolicyInfo`, no database read), others are loaded; otherwise every hit is the
    ORM `Policy`.
    """
    text = normalize(q)
    if not text:
        return SearchResult([], 0, "hybrid")
    evidence = gather(db=db, matcher=matcher, text=text)
    fused, vouched = fuse(evidence, cutoff=cutoff)
    if region:
        ps = matcher.policy_sets.get(db, today=today or dt.date.today())
        allowed = {int(pid) for pid in ps.ids[ps.applicable(region)]} | vouched
        fused = {pid: s for pid, s in fused.items() if pid in allowed}
    ordered = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ordered[:limit]
    policies: dict[int, Any] = {}
    if cards:  # the open policies' cards are in the policy set every request already reads
        ps = matcher.policy_sets.get(db, today=today or dt.date.today())
        policies = {pid: ps.policies[ps.position[pid]] for pid, _ in shown if pid in ps.position}
    loaded = load_policies(db, [pid for pid, _ in shown if pid not in policies])
    policies.update({p.id: p for p in loaded if p.status == PolicyStatus.published})
    coverage = {h.policy_id: h.coverage for h in evidence.lexical}
    hits = [
        SearchHit(
            policy=policies[pid],
            score=round(score * RRF_K, 4),
            semantic=evidence.semantic.get(pid, (None, None))[1],
            keyword=pid in vouched,
            coverage=coverage.get(pid),
        )
        for pid, score in shown
        if pid in policies
    ]
    mode = "hybrid" if evidence.semantic_ready else "keyword"
    more = len(evidence.lexical) >= search_index.CANDIDATES and len(vouched) >= search_index.CANDIDATES // 2
    return SearchResult(hits, len(ordered), mode, evidence.expansions, more)


def search(
    *, db: Session, matcher: Any, q: str, limit: int = 10, region: str | None = None, today: dt.date | None = None
) -> list[SearchHit]:
    """Return candidate policies best first without the semantic cut-off (callers that score them again)."""
    return find(db=db, matcher=matcher, q=q, limit=limit, region=region, today=today, cutoff=False).hits
