"""Kept policy lists: rows/s of a listing (`runs.list_policies`) on a bench database, and a digest of its rows.

The database comes from `bench.dataset.build` (synthetic policies and firms, random vectors); the
firms' tags are derived first (as the first full run does), so rows carry shared tags. Each round
forgets every list (`match_result`, `policy_match_state`, listing runs), then lists the first
`--policies` published policies against every firm, and reports:

- rows written, wall seconds of the listing and rows/s end to end (kernel, row building and writes);
- the seconds spent in the row writer alone (`runs._insert_list_rows`: a Core insert or COPY on
  PostgreSQL, executemany on SQLite) and rows/s of it;
- a SHA-256 over every row but `computed_at` (JSON as stored text), ordered by policy and firm, so
  two code versions can be held to the same rows.

Run (PostgreSQL database built first, e.g. 2,000 policies × 20,000 firms):

    python -m bench.lists --url postgresql+psycopg://postgres@127.0.0.1:5432/NAME --var-dir VAR --build 2000,20000
    python -m bench.lists --url … --var-dir VAR --policies 2000 --repeat 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _reset(url: str) -> None:
    from sqlalchemy import inspect, text

    from core.db import Database

    database = Database(url)
    names = set(inspect(database.engine).get_table_names())
    with database.engine.begin() as conn:
        conn.execute(text("DELETE FROM match_result"))
        conn.execute(text("DELETE FROM policy_match_state"))
        if "list_run" in names:
            conn.execute(text("DELETE FROM list_run"))  # cascades to its policies and units
    if database.engine.dialect.name == "postgresql":
        with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE match_result"))
    database.dispose()


def digest(url: str) -> tuple[int, str]:
    """Return (rows, SHA-256) of every `match_result` row but its `computed_at`, JSON as stored text."""
    from sqlalchemy import text

    from core.db import Database

    database = Database(url)
    cast = "CAST({} AS TEXT)" if database.engine.dialect.name == "postgresql" else "{}"
    columns = (
        "enterprise_id, policy_id, policy_version, status, score, rule_score, tag_score, semantic_score, "
        f"similarity, {cast.format('shared_tags')}, {cast.format('condition_states')}"
    )
    h = hashlib.sha256()
    n = 0
    with database.engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=50_000).execute(
            text(f"SELECT {columns} FROM match_result ORDER BY policy_id, enterprise_id")
        )
        for row in result:
            h.update(repr(tuple(row)).encode())
            n += 1
    database.dispose()
    return n, h.hexdigest()


def run(url: str, var_dir: Path, policies: int, repeat: int) -> list[dict[str, Any]]:
    from bench import dataset

    os.environ.update(dataset.huiqi_env(url, var_dir))
    from sqlalchemy import select

    from catalog.models import Policy, PolicyStatus
    from core.config import Settings
    from core.db import Database
    from matcher import runs
    from matcher.engine import Matcher

    database = Database(url)
    matcher = Matcher(Settings())
    with database.session() as db:
        ids = list(
            db.scalars(
                select(Policy.id).where(Policy.status == PolicyStatus.published).order_by(Policy.id).limit(policies)
            )
        )
    runs._tag_stale(database, __import__("datetime").date.today())
    spent = {"s": 0.0, "rows": 0}
    insert = runs._insert_list_rows

    def timed(db: Any, rows: list[dict[str, Any]]) -> None:
        started = time.perf_counter()
        insert(db, rows)
        spent["s"] += time.perf_counter() - started
        spent["rows"] += len(rows)

    runs._insert_list_rows = timed
    # Warm: the policy set and its vectors load once per process (not part of a listing's cost).
    with database.session() as db:
        runs.context(db, matcher, today=__import__("datetime").date.today())
    out = []
    for _ in range(repeat):
        _reset(url)
        spent.update(s=0.0, rows=0)
        started = time.perf_counter()
        counts = runs.list_policies(database, matcher, ids)
        wall = time.perf_counter() - started
        rows, sha = digest(url)
        assert rows == spent["rows"] == sum(c["eligible"] + c["likely"] for c in counts.values())
        out.append(
            {
                "policies": len(ids),
                "firms": max((c["firms"] for c in counts.values()), default=0),
                "rows": rows,
                "wall_s": round(wall, 2),
                "rows_per_s": round(rows / wall),
                "write_s": round(spent["s"], 2),
                "write_rows_per_s": round(rows / spent["s"]) if spent["s"] else None,
                "sha256": sha,
            }
        )
        print(json.dumps(out[-1]), flush=True)
    runs._insert_list_rows = insert
    matcher.close()
    database.dispose()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="SQLAlchemy URL of the bench database")
    parser.add_argument("--var-dir", type=Path, required=True, help="var dir holding the policy vectors")
    parser.add_argument("--build", help="POLICIES,FIRMS: build the database first (bench.dataset.build)")
    parser.add_argument("--policies", type=int, default=1_000, help="list the first N published policies")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--no-migrate", action="store_true", help="use the database as it is (an older checkout on a newer schema)"
    )
    args = parser.parse_args(argv)
    if args.build:
        from bench import dataset

        p, f = (int(x) for x in args.build.split(","))
        print(dataset.build(args.url, args.var_dir, policies=p, firms=f))
    elif not args.no_migrate:
        from core import migrate

        migrate.upgrade(url=args.url)
    run(args.url, args.var_dir, args.policies, args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
