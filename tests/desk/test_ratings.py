"""Policy ratings (政企互动): the precondition, one rating per firm and policy, figures, who reads comments,
hostile comments, and comments in the hot topics."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from auth.models import Role
from core import security
from core.errors import PermissionDenied, ValidationFailed
from desk import ratings, topics
from desk.models import PolicyRating
from matcher import feedback as matcher_feedback
from push import events as push_events
from tests import factories
from web.deps import SESSION_COOKIE

API = "/api/v1"
Headers = Callable[..., dict[str, str]]


def _viewed(db: Session, firm_id: int, policy_id: int, kind: str = "viewed") -> None:
    push_events.record_events(db=db, enterprise_id=firm_id, policy_ids=[policy_id], kind=kind)


def test_a_firm_may_rate_only_a_policy_it_viewed_or_marked_applied(db: Session) -> None:
    policy = factories.make_policy(db, publish=True)
    firm, applied, via_push, calc = (factories.make_enterprise(db) for _ in range(4))
    with pytest.raises(PermissionDenied) as refused:
        ratings.rate_policy(db=db, enterprise_id=firm.id, policy_id=policy.id, stars=4, comment=None)
    assert refused.value.code == "desk.rating_not_allowed"
    _viewed(db, calc.id, policy.id, kind="calculator")  # listed by the calculator is not a view
    with pytest.raises(PermissionDenied):
        ratings.rate_policy(db=db, enterprise_id=calc.id, policy_id=policy.id, stars=4, comment=None)
    _viewed(db, firm.id, policy.id)
    _viewed(db, via_push.id, policy.id, kind="clicked")
    matcher_feedback.record_feedback(db=db, enterprise_id=applied.id, policy_id=policy.id, action="applied")
    for who in (firm, via_push, applied):
        assert ratings.rate_policy(db=db, enterprise_id=who.id, policy_id=policy.id, stars=5, comment="好").stars == 5
    assert db.scalar(select(func.count()).select_from(PolicyRating)) == 3


def test_rating_again_edits_the_one_rating_and_figures_follow(db: Session) -> None:
    policy = factories.make_policy(db, publish=True)
    firms = [factories.make_enterprise(db) for _ in range(3)]
    for f in firms:
        _viewed(db, f.id, policy.id)
    ratings.rate_policy(db=db, enterprise_id=firms[0].id, policy_id=policy.id, stars=1, comment="申报材料太多")
    ratings.rate_policy(db=db, enterprise_id=firms[1].id, policy_id=policy.id, stars=4, comment=None)
    ratings.rate_policy(db=db, enterprise_id=firms[2].id, policy_id=policy.id, stars=5, comment="  ")
    first = ratings.own_rating(db=db, enterprise_id=firms[0].id, policy_id=policy.id)
    assert first is not None
    created = first.created_at
    edited = ratings.rate_policy(db=db, enterprise_id=firms[0].id, policy_id=policy.id, stars=3, comment="改为一般")
    assert edited.id == first.id and edited.created_at == created and edited.comment == "改为一般"
    summary = ratings.summary(db=db, policy_id=policy.id)
    assert summary.count == 3 and summary.average == 4.0
    assert summary.distribution == {1: 0, 2: 0, 3: 1, 4: 1, 5: 1}
    blank = ratings.own_rating(db=db, enterprise_id=firms[2].id, policy_id=policy.id)
    assert blank is not None and blank.comment is None  # a blank comment is no comment


def test_bad_stars_long_comments_and_nul_are_refused_and_nothing_is_written(db: Session) -> None:
    policy = factories.make_policy(db, publish=True)
    firm = factories.make_enterprise(db)
    _viewed(db, firm.id, policy.id)
    for stars, comment, field in (
        (0, None, "stars"),
        (6, None, "stars"),
        (3, "长" * 501, "comment"),
        (3, "a\x00b", "comment"),
    ):
        with pytest.raises(ValidationFailed) as bad:
            ratings.rate_policy(db=db, enterprise_id=firm.id, policy_id=policy.id, stars=stars, comment=comment)
        assert bad.value.errors[0].field == field
    assert ratings.own_rating(db=db, enterprise_id=firm.id, policy_id=policy.id) is None


@pytest.fixture
def setup(db: Session, auth_headers: Headers) -> dict[str, Any]:
    dept_a, dept_b = factories.make_department(db), factories.make_department(db)
    policy = factories.make_policy(db, publish=True, department=dept_a)
    firm, other = factories.make_enterprise(db), factories.make_enterprise(db)
    _viewed(db, firm.id, policy.id)
    _viewed(db, other.id, policy.id)
    return {
        "policy": policy,
        "firm_id": firm.id,
        "firm": auth_headers(Role.enterprise, enterprise_id=firm.id),
        "other": auth_headers(Role.enterprise, enterprise_id=other.id),
        "desk_a": auth_headers(Role.desk, department_id=dept_a.id),
        "desk_b": auth_headers(Role.desk, department_id=dept_b.id),
        "curator": auth_headers(Role.curator),
        "supervisor": auth_headers(Role.supervisor),
    }


def test_firms_rate_over_the_api_and_see_the_average_but_never_others_comments(
    client: TestClient, setup: dict[str, Any]
) -> None:
    pid = setup["policy"].id
    url = f"{API}/policies/{pid}/my-rating"
    assert client.get(url, headers=setup["firm"]).status_code == 404
    r = client.put(url, json={"stars": 2, "comment": "<b>材料</b>要求不清楚"}, headers=setup["firm"])
    assert r.status_code == 200 and r.json()["stars"] == 2
    r = client.put(url, json={"stars": 4, "comment": "咨询后明白了"}, headers=setup["other"])
    assert r.status_code == 200
    edit = client.put(url, json={"stars": 3, "comment": "<b>材料</b>要求不清楚"}, headers=setup["firm"])
    assert edit.status_code == 200
    assert client.get(url, headers=setup["firm"]).json()["stars"] == 3
    summary = client.get(f"{API}/policies/{pid}/rating-summary").json()  # anyone, no comments
    assert summary == {
        "policy_id": pid,
        "count": 2,
        "average": 3.5,
        "distribution": {"1": 0, "2": 0, "3": 1, "4": 1, "5": 0},
    }
    # Firms never read the comment list; staff do (a desk officer only for their department's policies).
    assert client.get(f"{API}/policies/{pid}/ratings", headers=setup["firm"]).status_code == 403
    assert client.get(f"{API}/policies/{pid}/ratings").status_code == 401
    assert client.get(f"{API}/policies/{pid}/ratings", headers=setup["desk_b"]).status_code == 404
    for who in ("curator", "supervisor", "desk_a"):
        body = client.get(f"{API}/policies/{pid}/ratings", headers=setup[who]).json()
        assert body["summary"]["count"] == 2 and body["ratings"]["total"] == 2
        assert {i["comment"] for i in body["ratings"]["items"]} == {"<b>材料</b>要求不清楚", "咨询后明白了"}
    assert client.put(url, json={"stars": 3}, headers=setup["curator"]).status_code == 403
    bad = client.put(url, json={"stars": 9, "comment": "x" * 501}, headers=setup["firm"])
    assert bad.status_code == 422 and {e["field"] for e in bad.json()["errors"]} >= {"stars", "comment"}
    assert client.put(url, json={"stars": 3, "comment": "a\u0000b"}, headers=setup["firm"]).status_code == 422


def test_a_firm_that_never_saw_the_policy_is_refused_over_the_api(
    db: Session, client: TestClient, auth_headers: Headers
) -> None:
    policy = factories.make_policy(db, publish=True)
    stranger = auth_headers(Role.enterprise)
    r = client.put(f"{API}/policies/{policy.id}/my-rating", json={"stars": 5}, headers=stranger)
    assert r.status_code == 403 and r.json()["code"] == "desk.rating_not_allowed"
    draft = factories.make_policy(db)
    assert client.get(f"{API}/policies/{draft.id}/rating-summary").status_code == 404


def _sign_in(client: TestClient, settings: Any, user_id: int) -> None:
    client.cookies.set(SESSION_COOKIE, security.create_access_token(settings=settings, subject=str(user_id)))


def test_pages_escape_comments_firms_see_the_average_curators_the_comments(
    db: Session, client: TestClient, test_settings: Any
) -> None:
    policy = factories.make_policy(db, publish=True)
    firm = factories.make_enterprise(db)
    rater = factories.make_enterprise(db)
    _viewed(db, rater.id, policy.id)
    hostile = '<script>alert("x")</script>申报系统经常打不开'
    ratings.rate_policy(db=db, enterprise_id=rater.id, policy_id=policy.id, stars=2, comment=hostile)
    user = factories.make_user(db, role=Role.enterprise, enterprise_id=firm.id)
    _sign_in(client, test_settings, user.id)
    page = client.get(f"/policies/{policy.id}").text
    assert 'data-average="2.0"' in page and "1 家企业评价" in page
    assert "申报系统经常打不开" not in page  # another firm's comment is not shown to firms
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    done = client.post(
        f"/policies/{policy.id}/rating",
        data={"stars": "5", "comment": "<i>很好</i>", "csrf_token": token},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    page = client.get(done.headers["location"]).text
    assert "感谢评价" in page and "&lt;i&gt;很好&lt;/i&gt;" in page and "<i>很好</i>" not in page
    assert 'data-average="3.5"' in page
    refused = client.post(f"/policies/{policy.id}/rating", data={"stars": "0", "csrf_token": token})
    assert refused.status_code == 422 and "评分应为 1–5" in refused.text
    curator = factories.make_user(db, role=Role.curator)
    _sign_in(client, test_settings, curator.id)
    staff = client.get(f"/staff/policies/{policy.id}/ratings")
    assert staff.status_code == 200
    assert (
        "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;申报系统经常打不开" in staff.text
        and "<script>alert" not in staff.text
    )
    assert "3.50" in staff.text and rater.name in staff.text
    listing = client.get("/staff/policies").text
    assert f'href="/staff/policies/{policy.id}/ratings">3.5 分 · 2 条' in listing


def test_hot_topics_cluster_rating_comments_with_enquiries(db: Session) -> None:
    dept, elsewhere = factories.make_department(db), factories.make_department(db)
    policy = factories.make_policy(db, publish=True, department=dept)
    other_policy = factories.make_policy(db, publish=True, department=elsewhere)
    texts = [
        "小微企业房租补贴申报材料太多，流程太复杂",
        "小微企业房租补贴的申报材料太复杂了",
        "房租补贴申报材料太多，小微企业很难准备",
    ]
    ids = []
    for text in texts:
        firm = factories.make_enterprise(db)
        _viewed(db, firm.id, policy.id)
        ids.append(ratings.rate_policy(db=db, enterprise_id=firm.id, policy_id=policy.id, stars=2, comment=text).id)
    lone = factories.make_enterprise(db)
    _viewed(db, lone.id, other_policy.id)
    ratings.rate_policy(db=db, enterprise_id=lone.id, policy_id=other_policy.id, stars=2, comment=texts[0])
    now = dt.datetime.now(dt.UTC)
    result = topics.hot_topics(db=db, start=now - dt.timedelta(days=1), end=now + dt.timedelta(minutes=1))
    assert result.ratings == 4
    [topic] = [t for t in result.topics if t["sources"]["rating"]]
    assert topic["sources"] == {"case": 0, "rating": 4} and topic["case_ids"] == []
    assert "房租补贴" in topic["terms"]
    assert topic["representative"]["source"] == "rating" and topic["representative"]["content"] in texts
    # A desk officer's view holds only the comments on their department's policies.
    scoped = topics.hot_topics(
        db=db, start=now - dt.timedelta(days=1), end=now + dt.timedelta(minutes=1), department_id=dept.id
    )
    assert scoped.ratings == 3 and scoped.topics[0]["rating_ids"] == sorted(ids)


def test_demo_ratings_come_from_demo_firms_once_and_form_a_hot_topic(db: Session) -> None:
    from desk import demo

    policies = [factories.make_policy(db, publish=True) for _ in range(2)]
    for _ in range(len(demo.DEMO_RATINGS) + 1):
        factories.make_enterprise(db)
    added = demo.load_demo_ratings(db=db, policies=2)
    assert added == len(demo.DEMO_RATINGS) + (len(demo.DEMO_RATINGS) - 2)
    assert demo.load_demo_ratings(db=db, policies=2) == 0  # idempotent
    summaries = ratings.summaries(db=db, policy_ids=[p.id for p in policies])
    assert all(s.count and s.average is not None for s in summaries.values())
    now = dt.datetime.now(dt.UTC)
    result = topics.hot_topics(db=db, start=now - dt.timedelta(days=30), end=now + dt.timedelta(minutes=1))
    # 申报材料 comments cluster (材料 itself is question filler, so the shared term is 重复提交).
    assert any(t["sources"]["rating"] >= 3 and "重复提交" in t["terms"] for t in result.topics), result.topics


def test_rating_comments_in_the_dashboard_hot_topics_are_escaped(
    db: Session, client: TestClient, test_settings: Any
) -> None:
    policy = factories.make_policy(db, publish=True)
    hostile = [
        "<img src=x onerror=alert(1)>申报系统上传附件总是失败",
        "<img src=x onerror=alert(1)>申报系统上传附件失败",
    ]
    for text in hostile:
        firm = factories.make_enterprise(db)
        _viewed(db, firm.id, policy.id)
        ratings.rate_policy(db=db, enterprise_id=firm.id, policy_id=policy.id, stars=1, comment=text)
    curator = factories.make_user(db, role=Role.curator)
    _sign_in(client, test_settings, curator.id)
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert "含企业评价 2 条" in page.text
    assert "<img src=x" not in page.text and "&lt;img src=x onerror=alert(1)&gt;申报系统上传附件" in page.text


def test_rating_comments_and_enquiries_share_the_clustering_budget(db: Session) -> None:
    policy = factories.make_policy(db, publish=True)
    for i in range(6):
        firm = factories.make_enterprise(db)
        _viewed(db, firm.id, policy.id)
        ratings.rate_policy(db=db, enterprise_id=firm.id, policy_id=policy.id, stars=3, comment=f"房租补贴到账慢{i}")
    now = dt.datetime.now(dt.UTC)
    result = topics.hot_topics(db=db, start=now - dt.timedelta(days=1), end=now + dt.timedelta(minutes=1), max_cases=4)
    assert result.ratings == 4 and result.truncated
