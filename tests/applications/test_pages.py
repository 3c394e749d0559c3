"""The pages of issue 15: the firm's 已申报 opens an application whose status replaces the buttons; the
department moves it on its page and imports its result list with the row report on the page; the firm
follows it on /me/applications and reads the notices in its inbox; 免申即享 rosters on /staff/exempt."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from applications import service
from auth.models import Role
from core import security
from tests import factories
from web.deps import SESSION_COOKIE

CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def _as(client: Any, settings: Any, user: Any) -> None:
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, security.create_access_token(settings=settings, subject=str(user.id)))


def _post(client: Any, url: str, data: dict[str, Any] | None = None, **kw: Any) -> Any:
    page = client.get("/login", follow_redirects=True)
    token = CSRF_META.search(page.text).group(1)  # type: ignore[union-attr]
    return client.post(url, data={"csrf_token": token, **(data or {})}, follow_redirects=False, **kw)


def test_apply_on_the_policy_page_then_the_department_moves_it(client, db, test_settings) -> None:  # type: ignore[no-untyped-def]
    dept = factories.make_department(db)
    policy = factories.make_policy(db, department=dept, publish=True, announce=False)
    firm = factories.make_enterprise(db)
    firm_user = factories.make_user(db, role=Role.enterprise, enterprise_id=firm.id)
    officer = factories.make_user(db, role=Role.desk, department_id=dept.id)
    stranger = factories.make_user(db, role=Role.desk)

    _as(client, test_settings, firm_user)
    r = _post(client, f"/policies/{policy.id}/feedback", {"action": "applied"}, headers={"HX-Request": "true"})
    assert r.status_code == 200 and "申报进度" in r.text and "已申报" in r.text
    app = service.find(db, firm.id, policy.id)
    assert app is not None
    page = client.get(f"/policies/{policy.id}")
    assert 'class="app-status app-status-submitted"' in page.text and 'value="applied"' not in page.text

    _as(client, test_settings, stranger)
    assert client.get(f"/staff/applications/{app.id}").status_code == 404
    _as(client, test_settings, officer)
    listing = client.get(f"/staff/applications?policy_id={policy.id}")
    assert firm.name in listing.text
    r = _post(client, f"/staff/applications/{app.id}/status", {"status": "paid"})
    assert r.status_code == 422 and "已兑现须填写兑现金额" in r.text
    r = _post(client, f"/staff/applications/{app.id}/status", {"status": "accepted", "note": "材料齐全"})
    assert r.status_code == 303

    _as(client, test_settings, firm_user)
    mine = client.get("/me/applications")
    assert "已受理" in mine.text and policy.title in mine.text
    detail = client.get(f"/me/applications/{app.id}")
    assert "材料齐全" in detail.text and "撤回申报" in detail.text
    inbox = client.get("/me/inbox")
    assert f"申报已受理：{policy.title}" in inbox.text
    assert f'href="/me/applications/{app.id}"' in inbox.text


def test_the_result_list_import_shows_its_row_report(client, db, test_settings) -> None:  # type: ignore[no-untyped-def]
    dept = factories.make_department(db)
    policy = factories.make_policy(db, department=dept, publish=True, announce=False)
    firm = factories.make_enterprise(db)
    officer = factories.make_user(db, role=Role.desk, department_id=dept.id)
    _as(client, test_settings, officer)
    today = dt.date.today().isoformat()
    text = "统一社会信用代码,状态,兑现金额（万元）,兑现日期\n" + f"{firm.credit_code},已兑现,abc,{today}\n"
    files = {"file": ("结果.csv", text.encode(), "text/csv")}
    r = _post(client, "/staff/applications/import", {"policy_id": str(policy.id)}, files=files)
    assert r.status_code == 422 and "第 2 行" in r.text and "兑现金额（万元）" in r.text
    assert service.find(db, firm.id, policy.id) is None
    text = "统一社会信用代码,状态,兑现金额（万元）,兑现日期\n" + f"{firm.credit_code},已兑现,6,{today}\n"
    files = {"file": ("结果.csv", text.encode(), "text/csv")}
    r = _post(client, "/staff/applications/import", {"policy_id": str(policy.id)}, files=files)
    assert r.status_code == 200 and "新增 1" in r.text
    app = service.find(db, firm.id, policy.id)
    assert app is not None and (app.status, app.amount) == ("paid", 6)


def test_a_recommended_policy_the_firm_applied_for_shows_its_status(client, db, matcher, test_settings) -> None:  # type: ignore[no-untyped-def]
    dept = factories.make_department(db)
    policy = factories.make_policy(db, department=dept, publish=True, announce=False)
    firm = factories.make_enterprise(db)
    firm_user = factories.make_user(db, role=Role.enterprise, enterprise_id=firm.id)
    factories.match(db, matcher)
    _as(client, test_settings, firm_user)
    page = client.get("/me/recommendations")
    assert f'id="rec-{policy.id}"' in page.text and f'id="feedback-{policy.id}"' in page.text
    r = _post(
        client, f"/me/recommendations/{policy.id}/feedback", {"action": "applied"}, headers={"HX-Request": "true"}
    )
    assert "app-status-submitted" in r.text
    officer = factories.make_user(db, role=Role.desk, department_id=dept.id)
    app = service.find(db, firm.id, policy.id)
    assert app is not None
    _as(client, test_settings, officer)
    assert _post(client, f"/staff/applications/{app.id}/status", {"status": "reviewing"}).status_code == 303
    _as(client, test_settings, firm_user)
    card = client.get("/me/recommendations").text.split(f'id="rec-{policy.id}"')[1].split("</article>")[0]
    assert "审核中" in card and 'value="applied"' not in card
