"""Measure `matcher.search.find` latency with cached query vectors on a large synthetic catalog.

    .venv/bin/python scripts/search_latency.py --policies 10000 [--var-dir /tmp/search-perf]

Builds (once, reused on later runs) a SQLite database with the demo catalog plus synthetic
policies, embeds them with the configured embedder, embeds the queries once, then times each
query `--repeat` times and prints p50 / p90 / p99 per phase.
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--policies", type=int, default=10_000)
    parser.add_argument("--var-dir", type=Path, default=Path("/tmp/search-perf"))
    parser.add_argument("--repeat", type=int, default=20)
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
    matcher = Matcher(settings)
    with database.session() as db:
        started = time.perf_counter()
        index = matcher.policy_index(db)
        print(f"policy index: {len(index)} vectors ({time.perf_counter() - started:.1f} s)")
        expand = search.expander(db).expand
        matcher.encode([search.expanded_text(q, expand(q)) for q in QUERIES], "query")
        times: dict[str, list[float]] = {}
        for q in QUERIES:
            search.find(db=db, matcher=matcher, q=q, limit=10)  # first call per query warms caches
            for _ in range(args.repeat):
                start = time.perf_counter()
                result = search.find(db=db, matcher=matcher, q=q, limit=10)
                times.setdefault(q, []).append((time.perf_counter() - start) * 1000)
            print(f"{q[:24]:<26} total={result.total:<4} p50={statistics.median(times[q]):6.1f} ms")
        every = sorted(t for ts in times.values() for t in ts)
        pct = lambda p: every[min(len(every) - 1, int(p * len(every)))]  # noqa: E731
        print(f"all queries: p50={pct(0.5):.1f} ms p90={pct(0.9):.1f} ms p99={pct(0.99):.1f} ms (n={len(every)})")
    matcher.close()
    database.dispose()


if __name__ == "__main__":
    main()
