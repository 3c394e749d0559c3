"""Delivery log, statistics per day / channel / policy, the per-policy funnel, tracked links and the
engagement events recorded by the policy page and the calculator."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from auth.models import Role
from core.errors import ValidationFailed
from matcher import feedback as matcher_feedback
from push import events, stats
from push import outbox as push_outbox
from push.models import Delivery, PolicyEvent
from tests import factories

UTC = dt.UTC


def _row(enterprise_id: int, policy_id: int | None, **kw: Any) -> dict[str, Any]:
    at = kw.pop("created_at", dt.datetime(2026, 11, 20, 2, 0, tzinfo=UTC))
    return {
        "enterprise_id": enterprise_id,
        "policy_id": policy_id,
        "policy_version": 1,
        "kind": "new_match",
        "dedupe_key": "",
        "channel": "inbox",
        "status": "sent",
        "attempts": 0,
        "next_attempt_at": at,
        "last_error": None,
        "title": "测试推送",
        "body": "正文",
        "url": f"/policies/{policy_id}",
        "payload": {},
        "created_at": at,
        "sent_at": at,
        "read_at": None,
        "clicked_at": None,
    } | kw


def _insert(db: Session, rows: list[dict[str, Any]]) -> None:
    assert push_outbox.insert_deliveries(db=db, rows=rows) == len(rows)


def _events(db: Session, kind: str) -> list[PolicyEvent]:
    return list(db.scalars(select(PolicyEvent).where(PolicyEvent.kind == kind).order_by(PolicyEvent.id)))


@pytest.fixture
def outbox(db: Session) -> dict[str, Any]:
    """Two policies, three firms, rows over two local days and four channels in every state."""
    p1 = factories.make_policy(db, publish=True)
    p2 = factories.make_policy(db, publish=True)
    a, b, c = (factories.make_enterprise(db) for _ in range(3))
    late_evening = dt.datetime(2026, 11, 20, 15, 30, tzinfo=UTC)  # 23:30 on the 20th in Shanghai
    after_midnight = dt.datetime(2026, 11, 20, 16, 30, tzinfo=UTC)  # 00:30 on the 21st in Shanghai
    opened = dt.datetime(2026, 11, 21, 1, 0, tzinfo=UTC)
    _insert(
        db,
        [
            _row(a.id, p1.id, created_at=late_evening, read_at=opened, clicked_at=opened),
            _row(a.id, p1.id, created_at=late_evening, channel="email", read_at=opened),
            _row(b.id, p1.id, created_at=late_evening),
            _row(b.id, p1.id, created_at=late_evening, channel="sms", status="failed", sent_at=None, attempts=2),
            _row(c.id, p1.id, created_at=after_midnight, channel="webhook", status="dead", sent_at=None, attempts=12),
            _row(c.id, p2.id, created_at=after_midnight, kind="manual", dedupe_key="manual-1"),
            _row(
                c.id,
                p2.id,
                created_at=after_midnight,
                kind="manual",
                dedupe_key="manual-1",
                channel="email",
                status="pending",
                sent_at=None,
            ),
            _row(
                a.id,
                None,
                created_at=after_midnight,
                kind="digest",
                dedupe_key="2026-11-21",
                status="skipped",
                sent_at=None,
                channel="email",
            ),
        ],
    )
    return {"p1": p1, "p2": p2, "a": a, "b": b, "c": c}


def test_stats_per_local_day_channel_and_policy(db: Session, outbox) -> None:  # type: ignore[no-untyped-def]
    o = outbox
    nothing = stats.DeliveryFilters()

    by_day = stats.delivery_stats(db=db, filters=nothing, group_by="day")
    by_channel = stats.delivery_stats(db=db, filters=nothing, group_by="channel")
    by_policy = stats.delivery_stats(db=db, filters=nothing, group_by="policy")

    days = {r["key"]: r for r in by_day["rows"]}
    assert set(days) == {"2026-11-20", "2026-11-21"}  # Shanghai days, not UTC ones
    assert (days["2026-11-20"]["total"], days["2026-11-20"]["sent"], days["2026-11-20"]["failed"]) == (4, 3, 1)
    assert (days["2026-11-21"]["dead"], days["2026-11-21"]["pending"], days["2026-11-21"]["skipped"]) == (1, 1, 1)
    assert (days["2026-11-20"]["opened"], days["2026-11-20"]["clicked"]) == (2, 1)
    channels = {r["key"]: r for r in by_channel["rows"]}
    assert {k: v["total"] for k, v in channels.items()} == {"email": 3, "inbox": 3, "sms": 1, "webhook": 1}
    assert channels["sms"]["label"] == "短信" and channels["webhook"]["dead"] == 1
    policies = {r["key"]: r for r in by_policy["rows"]}
    assert policies[str(o["p1"].id)]["total"] == 5 and policies[str(o["p1"].id)]["label"] == o["p1"].title
    assert policies[str(o["p2"].id)]["pending"] == 1
    assert policies[""]["label"] == "（与具体政策无关）"
    totals = by_day["totals"]
    assert (totals["total"], totals["sent"], totals["failed"], totals["dead"], totals["opened"], totals["clicked"]) == (
        8,
        4,
        1,
        1,
        2,
        1,
    )


def test_stats_and_log_filters(db: Session, outbox) -> None:  # type: ignore[no-untyped-def]
    o = outbox
    only_21st = stats.DeliveryFilters(date_from=dt.date(2026, 11, 21), date_to=dt.date(2026, 11, 21))
    manual = stats.DeliveryFilters(kind="manual", policy_id=o["p2"].id)
    failed_sms = stats.DeliveryFilters(channel="sms", status="failed")

    assert stats.delivery_stats(db=db, filters=only_21st)["totals"]["total"] == 4
    items, total = stats.list_deliveries(db=db, filters=manual)
    assert total == 2 and {i["channel"] for i in items} == {"inbox", "email"}
    assert items[0]["policy_title"] == o["p2"].title and items[0]["enterprise_name"] == o["c"].name
    items, total = stats.list_deliveries(db=db, filters=failed_sms)
    assert total == 1 and items[0]["enterprise_id"] == o["b"].id and items[0]["attempts"] == 2
    page, total = stats.list_deliveries(db=db, filters=stats.DeliveryFilters(), offset=2, limit=3)
    assert total == 8 and len(page) == 3
    everything, _ = stats.list_deliveries(db=db, filters=stats.DeliveryFilters(), limit=100)
    assert [i["id"] for i in everything[2:5]] == [i["id"] for i in page]
    assert everything[0]["created_at"] >= everything[-1]["created_at"]


def test_invalid_filters_name_their_field_in_chinese(db: Session) -> None:
    with pytest.raises(ValidationFailed) as bad:
        stats.list_deliveries(
            db=db,
            filters=stats.DeliveryFilters(
                channel="fax", status="lost", date_from=dt.date(2026, 2, 1), date_to=dt.date(2026, 1, 1)
            ),
        )
    with pytest.raises(ValidationFailed) as group:
        stats.delivery_stats(db=db, filters=stats.DeliveryFilters(), group_by="week")

    assert {e.field for e in bad.value.errors} == {"channel", "status", "date_from"}
    assert "开始日期" in next(e.reason for e in bad.value.errors if e.field == "date_from")
    assert group.value.errors[0].field == "group_by" and "分组方式" in group.value.errors[0].reason


def test_funnel_counts_distinct_firms_from_real_rows(db: Session) -> None:
    policy = factories.make_policy(db, publish=True)
    other = factories.make_policy(db, publish=True)
    a, b, c, d = (factories.make_enterprise(db) for _ in range(4))
    now = dt.datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
    _insert(
        db,
        [
            # a: pushed through two channels (one firm), read the inbox message.
            _row(a.id, policy.id, read_at=now),
            _row(a.id, policy.id, channel="email"),
            # c: pushed, nothing else; d: a push that failed is not "pushed".
            _row(c.id, policy.id),
            _row(d.id, policy.id, channel="email", status="dead", sent_at=None),
            # b was pushed another policy only.
            _row(b.id, other.id, read_at=now),
        ],
    )
    # a views twice (30 minutes apart: two events), b views and runs the calculator without a push.
    events.record_events(db=db, enterprise_id=a.id, policy_ids=[policy.id], kind="viewed", now=now)
    events.record_events(
        db=db, enterprise_id=a.id, policy_ids=[policy.id], kind="viewed", now=now + dt.timedelta(hours=1)
    )
    events.record_events(db=db, enterprise_id=b.id, policy_ids=[policy.id, other.id], kind="viewed", now=now)
    events.record_events(db=db, enterprise_id=b.id, policy_ids=[policy.id], kind="calculator", now=now)
    # a marks it applied twice, d says interested: one applied firm.
    for action in ("applied", "applied"):
        matcher_feedback.record_feedback(db=db, enterprise_id=a.id, policy_id=policy.id, action=action)
    matcher_feedback.record_feedback(db=db, enterprise_id=d.id, policy_id=policy.id, action="interested")

    result = stats.funnel(db=db, policy_id=policy.id)

    assert len(_events(db, "viewed")) == 4
    stages = {s["stage"]: (s["enterprises"], s["after_push"], s["rate"]) for s in result["stages"]}
    assert [s["stage"] for s in result["stages"]] == ["pushed", "opened", "viewed", "calculator", "applied"]
    assert stages == {
        "pushed": (2, 2, 1.0),
        "opened": (1, 1, 0.5),
        "viewed": (2, 1, 0.5),
        "calculator": (1, 0, 0.0),
        "applied": (1, 1, 0.5),
    }
    assert result["stages"][0]["label"] == "收到推送"


def test_repeated_events_within_the_window_are_one(db: Session) -> None:
    policy = factories.make_policy(db, publish=True)
    firm = factories.make_enterprise(db)
    now = dt.datetime(2026, 11, 20, 2, 0, tzinfo=UTC)

    written = [
        events.record_events(db=db, enterprise_id=firm.id, policy_ids=[policy.id], kind="viewed", now=now + delta)
        for delta in (dt.timedelta(0), dt.timedelta(minutes=10), dt.timedelta(minutes=45))
    ]

    assert written == [1, 0, 1]
    with pytest.raises(ValueError):
        events.record_events(db=db, enterprise_id=firm.id, policy_ids=[policy.id], kind="liked")


# ---------------------------------------------------------------- over HTTP


def test_tracked_link_records_the_click_and_redirects(db: Session, client, test_settings) -> None:  # type: ignore[no-untyped-def]
    policy = factories.make_policy(db, publish=True)
    firm = factories.make_enterprise(db)
    _insert(db, [_row(firm.id, policy.id, channel="email", url=f"https://huiqi.example.cn/policies/{policy.id}")])
    row = db.scalar(select(Delivery).where(Delivery.enterprise_id == firm.id))
    url = events.click_url(settings=test_settings, delivery_id=row.id)
    assert url.startswith("/api/v1/push/r/")

    first = client.get(url, follow_redirects=False)
    db.refresh(row)
    clicked_at = row.clicked_at
    second = client.get(url, follow_redirects=False)
    forged = client.get(url[:-3] + ("000" if not url.endswith("000") else "111"), follow_redirects=False)
    unknown = client.get(events.click_url(settings=test_settings, delivery_id=row.id + 1000), follow_redirects=False)

    assert first.status_code == 302 and first.headers["location"] == f"https://huiqi.example.cn/policies/{policy.id}"
    assert clicked_at is not None and row.read_at is not None
    db.refresh(row)
    assert second.status_code == 302 and row.clicked_at == clicked_at  # the first click is kept
    assert forged.status_code == 404 and forged.json()["errors"][0]["field"] == "token"
    assert unknown.status_code == 404
    clicks = _events(db, "clicked")
    assert len(clicks) == 1 and clicks[0].delivery_id == row.id  # the repeat within 30 minutes is one event
    funnel = {s["stage"]: s["enterprises"] for s in stats.funnel(db=db, policy_id=policy.id)["stages"]}
    assert funnel["opened"] == 1


def test_policy_page_and_calculator_record_events_only_for_signed_in_firms(  # type: ignore[no-untyped-def]
    db: Session, client, auth_headers
) -> None:
    policy = factories.make_policy(db, publish=True)
    firm = factories.make_enterprise(db)
    as_firm = auth_headers(Role.enterprise, enterprise_id=firm.id)

    assert client.get(f"/api/v1/policies/{policy.id}").status_code == 200
    assert client.get(f"/api/v1/policies/{policy.id}", headers=auth_headers(Role.curator)).status_code == 200
    assert _events(db, "viewed") == []
    assert client.get(f"/api/v1/policies/{policy.id}", headers=as_firm).status_code == 200
    viewed = _events(db, "viewed")
    assert [(e.enterprise_id, e.policy_id) for e in viewed] == [(firm.id, policy.id)]

    body = {"region_code": "442000", "industry_code": "C3911", "employees": 50, "annual_revenue": 3000}
    anonymous = client.post("/api/v1/match/calculator", json=body)
    assert anonymous.status_code == 200, anonymous.text
    assert _events(db, "calculator") == []
    signed_in = client.post("/api/v1/match/calculator", json=body, headers=as_firm)
    shown = {i["policy"]["id"] for i in signed_in.json()["items"]}
    assert policy.id in shown
    assert {(e.enterprise_id, e.policy_id) for e in _events(db, "calculator")} == {(firm.id, pid) for pid in shown}


def test_stats_routes_over_http_with_roles(db: Session, client, auth_headers, outbox) -> None:  # type: ignore[no-untyped-def]
    o = outbox
    params = {"group_by": "channel", "date_from": "2026-11-20", "date_to": "2026-11-20"}

    for role in (Role.desk, Role.enterprise):
        headers = auth_headers(role)
        assert client.get("/api/v1/push/stats", headers=headers).status_code == 403
        assert client.get("/api/v1/push/deliveries", headers=headers).status_code == 403
        assert client.get(f"/api/v1/policies/{o['p1'].id}/push-funnel", headers=headers).status_code == 403
    assert client.get("/api/v1/push/stats").status_code == 401
    supervisor = auth_headers(Role.supervisor)
    by_channel = client.get("/api/v1/push/stats", headers=supervisor, params=params)
    log = client.get("/api/v1/push/deliveries", headers=supervisor, params={"status": "dead", "page_size": 5})
    funnel = client.get(f"/api/v1/policies/{o['p1'].id}/push-funnel", headers=auth_headers(Role.curator))
    bad = client.get("/api/v1/push/stats", headers=supervisor, params={"group_by": "hour", "channel": "fax"})
    missing = client.get("/api/v1/policies/999999/push-funnel", headers=supervisor)

    assert by_channel.status_code == 200, by_channel.text
    assert {r["key"]: r["total"] for r in by_channel.json()["rows"]} == {"email": 1, "inbox": 2, "sms": 1}
    assert log.json()["total"] == 1 and log.json()["items"][0]["channel"] == "webhook"
    assert funnel.status_code == 200 and funnel.json()["stages"][0]["enterprises"] == 2
    assert bad.status_code == 422 and {e["field"] for e in bad.json()["errors"]} == {"group_by", "channel"}
    assert missing.status_code == 404
