"""Public pages: home, the policy library with search and filters, a policy's page, the policy calculator."""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from applications import service as applications_service
from auth.models import Role
from auth.service import Principal
from catalog import attachments as policy_files
from catalog import rules as rules_mod
from catalog import service as catalog_service
from catalog.models import PolicyLevel
from catalog.schemas import PolicyFilters
from core import codes, events
from core.deps import AppDatabase, AppSettings, DbSession
from core.errors import FieldError, HuiqiError, ValidationFailed
from core.ratelimit import client_key
from core.responses import download_response
from desk import ratings as desk_ratings
from matcher import calculator as matcher_calculator
from matcher import eligibility
from matcher import feedback as matcher_feedback
from matcher.deps import MatcherDep
from matcher.engine import Matcher
from matcher.recommend import Recommendation
from matcher.schemas import CalculatorIn
from profiles.models import Enterprise
from web import choices, views
from web.deps import WebFirm, WebVisitor
from web.firm import feedback_response
from web.forms import FormErrors, PageForm, form_list, form_values
from web.templating import WebRoute, redirect, render

router = APIRouter(route_class=WebRoute, include_in_schema=False)

LIST_PAGE_SIZE = 12
SEARCH_PAGE_SIZE = 10
SEARCH_LIMIT = 50  # search hits considered before filters and paging
HOME_CLOSING = 6
CALCULATOR_LIMIT = 20


