"""The eligibility rules engine: a policy's rule tree judged against an enterprise's facts.

Rules are data (catalog/rules.py, docs/rules.md); this module is the law's reader:

- **Facts** (`profile_facts`, `facts_from_attributes`): the value of every field in
  `catalog.fields.FIELDS` for one firm; ``None`` means the firm has not told us.
- **Operators** (`OPERATORS`): one small documented function per ``op`` of catalog/rules.py,
  ``(firm_value, rule_value, today) -> bool``, called only with a known firm value.
- **Three-valued logic** (`evaluate`): each condition is met, not met or unknown (the field is
  missing). ``all`` fails if any child fails, ``any`` holds if any child holds, ``not`` swaps met
  and not met; unknown stays unknown (Kleene's logic). A policy is *eligible* when the root is
  met, *likely* when it is unknown (nothing failed decisively; filling fields decides it) and
  *ineligible* when it is not met. Every condition carries a Chinese reason naming the threshold
  and the firm's value, and the verdict lists what is missing, closest first.
- **Many firms at once** (`FactsFrame`, `evaluate_many`): the same logic with numpy arrays, two
  boolean arrays (met, known) per node and no Python loop over firms.
- **What would help** (`best_changes`): the few single changes that would open the most policies.

A ``not`` is pushed down to the conditions (De Morgan: not-all is any-not), so a condition under
an odd number of ``not`` is judged and worded as its opposite ("信用状况需不为 失信"), and its
`ConditionResult.state` always says whether the firm satisfies the requirement as worded.
"""

from __future__ import annotations

import datetime as dt
import math
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import pandas as pd

from catalog.fields import FIELDS, ProfileField, label_of
from catalog.rules import OPS, describe_condition
from core import codes
from core.text import normalize
from profiles import sizing
from profiles.derived import rd_ratio as compute_rd_ratio
from profiles.models import Enterprise

__all__ = [
    "ELIGIBLE",
    "INELIGIBLE",
    "LIKELY",
    "MET",
    "NOT_MET",
    "OPERATORS",
    "STATE_CODES",
    "STATUS_CODES",
    "STATUS_LABELS",
    "UNKNOWN",
    "UNKNOWN_GAP",
    "Change",
    "ConditionResult",
    "FactsFrame",
    "PolicyVerdict",
    "best_changes",
    "condition_states_many",
    "evaluate",
    "evaluate_many",
    "facts_from_attributes",
    "inputs_to_fill",
    "profile_facts",
    "whole_years",
]

Facts = dict[str, Any]
State = Literal["met", "not_met", "unknown"]
Status = Literal["eligible", "likely", "ineligible"]

MET: State = "met"
NOT_MET: State = "not_met"
UNKNOWN: State = "unknown"
ELIGIBLE: Status = "eligible"
LIKELY: Status = "likely"
INELIGIBLE: Status = "ineligible"

STATUS_CODES: dict[str, int] = {ELIGIBLE: 2, LIKELY: 1, INELIGIBLE: 0}  # evaluate_many's int8 codes
STATE_CODES: dict[str, int] = {MET: 2, UNKNOWN: 1, NOT_MET: 0}  # condition_states_many's int8 codes
STATUS_LABELS = {ELIGIBLE: "符合", LIKELY: "可能符合", INELIGIBLE: "不符合"}

# Gap given to a condition that is unknown: filling in a field is cheap, so it sorts as close.
UNKNOWN_GAP = 0.05

# Inputs of the derived fields: what a firm must fill in when a derived value is missing.
DERIVED_INPUTS: dict[str, tuple[str, ...]] = {
    "rd_ratio": ("rd_expense", "annual_revenue"),
    "years_established": ("established_on",),
    "size_class": ("industry_code", "employees", "annual_revenue", "total_assets"),
}


# =========================================================================== facts


def whole_years(start: dt.date, today: dt.date) -> int:
    """Count the full calendar years from start to today (2021-06-01 → 2024-06-01 is 3)."""
    # A 29 February start completes its year on 1 March in common years.
    return today.year - start.year - ((today.month, today.day) < (start.month, start.day))


def profile_facts(enterprise: Enterprise, today: dt.date, tags: Iterable[str] | None = None) -> Facts:
    """Return the values rules test for a stored enterprise; qualifications expired before today do not count."""
    facts: Facts = {name: None for name in FIELDS}
    for name, f in FIELDS.items():
        if f.type != "set" and name != "years_established":
            facts[name] = _clean_fact(name, getattr(enterprise, name, None))
    if facts["established_on"] is not None:
        facts["years_established"] = whole_years(facts["established_on"], today)
    facts["qualifications"] = frozenset(
        q.tag.name for q in enterprise.qualifications if q.valid_until_on is None or q.valid_until_on >= today
    )
    facts["tags"] = frozenset(tags or ())
    return facts


def facts_from_attributes(data: Mapping[str, Any], today: dt.date) -> Facts:
    """Return facts from a partly filled form (the 政策计算器); raise ValueError naming a bad field.

    Keys are field names of `FIELDS`. Codes are normalised (full-width, lower case), enums accept
    their Chinese labels, sets accept a list or a "、"-separated string. Derived fields are computed
    from their inputs when present: size class, R&D ratio and years since establishment.
    """
    unknown = [key for key in data if key not in FIELDS]
    if unknown:
        raise ValueError(f"未知字段 {'、'.join(map(str, unknown))}（可用字段：{'、'.join(FIELDS)}）")
    facts: Facts = {name: None for name in FIELDS}
    for name, raw in data.items():
        facts[name] = _parse_attribute(FIELDS[name], raw, today)

    if facts["established_on"] is not None:
        facts["years_established"] = whole_years(facts["established_on"], today)
    ratio = compute_rd_ratio(facts["rd_expense"], facts["annual_revenue"])
    if ratio is not None:
        facts["rd_ratio"] = ratio
    size = sizing.size_class(
        industry_code=facts["industry_code"],
        employees=facts["employees"],
        annual_revenue=facts["annual_revenue"],
        total_assets=facts["total_assets"],
    )
    if size is not None:
        facts["size_class"] = size
    return facts


def _blank(raw: Any) -> bool:
    if raw is None:
        return True
    if isinstance(raw, float) and math.isnan(raw):
        return True
    return isinstance(raw, str) and not raw.strip()


