"""Every open policy's rule tree compiled into arrays, to judge a few firms against all of them at once.

`eligibility.evaluate_many` judges one rule tree over many firms, which is how batch matching walks
the catalog. The calculator and a firm's own re-match go the other way — one firm, every policy —
where walking 10,000 trees in Python costs a second. Here the trees become flat arrays:

* leaves grouped by (field, operator). Numbers and dates compare the firm's value with an array of
  thresholds in one step. Every other operator (codes, regions, enums, sets, and equality on dates)
  runs the scalar operator from `eligibility.OPERATORS` — the function `evaluate` itself runs — once
  per distinct rule value, and the answer is spread to every leaf with that value;
* internal nodes by depth. On the state codes 0 not met / 1 unknown / 2 met, Kleene logic is `min`
  for "all", `max` for "any" and `2 − x` for "not", so each depth is one `reduceat`.

`tests/matcher/test_rulematrix.py` holds every verdict, condition state and rule score to
`eligibility.evaluate` and `ranking.rule_score` on generated firms and policies.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from catalog.fields import FIELDS
from matcher import eligibility
from matcher.ranking import NO_CONDITIONS_SCORE

LEAF, ALL, ANY, NOT = 0, 1, 2, 3
NOT_MET, UNKNOWN, MET = 0, 1, 2
_COMPARE = {
    "gt": np.greater,
    "gte": np.greater_equal,
    "lt": np.less,
    "lte": np.less_equal,
    "eq": np.equal,
    "ne": np.not_equal,
}
_NUMBER_OPS = frozenset({*_COMPARE, "between"})
_DATE_OPS = frozenset({"gt", "gte", "lt", "lte", "date_between", "years_since_gte", "years_since_lte"})


@dataclass
class _Group:
    """Leaves that test the same field with the same operator."""

    field: str
    op: str
    leaves: np.ndarray  # leaf indices
    vectorised: bool
    low: np.ndarray | None = None  # thresholds (numbers, days or years), or range starts
    high: np.ndarray | None = None  # range ends
    values: list[Any] | None = None  # distinct rule values (scalar operators)
    value_index: np.ndarray | None = None  # per leaf, its value's index in `values`


@dataclass
class Judgement:
    """What the rules say about F firms and P policies (arrays are policies × firms)."""

    status: np.ndarray  # int8: 2 eligible, 1 likely, 0 ineligible
    rule_score: np.ndarray  # float64, as `ranking.rule_score`
    near_miss: np.ndarray  # bool: ineligible on exactly one condition, none unknown
    conditions: np.ndarray  # int32: conditions per policy (F-independent), length P


def _day(value: Any) -> np.datetime64:
    return np.datetime64(eligibility._iso_day(value) if isinstance(value, str) else value, "D")


class RuleMatrix:
    """Compiled rule trees of a list of policies (None: no rules, eligible for everyone)."""

    def __init__(self, rules: Sequence[Mapping[str, Any] | None]) -> None:
        self.size = len(rules)
        kind: list[int] = []
        parent: list[int] = []
        depth: list[int] = []
        self.roots = np.full(self.size, -1, dtype=np.int64)
        leaf_node: list[int] = []
        leaf_policy: list[int] = []
        leaf_parity: list[bool] = []
        leaf_spec: list[tuple[str, str, Any]] = []

        def add(node: Mapping[str, Any], up: int, level: int, negated: bool, policy: int) -> int:
            me = len(kind)
            parent.append(up)
            depth.append(level)
            if eligibility._is_condition(node):
                field, op = node["field"], node["op"]
                if op not in eligibility.OPERATORS:
                    raise ValueError(f"不支持的运算符 {op}")
                if field not in FIELDS:
                    raise ValueError(f"未知字段 {field}")
                kind.append(LEAF)
                leaf_node.append(me)
                leaf_policy.append(policy)
                leaf_parity.append(negated)
                leaf_spec.append((field, op, node["value"]))
                return me
            if "not" in node:
                kind.append(NOT)
                add(node["not"], me, level + 1, not negated, policy)
                return me
            key = "all" if "all" in node else "any"
            children = node[key]
            if not children:
                raise ValueError(f"条件组 {key} 不能为空")
            kind.append(ALL if key == "all" else ANY)
            for child in children:
                add(child, me, level + 1, negated, policy)
            return me

        for p, tree in enumerate(rules):
            if tree is not None:
                self.roots[p] = add(tree, -1, 0, False, p)
        self.kind = np.asarray(kind, dtype=np.int8)
        self.parent = np.asarray(parent, dtype=np.int64)
        self.depth = np.asarray(depth, dtype=np.int64)
        self.leaf_node = np.asarray(leaf_node, dtype=np.int64)
        self.leaf_policy = np.asarray(leaf_policy, dtype=np.int64)
        self.leaf_parity = np.asarray(leaf_parity, dtype=bool)
        self.leaf_count = np.bincount(self.leaf_policy, minlength=self.size).astype(np.int32)
        self._leaf_starts = np.concatenate([[0], np.cumsum(self.leaf_count)[:-1]]).astype(np.int64)
        self._groups = self._compile_groups(leaf_spec)
        self._levels = self._compile_levels()
        self._cache: dict[tuple[int, Any], np.ndarray] = {}

    # ---------------------------------------------------------------- compile

    @staticmethod
    def _compile_groups(specs: list[tuple[str, str, Any]]) -> list[_Group]:
        by_key: dict[tuple[str, str], list[int]] = {}
        for i, (field, op, _) in enumerate(specs):
            by_key.setdefault((field, op), []).append(i)
        groups = []
        for (field, op), members in by_key.items():
            leaves = np.asarray(members, dtype=np.int64)
            values = [specs[i][2] for i in members]
            ftype = FIELDS[field].type
            if ftype == "number" and op in _NUMBER_OPS:
                if op == "between":
                    low = np.asarray([float(v[0]) for v in values])
                    high = np.asarray([float(v[1]) for v in values])
                    groups.append(_Group(field, op, leaves, True, low, high))
                else:
                    groups.append(_Group(field, op, leaves, True, np.asarray([float(v) for v in values])))
                continue
            if ftype == "date" and op in _DATE_OPS:
                if op == "date_between":
                    low = np.asarray([_day(v[0]) for v in values], dtype="datetime64[D]")
                    high = np.asarray([_day(v[1]) for v in values], dtype="datetime64[D]")
                    groups.append(_Group(field, op, leaves, True, low, high))
                elif op.startswith("years_since"):
                    groups.append(_Group(field, op, leaves, True, np.asarray([float(v) for v in values])))
                else:
                    groups.append(
                        _Group(field, op, leaves, True, np.asarray([_day(v) for v in values], dtype="datetime64[D]"))
                    )
                continue
            distinct: dict[Any, int] = {}
            index = np.empty(len(values), dtype=np.int64)
            for j, v in enumerate(values):
                key = _hashable(v)
                index[j] = distinct.setdefault(key, len(distinct))
            unique = [None] * len(distinct)
            for j, v in enumerate(values):
                unique[index[j]] = v
            groups.append(_Group(field, op, leaves, False, values=unique, value_index=index))
        return groups

    def _compile_levels(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Per depth, deepest first: (nodes, children in parent order, segment starts, node kinds, not-children)."""
        levels: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        internal = np.flatnonzero(self.kind != LEAF)
        if not len(internal):
            return levels
        child_nodes = np.flatnonzero(self.parent >= 0)
        for d in range(int(self.depth[internal].max()), -1, -1):
            nodes = internal[self.depth[internal] == d]
            if not len(nodes):
                continue
            groups = nodes[self.kind[nodes] != NOT]
            negations = nodes[self.kind[nodes] == NOT]
            kids = child_nodes[np.isin(self.parent[child_nodes], groups)]
            kids = kids[np.argsort(self.parent[kids], kind="stable")]
            order = np.argsort(groups, kind="stable")
            groups = groups[order]
            starts = np.searchsorted(self.parent[kids], groups)
            not_kids = child_nodes[np.isin(self.parent[child_nodes], negations)]
            not_kids = not_kids[np.argsort(self.parent[not_kids], kind="stable")]
            negations = np.sort(negations)
            levels.append((groups, kids, starts, negations, not_kids))
        return levels

    # ---------------------------------------------------------------- evaluate

    def leaf_states(self, facts: Sequence[Mapping[str, Any]], *, today: dt.date) -> np.ndarray:
        """Return each leaf's raw state for each firm (leaves × firms, int8), before any "not"."""
        n = len(facts)
        raw = np.full((len(self.leaf_node), n), UNKNOWN, dtype=np.int8)
        for gi, group in enumerate(self._groups):
            firm_values = [eligibility._fact(f, group.field) for f in facts]
            if group.vectorised:
                truth, known = self._vector_truth(group, firm_values, today)
                block = np.where(truth, MET, NOT_MET).astype(np.int8)
                block[:, ~known] = UNKNOWN
                raw[group.leaves] = block
                continue
            assert group.values is not None and group.value_index is not None
            for j, value in enumerate(firm_values):
                if value is None:
                    continue
                key = (gi, _hashable(value))
                states = self._cache.get(key)
                if states is None:
                    truth = np.fromiter(
                        (eligibility.OPERATORS[group.op](value, v, today) for v in group.values),
                        dtype=bool,
                        count=len(group.values),
                    )
                    states = np.where(truth, MET, NOT_MET).astype(np.int8)[group.value_index]
                    if len(self._cache) < 4096:
                        self._cache[key] = states
                raw[group.leaves, j] = states
        return raw

    @staticmethod
    def _vector_truth(group: _Group, values: list[Any], today: dt.date) -> tuple[np.ndarray, np.ndarray]:
        known = np.asarray([v is not None for v in values], dtype=bool)
        assert group.low is not None
        if FIELDS[group.field].type == "number":
            x = np.asarray([float(v) if v is not None else np.nan for v in values])[None, :]
            low = group.low[:, None]
            if group.op == "between":
                assert group.high is not None
                return (x >= low) & (x <= group.high[:, None]), known
            return _COMPARE[group.op](x, low), known
        if group.op.startswith("years_since"):
            years = np.asarray(
                [eligibility.whole_years(v, today) if v is not None else 0 for v in values], dtype=np.float64
            )[None, :]
            low = group.low[:, None]
            return (years >= low) if group.op == "years_since_gte" else (years <= low), known
        days = np.asarray([np.datetime64(v, "D") if v is not None else np.datetime64("NaT") for v in values])[None, :]
        if group.op == "date_between":
            assert group.high is not None
            return (days >= group.low[:, None]) & (days <= group.high[:, None]), known
        return _COMPARE[group.op](days, group.low[:, None]), known

    def judge(self, facts: Sequence[Mapping[str, Any]], *, today: dt.date) -> Judgement:
        """Judge every policy for each firm: statuses, rule scores, near misses."""
        n = len(facts)
        raw = self.leaf_states(facts, today=today)
        nodes = np.zeros((len(self.kind), n), dtype=np.int8)
        nodes[self.leaf_node] = raw
        for groups, kids, starts, negations, not_kids in self._levels:
            if len(groups):
                values = nodes[kids]
                lows = np.minimum.reduceat(values, starts, axis=0)
                highs = np.maximum.reduceat(values, starts, axis=0)
                nodes[groups] = np.where((self.kind[groups] == ALL)[:, None], lows, highs)
            if len(negations):
                nodes[negations] = 2 - nodes[not_kids]
        status = np.full((self.size, n), MET, dtype=np.int8)
        has_rules = self.roots >= 0
        status[has_rules] = nodes[self.roots[has_rules]]
        # Condition states as `evaluate` reports them: under an odd number of "not", the negated requirement.
        effective = np.where(self.leaf_parity[:, None], 2 - raw, raw)
        met = np.zeros((self.size, n), dtype=np.float64)
        failed = np.zeros((self.size, n), dtype=np.int32)
        unknown = np.zeros((self.size, n), dtype=np.int32)
        if len(self.leaf_node):
            # Leaves are numbered policy by policy, so each policy's leaves are one contiguous run.
            with_leaves = np.flatnonzero(self.leaf_count > 0)
            starts = self._leaf_starts[with_leaves]
            met[with_leaves] = np.add.reduceat((effective == MET).astype(np.float64), starts, axis=0)
            failed[with_leaves] = np.add.reduceat((effective == NOT_MET).astype(np.int32), starts, axis=0)
            unknown[with_leaves] = np.add.reduceat((effective == UNKNOWN).astype(np.int32), starts, axis=0)
        count = self.leaf_count[:, None]
        share = np.divide(met, count, out=np.zeros_like(met), where=count > 0)
        score = np.where(
            status == MET, 1.0, np.where(status == UNKNOWN, np.round(0.5 + 0.3 * share, 4), np.round(0.2 * share, 4))
        )
        score[self.leaf_count == 0] = NO_CONDITIONS_SCORE
        near = (status == NOT_MET) & (failed == 1) & (unknown == 0)
        return Judgement(status=status, rule_score=score, near_miss=near, conditions=self.leaf_count)


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, set | frozenset):
        return frozenset(value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value
