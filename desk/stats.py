"""Desk statistics for a period, the per-department table for 考核, and the monthly XLSX report.

The cohort is the cases received in the period (local dates, both ends included). Every figure is
about that cohort, as it stands now:

- ``instant_answered``: cases answered instantly (即接即答复) that never went to a person — they
  have an ``answered_instantly`` event and were never dispatched; the instant-answer rate divides by
  all cases (site-wide only: for one department it is None, as instant answers belong to no department);
- ``dispatched``: cases that became work orders (派单); ``solved``: dispatched cases the department
  has resolved (办结答复 given);
- ``finished``: cases finished either way (resolved, or closed — e.g. an accepted instant answer);
  closure rate = finished / all cases;
- on time: a dispatched case is *due* when it is finished or its close deadline has passed; it is
  *on time* when it finished (resolved, else closed) no later than its close deadline. On-time rate
  = on time / due, so a department that lets cases lie does not look punctual;
- ``overdue_now``: dispatched, unfinished and past the close deadline now;
- average handling time: working days (the site's WorkCalendar, pauses taken out) from receipt — or
  from when the firm asked for a person after an instant answer — to resolution, over the solved cases;
- satisfaction rate: (满意 + 基本满意) / rated cases, by each case's latest rating.

The per-department table counts work orders (dispatched cases) for their current lead department; cases
still in the central dispatch queue form a row of their own. ``returns`` and ``extensions`` count the return
(退单) and extension (延期) requests a department made in the period, whatever case they were for.
"""

from __future__ import annotations

import datetime as dt
import io
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from openpyxl import load_workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from applications import stats as applications_stats
from auth.models import Role
from catalog.models import TYPE_LABELS, Department
from core import tabular
from core.config import Settings
from core.db import utcnow
from core.errors import FieldError, ValidationFailed
from core.tabular import new_workbook
from core.workcal import WorkCalendar
from desk import clock
from desk import topics as desk_topics
from desk.models import CHANNEL_LABELS, RATING_LABELS, Case, CaseEvent, CasePause, CaseStatus, EventKind
from desk.sla import KIND_LABELS, KINDS

_IN_CHUNK = 500
_SATISFIED = ("satisfied", "basically_satisfied")
_LEVELS = {1: "yellow", 2: "orange", 3: "red"}
_LEVEL_LABELS = {"yellow": "黄色预警", "orange": "橙色预警", "red": "红色预警"}
CENTRAL_QUEUE = "统一分拨（未分配部门）"


class DepartmentStats(BaseModel):
    """One row of the per-department table (考核)."""

    department_id: int | None = Field(description="部门 ID；空表示统一分拨队列")
    department_code: str | None = None
    department_name: str = Field(description="部门名称")
    received: int = Field(0, description="受理量：本期受理、派给本部门（现由本部门承办）的工单")
    finished: int = Field(0, description="办结量（含关闭）")
    solved: int = Field(0, description="派单中已办结答复的件数")
    due: int = Field(0, description="应办结件数（已办结或已过办结时限）")
    on_time: int = Field(0, description="按时办结件数")
    on_time_rate: float | None = Field(None, description="按时办结率 = 按时办结 / 应办结")
    overdue_now: int = Field(0, description="当前超期未办结件数")
    avg_working_days: float | None = Field(None, description="平均办理时长（工作日）")
    rated: int = Field(0, description="已评价件数")
    satisfied: int = Field(0, description="满意 + 基本满意件数")
    satisfaction_rate: float | None = Field(None, description="满意率 = (满意 + 基本满意) / 已评价")
    returns: int = Field(0, description="本期退单申请次数")
    extensions: int = Field(0, description="本期延期申请次数")


