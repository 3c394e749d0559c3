"""The open catalog as arrays, built once per catalog revision and day, and shared by every use.

Serving, the calculator, a firm's re-match and the batch pipeline all need the same things about
the policies a firm could still use: their ids, rules (and the compiled `RuleMatrix`), regions,
tags with their IDF weights, embedding vectors and the fields a card shows. `PolicySets` keeps the
latest one per process and rebuilds it when `catalog.service.current_revision` or the date moves —
one indexed read per request decides.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from catalog import service as catalog_service
from catalog.models import (
    Category,
    Department,
    Policy,
    PolicyRegion,
    PolicyStatus,
    PolicyType,
    Tag,
    policy_category,
    policy_tag,
)
from core import codes, heap
from matcher import tags as tags_mod
from matcher.home import home_rank
from matcher.ranking import KIND_WEIGHTS
from matcher.rulematrix import RuleMatrix


@dataclass(frozen=True)
class DepartmentInfo:
    """A department as a card shows it."""

    id: int
    code: str
    name: str
    short_name: str


@dataclass(frozen=True)
class PolicyInfo:
    """What a recommendation card and its reasons need of a policy (plain values, no database session)."""

    id: int
    title: str
    summary: str | None
    issuing_department: DepartmentInfo
    policy_type: str
    level: str
    apply_start_on: dt.date | None
    apply_end_on: dt.date | None
    max_amount: float | None
    amount_text: str | None
    apply_url: str | None
    version: int
    rules: dict[str, Any] | None
    region_codes: tuple[str, ...]
    categories: tuple[str, ...]  # category codes
    curated_tags: tuple[str, ...]


@dataclass
class PolicySet:
    """The policies open on `today` at catalog `revision`, aligned with every array below."""

    revision: int
    today: dt.date
    policies: list[PolicyInfo]
    vocab: tags_mod.Vocabulary
    idf: dict[str, float]
    tags: list[frozenset[str]]  # curated plus rule-implied tags, per policy
    tag_names: list[str]  # columns of firm tag matrices
    tag_weights: np.ndarray  # (tags, policies) float32: IDF × kind weight ÷ the policy's total
    ids: np.ndarray = field(init=False)
    position: dict[int, int] = field(init=False)
    _matrix: RuleMatrix | None = field(default=None, init=False, repr=False)
    _regions: dict[str | None, np.ndarray] = field(default_factory=dict, init=False, repr=False)
    _kinds: dict[str, str] | None = field(default=None, init=False, repr=False)
    _tag_bits: tuple[list[str], dict[str, int], list[int]] | None = field(default=None, init=False, repr=False)
    _home: dict[str | None, list[int]] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    vectors: np.ndarray | None = field(default=None, init=False, repr=False)  # (policies, dim) once embedded

    def __post_init__(self) -> None:
        self.ids = np.asarray([p.id for p in self.policies], dtype=np.int64)
        self.position = {p.id: i for i, p in enumerate(self.policies)}

    def __len__(self) -> int:
        return len(self.policies)

    def __getstate__(self) -> dict[str, Any]:
        # Shipped to other processes (Ray workers) without its lock and caches; they rebuild them.
        state = self.__dict__.copy()
        state["_lock"] = None
        state["_matrix"] = None
        state["_regions"] = {}
        state["_home"] = {}
        state["_kinds"] = None
        state["_tag_bits"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def kinds(self) -> dict[str, str]:
        """Return tag → kind."""
        return {name: info.kind for name, info in self.vocab.tags.items()}

    @property
    def matrix(self) -> RuleMatrix:
        """Return the compiled rules of every policy (built on first use)."""
        with self._lock:
            if self._matrix is None:
                self._matrix = RuleMatrix([p.rules for p in self.policies])
            return self._matrix

    def applicable(self, region_code: str | None) -> np.ndarray:
        """Return which policies may be offered to a firm of this region (a policy's region list covers it)."""
        cached = self._regions.get(region_code)
        if cached is not None:
            return cached
        if not region_code:
            mask = np.ones(len(self.policies), dtype=bool)
        else:
            try:
                path = {codes.NATIONAL_REGION, *codes.region_path(region_code)}
            except ValueError:
                path = {codes.NATIONAL_REGION, region_code}
            mask = np.fromiter(
                (not p.region_codes or bool(path.intersection(p.region_codes)) for p in self.policies),
                dtype=bool,
                count=len(self.policies),
            )
        if len(self._regions) < 10_000:
            self._regions[region_code] = mask
        return mask

    def home_ranks(self, home_region: str | None) -> list[int]:
        """Return `home.home_rank` of every policy (0: nationwide or the home city's), computed once per set."""
        cached = self._home.get(home_region)
        if cached is None:
            cached = [home_rank(p.region_codes, home_region) for p in self.policies]
            self._home[home_region] = cached
        return cached

    def firm_tag_matrix(self, firm_tags: Sequence[AbstractSet[str]]) -> np.ndarray:
        """Return firms × tag_names as float32 0/1 for the given firms' tags."""
        column = {name: i for i, name in enumerate(self.tag_names)}
        out = np.zeros((len(firm_tags), len(self.tag_names)), dtype=np.float32)
        for row, held in enumerate(firm_tags):
            for name in held:
                j = column.get(name)
                if j is not None:
                    out[row, j] = 1.0
        return out

    def _tag_order(self) -> Callable[[str], tuple[float, str]]:
        """Return the sort key of shared tags: the weightiest first (as `ranking.tag_score`), ties by name."""
        kinds = self._kinds
        if kinds is None:
            kinds = self._kinds = self.kinds

        def key(tag: str) -> tuple[float, str]:
            return -(self.idf.get(tag, 1.0) * KIND_WEIGHTS.get(kinds.get(tag, ""), 1.0)), tag

        return key

    def shared_tags(self, index: int, firm_tags: set[str] | frozenset[str]) -> list[str]:
        """Return the tags a policy and a firm share, the weightiest first (as `ranking.tag_score`)."""
        return sorted(self.tags[index] & set(firm_tags), key=self._tag_order())  # ties by name: no set order

    def tag_bits(self) -> tuple[list[str], dict[str, int], list[int]]:
        """Return the policies' tags in `shared_tags` order, each tag's bit (1 << its place in that order)
        and each policy's tags as bits, built once per set.

        The key orders every tag totally (ties by name), so a policy's and a firm's bits ANDed, read
        from the lowest bit up (`tags_of_bits`), are `shared_tags` of the pair: one integer AND per
        pair instead of an intersection and a sort (millions of pairs in a listing).
        """
        with self._lock:
            if self._tag_bits is None:
                names = sorted(set().union(*self.tags), key=self._tag_order())
                bit = {name: 1 << k for k, name in enumerate(names)}
                self._tag_bits = names, bit, [sum(bit[t] for t in held) for held in self.tags]
            return self._tag_bits

    def firm_tag_bits(self, firm_tags: Sequence[AbstractSet[str]]) -> list[int]:
        """Return each firm's tags as bits of `tag_bits` (tags no policy has left out: no pair shares them)."""
        bit = self.tag_bits()[1]
        return [sum(bit.get(t, 0) for t in held) for held in firm_tags]

    def tags_of_bits(self, bits: int) -> list[str]:
        """Return the tags of these bits (`tag_bits`) in `shared_tags` order."""
        names = self.tag_bits()[0]
        out = []
        while bits:
            low = bits & -bits
            out.append(names[low.bit_length() - 1])
            bits ^= low
        return out


def _grouped(db: Session, query: Any, order: Any) -> dict[int, list[Any]]:
    """Run a (policy id, value) query ordered by policy then `order`; return each policy's values in that order."""
    out: dict[int, list[Any]] = {}
    for pid, value in db.execute(query.order_by(query.selected_columns[0], order)):
        out.setdefault(pid, []).append(value)
    return out


def _linked(db: Session, link: Any, key: str, name: Any, is_open: Any) -> dict[int, list[Any]]:
    """Each open policy's names through an association table (`link.c[key]` → the id of `name`'s table), by name."""
    target = name.class_
    query = (
        select(link.c.policy_id, name)
        .join(target, target.id == link.c[key])
        .join(Policy, Policy.id == link.c.policy_id)
        .where(*is_open)
    )
    return _grouped(db, query, name)


def open_policies_filter(today: dt.date) -> Any:
    """Return the SQL condition of policies a firm could still use today."""
    return (
        Policy.status == PolicyStatus.published,
        or_(Policy.policy_type != PolicyType.application, Policy.apply_end_on.is_(None), Policy.apply_end_on >= today),
    )


def tag_idf(db: Session, vocab: tags_mod.Vocabulary) -> dict[str, float]:
    """Return IDF of each tag over published policies (rare tags say more)."""
    names = dict(db.execute(select(Tag.id, Tag.name)).tuples().all())
    docs: dict[int, set[str]] = {}
    for pid, tid in db.execute(
        select(policy_tag.c.policy_id, policy_tag.c.tag_id)
        .join(Policy, Policy.id == policy_tag.c.policy_id)
        .where(Policy.status == PolicyStatus.published)
    ):
        docs.setdefault(pid, set()).add(names[tid])
    return vocab.idf(docs.values())


def load(db: Session, *, today: dt.date, revision: int | None = None) -> PolicySet:
    """Read the policies open today, with their regions, tags and the weights of those tags.

    Plain column reads (no ORM objects): at 10,000 policies an ORM load of every `Policy` with its
    relationships took ~4 s of a full run's start and of every serving process's rebuild.
    """
    revision = catalog_service.current_revision(db=db) if revision is None else revision
    vocab = tags_mod.Vocabulary.from_db(db)
    is_open = open_policies_filter(today)
    rows = db.execute(
        select(
            Policy.id,
            Policy.title,
            Policy.summary,
            Policy.policy_type,
            Policy.level,
            Policy.apply_start_on,
            Policy.apply_end_on,
            Policy.max_amount,
            Policy.amount_text,
            Policy.apply_url,
            Policy.version,
            Policy.rules,
            Department.id,
            Department.code,
            Department.name,
            Department.short_name,
        )
        .join(Department, Department.id == Policy.issuing_department_id)
        .where(*is_open)
        .order_by(Policy.id)
    ).all()
    # Each policy's regions, category codes and curated tag names, in the order its relationships give them.
    regions = _grouped(
        db,
        select(PolicyRegion.policy_id, PolicyRegion.region_code)
        .join(Policy, Policy.id == PolicyRegion.policy_id)
        .where(*is_open),
        PolicyRegion.region_code,
    )
    categories = _linked(db, policy_category, "category_id", Category.code, is_open)
    curated = _linked(db, policy_tag, "tag_id", Tag.name, is_open)
    policies = [
        PolicyInfo(
            id=pid,
            title=title,
            summary=summary,
            issuing_department=DepartmentInfo(dept_id, dept_code, dept_name, dept_short),
            policy_type=str(policy_type),
            level=str(level),
            apply_start_on=start,
            apply_end_on=end,
            max_amount=max_amount,
            amount_text=amount_text,
            apply_url=apply_url,
            version=version,
            rules=rules,
            region_codes=tuple(regions.get(pid, ())),
            categories=tuple(categories.get(pid, ())),
            curated_tags=tuple(curated.get(pid, ())),
        )
        for (
            pid,
            title,
            summary,
            policy_type,
            level,
            start,
            end,
            max_amount,
            amount_text,
            apply_url,
            version,
            rules,
            dept_id,
            dept_code,
            dept_name,
            dept_short,
        ) in rows
    ]
    idf = tag_idf(db, vocab)
    tags = [frozenset(p.curated_tags) | tags_mod.policy_rule_tags(p.rules, vocab) for p in policies]
    kinds = {name: info.kind for name, info in vocab.tags.items()}
    tag_names = sorted(set().union(*tags)) if tags else []
    column = {name: i for i, name in enumerate(tag_names)}
    weights = np.zeros((len(tag_names), len(policies)), dtype=np.float32)
    for j, held in enumerate(tags):
        w = {t: idf.get(t, 1.0) * KIND_WEIGHTS.get(kinds.get(t, ""), 1.0) for t in held}
        total = sum(w.values())
        for t, wt in w.items():
            weights[column[t], j] = wt / total
    return PolicySet(
        revision=revision,
        today=today,
        policies=policies,
        vocab=vocab,
        idf=idf,
        tags=tags,
        tag_names=tag_names,
        tag_weights=weights,
    )


class PolicySets:
    """The latest `PolicySet` of a process, rebuilt when the catalog revision or the date changes."""

    def __init__(self, vectors: Callable[[Session, PolicySet], np.ndarray] | None = None) -> None:
        self._current: PolicySet | None = None
        self._key: tuple[Any, ...] | None = None
        self._lock = threading.Lock()
        self._vectors = vectors

    def get(self, db: Session, *, today: dt.date, with_vectors: bool = False) -> PolicySet:
        """Return the policy set for today's date and the current catalog revision."""
        revision, changed_at = catalog_service.revision_stamp(db=db)
        key = (revision, changed_at, today, str(db.get_bind().engine.url))
        current = self._current
        if current is None or self._key != key:
            with self._lock:
                current = self._current
                if current is None or self._key != key:
                    # A serving process builds the set without collecting and keeps it out of its full
                    # collections afterwards (core.heap).
                    with heap.loading(replaces=current is not None):
                        current = load(db, today=today, revision=revision)
                    self._current, self._key = current, key
        if with_vectors and current.vectors is None and self._vectors is not None:
            vectors = self._vectors(db, current)
            with self._lock:
                current.vectors = vectors
        return current

    def clear(self) -> None:
        """Forget the cached set (tests, after bulk loads)."""
        with self._lock:
            self._current, self._key = None, None
