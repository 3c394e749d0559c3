"""The batch's wording (`matcher.wordbatch`, templates and shared outcomes) is exactly `eligibility.evaluate`'s.

Synthetic firms (`profiles.generate`, as `huiqi synth` makes them) with fields blanked at random, so
that every state and every "fields to fill" path occurs, are judged against every demo policy, the
same policies with perturbed thresholds (as `catalog.synth` makes them) and trees with nested
any/not: each (firm, policy) verdict must equal `evaluate`'s field by field, its stored row must be
the one `wording` stores for evaluate's verdict, and a firm's whole serialised wording must be the
bytes judging with `evaluate` gives.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import numpy as np
import orjson
import pytest

from catalog import demo
from catalog.fields import FIELDS
from catalog.synth import _perturb
from matcher import eligibility, store, wordbatch, wording
from profiles.generate import generate_enterprises

TODAY = dt.date(2026, 12, 6)

NESTED: list[dict[str, Any]] = [
    {
        "any": [
            {
                "all": [
                    {"field": "rd_ratio", "op": "gte", "value": 3},
                    {"field": "employees", "op": "between", "value": [10, 200]},
                ]
            },
            {
                "not": {
                    "any": [
                        {"field": "size_class", "op": "in", "value": ["large"]},
                        {"field": "export_revenue", "op": "gt", "value": 100},
                    ]
                }
            },
            {"field": "qualifications", "op": "has_all", "value": ["高新技术企业", "科技型中小企业"]},
        ]
    },
    {
        "not": {
            "all": [
                {"field": "industry_code", "op": "prefix", "value": ["C39", "I65"]},
                {"field": "region_code", "op": "within_region", "value": ["440300", "442000"]},
                {"field": "established_on", "op": "years_since_lte", "value": 5},
            ]
        }
    },
    {
        "all": [
            {"not": {"field": "qualifications", "op": "has_any", "value": ["高新技术企业"]}},
            {"field": "tags", "op": "has_none", "value": ["个体工商户"]},
            {
                "any": [
                    {"field": "annual_revenue", "op": "lt", "value": 800},
                    {"field": "total_assets", "op": "lte", "value": 600},
                ]
            },
            {"field": "established_on", "op": "date_between", "value": ["2010-01-01", "2022-06-30"]},
            {"field": "credit_standing", "op": "eq", "value": "good", "label": "信用良好", "id": "n1"},
        ]
    },
    {"field": "years_established", "op": "gte", "value": 3},
    {"not": {"field": "established_on", "op": "years_since_gte", "value": 8}},
    {
        "all": [
            {"field": "tax_credit_level", "op": "not_in", "value": ["C", "D"]},
            {"field": "rd_expense", "op": "gt", "value": 50},
        ]
    },
]


def _policies() -> list[dict[str, Any]]:
    rng = random.Random(5)
    rules = [p["rules"] for p in demo.demo_policies(TODAY) if p.get("rules")]
    return rules + [_perturb(r, rng) for r in rules] + NESTED


def _qualification_names(policies: list[dict[str, Any]]) -> list[str]:
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("field") == "qualifications":
                names.update(node["value"])
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    for p in policies:
        walk(p)
    return sorted(names)


def _firms(count: int, policies: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """Facts as `eligibility.profile_facts` gives them, some fields blanked (unknown)."""
    rng = random.Random(seed)
    tags = ["个体工商户", "现代农业", "跨境电商", "高成长"]
    out = []
    for row in generate_enterprises(
        seed=seed, count=count, qualification_names=_qualification_names(policies), today=TODAY
    ):
        facts: dict[str, Any] = {name: None for name in FIELDS}
        for name, f in FIELDS.items():
            if f.type != "set" and name != "years_established":
                facts[name] = eligibility._clean_fact(name, row.get(name))
        facts["qualifications"] = frozenset(n for n, until in row["qualifications"] if until is None or until >= TODAY)
        facts["tags"] = frozenset(t for t in tags if rng.random() < 0.2)
        for name in FIELDS:  # unknowns: a blank field leaves conditions on it (and derived ones) to fill in
            if name not in ("qualifications", "tags", "years_established") and rng.random() < 0.12:
                facts[name] = None
        if rng.random() < 0.05:
            facts["qualifications"] = None
        if facts["established_on"] is not None:
            facts["years_established"] = eligibility.whole_years(facts["established_on"], TODAY)
        if rng.random() < 0.1:
            facts["employees"] = float(facts["employees"]) if facts["employees"] is not None else None
        out.append(facts)
    return out


def _row(
    pid: int, v: eligibility.PolicyVerdict | wordbatch.Core, firm: wordbatch.Firm, rules: Any
) -> wording.Verdict | None:
    """The verdict's stored row, serialised, read back as a page reads it for this firm."""
    raw = wording.pack(day=TODAY, tags=0, verdicts=[(pid, 1, v)], window=[], changes=[], firm=firm)
    words = wording.unpack(raw)
    assert words is not None
    return words.verdict(pid, 1, rules)