class DeskStats(BaseModel):
    """The desk's figures for a period, site-wide or for one department."""

    start: dt.date = Field(description="统计起始日（含）")
    end: dt.date = Field(description="统计截止日（含）")
    department_id: int | None = Field(None, description="只统计此部门；空为全站")
    generated_at: dt.datetime
    total: int = Field(0, description="诉求总数")
    by_kind: dict[str, int] = Field(default_factory=dict, description="按诉求类型")
    by_channel: dict[str, int] = Field(default_factory=dict, description="按渠道")
    instant_answered: int = Field(0, description="即时答复（未转人工）件数")
    instant_answer_rate: float | None = Field(None, description="即时答复率")
    dispatched: int = Field(0, description="派单量")
    solved: int = Field(0, description="派单中已办结件数")
    finished: int = Field(0, description="办结量（含即时答复后关闭）")
    closure_rate: float | None = Field(None, description="办结率 = 办结量 / 诉求总数")
    due: int = Field(0, description="应办结件数")
    on_time: int = Field(0, description="按时办结件数")
    on_time_rate: float | None = Field(None, description="按时办结率")
    overdue_now: int = Field(0, description="当前超期未办结件数")
    avg_working_days: float | None = Field(None, description="平均办理时长（工作日）")
    rated: int = Field(0, description="已评价件数")
    ratings: dict[str, int] = Field(default_factory=dict, description="按评价结果")
    satisfaction_rate: float | None = Field(None, description="满意率")
    reopened: int = Field(0, description="重新办理过的件数")
    escalations: dict[str, int] = Field(default_factory=dict, description="达到各级预警的件数（按最高级）")
    departments: list[DepartmentStats] = Field(default_factory=list, description="分部门统计（考核表）")


# Who may read desk figures: the statistics and monthly report API, hot topics, and the dashboard's desk panel
# all use this one list. Curators read them site-wide (where firms struggle with policies is what they
# fix); desk officers their own department only; firms never.
STATS_ROLES = (Role.desk, Role.supervisor, Role.admin, Role.curator)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _chunks(items: Sequence[Any], size: int = _IN_CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def period_bounds(start: dt.date, end: dt.date, tz: str) -> tuple[dt.datetime, dt.datetime]:
    """Return the UTC instants [start 00:00, the day after end 00:00) in the given time zone."""
    if end < start:
        raise ValidationFailed(
            "统计截止日不能早于起始日", errors=[FieldError("end", "统计截止日不能早于起始日", "date_order")]
        )
    zone = ZoneInfo(tz)
    lo = dt.datetime.combine(start, dt.time(0), tzinfo=zone).astimezone(dt.UTC)
    hi = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(0), tzinfo=zone).astimezone(dt.UTC)
    return lo, hi


def month_bounds(month: str) -> tuple[dt.date, dt.date]:
    """Return the first and last day of a month written YYYY-MM."""
    try:
        year, mon = (int(x) for x in month.strip().split("-"))
        first = dt.date(year, mon, 1)
    except (ValueError, TypeError):
        raise ValidationFailed(
            f"月份「{month}」格式有误，应为 YYYY-MM",
            errors=[FieldError("month", "月份格式应为 YYYY-MM", "month_parsing")],
        ) from None
    nxt = dt.date(year + (mon == 12), mon % 12 + 1, 1)
    return first, nxt - dt.timedelta(days=1)


def _finished_at(case: Case) -> dt.datetime | None:
    return case.resolved_at or (case.closed_at if case.status == CaseStatus.closed else None)


def _handling_days(case: Case, start: dt.datetime, pauses: list[CasePause], calendar: WorkCalendar) -> float:
    end = case.resolved_at
    assert end is not None
    holes = [(p.start, p.end or end) for p in pauses if p.start < end]
    return max(calendar.working_days_between(start, end, pauses=holes), 0.0)


