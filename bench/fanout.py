"""Fan-out: publish one broad policy → every eligible firm's inbox row written, at 100k and 1M firms.

Setup, not timed: a migrated SQLite database with the demo taxonomy and N synthetic firms
(`profiles.synth.synth_enterprises`), built once per size and seed and cached under
``var/bench/`` (each run works on a copy, migrated to head); then the push state a deployment has:
1 % of firms with preferences of their own (email, webhook or SMS; a fifth on daily digests),
0.5 % unsubscribed, 2 % following a keyword of the policy, 0.3 % having called it "not
relevant"; and one broad draft policy (广东省 firms with at least 5 employees and a year in
business), created through the catalog service.

Measured in one process per size, against that database:

(a) fan-out: the publish transaction as the route runs it (`catalog.service.publish_policy` and
    the enqueued job, one commit), then the job body the lease holder runs, `push.jobs.fan_out_job`
    — eligibility of every firm from the rules, the decision (preferences, subscriptions,
    feedback, weekly caps), outbox rows written in committed chunks under the crash guard. Wall
    time, rows/s, the phase's peak RSS; the eligibility step (load the facts the rules test and
    `evaluate_many`) is timed alone as well.
(b) baseline: the same rows written by the database alone — one INSERT … SELECT of exactly the
    rows (a) wrote, from a temporary copy, into the same table with all its indexes (under
    another `kind`, so the unique key does not collide), committed. Ratio (a)/(b).

Checks: the inbox rows equal the firms the fan-out decided on; on a random sample of firms, who
got a row agrees with the scalar engine (`eligibility.evaluate` on `profile_facts`) and the
documented rules; a second run of the job writes nothing.

Run: ``python -m bench.fanout [--full]`` (sizes in subprocesses) or ``python -m bench.fanout --firms N``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import ROOT, peak_rss_mb, phase, ratio, rss_mb, write_result

QUICK_SIZES = (100_000,)
FULL_SIZES = (100_000, 1_000_000)
SIZE_TIMEOUT_S = 60 * 60  # building a 1M dataset for the first time takes minutes; the run itself far less
TARGET_1M_S = 60.0
CACHE_DIR = ROOT / "var" / "bench"
SEED = 7
SAMPLE_FIRMS = 3000
KEYWORD = "灯饰照明"
RULES = {
    "all": [
        {"field": "region_code", "op": "within_region", "value": ["440000"]},
        {"field": "employees", "op": "gte", "value": 5},
        {"field": "established_on", "op": "years_since_gte", "value": 1},
    ]
}
BASELINE_KIND = "bench_copy"
DELIVERY_COLUMNS = (
    "enterprise_id, policy_id, policy_version, kind, dedupe_key, channel, status, attempts, next_attempt_at, "
    "last_error, title, body, url, payload, created_at, sent_at, read_at, clicked_at"
)


# ---------------------------------------------------------------- dataset


def dataset(firms: int, seed: int) -> tuple[Path, float | None]:
    """Return the cached database of `firms` synthetic firms (building it if absent) and its build time."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path = CACHE_DIR / f"fanout-{firms}-s{seed}.db"
    if path.exists():
        return path, None
    from catalog import demo
    from core import migrate
    from core.db import Database
    from profiles.synth import synth_enterprises

    started = time.perf_counter()
    building = path.with_suffix(".building")
    for leftover in (building, Path(f"{building}-wal"), Path(f"{building}-shm")):
        leftover.unlink(missing_ok=True)
    url = f"sqlite:///{building}"
    migrate.upgrade(url=url)
    database = Database(url)
    try:
        with database.session() as db:
            demo.load_taxonomy(db=db)
        synth_enterprises(engine=database.engine, count=firms, seed=seed, batch_size=20_000)
    finally:
        database.dispose()
    conn = sqlite3.connect(building)
    try:
        conn.execute("PRAGMA journal_mode=DELETE")  # folds the WAL in: the cached file stands alone
    finally:
        conn.close()
    building.rename(path)
    return path, round(time.perf_counter() - started, 1)


