"""The batch kernel: score a chunk of firms against every open policy and keep each firm's best.

One chunk is: load the firms' facts, tags and vectors (`load_chunk`), judge and score every
(firm, policy) pair a firm's region admits, keep per firm the `TOP_N` best eligible or likely
policies and the `NEAR_N` best near misses, and pack them (`store.Row`). Two kernels compute the
same thing, and tests hold them equal:

* `score_chunk` for many firms: firms sorted by region, policies grouped by the regions they admit,
  so each policy's rule tree is evaluated once over contiguous runs of firms
  (`eligibility.evaluate_with_states`); similarity and shared tags are one matrix product per block;
* `score_few` for a handful of firms (a firm's own re-match, the calculator): every policy's rules
  judged at once from the compiled `RuleMatrix`.

The scores: rules 1 (eligible), 0.5 + 0.3 × share of conditions met (likely), 0.2 × share
(ineligible), 0.7 without conditions; tags and semantic as `matcher.ranking`; base = the weighted
sum of the three. Urgency and the firm's feedback change daily and are added when a page is read.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from catalog.fields import FIELDS
from matcher import eligibility, facts, feedback, store, vectors, wordbatch, wording
from matcher import ranker as ranker_mod
from matcher.eligibility import FactsFrame
from matcher.policyset import PolicySet
from matcher.ranker import LearnedRanker
from matcher.ranking import NO_CONDITIONS_SCORE, Weights, urgency_score

TOP_N = 50  # candidates kept per firm: pages of 20 with room for feedback to reorder
NEAR_N = 20  # near misses kept per firm: they feed "what would open more policies"
POLICY_BLOCK = 256  # policies per block: bounds the firms × policies temporaries
PRUNE_AT = 1_000_000  # candidates held before they are first cut down to each firm's best


@dataclass
class Context:
    """What every chunk of a run needs, built once (once per worker on a cluster)."""

    policies: PolicySet  # with vectors
    weights: Weights
    today: dt.date
    model_id: str
    dim: int
    wording: str = "page"  # Settings.match_wording: page, all or off
    ranker: LearnedRanker | None = None  # the learned ranker pages score with (None: the hand weights)
    home_region: str | None = None  # Settings.home_region: pages' tie-break

    @property
    def revision(self) -> int:
        """Return the catalog revision the policies were read at."""
        return self.policies.revision


@dataclass
class Chunk:
    """The firms of one chunk, as the kernels read them."""

    ids: np.ndarray
    regions: list[str | None]
    frame: FactsFrame
    table: pd.DataFrame  # the profile columns as read (for per-firm facts)
    tags: list[frozenset[str]]
    vectors: np.ndarray
    has_vector: np.ndarray
    profile_at: list[dt.datetime]
    hidden: list[frozenset[int]]  # per firm, the policies its latest feedback calls not relevant
    # per firm, the last valid day of its first qualification to expire (None: none expires)
    expiries: list[dt.date | None] = field(default_factory=list)
    _sets: dict[str, list[frozenset[str]]] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    def _set(self, name: str) -> list[frozenset[str]]:
        if name not in self._sets:
            self._sets[name] = facts.tag_sets(self.frame, name)
        return self._sets[name]

    def facts(self, today: dt.date) -> list[dict[str, Any]]:
        """Return each firm's facts as `eligibility.profile_facts` gives them."""
        return self._facts(today, self.table, range(len(self)))

    def facts_of(self, i: int, today: dt.date) -> dict[str, Any]:
        """Return one firm's facts (row `i` of the chunk)."""
        return self._facts(today, self.table.iloc[[i]], [i])[0]

    def _facts(self, today: dt.date, table: pd.DataFrame, rows: Sequence[int]) -> list[dict[str, Any]]:
        """Column by column (a chunk's 20k firms × 16 fields: one pass per field, not a call per value)."""
        columns: dict[str, list[Any]] = {}
        for name, f in FIELDS.items():
            if f.type == "set":
                held = self._set(name)
                columns[name] = [held[i] for i in rows]
            elif name != "years_established":
                columns[name] = _clean_column(name, table[name].tolist() if name in table else [None] * len(rows))
        columns["years_established"] = [
            eligibility.whole_years(day, today) if day else None for day in columns["established_on"]
        ]
        names = [*(n for n in FIELDS if n != "years_established"), "years_established"]
        return [dict(zip(names, values, strict=True)) for values in zip(*(columns[n] for n in names), strict=True)]


