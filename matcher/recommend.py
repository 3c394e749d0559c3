"""A firm's recommendations, served from its stored matches: reads only, nothing computed per policy.

One request reads the firm, its stored matches (one row), its latest feedback and its tags, adds
today's urgency and the feedback adjustments to the stored candidates, filters and pages them, and
words the reasons (✓ ✗ ?) for the policies on the page only. Stored matches older than the catalog
or the profile are still served, marked stale: the worker's catch-up is already due to refresh them
(`matcher.jobs`), and no request ever waits for it. A firm with nothing stored yet gets an empty
page marked pending.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from catalog.models import Category, Tag
from core.errors import NotFound
from matcher import eligibility, feedback, store
from matcher import ranker as ranker_mod
from matcher.eligibility import ELIGIBLE, INELIGIBLE, LIKELY, PolicyVerdict
from matcher.home import home_rank
from matcher.models import EnterpriseTag, MatcherState
from matcher.policyset import PolicyInfo, PolicySet
from matcher.ranking import Components, urgency_score
from profiles.models import Enterprise

State = Literal["ready", "stale", "pending"]
_STATUS = {2: ELIGIBLE, 1: LIKELY, 0: INELIGIBLE}
CHANGE_WINDOW = 20  # best undecided or near-miss policies that feed "what would open more policies"


@dataclass
class Recommendation:
    """One policy for one firm, with its verdict, score, components and reasons."""

    policy: PolicyInfo
    verdict: PolicyVerdict
    components: Components
    score: float
    similarity: float | None
    shared_tags: list[str]
    needs_overlap: list[str]


@dataclass(frozen=True)
class Filters:
    """What a firm narrows its list to."""

    open_now: bool = False  # the application window is open today (or the policy needs no application)
    category: str | None = None  # a category code (its sub-categories included)
    min_amount: float | None = None  # 最高金额 at least this many 万元


@dataclass
class Page:
    """A page of a firm's recommendations and what the page says about them."""

    enterprise: Enterprise
    items: list[Recommendation]
    total: int
    changes: list[eligibility.Change]
    tags: dict[str, str]  # the firm's tags: name → why
    state: State
    computed_at: dt.datetime | None = None
    feedback: dict[int, str] = field(default_factory=dict)  # latest word per policy


def _firm_tags(db: Session, enterprise_id: int) -> dict[str, str]:
    return dict(
        db.execute(
            select(Tag.name, EnterpriseTag.reason)
            .join(Tag, Tag.id == EnterpriseTag.tag_id)
            .where(EnterpriseTag.enterprise_id == enterprise_id)
        )
        .tuples()
        .all()
    )


def _state(db: Session, stored: store.Stored | None, firm: Enterprise, ps: PolicySet) -> State:
    if stored is None:
        return "pending"
    matched = db.scalar(select(MatcherState.matched_revision).where(MatcherState.id == 1)) or 0
    if stored.profile_at != firm.profile_updated_at or max(stored.revision, matched) < ps.revision:
        return "stale"
    return "ready"


def _category_codes(db: Session, code: str) -> set[str]:
    """A category and its sub-categories."""
    rows = db.execute(select(Category.code, Category.parent_id, Category.id)).all()
    by_id = {cid: (c, parent) for c, parent, cid in rows}
    wanted = {cid for c, _, cid in rows if c == code}
    changed = True
    while changed:
        changed = False
        for cid, (_, parent) in by_id.items():
            if parent in wanted and cid not in wanted:
                wanted.add(cid)
                changed = True
    return {by_id[cid][0] for cid in wanted}


def _passes(p: PolicyInfo, filters: Filters, today: dt.date, categories: set[str] | None) -> bool:
    closed = (p.apply_start_on and p.apply_start_on > today) or (p.apply_end_on and p.apply_end_on < today)
    if filters.open_now and p.policy_type == "application" and closed:
        return False
    if categories is not None and not categories.intersection(p.categories):
        return False
    return not (filters.min_amount is not None and (p.max_amount or 0) < filters.min_amount)


