"""The sign-up page verifies the contact phone with a code sent through the real SMS adapter (a local gateway);
a wrong code is refused by the field and counted; the preferences page refuses SMS for an unverified number."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from auth import phone as auth_phone
from auth.models import PhoneCode, User
from tests import factories
from tests.push.test_phone import _client, _code, _settings
from tests.support.receiver import Receiver, running


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running() as server:
        yield server


def _token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found
    return found.group(1)


def test_signup_page_sends_the_code_and_registers_with_a_verified_phone(
    db: Session, database: Any, matcher: Any, test_settings: Any, receiver: Receiver
) -> None:
    settings = _settings(test_settings, receiver)
    form = {
        "name": "中山市启明科技有限公司",
        "credit_code": factories.credit_code(424242),
        "display_name": "陈晓",
        "contact_phone": "13612345678",
        "username": "qiming_2026",
        "password": "Qiming-Signup-2026!",
        "password2": "Qiming-Signup-2026!",
    }
    with _client(settings, database, db, matcher) as client:
        form["csrf_token"] = _token(client.get("/signup").text)
        sent = client.post("/signup/phone-code", data=form)
        assert sent.status_code == 200 and "验证码已发送至 136****5678" in sent.text
        assert (
            'value="中山市启明科技有限公司"' in sent.text and "Qiming-Signup" not in sent.text
        )  # passwords not echoed
        code = _code(receiver, "13612345678")
        wrong = "000000" if code != "000000" else "111111"
        refused = client.post("/signup", data=form | {"phone_code": wrong})
        assert refused.status_code == 422 and "验证码不正确，还可以再试 4 次" in refused.text
        row = db.scalar(select(PhoneCode).where(PhoneCode.phone == "13612345678"))
        assert row is not None and row.attempts == 1
        done = client.post("/signup", data=form | {"phone_code": code}, follow_redirects=False)
        assert done.status_code == 303, done.text
    user = db.scalar(select(User).where(User.username == "qiming_2026"))
    assert user is not None and user.enterprise_id is not None
    assert auth_phone.is_verified(db=db, enterprise_id=user.enterprise_id, phone="13612345678")


def test_signup_code_for_a_landline_is_refused_by_the_phone_field(
    db: Session, database: Any, matcher: Any, test_settings: Any, receiver: Receiver
) -> None:
    with _client(_settings(test_settings, receiver), database, db, matcher) as client:
        token = _token(client.get("/signup").text)
        r = client.post("/signup/phone-code", data={"contact_phone": "0760-88881234", "csrf_token": token})
        assert r.status_code == 422 and "手机号格式不正确" in r.text and 'id="contact_phone-error"' in r.text
    assert not receiver.requests
