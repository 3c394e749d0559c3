"""In a real browser (Debian's Chromium): a firm verifies its phone on the preferences page with the code the
SMS gateway (a local HTTP receiver) got, switches SMS on, and rates a policy; a curator reads the comment.

Screenshots at 390×844 and 1366×900 go to test-artifacts/web-rating/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from auth import phone as auth_phone
from auth.models import Role
from core.config import Settings
from desk.models import PolicyRating
from tests import factories
from tests.support.receiver import Receiver, running
from tests.web.browser_support import (
    SIZES,
    LiveSite,
    add_page_style,
    desktop_tab,
    fresh_database,
    launched_chromium,
    require_chromium,
    sign_in,
)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web-rating"
PASSWORD = "Factory-pass-2026"
PHONE = "13912345678"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gateway() -> Iterator[Receiver]:
    with running() as server:
        yield server


@pytest.fixture(scope="module")
def site(
    test_settings: Settings, matcher: Any, gateway: Receiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveSite, dict[str, Any]]]:
    """A firm, a curator and a published policy behind a live server whose SMS gateway is the receiver."""
    require_chromium()
    database = fresh_database(tmp_path_factory, "web-rating")
    with database.sessionmaker() as db:
        policy = factories.make_policy(db, publish=True, announce=False, title="中山市小微企业房租补贴")
        firm = factories.make_enterprise(db, name="中山市明远电子有限公司", contact_phone="0760-88881234")
        firm_user = factories.make_user(db, role=Role.enterprise, enterprise_id=firm.id, username="mingyuan")
        factories.make_user(db, role=Role.curator, username="curator_rating")
        db.commit()
        ids = {"policy": policy.id, "firm": firm.id, "firm_user": firm_user.id}
    settings = test_settings.model_copy(
        update={"sms_gateway_url": gateway.url("/ok"), "sms_gateway_secret": "sms-gateway-secret-for-tests"}
    )
    live = LiveSite(settings, database, matcher, worker=False)
    live.start()
    yield live, ids
    live.stop()
    database.dispose()


@pytest.fixture(scope="module")
def browser(site: tuple[LiveSite, dict[str, Any]]) -> Iterator[Any]:
    with launched_chromium(ARTIFACTS) as chromium:
        yield chromium


@pytest.fixture
def page(browser: Any, site: tuple[LiveSite, dict[str, Any]]) -> Iterator[Any]:
    with desktop_tab(browser, site[0].url) as tab:
        yield tab


def shoot(page: Any, name: str) -> None:
    unstick = add_page_style(page, ".site-header, .sticky-actions { position: static !important; }")
    page.evaluate("window.scrollTo(0, 0)")
    for label, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(150)
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 1, f"{name} scrolls sideways by {overflow}px at {width}px"
        page.screenshot(path=str(ARTIFACTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size({"width": 1366, "height": 900})
    unstick()


def test_a_firm_verifies_its_phone_with_the_sms_code_then_switches_sms_on(
    page: Any, site: tuple[LiveSite, dict[str, Any]], gateway: Receiver
) -> None:
    live, ids = site
    sign_in(page, "mingyuan", PASSWORD)
    page.goto("/me/preferences")
    assert page.locator("#phone-status").inner_text() == "未设置"  # the profile's number is a landline
    # SMS cannot be switched on before the number is verified.
    page.get_by_role("checkbox", name="短信").check()
    page.get_by_label("接收短信的手机号").fill(PHONE)
    page.get_by_role("button", name="保存推送设置").click()
    assert "请先获取短信验证码并完成验证" in page.locator(".prefs-form").inner_text()

    page.locator("#f-verify-phone").fill(PHONE)
    page.get_by_role("button", name="获取验证码").click()
    page.wait_for_selector("text=验证码已发送至 139****5678")
    [sms] = [b for b in gateway.bodies() if b["phone"] == PHONE]
    code = re.search(r"验证码为 (\d{6})", sms["text"]).group(1)  # type: ignore[union-attr]
    shoot(page, "01-code-sent")
    wrong = "000000" if code != "000000" else "111111"
    page.get_by_role("textbox", name="短信验证码").fill(wrong)
    page.get_by_role("button", name="验证", exact=True).click()
    assert "还可以再试 4 次" in page.locator("#phone-verify").inner_text()
    page.get_by_role("textbox", name="短信验证码").fill(code)
    page.get_by_role("button", name="验证", exact=True).click()
    page.wait_for_url(re.compile(r"saved=phone_verified"))
    assert page.locator("#phone-status").inner_text() == "已验证"
    assert "手机号已验证" in page.locator(".notice.success").first.inner_text()

    page.get_by_role("checkbox", name="短信").check()
    page.get_by_role("button", name="保存推送设置").click()
    page.wait_for_url(re.compile(r"saved=prefs"))
    assert page.get_by_role("checkbox", name="短信").is_checked()
    shoot(page, "02-phone-verified")
    with live.database.sessionmaker() as db:
        assert auth_phone.is_verified(db=db, enterprise_id=ids["firm"], phone=PHONE)


def test_a_firm_rates_a_policy_and_the_curator_reads_the_comment(
    page: Any, site: tuple[LiveSite, dict[str, Any]]
) -> None:
    live, ids = site
    sign_in(page, "mingyuan", PASSWORD)
    page.goto(f"/policies/{ids['policy']}")
    rating = page.locator("#rating")
    assert "还没有企业评价" in rating.inner_text()
    page.wait_for_timeout(300)  # the view is recorded after the page is sent
    rating.get_by_label("4 星 · 满意").check()
    rating.get_by_label(re.compile("评价内容")).fill("申报指南很清楚，<b>但</b>材料清单可以再精简")
    rating.get_by_role("button", name="提交评价").click()
    page.wait_for_url(re.compile(r"rated=1"))
    text = page.locator("#rating").inner_text()
    assert "感谢评价" in text and "4.0 分" in text and "1 家企业评价" in text
    assert "<b>但</b>材料清单" in page.locator(".own-rating").inner_text()  # shown as typed, never as markup
    shoot(page, "03-policy-rated")
    # Editing keeps one rating.
    page.locator("#rating").get_by_label("5 星 · 非常满意").check()
    page.locator("#rating").get_by_role("button", name="更新评价").click()
    page.wait_for_url(re.compile(r"rated=1"))
    assert "5.0 分" in page.locator("#rating").inner_text()
    with live.database.sessionmaker() as db:
        assert len(db.scalars(select(PolicyRating).where(PolicyRating.policy_id == ids["policy"])).all()) == 1

    sign_in(page, "curator_rating", PASSWORD)
    page.goto("/staff/policies")
    page.get_by_role("link", name="5.0 分 · 1 条").click()
    page.wait_for_url(re.compile(r"/staff/policies/\d+/ratings"))
    table = page.locator(".staff-table").inner_text()
    assert "中山市明远电子有限公司" in table and "申报指南很清楚，<b>但</b>材料清单可以再精简" in table
    shoot(page, "04-staff-ratings")