class _Tally:
    """Running counts for one group of cases (the site or one department)."""

    def __init__(self) -> None:
        self.received = self.dispatched = self.finished = self.solved = 0
        self.due = self.on_time = self.overdue_now = self.rated = self.satisfied = 0
        self.days: list[float] = []

    def add(
        self,
        case: Case,
        *,
        dispatched: bool,
        started_at: dt.datetime,
        now: dt.datetime,
        pauses: list[CasePause],
        calendar: WorkCalendar,
    ) -> None:
        self.received += 1
        finished_at = _finished_at(case)
        if finished_at is not None:
            self.finished += 1
        if case.rating:
            self.rated += 1
            self.satisfied += case.rating in _SATISFIED
        if not dispatched:
            return
        self.dispatched += 1
        if case.resolved_at is not None:
            self.solved += 1
            self.days.append(_handling_days(case, started_at, pauses, calendar))
        due_at = case.close_due_at
        if due_at is None:
            return
        if finished_at is not None:
            self.due += 1
            self.on_time += finished_at <= due_at
        elif due_at < now:
            self.due += 1
            self.overdue_now += 1

    @property
    def avg_days(self) -> float | None:
        return round(sum(self.days) / len(self.days), 2) if self.days else None


def compute_stats(
    *,
    db: Session,
    calendar: WorkCalendar,
    start: dt.date,
    end: dt.date,
    department_id: int | None = None,
    now: dt.datetime | None = None,
    tz: str = "Asia/Shanghai",
) -> DeskStats:
    """Return the figures for the cases received from start to end (local dates, inclusive)."""
    now = now or utcnow()
    lo, hi = period_bounds(start, end, tz)
    q = select(Case).where(Case.received_at >= lo, Case.received_at < hi)
    if department_id is not None:
        q = q.where(Case.department_id == department_id)
    cases = list(db.scalars(q.order_by(Case.id)))
    ids = [c.id for c in cases]

    kinds_of: dict[int, set[str]] = defaultdict(set)
    top_level: dict[int, int] = {}
    to_person: dict[int, dt.datetime] = {}  # when the firm first asked for a person after an instant answer
    pauses: dict[int, list[CasePause]] = defaultdict(list)
    wanted = (EventKind.answered_instantly, EventKind.dispatched, EventKind.escalated, EventKind.asked_for_person)
    for chunk in _chunks(ids):
        for case_id, kind, data, at in db.execute(
            select(CaseEvent.case_id, CaseEvent.kind, CaseEvent.data, CaseEvent.at).where(
                CaseEvent.case_id.in_(chunk), CaseEvent.kind.in_(wanted)
            )
        ):
            kinds_of[case_id].add(kind)
            if kind == EventKind.asked_for_person:
                to_person[case_id] = min(to_person.get(case_id, at), at)
            if kind == EventKind.escalated and isinstance(data, dict) and isinstance(data.get("level"), int):
                top_level[case_id] = max(top_level.get(case_id, 0), data["level"])
        for pause in db.scalars(select(CasePause).where(CasePause.case_id.in_(chunk))):
            pauses[pause.case_id].append(pause)

    site = _Tally()
    per_dept: dict[int | None, _Tally] = defaultdict(_Tally)
    by_kind: Counter[str] = Counter({k: 0 for k in KINDS})
    by_channel: Counter[str] = Counter({k: 0 for k in CHANNEL_LABELS})
    ratings: Counter[str] = Counter({k: 0 for k in RATING_LABELS})
    instant = reopened = 0
    escalations: Counter[str] = Counter({v: 0 for v in _LEVELS.values()})
    for case in cases:
        events = kinds_of.get(case.id, set())
        dispatched = case.dispatched_at is not None or EventKind.dispatched in events
        if EventKind.answered_instantly in events and not dispatched:
            instant += 1
        by_kind[case.kind] += 1
        by_channel[case.channel] += 1
        if case.rating:
            ratings[case.rating] += 1
        reopened += case.reopen_count > 0
        level = max(top_level.get(case.id, 0), case.escalation_level or 0)
        if level in _LEVELS:
            escalations[_LEVELS[level]] += 1
        # The department table is about work orders; instant answers belong to no department.
        for tally in (site, per_dept[case.department_id]) if dispatched else (site,):
            tally.add(
                case,
                dispatched=dispatched,
                started_at=to_person.get(case.id, case.received_at),
                now=now,
                pauses=pauses.get(case.id, []),
                calendar=calendar,
            )

    # Requests a department made in the period, whichever case they were for.
    requests: dict[int | None, Counter[str]] = defaultdict(Counter)
    q_req = select(CaseEvent.department_id, CaseEvent.kind).where(
        CaseEvent.at >= lo,
        CaseEvent.at < hi,
        CaseEvent.kind.in_((EventKind.return_requested, EventKind.extension_requested)),
    )
    if department_id is not None:
        q_req = q_req.where(CaseEvent.department_id == department_id)
    for dept, kind in db.execute(q_req):
        requests[dept][kind] += 1

    dept_ids = {d for d in (*per_dept, *requests) if d is not None}
    if department_id is not None:
        dept_ids.add(department_id)
    names = {d.id: d for d in (db.scalars(select(Department).where(Department.id.in_(dept_ids))) if dept_ids else [])}
    rows = []
    for dept in sorted(
        {*per_dept, *requests, *([department_id] if department_id is not None else [])},
        key=lambda d: (d is None, names[d].code if d in names else ""),
    ):
        t = per_dept.get(dept) or _Tally()
        d = names.get(dept) if dept is not None else None
        rows.append(
            DepartmentStats(
                department_id=dept,
                department_code=d.code if d else None,
                department_name=d.name if d else CENTRAL_QUEUE,
                received=t.received,
                finished=t.finished,
                solved=t.solved,
                due=t.due,
                on_time=t.on_time,
                on_time_rate=_rate(t.on_time, t.due),
                overdue_now=t.overdue_now,
                avg_working_days=t.avg_days,
                rated=t.rated,
                satisfied=t.satisfied,
                satisfaction_rate=_rate(t.satisfied, t.rated),
                returns=requests[dept][EventKind.return_requested],
                extensions=requests[dept][EventKind.extension_requested],
            )
        )

    return DeskStats(
        start=start,
        end=end,
        department_id=department_id,
        generated_at=now,
        total=len(cases),
        by_kind=dict(by_kind),
        by_channel=dict(by_channel),
        instant_answered=instant,
        # Instant answers belong to no department: a department's rate would read 0% whatever was answered.
        instant_answer_rate=_rate(instant, len(cases)) if department_id is None else None,
        dispatched=site.dispatched,
        solved=site.solved,
        finished=site.finished,
        closure_rate=_rate(site.finished, len(cases)),
        due=site.due,
        on_time=site.on_time,
        on_time_rate=_rate(site.on_time, site.due),
        overdue_now=site.overdue_now,
        avg_working_days=site.avg_days,
        rated=site.rated,
        ratings=dict(ratings),
        satisfaction_rate=_rate(site.satisfied, site.rated),
        reopened=reopened,
        escalations=dict(escalations),
        departments=rows,
    )


