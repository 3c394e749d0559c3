"""The wording the batch stores with each firm's matches must be exactly what judging when read gives.

Pages read the worded verdicts and change suggestions from the stored row (`matcher.wording`); the
reference is the same page with every verdict judged now (`recommend(..., reword=True)`). Compared
as the API shapes them (cards, reasons, suggestions), for firms of different profiles, before and
after a policy edit (stale until re-matched: the edited rule is judged again, never read), after
feedback that hides a policy the suggestions came from, and after a profile change.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from auth.models import Role
from auth.service import Principal
from catalog import service as catalog_service
from catalog.schemas import PolicyUpdate, TagIn
from core.db import InSession
from matcher import eligibility, recommend, router, runs, store, wording
from matcher.eligibility import ELIGIBLE, INELIGIBLE, LIKELY
from profiles import service as profiles_service
from profiles.schemas import EnterpriseUpdate
from tests import factories

ALL = (ELIGIBLE, LIKELY, INELIGIBLE)
RULES: list[dict[str, Any]] = [
    {"all": [{"field": "region_code", "op": "within_region", "value": ["442000"]}]},
    {"all": [{"field": "rd_ratio", "op": "gte", "value": 5}, {"field": "employees", "op": "lte", "value": 300}]},
    {"all": [{"field": "rd_ratio", "op": "gte", "value": 3}]},
    {"all": [{"field": "qualifications", "op": "has_any", "value": ["高新技术企业"]}]},
    {
        "any": [
            {"field": "annual_revenue", "op": "gte", "value": 5000},
            {"field": "employees", "op": "gte", "value": 100},
        ]
    },
    {
        "all": [
            {"field": "years_established", "op": "gte", "value": 3},
            {"field": "total_assets", "op": "lt", "value": 8000},
        ]
    },
    {"not": {"field": "industry_code", "op": "prefix", "value": ["C39"]}},
    {
        "all": [
            {"field": "established_on", "op": "years_since_lte", "value": 10},
            {"field": "rd_expense", "op": "gt", "value": 100},
        ]
    },
    {
        "all": [
            {"field": "employees", "op": "between", "value": [20, 60]},
            {"field": "rd_ratio", "op": "gte", "value": 8},
        ]
    },
]


def _shaped(page: recommend.Page, today: dt.date) -> dict[str, Any]:
    return {
        "items": [router._recommendation(r, today, page.feedback) for r in page.items],
        "changes": router._changes(page.changes),
        "total": page.total,
        "state": page.state,
    }


def _both(  # type: ignore[no-untyped-def]
    db, matcher, firm_id: int, today: dt.date | None = None
) -> tuple[recommend.Page, dict[str, Any], dict[str, Any]]:
    today = today or dt.date.today()
    kw = {"db": db, "matcher": matcher, "enterprise_id": firm_id, "include": ALL, "limit": 200, "today": today}
    stored = recommend.recommend(**kw)
    fresh = recommend.recommend(**kw, reword=True)
    return stored, _shaped(stored, today), _shaped(fresh, today)


def _same(stored: dict[str, Any], fresh: dict[str, Any]) -> bool:
    """Compare two shaped pages, item by item first so that a difference shows where it is."""
    for a, b in zip(stored["items"], fresh["items"], strict=True):
        assert a == b
    assert stored["changes"] == fresh["changes"]
    return stored == fresh


def _setup(db) -> tuple[list[Any], list[Any]]:  # type: ignore[no-untyped-def]
    catalog_service.create_tag(db=db, tag_in=TagIn(name="高新技术企业", kind="qualification", synonyms=["高企"]))
    catalog_service.create_tag(db=db, tag_in=TagIn(name="租金减免", kind="benefit", synonyms=["房租补贴"]))
    policies = [
        factories.make_policy(db, publish=True, rules=rules, tags=["租金减免"] if k % 3 == 0 else [])
        for k, rules in enumerate(RULES)
    ]
    firms = [
        factories.make_enterprise(db, rd_expense=96, annual_revenue=3000),  # 3.2 %: near misses
        factories.make_enterprise(db, rd_expense=None, employees=None),  # unknowns: likely, fields to fill
        factories.make_enterprise(
            db, rd_expense=400, annual_revenue=4000, employees=40, needs="厂房租金压力大，想申请房租补贴"
        ),
        factories.make_enterprise(db, industry_code="C3872", established_on=dt.date(2024, 1, 1), total_assets=None),
    ]
    return policies, firms


def test_stored_wording_equals_judging_now_before_and_after_a_policy_edit(db, matcher) -> None:  # type: ignore[no-untyped-def]
    policies, firms = _setup(db)
    factories.match(db, matcher)
    for firm in firms:
        page, stored, fresh = _both(db, matcher, firm.id)
        assert page.state == "ready" and page.items
        assert _same(stored, fresh)
        assert page.judged == 0  # every verdict and the suggestions came from the stored row
    assert any(_both(db, matcher, f.id)[1]["changes"] for f in firms)
    assert any(i["status"] == LIKELY for f in firms for i in _both(db, matcher, f.id)[1]["items"])

    # An edit of a rule: pages are stale until the worker re-matches; the edited rule is judged when read.
    edited = policies[2]
    catalog_service.update_policy(
        db=db,
        policy_id=edited.id,
        policy_in=PolicyUpdate(rules={"all": [{"field": "rd_ratio", "op": "gte", "value": 2}]}),
        actor=None,
    )
    matcher.policy_sets.clear()
    for firm in firms:
        page, stored, fresh = _both(db, matcher, firm.id)
        assert _same(stored, fresh)
        shown = [r for r in page.items if r.policy.id == edited.id]
        for r in shown:
            assert not isinstance(r.verdict, wording.Verdict)  # judged with the new rule, never read from before
            assert all("≥ 2%" in c.reason for c in r.verdict.conditions)

    # The worker's pass for the edited policy patches each row's wording for that policy.
    factories.match(db, matcher)
    for firm in firms:
        page, stored, fresh = _both(db, matcher, firm.id)
        assert _same(stored, fresh)
        for r in page.items:
            if r.policy.id == edited.id:
                assert isinstance(r.verdict, wording.Verdict)


def test_feedback_and_profile_changes_fall_back_to_judging(db, matcher, client, auth_headers) -> None:  # type: ignore[no-untyped-def]
    _, firms = _setup(db)
    factories.match(db, matcher)
    firm = firms[0]
    page, stored, fresh = _both(db, matcher, firm.id)
    assert _same(stored, fresh) and stored["changes"]
    raw = store.words_of(store.read(db, firm.id).words)
    words = wording.unpack(raw)
    assert words is not None and words.window
    # The firm calls a policy its suggestions came from not relevant: the suggestions are computed again.
    hidden = words.window[0][0]
    headers = auth_headers(Role.enterprise, enterprise_id=firm.id)
    r = client.post(
        "/api/v1/enterprises/me/feedback", json={"policy_id": hidden, "action": "not_relevant"}, headers=headers
    )
    assert r.status_code == 201, r.text
    page, stored, fresh = _both(db, matcher, firm.id)
    assert _same(stored, fresh) and hidden not in [i["policy"]["id"] for i in stored["items"]]
    assert all(hidden not in c["policy_ids"] for c in stored["changes"])
    # The batch takes that feedback into account: after a re-match nothing is judged when read.
    runs.rematch_firms(InSession(db), matcher, [firm.id])
    page, stored, fresh = _both(db, matcher, firm.id)
    assert _same(stored, fresh) and page.judged == 0

    # A profile change: stale, every reason judged from the new profile.
    profiles_service.update_enterprise(
        db=db,
        enterprise_id=firm.id,
        enterprise_in=EnterpriseUpdate(rd_expense=200),
        actor=Principal(id=1, role=Role.enterprise, name="企业", enterprise_id=firm.id),
    )
    page, stored, fresh = _both(db, matcher, firm.id)
    assert page.state == "stale" and stored == fresh and page.judged > 0


def test_rows_without_wording_are_still_served(db, matcher) -> None:  # type: ignore[no-untyped-def]
    """A row written before wording was stored (format 1) is read, its reasons judged when read."""
    _, firms = _setup(db)
    factories.match(db, matcher)
    firm = firms[2]
    row = store.read(db, firm.id)
    legacy = store._HEADER.pack(1, len(row.items), len(row.near)) + row.items.tobytes() + row.near.tobytes()
    from matcher.models import FirmMatch

    db.get(FirmMatch, firm.id).payload = legacy
    db.flush()
    page, stored, fresh = _both(db, matcher, firm.id)
    assert _same(stored, fresh) and page.judged > 0


@pytest.mark.parametrize("mode", ["page", "all", "off"])
def test_each_wording_mode_serves_the_same_pages(db, matcher, monkeypatch, mode: str) -> None:  # type: ignore[no-untyped-def]
    """HUIQI_MATCH_WORDING trades batch CPU for request CPU; what a firm sees never changes."""
    _, firms = _setup(db)
    monkeypatch.setattr(matcher.settings, "match_wording", mode)
    monkeypatch.setattr(wording, "PAGE", 2)  # "page" words only the best two candidates here
    factories.match(db, matcher)
    for firm in firms:
        page, stored, fresh = _both(db, matcher, firm.id)
        assert page.state == "ready" and _same(stored, fresh)
        judged_now = page.judged
        if mode == "all":
            assert judged_now == 0
        elif mode == "off":
            assert judged_now == len(page.items) > 0
        else:
            # The first two cards and the suggestions come from the row; the rest are judged when read.
            assert judged_now <= max(len(page.items) - 2, 0)
            first = recommend.recommend(
                db=db, matcher=matcher, enterprise_id=firm.id, include=ALL, limit=2, today=dt.date.today()
            )
            assert first.judged == 0


# ---------------------------------------------------------------- how long stored verdicts hold


def _words(db, firm_id: int) -> wording.Words:  # type: ignore[no-untyped-def]
    words = wording.unpack(store.words_of(store.read(db, firm_id).words))
    assert words is not None
    return words


def _days(db, matcher, firm_id: int, first: dt.date, count: int) -> list[recommend.Page]:  # type: ignore[no-untyped-def]
    """Read the firm's page on each of `count` days from `first`; each must equal judging on that day."""
    pages = []
    for k in range(count):
        page, stored, fresh = _both(db, matcher, firm_id, first + dt.timedelta(days=k))
        assert _same(stored, fresh), first + dt.timedelta(days=k)
        pages.append(page)
    return pages


