"""Issue 14 in a real browser: the defects a new user hit on a fresh clone, each checked on its page.

The app runs under uvicorn in a thread on a migrated SQLite file with the demo taxonomy, a slice of
the demo 中山 policies, a few demo firms, the demo users and the desk's demo data, and the session's
real matcher. Screenshots at 390×844 and 1366×900 go to test-artifacts/web-ux/.
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
from auth.models import Role, User
from auth.service import principal_for_user
from catalog import demo as catalog_demo
from catalog import service as catalog_service
from catalog.models import Department
from catalog.schemas import PolicyIn
from core.config import Settings
from desk import demo as desk_demo
from desk import handling, intake
from desk.models import Case
from desk.schemas import CaseIn
from profiles import demo as profiles_demo
from tests.web.browser_support import (
    SIZES,
    LiveSite,
    add_page_style,
    desktop_tab,
    fresh_database,
    launched_chromium,
    require_chromium,
    sign_in,
    watch_errors,
)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web-ux"

pytestmark = pytest.mark.slow


def _load_site_data(db: Any, settings: Settings) -> None:
    today = dt.date.today()
    catalog_demo.load_taxonomy(db=db)
    items = [i for i in catalog_demo.demo_policies(today) if i["region_codes"] in (["442000"], [])][:24]
    for item in items:
        status = item.pop("status", "published")
        item.pop("pinned", None)
        policy = catalog_service.create_policy(db=db, policy_in=PolicyIn(**item), actor=None)
        if status == "published":
            catalog_service.publish_policy(
                db=db, policy_id=policy.id, actor=None, today=min(today, policy.valid_from_on or today)
            )
    catalog_service.expire_due_policies(db=db, today=today)
    profiles_demo.load_demo_enterprises(db=db, count=8)
    db.flush()
    auth_demo.create_demo_users(
        db=db, department_ids=catalog_demo.department_ids(db=db), firm_id=profiles_demo.demo_firm_id(db=db)
    )
    desk_demo.load_demo_desk(db=db, settings=settings)


@pytest.fixture(scope="module")
def site(test_settings: Settings, matcher: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    require_chromium()
    database = fresh_database(tmp_path_factory, "web-ux-browser")
    with database.sessionmaker() as db:
        _load_site_data(db, test_settings)
        db.commit()
    live = LiveSite(test_settings, database, matcher, lifespan="off", worker=False)
    live.start()
    yield live
    live.stop()
    database.dispose()


@pytest.fixture(scope="module")
def browser(site: LiveSite) -> Iterator[Any]:
    with launched_chromium(ARTIFACTS) as chromium:
        yield chromium


@pytest.fixture
def page(browser: Any, site: LiveSite) -> Iterator[Any]:
    with desktop_tab(browser, site.url, expected_statuses_for=("document", "xhr", "fetch"), accept_dialogs=True) as tab:
        yield tab


def shoot(page: Any, name: str) -> None:
    """Screenshot the page at phone and desktop width (full page); nothing may scroll sideways."""
    remove_style = add_page_style(page, ".sticky-actions, .site-header { position: static !important; }")
    for label, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(200)
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 1, f"{name} scrolls sideways by {overflow}px at {width}px"
        page.screenshot(path=str(ARTIFACTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size({"width": 1366, "height": 900})
    remove_style()


def _file_case(site: LiveSite, department_code: str, content: str) -> tuple[int, str]:
    """The demo firm files a help request; the supervisor sends it to the department; its officer accepts it."""
    with site.database.sessionmaker() as db:
        settings = site.matcher.settings
        firm = db.scalar(select(User).where(User.role == Role.enterprise, User.username == "firm"))
        boss = db.scalar(select(User).where(User.role == Role.supervisor))
        dept = db.scalar(select(Department).where(Department.code == department_code))
        officer = db.scalar(select(User).where(User.role == Role.desk, User.department_id == dept.id))
        case = intake.submit_case(
            db=db,
            settings=settings,
            matcher=None,
            actor=principal_for_user(firm),
            case_in=CaseIn(kind="help", content=content),
        )
        if case.department_id is None:
            handling.assign(
                db=db, settings=settings, case_id=case.id, actor=principal_for_user(boss), department_id=dept.id
            )
        elif case.department_id != dept.id:
            handling.transfer(
                db=db, settings=settings, case_id=case.id, actor=principal_for_user(boss), department_id=dept.id
            )
        handling.accept(db=db, settings=settings, case_id=case.id, actor=principal_for_user(officer))
        db.commit()
        return case.id, case.number


# ---------------------------------------------------------------- item 2: 转办


def test_transfer_confirms_returns_to_the_queue_and_names_the_transferring_department(
    page: Any, site: LiveSite
) -> None:
    case_id, number = _file_case(site, "zs-kjj", "企业研发设备进口免税手续咨询，需要工信部门出具证明。")
    asked: list[str] = []
    page.on("dialog", lambda d: asked.append(d.message))
    sign_in(page, "desk_kjj")
    page.goto(f"/desk/cases/{case_id}")
    page.get_by_text("转办其他部门").click()
    options = page.locator("#f-transfer-dept option").all_inner_texts()[1:]
    # The home city's departments first, then the province's and the national ones, then other cities.
    with site.database.sessionmaker() as db:
        region = {d.name: d.region_code for d in db.scalars(select(Department))}
    home = [n for n in options if region[n] == "442000"]
    assert home and options[: len(home)] == home
    assert options.index("广东省科学技术厅") < options.index("中华人民共和国财政部") < options.index("东莞市科学技术局")
    page.get_by_label("转办至").select_option(label="中山市工业和信息化局")
    shoot(page, "u01-desk-transfer")
    page.get_by_role("button", name="转办", exact=True).click()
    page.wait_for_url(re.compile(r"/desk/queue\?done=transfer"))
    assert asked and "中山市工业和信息化局" in asked[0]
    notice = page.locator(".notice").inner_text()
    assert f"工单 {number} 已转办至中山市工业和信息化局" in notice
    assert "工单不存在" not in page.content()
    shoot(page, "u02-queue-after-transfer")

    sign_in(page, "firm")
    page.goto(f"/me/cases/{case_id}")
    event = page.locator(".timeline .event-transferred").last
    assert "中山市科学技术局" in event.locator(".event-head").inner_text()
    assert "转办至中山市工业和信息化局" in event.inner_text()
    with site.database.sessionmaker() as db:
        assert db.get(Case, case_id).department_id is not None


# ---------------------------------------------------------------- item 3: the calculator's errors and industries


def test_calculator_shows_every_error_in_place_and_finds_industries_by_words(page: Any, site: LiveSite) -> None:
    page.goto("/calculator")
    page.get_by_label("所属行业").fill("软件")
    page.get_by_label("从业人数（人）").fill("-3")
    page.get_by_role("button", name="计算可享受的政策").click()
    # With JavaScript (htmx) the refusal is shown in the form: each bad field has its own message.
    page.wait_for_selector("#industry_code-error")
    assert "应用软件开发（I6513）" in page.locator("#industry_code-error").inner_text()
    assert page.locator("#employees-error").count() == 1
    assert page.locator("#error-summary li").count() == 2
    assert page.evaluate("document.activeElement.id") == "error-summary"
    shoot(page, "u03-calculator-errors")

    # Typing words offers matching industries; the list holds the GB/T code of 应用软件开发.
    field = page.get_by_label("所属行业")
    field.fill("")
    field.press_sequentially("软件开发", delay=30)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#industry-list option')].some(o => o.value === 'I6513')"
    )
    field.fill("I6513")
    page.get_by_label("从业人数（人）").fill("30")
    page.get_by_role("button", name="计算可享受的政策").click()
    page.wait_for_selector("#calc-results h2:not(.visually-hidden)", timeout=90_000)  # the embedder, on a busy machine
    assert page.locator(".field-error").count() == 0
    shoot(page, "u04-calculator-results")


def test_calculator_takes_an_industry_name_without_javascript(browser: Any, site: LiveSite) -> None:
    context = browser.new_context(java_script_enabled=False, locale="zh-CN", base_url=site.url)
    try:
        tab = context.new_page()
        tab.goto("/calculator")
        tab.get_by_label("所属行业").fill("应用软件开发")
        tab.get_by_role("button", name="计算可享受的政策").click()
        tab.wait_for_selector("#calc-results h2")
        assert tab.locator(".field-error").count() == 0
        assert "可能享受的政策" in tab.locator("#calc-results h2").inner_text()
        assert tab.get_by_label("所属行业").input_value() == "应用软件开发"
    finally:
        context.close()


# ---------------------------------------------------------------- item 1: /docs without internet


def test_api_docs_list_the_operations_with_the_network_cut(
    browser: Any, site: LiveSite, test_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Swagger UI comes from npm (node_modules/swagger-ui-dist), not a CDN: /docs works offline.

    HUIQI_TEST_NODE_MODULES may name another node_modules holding swagger-ui-dist (where `npm ci` has
    not run in the shared one yet)."""
    import os

    import web

    root = Path(os.environ.get("HUIQI_TEST_NODE_MODULES") or web.NODE_MODULES)
    if not (root / "swagger-ui-dist" / "swagger-ui-bundle.js").exists():
        why = f"swagger-ui-dist is not installed under {root}; `make` runs `npm ci`"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    monkeypatch.setitem(web.VENDOR, "swagger-ui", root / "swagger-ui-dist")
    docs_site = LiveSite(test_settings, site.database, site.matcher, lifespan="off", worker=False)
    docs_site.start()
    context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="zh-CN")
    try:
        tab = context.new_page()
        outside: list[str] = []

        def only_local(route: Any) -> None:
            if route.request.url.startswith(docs_site.url):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        tab.route("**/*", only_local)
        errors = watch_errors(tab)
        tab.goto(f"{docs_site.url}/docs")
        tab.wait_for_selector(".opblock", timeout=30_000)
        # Swagger UI keeps only the tag sections near the viewport in the page: scroll through it and
        # collect the operations seen on the way.
        seen: set[str] = set()
        for _ in range(120):
            seen.update(
                " ".join(t.split())
                for t in tab.locator(".opblock-summary-method, .opblock-summary-path").all_inner_texts()
            )
            paths = {p for p in seen if p.startswith("/api/")}
            if len(paths) >= 30 and "/api/v1/match/calculator" in paths:
                break
            tab.mouse.wheel(0, 600)
            tab.wait_for_timeout(150)
        paths = {p for p in seen if p.startswith("/api/")}
        assert len(paths) >= 30, sorted(paths)
        assert "/api/v1/match/calculator" in paths
        assert outside == [] and errors == [], (outside, errors)
        tab.screenshot(path=str(ARTIFACTS / "u05-api-docs-offline-desktop.png"))
    finally:
        context.close()
        docs_site.stop()


