"""Full re-match: every synthetic firm against every synthetic policy, with precomputed vectors.

One process per size, so each size's peak memory is its own; three measurements in that process:

(a) the vectorised verdict pass — `eligibility.evaluate_many` for every policy over the firms it
    can apply to, the rule score of eligible/likely pairs (likely: 0.5 + 0.3 × share of conditions
    met, from `condition_states_many`, as `service.match_policy` stores it), the IDF-weighted tag
    score and the semantic score (dot products of firm and policy vectors), keeping a running
    per-firm top-50 (argpartition per block);
(b) the FAISS floor — `IndexFlatIP` over the policy vectors, every firm vector searched k=50 in
    batches on 2 threads: the cost of the dot products and the top-k alone;
(c) the naive baseline — `eligibility.evaluate` + `ranking` per (firm, policy) pair in Python for
    a few random firms against every policy, extrapolated to N × P.

Firms come from `profiles.generate.generate_enterprises` (a pool of at most 100k, resampled with
replacement above that), tagged with `matcher.tags.enterprise_tags` as `sync_enterprise_tags` does,
and are held in one `FactsFrame` sorted by region. Policies are the demo catalog's rule trees
perturbed as `catalog.synth` does (thresholds ±30 %, one of its regions).

Region partitioning (strategy "region"): every synthetic rule tree with a region carries it as a
`within_region` condition directly under its top-level ``all``, so a firm outside that region is
ineligible whatever else holds. With firms sorted by region code, the firms a policy can apply to
(its regions' codes, as `within_any_region` itself judges each distinct code, plus firms whose
region is unknown) are a few contiguous row ranges: the pass evaluates only those, and checks on a
sample of policies that the statuses equal `evaluate_many` over all firms. Strategy "dense"
evaluates every policy over every firm.

Run: ``python -m bench.rematch [--full]`` (sizes in subprocesses, 15 min each) or
``python -m bench.rematch --firms 100000 --policies 1000`` (one size, in process).
"""

from __future__ import annotations

import argparse
import datetime as dt
import heapq
import json
import math
import os
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from bench.common import ROOT, peak_rss_mb, phase, ratio, rss_mb, write_result
from catalog.demo import demo_policies
from catalog.fields import FIELDS
from catalog.synth import _perturb  # the same perturbation synth_policies applies to the templates
from matcher import eligibility
from matcher import tags as tags_mod
from matcher.eligibility import FactsFrame
from matcher.ranking import KIND_WEIGHTS, Weights, rule_score, semantic_score, tag_score
from profiles.generate import generate_enterprises

DIM = 384
TOP_K = 50
POOL_MAX = 100_000  # distinct generated firms; larger sizes resample this pool
CHUNK_ROWS = 65_536  # firms per block of the verdict pass: bounds the (policies × firms) temporaries
POLICY_BLOCK = 256  # policies per block of the verdict pass
FAISS_BATCH = 65_536
FAISS_THREADS = 2
NAIVE_PAIRS = 20_000
SIZE_TIMEOUT_S = 15 * 60

QUICK_SIZES = ((100_000, 1_000),)
FULL_SIZES = ((100_000, 10_000), (1_000_000, 10_000))


# ---------------------------------------------------------------- workload


@dataclass
class SynthPolicy:
    rules: dict[str, Any]
    curated: set[str]  # the template's curated tags (what policy_tag holds)
    tags: set[str]  # curated plus rule-implied tags, as service._policy_tags returns


@dataclass
class Workload:
    today: dt.date
    frame: FactsFrame  # firms sorted by region code, unknown regions last
    facts: list[dict[str, Any]]  # the generated pool's facts (profile_facts shape)
    source: np.ndarray  # row → index into facts
    firm_vectors: np.ndarray  # (N, DIM) float32 unit rows
    firm_tags: np.ndarray  # (N, T) float32 0/1 for the tags any policy carries
    policies: list[SynthPolicy]
    policy_vectors: np.ndarray  # (P, DIM) float32 unit rows
    tag_weights: np.ndarray  # (T, P) float32: IDF × kind weight / the policy's total, 0 where absent
    tag_names: list[str]
    idf: dict[str, float]
    kinds: dict[str, str]
    weights: Weights
    timings: dict[str, float]


