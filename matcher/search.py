"""Policy search: semantic neighbours of the query fused with keyword hits (reciprocal rank fusion)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from catalog import service as catalog_service
from catalog.models import Policy, PolicyStatus
from catalog.schemas import PolicyFilters
from core.text import normalize
from matcher import tags as tags_mod
from matcher.engine import load_policies


@dataclass
class SearchHit:
    policy: Policy
    score: float
    semantic: float | None
    keyword: bool


def search(
    *, db: Session, matcher: Any, q: str, limit: int = 10, region: str | None = None, today: dt.date | None = None
) -> list[SearchHit]:
    """Hybrid search over published policies: semantic neighbours fused with keyword hits (RRF)."""
    text = normalize(q)
    if not text:
        return []
    vocab = tags_mod.Vocabulary.from_db(db)
    # Abbreviations become full names for the embedder too (高企 → 高新技术企业).
    expanded = text + "".join(f" {name}" for name in vocab.find_in_text(text) if name not in text)
    semantic: dict[int, tuple[int, float]] = {}
    # While the API is still loading the model, answer by words alone rather than make the caller wait.
    index = matcher.policy_index(db) if matcher.semantic_ready else None
    if index is not None and len(index):
        scores, ids = index.search(matcher.encode([expanded], "query"), min(len(index), 50))
        semantic = {
            int(i): (rank, float(s)) for rank, (s, i) in enumerate(zip(scores[0], ids[0], strict=True)) if i >= 0
        }
    keyword_hits, _ = catalog_service.list_policies(
        db=db, filters=PolicyFilters(q=text, region=region), actor=None, limit=50
    )
    keyword = {p.id: rank for rank, p in enumerate(keyword_hits)}
    fused: dict[int, float] = {}
    for pid, (rank, _) in semantic.items():
        fused[pid] = fused.get(pid, 0.0) + 1 / (60 + rank)
    for pid, rank in keyword.items():
        # Exact words are strong evidence in policy search; weight keyword ranks double.
        fused[pid] = fused.get(pid, 0.0) + 2 / (60 + rank)
    if region:
        ps = matcher.policy_sets.get(db, today=today or dt.date.today())
        allowed = {int(pid) for pid in ps.ids[ps.applicable(region)]} | set(keyword)
        fused = {pid: s for pid, s in fused.items() if pid in allowed}
    ordered = sorted(fused.items(), key=lambda kv: -kv[1])
    hits: list[SearchHit] = []
    # Load only the policies shown (a page at a time, in case some were withdrawn meanwhile), not every
    # candidate: loading all ~100 fused candidates with their relations was most of a search's time.
    for start in range(0, len(ordered), limit):
        page = ordered[start : start + limit]
        policies = {p.id: p for p in load_policies(db, [pid for pid, _ in page])}
        for pid, score in page:
            policy = policies.get(pid)
            if policy is not None and policy.status == PolicyStatus.published:
                hits.append(
                    SearchHit(
                        policy=policy,
                        score=round(score * 60, 4),
                        semantic=semantic.get(pid, (None, None))[1],
                        keyword=pid in keyword,
                    )
                )
        if len(hits) >= limit:
            break
    return hits[:limit]
