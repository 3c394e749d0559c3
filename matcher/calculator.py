"""The policy calculator (政策计算器): a few typed attributes in, ranked policies with reasons out.

Nothing is stored and nothing is written. Every open policy is judged at once from the compiled
rules (`PolicySet.matrix`), similarity is one product with the policies' vectors, and reasons are
worded only for the policies returned. `rank` is the same scoring for any set of facts (the quality
evaluation ranks anonymous queries with it).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from catalog.fields import FIELDS
from core import codes
from matcher import eligibility, vectors
from matcher import ranker as ranker_mod
from matcher import tags as tags_mod
from matcher.eligibility import ELIGIBLE, INELIGIBLE, LIKELY
from matcher.home import home_rank
from matcher.ranking import Components, urgency_score
from matcher.recommend import CHANGE_WINDOW, Recommendation

_STATUS = {2: ELIGIBLE, 1: LIKELY, 0: INELIGIBLE}


def rank(
    *,
    db: Session,
    matcher: Any,
    facts: Mapping[str, Any],
    firm_tags: set[str],
    needs_text: str | None,
    query_text: str,
    today: dt.date,
    include: set[str],
    limit: int,
    adjustments: Mapping[int, float] | None = None,
) -> tuple[list[Recommendation], list[eligibility.Change]]:
    """Judge and score every open policy for one set of facts; return the best first and what would help."""
    semantic_ready = matcher.semantic_ready
    ps = matcher.policy_sets.get(db, today=today, with_vectors=semantic_ready)
    if not len(ps):
        return [], []
    judged = ps.matrix.judge([facts], today=today)
    status, rules, near = judged.status[:, 0], judged.rule_score[:, 0], judged.near_miss[:, 0]
    allowed = ps.applicable(facts.get("region_code"))
    query = _query_vector(matcher, query_text, needs_text) if semantic_ready else None
    w = matcher.weights
    if query is None or ps.vectors is None:
        cosine = None
        semantic = np.zeros(len(ps))
    else:
        cosine = (ps.vectors @ query).astype(np.float64)
        span = max(w.semantic_ceiling - w.semantic_floor, 1e-6)
        semantic = np.clip(np.round((cosine - w.semantic_floor) / span, 4), 0.0, 1.0)
    if len(ps.tag_names):
        tags = np.round(ps.firm_tag_matrix([firm_tags]).astype(np.float64) @ ps.tag_weights.astype(np.float64), 4)[0]
    else:
        tags = np.zeros(len(ps))
    codes_wanted = {c for c, name in _STATUS.items() if name in include}
    chosen = np.flatnonzero(allowed & np.isin(status, list(codes_wanted)))
    shifts = adjustments or {}
    comps = [
        Components(
            rules=float(rules[j]),
            tags=float(tags[j]),
            semantic=float(semantic[j]),
            urgency=urgency_score(ps.policies[j].apply_end_on, today, w)
            if ps.policies[j].policy_type == "application"
            else 0.0,
            adjustment=shifts.get(ps.policies[j].id, 0.0),
        )
        for j in chosen
    ]
    scores = ranker_mod.score_components(comps, w, matcher.ranker)
    home = matcher.settings.home_region
    # Equal scores: the home city's and nationwide policies first (HUIQI_HOME_REGION), then by id.
    order = sorted(
        range(len(chosen)),
        key=lambda k: (-scores[k], home_rank(ps.policies[chosen[k]].region_codes, home), ps.policies[chosen[k]].id),
    )
    needs_tags = set(ps.vocab.find_in_text(needs_text)) if needs_text else set()
    out = []
    for k in order[:limit]:
        j = int(chosen[k])
        policy = ps.policies[j]
        shared = ps.shared_tags(j, firm_tags)
        comps[k].shared_tags = shared
        out.append(
            Recommendation(
                policy=policy,
                verdict=eligibility.evaluate(policy.rules, facts, today=today),
                components=comps[k],
                score=scores[k],
                similarity=None if cosine is None else round(float(cosine[j]), 4),
                shared_tags=shared,
                needs_overlap=sorted(needs_tags & ps.tags[j]),
            )
        )
    undecided = np.flatnonzero(allowed & ((status == 1) | near))
    base = w.rules * rules + w.tags * tags + w.semantic * semantic
    pool = sorted(undecided.tolist(), key=lambda j: (-base[j], ps.policies[j].id))[:CHANGE_WINDOW]
    verdicts = {ps.policies[j].id: eligibility.evaluate(ps.policies[j].rules, facts, today=today) for j in pool}
    return out, eligibility.best_changes(verdicts)


def _query_vector(matcher: Any, query_text: str, needs_text: str | None) -> np.ndarray | None:
    if not query_text.strip() and not (needs_text or "").strip():
        return None
    profile = matcher.encode([query_text], "query")[0] if query_text.strip() else None
    needs = matcher.encode([needs_text], "query")[0] if needs_text and needs_text.strip() else None
    if profile is None:
        return needs
    return vectors.blend(profile, needs)


def calculator(
    *, db: Session, matcher: Any, attributes: Mapping[str, Any], limit: int = 20, today: dt.date | None = None
) -> tuple[dict[str, Any], list[Recommendation], list[eligibility.Change]]:
    """The public policy calculator: attributes in, the same ranked list out, nothing stored."""
    today = today or dt.date.today()
    vocab = tags_mod.Vocabulary.from_db(db)
    facts = eligibility.facts_from_attributes({k: v for k, v in attributes.items() if k in FIELDS}, today)
    needs = attributes.get("needs") or ""
    firm_tags = tags_mod.enterprise_tags(facts, (attributes.get("business_scope"), needs), vocab)
    facts["tags"] = frozenset(firm_tags)
    industry = codes.industry_name(facts["industry_code"]) if facts.get("industry_code") else None
    query = "；".join(filter(None, [industry, attributes.get("business_scope"), needs]))
    ranked, changes = rank(
        db=db,
        matcher=matcher,
        facts=facts,
        firm_tags=set(firm_tags),
        needs_text=needs,
        query_text=query,
        today=today,
        include={ELIGIBLE, LIKELY},
        limit=limit,
    )
    return facts, ranked, changes
