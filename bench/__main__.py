"""Run the benchmarks: ``python -m bench [--only NAME] [--full]``.

Each benchmark runs in its own interpreter (its peak memory and thread settings are its own) and
prints its table and JSON path; quick sizes by default, the issue's sizes with --full.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence

from bench.common import ROOT, format_table

BENCHMARKS = {
    "embed": "bench.embed",
    "rematch": "bench.rematch",
    "recommend_http": "bench.recommend_http",
    "ranker": "bench.ranker",
    "fanout": "bench.fanout",
    "desk_answer": "bench.desk_answer",
    "serving": "bench.serving",
    "batch": "bench.batch",
}
# Generous ceilings so a stuck run cannot hang `make bench`; rematch bounds each size itself.
TIMEOUT_S = {
    "embed": 1800,
    "rematch": 3 * 3600,
    "recommend_http": 3600,
    "ranker": 600,
    "fanout": 3 * 3600,
    "desk_answer": 1800,
    "serving": 3 * 3600,
    "batch": 6 * 3600,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected benchmarks one after another; return non-zero if any failed."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", choices=sorted(BENCHMARKS), action="append", help="run only this benchmark (repeatable)"
    )
    parser.add_argument("--full", action="store_true", help="the issue's sizes instead of the quick ones")
    args = parser.parse_args(argv)
    names = args.only or list(BENCHMARKS)
    summary = []
    for name in names:
        cmd = [sys.executable, "-m", BENCHMARKS[name], *(["--full"] if args.full else [])]
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        started = time.perf_counter()
        try:
            code = subprocess.run(cmd, cwd=ROOT, timeout=TIMEOUT_S[name]).returncode
        except subprocess.TimeoutExpired:
            code = None
        summary.append(
            [
                name,
                "ok" if code == 0 else ("timed out" if code is None else f"exit {code}"),
                round(time.perf_counter() - started, 1),
            ]
        )
        print(flush=True)
    print(format_table("Benchmarks run", ["benchmark", "status", "seconds"], summary))
    return 0 if all(row[1] == "ok" for row in summary) else 1


if __name__ == "__main__":
    raise SystemExit(main())