def _clean_column(name: str, values: list[Any]) -> list[Any]:
    """`eligibility._clean_fact` of every value of a profile column as read (Decimal money on PostgreSQL is a
    float, as the ORM gives it), through `wordbatch._clean`; numbers and None, most of a column, inline."""
    clean, kind = wordbatch._clean, FIELDS[name].type
    out: list[Any] = []
    for value in values:
        t = type(value)
        if t is float:
            out.append(None if value != value else value)  # NaN: unknown
        elif value is None or t is int:
            out.append(value)
        else:
            out.append(clean(kind, float(value) if t is Decimal else value))
    return out


def load_chunk(
    db: Session, ctx: Context, *, ids: np.ndarray | None = None, id_range: tuple[int, int] | None = None
) -> Chunk:
    """Read the firms of a chunk: facts, stored tags, vectors."""
    frame, table = facts.load_frame(db, today=ctx.today, ids=ids, id_range=id_range, extra=("profile_updated_at",))
    firm_ids = table["id"].to_numpy(np.int64)
    vecs, has = vectors.load(db, firm_ids, model_id=ctx.model_id, dim=ctx.dim)
    regions = [r if isinstance(r, str) and r else None for r in table["region_code"].tolist()]
    profile_at = [_aware(v) for v in table["profile_updated_at"].tolist()]
    hidden = _hidden(db, firm_ids, id_range)
    ends = facts.qualification_ends(db, today=ctx.today, ids=ids, id_range=id_range)
    return Chunk(
        ids=firm_ids,
        regions=regions,
        frame=frame,
        table=table.drop(columns=["profile_updated_at"]),
        tags=facts.tag_sets(frame, "tags"),
        vectors=vecs,
        has_vector=has,
        profile_at=profile_at,
        hidden=[hidden.get(int(eid), frozenset()) for eid in firm_ids],
        expiries=[ends.get(eid) for eid in firm_ids.tolist()],
    )


def _hidden(db: Session, firm_ids: np.ndarray, id_range: tuple[int, int] | None) -> dict[int, frozenset[int]]:
    """Return, per firm of the chunk, the policies its latest feedback marks not relevant."""
    if not len(firm_ids):
        return {}
    out: dict[int, set[int]] = {}
    if id_range is not None:
        latest = feedback.latest_for_firms(db=db, enterprise_range=id_range)
    else:
        latest = {}
        ids = [int(e) for e in firm_ids]
        for start in range(0, len(ids), 900):
            latest.update(feedback.latest_for_firms(db=db, enterprise_ids=ids[start : start + 900]))
    for (eid, pid), action in latest.items():
        if action == feedback.NOT_RELEVANT:
            out.setdefault(eid, set()).add(pid)
    return {eid: frozenset(pids) for eid, pids in out.items()}


def _aware(value: Any) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


# ---------------------------------------------------------------- candidates and selection


