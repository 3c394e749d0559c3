"""Push service: fan-out into the outbox exactly once, the sender against a real local HTTP server,
signed unsubscribe, preferences, subscriptions and the inbox over HTTP."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from auth.models import Role
from core import security
from core.deps import get_db
from core.errors import ValidationFailed, install_error_handlers
from core.netguard import AddressGuard
from matcher import feedback as matcher_feedback
from push import events, fanout, preferences, rules, sender, unsubscribe
from push.channels import WebhookChannel
from push.models import Delivery, PushPreference, Subscription
from push.router import router as push_router
from push.schemas import PreferencesIn, SubscriptionIn
from tests import factories
from tests.support.receiver import Receiver, running

SHANGHAI = dt.timezone(dt.timedelta(hours=8))

# The test receivers listen on 127.0.0.1: admitted through the allow-list, as HUIQI_WEBHOOK_ALLOW_HOSTS would.
LOCAL = AddressGuard("127.0.0.1/32")


# ---------------------------------------------------------------- a real local HTTP server


@pytest.fixture
def http_server() -> Iterator[Receiver]:
    with running() as server:
        yield server


@pytest.fixture
def webhook() -> Iterator[WebhookChannel]:
    with WebhookChannel(timeout=2.0, guard=LOCAL) as channel:
        yield channel


# ---------------------------------------------------------------- helpers


def _outside_firm(db: Session):  # type: ignore[no-untyped-def]
    """A firm in Shenzhen, outside the test policies' region (442000)."""
    return factories.make_enterprise(
        db, region_code="440300", credit_code=factories.credit_code(factories.n() * 31337, region="440300")
    )


def _rows(db: Session, policy_id: int, enterprise_id: int | None = None) -> list[Delivery]:
    q = select(Delivery).where(Delivery.policy_id == policy_id)
    if enterprise_id is not None:
        q = q.where(Delivery.enterprise_id == enterprise_id)
    return list(db.scalars(q.order_by(Delivery.id)))


def _webhook_firm(db: Session, url: str):  # type: ignore[no-untyped-def]
    firm = factories.make_enterprise(db)
    preferences.update_preferences(
        db=db,
        enterprise_id=firm.id,
        prefs_in=PreferencesIn(channels=["inbox", "webhook"], webhook_url=url, webhook_secret="whsec_test"),
        guard=LOCAL,
    )
    return firm


# ---------------------------------------------------------------- fan-out


def test_fan_out_creates_inbox_rows_for_eligible_firms_only_and_only_once(db: Session, matcher) -> None:  # type: ignore[no-untyped-def]
    inside = factories.make_enterprise(db)
    outside = _outside_firm(db)
    policy = factories.make_policy(db, publish=True)

    first = fanout.fan_out_policy(db=db, matcher=matcher, policy_id=policy.id)
    rows = _rows(db, policy.id)
    again = fanout.fan_out_policy(db=db, matcher=matcher, policy_id=policy.id)

    mine = [r for r in rows if r.enterprise_id == inside.id]
    assert [(r.channel, r.status, r.policy_version) for r in mine] == [("inbox", "sent", policy.version)]
    assert not _rows(db, policy.id, outside.id)
    assert first["created"] == len(rows) >= 1
    assert again["created"] == 0
    assert len(_rows(db, policy.id)) == len(rows)


def test_not_relevant_feedback_drops_the_policy_from_the_firms_pushes(db: Session, matcher) -> None:  # type: ignore[no-untyped-def]
    firm = factories.make_enterprise(db)
    policy = factories.make_policy(db, publish=True)
    matcher_feedback.record_feedback(db=db, enterprise_id=firm.id, policy_id=policy.id, action="not_relevant")

    counts = fanout.fan_out_policy(db=db, matcher=matcher, policy_id=policy.id)

    assert not _rows(db, policy.id, firm.id)
    assert counts["skipped_feedback"] >= 1


def test_unsubscribed_firm_gets_nothing(db: Session, matcher, test_settings) -> None:  # type: ignore[no-untyped-def]
    firm = factories.make_enterprise(db)
    token = unsubscribe.unsubscribe_token(settings=test_settings, enterprise_id=firm.id, scope="all")
    unsubscribe.unsubscribe(db=db, settings=test_settings, token=token)
    policy = factories.make_policy(db, publish=True)

    fanout.fan_out_policy(db=db, matcher=matcher, policy_id=policy.id)

    assert not _rows(db, policy.id, firm.id)


