"""The batch kernel: cutting the held candidates early changes no stored byte (PostgreSQL, demo data)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from matcher import pipeline, runs, store
from tests.support.pg_schema import demo_schema


@pytest.fixture(scope="module")
def chunk_and_context(matcher) -> Iterator[tuple[pipeline.Chunk, pipeline.Context]]:  # type: ignore[no-untyped-def]
    """The demo catalog and 200 firms (vectors embedded), read as one chunk."""
    with demo_schema("hq_pipe", firms=200, needs="the batch kernel's tests") as (database, _url):
        runs.embed_firms(database, matcher)
        today = dt.date(2026, 12, 7)
        with database.session() as db:
            ctx = runs.context(db, matcher, today=today)
            ctx.wording = "off"
            chunk = pipeline.load_chunk(db, ctx, id_range=(0, 10**9))
        yield chunk, ctx


def _payloads(rows: list[store.Row], eligible: np.ndarray, likely: np.ndarray) -> list[tuple[Any, ...]]:
    """Every row's stored fields and the per-policy counts, to compare byte for byte."""
    return [(r.enterprise_id, r.eligible, r.likely, r.payload) for r in rows] + [(eligible.tolist(), likely.tolist())]


@pytest.mark.parametrize(("top", "near"), [(3, 2), (8, 4)])
def test_early_cuts_keep_exactly_what_one_final_ranking_keeps(
    chunk_and_context: tuple[pipeline.Chunk, pipeline.Context],
    monkeypatch: pytest.MonkeyPatch,
    top: int,
    near: int,
) -> None:
    chunk, ctx = chunk_and_context
    assert len(chunk) == 200 and len(ctx.policies) > 50
    monkeypatch.setattr(pipeline, "TOP_N", top)
    monkeypatch.setattr(pipeline, "NEAR_N", near)
    monkeypatch.setattr(pipeline, "POLICY_BLOCK", 5)  # many blocks: many cuts, floors raised often
    uncut = _payloads(*pipeline.score_chunk(chunk, ctx))
    monkeypatch.setattr(pipeline, "PRUNE_AT", 1)  # cut after every block
    cuts = []
    real_cut = pipeline._Candidates._cut

    def counted(parts, keep, floor):  # type: ignore[no-untyped-def]
        out = real_cut(parts, keep, floor)
        cuts.append(len(out[0]) < sum(len(p[0]) for p in parts))  # did this cut drop anything?
        return out

    monkeypatch.setattr(pipeline._Candidates, "_cut", staticmethod(counted))
    cut = _payloads(*pipeline.score_chunk(chunk, ctx))
    assert sum(cuts) > 0  # the cuts dropped pairs (and floors then dropped arrivals)
    assert cut == uncut  # byte for byte


def test_a_cut_never_drops_a_pair_of_the_exact_top() -> None:
    rng = np.random.default_rng(7)
    n, pairs, keep = 40, 5_000, 6
    row = rng.integers(0, n, pairs)
    policy = rng.permutation(pairs)
    base = np.round(rng.random(pairs), 2)  # many ties: the lower policy index wins them
    base[:50] = 0.0
    base[50:60] = -0.0
    columns = (row, policy, base)
    best, _ = pipeline._Candidates._best([columns], keep)
    floor = np.full(n, -np.inf)
    kept = pipeline._Candidates._cut([columns], keep, floor)
    assert len(kept[0]) < pairs
    # Every exact best pair survives; the floor never exceeds a firm's keep-th base.
    survivors = set(zip(kept[0].tolist(), kept[1].tolist(), strict=True))
    assert set(zip(best[0].tolist(), best[1].tolist(), strict=True)) <= survivors
    assert (base >= floor[row]).sum() == len(kept[0])
    again, _ = pipeline._Candidates._best([kept], keep)
    assert all(np.array_equal(a, b) for a, b in zip(again, best, strict=True))


def test_cut_falls_back_to_exact_ranking_for_negative_bases() -> None:
    row = np.array([0, 0, 0, 1], dtype=np.int64)
    policy = np.array([3, 1, 2, 0], dtype=np.int64)
    base = np.array([-0.5, 0.25, 0.25, -1.0])
    floor = np.full(2, -np.inf)
    kept = pipeline._Candidates._cut([(row, policy, base)], 2, floor)
    assert kept[1].tolist() == [1, 2, 0] and floor.tolist() == [0.25, -np.inf]