def recommend(
    *,
    db: Session,
    matcher: Any,
    enterprise_id: int,
    include: Iterable[str] = (ELIGIBLE, LIKELY),
    limit: int = 20,
    offset: int = 0,
    today: dt.date | None = None,
    filters: Filters | None = None,
    with_changes: bool = True,
) -> Page:
    """Return a page of a firm's recommendations, best first, from its stored matches."""
    today = today or dt.date.today()
    firm = db.scalar(
        select(Enterprise).where(Enterprise.id == enterprise_id).options(selectinload(Enterprise.qualifications))
    )
    if firm is None:
        raise NotFound("企业不存在", code="profiles.enterprise_not_found")
    ps: PolicySet = matcher.policy_sets.get(db, today=today)
    stored = store.read(db, enterprise_id)
    tags = _firm_tags(db, enterprise_id)
    latest = feedback.latest_for_firm(db=db, enterprise_id=enterprise_id)
    state = _state(db, stored, firm, ps)
    page = Page(firm, [], 0, [], tags, state, stored.computed_at if stored else None, latest)
    if stored is None:
        return page
    hidden, shifts = feedback.adjustments(latest)
    wanted = set(include) | {ELIGIBLE}
    filters = filters or Filters()
    categories = _category_codes(db, filters.category) if filters.category else None
    candidates: list[tuple[int, int, Components, float | None]] = []  # (position, status, components, cosine)
    w = matcher.weights
    for item in stored.items:
        j = ps.position.get(int(item["policy"]))
        if j is None or int(item["policy"]) in hidden:
            continue
        status = int(item["status"])
        if _STATUS[status] not in wanted or not _passes(ps.policies[j], filters, today, categories):
            continue
        candidates.append((j, status, _components(item, ps.policies[j], today, w, shifts), _cosine(item)))
    if INELIGIBLE in wanted:
        for entry in stored.near:
            j = ps.position.get(int(entry["policy"]))
            if (
                j is not None
                and int(entry["policy"]) not in hidden
                and _passes(ps.policies[j], filters, today, categories)
            ):
                comp = Components(rules=0.0, tags=0.0, semantic=0.0, urgency=0.0, adjustment=0.0)
                candidates.append((j, 0, comp, None))
    scores = ranker_mod.score_components([c[2] for c in candidates], w, matcher.ranker)
    home = matcher.settings.home_region
    ranked = sorted(
        zip(scores, candidates, strict=True),
        # Equal scores: the home city's and nationwide policies first (HUIQI_HOME_REGION), then by id.
        key=lambda x: (-x[0], home_rank(ps.policies[x[1][0]].region_codes, home), ps.policies[x[1][0]].id),
    )
    page.total = len(ranked)
    shown = ranked[offset : offset + limit]
    facts = eligibility.profile_facts(firm, today, tags=tags)
    needs = set(ps.vocab.find_in_text(firm.needs)) if firm.needs else set()
    for score, (j, _, comp, cosine) in shown:
        policy = ps.policies[j]
        verdict = eligibility.evaluate(policy.rules, facts, today=today)
        shared = ps.shared_tags(j, set(tags))
        comp.shared_tags = shared
        page.items.append(
            Recommendation(
                policy=policy,
                verdict=verdict,
                components=comp,
                score=score,
                similarity=cosine,
                shared_tags=shared,
                needs_overlap=sorted(needs & ps.tags[j]),
            )
        )
    if with_changes:
        page.changes = _changes(stored, ps, facts, today, hidden)
    return page


def _components(item: np.void, policy: PolicyInfo, today: dt.date, w: Any, shifts: Mapping[int, float]) -> Components:
    return Components(
        rules=int(item["rules"]) / store.SCALE,
        tags=int(item["tags"]) / store.SCALE,
        semantic=int(item["semantic"]) / store.SCALE,
        urgency=urgency_score(policy.apply_end_on, today, w) if policy.policy_type == "application" else 0.0,
        adjustment=shifts.get(policy.id, 0.0),
    )


def _cosine(item: np.void) -> float | None:
    value = int(item["cosine"])
    return None if value == store.NO_COSINE else value / store.SCALE


def _changes(
    stored: store.Stored, ps: PolicySet, facts: Mapping[str, Any], today: dt.date, hidden: set[int]
) -> list[eligibility.Change]:
    """The few profile changes that would open the most policies, from the best undecided and near misses."""
    pool = [(float(i["base"]), int(i["policy"])) for i in stored.items if int(i["status"]) == 1]
    pool += [(float(n["base"]), int(n["policy"])) for n in stored.near]
    pool.sort(key=lambda x: (-x[0], x[1]))
    verdicts = {}
    for _, pid in pool:
        j = ps.position.get(pid)
        if j is None or pid in hidden:
            continue
        verdict = eligibility.evaluate(ps.policies[j].rules, facts, today=today)
        if verdict.status != ELIGIBLE:
            verdicts[pid] = verdict
        if len(verdicts) >= CHANGE_WINDOW:
            break
    return eligibility.best_changes(verdicts)