# ---------------------------------------------------------------- the monthly XLSX report

_BOLD = Font(bold=True)
_HEAD_FILL = PatternFill("solid", fgColor="DDEBF7")
_PERCENT = "0.00%"
_DAYS = "0.00"

SHEET_SUMMARY = "汇总"
SHEET_DEPARTMENTS = "部门考核"
SHEET_TOPICS = "热点诉求"
SHEET_POLICIES = "政策咨询热度"
SHEET_APPLICATIONS = "申报兑现"
SHEET_APPLICATION_DEPARTMENTS = "部门兑现"
APPLICATION_HEADERS = (
    "政策",
    "类型",
    "部门",
    "申报（不含撤回）",
    "通过（公示、已兑现）",
    "未通过",
    "通过率",
    "兑现笔数（含免申即享）",
    "兑现金额（万元）",
    "发布至兑现中位天数",
    "符合条件企业",
    "符合但未申报",
)

DEPARTMENT_HEADERS = (
    "部门",
    "受理量（派单）",
    "办结量",
    "已办结派单",
    "应办结",
    "按时办结",
    "按时办结率",
    "当前超期",
    "平均办理时长（工作日）",
    "已评价",
    "满意（含基本满意）",
    "满意率",
    "退单申请",
    "延期申请",
)