def test_stored_verdicts_hold_until_the_establishment_anniversary(db, matcher) -> None:  # type: ignore[no-untyped-def]
    """Matched today, the firm turns 4 years old in 3 days: its stored verdicts serve today, tomorrow
    and the day after, and from the anniversary on every verdict is judged when read (one flips)."""
    today = dt.date.today()
    flip = today + dt.timedelta(days=3)
    firm = factories.make_enterprise(db, established_on=dt.date(flip.year - 4, flip.month, flip.day))
    aged = factories.make_policy(
        db, publish=True, rules={"all": [{"field": "years_established", "op": "gte", "value": 4}]}
    )
    young = factories.make_policy(
        db, publish=True, rules={"all": [{"field": "established_on", "op": "years_since_lte", "value": 3}]}
    )
    factories.make_policy(db, publish=True)  # in the region: eligible whatever the date
    factories.match(db, matcher, today=today)
    words = _words(db, firm.id)
    assert (words.day, words.through) == (today, flip - dt.timedelta(days=1))

    pages = _days(db, matcher, firm.id, today, 5)
    for k, page in enumerate(pages):
        day = today + dt.timedelta(days=k)
        assert page.items and words.usable_on(day) == (day < flip)
        if day < flip:
            assert page.judged == 0 and all(isinstance(r.verdict, wording.Verdict) for r in page.items)
        else:
            assert page.judged > 0 and not any(isinstance(r.verdict, wording.Verdict) for r in page.items)
    # On the anniversary both date conditions flip: serving the stored words then would be wrong.
    status = {k: {r.policy.id: r.verdict.status for r in p.items} for k, p in ((0, pages[0]), (3, pages[3]))}
    assert status[0][aged.id] == INELIGIBLE and status[3][aged.id] == ELIGIBLE
    assert status[0][young.id] == ELIGIBLE and status[3][young.id] == INELIGIBLE