def vocabulary() -> tags_mod.Vocabulary:
    """Build the tag vocabulary of the demo taxonomy without a database."""
    raw = json.loads(resources.files("catalog").joinpath("demo_data", "taxonomy.json").read_text(encoding="utf-8"))
    return tags_mod.Vocabulary.from_tags(
        SimpleNamespace(id=i, name=t["name"], kind=t["kind"], synonyms=t.get("synonyms", []))
        for i, t in enumerate(raw["tags"], start=1)
    )


def firm_pool(count: int, *, seed: int, today: dt.date, vocab: tags_mod.Vocabulary) -> list[dict[str, Any]]:
    """Generate firms and return their facts as `profile_facts` would, tags derived from profile and texts."""
    quals = [name for name, info in vocab.tags.items() if info.kind == "qualification"]
    pool = []
    for row in generate_enterprises(seed=seed, count=count, qualification_names=quals, today=today):
        facts: dict[str, Any] = {name: row.get(name) for name, f in FIELDS.items() if f.type != "set"}
        if facts["established_on"] is not None:
            facts["years_established"] = eligibility.whole_years(facts["established_on"], today)
        facts["qualifications"] = frozenset(n for n, until in row["qualifications"] if until is None or until >= today)
        facts["tags"] = frozenset()
        derived = tags_mod.enterprise_tags(facts, (row["business_scope"], row["products"], row["needs"]), vocab)
        facts["tags"] = frozenset(derived)
        pool.append(facts)
    return pool


def pool_dataframe(pool: list[dict[str, Any]]) -> pd.DataFrame:
    """Lay the pool out as `FactsFrame.from_dataframe` reads it: one column per field, sets wide."""
    columns: dict[str, Any] = {name: [f[name] for f in pool] for name, spec in FIELDS.items() if spec.type != "set"}
    for field in ("qualifications", "tags"):
        names = sorted(set().union(*(f[field] for f in pool)))
        for name in names:
            columns[f"{field}:{name}"] = np.fromiter((name in f[field] for f in pool), dtype=bool, count=len(pool))
    return pd.DataFrame(columns)


def synth_policies(count: int, *, seed: int, today: dt.date, vocab: tags_mod.Vocabulary) -> list[SynthPolicy]:
    """Return rule trees and tags of synthetic policies modelled on the demo catalog."""
    rng = random.Random(seed)
    templates = [p for p in demo_policies(today) if p.get("rules")]
    out = []
    for _ in range(count):
        t = rng.choice(templates)
        rules = _perturb(t["rules"], rng)
        curated = {n for n in t.get("tags", []) if n in vocab.tags}
        out.append(SynthPolicy(rules, curated, curated | tags_mod.policy_rule_tags(rules, vocab)))
    return out


def e5_like_vectors(n: int, rng: np.random.Generator, *, shared: np.ndarray, topics: np.ndarray) -> np.ndarray:
    """Return n unit vectors whose cosines look like e5's (≈0.78 apart, ≈0.93 within a topic), not ≈0.

    Random unit vectors in 384 dimensions are nearly orthogonal, which would put every semantic
    score at the floor; a shared direction plus a topic centre gives scores across their range.
    """
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(start + 100_000, n)
        block = rng.standard_normal((stop - start, DIM), dtype=np.float32)
        block *= np.float32(0.0153)
        block += shared
        block += np.float32(0.44) * topics[rng.integers(0, len(topics), stop - start)]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:stop] = block
    return out


