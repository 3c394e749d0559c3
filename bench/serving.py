"""Serving on the deployed path: `huiqi serve --workers N` (uvloop + httptools, scheduler off) over HTTP.

Set-up per policy count (bench/dataset.py): a migrated SQLite database (the default deployment)
with `huiqi synth`'s policies and firms and precomputed random vectors, then `huiqi match --all`
(this worktree's CLI) so every firm has its stored top-N (`firm_match`, one packed blob per firm).
Then `python -m api.cli serve --workers N` starts — the API as `huiqi serve` runs it, with the
scheduler off (its default; jobs belong to `huiqi worker`) — and nothing is embedded or matched
while measuring: the firms' matches are current, and warm-up (embedder, policy index) is waited for.

Measured in the same run, each from 1 client and from `--clients` concurrent clients where said, on
loopback: `/healthz` and the recommendations with wrk (`make wrk`; C, one thread, bounded by time,
~0.05 ms of CPU per request, each request with the next firm's token: bench/wrk_load.lua) when it is
installed, the rest (and everything with `--client python`) with asyncio + httpx, bounded by a request
count and a time limit (~2 ms of CPU per request, taken from the server's 2 cores). Both report the
client's own CPU per request:
- `/healthz` — the floor (framework, event loop, HTTP parsing);
- `GET /api/v1/enterprises/me/recommendations` — the firm's stored list (its stored-row count is
  reported), at 1 and N clients, and at every policy count given (cost flat in policies);
- `POST /api/v1/match/calculator` (rate limit raised for the bench), 1 client;
- `GET /api/v1/policies/search` with one query repeated (cached query vector) and with a new query
  every time (embedded by e5 in the request), against one e5 embedding in this process;
- a mixed load (recommendations, calculator, search, desk submissions, staff pages) while
  `huiqi worker` runs the catch-up (a share of the firms' profiles marked changed first): 5xx and
  "database is locked" counted in responses and in both processes' logs.
Server CPU per request is the servers' (master and workers) user+system time from /proc before and
after each run, divided by the requests; peak RSS is each server process's VmHWM.

Left out: TLS and a reverse proxy; network latency (loopback); the client's own CPU shares the
2 cores with the server (so req/s is a lower bound, much lower with the Python client); e5
embedding of the data (random vectors). `--workdir DIR` keeps each size's database and reuses it.

Run: ``python -m bench serving`` (quick: 1k and 10k policies, 20k firms) or
``python -m bench.serving --policies 10000 --firms 100000 --full``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench import dataset
from bench.common import ROOT, Stopwatch, free_port, peak_rss_mb, ratio, summarize_ms, write_result

API = "/api/v1"
RECS = f"{API}/enterprises/me/recommendations"
CALC = f"{API}/match/calculator"
SEARCH = f"{API}/policies/search"
CASES = f"{API}/desk/cases"
PASSWORD = "bench-password-1"
SECRET = "b" * 48
TARGETS = {
    "recommendations@1 p50 ms": 10.0,
    "recommendations@1 p99 ms": 30.0,
    "recommendations@N req/s": 300.0,
    "recommendations@N p99 ms": 200.0,
    "recommendation server CPU ms/req": 5.0,
    "calculator p50 ms": 30.0,
    "search cached p50 ms": 30.0,
}
# "Cost flat in the number of policies": a page of firms with full lists at the largest catalog costs
# at most this many times one at the smallest (bench.page_cost; the same work, measured in the same run).
FLAT = 1.2
SEARCH_WORDS = [
    "研发",
    "补贴",
    "高新技术",
    "人才",
    "贷款贴息",
    "出口",
    "数字化",
    "专精特新",
    "稳岗",
    "技改",
    "租金",
    "创业",
]
CALC_BODIES = [
    {"region_code": "442000", "employees": 80, "annual_revenue": 3000, "rd_expense": 200, "qualifications": ["高企"]},
    {"region_code": "440300", "industry_code": "C3872", "employees": 15, "annual_revenue": 500},
    {"region_code": "442000", "established_on": "2021-03-01", "employees": 300, "annual_revenue": 20000},
]


# ---------------------------------------------------------------- server processes


class Served:
    """A `huiqi serve` (or `huiqi worker`) process tree: start, CPU time, peak memory, stop."""

    def __init__(self, args: Sequence[str], *, url: str, var_dir: Path, log: Path, **env: str) -> None:
        self.log = log
        self._fh = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", *args],
            cwd=ROOT,
            env=dataset.huiqi_env(url, var_dir, **env),
            stdout=self._fh,
            stderr=self._fh,
        )

    def processes(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self.processes():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    def peak_rss(self) -> dict[str, float | None]:
        peaks = [peak_rss_mb(p.pid) for p in self.processes()]
        peaks = [p for p in peaks if p is not None]
        return {"max_process_mb": max(peaks, default=None), "sum_mb": round(sum(peaks), 1), "processes": len(peaks)}

    def stop(self) -> float:
        """SIGTERM; return seconds until it exited (killed after 20 s)."""
        started = time.perf_counter()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                for p in self.processes():
                    p.kill()
                self.proc.wait()
        self._fh.close()
        return round(time.perf_counter() - started, 2)

    def log_count(self, needle: str) -> int:
        return self.log.read_text(errors="replace").count(needle)


# ---------------------------------------------------------------- load


Request = Callable[[httpx.AsyncClient, int, int], Any]


async def _drive(
    base: str, make: Request, *, clients: int, max_requests: int, max_seconds: float, server: Served
) -> dict[str, Any]:
    """Send requests from `clients` loops until a limit is reached; return latencies, errors and CPU."""
    latencies: list[float] = []
    by_kind: dict[str, list[float]] = {}
    codes: Counter[str] = Counter()
    locked = 0
    budget = max_requests
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as client:
        deadline = time.perf_counter() + max_seconds
        counter = 0

        async def loop(k: int) -> None:
            nonlocal budget, locked, counter
            while budget > 0 and time.perf_counter() < deadline:
                budget -= 1
                counter += 1
                t0 = time.perf_counter()
                kind, coro = make(client, k, counter)
                try:
                    r = await coro
                    code: str = str(r.status_code)
                    if r.status_code >= 500 or "database is locked" in r.text:
                        locked += "database is locked" in r.text
                except httpx.TransportError as exc:
                    code = type(exc).__name__
                elapsed = time.perf_counter() - t0
                latencies.append(elapsed)
                by_kind.setdefault(kind, []).append(elapsed)
                codes[f"{kind} {code}"] += 1

        load0 = os.getloadavg()[0]
        cpu0 = server.cpu_seconds()
        own0 = time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(loop(k) for k in range(clients)))
        elapsed = time.perf_counter() - started
        own1 = time.process_time()
        cpu1 = server.cpu_seconds()
        load1 = os.getloadavg()[0]
    n = len(latencies)
    return {
        "clients": clients,
        "latency_ms": summarize_ms(latencies),
        "by_kind_ms": {k: summarize_ms(v) for k, v in by_kind.items()} if len(by_kind) > 1 else None,
        "status_codes": dict(codes),
        "server_5xx": sum(v for k, v in codes.items() if k.split()[-1].startswith("5")),
        "transport_errors": sum(v for k, v in codes.items() if not k.split()[-1].isdigit()),
        "database_locked": locked,
        "seconds": round(elapsed, 2),
        "throughput_rps": round(n / elapsed, 1) if elapsed else None,
        "server_cpu_ms_per_request": round((cpu1 - cpu0) * 1000 / n, 3) if n else None,
        # This process's CPU (the client and the psutil reads) while the requests ran.
        "client_cpu_ms_per_request": round((own1 - own0) * 1000 / n, 4) if n else None,
        "load_average_1min": [round(load0, 2), round(load1, 2)],  # before and after the run (shared machine)
        "client": "python",
    }


def drive(base: str, make: Request, **kwargs: Any) -> dict[str, Any]:
    return asyncio.run(_drive(base, make, **kwargs))


WRK_SCRIPT = Path(__file__).with_name("wrk_load.lua")


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def drive_wrk(
    base: str,
    path: str,
    bearer: Sequence[str],
    *,
    clients: int,
    seconds: float,
    server: Served,
    workdir: Path,
    cpus: str | None = None,
) -> dict[str, Any]:
    """GETs of one path from `clients` connections of one wrk thread for `seconds` (bounded by time).

    wrk (C, epoll) costs the shared cores far less per request than the Python client, so req/s is
    the server's. Each request carries the next of the `bearer` tokens (several firms). Reported as
    `drive` does, plus the client's own CPU (wrk's user+system time from wait4) per request; wrk
    counts non-2xx/3xx answers as a whole (`non_2xx`), not by code. `cpus` pins wrk with taskset.
    """
    tokens_file = workdir / "wrk-tokens.txt"
    tokens_file.write_text("".join(f"{t}\n" for t in bearer), encoding="utf-8")
    duration = max(1, round(seconds))
    cmd = ["wrk", "-t1", f"-c{clients}", f"-d{duration}s", "--timeout", "30s", "-s", str(WRK_SCRIPT)]
    cmd += [f"{base}{path}", "--", str(tokens_file)]
    if cpus:
        cmd = ["taskset", "-c", cpus, *cmd]
    load0 = os.getloadavg()[0]
    cpu0 = server.cpu_seconds()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    try:
        output = proc.stdout.read().decode(errors="replace")
    finally:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    cpu1 = server.cpu_seconds()
    load1 = os.getloadavg()[0]
    line = next((x for x in output.splitlines() if x.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no summary (exit {proc.returncode}): {output[-2000:]}")
    out = json.loads(line.removeprefix("WRK_JSON "))
    n, elapsed = out["requests"], out["duration_us"] / 1e6
    lat = {k: round(v / 1000, 3) for k, v in out["latency_us"].items()}
    errors = out["errors"]
    return {
        "client": "wrk",
        "clients": clients,
        "latency_ms": {"n": n, **lat},
        "non_2xx": errors["status"],
        "transport_errors": errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        "seconds": round(elapsed, 2),
        "throughput_rps": round(n / elapsed, 1) if elapsed else None,
        "server_cpu_ms_per_request": round((cpu1 - cpu0) * 1000 / n, 3) if n else None,
        "client_cpu_ms_per_request": round((usage.ru_utime + usage.ru_stime) * 1000 / n, 4) if n else None,
        "load_average_1min": [round(load0, 2), round(load1, 2)],
        "pinned_cpus": cpus,
    }


def get(path: str, headers: list[dict[str, str]], kind: str) -> Request:
    return lambda c, k, n: (kind, c.get(path, headers=headers[k % len(headers)]))


# ---------------------------------------------------------------- set-up


def prepare_size(tmp: Path, *, policies: int, firms: int, clients: int, seed: int) -> dict[str, Any]:
    """Build the database, match every firm, create users; return url, var dir, users and timings."""
    url = f"sqlite:///{(tmp / 'huiqi.db').as_posix()}"
    var_dir = tmp / "var"
    timings = dataset.build(url, var_dir, policies=policies, firms=firms, seed=seed)
    with Stopwatch() as sw:
        out = dataset.huiqi(url, var_dir, "match", "--all", timeout=4 * 3600)
    timings["match_all_s"] = round(sw.seconds, 2)
    match_line = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else ""

    from sqlalchemy import select

    from catalog.models import Department
    from core.db import Database
    from profiles.models import Enterprise

    database = Database(url)
    with database.session() as db:
        ids = list(db.scalars(select(Enterprise.id).order_by(Enterprise.id)))
        dept = db.scalar(select(Department.id).order_by(Department.id).limit(1))
    database.dispose()
    chosen = random.Random(seed).sample(ids, min(clients, len(ids)))
    specs = [{"username": f"firm-{k}", "role": "enterprise", "enterprise_id": eid} for k, eid in enumerate(chosen)]
    specs.append({"username": "curator-1", "role": "curator"})
    specs.append({"username": "desk-1", "role": "desk", "department_id": dept})
    with Stopwatch() as sw:
        user_ids = dataset.create_users(url, specs, PASSWORD)
    timings["users_s"] = round(sw.seconds, 2)
    return {
        "url": url,
        "var_dir": var_dir,
        "firm_ids": chosen,
        "user_ids": user_ids,
        "timings": timings,
        "match_all": match_line,
        "stored": dataset.stored_rows(url, chosen[0]),
    }


def prepared(tmp: Path, *, policies: int, firms: int, clients: int, seed: int) -> dict[str, Any]:
    """`prepare_size` once per directory: a later run with the same --workdir reuses the database.

    The reused database must be as the set-up left it: the mixed load marks firms changed and the
    worker re-matches them, so a reused directory is only current again after that catch-up ends.
    """
    marker = tmp / "prepared.json"
    if marker.exists():
        prep = json.loads(marker.read_text(encoding="utf-8"))
        if len(prep["firm_ids"]) >= clients:
            prep["var_dir"] = Path(prep["var_dir"])
            return {**prep, "reused": True}
        shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    prep = prepare_size(tmp, policies=policies, firms=firms, clients=clients, seed=seed)
    marker.write_text(json.dumps({**prep, "var_dir": str(prep["var_dir"])}, ensure_ascii=False), encoding="utf-8")
    return prep


def tokens(user_ids: Sequence[int], roles: Sequence[str]) -> list[str]:
    """Mint the access tokens the server accepts (the same secret), as signing in would."""
    from core import security
    from core.config import Settings

    settings = Settings(secret_key=SECRET)
    return [
        security.create_access_token(settings=settings, subject=str(uid), claims={"role": role})
        for uid, role in zip(user_ids, roles, strict=True)
    ]


WARMED = re.compile(r"warm-up (?:done in ([0-9.]+) s \(([0-9.]+) CPU s\)|failed)")


def wait_warmed(server: Served, workers: int, timeout: float = 900) -> list[dict[str, float | None]]:
    """Wait until every worker's warm-up has ended (its "warm-up done" or "warm-up failed" line in the log).

    /healthz answers as soon as a worker accepts connections, while its warm-up (policy set, embedder,
    policy index: ~17 CPU s per worker at 10k policies) still runs for ~25 s: a run started then
    measures the warm-up's CPU as the requests'.
    """
    deadline = time.monotonic() + timeout
    while True:
        ends = WARMED.findall(server.log.read_text(encoding="utf-8", errors="replace"))
        if len(ends) >= workers:
            return [{"s": float(s) if s else None, "cpu_s": float(c) if c else None} for s, c in ends]
        if server.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(
                f"{len(ends)} of {workers} workers warmed: {server.log.read_text(errors='replace')[-3000:]}"
            )
        time.sleep(0.5)


def warm(base: str, firm_headers: list[dict[str, str]], workers: int) -> dict[str, Any]:
    """Wait for warm-up (search answers fast in every worker) and touch every firm's list once.

    A new connection per request, so the requests reach every worker (a kept-alive connection stays
    with one; a worker that had not loaded its state then stalls the first run that reaches it).
    """
    out: dict[str, Any] = {}
    with httpx.Client(base_url=base, timeout=300, headers={"Connection": "close"}) as client:
        with Stopwatch() as sw:
            for _ in range(workers * 6):
                client.get(SEARCH, params={"q": "研发费用加计扣除"})
        out["search_warm_s"] = round(sw.seconds, 2)
        # Every measured firm's list should be current ("ready"); a stale one is judged when read.
        states: Counter[str] = Counter()
        with Stopwatch() as sw:
            first = client.get(RECS, headers=firm_headers[0])
            for h in firm_headers:
                r = client.get(RECS, headers=h)
                states[str(r.json().get("state")) if r.status_code == 200 else f"HTTP {r.status_code}"] += 1
        out["recommendation_warm_s"] = round(sw.seconds, 2)
        out["first_recommendation_status"] = first.status_code
        body = first.json() if first.status_code == 200 else {}
        out["items_per_response"] = len(body.get("items", []))
        out["response_bytes"] = len(first.content)
        out["stale_marker"] = {k: body.get(k) for k in ("stale", "state", "computing") if k in body}
        out["measured_firm_states"] = dict(states)
    return out


def e5_floor(runs: int = 20) -> dict[str, Any]:
    """One e5 query embedding in this process (2 threads, as the server's embedder)."""
    from matcher.embeddings import E5Embedder

    embedder = E5Embedder(num_threads=2)
    embedder.encode(["预热"], "query")
    times = []
    for k in range(runs):
        t0 = time.perf_counter()
        embedder.encode([f"企业{k}号想了解{SEARCH_WORDS[k % len(SEARCH_WORDS)]}政策的申报条件"], "query")
        times.append(time.perf_counter() - t0)
    return summarize_ms(times)


def mark_changed(url: str, share: float, seed: int) -> int:
    """Edit a share of firms' profiles as a firm saving its profile does, so the catch-up re-matches them.

    The edit changes facts the rules read (employees, revenue) and stamps `profile_updated_at`, as
    `profiles.service` does; the profile texts stay as they were, so the catch-up finds every vector
    stale by date, compares the texts' digests (the set-up stored the real ones) and embeds nothing.
    Firm vectors are not touched (an earlier version moved their `embedded_at` forward instead,
    which hid the catch-up's own staleness check from the measurement).
    """
    from sqlalchemy import func, select, update

    from core.db import Database, utcnow
    from profiles.models import Enterprise

    database = Database(url)
    with database.session() as db:
        ids = list(db.scalars(select(Enterprise.id)))
    picked = sorted(random.Random(seed).sample(ids, int(len(ids) * share)))
    now = utcnow()
    with database.writer_session() as db:
        for start in range(0, len(picked), 900):
            part = picked[start : start + 900]
            db.execute(
                update(Enterprise)
                .where(Enterprise.id.in_(part))
                .values(
                    employees=func.coalesce(Enterprise.employees, 0) + 5 + Enterprise.id % 40,
                    annual_revenue=func.coalesce(Enterprise.annual_revenue, 0) * 1.2 + 100,
                    profile_updated_at=now,
                )
            )
    database.dispose()
    return len(picked)


def match_status(base: str, headers: dict[str, str]) -> dict[str, Any]:
    r = httpx.get(f"{base}{API}/match/status", headers=headers, timeout=30)
    return r.json() if r.status_code == 200 else {"status_code": r.status_code}


# ---------------------------------------------------------------- main


def run(args: argparse.Namespace) -> dict[str, Any]:
    record: dict[str, Any] = {
        "firms": args.firms,
        "policy_counts": args.policies,
        "clients": args.clients,
        "workers": args.workers,
        "client": args.client,
        "limits": {"requests": args.requests, "seconds": args.seconds, "mixed_seconds": args.mixed_seconds},
        "sizes": {},
    }
    record["e5_query_embedding_ms"] = e5_floor()
    try:
        measure_sizes(args, record)
    except Exception as exc:  # keep what was measured; the error is part of the result
        record["error"] = f"{type(exc).__name__}: {exc}"[:3000]
        print(f"serving: failed: {record['error'][:500]}", flush=True)
    record["bench_peak_rss_mb"] = peak_rss_mb()
    record["targets"] = judge(record)
    return record


def measure_sizes(args: argparse.Namespace, record: dict[str, Any]) -> None:
    """Set up, serve and measure each policy count in turn, filling record["sizes"]."""
    for size_index, policies in enumerate(args.policies):
        last = size_index == len(args.policies) - 1
        if args.workdir:
            tmp = Path(args.workdir) / f"{policies}x{args.firms}-seed{args.seed}"
            tmp.mkdir(parents=True, exist_ok=True)
        else:
            tmp = Path(tempfile.mkdtemp(prefix="bench-serving-", dir=args.tmp))
        entry: dict[str, Any] = {"workdir": str(tmp)}
        record["sizes"][str(policies)] = entry
        print(f"serving: {policies:,} policies × {args.firms:,} firms: set-up …", flush=True)
        prep = prepared(tmp, policies=policies, firms=args.firms, clients=args.clients, seed=args.seed)
        entry["reused"] = prep.get("reused", False)
        entry.update(setup=prep["timings"], match_all=prep["match_all"], stored=prep["stored"])
        roles = ["enterprise"] * len(prep["firm_ids"]) + ["curator", "desk"]
        toks = tokens(prep["user_ids"], roles)
        firm_headers = [{"Authorization": f"Bearer {t}"} for t in toks[: len(prep["firm_ids"])]]
        curator = {"Authorization": f"Bearer {toks[-2]}"}
        curator_cookie = {"Cookie": f"huiqi_session={toks[-2]}"}

        port = args.port or free_port()
        base = f"http://127.0.0.1:{port}"
        server = Served(
            ["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(args.workers)],
            url=prep["url"],
            var_dir=prep["var_dir"],
            log=tmp / "server.log",
            HUIQI_SCHEDULER_ENABLED="false",
            # The deployed default: uvicorn's access log (a line per request) and the warm-up's end.
            HUIQI_LOG_LEVEL="INFO",
            HUIQI_CALCULATOR_PER_MINUTE="1000000",
            HUIQI_SEARCH_PER_MINUTE="1000000",
        )
        try:
            with Stopwatch() as sw:
                dataset.wait_healthy(base, server.proc, server.log, timeout=600)
            entry["server_start_s"] = round(sw.seconds, 2)
            with Stopwatch() as sw:
                entry["worker_warm_ups"] = wait_warmed(server, args.workers)
            entry["warm_up_wait_s"] = round(sw.seconds, 2)
            entry["warm"] = warm(base, firm_headers, args.workers)
            runs: dict[str, Any] = {}
            n_req, secs = args.requests, args.seconds
            firm_tokens = toks[: len(prep["firm_ids"])]
            plan: list[tuple[str, Request, int]] = []
            if args.client == "wrk":
                for name, path, bearer, clients in (
                    ("healthz", "/healthz", [], 1),
                    ("recommendations", RECS, firm_tokens[:1], 1),
                    ("healthz", "/healthz", [], args.clients),
                    ("recommendations", RECS, firm_tokens, args.clients),
                ):
                    print(f"serving: {name} × {clients} (wrk) …", flush=True)
                    runs[f"{name}@{clients}"] = drive_wrk(
                        base,
                        path,
                        bearer,
                        clients=clients,
                        seconds=secs,
                        server=server,
                        workdir=tmp,
                        cpus=args.wrk_cpus,
                    )
            else:
                plan += [
                    ("healthz", get("/healthz", [{}], "healthz"), 1),
                    ("recommendations", get(RECS, firm_headers[:1], "recommendations"), 1),
                    ("healthz", get("/healthz", [{}], "healthz"), args.clients),
                    ("recommendations", get(RECS, firm_headers, "recommendations"), args.clients),
                ]
            if last:
                plan += [
                    (
                        "calculator",
                        lambda c, k, n: ("calculator", c.post(CALC, json=CALC_BODIES[n % len(CALC_BODIES)])),
                        1,
                    ),
                    ("search_cached", lambda c, k, n: ("search", c.get(SEARCH, params={"q": "研发费用加计扣除"})), 1),
                    (
                        "search_new",
                        lambda c, k, n: (
                            "search",
                            c.get(
                                SEARCH,
                                params={"q": f"第{n}家{SEARCH_WORDS[n % len(SEARCH_WORDS)]}企业{random.random():.6f}"},
                            ),
                        ),
                        1,
                    ),
                ]
            for name, make, clients in plan:
                limit = n_req if name != "search_new" else max(30, n_req // 10)
                print(f"serving: {name} × {clients} …", flush=True)
                runs[f"{name}@{clients}"] = drive(
                    base,
                    make,
                    clients=clients,
                    max_requests=limit * (1 if clients == 1 else 4),
                    max_seconds=secs,
                    server=server,
                )
            entry["runs"] = runs
            if last and args.mixed_seconds > 0:
                entry["mixed"] = mixed(args, prep, base, server, firm_headers, curator, curator_cookie, tmp)
            entry["server_peak_rss"] = server.peak_rss()
        finally:
            entry["server_stop_s"] = server.stop()
        entry["server_log_database_locked"] = server.log_count("database is locked")
        if not (last and args.mixed_seconds > 0):  # after the mixed load the marked firms are stale
            entry["page_cost"] = page_cost(tmp)
        # Each size's figures are kept as soon as they are measured: a later size may not finish.
        write_result("serving-partial", record)
        if not args.keep and not args.workdir:
            shutil.rmtree(tmp, ignore_errors=True)


def page_cost(workdir: Path) -> dict[str, Any]:
    """`bench.page_cost` on this size's database: in-process CPU per page for firms with full lists."""
    print("serving: page cost in process (firms with full lists) …", flush=True)
    done = subprocess.run(
        [sys.executable, "-m", "bench.page_cost", str(workdir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode:
        return {"error": done.stderr[-2000:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def mixed(
    args: argparse.Namespace,
    prep: dict[str, Any],
    base: str,
    server: Served,
    firm_headers: list[dict[str, str]],
    curator: dict[str, str],
    curator_cookie: dict[str, str],
    tmp: Path,
) -> dict[str, Any]:
    """The mixed load while `huiqi worker` runs the catch-up of a share of changed firms."""
    changed = mark_changed(prep["url"], args.changed_share, args.seed)
    worker = Served(["worker"], url=prep["url"], var_dir=prep["var_dir"], log=tmp / "worker.log")
    out: dict[str, Any] = {"changed_firms": changed}
    try:
        time.sleep(2)  # the worker takes its lease and starts the catch-up
        out["status_before"] = match_status(base, curator)
        words = SEARCH_WORDS

        def make(c: httpx.AsyncClient, k: int, n: int) -> tuple[str, Any]:
            r = n % 20
            h = firm_headers[k % len(firm_headers)]
            if r < 10:
                return "recommendations", c.get(RECS, headers=h)
            if r < 12:
                return "calculator", c.post(CALC, json=CALC_BODIES[n % len(CALC_BODIES)])
            if r < 15:
                return "search", c.get(SEARCH, params={"q": words[n % len(words)]})
            if r < 17:
                body = {"content": f"请问{words[n % len(words)]}政策怎么申报？第{n}次咨询", "kind": "consultation"}
                return "desk_submit", c.post(CASES, headers={**h, "Idempotency-Key": f"mixed-{n}"}, json=body)
            if r < 19:
                return "staff_page", c.get("/staff/policies", headers=curator_cookie)
            return "match_status", c.get(f"{API}/match/status", headers=curator)

        out["load"] = drive(
            base, make, clients=args.clients, max_requests=10**9, max_seconds=args.mixed_seconds, server=server
        )
        out["status_after"] = match_status(base, curator)
        out["worker_cpu_s"] = round(worker.cpu_seconds(), 2)
        out["worker_peak_rss"] = worker.peak_rss()
    finally:
        out["worker_stop_s"] = worker.stop()
    out["worker_log_database_locked"] = worker.log_count("database is locked")
    out["worker_log_errors"] = worker.log_count(" ERROR ")
    out["worker_log_tail"] = (tmp / "worker.log").read_text(errors="replace")[-1500:]
    return out


def judge(record: dict[str, Any]) -> dict[str, Any]:
    """Compare the largest size's figures with the issue's targets."""
    if not record["sizes"]:
        return {}
    size = list(record["sizes"].values())[-1]
    runs = size.get("runs", {})
    n = record["clients"]
    r1, rn = runs.get("recommendations@1", {}), runs.get(f"recommendations@{n}", {})
    got = {
        "recommendations@1 p50 ms": r1.get("latency_ms", {}).get("p50"),
        "recommendations@1 p99 ms": r1.get("latency_ms", {}).get("p99"),
        "recommendations@N req/s": rn.get("throughput_rps"),
        "recommendations@N p99 ms": rn.get("latency_ms", {}).get("p99"),
        "recommendation server CPU ms/req": r1.get("server_cpu_ms_per_request"),
        "calculator p50 ms": runs.get("calculator@1", {}).get("latency_ms", {}).get("p50"),
        "search cached p50 ms": runs.get("search_cached@1", {}).get("latency_ms", {}).get("p50"),
    }
    out = {}
    for key, target in TARGETS.items():
        value = got[key]
        higher_better = key.endswith("req/s")
        met = None if value is None else (value >= target if higher_better else value <= target)
        out[key] = {"target": target, "measured": value, "met": met}
    e5 = record["e5_query_embedding_ms"].get("p50")
    new = runs.get("search_new@1", {}).get("latency_ms", {}).get("p50")
    out["search new p50 ms ≤ e5 + 15"] = {
        "target": None if e5 is None else round(e5 + 15, 1),
        "measured": new,
        "met": None if new is None or e5 is None else new <= e5 + 15,
    }
    rn_cpu = rn.get("server_cpu_ms_per_request")
    out[f"recommendation server CPU ms/req at {n} clients"] = {
        "target": TARGETS["recommendation server CPU ms/req"],
        "measured": rn_cpu,
        "met": None if rn_cpu is None else rn_cpu <= TARGETS["recommendation server CPU ms/req"],
    }
    costs = [
        (policies, s["page_cost"].get("cpu_ms_per_page_best"))
        for policies, s in record["sizes"].items()
        if s.get("page_cost", {}).get("cpu_ms_per_page_best")
    ]
    if len(costs) >= 2:
        (small, a), (large, b) = costs[0], costs[-1]
        out[f"page CPU, full lists: {large} ÷ {small} policies"] = {
            "target": FLAT,
            "measured": round(b / a, 2),
            "met": b / a <= FLAT,
        }
    mixed_load = size.get("mixed", {}).get("load", {})
    if mixed_load:
        bad = mixed_load.get("server_5xx", 0) + mixed_load.get("database_locked", 0)
        bad += size.get("server_log_database_locked", 0) + size["mixed"].get("worker_log_database_locked", 0)
        out["mixed load 5xx + database locked"] = {"target": 0, "measured": bad, "met": bad == 0}
    return out


def tables(record: dict[str, Any]) -> list[tuple[str, list[str], list[list[Any]]]]:
    out = []
    for policies, size in record["sizes"].items():
        rows = []
        runs = size.get("runs", {})
        for key, e in runs.items():
            name, clients = key.split("@")
            lat = e["latency_ms"]
            floor = runs.get(f"healthz@{clients}", {})
            rows.append(
                [
                    name,
                    int(clients),
                    lat.get("n"),
                    lat.get("p50"),
                    lat.get("p99"),
                    e.get("throughput_rps"),
                    e.get("server_cpu_ms_per_request"),
                    e.get("client_cpu_ms_per_request"),
                    ratio(lat.get("p50"), floor.get("latency_ms", {}).get("p50")),
                    ratio(e.get("throughput_rps"), floor.get("throughput_rps")),
                    e.get("server_5xx") if e.get("client") != "wrk" else f"{e.get('non_2xx')} non-2xx",
                    "→".join(str(x) for x in e.get("load_average_1min", [])),
                ]
            )
        mixed_entry = size.get("mixed")
        if mixed_entry:
            e = mixed_entry["load"]
            for kind, lat in (e.get("by_kind_ms") or {}).items():
                rows.append(
                    [
                        f"mixed: {kind}",
                        record["clients"],
                        lat.get("n"),
                        lat.get("p50"),
                        lat.get("p99"),
                        None,
                        None,
                        None,
                        None,
                        None,
                        None,
                        None,
                    ]
                )
            rows.append(
                [
                    "mixed: all (worker catch-up running)",
                    record["clients"],
                    e["latency_ms"].get("n"),
                    e["latency_ms"].get("p50"),
                    e["latency_ms"].get("p99"),
                    e.get("throughput_rps"),
                    e.get("server_cpu_ms_per_request"),
                    e.get("client_cpu_ms_per_request"),
                    None,
                    None,
                    f"{e.get('server_5xx')} 5xx, {e.get('database_locked')} locked",
                    "→".join(str(x) for x in e.get("load_average_1min", [])),
                ]
            )
        stored = size.get("stored", {})
        out.append(
            (
                f"Serving, {int(policies):,} policies × {record['firms']:,} firms, {record['workers']} workers, "
                f"client {record.get('client')} "
                f"(stored for the measured firm: {stored.get('firm_match_rows')} firm_match row, "
                f"{stored.get('items')} items + {stored.get('near_misses')} near misses, {stored.get('payload_bytes')} B)",
                [
                    "endpoint",
                    "clients",
                    "n",
                    "p50 ms",
                    "p99 ms",
                    "req/s",
                    "server CPU ms/req",
                    "client CPU ms/req",
                    "p50 ÷ healthz",
                    "req/s ÷ healthz",
                    "5xx",
                    "load avg (1 min) before→after",
                ],
                rows,
            )
        )
    last = list(record["sizes"].values())[-1] if record["sizes"] else {}
    if last.get("mixed"):
        m = last["mixed"]
        before, after = m.get("status_before", {}), m.get("status_after", {})
        out.append(
            (
                "Mixed load: the worker's catch-up",
                ["item", "value"],
                [
                    ["firms marked changed", m.get("changed_firms")],
                    [
                        "firms current before / after the load",
                        f"{before.get('firms_current')} / {after.get('firms_current')}",
                    ],
                    [
                        "worker CPU s / peak RSS MB",
                        f"{m.get('worker_cpu_s')} / {m.get('worker_peak_rss', {}).get('max_process_mb')}",
                    ],
                    [
                        "'database is locked' in server / worker logs",
                        f"{last.get('server_log_database_locked')} / {m.get('worker_log_database_locked')}",
                    ],
                    [
                        "server peak RSS MB (largest process / all)",
                        f"{last.get('server_peak_rss', {}).get('max_process_mb')} / {last.get('server_peak_rss', {}).get('sum_mb')}",
                    ],
                ],
            )
        )
    trows = [
        [k, v["target"], v["measured"], {True: "met", False: "MISSED", None: "—"}[v["met"]]]
        for k, v in record["targets"].items()
    ]
    out.append(("Targets (largest size)", ["target", "goal", "measured", ""], trows))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serving", description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="100k firms, longer runs")
    parser.add_argument("--policies", type=lambda s: [int(x) for x in s.split(",")], help="e.g. 1000,10000")
    parser.add_argument("--firms", type=int)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--requests", type=int, help="request limit of a 1-client run (×4 for concurrent)")
    parser.add_argument("--seconds", type=float, help="time limit of each run")
    parser.add_argument("--mixed-seconds", type=float, help="length of the mixed load (0: skip)")
    parser.add_argument("--changed-share", type=float, default=0.2, help="firms marked changed for the catch-up")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--tmp", help="where the temporary databases go (default: the system's)")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--workdir",
        help="keep each size's database under this directory and reuse it in later runs (set up once)",
    )
    parser.add_argument("--port", type=int, help="the server's port (default: a free one)")
    parser.add_argument(
        "--client",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator of the /healthz and recommendation runs: wrk (`make wrk`) or the Python client; "
        "auto: wrk when installed",
    )
    parser.add_argument("--wrk-cpus", help="pin wrk to these CPUs with taskset (e.g. 1)")
    args = parser.parse_args(argv)
    args.policies = args.policies or [1_000, 10_000]
    args.firms = args.firms or (100_000 if args.full else 20_000)
    args.requests = args.requests or (1000 if args.full else 300)
    args.seconds = args.seconds or (60.0 if args.full else 20.0)
    args.mixed_seconds = args.mixed_seconds if args.mixed_seconds is not None else (90.0 if args.full else 30.0)
    if args.client == "auto":
        args.client = "wrk" if wrk_available() else "python"
    elif args.client == "wrk" and not wrk_available():
        parser.error("wrk is not installed (make wrk)")
    record = run(args)
    write_result("serving", record, tables(record))
    return 0 if "error" not in record else 1


if __name__ == "__main__":
    raise SystemExit(main())
