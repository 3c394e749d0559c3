"""Choose the search fusion and cut-off constants on the tuning split of the held-out set.

    .venv/bin/python scripts/tune_search.py [--split tune]

Loads tests/data/search_policies.json into a temporary SQLite database, embeds everything once,
then for each setting of (keyword weight, keyword coverage / phrase floors, semantic floor and gap)
reports Hit@1 / MRR on the split and how many nonsense queries still get hits. The chosen values
are written into matcher/search.py by hand (so a change is reviewed).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NONSENSE = [
    "zzqqxx不存在的政策",
    "asdfgh",
    "今天天气怎么样",
    "我想买一台洗衣机",
    "火星移民补贴",
    "宠物狗疫苗在哪里打",
    "周末去哪里玩",
    "量子纠缠理论",
]


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's code, not an installed one


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", default="tune")
    args = parser.parse_args()
    from core import migrate
    from core.config import Settings
    from core.db import Database
    from core.text import normalize
    from matcher import search, search_eval
    from matcher.engine import Matcher

    with tempfile.TemporaryDirectory(prefix="search-tune-") as tmp:
        settings = Settings(env="test", secret_key="t" * 48, var_dir=Path(tmp), warm_up=False, scheduler_enabled=False)
        database = Database(settings.resolved_database_url)
        with database.engine.connect() as conn:
            migrate.upgrade(connection=conn)
        matcher = Matcher(settings)
        with database.session() as db:
            search_eval.load_catalog(db, ROOT / "tests/data/search_policies.json")
            cases = search_eval.load_cases(ROOT / "tests/data/search_eval.csv", split=args.split)
            base = search_eval.evaluate(db=db, matcher=matcher, cases=cases)
            print(search_eval.format_report(base))
            expected, _ = search_eval._resolve(db, cases)
            matcher.encode([search.expander(db).embedding_text(q) for q in NONSENSE], "query")
            # Semantic similarity of the best neighbour: right answers vs nonsense.
            for label, queries in (("cases", [c["query"] for c in cases]), ("nonsense", NONSENSE)):
                tops = []
                for q in queries:
                    r = search.find(db=db, matcher=matcher, q=q, limit=1, cutoff=False)
                    tops.append(r.hits[0].semantic or 0.0 if r.hits else 0.0)
                tops.sort()
                print(
                    label,
                    "top cosine min/median/max",
                    round(tops[0], 3),
                    round(tops[len(tops) // 2], 3),
                    round(tops[-1], 3),
                )
            evidence = {
                q: search.gather(db=db, matcher=matcher, text=normalize(q))
                for q in [c["query"] for c in cases] + NONSENSE
            }
            grid = itertools.product(
                [0.5, 1.0, 1.5, 2.0],
                [0.3, 0.4, 0.5, 0.6, 0.8],
                [4, 5, 6, 99],
                [0.80, 0.85, 0.86, 0.87, 0.88],
                [0.03, 0.05, 0.08],
            )
            rows = []
            for kw, cov, phrase, smin, gap in grid:
                params = search.Params(
                    keyword_weight=kw, min_coverage=cov, min_phrase=phrase, semantic_min=smin, semantic_gap=gap
                )
                hit = mrr = 0.0
                for c in cases:
                    fused, _ = search.fuse(evidence[c["query"]], params=params)
                    ranked = [pid for pid, _ in sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))]
                    m = search_eval._metrics(ranked, expected[c["expected"]])
                    hit += m["hit_at_1"]
                    mrr += m["mrr"]
                noise = sum(bool(search.fuse(evidence[q], params=params)[0]) for q in NONSENSE)
                rows.append((hit / len(cases), mrr / len(cases), -noise, (kw, cov, phrase, smin, gap)))
            rows.sort(key=lambda r: (r[2], r[0], r[1]), reverse=True)
            show = rows[:10]
            for i, name in enumerate(("kw", "cov", "phrase", "smin", "gap")):
                # The best setting for each value of each constant, so its effect can be read off.
                for value in sorted({r[3][i] for r in rows}):
                    show.append(next(r for r in rows if r[3][i] == value))
                    print(f"best with {name}={value}: ", end="")
                    r = show[-1]
                    print(f"hit@1={r[0]:.3f} mrr={r[1]:.3f} nonsense_with_hits={-r[2]} {r[3]}")
            print("top settings (kw, cov, phrase, smin, gap):")
            for r in rows[:10]:
                print(f"hit@1={r[0]:.3f} mrr={r[1]:.3f} nonsense_with_hits={-r[2]} (kw, cov, phrase, smin, gap)={r[3]}")
        matcher.close()
        database.dispose()


if __name__ == "__main__":
    main()