def test_sms_is_scheduled_after_quiet_hours(db: Session, matcher) -> None:  # type: ignore[no-untyped-def]
    firm = factories.make_enterprise(db)
    factories.verify_phone(db, firm.id)
    preferences.update_preferences(
        db=db, enterprise_id=firm.id, prefs_in=PreferencesIn(channels=["inbox", "sms", "email"], email="a@b.cn")
    )
    policy = factories.make_policy(db, publish=True)
    late_evening = dt.datetime(2026, 11, 23, 23, 30, tzinfo=SHANGHAI).astimezone(dt.UTC)

    fanout.fan_out_policy(db=db, matcher=matcher, policy_id=policy.id, now=late_evening)

    by_channel = {r.channel: r for r in _rows(db, policy.id, firm.id)}
    assert by_channel["sms"].status == "pending"
    assert by_channel["sms"].next_attempt_at == dt.datetime(2026, 11, 24, 8, 0, tzinfo=SHANGHAI)
    assert by_channel["email"].next_attempt_at == late_evening
    assert by_channel["inbox"].status == "sent"


def test_weekly_cap_records_the_push_as_skipped(db: Session, matcher) -> None:  # type: ignore[no-untyped-def]
    firm = factories.make_enterprise(db, contact_email="boss@example.cn")
    preferences.update_preferences(
        db=db, enterprise_id=firm.id, prefs_in=PreferencesIn(channels=["inbox", "email"], weekly_cap=1)
    )
    first = factories.make_policy(db, publish=True)
    second = factories.make_policy(db, publish=True)

    fanout.fan_out_policy(db=db, matcher=matcher, policy_id=first.id)
    counts = fanout.fan_out_policy(db=db, matcher=matcher, policy_id=second.id)

    assert {r.channel: r.status for r in _rows(db, first.id, firm.id)} == {"inbox": "sent", "email": "pending"}
    capped = {r.channel: r for r in _rows(db, second.id, firm.id)}
    assert capped["inbox"].status == "sent"
    assert (capped["email"].status, capped["email"].last_error) == ("skipped", "超过每周推送上限")
    assert counts["over_cap"] >= 1


def test_daily_digest_waits_for_nine_in_the_morning(test_settings) -> None:  # type: ignore[no-untyped-def]
    noon = dt.datetime(2026, 11, 25, 12, 0, tzinfo=SHANGHAI)  # a Wednesday
    at = {"settings": test_settings}
    assert rules.next_digest_at(noon, "daily", **at) == dt.datetime(2026, 11, 26, 9, 0, tzinfo=SHANGHAI)
    assert rules.next_digest_at(noon, "weekly", **at) == dt.datetime(2026, 11, 30, 9, 0, tzinfo=SHANGHAI)
    assert rules.next_digest_at(noon, "instant", **at) == noon


# ---------------------------------------------------------------- the sender against a real server


def _pending_webhook_row(db: Session, matcher, url: str) -> Delivery:  # type: ignore[no-untyped-def]
    firm = _webhook_firm(db, url)
    policy = factories.make_policy(db, publish=True)
    fanout.fan_out_policy(db=db, matcher=matcher, policy_id=policy.id)
    (row,) = [r for r in _rows(db, policy.id, firm.id) if r.channel == "webhook"]
    return row


def test_send_due_delivers_through_a_real_webhook(db: Session, matcher, test_settings, http_server, webhook) -> None:  # type: ignore[no-untyped-def]
    row = _pending_webhook_row(db, matcher, http_server.url("/ok"))

    counts = sender.send_due(db=db, channels={"webhook": webhook}, settings=test_settings)

    assert counts["sent"] >= 1
    assert (row.status, row.attempts, row.last_error) == ("sent", 1, None)
    assert row.sent_at is not None
    (path, headers, body) = next(r for r in http_server.requests if r.headers.get("x-huiqi-delivery") == f"d{row.id}")
    assert headers["x-huiqi-signature"].startswith("sha256=")
    # The link is tracked: following it records the click and lands on the policy.
    link = json.loads(body)["url"]
    assert "/api/v1/push/r/" in link
    landing = events.record_click(db=db, settings=test_settings, token=link.rsplit("/", 1)[1])
    assert landing.endswith(f"/policies/{row.policy_id}")
    assert row.clicked_at is not None