def _write_sheet(sheet: Any, headers: Sequence[str], rows: Iterable[Sequence[Any]], formats: dict[int, str]) -> None:
    """Write a header row and data rows; numbers stay numbers, rates and days get number formats."""
    tabular.append_row(sheet, list(headers))
    for cell in sheet[1]:
        cell.font = _BOLD
        cell.fill = _HEAD_FILL
        cell.alignment = Alignment(vertical="center", wrap_text=True)
    widths = [max(8, _width(h)) for h in headers]
    for values in rows:
        values = [tabular.clean_text(v) if isinstance(v, str) else v for v in values]
        tabular.append_row(sheet, values)
        for col, value in enumerate(values, start=1):
            cell = sheet.cell(row=sheet.max_row, column=col)
            if col in formats and isinstance(value, int | float):
                cell.number_format = formats[col]
            if isinstance(value, str) and col <= len(widths):
                widths[col - 1] = max(widths[col - 1], min(_width(value), 60))
                if "\n" in value or len(value) > 40:
                    cell.alignment = Alignment(wrap_text=True, vertical="top")
    for col, width in enumerate(widths, start=1):
        sheet.column_dimensions[get_column_letter(col)].width = min(width + 2, 62)
    sheet.freeze_panes = "A2"


def _width(text: str) -> int:
    line = max(str(text).splitlines() or [""], key=len)
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in line)


def _summary_rows(stats: DeskStats, department_name: str | None) -> list[tuple[str, Any, str]]:
    rows: list[tuple[str, Any, str]] = [
        ("统计期间", f"{stats.start.isoformat()} 至 {stats.end.isoformat()}", "按受理时间"),
        ("统计范围", department_name or "全部部门", ""),
        ("诉求总数", stats.total, ""),
    ]
    rows += [(f"  {KIND_LABELS[k]}", stats.by_kind.get(k, 0), "按诉求类型") for k in KINDS]
    rows += [(f"  {label}", stats.by_channel.get(k, 0), "按渠道") for k, label in CHANNEL_LABELS.items()]
    rows += [
        ("即时答复件数", stats.instant_answered, "知识库即接即答复、未转人工"),
        ("即时答复率", stats.instant_answer_rate, "即时答复件数 / 诉求总数"),
        ("派单量", stats.dispatched, "转为工单派给部门办理"),
        ("已办结派单", stats.solved, "派单中部门已办结答复"),
        ("办结量", stats.finished, "已办结或已关闭（含即时答复后关闭）"),
        ("办结率", stats.closure_rate, "办结量 / 诉求总数"),
        ("应办结", stats.due, "已办结或已过办结时限的派单"),
        ("按时办结", stats.on_time, "在办结时限内办结"),
        ("按时办结率", stats.on_time_rate, "按时办结 / 应办结"),
        ("当前超期未办结", stats.overdue_now, ""),
        ("平均办理时长（工作日）", stats.avg_working_days, "受理（或转人工）至办结，扣除挂起时间"),
        ("已评价", stats.rated, ""),
    ]
    rows += [(f"  {label}", stats.ratings.get(k, 0), "按评价结果") for k, label in RATING_LABELS.items()]
    rows += [
        ("满意率", stats.satisfaction_rate, "（满意 + 基本满意）/ 已评价"),
        ("重新办理件数", stats.reopened, "因不满意等原因重办"),
    ]
    rows += [(f"最高达到{_LEVEL_LABELS[k]}", stats.escalations.get(k, 0), "件") for k in ("yellow", "orange", "red")]
    return rows


