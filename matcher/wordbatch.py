"""Worded verdicts for the batch: `eligibility.evaluate`'s output, built from compiled templates and memos.

The batch words ~50 policies per firm (`matcher.wording.word_firm`). Judging each with
`eligibility.evaluate` repeats, for every (firm, policy), work that depends on the policy alone (the
requirement text of each condition, the shape of its all/any/not tree) or on a handful of firm values
(a region's name, an industry's name, whether a region lies within another). Here that work is done
once:

* **Templates** (`Template`, per rule tree, kept per process): every condition's path, field, operator,
  its wording as stated and as demanded (`eligibility._requirement`) and the tree with each ``not``
  pushed down to the conditions (De Morgan, as `eligibility._walk` does), flattened when it is a plain
  all-of.
* **Outcomes per distinct value** (`Smith`, per chunk): a condition's outcome (state, gap) depends
  only on the firm's value of its field (for a has_any/has_all/has_none over a list, only on which of
  the listed names the firm holds; when unknown, on the fields to fill in), so it is computed once per
  (condition, value) and shared by every firm with that value (`_Text` also by every policy stating
  the same condition).
* **Verdicts per outcome combination**: a policy's verdict (status, what is missing closest first, the
  stored row) depends only on its conditions' outcomes, so it is built once per combination.
* **States, not words, are stored**: a condition's outcome on a field that is not a set is one per
  state whatever the firm's value (its gap, which orders what is missing, is the value's own; a
  verdict whose order depends on gaps is built per firm). A verdict is stored as its conditions'
  states, what is missing and what to fill in; the firm's values are stored once per firm, and
  `read` words a stored verdict from the policy's rules and those values, with the same function
  (`reason`, `summary`) that words `Core.verdict` here. A candidate the kernel found eligible under a
  plain all-of without set conditions takes the policy's one all-met verdict (`Smith.eligible`).

What remains per (firm, policy) is a look-up per condition and one per verdict. The result is exactly
`eligibility.evaluate`'s (tests hold every field equal over synthetic firms and the demo policies); a
rule tree this module does not compile (an unknown operator or field, an empty any-of) is judged by
`eligibility.evaluate` itself, errors included.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import itertools
import math
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, cast

import orjson

from catalog.fields import FIELDS
from matcher import eligibility
from matcher.eligibility import (
    ELIGIBLE,
    INELIGIBLE,
    LIKELY,
    MET,
    NO_RULES_SUMMARY,
    NOT_MET,
    OPERATORS,
    STATUS_CODES,
    UNKNOWN,
    UNKNOWN_GAP,
    ConditionResult,
    PolicyVerdict,
)

__all__ = ["Core", "Smith", "Template", "best_changes", "clean_facts", "full", "gc_paused", "template"]

_KINDS = {name: f.type for name, f in FIELDS.items()}
_SET_OPS = frozenset({"has_any", "has_all", "has_none"})
_PLAIN = frozenset({int, float, str, dt.date})  # value types whose equal values word alike (5 and 5.0 alike)
_STATUS: dict[str, str] = {MET: ELIGIBLE, UNKNOWN: LIKELY, NOT_MET: INELIGIBLE}
_STATUS_OF_CODE: dict[int, str] = {code: status for status, code in STATUS_CODES.items()}
KEEP = 200_000  # outcomes and verdicts a `Smith` holds before it starts afresh (~200 MB at most)

# The firm's side of a reason ("当前 1,234 万元") for every field but sets, by number: a stored verdict
# is its conditions' states (`Core.body`), and each firm's stored wording keeps its values once
# (`Firm.values`), so a condition's outcome and a verdict are shared by every firm in the same state,
# whatever its values; both are worded when read (`read`). Dates have two wordings (the date itself;
# years since it, for years_since_gte / _lte).
TOKENS: tuple[tuple[str, bool], ...] = tuple(
    (name, years)
    for name, kind in _KINDS.items()
    if kind != "set"
    for years in ((False, True) if kind == "date" else (False,))
)
_TOKEN = {key: k for k, key in enumerate(TOKENS)}
TOKEN_FIELDS = tuple(dict.fromkeys(name for name, _ in TOKENS))
SET_FIELDS = tuple(name for name, kind in _KINDS.items() if kind == "set")
_TOKEN_FIELD_INDEX = {name: i for i, name in enumerate(TOKEN_FIELDS)}
SET_FIELD_INDEX = {name: i for i, name in enumerate(SET_FIELDS)}


def token_text(k: int, value: Any, day: dt.date) -> str:
    """Word a firm's value of token k's field as a reason shows it after "当前" (`eligibility._firm_text`)."""
    field, years = TOKENS[k]
    return eligibility._firm_text(field, "years_since_gte" if years else "eq", value, None, day)


def stored_text(k: int, values: Sequence[Any], day: dt.date) -> str:
    """`token_text` from a firm's stored values (`Firm.values`, read back from JSON: dates as ISO text)."""
    name = TOKENS[k][0]
    value = values[_TOKEN_FIELD_INDEX[name]]
    if isinstance(value, str) and _KINDS[name] == "date":
        value = dt.date.fromisoformat(value)
    return token_text(k, value, day)


