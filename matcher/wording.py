"""A firm's worded verdicts and change suggestions, computed by the batch and stored with its matches.

A recommendation card shows the policy's verdict for the firm (✓ ✗ ? per condition, what is
missing, what to fill in) and the page shows "what would open more policies" (`eligibility.
best_changes` over the firm's best undecided policies and near misses). Judging rule trees and
searching changes per request cost milliseconds, so the batch does both for every stored candidate
and near miss (`word_firm`) and packs the result with the firm's matches (`store.encode`): each
verdict as its conditions' states, with the firm's values once, worded when read from the policy's
rules (`wordbatch.read`, the wording `wordbatch.Core.verdict` uses). A page uses a stored verdict only
while it is exactly what judging now would give:

* a day from the one it was worded on (`day`) through the last day on which judging the firm gives
  the same (`through`, see `valid_through`: years since establishment and qualification expiry are
  what move with the date); a row stored without `through` is used on its own day only,
* the same profile (the row's `profile_at`) and the same firm tags (`tags`, a digest),
* the same policy version (per verdict): an edited rule is judged again, never served from before.

Anything else is judged when read, as before. The change suggestions are stored with the
`(policy, version)` window they were computed from (`window`); a page whose window differs (new
feedback hid one of them, a policy was edited or closed) computes them again.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import orjson

from matcher import eligibility, wordbatch
from matcher.eligibility import ELIGIBLE, PolicyVerdict

WINDOW = 20  # best undecided or near-miss policies that feed "what would open more policies"
# Candidates worded by default (Settings.match_wording = "page"): a page shows 20, and feedback and
# deadlines may lift a few from further down; the rest are judged when a later page is read.
PAGE = 30
# Format 2: the batch's verdicts are stored as their conditions' states, worded when read from the
# policy's rules and the firm's values, kept once per firm ("x", "s", "n": see `Words`); format 1 (and
# rows `patch` writes) store each verdict worded in full.
FORMAT = 2
_FORMATS = (1, 2)
_STATUS_NAMES: dict[int, eligibility.Status] = {
    2: eligibility.ELIGIBLE,
    1: eligibility.LIKELY,
    0: eligibility.INELIGIBLE,
}


@dataclass(frozen=True)
class Condition:
    """One judged condition as a card shows it (the stored form of `eligibility.ConditionResult`)."""

    path: str
    field: str
    state: str
    reason: str
    needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Verdict:
    """A stored policy verdict with what a card shows (the stored form of `eligibility.PolicyVerdict`)."""

    status: eligibility.Status
    conditions: list[Condition]
    missing: list[Condition]
    fields_to_fill: list[str]
    summary: str


@dataclass
class Words:
    """A firm's stored wording, decoded (each verdict only when asked for).

    The batch stores a verdict as its conditions' states (`wordbatch.Core`) and the firm's values once
    (`values`, `sets`, `needs`): a verdict is worded when read from its policy's rules
    (`wordbatch.read`), as judging on `day` words it.
    """

    day: dt.date
    tags: int  # `tag_digest` of the firm's tags when worded
    rows: dict[int, list[Any]]  # policy id → its stored row (see `_verdict_row`)
    window: list[tuple[int, int]]  # (policy id, version) the changes were computed from, in order
    changes: list[eligibility.Change]
    through: dt.date  # the last day judging the firm gives what it gave on `day` (`valid_through`)
    values: list[Any] = field(default_factory=list)  # the firm's values of `wordbatch.TOKEN_FIELDS`
    sets: list[list[str] | None] = field(default_factory=list)  # … and its names of `wordbatch.SET_FIELDS`
    needs: dict[str, list[str]] = field(default_factory=dict)  # fields to fill in, per field left unknown
    _texts: dict[int, str] = field(default_factory=dict, repr=False)

    def text(self, k: int) -> str:
        """Return the firm's wording of token k's value, as judging on `day` words it."""
        held = self._texts.get(k)
        if held is None:
            held = self._texts[k] = wordbatch.stored_text(k, self.values, self.day)
        return held

    def set_of(self, name: str) -> frozenset[str]:
        return frozenset(self.sets[wordbatch.SET_FIELD_INDEX[name]] or ())

    def needs_of(self, name: str) -> tuple[str, ...]:
        return tuple(self.needs.get(name, ()))

    def usable_on(self, today: dt.date) -> bool:
        """Tell whether the stored verdicts are what judging on `today` gives (profile, tags and versions aside)."""
        return self.day <= today <= self.through

    def verdict(self, policy_id: int, version: int, rules: Mapping[str, Any] | None) -> Verdict | None:
        """Return the stored verdict of a policy if it was judged at this version (`rules`: the version's)."""
        row = self.rows.get(policy_id)
        if row is None or row[1] != version:
            return None
        return _verdict(row, self, rules)

    def status(self, policy_id: int, version: int) -> eligibility.Status | None:
        """Return the stored status of a policy if it was judged at this version (no verdict built)."""
        row = self.rows.get(policy_id)
        return _STATUS_NAMES[row[2]] if row is not None and row[1] == version else None

    def verdicts(self, rules: Mapping[int, Mapping[str, Any] | None]) -> dict[int, tuple[int, Verdict | None]]:
        """Return every stored verdict: policy id → (policy version, verdict); `rules` per policy id."""
        return {pid: (row[1], _verdict(row, self, rules.get(pid))) for pid, row in self.rows.items()}


def _verdict(row: list[Any], words: Words, rules: Mapping[str, Any] | None) -> Verdict | None:
    code = row[2]
    if isinstance(row[6], int):  # the batch's: the conditions' states, worded here (`wordbatch.Core`)
        _, _, _, states, missing, to_fill, support = row
        if rules is None:
            return None
        worded = wordbatch.read(rules, code, states, missing, to_fill, support, words)
        if worded is None:
            return None
        conditions = [Condition(*c) for c in worded.conditions]
        summary = worded.summary
    else:  # worded in full (`eligibility.evaluate`'s, as `patch` stores it)
        _, _, _, summary, rows, missing, to_fill = row
        conditions = [Condition(path, name, state, reason, tuple(needs)) for path, name, state, reason, needs in rows]
    return Verdict(_STATUS_NAMES[code], conditions, [conditions[k] for k in missing], to_fill, summary)


def tag_digest(tags: Iterable[str]) -> int:
    """Return a digest of a set of tag names (the firm's facts include its tags)."""
    return zlib.crc32("\n".join(sorted(tags)).encode())


def valid_through(day: dt.date, facts: Mapping[str, Any], expiries: Iterable[dt.date | None] = ()) -> dt.date:
    """Return the last day on which judging the firm gives what judging it on `day` gives.

    A verdict (`eligibility.evaluate`) reads the date only through the firm: whole years since each
    of its dates (`years_established`, `years_since_gte` / `years_since_lte`, and their wording and
    gaps), which change on the date's anniversaries, and its qualifications (`expiries`: each one's
    `valid_until_on`), each counted through its last valid day. Conditions comparing a firm's date
    with fixed dates (`date_between`, `gt`, ...) do not move with the day. Policies opening, closing
    or expiring change which policies a page shows, not any verdict: a closed policy's stored verdict
    is never looked up, and suggestions whose window changed are computed again (`Words.window`).
    Without a date or an expiring qualification the verdicts hold until the profile, the tags or a
    policy version changes, which the page checks on its own.
    """
    last = dt.date.max
    for value in facts.values():
        if isinstance(value, dt.date):
            last = min(last, _next_anniversary(value, day) - dt.timedelta(days=1))
    for end in expiries:
        if end is not None and end >= day:
            last = min(last, end)
    return last


def _next_anniversary(start: dt.date, day: dt.date) -> dt.date:
    """Return the first day after `day` on which `eligibility.whole_years(start, ·)` changes.

    Whole years change only when the day of the year reaches the start's: a 29 February start
    completes its year on 1 March in common years.
    """
    for year in (day.year, day.year + 1):
        try:
            anniversary = dt.date(year, start.month, start.day)
        except ValueError:
            anniversary = dt.date(year, 3, 1)
        if anniversary > day:
            return anniversary
    raise AssertionError("unreachable: next year's anniversary is after the day")


def pool(items: np.ndarray, near: np.ndarray) -> list[int]:
    """Return the policies that may feed the change suggestions, best first: the likely ones and the near misses."""
    return pools(items, [0, len(items)], near, [0, len(near)])[0]


def pools(
    items: np.ndarray, item_bounds: Sequence[int], near: np.ndarray, near_bounds: Sequence[int]
) -> list[list[int]]:
    """`pool` of every firm of a chunk (firm i's records are ``items[item_bounds[i]:item_bounds[i + 1]]``,
    near misses likewise), sorted once for the chunk: by base, best first, ties by policy id."""
    n = len(item_bounds) - 1
    firm, pid = _pooled(items, item_bounds, near, near_bounds)
    ranked = pid.tolist()
    cuts = np.searchsorted(firm, np.arange(n + 1)).tolist()
    return [ranked[cuts[i] : cuts[i + 1]] for i in range(n)]


def _pooled(
    items: np.ndarray, item_bounds: Sequence[int], near: np.ndarray, near_bounds: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Every firm's `pool`, flat: (firm, policy) sorted by firm, then as `pool` orders them."""
    n = len(item_bounds) - 1
    item_firm = np.repeat(np.arange(n), np.diff(np.asarray(item_bounds, dtype=np.int64)).astype(np.int64))
    near_firm = np.repeat(np.arange(n), np.diff(np.asarray(near_bounds, dtype=np.int64)).astype(np.int64))
    likely = items["status"] == 1
    firm = np.concatenate([item_firm[likely], near_firm])
    base = np.concatenate([items["base"][likely], near["base"]]).astype(np.float64)
    pid = np.concatenate([items["policy"][likely], near["policy"]]).astype(np.int64)
    order = np.lexsort((pid, -base, firm))
    return firm[order], pid[order]


def _member(keys: np.ndarray, among: np.ndarray) -> np.ndarray:
    """`np.isin(keys, among)` for int64 keys, by sorting and bisecting: numpy 2's `isin` hashes them, and in a
    profile of `_plan` on the bench chunk its hashing took 0.91 s of 1.92 s (the whole `_plan` 0.73 s after)."""
    if not len(among):
        return np.zeros(len(keys), dtype=bool)
    among = np.sort(among)
    at = np.minimum(np.searchsorted(among, keys), len(among) - 1)
    return among[at] == keys


class _Plan(NamedTuple):
    """What `word_chunk` judges, flat over a chunk's firms (firm-major, each firm's policies in the order
    `word_firm` judges them): the policy, its firm, its verdict when known without judging (else None),
    and each firm's window (`chosen[chosen_cuts[i]:chosen_cuts[i + 1]]`)."""

    wanted: np.ndarray
    owner: np.ndarray
    known: list[Any]
    unknown: np.ndarray
    chosen: list[int]
    chosen_cuts: list[int]


def _plan(
    items: np.ndarray,
    item_bounds: Sequence[int],
    near: np.ndarray,
    near_bounds: Sequence[int],
    hidden: Sequence[frozenset[int]],
    policies: Mapping[int, tuple[int, dict[str, Any] | None]],
    first: int | None,
    smith: wordbatch.Smith,
) -> _Plan:
    """Which policies each firm of a chunk needs judged, in column form (see `word_chunk`)."""
    n = len(item_bounds) - 1
    ib = np.asarray(item_bounds, dtype=np.int64)
    item_firm = np.repeat(np.arange(n, dtype=np.int64), np.diff(ib))
    policy = items["policy"].astype(np.int64)
    status = items["status"]
    # A firm's best `first` candidates (every one, and its near misses, when `first` is None), in order.
    if first is None:
        nb = np.asarray(near_bounds, dtype=np.int64)
        near_firm = np.repeat(np.arange(n, dtype=np.int64), nb[1:] - nb[:-1])
        card_firm = np.concatenate([item_firm, near_firm])
        card_pid = np.concatenate([policy, near["policy"].astype(np.int64)])
        card_status = np.concatenate([status, np.zeros(len(near), dtype=status.dtype)])
    else:
        shown = np.arange(len(items), dtype=np.int64) - ib[:-1][item_firm] < first
        card_firm, card_pid, card_status = item_firm[shown], policy[shown], status[shown]
    # Its window: the pool less the policies its feedback hid, the first `WINDOW`.
    pool_firm, pool_pid = _pooled(items, item_bounds, near, near_bounds)
    span = int(max(pool_pid.max(initial=0), card_pid.max(initial=0))) + 1
    hiding = [i for i in range(n) if hidden[i]]
    if hiding:
        hidden_keys = np.fromiter(
            (i * span + pid for i in hiding for pid in hidden[i] if 0 <= pid < span), dtype=np.int64
        )
        keep = ~_member(pool_firm * span + pool_pid, hidden_keys)
        pool_firm, pool_pid = pool_firm[keep], pool_pid[keep]
    starts = np.searchsorted(pool_firm, np.arange(n + 1))
    in_window = np.arange(len(pool_firm), dtype=np.int64) - starts[:-1][pool_firm] < WINDOW
    chosen_firm, chosen_pid = pool_firm[in_window], pool_pid[in_window]
    # The window's policies not among the candidates come after them (a firm's policies are distinct:
    # candidates are eligible or likely, near misses ineligible, the pool a part of both).
    extra = ~_member(chosen_firm * span + chosen_pid, card_firm * span + card_pid)
    firm = np.concatenate([card_firm, chosen_firm[extra]])
    order = np.argsort(firm, kind="stable")
    wanted = np.concatenate([card_pid, chosen_pid[extra]])[order]
    eligible = np.flatnonzero(np.concatenate([card_status, np.zeros(int(extra.sum()), dtype=status.dtype)])[order] == 2)
    # A candidate the kernel found eligible under a plain all-of with no set condition has every
    # condition met: its verdict is the policy's one "all met" verdict, whatever the firm's values.
    eligible_pid = wanted[eligible]
    distinct = np.flatnonzero(np.bincount(eligible_pid, minlength=span))  # np.unique hashes: 0.66 s profiled
    slot = np.zeros(span, dtype=np.int64)
    slot[distinct] = np.arange(len(distinct))
    which = slot[eligible_pid]
    cores = [smith.eligible(policies[pid][1]) for pid in distinct.tolist()]
    held = np.empty(len(cores), dtype=object)
    for k, core in enumerate(cores):  # one by one: numpy would unpack a verdict that is a sequence
        held[k] = core
    known = np.full(len(wanted), None, dtype=object)
    known[eligible] = held[which]
    unknown = np.ones(len(wanted), dtype=bool)
    unknown[eligible] = np.array([core is None for core in cores], dtype=bool)[which]
    return _Plan(
        wanted,
        firm[order],
        known.tolist(),
        unknown,
        chosen_pid.tolist(),
        np.searchsorted(chosen_firm, np.arange(n + 1)).tolist(),
    )


def window(candidates: Sequence[int], status_of: Callable[[int], str | None], hidden: set[int]) -> list[int]:
    """Return the first `WINDOW` policies of the pool not hidden, still open and not eligible.

    `status_of` gives a policy's status, or None when the policy is no longer open.
    """
    out: list[int] = []
    for pid in candidates:
        if pid in hidden:
            continue
        status = status_of(pid)
        if status is None:
            continue
        if status != ELIGIBLE:
            out.append(pid)
        if len(out) >= WINDOW:
            break
    return out


# ---------------------------------------------------------------- batch side


def word_firm(
    *,
    day: dt.date,
    tags: Iterable[str],
    facts: Mapping[str, Any],
    policies: Mapping[int, tuple[int, dict[str, Any] | None]],
    items: np.ndarray,
    near: np.ndarray,
    hidden: set[int],
    first: int | None = None,
    smith: wordbatch.Smith | None = None,
    through: dt.date | None = None,
) -> bytes:
    """Judge a firm's best candidates and find its changes; return them serialised.

    `through` is the last day on which the verdicts hold (`valid_through` of the firm); None: `day` only.

    `policies` maps a policy id to (version, rules) for every open policy. `first` limits the
    candidates judged to the best `first` (None: every candidate and near miss); the policies that feed
    the change suggestions are judged either way, exactly those a page would look at. `smith` (one per
    chunk of firms judged on `day`) shares the wording of conditions and verdicts between firms; the
    verdicts are `eligibility.evaluate`'s either way.
    """
    if smith is None or smith.day != day:
        smith = wordbatch.Smith(day)
    firm = smith.firm(facts)
    verdicts: dict[int, wordbatch.Core | PolicyVerdict] = {}

    def judge(pid: int) -> wordbatch.Core | PolicyVerdict:
        verdict = verdicts.get(pid)
        if verdict is None:
            verdict = verdicts[pid] = smith.judge(policies[pid][1], firm)
        return verdict

    shown = items["policy"] if first is None else items["policy"][:first]
    for pid in shown.tolist():
        judge(pid)
    if first is None:
        for pid in near["policy"].tolist():
            judge(pid)
    chosen = window(pool(items, near), lambda pid: judge(pid).status, hidden)
    return _packed(day, tags, firm, policies, verdicts, chosen, through)


def _packed(
    day: dt.date,
    tags: Iterable[str],
    firm: wordbatch.Firm,
    policies: Mapping[int, tuple[int, dict[str, Any] | None]],
    verdicts: Mapping[int, wordbatch.Core | PolicyVerdict],
    chosen: Sequence[int],
    through: dt.date | None,
    rows: Iterable[tuple[int, int, wordbatch.Core | PolicyVerdict]] | None = None,
) -> bytes:
    """A firm's judged policies (in the order judged) and its window, with the changes, serialised.

    `rows`: the judged policies as (policy id, version, verdict), in `verdicts`' order, when at hand."""
    changes = wordbatch.best_changes({pid: verdicts[pid] for pid in chosen}, firm)
    return pack(
        day=day,
        tags=tag_digest(tags),
        verdicts=[(pid, policies[pid][0], v) for pid, v in verdicts.items()] if rows is None else rows,
        window=[(pid, policies[pid][0]) for pid in chosen],
        changes=changes,
        through=through,
        firm=firm,
    )


BATCH = 4096  # firms of a chunk judged together, policy by policy (see `word_chunk`)


def word_chunk(
    *,
    day: dt.date,
    tags: Sequence[Iterable[str]],
    facts: Sequence[Mapping[str, Any]],
    policies: Mapping[int, tuple[int, dict[str, Any] | None]],
    items: np.ndarray,
    item_bounds: Sequence[int],
    near: np.ndarray,
    near_bounds: Sequence[int],
    hidden: Sequence[frozenset[int]],
    through: Sequence[dt.date | None],
    first: int | None = None,
    smith: wordbatch.Smith | None = None,
    finish: Callable[[bytes], bytes] | None = None,
) -> list[bytes]:
    """`word_firm` for every firm of a chunk: firm i's candidates are ``items[item_bounds[i]:item_bounds[i + 1]]``
    (near misses likewise); return each firm's serialised wording, the very bytes `word_firm` gives,
    passed through `finish` when given (`store.words_section`: compressed as soon as worded, so that a
    chunk's ~20 KB a firm of JSON is never held at once).

    The verdicts are judged policy by policy over a batch of firms rather than firm by firm, so that
    each policy's shared outcomes and verdicts stay at hand (≈ 1M verdicts: 4.1 CPU s instead of 5.8). Which
    policies a firm needs is known before judging: its best candidates, and the window of change
    suggestions, which `word_firm` walks judging each policy for its status, taken here from the
    candidates' statuses (likely) and near misses (ineligible). A firm whose window turns out
    otherwise once judged (a policy of it eligible) is worded by `word_firm` itself.
    """
    if smith is None or smith.day != day:
        smith = wordbatch.Smith(day)
    out: list[bytes] = []
    plan = _plan(items, item_bounds, near, near_bounds, hidden, policies, first, smith)
    wanted_all = plan.wanted.tolist()
    versions_all = _versions(policies, plan.wanted)
    firm_cuts = np.searchsorted(plan.owner, np.arange(len(facts) + 1)).tolist()
    chosen_all, chosen_cuts = plan.chosen, plan.chosen_cuts
    for lo in range(0, len(facts), BATCH):
        hi = min(len(facts), lo + BATCH)
        firms = [smith.firm(facts[i]) for i in range(lo, hi)]
        base, end = firm_cuts[lo], firm_cuts[hi]
        wanted = wanted_all[base:end]
        versions = versions_all[base:end]
        judged = plan.known[base:end]  # per wanted policy: its verdict when known without judging, else None
        owner = (plan.owner[base:end] - lo).tolist()
        # per firm: its policies' span in `wanted`, in the order judged; its window
        plans = [
            (firm_cuts[i] - base, firm_cuts[i + 1] - base, chosen_all[chosen_cuts[i] : chosen_cuts[i + 1]])
            for i in range(lo, hi)
        ]
        # Judge the rest policy by policy (stable: a firm's own order is kept in `plans`).
        rest = np.flatnonzero(plan.unknown[base:end])
        keys = plan.wanted[base:end][rest]
        by_policy = np.argsort(keys, kind="stable")
        starts = np.flatnonzero(np.diff(keys[by_policy], prepend=-1)).tolist()
        ranked = rest[by_policy].tolist()
        bounds = [*starts, len(ranked)]
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            runs = ranked[a:b]
            for j, verdict in zip(
                runs, smith.judge_many(policies[wanted[runs[0]]][1], [firms[owner[j]] for j in runs]), strict=True
            ):
                judged[j] = verdict
        for k, (at, to, chosen) in enumerate(plans):
            i = lo + k
            verdicts = dict(zip(wanted[at:to], judged[at:to], strict=True))
            if any(verdicts[pid].status == ELIGIBLE for pid in chosen):  # not the window `word_firm` finds
                words = word_firm(
                    day=day,
                    tags=tags[i],
                    facts=facts[i],
                    policies=policies,
                    items=items[item_bounds[i] : item_bounds[i + 1]],
                    near=near[near_bounds[i] : near_bounds[i + 1]],
                    hidden=set(hidden[i]),
                    first=first,
                    smith=smith,
                    through=through[i],
                )
            else:
                rows = (
                    zip(wanted[at:to], versions[at:to], judged[at:to], strict=True)
                    if len(verdicts) == to - at
                    else None
                )
                words = _packed(day, tags[i], firms[k], policies, verdicts, chosen, through[i], rows)
            out.append(words if finish is None else finish(words))
    return out


def _versions(policies: Mapping[int, tuple[int, Any]], wanted: np.ndarray) -> list[int]:
    """Each wanted policy's version (`policies[pid][0]`); an id not in `policies` raises KeyError."""
    return [policies[pid][0] for pid in wanted.tolist()]


def _verdict_row(pid: int, version: int, v: PolicyVerdict | Verdict | wordbatch.Core) -> list[Any] | orjson.Fragment:
    if isinstance(v, wordbatch.Core):  # the same row, serialised once for every firm judged alike
        return v.row(pid, version)
    index = {id(c): k for k, c in enumerate(v.conditions)}
    return [
        pid,
        version,
        eligibility.STATUS_CODES[v.status],
        v.summary,
        [[c.path, c.field, c.state, c.reason, list(c.needs)] for c in v.conditions],
        [index[id(c)] for c in v.missing],
        list(v.fields_to_fill),
    ]


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def pack(
    *,
    day: dt.date,
    tags: int,
    verdicts: Iterable[tuple[int, int, PolicyVerdict | Verdict | wordbatch.Core]],
    window: Sequence[tuple[int, int]],
    changes: Sequence[eligibility.Change],
    through: dt.date | None = None,
    firm: wordbatch.Firm | None = None,
) -> bytes:
    """Serialise a firm's wording (stored compressed by `store.encode`).

    `through` is the last day the verdicts hold (`valid_through`); without it they hold on `day` only.
    `firm` gives the values the batch's rows are worded with when read (`Words.values`, `sets`, `needs`).

    The bytes are orjson's for ``{"f": FORMAT, "d": …, "u": …, "t": …, "x": …, "s": …, "n": …, "v": rows,
    "w": …, "c": …}``,
    written piece by piece: a batch `Core`'s row is serialised already, so the firm's rows are joined
    once rather than copied through orjson.
    """
    parts = [
        b'{"f":%d,"d":%d,"u":%d,"t":%d,"x":%b,"s":%b,"n":%b,"v":['
        % (
            FORMAT,
            day.toordinal(),
            (through or day).toordinal(),
            tags,
            orjson.dumps(firm.values(), option=orjson.OPT_SERIALIZE_NUMPY) if firm else b"[]",
            orjson.dumps(firm.sets()) if firm else b"[]",
            orjson.dumps(firm.unknown()) if firm else b"{}",
        )
    ]
    rows = []
    for pid, version, v in verdicts:
        if isinstance(v, wordbatch.Core):
            rows.append(v.packed(pid, version))
        else:
            rows.append(orjson.dumps(_verdict_row(pid, version, v)))
    parts.append(b",".join(rows))
    parts.append(b'],"w":')
    parts.append(orjson.dumps([[pid, version] for pid, version in window]))
    parts.append(b',"c":')
    parts.append(
        orjson.dumps(
            [[c.kind, c.description, c.field, _plain(c.target), list(c.policy_ids), list(c.fields)] for c in changes]
        )
    )
    parts.append(b"}")
    return b"".join(parts)


# ---------------------------------------------------------------- read side


def unpack(raw: bytes) -> Words | None:
    """Decode serialised wording; None when there is none or its format is not this one."""
    if not raw:
        return None
    data = orjson.loads(raw)
    if data.get("f") not in _FORMATS:
        return None
    changes = [
        eligibility.Change(
            kind=kind, description=text, field=field, target=target, policy_ids=ids, fields=tuple(fields)
        )
        for kind, text, field, target, ids, fields in data["c"]
    ]
    return Words(
        day=dt.date.fromordinal(data["d"]),
        tags=data["t"],
        rows={row[0]: row for row in data["v"]},
        window=[(pid, version) for pid, version in data["w"]],
        changes=changes,
        through=dt.date.fromordinal(data.get("u", data["d"])),  # rows stored before "u": their own day only
        values=data.get("x") or [],
        sets=data.get("s") or [],
        needs=data.get("n") or {},
    )


def patch(raw: bytes, *, policy_id: int, version: int, verdict: PolicyVerdict | None) -> bytes:
    """Replace (or, with None, drop) one policy's stored verdict; the stored changes stay as they were.

    A page compares the changes' window with the current versions, so changes computed from the
    policy's former rules are never served: they are computed again when read.
    """
    data = orjson.loads(raw) if raw else None
    if not data or data.get("f") not in _FORMATS:
        return b""
    data["v"] = [row for row in data["v"] if row[0] != policy_id]
    if verdict is not None:
        data["v"].append(_verdict_row(policy_id, version, verdict))
    return orjson.dumps(data)