def test_server_error_is_retried_later_with_backoff(db: Session, matcher, test_settings, http_server, webhook) -> None:  # type: ignore[no-untyped-def]
    row = _pending_webhook_row(db, matcher, http_server.url("/status/500"))
    now = dt.datetime.now(dt.UTC)

    sender.send_due(db=db, channels={"webhook": webhook}, settings=test_settings, now=now)

    assert (row.status, row.attempts) == ("failed", 1)
    assert "HTTP 500" in (row.last_error or "")
    assert now + dt.timedelta(seconds=26) <= row.next_attempt_at <= now + dt.timedelta(seconds=34)


def test_client_error_is_dead_at_once(db: Session, matcher, test_settings, http_server, webhook) -> None:  # type: ignore[no-untyped-def]
    row = _pending_webhook_row(db, matcher, http_server.url("/status/400"))

    sender.send_due(db=db, channels={"webhook": webhook}, settings=test_settings)

    assert (row.status, row.attempts) == ("dead", 1)
    assert "HTTP 400" in (row.last_error or "")


def test_unconfigured_channel_fails_with_a_chinese_reason(db: Session, matcher, test_settings) -> None:  # type: ignore[no-untyped-def]
    firm = factories.make_enterprise(db)
    factories.verify_phone(db, firm.id)
    preferences.update_preferences(db=db, enterprise_id=firm.id, prefs_in=PreferencesIn(channels=["inbox", "sms"]))
    policy = factories.make_policy(db, publish=True)
    noon = dt.datetime(2026, 11, 25, 12, 0, tzinfo=SHANGHAI).astimezone(dt.UTC)
    fanout.fan_out_policy(db=db, matcher=matcher, policy_id=policy.id, now=noon)

    sender.send_due(db=db, channels={}, settings=test_settings, now=noon)

    (row,) = [r for r in _rows(db, policy.id, firm.id) if r.channel == "sms"]
    assert (row.status, row.last_error) == ("dead", "短信网关未配置，无法发送短信")


# ---------------------------------------------------------------- unsubscribe


def test_unsubscribe_token_round_trips_and_a_tampered_one_is_refused(test_settings) -> None:  # type: ignore[no-untyped-def]
    token = unsubscribe.unsubscribe_token(settings=test_settings, enterprise_id=7, scope="sub:3")

    assert unsubscribe.verify_unsubscribe_token(settings=test_settings, token=token) == (7, "sub:3")
    assert unsubscribe.verify_unsubscribe_token(settings=test_settings, token=token.replace(".7.", ".8.", 1)) is None
    assert unsubscribe.verify_unsubscribe_token(settings=test_settings, token=token.replace("sub:3", "all")) is None
    assert (
        unsubscribe.verify_unsubscribe_token(
            settings=test_settings, token=token[:-1] + ("0" if token[-1] != "0" else "1")
        )
        is None
    )
    assert unsubscribe.verify_unsubscribe_token(settings=test_settings, token="garbage") is None


def test_unsubscribe_from_one_subscription_deactivates_only_it(db: Session, test_settings) -> None:  # type: ignore[no-untyped-def]
    firm = factories.make_enterprise(db)
    sub = preferences.create_subscription(
        db=db, enterprise_id=firm.id, subscription_in=SubscriptionIn(kind="keyword", value="专精特新")
    )
    token = unsubscribe.unsubscribe_token(settings=test_settings, enterprise_id=firm.id, scope=f"sub:{sub.id}")

    out = unsubscribe.unsubscribe(db=db, settings=test_settings, token=token)

    assert sub.active is False
    assert "专精特新" in out["message"]
    assert preferences.get_preferences(db=db, enterprise_id=firm.id).unsubscribed_all is False


# ---------------------------------------------------------------- preferences and subscriptions


def test_preferences_default_to_inbox_with_profile_contacts(db: Session) -> None:
    firm = factories.make_enterprise(db, contact_email="boss@example.cn")

    pref = preferences.get_preferences(db=db, enterprise_id=firm.id)

    assert (pref.channels, pref.frequency, pref.quiet_start, pref.quiet_end, pref.weekly_cap) == (
        ["inbox"],
        "instant",
        "22:00",
        "08:00",
        10,
    )
    assert (pref.email, pref.phone) == ("boss@example.cn", "13800138000")