def _parse_attribute(f: ProfileField, raw: Any, today: dt.date) -> Any:
    """Validate and normalise one attribute typed into the calculator."""
    if _blank(raw):
        return None
    if f.type == "number":
        return _parse_number(f, raw)
    if f.type == "date":
        day = _parse_day(f, raw)
        if day > today:
            raise ValueError(f"{f.label}不能晚于今天")
        return day
    if f.type == "region":
        try:
            return codes.normalize_region_code(raw)
        except ValueError as exc:
            raise ValueError(f"{f.label}：{exc}") from None
    if f.type == "code":
        try:
            return codes.resolve_industry(raw)  # a code, or a name as people say it (应用软件开发)
        except ValueError as exc:
            raise ValueError(f"{f.label}：{exc}") from None
    if f.type == "enum":
        text = normalize(str(raw))
        for value, label in f.choices:
            if text.upper() == value.upper() or text == label:
                return value
        choices = "、".join(f"{value}（{label}）" for value, label in f.choices)
        raise ValueError(f"{f.label}应为 {choices} 之一，实际为 {raw}")
    # set
    items = _split_items(raw) if isinstance(raw, str) else raw
    if not isinstance(items, Iterable) or isinstance(items, bytes | Mapping):
        raise ValueError(f"{f.label}应为名称列表")
    names = set()
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{f.label}中的每一项都应为名称文字，实际为 {item!r}")
        if item.strip():
            names.add(normalize(item))
    return frozenset(names)


def check_attribute(name: str, raw: Any, today: dt.date | None = None) -> Any:
    """Return one calculator attribute parsed, or raise ValueError with the Chinese reason (the field's own)."""
    return _parse_attribute(FIELDS[name], raw, today or dt.date.today())


def _split_items(text: str) -> list[str]:
    for sep in ",，;；/\n":
        text = text.replace(sep, "、")
    return text.split("、")


def _parse_number(f: ProfileField, raw: Any) -> int | float:
    if isinstance(raw, bool):
        raise ValueError(f"{f.label}应为数字")
    if isinstance(raw, str):
        text = unicodedata.normalize("NFKC", raw).strip().replace(",", "").removesuffix(f.unit).strip()
        try:
            raw = float(text)
        except ValueError:
            raise ValueError(f"{f.label}应为数字，实际为 {raw}") from None
    if not isinstance(raw, int | float) or not math.isfinite(raw):
        raise ValueError(f"{f.label}应为有限的数字")
    if raw < 0:
        raise ValueError(f"{f.label}不能为负数")
    if f.name == "employees":
        if raw != int(raw):
            raise ValueError(f"{f.label}应为整数")
        return int(raw)
    return raw


def _parse_day(f: ProfileField, raw: Any) -> dt.date:
    if isinstance(raw, dt.datetime):
        return raw.date()
    if isinstance(raw, dt.date):
        return raw
    if isinstance(raw, str):
        try:
            return dt.date.fromisoformat(unicodedata.normalize("NFKC", raw).strip())
        except ValueError:
            pass
    raise ValueError(f"{f.label}应为 YYYY-MM-DD 格式的日期，实际为 {raw}")


def _clean_fact(field: str, value: Any) -> Any:
    """Bring one fact to its canonical Python type; blanks and NaN become None (unknown)."""
    if _blank(value):
        return None
    kind = FIELDS[field].type
    if kind == "set":
        return frozenset(value)
    if kind == "date":
        if isinstance(value, dt.datetime):
            return value.date()
        return _iso_day(value) if isinstance(value, str) else value
    return value


def _fact(facts: Mapping[str, Any], field: str) -> Any:
    return _clean_fact(field, facts.get(field))


@lru_cache(maxsize=1024)
def _iso_day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def inputs_to_fill(field: str, facts: Mapping[str, Any]) -> tuple[str, ...]:
    """Name the profile fields a firm must fill in so that a missing value of ``field`` becomes known."""
    if field not in DERIVED_INPUTS:
        return (field,)
    candidates = DERIVED_INPUTS[field]
    if field == "size_class" and _fact(facts, "industry_code") is not None:
        row = sizing.size_row(_fact(facts, "industry_code"))
        if row is None:  # outside the standard's scope: no input will produce a size class
            return (field,)
        candidates = tuple(row.indicators())
    absent = tuple(name for name in candidates if _fact(facts, name) is None)
    return absent or (field,)  # e.g. revenue 0 leaves the R&D ratio undefined


# =========================================================================== operators
# Each operator receives a known firm value, the rule's value as written in the JSON (dates as
# ISO strings) and the day of judgement. They mirror catalog.rules.OPS one for one.


def _comparable(firm: Any, value: Any) -> Any:
    """Return the rule value in the firm value's type (an ISO date string becomes a date)."""
    if isinstance(firm, dt.date) and isinstance(value, str):
        return _iso_day(value)
    return value


def equals(firm: Any, value: Any, today: dt.date) -> bool:
    """eq: the firm's value is exactly the rule's value."""
    return bool(firm == value)


def differs(firm: Any, value: Any, today: dt.date) -> bool:
    """ne: the firm's value is anything but the rule's value."""
    return bool(firm != value)


def greater_than(firm: Any, value: Any, today: dt.date) -> bool:
    """gt: the number is larger than, or the date later than, the threshold."""
    return bool(firm > _comparable(firm, value))


def at_least(firm: Any, value: Any, today: dt.date) -> bool:
    """gte: the number is at least, or the date no earlier than, the threshold."""
    return bool(firm >= _comparable(firm, value))


def less_than(firm: Any, value: Any, today: dt.date) -> bool:
    """lt: the number is smaller than, or the date earlier than, the threshold."""
    return bool(firm < _comparable(firm, value))


def at_most(firm: Any, value: Any, today: dt.date) -> bool:
    """lte: the number is at most, or the date no later than, the threshold."""
    return bool(firm <= _comparable(firm, value))


def between(firm: Any, value: Any, today: dt.date) -> bool:
    """between: the number lies in [low, high], both ends included."""
    low, high = value
    return bool(low <= firm <= high)


def one_of(firm: Any, value: Any, today: dt.date) -> bool:
    """in: the firm's value is one of the listed values."""
    return firm in value


def none_of(firm: Any, value: Any, today: dt.date) -> bool:
    """not_in: the firm's value is none of the listed values."""
    return firm not in value


def starts_with_any(firm: Any, value: Any, today: dt.date) -> bool:
    """prefix: the industry code starts with one of the listed prefixes (C39 covers C3911)."""
    return any(firm.startswith(prefix) for prefix in value)


def within_any_region(firm: Any, value: Any, today: dt.date) -> bool:
    """within_region: the firm's region lies in one of the listed regions (a city covers its districts)."""
    try:
        return any(codes.region_contains(code, firm) for code in value)
    except ValueError:  # a malformed firm code lies in no region
        return False


def has_any_of(firm: Any, value: Any, today: dt.date) -> bool:
    """has_any: the firm holds at least one of the listed qualifications or tags."""
    return any(tag in firm for tag in value)