def monthly_report(
    *,
    db: Session,
    calendar: WorkCalendar,
    month: str,
    department_id: int | None = None,
    now: dt.datetime | None = None,
    tz: str = "Asia/Shanghai",
) -> bytes:
    """Build the month's XLSX: summary, per-department table, hot topics and policies drawing enquiries."""
    first, last = month_bounds(month)
    stats = compute_stats(db=db, calendar=calendar, start=first, end=last, department_id=department_id, now=now, tz=tz)
    lo, hi = period_bounds(first, last, tz)
    hot = desk_topics.hot_topics(db=db, start=lo, end=hi, department_id=department_id)
    dept_name = None
    if department_id is not None:
        dept = db.get(Department, department_id)
        dept_name = dept.name if dept else str(department_id)

    book, summary = new_workbook()
    summary.title = SHEET_SUMMARY
    rates = {"即时答复率", "办结率", "按时办结率", "满意率"}
    summary_rows = [
        (name, "—" if value is None else value, note) for name, value, note in _summary_rows(stats, dept_name)
    ]
    _write_sheet(summary, ("指标", "数值", "说明"), summary_rows, {})
    for row in range(2, summary.max_row + 1):
        name = str(summary.cell(row=row, column=1).value)
        cell = summary.cell(row=row, column=2)
        if name in rates and isinstance(cell.value, float):
            cell.number_format = _PERCENT
        elif name.startswith("平均办理时长") and isinstance(cell.value, float):
            cell.number_format = _DAYS

    dept_sheet = book.create_sheet(SHEET_DEPARTMENTS)
    _write_sheet(
        dept_sheet,
        DEPARTMENT_HEADERS,
        (
            (
                d.department_name,
                d.received,
                d.finished,
                d.solved,
                d.due,
                d.on_time,
                "—" if d.on_time_rate is None else d.on_time_rate,
                d.overdue_now,
                "—" if d.avg_working_days is None else d.avg_working_days,
                d.rated,
                d.satisfied,
                "—" if d.satisfaction_rate is None else d.satisfaction_rate,
                d.returns,
                d.extensions,
            )
            for d in stats.departments
        ),
        {7: _PERCENT, 9: _DAYS, 12: _PERCENT},
    )

    topic_sheet = book.create_sheet(SHEET_TOPICS)
    _write_sheet(
        topic_sheet,
        ("排名", "诉求数量", "代表性诉求", "关键词", "涉及部门", "诉求类型", "工单号示例"),
        (
            (
                t["rank"],
                t["count"],
                t["representative"]["title"] or t["representative"]["content"],
                "、".join(t["terms"]),
                "；".join(f"{d['name']}（{d['count']}）" for d in t["departments"]),
                "；".join(f"{KIND_LABELS.get(k, k)}（{n}）" for k, n in t["kinds"].items()),
                t["representative"]["number"] or "企业评价",
            )
            for t in hot.topics
        ),
        {},
    )
    if not hot.topics:
        tabular.append_row(topic_sheet, ["本月没有形成集中的共性诉求"])

    policy_sheet = book.create_sheet(SHEET_POLICIES)
    _write_sheet(
        policy_sheet,
        ("政策", "相关诉求数", "诉求关联此政策", "即时答复引用", "提请政策管理员关注"),
        ((p["title"], p["enquiries"], p["related"], p["cited"], "是" if p["flagged"] else "") for p in hot.policies),
        {},
    )

    # Applications made and payouts dated in the month, per policy and per department (applications.stats).
    figures = applications_stats.policy_figures(db=db, department_id=department_id, start=first, end=last)
    rows = [f.as_dict() for f in figures if f.applications or f.paid or f.never_applied]
    rows.sort(key=lambda r: (-r["amount_paid"], -r["applications"], r["policy_id"]))
    app_sheet = book.create_sheet(SHEET_APPLICATIONS)
    _write_sheet(
        app_sheet,
        APPLICATION_HEADERS,
        (
            (
                r["title"],
                TYPE_LABELS.get(r["policy_type"], r["policy_type"]),
                r["department_name"],
                r["applications"],
                r["approved"],
                r["rejected"],
                "—" if r["approval_rate"] is None else r["approval_rate"],
                r["paid"],
                r["amount_paid"],
                "—" if r["median_days_to_payout"] is None else r["median_days_to_payout"],
                r["eligible"],
                r["never_applied"],
            )
            for r in rows
        ),
        {7: _PERCENT, 9: "0.00", 10: _DAYS},
    )
    if not rows:
        tabular.append_row(app_sheet, ["本月没有申报或兑现"])
    dept_apps = book.create_sheet(SHEET_APPLICATION_DEPARTMENTS)
    _write_sheet(
        dept_apps,
        (
            "部门",
            "政策数",
            "申报",
            "通过",
            "未通过",
            "通过率",
            "兑现笔数",
            "兑现金额（万元）",
            "发布至兑现中位天数",
            "符合但未申报",
        ),
        (
            (
                d["department_name"],
                d["policies"],
                d["applications"],
                d["approved"],
                d["rejected"],
                "—" if d["approval_rate"] is None else d["approval_rate"],
                d["paid"],
                d["amount_paid"],
                "—" if d["median_days_to_payout"] is None else d["median_days_to_payout"],
                d["never_applied"],
            )
            for d in applications_stats.department_figures(figures)
        ),
        {6: _PERCENT, 8: "0.00", 9: _DAYS},
    )

    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def read_report(data: bytes) -> dict[str, list[list[Any]]]:
    """Read a report back as {sheet title: rows of values} (for checks and tests)."""
    book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    try:
        return {ws.title: [list(r) for r in ws.iter_rows(values_only=True)] for ws in book.worksheets}
    finally:
        book.close()