def build_workload(firms: int, policies: int, *, seed: int) -> Workload:
    """Generate firms, policies and vectors for one size; time each step."""
    today = dt.date.today()
    timings: dict[str, float] = {}
    vocab = vocabulary()
    started = time.perf_counter()
    pool = firm_pool(min(firms, POOL_MAX), seed=seed, today=today, vocab=vocab)
    timings["generate_pool_s"] = round(time.perf_counter() - started, 2)

    started = time.perf_counter()
    df = pool_dataframe(pool)
    rng = np.random.default_rng(seed)
    source = np.arange(len(pool)) if firms <= len(pool) else rng.integers(0, len(pool), firms)
    region_key = df["region_code"].fillna("\uffff").to_numpy(dtype=str)  # unknown regions sort last
    source = source[np.argsort(region_key[source], kind="stable")]
    df = df.take(source).reset_index(drop=True)
    timings["layout_s"] = round(time.perf_counter() - started, 2)

    started = time.perf_counter()
    frame = FactsFrame.from_dataframe(df, today=today)
    timings["facts_frame_s"] = round(time.perf_counter() - started, 2)
    del df

    started = time.perf_counter()
    synth = synth_policies(policies, seed=seed, today=today, vocab=vocab)
    # service._tag_idf: IDF over published policies' curated tags (policies without tags are not documents).
    idf = vocab.idf([p.curated for p in synth if p.curated])
    kinds = {name: info.kind for name, info in vocab.tags.items()}
    tag_names = sorted(set().union(*(p.tags for p in synth)))
    position = {name: i for i, name in enumerate(tag_names)}
    tag_weights = np.zeros((len(tag_names), len(synth)), dtype=np.float32)
    for j, p in enumerate(synth):
        w = {t: idf.get(t, 1.0) * KIND_WEIGHTS.get(kinds.get(t, ""), 1.0) for t in p.tags}
        total = sum(w.values())
        for t, wt in w.items():
            tag_weights[position[t], j] = wt / total
    firm_tags = np.zeros((frame.size, len(tag_names)), dtype=np.float32)
    held = frame.sets.get("tags", {})
    for name, i in position.items():
        if name in held:
            firm_tags[:, i] = held[name]
    timings["policies_and_tags_s"] = round(time.perf_counter() - started, 2)

    started = time.perf_counter()
    vrng = np.random.default_rng(seed + 1)
    shared = vrng.standard_normal(DIM).astype(np.float32)
    shared /= np.linalg.norm(shared)
    topics = vrng.standard_normal((24, DIM)).astype(np.float32)
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    firm_vectors = e5_like_vectors(frame.size, vrng, shared=shared, topics=topics)
    policy_vectors = e5_like_vectors(len(synth), vrng, shared=shared, topics=topics)
    timings["vectors_s"] = round(time.perf_counter() - started, 2)
    return Workload(
        today=today,
        frame=frame,
        facts=pool,
        source=source,
        firm_vectors=firm_vectors,
        firm_tags=firm_tags,
        policies=synth,
        policy_vectors=policy_vectors,
        tag_weights=tag_weights,
        tag_names=tag_names,
        idf=idf,
        kinds=kinds,
        weights=Weights(),
        timings=timings,
    )


# ---------------------------------------------------------------- frames and scopes


def slice_frame(frame: FactsFrame, start: int, stop: int) -> FactsFrame:
    """Return rows start:stop of a frame as views (no copy)."""
    return FactsFrame(
        stop - start,
        numbers={k: v[start:stop] for k, v in frame.numbers.items()},
        dates={k: v[start:stop] for k, v in frame.dates.items()},
        categories={k: (u, c[start:stop]) for k, (u, c) in frame.categories.items()},
        sets={f: {t: col[start:stop] for t, col in m.items()} for f, m in frame.sets.items()},
        set_known={k: v[start:stop] for k, v in frame.set_known.items()},
    )


def take_frame(frame: FactsFrame, rows: np.ndarray) -> FactsFrame:
    """Return the given rows of a frame (a copy)."""
    return FactsFrame(
        len(rows),
        numbers={k: v[rows] for k, v in frame.numbers.items()},
        dates={k: v[rows] for k, v in frame.dates.items()},
        categories={k: (u, c[rows]) for k, (u, c) in frame.categories.items()},
        sets={f: {t: col[rows] for t, col in m.items()} for f, m in frame.sets.items()},
        set_known={k: v[rows] for k, v in frame.set_known.items()},
    )


def region_requirement(rules: dict[str, Any] | None) -> list[str] | None:
    """Return the regions of a within_region condition the whole tree requires, None when there is none."""
    if not rules:
        return None
    candidates = [rules] if "field" in rules else rules.get("all", [])
    for node in candidates:
        if node.get("field") == "region_code" and node.get("op") == "within_region":
            return list(node["value"])
    return None


