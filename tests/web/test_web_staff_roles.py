"""The staff pages and the firm's enquiry pages over HTTP: who may open what, and that each page does its job.

Walks every route of web.STAFF_ROUTERS (curator, desk officer, supervisor, dashboard, the firm's
enquiries) like tests/web/test_web_roles.py walks the public and firm pages: every route declares
its roles; anonymous visitors go to /login?next=…; other roles get the Chinese 403 page; a desk
officer of another department, or another firm, gets 404 for a case. Then the pages' work: the rule
preview counts equal the engine's verdicts firm by firm, a curator creates, publishes, edits and
diffs a policy, exports the eligible list, previews and sends a targeted push, imports a file and
sees the row report; a desk officer accepts, replies and resolves, the firm rates, the officer
closes; a supervisor decides a return and assigns from the central queue, approves an extension;
a firm submits an enquiry; the dashboard's figures are the desk statistics.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from typing import Any

import pytest
from fastapi.routing import APIRoute
from sqlalchemy import func, select, text, update

from applications import service as applications_service
from applications.models import ExemptEntry, ExemptRoster
from auth.models import Role
from auth.service import principal_for_user
from catalog import attachments as policy_files
from catalog.models import Policy, PolicyIntake, PolicyVersion, Tag
from core import scheduler, security
from core.db import InSession, utcnow
from desk import attachments as case_files
from desk import clock, intake
from desk import stats as desk_stats
from desk.models import Case, CaseEvent
from desk.schemas import CaseIn
from matcher import coverage as matcher_coverage
from matcher import eligibility, runs
from matcher.models import EnterpriseTag, PolicyTagSuggestion
from profiles.models import Enterprise
from push.models import Delivery, ManualPush
from tests import factories
from tests.support import sample_files
from web import STAFF_ROUTERS
from web.deps import SESSION_COOKIE, WebAllow, web_public

CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
ROUTES = [(r.path, r) for router in STAFF_ROUTERS for r in router.routes if isinstance(r, APIRoute)]
ROUTE_IDS = [f"{sorted(r.methods)[0]} {path}" for path, r in ROUTES]


def declared_access(route: APIRoute) -> frozenset[Role] | str | None:
    """Return the roles a page admits, "public", or None when it declares nothing."""
    stack = list(route.dependant.dependencies)
    found: frozenset[Role] | str | None = None
    while stack:
        dep = stack.pop()
        if isinstance(dep.call, WebAllow):
            return dep.call.roles
        if dep.call is web_public:
            found = "public"
        stack.extend(dep.dependencies)
    return found


def _csrf(client: Any) -> str:
    page = client.get("/login", follow_redirects=True)
    match = CSRF_META.search(page.text)
    assert match, "page has no CSRF token"
    return match.group(1)


def _sign_in(client: Any, db: Any, settings: Any, role: Role, **kw: Any) -> Any:
    user = factories.make_user(db, role=role, **kw)
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, security.create_access_token(settings=settings, subject=str(user.id)))
    return user


def _post(client: Any, url: str, data: dict[str, Any] | None = None, **kw: Any) -> Any:
    return client.post(url, data={"csrf_token": _csrf(client), **(data or {})}, follow_redirects=False, **kw)


def _case(db: Any, settings: Any, department_id: int, enterprise_id: int, **kw: Any) -> Case:
    """A help request filed on the hotline for a department, as a supervisor would record it."""
    boss = principal_for_user(factories.make_user(db, role=Role.supervisor))
    data = {
        "kind": "help",
        "title": "研发费用加计扣除备案后系统查不到",
        "content": "我们上周在系统里做了研发费用加计扣除备案，但现在查询不到记录，请帮忙核实。",
        "channel": "hotline",
        "department_id": department_id,
        "enterprise_id": enterprise_id,
    } | kw
    return intake.submit_case(db=db, matcher=None, settings=settings, actor=boss, case_in=CaseIn(**data))


# ---------------------------------------------------------------- every route declares and enforces its roles


def test_every_staff_route_is_walked_and_kept_out_of_the_api_schema(app) -> None:  # type: ignore[no-untyped-def]
    assert len(ROUTES) >= 40
    schema_paths = set(app.openapi()["paths"])
    assert not [path for path, _ in ROUTES if path in schema_paths]


@pytest.mark.parametrize("path,route", ROUTES, ids=ROUTE_IDS)
def test_staff_page_declares_who_may_open_it(path: str, route: APIRoute) -> None:
    assert declared_access(route) not in (None, "public"), f"{path} must name the roles that may open it"


@pytest.mark.parametrize("template,route", ROUTES, ids=ROUTE_IDS)
def test_staff_page_enforces_its_roles(template: str, route: APIRoute, db, client, test_settings) -> None:  # type: ignore[no-untyped-def]
    access = declared_access(route)
    assert isinstance(access, frozenset)
    method = sorted(route.methods)[0]
    dept = factories.make_department(db)
    firm = factories.make_enterprise(db)
    policy = factories.make_policy(db, publish=True, department=dept)
    tag = factories.make_tag(db)
    suggestion = PolicyTagSuggestion(policy_id=policy.id, tag_id=tag.id, source="keyword", score=0.9)
    db.add(suggestion)
    # The policy as if read from a document: one proposal (its title) for the intake review's route.
    title_proposal = {"value": policy.title, "source": policy.title, "confidence": 0.9}
    db.add(
        PolicyIntake(
            policy_id=policy.id,
            filename="通知.txt",
            kind="text",
            sha256="0" * 64,
            sections=[],
            proposals={"fields": {"title": title_proposal}, "conditions": [], "tags": []},
        )
    )
    case = _case(db, test_settings, dept.id, firm.id)
    policy_file = policy_files.attach_to_policy(
        db,
        policy_id=policy.id,
        kind="form",
        name="申请表.xlsx",
        data=sample_files.xlsx(),
        user=None,
        settings=test_settings,
    )
    case_file = case_files.attach_to_case(
        db, settings=test_settings, case_id=case.id, actor=None, name="答复.pdf", data=sample_files.pdf()
    )
    # An application and a 免申即享 roster of the department's policies (the desk officer's own).
    application = applications_service.open_for_firm(db=db, enterprise_id=firm.id, policy_id=policy.id, actor=None)
    assert application is not None
    exempt_policy = factories.make_policy(db, publish=True, department=dept, policy_type="exempt")
    roster = ExemptRoster(
        policy_id=exempt_policy.id, frozen_on=dt.date.today(), policy_version=1, created_by_name="测试"
    )
    db.add(roster)
    db.flush()
    entry = ExemptEntry(
        roster_id=roster.id,
        enterprise_id=firm.id,
        policy_id=exempt_policy.id,
        status="pending",
        match_status="eligible",
    )
    db.add(entry)
    db.flush()
    ids = {
        "policy_id": policy.id,
        "case_id": case.id,
        "suggestion_id": tag.id,
        "decision": "reject",
        "key": "field-title",
        "attachment_id": policy_file.id if template.startswith("/staff/policies") else case_file.id,
        "application_id": application.id,
        "roster_id": roster.id,
        "entry_id": entry.id,
    }
    path = re.sub(r"\{(\w+)\}", lambda m: str(ids[m.group(1)]), template)

    def call() -> Any:
        if method == "GET":
            return client.get(path, follow_redirects=False)
        return _post(client, path)

    client.cookies.clear()
    anonymous = call()
    assert anonymous.status_code == 303, f"{method} {path} let an anonymous visitor through ({anonymous.status_code})"
    assert anonymous.headers["location"].startswith("/login?next=")
    if method == "GET":
        assert anonymous.headers["location"] == "/login?next=" + path.replace("/", "%2F")
    for role in sorted(Role, key=lambda r: r in access):
        kw = {"enterprise_id": firm.id} if role == Role.enterprise else {}
        if role == Role.desk:
            kw = {"department_id": dept.id}
        _sign_in(client, db, test_settings, role, **kw)
        response = call()
        if role in access:
            assert response.status_code not in (401, 403, 404), f"{role} should open {method} {path}"
            assert "/login" not in response.headers.get("location", "")
        else:
            assert response.status_code == 403, (
                f"{role} should be refused on {method} {path}, got {response.status_code}"
            )
            assert "没有权限" in response.text and 'lang="zh-CN"' in response.text


def test_another_departments_or_firms_case_is_not_found(db, client, test_settings) -> None:  # type: ignore[no-untyped-def]
    own, other = factories.make_department(db), factories.make_department(db)
    firm, stranger = factories.make_enterprise(db), factories.make_enterprise(db)
    case = _case(db, test_settings, own.id, firm.id)
    _sign_in(client, db, test_settings, Role.desk, department_id=other.id)
    page = client.get(f"/desk/cases/{case.id}")
    assert page.status_code == 404 and "不存在" in page.text
    refused = _post(client, f"/desk/cases/{case.id}/reply", {"note": "越权答复"})
    assert refused.status_code == 404
    assert case.number not in client.get("/desk/queue?view=all").text
    _sign_in(client, db, test_settings, Role.enterprise, enterprise_id=stranger.id)
    assert client.get(f"/me/cases/{case.id}").status_code == 404
    assert _post(client, f"/me/cases/{case.id}/rate", {"rating": "dissatisfied"}).status_code == 404
    db.expire_all()
    assert (
        db.scalar(
            select(func.count()).select_from(CaseEvent).where(CaseEvent.case_id == case.id, CaseEvent.kind == "replied")
        )
        == 0
    )
    assert db.get(Case, case.id).rating is None


# ---------------------------------------------------------------- curator


def test_rule_preview_counts_equal_the_engine_firm_by_firm(db, client, test_settings) -> None:  # type: ignore[no-untyped-def]
    tag = factories.make_tag(
        db, name=f"预览资质{factories.n()}", kind="qualification", synonyms=[f"预资{factories.n()}"]
    )
    for employees in (20, 150, None):
        factories.make_enterprise(db, employees=employees)
    factories.make_enterprise(db, employees=300, region_code="440300")
    rules = {
        "all": [
            {"field": "region_code", "op": "within_region", "value": ["442000"]},
            {"field": "employees", "op": "gte", "value": 100},
            {"not": {"field": "qualifications", "op": "has_any", "value": [tag.synonyms[0]]}},
        ]
    }
    _sign_in(client, db, test_settings, Role.curator)
    token = _csrf(client)
    response = client.post(
        "/staff/rules/preview", json={"rules_json": json.dumps(rules)}, headers={"X-CSRF-Token": token}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["errors"] == []
    # The synonym is stored as the canonical tag name, as saving would store it.
    assert body["rules"]["all"][2]["not"]["value"] == [tag.name]
    today = dt.date.today()
    tags: dict[int, set[str]] = {}
    for eid, name in db.execute(
        select(EnterpriseTag.enterprise_id, Tag.name).join(Tag, Tag.id == EnterpriseTag.tag_id)
    ):
        tags.setdefault(eid, set()).add(name)
    expected = {"eligible": 0, "likely": 0, "ineligible": 0}
    firms = list(db.scalars(select(Enterprise)))
    for firm in firms:
        verdict = eligibility.evaluate(
            body["rules"], eligibility.profile_facts(firm, today, tags.get(firm.id)), today=today
        )
        expected[verdict.status] += 1
    assert body["total"] == len(firms)
    assert {k: body[k] for k in expected} == expected
    assert expected["eligible"] >= 1 and expected["likely"] >= 1 and expected["ineligible"] >= 2
    assert any("从业人数" in line for line in body["text"])

    bad = client.post(
        "/staff/rules/preview",
        json={"rules_json": json.dumps({"all": [{"field": "employees", "op": "has_any", "value": ["x"]}]})},
        headers={"X-CSRF-Token": token},
    ).json()
    assert (
        bad["total"] is None
        and bad["errors"]
        and all(re.search(r"[\u4e00-\u9fff]", e["reason"]) for e in bad["errors"])
    )
    broken = client.post(
        "/staff/rules/preview", json={"rules_json": '{"all": ['}, headers={"X-CSRF-Token": token}
    ).json()
    assert broken["total"] is None and "JSON" in broken["errors"][0]["reason"]
    # Without the CSRF header the preview is refused like any unsafe request.
    assert client.post("/staff/rules/preview", json={"rules_json": ""}).status_code == 403


def _policy_form(dept_code: str, category_code: str, **kw: Any) -> dict[str, Any]:
    today = dt.date.today()
    return {
        "title": f"中山市网页测试研发补助{factories.n()}",
        "issuing_department": dept_code,
        "level": "municipal",
        "policy_type": "application",
        "region_codes": "442000",
        "categories": [category_code],
        "summary": "对研发投入较大的企业给予补助。",
        "interpreter_name": "张敏",
        "interpreter_contact": "0760-88880000",
        "apply_end_on": (today + dt.timedelta(days=40)).isoformat(),
        "rules_json": json.dumps({"all": [{"field": "employees", "op": "gte", "value": 50}]}),
    } | kw


def test_curator_creates_publishes_edits_and_diffs_a_policy(db, client, test_settings) -> None:  # type: ignore[no-untyped-def]
    dept, cat = factories.make_department(db), factories.make_category(db)
    _sign_in(client, db, test_settings, Role.curator)
    # A draft without summary cannot be published: the missing fields are named on the page.
    form = _policy_form(dept.code, cat.code, summary="")
    created = _post(client, "/staff/policies/new", form)
    assert created.status_code == 303
    policy_id = int(re.search(r"/staff/policies/(\d+)", created.headers["location"]).group(1))
    policy = db.get(Policy, policy_id)
    assert policy.status == "draft" and policy.rules == {"all": [{"field": "employees", "op": "gte", "value": 50}]}
    refused = _post(client, f"/staff/policies/{policy_id}/publish")
    assert refused.status_code == 422 and "发布前需补全" in refused.text and "政策摘要" in refused.text
    # Bad rules are refused by the field, with the catalog's reason; nothing changes.
    bad = _post(client, f"/staff/policies/{policy_id}", {**form, "summary": "摘要", "rules_json": '{"all": []}'})
    assert bad.status_code == 422 and 'id="rules-error"' in bad.text
    db.expire_all()
    assert db.get(Policy, policy_id).summary is None

    saved = _post(client, f"/staff/policies/{policy_id}", {**form, "summary": "对研发投入较大的企业给予补助。"})
    assert saved.status_code == 303
    published = _post(client, f"/staff/policies/{policy_id}/publish")
    assert published.status_code == 303 and published.headers["location"].endswith("saved=published")
    db.expire_all()
    policy = db.get(Policy, policy_id)
    assert policy.status == "published" and policy.version == 1
    queued = db.execute(
        text(f"SELECT id FROM {scheduler.JOBS_TABLE} WHERE id = :id"), {"id": f"once:fanout-{policy_id}-v1"}
    )
    assert queued.first() is not None, "publishing from the page queues the fan-out like the API"
    guard = db.execute(
        text(f"SELECT id FROM {scheduler.JOBS_TABLE} WHERE id = :id"), {"id": f"once:fanout-guard-{policy_id}-v1"}
    )
    assert guard.first() is not None, "and its guard, so a worker killed before the job starts loses nothing"

    edited = _post(
        client,
        f"/staff/policies/{policy_id}",
        {**form, "summary": "对研发投入较大的规上企业给予补助。", "note": "补充适用对象"},
    )
    assert edited.status_code == 303
    db.expire_all()
    assert db.get(Policy, policy_id).version == 2
    assert (
        db.scalar(select(PolicyVersion.note).where(PolicyVersion.policy_id == policy_id, PolicyVersion.version == 2))
        == "补充适用对象"
    )
    page = client.get(f"/staff/policies/{policy_id}/versions")
    assert page.status_code == 200
    main = page.text[page.text.find("<main") :]
    assert "第 1 版 → 第 2 版" in main and "<h3>摘要</h3>" in main
    assert "<ins>规上</ins>" in page.text
    listing = client.get("/staff/policies?status=published")
    assert form["title"] in listing.text


def test_eligible_list_and_csv_export(db, client, test_settings, matcher) -> None:  # type: ignore[no-untyped-def]
    inside = factories.make_enterprise(db, name=f"中山市名单内企业{factories.n()}")
    outside = factories.make_enterprise(db, name=f"深圳市名单外企业{factories.n()}", region_code="440300")
    policy = factories.make_policy(db, publish=True)
    _sign_in(client, db, test_settings, Role.curator)
    pending = client.get(f"/staff/policies/{policy.id}/eligible")
    assert pending.status_code == 200 and "正在后台生成" in pending.text and inside.name not in pending.text
    factories.match(db, matcher)
    page = client.get(f"/staff/policies/{policy.id}/eligible")
    assert page.status_code == 200 and inside.name in page.text and outside.name not in page.text
    export = client.get(f"/staff/policies/{policy.id}/eligible/export?format=csv")
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    text = export.content.decode("utf-8-sig")
    assert text.splitlines()[0].startswith("统一社会信用代码,企业名称")
    assert inside.credit_code in text and outside.credit_code not in text
    assert "attachment" in export.headers["content-disposition"]


def test_targeted_push_preview_then_send(db, client, test_settings, matcher) -> None:  # type: ignore[no-untyped-def]
    region = "442000"
    firms = [factories.make_enterprise(db, industry_code="C3911") for _ in range(3)]
    policy = factories.make_policy(db, publish=True)
    _sign_in(client, db, test_settings, Role.curator)
    form = {"policy_id": str(policy.id), "region_codes": region, "industry_codes": "C39", "channels": "inbox"}
    preview = _post(client, "/staff/push/preview", form, headers={"HX-Request": "true"})
    assert preview.status_code == 200 and 'id="push-preview"' in preview.text
    reach = int(re.search(r'data-count="enterprises">(\d+)<', preview.text).group(1))
    assert reach >= len(firms)
    assert db.scalar(select(func.count()).select_from(ManualPush)) == 0  # a preview writes nothing
    sent = _post(client, "/staff/push", form)
    assert sent.status_code == 303 and "sent=" in sent.headers["location"]
    row = db.scalar(select(ManualPush).where(ManualPush.policy_id == policy.id))
    assert row is not None and row.enterprise_count == reach
    got = set(
        db.scalars(select(Delivery.enterprise_id).where(Delivery.kind == "manual", Delivery.policy_id == policy.id))
    )
    assert {f.id for f in firms} <= got
    history = client.get("/staff/push")
    assert policy.title in history.text
    # A filter the push service refuses is shown by the field, in Chinese.
    wrong = _post(client, "/staff/push/preview", {**form, "industry_codes": "39C"})
    assert wrong.status_code == 422 and 'id="industry_codes-error"' in wrong.text


def test_import_shows_the_row_report_and_writes_nothing_when_a_row_fails(db, client, test_settings) -> None:  # type: ignore[no-untyped-def]
    good = factories.credit_code()
    csv = f"统一社会信用代码,企业名称,所在地区代码\n{good},中山市导入测试有限公司,442000\n123,中山市错误代码有限公司,442000\n"
    before = db.scalar(select(func.count()).select_from(Enterprise))
    _sign_in(client, db, test_settings, Role.curator)
    files = {"file": ("企业.csv", csv.encode("utf-8"), "text/csv")}
    refused = _post(client, "/staff/io/import", {"kind": "enterprises"}, files=files)
    assert refused.status_code == 422
    assert "导入失败：1 行有误，未写入任何数据" in refused.text
    assert "第 3 行" in refused.text and "统一社会信用代码" in refused.text
    assert db.scalar(select(func.count()).select_from(Enterprise)) == before
    partial = _post(client, "/staff/io/import", {"kind": "enterprises", "partial": "1"}, files=files)
    assert partial.status_code == 200 and "新增 1" in partial.text
    assert db.scalar(select(func.count()).select_from(Enterprise).where(Enterprise.credit_code == good)) == 1
    export = client.get("/staff/io/export?kind=enterprises&format=csv")
    assert export.status_code == 200 and good in export.content.decode("utf-8-sig")


# ---------------------------------------------------------------- desk officers, supervisors, firms


def test_officer_replies_and_resolves_the_firm_rates_the_officer_closes(db, client, test_settings) -> None:  # type: ignore[no-untyped-def]
    dept, firm = factories.make_department(db), factories.make_enterprise(db)
    case = _case(db, test_settings, dept.id, firm.id)
    officer = _sign_in(client, db, test_settings, Role.desk, department_id=dept.id, display_name="承办专员赵六")
    queue = client.get("/desk/queue")
    assert case.number in queue.text and 'class="case-item sla-green"' in queue.text
    assert _post(client, f"/desk/cases/{case.id}/accept").status_code == 303
    # A refused action comes back as the case page with the service's Chinese reason.
    early = _post(client, f"/desk/cases/{case.id}/close")
    assert early.status_code == 422 and "不能关闭" in early.text
    assert _post(client, f"/desk/cases/{case.id}/reply", {"note": ""}).status_code == 422
    assert _post(client, f"/desk/cases/{case.id}/reply", {"note": "已联系税务部门核实备案数据。"}).status_code == 303
    done = _post(client, f"/desk/cases/{case.id}/resolve", {"resolution": "备案数据已同步，请重新登录查询。"})
    assert done.status_code == 303 and done.headers["location"] == f"/desk/cases/{case.id}?done=resolve#timeline"

    _sign_in(client, db, test_settings, Role.enterprise, enterprise_id=firm.id)
    page = client.get(f"/me/cases/{case.id}")
    assert "请对办理结果进行评价" in page.text and "已联系税务部门核实备案数据。" in page.text
    assert officer.display_name not in page.text  # firms see the department, not the officer
    assert _post(client, f"/me/cases/{case.id}/rate", {}).status_code == 422
    rated = _post(client, f"/me/cases/{case.id}/rate", {"rating": "satisfied", "comment": "很及时"})
    assert rated.status_code == 303 and rated.headers["location"].endswith("done=rated")

    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, security.create_access_token(settings=test_settings, subject=str(officer.id)))
    assert _post(client, f"/desk/cases/{case.id}/close", {"note": "企业满意，归档"}).status_code == 303
    db.expire_all()
    closed = db.get(Case, case.id)
    assert closed.status == "closed" and closed.rating == "satisfied"
    kinds = [e.kind for e in closed.events]
    assert kinds.index("replied") < kinds.index("resolved") < kinds.index("rated") < kinds.index("closed")


def test_supervisor_decides_a_return_assigns_and_approves_an_extension(db, client, test_settings) -> None:  # type: ignore[no-untyped-def]
    dept, other, firm = factories.make_department(db), factories.make_department(db), factories.make_enterprise(db)
    case = _case(db, test_settings, dept.id, firm.id)
    second = _case(db, test_settings, dept.id, firm.id, title="科技创新券兑付进度")
    _sign_in(client, db, test_settings, Role.desk, department_id=dept.id)
    assert (
        _post(client, f"/desk/cases/{case.id}/return-request", {"reason": "该事项属于税务部门职责"}).status_code == 303
    )
    for step in ("accept", "reply"):
        assert _post(client, f"/desk/cases/{second.id}/{step}", {"note": "正在核实"}).status_code == 303
    asked = _post(
        client,
        f"/desk/cases/{second.id}/extension-request",
        {"amount": "3", "unit": "working_days", "reason": "需省厅反馈"},
    )
    assert asked.status_code == 303
    # A desk officer may not decide; the supervisor page is not theirs either.
    assert _post(client, f"/desk/cases/{case.id}/return-decision", {"decision": "approve"}).status_code == 403
    assert client.get("/desk/supervision").status_code == 403

    _sign_in(client, db, test_settings, Role.supervisor)
    page = client.get("/desk/supervision")
    assert "该事项属于税务部门职责" in page.text and "需省厅反馈" in page.text
    approved = _post(
        client, f"/desk/cases/{case.id}/return-decision", {"decision": "approve", "back": "/desk/supervision"}
    )
    assert approved.status_code == 303 and approved.headers["location"].startswith("/desk/supervision")
    db.expire_all()
    assert db.get(Case, case.id).department_id is None
    assert case.title in client.get("/desk/supervision").text.split('id="dispatch"')[1]
    assert _post(client, f"/desk/cases/{case.id}/assign", {"department_id": str(other.id)}).status_code == 303
    before = db.get(Case, second.id).close_due_at
    assert _post(client, f"/desk/cases/{second.id}/extension-decision", {"decision": "approve"}).status_code == 303
    db.expire_all()
    assert db.get(Case, case.id).department_id == other.id
    assert db.get(Case, second.id).close_due_at > before
    assert db.get(Case, second.id).extension_request is None


def test_firm_submits_an_enquiry_and_sees_its_number_and_department(db, client, test_settings) -> None:  # type: ignore[no-untyped-def]
    dept = factories.make_department(db)
    policy = factories.make_policy(db, publish=True, department=dept)
    firm = factories.make_enterprise(db)
    _sign_in(client, db, test_settings, Role.enterprise, enterprise_id=firm.id)
    form = client.get(f"/me/cases/new?policy_id={policy.id}")
    assert form.status_code == 200 and policy.title in form.text
    empty = _post(client, "/me/cases/new", {"kind": "help"})
    assert empty.status_code == 422 and 'id="content-error"' in empty.text
    sent = _post(
        client,
        "/me/cases/new",
        {"kind": "help", "content": "申报系统提交材料时一直报错，无法上传附件。", "related_policy_id": str(policy.id)},
    )
    assert sent.status_code == 303
    case = db.scalar(select(Case).where(Case.enterprise_id == firm.id))
    assert sent.headers["location"] == f"/me/cases/{case.id}?new=1"
    page = client.get(sent.headers["location"])
    assert "诉求已受理" in page.text and case.number in page.text and dept.name in page.text
    assert case.number in client.get("/me/cases").text


def test_dashboard_figures_are_the_desk_statistics(db, client, test_settings) -> None:  # type: ignore[no-untyped-def]
    dept, firm = factories.make_department(db), factories.make_enterprise(db)
    for _ in range(2):
        _case(db, test_settings, dept.id, firm.id)
    factories.make_policy(db, publish=True)
    _sign_in(client, db, test_settings, Role.supervisor)
    data = client.get("/dashboard/data").json()
    calendar = clock.site_calendar(test_settings)
    start, end = dt.date.fromisoformat(data["period"]["start"]), dt.date.fromisoformat(data["period"]["end"])
    stats = desk_stats.compute_stats(db=db, calendar=calendar, start=start, end=end, tz=str(calendar.tz))
    assert data["desk"]["total"] == stats.total >= 2
    assert sum(sum(v) for v in data["daily"]["kinds"].values()) == stats.total
    assert data["daily"]["days"][-1] == end.isoformat() and len(data["daily"]["days"]) == 30
    assert data["coverage"]["published"] >= 1 and data["push"] is not None
    page = client.get("/dashboard")
    assert page.status_code == 200
    for chart in ("chart-daily", "chart-departments", "/static/vendor/echarts/echarts.min.js"):
        assert chart in page.text
    embedded = re.search(r'<script type="application/json" id="dashboard-data">(.*?)</script>', page.text, re.S)
    assert embedded and json.loads(embedded.group(1))["desk"]["total"] == stats.total

    # A desk officer sees their own department's figures and no push or coverage figures.
    _sign_in(client, db, test_settings, Role.desk, department_id=dept.id)
    own = client.get("/dashboard/data?department=999999").json()
    assert own["desk"]["total"] == 2 and own["push"] is None and own["coverage"] is None


def test_policy_coverage_reads_the_stored_results(db, matcher) -> None:  # type: ignore[no-untyped-def]
    reached = factories.make_enterprise(db, needs="想申请研发补助，扩大生产线")
    missed = factories.make_enterprise(db, region_code="440300", needs="需要设备贷款贴息")
    quiet = factories.make_enterprise(db, region_code="440300")
    open_policy = factories.make_policy(db, publish=True)
    closed_policy = factories.make_policy(
        db, publish=True, rules={"all": [{"field": "employees", "op": "gte", "value": 1_000_000}]}
    )
    unmatched_policy = factories.make_policy(db, publish=True)
    runs.rematch_firms(InSession(db), matcher, [reached.id, missed.id, quiet.id])
    for policy in (open_policy, closed_policy):
        runs.list_policy(InSession(db), matcher, policy.id)
    coverage = matcher_coverage.policy_coverage(db=db, limit=1000, sample=1000)
    rows = {r["policy_id"]: r for r in coverage["policies"]}
    assert rows[open_policy.id]["eligible"] >= 1 and rows[closed_policy.id]["eligible"] == 0
    assert closed_policy.id in {r["policy_id"] for r in coverage["no_eligible"]}
    assert open_policy.id not in {r["policy_id"] for r in coverage["no_eligible"]}
    assert unmatched_policy.id in {r["policy_id"] for r in coverage["unmatched"]}
    waiting = {f["enterprise_id"] for f in coverage["needs_unmatched_sample"]}
    assert missed.id in waiting and reached.id not in waiting and quiet.id not in waiting
    assert coverage["needs_unmatched"] == len(waiting)


def test_without_javascript_the_editor_previews_by_posting_the_form(db, client, test_settings, matcher) -> None:  # type: ignore[no-untyped-def]
    dept, cat = factories.make_department(db), factories.make_category(db)
    factories.make_enterprise(db, employees=80)
    _sign_in(client, db, test_settings, Role.curator)
    before = db.scalar(select(func.count()).select_from(Policy))
    page = _post(client, "/staff/policies/new", {**_policy_form(dept.code, cat.code), "action": "preview"})
    assert page.status_code == 200
    expected = matcher_coverage.preview_rules(
        db=db, matcher=matcher, rules={"all": [{"field": "employees", "op": "gte", "value": 50}]}
    )
    assert f"符合 {expected['eligible']} 家" in page.text and expected["eligible"] >= 1
    assert db.scalar(select(func.count()).select_from(Policy)) == before  # nothing saved


def test_staff_see_the_instant_answer_the_firm_was_given(db, client, test_settings) -> None:  # type: ignore[no-untyped-def]
    firm = factories.make_enterprise(db)
    policy = factories.make_policy(db, publish=True)
    boss = principal_for_user(factories.make_user(db, role=Role.supervisor))
    case = intake.submit_case(
        db=db,
        matcher=None,
        settings=test_settings,
        actor=boss,
        case_in=CaseIn(kind="consultation", content="研发补助怎么申请？", channel="hotline", enterprise_id=firm.id),
    )
    case.instant_answer = {
        "confident": True,
        "confidence": 0.91,
        "threshold": 0.48,
        "text": "请在申报期内登录系统提交材料。",
        "citations": [
            {
                "source": "policy",
                "id": policy.id,
                "code": None,
                "title": policy.title,
                "url": "",
                "passage": "申报条件",
                "score": 0.9,
            }
        ],
    }
    db.flush()
    _sign_in(client, db, test_settings, Role.supervisor)
    page = client.get(f"/desk/cases/{case.id}")
    assert page.status_code == 200
    assert "系统给企业的即时答复" in page.text and "置信度 91%" in page.text
    assert f'href="/policies/{policy.id}"' in page.text and "请在申报期内登录系统提交材料。" in page.text


def test_intake_page_drafts_a_policy_from_a_document_and_explains_a_refused_file(db, client, test_settings) -> None:  # type: ignore[no-untyped-def]
    from catalog.models import Policy, PolicyStatus
    from tests.support import intake_docs

    dept = factories.make_department(db, name="中山市工业和信息化局", short_name="中山工信", region_code="442000")
    _sign_in(client, db, test_settings, Role.curator)
    page = client.get("/staff/io")
    assert page.status_code == 200 and "从政策文件录入" in page.text and dept.name in page.text
    before = db.scalar(select(func.count()).select_from(Policy))
    scan = _post(client, "/staff/io/intake", {}, files={"file": ("扫描件.pdf", intake_docs.scanned_pdf_bytes())})
    assert scan.status_code == 422 and "扫描件" in scan.text
    assert db.scalar(select(func.count()).select_from(Policy)) == before
    made = _post(client, "/staff/io/intake", {}, files={"file": ("通知.docx", intake_docs.docx_bytes())})
    assert made.status_code == 201, made.text
    policy = db.scalar(select(Policy).where(Policy.doc_number == "中工信〔2026〕18号"))
    assert policy is not None and policy.status == PolicyStatus.draft and policy.issuing_department_id == dept.id
    assert f'href="/staff/policies/{policy.id}"' in made.text and "建议可计算条件" in made.text
    again = _post(client, "/staff/io/intake", {}, files={"file": ("通知.txt", intake_docs.NOTICE.encode("gb18030"))})
    assert again.status_code == 201 and "可能与已有政策重复" in again.text
    _sign_in(client, db, test_settings, Role.enterprise)
    refused = _post(client, "/staff/io/intake", {}, files={"file": ("通知.txt", intake_docs.NOTICE.encode())})
    assert refused.status_code in (302, 303, 403)


def test_editor_shows_intake_proposals_with_their_source_sentences(db, client, test_settings) -> None:  # type: ignore[no-untyped-def]
    from catalog.intake.service import intake_files
    from tests.support import intake_docs

    factories.make_department(db, name="中山市工业和信息化局", short_name="中山工信", region_code="442000")
    made = intake_files(db=db, files=[("通知.pdf", intake_docs.pdf_bytes())], actor=None)
    policy = made[0].policy
    assert policy is not None
    _sign_in(client, db, test_settings, Role.curator)
    page = client.get(f"/staff/policies/{policy.id}")
    assert page.status_code == 200
    assert "录入建议" in page.text and "通知.pdf" in page.text
    assert "中工信〔2026〕18号" in page.text and "年营业收入 ≥ 2000 万元" in page.text
    assert "上年度营业收入2000万元以上" in page.text  # the source sentence
    assert "需人工确认" in page.text


def test_intake_decisions_without_javascript_and_by_htmx(db, client, test_settings) -> None:  # type: ignore[no-untyped-def]
    """A plain form post decides and returns to the editor; htmx gets the card with the count and the
    editor inputs to update; a refused edit is shown on its proposal by htmx and changes nothing."""
    from catalog.intake.service import intake_files
    from tests.support import intake_docs

    factories.make_department(db, name="中山市工业和信息化局", short_name="中山工信", region_code="442000")
    for revenue in (1000, 3000, 8000):
        factories.make_enterprise(db, annual_revenue=revenue, rd_expense=revenue * 0.05, employees=50)
    (made,) = intake_files(db=db, files=[("通知.txt", intake_docs.NOTICE.encode())], actor=None)
    policy = made.policy
    assert policy is not None
    key = next(
        f"condition-{n}"
        for n, c in enumerate(made.analysis.conditions)
        if c.node is not None and c.node["field"] == "annual_revenue"
    )
    _sign_in(client, db, test_settings, Role.curator)
    url = f"/staff/policies/{policy.id}/intake/{key}"
    plain = _post(client, url, {"decision": "reject"})
    assert plain.status_code == 303 and plain.headers["location"].endswith(f"?saved=intake#p-{key}")
    db.expire_all()
    assert all(n["field"] != "annual_revenue" for n in db.get(Policy, policy.id).rules["all"])

    card = _post(client, url, {"decision": "edit", "value": "5000"}, headers={"HX-Request": "true"})
    assert card.status_code == 200 and card.text.lstrip().startswith("<section")
    assert 'id="intake-count"' in card.text and 'data-count="eligible"' in card.text
    assert "年营业收入 ≥ 5000 万元" in card.text and "已修改" in card.text
    sync = json.loads(html.unescape(re.search(r'data-sync="([^"]*)"', card.text).group(1)))
    assert '"value": 5000' in sync["f-rules_json"] and set(sync) == {"f-rules_json"}

    bad = _post(client, url, {"decision": "edit", "value": "很多"}, headers={"HX-Request": "true"})
    assert bad.status_code == 200 and "条件无效" in bad.text and 'role="alert"' in bad.text
    db.expire_all()
    assert {"field": "annual_revenue", "op": "gte", "value": 5000} in db.get(Policy, policy.id).rules["all"]
    refused = _post(client, url, {"decision": "edit", "value": "很多"})
    assert refused.status_code == 422 and "条件无效" in refused.text
    unknown = _post(
        client,
        f"/staff/policies/{policy.id}/intake/condition-99",
        {"decision": "accept"},
        headers={"HX-Request": "true"},
    )
    assert unknown.status_code == 200 and "没有编号为 condition-99 的录入建议" in unknown.text


def test_the_policies_page_shows_a_listing_under_way_or_waiting_and_its_lists_as_pending(  # type: ignore[no-untyped-def]
    db, client, test_settings, matcher, monkeypatch
) -> None:
    """The staff status line shows what GET /api/v1/match/status shows of a listing: how many policies, its
    progress in units, running or waiting to resume; matching is not "最新" meanwhile and its lists are pending."""
    from matcher.models import ListRun, ListRunUnit

    firms = [factories.make_enterprise(db) for _ in range(3)]
    policies = [factories.make_policy(db, publish=True) for _ in range(2)]
    database = InSession(db)
    runs.rematch_changed(database, matcher)  # every firm and policy matched, every list made
    assert runs.status(db)["up_to_date"] and len(firms) == 3
    monkeypatch.setattr(runs, "LIST_BATCH", 1)  # a unit per firm

    def one_unit_written() -> bool:
        return bool(
            db.scalar(
                select(func.count())
                .select_from(ListRunUnit)
                .join(ListRun, ListRun.id == ListRunUnit.run_id)
                .where(ListRun.status == "running")
            )
        )

    runs.list_policies(database, matcher, [p.id for p in policies], should_stop=one_unit_written)
    listing = runs.status(db)["listing"]
    assert listing is not None and listing["units_done"] == 1 and not listing["waiting"]
    _sign_in(client, db, test_settings, Role.admin)
    applications = client.get(f"/staff/applications?policy_id={policies[0].id}").text
    assert 'id="never-applied-pending"' in applications and 'id="never-applied"' not in applications
    _sign_in(client, db, test_settings, Role.curator)
    page = client.get("/staff/policies")
    assert page.status_code == 200
    line = re.search(r'<p class="match-status[^"]*" role="status">(.*?)</p>', page.text, re.S)
    assert line is not None
    text_ = re.sub(r"<[^>]+>", "", line.group(1))
    assert "匹配已是最新" not in text_
    assert f"2 项政策的符合条件企业名单正在生成（已完成 1 / {listing['units']} 段）" in text_
    eligible = client.get(f"/staff/policies/{policies[0].id}/eligible")
    assert eligible.status_code == 200 and "名单正在后台生成" in eligible.text
    # The dashboard's figures say so too, rather than counting the pending lists' firms as 0 or in part.
    _sign_in(client, db, test_settings, Role.supervisor)
    board = client.get("/dashboard").text
    assert re.search(r'id="lists-pending">\d+ 项政策的符合条件企业名单尚未生成或正在重新生成', board)
    _sign_in(client, db, test_settings, Role.curator)

    # No unit written for a while (the worker was stopped): the line says it waits to be resumed.
    db.execute(update(ListRun).values(updated_at=utcnow() - dt.timedelta(minutes=10)))
    db.flush()
    text_ = html.unescape(client.get("/staff/policies").text)
    assert f"2 项政策的符合条件企业名单生成已中断，等待继续（已完成 1 / {listing['units']} 段）" in text_

    runs.list_policies(database, matcher, [p.id for p in policies])
    text_ = client.get("/staff/policies").text
    assert "符合条件企业名单" not in text_.split('role="status"')[1].split("</p>")[0]
    eligible = client.get(f"/staff/policies/{policies[0].id}/eligible")
    assert "名单生成于" in eligible.text and "另有" not in eligible.text
    _sign_in(client, db, test_settings, Role.admin)
    applications = client.get(f"/staff/applications?policy_id={policies[0].id}").text
    assert 'id="never-applied"' in applications and 'id="never-applied-pending"' not in applications
    _sign_in(client, db, test_settings, Role.curator)

    # Another policy published after the list was made: its tag weights move this list's scores a little.
    factories.make_policy(db, publish=True)
    eligible = client.get(f"/staff/policies/{policies[0].id}/eligible")
    assert "。生成后，另有 1 项政策发布、修改或下架" in eligible.text
