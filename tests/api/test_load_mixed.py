"""A mixed load on a real server while a full re-match runs: no 5xx, no "database is locked".

For each backend (a fresh SQLite file; a private schema of the test PostgreSQL), the test fills a
database as the benchmarks do (synthetic policies and firms, precomputed random vectors), matches
every firm once, then starts `huiqi serve --workers 2` (scheduler off) on a random loopback port and
`huiqi match --all` with small chunks (many short write transactions) beside it. While the re-match
runs, 8 clients send recommendations, calculator calls, searches, desk submissions, staff pages and
match-status reads. Bounded: at most 90 s of load, then everything is stopped.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from bench import dataset
from core.db import Database
from tests.support.pg_schema import private_schema
from tests.web.browser_support import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
SECRET = "b" * 48  # what bench.dataset.huiqi_env gives the server
PASSWORD = "load-test-password"
POLICIES = 200
FIRMS = 1_500
CLIENTS = 8
MAX_LOAD_SECONDS = 90.0


@pytest.fixture(params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A database URL a separate process can use (SQLite file or a private PG schema) and a var dir."""
    if request.param == "sqlite":
        yield f"sqlite:///{(tmp_path / 'huiqi.db').as_posix()}", tmp_path / "var"
        return
    with private_schema("hq_load", needs="PostgreSQL load tests") as url:
        yield url, tmp_path / "var"


def _spawn(url: str, var_dir: Path, log: Path, *args: str, **env: str) -> subprocess.Popen[bytes]:
    fh = log.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", *args],
        cwd=ROOT,
        env=dataset.huiqi_env(url, var_dir, **env),
        stdout=fh,
        stderr=fh,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _load(base: str, firm: dict[str, str], curator: dict[str, str], rematch: subprocess.Popen[bytes]) -> dict:
    codes: Counter[str] = Counter()
    locked = 0
    bodies: list[str] = []
    during = 0  # requests answered while the re-match process was still running
    deadline = time.monotonic() + MAX_LOAD_SECONDS
    counter = 0
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:

        async def loop(k: int) -> None:
            nonlocal locked, counter, during
            while time.monotonic() < deadline and (rematch.poll() is None or counter < 120):
                counter += 1
                n = counter
                r = n % 6
                if r == 0:
                    kind, call = "recommendations", client.get("/api/v1/enterprises/me/recommendations", headers=firm)
                elif r == 1:
                    body = {"region_code": "442000", "employees": 50 + n % 100, "annual_revenue": 1000}
                    kind, call = "calculator", client.post("/api/v1/match/calculator", json=body)
                elif r == 2:
                    kind, call = (
                        "search",
                        client.get("/api/v1/policies/search", params={"q": ["研发补贴", "稳岗"][n % 2]}),
                    )
                elif r == 3:
                    body = {"content": f"请问研发补贴怎么申报？第{n}次", "kind": "consultation"}
                    headers = {**firm, "Idempotency-Key": f"load-{n % 40}"}
                    kind, call = "desk", client.post("/api/v1/desk/cases", json=body, headers=headers)
                elif r == 4:
                    kind, call = "staff_page", client.get("/staff/policies", headers=curator["cookie"])
                else:
                    kind, call = "status", client.get("/api/v1/match/status", headers=curator["bearer"])
                running = rematch.poll() is None
                try:
                    response = await call
                except httpx.TransportError as exc:  # a dropped connection is an error too
                    codes[f"{kind} {type(exc).__name__}"] += 1
                    bodies.append(f"{kind}: {type(exc).__name__} {exc}")
                    continue
                during += running
                codes[f"{kind} {response.status_code}"] += 1
                if "database is locked" in response.text:
                    locked += 1
                if response.status_code >= 500:
                    bodies.append(f"{kind}: {response.text[:300]}")

        await asyncio.gather(*(loop(k) for k in range(CLIENTS)))
    return {"codes": codes, "locked": locked, "bodies": bodies, "during": during}


def test_mixed_load_while_rematching_has_no_errors(site: tuple[str, Path], tmp_path: Path) -> None:
    url, var_dir = site
    dataset.build(url, var_dir, policies=POLICIES, firms=FIRMS, seed=11, log=lambda *_: None)
    dataset.huiqi(url, var_dir, "match", "--all", timeout=300)

    from catalog.models import Department
    from core import security
    from core.config import Settings
    from profiles.models import Enterprise

    database = Database(url)
    with database.session() as db:
        eid = db.scalar(select(Enterprise.id).order_by(Enterprise.id).limit(1))
        dept = db.scalar(select(Department.id).order_by(Department.id).limit(1))
    database.dispose()
    ids = dataset.create_users(
        url,
        [
            {"username": "firm-load", "role": "enterprise", "enterprise_id": eid},
            {"username": "curator-load", "role": "curator"},
            {"username": "desk-load", "role": "desk", "department_id": dept},
        ],
        PASSWORD,
    )
    settings = Settings(secret_key=SECRET)
    firm_token = security.create_access_token(settings=settings, subject=str(ids[0]), claims={"role": "enterprise"})
    cur_token = security.create_access_token(settings=settings, subject=str(ids[1]), claims={"role": "curator"})
    firm = {"Authorization": f"Bearer {firm_token}"}
    curator = {"bearer": {"Authorization": f"Bearer {cur_token}"}, "cookie": {"Cookie": f"huiqi_session={cur_token}"}}

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server_log, match_log = tmp_path / "server.log", tmp_path / "match.log"
    server = _spawn(
        url,
        var_dir,
        server_log,
        *("serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"),
        HUIQI_SCHEDULER_ENABLED="false",
        HUIQI_CALCULATOR_PER_MINUTE="100000",
        HUIQI_SEARCH_PER_MINUTE="100000",
    )
    rematch = None
    try:
        dataset.wait_healthy(base, server, server_log, timeout=400)  # a loaded CI machine starts slowly
        # Each worker loads what search needs before the load starts (warm-up runs in the background).
        for _ in range(4):
            assert httpx.get(f"{base}/api/v1/policies/search", params={"q": "研发补贴"}, timeout=120).status_code == 200
        # A full re-match in small chunks: a write transaction every 100 firms while the load runs.
        rematch = _spawn(url, var_dir, match_log, "match", "--all", HUIQI_MATCH_CHUNK_WIDTH="100")
        result = asyncio.run(_load(base, firm, curator, rematch))
        assert rematch.wait(timeout=300) == 0, match_log.read_text(errors="replace")[-2000:]
    finally:
        if rematch is not None:
            _stop(rematch)
        _stop(server)
    logs = server_log.read_text(errors="replace") + match_log.read_text(errors="replace")
    codes = result["codes"]
    assert not result["bodies"], (result["bodies"][:5], server_log.read_text(errors="replace")[-3000:])
    assert result["locked"] == 0
    assert "database is locked" not in logs
    assert result["during"] >= 30, f"too few requests overlapped the re-match: {result['during']} ({codes})"
    for kind, ok in (
        ("recommendations", "200"),
        ("calculator", "200"),
        ("search", "200"),
        ("staff_page", "200"),
        ("status", "200"),
    ):
        assert codes[f"{kind} {ok}"] > 0, codes
    assert codes["desk 201"] + codes["desk 200"] > 0, codes
    assert sum(v for k, v in codes.items() if not k.endswith((" 200", " 201"))) == 0, codes
