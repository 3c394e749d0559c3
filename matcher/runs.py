"""Batch runs: every firm (`rematch_all`), changed firms (`rematch_firms`), one policy (`list_policy`),
and the catch-up that does what is due (`rematch_changed`).

Every run embeds what changed first, with no transaction open; then reads a chunk, scores it with no
transaction open, and writes its rows in one short transaction. A full run is checkpointed per
chunk (`match_run`, `match_run_chunk`, written with the chunk's rows): killed with SIGKILL, it
resumes at the first chunk not written, and nothing is written twice or left out. `should_stop`
is checked between chunks, so a worker asked to stop does so within one chunk.

Policies' kept lists (`match_result`) are written the same way: a listing (`list_policies`, and
`list_policy`, which also patches every firm's stored matches) is a run (`list_run`) of units of
firms, each unit's rows replaced and committed with its checkpoint (`list_run_unit`). Stopped or
killed, the next listing of those policies resumes at the units not written. Its policies read as
not listed from its start until its last unit is written (their counts are recorded then). A full
run ends by marking every kept list not listed and listing them again (they were judged on an
earlier day against older firm data); the catch-up resumes any listing of lists left unfinished.

Chunks run on the local engine by default; `engine` may run them elsewhere (matcher/ray_engine.py)
as long as it writes the same rows — tests hold the engines to identical results.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import itertools
import json
import logging
import math
import operator
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from auth.models import Role, User
from catalog.models import Policy, PolicyStatus
from core.db import Database, driver_cursor, utcnow
from matcher import eligibility, firmtags, pipeline, store, vectors, wording
from matcher import tags as tags_mod
from matcher.eligibility import ELIGIBLE, LIKELY
from matcher.models import (
    FirmMatch,
    ListRun,
    ListRunPolicy,
    ListRunUnit,
    MatcherState,
    MatchResult,
    MatchRun,
    MatchRunChunk,
    PolicyMatchState,
)
from profiles.models import Enterprise

log = logging.getLogger(__name__)

# Units are where a worker asked to stop can stop (`should_stop` is checked between them; the goal is
# within 10 s of SIGTERM) and what one write transaction holds. With the per-policy lists kept, a changed
# firm writes ~200 list rows at 10,000 policies (~15 ms on SQLite): 2,000 firms per unit took 15–30 s
# (bench.serving's mixed load: the worker did not stop within 20 s), 500 take ~4–8 s.
FIRM_BATCH = 500  # changed firms per unit of a firm re-match
# Before a catch-up's full run, the firms people sign in for (up to this many, latest sign-in first) are
# embedded and scored on their own: their pages fill in seconds instead of after every other firm.
ACCOUNT_FIRST_MAX = 1000
LIST_BATCH = 2_000  # firms per unit when policies are listed against all firms (~400k rows at 10k policies)
LIST_PART = 5_000  # list rows made and written at a time; a stop is checked between parts
Progress = Callable[[str, int, int], None]
StopFn = Callable[[], bool]
_STATUS = {2: ELIGIBLE, 1: LIKELY}


class Matcherlike(Protocol):
    """What a run needs of `matcher.service.Matcher`."""

    settings: Any
    weights: Any
    policy_sets: Any

    @property
    def embedder(self) -> Any: ...

    @property
    def cache(self) -> Any: ...

    @property
    def ranker(self) -> Any: ...  # the learned ranker in use, or None (hand weights)

    def encode(self, texts: Sequence[str], role: str) -> np.ndarray: ...


ChunkDone = tuple[int, int, float]  # (chunk number, firms scored, CPU seconds of the process that scored it)


class ChunkEngine(Protocol):
    """Runs the chunks of a full run somewhere; yields a `ChunkDone` as each is written."""

    def run(self, run_id: int, chunk_numbers: Sequence[int], ctx: pipeline.Context) -> Iterable[ChunkDone]: ...


@dataclass
class Report:
    """What a run did."""

    kind: str
    firms: int = 0
    chunks: int = 0
    resumed: int = 0  # chunks found done and skipped
    embedded: int = 0
    tagged: int = 0
    policies: int = 0
    rows: int = 0
    seconds: float = 0.0
    stopped: bool = False
    details: dict[str, Any] = field(default_factory=dict)


def context(db: Session, matcher: Matcherlike, *, today: dt.date) -> pipeline.Context:
    """Return what every chunk needs: the open policies with vectors, weights, the embedder's identity."""
    return pipeline.Context(
        policies=matcher.policy_sets.get(db, today=today, with_vectors=True),
        weights=matcher.weights,
        today=today,
        model_id=matcher.embedder.model_id,
        dim=matcher.embedder.dim,
        wording=matcher.settings.match_wording,
        ranker=matcher.ranker,
        home_region=matcher.settings.home_region,
    )