def region_segments(frame: FactsFrame) -> list[tuple[int, int, int]]:
    """Return (start, stop, code index) of each run of equal region codes; code -1 is unknown."""
    _, idx = frame.categories["region_code"]
    if not len(idx):
        return []
    edges = np.flatnonzero(np.diff(idx)) + 1
    starts = np.concatenate([[0], edges])
    stops = np.concatenate([edges, [len(idx)]])
    codes_seen = idx[starts]
    if len(set(codes_seen.tolist())) != len(codes_seen):
        raise RuntimeError("firms are not grouped by region code")
    return [(int(a), int(b), int(c)) for a, b, c in zip(starts, stops, codes_seen, strict=True)]


def scope_runs(
    regions: list[str] | None, frame: FactsFrame, segments: list[tuple[int, int, int]], today: dt.date
) -> tuple[tuple[int, int], ...]:
    """Return the row ranges a policy can apply to: its regions' firms and firms of unknown region."""
    if regions is None:
        return ((0, frame.size),)
    uniques, _ = frame.categories["region_code"]
    covered = [eligibility.OPERATORS["within_region"](u, regions, today) for u in uniques]
    runs: list[list[int]] = []
    for start, stop, code in segments:
        if code < 0 or covered[code]:
            if runs and runs[-1][1] == start:
                runs[-1][1] = stop
            else:
                runs.append([start, stop])
    return tuple((a, b) for a, b in runs)


# ---------------------------------------------------------------- (a) the verdict pass

# A (firm, policy) result is one sortable int32: the score in 1e-4 units (match_policy stores scores
# rounded to 4 places) above the policy's index. Sorting int32 rows is SIMD-fast, where argpartition
# over float rows full of ties (every ineligible pair) is ~30× slower. Ineligible pairs are negative.
SCORE_SCALE = 10_000
ID_BITS = 17
NO_RESULT = -1


def _rule_scores(
    rules: dict[str, Any], sub: FactsFrame, today: dt.date, out: np.ndarray, ineligible: float
) -> tuple[int, int]:
    """Fill one policy's rule scores over a block of firms (`ineligible` where ineligible); return (eligible, likely)."""
    st = eligibility.evaluate_many(rules, sub, today=today)
    out[:] = st == 2
    out[st == 0] = ineligible
    likely = np.flatnonzero(st == 1)
    if likely.size:
        states = eligibility.condition_states_many(rules, take_frame(sub, likely), today=today)
        met = (np.vstack(list(states.values())) == 2).mean(axis=0) if states else np.ones(likely.size)
        out[likely] = 0.5 + 0.3 * met
    return int(np.count_nonzero(st == 2)), int(likely.size)