class _Candidates:
    """Scored (firm row, policy) pairs of a chunk, cut to each firm's best now and then.

    After each cut, a firm holding at least `TOP_N` (or `NEAR_N`) pairs knows a base its best
    `TOP_N` reach; a new pair scoring below it can never be kept (ties are kept: the lower policy
    index wins them), so it is dropped on arrival and the held pairs stay few. The cuts before the
    last keep a superset (`_cut`: every pair not below the firm's `TOP_N`-th base, ties and all);
    only `select` ranks exactly (`_best`).
    """

    _FIELDS = ("row", "policy", "status", "rules", "tags", "semantic", "cosine", "base")

    def __init__(self, n: int) -> None:
        self.parts: list[tuple[np.ndarray, ...]] = []
        self.near: list[tuple[np.ndarray, ...]] = []  # (row, policy, base) each
        self.held = 0
        self.kept = 0  # pairs held right after the last cut
        self.floor = np.full(n, -np.inf)  # per row: the lowest base of a full top-N, else -inf
        self.near_floor = np.full(n, -np.inf)

    def add(self, *columns: np.ndarray) -> None:
        keep = columns[-1] >= self.floor[columns[0]]
        if not keep.all():
            columns = tuple(c[keep] for c in columns)
        if len(columns[0]):
            self.parts.append(columns)
            self.held += len(columns[0])

    def add_near(self, row: np.ndarray, policy: np.ndarray, base: np.ndarray) -> None:
        keep = base >= self.near_floor[row]
        if not keep.all():
            row, policy, base = row[keep], policy[keep], base[keep]
        if len(row):
            self.near.append((row, policy, base))
            self.held += len(row)

    def prune(self) -> None:
        if self.held < max(PRUNE_AT, 2 * self.kept):
            return
        if self.parts:
            self.parts = [self._cut(self.parts, TOP_N, self.floor)]
        if self.near:
            self.near = [self._cut(self.near, NEAR_N, self.near_floor)]
        self.held = self.kept = sum(len(p[0]) for p in self.parts) + sum(len(p[0]) for p in self.near)

    @staticmethod
    def _cut(parts: Sequence[tuple[np.ndarray, ...]], keep: int, floor: np.ndarray) -> tuple[np.ndarray, ...]:
        """Drop the pairs below each firm's `keep`-th base, raising `floor` to it; the rest keep their order.

        Exact ranking is left to `_best`: a pair among a firm's best `keep` has fewer than `keep`
        pairs scoring above it, so it is never below the `keep`-th base of any subset. The `keep`-th
        base is found from one sort of an int64 key — the firm row in the high bits, the base's
        float bits (ordered like the values for bases ≥ 0) cut by as many low bits below — so the
        threshold is the base rounded down to that grid: a few more ties survive, none is lost.
        """
        columns = tuple(
            np.concatenate([p[i] for p in parts]) if len(parts) > 1 else parts[0][i] for i in range(len(parts[0]))
        )
        row, base = columns[0].astype(np.int64, copy=False), columns[-1]
        counts = np.bincount(row, minlength=len(floor))
        full = np.flatnonzero(counts >= keep)
        if not len(full):
            return columns
        if not (base >= 0).all():  # negative weights (or NaN): the bits do not order the values
            best, last = _Candidates._best(parts, keep)
            floor[best[0][last]] = best[-1][last]
            return best
        shift = max(int(len(floor) - 1).bit_length(), 1)
        bits = (base + 0.0).view(np.int64) >> shift  # + 0.0: -0.0 becomes 0.0
        key = np.sort((row << (63 - shift)) | bits)
        ends = np.cumsum(counts)
        threshold = np.full(len(floor), -1, dtype=np.int64)
        threshold[full] = key[ends[full] - keep] & ((1 << (63 - shift)) - 1)
        floor[full] = (threshold[full] << shift).view(np.float64)
        chosen = bits >= threshold[row]
        return columns if chosen.all() else tuple(c[chosen] for c in columns)

    @staticmethod
    def _best(parts: Sequence[tuple[np.ndarray, ...]], keep: int) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        """Keep each firm's `keep` best pairs: highest base first, then lowest policy index; sorted by firm.

        Also return the positions (in the result) of each full firm's last kept pair.
        """
        columns = [
            np.concatenate([p[i] for p in parts]) if len(parts) > 1 else parts[0][i] for i in range(len(parts[0]))
        ]
        row, policy, base = columns[0], columns[1], columns[-1]
        order = np.lexsort((policy, -base, row))
        row_sorted = row[order]
        first = np.empty(len(order), dtype=bool)
        first[:1] = True
        np.not_equal(row_sorted[1:], row_sorted[:-1], out=first[1:])
        starts = np.flatnonzero(first)
        rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.append(starts, len(order))))
        chosen = rank < keep
        kept = order[chosen]
        last = np.flatnonzero(rank[chosen] == keep - 1)
        return tuple(c[kept] for c in columns), last

    def select(self) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
        empty_items = tuple(np.zeros(0, dtype=t) for t in (np.int64, np.int64, np.int8) + (np.float64,) * 5)
        empty_near = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64))
        items = self._best(self.parts, TOP_N)[0] if self.parts else empty_items
        near = self._best(self.near, NEAR_N)[0] if self.near else empty_near
        return items, near


