"""Intake review: one curator decision (its short write) and the eligible count after it, at N firms.

Standalone: ``python -m bench.intake_review [N]`` (default 2000). Setup, not timed: a migrated SQLite
database in a temporary folder with the demo taxonomy, N demo firms and one intake draft of the
test notice; the facts frame is warmed once, as a running site has it. Timed, three times: an edit
of the revenue threshold through `matcher.intake.decide_in_stages`, then `matcher.intake.eligible_count`
(the editor's preview over stored firm facts). Wall and CPU (process_time) milliseconds are printed.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from catalog import demo as catalog_demo
from catalog.intake import review
from catalog.intake.service import intake_files
from core import migrate
from core.config import Settings
from core.db import Database
from matcher import intake as matcher_intake
from matcher.engine import Matcher
from profiles import demo as profiles_demo
from tests.support import intake_docs as docs


def main(n: int) -> None:
    tmp = Path(tempfile.mkdtemp())
    settings = Settings(env="test", secret_key="t" * 48, var_dir=tmp / "var", models_dir=tmp / "models")
    database = Database(f"sqlite:///{tmp / 'bench.db'}")
    with database.engine.connect() as conn:
        migrate.upgrade(connection=conn)
    matcher = Matcher(settings)
    with database.sessionmaker() as db:
        catalog_demo.load_taxonomy(db=db)
        profiles_demo.load_demo_enterprises(db=db, count=n)
        (made,) = intake_files(db=db, files=[("notice.txt", docs.NOTICE.encode())], actor=None)
        db.commit()
        assert made.policy is not None
        pid = made.policy.id
        record = review.record_for(db, pid)
        key = next(
            i.key for i in review.items(record) if i.kind == "condition" and i.coded and i.name == "annual_revenue"
        )
        matcher_intake.eligible_count(db=db, matcher=matcher, policy_id=pid)
        db.commit()
        for value in ("5000", "3000", "8000"):
            t0, c0 = time.perf_counter(), time.process_time()
            matcher_intake.decide_in_stages(db=db, policy_id=pid, key=key, decision="edit", actor=None, value=value)
            t1, c1 = time.perf_counter(), time.process_time()
            out = matcher_intake.eligible_count(db=db, matcher=matcher, policy_id=pid)
            t2, c2 = time.perf_counter(), time.process_time()
            db.commit()
            print(
                f"firms={out['total']} edit->{value}: decision wall {1000 * (t1 - t0):.1f} ms cpu "
                f"{1000 * (c1 - c0):.1f} ms; count wall {1000 * (t2 - t1):.1f} ms cpu {1000 * (c2 - c1):.1f} ms; "
                f"eligible={out['eligible']} likely={out['likely']}"
            )
    matcher.close()
    database.dispose()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
