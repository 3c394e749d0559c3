"""Issue 15 in a real browser (Debian's Chromium under Playwright, app served by uvicorn on 127.0.0.1):
a firm marks a policy 已申报 on its page and sees the status replace the buttons; the policy's department
moves the application to 已受理 and then 已兑现 with an amount; the firm finds both notices in its inbox.
Then a 免申即享 policy: the department freezes today's eligible list, confirms the firm and records its
payout; the firm is told "已为您兑现 X 万元" without applying. Screenshots go to test-artifacts/web-applications/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from applications import service as applications_service
from auth.models import Role
from core.config import Settings
from tests import factories
from tests.web.browser_support import (
    LiveSite,
    desktop_tab,
    fresh_database,
    launched_chromium,
    require_chromium,
    sign_in,
)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web-applications"
PASSWORD = "Browser-pass-2026"
XSS_TITLE = '<img src=x onerror="window.__xss=1">人才安居补贴兑现'


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(test_settings: Settings, matcher: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    require_chromium()
    database = fresh_database(tmp_path_factory, "web-applications")
    with database.sessionmaker() as db:
        dept = factories.make_department(db, name="中山市科学技术局（浏览器测试）")
        grant = factories.make_policy(
            db, department=dept, title="中山市科技创新券兑现（浏览器测试）", publish=True, announce=False
        )
        free = factories.make_policy(
            db,
            department=dept,
            title="中山市规上工业企业稳增长奖励（免申即享）",
            policy_type="exempt",
            publish=True,
            announce=False,
        )
        firm = factories.make_enterprise(db, name="中山市浏览器测试科技有限公司")
        # A policy whose (staff-typed) title carries markup, paid out: the dashboard must draw it as text.
        hostile = factories.make_policy(db, department=dept, title=XSS_TITLE, publish=True, announce=False)
        other = factories.make_enterprise(db, name="中山市另一家测试企业有限公司")
        app = applications_service.open_for_firm(db=db, enterprise_id=other.id, policy_id=hostile.id, actor=None)
        assert app is not None
        applications_service.set_status(db=db, actor=None, app=app, status="paid", amount=9)
        factories.make_user(db, role=Role.enterprise, enterprise_id=firm.id, username="bfirm", password=PASSWORD)
        factories.make_user(db, role=Role.desk, department_id=dept.id, username="bdesk", password=PASSWORD)
        db.commit()
        matcher.policy_index(db)
        factories.match(db, matcher)  # the stored eligible lists the 免申即享 roster is frozen from
        db.commit()
        ids = {
            "grant": grant.id,
            "free": free.id,
            "firm": firm.name,
            "grant_title": grant.title,
            "free_title": free.title,
        }
    live = LiveSite(test_settings, database, matcher, lifespan="off", worker=False)
    live.start()
    with launched_chromium(ARTIFACTS) as chromium:
        yield {"live": live, "browser": chromium, **ids}
    live.stop()
    database.dispose()


@pytest.fixture
def page(site: dict[str, Any]) -> Iterator[Any]:
    with desktop_tab(site["browser"], site["live"].url) as tab:
        yield tab


def test_apply_accept_pay_and_the_firms_notices(page: Any, site: dict[str, Any]) -> None:
    sign_in(page, "bfirm", PASSWORD)
    page.goto(f"/policies/{site['grant']}")
    page.get_by_role("button", name="已申报").click()
    status = page.locator(".application-status .app-status")
    status.wait_for()
    assert status.inner_text() == "已申报"
    page.screenshot(path=str(ARTIFACTS / "policy-applied.png"), full_page=True)

    sign_in(page, "bdesk", PASSWORD)
    page.goto(f"/staff/applications?policy_id={site['grant']}")
    page.get_by_role("link", name=site["firm"]).click()
    page.get_by_label("新状态", exact=True).select_option(label="已受理")
    page.get_by_label("说明（企业可见）").fill("材料齐全，已受理")
    page.get_by_role("button", name="保存").click()
    page.wait_for_function("() => document.querySelector('#app-status').textContent === '已受理'")
    page.get_by_label("新状态", exact=True).select_option(label="已兑现")
    page.get_by_label("兑现金额（万元，已兑现时必填）").fill("12")
    page.get_by_role("button", name="保存").click()
    page.wait_for_function("() => document.querySelector('#app-status').textContent === '已兑现'")
    assert "材料齐全，已受理" in page.locator(".app-history").inner_text()
    page.screenshot(path=str(ARTIFACTS / "staff-application.png"), full_page=True)

    sign_in(page, "bfirm", PASSWORD)
    page.goto("/me/inbox")
    text = page.locator("main").inner_text()
    assert f"已为您兑现 12 万元：{site['grant_title']}" in text
    assert f"申报已受理：{site['grant_title']}" in text
    page.goto("/me/applications")
    assert "已兑现" in page.locator("main").inner_text()
    page.screenshot(path=str(ARTIFACTS / "me-applications.png"), full_page=True)


def test_exempt_confirm_then_payout_notice(page: Any, site: dict[str, Any]) -> None:
    sign_in(page, "bdesk", PASSWORD)
    page.goto(f"/staff/exempt?policy_id={site['free']}")
    page.get_by_role("button", name="生成今日名单").click()
    page.wait_for_url(re.compile(r"/staff/exempt\?policy_id="))
    row = page.locator("tr", has_text=site["firm"])
    row.get_by_role("button", name="确认").click()
    row = page.locator("tr", has_text=site["firm"])
    row.get_by_label("金额（万元）").fill("3")
    row.get_by_role("button", name="登记兑现").click()
    page.locator("tr", has_text=site["firm"]).locator(".app-status-paid").wait_for()
    page.screenshot(path=str(ARTIFACTS / "staff-exempt.png"), full_page=True)

    sign_in(page, "bfirm", PASSWORD)
    page.goto("/me/inbox")
    assert f"已为您兑现 3 万元：{site['free_title']}" in page.locator("main").inner_text()
    page.goto("/me/applications")
    assert site["free_title"] in page.locator("#payouts").inner_text()


def test_the_dashboard_draws_payouts_with_hostile_titles_as_text(page: Any, site: dict[str, Any]) -> None:
    sign_in(page, "bdesk", PASSWORD)
    page.goto("/dashboard")
    page.wait_for_function("() => document.documentElement.dataset.charts !== undefined")
    for chart_id in ("chart-app-departments", "chart-app-funnel", "chart-app-policies"):
        page.locator(f"#{chart_id} canvas").first.wait_for()
    index = page.evaluate(
        """title => {
            const data = JSON.parse(document.getElementById('dashboard-data').textContent);
            return data.applications.policies.filter(p => p.amount_paid > 0).slice(0, 15).reverse()
                .findIndex(p => p.title === title);
        }""",
        XSS_TITLE,
    )
    assert index >= 0, "the hostile title is not among the paid policies"
    page.evaluate(
        """i => echarts.getInstanceByDom(document.getElementById('chart-app-policies'))
            .dispatchAction({ type: 'showTip', seriesIndex: 0, dataIndex: i })""",
        index,
    )
    tooltip = page.locator("#chart-app-policies div").filter(has_text="人才安居补贴兑现").last
    tooltip.wait_for(state="visible")
    assert XSS_TITLE in tooltip.inner_text()
    assert tooltip.locator("img").count() == 0
    page.wait_for_timeout(500)
    assert page.evaluate("window.__xss") is None
    page.screenshot(path=str(ARTIFACTS / "dashboard-applications.png"), full_page=True)
