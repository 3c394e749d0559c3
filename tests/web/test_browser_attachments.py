"""Attachments in a real browser (Debian's Chromium under Playwright, the app on 127.0.0.1).

A firm files an enquiry about a policy with two evidence files (a disguised HTML page is refused
first, by its content); the desk officer of the handling department downloads the evidence and
uploads a reply file, which the firm downloads. A curator uploads a 申报指南 on the policy editor
(htmx swaps the attachment card in place) and an anonymous visitor downloads it from the policy
page. Every download is compared byte for byte and by its offered name. Screenshots go to
test-artifacts/web-files/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from catalog.models import Policy
from core.attachments import Attachment
from core.config import Settings
from tests.support import sample_files as sf
from tests.web.browser_support import (
    LiveSite,
    desktop_tab,
    fresh_database,
    launched_chromium,
    require_chromium,
    sign_in,
)
from tests.web.test_browser_staff import REWARD_POLICY, _load_site_data

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web-files"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(test_settings: Settings, matcher: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    require_chromium()
    database = fresh_database(tmp_path_factory, "web-files-browser")
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
    with desktop_tab(
        browser,
        site.url,
        accept_dialogs=True,
        accept_downloads=True,
        ignore=lambda e: "422" in e,  # refused on purpose
    ) as tab:
        yield tab


def _download(page: Any, link: Any) -> tuple[str, bytes]:
    with page.expect_download() as info:
        link.click()
    download = info.value
    return download.suggested_filename, Path(download.path()).read_bytes()


def _reward_policy(site: LiveSite) -> int:
    with site.database.sessionmaker() as db:
        policy_id = db.scalar(select(Policy.id).where(Policy.title == REWARD_POLICY))
    assert policy_id is not None
    return policy_id


def test_firm_files_an_enquiry_with_evidence_and_the_officer_downloads_it(page: Any, site: LiveSite) -> None:
    reward = _reward_policy(site)
    sign_in(page, "firm")
    page.goto(f"/me/cases/new?policy_id={reward}")
    page.get_by_label("求助").check()
    page.get_by_label("诉求内容").fill("高企认定奖励公示已满三个月仍未拨付，附上公示截图和申请材料，请协助查询进度。")
    files = page.get_by_label("证据材料（可选，可多选）")

    # An HTML page named like a picture is refused by its content, and nothing is filed.
    files.set_input_files([{"name": "公示截图.png", "mimeType": "image/png", "buffer": sf.html()}])
    page.get_by_role("button", name="提交").click()
    page.wait_for_load_state()
    assert "/me/cases/new" in page.url
    assert "无法识别的文件内容" in page.locator("#files-error").inner_text()

    evidence = sf.pdf("申请材料")
    page.get_by_label("诉求内容").fill("高企认定奖励公示已满三个月仍未拨付，附上公示截图和申请材料，请协助查询进度。")
    page.get_by_label("求助").check()
    page.get_by_label("证据材料（可选，可多选）").set_input_files(
        [
            {"name": "公示截图.png", "mimeType": "image/png", "buffer": sf.png()},
            {"name": "申请材料.pdf", "mimeType": "application/pdf", "buffer": evidence},
        ]
    )
    page.get_by_role("button", name="提交").click()
    page.wait_for_url(re.compile(r"/me/cases/\d+\?new=1"))
    case_id = int(re.search(r"/me/cases/(\d+)", page.url).group(1))
    listed = page.locator("#attachments .attachment-link")
    assert listed.all_inner_texts() == ["公示截图.png", "申请材料.pdf"]
    page.screenshot(path=str(ARTIFACTS / "f01-firm-case-with-evidence.png"), full_page=True)

    # The handling department's officer downloads the evidence and answers with a file.
    sign_in(page, "desk_kjj")
    page.goto(f"/desk/cases/{case_id}")
    name, data = _download(page, page.get_by_role("link", name="申请材料.pdf"))
    assert name == "申请材料.pdf" and data == evidence
    name, data = _download(page, page.get_by_role("link", name="公示截图.png"))
    assert name == "公示截图.png" and data == sf.png()
    reply = sf.docx("拨付进度说明")
    page.get_by_label("上传答复附件（企业可见）").set_input_files(
        {"name": "拨付进度说明.docx", "mimeType": "application/octet-stream", "buffer": reply}
    )
    page.get_by_role("button", name="上传附件").click()
    page.wait_for_url(re.compile(r"done=attach"))
    assert "拨付进度说明.docx" in page.locator("#attachments").inner_text()
    page.screenshot(path=str(ARTIFACTS / "f02-desk-case-files.png"), full_page=True)

    # Another department's officer (市工信局) cannot open the files.
    sign_in(page, "desk_gxj")
    with site.database.sessionmaker() as db:
        ids = list(
            db.scalars(select(Attachment.id).where(Attachment.owner_kind == "case", Attachment.owner_id == case_id))
        )
    assert len(ids) == 3
    for attachment_id in ids:
        assert page.request.get(f"/desk/cases/{case_id}/attachments/{attachment_id}").status == 404

    # The firm downloads the reply file; the timeline says what was uploaded.
    sign_in(page, "firm")
    page.goto(f"/me/cases/{case_id}")
    name, data = _download(page, page.get_by_role("link", name="拨付进度说明.docx"))
    assert name == "拨付进度说明.docx" and data == reply
    assert "上传答复附件：拨付进度说明.docx" in page.locator(".timeline").inner_text()


def test_curator_uploads_a_guide_and_a_visitor_downloads_it(page: Any, site: LiveSite) -> None:
    reward = _reward_policy(site)
    sign_in(page, "curator")
    page.goto(f"/staff/policies/{reward}")
    card = page.locator("#attachments")
    card.get_by_label("附件类别").select_option("guide")
    guide = sf.pdf("申报指南")
    card.get_by_label("文件", exact=True).set_input_files(
        {"name": "2026年高企奖励申报指南.pdf", "mimeType": "application/pdf", "buffer": guide}
    )
    url_before = page.url
    card.get_by_role("button", name="上传附件").click()
    page.wait_for_selector("#attachments .notice.success")
    assert page.url == url_before  # htmx swapped the card in place
    assert "2026年高企奖励申报指南.pdf" in page.locator("#attachments").inner_text()

    # A PDF renamed .docx is refused on the card, by its content.
    page.locator("#attachments").get_by_label("文件", exact=True).set_input_files(
        {"name": "申请表.docx", "mimeType": "application/vnd.openxmlformats", "buffer": sf.pdf()}
    )
    page.locator("#attachments").get_by_role("button", name="上传附件").click()
    page.wait_for_selector("#attachments .form-error")
    assert "与文件名的扩展名 .docx 不符" in page.locator("#attachments .form-error").inner_text()
    page.screenshot(path=str(ARTIFACTS / "f03-policy-editor-attachments.png"), full_page=True)

    page.context.clear_cookies()
    page.goto(f"/policies/{reward}")
    section = page.locator("section.attachments")
    assert section.locator(".attachment-link").all_inner_texts() == ["2026年高企奖励申报指南.pdf"]
    name, data = _download(page, section.get_by_role("link", name="2026年高企奖励申报指南.pdf"))
    assert name == "2026年高企奖励申报指南.pdf" and data == guide
    page.screenshot(path=str(ARTIFACTS / "f04-policy-page-downloads.png"), full_page=True)