def scoring_threads() -> Any:
    """Run BLAS (and OpenMP) on one thread while scoring; a context manager.

    A GEMM's last bits depend on how many threads split it, and scores are rounded from them: with
    2 threads a 2,000-firm chunk stored other bytes than with 1. Every engine — this process, forked
    workers, Ray actors (Ray gives each actor as many threads as CPUs it asked for, unless
    OMP_NUM_THREADS is set) — must store the same rows, so scoring is pinned to one thread. On a busy
    machine this also saves CPU (threads spinning for a core): ~5–10 % per chunk measured.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def _stop(should_stop: StopFn | None) -> bool:
    return bool(should_stop and should_stop())


def _changed_firms(db: Session) -> list[int]:
    """Firms with no stored matches, or matches computed from an older profile."""
    return list(
        db.scalars(
            select(Enterprise.id)
            .outerjoin(FirmMatch, FirmMatch.enterprise_id == Enterprise.id)
            .where((FirmMatch.enterprise_id.is_(None)) | (FirmMatch.profile_at != Enterprise.profile_updated_at))
            .order_by(Enterprise.id)
        )
    )


def _tag(database: Database, ids: Sequence[int], today: dt.date) -> int:
    return firmtags.sync_all(database, ids, today=today)


def _tag_stale(database: Database, today: dt.date, ids: Sequence[int] | None = None) -> int:
    """Derive the tags of firms whose tags are out of date (all such firms, or those among `ids`)."""
    with database.session() as db:
        stale = firmtags.stale_ids(db, signature=firmtags.vocabulary_signature(tags_mod.Vocabulary.from_db(db)))
    if ids is not None:
        wanted = set(ids)
        stale = [eid for eid in stale if eid in wanted]
    return _tag(database, stale, today)


def embed_firms(
    database: Database,
    matcher: Matcherlike,
    ids: Sequence[int] | None = None,
    today: dt.date | None = None,
    **kw: Any,
) -> int:
    """Embed the firms (all, or the given ones) whose profile texts changed; return how many were embedded."""
    kw.setdefault("encode_batch", matcher.settings.embed_batch_size)
    # Background warm-ups of other processes wait while this runs (EmbeddingCache.batch_running).
    with matcher.cache.batch_running():
        return vectors.embed(
            database, matcher.encode, model_id=matcher.embedder.model_id, enterprise_ids=ids, today=today, **kw
        )


# ---------------------------------------------------------------- every firm


def run_key(ctx: pipeline.Context, signature: str) -> str:
    """Identify what a full run computes: a killed run resumes only into a run computing the same."""
    w = ctx.weights
    text = f"all|{ctx.revision}|{ctx.today}|{w}|{pipeline.TOP_N}|{pipeline.NEAR_N}|{ctx.model_id}|{signature}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _open_run(database: Database, ctx: pipeline.Context, key: str, width: int) -> tuple[int, int, set[int]]:
    """Return (run id, chunks, chunks done) of the unfinished run with this key, or of a new one."""
    with database.writer_session() as db:
        run = db.scalar(select(MatchRun).where(MatchRun.key == key, MatchRun.status == "running"))
        if run is None:
            lo, hi, count = db.execute(select(func.min(Enterprise.id), func.max(Enterprise.id), func.count())).one()
            lo, hi = lo or 1, hi or 0
            chunks = max(0, math.ceil((hi - lo + 1) / width)) if count else 0
            run = MatchRun(
                kind="all",
                key=key,
                revision=ctx.revision,
                first_id=lo,
                width=width,
                chunks=chunks,
                chunks_done=0,
                firms=count,
                firms_done=0,
                status="running",
            )
            db.add(run)
            db.flush()
        done = set(db.scalars(select(MatchRunChunk.chunk_no).where(MatchRunChunk.run_id == run.id)))
        return run.id, run.chunks, done


def process_chunk(database: Database, ctx: pipeline.Context, run_id: int, chunk_no: int) -> int:
    """Score one chunk of a full run and write it with its checkpoint; return the firms scored.

    Idempotent: a chunk already recorded as done is skipped (its rows and its checkpoint were
    committed together), so an engine may retry it after any failure.
    """
    with database.session() as db:
        first_id, width = db.execute(select(MatchRun.first_id, MatchRun.width).where(MatchRun.id == run_id)).one()
        lo = first_id + chunk_no * width
        chunk = pipeline.load_chunk(db, ctx, id_range=(lo, lo + width - 1))
    with scoring_threads():
        rows, eligible, likely = pipeline.score(chunk, ctx)
    counts = np.vstack([eligible, likely]).astype(np.int32).tobytes()
    with database.writer_session() as db:
        if db.get(MatchRunChunk, (run_id, chunk_no)) is not None:
            return 0
        store.write(db, rows)
        db.add(MatchRunChunk(run_id=run_id, chunk_no=chunk_no, firms=len(rows), counts=counts))
        db.execute(
            update(MatchRun)
            .where(MatchRun.id == run_id)
            .values(
                chunks_done=MatchRun.chunks_done + 1, firms_done=MatchRun.firms_done + len(rows), updated_at=utcnow()
            )
        )
    return len(rows)


def timed_chunk(database: Database, ctx: pipeline.Context, run_id: int, chunk_no: int) -> ChunkDone:
    """`process_chunk`, with the CPU seconds its process spent on it (every thread: BLAS, the driver's I/O).

    Engines report it so that a run's compute is known wherever its chunks ran (a Ray worker's CPU
    is not visible to the driver's `getrusage`)."""
    started = time.process_time()
    firms = process_chunk(database, ctx, run_id, chunk_no)
    return chunk_no, firms, time.process_time() - started


class LocalEngine:
    """Runs the chunks of a full run one after another in this process."""

    def __init__(self, database: Database, should_stop: StopFn | None = None) -> None:
        self.database = database
        self.should_stop = should_stop

    def run(self, run_id: int, chunk_numbers: Sequence[int], ctx: pipeline.Context) -> Iterable[ChunkDone]:
        for k in chunk_numbers:
            if _stop(self.should_stop):
                return
            yield timed_chunk(self.database, ctx, run_id, k)


_WORKER: dict[str, Any] = {}  # a process engine's worker: its database and the run's context


def _worker_start(url: str, ctx: pipeline.Context) -> None:
    _WORKER["database"] = Database(url)
    _WORKER["ctx"] = ctx


def _worker_chunk(run_id: int, chunk_no: int) -> ChunkDone:
    return timed_chunk(_WORKER["database"], _WORKER["ctx"], run_id, chunk_no)


class ProcessEngine:
    """Runs the chunks of a full run in `workers` processes of this machine, started with the run's context.

    The same chunk function as `LocalEngine`, so the same rows; chunks finish out of order, each
    committed with its checkpoint. Forked by default (the command line, `huiqi match --all --workers N`:
    the parent must hold no open transaction and no threads of its own); spawned for a process with
    threads (`huiqi worker`'s nightly job, `HUIQI_MATCH_WORKERS`).
    """

    def __init__(
        self, database: Database, workers: int, should_stop: StopFn | None = None, *, start_method: str = "fork"
    ) -> None:
        self.database = database
        self.workers = workers
        self.should_stop = should_stop
        # "fork" (the command line: single-threaded, children share the parent's pages) or "spawn" (a process
        # with threads of its own, as `huiqi worker`'s scheduler: fresh children, the context pickled to each).
        self.start_method = start_method

    def run(self, run_id: int, chunk_numbers: Sequence[int], ctx: pipeline.Context) -> Iterable[ChunkDone]:
        import multiprocessing

        if not chunk_numbers:
            return
        self.database.dispose()  # no pooled connection is shared with the children
        processes = multiprocessing.get_context(self.start_method)
        with processes.Pool(min(self.workers, len(chunk_numbers)), _worker_start, (self.database.url, ctx)) as pool:
            for done in pool.imap_unordered(functools.partial(_worker_chunk, run_id), chunk_numbers):
                yield done
                if _stop(self.should_stop):
                    pool.terminate()  # a chunk cut short wrote nothing: its rows and checkpoint commit together
                    return


def rematch_all(
    database: Database,
    matcher: Matcherlike,
    *,
    today: dt.date | None = None,
    width: int | None = None,
    progress: Progress | None = None,
    should_stop: StopFn | None = None,
    engine: ChunkEngine | None = None,
    embed: bool = True,
) -> Report:
    """Score every firm against every open policy and store each firm's best; resumable."""
    started = time.perf_counter()
    today = today or dt.date.today()
    report = Report("all")
    if embed:
        report.embedded = embed_firms(
            database, matcher, None, today, should_stop=should_stop, progress=_phase(progress, "embed")
        )
    report.tagged = _tag_stale(database, today)
    if _stop(should_stop):
        report.stopped = True
        return report
    with database.session() as db:
        ctx = context(db, matcher, today=today)
    width = width or int(matcher.settings.match_chunk_width)
    signature = firmtags.vocabulary_signature(ctx.policies.vocab)
    run_id, chunks, done = _open_run(database, ctx, run_key(ctx, signature), width)
    report.chunks, report.resumed = chunks, len(done)
    todo = [k for k in range(chunks) if k not in done]
    engine = engine or LocalEngine(database, should_stop)
    finished = len(done)
    chunk_cpu: list[float] = []
    for _, firms, cpu in engine.run(run_id, todo, ctx):
        finished += 1
        report.firms += firms
        chunk_cpu.append(cpu)
        report.details["chunk_cpu_s"] = round(sum(chunk_cpu), 2)
        report.details["chunk_cpu_max_s"] = round(max(chunk_cpu), 2)
        if progress:
            progress("chunks", finished, chunks)
    if finished < chunks:
        report.stopped = True
        report.seconds = round(time.perf_counter() - started, 2)
        return report
    relist = _finish_run(database, ctx, run_id)
    report.policies = len(ctx.policies)
    # The kept lists were made before this run, against older firm data and another day: the run marked
    # them not listed and started their listing (one read of the firms for all of them). Stopped or killed,
    # the catch-up resumes it.
    report.details["relisted"] = len(relist)
    if relist:
        list_policies(database, matcher, relist, today=today, should_stop=should_stop)
        report.stopped = _stop(should_stop)
    report.seconds = round(time.perf_counter() - started, 2)
    return report


def _phase(progress: Progress | None, name: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(name, done, total)


def _finish_run(database: Database, ctx: pipeline.Context, run_id: int) -> list[int]:
    """Sum the chunks' per-policy counts into policy_match_state and mark everything current.

    The kept lists are not current (they were made before the run): in the same transaction they are
    marked not listed and a listing of them is started (`_stale_lists`); return its policies."""
    ps = ctx.policies
    totals = np.zeros((2, len(ps)), dtype=np.int64)
    with database.session() as db:
        for blob in db.scalars(select(MatchRunChunk.counts).where(MatchRunChunk.run_id == run_id)):
            if len(blob) == totals.shape[1] * 8:
                totals += np.frombuffer(blob, dtype=np.int32).reshape(2, -1)
    with database.writer_session() as db:
        relist = _stale_lists(db, ctx)
        if relist:
            _start_list_run(db, LIST, list_key(ctx, LIST), relist)
        _record_policy_counts(db, ps, totals[0], totals[1])
        db.execute(
            update(MatchRun)
            .where(MatchRun.id == run_id)
            .values(status="done", finished_at=utcnow(), updated_at=utcnow())
        )
        db.execute(
            update(MatcherState)
            .where(MatcherState.id == 1, MatcherState.matched_revision < ctx.revision)
            .values(matched_revision=ctx.revision, updated_at=utcnow())
        )
    return list(relist)


def _stale_lists(db: Session, ctx: pipeline.Context) -> dict[int, int]:
    """Mark every kept list not listed, end unfinished listings; return the lists to make again (policy → version).

    A kept list (listed, or being written by a listing) was judged on an earlier day against the firms'
    data of then, while a full run re-reads every firm: it is no longer current. Listings under way are
    ended (their units written before the run are just as old). A list is made again (lists only) when
    the firms' stored matches hold its policy's current version: the version the run judged, or for a
    policy the run did not judge (not open), the version it was listed at. A policy edited since is left
    to its own patch (`changed_policy_ids`: the run records the version it judged).
    """
    made = dict(
        db.execute(
            select(PolicyMatchState.policy_id, PolicyMatchState.policy_version).where(PolicyMatchState.listed.is_(True))
        )
        .tuples()
        .all()
    )
    for run in db.scalars(select(ListRun).where(ListRun.status == "running").order_by(ListRun.id)).all():
        for pid, (_, ver) in _members(db, run.id).items():
            made.setdefault(pid, ver)
        run.status, run.updated_at = "abandoned", utcnow()
    ids = sorted(made)
    current: dict[int, int] = {}
    for start in range(0, len(ids), 900):
        part = ids[start : start + 900]
        current.update(db.execute(select(Policy.id, Policy.version).where(Policy.id.in_(part))).tuples().all())
    _unlist(db, ids)
    judged = {p.id: p.version for p in ctx.policies.policies}
    return {pid: current[pid] for pid in ids if current.get(pid) == judged.get(pid, made[pid])}


def _record_policy_counts(db: Session, ps: Any, eligible: np.ndarray, likely: np.ndarray) -> None:
    """Record what a full run found per policy; whether its list is kept is left as it is (a new row: not)."""
    now = utcnow()
    rows = [
        {
            "policy_id": policy.id,
            "policy_version": policy.version,
            "matched_at": now,
            "eligible": int(eligible[j]),
            "likely": int(likely[j]),
        }
        for j, policy in enumerate(ps.policies)
    ]
    _upsert_policy_states(db, rows, new={"listed": False})


def _upsert_policy_states(db: Session, rows: list[dict[str, Any]], *, new: dict[str, Any]) -> None:
    """Write `policy_match_state` rows (every row the same keys, `policy_id` among them): an UPDATE by primary
    key for a policy that has one, an INSERT (with `new`'s values besides) for one that has none — each as
    one executemany, not a statement per policy (a full run records 10,000 policies at once)."""
    if not rows:
        return
    ids = [r["policy_id"] for r in rows]
    present: set[int] = set()
    for start in range(0, len(ids), 900):
        part = ids[start : start + 900]
        present.update(db.scalars(select(PolicyMatchState.policy_id).where(PolicyMatchState.policy_id.in_(part))))
    updates = [r for r in rows if r["policy_id"] in present]
    inserts = [{**new, **r} for r in rows if r["policy_id"] not in present]
    if updates:
        db.execute(update(PolicyMatchState), updates)  # bulk UPDATE by primary key
    if inserts:
        db.execute(insert(PolicyMatchState), inserts)


# ---------------------------------------------------------------- some firms


def rematch_firms(
    database: Database,
    matcher: Matcherlike,
    enterprise_ids: Sequence[int],
    *,
    today: dt.date | None = None,
    progress: Progress | None = None,
    should_stop: StopFn | None = None,
) -> Report:
    """Re-derive tags, embed and re-score these firms (new or changed profiles); update policy lists."""
    started = time.perf_counter()
    today = today or dt.date.today()
    report = Report("firms")
    ids = sorted(set(enterprise_ids))
    if not ids:
        return report
    report.tagged = _tag_stale(database, today, ids)
    report.embedded = embed_firms(database, matcher, ids, today, should_stop=should_stop)
    with database.session() as db:
        ctx = context(db, matcher, today=today)
        listed = _listed_positions(db, ctx.policies)
    mask = np.zeros(len(ctx.policies), dtype=bool)
    mask[listed] = True
    list_rows = 0
    for start in range(0, len(ids), FIRM_BATCH):
        if _stop(should_stop):
            report.stopped = True
            break
        part = np.asarray(ids[start : start + FIRM_BATCH], dtype=np.int64)
        with database.session() as db:
            chunk = pipeline.load_chunk(db, ctx, ids=part)
        pairs = None
        with scoring_threads():
            if listed:
                # The kept lists' pairs come out of the same pass that scores the firms (any chunk size).
                rows, pairs = pipeline.score_listing(chunk, ctx, mask)
            else:
                rows, _, _ = pipeline.score(chunk, ctx)
        with database.writer_session() as db:
            store.write(db, rows)
            if pairs is not None:
                _replace_list_rows(db, ctx, chunk, listed, pairs)
                list_rows += len(pairs)
        report.firms += len(rows)
        if progress:
            progress("firms", report.firms, len(ids))
    report.details["list_rows"] = list_rows
    report.seconds = round(time.perf_counter() - started, 2)
    return report


def _listed_positions(db: Session, ps: Any) -> list[int]:
    """Return positions in the policy set of policies whose full eligible list is kept, or being written.

    A policy of an unfinished listing run (at its current version) keeps its rows too: a unit already
    written holds this firm's old rows; a unit not written yet replaces them with the same.
    """
    listed = set(db.scalars(select(PolicyMatchState.policy_id).where(PolicyMatchState.listed.is_(True))))
    being_listed = db.execute(
        select(ListRunPolicy.policy_id, ListRunPolicy.policy_version)
        .join(ListRun, ListRun.id == ListRunPolicy.run_id)
        .where(ListRun.status == "running", ListRunPolicy.active.is_(True))
    )
    versions = {p.id: p.version for p in ps.policies}
    listed |= {pid for pid, ver in being_listed if versions.get(pid) == ver}
    return [j for j, p in enumerate(ps.policies) if p.id in listed]


@dataclass
class _ListRows:
    """`match_result` rows column by column, as `_listed_rows` makes them for the row writers.

    A listing writes millions of rows: built a column at a time (C loops over lists, no dict per row)
    and written straight from the columns (COPY lines on PostgreSQL, executemany tuples on SQLite).
    Shared tags and condition states are keys per row into `tag_values` / `state_values` (each distinct
    list made and serialised once). `computed_at` is one timestamp for all the rows (a part of at most
    `LIST_PART` rows, computed within a fraction of a second), not one per row.
    """

    enterprise_id: list[int]
    policy_id: list[int]
    policy_version: list[int]
    status: list[str]
    score: list[float]
    rule_score: list[float]
    tag_score: list[float]
    semantic_score: list[float]
    similarity: list[float | None]
    shared_tags: list[Any]  # per row, a key of `tag_values`
    condition_states: list[Any]  # per row, a key of `state_values`
    tag_values: dict[Any, list[str]]
    state_values: dict[Any, list[int]]
    computed_at: dt.datetime

    def __len__(self) -> int:
        return len(self.enterprise_id)

    def columns(
        self, tags_value: Callable[[Any], Any] | None = None, states_value: Callable[[Any], Any] | None = None
    ) -> list[Sequence[Any]]:
        """Return the columns in `_LIST_COLUMNS` order, shared tags through `tags_value` and condition
        states through `states_value` once per distinct value (None: the lists themselves)."""
        out: list[Sequence[Any]] = [
            self.enterprise_id,
            self.policy_id,
            self.policy_version,
            self.status,
            self.score,
            self.rule_score,
            self.tag_score,
            self.semantic_score,
            self.similarity,
        ]
        for keys, values, fn in (
            (self.shared_tags, self.tag_values, tags_value),
            (self.condition_states, self.state_values, states_value),
        ):
            made = values if fn is None else {k: fn(v) for k, v in values.items()}
            out.append(list(map(made.__getitem__, keys)))
        out.append([self.computed_at] * len(self))
        return out

    @classmethod
    def of_dicts(cls, rows: Sequence[dict[str, Any]]) -> _ListRows:
        """Return dict rows (`_list_entry`'s) as columns, so that every row takes one writer. Their
        `computed_at` becomes the first row's, as a listing's part has one (rows made together)."""
        floats = {
            name: [float(r[name]) for r in rows] for name in ("score", "rule_score", "tag_score", "semantic_score")
        }
        tags = [tuple(r["shared_tags"]) for r in rows]
        states = [tuple(r["condition_states"]) for r in rows]
        return cls(
            enterprise_id=[r["enterprise_id"] for r in rows],
            policy_id=[r["policy_id"] for r in rows],
            policy_version=[r["policy_version"] for r in rows],
            status=[r["status"] for r in rows],
            similarity=[None if r["similarity"] is None else float(r["similarity"]) for r in rows],
            shared_tags=tags,
            condition_states=states,
            tag_values={k: list(k) for k in set(tags)},
            state_values={k: list(k) for k in set(states)},
            computed_at=rows[0]["computed_at"],
            **floats,
        )

    def dicts(self) -> list[dict[str, Any]]:
        """Return the rows as dicts (what a Core insert takes); rows of the same JSON value share its list."""
        return [
            dict(zip(_LIST_COLUMNS, values, strict=True))
            for values in zip(*self.columns(tags_value=list, states_value=list), strict=True)
        ]


def _listed_rows(
    ctx: pipeline.Context,
    chunk: pipeline.Chunk,
    pairs: pipeline.Listed,
    start: int = 0,
    stop: int | None = None,
    *,
    firm_bits: list[int] | None = None,
    versions: list[int] | None = None,
) -> _ListRows:
    """Return the `match_result` rows of the kept lists' pairs found in a chunk (pairs start…stop − 1).

    The values `_list_entry` gives each pair, made column by column: the score summed in the same
    order on the same doubles (elementwise, so the same bits) and rounded by Python's `round`, as
    `_list_entry` rounds; shared tags by `PolicySet.tag_bits` (`firm_bits`: the chunk's firms' bits,
    `PolicySet.firm_tag_bits`) and `versions` (`_policy_versions`) made once per chunk by the caller.
    """
    ps, w = ctx.policies, ctx.weights
    stop = len(pairs) if stop is None else stop
    cut = slice(start, stop)
    firm, policy = pairs.firm[cut], pairs.policy[cut]
    firms, policies = firm.tolist(), policy.tolist()
    rules, tags, semantic, cosine = (v[cut] for v in (pairs.rules, pairs.tags, pairs.semantic, pairs.cosine))
    four = itertools.repeat(4)
    similarity: list[float | None] = list(map(round, cosine.tolist(), four))
    for k in np.flatnonzero(np.isnan(cosine)).tolist():
        similarity[k] = None  # the firm has no vector
    # Shared tags: the policy's and the firm's bits ANDed, each distinct result read back once.
    _, _, policy_bits = ps.tag_bits()
    if firm_bits is None:
        firm_bits = ps.firm_tag_bits(chunk.tags)
    if versions is None:
        versions = _policy_versions(ps)
    shared = list(map(operator.and_, map(policy_bits.__getitem__, policies), map(firm_bits.__getitem__, firms)))
    # Condition states: each pair's slice of the packed states as bytes (its length is part of the key).
    bounds = pairs.bounds[start : stop + 1]
    packed = pairs.states[bounds[0] : bounds[-1]]
    small = packed.astype(np.int8)
    if not np.array_equal(small, packed):
        raise ValueError("condition states out of range")
    raw = small.tobytes()
    offsets = (bounds - bounds[0]).tolist()
    states = list(map(raw.__getitem__, map(slice, offsets[:-1], offsets[1:])))
    return _ListRows(
        enterprise_id=np.asarray(chunk.ids)[firm].tolist(),
        policy_id=ps.ids[policy].tolist(),
        policy_version=list(map(versions.__getitem__, policies)),
        status=list(map(_STATUS.__getitem__, pairs.status[cut].tolist())),
        score=list(map(round, (w.rules * rules + w.tags * tags + w.semantic * semantic).tolist(), four)),
        rule_score=rules.tolist(),
        tag_score=tags.tolist(),
        semantic_score=semantic.tolist(),
        similarity=similarity,
        shared_tags=shared,
        condition_states=states,
        tag_values={bits: ps.tags_of_bits(bits) for bits in set(shared)},
        state_values={key: np.frombuffer(key, dtype=np.int8).tolist() for key in set(states)},
        # One timestamp per part (≤ LIST_PART rows, made in well under a second), not one per row.
        computed_at=utcnow(),
    )


def _policy_versions(ps: Any) -> list[int]:
    """Return each policy's version, by position in the policy set."""
    return [p.version for p in ps.policies]


def _write_listed(
    db: Session, ctx: pipeline.Context, chunk: pipeline.Chunk, pairs: pipeline.Listed, should_stop: StopFn | None = None
) -> None:
    """Insert the kept lists' pairs of a chunk, rows made a few thousand at a time (millions per chunk).

    With `should_stop`, raise `_Stopped` between parts when asked: the caller's transaction (a unit of
    a listing run) is rolled back and the unit written again when the run resumes.
    """
    if not len(pairs):
        return
    firm_bits, versions = ctx.policies.firm_tag_bits(chunk.tags), _policy_versions(ctx.policies)
    for start in range(0, len(pairs), LIST_PART):
        if _stop(should_stop):
            raise _Stopped
        stop = min(start + LIST_PART, len(pairs))
        _insert_list_rows(db, _listed_rows(ctx, chunk, pairs, start, stop, firm_bits=firm_bits, versions=versions))


def _replace_list_rows(
    db: Session, ctx: pipeline.Context, chunk: pipeline.Chunk, listed: Sequence[int], pairs: pipeline.Listed
) -> None:
    """Replace these firms' rows in the kept policy lists."""
    ps = ctx.policies
    ids = [int(e) for e in chunk.ids]
    policy_ids = [ps.policies[j].id for j in listed]
    for start in range(0, len(ids), 900):
        db.execute(
            delete(MatchResult).where(
                MatchResult.enterprise_id.in_(ids[start : start + 900]), MatchResult.policy_id.in_(policy_ids)
            )
        )
    _write_listed(db, ctx, chunk, pairs)


def _insert_list_rows(db: Session, rows: list[dict[str, Any]] | _ListRows) -> None:
    """Insert `match_result` rows (dicts, or a listing's columns: `_ListRows`), dicts taken as columns.

    On PostgreSQL a COPY straight from the columns. On SQLite the values go to the driver's executemany,
    each converted by its column type's own bind processor (JSON, UTC timestamps; each distinct JSON value
    and the one timestamp converted once): what a Core insert applies, without its bookkeeping per row
    (most of the insert's time for the hundreds of thousands of rows of a catch-up). Elsewhere a Core insert.
    """
    if not len(rows):
        return
    columns = rows if isinstance(rows, _ListRows) else _ListRows.of_dicts(rows)
    connection = db.connection()
    dialect = connection.dialect
    if dialect.name == "postgresql":
        _copy_list_rows(db, columns)
        return
    if dialect.name != "sqlite":
        dicts = columns.dicts()
        for start in range(0, len(dicts), 5_000):
            connection.execute(insert(MatchResult), dicts[start : start + 5_000])
        return
    table = MatchResult.__table__
    processors = {name: table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in _LIST_COLUMNS}
    quote = dialect.identifier_preparer.quote
    sql = (
        f"INSERT INTO {quote(MatchResult.__tablename__)} ({', '.join(quote(n) for n in _LIST_COLUMNS)}) "
        f"VALUES ({', '.join('?' for _ in _LIST_COLUMNS)})"
    )
    cursor = driver_cursor(connection)
    try:
        _execute_list_columns(cursor, sql, columns, processors)
    finally:
        cursor.close()


def _execute_list_columns(
    cursor: Any, sql: str, rows: _ListRows, processors: Mapping[str, Callable[[Any], Any] | None]
) -> None:
    """executemany `_ListRows` (SQLite): each column through its bind processor, as a Core insert converts it."""
    columns = rows.columns(tags_value=processors["shared_tags"], states_value=processors["condition_states"])
    at = processors["computed_at"]
    if at is not None:
        columns[-1] = [at(rows.computed_at)] * len(rows)
    for k, name in enumerate(_LIST_COLUMNS[:-3]):
        fn = processors[name]
        if fn is not None:
            columns[k] = list(map(fn, columns[k]))
    values = list(zip(*columns, strict=True))
    for start in range(0, len(values), 5_000):
        cursor.executemany(sql, values[start : start + 5_000])


_LIST_COLUMNS = (
    "enterprise_id",
    "policy_id",
    "policy_version",
    "status",
    "score",
    "rule_score",
    "tag_score",
    "semantic_score",
    "similarity",
    "shared_tags",
    "condition_states",
    "computed_at",
)


def _copy_list_rows(db: Session, rows: _ListRows) -> None:
    """COPY `match_result` rows (PostgreSQL) straight from the columns, values as a Core insert stores them.

    Floats by `repr` (`float.__repr__`: the shortest text that reads back as the same double), each distinct
    JSON value by the dialect's serializer once (what the column's bind processor uses; `json` keeps the
    text as written), NULL as \\N, the one timestamp once (the last column: it ends the line); each value's
    text made by a C loop, a line by one join per row.
    """
    dumps = getattr(db.get_bind().dialect, "_json_serializer", None) or json.dumps
    null = "\\N"
    copy_json = lambda v: store.copy_text(dumps(v))  # noqa: E731
    (eid, pid, version, status, score, rule, tag, semantic, similarity, shared, states, _) = rows.columns(
        tags_value=copy_json, states_value=copy_json
    )
    text = float.__repr__
    lines = map(
        "\t".join,
        zip(
            map(str, eid),
            map(str, pid),
            map(str, version),
            status,
            map(text, score),
            map(text, rule),
            map(text, tag),
            map(text, semantic),
            [null if s is None else text(s) for s in similarity],
            shared,
            states,
            itertools.repeat(rows.computed_at.isoformat() + "\n"),
        ),
    )
    store.copy_lines(db, f"match_result ({', '.join(_LIST_COLUMNS)})", lines)


def _list_entry(
    ctx: pipeline.Context,
    chunk: pipeline.Chunk,
    j: int,
    i: int,
    status: int,
    rules: float,
    tags: float,
    semantic: float,
    cosine: float,
    states: list[int],
) -> dict[str, Any]:
    ps, w = ctx.policies, ctx.weights
    return {
        "enterprise_id": int(chunk.ids[i]),
        "policy_id": ps.policies[j].id,
        "policy_version": ps.policies[j].version,
        "status": _STATUS[status],
        "score": round(w.rules * rules + w.tags * tags + w.semantic * semantic, 4),
        "rule_score": rules,
        "tag_score": tags,
        "semantic_score": semantic,
        "similarity": None if np.isnan(cosine) else round(cosine, 4),
        "shared_tags": ps.shared_tags(j, chunk.tags[i]),
        "condition_states": states,
        "computed_at": utcnow(),
    }


# ---------------------------------------------------------------- one policy


def list_policy(
    database: Database,
    matcher: Matcherlike,
    policy_id: int,
    *,
    today: dt.date | None = None,
    should_stop: StopFn | None = None,
    patch: bool = True,
) -> dict[str, int]:
    """Judge one policy against every firm: write its eligible / likely list and patch each firm's stored best.

    `patch=False` writes the list only (the firms' stored matches already include the policy).

    Run when a policy is published or edited (and on demand for a staff list). A policy no longer
    open is removed from the list and from firms' stored matches. A listing run (`list_run`): stopped
    or killed, the next call resumes it; the policy is listed only once every unit is written.
    """
    if not patch:
        return list_policies(database, matcher, [policy_id], today=today, should_stop=should_stop)[policy_id]
    today = today or dt.date.today()
    with database.session() as db:
        ctx = context(db, matcher, today=today)
        policy = db.get(Policy, policy_id)
        version = policy.version if policy is not None else 0
    key = list_key(ctx, PATCH, policy=(policy_id, version))
    runs_ = _open_list_runs(database, PATCH, key, {policy_id: version}, policy_id=policy_id)
    if not runs_:
        runs_ = [_new_list_run(database, PATCH, key, {policy_id: version})]
    counts = {"eligible": 0, "likely": 0, "firms": 0}
    for run in runs_:
        done = _drive(database, ctx, run, should_stop, counts={policy_id: counts})
        if done is not None:
            return done.get(policy_id, counts)
    return counts


def list_policies(
    database: Database,
    matcher: Matcherlike,
    policy_ids: Sequence[int],
    *,
    today: dt.date | None = None,
    should_stop: StopFn | None = None,
) -> dict[int, dict[str, int]]:
    """Write the eligible / likely lists of several policies whose firms' stored matches already include them.

    The same lists as `list_policy(..., patch=False)` per policy, but each unit of firms is read once
    for all of them (after a full run every policy is listed: one read of the firms, not one per policy).

    Resumable: a listing stopped (`should_stop`, checked between units and between parts of a unit's
    rows) or killed leaves its written units checkpointed (`list_run_unit`, committed with their rows);
    the next call resumes it, skipping them. Its policies are marked not listed when it starts and
    recorded listed, with their counts, when its last unit is written. Returns the counts per policy
    (as far as this call got when stopped).
    """
    today = today or dt.date.today()
    ids = list(dict.fromkeys(int(p) for p in policy_ids))
    counts = {pid: {"eligible": 0, "likely": 0, "firms": 0} for pid in ids}
    if not ids:
        return counts
    with database.session() as db:
        ctx = context(db, matcher, today=today)
        versions = dict(db.execute(select(Policy.id, Policy.version).where(Policy.id.in_(ids))).tuples().all())
    wanted = {pid: int(versions.get(pid, 0)) for pid in ids}
    key = list_key(ctx, LIST)
    runs_ = _open_list_runs(database, LIST, key, wanted)
    covered = {pid for run in runs_ for pid in run.members}
    rest = {pid: v for pid, v in wanted.items() if pid not in covered}
    if rest:
        runs_.append(_new_list_run(database, LIST, key, rest))
    for run in runs_:
        done = _drive(database, ctx, run, should_stop, counts=counts)
        if done is None:
            break
        for pid, c in done.items():
            if pid in counts:
                counts[pid] = c
    return counts


LIST, PATCH = "list", "patch"  # kinds of listing run
KEPT_LIST_RUNS = 200  # finished listing runs kept (with their units) before the oldest are deleted


class _Stopped(Exception):
    """Raised inside a unit's write transaction when a stop is asked: the unit is rolled back, not recorded."""


@dataclass
class ListingRun:
    """A listing run being driven: its unit layout, its active policies (id → (position, version)), units done.

    `size` is the number of positions of its per-unit counts (its policies when it started)."""

    id: int
    kind: str
    first_id: int
    width: int
    units: int
    size: int
    members: dict[int, tuple[int, int]]
    done: set[int]


def list_key(ctx: pipeline.Context, kind: str, policy: tuple[int, int] | None = None) -> str:
    """Identify what a listing computes with, beyond its policies' versions: a run resumes only under the same key.

    A list row depends on its policy (at its version), the firm (its rows are rewritten when it
    changes: `rematch_firms`), the day, the weights, the embedding model and the tag weights (the
    vocabulary and the IDF over published policies). A patch also writes firms' stored matches: their
    sizes and wording, and the policy it patches.
    """
    ps, w = ctx.policies, ctx.weights
    idf = hashlib.sha256(repr(sorted(ps.idf.items())).encode()).hexdigest()[:16]
    text = f"{kind}|{ctx.today}|{w}|{ctx.model_id}|{firmtags.vocabulary_signature(ps.vocab)}|{idf}"
    if kind == PATCH:
        text += f"|{pipeline.TOP_N}|{pipeline.NEAR_N}|{ctx.wording}|{policy}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _members(db: Session, run_id: int) -> dict[int, tuple[int, int]]:
    rows = db.execute(
        select(ListRunPolicy.policy_id, ListRunPolicy.position, ListRunPolicy.policy_version).where(
            ListRunPolicy.run_id == run_id, ListRunPolicy.active.is_(True)
        )
    )
    return {int(pid): (int(pos), int(ver)) for pid, pos, ver in rows}


def _open_list_runs(
    database: Database, kind: str, key: str, wanted: dict[int, int], *, policy_id: int | None = None
) -> list[ListingRun]:
    """Return the unfinished runs of this kind to resume for `wanted` (policy → version).

    Runs computed under another key (another day, other weights …) are abandoned; a policy edited
    since its run started is dropped from it (its rows there are of an older version: its own
    listing rewrites them). Runs with none of the wanted policies are left for a later call.
    Patch runs are looked at only for `policy_id`.
    """
    out: list[ListingRun] = []
    with database.writer_session() as db:
        q = select(ListRun).where(ListRun.status == "running", ListRun.kind == kind).order_by(ListRun.id)
        if policy_id is not None:
            q = q.where(ListRun.id.in_(select(ListRunPolicy.run_id).where(ListRunPolicy.policy_id == policy_id)))
        claimed: set[int] = set()
        for run in db.scalars(q).all():
            if run.key != key:
                run.status, run.updated_at = "abandoned", utcnow()
                continue
            members = _members(db, run.id)
            current = dict(
                db.execute(
                    select(Policy.id, Policy.version)
                    .join(ListRunPolicy, ListRunPolicy.policy_id == Policy.id)
                    .where(ListRunPolicy.run_id == run.id, ListRunPolicy.active.is_(True))
                )
                .tuples()
                .all()
            )
            stale = [
                pid
                for pid, (_, ver) in members.items()
                if current.get(pid) != ver or pid in claimed or (pid in wanted and wanted[pid] != ver)
            ]
            for start in range(0, len(stale), 900):
                db.execute(
                    update(ListRunPolicy)
                    .where(ListRunPolicy.run_id == run.id, ListRunPolicy.policy_id.in_(stale[start : start + 900]))
                    .values(active=False)
                )
            for pid in stale:
                members.pop(pid)
            if not members:
                run.status, run.updated_at = "abandoned", utcnow()
                continue
            claimed |= set(members)
            if not any(pid in wanted for pid in members):
                continue
            done = set(db.scalars(select(ListRunUnit.unit_no).where(ListRunUnit.run_id == run.id)))
            out.append(ListingRun(run.id, kind, run.first_id, run.width, run.units, run.policies, members, done))
    return out


def _new_list_run(database: Database, kind: str, key: str, wanted: dict[int, int]) -> ListingRun:
    """Start a listing run of these policies (policy → version) over every firm; they are no longer listed."""
    with database.writer_session() as db:
        return _start_list_run(db, kind, key, wanted)


def _start_list_run(db: Session, kind: str, key: str, wanted: dict[int, int]) -> ListingRun:
    """`_new_list_run` in the caller's transaction."""
    lo, hi, count = db.execute(select(func.min(Enterprise.id), func.max(Enterprise.id), func.count())).one()
    lo, hi = lo or 1, hi or 0
    units = max(0, math.ceil((hi - lo + 1) / LIST_BATCH)) if count else 0
    run = ListRun(
        kind=kind,
        key=key,
        first_id=lo,
        width=LIST_BATCH,
        units=units,
        units_done=0,
        policies=len(wanted),
        status="running",
    )
    db.add(run)
    db.flush()
    # Finished and abandoned runs are history (their units' counts are summed): the latest are kept.
    db.execute(delete(ListRun).where(ListRun.status != "running", ListRun.id <= run.id - KEPT_LIST_RUNS))
    members = {pid: (k, ver) for k, (pid, ver) in enumerate(wanted.items())}
    if members:
        db.execute(
            insert(ListRunPolicy),
            [
                {"run_id": run.id, "policy_id": pid, "position": k, "policy_version": ver, "active": True}
                for pid, (k, ver) in members.items()
            ],
        )
    _unlist(db, list(members))
    return ListingRun(run.id, kind, lo, LIST_BATCH, units, len(wanted), members, set())


def _unlist(db: Session, policy_ids: Sequence[int]) -> None:
    """Mark these policies' lists as not listed (900 ids a statement: SQLite's bound-parameter limit)."""
    for start in range(0, len(policy_ids), 900):
        db.execute(
            update(PolicyMatchState)
            .where(PolicyMatchState.policy_id.in_(policy_ids[start : start + 900]))
            .values(listed=False)
        )


def _drive(
    database: Database,
    ctx: pipeline.Context,
    run: ListingRun,
    should_stop: StopFn | None,
    *,
    counts: dict[int, dict[str, int]],
) -> dict[int, dict[str, int]] | None:
    """Write the units of a run not written yet, then record its policies listed; return their counts,
    or None when stopped (or the run was abandoned meanwhile). `counts` gathers what this call wrote."""
    for k in range(run.units):
        if k in run.done:
            continue
        if _stop(should_stop):
            return None
        try:
            unit = _list_unit(database, ctx, run, k, should_stop)
        except _Stopped:
            return None
        if unit is None:
            return None
        firms, eligible, likely = unit
        for pid, (pos, _) in run.members.items():
            if pid in counts:
                counts[pid]["firms"] += firms
                counts[pid]["eligible"] += int(eligible[pos])
                counts[pid]["likely"] += int(likely[pos])
    if _stop(should_stop):
        return None
    return _finish_list_run(database, run)


def _list_unit(
    database: Database, ctx: pipeline.Context, run: ListingRun, k: int, should_stop: StopFn | None
) -> tuple[int, np.ndarray, np.ndarray] | None:
    """Judge the run's policies over unit k's firms and write its rows with its checkpoint, in one transaction.

    Returns (firms, eligible and likely per position), or None when the run is no longer running.
    Rows of the run's policies for the unit's firms are replaced (not only added): what `rematch_firms`
    wrote for a changed firm meanwhile is written again the same, and nothing is left twice.
    """
    lo = run.first_id + k * run.width
    hi = lo + run.width - 1
    ps = ctx.policies
    eligible = np.zeros(run.size, dtype=np.int64)
    likely = np.zeros(run.size, dtype=np.int64)
    patched: list[store.Row] = []
    rows: list[dict[str, Any]] = []
    pairs: pipeline.Listed | None = None
    with database.session() as db:
        chunk = pipeline.load_chunk(db, ctx, id_range=(lo, hi))
        stored = store.read_many(db, [int(e) for e in chunk.ids]) if run.kind == PATCH and len(chunk) else {}
    if len(chunk) and run.kind == PATCH:
        ((pid, (pos, _)),) = run.members.items()
        with scoring_threads():
            patched, rows = _patch_chunk(ctx, chunk, ps.position.get(pid), pid, stored, patch=True)
        eligible[pos] = sum(1 for r in rows if r["status"] == ELIGIBLE)
        likely[pos] = sum(1 for r in rows if r["status"] == LIKELY)
    elif len(chunk):
        to_run = np.full(len(ps), -1, dtype=np.int64)  # position in the policy set → in the run
        for pid, (pos, _) in run.members.items():
            j = ps.position.get(pid)
            if j is not None:
                to_run[j] = pos
        open_positions = np.flatnonzero(to_run >= 0).tolist()
        if open_positions:
            # Every open policy of the run judged in one kernel pass (rule trees over the runs of firms
            # their regions admit); a policy no longer open lists nobody.
            with scoring_threads():
                pairs = pipeline.list_chunk(chunk, ctx, open_positions)
            at = to_run[pairs.policy]
            eligible += np.bincount(at[pairs.status == 2], minlength=run.size)
            likely += np.bincount(at[pairs.status == 1], minlength=run.size)
    blob = zlib.compress(np.vstack([eligible, likely]).astype(np.int32).tobytes(), 1)
    with database.writer_session() as db:
        state = db.scalar(select(ListRun.status).where(ListRun.id == run.id).with_for_update())
        if state != "running":
            return None
        if db.get(ListRunUnit, (run.id, k)) is not None:
            return len(chunk), eligible, likely  # written meanwhile by another process (same rows)
        store.write(db, patched)
        db.execute(
            delete(MatchResult).where(
                MatchResult.enterprise_id.between(lo, hi),
                MatchResult.policy_id.in_(
                    select(ListRunPolicy.policy_id).where(
                        ListRunPolicy.run_id == run.id, ListRunPolicy.active.is_(True)
                    )
                ),
            )
        )
        if pairs is not None:
            _write_listed(db, ctx, chunk, pairs, should_stop)
        _insert_list_rows(db, rows)
        db.add(ListRunUnit(run_id=run.id, unit_no=k, firms=len(chunk), counts=blob))
        db.execute(
            update(ListRun).where(ListRun.id == run.id).values(units_done=ListRun.units_done + 1, updated_at=utcnow())
        )
    return len(chunk), eligible, likely


def _finish_list_run(database: Database, run: ListingRun) -> dict[int, dict[str, int]] | None:
    """Sum the units' counts and record the run's policies listed, in one transaction; return their counts."""
    with database.writer_session() as db:
        state = db.scalar(select(ListRun.status).where(ListRun.id == run.id).with_for_update())
        if state != "running":
            return None
        members = _members(db, run.id)
        totals = np.zeros((2, run.size), dtype=np.int64)
        firms = 0
        for n, blob in db.execute(select(ListRunUnit.firms, ListRunUnit.counts).where(ListRunUnit.run_id == run.id)):
            totals += np.frombuffer(zlib.decompress(blob), dtype=np.int32).reshape(2, run.size)
            firms += n
        out = {
            pid: {"eligible": int(totals[0, pos]), "likely": int(totals[1, pos]), "firms": firms}
            for pid, (pos, _) in members.items()
        }
        _record_listed(db, {pid: (ver, out[pid]) for pid, (_, ver) in members.items()})
        db.execute(
            update(ListRun).where(ListRun.id == run.id).values(status="done", finished_at=utcnow(), updated_at=utcnow())
        )
    return out


def _record_listed(db: Session, counts: dict[int, tuple[int, dict[str, int]]]) -> None:
    """Record policies listed: per policy id, the version listed and its counts (a policy no longer open has
    an empty list: no firm can use it now)."""
    now = utcnow()
    rows = [
        {
            "policy_id": pid,
            "policy_version": version,
            "matched_at": now,
            "eligible": c["eligible"],
            "likely": c["likely"],
            "listed": True,
        }
        for pid, (version, c) in counts.items()
    ]
    _upsert_policy_states(db, rows, new={})


def _patch_chunk(
    ctx: pipeline.Context,
    chunk: pipeline.Chunk,
    j: int | None,
    policy_id: int,
    stored: dict[int, store.Stored],
    *,
    patch: bool = True,
) -> tuple[list[store.Row], list[dict[str, Any]]]:
    """Return the chunk's firms' stored matches with this policy re-scored, and the policy's list rows."""
    ps = ctx.policies
    n = len(chunk)
    status = np.zeros(n, dtype=np.int8)
    rules = np.zeros(n)
    near = np.zeros(n, dtype=bool)
    states = np.zeros((0, n), dtype=np.int8)
    if j is not None:
        allowed = np.asarray([ps.applicable(r)[j] for r in chunk.regions], dtype=bool)
        st, states = eligibility.evaluate_with_states(ps.policies[j].rules, chunk.frame, today=ctx.today)
        status = np.where(allowed, st, 0).astype(np.int8)
        if len(states):
            share = (states == 2).mean(axis=0)
            rules = np.where(st == 2, 1.0, np.where(st == 1, np.round(0.5 + 0.3 * share, 4), np.round(0.2 * share, 4)))
            near = allowed & (st == 0) & ((states == 0).sum(axis=0) == 1) & ((states == 1).sum(axis=0) == 0)
        else:
            rules = np.full(n, pipeline.NO_CONDITIONS_SCORE)
        firm_tags = ps.firm_tag_matrix(chunk.tags)
        # Scored pair by pair, as the kernel scores the kept lists: the same rows as `list_policies`.
        tag_scores, semantic_scores, cosines = pipeline.pair_scores(
            ctx, chunk.vectors, chunk.has_vector, firm_tags, np.full(n, j, dtype=np.int64)
        )
        w = ctx.weights
        bases = w.rules * rules + w.tags * tag_scores + w.semantic * semantic_scores
        tags, semantic, cosine, base = (v[:, None] for v in (tag_scores, semantic_scores, cosines, bases))
    rows: list[store.Row] = []
    list_rows: list[dict[str, Any]] = []
    for i in range(n):
        eid = int(chunk.ids[i])
        old = stored.get(eid)
        if j is not None and status[i] >= 1 and (old is None or not patch):
            list_rows.append(
                _list_entry(
                    ctx,
                    chunk,
                    j,
                    i,
                    int(status[i]),
                    float(rules[i]),
                    float(tags[i, 0]),
                    float(semantic[i, 0]),
                    float(cosine[i, 0]),
                    states[:, i].tolist() if len(states) else [],
                )
            )
        if old is None or not patch:
            continue  # never scored: the firm's own re-match will include the policy
        items = old.items[old.items["policy"] != policy_id]
        near_items = old.near[old.near["policy"] != policy_id]
        eligible, likely = old.eligible, old.likely
        previous = old.items[old.items["policy"] == policy_id]
        if len(previous):
            if previous["status"][0] == 2:
                eligible -= 1
            else:
                likely -= 1
        if j is not None and status[i] >= 1:
            item = np.zeros(1, dtype=store.ITEM)
            item["policy"], item["status"] = policy_id, status[i]
            item["rules"] = round(rules[i] * store.SCALE)
            item["tags"] = round(tags[i, 0] * store.SCALE)
            item["semantic"] = round(semantic[i, 0] * store.SCALE)
            item["cosine"] = store.NO_COSINE if np.isnan(cosine[i, 0]) else round(cosine[i, 0] * store.SCALE)
            item["base"] = base[i, 0]
            items = _insert_sorted(items, item, pipeline.TOP_N)
            eligible += int(status[i] == 2)
            likely += int(status[i] == 1)
            list_rows.append(
                _list_entry(
                    ctx,
                    chunk,
                    j,
                    i,
                    int(status[i]),
                    float(rules[i]),
                    float(tags[i, 0]),
                    float(semantic[i, 0]),
                    float(cosine[i, 0]),
                    states[:, i].tolist() if len(states) else [],
                )
            )
        elif j is not None and near[i]:
            entry = np.zeros(1, dtype=store.NEAR)
            entry["policy"], entry["base"] = policy_id, base[i, 0]
            near_items = _insert_sorted(near_items, entry, pipeline.NEAR_N)
        rows.append(
            store.Row(
                enterprise_id=eid,
                revision=old.revision,
                profile_at=old.profile_at,
                eligible=max(eligible, 0),
                likely=max(likely, 0),
                payload=store.encode(
                    items, near_items, _patch_words(ctx, chunk, i, j, policy_id, old, items, near_items)
                ),
            )
        )
    return rows, list_rows


def _patch_words(
    ctx: pipeline.Context,
    chunk: pipeline.Chunk,
    i: int,
    j: int | None,
    policy_id: int,
    old: store.Stored,
    items: np.ndarray,
    near_items: np.ndarray,
) -> bytes:
    """Return a patched firm's stored wording with this policy's verdict judged again (or dropped).

    Wording that does not hold today (`Words.usable_on`), or of a firm whose profile has changed
    since, is dropped: pages word those reasons when read until the firm's re-match rewrites them.
    """
    raw = store.words_of(old.words)
    words = wording.unpack(raw)
    if words is None or not words.usable_on(ctx.today) or old.profile_at != chunk.profile_at[i]:
        return b""
    if words.tags != wording.tag_digest(chunk.tags[i]):
        return b""
    kept = j is not None and (
        policy_id in set(items["policy"].tolist()) or policy_id in set(near_items["policy"].tolist())
    )
    if not kept:
        return wording.patch(raw, policy_id=policy_id, version=0, verdict=None)
    assert j is not None
    policy = ctx.policies.policies[j]
    verdict = eligibility.evaluate(policy.rules, chunk.facts_of(i, ctx.today), today=ctx.today)
    return wording.patch(raw, policy_id=policy_id, version=policy.version, verdict=verdict)


def _insert_sorted(records: np.ndarray, new: np.ndarray, keep: int) -> np.ndarray:
    """Merge one record into records ordered by base descending, then policy ascending; keep the best."""
    merged = np.concatenate([records, new])
    order = np.lexsort((merged["policy"], -merged["base"].astype(np.float64)))
    return merged[order][:keep]


# ---------------------------------------------------------------- what is due


def changed_policy_ids(db: Session) -> list[int]:
    """Published policies edited since they were last judged against every firm, or never judged."""
    return list(
        db.scalars(
            select(Policy.id)
            .outerjoin(PolicyMatchState, PolicyMatchState.policy_id == Policy.id)
            .where(
                Policy.status == PolicyStatus.published,
                (PolicyMatchState.policy_id.is_(None)) | (PolicyMatchState.policy_version != Policy.version),
            )
            .order_by(Policy.id)
        )
    )


def unlisted_policy_ids(db: Session) -> list[int]:
    """Published policies whose full eligible list is not kept."""
    return list(
        db.scalars(
            select(Policy.id)
            .outerjoin(PolicyMatchState, PolicyMatchState.policy_id == Policy.id)
            .where(
                Policy.status == PolicyStatus.published,
                (PolicyMatchState.policy_id.is_(None)) | (PolicyMatchState.listed.is_(False)),
            )
            .order_by(Policy.id)
        )
    )


def _waiting_list_policies(db: Session) -> list[int]:
    """The policies of unfinished listings of lists only (`LIST`), at the version they are listed at."""
    return list(
        db.scalars(
            select(ListRunPolicy.policy_id)
            .join(ListRun, ListRun.id == ListRunPolicy.run_id)
            .join(Policy, Policy.id == ListRunPolicy.policy_id)
            .where(
                ListRun.status == "running",
                ListRun.kind == LIST,
                ListRunPolicy.active.is_(True),
                ListRunPolicy.policy_version == Policy.version,
            )
            .order_by(ListRunPolicy.policy_id)
            .distinct()
        )
    )


def firms_with_accounts(database: Database, limit: int) -> list[int]:
    """Firms with an active firm user, the latest sign-in first (never signed in last), at most `limit`."""
    last = func.max(User.last_login_at)
    with database.session() as db:
        return list(
            db.scalars(
                select(User.enterprise_id)
                .where(User.role == Role.enterprise, User.is_active.is_(True), User.enterprise_id.is_not(None))
                .group_by(User.enterprise_id)
                .order_by(last.desc().nulls_last(), User.enterprise_id)
                .limit(limit)
            )
        )


def rematch_changed(
    database: Database,
    matcher: Matcherlike,
    *,
    today: dt.date | None = None,
    progress: Progress | None = None,
    should_stop: StopFn | None = None,
    full_run_share: float = 0.3,
) -> Report:
    """Catch up: a full run when there are no stored matches yet (or most firms changed, or the day or
    vocabulary moved everything); otherwise the changed firms; then every policy edited since it was judged."""
    started = time.perf_counter()
    today = today or dt.date.today()
    with database.session() as db:
        firms = db.scalar(select(func.count()).select_from(Enterprise)) or 0
        changed = _changed_firms(db)
        signature = firmtags.vocabulary_signature(tags_mod.Vocabulary.from_db(db))
        retag = len(firmtags.stale_ids(db, signature=signature))
    # A new vocabulary changes many firms' tags (and so their matches): re-score everyone then.
    if firms and (len(changed) > full_run_share * firms or retag > full_run_share * firms):
        # The full run embeds and scores every firm before any is stored (a first start: every firm's page
        # is empty meanwhile). Firms with an account go first, by themselves; the run scores them again
        # and writes the same rows.
        first = firms_with_accounts(database, ACCOUNT_FIRST_MAX)
        first = first if len(first) < firms else []
        embedded = 0
        if first:
            # One batch for the API's warm-up to wait on (`EmbeddingCache.batch_running`), from these firms
            # through every other firm's embedding (done here, not by the run): it would otherwise start in
            # between and share the cores with it.
            with matcher.cache.batch_running():
                early = rematch_firms(database, matcher, first, today=today, should_stop=should_stop)
                if early.stopped:
                    early.kind = "all"
                    return early
                embedded = early.embedded + embed_firms(
                    database, matcher, None, today, should_stop=should_stop, progress=_phase(progress, "embed")
                )
        report = rematch_all(
            database, matcher, today=today, progress=progress, should_stop=should_stop, embed=not first
        )
        report.embedded += embedded
        report.details["accounts_first"] = len(first)
    else:
        report = rematch_firms(database, matcher, changed, today=today, progress=progress, should_stop=should_stop)
        report.kind = "changed"
    if report.stopped:
        return report
    with database.session() as db:
        policies = changed_policy_ids(db)
        # At a city's scale every published policy keeps its full eligible list (staff lists, 免申即享);
        # above it, lists are made when a policy is published or edited, or when staff ask for one.
        unlisted = unlisted_policy_ids(db) if firms <= matcher.settings.policy_lists_max_firms else []
        # A listing stopped or killed (a full run's relisting of the kept lists above all) is resumed at any scale.
        unlisted = list(dict.fromkeys([*unlisted, *_waiting_list_policies(db)]))
        closed: list[int] = []
        if report.kind == "all" and policies:
            # Never judged even by the full run just finished (it records every policy it scored), and
            # not open now: no firm's stored matches hold it, so there is nothing to patch, only an
            # (empty) list to record.
            judged = set(db.scalars(select(PolicyMatchState.policy_id).where(PolicyMatchState.policy_id.in_(policies))))
            open_now = context(db, matcher, today=today).policies.position
            closed = [pid for pid in policies if pid not in judged and pid not in open_now]
            policies = [pid for pid in policies if pid not in set(closed)]
            report.policies += len(closed)
            unlisted = list(dict.fromkeys([*closed, *unlisted]))
    for k, pid in enumerate(policies):
        if _stop(should_stop):
            report.stopped = True
            break
        list_policy(database, matcher, pid, today=today, should_stop=should_stop)
        report.policies += 1
        if progress:
            progress("policies", k + 1, len(policies))
    if not report.stopped:
        # Their firms' stored matches include them already: lists only, every policy in one pass.
        list_policies(
            database, matcher, [p for p in unlisted if p not in policies], today=today, should_stop=should_stop
        )
        report.stopped = _stop(should_stop)
    if not report.stopped:
        with database.session() as db:
            ctx_revision = matcher.policy_sets.get(db, today=today).revision
        with database.writer_session() as db:
            db.execute(
                update(MatcherState)
                .where(MatcherState.id == 1, MatcherState.matched_revision < ctx_revision)
                .values(matched_revision=ctx_revision, updated_at=utcnow())
            )
    report.seconds = round(time.perf_counter() - started, 2)
    return report


LISTING_IDLE = dt.timedelta(minutes=5)  # a listing with no unit written for longer is waiting to resume


def _age(at: dt.datetime) -> dt.timedelta:
    return utcnow() - (at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC))


def status(db: Session) -> dict[str, Any]:
    """Return the catch-up state staff see: firms with current matches, the latest run, what is pending."""
    from catalog import service as catalog_service

    firms = db.scalar(select(func.count()).select_from(Enterprise)) or 0
    current = (
        db.scalar(
            select(func.count())
            .select_from(FirmMatch)
            .join(Enterprise, Enterprise.id == FirmMatch.enterprise_id)
            .where(FirmMatch.profile_at == Enterprise.profile_updated_at)
        )
        or 0
    )
    run = db.scalar(select(MatchRun).order_by(MatchRun.id.desc()).limit(1))
    listing = db.scalar(select(ListRun).where(ListRun.status == "running").order_by(ListRun.id).limit(1))
    listings = db.scalar(select(func.count()).select_from(ListRun).where(ListRun.status == "running")) or 0
    revision = catalog_service.current_revision(db=db)
    matched = db.scalar(select(MatcherState.matched_revision).where(MatcherState.id == 1)) or 0
    return {
        "firms": firms,
        "firms_current": current,
        "policies_pending": len(changed_policy_ids(db)),
        "catalog_revision": revision,
        "matched_revision": matched,
        # A list being written (or waiting to resume) is not current: staff see it pending.
        "up_to_date": current == firms and matched >= revision and not changed_policy_ids(db) and listing is None,
        "run": None
        if run is None
        else {
            "kind": run.kind,
            "status": run.status,
            "chunks": run.chunks,
            "chunks_done": run.chunks_done,
            "firms": run.firms,
            "firms_done": run.firms_done,
            "started_at": run.started_at,
            "updated_at": run.updated_at,
            "finished_at": run.finished_at,
        },
        "listing": None
        if listing is None
        else {
            "kind": listing.kind,
            "runs": listings,
            "policies": listing.policies,
            "units": listing.units,
            "units_done": listing.units_done,
            # No unit written for a while: stopped or killed, it waits for the catch-up to resume it.
            "waiting": _age(listing.updated_at) > LISTING_IDLE,
            "started_at": listing.started_at,
            "updated_at": listing.updated_at,
        },
    }