def has_all_of(firm: Any, value: Any, today: dt.date) -> bool:
    """has_all: the firm holds every listed qualification or tag."""
    return all(tag in firm for tag in value)


def has_none_of(firm: Any, value: Any, today: dt.date) -> bool:
    """has_none: the firm holds none of the listed qualifications or tags."""
    return not any(tag in firm for tag in value)


def years_since_at_least(firm: Any, value: Any, today: dt.date) -> bool:
    """years_since_gte: at least N full calendar years have passed since the date (成立满 N 年)."""
    return whole_years(firm, today) >= value


def years_since_at_most(firm: Any, value: Any, today: dt.date) -> bool:
    """years_since_lte: at most N full calendar years have passed since the date (成立不超过 N 年)."""
    return whole_years(firm, today) <= value


def date_within(firm: Any, value: Any, today: dt.date) -> bool:
    """date_between: the date lies in [start, end], both days included."""
    return _iso_day(value[0]) <= firm <= _iso_day(value[1])


Operator = Callable[[Any, Any, dt.date], bool]

OPERATORS: dict[str, Operator] = {
    "eq": equals,
    "ne": differs,
    "gt": greater_than,
    "gte": at_least,
    "lt": less_than,
    "lte": at_most,
    "between": between,
    "in": one_of,
    "not_in": none_of,
    "prefix": starts_with_any,
    "within_region": within_any_region,
    "has_any": has_any_of,
    "has_all": has_all_of,
    "has_none": has_none_of,
    "years_since_gte": years_since_at_least,
    "years_since_lte": years_since_at_most,
    "date_between": date_within,
}
if set(OPERATORS) != set(OPS):  # a new op in catalog.rules must get its function here before anything runs
    raise RuntimeError(f"operators out of step with catalog.rules.OPS: {sorted(set(OPERATORS) ^ set(OPS))}")

# The operator that says the opposite, where the format has one: a negated condition is worded with it.
_OPPOSITE = {
    "eq": "ne",
    "ne": "eq",
    "in": "not_in",
    "not_in": "in",
    "gt": "lte",
    "lte": "gt",
    "gte": "lt",
    "lt": "gte",
    "has_any": "has_none",
    "has_none": "has_any",
}


def _effective_op(op: str, negated: bool) -> str | None:
    """Return the operator a (possibly negated) condition amounts to, None when none expresses it."""
    return _OPPOSITE.get(op) if negated else op


# =========================================================================== wording


def _num(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.2f}".rstrip("0").rstrip(".")
    return str(v)


def _amount(v: Any, unit: str) -> str:
    """A number with its unit, as catalog.rules words thresholds: "5%", "500 万元", "3 年"."""
    if not unit:
        return _num(v)
    return f"{_num(v)}{unit}" if unit == "%" else f"{_num(v)} {unit}"


def _industry_text(code: str) -> str:
    name = codes.industry_name(code)
    return f"{name}（{code}）" if name else code


def _region_text(code: str) -> str:
    """Name a firm's region with its city, as people say it: "广州市天河区", "中山市"."""
    try:
        path = codes.region_path(code)
    except ValueError:
        return code
    names = [codes.region_name(c) for c in (path[1:] or path)]  # the province only when nothing finer
    return "".join(n for n in names if n) or code


def _describe(field: str, op: str, value: Any) -> str:
    """Word a condition like `describe_condition`, naming regions and industries."""
    if FIELDS[field].type == "code":
        label = label_of(field)
        items = value if isinstance(value, list) else [value]
        names = "、".join(_industry_text(str(v)) for v in items)
        if op == "prefix":
            return f"{label}属于 {names}{' 之一' if len(items) > 1 else ''}"
        shown = [_industry_text(str(v)) for v in items] if isinstance(value, list) else _industry_text(str(value))
        return describe_condition({"field": field, "op": op, "value": shown})
    return describe_condition({"field": field, "op": op, "value": value}, region_name=codes.region_name)


def _describe_negated(field: str, op: str, value: Any) -> str:
    """Word the opposite of a condition whose operator has no opposite, as a plain statement.

    "所属行业不属于 软件开发（I6513）", never "不满足「所属行业属于…」": the reason is shown after
    "✓ 满足" / "✗ 不满足", and a negation inside a negation reads wrong.
    """
    f = FIELDS[field]
    label = label_of(field)
    items = value if isinstance(value, list) else [value]
    if op == "prefix":
        if f.type == "code":
            names = "、".join(_industry_text(str(v)) for v in items)
            return f"{label}不属于 {names}{'中任何一类' if len(items) > 1 else ''}"
        return f"{label}代码不以 {'、'.join(map(str, items))}{' 中任何一个' if len(items) > 1 else ' '}开头"
    if op == "within_region":
        names = "、".join((codes.region_name(str(v)) or str(v)) for v in items)
        return f"{label}不在 {names} 范围内"
    if op == "between" and len(items) == 2:
        return f"{label}不在 {_amount(items[0], '')}–{_amount(items[1], f.unit)} 之间"
    if op == "date_between" and len(items) == 2:
        return f"{label}不在 {items[0]} 至 {items[1]} 之间"
    if op == "has_all":
        noun = {"qualifications": "资质", "tags": "标签"}.get(field, label)
        return f"未同时具备{noun}：{'、'.join(map(str, items))}"
    if op in ("years_since_gte", "years_since_lte"):
        verb = "成立" if field == "established_on" else f"{label}距今"
        return f"{verb}{'不满' if op == 'years_since_gte' else '超过'} {_num(value)} 年"
    return f"并非「{_describe(field, op, value)}」"


def _requirement(cond: Mapping[str, Any], negated: bool) -> tuple[str, str]:
    """Return (as stated, as demanded) wording: "… ≥ 5%" and "…需 ≥ 5%".

    Both read right after "✓ 满足" and "✗ 不满足": a negated condition is worded as its opposite
    ("…不属于…"), never as "不满足「…」".
    """
    label = cond.get("label")
    if isinstance(label, str) and label.strip():
        text = label.strip()
        return (f"并非「{text}」的情形", f"需不属于「{text}」的情形") if negated else (text, f"需满足「{text}」")
    field, op, value = cond["field"], cond["op"], cond["value"]
    effective = _effective_op(op, negated)
    if effective is None:
        text = _describe_negated(field, op, value)
        name = label_of(field)
        if text.startswith("未同时具备"):
            return text, f"不得同时具备{text[len('未同时具备') :]}"
        if text.startswith(name):
            return text, f"{name}需{text[len(name) :]}"
        return text, f"需{text}"
    text = _describe(field, effective, value)
    name = label_of(field)
    demanded = f"{name}需{text[len(name) :]}" if text.startswith(name) else f"需{text}"
    return text, demanded