def site_stats(
    *, db: Session, settings: Settings, start: dt.date, end: dt.date, department_id: int | None = None
) -> DeskStats:
    """compute_stats with the site's calendar and time zone from settings."""
    calendar = clock.site_calendar(settings)
    return compute_stats(
        db=db, calendar=calendar, start=start, end=end, department_id=department_id, tz=str(calendar.tz)
    )


def cases_per_day(
    *, db: Session, start: dt.date, end: dt.date, tz: str = "Asia/Shanghai", department_id: int | None = None
) -> dict[str, Any]:
    """Count the cases received per local day (start to end, inclusive) and kind, and those answered instantly.

    Returns ``{"days": [ISO dates], "kinds": {kind: [count per day]}, "kind_labels": {...},
    "instant": [count per day]}``; every day of the period is present, with zeros where nothing came in.
    """
    lo, hi = period_bounds(start, end, tz)
    zone = ZoneInfo(tz)
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    slot = {d: i for i, d in enumerate(days)}
    kinds: dict[str, list[int]] = {k: [0] * len(days) for k in KINDS}
    instant = [0] * len(days)
    q = select(Case.id, Case.received_at, Case.kind, Case.dispatched_at).where(
        Case.received_at >= lo, Case.received_at < hi
    )
    if department_id is not None:
        q = q.where(Case.department_id == department_id)
    rows = db.execute(q).all()
    answered: set[int] = set()
    ids = [r.id for r in rows if r.dispatched_at is None]
    for chunk in _chunks(ids):
        answered.update(
            db.scalars(
                select(CaseEvent.case_id).where(
                    CaseEvent.case_id.in_(chunk), CaseEvent.kind == EventKind.answered_instantly
                )
            )
        )
    for r in rows:
        i = slot.get(r.received_at.astimezone(zone).date())
        if i is None:
            continue
        kinds.setdefault(r.kind, [0] * len(days))[i] += 1
        if r.id in answered:
            instant[i] += 1
    return {
        "days": [d.isoformat() for d in days],
        "kinds": kinds,
        "kind_labels": {k: KIND_LABELS.get(k, k) for k in kinds},
        "instant": instant,
    }
