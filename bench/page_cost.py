"""CPU of one recommendation page in process, for firms whose stored list is full: the same work at any catalog size.

`bench.serving` measures pages over HTTP for randomly chosen firms; how much a page shows depends
on the catalog (at 1,000 synthetic policies a random firm has 4–20 eligible ones, at 10,000 all have
the full 50 stored), so their figures mix the catalog's size with the page's contents. Here the
firms are those with the full `pipeline.TOP_N` stored and a full first page, and the work is the
route's (`matcher.router._recommendations`: read, rank, word, serialise) without HTTP; a firm whose
page had to judge a verdict when read (`Page.judged`) is left out and counted. Best and median of
`--rounds` passes over the same firms, process CPU per page.

Run by `bench.serving` per size, in a child process with that size's settings:
``python -m bench.page_cost DIR`` (DIR holds the size's prepared.json) prints one JSON object.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def measure(prep: dict[str, Any], *, firms: int = 32, rounds: int = 7) -> dict[str, Any]:
    """Return CPU ms per page for up to `firms` firms with a full stored list and a full first page."""
    from sqlalchemy import func, select

    from core.config import get_settings
    from core.db import Database
    from core.deps import PageParams
    from matcher import pipeline, recommend, router
    from matcher.engine import Matcher
    from matcher.models import FirmMatch

    settings = get_settings()
    database = Database(settings.resolved_database_url)
    matcher = Matcher(settings)
    today = dt.date.today()
    paging = PageParams(settings, page=1, page_size=20)
    with database.session() as db:
        full = FirmMatch.eligible + FirmMatch.likely >= pipeline.TOP_N
        full_lists = db.scalar(select(func.count()).select_from(FirmMatch).where(full))
        stored = db.scalar(select(func.count()).select_from(FirmMatch))
        candidates = list(
            db.scalars(select(FirmMatch.enterprise_id).where(full).order_by(FirmMatch.enterprise_id).limit(firms * 2))
        )
        policies = len(matcher.policy_sets.get(db, today=today))
        gc.freeze()  # as a serving process does after its warm-up (core.heap)
        chosen, judged = [], 0
        for eid in candidates:
            page = recommend.recommend(db=db, matcher=matcher, enterprise_id=eid, today=today)
            if page.judged:
                judged += 1
            elif len(page.items) == paging.page_size:
                chosen.append(eid)
            if len(chosen) == firms:
                break
        for eid in chosen:  # one pass to warm caches
            router._recommendations(db, matcher, eid, None, paging, recommend.Filters())
        passes = []
        for _ in range(rounds):
            t0 = time.process_time()
            for eid in chosen:
                router._recommendations(db, matcher, eid, None, paging, recommend.Filters())
            passes.append((time.process_time() - t0) / max(len(chosen), 1) * 1000)
    passes.sort()
    return {
        "open_policies": policies,
        "firms_with_full_lists": f"{full_lists} of {stored}",
        "firms_measured": len(chosen),
        "left_out_judged_when_read": judged,
        "cpu_ms_per_page_best": round(passes[0], 3) if chosen else None,
        "cpu_ms_per_page_median": round(passes[len(passes) // 2], 3) if chosen else None,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workdir", type=Path, help="a bench.serving size directory (holds prepared.json)")
    parser.add_argument("--firms", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    prep = json.loads((args.workdir / "prepared.json").read_text(encoding="utf-8"))
    from bench import dataset

    os.environ.update(dataset.huiqi_env(prep["url"], Path(prep["var_dir"])))
    json.dump(measure(prep, firms=args.firms, rounds=args.rounds), sys.stdout)
    print()


if __name__ == "__main__":
    main()
