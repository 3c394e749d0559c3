"""The firm sees one view of its case — desk.queries.firm_view — on its page and through the API alike."""

from __future__ import annotations

import re
from typing import Any

from auth.models import Role
from auth.service import principal_for_user
from core import security
from desk import handling, intake, queries
from desk.schemas import CaseIn
from tests import factories
from web.deps import SESSION_COOKIE

DRAFT = "草稿答复：可能与《研发费用后补助》有关，仅供承办人员参考。"
INTERNAL_NOTE = "内部备注：该企业去年已享受同类补助，需核对是否重复。"
RETURN_REASON = "退单理由：该事项应由税务部门办理"
REPLY = "已收到您的咨询，正在核实补助拨付进度。"
EVENT_ITEM = re.compile(r'<li class="event event-(\w+)')


def _bearer(settings: Any, user_id: int) -> dict[str, str]:
    return {"Authorization": f"Bearer {security.create_access_token(settings=settings, subject=str(user_id))}"}


def test_page_and_api_show_the_firm_the_same_case_without_the_draft_answer(db, client, test_settings) -> None:  # type: ignore[no-untyped-def]
    firm = factories.make_enterprise(db)
    firm_user = factories.make_user(db, role=Role.enterprise, enterprise_id=firm.id)
    dept = factories.make_department(db)
    officer = factories.make_user(db, role=Role.desk, department_id=dept.id, display_name="王审核员")
    boss = principal_for_user(factories.make_user(db, role=Role.supervisor))
    desk = principal_for_user(officer)
    kw: dict[str, Any] = {"db": db, "settings": test_settings}

    # A consultation the knowledge base was not sure about: routed, its draft answer kept for staff.
    case = intake.submit_case(
        **kw,
        matcher=None,
        actor=principal_for_user(firm_user),
        case_in=CaseIn(kind="consultation", content="研发费用后补助什么时候拨付？公示已经两个月了。"),
    )
    case.instant_answer = {"confident": False, "confidence": 0.31, "threshold": 0.48, "text": DRAFT, "citations": []}
    db.flush()
    if case.department_id is None:
        handling.assign(**kw, case_id=case.id, actor=boss, department_id=dept.id)
    else:
        handling.transfer(**kw, case_id=case.id, actor=boss, department_id=dept.id)
    handling.accept(**kw, case_id=case.id, actor=desk)
    handling.add_note(**kw, case_id=case.id, actor=desk, note=INTERNAL_NOTE)
    handling.request_return(**kw, case_id=case.id, actor=desk, reason=RETURN_REASON)
    handling.decide_return(**kw, case_id=case.id, actor=boss, approve=False, note="驳回：请继续办理")
    handling.reply(**kw, case_id=case.id, actor=desk, note=REPLY)
    view = queries.firm_view(case)
    internal = [e.kind for e in case.events if not e.visible_to_firm]
    assert {"note", "return_requested", "return_rejected"} <= set(internal)

    api = client.get(f"/api/v1/desk/cases/{case.id}", headers=_bearer(test_settings, firm_user.id))
    assert api.status_code == 200, api.text
    body = api.json()
    client.cookies.set(SESSION_COOKIE, security.create_access_token(settings=test_settings, subject=str(firm_user.id)))
    page = client.get(f"/me/cases/{case.id}")
    assert page.status_code == 200

    # The draft answer stays with staff, on both.
    assert body["instant_answer"] is None and view.instant_answer is None
    assert DRAFT not in page.text and DRAFT not in api.text
    assert "系统此前给出的即时答复" not in page.text
    # The same events, in the same order, and only those meant for the firm.
    api_kinds = [e["kind"] for e in body["events"]]
    assert api_kinds == [e.kind for e in view.events] == EVENT_ITEM.findall(page.text)
    assert not set(internal) & set(api_kinds)
    for text in (INTERNAL_NOTE, RETURN_REASON, "驳回：请继续办理"):
        assert text not in page.text and text not in api.text
    assert REPLY in page.text and REPLY in [e["note"] for e in body["events"]]
    # Officers are not named to the firm; their department is, on the page.
    assert "王审核员" not in page.text and "王审核员" not in api.text
    assert dept.name in page.text
    assert all(e["data"] == {} for e in body["events"])
    assert body["return_request"] is None and body["routing_candidates"] is None

    # Staff see the draft, marked as below the threshold (the check above could fail).
    client.cookies.set(SESSION_COOKIE, security.create_access_token(settings=test_settings, subject=str(officer.id)))
    staff_page = client.get(f"/desk/cases/{case.id}")
    assert staff_page.status_code == 200
    assert DRAFT in staff_page.text and INTERNAL_NOTE in staff_page.text


def test_firm_page_shows_no_earlier_answer_when_none_was_given_and_no_faq_codes(db, client, test_settings) -> None:  # type: ignore[no-untyped-def]
    """Issue 14 item 6: a confident answer recorded on a case that was routed was never given to the firm;
    an answer's FAQ source is named by its question, never by its code (faq-004)."""
    firm = factories.make_enterprise(db)
    firm_user = factories.make_user(db, role=Role.enterprise, enterprise_id=firm.id)
    dept = factories.make_department(db)
    boss = principal_for_user(factories.make_user(db, role=Role.supervisor))
    kw: dict[str, Any] = {"db": db, "settings": test_settings}
    case = intake.submit_case(
        **kw,
        matcher=None,
        actor=principal_for_user(firm_user),
        case_in=CaseIn(kind="complaint", content="园区停车收费不合理，要求核查。"),
    )
    citation = {"source": "faq", "id": 4, "code": "faq-004", "title": "厂房租金补贴怎么申请？", "passage": "……"}
    case.instant_answer = {
        "confident": True,
        "confidence": 0.9,
        "threshold": 0.48,
        "text": "某答复",
        "citations": [citation],
    }
    db.flush()
    if case.department_id is None:
        handling.assign(**kw, case_id=case.id, actor=boss, department_id=dept.id)
    client.cookies.set(SESSION_COOKIE, security.create_access_token(settings=test_settings, subject=str(firm_user.id)))
    page = client.get(f"/me/cases/{case.id}")
    assert page.status_code == 200
    assert "系统此前给出的即时答复" not in page.text and "某答复" not in page.text
    assert queries.firm_view(case).instant_answer is None

    # The same answer given instantly: shown, its FAQ source by its question, not its code.
    from desk.answer import Citation, InstantAnswer
    from desk.intake import IntakeOutcome, prepare, receive, record_outcome

    firm_actor = principal_for_user(firm_user)
    answered = prepare(
        **kw,
        actor=firm_actor,
        case_in=CaseIn(kind="consultation", content="厂房租金补贴怎么申请？"),
        now=case.received_at,
    )
    answered = receive(**kw, actor=firm_actor, case=answered, department_id=None, now=case.received_at)
    given = InstantAnswer(
        True,
        0.9,
        0.48,
        "某答复",
        [Citation("faq", 4, "faq-004", "厂房租金补贴怎么申请？", "/api/v1/desk/faq/4", "……", 0.9)],
    )
    record_outcome(
        **kw, case_id=answered.id, outcome=IntakeOutcome(given, None), actor=firm_actor, now=case.received_at
    )
    db.flush()
    page = client.get(f"/me/cases/{answered.id}")
    assert page.status_code == 200
    assert "某答复" in page.text and "厂房租金补贴怎么申请？" in page.text
    assert "faq-004" not in page.text