def test_stored_verdicts_hold_through_a_qualifications_last_day(db, matcher) -> None:  # type: ignore[no-untyped-def]
    today = dt.date.today()
    catalog_service.create_tag(db=db, tag_in=TagIn(name="高新技术企业", kind="qualification", synonyms=["高企"]))
    last = today + dt.timedelta(days=1)
    firm = factories.make_enterprise(
        db,
        established_on=_far_anniversary(today),
        qualifications=[{"name": "高新技术企业", "valid_until_on": last}],
    )
    held = factories.make_policy(
        db, publish=True, rules={"all": [{"field": "qualifications", "op": "has_any", "value": ["高新技术企业"]}]}
    )
    factories.match(db, matcher, today=today)
    assert _words(db, firm.id).through == last
    pages = _days(db, matcher, firm.id, today, 4)
    assert [p.judged == 0 for p in pages] == [True, True, False, False]
    statuses = [{r.policy.id: r.verdict.status for r in p.items}.get(held.id) for p in pages]
    assert statuses[1] == ELIGIBLE and statuses[2] != ELIGIBLE


def test_a_closing_application_window_keeps_the_other_stored_verdicts(db, matcher) -> None:  # type: ignore[no-untyped-def]
    """A policy whose window closes tomorrow leaves the firm's list the day after; the other cards
    are still read from the row (verdicts do not depend on another policy's window), and the
    suggestions it fed are computed again — each day equal to judging on that day."""
    today = dt.date.today()
    firm = factories.make_enterprise(db, established_on=_far_anniversary(today), rd_expense=None)
    closing = factories.make_policy(
        db,
        publish=True,
        apply_end_on=today + dt.timedelta(days=1),
        rules={"all": [{"field": "rd_ratio", "op": "gte", "value": 3}]},  # unknown: likely, feeds the suggestions
    )
    factories.make_policy(db, publish=True, rules={"all": [{"field": "rd_ratio", "op": "gte", "value": 5}]})
    factories.make_policy(db, publish=True)
    factories.match(db, matcher, today=today)
    words = _words(db, firm.id)
    assert words.through > today + dt.timedelta(days=20) and closing.id in {pid for pid, _ in words.window}
    pages = _days(db, matcher, firm.id, today, 4)
    for k, page in enumerate(pages):
        assert page.items and all(isinstance(r.verdict, wording.Verdict) for r in page.items)
        assert (closing.id in {r.policy.id for r in page.items}) == (k <= 1)
    assert pages[0].judged == pages[1].judged == 0
    # The day after it closed, only the suggestions it fed are worked out again (cards are still read).
    assert pages[2].judged > 0