def _firm_text(field: str, op: str, firm: Any, value: Any, today: dt.date) -> str:
    """Word the firm's value as a reason shows it after "当前"."""
    f = FIELDS[field]
    if f.type == "set":
        wanted = value if isinstance(value, list) else [value]
        held = [tag for tag in wanted if tag in firm]
        lacking = [tag for tag in wanted if tag not in firm]
        if not held:
            return "未具备" if len(wanted) == 1 else "均未具备"
        text = f"已具备 {'、'.join(held)}"
        return f"{text}，缺少 {'、'.join(lacking)}" if op == "has_all" and lacking else text
    if f.type == "date":
        if op in ("years_since_gte", "years_since_lte"):
            return f"{whole_years(firm, today)} 年（{f.label} {firm.isoformat()}）"
        return firm.isoformat()
    if f.type == "number":
        return _amount(firm, f.unit)
    if f.type == "enum":
        return dict(f.choices).get(firm, str(firm))
    if f.type == "region":
        return _region_text(firm)
    return _industry_text(firm)


def _relative(distance: float, threshold: float) -> float:
    return abs(distance) / (abs(threshold) or 1.0)


def _gap(field: str, op: str | None, firm: Any, value: Any, today: dt.date) -> float | None:
    """How far a firm is from meeting a failed requirement: 0 at the threshold, larger further away.

    Numbers: distance relative to the threshold. Dates: distance in years. Sets: how many tags to
    gain or shed. None where distance means nothing (codes, regions, enums, "not equal").
    """
    kind = FIELDS[field].type
    if op is None:
        return None
    if kind == "set":
        wanted = value if isinstance(value, list) else [value]
        if op == "has_all":
            return float(sum(tag not in firm for tag in wanted))
        if op == "has_none":
            return float(sum(tag in firm for tag in wanted))
        return 1.0
    if kind == "number":
        if op in ("gt", "gte", "lt", "lte", "eq"):
            return _relative(firm - value, value)
        if op == "between":
            low, high = value
            return _relative(low - firm, low) if firm < low else _relative(firm - high, high)
        return None
    if kind == "date":
        if op in ("gt", "gte", "lt", "lte"):
            return abs((_iso_day(value) - firm).days) / 365.2425
        if op == "date_between":
            start, end = _iso_day(value[0]), _iso_day(value[1])
            return abs(((start if firm < start else end) - firm).days) / 365.2425
        if op in ("years_since_gte", "years_since_lte"):
            return _relative(whole_years(firm, today) - value, value)
    return None


# =========================================================================== evaluating one firm


@dataclass(frozen=True)
class ConditionResult:
    """One condition judged for one firm, worded for the firm."""

    path: str  # where the condition sits, as validation errors name it: "rules.all[1].any[0]"
    field: str
    op: str
    value: Any  # the rule's value as written
    state: State  # whether the requirement, as worded in reason, is satisfied
    reason: str
    firm_value: Any
    gap: float | None  # closeness when not met (see _gap); UNKNOWN_GAP when unknown; 0 when met
    negated: bool = False  # under an odd number of "not": the requirement is the opposite of op
    needs: tuple[str, ...] = ()  # profile fields to fill in, when unknown
    node_id: str | None = None


@dataclass(frozen=True)
class PolicyVerdict:
    """A policy judged for one firm: status, every condition, what is missing and a summary."""

    status: Status
    conditions: list[ConditionResult]  # every condition, in document order
    missing: list[ConditionResult]  # the failed and unknown conditions that decide, closest first
    fields_to_fill: list[str]  # profile fields whose absence leaves missing conditions unknown
    summary: str

    @property
    def code(self) -> int:
        """Return the status as evaluate_many's code (2 eligible, 1 likely, 0 ineligible)."""
        return STATUS_CODES[self.status]


@dataclass
class _Outcome:
    state: State
    missing: list[ConditionResult]  # conditions to fix for this node to hold
    support: list[ConditionResult]  # met conditions that make it hold


def _is_condition(node: Mapping[str, Any]) -> bool:
    return any(key in node for key in ("field", "op", "value"))


def _judge(
    node: Mapping[str, Any], path: str, negated: bool, facts: Mapping[str, Any], today: dt.date
) -> ConditionResult:
    field, op, value = node["field"], node["op"], node["value"]
    if op not in OPERATORS:
        raise ValueError(f"不支持的运算符 {op}")
    if field not in FIELDS:
        raise ValueError(f"未知字段 {field}")
    firm = _fact(facts, field)
    stated, demanded = _requirement(node, negated)
    node_id = node.get("id")
    if firm is None:
        needs = inputs_to_fill(field, facts)
        reason = word_reason(UNKNOWN, stated, demanded, needs=needs)
        return ConditionResult(path, field, op, value, UNKNOWN, reason, None, UNKNOWN_GAP, negated, needs, node_id)
    holds = OPERATORS[op](firm, value, today) != negated
    shown = _firm_text(field, op, firm, value, today)
    shown_value = sorted(firm) if isinstance(firm, frozenset) else firm
    if holds:
        reason = word_reason(MET, stated, demanded, shown)
        return ConditionResult(path, field, op, value, MET, reason, shown_value, 0.0, negated, (), node_id)
    gap = _gap(field, _effective_op(op, negated), firm, value, today)
    reason = word_reason(NOT_MET, stated, demanded, shown)
    return ConditionResult(path, field, op, value, NOT_MET, reason, shown_value, gap, negated, (), node_id)


def word_reason(state: State | str, stated: str, demanded: str, shown: str = "", needs: Sequence[str] = ()) -> str:
    """Word one judged condition: met, as stated with the firm's value (`shown`); not met, as demanded
    with it; unknown, naming the fields to fill in (`needs`). The batch's stored verdicts are worded
    with it too (`matcher.wordbatch.reason`)."""
    if state == UNKNOWN:
        names = "".join(f"「{label_of(name)}」" for name in needs)
        return f"缺少{names}信息，无法判断：{demanded}"
    return f"{stated}（当前 {shown}）" if state == MET else f"{demanded}，当前 {shown}"


def _cost(missing: list[ConditionResult]) -> tuple[int, int, float]:
    """Order branches by how much they lack: failures, then unknowns, then total distance."""
    failed = [r for r in missing if r.state == NOT_MET]
    distance = sum(1.0 if r.gap is None else r.gap for r in failed)
    return len(failed), len(missing) - len(failed), distance


def _every(children: list[_Outcome]) -> _Outcome:
    """Kleene conjunction: fails if any child fails, unknown if any is unknown, else holds."""
    states = {c.state for c in children}
    if states == {MET}:
        return _Outcome(MET, [], [r for c in children for r in c.support])
    state = NOT_MET if NOT_MET in states else UNKNOWN
    return _Outcome(state, [r for c in children if c.state != MET for r in c.missing], [])