# ---------------------------------------------------------------- item 13: phone layout


def test_phone_layout_folds_filters_fits_the_queue_and_makes_phones_tappable(page: Any, site: LiveSite) -> None:
    # The library: on a phone the filters fold and the first result is on the first screen.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/policies")
    assert not page.locator("#f-category").is_visible()
    first = page.locator("#results article, #results .policy-card").first
    assert first.bounding_box()["y"] < 844
    page.get_by_text("筛选与排序").click()
    assert page.locator("#f-category").is_visible()
    page.set_viewport_size({"width": 1366, "height": 900})
    page.goto("/policies")
    assert page.locator("#f-category").is_visible()  # wide screens open them
    shoot(page, "u06-policies")

    # A policy page: the handling department's and the interpreter's numbers are tel: links.
    first_link = page.locator("#results a[href^='/policies/']").first
    first_link.click()
    page.wait_for_url(re.compile(r"/policies/\d+$"))
    tel = page.locator("a[href^='tel:']")
    assert tel.count() >= 1
    assert re.fullmatch(r"tel:\+?\d{5,}", tel.first.get_attribute("href"))
    shoot(page, "u07-policy-page")

    # The desk queue on a phone: the status select has a row of its own, its longest option fits.
    sign_in(page, "desk_kjj")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/desk/queue")
    box = page.locator("#f-status").bounding_box()
    assert box["width"] > 300, box
    text_width = page.evaluate(
        "(() => { const s = document.getElementById('f-status'); const c = document.createElement('canvas').getContext('2d');"
        " c.font = getComputedStyle(s).font; return Math.max(...[...s.options].map(o => c.measureText(o.text).width)); })()"
    )
    assert text_width + 40 < box["width"], (text_width, box)
    page.set_viewport_size({"width": 1366, "height": 900})
    shoot(page, "u08-desk-queue")


