"""HTTP routes of the matcher: recommendations, the policy calculator, eligible firms, search, tag suggestions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Request, Response
from pydantic import AfterValidator
from sqlalchemy.orm import Session

from auth.deps import (
    CuratorUser,
    EnterpriseCaller,
    EnterpriseUser,
    FirmReaderCaller,
    FirmStaff,
    PublicUser,
    StaffUser,
    public,
)
from auth.models import Role
from catalog import service as catalog_service
from core import codes, events
from core.deps import AppDatabase, AppSettings, DbSession, PageParams, Paging, on_one_thread, reads_only
from core.errors import FieldError, NotFound, ValidationFailed
from core.ratelimit import client_key
from core.responses import json_response
from core.schemas import Id, Page
from matcher import calculator, export, feedback, jobs, lists, recommend, runs, search, suggestions
from matcher import tags as tags_mod
from matcher.deps import MatcherDep
from matcher.eligibility import ELIGIBLE, INELIGIBLE, LIKELY, STATUS_LABELS
from matcher.recommend import Recommendation
from matcher.schemas import (
    CalculatorIn,
    EligibleEnterpriseOut,
    FeedbackIn,
    FeedbackOut,
    MatchStatusOut,
    RecommendationsOut,
    SearchHitOut,
    TagSuggestionOut,
)
from profiles.derived import FIELD_LABELS

router = APIRouter()


def _card(policy: Any, today: dt.date) -> dict[str, Any]:
    """A policy card as RecommendationOut.policy (a PolicyInfo or an ORM Policy)."""
    dept = policy.issuing_department
    return {
        "id": policy.id,
        "title": policy.title,
        "summary": policy.summary,
        "issuing_department": {"id": dept.id, "code": dept.code, "name": dept.name, "short_name": dept.short_name},
        "policy_type": str(policy.policy_type),
        "level": str(policy.level),
        "apply_end_on": policy.apply_end_on,
        "max_amount": policy.max_amount,
        "amount_text": policy.amount_text,
        "apply_url": policy.apply_url,
        "days_left": None if policy.apply_end_on is None else (policy.apply_end_on - today).days,
    }


def _condition(c: Any) -> dict[str, Any]:
    return {
        "path": c.path,
        "field": c.field,
        "state": c.state,
        "reason": c.reason,
        "needs": [FIELD_LABELS.get(n, n) for n in c.needs],
    }


def _recommendation(r: Recommendation, today: dt.date, feedback: Mapping[int, str] | None = None) -> dict[str, Any]:
    """One recommendation shaped as RecommendationOut (built directly: validated once, by the tests)."""
    v, comp = r.verdict, r.components
    return {
        "policy": _card(r.policy, today),
        "status": v.status,
        "status_label": STATUS_LABELS[v.status],
        "score": r.score,
        "components": {
            "rules": comp.rules,
            "tags": comp.tags,
            "semantic": comp.semantic,
            "urgency": comp.urgency,
            "adjustment": comp.adjustment,
        },
        "reasons": {
            "summary": v.summary,
            "conditions": [_condition(c) for c in v.conditions],
            "shared_tags": r.shared_tags,
            "needs_overlap": r.needs_overlap,
            "similarity": round(r.similarity, 4) if r.similarity is not None else None,
        },
        "missing": [_condition(c) for c in v.missing],
        "fields_to_fill": [FIELD_LABELS.get(f, f) for f in v.fields_to_fill],
        "feedback": (feedback or {}).get(r.policy.id),
    }


def _changes(changes: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {"description": c.description, "field": c.field, "policy_ids": list(c.policy_ids), "count": len(c.policy_ids)}
        for c in changes
    ]


def _include(include: str | None) -> set[str]:
    wanted: set[str] = {ELIGIBLE, LIKELY}
    for part in (include or "").split(","):
        part = part.strip()
        if part:
            if part not in (ELIGIBLE, LIKELY, INELIGIBLE):
                raise ValidationFailed(
                    errors=[FieldError("include", "取值应为 eligible、likely、ineligible 的组合", "invalid")]
                )
            wanted.add(part)
    return wanted


def _recommendations(
    db: Session, matcher: Any, enterprise_id: Id, include: str | None, paging: PageParams, filters: recommend.Filters
) -> Response:
    today = dt.date.today()
    page = recommend.recommend(
        db=db,
        matcher=matcher,
        enterprise_id=enterprise_id,
        include=_include(include),
        limit=paging.page_size,
        offset=paging.offset,
        today=today,
        filters=filters,
    )
    firm = page.enterprise
    return json_response(
        {
            "enterprise_id": firm.id,
            "enterprise_name": firm.name,
            "completeness": firm.completeness,
            "tags": [{"name": n, "why": w} for n, w in page.tags.items()],
            "items": [_recommendation(r, today, page.feedback) for r in page.items],
            "changes": _changes(page.changes),
            "total": page.total,
            "page": paging.page,
            "page_size": paging.page_size,
            "state": page.state,
            "computed_at": page.computed_at,
        }
    )


class RecommendationQuery:
    """Filters and paging of a recommendation list."""

    def __init__(self, include: str | None, filters: recommend.Filters, paging: PageParams) -> None:
        self.include, self.filters, self.paging = include, filters, paging


async def recommendation_query(
    settings: AppSettings,
    include: Annotated[str | None, Query(description="额外包含：likely,ineligible")] = None,
    open_now: Annotated[bool, Query(description="只看现在可申报的")] = False,
    category: Annotated[str | None, Query(max_length=20, pattern=r"^\d+$", description="政策类别代码")] = None,
    min_amount: Annotated[float | None, Query(ge=0, le=1e9, description="最高金额不低于（万元）")] = None,
    page: Annotated[int, Query(ge=1, le=10_000, description="页码，从1开始")] = 1,
    limit: Annotated[int, Query(ge=1, le=200, description="每页条数")] = 20,
) -> RecommendationQuery:
    """Filters and paging of a recommendation list (async: validating them needs no worker thread)."""
    filters = recommend.Filters(open_now=open_now, category=category, min_amount=min_amount)
    return RecommendationQuery(include, filters, PageParams(settings, page=page, page_size=limit))


RecommendationParams = Annotated[RecommendationQuery, Depends(recommendation_query)]


@router.get("/enterprises/me/recommendations", response_model=RecommendationsOut, tags=["匹配"])
async def my_recommendations(
    db: DbSession, matcher: MatcherDep, caller: EnterpriseCaller, q: RecommendationParams
) -> Response:
    """Recommend policies to the signed-in firm, best first, with reasons, from its stored matches."""

    # The hottest route: the caller's check, the read and the response in one hop to a worker thread.
    def page() -> Response:
        actor = caller.verify(db)
        return _recommendations(db, matcher, actor.own_enterprise_id, q.include, q.paging, q.filters)

    return await on_one_thread(db, page)


@router.post("/enterprises/me/feedback", response_model=FeedbackOut, status_code=201, tags=["匹配"])
def give_feedback(db: DbSession, matcher: MatcherDep, actor: EnterpriseUser, body: FeedbackIn) -> FeedbackOut:
    """Mark a policy as interesting, not relevant or applied; "not relevant" drops it from the firm's lists."""
    if body.delivery_id is not None:  # only a push this firm received
        events.emit(events.DeliveryCited(db=db, enterprise_id=actor.own_enterprise_id, delivery_id=body.delivery_id))
    row = feedback.record_feedback(
        db=db,
        enterprise_id=actor.own_enterprise_id,
        policy_id=body.policy_id,
        action=body.action,
        source=body.source,
        delivery_id=body.delivery_id,
        user_id=actor.user_id,
        weights=matcher.weights,
    )
    out = FeedbackOut.model_validate(row)
    out.action_label = feedback.FEEDBACK_ACTIONS[row.action]
    return out


