"""A firm's recommendations, served from its stored matches: reads only, nothing computed per policy.

One request reads the firm, its stored matches (one row), its latest feedback and its tags, adds
today's urgency and the feedback adjustments to the stored candidates, filters and pages them, and
takes the reasons (✓ ✗ ?) of the policies on the page and the change suggestions from the wording
the batch stored with the matches (`matcher.wording`). Only what that wording cannot vouch for —
another day, a changed profile or tags, an edited policy, a row written before wording was stored —
is judged when read, exactly as the batch would. Stored matches older than the catalog or the
profile are still served, marked stale: the worker's catch-up is already due to refresh them
(`matcher.jobs`), and no request ever waits for it. A firm with nothing stored yet gets an empty
page marked pending.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, selectinload

from catalog.models import Category, Tag
from core.errors import NotFound
from matcher import eligibility, feedback, store, wording
from matcher import ranker as ranker_mod
from matcher.eligibility import ELIGIBLE, INELIGIBLE, LIKELY, PolicyVerdict
from matcher.models import EnterpriseTag, MatcherState
from matcher.policyset import PolicyInfo, PolicySet
from matcher.ranking import Components, urgency_score
from profiles.models import Enterprise

State = Literal["ready", "stale", "pending"]
_STATUS = {2: ELIGIBLE, 1: LIKELY, 0: INELIGIBLE}
CHANGE_WINDOW = wording.WINDOW  # best undecided or near-miss policies that feed "what would open more policies"
Verdict = PolicyVerdict | wording.Verdict  # judged now, or as the batch stored it (the same words)


@dataclass
class Recommendation:
    """One policy for one firm, with its verdict, score, components and reasons."""

    policy: PolicyInfo
    verdict: Verdict
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


@dataclass(frozen=True)
class Firm:
    """What a page shows and checks of the firm (one prepared read; the full profile only when judging)."""

    id: int
    name: str
    completeness: int
    profile_updated_at: dt.datetime
    needs: str | None


@dataclass
class Page:
    """A page of a firm's recommendations and what the page says about them."""

    enterprise: Firm
    items: list[Recommendation]
    total: int
    changes: list[eligibility.Change]
    tags: dict[str, str]  # the firm's tags: name → why
    state: State
    computed_at: dt.datetime | None = None
    feedback: dict[int, str] = field(default_factory=dict)  # latest word per policy
    judged: int = 0  # verdicts judged while reading (0 when the stored wording covered the page)


# Every page runs these: prepared once, executed on the session's connection (no ORM).
_FIRM = select(
    Enterprise.id, Enterprise.name, Enterprise.completeness, Enterprise.profile_updated_at, Enterprise.needs
).where(Enterprise.id == bindparam("enterprise_id"))
_TAGS = (
    select(Tag.name, EnterpriseTag.reason)
    .join(Tag, Tag.id == EnterpriseTag.tag_id)
    .where(EnterpriseTag.enterprise_id == bindparam("enterprise_id"))
)
_MATCHED = select(MatcherState.matched_revision).where(MatcherState.id == bindparam("id"))


def _firm_tags(db: Session, enterprise_id: int) -> dict[str, str]:
    return {name: reason for name, reason in db.connection().execute(_TAGS, {"enterprise_id": enterprise_id})}


