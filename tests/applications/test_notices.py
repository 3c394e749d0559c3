"""The firm's notices of its applications and 免申即享 payouts go the real push path: inbox at once, and
its chosen channels (here email) through the outbox, delivered by the outbox's own sender to a real
local SMTP server, with the link to its applications; the firm is not told of what it did itself."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from applications import exempt, service
from applications.models import ExemptEntry, ExemptRoster
from auth.models import Role
from auth.service import principal_for_user
from core.db import utcnow
from push import preferences, sender
from push.channels import EmailChannel
from push.models import Delivery
from push.schemas import PreferencesIn
from tests import factories
from tests.support.mailbox import Mailbox, smtp_server


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    with smtp_server() as served:
        yield served


def test_application_and_payout_notices_are_emailed_by_the_outbox(db, test_settings, smtp) -> None:  # type: ignore[no-untyped-def]
    dept = factories.make_department(db)
    policy = factories.make_policy(db, department=dept, publish=True, announce=False)
    free = factories.make_policy(db, department=dept, policy_type="exempt", publish=True, announce=False)
    firm = factories.make_enterprise(db)
    firm_user = principal_for_user(factories.make_user(db, role=Role.enterprise, enterprise_id=firm.id))
    officer = principal_for_user(factories.make_user(db, role=Role.desk, department_id=dept.id))
    preferences.update_preferences(
        db=db, enterprise_id=firm.id, prefs_in=PreferencesIn(channels=["inbox", "email"], email="cfo@firm.example")
    )

    app = service.apply(db=db, actor=firm_user, policy_id=policy.id)
    service.set_status(db=db, actor=officer, app=app, status="accepted")
    service.set_status(db=db, actor=officer, app=app, status="rejected", reason="研发投入占比不足")
    roster = ExemptRoster(policy_id=free.id, frozen_on=utcnow().date(), policy_version=1, created_by_name="测试")
    db.add(roster)
    db.flush()
    entry = ExemptEntry(
        roster_id=roster.id, enterprise_id=firm.id, policy_id=free.id, status="confirmed", match_status="eligible"
    )
    db.add(entry)
    db.flush()
    exempt.pay_entry(db, entry, officer, 2.5, None)
    db.flush()

    rows = list(db.scalars(select(Delivery).where(Delivery.enterprise_id == firm.id).order_by(Delivery.id)))
    assert sorted({(r.kind, r.channel) for r in rows}) == [
        ("application", "email"),
        ("application", "inbox"),
        ("exempt_payout", "email"),
        ("exempt_payout", "inbox"),
    ]
    inbox = [r for r in rows if r.channel == "inbox"]
    assert [r.title for r in inbox] == [
        f"申报已受理：{policy.title}",
        f"申报未通过：{policy.title}",
        f"已为您兑现 2.5 万元：{free.title}",
    ]
    assert "原因：研发投入占比不足" in inbox[1].body

    handler, port = smtp
    channel = EmailChannel(host="127.0.0.1", port=port, sender="惠企服务 <noreply@huiqi.example>", timeout=5)
    counts = sender.send_due(db=db, channels={"email": channel}, settings=test_settings, now=utcnow())
    assert counts.get("sent", 0) == 3, counts
    messages = [email.message_from_bytes(e.content, policy=email.policy.default) for e in handler.envelopes]
    subjects = sorted(str(m["subject"]) for m in messages)
    assert any("已为您兑现 2.5 万元" in s for s in subjects)
    bodies = [m.get_body(("plain",)).get_content() for m in messages]
    assert all("/me/applications" in b for b in bodies)
    assert all(e.rcpt_tos == ["cfo@firm.example"] for e in handler.envelopes)
    assert {r.status for r in db.scalars(select(Delivery).where(Delivery.enterprise_id == firm.id))} == {"sent"}