@router.get("/enterprises/{enterprise_id}/recommendations", response_model=RecommendationsOut, tags=["匹配"])
async def recommendations(
    db: DbSession,
    matcher: MatcherDep,
    caller: FirmReaderCaller,
    enterprise_id: Id,
    q: RecommendationParams,
) -> Response:
    """Recommend policies to a firm (staff, or the firm itself), best first, with reasons."""

    def page() -> Response:
        actor = caller.verify(db)
        if actor.role == Role.enterprise and actor.enterprise_id != enterprise_id:
            raise NotFound("企业不存在", code="profiles.enterprise_not_found")
        return _recommendations(db, matcher, enterprise_id, q.include, q.paging, q.filters)

    return await on_one_thread(db, page)


@router.post("/match/calculator", response_model=RecommendationsOut, tags=["匹配"], dependencies=[Depends(public)])
@reads_only
def policy_calculator(
    request: Request,
    db: DbSession,
    database: AppDatabase,
    tasks: BackgroundTasks,
    matcher: MatcherDep,
    body: CalculatorIn,
    actor: PublicUser,
) -> Response:
    """The policy calculator (政策计算器): a few attributes in, matching policies with reasons out; no account needed."""
    request.app.state.calculator_limiter.check(client_key(request))
    data = body.model_dump(exclude={"limit"}, exclude_none=True)
    if body.qualifications:
        resolved = []
        vocab = tags_mod.Vocabulary.from_db(db)
        errors = []
        for i, name in enumerate(body.qualifications):
            canonical = vocab.resolve(name)
            if canonical is None:
                errors.append(FieldError(f"qualifications[{i}]", f"资质「{name}」不在标签库中", "unknown_tag"))
            else:
                resolved.append(canonical)
        if errors:
            raise ValidationFailed(errors=errors)
        data["qualifications"] = resolved
    try:
        facts, items, changes = calculator.calculator(db=db, matcher=matcher, attributes=data, limit=body.limit)
    except ValueError as exc:
        raise ValidationFailed(str(exc), code="matcher.invalid_attributes") from exc
    # A signed-in firm saw these policies in the calculator: the funnel's "calculator" step.
    events.policies_seen(
        tasks=tasks, database=database, principal=actor, policy_ids=[r.policy.id for r in items], kind="calculator"
    )
    today = dt.date.today()
    return json_response({"items": [_recommendation(r, today) for r in items], "changes": _changes(changes)})


