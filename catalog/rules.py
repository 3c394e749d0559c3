"""Eligibility rules of a policy: the JSON format, its validation and its Chinese wording.

A policy's rules are one JSON tree (see docs/rules.md)::

    {"all": [
        {"field": "region_code", "op": "within_region", "value": ["330100"]},
        {"any": [
            {"field": "qualifications", "op": "has_any", "value": ["高新技术企业"]},
            {"field": "rd_ratio", "op": "gte", "value": 5}
        ]}
    ]}

Group nodes are ``{"all": [...]}``, ``{"any": [...]}`` and ``{"not": node}``; condition nodes
are ``{"field", "op", "value"}`` where ``field`` is a name from `catalog.fields.FIELDS`.
Any node may carry ``label`` (text shown to firms instead of the generated wording) and ``id``.
``None`` means the policy has no computable conditions.

`RULES_JSON_SCHEMA` describes the structure; `validate_rules` adds the checks a schema cannot
express (field names, operator/field-type compatibility, enum choices, ranges, real dates,
known tags, depth and size limits). This module does not evaluate rules against enterprises.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from catalog.fields import FIELDS, FieldType, ProfileField, label_of
from core.errors import FieldError, ValidationFailed

__all__ = [
    "GROUP_KEYS",
    "MAX_CONDITIONS",
    "MAX_DEPTH",
    "MAX_LABEL_LENGTH",
    "OPS",
    "OPS_BY_TYPE",
    "RULES_JSON_SCHEMA",
    "SCHEMA_ID",
    "TYPE_LABELS",
    "OpSpec",
    "check_rules",
    "describe_condition",
    "describe_rules",
    "iter_conditions",
    "rule_fields",
    "validate_rules",
]

SCHEMA_ID = "https://huiqi.example/schemas/eligibility-rules.json"

MAX_DEPTH = 8  # the root node is level 1; {"all": [condition]} is 2 levels deep
MAX_CONDITIONS = 100
MAX_LABEL_LENGTH = 200
MAX_ID_LENGTH = 64
MAX_TAG_LENGTH = 60  # catalog.models.Tag.name is String(60)

# Beyond this JSON nesting nothing else is checked: a schema walk that deep risks the recursion limit,
# and no sensible tree comes close (8 levels of nodes are at most ~18 levels of JSON).
_HARD_NESTING = 40

GROUP_KEYS = ("all", "any", "not")
_CONDITION_KEYS = ("field", "op", "value")

DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
INDUSTRY_CODE_PATTERN = r"^[A-Z][0-9]{0,4}$"  # GB/T 4754-2017: section letter + up to 4 digits
REGION_CODE_PATTERN = r"^[1-9][0-9]{5}$"  # GB/T 2260 administrative division code
_NON_BLANK_PATTERN = r"\S"

TYPE_LABELS: dict[str, str] = {
    "number": "数值型",
    "date": "日期型",
    "code": "代码型",
    "region": "地区型",
    "enum": "枚举型",
    "set": "集合型",
}


@dataclass(frozen=True)
class OpSpec:
    """One operator: the field types it applies to and the shape of its value."""

    name: str
    title: str  # Chinese name
    english: str
    types: tuple[FieldType, ...]
    value_def: str  # key under RULES_JSON_SCHEMA["$defs"] describing the value


OPS: dict[str, OpSpec] = {
    s.name: s
    for s in (
        OpSpec("eq", "等于", "equals", ("number", "enum", "code", "region"), "scalar"),
        OpSpec("ne", "不等于", "not equal", ("number", "enum", "code", "region"), "scalar"),
        OpSpec("gt", "大于／晚于", "greater than / after", ("number", "date"), "comparable"),
        OpSpec("gte", "大于等于／不早于", "at least / on or after", ("number", "date"), "comparable"),
        OpSpec("lt", "小于／早于", "less than / before", ("number", "date"), "comparable"),
        OpSpec("lte", "小于等于／不晚于", "at most / on or before", ("number", "date"), "comparable"),
        OpSpec("between", "介于（含两端）", "between, inclusive", ("number",), "numberRange"),
        OpSpec("in", "属于其中之一", "one of", ("enum", "code", "region"), "stringList"),
        OpSpec("not_in", "不属于其中任何一个", "none of", ("enum", "code", "region"), "stringList"),
        OpSpec("prefix", "行业代码前缀", "industry code starts with", ("code",), "industryPrefixes"),
        OpSpec("within_region", "位于地区范围内", "within regions", ("region",), "regionCodes"),
        OpSpec("has_any", "具备其一", "has any of", ("set",), "tagList"),
        OpSpec("has_all", "全部具备", "has all of", ("set",), "tagList"),
        OpSpec("has_none", "均不具备", "has none of", ("set",), "tagList"),
        OpSpec("years_since_gte", "距今满若干年", "at least N years ago", ("date",), "years"),
        OpSpec("years_since_lte", "距今不超过若干年", "at most N years ago", ("date",), "years"),
        OpSpec("date_between", "日期介于（含两端）", "date between, inclusive", ("date",), "dateRange"),
    )
}

OPS_BY_TYPE: dict[str, tuple[str, ...]] = {
    t: tuple(name for name, spec in OPS.items() if t in spec.types) for t in TYPE_LABELS
}


# --------------------------------------------------------------------------- the JSON Schema


def _build_schema() -> dict[str, Any]:
    op_lines = "; ".join(f"{s.name}（{s.title}，{'/'.join(s.types)}）" for s in OPS.values())
    node_ref = {"$ref": "#/$defs/node"}
    value_rules = [
        {
            "if": {"properties": {"op": {"const": s.name}}, "required": ["op"]},
            "then": {"properties": {"value": {"$ref": f"#/$defs/{s.value_def}"}}},
        }
        for s in OPS.values()
    ]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "政策资格条件 Eligibility rules",
        "description": (
            "一项政策的资格条件树：组合节点 all / any / not 与条件节点 field + op + value。"
            "null 表示该政策没有可计算的条件。字段名、运算符与字段类型的搭配、枚举取值、"
            "标签是否存在、层级不超过 8 层、条件不超过 100 个，由服务端另行校验，见 docs/rules.md。 "
            "A policy's eligibility rule tree: groups (all / any / not) and conditions (field + op + value); "
            "null means no computable conditions. Field names, op/field-type compatibility, enum choices, "
            "tag names, depth (≤ 8) and size (≤ 100 conditions) are checked by the server, see docs/rules.md."
        ),
        "if": {"type": "null"},
        "else": node_ref,
        "$defs": {
            "node": {
                "title": "节点 Node",
                "description": (
                    "含 field、op 或 value 之一即为条件节点，否则为组合节点。 "
                    "A node with field, op or value is a condition, otherwise a group."
                ),
                "if": {"anyOf": [{"required": [k]} for k in _CONDITION_KEYS]},
                "then": {"$ref": "#/$defs/condition"},
                "else": {"$ref": "#/$defs/group"},
            },
            "group": {
                "title": "组合节点 Group node",
                "description": (
                    "all：全部满足；any：满足任一；not：不满足。必须且只能包含其中一个键。 "
                    "all: every child holds; any: at least one holds; not: the child does not hold. "
                    "Exactly one of the three keys."
                ),
                "type": "object",
                "properties": {
                    "all": {
                        "title": "满足以下全部条件 All of",
                        "type": "array",
                        "minItems": 1,
                        "items": node_ref,
                    },
                    "any": {
                        "title": "满足以下任一条件 Any of",
                        "type": "array",
                        "minItems": 1,
                        "items": node_ref,
                    },
                    "not": {"title": "不满足 Not", **node_ref},
                    "label": {"$ref": "#/$defs/label"},
                    "id": {"$ref": "#/$defs/id"},
                },
                "additionalProperties": False,
                "oneOf": [{"required": [k]} for k in GROUP_KEYS],
            },
            "condition": {
                "title": "条件节点 Condition node",
                "description": (
                    "对企业画像的一个字段做一次判断；value 的形状由 op 决定。 "
                    "One test of one profile field; the shape of value depends on op."
                ),
                "type": "object",
                "required": list(_CONDITION_KEYS),
                "properties": {
                    "field": {
                        "title": "字段 Field",
                        "description": (
                            "企业画像字段名，取自 catalog/fields.py 的 FIELDS（见 docs/rules.md 字段表）。 "
                            "A profile field name from FIELDS in catalog/fields.py."
                        ),
                        "type": "string",
                    },
                    "op": {
                        "title": "运算符 Operator",
                        "description": f"可用运算符及其适用的字段类型 Operators and the field types they accept: {op_lines}",
                        "enum": list(OPS),
                    },
                    "value": {
                        "title": "比较值 Value",
                        "description": (
                            "金额单位为万元，比例单位为百分比（rd_ratio 5 表示 5%），日期为 YYYY-MM-DD。 "
                            "Money in 万元 (10,000 CNY), ratios in percent, dates as YYYY-MM-DD."
                        ),
                    },
                    "label": {"$ref": "#/$defs/label"},
                    "id": {"$ref": "#/$defs/id"},
                },
                "additionalProperties": False,
                "allOf": value_rules,
            },
            "label": {
                "title": "说明文字 Label",
                "description": (
                    "向企业展示的中文说明，替代自动生成的条件描述。 "
                    "Chinese text shown to firms instead of the generated wording."
                ),
                "type": "string",
                "maxLength": MAX_LABEL_LENGTH,
                "pattern": _NON_BLANK_PATTERN,
            },
            "id": {
                "title": "节点标识 Node id",
                "description": "供引用的节点标识，在一棵条件树内唯一。 An id for referencing, unique within one tree.",
                "type": "string",
                "maxLength": MAX_ID_LENGTH,
                "pattern": r"^\S+$",
            },
            "scalar": {
                "title": "单个取值 Scalar (eq, ne)",
                "description": (
                    "数值字段为数字；枚举、代码、地区字段为字符串。 "
                    "A number for number fields, a string for enum, code and region fields."
                ),
                "type": ["string", "number"],
                "minLength": 1,
            },
            "comparable": {
                "title": "比较值 Comparable (gt, gte, lt, lte)",
                "description": "数值字段为数字，日期字段为 YYYY-MM-DD。 A number for number fields, YYYY-MM-DD for date fields.",
                "type": ["number", "string"],
                "pattern": DATE_PATTERN,
            },
            "numberRange": {
                "title": "数值区间 Number range (between)",
                "description": "[下限, 上限]，含两端，下限不大于上限。 [lo, hi], inclusive, lo ≤ hi.",
                "type": "array",
                "items": {"type": "number"},
                "minItems": 2,
                "maxItems": 2,
            },
            "stringList": {
                "title": "取值列表 Value list (in, not_in)",
                "description": "非空、不重复的字符串列表。 A non-empty list of distinct strings.",
                "type": "array",
                "items": {"type": "string", "minLength": 1},
                "minItems": 1,
                "uniqueItems": True,
            },
            "industryPrefixes": {
                "title": "行业代码前缀 Industry code prefixes (prefix)",
                "description": (
                    "GB/T 4754-2017 行业代码前缀：门类字母加 0–4 位数字，如 C、C39、I65。 "
                    "Section letter plus 0–4 digits, e.g. C, C39, I65."
                ),
                "type": "array",
                "items": {"type": "string", "pattern": INDUSTRY_CODE_PATTERN},
                "minItems": 1,
                "uniqueItems": True,
            },
            "regionCodes": {
                "title": "行政区划代码 Region codes (within_region)",
                "description": (
                    "6 位 GB/T 2260 行政区划代码；省、市级代码包含其下辖地区，如 330000、330100、330106。 "
                    "6-digit GB/T 2260 codes; a province or city code covers the areas under it."
                ),
                "type": "array",
                "items": {"type": "string", "pattern": REGION_CODE_PATTERN},
                "minItems": 1,
                "uniqueItems": True,
            },
            "tagList": {
                "title": "标签列表 Tag names (has_any, has_all, has_none)",
                "description": "标签库中的标签名称。 Names from the tag vocabulary.",
                "type": "array",
                "items": {"type": "string", "minLength": 1, "maxLength": MAX_TAG_LENGTH},
                "minItems": 1,
                "uniqueItems": True,
            },
            "years": {
                "title": "年数 Years (years_since_gte, years_since_lte)",
                "description": "距今的年数，非负。 A non-negative number of years before today.",
                "type": "number",
                "minimum": 0,
            },
            "dateRange": {
                "title": "日期区间 Date range (date_between)",
                "description": "[起始日期, 截止日期]，含两端，起始不晚于截止。 [from, to], inclusive, from ≤ to.",
                "type": "array",
                "items": {"$ref": "#/$defs/isoDate"},
                "minItems": 2,
                "maxItems": 2,
            },
            "isoDate": {
                "title": "日期 Date",
                "description": "YYYY-MM-DD",
                "type": "string",
                "pattern": DATE_PATTERN,
                "format": "date",
            },
        },
    }


RULES_JSON_SCHEMA: dict[str, Any] = _build_schema()
_VALIDATOR = Draft202012Validator(RULES_JSON_SCHEMA)


# --------------------------------------------------------------------------- tree walking

Path = tuple[str | int, ...]


def _is_condition(node: dict[str, Any]) -> bool:
    # Same discrimination as the schema's "node": any of field/op/value makes a condition.
    return any(k in node for k in _CONDITION_KEYS)


def _iter_nodes(rules: Any) -> Iterator[tuple[dict[str, Any], Path, int]]:
    """Yield (node, path, level) for every object node, depth-first, root at level 1.

    Iterative, so a malformed or absurdly deep tree cannot exhaust the stack; non-object
    entries are skipped (the schema reports them).
    """
    stack: list[tuple[Any, Path, int]] = [(rules, (), 1)]
    while stack:
        node, path, level = stack.pop()
        if not isinstance(node, dict):
            continue
        yield node, path, level
        if _is_condition(node):
            continue
        children: list[tuple[Any, Path, int]] = []
        for key in ("all", "any"):
            items = node.get(key)
            if isinstance(items, list):
                children.extend((child, (*path, key, i), level + 1) for i, child in enumerate(items))
        if "not" in node:
            children.append((node["not"], (*path, "not"), level + 1))
        stack.extend(reversed(children))


def iter_conditions(rules: dict[str, Any] | None) -> Iterator[dict[str, Any]]:
    """Yield every condition node of a rule tree, depth-first, in document order."""
    if rules is None:
        return
    for node, _path, _level in _iter_nodes(rules):
        if _is_condition(node):
            yield node


def rule_fields(rules: dict[str, Any] | None) -> set[str]:
    """Return the names of the profile fields a rule tree tests."""
    return {c["field"] for c in iter_conditions(rules) if isinstance(c.get("field"), str)}


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _fmt_path(path: Path) -> str:
    out = "rules"
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        elif _IDENT.match(p):
            out += f".{p}"
        else:
            out += f"[{json.dumps(p, ensure_ascii=False)}]"
    return out


def _path_key(path: Path) -> tuple[tuple[int, int | str], ...]:
    # Document order: indices numerically; keys alphabetically (field < op < value happens to read well).
    return tuple((0, p) if isinstance(p, int) else (1, p) for p in path)


def _max_nesting(doc: Any) -> tuple[int, Path]:
    """Return the deepest JSON container nesting of doc (stopping past the hard limit) and where."""
    deepest = 0
    where: Path = ()
    stack: list[tuple[Any, Path, int]] = [(doc, (), 1)]
    while stack:
        obj, path, level = stack.pop()
        if isinstance(obj, dict):
            items = [(k, v) for k, v in obj.items()]
        elif isinstance(obj, list):
            items = list(enumerate(obj))
        else:
            continue
        if level > deepest:
            deepest, where = level, path
            if deepest > _HARD_NESTING:
                break
        stack.extend((v, (*path, k), level + 1) for k, v in items if isinstance(v, dict | list))
    return deepest, where


# --------------------------------------------------------------------------- schema errors in Chinese

_JSON_TYPE_ZH = {
    "object": "对象",
    "array": "列表",
    "string": "字符串",
    "number": "数字",
    "integer": "整数",
    "boolean": "布尔值",
    "null": "空值 null",
}

_PATTERN_REASONS = {
    DATE_PATTERN: "日期格式应为 YYYY-MM-DD",
    INDUSTRY_CODE_PATTERN: "行业代码前缀应为 1 个大写门类字母加 0–4 位数字，如 C、C39、I65",
    REGION_CODE_PATTERN: "地区代码应为 6 位 GB/T 2260 行政区划代码，如 330106",
    _NON_BLANK_PATTERN: "不能为空或只有空白",
    r"^\S+$": "不能为空，也不能包含空白字符",
}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _types_zh(types: str | list[str]) -> str:
    names = [types] if isinstance(types, str) else list(types)
    return "或".join(_JSON_TYPE_ZH.get(t, t) for t in names)


def _node_at(doc: Any, path: Path) -> Any:
    for p in path:
        try:
            doc = doc[p]
        except (KeyError, IndexError, TypeError):
            return None
    return doc


def _schema_errors(err: ValidationError, rules: Any) -> list[tuple[Path, str]]:
    """Turn one jsonschema error into (path, Chinese reason) pairs."""
    path: Path = tuple(err.absolute_path)
    # Errors from iter_errors always carry these; the stubs also allow jsonschema's "unset" marker.
    kind: Any = err.validator
    limit: Any = err.validator_value
    inst: Any = err.instance
    schema: Any = err.schema
    if kind == "pattern" and limit == DATE_PATTERN and path and path[-1] == "value":
        # gt/gte/lt/lte take a number or a date; a string compared with a number field is the number's fault.
        cond = _node_at(rules, path[:-1])
        name = cond.get("field") if isinstance(cond, dict) else None
        f = FIELDS.get(name) if isinstance(name, str) else None
        if f is not None and f.type == "number":
            shown = json.dumps(inst, ensure_ascii=False)
            return [(path, f"字段 {f.name} 为数值型，比较值应为数字，实际为 {shown}")]
    if kind == "type":
        actual = _JSON_TYPE_ZH.get(_json_type(inst), _json_type(inst))
        return [(path, f"应为{_types_zh(limit)}，实际为{actual}")]
    if kind == "required":
        return [((*path, k), f"缺少必填项 {k}") for k in limit if isinstance(inst, dict) and k not in inst]
    if kind == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        extra = [k for k in inst if k not in allowed] if isinstance(inst, dict) else []
        return [((*path, k), f"不允许的属性 {k}（可用：{'、'.join(allowed)}）") for k in extra]
    if kind == "oneOf" and isinstance(inst, dict):  # the group's "exactly one of all/any/not"
        present = [k for k in GROUP_KEYS if k in inst]
        if present:
            return [(path, f"组合节点只能包含 all、any、not 其中之一，实际包含 {'、'.join(present)}")]
        return [(path, "节点应为条件（含 field、op、value）或组合（含 all、any、not 其中之一）")]
    if kind == "enum":
        if path and path[-1] == "op":
            return [(path, f"不支持的运算符 {inst}（可用：{'、'.join(OPS)}）")]
        return [(path, f"取值 {inst} 不在允许范围内（可选：{'、'.join(map(str, limit))}）")]
    if kind == "minItems":
        if limit == schema.get("maxItems"):
            return [(path, f"应恰好包含 {limit} 项，实际 {len(inst)} 项")]
        return [(path, "列表不能为空" if limit == 1 else f"至少需要 {limit} 项")]
    if kind == "maxItems":
        if limit == schema.get("minItems"):
            return [(path, f"应恰好包含 {limit} 项，实际 {len(inst)} 项")]
        return [(path, f"最多 {limit} 项，实际 {len(inst)} 项")]
    if kind == "minLength":
        return [(path, "不能为空" if limit == 1 else f"长度至少 {limit} 个字符")]
    if kind == "maxLength":
        return [(path, f"长度不能超过 {limit} 个字符，实际 {len(inst)} 个")]
    if kind == "minimum":
        return [(path, f"不能小于 {_num(limit)}")]
    if kind == "pattern":
        return [(path, _PATTERN_REASONS.get(limit, "格式不正确"))]
    if kind == "uniqueItems":
        return [(path, "列表中有重复项")]
    return [(path, f"格式不正确：{err.message}")]


# --------------------------------------------------------------------------- semantic checks


class _Collector:
    def __init__(self) -> None:
        self.errors: list[tuple[Path, str, str]] = []
        # Values of conditions whose operator does not fit the field: their shape is moot.
        self.moot_values: list[Path] = []

    def add(self, path: Path, reason: str, code: str) -> None:
        self.errors.append((path, reason, code))


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _parse_date(v: Any) -> dt.date | None:
    if not isinstance(v, str) or not re.match(DATE_PATTERN, v):
        return None
    try:
        return dt.date.fromisoformat(v)
    except ValueError:
        return None


def _choices_text(f: ProfileField) -> str:
    return "、".join(f"{value}（{label}）" for value, label in f.choices)


def _unknown_field_reason(name: str) -> str:
    available = "、".join(FIELDS)
    if not name:
        return f"字段名不能为空（可用字段：{available}）"
    reason = f"未知字段 {name}（可用字段：{available}）"
    close = difflib.get_close_matches(name, list(FIELDS), n=2, cutoff=0.6)
    if close:
        reason += f"，是否应为 {' 或 '.join(close)}？"
    return reason


def _check_number(c: _Collector, path: Path, f: ProfileField, v: Any, what: str) -> float | None:
    if not _is_number(v):
        c.add(path, f"字段 {f.name} 为数值型，{what}应为数字，实际为 {json.dumps(v, ensure_ascii=False)}", "bad_value")
        return None
    if not math.isfinite(v):
        c.add(path, f"{what}必须是有限的数字", "bad_value")
        return None
    return float(v)


def _check_date(c: _Collector, path: Path, f: ProfileField, v: Any, what: str) -> dt.date | None:
    if not isinstance(v, str):
        c.add(path, f"字段 {f.name} 为日期型，{what}应为 YYYY-MM-DD 格式的日期，实际为 {json.dumps(v)}", "bad_value")
        return None
    parsed = _parse_date(v)
    if parsed is None:
        c.add(path, f"日期 {v} 不存在，请检查年月日", "bad_value")
    return parsed


def _check_string(c: _Collector, path: Path, f: ProfileField, v: Any) -> None:
    """Check one string value of an enum, code or region field (eq, ne, in, not_in)."""
    if not isinstance(v, str):
        kind = TYPE_LABELS[f.type]
        c.add(path, f"字段 {f.name} 为{kind}，取值应为字符串，实际为 {json.dumps(v, ensure_ascii=False)}", "bad_value")
    elif f.type == "enum":
        if v not in dict(f.choices):
            c.add(path, f"取值 {v} 不是字段 {f.name}（{f.label}）的可选值（可选：{_choices_text(f)}）", "bad_value")
    elif f.type == "code":
        if not re.match(INDUSTRY_CODE_PATTERN, v):
            c.add(path, f"行业代码 {v} 格式不正确，应为 1 个大写门类字母加 0–4 位数字，如 C3911", "bad_value")
    elif f.type == "region" and not re.match(REGION_CODE_PATTERN, v):
        c.add(path, f"地区代码 {v} 格式不正确，应为 6 位 GB/T 2260 行政区划代码，如 330106", "bad_value")


def _check_condition(
    c: _Collector, node: dict[str, Any], path: Path, schema_paths: set[Path], known_tags: set[str] | None
) -> None:
    name, op = node.get("field"), node.get("op")
    if not isinstance(name, str):
        return  # the schema reported it
    f = FIELDS.get(name)
    if f is None:
        c.add((*path, "field"), _unknown_field_reason(name), "unknown_field")
        return
    if not isinstance(op, str) or op not in OPS:
        return  # the schema reported it
    if f.type not in OPS[op].types:
        allowed = "、".join(OPS_BY_TYPE[f.type])
        c.add(
            (*path, "op"),
            f"字段 {f.name} 为{TYPE_LABELS[f.type]}，不支持运算符 {op}（可用：{allowed}）",
            "op_not_allowed",
        )
        c.moot_values.append((*path, "value"))
        return
    vpath = (*path, "value")
    if "value" not in node or any(p[: len(vpath)] == vpath for p in schema_paths):
        return  # missing or misshapen: the schema reported it
    v = node["value"]

    if op in ("eq", "ne"):
        if f.type == "number":
            _check_number(c, vpath, f, v, "取值")
        else:
            _check_string(c, vpath, f, v)
    elif op in ("gt", "gte", "lt", "lte"):
        if f.type == "number":
            _check_number(c, vpath, f, v, "比较值")
        else:
            _check_date(c, vpath, f, v, "比较值")
    elif op == "between":
        lo = _check_number(c, (*vpath, 0), f, v[0], "区间下限")
        hi = _check_number(c, (*vpath, 1), f, v[1], "区间上限")
        if lo is not None and hi is not None and lo > hi:
            c.add(vpath, f"区间下限 {_num(v[0])} 大于上限 {_num(v[1])}", "bad_value")
    elif op in ("in", "not_in"):
        for i, item in enumerate(v):
            _check_string(c, (*vpath, i), f, item)
    elif op in ("has_any", "has_all", "has_none"):
        if known_tags is not None:
            for i, tag in enumerate(v):
                if tag not in known_tags:
                    c.add((*vpath, i), f"标签「{tag}」不在标签库中", "unknown_tag")
    elif op in ("years_since_gte", "years_since_lte"):
        _check_number(c, vpath, f, v, "年数")
    elif op == "date_between":
        start = _check_date(c, (*vpath, 0), f, v[0], "起始日期")
        end = _check_date(c, (*vpath, 1), f, v[1], "截止日期")
        if start is not None and end is not None and start > end:
            c.add(vpath, f"起始日期 {v[0]} 晚于截止日期 {v[1]}", "bad_value")
    # prefix, within_region: the schema's patterns say all there is to say.


def validate_rules(rules: dict[str, Any] | None, *, known_tags: set[str] | None = None) -> list[FieldError]:
    """Return every problem of a rule tree (empty when valid); ``None`` (no rules) is valid.

    Structure is checked against `RULES_JSON_SCHEMA` (all errors, code ``schema``), then what the
    schema cannot say: field names (``unknown_field``), operator vs. field type (``op_not_allowed``),
    enum choices, ranges and real dates (``bad_value``), tag names when ``known_tags`` is given
    (``unknown_tag``), repeated node ids (``duplicate_id``), depth (``too_deep``) and number of
    conditions (``too_many_conditions``). Paths look like ``rules.all[1].any[0].value``.
    """
    if rules is None:
        return []
    c = _Collector()

    nesting, where = _max_nesting(rules)
    if nesting > _HARD_NESTING:
        # Absurd input: say so once and do not walk it any further.
        c.add(where, f"嵌套层级过深（超过 {_HARD_NESTING} 层 JSON 嵌套），条件树最多 {MAX_DEPTH} 层", "too_deep")
        return _finish(c)

    schema_paths: set[Path] = set()
    for err in _VALIDATOR.iter_errors(rules):
        for path, reason in _schema_errors(err, rules):
            schema_paths.add(path)
            c.add(path, reason, "schema")

    conditions = 0
    too_deep_reported = False
    seen_ids: dict[str, Path] = {}
    for node, path, level in _iter_nodes(rules):
        if level > MAX_DEPTH and not too_deep_reported:
            c.add(path, f"嵌套层级超过上限：此节点位于第 {level} 层，最多 {MAX_DEPTH} 层", "too_deep")
            too_deep_reported = True
        node_id = node.get("id")
        if isinstance(node_id, str):
            if node_id in seen_ids:
                c.add(
                    (*path, "id"), f"节点标识 {node_id} 重复（已用于 {_fmt_path(seen_ids[node_id])}）", "duplicate_id"
                )
            else:
                seen_ids[node_id] = path
        if _is_condition(node):
            conditions += 1
            _check_condition(c, node, path, schema_paths, known_tags)
    if conditions > MAX_CONDITIONS:
        c.add((), f"条件数量为 {conditions} 个，超过上限 {MAX_CONDITIONS} 个", "too_many_conditions")
    return _finish(c)


def _finish(c: _Collector) -> list[FieldError]:
    seen: set[tuple[Path, str, str]] = set()
    unique = []
    for e in c.errors:
        moot = e[2] == "schema" and any(e[0][: len(m)] == m for m in c.moot_values)
        if not moot and e not in seen:
            seen.add(e)
            unique.append(e)
    unique.sort(key=lambda e: _path_key(e[0]))  # stable: schema errors before semantic ones at one path
    return [FieldError(field=_fmt_path(path), reason=reason, code=code) for path, reason, code in unique]


def check_rules(rules: dict[str, Any] | None, *, known_tags: set[str] | None = None) -> None:
    """Raise `ValidationFailed` (code ``catalog.invalid_rules``) listing every problem of a rule tree."""
    errors = validate_rules(rules, known_tags=known_tags)
    if errors:
        raise ValidationFailed(message="资格条件格式有误", code="catalog.invalid_rules", errors=errors)


# --------------------------------------------------------------------------- Chinese wording

RegionName = Callable[[str], str | None]

_COMPARE_SYMBOLS = {"eq": "=", "ne": "≠", "gt": ">", "gte": "≥", "lt": "<", "lte": "≤"}
_DATE_WORDS = {"gt": "晚于", "gte": "不早于", "lt": "早于", "lte": "不晚于"}
_SET_NOUNS = {"qualifications": "资质", "tags": "标签"}
_SINCE_VERBS = {"established_on": "成立"}


def _num(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        return str(int(v))
    return repr(v)


def _is_cjk(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff"


def _amount(v: Any, unit: str) -> str:
    """A number with its unit: "5%", "500 万元", "3 年"."""
    if not unit:
        return _num(v)
    return f"{_num(v)}{unit}" if unit == "%" else f"{_num(v)} {unit}"


def _range(lo: Any, hi: Any, unit: str) -> str:
    """'500–20000 万元之间' / '3–5% 之间' / '10–20 之间'."""
    text = f"{_num(lo)}–{_num(hi)}"
    if unit == "%":
        return f"{text}% 之间"
    if unit and _is_cjk(unit[-1]):
        return f"{text} {unit}之间"
    return f"{text} {unit} 之间" if unit else f"{text} 之间"


def _value_text(f: ProfileField | None, v: Any, region_name: RegionName | None) -> str:
    if f is not None and f.type == "enum":
        return dict(f.choices).get(v, str(v))
    if f is not None and f.type == "region" and region_name is not None and isinstance(v, str):
        return region_name(v) or v
    return str(v)


def _join(items: Any) -> str:
    return "、".join(map(str, items)) if isinstance(items, list) else str(items)


def describe_condition(cond: dict[str, Any], *, region_name: RegionName | None = None) -> str:
    """Word one condition in Chinese, using the field's label, unit and enum labels.

    ``{"field": "rd_ratio", "op": "gte", "value": 5}`` → "研发费用占营业收入比例 ≥ 5%". The
    node's ``label`` is not used here (see `describe_rules`). ``region_name`` maps a GB/T 2260
    code to a name for display; codes are shown when it is absent or returns None.
    """
    name, op, v = cond.get("field"), cond.get("op"), cond.get("value")
    f = FIELDS.get(name) if isinstance(name, str) else None
    label = label_of(name) if isinstance(name, str) else str(name)
    unit = f.unit if f else ""

    def values(items: Any) -> str:
        if not isinstance(items, list):
            return _value_text(f, items, region_name)
        return "、".join(_value_text(f, x, region_name) for x in items)

    if op in _COMPARE_SYMBOLS and f is not None and f.type == "date" and op in _DATE_WORDS:
        return f"{label}{_DATE_WORDS[op]} {v}"
    if op in ("eq", "ne") and not (f is not None and f.type == "number") and not _is_number(v):
        return f"{label}{'为' if op == 'eq' else '不为'} {values(v)}"
    if op in _COMPARE_SYMBOLS:
        return f"{label} {_COMPARE_SYMBOLS[op]} {_amount(v, unit)}"
    if op == "between" and isinstance(v, list) and len(v) == 2:
        return f"{label}在 {_range(v[0], v[1], unit)}"
    if op == "in":
        return f"{label}为 {values(v)}"
    if op == "not_in":
        return f"{label}不为 {values(v)}"
    if op == "prefix":
        items = v if isinstance(v, list) else [v]
        return f"{label}代码以 {_join(items)}{' 之一' if len(items) > 1 else ' '}开头"
    if op == "within_region":
        return f"{label}位于 {values(v)} 范围内"
    if op in ("has_any", "has_all", "has_none"):
        noun = _SET_NOUNS.get(str(name), label)
        items = v if isinstance(v, list) else [v]
        if len(items) == 1:
            return f"{'不具备' if op == 'has_none' else '具备'}{noun}：{items[0]}"
        lead = {"has_any": f"具备以下{noun}之一", "has_all": f"具备以下全部{noun}", "has_none": f"不具备以下任何{noun}"}
        return f"{lead[op]}：{_join(items)}"
    if op in ("years_since_gte", "years_since_lte"):
        verb = _SINCE_VERBS.get(str(name), f"{label}距今")
        return f"{verb}{'满' if op == 'years_since_gte' else '不超过'} {_num(v)} 年"
    if op == "date_between" and isinstance(v, list) and len(v) == 2:
        return f"{label}在 {v[0]} 至 {v[1]} 之间"
    return f"{label} {op} {json.dumps(v, ensure_ascii=False)}"


_GROUP_HEADS = {"all": "满足以下全部条件：", "any": "满足以下任一条件：", "not": "不满足："}


def describe_rules(
    rules: dict[str, Any] | None,
    *,
    region_name: RegionName | None = None,
    use_labels: bool = True,
    indent: str = "  ",
) -> list[str]:
    """Render a rule tree as indented Chinese lines; ``None`` gives no lines.

    With ``use_labels`` (the default, for firms) a node's ``label`` replaces its generated
    wording, and a labelled group is shown as its label alone; staff previews pass False.
    """
    lines: list[str] = []
    stack: list[tuple[Any, int]] = [] if rules is None else [(rules, 0)]
    while stack:
        node, level = stack.pop()
        pad = indent * level
        if not isinstance(node, dict):
            lines.append(pad + "（无法识别的节点）")
            continue
        label = node.get("label") if use_labels else None
        if isinstance(label, str) and label.strip():
            lines.append(pad + label)
            continue
        if _is_condition(node):
            lines.append(pad + describe_condition(node, region_name=region_name))
            continue
        key = next((k for k in GROUP_KEYS if k in node), None)
        if key is None:
            lines.append(pad + "（无法识别的节点）")
            continue
        lines.append(pad + _GROUP_HEADS[key])
        children = node[key] if key != "not" else [node[key]]
        if isinstance(children, list):
            stack.extend((child, level + 1) for child in reversed(children))
    return lines


if __name__ == "__main__":  # python -m catalog.rules > docs/eligibility-rules.schema.json
    print(json.dumps(RULES_JSON_SCHEMA, indent=2, ensure_ascii=False))
