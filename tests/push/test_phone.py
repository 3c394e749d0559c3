"""Verified phones: one-time codes through the real SMS adapter (a local HTTP gateway), expiry, the attempt
limit, rate limits, no SMS to an unverified number, and a changed number losing its verification."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.app import create_app
from auth import phone as auth_phone
from auth.models import PhoneCode, Role, User, VerifiedPhone
from core import security
from core.db import InSession, utcnow
from core.deps import get_database, get_db
from core.errors import ValidationFailed
from profiles import service as profiles_service
from profiles.schemas import EnterpriseUpdate
from push import preferences, sender
from push.channels import SmsChannel, WebhookChannel
from push.models import Delivery, PushPreference
from push.schemas import PreferencesIn
from tests import factories
from tests.support.receiver import Receiver, running

API = "/api/v1"
SECRET = "sms-gateway-secret-for-tests"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running() as server:
        yield server


def _settings(test_settings: Any, receiver: Receiver, **update: Any) -> Any:
    return test_settings.model_copy(
        update={"sms_gateway_url": receiver.url("/ok"), "sms_gateway_secret": SECRET} | update
    )


def _client(settings: Any, database: Any, db: Session, matcher: Any) -> TestClient:
    """The app with these settings, wired to the test's session like conftest's `app`."""
    application = create_app(settings, database=database, matcher=matcher)

    def _test_db() -> Iterator[Session]:
        db.commit()
        try:
            yield db
            db.commit()
        except BaseException:
            db.rollback()
            raise

    application.dependency_overrides[get_db] = _test_db
    application.dependency_overrides[get_database] = lambda: InSession(db)
    return TestClient(application, raise_server_exceptions=True)


def _code(receiver: Receiver, phone: str) -> str:
    """The code in the last SMS the gateway received for a number."""
    body = [b for b in receiver.bodies() if b["phone"] == phone][-1]
    found = re.search(r"验证码为 (\d{6})", body["text"])
    assert found, body["text"]
    return found.group(1)


def _register(phone: str, code: str | None, n: int) -> dict[str, Any]:
    return {
        "username": f"phone_firm_{n}",
        "password": "Zhongshan-Phone-2026!",
        "display_name": "王芳",
        "enterprise": {
            "credit_code": factories.credit_code(9000 + n),
            "name": f"中山市验证测试有限公司{n}",
            "contact_phone": phone,
        },
        "phone_code": code,
    }


def test_the_signup_code_arrives_through_the_sms_gateway_and_verifies_the_new_firm(
    db: Session, database: Any, matcher: Any, test_settings: Any, receiver: Receiver
) -> None:
    settings = _settings(test_settings, receiver)
    with _client(settings, database, db, matcher) as client:
        sent = client.post(f"{API}/auth/phone-codes", json={"phone": "+86 139-1234-5678"})
        assert sent.status_code == 202, sent.text
        assert sent.json() == {"phone": "139****5678", "expires_in_minutes": 10}
        [request] = receiver.requests
        body = request.json()
        assert body["phone"] == "13912345678" and body["text"].startswith("【惠企】您的验证码为 ")
        assert "10 分钟内有效" in body["text"] and request.headers.get("x-huiqi-signature")
        code = _code(receiver, "13912345678")
        row = db.scalar(select(PhoneCode).where(PhoneCode.phone == "13912345678"))
        assert row is not None and len(row.code_hash) == 64 and code not in row.code_hash  # only the HMAC is kept
        wrong = "000000" if code != "000000" else "111111"
        refused = client.post(f"{API}/auth/register", json=_register("13912345678", wrong, 1))
        assert refused.status_code == 422 and refused.json()["code"] == "auth.phone_code_invalid"
        assert refused.json()["errors"][0]["field"] == "phone_code" and "还可以再试 4 次" in refused.json()["message"]
        assert db.scalar(select(func.count()).select_from(User).where(User.username == "phone_firm_1")) == 0
        db.refresh(row)
        assert row.attempts == 1  # counted although the registration was refused
        ok = client.post(f"{API}/auth/register", json=_register("13912345678", code, 1))
        assert ok.status_code == 201, ok.text
    user = db.scalar(select(User).where(User.username == "phone_firm_1"))
    assert user is not None and user.enterprise_id is not None
    assert auth_phone.is_verified(db=db, enterprise_id=user.enterprise_id, phone="13912345678")
    # The code is spent: registering again with it is refused.
    with pytest.raises(ValidationFailed) as spent:
        auth_phone.check_code(db=db, settings=settings, phone="13912345678", purpose=auth_phone.SIGNUP, code=code)
    assert spent.value.code == "auth.phone_code_missing"


def test_registration_without_a_code_leaves_the_phone_unverified(db: Session, client: TestClient) -> None:
    r = client.post(f"{API}/auth/register", json=_register("13700137000", None, 2))
    assert r.status_code == 201
    user = db.scalar(select(User).where(User.username == "phone_firm_2"))
    assert user is not None and user.enterprise_id is not None
    assert not auth_phone.is_verified(db=db, enterprise_id=user.enterprise_id, phone="13700137000")


def test_codes_expire_and_are_spent_after_five_wrong_tries(db: Session, test_settings: Any) -> None:
    old, code = auth_phone.issue_code(
        db=db, settings=test_settings, phone="13800138000", purpose="firm:1", now=utcnow() - dt.timedelta(minutes=11)
    )
    with pytest.raises(ValidationFailed) as expired:
        auth_phone.check_code(db=db, settings=test_settings, phone="13800138000", purpose="firm:1", code=code)
    assert expired.value.code == "auth.phone_code_expired"
    row, code = auth_phone.issue_code(db=db, settings=test_settings, phone="13800138000", purpose="firm:1")
    assert old.used_at is not None  # a new code voids the earlier one
    wrong = "123456" if code != "123456" else "654321"
    codes = []
    for _ in range(5):
        with pytest.raises(ValidationFailed) as bad:
            auth_phone.check_code(db=db, settings=test_settings, phone="13800138000", purpose="firm:1", code=wrong)
        codes.append(bad.value.code)
    assert codes == ["auth.phone_code_invalid"] * 4 + ["auth.phone_code_attempts"]
    with pytest.raises(ValidationFailed) as locked:  # even the right code no longer works
        auth_phone.check_code(db=db, settings=test_settings, phone="13800138000", purpose="firm:1", code=code)
    assert locked.value.code == "auth.phone_code_attempts" and row.attempts == 5
    # A code asked for one purpose cannot verify another.
    _, other = auth_phone.issue_code(db=db, settings=test_settings, phone="13800138000", purpose="firm:2")
    with pytest.raises(ValidationFailed):
        auth_phone.check_code(db=db, settings=test_settings, phone="13800138000", purpose="firm:1", code=other)


def test_codes_are_six_digits_from_secrets() -> None:
    seen = {auth_phone.new_code() for _ in range(200)}
    assert all(len(c) == 6 and c.isdigit() for c in seen) and len(seen) > 150


def _firm_headers(db: Session, settings: Any, **kw: Any) -> tuple[int, dict[str, str]]:
    user = factories.make_user(db, role=Role.enterprise, **kw)
    assert user.enterprise_id is not None
    token = security.create_access_token(settings=settings, subject=str(user.id))
    return user.enterprise_id, {"Authorization": f"Bearer {token}"}


def test_a_firm_verifies_its_number_before_switching_sms_on_and_wrong_tries_count(
    db: Session, database: Any, matcher: Any, test_settings: Any, receiver: Receiver
) -> None:
    settings = _settings(test_settings, receiver)
    firm_id, headers = _firm_headers(db, settings)
    with _client(settings, database, db, matcher) as client:
        on = client.put(
            f"{API}/push/preferences", json={"channels": ["inbox", "sms"], "phone": "13600136000"}, headers=headers
        )
        assert on.status_code == 422 and on.json()["code"] == "auth.phone_unverified"
        assert on.json()["errors"][0]["field"] == "phone"
        assert (
            client.post(f"{API}/push/preferences/phone-code", json={"phone": "12345"}, headers=headers).status_code
            == 422
        )
        sent = client.post(f"{API}/push/preferences/phone-code", json={"phone": "13600136000"}, headers=headers)
        assert sent.status_code == 202, sent.text
        code = _code(receiver, "13600136000")
        wrong = "000000" if code != "000000" else "111111"
        url = f"{API}/push/preferences/phone-verification"
        answers = [client.post(url, json={"phone": "13600136000", "code": wrong}, headers=headers) for _ in range(5)]
        assert [a.json()["code"] for a in answers] == ["auth.phone_code_invalid"] * 4 + ["auth.phone_code_attempts"]
        late = client.post(url, json={"phone": "13600136000", "code": code}, headers=headers)
        assert late.status_code == 422 and late.json()["code"] == "auth.phone_code_attempts"
        # A fresh code (the number's limit allows 3 per 10 minutes) verifies it.
        assert (
            client.post(
                f"{API}/push/preferences/phone-code", json={"phone": "13600136000"}, headers=headers
            ).status_code
            == 202
        )
        ok = client.post(url, json={"phone": "13600136000", "code": _code(receiver, "13600136000")}, headers=headers)
        assert ok.status_code == 200 and ok.json() == {"phone": "13600136000", "verified": True}
        on = client.put(
            f"{API}/push/preferences", json={"channels": ["inbox", "sms"], "phone": "13600136000"}, headers=headers
        )
        assert on.status_code == 200 and on.json()["phone_verified"] is True and "sms" in on.json()["channels"]
        # Staff cannot ask for codes on a firm's behalf.
        curator = factories.make_user(db, role=Role.curator)
        staff = {"Authorization": f"Bearer {security.create_access_token(settings=settings, subject=str(curator.id))}"}
        assert (
            client.post(f"{API}/push/preferences/phone-code", json={"phone": "13600136000"}, headers=staff).status_code
            == 403
        )
    assert auth_phone.is_verified(db=db, enterprise_id=firm_id, phone="13600136000")


def test_sending_codes_is_limited_per_number_and_per_client(
    db: Session, database: Any, matcher: Any, test_settings: Any, receiver: Receiver
) -> None:
    settings = _settings(
        test_settings, receiver, phone_code_number_limit="2/10 minutes", phone_code_client_limit="4/hour"
    )
    with _client(settings, database, db, matcher) as client:
        url = f"{API}/auth/phone-codes"
        assert [client.post(url, json={"phone": "13500135000"}).status_code for _ in range(2)] == [202, 202]
        third = client.post(url, json={"phone": "13500135000"})
        assert third.status_code == 429 and third.json()["code"] == "auth.phone_code_throttled"
        assert int(third.headers["Retry-After"]) > 0
        # Another number from the same client: the client's 4th request passes, its 5th does not.
        assert client.post(url, json={"phone": "13500135001"}).status_code == 202
        over = client.post(url, json={"phone": "13500135002"})
        assert over.status_code == 429 and "秒后再试" in over.json()["message"]
    assert len(receiver.requests) == 3


def test_no_code_is_kept_when_the_gateway_is_missing_or_refuses(
    db: Session, database: Any, matcher: Any, test_settings: Any, receiver: Receiver
) -> None:
    with _client(test_settings, database, db, matcher) as client:  # no SMS gateway configured
        r = client.post(f"{API}/auth/phone-codes", json={"phone": "13300133000"})
        assert r.status_code == 409 and r.json()["code"] == "push.sms_unavailable"
    refusing = _settings(test_settings, receiver, sms_gateway_url=receiver.url("/status/400"))
    with _client(refusing, database, db, matcher) as client:
        r = client.post(f"{API}/auth/phone-codes", json={"phone": "13300133000"})
        assert r.status_code == 503 and r.json()["code"] == "push.sms_send_failed"
    assert db.scalar(select(func.count()).select_from(PhoneCode).where(PhoneCode.phone == "13300133000")) == 0


def _sms_row(db: Session, enterprise_id: int, key: str) -> Delivery:
    row = Delivery(
        enterprise_id=enterprise_id,
        kind="manual",
        dedupe_key=key,
        channel="sms",
        title="惠企政策申报提醒",
        body="请及时申报",
        url="",
    )
    db.add(row)
    db.flush()
    return row


def test_the_sender_sends_no_sms_to_an_unverified_number_and_says_why(
    db: Session, test_settings: Any, receiver: Receiver
) -> None:
    firm = factories.make_enterprise(db)
    # Preferences saved before verification existed: SMS on, number never verified.
    db.add(
        PushPreference(
            enterprise_id=firm.id,
            channels=["inbox", "sms"],
            phone="13800138000",
            quiet_start="00:00",
            quiet_end="00:00",
        )
    )
    db.flush()
    row = _sms_row(db, firm.id, "m1")
    with WebhookChannel(timeout=2.0) as webhook:
        gateway = SmsChannel(gateway_url=receiver.url("/ok"), secret=SECRET, webhook=webhook)
        counts = sender.send_due(db=db, channels={"sms": gateway}, settings=test_settings)
        assert counts["skipped"] == 1 and row.status == "skipped" and row.last_error == sender.UNVERIFIED_PHONE
        assert not receiver.requests
        factories.verify_phone(db, firm.id, "13800138000")
        again = _sms_row(db, firm.id, "m2")
        sender.send_due(db=db, channels={"sms": gateway}, settings=test_settings)
    assert again.status == "sent" and [b["phone"] for b in receiver.bodies()] == ["13800138000"]


def test_changing_the_number_clears_its_verification(db: Session) -> None:
    firm = factories.make_enterprise(db, contact_phone="13800138000")
    factories.verify_phone(db, firm.id, "13800138000")
    preferences.update_preferences(db=db, enterprise_id=firm.id, prefs_in=PreferencesIn(channels=["inbox", "sms"]))
    assert preferences.phone_verified(db=db, prefs=preferences.get_preferences(db=db, enterprise_id=firm.id))
    with pytest.raises(ValidationFailed) as refused:  # SMS stays on only for a verified number
        preferences.update_preferences(db=db, enterprise_id=firm.id, prefs_in=PreferencesIn(phone="13912345678"))
    assert refused.value.code == "auth.phone_unverified"
    prefs = preferences.update_preferences(
        db=db, enterprise_id=firm.id, prefs_in=PreferencesIn(channels=["inbox"], phone="13912345678")
    )
    assert not preferences.phone_verified(db=db, prefs=prefs)
    assert not auth_phone.is_verified(db=db, enterprise_id=firm.id, phone="13800138000")  # the old one is cleared
    # Unsubscribing never needs a verified number.
    preferences.update_preferences(db=db, enterprise_id=firm.id, prefs_in=PreferencesIn(unsubscribed_all=True))
    # The profile's contact number likewise.
    other = factories.make_enterprise(db, contact_phone="13700137000")
    factories.verify_phone(db, other.id, "13700137000")
    actor = factories.make_user(db, role=Role.curator)
    from auth.service import principal_for_user

    profiles_service.update_enterprise(
        db=db,
        enterprise_id=other.id,
        enterprise_in=EnterpriseUpdate(contact_phone="13700137001"),
        actor=principal_for_user(actor),
    )
    assert (
        db.scalar(select(func.count()).select_from(VerifiedPhone).where(VerifiedPhone.enterprise_id == other.id)) == 0
    )
