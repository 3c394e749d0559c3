"""The web UI in a real browser: Debian's Chromium driven by Playwright against the app on 127.0.0.1.

The app runs under uvicorn in a thread, on a migrated SQLite file with the demo catalog, a few
demo firms and the session's real matcher (e5 embedder). Scenarios: the public library, a policy
page and the calculator; a firm signs up, completes its profile (seeing a Chinese validation
message first), sees recommendations with reasons, marks one applied, reads its inbox and changes
its push preferences. Screenshots of each key page at 390×844 and 1366×900 go to test-artifacts/.

Chromium comes from Debian (`make test` installs it); no browser is downloaded. Without
/usr/bin/chromium the tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from auth import demo as auth_demo
from catalog import demo as catalog_demo
from catalog import service as catalog_service
from catalog.models import Policy
from catalog.schemas import PolicyIn
from core.config import Settings
from matcher.models import Feedback
from profiles import demo as profiles_demo
from profiles.models import Enterprise
from push import fanout as push_fanout
from push.models import Delivery
from tests import factories
from tests.web.browser_support import (
    SIZES,
    LiveSite,
    add_page_style,
    desktop_tab,
    fresh_database,
    launched_chromium,
    reload_until,
    require_chromium,
)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"
# Full-page captures stitch the page at one scroll position: sticky bars would appear mid-page.
UNSTICK = ".site-header, .sticky-actions { position: static !important; }"
DEMO_FIRMS = 12

pytestmark = pytest.mark.slow


def _load_demo_catalog_subset(db: Any) -> None:
    """The demo taxonomy and a slice of the demo policies: every nationwide one, the first 中山 and 广东 ones.

    Enough for the scenarios (R&D deduction for the search, open 中山 applications for the firm) while
    the embedder reads a third of the catalog; loaded through the catalog service like `huiqi demo`.
    """
    today = dt.date.today()
    catalog_demo.load_taxonomy(db=db)
    taken = {"": 0, "442000": 0, "440000": 0}
    quota = {"": 18, "442000": 16, "440000": 6}
    for item in catalog_demo.demo_policies(today):
        region = ",".join(item["region_codes"])
        if region not in quota or taken[region] >= quota[region]:
            continue
        taken[region] += 1
        status = item.pop("status", "published")
        item.pop("pinned", None) if item.get("pinned") is None else None
        policy = catalog_service.create_policy(db=db, policy_in=PolicyIn(**item), actor=None)
        if status == "published":
            catalog_service.publish_policy(
                db=db, policy_id=policy.id, actor=None, today=min(today, policy.valid_from_on or today)
            )
    catalog_service.expire_due_policies(db=db, today=today)


@pytest.fixture(scope="module")
def site(test_settings: Settings, matcher: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    """The demo catalog, a few demo firms and the demo users behind a live server."""
    require_chromium()
    database = fresh_database(tmp_path_factory, "web-browser")
    with database.sessionmaker() as db:
        _load_demo_catalog_subset(db)
        profiles_demo.load_demo_enterprises(db=db, count=DEMO_FIRMS)
        db.flush()
        auth_demo.create_demo_users(
            db=db, department_ids=catalog_demo.department_ids(db=db), firm_id=profiles_demo.demo_firm_id(db=db)
        )
        db.commit()
        # Embed the published catalog once, before the browser waits on the first search.
        matcher.policy_index(db)
    live = LiveSite(test_settings, database, matcher)
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
    with desktop_tab(browser, site.url, expected_statuses_for=("document", "xhr", "fetch")) as tab:
        yield tab


def shoot(page: Any, name: str) -> None:
    """Screenshot the current page at phone and desktop width (full page), then restore desktop size."""
    unstick = add_page_style(page, UNSTICK)
    page.evaluate("window.scrollTo(0, 0)")
    for label, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(150)
        # Nothing may stick out sideways on a phone: horizontal scrolling means a broken layout.
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 1, f"{name} scrolls sideways by {overflow}px at {width}px"
        page.screenshot(path=str(ARTIFACTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size({"width": 1366, "height": 900})
    unstick()


def _lang_and_font(page: Any) -> None:
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    font = page.evaluate("getComputedStyle(document.body).fontFamily")
    assert "PingFang SC" in font and "Noto Sans CJK SC" in font


# ---------------------------------------------------------------- public pages


def test_public_library_policy_page_and_calculator(page: Any, site: LiveSite) -> None:
    page.goto("/")
    _lang_and_font(page)
    assert page.locator("h1").inner_text().startswith("找政策")
    assert page.locator(".category-grid li").count() >= 5
    closing = page.locator(".closing-list li")
    assert closing.count() >= 1
    shoot(page, "01-home")

    # Search by meaning: words that appear in no title still find the R&D deduction policy.
    page.get_by_role("searchbox", name="搜索政策").fill("研发投入能少交税吗")
    page.get_by_role("button", name="搜索").click()
    page.wait_for_url(re.compile(r"/policies\?q="))
    titles = page.locator("#results .policy-item h3").all_inner_texts()
    assert titles, "semantic search found nothing"
    assert any("研发费用" in t for t in titles[:5]), titles[:5]

    # Filters narrow the same search (htmx swaps the results in place and keeps the URL in step).
    levels = page.locator("#results .badge-level").all_inner_texts()
    assert set(levels) != {"国家级"}, "the search should find more than national policies before filtering"
    page.get_by_label("层级").select_option("national")
    page.wait_for_url(re.compile(r"level=national"))
    page.wait_for_function(
        "() => [...document.querySelectorAll('#results .badge-level')].every(b => b.textContent.trim() === '国家级')"
    )
    assert page.locator("#results .policy-item").count() >= 1
    shoot(page, "02-search")

    # The library without words: only policies open for application now, soonest deadline first.
    page.goto("/policies?open_now=1&sort=deadline")
    # Pinned policies lead (the catalog's order); after them, soonest deadline first.
    unpinned = page.locator("#results .policy-item:not(:has(.badge-pin)) .deadline").all_inner_texts()
    days = [int(m.group(1)) if (m := re.search(r"(\d+)", t)) else 0 for t in unpinned]
    assert days and days == sorted(days), days
    shoot(page, "03-library-open-now")

    # A policy page: summary, conditions in words, interpreter, countdown, application link.
    with site.database.sessionmaker() as db:
        linked = db.scalar(
            select(Policy.title)
            .where(Policy.status == "published", Policy.apply_url.is_not(None), Policy.apply_end_on >= dt.date.today())
            .order_by(Policy.apply_end_on)
            .limit(1)
        )
    page.locator("#results").get_by_role("link", name=linked, exact=True).click()
    page.wait_for_url(re.compile(r"/policies/\d+$"))
    assert page.locator("#rules-title").is_visible()
    assert page.locator(".rules-text li").count() >= 1
    assert page.locator(".interpreter").inner_text().count("解读人") == 1
    assert re.search(r"还剩 \d+ 天|今天截止", page.locator(".fact-deadline").inner_text())
    assert page.get_by_role("link", name=re.compile("前往申报")).count() == 1
    shoot(page, "04-policy")

    # The calculator: a few attributes, matching policies with ✓ / ✗ / ? reasons.
    page.goto("/calculator")
    page.get_by_label("所在地区").select_option("442000")
    page.get_by_label("所属行业").fill("C3911")
    page.get_by_label("从业人数（人）").fill("80")
    page.get_by_label("上年营业收入（万元）").fill("6000")
    page.get_by_label("上年研发费用（万元）").fill("420")
    page.get_by_label("高新技术企业").check()
    page.get_by_label("想获得哪些帮助").fill("想申请研发补助，扩大生产线需要设备贷款")
    page.get_by_role("button", name="计算可享受的政策").click()
    page.wait_for_selector("#calc-results .rec-card")
    assert "go=1" in page.url  # htmx pushed the query, so the result can be shared or reloaded
    first = page.locator("#calc-results .rec-card").first
    assert first.locator("details.why").get_attribute("open") is not None
    icons = page.locator("#calc-results .cond-icon").all_inner_texts()
    assert "✓" in icons
    assert page.locator("#calc-results .status").first.inner_text() in ("符合", "可能符合")
    shoot(page, "05-calculator")


# ---------------------------------------------------------------- a firm's journey


def _fill(page: Any, label: str, value: str) -> None:
    page.get_by_label(label, exact=True).fill(value)


def test_firm_signs_up_completes_profile_and_marks_a_recommendation_applied(page: Any, site: LiveSite) -> None:
    code = factories.credit_code(region="442000")

    # Not signed in: a firm page sends the browser to the sign-in page and back afterwards.
    page.goto("/me/recommendations")
    page.wait_for_url(re.compile(r"/login\?next=%2Fme%2Frecommendations"))
    shoot(page, "06-login")

    page.goto("/signup")
    _fill(page, "企业名称", "中山市浏览器测试电子科技有限公司")
    _fill(page, "统一社会信用代码", code[:-1] + ("0" if code[-1] != "0" else "1"))  # a wrong check digit first
    page.get_by_label("所在地区").select_option("442000")
    _fill(page, "所属行业", "C3911")
    _fill(page, "联系人姓名", "王小明")
    _fill(page, "联系电话", "13800138000")
    _fill(page, "登录名", "browser_firm")
    _fill(page, "密码", "Huiqi@browser2026")
    _fill(page, "再次输入密码", "Huiqi@browser2026")
    page.get_by_role("button", name="注册并登录").click()
    error = page.locator("#credit_code-error")
    assert "校验" in error.inner_text() or "不正确" in error.inner_text(), error.inner_text()
    assert page.get_by_label("企业名称", exact=True).input_value() == "中山市浏览器测试电子科技有限公司"
    shoot(page, "07-signup-error")

    _fill(page, "统一社会信用代码", code)
    _fill(page, "密码", "Huiqi@browser2026")
    _fill(page, "再次输入密码", "Huiqi@browser2026")
    page.get_by_role("button", name="注册并登录").click()
    page.wait_for_url(re.compile(r"/me/profile\?welcome=1"))
    assert "注册成功" in page.locator(".notice").first.inner_text()
    start = int(page.locator(".comp-value").inner_text().rstrip("%"))
    # The worker matches the new firm within a second or two; the page says so meanwhile.
    reload_until(page, ".blocking li")
    assert page.locator(".blocking li").count() >= 1, "no missing field is shown as blocking a policy"

    # A mistake first: the profile service's Chinese message appears by the field.
    _fill(page, "联系电话", "12ab")
    _fill(page, "从业人数（人）", "85")
    page.get_by_role("button", name="保存企业画像").click()
    assert page.locator("#contact_phone-error").inner_text() == "联系电话应为手机号或带区号的固定电话"
    assert page.get_by_label("从业人数（人）").input_value() == "85"  # what was typed is kept
    shoot(page, "08-profile-error")

    _fill(page, "联系电话", "0760-88886666")
    _fill(page, "成立日期", "2016-03-18")
    _fill(page, "营业收入（万元）", "6800")
    _fill(page, "资产总额（万元）", "5200")
    _fill(page, "研发费用（万元）", "480")
    page.get_by_label("信用状况").select_option("good")
    page.get_by_label("纳税信用等级").select_option("A")
    page.get_by_label("高新技术企业").check()
    _fill(page, "经营范围", "计算机整机、服务器及工业控制计算机的研发、制造与销售")
    _fill(page, "企业需求（希望获得哪些帮助）", "想申请研发费用补助和高新技术企业奖励，扩大生产线需要设备贷款贴息")
    page.get_by_role("button", name="保存企业画像").click()
    page.wait_for_url(re.compile(r"/me/profile\?saved=1"))
    done = int(page.locator(".comp-value").inner_text().rstrip("%"))
    assert done > start
    shoot(page, "09-profile-saved")

    # Recommendations with 为什么推荐: conditions ✓ / ✗ / ?, score, deadline.
    page.get_by_role("link", name="我的推荐").click()
    page.wait_for_url(re.compile(r"/me/recommendations$"))
    cards = page.locator(".rec-card")
    assert cards.count() >= 3
    first = cards.first
    assert first.locator(".status").inner_text() in ("符合", "可能符合")
    assert first.locator("details.why[open] .conditions li").count() >= 1
    assert "✓" in first.locator(".cond-icon").all_inner_texts()
    assert re.fullmatch(r"\d+", first.locator(".score strong").inner_text())
    title = first.locator("h3").inner_text()

    # Mark it applied: htmx swaps the buttons in place, the choice is stored. A policy that takes
    # applications now has one: its status (已申报) replaces the buttons.
    first.get_by_role("button", name="已申报").click()
    page.wait_for_function(
        "() => { const c = document.querySelector('.rec-card');"
        " return c.querySelector('.application-status') !== null"
        " || c.querySelector('.fb-applied[aria-pressed=true]') !== null; }"
    )
    took_application = first.locator(".application-status").count() > 0
    if took_application:
        assert first.locator(".application-status .app-status").inner_text() == "已申报"
        # Focus lands on the status's link (the script puts it back in the replaced box).
        page.wait_for_function(
            "() => document.activeElement && document.activeElement.textContent.trim() === '查看申报进度'",
            timeout=5000,
        )
    else:
        applied = first.get_by_role("button", name="已申报")
        assert applied.get_attribute("aria-pressed") == "true"
        assert "已申报" in first.locator(".feedback-status").inner_text()
        # Focus stays on the choice (the box was replaced, the script puts focus back on the pressed button).
        page.wait_for_function(
            "() => document.activeElement && document.activeElement.textContent.trim() === '已申报'", timeout=5000
        )
    shoot(page, "10-recommendations")
    with site.database.sessionmaker() as db:
        ent = db.scalar(select(Enterprise).where(Enterprise.credit_code == code))
        row = db.scalar(select(Feedback).where(Feedback.enterprise_id == ent.id).order_by(Feedback.id.desc()))
        assert row is not None and row.action == "applied" and row.source == "recommendation"
        assert db.get(Policy, row.policy_id).title == title
        firm_id = ent.id
    # The stored choice survives a reload.
    page.reload()
    card = page.locator(".rec-card", has_text=title)
    if card.count() and took_application:
        assert card.first.locator(".application-status .app-status").inner_text() == "已申报"
    elif card.count():
        assert card.first.get_by_role("button", name="已申报").get_attribute("aria-pressed") == "true"

    # Inbox: the firm's eligible policies are pushed (rules-based fan-out), then read one.
    with site.database.sessionmaker() as db:
        ids = [r.policy_id for r in db.scalars(select(Feedback).where(Feedback.enterprise_id == firm_id))]
        from matcher.models import MatchResult

        eligible = list(
            db.scalars(
                select(MatchResult.policy_id)
                .where(MatchResult.enterprise_id == firm_id, MatchResult.status == "eligible")
                .limit(3)
            )
        )
        for pid in dict.fromkeys(eligible + ids):
            push_fanout.fan_out_policy(db=db, policy_id=pid)
        db.commit()
        sent = db.scalar(
            select(Delivery.id).where(Delivery.enterprise_id == firm_id, Delivery.channel == "inbox").limit(1)
        )
    assert sent is not None, "the fan-out sent the firm nothing"
    page.get_by_role("link", name="消息").click()
    page.wait_for_url(re.compile(r"/me/inbox$"))
    unread = page.locator(".message.unread").count()
    assert unread >= 1
    shoot(page, "11-inbox")
    page.locator(".message.unread").first.get_by_role("button", name="标为已读").click()
    page.wait_for_load_state()
    assert page.locator(".message.unread").count() == unread - 1

    # Preferences: a channel without its contact is refused in Chinese; then save, subscribe, unsubscribe.
    page.get_by_role("link", name="推送设置").click()
    page.wait_for_url(re.compile(r"/me/preferences$"))
    page.get_by_label("电子邮件").check()
    _fill(page, "接收邮箱", "")
    page.get_by_role("button", name="保存推送设置").click()
    assert page.locator("#email-error").inner_text() == "选择邮件推送时必须填写接收邮箱"
    _fill(page, "接收邮箱", "policy@browser-firm.example")
    page.get_by_label("每日汇总").check()
    page.get_by_role("button", name="保存推送设置").click()
    page.wait_for_url(re.compile(r"saved=prefs"))
    assert page.get_by_label("电子邮件").is_checked()
    assert page.get_by_label("每日汇总").is_checked()
    _fill(page, "订阅关键词", "数字化转型")
    page.get_by_role("button", name="订阅关键词").click()
    page.wait_for_url(re.compile(r"saved=subscribed"))
    assert page.locator(".subs li", has_text="数字化转型").count() == 1
    shoot(page, "12-preferences")
    page.locator(".subs li", has_text="数字化转型").get_by_role("button", name=re.compile("退订")).click()
    page.wait_for_url(re.compile(r"saved=unsubscribed_one"))
    assert page.locator(".subs li", has_text="数字化转型").count() == 0
    page.get_by_role("button", name="退订全部站外推送").click()
    page.wait_for_url(re.compile(r"saved=unsubscribed"))
    assert page.get_by_role("button", name="恢复推送").is_visible()

    # Keyboard: Tab from the top reaches the skip link first, and it moves focus to the content.
    page.goto("/me/recommendations")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "跳到正文"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"

    # A firm may not open another role's page: a 403 page in Chinese. Then sign out.
    page.get_by_role("button", name="退出").click()
    page.wait_for_url(re.compile(r"/$"))
    assert page.get_by_role("link", name="登录").is_visible()
    page.goto("/me/profile")
    page.wait_for_url(re.compile(r"/login"))
    _fill(page, "用户名", "browser_firm")
    _fill(page, "密码", "Huiqi@browser2026")
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(re.compile(r"/me/profile$"))


def test_wrong_role_sees_the_chinese_403_page(page: Any, site: LiveSite) -> None:
    page.goto("/login")
    _fill(page, "用户名", "curator")
    _fill(page, "密码", "Huiqi@curator2026")
    page.get_by_role("button", name="登录").click()
    page.wait_for_load_state()
    response = page.goto("/me/inbox")
    assert response is not None and response.status == 403
    assert page.locator("h1").inner_text() == "没有权限"
    shoot(page, "13-forbidden")
