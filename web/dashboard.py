"""The dashboard (驾驶舱) for staff: enquiries per day by kind, the instant-answer rate, on-time rate and
satisfaction by department, the push funnel, policy coverage and hot topics, drawn with Apache ECharts
(served from node_modules) from the figures desk/stats.py, desk/topics.py, push/stats.py and the
matcher's stored results compute.

The page embeds its data as JSON (and /dashboard/data serves the same JSON), so the charts need no
second request; every chart has its figures as a table too. Desk officers see their own
department's desk figures only; push and coverage figures are for curators, supervisors and admins.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from applications import stats as applications_stats
from auth.models import Role
from auth.service import Principal
from catalog import service as catalog_service
from core.config import Settings
from core.db import utcnow
from core.deps import AppSettings, DbSession
from core.errors import NotFound
from desk import clock, queries
from desk import stats as desk_stats
from desk import topics as desk_topics
from matcher import coverage as matcher_coverage
from push import stats as push_stats
from web.deps import WebAllow
from web.templating import ROLE_HOME, WebRoute, register_nav, render

router = APIRouter(prefix="/dashboard", route_class=WebRoute, include_in_schema=False)
# Everyone who may read desk figures (desk.stats.STATS_ROLES, the API's permission too) opens the dashboard.
Staff = Annotated[Principal, Depends(WebAllow(*desk_stats.STATS_ROLES))]

register_nav("驾驶舱", "/dashboard", (Role.curator, Role.supervisor, Role.admin, Role.desk), order=160)
ROLE_HOME.setdefault(Role.admin, "/dashboard")

PERIODS = {7: "最近 7 天", 30: "最近 30 天", 90: "最近 90 天"}
PUSH_ROLES = (Role.curator, Role.supervisor, Role.admin)
DEPARTMENT_ROLES = (Role.supervisor, Role.admin, Role.curator)


def _today(settings: Settings) -> dt.date:
    return utcnow().astimezone(clock.site_tz(settings)).date()


def _scope(principal: Principal, department_id: int | None) -> int | None:
    """Desk officers see their own department; others the department they pick, or everything."""
    if principal.role == Role.desk:
        return principal.department_id if principal.department_id is not None else -1
    return department_id


def dashboard_data(
    *,
    db: Session,
    settings: Settings,
    principal: Principal,
    days: int = 30,
    department_id: int | None = None,
    funnel_policy_id: int | None = None,
) -> dict[str, Any]:
    """Gather the dashboard's figures from the services, as JSON-ready data."""
    end = _today(settings)
    start = end - dt.timedelta(days=days - 1)
    scope = _scope(principal, department_id)
    calendar = clock.site_calendar(settings)
    tz = str(calendar.tz)
    stats = desk_stats.compute_stats(db=db, calendar=calendar, start=start, end=end, department_id=scope, tz=tz)
    daily = desk_stats.cases_per_day(db=db, start=start, end=end, tz=tz, department_id=scope)
    topics = desk_topics.hot_topics(db=db, days=days, department_id=scope, max_topics=10)
    data: dict[str, Any] = {
        "period": {"start": start.isoformat(), "end": end.isoformat(), "days": days},
        "desk": {
            "total": stats.total,
            "instant_answered": stats.instant_answered,
            "instant_answer_rate": stats.instant_answer_rate,
            "scoped": scope is not None,
            "on_time_rate": stats.on_time_rate,
            "satisfaction_rate": stats.satisfaction_rate,
            "overdue_now": stats.overdue_now,
            "closure_rate": stats.closure_rate,
            "avg_working_days": stats.avg_working_days,
            "by_kind": stats.by_kind,
            "escalations": stats.escalations,
        },
        "daily": daily,
        "departments": [
            {
                "name": d.department_name,
                "received": d.received,
                "finished": d.finished,
                "on_time_rate": d.on_time_rate,
                "satisfaction_rate": d.satisfaction_rate,
                "overdue_now": d.overdue_now,
                "rated": d.rated,
            }
            for d in stats.departments
        ],
        "topics": [
            {
                "rank": t["rank"],
                "count": t["count"],
                "title": t["representative"]["title"],
                "terms": t["terms"][:5],
                "departments": [d["name"] for d in t["departments"][:3]],
                "ratings": t["sources"]["rating"],
            }
            for t in topics.topics
        ],
        "topic_policies": [p for p in topics.policies if p["flagged"]][:10],
        "push": None,
        "coverage": None,
        # Applications and payouts of the period (desk officers: their department's policies).
        "applications": applications_stats.figures(
            db=db, actor=principal, department_id=department_id, start=start, end=end
        ),
    }
    if principal.role in PUSH_ROLES:
        by_policy = push_stats.delivery_stats(
            db=db, filters=push_stats.DeliveryFilters(), group_by="policy", settings=settings
        )
        pushed = [r for r in by_policy["rows"] if r["key"]]
        pushed.sort(key=lambda r: -r["sent"])
        chosen = funnel_policy_id or (int(pushed[0]["key"]) if pushed else None)
        funnel = None
        if chosen is not None:
            try:
                funnel = push_stats.funnel(db=db, policy_id=chosen)
            except NotFound:  # an unknown policy id in the query string: no funnel, the rest stands
                funnel = None
        since = push_stats.DeliveryFilters(date_from=start, date_to=end)
        channels = push_stats.delivery_stats(db=db, filters=since, group_by="channel", settings=settings)
        data["push"] = {
            "funnel": funnel,
            "policies": [{"id": int(r["key"]), "title": r["label"], "sent": r["sent"]} for r in pushed[:30]],
            "channels": channels["rows"],
            "totals": channels["totals"],
        }
        data["coverage"] = matcher_coverage.policy_coverage(db=db, limit=15)
    return data


def _choices(db: Session, principal: Principal, home_region: str | None = None) -> list[tuple[int, str]]:
    if principal.role not in DEPARTMENT_ROLES:
        return []
    return [(d.id, d.name) for d in catalog_service.list_departments(db=db, home_region=home_region)]


@router.get("")
def dashboard(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    staff: Staff,
    days: Annotated[int, Query()] = 30,
    department: Annotated[int | None, Query()] = None,
    policy: Annotated[int | None, Query()] = None,
) -> Response:
    """The dashboard page: figures, charts and their tables."""
    days = days if days in PERIODS else 30
    data = dashboard_data(
        db=db, settings=settings, principal=staff, days=days, department_id=department, funnel_policy_id=policy
    )
    dept_name = None
    if staff.role == Role.desk and staff.department_id:
        dept = queries.department_names(db, [staff.department_id]).get(staff.department_id)
        dept_name = dept.name if dept else None
    return render(
        request,
        "dashboard.html",
        {
            "data": data,
            "days": days,
            "periods": PERIODS,
            "department": department,
            "departments": _choices(db, staff, settings.home_region),
            "dept_name": dept_name,
            "funnel_policy": policy,
            "policy_href": "/staff/policies/" if staff.role in (Role.curator, Role.admin) else "/policies/",
        },
    )


@router.get("/data")
def dashboard_json(
    db: DbSession,
    settings: AppSettings,
    staff: Staff,
    days: Annotated[int, Query()] = 30,
    department: Annotated[int | None, Query()] = None,
    policy: Annotated[int | None, Query()] = None,
) -> Response:
    """The dashboard's figures as JSON (what the page embeds)."""
    days = days if days in PERIODS else 30
    data = dashboard_data(
        db=db, settings=settings, principal=staff, days=days, department_id=department, funnel_policy_id=policy
    )
    return JSONResponse(data)
