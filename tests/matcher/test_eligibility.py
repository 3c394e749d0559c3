"""The eligibility engine: operators, three-valued logic, Chinese reasons, missing conditions,
vectorised evaluation agreeing with the one-firm evaluation, and the changes that open most policies."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalog.fields import FIELDS
from catalog.models import Tag
from catalog.rules import OPS, validate_rules
from matcher.eligibility import (
    ELIGIBLE,
    INELIGIBLE,
    LIKELY,
    MET,
    NOT_MET,
    OPERATORS,
    STATE_CODES,
    STATUS_CODES,
    UNKNOWN,
    FactsFrame,
    PolicyVerdict,
    best_changes,
    condition_states_many,
    evaluate,
    evaluate_many,
    facts_from_attributes,
    profile_facts,
    whole_years,
)
from profiles.models import Enterprise, EnterpriseQualification
from tests import factories

TODAY = dt.date(2024, 6, 1)


def facts(**values: Any) -> dict[str, Any]:
    """A full facts dict: every field unknown except those given."""
    return {name: None for name in FIELDS} | values


def judge(cond: dict[str, Any], **values: Any) -> tuple[str, str]:
    """Evaluate a one-condition rule and return (state, reason)."""
    verdict = evaluate(cond, facts(**values), today=TODAY)
    [result] = verdict.conditions
    return result.state, result.reason


# --------------------------------------------------------------------------- operators

# (field, op, value, a firm value that meets it, one that does not)
OPERATOR_CASES = [
    ("employees", "eq", 50, 50, 49),
    ("credit_standing", "eq", "good", "good", "normal"),
    ("credit_standing", "ne", "dishonest", "good", "dishonest"),
    ("annual_revenue", "gt", 5000, 5000.01, 5000),
    ("annual_revenue", "gte", 5000, 5000, 4999.99),
    ("employees", "lt", 300, 299, 300),
    ("employees", "lte", 300, 300, 301),
    ("established_on", "gt", "2020-12-31", dt.date(2021, 1, 1), dt.date(2020, 12, 31)),
    ("established_on", "gte", "2021-01-01", dt.date(2021, 1, 1), dt.date(2020, 12, 31)),
    ("established_on", "lt", "2021-01-01", dt.date(2020, 12, 31), dt.date(2021, 1, 1)),
    ("established_on", "lte", "2020-12-31", dt.date(2020, 12, 31), dt.date(2021, 1, 1)),
    ("employees", "between", [3, 100], 3, 101),
    ("size_class", "in", ["small", "micro"], "micro", "medium"),
    ("tax_credit_level", "not_in", ["C", "D"], "A", "D"),
    ("industry_code", "prefix", ["C39", "I65"], "I651", "I640"),
    ("region_code", "within_region", ["440100"], "440106", "440305"),
    (
        "qualifications",
        "has_any",
        ["高新技术企业", "科技型中小企业"],
        frozenset({"科技型中小企业"}),
        frozenset({"其他"}),
    ),
    (
        "qualifications",
        "has_all",
        ["高新技术企业", "科技型中小企业"],
        {"高新技术企业", "科技型中小企业"},
        {"高新技术企业"},
    ),
    ("tags", "has_none", ["孵化器在孵企业"], frozenset(), frozenset({"孵化器在孵企业"})),
    ("established_on", "years_since_gte", 3, dt.date(2021, 6, 1), dt.date(2021, 6, 2)),
    ("established_on", "years_since_lte", 3, dt.date(2020, 6, 2), dt.date(2020, 6, 1)),
    ("established_on", "date_between", ["2021-01-01", "2024-12-31"], dt.date(2024, 12, 31), dt.date(2020, 12, 31)),
]


def test_every_operator_of_the_rule_format_has_exactly_one_function() -> None:
    assert set(OPERATORS) == set(OPS)
    assert all(fn.__doc__ for fn in OPERATORS.values())


def test_operator_cases_cover_every_operator_and_are_valid_rules() -> None:
    assert {op for _, op, *_ in OPERATOR_CASES} == set(OPS)
    for field, op, value, *_ in OPERATOR_CASES:
        assert validate_rules({"field": field, "op": op, "value": value}) == []


@pytest.mark.parametrize(("field", "op", "value", "meets", "fails"), OPERATOR_CASES)
def test_operator_met_not_met_and_unknown(field: str, op: str, value: Any, meets: Any, fails: Any) -> None:
    cond = {"field": field, "op": op, "value": value}
    assert judge(cond, **{field: meets})[0] == MET
    assert judge(cond, **{field: fails})[0] == NOT_MET
    assert judge(cond, **{field: None})[0] == UNKNOWN
    assert evaluate(cond, {}, today=TODAY).status == LIKELY  # an absent key is unknown too


@pytest.mark.parametrize(
    ("start", "today", "years"),
    [
        (dt.date(2021, 6, 1), dt.date(2024, 6, 1), 3),
        (dt.date(2021, 6, 1), dt.date(2024, 5, 31), 2),
        (dt.date(2020, 2, 29), dt.date(2021, 2, 28), 0),
        (dt.date(2020, 2, 29), dt.date(2021, 3, 1), 1),
        (dt.date(2020, 2, 29), dt.date(2024, 2, 29), 4),
        (dt.date(2024, 6, 1), dt.date(2024, 6, 1), 0),
    ],
)
def test_whole_years_counts_calendar_years(start: dt.date, today: dt.date, years: int) -> None:
    assert whole_years(start, today) == years


def test_nan_number_is_unknown() -> None:
    assert judge({"field": "employees", "op": "gte", "value": 1}, employees=float("nan"))[0] == UNKNOWN


# --------------------------------------------------------------------------- three-valued logic

# Three independent conditions: employees / annual_revenue / total_assets ≥ 10; a value of 20
# meets, 5 fails, None is unknown.
VALUE_OF = {MET: 20, NOT_MET: 5, UNKNOWN: None}
CHILD_FIELDS = ("employees", "annual_revenue", "total_assets")
M, N, U = MET, NOT_MET, UNKNOWN
ALL_TABLE = {
    (M, M): M,
    (M, N): N,
    (M, U): U,
    (N, M): N,
    (N, N): N,
    (N, U): N,
    (U, M): U,
    (U, N): N,
    (U, U): U,
}
ANY_TABLE = {
    (M, M): M,
    (M, N): M,
    (M, U): M,
    (N, M): M,
    (N, N): N,
    (N, U): U,
    (U, M): M,
    (U, N): U,
    (U, U): U,
}
NOT_TABLE = {M: N, N: M, U: U}
STATUS_OF = {M: ELIGIBLE, N: INELIGIBLE, U: LIKELY}


def child(i: int) -> dict[str, Any]:
    return {"field": CHILD_FIELDS[i], "op": "gte", "value": 10}


def firm_with(*states: str) -> dict[str, Any]:
    return facts(**{CHILD_FIELDS[i]: VALUE_OF[s] for i, s in enumerate(states)})


@pytest.mark.parametrize(("key", "table"), [("all", ALL_TABLE), ("any", ANY_TABLE)])
def test_group_truth_tables(key: str, table: dict[tuple[str, str], str]) -> None:
    rules = {key: [child(0), child(1)]}
    frame = FactsFrame.from_records([firm_with(a, b) for a, b in table])
    many = evaluate_many(rules, frame, today=TODAY)
    for i, ((a, b), expected) in enumerate(table.items()):
        verdict = evaluate(rules, firm_with(a, b), today=TODAY)
        assert verdict.status == STATUS_OF[expected], (a, b)
        assert many[i] == verdict.code


@pytest.mark.parametrize(("state", "expected"), NOT_TABLE.items())
def test_not_inverts_met_and_keeps_unknown(state: str, expected: str) -> None:
    rules = {"not": child(0)}
    assert evaluate(rules, firm_with(state), today=TODAY).status == STATUS_OF[expected]
    many = evaluate_many(rules, FactsFrame.from_records([firm_with(state)]), today=TODAY)
    assert many.tolist() == [STATUS_CODES[STATUS_OF[expected]]]


def test_no_rules_means_eligible() -> None:
    verdict = evaluate(None, facts(), today=TODAY)
    assert (verdict.status, verdict.conditions, verdict.missing) == (ELIGIBLE, [], [])
    assert evaluate_many(None, FactsFrame.from_records([facts(), facts()]), today=TODAY).tolist() == [2, 2]


# --------------------------------------------------------------------------- reasons

RD = {"field": "rd_ratio", "op": "gte", "value": 5}


def test_not_met_reason_names_threshold_and_firm_value() -> None:
    assert judge(RD, rd_ratio=3.2) == (NOT_MET, "研发费用占营业收入比例需 ≥ 5%，当前 3.2%")


def test_met_reason_names_threshold_and_firm_value() -> None:
    assert judge(RD, rd_ratio=6.1) == (MET, "研发费用占营业收入比例 ≥ 5%（当前 6.1%）")


def test_unknown_derived_field_names_the_inputs_to_fill() -> None:
    assert judge(RD, annual_revenue=1000) == (
        UNKNOWN,
        "缺少「年研发费用」信息，无法判断：研发费用占营业收入比例需 ≥ 5%",
    )
    state, reason = judge(RD)
    assert reason.startswith("缺少「年研发费用」「年营业收入」信息")
    _, reason = judge({"field": "years_established", "op": "gte", "value": 3})
    assert reason == "缺少「成立日期」信息，无法判断：成立年限需 ≥ 3 年"
    _, reason = judge({"field": "size_class", "op": "in", "value": ["small", "micro"]}, industry_code="I651")
    assert reason == "缺少「从业人数」「年营业收入」信息，无法判断：企业规模需为 小型、微型"


def test_reasons_show_regions_industries_enums_and_dates_by_name() -> None:
    region = {"field": "region_code", "op": "within_region", "value": ["440100"]}
    assert judge(region, region_code="440305") == (NOT_MET, "所在地区需位于 广州市 范围内，当前 深圳市南山区")
    industry = {"field": "industry_code", "op": "prefix", "value": ["I65"]}
    assert judge(industry, industry_code="C3911") == (
        NOT_MET,
        "所属行业需属于 软件和信息技术服务业（I65），当前 计算机整机制造（C3911）",
    )
    size = {"field": "size_class", "op": "in", "value": ["small", "micro"]}
    assert judge(size, size_class="medium") == (NOT_MET, "企业规模需为 小型、微型，当前 中型")
    age = {"field": "established_on", "op": "years_since_gte", "value": 3}
    assert judge(age, established_on=dt.date(2022, 3, 1)) == (
        NOT_MET,
        "需成立满 3 年，当前 2 年（成立日期 2022-03-01）",
    )
    quals = {"field": "qualifications", "op": "has_all", "value": ["高新技术企业", "科技型中小企业"]}
    assert judge(quals, qualifications=frozenset({"高新技术企业"})) == (
        NOT_MET,
        "需具备以下全部资质：高新技术企业、科技型中小企业，当前 已具备 高新技术企业，缺少 科技型中小企业",
    )


def test_label_is_the_threshold_text() -> None:
    cond = {"field": "region_code", "op": "within_region", "value": ["440106"], "label": "注册地在天河区"}
    assert judge(cond, region_code="440106") == (MET, "注册地在天河区（当前 广州市天河区）")
    assert judge(cond, region_code="440305") == (NOT_MET, "需满足「注册地在天河区」，当前 深圳市南山区")


def test_negated_condition_is_worded_as_its_opposite() -> None:
    rules = {"not": {"field": "credit_standing", "op": "eq", "value": "dishonest"}}
    verdict = evaluate(rules, facts(credit_standing="dishonest"), today=TODAY)
    [result] = verdict.conditions
    assert (result.state, result.negated, result.reason) == (NOT_MET, True, "信用状况需不为 失信，当前 失信")
    assert verdict.status == INELIGIBLE


# --------------------------------------------------------------------------- facts


def transient_enterprise(**kw: Any) -> Enterprise:
    quals = kw.pop("quals", {})
    ent = Enterprise(**kw)
    ent.qualifications = [
        EnterpriseQualification(tag=Tag(name=name), valid_until_on=until) for name, until in quals.items()
    ]
    return ent


def test_expired_qualification_does_not_count() -> None:
    ent = transient_enterprise(
        established_on=dt.date(2021, 6, 1),
        quals={"高新技术企业": TODAY - dt.timedelta(days=1), "科技型中小企业": TODAY, "创新型中小企业": None},
    )
    got = profile_facts(ent, TODAY)
    assert got["qualifications"] == {"科技型中小企业", "创新型中小企业"}
    assert got["years_established"] == 3
    assert got["tags"] == frozenset()
    assert set(got) == set(FIELDS)
    rules = {"field": "qualifications", "op": "has_any", "value": ["高新技术企业"]}
    assert evaluate(rules, got, today=TODAY).status == INELIGIBLE


def test_profile_facts_of_a_stored_enterprise(db) -> None:  # type: ignore[no-untyped-def]
    name = f"测试资质{factories.n()}"
    factories.make_tag(db, name=name, kind="qualification")
    ent = factories.make_enterprise(db, qualifications=[{"name": name}])
    got = profile_facts(ent, TODAY, tags={"制造业"})
    assert got["qualifications"] == {name}
    assert got["tags"] == {"制造业"}
    assert got["size_class"] == "small" and got["rd_ratio"] == 5.0
    frame = FactsFrame.from_enterprises([ent], TODAY, tags={ent.id: {"制造业"}})
    assert frame.ids.tolist() == [ent.id]
    rules = {"all": [RD, {"field": "qualifications", "op": "has_any", "value": [name]}]}
    assert evaluate_many(rules, frame, today=TODAY).tolist() == [2]


def test_facts_from_attributes_derives_and_normalises() -> None:
    got = facts_from_attributes(
        {
            "industry_code": "ｉ６５１",
            "region_code": "440106",
            "employees": "50",
            "annual_revenue": 2000,
            "rd_expense": 120,
            "established_on": "2021-06-01",
            "credit_standing": "良好",
            "qualifications": "高新技术企业、科技型中小企业",
        },
        TODAY,
    )
    assert got["industry_code"] == "I651"
    assert got["employees"] == 50
    assert got["size_class"] == "small"
    assert got["rd_ratio"] == 6.0
    assert got["years_established"] == 3
    assert got["credit_standing"] == "good"
    assert got["qualifications"] == {"高新技术企业", "科技型中小企业"}
    assert got["total_assets"] is None and got["tags"] is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"region_code": "12345"}, "所在地区"),
        ({"industry_code": "X99"}, "所属行业"),
        ({"employees": -1}, "从业人数不能为负数"),
        ({"employees": 2.5}, "从业人数应为整数"),
        ({"annual_revenue": "很多"}, "年营业收入应为数字"),
        ({"established_on": "2099-01-01"}, "成立日期不能晚于今天"),
        ({"credit_standing": "excellent"}, "信用状况应为"),
        ({"revenue": 1}, "未知字段 revenue"),
    ],
)
def test_facts_from_attributes_rejects_bad_input_in_chinese(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        facts_from_attributes(data, TODAY)


# --------------------------------------------------------------------------- missing and summary

HIGH_TECH = {
    "all": [
        {"field": "region_code", "op": "within_region", "value": ["440100"]},
        {"field": "established_on", "op": "years_since_gte", "value": 1},
        {
            "any": [
                {"field": "qualifications", "op": "has_any", "value": ["高新技术企业"]},
                {"field": "rd_ratio", "op": "gte", "value": 5},
            ]
        },
        {"field": "credit_standing", "op": "ne", "value": "dishonest"},
    ]
}
GOOD_FIRM = facts(
    region_code="440106",
    established_on=dt.date(2020, 1, 1),
    qualifications=frozenset({"高新技术企业"}),
    rd_ratio=1.0,
    credit_standing="good",
)


def test_failures_in_an_any_branch_are_not_missing_when_another_branch_is_met() -> None:
    verdict = evaluate(HIGH_TECH, GOOD_FIRM, today=TODAY)
    assert verdict.status == ELIGIBLE
    assert [c.state for c in verdict.conditions] == [MET, MET, MET, NOT_MET, MET]
    assert verdict.missing == []
    assert verdict.summary == "符合全部 4 项条件"


def test_an_unmet_any_lists_only_its_closest_branch() -> None:
    rules = {
        "any": [
            {
                "all": [
                    {"field": "employees", "op": "gte", "value": 100},
                    {"field": "annual_revenue", "op": "gte", "value": 1000},
                ]
            },
            {"field": "rd_ratio", "op": "gte", "value": 5},
        ]
    }
    verdict = evaluate(rules, facts(employees=10, annual_revenue=10, rd_ratio=3.2), today=TODAY)
    assert verdict.status == INELIGIBLE
    assert [r.path for r in verdict.missing] == ["rules.any[1]"]
    assert verdict.summary == "还差 1 项条件：研发费用占营业收入比例需 ≥ 5%，当前 3.2%"


def test_missing_puts_unknown_first_then_failures_by_gap() -> None:
    rules = {
        "all": [
            {"field": "employees", "op": "gte", "value": 100},  # 10: gap 0.9
            {"field": "annual_revenue", "op": "gte", "value": 1000},  # 900: gap 0.1
            {"field": "total_assets", "op": "gte", "value": 1},  # unknown
        ]
    }
    verdict = evaluate(rules, facts(employees=10, annual_revenue=900), today=TODAY)
    assert [r.field for r in verdict.missing] == ["total_assets", "annual_revenue", "employees"]
    assert verdict.missing[1].gap == pytest.approx(0.1)
    assert verdict.fields_to_fill == ["total_assets"]
    assert verdict.summary.endswith("；另需补充：资产总额")


def test_likely_verdict_says_which_fields_to_fill() -> None:
    firm = GOOD_FIRM | {"qualifications": frozenset(), "rd_ratio": None, "annual_revenue": 800}
    verdict = evaluate(HIGH_TECH, firm, today=TODAY)
    assert verdict.status == LIKELY
    assert verdict.fields_to_fill == ["rd_expense"]
    assert verdict.summary == "需补充：年研发费用"
    # The failed has_any branch is not reported: the unknown branch is the closer one.
    assert [r.field for r in verdict.missing] == ["rd_ratio"]


# --------------------------------------------------------------------------- many firms


def test_facts_frame_from_dataframe_derives_like_from_records() -> None:
    records = [
        GOOD_FIRM | {"years_established": 4, "rd_expense": 10.0, "annual_revenue": 1000.0},
        facts(
            region_code="440305",
            rd_expense=60.0,
            annual_revenue=1000.0,
            rd_ratio=6.0,
            established_on=dt.date(2023, 7, 1),
            years_established=0,
            qualifications=frozenset(),
        ),
        facts(),
    ]
    df = pd.DataFrame(records).drop(columns=["rd_ratio", "years_established"])
    df["qualifications"] = [["高新技术企业"], [], None]
    from_df = FactsFrame.from_dataframe(df, today=TODAY)
    assert from_df.numbers["rd_ratio"][1] == 6.0
    assert from_df.numbers["years_established"][:2].tolist() == [4, 0]
    assert from_df.strings("region_code").tolist() == ["440106", "440305", None]
    from_records = FactsFrame.from_records(records)
    for rules in (HIGH_TECH, {"field": "years_established", "op": "gte", "value": 1}, RD):
        expected = [evaluate(rules, r, today=TODAY).code for r in records]
        assert evaluate_many(rules, from_df, today=TODAY).tolist() == expected
        assert evaluate_many(rules, from_records, today=TODAY).tolist() == expected


def test_facts_frame_accepts_one_boolean_column_per_tag() -> None:
    df = pd.DataFrame({"qualifications:高新技术企业": [True, False], "employees": [10, np.nan]})
    frame = FactsFrame.from_dataframe(df)
    rules = {"field": "qualifications", "op": "has_any", "value": ["高新技术企业"]}
    assert evaluate_many(rules, frame, today=TODAY).tolist() == [2, 0]
    assert evaluate_many({"field": "employees", "op": "gte", "value": 5}, frame, today=TODAY).tolist() == [2, 1]


def test_condition_states_many_match_condition_results() -> None:
    firms = [GOOD_FIRM, facts(), GOOD_FIRM | {"credit_standing": "dishonest", "qualifications": frozenset()}]
    states = condition_states_many(HIGH_TECH, FactsFrame.from_records(firms), today=TODAY)
    for i, firm in enumerate(firms):
        for result in evaluate(HIGH_TECH, firm, today=TODAY).conditions:
            assert states[result.path][i] == STATE_CODES[result.state]


# --------------------------------------------------------------------------- best changes


def verdicts_for(firm: dict[str, Any], rules_by_id: dict[int, dict[str, Any]]) -> dict[int, PolicyVerdict]:
    return {pid: evaluate(rules, firm, today=TODAY) for pid, rules in rules_by_id.items()}


def test_best_changes_picks_the_change_that_opens_most_policies() -> None:
    firm = facts(rd_ratio=3.2, annual_revenue=1000, employees=20, qualifications=frozenset())
    rules_by_id = {
        1: {"field": "rd_ratio", "op": "gte", "value": 5},
        2: {"field": "rd_ratio", "op": "gte", "value": 4},
        3: {"all": [{"field": "rd_ratio", "op": "gte", "value": 4}, {"field": "employees", "op": "gte", "value": 100}]},
        4: {"field": "qualifications", "op": "has_any", "value": ["高新技术企业"]},
        5: {"all": [RD, {"field": "qualifications", "op": "has_any", "value": ["高新技术企业"]}]},  # needs both
        6: {"field": "total_assets", "op": "gte", "value": 100},
        7: {
            "all": [
                {"field": "total_assets", "op": "lte", "value": 5000},
                {"field": "export_revenue", "op": "gt", "value": 0},
            ]
        },
    }
    changes = best_changes(verdicts_for(firm, rules_by_id))
    assert [c.description for c in changes] == [
        "研发费用占营业收入比例提高到 5%",
        "补充「资产总额」",
        "取得「高新技术企业」资质",
    ]
    assert changes[0].policy_ids == [1, 2] and changes[0].target == 5 and changes[0].field == "rd_ratio"
    assert changes[1].policy_ids == [6] and changes[1].kind == "fill"
    assert changes[2].policy_ids == [4] and changes[2].target == "高新技术企业"
    # Policies 3, 5 and 7 each need two changes, so no single change opens them.
    every = best_changes(verdicts_for(firm, rules_by_id), limit=10)
    assert {pid for c in every for pid in c.policy_ids} == {1, 2, 4, 6}


def test_best_changes_prefers_the_smaller_step_and_skips_what_a_firm_cannot_change() -> None:
    firm = facts(rd_ratio=3.2, region_code="440305", annual_revenue=6000)
    rules_by_id = {
        1: {"field": "rd_ratio", "op": "gt", "value": 4},
        2: {"field": "rd_ratio", "op": "gt", "value": 4.5},
        3: {"field": "region_code", "op": "within_region", "value": ["440100"]},
        4: {"field": "annual_revenue", "op": "lt", "value": 5000},
    }
    changes = best_changes(verdicts_for(firm, rules_by_id))
    assert [(c.description, c.policy_ids) for c in changes] == [
        ("研发费用占营业收入比例提高到 4.5%以上", [1, 2]),
        ("年营业收入降低到 5000 万元以下", [4]),
    ]


# --------------------------------------------------------------------------- property: many == one by one

NUMBERS = [0, 1, 3, 5, 10, 50, 100, 300, 1000, 5000, 20000, 2.5, 4.99]
DATES = [
    dt.date(y, m, d)
    for y, m, d in [
        (2019, 2, 28),
        (2020, 2, 29),
        (2021, 1, 1),
        (2021, 6, 1),
        (2021, 6, 2),
        (2023, 3, 1),
        (2024, 2, 29),
        (2024, 6, 1),
        (2024, 12, 31),
    ]
]
CODES = ["C", "C39", "C3911", "C2611", "I65", "I651", "M73", "F51"]
REGIONS = ["100000", "440000", "440100", "440106", "440305", "442000", "110000"]
TAGS = ["高新技术企业", "科技型中小企业", "文化创意", "孵化器在孵企业"]
TODAYS = [dt.date(2024, 6, 1), dt.date(2024, 2, 29), dt.date(2025, 3, 1)]


def _distinct(pool: list[Any]) -> st.SearchStrategy[list[Any]]:
    return st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique=True)


def _pair(pool: list[Any]) -> st.SearchStrategy[list[Any]]:
    return st.tuples(st.sampled_from(pool), st.sampled_from(pool)).map(sorted)


def _values(field: str) -> tuple[st.SearchStrategy[Any], dict[str, st.SearchStrategy[Any]]]:
    """(a firm value strategy, op → rule value strategy) for one field."""
    f = FIELDS[field]
    if f.type == "number":
        num = st.sampled_from(NUMBERS)
        ops = {op: num for op in ("eq", "ne", "gt", "gte", "lt", "lte")} | {"between": _pair(NUMBERS)}
        return num, ops
    if f.type == "date":
        iso = st.sampled_from([d.isoformat() for d in DATES])
        years = st.sampled_from([0, 1, 2.5, 3, 5])
        ops = {op: iso for op in ("gt", "gte", "lt", "lte")} | {"years_since_gte": years, "years_since_lte": years}
        ops["date_between"] = _pair([d.isoformat() for d in DATES])
        return st.sampled_from(DATES), ops
    if f.type == "set":
        return st.frozensets(st.sampled_from(TAGS), max_size=3), {
            op: _distinct(TAGS) for op in ("has_any", "has_all", "has_none")
        }
    pool = {"enum": [v for v, _ in f.choices], "code": CODES, "region": REGIONS}[f.type]
    ops = {"eq": st.sampled_from(pool), "ne": st.sampled_from(pool), "in": _distinct(pool), "not_in": _distinct(pool)}
    if f.type == "code":
        ops["prefix"] = _distinct(CODES)
    if f.type == "region":
        ops["within_region"] = _distinct(REGIONS)
    return st.sampled_from(pool), ops


@st.composite
def conditions(draw: st.DrawFn) -> dict[str, Any]:
    field = draw(st.sampled_from(sorted(FIELDS)))
    _, ops = _values(field)
    op = draw(st.sampled_from(sorted(ops)))
    return {"field": field, "op": op, "value": draw(ops[op])}


rule_trees = st.recursive(
    conditions(),
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=4).map(lambda xs: {"all": xs}),
        st.lists(children, min_size=1, max_size=4).map(lambda xs: {"any": xs}),
        children.map(lambda x: {"not": x}),
    ),
    max_leaves=10,
)


@st.composite
def firms(draw: st.DrawFn) -> dict[str, Any]:
    out = {}
    for name in FIELDS:
        value, _ = _values(name)
        out[name] = draw(st.one_of(st.none(), value))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules=rule_trees, firms_=st.lists(firms(), min_size=1, max_size=12), today=st.sampled_from(TODAYS))
def test_evaluate_many_agrees_with_evaluate_one_by_one(
    rules: dict[str, Any], firms_: list[dict[str, Any]], today: dt.date
) -> None:
    assert validate_rules(rules) == []
    frame = FactsFrame.from_records(firms_)
    one_by_one = [evaluate(rules, firm, today=today) for firm in firms_]
    assert evaluate_many(rules, frame, today=today).tolist() == [v.code for v in one_by_one]
    states = condition_states_many(rules, frame, today=today)
    for i, verdict in enumerate(one_by_one):
        assert {r.path: STATE_CODES[r.state] for r in verdict.conditions} == {p: int(s[i]) for p, s in states.items()}
        assert (verdict.status == ELIGIBLE) == (verdict.missing == [])


@pytest.mark.parametrize(("field", "op", "value", "meets", "fails"), OPERATOR_CASES)
def test_every_reason_reads_right_after_its_mark(field: str, op: str, value: Any, meets: Any, fails: Any) -> None:
    """Issue 14 item 7: no "✓ 满足：不满足「…」" — plain and negated conditions read right for ✓, ✗ and ?."""
    for negated in (False, True):
        rules: dict[str, Any] = {"field": field, "op": op, "value": value}
        if negated:
            rules = {"not": rules}
        # Under a "not", the firm that fails the plain condition meets the negated one.
        met_value, failed_value = (fails, meets) if negated else (meets, fails)
        for firm, expected in ((met_value, MET), (failed_value, NOT_MET), (None, UNKNOWN)):
            verdict = evaluate(rules, facts(**{field: firm}), today=TODAY)
            [result] = verdict.conditions
            assert result.state == expected
            assert "不满足" not in result.reason, (op, negated, result.reason)
            assert "不需" not in result.reason and "需不满足" not in result.reason
            if expected == MET:
                assert "需" not in result.reason.split("（当前")[0], result.reason


def test_negated_industry_prefix_is_worded_as_not_belonging() -> None:
    rules = {"not": {"field": "industry_code", "op": "prefix", "value": ["C39", "I65"]}}
    met = evaluate(rules, facts(industry_code="C1311"), today=TODAY).conditions[0]
    assert met.state == MET
    assert met.reason.startswith("所属行业不属于 ") and "中任何一类（当前 " in met.reason
    failed = evaluate(rules, facts(industry_code="I6513"), today=TODAY).conditions[0]
    assert failed.reason.startswith("所属行业需不属于 ")


def test_negated_labelled_condition_reads_as_not_that_case() -> None:
    rules = {"not": {"field": "tags", "op": "has_any", "value": ["孵化器在孵企业"], "label": "在孵企业"}}
    met = evaluate(rules, facts(tags=frozenset()), today=TODAY).conditions[0]
    assert met.reason.startswith("并非「在孵企业」的情形")