def _blank(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def _filters(
    q: str | None,
    category: str | None,
    department: str | None,
    level: str | None,
    region: str | None,
    open_now: str | None,
    sort: str | None,
) -> PolicyFilters:
    """Read the library's query string leniently: unknown or empty values are ignored, not refused."""
    level = _blank(level)
    region = _blank(region)
    return PolicyFilters(
        q=_blank(q),
        category=_blank(category),
        department=_blank(department),
        level=PolicyLevel(level) if level and level in PolicyLevel.__members__ else None,
        region=region if region and region.isdigit() and len(region) == 6 else None,
        open_now=open_now in ("1", "on", "true"),
        sort=sort if sort in ("published", "deadline", "title") else "published",
    )


@router.get("/")
def home(request: Request, db: DbSession, visitor: WebVisitor) -> Response:
    """Home: search box, popular categories, policies closing soon, latest policies."""
    today = dt.date.today()
    tops = catalog_service.list_categories(db=db)
    counted = [
        (c, catalog_service.list_policies(db=db, filters=PolicyFilters(category=c.code), actor=None, limit=0)[1])
        for c in tops
    ]
    popular = sorted((x for x in counted if x[1]), key=lambda x: -x[1])
    # The catalog lists pinned policies first; "closing soon" is strictly by deadline.
    soonest, open_total = catalog_service.list_policies(
        db=db, filters=PolicyFilters(open_now=True, sort="deadline"), actor=None, limit=HOME_CLOSING * 3, today=today
    )
    closing = sorted(soonest, key=lambda p: (p.apply_end_on, p.id))[:HOME_CLOSING]
    latest, total = catalog_service.list_policies(db=db, filters=PolicyFilters(), actor=None, limit=5, today=today)
    return render(
        request,
        "home.html",
        {
            "popular": popular,
            "closing": [views.policy_row(p, today) for p in closing],
            "latest": [views.policy_row(p, today) for p in latest],
            "total": total,
            "open_total": open_total,
        },
    )


def _firm_region(db: Any, visitor: Principal | None) -> str | None:
    """Return the signed-in firm's region code, None for anyone else."""
    if visitor is None or visitor.role != Role.enterprise or visitor.enterprise_id is None:
        return None
    firm = db.get(Enterprise, visitor.enterprise_id)
    return (firm.region_code or None) if firm is not None else None


@router.get("/policies")
def policy_library(
    request: Request,
    db: DbSession,
    matcher: MatcherDep,
    visitor: WebVisitor,
    q: Annotated[str | None, Query(max_length=200)] = None,
    category: str | None = None,
    department: str | None = None,
    level: str | None = None,
    region: str | None = None,
    open_now: str | None = None,
    sort: str | None = None,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    """The policy library: search by meaning and words, filter, page through.

    A signed-in firm sees only the policies that apply to its region (never a 广州 policy for a 中山 firm).
    """
    today = dt.date.today()
    firm_region = _firm_region(db, visitor)
    filters = _filters(q, category, department, level, region or firm_region, open_now, sort)
    if filters.q:
        if visitor is None:  # every search embeds the query: anonymous visitors are rate-limited
            request.app.state.search_limiter.check(client_key(request))
        result = views.search_policies(
            db=db,
            matcher=matcher,
            filters=filters,
            page=page,
            page_size=SEARCH_PAGE_SIZE,
            limit=SEARCH_LIMIT,
            today=today,
            home_region=request.app.state.settings.home_region,
        )
        page_size = SEARCH_PAGE_SIZE
    else:
        items, total = catalog_service.list_policies(
            db=db, filters=filters, actor=None, offset=(page - 1) * LIST_PAGE_SIZE, limit=LIST_PAGE_SIZE, today=today
        )
        result = views.PolicyPage(rows=[views.policy_row(p, today) for p in items], total=total, searched=False)
        page_size = LIST_PAGE_SIZE
    pages = max(1, math.ceil((result.total if result.reachable is None else result.reachable) / page_size))
    context = {
        "filters": filters,
        "result": result,
        "page": page,
        "pages": pages,
        "page_links": views.page_links(request, page, pages),
        "categories": choices.categories(db=db),
        "departments": choices.departments(db=db, home_region=request.app.state.settings.home_region),
        "levels": choices.LEVELS,
        "region_groups": choices.region_groups(request.app.state.settings.home_region, filters.region),
        "firm_region": codes.region_name(firm_region) if firm_region else None,
    }
    if request.headers.get("hx-request") and request.headers.get("hx-target") == "results":
        return render(request, "_policy_results.html", context)
    return render(request, "policies.html", context)


def _policy_context(db: Session, policy: Any, visitor: Principal | None) -> dict[str, Any]:
    feedback = own_rating = app_status = None
    if visitor is not None and visitor.enterprise_id is not None:
        feedback = matcher_feedback.latest_for_firm(
            db=db, enterprise_id=visitor.enterprise_id, policy_ids=[policy.id]
        ).get(policy.id)
        app_status = applications_service.statuses_for_firm(
            db=db, enterprise_id=visitor.enterprise_id, policy_ids=[policy.id]
        ).get(policy.id)
        own_rating = desk_ratings.own_rating(db=db, enterprise_id=visitor.enterprise_id, policy_id=policy.id)
    return {
        "policy": policy,
        "days_left": catalog_service.days_left(policy),
        "rules_text": rules_mod.describe_rules(policy.rules, region_name=codes.region_name) if policy.rules else [],
        "regions": [codes.region_name(c) or c for c in policy.region_codes],
        "paragraphs": views.paragraphs,
        "feedback": feedback,
        "app_status": app_status,
        "feedback_actions": matcher_feedback.FEEDBACK_ACTIONS,
        "rating_summary": desk_ratings.summaries(db=db, policy_ids=[policy.id])[policy.id],
        "own_rating": own_rating,
        "star_labels": desk_ratings.STAR_LABELS,
        "comment_max": desk_ratings.COMMENT_MAX,
        "rating_values": {},
        "rating_errors": FormErrors(),
        "attachments": policy_files.list_policy_attachments(db, policy_id=policy.id, actor=visitor),
    }


@router.get("/policies/{policy_id}")
def policy_page(
    request: Request, db: DbSession, database: AppDatabase, tasks: BackgroundTasks, visitor: WebVisitor, policy_id: int
) -> Response:
    """A policy: summary, interpretation, interpreter, conditions in words, countdown, application link, ratings."""
    policy = catalog_service.get_visible_policy(db=db, policy_id=policy_id, actor=visitor)
    # The same funnel event the API records when a firm opens a policy.
    events.policies_seen(tasks=tasks, database=database, principal=visitor, policy_ids=[policy.id], kind="viewed")
    context = _policy_context(db, policy, visitor)
    context["rated"] = request.query_params.get("rated") == "1"
    return render(request, "policy.html", context)


@router.post("/policies/{policy_id}/rating")
def policy_rating(request: Request, db: DbSession, firm: WebFirm, policy_id: int, form: PageForm) -> Response:
    """A firm rates a policy it viewed or applied to (1–5 and a comment); rating again edits its rating."""
    values = form_values(form, ("stars", "comment"))
    try:
        stars = int(values["stars"] or "0")
    except ValueError:
        stars = 0
    try:
        desk_ratings.rate_policy(
            db=db,
            enterprise_id=firm.own_enterprise_id,
            policy_id=policy_id,
            stars=stars,
            comment=values["comment"],
            user_id=firm.user_id,
        )
    except HuiqiError as exc:
        db.rollback()
        policy = catalog_service.get_visible_policy(db=db, policy_id=policy_id, actor=firm)
        context = _policy_context(db, policy, firm)
        context["rating_values"] = values
        context["rating_errors"] = FormErrors.from_domain(exc)
        return render(request, "policy.html", context, status_code=exc.status_code)
    return redirect(request, f"/policies/{policy_id}?rated=1#rating")


@router.get("/policies/{policy_id}/attachments/{attachment_id}")
def policy_attachment(
    db: DbSession, settings: AppSettings, visitor: WebVisitor, policy_id: int, attachment_id: int
) -> Response:
    """Download a policy's attachment (anyone who may see the policy; staff also a draft's)."""
    row = policy_files.get_policy_attachment(db, policy_id=policy_id, attachment_id=attachment_id, actor=visitor)
    return download_response(settings=settings, attachment=row)


@router.post("/policies/{policy_id}/feedback")
def policy_feedback(
    request: Request, db: DbSession, matcher: MatcherDep, firm: WebFirm, policy_id: int, form: PageForm
) -> Response:
    """A firm marks a policy interesting, not relevant or applied from the policy page."""
    return feedback_response(
        request,
        form=form,
        db=db,
        matcher=matcher,
        firm=firm,
        policy_id=policy_id,
        source="policy_page",
        back=f"/policies/{policy_id}",
    )


CALCULATOR_FIELDS = (
    "region_code",
    "industry_code",
    "established_on",
    "employees",
    "annual_revenue",
    "rd_expense",
    "credit_standing",
    "tax_credit_level",
    "needs",
)


def _calculate(
    *, db: Session, matcher: Matcher, body: CalculatorIn
) -> tuple[list[Recommendation], list[eligibility.Change]]:
    """Run the calculator as the API does: qualifications resolved through the tag vocabulary."""
    attributes = body.model_dump(exclude={"limit"}, exclude_none=True)
    if body.qualifications:
        resolved, unknown = views.resolve_qualifications(db=db, names=body.qualifications)
        if unknown:
            raise ValidationFailed(
                errors=[FieldError("qualifications", f"资质「{'、'.join(unknown)}」不在标签库中", "unknown_tag")]
            )
        attributes["qualifications"] = resolved
    try:
        _, items, changes = matcher_calculator.calculator(
            db=db, matcher=matcher, attributes=attributes, limit=body.limit
        )
    except ValueError as exc:
        raise ValidationFailed(str(exc), code="matcher.invalid_attributes") from exc
    return items, changes


@router.get("/calculator")
def calculator(
    request: Request,
    db: DbSession,
    database: AppDatabase,
    tasks: BackgroundTasks,
    matcher: MatcherDep,
    visitor: WebVisitor,
) -> Response:
    """The policy calculator (政策计算器): a few attributes in, matching policies with reasons out."""
    params = request.query_params
    values = form_values(params, CALCULATOR_FIELDS)
    picked = form_list(params, "qualifications")
    context: dict = {
        "values": {k: v or "" for k, v in values.items()},
        "picked": set(picked),
        "errors": FormErrors(),
        "submitted": params.get("go") == "1",
        "limit": CALCULATOR_LIMIT,
        "region_groups": choices.region_groups(request.app.state.settings.home_region, values.get("region_code")),
        "industries": choices.industry_divisions(),
        "qualifications": choices.qualifications(db=db),
        "credit": choices.CREDIT,
        "tax_levels": choices.TAX_LEVELS,
    }
    if context["submitted"]:
        try:
            body = CalculatorIn(
                **{k: v for k, v in values.items() if v is not None},
                qualifications=picked or None,
                limit=CALCULATOR_LIMIT,
            )
        except ValidationError as exc:
            context["errors"] = FormErrors.from_validation(exc)
        else:
            request.app.state.calculator_limiter.check(client_key(request))
            try:
                items, changes = _calculate(db=db, matcher=matcher, body=body)
            except ValidationFailed as exc:
                context["errors"] = FormErrors.from_domain(exc)
            else:
                today = dt.date.today()
                context["items"] = [views.recommendation_card(r, today) for r in items]
                context["changes"] = changes
                events.policies_seen(
                    tasks=tasks,
                    database=database,
                    principal=visitor,
                    policy_ids=[r.policy.id for r in items],
                    kind="calculator",
                )
    return render(request, "calculator.html", context)