_STATE_CODE: dict[str, str] = {
    MET: "1",
    NOT_MET: "0",
    UNKNOWN: "?",
}  # a stored verdict's conditions, one character each
_CODE_STATE: dict[str, str] = {code: state for state, code in _STATE_CODE.items()}


class Reader(Protocol):
    """A firm as wording reads it: its day, and its values as reasons show them."""

    day: dt.date

    def text(self, k: int) -> str: ...  # token k's value worded (see `TOKENS`)

    def set_of(self, field: str) -> frozenset[str]: ...  # a set field's names

    def needs_of(self, field: str) -> tuple[str, ...]: ...  # the fields to fill in for an unknown value


def reason(leaf: _Leaf, state: str, firm: Reader) -> str:
    """Word one condition for a firm as `eligibility._judge` does (`eligibility.word_reason`)."""
    if state == UNKNOWN:
        return eligibility.word_reason(state, leaf.stated, leaf.demanded, needs=firm.needs_of(leaf.field))
    if leaf.token is not None:
        shown = firm.text(leaf.token)
    else:
        shown = eligibility._firm_text(leaf.field, leaf.op, firm.set_of(leaf.field), leaf.value, firm.day)
    return eligibility.word_reason(state, leaf.stated, leaf.demanded, shown)


def summary(
    status: str,
    reasons: Sequence[str],
    states: Sequence[str],
    missing: Sequence[int],
    to_fill: Sequence[str],
    support: int,
) -> str:
    """A verdict's summary as `eligibility.evaluate` words it (`missing`: leaf indices, closest first)."""
    failed = [reasons[k] for k in missing if states[k] == NOT_MET]
    return eligibility.word_summary(status, support, failed, to_fill)


class Worded(NamedTuple):
    """A stored verdict worded for a firm (`read`)."""

    conditions: list[tuple[str, str, str, str, tuple[str, ...]]]  # path, field, state, reason, needs
    summary: str


def read(
    rules: Mapping[str, Any],
    code: int,
    states: str,
    missing: Sequence[int],
    to_fill: Sequence[str],
    support: int,
    firm: Reader,
) -> Worded | None:
    """Word a verdict stored as its conditions' states (`Core.body`) for a firm; None when the policy's
    rules are not the ones it was judged with (a different number of conditions) or not compiled."""
    t = template(rules)
    if t is None or len(t.leaves) != len(states):
        return None
    decoded = [_CODE_STATE[c] for c in states]
    reasons = [reason(leaf, state, firm) for leaf, state in zip(t.leaves, decoded, strict=True)]
    conditions = [
        (leaf.path, leaf.field, state, text, firm.needs_of(leaf.field) if state == UNKNOWN else ())
        for leaf, state, text in zip(t.leaves, decoded, reasons, strict=True)
    ]
    return Worded(conditions, summary(_STATUS_OF_CODE[code], reasons, decoded, missing, to_fill, support))


# ---------------------------------------------------------------- facts