def _rows(
    chunk: Chunk,
    ctx: Context,
    row_to_firm: np.ndarray,
    candidates: _Candidates,
    eligible: np.ndarray,
    likely: np.ndarray,
) -> list[store.Row]:
    """Pack each firm's kept candidates and near misses; `row_to_firm` maps kernel rows to chunk rows."""
    (row, policy, status, rules, tags, semantic, cosine, base), (near_row, near_policy, near_base) = candidates.select()
    ids = ctx.policies.ids
    items = np.zeros(len(row), dtype=store.ITEM)
    items["policy"] = ids[policy]
    items["status"] = status
    items["rules"] = np.round(rules * store.SCALE)
    items["tags"] = np.round(tags * store.SCALE)
    items["semantic"] = np.round(semantic * store.SCALE)
    items["cosine"] = np.where(np.isnan(cosine), store.NO_COSINE, np.round(np.nan_to_num(cosine) * store.SCALE))
    items["base"] = base
    page_score = _page_scores(ctx, policy, items) if ctx.wording == "page" else None
    near = np.zeros(len(near_row), dtype=store.NEAR)
    near["policy"] = ids[near_policy]
    near["base"] = near_base
    firm_of_item = row_to_firm[row]
    firm_of_near = row_to_firm[near_row]
    # Items are sorted by kernel row; regroup by chunk row (the kernels may have permuted firms).
    item_order = np.argsort(firm_of_item, kind="stable")
    near_order = np.argsort(firm_of_near, kind="stable")
    items, firm_of_item = items[item_order], firm_of_item[item_order]
    if page_score is not None:
        page_score, page_policy = page_score[item_order], policy[item_order]
    near, firm_of_near = near[near_order], firm_of_near[near_order]
    n = len(chunk)
    item_bounds = np.searchsorted(firm_of_item, np.arange(n + 1))
    near_bounds = np.searchsorted(firm_of_near, np.arange(n + 1))
    # Payloads cut from two buffers (what `store.encode` packs per firm, without a numpy call per firm),
    # each ending with the firm's worded verdicts and suggestions (what a page shows without judging).
    firm_facts = chunk.facts(ctx.today) if ctx.wording != "off" else []
    versions = {p.id: (p.version, p.rules) for p in ctx.policies.policies}
    item_bytes, near_bytes = items.astype(store.ITEM).tobytes(), near.astype(store.NEAR).tobytes()
    isz, nsz = store.ITEM.itemsize, store.NEAR.itemsize
    ib, nb = item_bounds.tolist(), near_bounds.tolist()
    ids, el, lk = chunk.ids.tolist(), eligible.tolist(), likely.tolist()
    header, words_section = store.header, store.words_section
    first = None if ctx.wording == "all" else wording.PAGE
    cards = items
    if page_score is not None:  # wording "page"
        # The cards worded are a firm's first `first` as a page ranks them on the batch's day, urgency
        # included, not by base: a candidate whose deadline is near outranks better bases on a page.
        # Reordered within each firm only (the stored items stay by base; the window sorts by base).
        # Ties as a page breaks them: the home region's and nationwide policies first, then by id.
        home = np.asarray(ctx.policies.home_ranks(ctx.home_region), dtype=np.int64)
        cards = items[np.lexsort((items["policy"], home[page_policy], -page_score, firm_of_item))]
    out = []
    with wordbatch.gc_paused():  # millions of small acyclic objects: collecting would only traverse them
        sections = [words_section(None)] * n
        if ctx.wording != "off":
            sections = list(
                wording.word_chunk(
                    day=ctx.today,
                    tags=chunk.tags,
                    facts=firm_facts,
                    policies=versions,
                    items=cards,
                    item_bounds=ib,
                    near=near,
                    near_bounds=nb,
                    hidden=chunk.hidden,
                    through=[
                        wording.valid_through(ctx.today, firm_facts[i], chunk.expiries[i : i + 1]) for i in range(n)
                    ],
                    first=first,
                    smith=wordbatch.Smith(ctx.today),  # conditions and verdicts worded once for firms alike
                    finish=words_section,
                )
            )
        for i in range(n):
            out.append(
                store.Row(
                    enterprise_id=ids[i],
                    revision=ctx.revision,
                    profile_at=chunk.profile_at[i],
                    eligible=el[i],
                    likely=lk[i],
                    payload=header(ib[i + 1] - ib[i], nb[i + 1] - nb[i])
                    + item_bytes[ib[i] * isz : ib[i + 1] * isz]
                    + near_bytes[nb[i] * nsz : nb[i + 1] * nsz]
                    + sections[i],
                )
            )
    return out