def _some(children: list[_Outcome]) -> _Outcome:
    """Kleene disjunction: holds if any child holds, unknown if any is unknown, else fails.

    When it does not hold, only the closest branch's gaps count: the firm needs one branch, and
    listing every branch's failures would overstate what it lacks.
    """
    for child in children:
        if child.state == MET:
            return _Outcome(MET, [], child.support)
    state = UNKNOWN if any(c.state == UNKNOWN for c in children) else NOT_MET
    closest = min(children, key=lambda c: _cost(c.missing))
    return _Outcome(state, closest.missing, [])


def _walk(
    node: Mapping[str, Any],
    path: str,
    negated: bool,
    facts: Mapping[str, Any],
    today: dt.date,
    out: list[ConditionResult],
) -> _Outcome:
    if _is_condition(node):
        result = _judge(node, path, negated, facts, today)
        out.append(result)
        if result.state == MET:
            return _Outcome(MET, [], [result])
        return _Outcome(result.state, [result], [])
    if "not" in node:
        return _walk(node["not"], f"{path}.not", not negated, facts, today, out)
    key = "all" if "all" in node else "any"
    children = [_walk(child, f"{path}.{key}[{i}]", negated, facts, today, out) for i, child in enumerate(node[key])]
    # De Morgan: under a "not", all-of becomes any-of the negated children and vice versa.
    return _every(children) if (key == "all") != negated else _some(children)


def _closest_first(missing: list[ConditionResult]) -> list[ConditionResult]:
    """Unknown conditions first (filling a field is cheapest), then failures by gap; ties in document order."""
    unknown = [r for r in missing if r.state == UNKNOWN]
    failed = [r for r in missing if r.state == NOT_MET]
    failed.sort(key=lambda r: (r.gap is None, r.gap or 0.0))
    return unknown + failed


def _labels(fields: Iterable[str]) -> str:
    return "、".join(label_of(name) for name in fields)


NO_RULES_SUMMARY = "该政策未设可自动判断的条件，以申报指南为准"


def word_summary(status: Status | str, support: int, failed: Sequence[str], to_fill: Sequence[str]) -> str:
    """Word a verdict's summary: eligible, how many conditions support it; likely, what to fill in;
    ineligible, the reasons of its failed conditions (`failed`, closest first). The batch's stored
    verdicts are worded with it too (`matcher.wordbatch.summary`)."""
    if status == ELIGIBLE:
        return f"符合全部 {support} 项条件"
    if status == LIKELY:
        return f"需补充：{_labels(to_fill)}"
    shown = "；".join(failed[:3]) + ("等" if len(failed) > 3 else "")
    text = f"还差 {len(failed)} 项条件：{shown}"
    return f"{text}；另需补充：{_labels(to_fill)}" if to_fill else text


def _summary(status: Status, outcome: _Outcome, missing: list[ConditionResult], to_fill: list[str]) -> str:
    failed = [r.reason for r in missing if r.state == NOT_MET]
    return word_summary(status, len(outcome.support), failed, to_fill)


def evaluate(rules: Mapping[str, Any] | None, facts: Mapping[str, Any], *, today: dt.date) -> PolicyVerdict:
    """Judge a rule tree against one firm's facts; ``None`` rules make every firm eligible."""
    if rules is None:
        return PolicyVerdict(ELIGIBLE, [], [], [], NO_RULES_SUMMARY)
    conditions: list[ConditionResult] = []
    outcome = _walk(rules, "rules", False, facts, today, conditions)
    status: Status = {MET: ELIGIBLE, UNKNOWN: LIKELY, NOT_MET: INELIGIBLE}[outcome.state]
    missing = _closest_first(outcome.missing)
    to_fill = list(dict.fromkeys(name for r in missing if r.state == UNKNOWN for name in r.needs))
    return PolicyVerdict(status, conditions, missing, to_fill, _summary(status, outcome, missing, to_fill))


# =========================================================================== many firms at once