def decode_topk(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Turn packed top-k keys into (scores, policy indices), best first; -inf / -1 where empty."""
    ordered = np.sort(keys, axis=1)[:, ::-1]
    scores = (ordered >> ID_BITS).astype(np.float32) / SCORE_SCALE
    ids = (ordered & ((1 << ID_BITS) - 1)).astype(np.int32)
    empty = ordered < 0
    scores[empty] = -np.inf
    ids[empty] = -1
    return scores, ids


def verdict_pass(
    work: Workload, *, strategy: str, chunk_rows: int = CHUNK_ROWS, block: int = POLICY_BLOCK
) -> dict[str, Any]:
    """Score every eligible or likely (firm, policy) pair and keep each firm's top 50; return timings and counts."""
    frame, today, w = work.frame, work.today, work.weights
    n_firms, n_pol = frame.size, len(work.policies)
    # An ineligible pair's rule score, once weighted, outweighs the best tag and semantic parts by 0.5,
    # so its whole score lies in [-(tags + semantic + 0.5), -0.5]: negative, no extra masking pass.
    limit = (1 << (31 - ID_BITS)) / SCORE_SCALE
    if (
        n_pol >= 1 << ID_BITS
        or w.rules <= 0
        or w.rules + w.tags + w.semantic >= limit
        or w.tags + w.semantic + 0.5 >= limit
    ):
        raise ValueError(f"{n_pol} policies or weights {w} do not fit the packed int32 keys")
    ineligible = -(w.tags + w.semantic + 0.5) / w.rules
    started = time.perf_counter()
    segments = region_segments(frame)
    groups: dict[tuple[tuple[int, int], ...], list[int]] = {}
    for j, p in enumerate(work.policies):
        regions = region_requirement(p.rules) if strategy == "region" else None
        groups.setdefault(scope_runs(regions, frame, segments, today), []).append(j)
    plan_s = time.perf_counter() - started

    top = np.full((n_firms, TOP_K), NO_RESULT, dtype=np.int32)
    span = max(w.semantic_ceiling - w.semantic_floor, 1e-6)
    sem_scale = np.float32(w.semantic / span)
    weighted_tags = work.tag_weights * np.float32(w.tags)
    t_eval = t_dot = t_merge = 0.0
    eligible = likely = evaluated = 0
    for runs, members in groups.items():
        member_ids = np.asarray(members, dtype=np.int32)
        for r0, r1 in runs:
            for c0 in range(r0, r1, chunk_rows):
                c1 = min(c0 + chunk_rows, r1)
                n = c1 - c0
                sub = slice_frame(frame, c0, c1)
                fv = work.firm_vectors[c0:c1]
                ft = work.firm_tags[c0:c1]
                for b0 in range(0, len(member_ids), block):
                    ids = member_ids[b0 : b0 + block]
                    t0 = time.perf_counter()
                    rules_sc = np.empty((len(ids), n), dtype=np.float32)  # policy-major: evaluate_many gives rows
                    for j, pid in enumerate(ids):
                        e, lk = _rule_scores(work.policies[pid].rules, sub, today, rules_sc[j], ineligible)
                        eligible += e
                        likely += lk
                    t1 = time.perf_counter()
                    # Firm-major from here: each firm's candidates must be one contiguous row to sort.
                    score = fv @ work.policy_vectors[ids].T
                    score -= np.float32(w.semantic_floor)
                    score *= sem_scale
                    np.clip(score, 0, np.float32(w.semantic), out=score)
                    score += ft @ weighted_tags[:, ids]
                    rules_sc *= np.float32(w.rules)
                    score += rules_sc.T
                    del rules_sc
                    t2 = time.perf_counter()
                    score *= np.float32(SCORE_SCALE)
                    score += np.float32(0.5)  # round half up on the cast below (valid scores are positive)
                    cand = np.empty((n, TOP_K + len(ids)), dtype=np.int32)
                    cand[:, :TOP_K] = top[c0:c1]
                    keys = cand[:, TOP_K:]
                    keys[:] = score
                    del score
                    keys <<= ID_BITS
                    keys |= ids
                    cand.sort(axis=1)
                    top[c0:c1] = cand[:, -TOP_K:]
                    del cand, keys
                    t3 = time.perf_counter()
                    t_eval += t1 - t0
                    t_dot += t2 - t1
                    t_merge += t3 - t2
                    evaluated += len(ids) * n
    top[top < 0] = NO_RESULT
    total = time.perf_counter() - started
    return {
        "strategy": strategy,
        "seconds": round(total, 3),
        "plan_s": round(plan_s, 3),
        "evaluate_s": round(t_eval, 3),
        "scores_s": round(t_dot, 3),
        "topk_merge_s": round(t_merge, 3),
        "groups": len(groups),
        "evaluated_pairs": evaluated,
        "evaluated_share": round(evaluated / (n_firms * n_pol), 4),
        "eligible_pairs": eligible,
        "likely_pairs": likely,
        "firms_with_results": int(np.count_nonzero(top.max(axis=1) >= 0)),
        "_top": top,
    }


def check_partition(work: Workload, *, sample: int, seed: int) -> dict[str, Any]:
    """Compare region-partitioned statuses with evaluate_many over all firms on a sample of policies."""
    rng = random.Random(seed)
    frame, today = work.frame, work.today
    segments = region_segments(frame)
    picked = rng.sample(range(len(work.policies)), min(sample, len(work.policies)))
    mismatched = []
    for j in picked:
        rules = work.policies[j].rules
        full = eligibility.evaluate_many(rules, frame, today=today)
        parts = np.zeros(frame.size, dtype=np.int8)
        for r0, r1 in scope_runs(region_requirement(rules), frame, segments, today):
            parts[r0:r1] = eligibility.evaluate_many(rules, slice_frame(frame, r0, r1), today=today)
        if not np.array_equal(full, parts):
            mismatched.append(j)
    return {"policies_checked": len(picked), "identical": not mismatched, "mismatched": mismatched[:10]}


# ---------------------------------------------------------------- (b) the FAISS floor


def faiss_floor(work: Workload) -> dict[str, Any]:
    """Search every firm vector against an exact inner-product index of the policies, k=50."""
    import faiss

    started = time.perf_counter()
    index = faiss.IndexFlatIP(DIM)
    index.add(work.policy_vectors)
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(FAISS_THREADS)
    n = work.firm_vectors.shape[0]
    top_s = np.empty((n, TOP_K), dtype=np.float32)
    top_p = np.empty((n, TOP_K), dtype=np.int32)
    try:
        for start in range(0, n, FAISS_BATCH):
            stop = min(start + FAISS_BATCH, n)
            d, i = index.search(work.firm_vectors[start:stop], TOP_K)
            top_s[start:stop] = d
            top_p[start:stop] = i
    finally:
        faiss.omp_set_num_threads(previous)
    return {"seconds": round(time.perf_counter() - started, 3), "threads": FAISS_THREADS, "batch": FAISS_BATCH}


# ---------------------------------------------------------------- (c) the naive baseline


def naive_rematch(work: Workload, rows: Sequence[int]) -> tuple[dict[int, list[float]], float, int]:
    """Evaluate and score each (firm, policy) pair in Python for the given firms; return top-50 scores."""
    w, today = work.weights, work.today
    pvecs = work.policy_vectors
    out: dict[int, list[float]] = {}
    pairs = 0
    started = time.perf_counter()
    for row in rows:
        facts = work.facts[int(work.source[row])]
        vec = work.firm_vectors[row]
        firm_tags = set(facts["tags"])
        scored = []
        for j, p in enumerate(work.policies):
            verdict = eligibility.evaluate(p.rules, facts, today=today)
            pairs += 1
            if verdict.status == eligibility.INELIGIBLE:
                continue
            tscore, _ = tag_score(p.tags, firm_tags, work.idf, work.kinds)
            sscore = semantic_score(float(vec @ pvecs[j]), w)
            scored.append((round(w.rules * rule_score(verdict) + w.tags * tscore + w.semantic * sscore, 4), j))
        out[row] = sorted((s for s, _ in heapq.nlargest(TOP_K, scored)), reverse=True)
    return out, time.perf_counter() - started, pairs


def compare_topk(naive: dict[int, list[float]], top: np.ndarray) -> dict[str, Any]:
    """Compare the naive top-50 scores of sample firms with the verdict pass's."""
    worst = 0.0
    same_length = True
    rows = sorted(naive)
    scores_fast, _ = decode_topk(top[rows])
    for row, fast_row in zip(rows, scores_fast, strict=True):
        scores = naive[row]
        fast = fast_row[np.isfinite(fast_row)]
        if len(fast) != len(scores):
            same_length = False
            continue
        if len(fast):
            worst = max(worst, float(np.max(np.abs(fast - np.asarray(scores, dtype=np.float32)))))
    return {
        "firms": len(naive),
        "same_counts": same_length,
        "max_abs_score_diff": round(worst, 6),
        "agree": same_length and worst < 1e-3,
    }


# ---------------------------------------------------------------- one size


def run_size(
    firms: int, policies: int, *, seed: int, strategies: Sequence[str], emit: Path | None = None
) -> dict[str, Any]:
    """Measure (a), (b) and (c) for one size in this process; write partial results to emit after each phase."""
    record: dict[str, Any] = {
        "firms": firms,
        "policies": policies,
        "seed": seed,
        "top_k": TOP_K,
        "weights": vars(Weights()),
        "phases": {},
        "rss_start_mb": rss_mb(),
    }

    def save(stage: str) -> None:
        record["completed"] = stage
        if emit is not None:
            emit.write_text(json.dumps(record, ensure_ascii=False, default=str))

    with phase(record["phases"], "setup") as entry:
        work = build_workload(firms, policies, seed=seed)
        entry.update(work.timings)
    record["inputs_rss_mb"] = rss_mb()
    record["firm_vectors_mb"] = round(work.firm_vectors.nbytes / 2**20, 1)
    save("setup")

    with phase(record["phases"], "faiss_floor") as entry:
        entry.update(faiss_floor(work))
    save("faiss_floor")

    tops: dict[str, np.ndarray] = {}
    for strategy in strategies:
        with phase(record["phases"], f"verdict_{strategy}") as entry:
            result = verdict_pass(work, strategy=strategy)
            tops[strategy] = result.pop("_top")
            entry.update(result)
        save(f"verdict_{strategy}")

    if "region" in strategies:
        with phase(record["phases"], "partition_check") as entry:
            entry.update(check_partition(work, sample=min(64, policies), seed=seed))
        save("partition_check")

    rng = np.random.default_rng(seed + 2)
    n_rows = max(3, math.ceil(NAIVE_PAIRS / policies))
    rows = sorted(rng.choice(firms, size=min(n_rows, firms), replace=False).tolist())
    with phase(record["phases"], "naive") as entry:
        naive, seconds, pairs = naive_rematch(work, rows)
        per_pair = seconds / pairs
        entry.update(
            {
                "sample_firms": len(rows),
                "sample_pairs": pairs,
                "measured_s": round(seconds, 3),
                "per_pair_us": round(per_pair * 1e6, 2),
                "extrapolated_s": round(per_pair * firms * policies, 1),
            }
        )
        for strategy, top in tops.items():
            entry[f"agrees_with_{strategy}"] = compare_topk(naive, top)
    save("naive")
    # Each phase reset the high-water mark, so the process's peak is the largest phase peak.
    record["peak_rss_mb"] = max(
        [peak_rss_mb() or 0.0] + [p.get("peak_rss_mb") or 0.0 for p in record["phases"].values()]
    )
    record["ratios"] = ratios(record)
    save("done")
    return record


def ratios(record: dict[str, Any]) -> dict[str, Any]:
    """Derive (a)/(b) and (c)/(a) for every strategy measured."""
    phases = record["phases"]
    floor = phases.get("faiss_floor", {}).get("seconds")
    naive = phases.get("naive", {}).get("extrapolated_s")
    out = {}
    for name, entry in phases.items():
        if name.startswith("verdict_"):
            s = entry["seconds"]
            out[name.removeprefix("verdict_")] = {
                "verdict_over_faiss": ratio(s, floor),
                "naive_over_verdict": ratio(naive, s),
            }
    return out


# ---------------------------------------------------------------- sizes in subprocesses


def run_in_subprocess(
    firms: int, policies: int, *, seed: int, strategies: Sequence[str], timeout: float
) -> dict[str, Any]:
    """Run one size in a fresh interpreter; stop it at the timeout and keep the phases it finished."""
    emit = ROOT / "bench" / "results" / f".rematch-{firms}x{policies}-{os.getpid()}.json"
    emit.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "bench.rematch",
        "--firms",
        str(firms),
        "--policies",
        str(policies),
        "--seed",
        str(seed),
        "--strategies",
        ",".join(strategies),
        "--emit",
        str(emit),
        "--no-write",
    ]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT)
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.kill()
        proc.wait()
    record = json.loads(emit.read_text()) if emit.exists() else {"firms": firms, "policies": policies, "phases": {}}
    emit.unlink(missing_ok=True)
    record["wall_s"] = round(time.perf_counter() - started, 1)
    record["returncode"] = proc.returncode
    if timed_out:
        record["timed_out"] = f"stopped after {timeout:.0f} s (last finished phase: {record.get('completed', 'none')})"
    elif proc.returncode != 0:
        record["failed"] = f"exit code {proc.returncode}"
    return record