def prepare(db: Any, *, seed: int) -> tuple[int, dict[str, Any]]:
    """Add push state and a broad draft policy; return the policy id and what was added."""
    import numpy as np
    from sqlalchemy import insert, select

    from catalog import service as catalog_service
    from catalog.models import Category, Department
    from catalog.schemas import PolicyIn
    from matcher.models import Feedback
    from profiles.models import Enterprise
    from push.models import PushPreference, Subscription

    today = dt.date.today()
    department = db.scalar(select(Department.code).order_by(Department.id))
    category = db.scalar(select(Category.code).where(Category.parent_id.is_not(None)).order_by(Category.id))
    policy = catalog_service.create_policy(
        db=db,
        policy_in=PolicyIn(
            title=f"广东省{KEYWORD}企业发展扶持资金（基准测试）",
            doc_number="粤测〔2026〕1号",
            issuing_department=department,
            handling_department=department,
            level="provincial",
            policy_type="application",
            region_codes=["440000"],
            categories=[category],
            summary="对在广东省登记、从业人数 5 人以上、成立满一年的企业给予一次性资金扶持。",
            interpreter_name="张敏",
            interpreter_contact="020-88880000",
            apply_start_on=today - dt.timedelta(days=1),
            apply_end_on=today + dt.timedelta(days=60),
            valid_to_on=today + dt.timedelta(days=365),
            max_amount=20,
            rules=RULES,
        ),
        actor=None,
    )
    ids = np.fromiter(db.scalars(select(Enterprise.id)), dtype=np.int64)
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(ids)
    n = len(ids)
    personal = shuffled[: n // 100]
    unsubscribed = shuffled[n // 100 : n // 100 + n // 200]
    kinds = (["inbox", "email"], ["inbox", "webhook"], ["inbox", "sms"], ["inbox", "email", "sms"])
    prefs = []
    for i, eid in enumerate(personal.tolist()):
        prefs.append(
            {
                "enterprise_id": eid,
                "channels": kinds[i % len(kinds)],
                "frequency": "daily" if i % 5 == 0 else "instant",
                "quiet_start": "22:00",
                "quiet_end": "08:00",
                "weekly_cap": 10,
                "email": f"firm{eid}@bench.example",
                "phone": "13800138000",
                "webhook_url": f"http://127.0.0.1:9/hook/{eid}",
                "webhook_secret": "whsec_bench",
                "webhook_format": "huiqi",
                "unsubscribed_all": False,
            }
        )
    for eid in unsubscribed.tolist():
        prefs.append(
            {
                "enterprise_id": eid,
                "channels": ["inbox"],
                "frequency": "instant",
                "quiet_start": "22:00",
                "quiet_end": "08:00",
                "weekly_cap": 10,
                "webhook_format": "huiqi",
                "unsubscribed_all": True,
            }
        )
    db.execute(insert(PushPreference), prefs)
    subscribers = rng.choice(ids, size=n // 50, replace=False).tolist()
    db.execute(
        insert(Subscription),
        [{"enterprise_id": e, "kind": "keyword", "value": KEYWORD, "active": True} for e in subscribers],
    )
    hidden = rng.choice(ids, size=max(1, n * 3 // 1000), replace=False).tolist()
    db.execute(
        insert(Feedback),
        [{"enterprise_id": e, "policy_id": policy.id, "action": "not_relevant", "source": "push"} for e in hidden],
    )
    return policy.id, {
        "personal_preferences": len(personal),
        "unsubscribed": len(unsubscribed),
        "keyword_subscribers": len(subscribers),
        "not_relevant": len(hidden),
    }


# ---------------------------------------------------------------- one size


def sample_check(db: Any, policy_id: int, *, sample: int, seed: int) -> dict[str, Any]:
    """Compare who got an inbox row with the scalar engine and the documented rules, on a sample of firms."""
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from core.config import get_settings
    from matcher import eligibility
    from matcher.models import Feedback
    from profiles.models import Enterprise
    from push.models import Delivery, PushPreference, Subscription
    from push.rules import local_tz

    ids = list(db.scalars(select(Enterprise.id)))
    picked = sorted(random.Random(seed).sample(ids, min(sample, len(ids))))
    today = dt.datetime.now(local_tz(get_settings())).date()
    got = set(
        db.scalars(
            select(Delivery.enterprise_id).where(
                Delivery.policy_id == policy_id, Delivery.kind == "new_match", Delivery.channel == "inbox"
            )
        )
    )
    unsubscribed = set(
        db.scalars(select(PushPreference.enterprise_id).where(PushPreference.unsubscribed_all.is_(True)))
    )
    subscribed = set(db.scalars(select(Subscription.enterprise_id).where(Subscription.value == KEYWORD)))
    hidden = set(db.scalars(select(Feedback.enterprise_id).where(Feedback.policy_id == policy_id)))
    disagree = []
    statuses: dict[str, int] = {}
    for firm in db.scalars(
        select(Enterprise).where(Enterprise.id.in_(picked)).options(selectinload(Enterprise.qualifications))
    ):
        status = eligibility.evaluate(RULES, eligibility.profile_facts(firm, today), today=today).status
        statuses[status] = statuses.get(status, 0) + 1
        wanted = (status == eligibility.ELIGIBLE or (status == eligibility.LIKELY and firm.id in subscribed)) and (
            firm.id not in hidden and firm.id not in unsubscribed
        )
        if wanted != (firm.id in got):
            disagree.append(firm.id)
    return {"firms": len(picked), "statuses": statuses, "disagree": disagree[:10], "agree": not disagree}


def run_size(firms: int, *, seed: int, emit: Path | None = None) -> dict[str, Any]:
    """Set up one size and measure (a) and (b) in this process; write partial results to emit after each step."""
    record: dict[str, Any] = {"firms": firms, "seed": seed, "rules": RULES, "phases": {}, "rss_start_mb": rss_mb()}

    def save(stage: str) -> None:
        record["completed"] = stage
        if emit is not None:
            emit.write_text(json.dumps(record, ensure_ascii=False, default=str))

    work = Path(tempfile.mkdtemp(prefix="huiqi-fanout-"))
    try:
        with phase(record["phases"], "setup") as entry:
            cached, built_s = dataset(firms, seed)
            entry["dataset_built_s"] = built_s  # None: taken from the cache
            started = time.perf_counter()
            db_path = work / "huiqi.db"
            shutil.copyfile(cached, db_path)
            entry["copy_s"] = round(time.perf_counter() - started, 1)
            url = f"sqlite:///{db_path}"
            # The job reads its settings from the environment, as in a worker.
            os.environ.update(
                {
                    "HUIQI_ENV": "development",
                    "HUIQI_DATABASE_URL": url,
                    "HUIQI_VAR_DIR": str(work / "var"),
                    "HUIQI_LOG_LEVEL": "WARNING",
                }
            )
            from core import migrate
            from core.db import get_database

            migrate.upgrade(url=url)
            database = get_database()
            with database.session() as db:
                policy_id, state = prepare(db, seed=seed)
            entry.update(state)
        save("setup")

        from sqlalchemy import func, select, text

        from catalog import service as catalog_service
        from core import scheduler
        from core.config import get_settings
        from matcher import batch as matcher_batch
        from push import jobs
        from push.models import Delivery
        from push.rules import local_tz

        with phase(record["phases"], "fan_out") as entry:
            started = time.perf_counter()
            with database.session() as db:  # the publish route's transaction
                policy = catalog_service.publish_policy(db=db, policy_id=policy_id, actor=None)
                scheduler.enqueue(
                    jobs.FAN_OUT_JOB,
                    db=db,
                    kwargs={"policy_id": policy.id},
                    job_id=f"fanout-{policy.id}-v{policy.version}",
                )
            published = time.perf_counter()
            counts = jobs.fan_out_job(policy_id)
            finished = time.perf_counter()
            entry.update(
                {
                    "publish_s": round(published - started, 3),
                    "job_s": round(finished - published, 3),
                    "total_s": round(finished - started, 3),
                    "counts": counts,
                    "rows_per_s": round(counts["created"] / (finished - started)),
                }
            )
        save("fan_out")

        with database.session() as db:
            rows = db.scalar(select(func.count()).select_from(Delivery).where(Delivery.policy_id == policy_id)) or 0
            inbox = db.scalar(
                select(func.count())
                .select_from(Delivery)
                .where(Delivery.policy_id == policy_id, Delivery.channel == "inbox")
            )
        record["rows"] = {"all": rows, "inbox": inbox}

        with phase(record["phases"], "eligibility") as entry, database.session() as db:
            policy = catalog_service.get_policy(db=db, policy_id=policy_id)
            today = dt.datetime.now(local_tz(get_settings())).date()
            started = time.perf_counter()
            ids, status = matcher_batch.judge_all(db=db, rules=policy.rules, today=today)
            entry["eligibility_s"] = round(time.perf_counter() - started, 3)
            entry["statuses"] = {str(code): int((status == code).sum()) for code in (0, 1, 2)}
        save("eligibility")

        with phase(record["phases"], "baseline") as entry, database.engine.connect() as conn:
            conn.execute(
                text(
                    f"CREATE TEMP TABLE bench_rows AS SELECT {DELIVERY_COLUMNS} FROM push_delivery "
                    "WHERE policy_id = :pid AND kind = 'new_match'"
                ),
                {"pid": policy_id},
            )
            conn.commit()
            copied_columns = DELIVERY_COLUMNS.replace(" kind,", f" '{BASELINE_KIND}',", 1)
            started = time.perf_counter()
            result = conn.execute(
                text(f"INSERT INTO push_delivery ({DELIVERY_COLUMNS}) SELECT {copied_columns} FROM bench_rows")
            )
            conn.commit()
            seconds = time.perf_counter() - started
            entry.update(
                {"rows": result.rowcount, "baseline_s": round(seconds, 3), "rows_per_s": round(rows / seconds)}
            )
            conn.execute(text("DROP TABLE bench_rows"))
            conn.commit()
        save("baseline")

        with phase(record["phases"], "checks") as entry:
            with database.session() as db:
                entry["sample"] = sample_check(db, policy_id, sample=SAMPLE_FIRMS, seed=seed)
            rerun = jobs.fan_out_job(policy_id)
            entry["rerun_created"] = rerun["created"]
            entry["inbox_equals_decided"] = inbox == record["phases"]["fan_out"]["counts"]["enterprises"]
            with database.engine.connect() as conn:
                entry["guard_left"] = conn.execute(
                    text(f"SELECT count(*) FROM {scheduler.JOBS_TABLE} WHERE id LIKE 'once:fanout-guard-%'")
                ).scalar_one()
        save("checks")
        database.dispose()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    record["peak_rss_mb"] = max(
        [peak_rss_mb() or 0.0] + [p.get("peak_rss_mb") or 0.0 for p in record["phases"].values()]
    )
    fan = record["phases"]["fan_out"]
    base = record["phases"]["baseline"]
    record["ratio_fanout_over_baseline"] = ratio(fan["total_s"], base["baseline_s"])
    if firms >= 1_000_000:
        record["meets_1m_target"] = fan["total_s"] <= TARGET_1M_S
    save("done")
    return record


# ---------------------------------------------------------------- sizes in subprocesses


def run_in_subprocess(firms: int, *, seed: int, timeout: float) -> dict[str, Any]:
    """Run one size in a fresh interpreter; keep what it finished if it times out."""
    emit = ROOT / "bench" / "results" / f".fanout-{firms}-{os.getpid()}.json"
    emit.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "bench.fanout",
        "--firms",
        str(firms),
        "--seed",
        str(seed),
        "--emit",
        str(emit),
        "--no-write",
    ]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT)
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.kill()
        proc.wait()
    record = json.loads(emit.read_text()) if emit.exists() else {"firms": firms, "phases": {}}
    emit.unlink(missing_ok=True)
    record["wall_s"] = round(time.perf_counter() - started, 1)
    record["returncode"] = proc.returncode
    if timed_out:
        record["timed_out"] = f"stopped after {timeout:.0f} s (last finished step: {record.get('completed', 'none')})"
    elif proc.returncode != 0:
        record["failed"] = f"exit code {proc.returncode}"
    return record


def tables(records: Sequence[dict[str, Any]]) -> list[tuple[str, list[str], list[list[Any]]]]:
    """Build the summary tables of one or more sizes."""
    rows = []
    checks = []
    for r in records:
        ph = r.get("phases", {})
        size = f"{r['firms']:,} firms"
        fan, base, elig = ph.get("fan_out", {}), ph.get("baseline", {}), ph.get("eligibility", {})
        note = r.get("timed_out") or r.get("failed") or ""
        counts = fan.get("counts", {})
        rows.append(
            [
                size,
                "(a) publish → inbox rows written",
                fan.get("total_s"),
                counts.get("created"),
                fan.get("rows_per_s"),
                fan.get("peak_rss_mb"),
                r.get("ratio_fanout_over_baseline"),
                note
                or f"publish {fan.get('publish_s')} s + job {fan.get('job_s')} s; {counts.get('enterprises')} firms; "
                f"RSS {fan.get('rss_before_mb')} MB before",
            ]
        )
        rows.append(
            [
                size,
                "    eligibility alone (load facts + evaluate_many)",
                elig.get("eligibility_s"),
                None,
                None,
                elig.get("peak_rss_mb"),
                None,
                f"statuses 0/1/2: {elig.get('statuses')}",
            ]
        )
        rows.append(
            [
                size,
                "(b) baseline: INSERT … SELECT of the same rows",
                base.get("baseline_s"),
                base.get("rows"),
                base.get("rows_per_s"),
                base.get("peak_rss_mb"),
                1.0,
                "same table and indexes, one statement",
            ]
        )
        setup = ph.get("setup", {})
        rows.append(
            [
                size,
                "setup (not timed above)",
                setup.get("seconds"),
                None,
                None,
                setup.get("peak_rss_mb"),
                None,
                f"dataset built {setup.get('dataset_built_s')} s (None: cached), copy {setup.get('copy_s')} s",
            ]
        )
        chk = ph.get("checks", {})
        sample = chk.get("sample", {})
        checks.append([size, "inbox rows = firms decided on", chk.get("inbox_equals_decided"), str(r.get("rows"))])
        checks.append(
            [size, "sample agrees with the scalar engine", sample.get("agree"), f"{sample.get('firms')} firms"]
        )
        checks.append(
            [size, "second run writes nothing", chk.get("rerun_created") == 0, f"created {chk.get('rerun_created')}"]
        )
        checks.append([size, "crash guard removed after the run", chk.get("guard_left") == 0, ""])
        if "meets_1m_target" in r:
            checks.append([size, f"≤ {TARGET_1M_S:.0f} s at 1M firms", r["meets_1m_target"], f"{fan.get('total_s')} s"])
        checks.append([size, "peak RSS of the size's process (MB)", r.get("peak_rss_mb"), ""])
    return [
        (
            "Fan-out: wall time (s), rows, rows/s, phase peak RSS (MB), ratio to the baseline",
            ["size", "measurement", "seconds", "rows", "rows/s", "peak MB", "(a)/(b)", "notes"],
            rows,
        ),
        ("Fan-out: checks", ["size", "check", "result", "detail"], checks),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fan-out benchmark (quick size, --full sizes, or one --firms size in this process)."""
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="100k and 1M firms instead of 100k")
    parser.add_argument("--firms", type=int, help="one size, run in this process")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--timeout", type=float, default=SIZE_TIMEOUT_S, help="seconds allowed per size")
    parser.add_argument("--emit", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.firms:
        record = run_size(args.firms, seed=args.seed, emit=args.emit)
        if not args.no_write:
            write_result(f"fanout-{args.firms}", {"sizes": [record]}, tables([record]))
        return 0
    records = []
    for firms in FULL_SIZES if args.full else QUICK_SIZES:
        print(f"fanout: {firms:,} firms …", flush=True)
        records.append(run_in_subprocess(firms, seed=args.seed, timeout=args.timeout))
    write_result("fanout-full" if args.full else "fanout", {"sizes": records}, tables(records))
    return 0 if all(r.get("completed") == "done" for r in records) else 1


if __name__ == "__main__":
    raise SystemExit(main())
