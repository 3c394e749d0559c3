"""Send one-time phone codes through the SMS adapter, and verify a firm's number for its push preferences.

The code itself lives in auth.phone (stored hashed, expiring, attempt-limited); this module sends it
through the configured SMS gateway at once (a code is not an outbox delivery: it goes to a number that is
not verified yet) and records a firm's verified number. Sending is rate-limited per number and per client.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from auth import phone as auth_phone
from auth.throttle import PhoneCodeThrottle
from core.config import Settings
from core.errors import FieldError, InvalidState, ServiceUnavailable, ValidationFailed
from core.netguard import AddressGuard
from core.text import mask_phone
from push.channels import SmsChannel, WebhookChannel, normalize_phone

log = logging.getLogger(__name__)


def mobile(phone: str | None, *, field: str = "phone") -> str:
    """Return a mainland mobile number as 11 digits, or raise naming `field`."""
    number = normalize_phone(phone or "")
    if number is None:
        raise ValidationFailed(errors=[FieldError(field, "手机号格式不正确（应为 11 位大陆手机号）", "invalid")])
    return number


def send_code(
    *,
    db: Session,
    settings: Settings,
    throttle: PhoneCodeThrottle,
    phone: str | None,
    purpose: str,
    client: str,
    field: str = "phone",
    channel: SmsChannel | None = None,
) -> str:
    """Make a code for the number and send it by SMS; return the normalised number.

    Refused (429) past HUIQI_PHONE_CODE_NUMBER_LIMIT / HUIQI_PHONE_CODE_CLIENT_LIMIT; 409 when no SMS gateway
    is configured; 503 when the gateway does not accept the message (the code is then not kept).
    """
    number = mobile(phone, field=field)
    throttle.attempt(phone=number, client=client)
    own = channel is None
    if channel is None:
        if not (settings.sms_gateway_url and settings.sms_gateway_secret):
            # A deployment choice, not an outage: refused like any action the site's state does not allow.
            raise InvalidState("短信服务未开通，暂时无法发送验证码", code="push.sms_unavailable")
        webhook = WebhookChannel(timeout=settings.webhook_timeout, guard=AddressGuard(settings.webhook_allow_hosts))
        channel = SmsChannel(gateway_url=settings.sms_gateway_url, secret=settings.sms_gateway_secret, webhook=webhook)
    try:
        row, code = auth_phone.issue_code(db=db, settings=settings, phone=number, purpose=purpose)
        result = channel.send_code(phone=number, code=code, minutes=settings.phone_code_minutes, key=f"otp{row.id}")
    finally:
        if own:
            channel.webhook.close()
    if not result.ok:
        log.warning("phone code to %s not sent: %s", mask_phone(number), result.detail)
        raise ServiceUnavailable("验证码短信发送失败，请稍后再试", code="push.sms_send_failed")
    return number


def verify_firm_phone(
    *, db: Session, settings: Settings, enterprise_id: int, phone: str | None, code: str | None, user_id: int | None
) -> str:
    """Check a code a firm asked for on its preferences and record the number as verified; return it.

    A wrong code raises auth.phone.PhoneCodeRejected with the attempt counted in the session: commit it
    (auth.phone.commit_then_raise) before the error leaves the request.
    """
    number = mobile(phone)
    auth_phone.check_code(
        db=db, settings=settings, phone=number, purpose=auth_phone.firm_purpose(enterprise_id), code=code
    )
    auth_phone.mark_verified(db=db, enterprise_id=enterprise_id, phone=number, user_id=user_id)
    return number
