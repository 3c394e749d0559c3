"""Targeted push (人工定向): filters, preview = send, exactly once per targeted push, over HTTP with roles."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from auth.models import Role
from core.errors import InvalidState, ValidationFailed
from matcher import feedback as matcher_feedback
from matcher.models import EnterpriseTag
from push import preferences, rules, targeting
from push.models import Delivery, ManualPush
from push.schemas import ManualPushIn, PreferencesIn, TargetFilters
from tests import factories


def _push_in(policy_id: int, channels: list[str] | None = None, **filters: Any) -> ManualPushIn:
    return ManualPushIn(
        policy_id=policy_id, filters=TargetFilters(**filters), channels=channels or ["inbox"], message="请及时申报。"
    )


def _rows(db: Session, manual_push_id: int) -> list[Delivery]:
    return list(
        db.scalars(
            select(Delivery).where(Delivery.dedupe_key == targeting.dedupe_key(manual_push_id)).order_by(Delivery.id)
        )
    )


def _count(db: Session, model: type) -> int:
    return db.scalar(select(func.count()).select_from(model)) or 0


@pytest.fixture
def guangdong(db: Session) -> dict[str, Any]:
    """Five firms in Guangdong with different preferences and one in Shanghai, and a published policy."""
    policy = factories.make_policy(db, publish=True)
    plain = factories.make_enterprise(db, name="中山市甲乙丙科技有限公司")
    emailer = factories.make_enterprise(db, region_code="442000")
    preferences.update_preferences(
        db=db, enterprise_id=emailer.id, prefs_in=PreferencesIn(channels=["inbox", "email"], email="a@firm.cn")
    )
    texter = factories.make_enterprise(db, region_code="440106")
    factories.verify_phone(db, texter.id)
    # SMS and email chosen, but only SMS is part of the push: email stays out of its rows.
    preferences.update_preferences(
        db=db,
        enterprise_id=texter.id,
        prefs_in=PreferencesIn(
            channels=["inbox", "sms", "email"], email="t@firm.cn", quiet_start="00:00", quiet_end="00:00"
        ),
    )
    gone = factories.make_enterprise(db)
    preferences.update_preferences(db=db, enterprise_id=gone.id, prefs_in=PreferencesIn(unsubscribed_all=True))
    bored = factories.make_enterprise(db)
    matcher_feedback.record_feedback(db=db, enterprise_id=bored.id, policy_id=policy.id, action="not_relevant")
    far = factories.make_enterprise(db, region_code="310115")
    return {
        "policy": policy,
        "plain": plain,
        "emailer": emailer,
        "texter": texter,
        "gone": gone,
        "bored": bored,
        "far": far,
    }


def test_preview_writes_nothing_and_its_counts_equal_what_send_creates(db: Session, guangdong) -> None:  # type: ignore[no-untyped-def]
    g = guangdong
    push_in = _push_in(g["policy"].id, ["inbox", "sms"], region_codes=["440000"])
    before = (_count(db, ManualPush), _count(db, Delivery))

    preview = targeting.preview(db=db, push_in=push_in)

    assert (_count(db, ManualPush), _count(db, Delivery)) == before
    assert preview["matched"] == 5  # the Shanghai firm is outside 广东省
    assert preview["enterprises"] == 3
    assert (preview["excluded_unsubscribed"], preview["excluded_not_relevant"]) == (1, 1)
    assert preview["channels"] == {"inbox": 3, "sms": 1}
    assert (preview["deliveries"], preview["over_cap"]) == (4, 0)
    assert len(preview["sample"]) == 3
    assert all("*" in s["name"] for s in preview["sample"])
    assert "中山**" in preview["sample"][0]["name"] and "甲乙丙" not in preview["sample"][0]["name"]

    row, counts = targeting.send(db=db, push_in=push_in, created_by_id=None)

    rows = _rows(db, row.id)
    assert counts["created"] == len(rows) == preview["deliveries"]
    by_channel: dict[str, int] = {}
    for r in rows:
        if r.status != "skipped":
            by_channel[r.channel] = by_channel.get(r.channel, 0) + 1
    assert by_channel == preview["channels"]
    assert {r.enterprise_id for r in rows} == {g["plain"].id, g["emailer"].id, g["texter"].id}
    assert {(r.kind, r.dedupe_key) for r in rows} == {("manual", f"manual-{row.id}")}
    inbox = [r for r in rows if r.channel == "inbox"]
    assert all(r.status == "sent" and r.sent_at is not None for r in inbox)
    assert "请及时申报。" in inbox[0].body and inbox[0].title.startswith("政策推荐：")
    sms = next(r for r in rows if r.channel == "sms")
    assert (sms.enterprise_id, sms.status) == (g["texter"].id, "pending")
    assert row.enterprise_count == 3 and row.channels == ["inbox", "sms"]
    assert row.filters == {"region_codes": ["440000"]}


def test_delivering_the_same_targeted_push_again_creates_nothing_twice(db: Session, guangdong) -> None:  # type: ignore[no-untyped-def]
    g = guangdong
    row, counts = targeting.send(
        db=db, push_in=_push_in(g["policy"].id, ["inbox", "email"], region_codes=["442000"]), created_by_id=None
    )
    first = len(_rows(db, row.id))

    again = targeting.redeliver(db=db, manual_push_id=row.id)

    assert counts["created"] == first == 3  # plain + emailer (inbox, email)
    assert again["created"] == 0
    assert len(_rows(db, row.id)) == first

    # A firm that matches the stored filter later gets the push on re-delivery; nobody gets it twice.
    late = factories.make_enterprise(db)
    later = targeting.redeliver(db=db, manual_push_id=row.id)
    rows = _rows(db, row.id)
    assert later["created"] == 1 and len(rows) == first + 1
    assert len({(r.enterprise_id, r.channel) for r in rows}) == len(rows)
    assert late.id in {r.enterprise_id for r in rows}


def test_a_second_targeted_push_is_a_separate_push(db: Session, guangdong) -> None:  # type: ignore[no-untyped-def]
    g = guangdong
    push_in = _push_in(g["policy"].id, region_codes=["442000"])
    one, _ = targeting.send(db=db, push_in=push_in, created_by_id=None)
    two, counts = targeting.send(db=db, push_in=push_in, created_by_id=None)

    assert one.id != two.id
    assert counts["created"] == len(_rows(db, two.id)) == 2


def test_small_chunks_give_the_same_counts_and_rows(db: Session, guangdong, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    g = guangdong
    push_in = _push_in(g["policy"].id, ["inbox", "email", "sms"], region_codes=["440000"])
    whole = targeting.preview(db=db, push_in=push_in)

    monkeypatch.setattr(targeting, "CHUNK", 2)
    chunked = targeting.preview(db=db, push_in=push_in)
    row, counts = targeting.send(db=db, push_in=push_in, created_by_id=None)

    assert chunked == whole
    assert counts["created"] == whole["deliveries"] == len(_rows(db, row.id)) == 6


def test_weekly_cap_turns_other_channels_into_skipped_rows(db: Session) -> None:
    policy = factories.make_policy(db, publish=True)
    firm = factories.make_enterprise(db)
    preferences.update_preferences(
        db=db,
        enterprise_id=firm.id,
        prefs_in=PreferencesIn(channels=["inbox", "email"], email="cap@firm.cn", weekly_cap=0),
    )
    push_in = _push_in(policy.id, ["inbox", "email"], enterprise_ids=[firm.id])

    preview = targeting.preview(db=db, push_in=push_in)
    row, counts = targeting.send(db=db, push_in=push_in, created_by_id=None)

    assert preview["channels"] == {"inbox": 1, "email": 0}
    assert (preview["over_cap"], preview["deliveries"]) == (1, 2)
    email = next(r for r in _rows(db, row.id) if r.channel == "email")
    assert email.status == "skipped" and email.last_error == rules.OVER_CAP
    assert counts["created"] == 2


def test_industry_size_tag_qualification_and_hand_picked_filters(db: Session) -> None:
    policy = factories.make_policy(db, publish=True)
    qual = factories.make_tag(db, name=f"测试资质{factories.n()}", kind="qualification", synonyms=[])
    tag = factories.make_tag(db)
    maker = factories.make_enterprise(
        db,
        industry_code="C3911",
        qualifications=[{"name": qual.name, "valid_until_on": dt.date.today() + dt.timedelta(days=90)}],
    )
    lapsed = factories.make_enterprise(
        db,
        industry_code="C3912",
        qualifications=[{"name": qual.name, "valid_until_on": dt.date.today() - dt.timedelta(days=1)}],
    )
    shop = factories.make_enterprise(db, industry_code="F5211", employees=3, annual_revenue=50, total_assets=20)
    db.execute(insert(EnterpriseTag), [{"enterprise_id": shop.id, "tag_id": tag.id, "reason": "测试"}])
    assert maker.size_class != shop.size_class

    def matched(**filters: Any) -> set[str]:
        names = {s["name"] for s in targeting.preview(db=db, push_in=_push_in(policy.id, **filters))["sample"]}
        assert len(names) == targeting.preview(db=db, push_in=_push_in(policy.id, **filters))["matched"]
        return names

    masked = {f.id: targeting.mask_firm_name(f.name) for f in (maker, lapsed, shop)}
    assert matched(industry_codes=["C39"]) == {masked[maker.id], masked[lapsed.id]}
    assert matched(industry_codes=["3911"]) == {masked[maker.id]}  # the section letter is optional
    assert matched(industry_codes=["F", "C3912"]) == {masked[shop.id], masked[lapsed.id]}
    assert matched(size_classes=[shop.size_class]) == {masked[shop.id]}
    assert matched(tags=[tag.name]) == {masked[shop.id]}
    assert matched(qualifications=[qual.name]) == {masked[maker.id]}  # an expired qualification does not count
    assert matched(enterprise_ids=[shop.id, maker.id], industry_codes=["C"]) == {masked[maker.id]}


def test_policy_eligible_list_filter_uses_the_matchers_list(db: Session, matcher) -> None:  # type: ignore[no-untyped-def]
    pushed = factories.make_policy(db, publish=True)
    zhongshan_only = factories.make_policy(db, publish=True)
    inside = factories.make_enterprise(db, region_code="442000")
    outside = factories.make_enterprise(db, region_code="440106")
    push_in = _push_in(pushed.id, eligible_for_policy_id=zhongshan_only.id, region_codes=["440000"])

    # The list is the worker's: until it is made, the filter is refused by its field.
    with pytest.raises(ValidationFailed) as pending:
        targeting.preview(db=db, push_in=push_in, matcher=matcher)
    assert [e.code for e in pending.value.errors] == ["list_pending"]
    factories.match(db, matcher)
    preview = targeting.preview(db=db, push_in=push_in, matcher=matcher)
    row, counts = targeting.send(db=db, push_in=push_in, created_by_id=None, matcher=matcher)

    assert preview["matched"] == 1
    assert {r.enterprise_id for r in _rows(db, row.id)} == {inside.id}
    assert outside.id not in {r.enterprise_id for r in _rows(db, row.id)}
    assert row.filters["eligible_for_policy_id"] == zhongshan_only.id


def test_invalid_input_is_refused_with_chinese_reasons_per_field(db: Session) -> None:
    policy = factories.make_policy(db, publish=True)
    draft = factories.make_policy(db)

    with pytest.raises(ValidationFailed) as nothing:
        targeting.preview(db=db, push_in=_push_in(policy.id))
    with pytest.raises(ValidationFailed) as bad:
        targeting.preview(
            db=db,
            push_in=_push_in(
                policy.id,
                region_codes=["12345"],
                industry_codes=["Z99"],
                size_classes=["huge"],
                tags=["没有这个标签"],
                eligible_for_policy_id=policy.id,
                eligible_statuses=["ineligible"],
            ),
        )
    with pytest.raises(ValidationFailed) as channel:
        targeting.preview(db=db, push_in=_push_in(policy.id, ["inbox", "fax"], region_codes=["442000"]))
    with pytest.raises(InvalidState) as unpublished:
        targeting.send(db=db, push_in=_push_in(draft.id, region_codes=["442000"]), created_by_id=None)

    assert nothing.value.code == "push.filters_required" and nothing.value.errors[0].field == "filters"
    fields = {e.field: e.reason for e in bad.value.errors}
    assert set(fields) == {
        "filters.region_codes[0]",
        "filters.industry_codes[0]",
        "filters.size_classes[0]",
        "filters.tags[0]",
        "filters.eligible_statuses",
    }
    assert "格式不正确" in fields["filters.region_codes[0]"] and "标签库" in fields["filters.tags[0]"]
    assert channel.value.errors[0].field == "channels" and "fax" in channel.value.errors[0].reason
    assert unpublished.value.code == "catalog.policy_not_published" and unpublished.value.errors[0].field == "policy_id"
    assert _count(db, ManualPush) == 0


def test_mask_firm_name() -> None:
    assert targeting.mask_firm_name("中山市测试科技有限公司12") == "中山**有限公司12"
    assert targeting.mask_firm_name("华为") == "华*"
    assert targeting.mask_firm_name("小米科技") == "小**技"


# ---------------------------------------------------------------- over HTTP


def test_curator_previews_sends_and_lists_targeted_pushes_over_http(db: Session, client, auth_headers) -> None:  # type: ignore[no-untyped-def]
    policy = factories.make_policy(db, publish=True)
    firms = [factories.make_enterprise(db, region_code="440106") for _ in range(3)]
    curator = auth_headers(Role.curator)
    body = {"policy_id": policy.id, "filters": {"region_codes": ["440100"]}, "note": "走访后定向推送"}

    preview = client.post("/api/v1/push/manual/preview", headers=curator, json=body)
    sent = client.post("/api/v1/push/manual", headers=curator, json=body)
    listed = client.get("/api/v1/push/manual", headers=curator, params={"policy_id": policy.id})

    assert preview.status_code == 200, preview.text
    assert (preview.json()["enterprises"], preview.json()["channels"]) == (3, {"inbox": 3})
    assert sent.status_code == 201, sent.text
    out = sent.json()
    assert out["created"] == 3 and out["enterprise_count"] == 3 and out["note"] == "走访后定向推送"
    assert out["created_by_name"] and out["created_by_id"] is not None
    assert out["deliveries"] == {"sent": 3, "opened": 0, "clicked": 0}
    assert listed.json()["total"] == 1 and listed.json()["items"][0]["id"] == out["id"]
    inbox = {r.enterprise_id for r in _rows(db, out["id"])}
    assert inbox == {f.id for f in firms}


def test_manual_push_roles_and_chinese_errors_over_http(db: Session, client, auth_headers) -> None:  # type: ignore[no-untyped-def]
    policy = factories.make_policy(db, publish=True)
    body = {"policy_id": policy.id, "filters": {"region_codes": ["4420"]}}

    assert client.post("/api/v1/push/manual/preview", json=body).status_code == 401
    for role in (Role.supervisor, Role.desk, Role.enterprise):
        assert client.post("/api/v1/push/manual/preview", headers=auth_headers(role), json=body).status_code == 403
        assert client.post("/api/v1/push/manual", headers=auth_headers(role), json=body).status_code == 403
    refused = client.post("/api/v1/push/manual", headers=auth_headers(Role.admin), json=body)

    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "filters.region_codes[0]"
    assert "6位数字" in refused.json()["errors"][0]["reason"]
    assert _count(db, ManualPush) == 0


def test_preview_says_why_a_channel_reaches_fewer_firms(db: Session, guangdong) -> None:  # type: ignore[no-untyped-def]
    """Issue 14 item 11: 0 for email/SMS came with no reason; now: not chosen, no address, quiet hours, cap."""
    sleepy = factories.make_enterprise(db, region_code="442000")
    factories.verify_phone(db, sleepy.id)
    preferences.update_preferences(
        db=db,
        enterprise_id=sleepy.id,
        prefs_in=PreferencesIn(channels=["inbox", "sms"], phone="13800138000", quiet_start="00:00", quiet_end="23:59"),
    )
    capped = factories.make_enterprise(db, region_code="442000")
    preferences.update_preferences(
        db=db,
        enterprise_id=capped.id,
        prefs_in=PreferencesIn(channels=["inbox", "email"], email="c@firm.cn", weekly_cap=0),
    )
    # texter chose SMS; its phone was later removed (e.g. the contact left): chosen, but no address.
    preferences.get_preferences(db=db, enterprise_id=guangdong["texter"].id).phone = None
    db.flush()
    noon = dt.datetime(2026, 11, 24, 4, 0, tzinfo=dt.UTC)  # 12:00 in 中山
    push_in = _push_in(guangdong["policy"].id, ["inbox", "email", "sms"], region_codes=["440000"])
    preview = targeting.preview(db=db, push_in=push_in, now=noon)
    reasons = preview["reasons"]
    assert set(reasons) == {"email", "sms"}
    # plain and sleepy never chose email; capped chose it but is over its weekly cap.
    assert reasons["email"] == {"not_chosen": 2, "no_address": 0, "over_cap": 1, "quiet_hours": 0}
    # plain, emailer and capped did not choose SMS; texter chose it without a phone; sleepy is in its quiet hours.
    assert reasons["sms"] == {"not_chosen": 3, "no_address": 1, "over_cap": 0, "quiet_hours": 1}
    assert preview["channels"]["email"] == 2 and preview["channels"]["sms"] == 2