@router.get("/policies/search", response_model=list[SearchHitOut], tags=["匹配"])
def search_policies(
    request: Request,
    db: DbSession,
    matcher: MatcherDep,
    actor: PublicUser,
    q: Annotated[str, Query(min_length=1, max_length=200, description="自然语言或关键词，繁简均可")],
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
    region: Annotated[str | None, AfterValidator(codes.checked_region), Query(pattern=r"^\d{6}$")] = None,
) -> Response:
    """Search published policies by meaning and by words (hybrid); anonymous callers are rate-limited.

    Only hits above the relevance cut-off are returned; `X-Total-Count` counts all of them (0 for a
    query nothing answers; `X-Total-Is-Lower-Bound` says more match than were ranked) and `X-Search-Mode` is `keyword` while the embedder is still loading.
    """
    if actor is None:
        request.app.state.search_limiter.check(client_key(request))
    today = dt.date.today()
    found = search.find(db=db, matcher=matcher, q=q, limit=limit, region=region, today=today, cards=True)
    return json_response(
        [
            {"policy": _card(h.policy, today), "score": h.score, "semantic": h.semantic, "keyword": h.keyword}
            for h in found.hits
        ],
        headers={
            "X-Total-Count": str(found.total),
            "X-Total-Is-Lower-Bound": "true" if found.more else "false",
            "X-Search-Mode": found.mode,
        },
    )