def _clean(kind: str, value: Any) -> Any:
    """`eligibility._clean_fact` for a field of this kind (the same result, without the look-ups)."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
    elif isinstance(value, str):
        if not value.strip():
            return None
        if kind == "date":
            return eligibility._iso_day(value)
    if kind == "set":
        return frozenset(value)
    if kind == "date" and isinstance(value, dt.datetime):
        return value.date()
    return value


def clean_facts(facts: Mapping[str, Any]) -> dict[str, Any]:
    """Return the facts as `eligibility.evaluate` reads them (`_fact` of every field)."""
    get = facts.get
    return {name: _clean(kind, get(name)) for name, kind in _KINDS.items()}


# ---------------------------------------------------------------- templates


class _Leaf:
    """One condition of a template: everything about it that does not depend on the firm."""

    __slots__ = (
        "condition",
        "demanded",
        "effective",
        "field",
        "index",
        "kind",
        "members",
        "negated",
        "node_id",
        "op",
        "path",
        "stated",
        "token",
        "value",
    )

    def __init__(self, node: Mapping[str, Any], path: str, negated: bool, index: int) -> None:
        field, op, value = node["field"], node["op"], node["value"]
        if op not in OPERATORS:
            raise ValueError(op)
        if field not in FIELDS:
            raise ValueError(field)
        self.index = index
        self.path = path
        self.field = field
        self.op = op
        self.value = value
        self.negated = negated
        self.node_id = node.get("id")
        self.stated, self.demanded, self.condition = _requirement(node, negated)
        self.effective = eligibility._effective_op(op, negated)
        self.kind = _KINDS[field]
        # The firm's value is worded through a token for every field but sets (see `TOKENS`).
        years = self.kind == "date" and op in ("years_since_gte", "years_since_lte")
        self.token: int | None = None if self.kind == "set" else _TOKEN[(field, years)]
        # A set condition over a list of names depends only on which of them the firm holds.
        self.members: tuple[str, ...] | None = None
        if self.kind == "set" and op in _SET_OPS and isinstance(value, list) and all(isinstance(v, str) for v in value):
            self.members = tuple(value)


_REQUIREMENTS: dict[tuple[Any, ...], tuple[str, str, int]] = {}


def _requirement(node: Mapping[str, Any], negated: bool) -> tuple[str, str, int]:
    """`eligibility._requirement`, kept per distinct condition (catalogs repeat conditions across policies).

    Also return a number for the condition, the same for every leaf judged alike (label, field,
    operator, value and negation), whatever its policy or place in the tree."""
    key = (node.get("label"), node["field"], node["op"], _typed(node["value"]), negated)
    text = _REQUIREMENTS.get(key)
    if text is None:
        if len(_REQUIREMENTS) >= _TEMPLATES_MAX:
            _REQUIREMENTS.clear()
        text = _REQUIREMENTS[key] = (*eligibility._requirement(node, negated), next(_CONDITION_IDS))
    return text


_CONDITION_IDS = itertools.count()


def _typed(value: Any) -> Any:
    """A hashable stand-in for a rule value that tells 5 from 5.0 and True from 1 (they are worded apart)."""
    if isinstance(value, list | tuple):
        return (type(value), tuple(_typed(v) for v in value))
    if isinstance(value, dict):
        return (dict, tuple(sorted((k, _typed(v)) for k, v in value.items())))
    return (type(value), value)


Tree = int | tuple[bool, tuple["Tree", ...]]  # a leaf's index, or (every, children): every=all-of, else any-of


class Template:
    """A rule tree compiled for wording many firms (see the module's docstring)."""

    __slots__ = ("flat", "leaves", "rules", "tree")

    def __init__(self, rules: Mapping[str, Any]) -> None:
        self.rules = rules
        self.leaves: list[_Leaf] = []
        self.tree = self._compile(rules, "rules", False)
        # The common case: an all-of whose children are all conditions (or a lone condition).
        tree = self.tree
        self.flat = isinstance(tree, int) or (tree[0] and all(isinstance(c, int) for c in tree[1]))

    def _compile(self, node: Mapping[str, Any], path: str, negated: bool) -> Tree:
        if eligibility._is_condition(node):
            leaf = _Leaf(node, path, negated, len(self.leaves))
            self.leaves.append(leaf)
            return leaf.index
        if "not" in node:
            return self._compile(node["not"], f"{path}.not", not negated)
        key = "all" if "all" in node else "any"
        children = node[key]
        if not isinstance(children, list) or not children:
            raise ValueError("empty")  # evaluate's own answer (or error) is kept for these
        compiled = tuple(self._compile(child, f"{path}.{key}[{i}]", negated) for i, child in enumerate(children))
        return ((key == "all") != negated, compiled)


_TEMPLATES: dict[int, tuple[Mapping[str, Any], Template | None]] = {}
_TEMPLATES_MAX = 50_000
_lock = threading.Lock()


def template(rules: Mapping[str, Any]) -> Template | None:
    """Return the template of a rule tree (kept per process for this very object); None when not compiled."""
    held = _TEMPLATES.get(id(rules))
    if held is not None and held[0] is rules:
        return held[1]
    try:
        compiled: Template | None = Template(rules)
    except Exception:  # noqa: BLE001 - evaluate judges (and raises) as it always did
        compiled = None
    with _lock:
        if len(_TEMPLATES) >= _TEMPLATES_MAX:
            _TEMPLATES.clear()
        _TEMPLATES[id(rules)] = (rules, compiled)  # the tree is held, so its id is not reused meanwhile
    return compiled


# ---------------------------------------------------------------- outcomes


class _Text:
    """One condition's outcome for one firm value, whatever leaf states the condition (`Smith._text`).

    A condition on a field that is not a set (`valued`, see `TOKENS`) has one per state, shared by every
    value: its value and gap are then each outcome's own (`_Outcome`), and its suggestions are kept per
    value (`changes`).
    """

    __slots__ = ("changes", "gap", "needs", "shared", "state", "valued", "value")

    def __init__(
        self,
        state: str,
        value: Any,
        gap: float | None,
        needs: tuple[str, ...],
        shared: bool,
        valued: bool = False,
    ) -> None:
        self.state = state
        self.value = value
        self.gap = gap
        self.needs = needs
        self.shared = shared
        self.valued = valued
        # `eligibility.suggested`, once needed: per firm value when valued (None: the one value's)
        self.changes: dict[Any, list[tuple[Any, tuple[Any, ...]]]] = {}


class _Outcome:
    """One condition's outcome for every firm with one value: `ConditionResult` less the firm's values.

    A valued outcome (see `_Text`) met stands for every value meeting the condition; one not met is
    per value (its gap orders what is missing), with `canon` the one standing for all of them where
    the order does not matter.
    """

    __slots__ = ("canon", "gap", "leaf", "miss", "needs", "shared", "state", "text", "valued", "value")

    def __init__(
        self, leaf: _Leaf, text: _Text, value: Any = None, gap: float | None = None, canon: _Outcome | None = None
    ) -> None:
        self.leaf = leaf
        self.state = text.state
        self.valued = text.valued
        self.value = value if text.valued else text.value  # ConditionResult.firm_value (unless shared)
        self.gap = gap if text.valued else text.gap
        self.needs = text.needs
        self.shared = text.shared  # one outcome for several set values: firm_value is taken from each firm
        self.miss: _Missing | None = None  # what `best_changes` reads, once (unless valued or shared)
        self.text = text
        self.canon: _Outcome = canon or self

    def condition(self, firm: Firm, text: str) -> ConditionResult:
        """Return the `ConditionResult` `eligibility._judge` gives for this firm, worded `text`."""
        leaf = self.leaf
        if self.valued:  # the firm's own value and gap
            value = firm.facts[leaf.field]
            gap = (
                0.0 if self.state == MET else eligibility._gap(leaf.field, leaf.effective, value, leaf.value, firm.day)
            )
        else:
            value = sorted(firm.facts[leaf.field]) if self.shared else self.value
            gap = self.gap
        return ConditionResult(
            leaf.path,
            leaf.field,
            leaf.op,
            leaf.value,
            self.state,  # type: ignore[arg-type]
            text,
            value,
            gap,
            leaf.negated,
            self.needs,
            leaf.node_id,
        )


class Core:
    """A policy's verdict for every firm whose conditions came out alike: what `wording.pack` stores.

    Stored as its conditions' states (`body`); the words are the firm's, put in when read (`read`).
    """

    __slots__ = ("body", "changing", "code", "held", "missing", "outcomes", "status", "support", "to_fill")

    def __init__(
        self, status: str, outcomes: list[_Outcome], missing: list[_Outcome], to_fill: list[str], support: int
    ) -> None:
        self.status = status
        self.code = code = STATUS_CODES[status]
        self.outcomes = outcomes
        self.missing = missing
        self.to_fill = to_fill
        self.support = support
        self.changing: _Changing | None = None  # what `best_changes` reads, once asked
        self.held: tuple[int, int, bytes] | None = None  # (policy id, version, row) last serialised (`packed`)
        # `wording._verdict_row` after the policy id and version, serialised ("code, states, …]").
        self.body = b'%d,"%s",%b,%b,%d]' % (
            code,
            "".join([_STATE_CODE[o.state] for o in outcomes]).encode(),
            orjson.dumps([o.leaf.index for o in missing]) if missing else b"[]",
            orjson.dumps(to_fill) if to_fill else b"[]",
            support,
        )

    def row(self, pid: int, version: int) -> orjson.Fragment:
        """Return the stored row (`wording._verdict_row`), serialised."""
        return orjson.Fragment(self.packed(pid, version))

    def packed(self, pid: int, version: int) -> bytes:
        """Return the stored row's bytes, kept for the policy and version last asked (`held`): most verdicts
        are one policy's, at one version, so a chunk serialises each once."""
        held = self.held
        if held is None or held[0] != pid or held[1] != version:
            held = self.held = (pid, version, b"[%d,%d,%b" % (pid, version, self.body))
        return held[2]

    def verdict(self, firm: Firm) -> PolicyVerdict:
        """Return the `PolicyVerdict` `eligibility.evaluate` gives for this firm."""
        states = [o.state for o in self.outcomes]
        reasons = [reason(o.leaf, o.state, firm) for o in self.outcomes]
        conditions = [o.condition(firm, text) for o, text in zip(self.outcomes, reasons, strict=True)]
        missing = [o.leaf.index for o in self.missing]
        text = summary(self.status, reasons, states, missing, self.to_fill, self.support)
        return PolicyVerdict(self.status, conditions, [conditions[k] for k in missing], list(self.to_fill), text)  # type: ignore[arg-type]


class _NoRules(Core):
    """A policy without rules: eligible, with evaluate's own summary (stored worded)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(ELIGIBLE, [], [], [], 0)
        self.body = b"%d,%b,[],[],[]]" % (self.code, orjson.dumps(NO_RULES_SUMMARY))

    def verdict(self, firm: Firm) -> PolicyVerdict:
        return PolicyVerdict(ELIGIBLE, [], [], [], NO_RULES_SUMMARY)


_NO_RULES = _NoRules()


def _cost(missing: list[_Outcome]) -> tuple[int, int, float]:
    failed = [r for r in missing if r.state == NOT_MET]
    distance = sum(1.0 if r.gap is None else r.gap for r in failed)
    return len(failed), len(missing) - len(failed), distance


def _combine(tree: Tree, outcomes: list[_Outcome]) -> tuple[str, list[_Outcome], int]:
    """`eligibility._walk`'s outcome (state, missing, number of supporting conditions) from the leaves'."""
    if isinstance(tree, int):
        o = outcomes[tree]
        return (MET, [], 1) if o.state == MET else (o.state, [o], 0)
    every, nodes = tree
    children = [_combine(c, outcomes) for c in nodes]
    if every:
        states = {c[0] for c in children}
        if states == {MET}:
            return MET, [], sum(c[2] for c in children)
        state = NOT_MET if NOT_MET in states else UNKNOWN
        return state, [r for c in children if c[0] != MET for r in c[1]], 0
    for c in children:
        if c[0] == MET:
            return MET, [], c[2]
    state = UNKNOWN if any(c[0] == UNKNOWN for c in children) else NOT_MET
    closest = min(children, key=lambda c: _cost(c[1]))
    return state, closest[1], 0


def _core(t: Template, outcomes: list[_Outcome]) -> Core:
    """Build a verdict from its conditions' outcomes as `eligibility.evaluate` does."""
    state: str
    if t.flat:
        missing = [o for o in outcomes if o.state != MET]
        if not missing:
            return Core(ELIGIBLE, outcomes, [], [], len(outcomes))
        state = UNKNOWN
        for o in missing:
            if o.state == NOT_MET:
                state = NOT_MET
                break
        support = 0
    else:
        state, missing, support = _combine(t.tree, outcomes)
    status = _STATUS[state]
    if state == MET:
        return Core(status, outcomes, [], [], support)
    if len(missing) == 1:
        unknown, failed = ([], missing) if missing[0].state == NOT_MET else (missing, [])
    else:
        unknown = [r for r in missing if r.state == UNKNOWN]
        failed = [r for r in missing if r.state == NOT_MET]
        failed.sort(key=lambda r: (r.gap is None, r.gap or 0.0))
    to_fill = list(dict.fromkeys(name for r in unknown for name in r.needs)) if unknown else []
    return Core(status, outcomes, unknown + failed, to_fill, support)


class Firm:
    """One firm's clean facts and, per derived field, what it must fill in (computed once per firm)."""

    __slots__ = ("_texts", "day", "facts", "needs")

    def __init__(self, facts: dict[str, Any], day: dt.date) -> None:
        self.facts = facts
        self.day = day
        self.needs: dict[str, tuple[str, ...]] = {}
        self._texts: dict[int, str] = {}

    def text(self, k: int) -> str:
        """Return the firm's wording of token k's value (see `TOKENS`)."""
        held = self._texts.get(k)
        if held is None:
            held = self._texts[k] = token_text(k, self.facts[TOKENS[k][0]], self.day)
        return held

    def set_of(self, field: str) -> frozenset[str]:
        return cast(frozenset[str], self.facts[field])

    def needs_of(self, field: str) -> tuple[str, ...]:
        held = self.needs.get(field)
        if held is None:
            held = self.needs[field] = eligibility.inputs_to_fill(field, self.facts)
        return held

    def unknown(self) -> dict[str, tuple[str, ...]]:
        """Return, per field the firm left unknown (in `FIELDS` order), the fields it must fill in."""
        facts = self.facts
        return {name: self.needs_of(name) for name in _KINDS if facts[name] is None}

    def values(self) -> list[Any]:
        """Return the firm's values of the token fields (`TOKEN_FIELDS`), as its stored wording keeps them."""
        facts = self.facts
        return [facts[name] for name in TOKEN_FIELDS]

    def sets(self) -> list[list[str] | None]:
        """Return the firm's names of each set field (`SET_FIELDS`), as its stored wording keeps them."""
        facts = self.facts
        return [None if facts[name] is None else sorted(facts[name]) for name in SET_FIELDS]


_UNSET = object()


class _Policy:
    """What a `Smith` keeps of one rule tree: its template, per condition (leaf, field, names, outcomes by
    value), the verdicts by outcome combination, and its all-met verdict once asked (`Smith.eligible`)."""

    __slots__ = ("all_met", "cores", "rules", "steps", "template")

    def __init__(self, rules: Mapping[str, Any], t: Template) -> None:
        self.rules = rules
        self.template = t
        self.steps: list[tuple[Any, ...]] = [(leaf, leaf.field, leaf.members, {}) for leaf in t.leaves]
        self.cores: dict[Any, Core] = {}
        self.all_met: object = _UNSET


class Smith:
    """Words verdicts for the firms of one chunk on one day, sharing outcomes between them.

    Not shared between threads; memory grows with the distinct values met, so keep one per chunk.
    """

    def __init__(self, day: dt.date) -> None:
        self.day = day
        self._policies: dict[int, _Policy] = {}  # per rule tree, by identity
        self._texts: dict[tuple[Any, ...], _Text] = {}  # per (condition, unknown, value's key)
        self._canon: dict[tuple[_Leaf, str], _Outcome] = {}  # a valued leaf's outcome per state
        self._kept = 0  # outcomes and verdicts held

    def firm(self, facts: Mapping[str, Any]) -> Firm:
        """Return a firm to judge (its facts as `profile_facts` or `Chunk.facts` give them)."""
        return Firm(clean_facts(facts), self.day)

    def judge(self, rules: Mapping[str, Any] | None, firm: Firm) -> Core | PolicyVerdict:
        """Return a policy's verdict for the firm: a `Core` (see `Core.verdict`), or evaluate's own."""
        return self.judge_many(rules, [firm])[0]

    def judge_many(self, rules: Mapping[str, Any] | None, firms: Sequence[Firm]) -> list[Core | PolicyVerdict]:
        """Return a policy's verdict for each of these firms (`judge`), condition by condition over the firms."""
        if rules is None:
            return [_NO_RULES] * len(firms)
        policy = self._policy(rules)
        if policy is None:
            return [eligibility.evaluate(rules, firm.facts, today=self.day) for firm in firms]
        t, steps, cores = policy.template, policy.steps, policy.cores
        columns = []
        fresh: set[int] = set()  # firms with an outcome first met here: their combination is new, likely unique
        valued: set[int] = set()  # firms with an outcome not met whose gap is their own (see `_Outcome`)
        for leaf, field, members, memo in steps:
            column = []
            for row, firm in enumerate(firms):
                facts = firm.facts
                value = facts[field]
                if value is None:
                    key: Any = firm.needs.get(field)
                    if key is None:
                        key = firm.needs[field] = eligibility.inputs_to_fill(field, facts)
                elif members is None:
                    key = value if type(value) in _PLAIN else (type(value), value)
                elif len(members) == 1:
                    key = (members[0] in value,)
                else:
                    key = tuple(m in value for m in members)
                outcome = memo.get(key)
                if outcome is None:
                    outcome, new = self._outcome(leaf, value, key)
                    memo[key] = outcome
                    if new:
                        fresh.add(row)
                if outcome.canon is not outcome:
                    valued.add(row)
                column.append(outcome)
            columns.append(column)
        out: list[Core | PolicyVerdict] = []
        for row, combo in enumerate(zip(*columns, strict=True)):
            if row in fresh:  # kept once an outcome is met again (firms sharing the value)
                out.append(_core(t, list(combo)))
                continue
            if row in valued:
                # What is missing is ordered by gap (and an any-of picks its closest branch by it): alike
                # for every value only with one failed condition in a plain all-of.
                if not t.flat or sum(o.state == NOT_MET for o in combo) > 1:
                    out.append(_core(t, list(combo)))
                    continue
                combo = tuple(o.canon for o in combo)
            core = cores.get(combo)
            if core is None:
                core = cores[combo] = _core(t, list(combo))
                self._kept += 1
            out.append(core)
        return out

    def eligible(self, rules: Mapping[str, Any] | None) -> Core | None:
        """Return the verdict of a policy for any firm meeting all its conditions, when that does not depend
        on the firm: a plain all-of with no set condition (None otherwise). The same `Core` as `judge_many`
        gives such a firm."""
        if rules is None:
            return _NO_RULES
        policy = self._policy(rules)
        if policy is None:
            return None
        if policy.all_met is _UNSET:
            t, core = policy.template, None
            if t.flat and all(leaf.token is not None for leaf in t.leaves):
                combo = tuple(self._met(leaf) for leaf in t.leaves)
                core = policy.cores.get(combo)
                if core is None:
                    core = policy.cores[combo] = _core(t, list(combo))
                    self._kept += 1
            policy.all_met = core
        return cast(Core | None, policy.all_met)

    def _policy(self, rules: Mapping[str, Any]) -> _Policy | None:
        """Return what this smith keeps of a rule tree (None when it is not compiled: `evaluate` judges it)."""
        policy = self._policies.get(id(rules))
        if policy is None or policy.rules is not rules:
            t = template(rules)
            if t is None:
                return None
            policy = self._policies[id(rules)] = _Policy(rules, t)
        return policy

    def _met(self, leaf: _Leaf) -> _Outcome:
        canon = self._canon.get((leaf, MET))
        if canon is None:
            canon = self._canon[(leaf, MET)] = _Outcome(leaf, self._valued(leaf, MET), gap=0.0)
        return canon

    def _outcome(self, leaf: _Leaf, firm: Any, key: Any) -> tuple[_Outcome, bool]:
        """`eligibility._judge` for one condition and one firm value (None: unknown; `key` the fields to fill).

        Also tell whether the outcome is new (not one standing for other values already)."""
        self._kept += 1
        if self._kept > KEEP:  # memory stays bounded: start afresh (templates are kept per process)
            self._kept = 0
            self._policies.clear()
            self._texts.clear()
            self._canon.clear()
        if firm is not None and leaf.token is not None:
            holds = OPERATORS[leaf.op](firm, leaf.value, self.day) != leaf.negated
            state = MET if holds else NOT_MET
            canon = self._canon.get((leaf, state))
            if state == MET:
                return self._met(leaf), canon is None
            gap = eligibility._gap(leaf.field, leaf.effective, firm, leaf.value, self.day)
            if canon is None:
                canon = self._canon[(leaf, NOT_MET)] = _Outcome(leaf, self._valued(leaf, NOT_MET), firm, gap)
                return canon, True
            return _Outcome(leaf, canon.text, firm, gap, canon), False
        # Leaves stating the same condition (across policies) word a value alike: worded once.
        text = self._texts.get((leaf.condition, firm is None, key))
        if text is None:
            text = self._texts[(leaf.condition, firm is None, key)] = self._text(leaf, firm, key)
        return _Outcome(leaf, text), True

    def _valued(self, leaf: _Leaf, state: str) -> _Text:
        """A valued condition's outcome in one state (its value and gap are each outcome's: see `_Text`)."""
        key = (leaf.condition, "valued", state)
        text = self._texts.get(key)
        if text is None:
            text = self._texts[key] = _Text(state, None, 0.0 if state == MET else None, (), False, True)
        return text

    def _text(self, leaf: _Leaf, firm: Any, key: Any) -> _Text:
        if firm is None:
            return _Text(UNKNOWN, None, UNKNOWN_GAP, key, False)
        # A set condition: its outcome depends on which of the condition's names the firm holds.
        today = self.day
        holds = OPERATORS[leaf.op](firm, leaf.value, today) != leaf.negated
        shared = leaf.members is not None
        value = None if shared else sorted(firm)
        if holds:
            return _Text(MET, value, 0.0, (), shared)
        gap = eligibility._gap(leaf.field, leaf.effective, firm, leaf.value, today)
        return _Text(NOT_MET, value, gap, (), shared)


def full(verdict: Core | PolicyVerdict, firm: Firm) -> PolicyVerdict:
    """Return a judged policy as `eligibility.evaluate` gives it."""
    return verdict.verdict(firm) if isinstance(verdict, Core) else verdict


class _Open(NamedTuple):
    status: str
    missing: list[ConditionResult]


class _Missing:
    """What `eligibility.best_changes` reads of a missing condition: a `ConditionResult` less its wording."""

    __slots__ = ("field", "firm_value", "needs", "negated", "op", "state", "text", "value")

    def __init__(self, o: _Outcome, firm_value: Any) -> None:
        leaf = o.leaf
        self.field, self.op, self.value, self.negated = leaf.field, leaf.op, leaf.value, leaf.negated
        self.state, self.needs, self.text, self.firm_value = o.state, o.needs, o.text, firm_value


def _missing(o: _Outcome, firm: Firm) -> _Missing:
    if o.valued:
        return _Missing(o, firm.facts[o.leaf.field])
    if o.shared:
        return _Missing(o, sorted(firm.facts[o.leaf.field]))
    held = o.miss
    if held is None:
        held = o.miss = _Missing(o, o.value)
    return held


def best_changes(verdicts: Mapping[int, Core | PolicyVerdict], firm: Firm) -> list[eligibility.Change]:
    """Return `eligibility.best_changes` of a firm's judged policies.

    Only what it reads of each verdict is used: its status and its missing conditions' outcomes. What
    does not depend on the firm's values is worked out once per verdict (`_Changing`): whether it can
    open by filling in or on one field, and its missing conditions' suggestions (per condition and
    value, kept with its wording: they depend on nothing else). What a change fixes is judged from the
    missing conditions themselves, as `eligibility._fixes` does (the tests of this module hold the changes
    equal to `eligibility.best_changes` of evaluate's verdicts).
    """
    if not all(isinstance(v, Core) for v in verdicts.values()):
        return _best_changes_mixed(verdicts, firm)
    facts = firm.facts
    holds_with = cast(Callable[[_Leaf, Any], bool], eligibility._holds_with)  # reads a leaf's op, value, negated
    open_: list[_Changing] = []
    fillable: list[tuple[int, Core]] = []  # policies missing only unknown conditions
    by_field: dict[str, list[tuple[int, Core]]] = {}  # policies missing only failed conditions on one field
    for pid, core in cast(Mapping[int, Core], verdicts).items():
        if core.status == ELIGIBLE or not core.missing:
            continue
        changing = core.changing
        if changing is None:
            changing = core.changing = _Changing(core, firm)
        open_.append(changing)
        if changing.fill:
            fillable.append((pid, core))
        elif changing.field is not None:
            group = by_field.get(changing.field)
            if group is None:
                by_field[changing.field] = [(pid, core)]
            else:
                group.append((pid, core))
    seen: set[tuple[Any, ...]] = set()
    best: dict[tuple[Any, ...], tuple[Any, list[int]]] = {}
    for changing in open_:
        for o, suggestions in changing.steps:
            if suggestions is None:  # valued: per the firm's value
                value = facts[o.leaf.field]
                suggestions = o.text.changes.get(value)
                if suggestions is None:
                    suggestions = _suggested(o, firm, value)
            for c, identity in suggestions:
                if identity in seen:
                    continue
                seen.add(identity)
                if c.kind == "fill":
                    probe = set(c.probe)
                    opened = [pid for pid, core in fillable if all(set(o.needs) <= probe for o in core.missing)]
                else:
                    within = by_field.get(c.field)
                    if within is None:
                        continue
                    # `eligibility._fixes`: every missing condition is failed and on the change's field; a
                    # set's value (`ConditionResult.firm_value`) is the firm's names, sorted.
                    probe = facts[c.field] | {c.target} if c.kind == "acquire" else c.probe
                    opened = [pid for pid, core in within if all(holds_with(o.leaf, probe) for o in core.missing)]
                if not opened:
                    continue
                held = best.get(c.group)
                if held is None or (-len(opened), c.effort) < (-len(held[1]), held[0].effort):
                    best[c.group] = (c, opened)
    return eligibility.ranked_changes(best)


class _Changing:
    """What `best_changes` reads of a verdict that is not eligible, the same for every firm judged alike:
    whether only filling in opens it (`fill`), the one field whose failed conditions decide it (`field`),
    and each missing condition's suggestions (None when they depend on the firm's value: valued; a condition
    suggesting nothing for any firm is left out)."""

    __slots__ = ("field", "fill", "steps")

    def __init__(self, core: Core, firm: Firm) -> None:
        missing = core.missing
        self.fill = all(o.state == UNKNOWN for o in missing)
        field = missing[0].leaf.field
        self.field = field if all(o.state == NOT_MET and o.leaf.field == field for o in missing) else None
        steps: list[tuple[_Outcome, list[tuple[Any, tuple[Any, ...]]] | None]] = []
        for o in missing:
            if not o.valued:
                suggestions = _suggested(o, firm, None)
                if suggestions:
                    steps.append((o, suggestions))
            elif o.state != NOT_MET or not (o.leaf.field in eligibility._FIXED_FIELDS or o.leaf.effective is None):
                steps.append((o, None))  # else none whatever the value (`eligibility._candidates`)
        self.steps = steps


def _suggested(o: _Outcome, firm: Firm, value: Any) -> list[tuple[Any, tuple[Any, ...]]]:
    """`eligibility.suggested` of a missing condition, kept with its wording (per firm value when valued)."""
    return _kept_suggestions(o.text, value, lambda: cast(ConditionResult, _missing(o, firm)))


def _kept_suggestions(
    text: _Text, value: Any, condition: Callable[[], ConditionResult]
) -> list[tuple[Any, tuple[Any, ...]]]:
    """`eligibility.suggested` of a missing condition worded by `text`, worked out once per value and kept."""
    held = text.changes.get(value)
    if held is None:
        held = text.changes[value] = eligibility.suggested(condition())
    return held


def _best_changes_mixed(verdicts: Mapping[int, Core | PolicyVerdict], firm: Firm) -> list[eligibility.Change]:
    """`best_changes` when some verdicts are `eligibility.evaluate`'s own (rules not compiled)."""
    judged: dict[int, PolicyVerdict] = {}
    for pid, verdict in verdicts.items():
        if isinstance(verdict, Core):
            missing = [_missing(o, firm) for o in verdict.missing]
            judged[pid] = cast(PolicyVerdict, _Open(verdict.status, cast(list[ConditionResult], missing)))
        else:
            judged[pid] = verdict

    def suggest(cr: ConditionResult) -> list[tuple[Any, tuple[Any, ...]]]:
        if not isinstance(cr, _Missing):
            return eligibility.suggested(cr)
        value = cr.firm_value if cr.text.valued else None  # a valued text stands for every value: kept per value
        return _kept_suggestions(cr.text, value, lambda: cast(ConditionResult, cr))

    return eligibility.best_changes(judged, suggest=suggest)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while wording a chunk.

    Wording makes millions of small acyclic objects (rows, reasons, memo entries) that live for the
    chunk; the collector would traverse the growing heap again and again for nothing (a third of
    the time, measured). Reference counting frees them as usual; collection resumes afterwards.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
