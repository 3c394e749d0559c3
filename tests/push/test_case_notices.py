"""Issue 14 item 14: a firm is told when its case is replied to, transferred, delayed or resolved — in its
inbox at once and by its chosen channels (here email, delivered by the outbox sender to a real local SMTP
server), each message linking to the case."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from auth.models import Role
from auth.service import principal_for_user
from core.db import utcnow
from desk import handling, intake
from desk.schemas import CaseIn, ExtensionIn
from push import preferences, rules, sender
from push.channels import EmailChannel
from push.models import Delivery
from push.schemas import PreferencesIn
from tests import factories
from tests.support.mailbox import Mailbox, smtp_server


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    with smtp_server() as served:
        yield served


def test_the_firm_hears_of_every_reply_transfer_delay_and_resolution(db, test_settings, smtp) -> None:  # type: ignore[no-untyped-def]
    firm = factories.make_enterprise(db)
    firm_user = factories.make_user(db, role=Role.enterprise, enterprise_id=firm.id)
    preferences.update_preferences(
        db=db, enterprise_id=firm.id, prefs_in=PreferencesIn(channels=["inbox", "email"], email="boss@firm.example")
    )
    first, second = (
        factories.make_department(db, name="中山市科学技术局"),
        factories.make_department(db, name="中山市工业和信息化局"),
    )
    officer = principal_for_user(factories.make_user(db, role=Role.desk, department_id=first.id))
    other = principal_for_user(factories.make_user(db, role=Role.desk, department_id=second.id))
    boss = principal_for_user(factories.make_user(db, role=Role.supervisor))
    kw: dict[str, Any] = {"db": db, "settings": test_settings}
    case = intake.submit_case(
        **kw,
        matcher=None,
        actor=principal_for_user(firm_user),
        case_in=CaseIn(kind="help", content="申报系统上传附件一直失败，截止日前无法提交。"),
    )
    if case.department_id is None:
        handling.assign(**kw, case_id=case.id, actor=boss, department_id=first.id)
    elif case.department_id != first.id:
        handling.transfer(**kw, case_id=case.id, actor=boss, department_id=first.id)
    before = set(db.scalars(select(Delivery.id).where(Delivery.enterprise_id == firm.id)))

    handling.accept(**kw, case_id=case.id, actor=officer)
    handling.reply(**kw, case_id=case.id, actor=officer, note="已联系系统运维单位排查。")
    handling.transfer(**kw, case_id=case.id, actor=officer, department_id=second.id, note="属工信局系统")
    handling.accept(**kw, case_id=case.id, actor=other)
    handling.request_extension(
        **kw, case_id=case.id, actor=other, extension_in=ExtensionIn(amount=2, reason="需协调外包商")
    )
    handling.decide_extension(**kw, case_id=case.id, actor=boss, approve=True)
    handling.resolve(**kw, case_id=case.id, actor=other, resolution="系统已修复，附件可正常上传。")
    db.flush()

    rows = [
        r
        for r in db.scalars(select(Delivery).where(Delivery.enterprise_id == firm.id).order_by(Delivery.id))
        if r.id not in before
    ]
    inbox = [r for r in rows if r.channel == "inbox"]
    assert [r.payload["event"] for r in inbox] == ["replied", "transferred", "extension_approved", "resolved"]
    assert all(r.kind == "case_update" and r.url.endswith(f"/me/cases/{case.id}") for r in rows)
    assert "已联系系统运维单位排查" in inbox[0].body and case.number in inbox[0].body
    assert "中山市工业和信息化局" in inbox[1].body
    assert "系统已修复" in inbox[3].body and inbox[3].title.startswith("诉求已办结")
    emails = [r for r in rows if r.channel == "email"]
    assert len(emails) == 4 and all(r.status == "pending" for r in emails)
    # Nothing is told twice: the rows are keyed by the timeline event.
    assert len({(r.dedupe_key, r.channel) for r in rows}) == len(rows)

    # The outbox's own sender delivers them by email, with the case link.
    handler, port = smtp
    channel = EmailChannel(host="127.0.0.1", port=port, sender="惠企服务 <noreply@huiqi.example>", timeout=5)
    counts = sender.send_due(db=db, channels={"email": channel}, settings=test_settings, now=utcnow())
    assert counts.get("sent", 0) >= 4, counts
    bodies = [
        email.message_from_bytes(e.content, policy=email.policy.default).get_body(("plain",)).get_content()
        for e in handler.envelopes
    ]
    assert len(bodies) == 4 and all(f"/me/cases/{case.id}" in b for b in bodies)
    assert all(e.rcpt_tos == ["boss@firm.example"] for e in handler.envelopes)


def test_a_firm_unsubscribed_from_everything_gets_no_case_notices(db, test_settings) -> None:  # type: ignore[no-untyped-def]
    firm = factories.make_enterprise(db)
    firm_user = factories.make_user(db, role=Role.enterprise, enterprise_id=firm.id)
    preferences.update_preferences(db=db, enterprise_id=firm.id, prefs_in=PreferencesIn(unsubscribed_all=True))
    dept = factories.make_department(db)
    officer = principal_for_user(factories.make_user(db, role=Role.desk, department_id=dept.id))
    boss = principal_for_user(factories.make_user(db, role=Role.supervisor))
    kw: dict[str, Any] = {"db": db, "settings": test_settings}
    case = intake.submit_case(
        **kw,
        matcher=None,
        actor=principal_for_user(firm_user),
        case_in=CaseIn(kind="help", content="厂房租金补贴的申请材料怎么准备？"),
    )
    if case.department_id != dept.id:
        (handling.assign if case.department_id is None else handling.transfer)(
            **kw, case_id=case.id, actor=boss, department_id=dept.id
        )
    handling.accept(**kw, case_id=case.id, actor=officer)
    handling.add_note(**kw, case_id=case.id, actor=officer, note="内部：核对往年材料")
    handling.reply(**kw, case_id=case.id, actor=officer, note="请准备租赁合同和发票。")
    db.flush()
    assert (
        db.scalar(select(Delivery.id).where(Delivery.kind == "case_update", Delivery.enterprise_id == firm.id)) is None
    )


def test_news_of_long_ago_goes_to_the_inbox_at_its_time_and_is_not_sent(db, test_settings) -> None:  # type: ignore[no-untyped-def]
    """Imports and the demo's history replay old replies: the firm's inbox records them, nobody is emailed."""
    import datetime as dt

    firm = factories.make_enterprise(db)
    firm_user = factories.make_user(db, role=Role.enterprise, enterprise_id=firm.id)
    preferences.update_preferences(
        db=db, enterprise_id=firm.id, prefs_in=PreferencesIn(channels=["inbox", "email"], email="boss@firm.example")
    )
    dept = factories.make_department(db)
    officer = principal_for_user(factories.make_user(db, role=Role.desk, department_id=dept.id))
    boss = principal_for_user(factories.make_user(db, role=Role.supervisor))
    past = utcnow() - dt.timedelta(days=20)
    kw: dict[str, Any] = {"db": db, "settings": test_settings, "now": past}
    case = intake.submit_case(
        **kw,
        matcher=None,
        actor=principal_for_user(firm_user),
        case_in=CaseIn(kind="help", content="去年的补贴何时到账？"),
    )
    if case.department_id != dept.id:
        (handling.assign if case.department_id is None else handling.transfer)(
            **kw, case_id=case.id, actor=boss, department_id=dept.id
        )
    handling.accept(**kw, case_id=case.id, actor=officer)
    handling.reply(**kw, case_id=case.id, actor=officer, note="已于上月拨付。")
    db.flush()
    rows = list(db.scalars(select(Delivery).where(Delivery.kind == "case_update", Delivery.enterprise_id == firm.id)))
    assert [r.channel for r in rows] == ["inbox"]
    assert abs((rules.aware(rows[0].created_at) - past).total_seconds()) < 1
