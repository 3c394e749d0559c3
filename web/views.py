"""What the templates show, shaped from the services' results: no rules are judged here."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from sqlalchemy.orm import Session

from catalog import service as catalog_service
from catalog.models import Policy
from catalog.schemas import PolicyFilters
from matcher import search as matcher_search
from matcher import tags as tags_mod
from matcher.eligibility import LIKELY, STATUS_LABELS
from matcher.engine import Matcher
from matcher.home import applies_to, home_rank
from matcher.policyset import PolicyInfo
from matcher.recommend import Recommendation
from profiles.derived import FIELD_LABELS

STATE_ICONS = {"met": ("✓", "满足"), "not_met": ("✗", "不满足"), "unknown": ("?", "待补充资料")}


@dataclass
class PolicyRow:
    """A policy in a list, with its countdown and, in search results, how it was found."""

    policy: Policy
    days_left: int | None
    keyword: bool = False
    semantic: float | None = None


@dataclass
class PolicyPage:
    """One page of the library."""

    rows: list[PolicyRow]
    total: int
    searched: bool
    mode: str = ""  # search only: "hybrid", or "keyword" while the embedder is still loading
    reachable: int | None = None  # search only: hits that can be paged through (the best `limit`)
    more: bool = False  # search only: more policies match than were ranked (total is a lower bound)


def policy_row(policy: Policy, today: dt.date) -> PolicyRow:
    """Wrap a policy for a list."""
    return PolicyRow(policy=policy, days_left=catalog_service.days_left(policy, today))


def _has_filters(filters: PolicyFilters) -> bool:
    return bool(filters.category or filters.department or filters.level or filters.open_now)


def search_policies(
    *,
    db: Session,
    matcher: Matcher,
    filters: PolicyFilters,
    page: int,
    page_size: int,
    limit: int,
    today: dt.date,
    home_region: str | None = None,
) -> PolicyPage:
    """Search by meaning and words (the matcher's hybrid search), keep the hits the catalog filters admit.

    A region (the firm's own, or the one picked) keeps only the policies that apply there; on equal scores
    the home city's and nationwide policies come first.
    """
    found = matcher_search.find(
        db=db, matcher=matcher, q=filters.q or "", limit=limit, region=filters.region, today=today
    )
    hits = found.hits
    if filters.region:
        hits = [h for h in hits if applies_to(h.policy.region_codes, filters.region)]
    hits = sorted(hits, key=lambda h: (-h.score, home_rank(h.policy.region_codes, home_region)))
    if _has_filters(filters):
        # The catalog's own filter decides what passes, so the library filters mean the same with or without words.
        allowed, _ = catalog_service.list_policies(
            db=db,
            filters=filters.model_copy(update={"q": None, "sort": "published"}),
            actor=None,
            limit=10_000,
            today=today,
        )
        wanted = {p.id for p in allowed}
        hits = [h for h in hits if h.policy.id in wanted]
    if filters.sort == "deadline":
        # Open windows first, soonest first; the search order otherwise.
        def key(h: Any) -> tuple:
            end = h.policy.apply_end_on
            return (end is None or end < today, end or dt.date.max)

        hits = sorted(hits, key=key)
    start = (page - 1) * page_size
    rows = [
        PolicyRow(
            policy=h.policy,
            days_left=catalog_service.days_left(h.policy, today),
            keyword=h.keyword,
            semantic=h.semantic,
        )
        for h in hits[start : start + page_size]
    ]
    # The total counts every hit above the relevance cut-off; with library filters only the admitted ones.
    filtered = _has_filters(filters) or len(hits) < len(found.hits)
    total = len(hits) if filtered else found.total
    return PolicyPage(
        rows=rows, total=total, searched=True, mode=found.mode, reachable=len(hits), more=found.more and not filtered
    )


def page_links(request: Request, page: int, pages: int) -> list[tuple[str, str | None, bool]]:
    """Return (label, url, is current) for the pager: first, neighbours, last, with gaps as '…'."""
    if pages <= 1:
        return []
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "page"]

    def url(n: int) -> str:
        return request.url.path + "?" + urlencode([*params, ("page", str(n))])

    shown = sorted({1, pages, *range(max(1, page - 2), min(pages, page + 2) + 1)})
    out: list[tuple[str, str | None, bool]] = []
    if page > 1:
        out.append(("上一页", url(page - 1), False))
    last = 0
    for n in shown:
        if n - last > 1:
            out.append(("…", None, False))
        out.append((str(n), url(n), n == page))
        last = n
    if page < pages:
        out.append(("下一页", url(page + 1), False))
    return out


def paragraphs(text: str | None) -> list[str]:
    """Split a long text into its paragraphs."""
    return [p.strip() for p in (text or "").splitlines() if p.strip()]


@dataclass
class ConditionView:
    icon: str
    state: str
    state_label: str
    reason: str
    needs: list[str] = field(default_factory=list)


@dataclass
class RecommendationCard:
    """One recommended policy with its reasons, as the firm and the calculator see it."""

    policy: PolicyInfo
    days_left: int | None
    status: str
    status_label: str
    score: float
    summary: str
    conditions: list[ConditionView]
    shared_tags: list[str]
    needs_overlap: list[str]
    fields_to_fill: list[str]
    feedback: str | None = None


def recommendation_card(r: Recommendation, today: dt.date, feedback: str | None = None) -> RecommendationCard:
    """Shape one recommendation for the page."""
    v = r.verdict
    return RecommendationCard(
        policy=r.policy,
        days_left=catalog_service.days_left(r.policy, today),
        status=v.status,
        status_label=STATUS_LABELS[v.status],
        score=r.score,
        summary=v.summary,
        conditions=[
            ConditionView(
                icon=STATE_ICONS[c.state][0],
                state=c.state,
                state_label=STATE_ICONS[c.state][1],
                reason=c.reason,
                needs=[FIELD_LABELS.get(n, n) for n in c.needs],
            )
            for c in v.conditions
        ],
        shared_tags=list(r.shared_tags),
        needs_overlap=list(r.needs_overlap),
        fields_to_fill=[FIELD_LABELS.get(f, f) for f in v.fields_to_fill],
        feedback=feedback,
    )


@dataclass
class BlockingField:
    """A profile field the firm has not filled in, and the policies that cannot be judged without it."""

    field: str
    label: str
    policies: list[PolicyInfo]


def blocking_fields(recommendations: list[Recommendation]) -> list[BlockingField]:
    """Group the likely policies by the fields whose absence leaves them undecided, most policies first."""
    by_field: dict[str, BlockingField] = {}
    for r in recommendations:
        if r.verdict.status != LIKELY:
            continue
        for name in r.verdict.fields_to_fill:
            entry = by_field.setdefault(name, BlockingField(name, FIELD_LABELS.get(name, name), []))
            entry.policies.append(r.policy)
    return sorted(by_field.values(), key=lambda b: (-len(b.policies), b.label))


def resolve_qualifications(*, db: Session, names: list[str]) -> tuple[list[str], list[str]]:
    """Resolve qualification names (abbreviations allowed) to canonical tags; return (resolved, unknown)."""
    vocab = tags_mod.Vocabulary.from_db(db)
    resolved: list[str] = []
    unknown: list[str] = []
    for name in names:
        canonical = vocab.resolve(name)
        (resolved if canonical else unknown).append(canonical or name)
    return resolved, unknown