# ---------------------------------------------------------------- the other changed pages, looked at


def test_changed_staff_and_firm_pages_render_at_both_widths(page: Any, site: LiveSite) -> None:
    # Import: templates and the format on the page (item 12).
    sign_in(page, "curator")
    page.goto("/staff/io")
    assert page.get_by_role("link", name="Excel（含填写说明）").count() == 2
    assert page.locator("#formats table").first.is_visible()
    shoot(page, "u09-staff-io")
    # The tag hint names real tags (item 4).
    page.goto("/staff/policies/new")
    assert "研发投入" not in page.locator("#tags-hint").inner_text()
    # A department's dashboard: no "0%" instant-answer rate, but why (item 9).
    sign_in(page, "desk_kjj")
    page.goto("/dashboard")
    kpi = page.locator(".kpi", has_text="即时答复率")
    assert kpi.locator(".kpi-value").inner_text() == "—" and "不分部门" in kpi.inner_text()
    shoot(page, "u10-dashboard-department")
    # The firm hears of a reply in its inbox, linked to the case (item 14).
    case_id, number = _file_case(site, "zs-kjj", "高企认定材料中的研发费用专项审计报告有什么要求？")
    page.goto(f"/desk/cases/{case_id}")
    page.get_by_label("阶段性答复（企业可见）").fill("专项审计报告需由具备资质的会计师事务所出具。")
    page.get_by_role("button", name="发送答复").click()
    page.wait_for_url(re.compile(r"done=reply"))
    sign_in(page, "firm")
    page.goto("/me/inbox")
    message = page.locator(".message", has_text=number).first
    assert "专项审计报告需由具备资质的会计师事务所出具" in message.inner_text()
    assert message.locator("h2 a").get_attribute("href") == f"/me/cases/{case_id}"
    shoot(page, "u11-firm-inbox")
