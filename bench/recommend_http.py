"""Superseded by bench/serving.py, which this runs: `python -m bench.recommend_http [serving's options]`.

The former version started `huiqi serve` on a database without stored matches, so its measured server
embedded and matched firms (and, then, ran the scheduler's catch-up) while it was being measured.
bench.serving measures the deployed path: stored matches, `huiqi serve --workers N` with the scheduler
off, floors in the same run, server CPU per request, and a mixed load with `huiqi worker` beside it.
"""

from __future__ import annotations

from bench.serving import main

if __name__ == "__main__":
    raise SystemExit(main())