def test_preferences_validation_names_fields_in_chinese(db: Session) -> None:
    firm = factories.make_enterprise(db)

    with pytest.raises(ValidationFailed) as caught:
        preferences.update_preferences(
            db=db,
            enterprise_id=firm.id,
            prefs_in=PreferencesIn(
                channels=["inbox", "fax", "webhook"],
                frequency="hourly",
                quiet_start="25:00",
                email="not-an-email",
                webhook_url="ftp://example.cn/hook",
            ),
        )

    reasons = {e.field: e.reason for e in caught.value.errors}
    assert set(reasons) == {"channels", "frequency", "quiet_start", "email", "webhook_url"}
    assert "fax" in reasons["channels"] and "不支持" in reasons["channels"]
    assert reasons["quiet_start"].startswith("时间格式应为 HH:MM")
    assert reasons["email"] == "邮箱地址格式不正确"


def test_webhook_without_secret_gets_a_generated_one(db: Session) -> None:
    firm = factories.make_enterprise(db)

    pref = preferences.update_preferences(
        db=db,
        enterprise_id=firm.id,
        prefs_in=PreferencesIn(channels=["webhook"], webhook_url="https://example.cn/hook"),
    )

    assert pref.channels == ["inbox", "webhook"]
    assert (pref.webhook_secret or "").startswith("whsec_")


def test_subscription_validation(db: Session) -> None:
    firm = factories.make_enterprise(db)
    category = factories.make_category(db)

    ok = preferences.create_subscription(
        db=db, enterprise_id=firm.id, subscription_in=SubscriptionIn(kind="category", value=category.code)
    )
    with pytest.raises(ValidationFailed):
        preferences.create_subscription(
            db=db, enterprise_id=firm.id, subscription_in=SubscriptionIn(kind="category", value="nope")
        )
    with pytest.raises(ValidationFailed):
        preferences.create_subscription(
            db=db, enterprise_id=firm.id, subscription_in=SubscriptionIn(kind="keyword", value="专")
        )

    assert ok.active and ok.value == category.code


# ---------------------------------------------------------------- over HTTP


@pytest.fixture
def push_client(test_settings, database, db: Session, matcher) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """The push router on a small app wired to the test session (until api.app includes it)."""
    app = FastAPI()
    app.state.settings = test_settings
    app.state.db = database
    app.state.matcher = matcher
    install_error_handlers(app)
    app.include_router(push_router, prefix="/api/v1")

    def _test_db() -> Iterator[Session]:
        db.commit()
        try:
            yield db
            db.commit()
        except BaseException:
            db.rollback()
            raise

    app.dependency_overrides[get_db] = _test_db
    with TestClient(app) as client:
        yield client


def _firm_headers(db: Session, test_settings, enterprise_id: int) -> dict[str, str]:  # type: ignore[no-untyped-def]
    user = factories.make_user(db, role=Role.enterprise, enterprise_id=enterprise_id)
    token = security.create_access_token(settings=test_settings, subject=str(user.id))
    return {"Authorization": f"Bearer {token}"}


def test_inbox_lists_counts_unread_and_marks_read(db: Session, matcher, test_settings, push_client) -> None:  # type: ignore[no-untyped-def]
    firm = factories.make_enterprise(db)
    headers = _firm_headers(db, test_settings, firm.id)
    for _ in range(2):
        fanout.fan_out_policy(db=db, matcher=matcher, policy_id=factories.make_policy(db, publish=True).id)

    page = push_client.get("/api/v1/inbox", headers=headers).json()
    assert (page["total"], page["unread"]) == (2, 2)
    assert page["items"][0]["title"].startswith("新政策匹配：")

    marked = push_client.post("/api/v1/inbox/read", headers=headers, json={"ids": [page["items"][0]["id"]]}).json()
    assert marked == {"updated": 1, "unread": 1}
    unread = push_client.get("/api/v1/inbox", headers=headers, params={"unread_only": True}).json()
    assert [i["id"] for i in unread["items"]] == [page["items"][1]["id"]]

    assert push_client.post("/api/v1/inbox/read", headers=headers, json={"all": True}).json() == {
        "updated": 1,
        "unread": 0,
    }


def test_inbox_requires_a_signed_in_firm(push_client) -> None:  # type: ignore[no-untyped-def]
    assert push_client.get("/api/v1/inbox").status_code == 401


