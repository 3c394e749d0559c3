"""Scoring a firm's candidate batch with the learned ranker against the hand-weighted blend.

A recommendation read from stored results scores every open candidate of the firm (10k policies at
the issue's size) before sorting. Baseline: the hand blend as it has always been computed
(`Components.score`, one Python call per candidate). Measured: `ranker.score_components` with a
learned ranker in use (one stacked matrix, one dot product, one sigmoid), including the
per-request `RankerCache.active` lookup (two stat calls). Both paths run back to back per round on the
same components, so load from neighbours hits both alike. Also reported: building the
`Components` objects themselves (which both paths need, so the scoring's share of a request is
visible), training on 1,000 feedback rows, and loading the model from disk once.

Run: ``python -m bench.ranker [--full]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from bench.common import peak_rss_mb, ratio, summarize_ms, write_result
from matcher import ranker
from matcher.ranking import Components, Weights


def _components(rng: np.random.Generator, n: int) -> tuple[np.ndarray, list[Components]]:
    rules = rng.choice([1.0, 0.5, 0.6, 0.7, 0.8], size=n)
    x = np.c_[rules, rng.random(n), rng.random(n), np.where(rng.random(n) < 0.3, rng.random(n), 0.0)].round(4)
    return x, [Components(*map(float, row), adjustment=0.0) for row in x]


def _write_ranker(models_dir: Path, rng: np.random.Generator) -> float:
    """Fit a ranker on 1,000 synthetic rows and store it as `train` would, marked used; return fit seconds."""
    import hashlib
    import json

    import skops.io as sio

    from core.files import atomic_write

    x, _ = _components(rng, 1000)
    y = (rng.random(1000) < 1 / (1 + np.exp(-(-2.5 + 4 * x[:, 1] + x[:, 0])))).astype(int)
    started = time.perf_counter()
    model = LogisticRegression(max_iter=1000).fit(x, y)
    seconds = time.perf_counter() - started
    blob = sio.dumps({"format": ranker.FORMAT, "model": model, "features": list(ranker.FEATURES)})
    manifest = {
        "kind": ranker.MODEL_KIND,
        "format": ranker.FORMAT,
        "versions": ranker._versions(),
        "features": list(ranker.FEATURES),
        "coefficients": {f: round(float(c), 6) for f, c in zip(ranker.FEATURES, model.coef_[0], strict=True)},
        "used": True,
        "model_sha256": hashlib.sha256(blob).hexdigest(),
    }
    atomic_write(models_dir / ranker.SUBDIR / ranker.MODEL_FILE, blob)
    atomic_write(models_dir / ranker.SUBDIR / ranker.MANIFEST_FILE, json.dumps(manifest).encode())
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scoring benchmark and write its result."""
    parser = argparse.ArgumentParser(prog="python -m bench.ranker", description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="more rounds")
    args = parser.parse_args(argv)
    rounds = 200 if args.full else 60
    rng = np.random.default_rng(0)
    weights = Weights()
    result: dict[str, Any] = {"rounds": rounds, "sizes": {}}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models_dir = Path(tmp)
        result["fit_seconds_1000_rows"] = round(_write_ranker(models_dir, rng), 4)
        started = time.perf_counter()
        assert ranker.load(models_dir) is not None
        result["load_ms"] = round((time.perf_counter() - started) * 1000, 2)
        rankers = ranker.RankerCache()  # as the Matcher holds it
        ranker.score_components(_components(rng, 10)[1], weights, rankers.active(models_dir))  # load once, warm up
        for n in (1_000, 10_000):
            x, _ = _components(rng, n)
            hand_t, learned_t, build_t, ratios = [], [], [], []
            for _ in range(rounds):
                t0 = time.perf_counter()
                built = [Components(*map(float, row), adjustment=0.0) for row in x]
                t1 = time.perf_counter()
                hand = ranker.score_components(built, weights, None)
                t2 = time.perf_counter()
                learned = ranker.score_components(built, weights, rankers.active(models_dir))
                t3 = time.perf_counter()
                build_t.append(t1 - t0)
                hand_t.append(t2 - t1)
                learned_t.append(t3 - t2)
                ratios.append((t3 - t2) / (t2 - t1))
            assert len(hand) == len(learned) == n
            entry = {
                "build_components_ms": summarize_ms(build_t),
                "hand_ms": summarize_ms(hand_t),
                "learned_ms": summarize_ms(learned_t),
                "learned_over_hand_median_paired": round(statistics.median(ratios), 3),
            }
            result["sizes"][n] = entry
            rows.append(
                [
                    n,
                    entry["hand_ms"]["p50"],
                    entry["hand_ms"]["p99"],
                    entry["learned_ms"]["p50"],
                    entry["learned_ms"]["p99"],
                    entry["learned_over_hand_median_paired"],
                    entry["build_components_ms"]["p50"],
                ]
            )
    result["peak_rss_mb"] = peak_rss_mb()
    result["p50_ratio_10k"] = ratio(
        result["sizes"][10_000]["learned_ms"]["p50"], result["sizes"][10_000]["hand_ms"]["p50"]
    )
    write_result(
        "ranker",
        result,
        [
            (
                "Scoring a firm's candidates: learned ranker vs hand blend (ms)",
                ["candidates", "hand p50", "hand p99", "learned p50", "learned p99", "ratio", "build p50"],
                rows,
            ),
            (
                "Once per model",
                ["fit 1,000 rows (s)", "load (ms)", "peak RSS (MB)"],
                [[result["fit_seconds_1000_rows"], result["load_ms"], result["peak_rss_mb"]]],
            ),
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