def _far_anniversary(today: dt.date) -> dt.date:
    """A date of establishment whose next anniversary is 30 to 60 days away (none within the tests' days)."""
    ahead = today + dt.timedelta(days=60)
    return dt.date(ahead.year - 6, ahead.month, 1)


def test_valid_through() -> None:
    day = dt.date(2027, 2, 27)
    assert wording.valid_through(day, {"established_on": None}) == dt.date.max
    assert wording.valid_through(day, {"established_on": dt.date(2020, 3, 5)}) == dt.date(2027, 3, 4)
    assert wording.valid_through(day, {"established_on": dt.date(2020, 2, 27)}) == dt.date(2028, 2, 26)
    # A 29 February start completes its years on 1 March in common years.
    assert wording.valid_through(day, {"established_on": dt.date(2016, 2, 29)}) == dt.date(2027, 2, 28)
    assert wording.valid_through(dt.date(2028, 2, 27), {"established_on": dt.date(2016, 2, 29)}) == dt.date(2028, 2, 28)
    # Qualifications count through their last day; those expired before the day are no longer facts.
    expiries = [dt.date(2027, 2, 26), dt.date(2027, 3, 2), None]
    assert wording.valid_through(day, {"established_on": dt.date(2020, 3, 5)}, expiries) == dt.date(2027, 3, 2)
    # Every claim holds: whole years are the same from the day through the date returned, and change after it.
    for start in (dt.date(2016, 2, 29), dt.date(2020, 1, 1), dt.date(2019, 12, 31), dt.date(2021, 2, 28)):
        for offset in range(0, 800, 7):
            d = dt.date(2026, 1, 1) + dt.timedelta(days=offset)
            end = wording.valid_through(d, {"established_on": start})
            years = eligibility.whole_years(start, d)
            assert (
                eligibility.whole_years(start, end)
                == years
                != eligibility.whole_years(start, end + dt.timedelta(days=1))
            )


def test_rows_without_a_validity_date_hold_on_their_own_day_only() -> None:
    import orjson

    day = dt.date(2027, 5, 3)
    raw = wording.pack(day=day, tags=0, verdicts=[], window=[], changes=[], through=day + dt.timedelta(days=9))
    assert wording.unpack(raw).through == day + dt.timedelta(days=9)  # type: ignore[union-attr]
    data = orjson.loads(raw)
    del data["u"]  # as stored before the validity date
    old = wording.unpack(orjson.dumps(data))
    assert old is not None and old.through == day
    assert [old.usable_on(day + dt.timedelta(days=k)) for k in (-1, 0, 1)] == [False, True, False]


def test_the_batch_words_the_cards_a_page_shows_on_its_day_with_urgency_not_by_base(db, matcher, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A candidate whose deadline is days away outranks better bases on a page: the batch words it among the cards.

    Equal bases (only the rules count: every policy is eligible), so the kernel keeps the policies in
    id order and the last one created is stored last; its deadline in two days gives it the page's
    urgency. With two cards worded per firm, the page's first two must both come from the stored row.
    """
    monkeypatch.setattr(wording, "PAGE", 2)
    monkeypatch.setattr(matcher, "weights", dataclasses.replace(matcher.weights, tags=0.0, semantic=0.0))
    today = dt.date.today()
    policies = [factories.make_policy(db, publish=True) for _ in range(3)]
    urgent = factories.make_policy(db, publish=True, apply_end_on=today + dt.timedelta(days=2))
    firm = factories.make_enterprise(db)
    factories.match(db, matcher)

    stored_order = store.read(db, firm.id).items["policy"].tolist()
    assert stored_order == [p.id for p in [*policies, urgent]]  # by base, ties by policy: the urgent one last
    kw = {"db": db, "matcher": matcher, "enterprise_id": firm.id, "limit": 2, "today": today}
    page = recommend.recommend(**kw)
    assert [r.policy.id for r in page.items] == [urgent.id, policies[0].id]
    assert page.judged == 0  # both cards came worded from the stored row
    assert _same(_shaped(page, today), _shaped(recommend.recommend(**kw, reword=True), today))