def tables(records: Sequence[dict[str, Any]]) -> list[tuple[str, list[str], list[list[Any]]]]:
    """Build the summary tables of one or more sizes."""
    rows = []
    for r in records:
        ph = r.get("phases", {})
        size = f"{r['firms']:,} × {r['policies']:,}"
        floor = ph.get("faiss_floor", {})
        naive = ph.get("naive", {})
        note = r.get("timed_out") or r.get("failed") or ""
        rows.append([size, "FAISS floor (b)", floor.get("seconds"), floor.get("peak_rss_mb"), None, None, note])
        for name, entry in ph.items():
            if name.startswith("verdict_"):
                strategy = name.removeprefix("verdict_")
                rt = r.get("ratios", {}).get(strategy, {})
                rows.append(
                    [
                        size,
                        f"verdict pass (a) {strategy}",
                        entry.get("seconds"),
                        entry.get("peak_rss_mb"),
                        rt.get("verdict_over_faiss"),
                        rt.get("naive_over_verdict"),
                        f"eval {entry.get('evaluate_s')} s, scores {entry.get('scores_s')} s, top-k {entry.get('topk_merge_s')} s; "
                        f"{entry.get('evaluated_share', 0) * 100:.1f}% of pairs evaluated",
                    ]
                )
        if naive:
            rows.append(
                [
                    size,
                    "naive per pair (c), extrapolated",
                    naive.get("extrapolated_s"),
                    naive.get("peak_rss_mb"),
                    None,
                    None,
                    f"{naive.get('per_pair_us')} µs/pair over {naive.get('sample_pairs')} pairs",
                ]
            )
        setup = ph.get("setup", {})
        if setup:
            rows.append(
                [
                    size,
                    "setup (generate, frame, vectors)",
                    setup.get("seconds"),
                    setup.get("peak_rss_mb"),
                    None,
                    None,
                    f"facts frame {setup.get('facts_frame_s')} s",
                ]
            )
    checks = []
    for r in records:
        ph = r.get("phases", {})
        size = f"{r['firms']:,} × {r['policies']:,}"
        pc = ph.get("partition_check")
        if pc:
            checks.append(
                [
                    size,
                    "region partition = evaluate_many over all firms",
                    pc.get("identical"),
                    f"{pc.get('policies_checked')} policies",
                ]
            )
        for key, value in ph.get("naive", {}).items():
            if key.startswith("agrees_with_"):
                checks.append(
                    [
                        size,
                        f"top-50 of {key.removeprefix('agrees_with_')} = naive Python",
                        value.get("agree"),
                        f"{value.get('firms')} firms, max |Δscore| {value.get('max_abs_score_diff')}",
                    ]
                )
        checks.append(
            [size, "peak RSS of the size's process (MB)", r.get("peak_rss_mb"), f"inputs {r.get('inputs_rss_mb')} MB"]
        )
    return [
        (
            "Re-match: wall time (s), phase peak RSS (MB), ratios",
            ["size", "measurement", "seconds", "peak MB", "(a)/(b)", "(c)/(a)", "notes"],
            rows,
        ),
        ("Re-match: checks", ["size", "check", "result", "detail"], checks),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the re-match benchmark (quick size, --full sizes, or one --firms/--policies size)."""
    parser = argparse.ArgumentParser(prog="python -m bench.rematch", description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="100k × 10k and 1M × 10k instead of 100k × 1k")
    parser.add_argument("--firms", type=int, help="one size, run in this process")
    parser.add_argument("--policies", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--strategies", default=None, help="comma-separated: region,dense")
    parser.add_argument("--timeout", type=float, default=SIZE_TIMEOUT_S, help="seconds allowed per size")
    parser.add_argument("--emit", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.firms:
        strategies = (args.strategies or "region").split(",")
        record = run_size(args.firms, args.policies, seed=args.seed, strategies=strategies, emit=args.emit)
        if not args.no_write:
            write_result(f"rematch-{args.firms}x{args.policies}", {"sizes": [record]}, tables([record]))
        return 0

    sizes = FULL_SIZES if args.full else QUICK_SIZES
    records = []
    for firms, policies in sizes:
        if args.strategies:
            strategies = args.strategies.split(",")
        else:  # dense is 5–10× slower; at 1M it alone would not fit the time limit
            strategies = ["region", "dense"] if firms * policies <= 100_000 * 10_000 else ["region"]
        print(f"rematch: {firms:,} firms × {policies:,} policies ({', '.join(strategies)}) …", flush=True)
        records.append(run_in_subprocess(firms, policies, seed=args.seed, strategies=strategies, timeout=args.timeout))
    write_result("rematch-full" if args.full else "rematch", {"sizes": records}, tables(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