class FactsFrame:
    """The facts of many firms as columns, for `evaluate_many`.

    Layout, by field type: numbers as float64 with NaN for unknown; dates as datetime64[D] with
    NaT; codes, regions and enums as categories plus int32 codes (-1 unknown), so an operator runs
    once per distinct value and is gathered back; sets as one boolean array per tag name plus a
    ``known`` array. A field the frame lacks is unknown for every firm.
    """

    def __init__(
        self,
        size: int,
        *,
        numbers: dict[str, np.ndarray] | None = None,
        dates: dict[str, np.ndarray] | None = None,
        categories: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
        sets: dict[str, dict[str, np.ndarray]] | None = None,
        set_known: dict[str, np.ndarray] | None = None,
        ids: np.ndarray | None = None,
    ) -> None:
        self.size = size
        self.numbers = numbers or {}
        self.dates = dates or {}
        self.categories = categories or {}
        self.sets = sets or {}
        self.set_known = set_known or {}
        self.ids = ids

    def __len__(self) -> int:
        return self.size

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]], *, ids: Iterable[int] | None = None) -> FactsFrame:
        """Build a frame from facts dicts (as `profile_facts` or `facts_from_attributes` return them)."""
        frame = cls(len(records), ids=None if ids is None else np.fromiter(ids, dtype=np.int64))
        for name, f in FIELDS.items():
            frame._add_column(f, [_fact(r, name) for r in records])
        return frame

    @classmethod
    def from_enterprises(
        cls, rows: Iterable[Enterprise], today: dt.date, *, tags: Mapping[int, Iterable[str]] | None = None
    ) -> FactsFrame:
        """Build a frame from stored enterprises (qualifications loaded), keyed by their ids."""
        rows = list(rows)
        tags = tags or {}
        records = [profile_facts(e, today, tags.get(e.id)) for e in rows]
        return cls.from_records(records, ids=[e.id for e in rows])

    @classmethod
    def from_dataframe(cls, df: pd.DataFrame, *, today: dt.date | None = None) -> FactsFrame:
        """Build a frame from a DataFrame with one column per field (missing values unknown).

        A set field is either a column of iterables (None unknown) or one boolean column per tag
        named "qualifications:高新技术企业". With ``today``, ``years_established`` is computed
        from ``established_on`` when absent; ``rd_ratio`` is computed from its inputs when absent.
        """
        frame = cls(len(df), ids=df["id"].to_numpy(np.int64) if "id" in df.columns else None)
        for name, f in FIELDS.items():
            if name in df.columns:
                series = df[name]
                if f.type == "number":
                    frame.numbers[name] = pd.to_numeric(series, errors="coerce").to_numpy(np.float64, na_value=np.nan)
                elif f.type == "date":
                    frame.dates[name] = pd.to_datetime(series, errors="coerce").to_numpy().astype("datetime64[D]")
                elif f.type == "set":
                    frame._add_column(f, [_clean_fact(name, v) for v in series.tolist()])
                else:
                    values = series.astype(object).where(series.notna() & (series.astype(str) != ""), None)
                    frame._add_column(f, values.tolist())
            elif f.type == "set":
                wide = [c for c in df.columns if isinstance(c, str) and c.startswith(f"{name}:")]
                if wide:
                    frame.sets[name] = {c.split(":", 1)[1]: df[c].fillna(False).to_numpy(bool) for c in wide}
                    frame.set_known[name] = np.ones(len(df), dtype=bool)
        if "years_established" not in df.columns and "established_on" in frame.dates and today is not None:
            days = frame.dates["established_on"]
            years = _whole_years_many(days, today).astype(np.float64)
            years[np.isnat(days)] = np.nan
            frame.numbers["years_established"] = years
        if "rd_ratio" not in df.columns and {"rd_expense", "annual_revenue"} <= frame.numbers.keys():
            revenue = frame.numbers["annual_revenue"]
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.round(frame.numbers["rd_expense"] / revenue * 100, 2)
            ratio[revenue == 0] = np.nan
            frame.numbers["rd_ratio"] = ratio
        return frame

    def _add_column(self, f: ProfileField, values: list[Any]) -> None:
        if f.type == "number":
            self.numbers[f.name] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        elif f.type == "date":
            self.dates[f.name] = np.array(values, dtype="datetime64[D]")
        elif f.type == "set":
            known = np.zeros(self.size, dtype=bool)
            members: dict[str, list[int]] = {}
            for i, tags in enumerate(values):
                if tags is None:
                    continue
                known[i] = True
                for tag in tags:
                    members.setdefault(tag, []).append(i)
            matrix = {}
            for tag, rows in members.items():
                column = np.zeros(self.size, dtype=bool)
                column[rows] = True
                matrix[tag] = column
            self.sets[f.name] = matrix
            self.set_known[f.name] = known
        else:
            codes_, uniques = pd.factorize(np.array(values, dtype=object), use_na_sentinel=True)
            self.categories[f.name] = (np.asarray(uniques, dtype=object), codes_.astype(np.int32))

    def slice(self, start: int, stop: int) -> FactsFrame:
        """Return rows start:stop as views (no copy)."""
        return FactsFrame(
            stop - start,
            numbers={k: v[start:stop] for k, v in self.numbers.items()},
            dates={k: v[start:stop] for k, v in self.dates.items()},
            categories={k: (u, c[start:stop]) for k, (u, c) in self.categories.items()},
            sets={f: {t: col[start:stop] for t, col in m.items()} for f, m in self.sets.items()},
            set_known={k: v[start:stop] for k, v in self.set_known.items()},
            ids=None if self.ids is None else self.ids[start:stop],
        )

    def take(self, rows: np.ndarray) -> FactsFrame:
        """Return the given rows (a copy)."""
        return FactsFrame(
            len(rows),
            numbers={k: v[rows] for k, v in self.numbers.items()},
            dates={k: v[rows] for k, v in self.dates.items()},
            categories={k: (u, c[rows]) for k, (u, c) in self.categories.items()},
            sets={f: {t: col[rows] for t, col in m.items()} for f, m in self.sets.items()},
            set_known={k: v[rows] for k, v in self.set_known.items()},
            ids=None if self.ids is None else self.ids[rows],
        )

    def strings(self, field: str) -> np.ndarray:
        """Return a code, region or enum column as an object array of strings (None unknown)."""
        uniques, idx = self.categories[field]
        out = np.empty(self.size, dtype=object)
        known = idx >= 0
        out[known] = uniques[idx[known]]
        return out


def _whole_years_many(days: np.ndarray, today: dt.date) -> np.ndarray:
    """`whole_years` for an array of datetime64[D] (NaT gives garbage; callers mask it)."""
    years = days.astype("datetime64[Y]")
    months = days.astype("datetime64[M]")
    month = (months - years.astype("datetime64[M]")).astype(np.int64) + 1
    day = (days - months.astype("datetime64[D]")).astype(np.int64) + 1
    before_anniversary = (today.month * 100 + today.day) < (month * 100 + day)
    return today.year - (years.astype(np.int64) + 1970) - before_anniversary


def _years_at_least_many(days: np.ndarray, years: int, today: dt.date) -> np.ndarray:
    """Tell which dates are at least ``years`` whole calendar years before today.

    whole_years(d, today) >= k exactly when d falls on or before today's date k years back (28
    February standing in for a missing 29th), so one comparison replaces a date decomposition.
    """
    year = today.year - years
    if year < dt.MINYEAR:
        return _whole_years_many(days, today) >= years
    day = today.day if (today.month, today.day) != (2, 29) or _is_leap(year) else 28
    return days <= np.datetime64(dt.date(year, today.month, day), "D")


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _array_value(x: np.ndarray, value: Any) -> Any:
    return np.datetime64(value, "D") if x.dtype.kind == "M" and isinstance(value, str) else value


# Array twins of OPERATORS for number and date columns; the property test holds them to the originals.
_ARRAY_OPERATORS: dict[str, Callable[[np.ndarray, Any, dt.date], np.ndarray]] = {
    "eq": lambda x, v, today: x == _array_value(x, v),
    "ne": lambda x, v, today: x != _array_value(x, v),
    "gt": lambda x, v, today: x > _array_value(x, v),
    "gte": lambda x, v, today: x >= _array_value(x, v),
    "lt": lambda x, v, today: x < _array_value(x, v),
    "lte": lambda x, v, today: x <= _array_value(x, v),
    "between": lambda x, v, today: (x >= v[0]) & (x <= v[1]),
    "date_between": lambda x, v, today: (x >= np.datetime64(v[0], "D")) & (x <= np.datetime64(v[1], "D")),
    "years_since_gte": lambda x, v, today: _years_at_least_many(x, math.ceil(v), today),
    "years_since_lte": lambda x, v, today: ~_years_at_least_many(x, math.floor(v) + 1, today),
}


def _freeze(value: Any) -> Any:
    """Return a hashable stand-in for a rule value (lists become tuples)."""
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value


TableCache = dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray]]
"""Per-distinct-value answers of scalar operators, shared by the policies judged over one frame."""

LeafMemo = dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray, np.ndarray]]
"""(field, op, value, negated) → a condition's (met, known, state) over one frame, shared by its policies."""