@router.get("/policies/{policy_id}/eligible-enterprises", tags=["匹配"], response_model=Page[EligibleEnterpriseOut])
def eligible_enterprises(
    db: DbSession,
    matcher: MatcherDep,
    actor: FirmStaff,
    paging: Paging,
    policy_id: Id,
    status: Annotated[str, Query(description="eligible / likely，可逗号分隔")] = "eligible",
    format: Annotated[str, Query(pattern="^(json|csv|xlsx)$", description="json / csv / xlsx")] = "json",
) -> Page[Any] | Response:
    """List the firms eligible for a policy (the 免申即享 list), best first; export as CSV or XLSX."""
    statuses = [s for s in (x.strip() for x in status.split(",")) if s]
    bad = [s for s in statuses if s not in (ELIGIBLE, LIKELY)]
    if bad or not statuses:
        raise ValidationFailed(errors=[FieldError("status", "取值应为 eligible、likely 或二者以逗号分隔", "invalid")])
    if format == "json":
        policy, rows, total = lists.eligible_enterprises(
            db=db, policy_id=policy_id, statuses=statuses, offset=paging.offset, limit=paging.page_size
        )
        return Page(
            items=[export.eligible_row(m, e) for m, e in rows],
            total=total,
            page=paging.page,
            page_size=paging.page_size,
        )
    data, media, disposition = export.export_eligible(db=db, policy_id=policy_id, statuses=statuses, fmt=format)
    return Response(content=data, media_type=media, headers={"Content-Disposition": disposition})


@router.get("/match/status", response_model=MatchStatusOut, tags=["匹配"])
def match_status(db: DbSession, actor: StaffUser) -> dict[str, Any]:
    """How far matching has caught up: firms with current matches, policies waiting, the latest full run."""
    return runs.status(db)


@router.post("/policies/{policy_id}/eligible-enterprises/refresh", status_code=202, tags=["匹配"])
def refresh_eligible(db: DbSession, actor: CuratorUser, policy_id: Id) -> dict[str, bool]:
    """Queue the making of a policy's eligible-firm list (the worker judges the policy against every firm)."""
    catalog_service.get_policy(db=db, policy_id=policy_id)
    jobs.queue_policy(db, policy_id=policy_id)
    return {"queued": True}


def _suggestion_out(s: suggestions.Suggestion) -> TagSuggestionOut:
    return TagSuggestionOut(id=s.id, tag=s.tag, kind=str(s.kind), source=s.source, score=s.score, status=s.status)


@router.get("/policies/{policy_id}/tag-suggestions", response_model=list[TagSuggestionOut], tags=["匹配"])
def tag_suggestions(db: DbSession, matcher: MatcherDep, actor: CuratorUser, policy_id: Id) -> list[TagSuggestionOut]:
    """Suggest tags for a policy from its text, rules and the trained tagger, for a curator to confirm."""
    return [_suggestion_out(s) for s in suggestions.suggest_policy_tags(db=db, matcher=matcher, policy_id=policy_id)]


@router.post(
    "/policies/{policy_id}/tag-suggestions/{suggestion_id}/accept", response_model=TagSuggestionOut, tags=["匹配"]
)
def accept_tag_suggestion(db: DbSession, actor: CuratorUser, policy_id: Id, suggestion_id: Id) -> TagSuggestionOut:
    """Accept a suggested tag: it is added to the policy."""
    return _suggestion_out(
        suggestions.decide_tag_suggestion(
            db=db, policy_id=policy_id, suggestion_id=suggestion_id, accept=True, actor=actor
        ),
    )


@router.post(
    "/policies/{policy_id}/tag-suggestions/{suggestion_id}/reject", response_model=TagSuggestionOut, tags=["匹配"]
)
def reject_tag_suggestion(db: DbSession, actor: CuratorUser, policy_id: Id, suggestion_id: Id) -> TagSuggestionOut:
    """Reject a suggested tag; it will not be proposed again."""
    return _suggestion_out(
        suggestions.decide_tag_suggestion(
            db=db, policy_id=policy_id, suggestion_id=suggestion_id, accept=False, actor=actor
        ),
    )