def _page_scores(ctx: Context, policy: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Return each item's score as a page on `ctx.today` gives it, without the feedback adjustment.

    `recommend` scores the stored (rounded) components and today's urgency with
    `ranker.score_components`; `ranker.score_matrix` gives the same numbers for all at once.
    `policy` holds the items' positions in `ctx.policies`.
    """
    urgency = np.fromiter(
        (
            urgency_score(p.apply_end_on, ctx.today, ctx.weights) if p.policy_type == "application" else 0.0
            for p in ctx.policies.policies
        ),
        dtype=np.float64,
        count=len(ctx.policies),
    )
    matrix = np.column_stack(
        [
            items["rules"] / store.SCALE,
            items["tags"] / store.SCALE,
            items["semantic"] / store.SCALE,
            urgency[policy],
            np.zeros(len(items)),
        ]
    )
    return ranker_mod.score_matrix(matrix, ctx.weights, ctx.ranker)


def _scores(
    ctx: Context,
    status: np.ndarray,
    rules: np.ndarray,
    policy_index: np.ndarray,
    fv: np.ndarray,
    has_vector: np.ndarray,
    firm_tags: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (tags, semantic, cosine, base) for firms × the given policies; status/rules are policies × firms."""
    ps, w = ctx.policies, ctx.weights
    assert ps.vectors is not None
    cosine = fv @ ps.vectors[policy_index].T
    span = max(w.semantic_ceiling - w.semantic_floor, 1e-6)
    semantic = np.clip(np.round((cosine.astype(np.float64) - w.semantic_floor) / span, 4), 0.0, 1.0)
    semantic[~has_vector] = 0.0
    cosine = cosine.astype(np.float64)
    cosine[~has_vector] = np.nan
    if len(ps.tag_names):
        tags = np.round(firm_tags @ ps.tag_weights[:, policy_index].astype(np.float64), 4)
    else:
        tags = np.zeros((len(fv), len(policy_index)))
    base = w.rules * rules.T + w.tags * tags + w.semantic * semantic
    return tags, semantic, cosine, base


# ---------------------------------------------------------------- kept policy lists


PAIR_SLICE = 4_096  # pairs scored at once by `pair_scores` (bounds its gathered temporaries)


def pair_scores(
    ctx: Context, fv: np.ndarray, has_vector: np.ndarray, firm_tags: np.ndarray, policy_index: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (tags, semantic, cosine) of pairs: row k of `fv` / `firm_tags` with policy `policy_index[k]`.

    Each pair is summed on its own (not as part of a matrix product, whose last bits depend on the
    shape BLAS computes it in), so a pair scores the same whichever pairs come with it: a policy's
    kept list is the same written alone (`runs.list_policy`), with others (`runs.list_policies`) or
    as changed firms are re-matched (`runs.rematch_firms`).
    """
    ps, w = ctx.policies, ctx.weights
    assert ps.vectors is not None
    m = len(policy_index)
    cosine = np.zeros(m, dtype=np.float64)
    tags = np.zeros(m, dtype=np.float64)
    for s in range(0, m, PAIR_SLICE):
        part = policy_index[s : s + PAIR_SLICE]
        cosine[s : s + PAIR_SLICE] = np.einsum("ij,ij->i", fv[s : s + PAIR_SLICE], ps.vectors[part])
        if len(ps.tag_names):
            tags[s : s + PAIR_SLICE] = np.einsum(
                "ij,ji->i", firm_tags[s : s + PAIR_SLICE].astype(np.float64), ps.tag_weights[:, part].astype(np.float64)
            )
    tags = np.round(tags, 4)
    span = max(w.semantic_ceiling - w.semantic_floor, 1e-6)
    semantic = np.clip(np.round((cosine - w.semantic_floor) / span, 4), 0.0, 1.0)
    semantic[~has_vector] = 0.0
    cosine[~has_vector] = np.nan
    return tags, semantic, cosine


@dataclass
class Listed:
    """Eligible and likely (firm, policy) pairs of kept policy lists, with what a `match_result` row holds."""

    firm: np.ndarray  # row in the chunk
    policy: np.ndarray  # position in the policy set
    status: np.ndarray  # 2 eligible, 1 likely
    rules: np.ndarray
    tags: np.ndarray
    semantic: np.ndarray
    cosine: np.ndarray  # NaN: the firm has no vector
    # Each pair's condition states in document order (2 met, 1 unknown, 0 not met), packed: pair k's
    # are states[bounds[k]:bounds[k + 1]] (a list per pair would cost ~100 bytes each, millions of pairs).
    states: np.ndarray
    bounds: np.ndarray

    def __len__(self) -> int:
        return len(self.firm)

    def states_of(self, start: int, stop: int) -> list[list[int]]:
        """Return the condition states of pairs start…stop − 1, a list each."""
        b = self.bounds[start : stop + 1].tolist()
        base = b[0]
        flat = self.states[base : b[-1]].tolist()
        return [flat[b[k] - base : b[k + 1] - base] for k in range(stop - start)]

    @classmethod
    def empty(cls) -> Listed:
        ints, floats = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        return cls(ints, ints, np.zeros(0, dtype=np.int8), floats, floats, floats, floats, ints, np.zeros(1, np.int64))


class _Listing:
    """Collects, block by block of the kernel, the eligible / likely pairs of listed policies."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []  # kernel rows (firms sorted by region)
        self.policies: list[np.ndarray] = []
        self.status: list[np.ndarray] = []
        self.rules: list[np.ndarray] = []
        self.states: list[np.ndarray] = []  # per policy of a block: its pairs' states, pair after pair
        self.counts: list[np.ndarray] = []  # conditions per pair

    def add(
        self,
        a: int,
        block: np.ndarray,
        status: np.ndarray,
        met: np.ndarray,
        conditions: np.ndarray,
        block_states: list[np.ndarray],
        listed: np.ndarray,
    ) -> None:
        """Take the pairs of one block (policies × the firms of kernel rows a…) whose policy is listed."""
        wanted = listed[block]
        if not wanted.any():
            return
        for k in np.flatnonzero(wanted).tolist():
            cols = np.flatnonzero(status[k] >= 1)
            if not len(cols):
                continue
            st = status[k, cols]
            c = int(conditions[k])
            if c:
                share = met[k, cols] / c
                rules = np.where(
                    st == 2, 1.0, np.where(st == 1, np.round(0.5 + 0.3 * share, 4), np.round(0.2 * share, 4))
                )
                self.states.append(block_states[k][:, cols].T.ravel())
            else:
                rules = np.full(len(cols), NO_CONDITIONS_SCORE)
            self.counts.append(np.full(len(cols), c, dtype=np.int64))
            self.rows.append(a + cols)
            self.policies.append(np.full(len(cols), block[k], dtype=np.int64))
            self.status.append(st)
            self.rules.append(rules)

    def finish(self, ctx: Context, order: np.ndarray, fv: np.ndarray, has: np.ndarray, firm_tags: np.ndarray) -> Listed:
        """Score the collected pairs (`pair_scores`); firms given back as chunk rows through `order`."""
        if not self.rows:
            return Listed.empty()
        rows = np.concatenate(self.rows)
        policy = np.concatenate(self.policies)
        tags, semantic, cosine = pair_scores(ctx, fv[rows], has[rows], firm_tags[rows], policy)
        return Listed(
            firm=order[rows],
            policy=policy,
            status=np.concatenate(self.status).astype(np.int8),
            rules=np.concatenate(self.rules).astype(np.float64),
            tags=tags,
            semantic=semantic,
            cosine=cosine,
            states=np.concatenate(self.states) if self.states else np.zeros(0, dtype=np.int8),
            bounds=np.concatenate([[0], np.cumsum(np.concatenate(self.counts))]).astype(np.int64),
        )


# ---------------------------------------------------------------- many firms


@functools.cache
def _rule_scores(width: int) -> np.ndarray:
    """Return the rule score of every (status, conditions met, conditions) under `width` conditions.

    Flat, indexed by (status × width + met) × width + conditions: a pair's score is one gather
    instead of the arithmetic per pair (the same operations on the same values give the same bits).
    """
    st, met, count = (a.ravel() for a in np.meshgrid(np.arange(3), np.arange(width), np.arange(width), indexing="ij"))
    share = met.astype(np.int32) / np.maximum(count.astype(np.int64), 1)
    rules = np.where(st == 2, 1.0, np.where(st == 1, np.round(0.5 + 0.3 * share, 4), np.round(0.2 * share, 4)))
    rules[count == 0] = NO_CONDITIONS_SCORE
    return rules


def score_chunk(chunk: Chunk, ctx: Context) -> tuple[list[store.Row], np.ndarray, np.ndarray]:
    """Score a chunk of firms; return its rows and per-policy (eligible, likely) counts."""
    rows, pol_eligible, pol_likely, _ = _kernel(chunk, ctx)
    return rows, pol_eligible, pol_likely


def score_listing(chunk: Chunk, ctx: Context, listed: np.ndarray) -> tuple[list[store.Row], Listed]:
    """Score a chunk of firms as `score_chunk` does, and return too the pairs of the listed policies.

    `listed` marks (by position in the policy set) the policies whose whole eligible / likely list is
    kept (`match_result`): their pairs come out of the same pass that judges every policy for the
    firms' own matches, so keeping the lists costs no second judgement.
    """
    rows, _, _, pairs = _kernel(chunk, ctx, listed=listed)
    assert pairs is not None
    return rows, pairs


def list_chunk(chunk: Chunk, ctx: Context, positions: Sequence[int]) -> Listed:
    """Return the eligible / likely pairs of the chunk's firms with these policies (positions), nothing else.

    The kernel of `score_chunk` over these policies only: each policy's rule tree is evaluated
    over the runs of firms its regions admit, and no firm's matches are packed.
    """
    listed = np.zeros(len(ctx.policies), dtype=bool)
    only = np.asarray(sorted(set(int(j) for j in positions)), dtype=np.int64)
    listed[only] = True
    _, _, _, pairs = _kernel(chunk, ctx, only=only, keep=False, listed=listed)
    assert pairs is not None
    return pairs


def _kernel(
    chunk: Chunk,
    ctx: Context,
    *,
    only: np.ndarray | None = None,
    keep: bool = True,
    listed: np.ndarray | None = None,
) -> tuple[list[store.Row], np.ndarray, np.ndarray, Listed | None]:
    """The many-firms kernel: judge the policies (`only` these positions, or all) over the chunk.

    `keep`: score the pairs, keep each firm's best and pack its row; `listed`: a mask of policies
    whose eligible / likely pairs are returned (`Listed`). Also per-policy (eligible, likely) counts.
    """
    ps, today = ctx.policies, ctx.today
    n, p = len(chunk), len(ps)
    pol_eligible = np.zeros(p, dtype=np.int64)
    pol_likely = np.zeros(p, dtype=np.int64)
    if not n:
        return [], pol_eligible, pol_likely, (Listed.empty() if listed is not None else None)
    keys = np.asarray([r if r is not None else "\uffff" for r in chunk.regions], dtype=object)
    order = np.argsort(keys, kind="stable")
    frame = chunk.frame.take(order)
    fv, has = chunk.vectors[order], chunk.has_vector[order]
    firm_tags = ps.firm_tag_matrix([chunk.tags[i] for i in order]).astype(np.float64)
    sorted_keys = keys[order]
    edges = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1
    starts = np.concatenate([[0], edges]).astype(np.int64)
    stops = np.concatenate([edges, [n]]).astype(np.int64)
    allowed = np.vstack([ps.applicable(chunk.regions[order[s]]) for s in starts]) if p else np.zeros((len(starts), 0))
    groups: dict[tuple[tuple[int, int], ...], list[int]] = {}
    for j in range(p) if only is None else only.tolist():
        runs: list[list[int]] = []
        for s in np.flatnonzero(allowed[:, j]):
            a, b = int(starts[s]), int(stops[s])
            if runs and runs[-1][1] == a:
                runs[-1][1] = b
            else:
                runs.append([a, b])
        if runs:
            groups.setdefault(tuple((a, b) for a, b in runs), []).append(j)
    eligible = np.zeros(n, dtype=np.int64)
    likely = np.zeros(n, dtype=np.int64)
    candidates = _Candidates(n)
    listing = _Listing() if listed is not None else None
    cache: eligibility.TableCache = {}
    w = ctx.weights
    span = max(w.semantic_ceiling - w.semantic_floor, 1e-6)
    assert ps.vectors is not None
    for spans, members in groups.items():
        member_index = np.asarray(members, dtype=np.int64)
        for a, b in spans:
            sub = frame.slice(a, b)
            memo: eligibility.LeafMemo = {}  # conditions repeated by the group's policies, judged once over `sub`
            for b0 in range(0, len(member_index), POLICY_BLOCK):
                block = member_index[b0 : b0 + POLICY_BLOCK]
                status = np.empty((len(block), b - a), dtype=np.int8)
                met = np.zeros((len(block), b - a), dtype=np.int32)  # conditions met
                near = np.zeros((len(block), b - a), dtype=bool)
                conditions = np.zeros(len(block), dtype=np.int64)
                block_states: list[np.ndarray] = []
                for k, j in enumerate(block):
                    st, states = eligibility.evaluate_with_states(
                        ps.policies[j].rules, sub, today=today, cache=cache, memo=memo
                    )
                    status[k] = st
                    block_states.append(states)
                    c = len(states)
                    if not c:
                        continue
                    conditions[k] = c
                    met[k] = (states == 2).sum(axis=0)
                    # Ineligible on exactly one condition, none unknown: c − 1 met and the states sum to 2(c − 1).
                    near[k] = (st == 0) & (met[k] == c - 1) & (states.sum(axis=0, dtype=np.int32) == 2 * (c - 1))
                if listing is not None and listed is not None:
                    listing.add(a, block, status, met, conditions, block_states, listed)
                is_eligible, is_likely = status == 2, status == 1
                eligible[a:b] += is_eligible.sum(axis=0)
                likely[a:b] += is_likely.sum(axis=0)
                pol_eligible[block] += is_eligible.sum(axis=1)
                pol_likely[block] += is_likely.sum(axis=1)
                if not keep:
                    continue
                # Only pairs kept as candidates or near misses are scored; the products stay one GEMM per block.
                gk, gi = np.nonzero(status >= 1)
                nk, ni = np.nonzero(near)
                kk = np.concatenate([gk, nk])
                ii = np.concatenate([gi, ni])
                # Flat positions in the firms × block products and in the block × firms judgements (a flat
                # `take` gathers the same values as [ii, kk] for less).
                by_firm, by_policy = ii * len(block) + kk, kk * (b - a) + ii
                cosine = np.take(fv[a:b] @ ps.vectors[block].T, by_firm).astype(np.float64)
                semantic = np.clip(np.round((cosine - w.semantic_floor) / span, 4), 0.0, 1.0)
                missing = ~has[a:b][ii]
                semantic[missing] = 0.0
                cosine[missing] = np.nan
                if len(ps.tag_names):
                    tags = np.round(np.take(firm_tags[a:b] @ ps.tag_weights[:, block].astype(np.float64), by_firm), 4)
                else:
                    tags = np.zeros(len(ii))
                st = np.take(status, by_policy)
                width = int(conditions.max()) + 1
                rules = _rule_scores(width)[
                    (st.astype(np.int64) * width + np.take(met, by_policy)) * width + conditions[kk]
                ]
                base = w.rules * rules + w.tags * tags + w.semantic * semantic
                g = len(gk)
                candidates.add(a + gi, block[gk], st[:g], rules[:g], tags[:g], semantic[:g], cosine[:g], base[:g])
                candidates.add_near(a + ni, block[nk], base[g:])
                candidates.prune()
    pairs = listing.finish(ctx, order, fv, has, firm_tags) if listing is not None else None
    if not keep:
        return [], pol_eligible, pol_likely, pairs
    # Kernel rows are firms sorted by region; counts go back to chunk order through `order`.
    el, lk = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    el[order], lk[order] = eligible, likely
    return _rows(chunk, ctx, order, candidates, el, lk), pol_eligible, pol_likely, pairs


# ---------------------------------------------------------------- a few firms


def score_few(chunk: Chunk, ctx: Context) -> tuple[list[store.Row], np.ndarray, np.ndarray]:
    """Score a few firms against every policy at once from the compiled rules (same result as score_chunk)."""
    ps = ctx.policies
    n = len(chunk)
    if not n or not len(ps):
        return score_chunk(chunk, ctx)
    judged = ps.matrix.judge(chunk.facts(ctx.today), today=ctx.today)
    allowed = np.vstack([ps.applicable(r) for r in chunk.regions])  # firms × policies
    everything = np.arange(len(ps), dtype=np.int64)
    firm_tags = ps.firm_tag_matrix(chunk.tags).astype(np.float64)
    tags, semantic, cosine, base = _scores(
        ctx, judged.status, judged.rule_score, everything, chunk.vectors, chunk.has_vector, firm_tags
    )
    status = judged.status.T
    good_rows, good_cols = np.nonzero((status >= 1) & allowed)
    candidates = _Candidates(n)
    candidates.add(
        good_rows,
        good_cols,
        status[good_rows, good_cols],
        judged.rule_score.T[good_rows, good_cols],
        tags[good_rows, good_cols],
        semantic[good_rows, good_cols],
        cosine[good_rows, good_cols],
        base[good_rows, good_cols],
    )
    near_rows, near_cols = np.nonzero(judged.near_miss.T & allowed)
    candidates.add_near(near_rows, near_cols, base[near_rows, near_cols])
    eligible = ((status == 2) & allowed).sum(axis=1)
    likely = ((status == 1) & allowed).sum(axis=1)
    pol_eligible = ((status == 2) & allowed).sum(axis=0)
    pol_likely = ((status == 1) & allowed).sum(axis=0)
    return _rows(chunk, ctx, np.arange(n), candidates, eligible, likely), pol_eligible, pol_likely


def score(chunk: Chunk, ctx: Context) -> tuple[list[store.Row], np.ndarray, np.ndarray]:
    """Score a chunk with the kernel that suits its size."""
    return score_few(chunk, ctx) if len(chunk) <= FEW else score_chunk(chunk, ctx)


FEW = 32  # up to this many firms, judging every policy at once from the compiled rules is faster

ProgressFn = Callable[[str, int, int], None]