def test_preferences_errors_come_back_in_chinese_over_http(db: Session, test_settings, push_client) -> None:  # type: ignore[no-untyped-def]
    firm = factories.make_enterprise(db)
    headers = _firm_headers(db, test_settings, firm.id)

    response = push_client.put(
        "/api/v1/push/preferences", headers=headers, json={"frequency": "hourly", "quiet_end": "8点"}
    )

    assert response.status_code == 422
    reasons = {e["field"]: e["reason"] for e in response.json()["errors"]}
    assert reasons["frequency"].startswith("推送频率应为")
    assert reasons["quiet_end"].startswith("时间格式应为")
    saved = push_client.put("/api/v1/push/preferences", headers=headers, json={"frequency": "daily"})
    assert saved.status_code == 200 and saved.json()["frequency"] == "daily"
    assert push_client.get("/api/v1/push/preferences", headers=headers).json()["frequency"] == "daily"


def test_another_firms_subscription_is_not_found(db: Session, test_settings, push_client) -> None:  # type: ignore[no-untyped-def]
    owner = factories.make_enterprise(db)
    other = factories.make_enterprise(db)
    created = push_client.post(
        "/api/v1/push/subscriptions",
        headers=_firm_headers(db, test_settings, owner.id),
        json={"kind": "keyword", "value": "研发费用"},
    )
    assert created.status_code == 201

    response = push_client.delete(
        f"/api/v1/push/subscriptions/{created.json()['id']}", headers=_firm_headers(db, test_settings, other.id)
    )

    assert response.status_code == 404
    assert db.get(Subscription, created.json()["id"]) is not None


def test_one_click_unsubscribe_link_works_without_sign_in(db: Session, test_settings, push_client) -> None:  # type: ignore[no-untyped-def]
    firm = factories.make_enterprise(db)
    token = unsubscribe.unsubscribe_token(settings=test_settings, enterprise_id=firm.id, scope="all")

    response = push_client.post("/api/v1/push/unsubscribe", params={"token": token})
    tampered = push_client.post("/api/v1/push/unsubscribe", params={"token": token[:-2] + "00"})

    assert response.status_code == 200 and "已退订" in response.json()["message"]
    assert db.get(PushPreference, firm.id).unsubscribed_all is True
    assert tampered.status_code == 422 and tampered.json()["code"] == "push.invalid_unsubscribe_token"


def test_opening_an_unsubscribe_link_only_asks_for_confirmation(db: Session, test_settings, push_client) -> None:  # type: ignore[no-untyped-def]
    """Link scanners fetch links with GET: that must not unsubscribe; the page's button (a POST) does."""
    firm = factories.make_enterprise(db)
    url = unsubscribe.unsubscribe_url(settings=test_settings, enterprise_id=firm.id, scope="all")
    for _ in range(3):  # a scanner, a preview, the person
        page = push_client.get(url, headers={"Accept": "text/html"})
        assert page.status_code == 200 and "确认退订" in page.text and "全部政策推送" in page.text
    pref = db.get(PushPreference, firm.id)
    assert pref is None or pref.unsubscribed_all is False
    action = re.search(r'<form method="post" action="([^"]+)"', page.text).group(1)
    assert html.unescape(action) == url
    done = push_client.post(
        html.unescape(action), data={"List-Unsubscribe": "One-Click"}, headers={"Accept": "text/html"}
    )
    assert done.status_code == 200 and "已退订" in done.text and done.headers["content-type"].startswith("text/html")
    assert db.get(PushPreference, firm.id).unsubscribed_all is True
    bad = push_client.get(url[:-2] + "00")
    assert bad.status_code == 422 and "退订链接无效" in bad.text


