"""The staff pages in a real browser: Debian's Chromium driven by Playwright against the app on 127.0.0.1.

The app runs under uvicorn in a thread on a migrated SQLite file with the demo taxonomy, the demo
中山 policies, a few demo firms, the demo users, the desk's FAQ and demo cases, stored match results
and a few pushes, and the session's real matcher (e5 embedder). Scenarios: a curator builds a rule
with the form-based builder, sees the live count of eligible firms (checked against the rules engine
firm by firm), saves and publishes it, opens the eligible list and previews a targeted push and an
import; a firm asks a question (instant answer with sources) and files a request; the desk officer
accepts, replies and resolves it; the firm rates it; the officer closes it; the supervisor's page;
the dashboard draws its ECharts charts without script errors. Screenshots of each key page at
390×844 and 1366×900 go to test-artifacts/web-staff/.

Chromium comes from Debian (`make test` installs it); nothing is downloaded. Without /usr/bin/chromium
the tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from auth import demo as auth_demo
from catalog import demo as catalog_demo
from catalog import service as catalog_service
from catalog.models import Policy
from catalog.schemas import PolicyIn
from core.config import Settings
from desk import demo as desk_demo
from desk.answer import answer_question
from desk.models import Case
from matcher import eligibility
from matcher.models import EnterpriseTag
from profiles import demo as profiles_demo
from profiles.models import Enterprise
from push import fanout as push_fanout
from tests import factories as _factories
from tests.web.browser_support import (
    SIZES,
    LiveSite,
    add_page_style,
    desktop_tab,
    fresh_database,
    launched_chromium,
    reload_until,
    require_chromium,
    sign_in,
)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web-staff"
DEMO_FIRMS = 12
ZHONGSHAN_POLICIES = 20
REWARD_POLICY = "中山市高新技术企业认定奖励"  # handled by 市科技局, the desk_kjj officer's department

pytestmark = pytest.mark.slow


def _load_site_data(db: Any, settings: Settings) -> None:
    """The demo taxonomy, the first 20 demo 中山 policies (科技局, 工信局, 人社局 …), demo firms and users, the desk."""
    today = dt.date.today()
    catalog_demo.load_taxonomy(db=db)
    items = [i for i in catalog_demo.demo_policies(today) if i["region_codes"] == ["442000"]][:ZHONGSHAN_POLICIES]
    for item in items:
        status = item.pop("status", "published")
        policy = catalog_service.create_policy(db=db, policy_in=PolicyIn(**item), actor=None)
        if status == "published":
            catalog_service.publish_policy(
                db=db, policy_id=policy.id, actor=None, today=min(today, policy.valid_from_on or today)
            )
    catalog_service.expire_due_policies(db=db, today=today)
    profiles_demo.load_demo_enterprises(db=db, count=DEMO_FIRMS)
    db.flush()
    auth_demo.create_demo_users(
        db=db, department_ids=catalog_demo.department_ids(db=db), firm_id=profiles_demo.demo_firm_id(db=db)
    )
    desk_demo.load_demo_desk(db=db, settings=settings)


def _match_and_push(db: Any, matcher: Any, settings: Settings) -> None:
    """Stored match results (the dashboard's coverage), a few pushes (its funnel), the desk's knowledge base."""
    matcher.policy_index(db)  # embeds the catalog in one batch; matching then reads the cache
    _factories.match(db, matcher)
    for pid in db.scalars(select(Policy.id).where(Policy.status == "published").order_by(Policy.id).limit(3)):
        push_fanout.fan_out_policy(db=db, policy_id=pid)
    # Embed the FAQ now, so the firm's first question is answered as fast as on a running site.
    answer_question(db=db, matcher=matcher, question="高企认定奖励怎么领", settings=settings)


@pytest.fixture(scope="module")
def site(test_settings: Settings, matcher: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    """The demo data behind a live server."""
    require_chromium()
    database = fresh_database(tmp_path_factory, "web-staff-browser")
    with database.sessionmaker() as db:
        _load_site_data(db, test_settings)
        db.commit()
        _match_and_push(db, matcher, test_settings)
        db.commit()
    live = LiveSite(test_settings, database, matcher, lifespan="off")
    live.start()
    yield live
    live.stop()
    database.dispose()


@pytest.fixture(scope="module")
def browser(site: LiveSite) -> Iterator[Any]:
    """Headless Debian Chromium under Playwright (nothing downloaded)."""
    with launched_chromium(ARTIFACTS) as chromium:
        yield chromium


@pytest.fixture
def page(browser: Any, site: LiveSite) -> Iterator[Any]:
    with desktop_tab(browser, site.url, accept_dialogs=True) as tab:
        yield tab


def shoot(page: Any, name: str) -> None:
    """Screenshot the page at phone and desktop width (full page); nothing may scroll sideways.

    A full-page picture cannot show a bar stuck to the bottom of the window, so the save bars are
    drawn in place for it (the page is left as it was otherwise).
    """
    add_page_style(page, ".sticky-actions { position: static !important; }")
    for label, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        page.evaluate("window.scrollTo(0, 0)")  # the sticky header then stays at the top of the picture
        page.wait_for_timeout(200)
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 1, f"{name} scrolls sideways by {overflow}px at {width}px"
        page.screenshot(path=str(ARTIFACTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size({"width": 1366, "height": 900})


def _engine_counts(site: LiveSite, rules: dict[str, Any]) -> dict[str, int]:
    """Judge every firm of the site with the scalar rules engine (not the vectorised one the preview uses)."""
    today = dt.date.today()
    counts = {"eligible": 0, "likely": 0, "ineligible": 0}
    with site.database.sessionmaker() as db:
        tags: dict[int, set[str]] = {}
        for eid, tag in db.execute(select(EnterpriseTag.enterprise_id, EnterpriseTag.tag_id)):
            tags.setdefault(eid, set()).add(tag)
        names = {t.id: t.name for t in catalog_service.list_tags(db=db)}
        for firm in db.scalars(select(Enterprise).options(selectinload(Enterprise.qualifications))):
            facts = eligibility.profile_facts(firm, today, {names[t] for t in tags.get(firm.id, set())})
            counts[eligibility.evaluate(rules, facts, today=today).status] += 1
    return counts


def wait_for_eligible(page: Any, n: int) -> None:
    """Wait until the builder's live preview shows n eligible firms."""
    page.wait_for_function(
        "n => { const el = document.querySelector('#rule-preview [data-count=eligible]');"
        " return el !== null && el.textContent === '符合 ' + n + ' 家'; }",
        arg=n,
        timeout=10_000,
    )


# ---------------------------------------------------------------- curator


def test_curator_builds_a_rule_previews_the_count_and_publishes(page: Any, site: LiveSite) -> None:
    sign_in(page, "curator")
    page.wait_for_url(re.compile(r"/staff/policies$"))
    assert page.locator(".staff-table tbody tr").count() >= 10
    shoot(page, "s01-staff-policies")

    page.get_by_role("link", name="＋ 新建政策").click()
    page.wait_for_url(re.compile(r"/staff/policies/new$"))
    title = "中山市规上制造业企业研发投入奖励浏览器测试"
    page.get_by_label("政策标题").fill(title)
    page.get_by_label("发文部门").select_option(label="中山市科学技术局")
    page.get_by_label("类型").select_option("application")
    page.get_by_label("适用地区").fill("442000")
    page.locator("#f-categories input[type=checkbox]").first.check()
    page.get_by_label("政策摘要").fill("对上年度研发投入较大的规上制造业企业给予一次性奖励，最高50万元。")
    page.get_by_label("解读人", exact=True).fill("林晓")
    page.get_by_label("解读人联系方式").fill("0760-88889999")
    page.get_by_label("申报截止日期").fill((dt.date.today() + dt.timedelta(days=45)).isoformat())

    # The builder: no conditions yet; add two from the field and operator lists.
    builder = page.locator("#rule-builder")
    assert builder.is_visible() and "尚未设置条件" in builder.inner_text()
    add = page.get_by_role("button", name="＋ 添加条件", exact=True)
    add.click()
    page.get_by_label("条件1 字段").select_option("region_code")
    page.get_by_label("条件1 运算").select_option("within_region")
    page.get_by_label("条件1 选择地区").select_option("442000")
    add.click()
    page.get_by_label("条件2 字段").select_option("employees")
    page.get_by_label("条件2 运算").select_option("gte")
    page.get_by_label("条件2 取值（人）").fill("50")
    rules = {
        "all": [
            {"field": "region_code", "op": "within_region", "value": ["442000"]},
            {"field": "employees", "op": "gte", "value": 50},
        ]
    }
    # The JSON the form submits follows the builder.
    page.wait_for_function(
        "() => document.getElementById('f-rules_json').value.includes('\"value\": 50')", timeout=5_000
    )
    assert json.loads(page.locator("#f-rules_json").input_value()) == rules
    # The live preview: its counts are the rules engine's verdicts over every firm.
    expected = _engine_counts(site, rules)
    wait_for_eligible(page, expected["eligible"])
    preview = page.locator("#rule-preview").inner_text()
    assert f"可能符合 {expected['likely']} 家" in preview and f"不符合 {expected['ineligible']} 家" in preview
    assert "从业人数 ≥ 50 人" in preview
    assert 0 < expected["eligible"] < sum(expected.values())
    # Tightening the threshold lowers the count at once.
    page.get_by_label("条件2 取值（人）").fill("100000")
    wait_for_eligible(page, 0)
    page.get_by_label("条件2 取值（人）").fill("50")
    wait_for_eligible(page, expected["eligible"])
    shoot(page, "s02-rule-builder")

    page.get_by_role("button", name="创建草稿").click()
    page.wait_for_url(re.compile(r"/staff/policies/\d+\?saved=created"))
    policy_id = int(re.search(r"/staff/policies/(\d+)", page.url).group(1))
    # Reopened, the builder shows the saved tree again.
    assert page.get_by_label("条件2 取值（人）").input_value() == "50"
    page.get_by_role("button", name="发布政策").click()
    page.wait_for_url(re.compile(r"saved=published"))
    assert page.locator(".page-head .policy-status").inner_text() == "已发布"
    shoot(page, "s03-policy-published")
    with site.database.sessionmaker() as db:
        stored = db.get(Policy, policy_id)
        assert stored.status == "published" and stored.rules == rules and stored.title == title

    # The eligible list holds exactly as many firms as the preview promised; it can be exported.
    page.get_by_role("link", name="符合条件企业名单").click()
    page.wait_for_url(re.compile(rf"/staff/policies/{policy_id}/eligible"))
    # The worker judges the newly published policy against every firm within a second or two.
    reload_until(page, ".results-title")
    assert page.locator(".results-title").inner_text() == f"共 {expected['eligible']} 家企业"
    assert page.get_by_role("link", name="CSV").count() == 1
    shoot(page, "s04-eligible-firms")

    # A targeted push to that list: the preview counts the firms and writes nothing.
    page.goto(f"/staff/push?policy_id={policy_id}")
    page.get_by_role("button", name="预览推送范围").click()
    page.wait_for_selector("#push-preview [data-count=enterprises]")
    assert int(page.locator("#push-preview [data-count=enterprises]").inner_text()) == expected["eligible"]
    shoot(page, "s05-push-preview")

    # An import with a bad row: the report is on the page and nothing is written.
    bad = "统一社会信用代码,企业名称,所在地区代码\n123,中山市浏览器导入测试有限公司,442000\n"
    page.goto("/staff/io")
    page.get_by_label("企业").check()
    page.get_by_label("文件（CSV 或 XLSX）").set_input_files(
        files=[{"name": "企业.csv", "mimeType": "text/csv", "buffer": bad.encode("utf-8")}]
    )
    page.get_by_role("button", name="上传并导入").click()
    page.wait_for_selector("#report")
    report = page.locator("#report").inner_text()
    assert "导入失败" in report and "第 2 行" in report and "统一社会信用代码" in report
    shoot(page, "s06-import-report")


def test_curator_uploads_a_policy_pdf_and_reviews_the_proposals_in_the_editor(page: Any, site: LiveSite) -> None:
    from tests.support import intake_docs

    sign_in(page, "curator")
    page.goto("/staff/io")
    # A scanned PDF is refused with a Chinese reason and nothing is drafted.
    page.get_by_label("政策文件", exact=True).set_input_files(
        files=[{"name": "扫描件.pdf", "mimeType": "application/pdf", "buffer": intake_docs.scanned_pdf_bytes()}]
    )
    page.get_by_role("button", name="上传并生成草稿").click()
    page.wait_for_selector("#intake .form-error")
    assert "扫描件" in page.locator("#intake .form-error").inner_text()
    # A real text-layer PDF becomes a draft; its link opens the editor with the proposals marked.
    page.get_by_label("政策文件", exact=True).set_input_files(
        files=[{"name": "通知.pdf", "mimeType": "application/pdf", "buffer": intake_docs.pdf_bytes()}]
    )
    page.get_by_role("button", name="上传并生成草稿").click()
    page.wait_for_selector(".intake-drafts a")
    assert "建议可计算条件" in page.locator(".intake-drafts").inner_text()
    shoot(page, "s07-intake-upload")
    page.locator(".intake-drafts a").first.click()
    page.wait_for_url(re.compile(r"/staff/policies/\d+$"))
    review = page.locator("#intake-review")
    assert "通知.pdf" in review.inner_text()
    assert "中工信〔2026〕18号" in review.inner_text()
    assert "上年度营业收入2000万元以上" in review.inner_text()  # the sentence a proposal came from
    assert page.locator("#intake-review .proposal.plain").count() >= 1  # kept for the curator to confirm
    rules = json.loads(page.locator("#f-rules_json").input_value())
    assert {"field": "annual_revenue", "op": "gte", "value": 2000} in rules["all"]
    # The builder counts the firms the proposed rules admit, live, before anything is published.
    page.wait_for_selector("#rule-preview [data-count=eligible]", timeout=10_000)
    shoot(page, "s08-intake-review")
    with site.database.sessionmaker() as db:
        policy = db.scalar(select(Policy).where(Policy.doc_number == "中工信〔2026〕18号"))
        assert policy is not None and policy.status == "draft" and policy.published_at is None


# ---------------------------------------------------------------- firm, desk officer, supervisor


def test_firm_asks_desk_officer_replies_firm_rates_officer_closes(page: Any, site: LiveSite) -> None:
    with site.database.sessionmaker() as db:
        reward = db.scalar(select(Policy.id).where(Policy.title == REWARD_POLICY))
    assert reward is not None

    # A question the knowledge base knows: answered at once, with its sources.
    sign_in(page, "firm")
    page.goto("/me/cases/new")
    page.get_by_label("咨询").check()
    page.get_by_label("诉求内容").fill("高企认定通过了，中山市的认定奖励怎么领？能拿多少？")
    page.get_by_role("button", name="提交").click()
    page.wait_for_url(re.compile(r"/me/cases/\d+\?new=1"))
    answer = page.locator(".instant-answer")
    assert "30万元" in answer.inner_text()
    assert answer.locator(".citations li").count() >= 1
    shoot(page, "s07-instant-answer")
    page.get_by_role("button", name="已解决，关闭诉求").click()
    page.wait_for_url(re.compile(r"done=accepted"))

    # A request for help about the reward policy goes to its handling department with due times.
    page.goto(f"/me/cases/new?policy_id={reward}")
    page.get_by_label("求助").check()
    page.get_by_label("诉求内容").fill("市科技业务管理系统上传高企证书时一直提示文件格式错误，申报截止前无法提交。")
    page.get_by_role("button", name="提交").click()
    page.wait_for_url(re.compile(r"/me/cases/\d+\?new=1"))
    case_id = int(re.search(r"/me/cases/(\d+)", page.url).group(1))
    receipt = page.locator(".receipt").inner_text()
    number = page.locator(".receipt .case-number").inner_text()
    assert "中山市科学技术局" in receipt and re.fullmatch(r"HQ\d{8}-\d{6}", number)
    assert page.locator(".dues li").count() == 3
    shoot(page, "s08-firm-case-submitted")

    # The desk officer: the queue by due time, then accept, reply and resolve.
    sign_in(page, "desk_kjj")
    page.wait_for_url(re.compile(r"/desk/queue$"))
    item = page.locator(".case-item", has_text=number)
    assert item.count() == 1 and "sla-green" in item.get_attribute("class")
    shoot(page, "s09-desk-queue")
    item.get_by_role("link").first.click()
    page.wait_for_url(re.compile(rf"/desk/cases/{case_id}$"))
    page.get_by_role("button", name="签收工单").click()
    page.wait_for_url(re.compile(r"done=accept"))
    page.get_by_label("阶段性答复（企业可见）").fill("已联系系统运维单位排查，请将证书转为PDF格式后重新上传。")
    page.get_by_role("button", name="发送答复").click()
    page.wait_for_url(re.compile(r"done=reply"))
    assert "已答复企业" in page.locator(".notice").inner_text()
    page.get_by_label("办结答复（企业可见，提交后邀请企业评价）").fill(
        "系统已修复文件格式校验问题，企业已成功提交申报材料。"
    )
    page.get_by_role("button", name="办结").click()
    page.wait_for_url(re.compile(r"done=resolve"))
    assert page.locator(".timeline .event-resolved").count() == 1
    shoot(page, "s10-desk-case")

    # The firm rates the outcome.
    sign_in(page, "firm")
    page.goto(f"/me/cases/{case_id}")
    assert "请将证书转为PDF格式" in page.locator(".timeline").inner_text()
    page.get_by_label("满意", exact=True).check()
    page.get_by_label(re.compile("^意见")).fill("处理及时，问题已解决")
    page.get_by_role("button", name="提交评价").click()
    page.wait_for_url(re.compile(r"done=rated"))
    assert "感谢您的评价" in page.locator(".notice").inner_text()
    shoot(page, "s11-firm-rated")

    # The officer closes the rated case.
    sign_in(page, "desk_kjj")
    page.goto(f"/desk/cases/{case_id}")
    page.get_by_role("button", name="关闭工单").click()
    page.wait_for_url(re.compile(r"done=close"))
    assert page.locator(".case-status").first.inner_text() == "已关闭"
    with site.database.sessionmaker() as db:
        case = db.get(Case, case_id)
        assert case.status == "closed" and case.rating == "satisfied"
        kinds = [e.kind for e in case.events]
        assert kinds.index("replied") < kinds.index("resolved") < kinds.index("rated") < kinds.index("closed")

    # The supervisor: escalations by colour, approvals waiting, the central dispatch queue.
    sign_in(page, "supervisor")
    page.wait_for_url(re.compile(r"/desk/supervision$"))
    assert page.locator(".esc-column").count() == 4
    assert page.locator("#approvals .approval").count() >= 1
    shoot(page, "s12-supervision")


# ---------------------------------------------------------------- dashboard


def test_dashboard_renders_its_charts(page: Any, site: LiveSite) -> None:
    sign_in(page, "supervisor")
    page.goto("/dashboard")
    containers = page.locator(".chart").count()
    assert containers >= 4  # per day, departments, push funnel, coverage (hot topics when there are some)
    page.wait_for_function(f"() => document.documentElement.dataset.charts === '{containers}'")
    page.wait_for_function(f"() => document.querySelectorAll('.chart canvas').length >= {containers}")
    assert int(page.locator(".kpi-value").first.inner_text()) >= 2
    shoot(page, "s13-dashboard")


# ---------------------------------------------------------------- hostile text in charts


XSS_TITLE = '<img src=x onerror="window.__xss=1">补贴申请进度查询'


def test_a_firm_typed_title_shows_as_text_in_the_hot_topic_tooltip(page: Any, site: LiveSite) -> None:
    """A firm's case title with markup is drawn as text by the dashboard's hot-topic tooltip; no script runs.

    The page fixture fails the test on any console error, so a CSP violation (an inline handler the
    policy refused) or the <img>'s failed request would fail it too.
    """
    from auth.models import User
    from auth.service import principal_for_user
    from desk import intake
    from desk.schemas import CaseIn

    with site.database.sessionmaker() as db:
        firm = principal_for_user(db.scalar(select(User).where(User.username == "firm")))
        for n in range(3):
            intake.submit_case(
                db=db,
                matcher=None,
                settings=site.settings,
                actor=firm,
                case_in=CaseIn(
                    kind="help",
                    title=XSS_TITLE,
                    content=f"我们提交的科技创新补贴申请一直显示审核中，请帮忙查询进度（第{n + 1}次）。",
                ),
            )
        db.commit()
    sign_in(page, "supervisor")
    page.goto("/dashboard")
    page.wait_for_function("() => document.documentElement.dataset.charts !== undefined")
    index = page.evaluate(
        """title => {
            const data = JSON.parse(document.getElementById('dashboard-data').textContent);
            return data.topics.slice().reverse().findIndex(t => t.title === title);
        }""",
        XSS_TITLE,
    )
    assert index >= 0, "the hostile title is not among the hot topics"
    page.evaluate(
        """i => echarts.getInstanceByDom(document.getElementById('chart-topics'))
            .dispatchAction({ type: 'showTip', seriesIndex: 0, dataIndex: i })""",
        index,
    )
    tooltip = page.locator("#chart-topics div").filter(has_text="补贴申请进度查询").last
    tooltip.wait_for(state="visible")
    assert XSS_TITLE in tooltip.inner_text()
    assert tooltip.locator("img").count() == 0
    page.wait_for_timeout(500)
    assert page.evaluate("window.__xss") is None
    assert page.locator("#chart-topics img").count() == 0
    # The filters send themselves when changed (static/app.js; the CSP forbids the old inline onchange).
    page.get_by_label("统计期间").select_option(index=0)
    page.wait_for_url(re.compile(r"/dashboard\?days="))
