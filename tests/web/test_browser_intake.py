"""Issue 17 end to end in a real browser (Debian's Chromium under Playwright, the app served by uvicorn):
a curator uploads a policy PDF (drawn with reportlab, with a text layer), reviews what intake proposed in
the editor — accepts conditions, rejects one, edits a threshold, confirms the plain-language ones —
and watches the eligible-firm count follow each decision (checked firm by firm against the scalar rules
engine); publishing is refused while a proposal is undecided, then succeeds; the fan-out tells the
matched firm in its inbox. Bad files (scanned, encrypted, oversized, wrong type) are refused on the upload
page with a Chinese reason and nothing is saved. Screenshots go to test-artifacts/web-intake/.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from auth.models import Role
from catalog import demo as catalog_demo
from catalog.models import Policy, PolicyIntake, PolicyStatus
from core.attachments import Attachment
from core.config import Settings
from matcher import eligibility
from profiles.models import Enterprise
from push import fanout as push_fanout
from push.models import Delivery
from tests import factories
from tests.support import intake_docs
from tests.web.browser_support import (
    LiveSite,
    desktop_tab,
    fresh_database,
    launched_chromium,
    require_chromium,
    sign_in,
)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web-intake"
PASSWORD = "Browser-pass-2026"
DOC_NUMBER = f"中工信〔{dt.date.today().year}〕27号"

pytestmark = pytest.mark.slow


def _day(d: dt.date) -> str:
    return f"{d.year}年{d.month}月{d.day}日"


def policy_text(today: dt.date) -> str:
    """A 中山 工信局 notice as such notices are written: 申报条件 with thresholds, 支持标准, 申报时间, contacts."""
    start, end = today - dt.timedelta(days=5), today + dt.timedelta(days=40)
    return f"""中山市工业和信息化局关于组织申报{today.year}年度工业企业研发投入奖励资金的通知
{DOC_NUMBER}
各有关企业：
为贯彻落实《中山市促进制造业高质量发展若干措施》，现将有关申报事项通知如下：
一、申报条件
（一）在中山市依法注册登记、具有独立法人资格的工业企业；
（二）上年度营业收入2000万元以上；
（三）研发费用占营业收入比例不低于3%；
（四）从业人员不超过300人；
（五）近三年未发生重大安全生产事故。
二、支持标准
按企业上年度研发费用的10%给予奖励，最高不超过100万元。
三、申报时间
{_day(start)}至{_day(end)}，逾期不予受理。
四、申报方式
登录中山市产业扶持发展专项资金信息网（https://fczj.zs.gov.cn/）进行申报。
五、联系方式
联系人：陈静，电话：0760-88325566。地址：中山市东区松苑路1号。
中山市工业和信息化局
{_day(today - dt.timedelta(days=7))}
"""


# Firms the proposed conditions tell apart (营业收入 万元, 从业人数, 研发费用 万元).
FIRMS = {
    "中山市达标精密制造有限公司": (8000, 120, 400),  # meets every condition, also after the edit below
    "中山市小额营收科技有限公司": (3000, 120, 150),  # out once the revenue threshold is raised to 5000
    "中山市大型用工机械有限公司": (8000, 500, 400),  # out by the employee ceiling until it is rejected
    "中山市初创电子有限公司": (1000, 20, 100),  # never in
}
NOTIFIED = "中山市达标精密制造有限公司"


@pytest.fixture(scope="module")
def site(test_settings: Settings, matcher: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    require_chromium()
    # A 1 MB intake limit, so that an oversized upload is quick to make.
    settings = test_settings.model_copy(update={"intake_max_mb": 1})
    database = fresh_database(tmp_path_factory, "web-intake")
    with database.sessionmaker() as db:
        catalog_demo.load_taxonomy(db=db)
        firms = {}
        for name, (revenue, employees, rd) in FIRMS.items():
            firms[name] = factories.make_enterprise(
                db, name=name, annual_revenue=revenue, employees=employees, rd_expense=rd
            ).id
        factories.make_user(db, role=Role.curator, username="bcurator", password=PASSWORD)
        factories.make_user(
            db, role=Role.enterprise, enterprise_id=firms[NOTIFIED], username="bfirm", password=PASSWORD
        )
        db.commit()
    live = LiveSite(settings, database, matcher, lifespan="off", worker=False)
    live.start()
    with launched_chromium(ARTIFACTS) as chromium:
        yield {"live": live, "browser": chromium, "firms": firms}
    live.stop()
    database.dispose()


@pytest.fixture
def page(site: dict[str, Any]) -> Iterator[Any]:
    with desktop_tab(site["browser"], site["live"].url, accept_dialogs=True) as tab:
        yield tab


def _engine_eligible(site: dict[str, Any], rules: dict[str, Any] | None) -> int:
    """Judge every firm with the scalar rules engine (not the vectorised one the page's count uses)."""
    today = dt.date.today()
    with site["live"].database.sessionmaker() as db:
        firms = db.scalars(select(Enterprise).options(selectinload(Enterprise.qualifications))).all()
        verdicts = [eligibility.evaluate(rules, eligibility.profile_facts(f, today, set()), today=today) for f in firms]
    return sum(1 for v in verdicts if v.status == "eligible")


def _stored_rules(site: dict[str, Any], policy_id: int) -> dict[str, Any] | None:
    with site["live"].database.sessionmaker() as db:
        return db.get_one(Policy, policy_id).rules


def _wait_count(page: Any, n: int) -> None:
    page.wait_for_function(
        "n => { const el = document.querySelector('#intake-count [data-count=eligible]');"
        " return el !== null && el.textContent === '符合 ' + n + ' 家'; }",
        arg=n,
        timeout=15_000,
    )


def _proposal(page: Any, source: str) -> Any:
    """The review card's proposal quoting this sentence of the document."""
    return page.locator("#intake-review li.proposal", has=page.locator("blockquote.source", has_text=source)).first


def _decide(page: Any, item: Any, button: str) -> None:
    key = item.get_attribute("id")
    item.get_by_role("button", name=button, exact=False).first.click()
    page.wait_for_function(
        "id => { const li = document.getElementById(id); return li && li.dataset.status !== 'pending'; }", arg=key
    )


def _policies(site: dict[str, Any]) -> tuple[int, int, int, int]:
    """Policies, intake records, attachment rows and stored files: what a refused upload must not add."""
    store = site["live"].settings.resolved_attachment_dir
    with site["live"].database.sessionmaker() as db:
        return (
            db.scalar(select(func.count()).select_from(Policy)) or 0,
            db.scalar(select(func.count()).select_from(PolicyIntake)) or 0,
            db.scalar(select(func.count()).select_from(Attachment)) or 0,
            sum(1 for p in store.rglob("*") if p.is_file()) if store.exists() else 0,
        )


def test_bad_files_get_a_chinese_reason_on_the_page_and_nothing_is_saved(page: Any, site: dict[str, Any]) -> None:
    sign_in(page, "bcurator", PASSWORD)
    before = _policies(site)
    cases = [
        ("扫描件.pdf", "application/pdf", intake_docs.scanned_pdf_bytes(), "扫描件"),
        ("加密.pdf", "application/pdf", intake_docs.encrypted_pdf_bytes(), "加密"),
        ("超大.txt", "text/plain", ("申报条件：营业收入2000万元以上。\n" * 60_000).encode(), "超过 1 MB"),
        ("图片.pdf", "application/pdf", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, "不支持的文件类型"),
    ]
    for name, mime, data, words in cases:
        page.goto("/staff/io")
        page.get_by_label("政策文件", exact=True).set_input_files(
            files=[{"name": name, "mimeType": mime, "buffer": data}]
        )
        page.get_by_role("button", name="上传并生成草稿").click()
        error = page.locator("#intake .form-error")
        error.wait_for()
        text = error.inner_text()
        assert words in text, (name, text)
        assert page.locator(".intake-drafts").count() == 0
        assert _policies(site) == before, f"{name} left something behind"
    page.screenshot(path=str(ARTIFACTS / "intake-refused.png"), full_page=True)


def _upload_draft(page: Any, name: str, pdf: bytes) -> None:
    """Upload a policy PDF on the staff import page and open the draft intake made of it."""
    page.goto("/staff/io")
    page.get_by_label("政策文件", exact=True).set_input_files(
        files=[{"name": name, "mimeType": "application/pdf", "buffer": pdf}]
    )
    page.get_by_role("button", name="上传并生成草稿").click()
    page.locator(".intake-drafts a").first.click()
    page.wait_for_url(re.compile(r"/staff/policies/\d+$"))


def test_curator_uploads_reviews_publishes_and_the_matched_firm_is_told(page: Any, site: dict[str, Any]) -> None:
    today = dt.date.today()
    pdf = intake_docs.pdf_bytes(policy_text(today))
    sign_in(page, "bcurator", PASSWORD)
    _upload_draft(page, "研发投入奖励通知.pdf", pdf)
    found = re.search(r"/staff/policies/(\d+)", page.url)
    assert found is not None
    policy_id = int(found.group(1))

    review = page.locator("#intake-review")
    assert "研发投入奖励通知.pdf" in review.inner_text() and DOC_NUMBER in review.inner_text()
    # The uploaded PDF is kept beside the draft as its 政策原文.
    assert "研发投入奖励通知.pdf" in page.locator("#attachments .attachment-list").inner_text()
    # Every proposal carries its source sentence and confidence, and waits for a decision.
    pending = review.locator("li.proposal[data-status=pending]")
    assert pending.count() == review.locator("li.proposal").count() >= 15
    assert review.locator("li.proposal .confidence").count() >= 15
    assert "全部处理后才能发布" in page.locator("#f-intake").inner_text()
    # The count under the draft's proposed rules, as the rules engine judges the firms.
    proposed = _stored_rules(site, policy_id)
    # Region, industry (a 工业企业 applicant), revenue, R&D ratio and employees: five coded conditions.
    assert proposed is not None and len(proposed["all"]) == 5
    assert {"field": "industry_code", "op": "prefix"}.items() <= next(
        n for n in proposed["all"] if n["field"] == "industry_code"
    ).items()
    _wait_count(page, _engine_eligible(site, proposed))
    assert _engine_eligible(site, proposed) == 2
    page.screenshot(path=str(ARTIFACTS / "review-start.png"), full_page=True)

    # Accept the region and the R&D ratio: the count stays.
    _decide(page, _proposal(page, "在中山市依法注册登记"), "采纳")
    _decide(page, _proposal(page, "研发费用占营业收入比例不低于3%"), "采纳")
    _wait_count(page, 2)
    # Reject the employee ceiling: the large firm comes in.
    _decide(page, _proposal(page, "从业人员不超过300人"), "驳回")
    rules = _stored_rules(site, policy_id)
    assert rules is not None and all(n["field"] != "employees" for n in rules["all"])
    _wait_count(page, _engine_eligible(site, rules))
    assert _engine_eligible(site, rules) == 3
    # Edit the revenue threshold from 2000 to 5000 万元: the small-revenue firm drops out.
    revenue = _proposal(page, "上年度营业收入2000万元以上")
    revenue.locator("summary", has_text="修改").click()
    revenue.get_by_label("取值（万元）").fill("5000")
    revenue.get_by_role("button", name="保存修改").click()
    page.wait_for_selector("#intake-review li.proposal.status-edited")
    rules = _stored_rules(site, policy_id)
    assert rules is not None and {"field": "annual_revenue", "op": "gte", "value": 5000} in rules["all"]
    _wait_count(page, _engine_eligible(site, rules))
    assert _engine_eligible(site, rules) == 2
    assert "年营业收入 ≥ 5000 万元" in page.locator("#intake-review li.status-edited").inner_text()
    # The editor's JSON (and so its builder) follows each decision, so saving the form keeps them.
    page.wait_for_function("() => document.getElementById('f-rules_json').value.includes('5000')", timeout=5_000)
    assert json.loads(page.locator("#f-rules_json").input_value()) == rules
    # A bad threshold is refused on its proposal with a Chinese reason; nothing changes.
    revenue = page.locator("#intake-review li.proposal.status-edited")
    revenue.locator("summary", has_text="修改").click()
    revenue.get_by_label("取值（万元）").fill("两千万")
    revenue.get_by_role("button", name="保存修改").click()
    page.locator("#intake-review li.status-edited .form-error").wait_for()
    assert "条件无效" in page.locator("#intake-review li.status-edited .form-error").inner_text()
    assert _stored_rules(site, policy_id) == rules
    page.screenshot(path=str(ARTIFACTS / "review-decided-conditions.png"), full_page=True)
    # At phone width the review card stacks under the form and nothing scrolls sideways.
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(200)
    assert page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth") <= 1
    page.locator("#intake-review").screenshot(path=str(ARTIFACTS / "review-phone.png"))
    page.set_viewport_size({"width": 1366, "height": 900})

    # The curator completes the draft by hand and saves it.
    page.locator("#f-categories input[type=checkbox]").first.check()
    page.get_by_label("政策摘要").fill(
        "对上年度研发投入占比不低于3%的规上工业企业，按研发费用10%给予奖励，最高100万元。"
    )
    page.locator(".sticky-actions button[type=submit]").click()
    page.wait_for_url(re.compile(r"saved=saved"))
    assert _stored_rules(site, policy_id) == rules  # the saved form kept the decisions
    # Publishing is refused while proposals wait: nothing reaches firms without a curator.
    page.get_by_role("button", name="发布政策").click()
    refusal = page.locator("div.form-error[role=alert]", has_text="录入建议未处理")
    refusal.wait_for()
    assert "全部处理后才能发布" in page.locator("#f-intake").inner_text()
    with site["live"].database.sessionmaker() as db:
        assert db.get_one(Policy, policy_id).status == PolicyStatus.draft

    # Confirm the plain-language conditions by hand and accept the remaining proposals one by one.
    page.goto(f"/staff/policies/{policy_id}")
    while True:
        waiting = page.locator("#intake-review li.proposal[data-status=pending]")
        if waiting.count() == 0:
            break
        item = waiting.first
        label = "确认" if "plain" in (item.get_attribute("class") or "") else "采纳"
        _decide(page, item, label)
    assert "所有录入建议均已处理" in page.locator("#f-intake").inner_text()
    _wait_count(page, 2)
    page.screenshot(path=str(ARTIFACTS / "review-all-decided.png"), full_page=True)

    page.get_by_role("button", name="发布政策").click()
    page.wait_for_url(re.compile(r"saved=published"))
    assert page.locator(".page-head .policy-status").inner_text() == "已发布"
    with site["live"].database.sessionmaker() as db:
        policy = db.get_one(Policy, policy_id)
        assert policy.status == PolicyStatus.published and policy.rules == rules
        assert policy.doc_number == DOC_NUMBER
        title = policy.title
        # The fan-out the publish queued, run as the worker would: the matched firms hear of it.
        result = push_fanout.fan_out_policy(db=db, policy_id=policy_id, settings=site["live"].settings)
        db.commit()
        told = set(
            db.scalars(
                select(Delivery.enterprise_id).where(Delivery.policy_id == policy_id, Delivery.channel == "inbox")
            )
        )
    assert result["created"] >= 1, result
    # Exactly the firms the decided rules admit: the high-revenue ones, the large employer included.
    firms = site["firms"]
    assert told == {firms[NOTIFIED], firms["中山市大型用工机械有限公司"]}

    sign_in(page, "bfirm", PASSWORD)
    page.goto("/me/inbox")
    assert title in page.locator("main").inner_text()
    page.screenshot(path=str(ARTIFACTS / "firm-inbox.png"), full_page=True)

    # The same notice uploaded again: its review page flags the published policy as a duplicate.
    sign_in(page, "bcurator", PASSWORD)
    _upload_draft(page, "再次上传.pdf", pdf)
    duplicate = page.locator("#intake-review .duplicate")
    assert duplicate.count() == 1 and "文号相同" in duplicate.inner_text()
    assert duplicate.get_by_role("link").get_attribute("href") == f"/staff/policies/{policy_id}"
