"""HTTP routes for desk statistics, the monthly XLSX report, hot topics and the 12345 import.

Supervisors, admins and curators see the whole site; a desk officer sees their own department only (asking
for another department is refused). The same roles (desk.stats.STATS_ROLES) see the dashboard's desk panel.
"""

from __future__ import annotations

import datetime as dt
from enum import Enum
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Response

from auth.deps import Allow
from auth.models import Role
from auth.service import Principal
from core import tabular
from core.config import Settings
from core.db import utcnow
from core.deps import UPLOAD_OPENAPI, AppSettings, DbSession, UploadedFile
from core.errors import PermissionDenied
from core.tabular import ImportFailed, ImportReport
from desk import clock
from desk import io as desk_io
from desk import stats as desk_stats
from desk import topics as desk_topics

router = APIRouter(prefix="/desk")
TAGS: list[str | Enum] = ["服务台统计"]

# One permission for desk figures, shared with the dashboard (desk.stats.STATS_ROLES).
StatsReader = Annotated[Principal, Depends(Allow(*desk_stats.STATS_ROLES))]
TopicsReader = StatsReader
Importer = Annotated[Principal, Depends(Allow(Role.supervisor, Role.admin))]
DepartmentParam = Annotated[int | None, Query(description="只统计此部门（业务专员只能看本部门）")]


def _department_scope(actor: Principal, department_id: int | None) -> int | None:
    """Return the department the caller may see: desk officers their own, others what they ask for."""
    if actor.role != Role.desk:
        return department_id
    if actor.department_id is None:
        raise PermissionDenied("业务专员账号未绑定部门，无法查看统计", code="desk.no_department")
    if department_id not in (None, actor.department_id):
        raise PermissionDenied("业务专员只能查看本部门的统计", code="desk.other_department")
    return actor.department_id


def _today(settings: Settings) -> dt.date:
    return utcnow().astimezone(clock.site_tz(settings)).date()


@router.get("/stats", response_model=desk_stats.DeskStats, tags=TAGS)
def get_stats(
    db: DbSession,
    actor: StatsReader,
    settings: AppSettings,
    start: Annotated[dt.date | None, Query(description="起始日（含），默认本月1日")] = None,
    end: Annotated[dt.date | None, Query(description="截止日（含），默认今天")] = None,
    department_id: DepartmentParam = None,
) -> desk_stats.DeskStats:
    """Figures for the cases received in a period: totals, rates, handling time, the per-department table."""
    today = _today(settings)
    end = end or today
    start = start or end.replace(day=1)
    calendar = clock.site_calendar(settings)
    return desk_stats.compute_stats(
        db=db,
        calendar=calendar,
        start=start,
        end=end,
        department_id=_department_scope(actor, department_id),
        tz=str(calendar.tz),
    )


@router.get("/stats/report", tags=TAGS, response_class=Response)
def get_monthly_report(
    db: DbSession,
    actor: StatsReader,
    settings: AppSettings,
    month: Annotated[str | None, Query(description="月份 YYYY-MM，默认本月", pattern=r"^\d{4}-\d{1,2}$")] = None,
    department_id: DepartmentParam = None,
) -> Response:
    """Download the month's XLSX report: summary, per-department table (考核), hot topics, policies drawing enquiries."""
    month = month or _today(settings).strftime("%Y-%m")
    calendar = clock.site_calendar(settings)
    data = desk_stats.monthly_report(
        db=db,
        calendar=calendar,
        month=month,
        department_id=_department_scope(actor, department_id),
        tz=str(calendar.tz),
    )
    first, _ = desk_stats.month_bounds(month)
    name_zh, name_en = f"诉求月报-{first:%Y-%m}.xlsx", f"desk-report-{first:%Y-%m}.xlsx"
    disposition = f"attachment; filename=\"{name_en}\"; filename*=UTF-8''{quote(name_zh)}"
    return Response(content=data, media_type=tabular.XLSX_MEDIA_TYPE, headers={"Content-Disposition": disposition})


@router.get("/hot-topics", tags=TAGS)
def get_hot_topics(
    db: DbSession,
    actor: TopicsReader,
    days: Annotated[int, Query(ge=1, le=366, description="统计最近多少天的诉求")] = desk_topics.DEFAULT_DAYS,
    min_size: Annotated[int, Query(ge=2, le=100, description="至少多少件相似诉求才算热点")] = 2,
    department_id: DepartmentParam = None,
) -> dict[str, Any]:
    """Cluster recent enquiries into hot topics (共性诉求) and list policies that draw many enquiries."""
    scope = _department_scope(actor, department_id)
    result = desk_topics.hot_topics(db=db, days=days, min_size=min_size, department_id=scope)
    return result.to_dict()


@router.post(
    "/import/12345",
    response_model=ImportReport,
    tags=TAGS,
    responses={422: {"description": "有行未通过校验，未写入任何数据；响应体含完整报告（report）"}},
    openapi_extra=UPLOAD_OPENAPI,
)
def import_12345(
    db: DbSession,
    actor: Importer,
    settings: AppSettings,
    file: UploadedFile,
    partial: Annotated[bool, Query(description="部分导入：写入无误的行，仅报告有误的行")] = False,
) -> ImportReport:
    """Import a 12345 hotline export (CSV/XLSX): one case per new 工单编号; re-importing creates nothing."""
    report = desk_io.import_12345(
        db=db, settings=settings, data=file.data, filename=file.filename, actor=actor, partial=partial
    )
    if report.rejected:
        raise ImportFailed(report)
    return report
