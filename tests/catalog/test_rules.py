"""The eligibility rule format: schema, validation, error codes and paths, Chinese wording."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from catalog.fields import FIELDS
from catalog.rules import (
    MAX_CONDITIONS,
    MAX_DEPTH,
    OPS,
    OPS_BY_TYPE,
    RULES_JSON_SCHEMA,
    check_rules,
    describe_condition,
    describe_rules,
    iter_conditions,
    rule_fields,
    validate_rules,
)
from core.errors import ValidationFailed

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "rules.md"
SCHEMA_FILE = ROOT / "docs" / "eligibility-rules.schema.json"

KNOWN_TAGS = {
    "高新技术企业",
    "科技型中小企业",
    "专精特新中小企业",
    "专精特新“小巨人”企业",
    "文化创意",
    "孵化器在孵企业",
}
REGION_NAMES = {"330100": "杭州市", "330106": "西湖区", "330108": "滨江区"}

# The three worked examples of docs/rules.md, kept here verbatim so a change to either shows up.
HIGH_TECH_AWARD = {
    "all": [
        {"field": "region_code", "op": "within_region", "value": ["330106"], "label": "注册地和税务征管关系在西湖区"},
        {"field": "qualifications", "op": "has_any", "value": ["高新技术企业"]},
        {"field": "established_on", "op": "years_since_gte", "value": 1},
        {
            "id": "rd-threshold",
            "label": "近一年研发费用占营业收入比例符合高新技术企业认定标准",
            "any": [
                {
                    "all": [
                        {"field": "annual_revenue", "op": "lte", "value": 5000},
                        {"field": "rd_ratio", "op": "gte", "value": 5},
                    ]
                },
                {
                    "all": [
                        {"field": "annual_revenue", "op": "gt", "value": 5000},
                        {"field": "annual_revenue", "op": "lte", "value": 20000},
                        {"field": "rd_ratio", "op": "gte", "value": 4},
                    ]
                },
                {
                    "all": [
                        {"field": "annual_revenue", "op": "gt", "value": 20000},
                        {"field": "rd_ratio", "op": "gte", "value": 3},
                    ]
                },
            ],
        },
        {"field": "credit_standing", "op": "ne", "value": "dishonest"},
        {"field": "tax_credit_level", "op": "in", "value": ["A", "B", "M"]},
    ]
}
SRDI_LOAN_SUBSIDY = {
    "all": [
        {"field": "region_code", "op": "within_region", "value": ["330100"]},
        {"field": "qualifications", "op": "has_any", "value": ["专精特新中小企业", "专精特新“小巨人”企业"]},
        {"field": "size_class", "op": "in", "value": ["medium", "small", "micro"]},
        {"field": "industry_code", "op": "prefix", "value": ["C", "I65", "M"]},
        {
            "id": "credit",
            "not": {
                "any": [
                    {"field": "credit_standing", "op": "eq", "value": "dishonest"},
                    {"field": "tax_credit_level", "op": "in", "value": ["C", "D"]},
                ]
            },
        },
    ]
}
SMALL_FIRM_RENT_SUBSIDY = {
    "all": [
        {"field": "region_code", "op": "within_region", "value": ["330106", "330108"]},
        {"field": "size_class", "op": "in", "value": ["small", "micro"]},
        {"field": "established_on", "op": "date_between", "value": ["2021-01-01", "2024-12-31"]},
        {"field": "employees", "op": "between", "value": [3, 100]},
        {"field": "annual_revenue", "op": "lte", "value": 3000},
        {
            "any": [
                {"field": "industry_code", "op": "prefix", "value": ["I65", "M73", "M75"]},
                {"field": "tags", "op": "has_any", "value": ["文化创意"]},
            ]
        },
        {"field": "tags", "op": "has_none", "value": ["孵化器在孵企业"], "label": "未在孵化器享受免租"},
    ]
}
DOC_EXAMPLES = [HIGH_TECH_AWARD, SRDI_LOAN_SUBSIDY, SMALL_FIRM_RENT_SUBSIDY]


def cond(field: str, op: str, value: Any, **extra: Any) -> dict[str, Any]:
    return {"field": field, "op": op, "value": value, **extra}


OK = cond("rd_ratio", "gte", 5)


def errors_of(rules: Any, **kw: Any) -> list[tuple[str, str]]:
    return [(e.field, e.code) for e in validate_rules(rules, **kw)]


def docs_json_blocks() -> list[Any]:
    return [json.loads(b) for b in re.findall(r"```json\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)]


# --------------------------------------------------------------------------- schema and docs


def test_schema_is_a_valid_draft_2020_12_schema_with_the_agreed_id():
    Draft202012Validator.check_schema(RULES_JSON_SCHEMA)
    assert RULES_JSON_SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert RULES_JSON_SCHEMA["$id"] == "https://huiqi.example/schemas/eligibility-rules.json"


def test_published_schema_file_equals_the_schema_in_code():
    text = SCHEMA_FILE.read_text(encoding="utf-8")
    assert json.loads(text) == RULES_JSON_SCHEMA
    assert text.strip() == json.dumps(RULES_JSON_SCHEMA, indent=2, ensure_ascii=False)


def test_schema_alone_accepts_the_examples_and_null():
    validator = Draft202012Validator(RULES_JSON_SCHEMA)
    for rules in [None, *DOC_EXAMPLES]:
        assert list(validator.iter_errors(rules)) == []


def test_schema_lists_every_operator():
    assert RULES_JSON_SCHEMA["$defs"]["condition"]["properties"]["op"]["enum"] == list(OPS)


@pytest.mark.parametrize("rules", DOC_EXAMPLES, ids=["high-tech-award", "srdi-loan-subsidy", "rent-subsidy"])
def test_worked_examples_are_valid(rules):
    assert validate_rules(rules, known_tags=KNOWN_TAGS) == []


def test_worked_examples_in_the_test_are_the_ones_in_the_docs():
    blocks = docs_json_blocks()
    for example in DOC_EXAMPLES:
        assert example in blocks


def test_every_json_block_in_the_docs_is_a_valid_rule_tree():
    blocks = docs_json_blocks()
    assert len(blocks) >= 5
    for block in blocks:
        assert validate_rules(block, known_tags=KNOWN_TAGS) == [], block


def test_docs_field_table_matches_FIELDS():
    text = DOCS.read_text(encoding="utf-8")
    section = text[text.index("## 3. 字段表") : text.index("## 4.")]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \| (\w+) \| ([^|]+) \| ([^|]*) \|", section, re.M)
    table = {name: (label.strip(), ftype, unit.strip(), derived.strip()) for name, label, ftype, unit, derived in rows}
    expected = {f.name: (f.label, f.type, f.unit or "—", "是" if f.derived else "") for f in FIELDS.values()}
    assert table == expected


def test_docs_describe_every_operator_and_error_code():
    text = DOCS.read_text(encoding="utf-8")
    for op in OPS:
        assert f"| `{op}` |" in text
    for code in (
        "schema",
        "unknown_field",
        "op_not_allowed",
        "bad_value",
        "unknown_tag",
        "duplicate_id",
        "too_deep",
        "too_many_conditions",
    ):
        assert f"| `{code}` |" in text


# --------------------------------------------------------------------------- valid inputs


def test_no_rules_is_valid():
    assert validate_rules(None) == []
    check_rules(None)


def test_a_single_condition_is_a_whole_tree():
    assert validate_rules(OK) == []


def test_labels_and_ids_are_allowed_on_every_node():
    rules = {
        "id": "root",
        "label": "基本条件",
        "all": [cond("employees", "lt", 300, id="c1", label="从业人数少于 300 人")],
    }
    assert validate_rules(rules) == []


def test_tags_are_not_checked_without_a_tag_list():
    assert validate_rules(cond("qualifications", "has_any", ["高企"])) == []


def test_limits_are_inclusive():
    deepest = OK
    for _ in range(MAX_DEPTH - 1):
        deepest = {"not": deepest}
    assert validate_rules(deepest) == []
    assert validate_rules({"all": [OK] * MAX_CONDITIONS}) == []


def test_check_rules_passes_silently_on_valid_rules():
    check_rules(HIGH_TECH_AWARD, known_tags=KNOWN_TAGS)


# --------------------------------------------------------------------------- error codes and paths


@pytest.mark.parametrize(
    ("rules", "path", "reason"),
    [
        ({"all": []}, "rules.all", "列表不能为空"),
        ({"all": [{"field": "rd_ratio", "value": 5}]}, "rules.all[0].op", "缺少必填项 op"),
        ({"all": [OK, {}]}, "rules.all[1]", "节点应为条件（含 field、op、value）或组合（含 all、any、not 其中之一）"),
        ({"all": [OK], "any": [OK]}, "rules", "组合节点只能包含 all、any、not 其中之一，实际包含 all、any"),
        ({"all": [OK], "note": "x"}, "rules.note", "不允许的属性 note（可用：all、any、not、label、id）"),
        (cond("rd_ratio", "gte", 5, unit="%"), "rules.unit", "不允许的属性 unit（可用：field、op、value、label、id）"),
        ({"any": [OK, "rd_ratio >= 5"]}, "rules.any[1]", "应为对象，实际为字符串"),
        ({"not": [OK]}, "rules.not", "应为对象，实际为列表"),
        (cond("rd_ratio", "ge", 5), "rules.op", "不支持的运算符 ge"),
        (cond(5, "gte", 5), "rules.field", "应为字符串，实际为数字"),
        (cond("rd_ratio", "gte", True), "rules.value", "应为数字或字符串，实际为布尔值"),
        (cond("rd_ratio", "gte", "5"), "rules.value", '字段 rd_ratio 为数值型，比较值应为数字，实际为 "5"'),
        (cond("established_on", "gte", "2020/01/01"), "rules.value", "日期格式应为 YYYY-MM-DD"),
        (cond("annual_revenue", "between", [500]), "rules.value", "应恰好包含 2 项，实际 1 项"),
        (cond("annual_revenue", "between", [500, "2万"]), "rules.value[1]", "应为数字，实际为字符串"),
        (cond("size_class", "in", []), "rules.value", "列表不能为空"),
        (cond("size_class", "in", ["small", "small"]), "rules.value", "列表中有重复项"),
        (cond("industry_code", "prefix", ["c39"]), "rules.value[0]", "行业代码前缀应为 1 个大写门类字母加 0–4 位数字"),
        (cond("industry_code", "prefix", "C39"), "rules.value", "应为列表，实际为字符串"),
        (cond("region_code", "within_region", ["3301"]), "rules.value[0]", "地区代码应为 6 位 GB/T 2260 行政区划代码"),
        (cond("established_on", "years_since_gte", -1), "rules.value", "不能小于 0"),
        (cond("established_on", "date_between", ["2021-01-01"]), "rules.value", "应恰好包含 2 项"),
        (cond("rd_ratio", "gte", 5, label="x" * 201), "rules.label", "长度不能超过 200 个字符，实际 201 个"),
        (cond("rd_ratio", "gte", 5, label="   "), "rules.label", "不能为空或只有空白"),
        (cond("rd_ratio", "gte", 5, label=""), "rules.label", "不能为空或只有空白"),
        (cond("rd_ratio", "gte", 5, id="a b"), "rules.id", "不能为空，也不能包含空白字符"),
        ([OK], "rules", "应为对象，实际为列表"),
    ],
)
def test_schema_errors_have_the_path_and_a_chinese_reason(rules, path, reason):
    errors = validate_rules(rules)
    matching = [e for e in errors if e.field == path and e.reason.startswith(reason)]
    assert matching, errors
    assert {e.code for e in matching} == {"schema"}


def test_unknown_field_names_the_available_fields_and_a_close_match():
    [error] = validate_rules({"all": [OK, cond("revenue", "gte", 500)]})
    assert (error.field, error.code) == ("rules.all[1].field", "unknown_field")
    assert error.reason.startswith("未知字段 revenue（可用字段：region_code、industry_code、")
    assert "annual_revenue" in error.reason.split("）", 1)[1]  # the suggestion after the list


@pytest.mark.parametrize(
    ("field", "op", "value", "reason"),
    [
        (
            "rd_ratio",
            "prefix",
            ["C"],
            "字段 rd_ratio 为数值型，不支持运算符 prefix（可用：eq、ne、gt、gte、lt、lte、between）",
        ),
        ("established_on", "eq", "2020-01-01", "字段 established_on 为日期型，不支持运算符 eq"),
        ("size_class", "gt", "small", "字段 size_class 为枚举型，不支持运算符 gt"),
        ("qualifications", "in", ["高新技术企业"], "字段 qualifications 为集合型，不支持运算符 in"),
        ("region_code", "prefix", ["C"], "字段 region_code 为地区型，不支持运算符 prefix"),
        ("industry_code", "within_region", ["330100"], "字段 industry_code 为代码型，不支持运算符 within_region"),
        ("annual_revenue", "has_any", ["x"], "字段 annual_revenue 为数值型，不支持运算符 has_any"),
    ],
)
def test_op_not_allowed_for_the_field_type(field, op, value, reason):
    [error] = validate_rules({"all": [OK, {"any": [cond(field, op, value)]}]})
    assert (error.field, error.code) == ("rules.all[1].any[0].op", "op_not_allowed")
    assert error.reason.startswith(reason)


@pytest.mark.parametrize(
    ("rules", "path", "reason"),
    [
        (cond("size_class", "eq", "tiny"), "rules.value", "取值 tiny 不是字段 size_class（企业规模）的可选值"),
        (cond("size_class", "in", ["small", "tiny"]), "rules.value[1]", "取值 tiny 不是字段 size_class"),
        (cond("size_class", "eq", 1), "rules.value", "字段 size_class 为枚举型，取值应为字符串"),
        (cond("annual_revenue", "between", [20000, 500]), "rules.value", "区间下限 20000 大于上限 500"),
        (cond("established_on", "gte", "2023-02-30"), "rules.value", "日期 2023-02-30 不存在"),
        (
            cond("established_on", "gte", 2020),
            "rules.value",
            "字段 established_on 为日期型，比较值应为 YYYY-MM-DD 格式的日期",
        ),
        (
            cond("established_on", "date_between", ["2024-12-31", "2021-01-01"]),
            "rules.value",
            "起始日期 2024-12-31 晚于截止日期 2021-01-01",
        ),
        (
            cond("established_on", "date_between", ["2021-13-01", "2022-01-01"]),
            "rules.value[0]",
            "日期 2021-13-01 不存在",
        ),
        (cond("employees", "eq", "100"), "rules.value", "字段 employees 为数值型，取值应为数字"),
        (cond("industry_code", "eq", "3911"), "rules.value", "行业代码 3911 格式不正确"),
        (cond("region_code", "in", ["330106", "西湖区"]), "rules.value[1]", "地区代码 西湖区 格式不正确"),
        (cond("rd_ratio", "gte", float("nan")), "rules.value", "比较值必须是有限的数字"),
    ],
)
def test_bad_values_are_reported_where_they_are(rules, path, reason):
    [error] = validate_rules(rules)
    assert (error.field, error.code) == (path, "bad_value")
    assert error.reason.startswith(reason)


def test_unknown_tags_are_reported_per_item_when_a_tag_list_is_given():
    rules = {"all": [OK, cond("qualifications", "has_all", ["高新技术企业", "高企"])]}
    [error] = validate_rules(rules, known_tags=KNOWN_TAGS)
    assert (error.field, error.code, error.reason) == (
        "rules.all[1].value[1]",
        "unknown_tag",
        "标签「高企」不在标签库中",
    )


def test_repeated_ids_are_reported_on_the_second_node():
    rules = {"all": [cond("rd_ratio", "gte", 5, id="a"), {"not": cond("employees", "gt", 300, id="a")}]}
    [error] = validate_rules(rules)
    assert (error.field, error.code) == ("rules.all[1].not.id", "duplicate_id")
    assert "rules.all[0]" in error.reason


def test_too_deep_is_reported_once_at_the_first_node_past_the_limit():
    rules: dict[str, Any] = OK
    for _ in range(MAX_DEPTH + 2):  # 11 levels
        rules = {"not": rules}
    [error] = validate_rules(rules)
    assert error.code == "too_deep"
    assert error.field == "rules" + ".not" * MAX_DEPTH  # level 9
    assert "最多 8 层" in error.reason


def test_absurdly_deep_input_gives_one_error_and_no_crash():
    rules: dict[str, Any] = OK
    for _ in range(5000):
        rules = {"all": [rules]}
    assert [e.code for e in validate_rules(rules)] == ["too_deep"]


def test_too_many_conditions_is_reported_on_the_root():
    [error] = validate_rules({"all": [OK] * (MAX_CONDITIONS + 1)})
    assert (error.field, error.code) == ("rules", "too_many_conditions")
    assert error.reason == "条件数量为 101 个，超过上限 100 个"


def test_all_errors_are_collected_in_one_pass_in_document_order():
    rules = {
        "all": [
            cond("revenue", "gte", 1),
            cond("rd_ratio", "prefix", ["C"]),
            {"any": []},
            cond("size_class", "in", ["small", "tiny"]),
            cond("qualifications", "has_any", ["高企"]),
            cond("annual_revenue", "between", [20000, 500]),
        ]
    }
    assert errors_of(rules, known_tags=KNOWN_TAGS) == [
        ("rules.all[0].field", "unknown_field"),
        ("rules.all[1].op", "op_not_allowed"),
        ("rules.all[2].any", "schema"),
        ("rules.all[3].value[1]", "bad_value"),
        ("rules.all[4].value[0]", "unknown_tag"),
        ("rules.all[5].value", "bad_value"),
    ]


def test_schema_errors_across_the_tree_are_all_reported():
    rules = {"any": [cond("rd_ratio", "gte", 5, label=""), {"all": [{"op": "eq"}]}, {"not": 3}]}
    assert errors_of(rules) == [
        ("rules.any[0].label", "schema"),
        ("rules.any[1].all[0].field", "schema"),
        ("rules.any[1].all[0].value", "schema"),
        ("rules.any[2].not", "schema"),
    ]


def test_a_value_the_schema_rejects_is_not_reported_twice():
    assert errors_of(cond("established_on", "date_between", ["2024-12-31", "soon"])) == [("rules.value[1]", "schema")]


def test_values_of_a_disallowed_operator_are_not_checked():
    assert errors_of(cond("size_class", "has_any", ["tiny"]), known_tags=KNOWN_TAGS) == [("rules.op", "op_not_allowed")]
    # "small" is no number or date for gt, but the operator is the mistake, not the value.
    assert errors_of(cond("size_class", "gt", "small")) == [("rules.op", "op_not_allowed")]


def test_check_rules_raises_validation_failed_with_every_error():
    rules = {"all": [cond("revenue", "gte", 1), cond("rd_ratio", "prefix", ["C"])]}
    with pytest.raises(ValidationFailed) as info:
        check_rules(rules)
    exc = info.value
    assert (exc.code, exc.message, exc.status_code) == ("catalog.invalid_rules", "资格条件格式有误", 422)
    assert [e.code for e in exc.errors] == ["unknown_field", "op_not_allowed"]
    assert exc.body()["errors"][0]["field"] == "rules.all[0].field"


# --------------------------------------------------------------------------- helpers


def test_iter_conditions_walks_depth_first_in_document_order():
    assert [c["field"] for c in iter_conditions(SRDI_LOAN_SUBSIDY)] == [
        "region_code",
        "qualifications",
        "size_class",
        "industry_code",
        "credit_standing",
        "tax_credit_level",
    ]
    assert list(iter_conditions(None)) == []
    assert list(iter_conditions(OK)) == [OK]


def test_rule_fields_lists_each_field_once():
    assert rule_fields(HIGH_TECH_AWARD) == {
        "region_code",
        "qualifications",
        "established_on",
        "annual_revenue",
        "rd_ratio",
        "credit_standing",
        "tax_credit_level",
    }
    assert rule_fields(None) == set()


# --------------------------------------------------------------------------- Chinese wording

DESCRIPTIONS = [
    ("employees", "eq", 100, "从业人数 = 100 人"),
    ("size_class", "eq", "small", "企业规模为 小型"),
    ("industry_code", "eq", "C3911", "所属行业为 C3911"),
    ("years_established", "ne", 2, "成立年限 ≠ 2 年"),
    ("credit_standing", "ne", "dishonest", "信用状况不为 失信"),
    ("annual_revenue", "gt", 20000, "年营业收入 > 20000 万元"),
    ("established_on", "gt", "2020-01-01", "成立日期晚于 2020-01-01"),
    ("rd_ratio", "gte", 5, "研发费用占营业收入比例 ≥ 5%"),
    ("established_on", "gte", "2020-01-01", "成立日期不早于 2020-01-01"),
    ("employees", "lt", 300, "从业人数 < 300 人"),
    ("established_on", "lt", "2020-01-01", "成立日期早于 2020-01-01"),
    ("total_assets", "lte", 4000.0, "资产总额 ≤ 4000 万元"),
    ("established_on", "lte", "2020-12-31", "成立日期不晚于 2020-12-31"),
    ("annual_revenue", "between", [500, 20000], "年营业收入在 500–20000 万元之间"),
    ("rd_ratio", "between", [3, 5.5], "研发费用占营业收入比例在 3–5.5% 之间"),
    ("size_class", "in", ["small", "micro"], "企业规模为 小型、微型"),
    ("tax_credit_level", "not_in", ["C", "D"], "纳税信用等级不为 C级、D级"),
    ("industry_code", "prefix", ["C39", "I65"], "所属行业代码以 C39、I65 之一开头"),
    ("industry_code", "prefix", ["C"], "所属行业代码以 C 开头"),
    ("region_code", "within_region", ["330100", "330200"], "所在地区位于 330100、330200 范围内"),
    ("qualifications", "has_any", ["高新技术企业", "科技型中小企业"], "具备以下资质之一：高新技术企业、科技型中小企业"),
    ("qualifications", "has_all", ["高新技术企业", "科技型中小企业"], "具备以下全部资质：高新技术企业、科技型中小企业"),
    ("tags", "has_none", ["孵化器在孵企业", "文化创意"], "不具备以下任何标签：孵化器在孵企业、文化创意"),
    ("qualifications", "has_any", ["高新技术企业"], "具备资质：高新技术企业"),
    ("established_on", "years_since_gte", 3, "成立满 3 年"),
    ("established_on", "years_since_lte", 5, "成立不超过 5 年"),
    ("established_on", "date_between", ["2021-01-01", "2024-12-31"], "成立日期在 2021-01-01 至 2024-12-31 之间"),
]


@pytest.mark.parametrize(("field", "op", "value", "text"), DESCRIPTIONS)
def test_describe_condition(field, op, value, text):
    assert describe_condition(cond(field, op, value)) == text


def test_every_operator_has_a_described_example():
    assert {op for _, op, _, _ in DESCRIPTIONS} == set(OPS)


def test_region_names_come_from_the_caller_with_codes_as_fallback():
    c = cond("region_code", "within_region", ["330100", "330200"])
    assert describe_condition(c, region_name=REGION_NAMES.get) == "所在地区位于 杭州市、330200 范围内"
    assert describe_condition(cond("region_code", "eq", "330106"), region_name=REGION_NAMES.get) == "所在地区为 西湖区"


def test_describe_condition_ignores_the_label():
    assert describe_condition(cond("rd_ratio", "gte", 5, label="研发投入达标")) == "研发费用占营业收入比例 ≥ 5%"


def test_describe_rules_indents_groups():
    assert describe_rules(SRDI_LOAN_SUBSIDY, region_name=REGION_NAMES.get) == [
        "满足以下全部条件：",
        "  所在地区位于 杭州市 范围内",
        "  具备以下资质之一：专精特新中小企业、专精特新“小巨人”企业",
        "  企业规模为 中型、小型、微型",
        "  所属行业代码以 C、I65、M 之一开头",
        "  不满足：",
        "    满足以下任一条件：",
        "      信用状况为 失信",
        "      纳税信用等级为 C级、D级",
    ]


def test_describe_rules_shows_a_labelled_group_as_its_label_only():
    lines = describe_rules(HIGH_TECH_AWARD)
    assert lines[:5] == [
        "满足以下全部条件：",
        "  注册地和税务征管关系在西湖区",
        "  具备资质：高新技术企业",
        "  成立满 1 年",
        "  近一年研发费用占营业收入比例符合高新技术企业认定标准",
    ]
    assert len(lines) == 7


def test_describe_rules_for_staff_expands_labelled_nodes():
    lines = describe_rules(HIGH_TECH_AWARD, use_labels=False)
    assert "  所在地区位于 330106 范围内" in lines
    assert "  满足以下任一条件：" in lines
    assert "      研发费用占营业收入比例 ≥ 4%" in lines
    assert len(lines) == len(list(iter_conditions(HIGH_TECH_AWARD))) + 5  # root, any, three alls


def test_describe_rules_of_a_single_condition_and_of_none():
    assert describe_rules(OK) == ["研发费用占营业收入比例 ≥ 5%"]
    assert describe_rules(None) == []


def test_docs_show_the_actual_rendering():
    text = DOCS.read_text(encoding="utf-8")
    assert "\n".join(describe_rules(SRDI_LOAN_SUBSIDY, region_name=REGION_NAMES.get)) in text
    assert "\n".join(describe_rules(HIGH_TECH_AWARD, use_labels=False)) in text


# --------------------------------------------------------------------------- property tests

NUMBERS = st.one_of(
    st.integers(-(10**7), 10**7),
    st.floats(-1e7, 1e7, allow_nan=False, allow_infinity=False),
)
YEARS = st.one_of(st.integers(0, 100), st.floats(0, 100, allow_nan=False))
DATES = st.dates(dt.date(1949, 10, 1), dt.date(2100, 12, 31)).map(dt.date.isoformat)
INDUSTRY_CODES = st.from_regex(r"[A-Z][0-9]{0,4}", fullmatch=True)
REGION_CODES = st.from_regex(r"[1-9][0-9]{5}", fullmatch=True)
LABELS = st.text(min_size=1, max_size=200).filter(lambda s: re.search(r"\S", s) is not None)


def distinct(elements: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    return st.lists(elements, min_size=1, max_size=4, unique=True)


def ordered_pair(elements: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    return st.tuples(elements, elements).map(sorted)


def value_strategy(field: str, op: str) -> st.SearchStrategy[Any]:
    f = FIELDS[field]
    strings = {
        "enum": st.sampled_from([value for value, _ in f.choices]),
        "code": INDUSTRY_CODES,
        "region": REGION_CODES,
    }
    if op in ("eq", "ne"):
        return NUMBERS if f.type == "number" else strings[f.type]
    if op in ("gt", "gte", "lt", "lte"):
        return NUMBERS if f.type == "number" else DATES
    if op == "between":
        return ordered_pair(NUMBERS)
    if op in ("in", "not_in"):
        return distinct(strings[f.type])
    if op == "prefix":
        return distinct(INDUSTRY_CODES)
    if op == "within_region":
        return distinct(REGION_CODES)
    if op in ("has_any", "has_all", "has_none"):
        return distinct(st.sampled_from(sorted(KNOWN_TAGS)))
    if op in ("years_since_gte", "years_since_lte"):
        return YEARS
    if op == "date_between":
        return ordered_pair(DATES)
    raise AssertionError(f"no value strategy for {op}")


FIELD_OPS = sorted((name, op) for name, f in FIELDS.items() for op in OPS_BY_TYPE[f.type])


def with_label(nodes: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.tuples(nodes, st.one_of(st.none(), LABELS)).map(
        lambda pair: pair[0] if pair[1] is None else {**pair[0], "label": pair[1]}
    )


CONDITIONS = with_label(
    st.sampled_from(FIELD_OPS).flatmap(
        lambda fo: value_strategy(*fo).map(lambda v: {"field": fo[0], "op": fo[1], "value": v})
    )
)


def node_strategy(level: int = 1) -> st.SearchStrategy[dict[str, Any]]:
    if level >= MAX_DEPTH:
        return CONDITIONS
    child = node_strategy(level + 1)
    groups = st.one_of(
        st.lists(child, min_size=1, max_size=3).map(lambda xs: {"all": xs}),
        st.lists(child, min_size=1, max_size=3).map(lambda xs: {"any": xs}),
        child.map(lambda x: {"not": x}),
    )
    return st.one_of(CONDITIONS, with_label(groups))


TREES = node_strategy()


def condition_paths(node: dict[str, Any], path: str = "rules") -> list[tuple[str, dict[str, Any]]]:
    if "field" in node:
        return [(path, node)]
    if "not" in node:
        return condition_paths(node["not"], f"{path}.not")
    key = "all" if "all" in node else "any"
    return [hit for i, child in enumerate(node[key]) for hit in condition_paths(child, f"{path}.{key}[{i}]")]


def test_the_strategy_covers_every_operator():
    assert {op for _, op in FIELD_OPS} == set(OPS)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TREES)
def test_well_formed_trees_always_validate(rules):
    assume(len(condition_paths(rules)) <= MAX_CONDITIONS)
    assert validate_rules(rules, known_tags=KNOWN_TAGS) == []


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TREES, st.data())
def test_an_incompatible_operator_is_always_op_not_allowed(rules, data):
    assume(len(condition_paths(rules)) <= MAX_CONDITIONS)
    rules = copy.deepcopy(rules)
    path, node = data.draw(st.sampled_from(condition_paths(rules)), label="condition")
    field_type = FIELDS[node["field"]].type
    node["op"] = data.draw(st.sampled_from(sorted(set(OPS) - set(OPS_BY_TYPE[field_type]))), label="bad op")
    assert errors_of(rules, known_tags=KNOWN_TAGS) == [(f"{path}.op", "op_not_allowed")]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TREES)
def test_staff_rendering_has_one_line_per_node(rules):
    nodes = len(condition_paths(rules))
    stack = [rules]
    groups = 0
    while stack:
        node = stack.pop()
        if "field" not in node:
            groups += 1
            stack.extend(node["all"] if "all" in node else node["any"] if "any" in node else [node["not"]])
    assert len(describe_rules(rules, use_labels=False)) == nodes + groups