def test_rfc8058_one_click_post_from_a_mail_client(db: Session, test_settings, push_client) -> None:  # type: ignore[no-untyped-def]
    from push.channels import EmailRecipient, render_email
    from tests.push.test_channels import SENDER, make_message

    firm = factories.make_enterprise(db)
    sub = preferences.create_subscription(
        db=db, enterprise_id=firm.id, subscription_in=SubscriptionIn(kind="keyword", value="研发费用")
    )
    url = unsubscribe.unsubscribe_url(
        settings=test_settings, enterprise_id=firm.id, scope=f"sub:{sub.id}", base_url="https://huiqi.example"
    )
    mail = render_email(make_message(unsubscribe_url=url), sender=SENDER, to=EmailRecipient("boss@firm.example"))
    assert mail["List-Unsubscribe"] == f"<{url}>" and mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    path = url.removeprefix("https://huiqi.example")
    assert "研发费用" in push_client.get(path).text and db.get(Subscription, sub.id).active  # GET: unchanged
    r = push_client.post(
        path, content=b"List-Unsubscribe=One-Click", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 200 and "研发费用" in r.json()["message"]
    assert db.get(Subscription, sub.id).active is False


def test_curator_can_push_a_policy_now(db: Session, test_settings, push_client, matcher) -> None:  # type: ignore[no-untyped-def]
    firm = factories.make_enterprise(db)
    policy = factories.make_policy(db, publish=True)
    curator = factories.make_user(db, role=Role.curator)
    headers = {
        "Authorization": f"Bearer {security.create_access_token(settings=test_settings, subject=str(curator.id))}"
    }

    first = push_client.post(f"/api/v1/policies/{policy.id}/push", headers=headers)
    again = push_client.post(f"/api/v1/policies/{policy.id}/push", headers=headers)

    assert first.status_code == 200 and first.json()["created"] >= 1
    assert again.json()["created"] == 0
    assert _rows(db, policy.id, firm.id)


# ---------------------------------------------------------------- jobs


def test_jobs_register_the_sender_and_accept_an_enqueued_fan_out(db: Session) -> None:
    from core import scheduler
    from push import jobs

    spec = scheduler.registry.get("push.send_due")
    job_id = scheduler.enqueue("push.jobs:fan_out_job", db=db, kwargs={"policy_id": 1}, job_id="fanout-1-v1")

    assert spec is not None and spec.func_ref == "push.jobs:send_due_job"
    assert job_id.endswith("fanout-1-v1")
    assert callable(jobs.send_due_job)


def test_build_channels_leaves_out_what_is_not_configured(test_settings) -> None:  # type: ignore[no-untyped-def]
    from push import jobs

    channels, closers = jobs.build_channels(test_settings)
    for closer in closers:
        closer.close()

    assert set(channels) == {"webhook"}


RD_RULE = {
    "all": [
        {"field": "region_code", "op": "within_region", "value": ["442000"]},
        {"field": "rd_ratio", "op": "gte", "value": 5},
    ]
}


def test_likely_firms_are_pushed_only_when_they_follow_the_policys_category(db: Session, matcher) -> None:  # type: ignore[no-untyped-def]
    category = factories.make_category(db)
    follower = factories.make_enterprise(db, rd_expense=None)
    bystander = factories.make_enterprise(db, rd_expense=None)
    sub = preferences.create_subscription(
        db=db, enterprise_id=follower.id, subscription_in=SubscriptionIn(kind="category", value=category.code)
    )
    policy = factories.make_policy(db, publish=True, rules=RD_RULE, category=category)

    fanout.fan_out_policy(db=db, matcher=matcher, policy_id=policy.id)

    (row,) = _rows(db, policy.id, follower.id)
    assert (row.payload["match_status"], row.payload["subscription_id"]) == ("likely", sub.id)
    assert "可能符合" in row.body
    assert not _rows(db, policy.id, bystander.id)


def test_not_relevant_after_the_decision_skips_the_pending_send(db: Session, matcher, test_settings, webhook) -> None:  # type: ignore[no-untyped-def]
    row = _pending_webhook_row(db, matcher, "http://127.0.0.1:9/never")
    matcher_feedback.record_feedback(
        db=db, enterprise_id=row.enterprise_id, policy_id=row.policy_id, action="not_relevant"
    )

    sender.send_due(db=db, channels={"webhook": webhook}, settings=test_settings)

    assert (row.status, row.attempts, row.last_error) == ("skipped", 0, "企业已反馈该政策不相关")


def test_a_new_version_is_not_news_to_firms_already_told(db: Session, matcher) -> None:  # type: ignore[no-untyped-def]
    from catalog import service as catalog_service
    from catalog.schemas import PolicyUpdate

    told = factories.make_enterprise(db)
    policy = factories.make_policy(db, publish=True)
    fanout.fan_out_policy(db=db, matcher=matcher, policy_id=policy.id)
    newcomer = factories.make_enterprise(db)
    catalog_service.update_policy(
        db=db, policy_id=policy.id, policy_in=PolicyUpdate(summary="修订后的扶持内容说明。", note="修订"), actor=None
    )
    assert policy.version == 2

    counts = fanout.fan_out_policy(db=db, matcher=matcher, policy_id=policy.id)

    assert [r.policy_version for r in _rows(db, policy.id, told.id)] == [1]
    assert [r.policy_version for r in _rows(db, policy.id, newcomer.id)] == [2]
    assert counts["skipped_already_told"] >= 1
