"""Measure `matcher.search.find` latency with cached query vectors on a large synthetic catalog.

    .venv/bin/python scripts/search_latency.py --policies 10000 [--var-dir /tmp/search-perf]

Builds (once, reused on later runs) a SQLite database with the demo catalog plus synthetic
policies, embeds them with the configured embedder, embeds the queries once, then times each
query `--repeat` times and prints p50 / p90 / p99 per phase.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

QUERIES = [
    "研发费用加计扣除",
    "高企",
    "稳岗",
    "专精特新",
    "我们公司去年没有裁员，失业保险能返还吗",
    "小微企业贷款贴息怎么申请",
    "招了应届毕业生有什么补贴",
    "zzqqxx不存在的政策",
    "技术改造设备补助",
    "首台套保险补偿",
]


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's code, not an installed one


def _stand_in():  # type: ignore[no-untyped-def]
    import zlib

    import numpy as np

    from matcher.embeddings import Embedder

    class StandIn(Embedder):
        """Hashed character-bigram vectors of e5-small's width: a timing stand-in, never a quality one."""

        model_id = "stand-in-bigram-hash-384"
        dim = 384

        def _encode(self, texts, role):  # type: ignore[no-untyped-def]
            out = np.zeros((len(texts), self.dim), dtype=np.float32)
            for row, text in enumerate(texts):
                for i in range(max(1, len(text) - 1)):
                    out[row, zlib.crc32(text[i : i + 2].encode()) % self.dim] += 1.0
            return out + 1e-6

    return StandIn()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--policies", type=int, default=10_000)
    parser.add_argument("--var-dir", type=Path, default=Path("/tmp/search-perf"))
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument(
        "--stand-in-vectors",
        action="store_true",
        help="embed with hashed character bigrams (384 dims) instead of e5: the index fills in seconds and "
        "search costs the same (only the vectors' values differ); for timing only",
    )
    args = parser.parse_args()

    from sqlalchemy import func, select

    from catalog import synth
    from catalog.demo import load_demo_catalog
    from catalog.models import Policy
    from core import migrate
    from core.config import Settings
    from core.db import Database
    from matcher import search
    from matcher.engine import Matcher

    args.var_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(env="test", secret_key="p" * 48, var_dir=args.var_dir, warm_up=False, scheduler_enabled=False)
    database = Database(settings.resolved_database_url)
    with database.engine.connect() as conn:
        migrate.upgrade(connection=conn)
    with database.session() as db:
        have = db.scalar(select(func.count()).select_from(Policy)) or 0
        if have == 0:
            load_demo_catalog(db=db, actor=None)
            db.flush()
        have = db.scalar(select(func.count()).select_from(Policy)) or 0
        if have < args.policies:
            synth.synth_policies(db=db, count=args.policies - have, seed=7)
    matcher = Matcher(settings, embedder=_stand_in() if args.stand_in_vectors else None)
    with database.session() as db:
        started = time.perf_counter()
        index = matcher.policy_index(db)
        print(f"policy index: {len(index)} vectors ({time.perf_counter() - started:.1f} s)")
        matcher.encode([search.expander(db).embedding_text(q) for q in QUERIES], "query")
        times: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}
        for q in QUERIES:
            search.find(db=db, matcher=matcher, q=q, limit=10)  # first call per query warms caches
            for _ in range(args.repeat):
                start, start_cpu = time.perf_counter(), time.process_time()
                result = search.find(db=db, matcher=matcher, q=q, limit=10)
                times.setdefault(q, []).append((time.perf_counter() - start) * 1000)
                cpu.setdefault(q, []).append((time.process_time() - start_cpu) * 1000)
            print(
                f"{q[:24]:<26} total={result.total:<4} wall p50={statistics.median(times[q]):6.1f} ms "
                f"cpu p50={statistics.median(cpu[q]):6.1f} ms"
            )
        for label, data in (("wall", times), ("cpu", cpu)):
            every = sorted(t for ts in data.values() for t in ts)

            def pct(p: float, every: list[float] = every) -> float:
                return every[min(len(every) - 1, int(p * len(every)))]

            print(
                f"all queries, {label}: p50={pct(0.5):.1f} ms p90={pct(0.9):.1f} ms p99={pct(0.99):.1f} ms (n={len(every)})"
            )
        print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    matcher.close()
    database.dispose()


if __name__ == "__main__":
    main()