def _state(db: Session, stored: store.Stored | None, firm: Firm, ps: PolicySet) -> State:
    if stored is None:
        return "pending"
    if stored.profile_at != firm.profile_updated_at:
        return "stale"
    if stored.revision >= ps.revision:
        return "ready"
    matched = db.connection().execute(_MATCHED, {"id": 1}).scalar() or 0
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
    reword: bool = False,
) -> Page:
    """Return a page of a firm's recommendations, best first, from its stored matches.

    `reword=True` ignores the stored wording and judges every verdict now: the reference the stored
    wording is held to (tests, checks).
    """
    today = today or dt.date.today()
    row = db.connection().execute(_FIRM, {"enterprise_id": enterprise_id}).first()
    if row is None:
        raise NotFound("企业不存在", code="profiles.enterprise_not_found")
    firm = Firm(*row)
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
    home = ps.home_ranks(matcher.settings.home_region)
    ranked = sorted(
        zip(scores, candidates, strict=True),
        # Equal scores: the home city's and nationwide policies first (HUIQI_HOME_REGION), then by id.
        key=lambda x: (-x[0], home[x[1][0]], ps.policies[x[1][0]].id),
    )
    page.total = len(ranked)
    shown = ranked[offset : offset + limit]
    judge = _Judge(db, firm.id, tags, today, ps, None if reword else _usable_words(stored, firm, tags, today))
    needs = set(ps.vocab.find_in_text(firm.needs)) if firm.needs and shown else set()
    firm_tags = set(tags)
    for score, (j, _, comp, cosine) in shown:
        policy = ps.policies[j]
        shared = ps.shared_tags(j, firm_tags)
        comp.shared_tags = shared
        page.items.append(
            Recommendation(
                policy=policy,
                verdict=judge.verdict(j),
                components=comp,
                score=score,
                similarity=cosine,
                shared_tags=shared,
                needs_overlap=sorted(needs & ps.tags[j]),
            )
        )
    if with_changes:
        page.changes = _changes(stored, ps, judge, hidden)
    page.judged = judge.judged
    return page


def _usable_words(stored: store.Stored, firm: Firm, tags: Mapping[str, str], today: dt.date) -> wording.Words | None:
    """Return the stored wording when it holds today (`Words.usable_on`) for this profile and these tags; None otherwise."""
    if not stored.words or stored.profile_at != firm.profile_updated_at:
        return None
    words = wording.unpack(store.words_of(stored.words))
    if words is None or not words.usable_on(today) or words.tags != wording.tag_digest(tags):
        return None
    return words


class _Judge:
    """A policy's verdict for the firm: the stored one while its policy version is current, else judged now."""

    def __init__(
        self,
        db: Session,
        enterprise_id: int,
        tags: Mapping[str, str],
        today: dt.date,
        ps: PolicySet,
        words: wording.Words | None,
    ) -> None:
        self.db, self.enterprise_id, self.tags, self.today, self.ps, self.words = (
            db,
            enterprise_id,
            tags,
            today,
            ps,
            words,
        )
        self._facts: eligibility.Facts | None = None
        self._judged: dict[int, PolicyVerdict] = {}
        self.judged = 0  # verdicts judged here rather than read (tests and the bench look)

    def facts(self) -> eligibility.Facts:
        if self._facts is None:
            firm = self.db.scalar(
                select(Enterprise)
                .where(Enterprise.id == self.enterprise_id)
                .options(selectinload(Enterprise.qualifications))
            )
            assert firm is not None
            self._facts = eligibility.profile_facts(firm, self.today, tags=self.tags)
        return self._facts

    def stored(self, j: int) -> wording.Verdict | None:
        if self.words is None:
            return None
        policy = self.ps.policies[j]
        return self.words.verdict(policy.id, policy.version, policy.rules)

    def judge(self, j: int) -> PolicyVerdict:
        verdict = self._judged.get(j)
        if verdict is None:
            self.judged += 1
            verdict = self._judged[j] = eligibility.evaluate(self.ps.policies[j].rules, self.facts(), today=self.today)
        return verdict

    def verdict(self, j: int) -> Verdict:
        return self.stored(j) or self.judge(j)

    def status(self, j: int) -> str:
        if self.words is not None:
            policy = self.ps.policies[j]
            status = self.words.status(policy.id, policy.version)
            if status is not None:
                return status
        return self.judge(j).status


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


def _changes(stored: store.Stored, ps: PolicySet, judge: _Judge, hidden: set[int]) -> list[eligibility.Change]:
    """The few profile changes that would open the most policies, from the best undecided and near misses.

    The stored suggestions are served when they were computed from the same policies at the same
    versions (and the stored verdicts are current); otherwise they are computed here.
    """

    def status_of(pid: int) -> str | None:
        j = ps.position.get(pid)
        return None if j is None else judge.status(j)

    chosen = wording.window(wording.pool(stored.items, stored.near), status_of, hidden)
    keyed = [(pid, ps.policies[ps.position[pid]].version) for pid in chosen]
    if judge.words is not None and keyed == judge.words.window:
        return judge.words.changes
    return eligibility.best_changes({pid: judge.judge(ps.position[pid]) for pid in chosen})