def _condition_many(
    node: Mapping[str, Any], frame: FactsFrame, today: dt.date, cache: TableCache | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Return (truth of op where known, known) for one condition over every firm.

    `cache`, when given, keeps each (field, operator, value)'s answer per distinct firm value, so
    policies repeating a condition over the same frame (or slices of it) run the operator once.
    """
    field, op, value = node["field"], node["op"], node["value"]
    if op not in OPERATORS:
        raise ValueError(f"不支持的运算符 {op}")
    kind = FIELDS[field].type
    none = np.zeros(frame.size, dtype=bool)
    if kind in ("number", "date"):
        column = (frame.numbers if kind == "number" else frame.dates).get(field)
        if column is None:
            return none, none
        known = ~np.isnan(column) if kind == "number" else ~np.isnat(column)
        return _ARRAY_OPERATORS[op](column, value, today), known
    if kind == "set":
        matrix, known = frame.sets.get(field), frame.set_known.get(field)
        if matrix is None or known is None:
            return none, none
        wanted = value if isinstance(value, list) else [value]
        columns = [matrix.get(tag, none) for tag in wanted]
        if op == "has_all":
            return np.logical_and.reduce(columns), known
        held = np.logical_or.reduce(columns)
        return (~held if op == "has_none" else held), known
    if field not in frame.categories:
        return none, none
    uniques, idx = frame.categories[field]
    key = (field, op, _freeze(value), today) if cache is not None else None
    hit = cache.get(key) if cache is not None and key is not None else None
    if hit is not None and hit[0] is uniques:
        table = hit[1]
    else:
        # Run the operator itself once per distinct value; the extra last slot answers for unknown (-1).
        truth = np.fromiter((OPERATORS[op](u, value, today) for u in uniques), dtype=bool, count=len(uniques))
        table = np.append(truth, False)
        if cache is not None and key is not None:
            cache[key] = (uniques, table)
    return table[idx], idx >= 0


def _node_many(
    node: Mapping[str, Any],
    frame: FactsFrame,
    today: dt.date,
    path: str,
    negated: bool,
    leaves: dict[str, np.ndarray] | None,
    cache: TableCache | None = None,
    memo: LeafMemo | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (met, known) arrays for a node; record leaf states when ``leaves`` is given.

    ``memo`` (a dict kept while judging many policies over this very frame on one day) keeps each condition's
    answer, so a condition repeated across policies is judged once; its arrays are shared, never written.
    """
    if _is_condition(node):
        mkey = (node["field"], node["op"], _freeze(node["value"]), negated) if memo is not None else ()
        hit = memo.get(mkey) if memo is not None else None
        if hit is not None:
            met, known, state = hit
        else:
            truth, known = _condition_many(node, frame, today, cache)
            met = known & truth
            if leaves is None and memo is None:
                return met, known
            holds = known & (truth != negated)
            # 2 met, 0 not met, 1 unknown (holds implies known): 2·holds + 1 − known.
            state = holds.astype(np.int8)
            state += state
            state += 1
            state -= known
            if memo is not None:
                memo[mkey] = (met, known, state)
        if leaves is not None:
            leaves[path] = state
        return met, known
    if "not" in node:
        met, known = _node_many(node["not"], frame, today, f"{path}.not", not negated, leaves, cache, memo)
        return known & ~met, known
    key = "all" if "all" in node else "any"
    parts = [
        _node_many(c, frame, today, f"{path}.{key}[{i}]", negated, leaves, cache, memo) for i, c in enumerate(node[key])
    ]
    if key == "all":
        met = np.logical_and.reduce([m for m, _ in parts])
        failed = np.logical_or.reduce([k & ~m for m, k in parts])
        return met, met | failed
    met = np.logical_or.reduce([m for m, _ in parts])
    return met, met | np.logical_and.reduce([k for _, k in parts])


def evaluate_many(rules: Mapping[str, Any] | None, frame: FactsFrame, *, today: dt.date) -> np.ndarray:
    """Return each firm's status code (int8: 2 eligible, 1 likely, 0 ineligible) for one rule tree."""
    if rules is None:
        return np.full(frame.size, STATUS_CODES[ELIGIBLE], dtype=np.int8)
    met, known = _node_many(rules, frame, today, "rules", False, None)
    out = np.full(frame.size, STATUS_CODES[LIKELY], dtype=np.int8)
    out[met] = STATUS_CODES[ELIGIBLE]
    out[known & ~met] = STATUS_CODES[INELIGIBLE]
    return out


def evaluate_with_states(
    rules: Mapping[str, Any] | None,
    frame: FactsFrame,
    *,
    today: dt.date,
    cache: TableCache | None = None,
    memo: LeafMemo | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return status codes (as `evaluate_many`) and condition states (conditions × firms, int8 as
    `condition_states_many`, in document order) from one pass over the tree. `cache` (a dict kept
    while judging many policies over one frame) spares repeating scalar operators; `memo` (a dict
    kept while judging many policies over this very frame object on one day, empty when first passed)
    spares repeating whole conditions."""
    if rules is None:
        return np.full(frame.size, STATUS_CODES[ELIGIBLE], dtype=np.int8), np.zeros((0, frame.size), dtype=np.int8)
    leaves: dict[str, np.ndarray] = {}
    met, known = _node_many(rules, frame, today, "rules", False, leaves, cache, memo)
    out = np.full(frame.size, STATUS_CODES[LIKELY], dtype=np.int8)
    out[met] = STATUS_CODES[ELIGIBLE]
    out[known & ~met] = STATUS_CODES[INELIGIBLE]
    states = np.vstack(list(leaves.values())) if leaves else np.zeros((0, frame.size), dtype=np.int8)
    return out, states


def condition_states_many(
    rules: Mapping[str, Any] | None, frame: FactsFrame, *, today: dt.date
) -> dict[str, np.ndarray]:
    """Return each condition's state codes per firm (int8: 2 met, 1 unknown, 0 not met), keyed by path.

    States match `ConditionResult.state`: under a "not" they say whether the negated requirement holds.
    """
    leaves: dict[str, np.ndarray] = {}
    if rules is not None:
        _node_many(rules, frame, today, "rules", False, leaves)
    return leaves


# =========================================================================== what would help

# Facts a firm cannot change by acting: where it is, what it does, when it was founded, its
# derived size. A failure on one of these is not offered as a change.
_FIXED_FIELDS = frozenset({"region_code", "industry_code", "established_on", "years_established", "size_class"})
_UNUSED_DAY = dt.date(2000, 1, 1)  # operators on numbers, sets and enums ignore the day
_KIND_ORDER = {"fill": 0, "acquire": 1, "raise": 2, "lower": 2, "set": 3}

ChangeKind = Literal["fill", "raise", "lower", "acquire", "set"]


@dataclass(frozen=True)
class Change:
    """One change to a firm's profile and the policies it would open."""

    kind: ChangeKind
    description: str  # "补充「年研发费用」", "研发费用占营业收入比例提高到 5%", "取得「高新技术企业」资质"
    field: str
    target: Any  # the value to reach (None when filling in fields)
    policy_ids: list[int]
    fields: tuple[str, ...] = ()  # for "fill": every field to fill in


@dataclass(frozen=True)
class _Candidate:
    kind: ChangeKind
    field: str
    target: Any
    probe: Any  # the value the firm would have after the change (fill: the fields filled in)
    group: tuple[Any, ...]
    description: str
    effort: float


def _holds_with(leaf: ConditionResult, value: Any) -> bool:
    return OPERATORS[leaf.op](value, leaf.value, _UNUSED_DAY) != leaf.negated


def _fixes(c: _Candidate, leaf: ConditionResult) -> bool:
    """Tell whether the change alone would turn this condition from missing into met (or decidable)."""
    if c.kind == "fill":
        return leaf.state == UNKNOWN and set(leaf.needs) <= set(c.probe)
    if leaf.state != NOT_MET or leaf.field != c.field:
        return False
    if c.kind == "acquire":
        return _holds_with(leaf, frozenset(leaf.firm_value) | {c.target})
    return _holds_with(leaf, c.probe)


def _candidates(leaf: ConditionResult) -> list[_Candidate]:
    """The changes suggested by one missing condition."""
    f = FIELDS[leaf.field]
    if leaf.state == UNKNOWN:
        names = "".join(f"「{label_of(n)}」" for n in leaf.needs)
        return [
            _Candidate("fill", leaf.needs[0], None, leaf.needs, ("fill", leaf.needs), f"补充{names}", len(leaf.needs))
        ]
    op = _effective_op(leaf.op, leaf.negated)
    if leaf.field in _FIXED_FIELDS or op is None:
        return []
    firm = leaf.firm_value
    if f.type == "number" and op in ("gt", "gte", "lt", "lte", "eq", "between"):
        target = leaf.value
        if op == "between":
            target = leaf.value[0] if firm < leaf.value[0] else leaf.value[1]
        strict = op in ("gt", "lt")
        upward = op in ("gt", "gte") or (op in ("eq", "between") and target > firm)
        kind: ChangeKind = "raise" if upward else "lower"
        probe = np.nextafter(float(target), math.inf if kind == "raise" else -math.inf) if strict else target
        word = "提高到" if kind == "raise" else "降低到"
        suffix = ("以上" if kind == "raise" else "以下") if strict else ""
        text = f"{f.label}{word} {_amount(target, f.unit)}{suffix}"
        return [_Candidate(kind, leaf.field, target, probe, (kind, leaf.field), text, _relative(target - firm, target))]
    if f.type == "set" and op in ("has_any", "has_all"):
        lacking = [tag for tag in leaf.value if tag not in firm]
        if op == "has_all" and len(lacking) != 1:
            return []
        word = "资质" if leaf.field == "qualifications" else "标签"
        verb = "取得" if leaf.field == "qualifications" else "具备"
        return [
            _Candidate("acquire", leaf.field, tag, tag, ("acquire", leaf.field, tag), f"{verb}「{tag}」{word}", 0.0)
            for tag in lacking
        ]
    if f.type == "enum":
        order = [value for value, _ in f.choices]
        here = order.index(firm) if firm in order else 0
        return [
            _Candidate("set", leaf.field, value, value, ("set", leaf.field), f"{f.label}调整为 {label}", abs(i - here))
            for i, (value, label) in enumerate(f.choices)
            if _holds_with(leaf, value)
        ]
    return []


def suggested(leaf: ConditionResult) -> list[tuple[_Candidate, tuple[Any, ...]]]:
    """The changes suggested by one missing condition, each with its identity (`best_changes` counts each once)."""
    return [(c, (*c.group, c.target, repr(c.probe))) for c in _candidates(leaf)]


def best_changes(
    verdicts: Mapping[int, PolicyVerdict],
    limit: int = 3,
    suggest: Callable[[ConditionResult], list[tuple[_Candidate, tuple[Any, ...]]]] = suggested,
) -> list[Change]:
    """Return the few single changes that would open the most likely or ineligible policies of one firm.

    A policy counts for a change only when that change alone fixes every condition in its
    ``missing`` (the conditions that decide it). Changes of one kind on one field (raise the R&D
    ratio, fill in the same fields, …) compete and only the best target of each is kept; the result
    is ordered by policies opened, then filling in before acting, then the smaller step. `suggest`
    gives a missing condition's changes (`suggested`; the batch keeps them per condition and value).
    """
    open_ = {pid: v.missing for pid, v in verdicts.items() if v.status != ELIGIBLE and v.missing}
    # A change fixes a condition only when filling in fields makes an unknown one decidable, or when it
    # is on the field of a failed one: only policies missing nothing else can open (checked in order).
    fillable = [(pid, needed) for pid, needed in open_.items() if all(r.state == UNKNOWN for r in needed)]
    by_field: dict[str, list[tuple[int, list[ConditionResult]]]] = {}
    for pid, needed in open_.items():
        field = needed[0].field
        if all(r.state == NOT_MET and r.field == field for r in needed):
            by_field.setdefault(field, []).append((pid, needed))
    seen: set[tuple[Any, ...]] = set()
    best: dict[tuple[Any, ...], tuple[_Candidate, list[int]]] = {}
    for missing in open_.values():
        for leaf in missing:
            for c, identity in suggest(leaf):
                if identity in seen:
                    continue
                seen.add(identity)
                within = fillable if c.kind == "fill" else by_field.get(c.field, ())
                opened = [pid for pid, needed in within if all(_fixes(c, r) for r in needed)]
                if not opened:
                    continue
                held = best.get(c.group)
                if held is None or (-len(opened), c.effort) < (-len(held[1]), held[0].effort):
                    best[c.group] = (c, opened)
    return ranked_changes(best, limit)


def ranked_changes(best: Mapping[tuple[Any, ...], tuple[_Candidate, list[int]]], limit: int = 3) -> list[Change]:
    """The best change of each group with the policies it opens, ranked as `best_changes` gives them."""
    ranked = sorted(best.values(), key=lambda item: (-len(item[1]), _KIND_ORDER[item[0].kind], item[0].effort))
    return [
        Change(
            kind=c.kind,
            description=c.description,
            field=c.field,
            target=c.target,
            policy_ids=sorted(opened),
            fields=tuple(c.probe) if c.kind == "fill" else (c.field,),
        )
        for c, opened in ranked[:limit]
    ]
