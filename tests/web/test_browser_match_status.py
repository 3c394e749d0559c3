"""The staff status line in a real browser while policies' lists are written: Debian's Chromium driven by
Playwright against the app on 127.0.0.1 (no catch-up running beside it, so a listing stopped part-way
stays as it is until the test finishes it).

A listing stopped after one unit of firms: the curator's policies page says how many policies' lists are
being written and how many units are done, the list of one of them reads as pending; once the listing is
finished the line says matching is current. Screenshots go to test-artifacts/web-match-status/.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from auth import demo as auth_demo
from catalog import demo as catalog_demo
from catalog import service as catalog_service
from catalog.models import Policy, PolicyStatus
from catalog.schemas import PolicyIn
from core.config import Settings
from matcher import runs
from matcher.models import ListRunUnit
from profiles import demo as profiles_demo
from tests.web.browser_support import (
    SIZES,
    LiveSite,
    desktop_tab,
    fresh_database,
    launched_chromium,
    require_chromium,
    sign_in,
)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web-match-status"
FIRMS = 12
UNIT = 3  # firms per unit of the listing: 4 units

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(test_settings: Settings, matcher: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    """Demo 中山 policies and firms, every firm matched, and a listing of every published policy stopped
    after its first unit."""
    require_chromium()
    database = fresh_database(tmp_path_factory, "web-match-status")
    today = dt.date.today()
    with database.sessionmaker() as db:
        catalog_demo.load_taxonomy(db=db)
        items = [i for i in catalog_demo.demo_policies(today) if i["region_codes"] == ["442000"]][:8]
        for item in items:
            item.pop("status", None)
            policy = catalog_service.create_policy(db=db, policy_in=PolicyIn(**item), actor=None)
            catalog_service.publish_policy(
                db=db, policy_id=policy.id, actor=None, today=min(today, policy.valid_from_on or today)
            )
        profiles_demo.load_demo_enterprises(db=db, count=FIRMS)
        db.flush()
        auth_demo.create_demo_users(
            db=db, department_ids=catalog_demo.department_ids(db=db), firm_id=profiles_demo.demo_firm_id(db=db)
        )
        db.commit()
    runs.rematch_all(database, matcher)
    with database.session() as db:
        published = list(
            db.scalars(select(Policy.id).where(Policy.status == PolicyStatus.published).order_by(Policy.id))
        )

    def one_unit_written() -> bool:
        with database.session() as db:
            return bool(db.scalar(select(func.count()).select_from(ListRunUnit)))

    width = runs.LIST_BATCH
    runs.LIST_BATCH = UNIT
    try:
        runs.list_policies(database, matcher, published, should_stop=one_unit_written)
    finally:
        runs.LIST_BATCH = width
    live = LiveSite(test_settings, database, matcher, lifespan="off", worker=False)
    live.start()
    yield live
    live.stop()
    database.dispose()


@pytest.fixture(scope="module")
def browser(site: LiveSite) -> Iterator[Any]:
    with launched_chromium(ARTIFACTS) as chromium:
        yield chromium


def test_the_curator_sees_the_listing_progress_and_then_current_matching(browser: Any, site: LiveSite) -> None:
    with site.database.session() as db:
        listing = runs.status(db)["listing"]
        pid = db.scalar(select(Policy.id).where(Policy.status == PolicyStatus.published).order_by(Policy.id))
    assert listing is not None and listing["units_done"] == 1 and listing["units"] == FIRMS // UNIT
    with desktop_tab(browser, site.url) as page:
        sign_in(page, "curator")
        page.wait_for_url(re.compile(r"/staff/policies$"))
        line = page.get_by_role("status").filter(has_text="匹配计算中")
        assert line.is_visible()
        text = line.inner_text()
        assert "匹配已是最新" not in text
        assert f"{listing['policies']} 项政策的符合条件企业名单正在生成（已完成 1 / {FIRMS // UNIT} 段）" in text
        listing_part = page.locator(".match-status .match-listing")
        assert listing_part.get_attribute("data-units-done") == "1"
        for label, (width, height) in SIZES.items():
            page.set_viewport_size({"width": width, "height": height})
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 1, f"the policies page scrolls sideways by {overflow}px at {width}px"
            page.screenshot(path=str(ARTIFACTS / f"listing-{label}.png"), full_page=False)
        page.set_viewport_size({"width": 1366, "height": 900})

        page.goto(f"/staff/policies/{pid}/eligible")
        assert page.get_by_role("status").filter(has_text="名单正在后台生成").is_visible()

        runs.list_policies(site.database, site.matcher, _published(site))
        page.goto("/staff/policies")
        current = page.locator(".match-status")
        assert "匹配已是最新" in current.inner_text()
        assert page.locator(".match-status .match-listing").count() == 0
        page.goto(f"/staff/policies/{pid}/eligible")
        assert page.locator(".results-title").inner_text().startswith("共 ")


def _published(site: LiveSite) -> list[int]:
    with site.database.session() as db:
        return list(db.scalars(select(Policy.id).where(Policy.status == PolicyStatus.published).order_by(Policy.id)))