def _decoded(raw: bytes, policies: dict[int, tuple[int, Any]]) -> tuple[Any, ...]:
    """Stored wording as a page reads it: every verdict worded for the firm, the window and changes."""
    words = wording.unpack(raw)
    assert words is not None
    verdicts = words.verdicts({pid: rules for pid, (_, rules) in policies.items()})
    assert all(v is not None for _, v in verdicts.values())
    return words.day, words.through, words.tags, verdicts, words.window, words.changes


@pytest.mark.parametrize("seed", [11, 12])
def test_every_verdict_equals_evaluate(seed: int) -> None:
    policies = _policies()
    firms = _firms(150, policies, seed)
    smith = wordbatch.Smith(TODAY)  # one for all firms: outcomes and verdicts are shared between them
    states: set[str] = set()
    for facts in firms:
        firm = smith.firm(facts)
        for pid, rules in enumerate(policies):
            expected = eligibility.evaluate(rules, facts, today=TODAY)
            judged = smith.judge(rules, firm)
            assert isinstance(judged, wordbatch.Core)
            got = wordbatch.full(judged, firm)
            assert got.status == expected.status
            assert got.conditions == expected.conditions
            assert got.missing == expected.missing
            assert got.fields_to_fill == expected.fields_to_fill
            assert got.summary == expected.summary
            assert _row(pid, judged, firm, rules) == _row(pid, expected, firm, rules)
            states.update(c.state for c in expected.conditions)
        chosen = [
            pid for pid in range(len(policies)) if smith.judge(policies[pid], firm).status != eligibility.ELIGIBLE
        ]
        chosen = chosen[:: max(1, len(chosen) // wording.WINDOW)][: wording.WINDOW]
        assert eligibility.best_changes(
            {pid: wordbatch.full(smith.judge(policies[pid], firm), firm) for pid in chosen}
        ) == eligibility.best_changes({pid: eligibility.evaluate(policies[pid], facts, today=TODAY) for pid in chosen})
    assert states == {eligibility.MET, eligibility.NOT_MET, eligibility.UNKNOWN}


def _reference(
    facts: dict[str, Any], policies: dict[int, tuple[int, Any]], items: np.ndarray, near: np.ndarray, first: int | None
) -> bytes:
    """`word_firm` as it was: every verdict judged by `eligibility.evaluate`."""
    verdicts: dict[int, eligibility.PolicyVerdict] = {}

    def judge(pid: int) -> eligibility.PolicyVerdict:
        if pid not in verdicts:
            verdicts[pid] = eligibility.evaluate(policies[pid][1], facts, today=TODAY)
        return verdicts[pid]

    for pid in (items["policy"] if first is None else items["policy"][:first]).tolist():
        judge(pid)
    if first is None:
        for pid in near["policy"].tolist():
            judge(pid)
    chosen = wording.window(wording.pool(items, near), lambda pid: judge(pid).status, set())
    return wording.pack(
        day=TODAY,
        tags=wording.tag_digest(facts["tags"]),
        verdicts=[(pid, policies[pid][0], v) for pid, v in verdicts.items()],
        window=[(pid, policies[pid][0]) for pid in chosen],
        changes=eligibility.best_changes({pid: verdicts[pid] for pid in chosen}),
    )


def _stored(
    facts: dict[str, Any], policies: dict[int, tuple[int, Any]], rng: np.random.Generator, mislabel: bool = False
) -> tuple[np.ndarray, np.ndarray, int | None]:
    """A firm's stored candidates (up to 50 eligible or likely, best first) and near misses (up to 20 ineligible).

    With `mislabel`, now and then an eligible one is stored as likely and first in the pool; return its id.
    """
    statuses = {
        pid: eligibility.evaluate(rules, facts, today=TODAY).code for pid, (_, rules) in sorted(policies.items())
    }
    open_ = [pid for pid, s in statuses.items() if s >= 1]
    shut = [pid for pid, s in statuses.items() if s == 0]
    picked = rng.permutation(open_)[:50]
    items = np.zeros(len(picked), dtype=store.ITEM)
    items["policy"] = picked
    items["status"] = [statuses[int(p)] for p in picked]
    items["base"] = np.round(rng.random(len(picked)), 3)
    wrong = None
    if mislabel and rng.random() < 0.2 and (items["status"] == 2).any():
        k = np.flatnonzero(items["status"] == 2)[0]
        items["status"][k], items["base"][k], wrong = 1, 2.0, int(items["policy"][k])
    items = items[np.argsort(-items["base"], kind="stable")]
    missed = rng.permutation(shut)[:20] if shut else np.zeros(0, dtype=np.int64)
    near = np.zeros(len(missed), dtype=store.NEAR)
    near["policy"] = missed
    near["base"] = np.round(rng.random(len(missed)) * 0.5, 3)
    return items, near, wrong


def _word_firm(
    facts: dict[str, Any],
    policies: dict[int, tuple[int, Any]],
    items: np.ndarray,
    near: np.ndarray,
    hidden: set[int],
    first: int | None,
    **options: Any,
) -> bytes:
    return wording.word_firm(
        day=TODAY,
        tags=facts["tags"],
        facts=facts,
        policies=policies,
        items=items,
        near=near,
        hidden=hidden,
        first=first,
        **options,
    )


@pytest.mark.parametrize("first", [wording.PAGE, None])
def test_word_firm_bytes_equal_judging_with_evaluate(first: int | None) -> None:
    rules = _policies()
    policies = {100 + k: (1 + k % 3, r) for k, r in enumerate(rules)}
    firms = _firms(120, rules, 21)
    rng = np.random.default_rng(3)
    smith = wordbatch.Smith(TODAY)
    for facts in firms:
        items, near, _ = _stored(facts, policies, rng)
        got = _word_firm(facts, policies, items, near, set(), first, smith=smith)
        assert _decoded(got, policies) == _decoded(_reference(facts, policies, items, near, first), policies)
        assert orjson.loads(got)["v"]


def test_rules_it_does_not_compile_are_judged_by_evaluate() -> None:
    smith = wordbatch.Smith(TODAY)
    firm = smith.firm({"employees": 10})
    assert wordbatch.template({"any": []}) is None
    with pytest.raises(ValueError):
        eligibility.evaluate({"any": []}, firm.facts, today=TODAY)
    with pytest.raises(ValueError):
        smith.judge({"any": []}, firm)
    with pytest.raises(ValueError, match="不支持的运算符"):
        smith.judge({"field": "employees", "op": "near", "value": 3}, firm)
    empty = smith.judge({"all": []}, firm)
    assert empty == eligibility.evaluate({"all": []}, firm.facts, today=TODAY)
    assert wordbatch.full(smith.judge(None, firm), firm).summary == eligibility.NO_RULES_SUMMARY


@pytest.mark.parametrize("first", [wording.PAGE, None])
def test_word_chunk_bytes_equal_word_firm(first: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Judging a chunk policy by policy gives each firm `word_firm`'s bytes: over several batches, with
    hidden policies, and with candidates whose stored status is not what judging gives (the window is
    then found by judging)."""
    monkeypatch.setattr(wording, "BATCH", 16)
    rules = _policies()
    policies = {100 + k: (1 + k % 3, r) for k, r in enumerate(rules)}
    firms = _firms(90, rules, 31)
    rng = np.random.default_rng(7)
    ids = np.array(sorted(policies))
    items_parts, near_parts, hidden, expected = [], [], [], []
    mislabelled = 0
    for k, facts in enumerate(firms):
        items, near, wrong = _stored(facts, policies, rng, mislabel=True)
        if k % 11 == 5:  # a firm with nothing stored
            items, near = items[:0], near[:0]
        mislabelled += wrong is not None
        hide = frozenset(int(p) for p in rng.choice(ids, size=5, replace=False)) - {wrong}
        if k % 3 == 0:  # most firms hide nothing
            hide = frozenset()
        items_parts.append(items)
        near_parts.append(near)
        hidden.append(hide)
        expected.append(
            _word_firm(facts, policies, items, near, set(hide), first, through=TODAY + dt.timedelta(days=3))
        )
    assert mislabelled
    item_bounds = np.cumsum([0] + [len(p) for p in items_parts]).tolist()
    near_bounds = np.cumsum([0] + [len(p) for p in near_parts]).tolist()
    got = wording.word_chunk(
        day=TODAY,
        tags=[f["tags"] for f in firms],
        facts=firms,
        policies=policies,
        items=np.concatenate(items_parts),
        item_bounds=item_bounds,
        near=np.concatenate(near_parts),
        near_bounds=near_bounds,
        hidden=hidden,
        through=[TODAY + dt.timedelta(days=3)] * len(firms),
        first=first,
    )
    assert got == expected


def test_firms_in_the_same_state_share_one_verdict_whatever_their_values() -> None:
    """A verdict names the firm's values by token: firms meeting (or missing) the same conditions share
    its outcome and stored row, and each firm's own values are worded when read."""
    rules = {
        "all": [
            {"field": "annual_revenue", "op": "gte", "value": 500},
            {"field": "employees", "op": "lte", "value": 300},
            {"field": "established_on", "op": "years_since_gte", "value": 2},
        ]
    }
    smith = wordbatch.Smith(TODAY)
    base = {"annual_revenue": 800, "employees": 40, "established_on": dt.date(2020, 3, 1)}
    smith.judge(rules, smith.firm({**base, "annual_revenue": 900}))  # the first firm in a state is worded alone
    a = smith.firm(base)
    b = smith.firm({**base, "annual_revenue": 1234.5, "employees": 299, "established_on": dt.date(2015, 7, 9)})
    va, vb = smith.judge(rules, a), smith.judge(rules, b)
    assert va is vb and isinstance(va, wordbatch.Core) and va.status == eligibility.ELIGIBLE
    # One failed condition in a plain all-of: shared too, whatever the value that misses it.
    smith.judge(rules, smith.firm({**base, "annual_revenue": 130}))
    c = smith.firm({**base, "annual_revenue": 120})
    d = smith.firm({**base, "annual_revenue": 7})
    vc, vd = smith.judge(rules, c), smith.judge(rules, d)
    assert vc is vd and vc.status == eligibility.INELIGIBLE
    for firm, verdict in ((a, va), (b, vb), (c, vc), (d, vd)):
        assert wordbatch.full(verdict, firm) == eligibility.evaluate(rules, firm.facts, today=TODAY)
        raw = wording.pack(day=TODAY, tags=0, verdicts=[(1, 1, verdict)], window=[], changes=[], firm=firm)
        words = wording.unpack(raw)
        assert words is not None
        shown = words.verdict(1, 1, rules)
        expected = eligibility.evaluate(rules, firm.facts, today=TODAY)
        assert shown is not None and [c.reason for c in shown.conditions] == [c.reason for c in expected.conditions]
        assert shown.summary == expected.summary
    stored = wording.pack(day=TODAY, tags=0, verdicts=[(1, 1, vb)], window=[], changes=[], firm=b)
    assert b"1234.5" not in stored.split(b'"v":')[1]  # rows name states; the firm's values are kept once
    shown_b = wording.unpack(stored).verdict(1, 1, rules)  # type: ignore[union-attr]
    assert shown_b is not None and "1234.5 万元" in shown_b.conditions[0].reason
    # Two failed conditions are ordered by each firm's gaps: worded per firm.
    e = smith.firm({**base, "annual_revenue": 450, "employees": 900})
    f = smith.firm({**base, "annual_revenue": 100, "employees": 310})
    ve, vf = smith.judge(rules, e), smith.judge(rules, f)
    assert ve is not vf
    for firm, verdict in ((e, ve), (f, vf)):
        assert wordbatch.full(verdict, firm) == eligibility.evaluate(rules, firm.facts, today=TODAY)


def test_best_changes_equal_evaluates_when_verdicts_are_shared_between_firms() -> None:
    """`best_changes` keeps per verdict (`Core.changing`) what does not depend on the firm, and per condition
    and value each suggestion: firms sharing verdicts (one smith, values that differ) get evaluate's changes."""
    rules = _policies()
    smith = wordbatch.Smith(TODAY)
    shared = 0
    seen: set[int] = set()
    for facts in _firms(150, rules, 41):
        firm = smith.firm(facts)
        judged = {pid: smith.judge(r, firm) for pid, r in enumerate(rules)}
        chosen = [pid for pid, v in judged.items() if v.status != eligibility.ELIGIBLE][: wording.WINDOW * 2]
        for pid in chosen:
            shared += id(judged[pid]) in seen
            seen.add(id(judged[pid]))
        got = wordbatch.best_changes({pid: judged[pid] for pid in chosen}, firm)
        expected = eligibility.best_changes(
            {pid: eligibility.evaluate(rules[pid], facts, today=TODAY) for pid in chosen}
        )
        assert got == expected
    assert shared > 100  # verdicts met again by other firms, their suggestions kept


def test_a_packed_row_is_its_policy_and_versions() -> None:
    """`pack` keeps a verdict's serialised row for the policy and version it last packed: a verdict shared by two
    policies (no rules) or packed at another version gets its own row."""
    smith = wordbatch.Smith(TODAY)
    firm = smith.firm({"employees": 10})
    rules = {"field": "employees", "op": "gte", "value": 5}
    core = smith.judge(rules, firm)
    none = smith.judge(None, firm)
    for pid, version in [(1, 1), (1, 2), (2, 2), (1, 1)]:
        raw = wording.pack(
            day=TODAY, tags=0, verdicts=[(pid, version, core), (pid + 10, version, none)], window=[], changes=[]
        )
        rows = orjson.loads(raw)["v"]
        assert [row[:2] for row in rows] == [[pid, version], [pid + 10, version]]
        assert rows == [
            orjson.loads(orjson.dumps(wording._verdict_row(p, version, v))) for p, v in ((pid, core), (pid + 10, none))
        ]


def test_the_versions_of_wanted_policies_are_looked_up_by_id_however_large_and_a_missing_one_raises() -> None:
    import numpy as np
    import pytest

    from matcher.wording import _versions

    policies = {7: (3, None), 2_000_000_000_000: (5, None), 4: (1, None)}
    wanted = np.asarray([4, 2_000_000_000_000, 7, 4], dtype=np.int64)
    assert _versions(policies, wanted) == [1, 5, 3, 1]
    assert _versions(policies, np.zeros(0, dtype=np.int64)) == []
    with pytest.raises(KeyError):
        _versions(policies, np.asarray([4, 5], dtype=np.int64))
    with pytest.raises(KeyError):
        _versions({}, np.asarray([4], dtype=np.int64))
