"""Intake under load on the default SQLite, for real: a uvicorn server process, 200 concurrent submissions.

Each test builds a fresh SQLite file (migrated, the demo departments, one firm) and serves it with
`huiqi`'s app in a process of its own, as `make run` would. 200 threads post at once, some of them
with an idempotency key another thread also sends. The first test wants no 5xx at all, every
acknowledged case stored exactly once, and reports the acknowledgement times (p50 / p99, also in
test-artifacts/desk/intake_load.json). The second kills the server with SIGKILL in the middle of a
burst of 100 (its instant answers made slow, so cases sit between acknowledgement and outcome), restarts
it, lets the clients retry, and then runs the intake job: every acknowledged case exists once, and
every case gets exactly one outcome.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from auth.models import Role
from catalog import demo
from core import migrate, security
from core.config import Settings
from core.db import Database
from desk import flows
from desk.models import Case, CaseEvent
from tests import factories
from tests.web.browser_support import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "desk"
SUBMISSIONS = 200
DISTINCT_KEYS = 150
CRASH_SUBMISSIONS = 100
CRASH_KEYS = 75
SECRET = "t" * 48
OUTCOME_EVENTS = ("answered_instantly", "dispatched")

# The app as `huiqi serve` runs it; argv[2] > 0 makes every answer and routing that long (test ii).
SERVER = """
import sys, time
import uvicorn
from api.app import create_app
from core.config import get_settings
from desk import intake

delay = float(sys.argv[2])
if delay:
    decide = intake.decide

    def slow_decide(**kw):
        time.sleep(delay)
        return decide(**kw)

    intake.decide = slow_decide
uvicorn.run(create_app(get_settings()), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


@dataclass
class Site:
    """A fresh SQLite database with one firm, and what a server process needs to serve it."""

    tmp: Path
    url: str
    database: Database
    token: str
    enterprise_id: int
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    base: str = ""

    def start(self, *, delay: float = 0.0) -> subprocess.Popen[bytes]:
        """Start a server process on a free port and wait until it answers."""
        port = free_port()
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "HUIQI_ENV": "test",
            "HUIQI_SECRET_KEY": SECRET,
            "HUIQI_DATABASE_URL": self.url,
            "HUIQI_VAR_DIR": str(self.tmp / "var"),
            "HUIQI_MODELS_DIR": str(self.tmp / "models"),
            "HUIQI_SCHEDULER_ENABLED": "false",
            "HUIQI_WARM_UP": "false",
            "HUIQI_LOG_LEVEL": "WARNING",
        }
        log = open(self.tmp / f"server-{len(self.procs)}.log", "wb")  # noqa: SIM115 - the process writes to it
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(port), str(delay)], cwd=ROOT, env=env, stdout=log, stderr=log
        )
        self.procs.append(proc)
        deadline = time.monotonic() + 45
        while True:
            assert proc.poll() is None, f"the server died: {self.log_tail()}"
            assert time.monotonic() < deadline, "the server did not start within 45 s"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        self.base = f"http://127.0.0.1:{port}"
        return proc

    def log_tail(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-3000:] for p in sorted(self.tmp.glob("server-*.log")) if p.exists()
        )

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """A fresh SQLite file migrated to head, the demo departments and a firm; the servers stopped afterwards."""
    url = f"sqlite:///{tmp_path / 'huiqi.db'}"
    migrate.upgrade(url=url)
    database = Database(url)
    with database.session() as db:
        demo.load_taxonomy(db=db)
        user = factories.make_user(db, role=Role.enterprise)
        user_id, enterprise_id = user.id, user.enterprise_id
    settings = Settings(env="test", secret_key=SECRET)
    token = security.create_access_token(settings=settings, subject=str(user_id))
    made = Site(tmp=tmp_path, url=url, database=database, token=token, enterprise_id=enterprise_id)
    try:
        yield made
    finally:
        made.stop()
        database.dispose()


# ---------------------------------------------------------------- the burst

CONTENTS = (
    ("consultation", "高新技术企业认定需要准备哪些材料？研发费用占比怎么算？"),
    ("complaint", "补贴资金迟迟没有拨付，打了几次电话都说在走流程。"),
    ("help", "厂房消防验收一直排不上号，影响投产，希望协调。"),
    ("suggestion", "建议把研发费用加计扣除的备案改成网上一次办结。"),
)


def plan(seed: int, submissions: int = SUBMISSIONS, distinct: int = DISTINCT_KEYS) -> list[str]:
    """`submissions` over `distinct` keys (200 over 150): every key once, the rest again, in random order."""
    rng = random.Random(seed)
    keys = [f"load-{seed}-{i:03d}" for i in range(distinct)]
    sends = keys + rng.sample(keys, submissions - distinct)
    rng.shuffle(sends)
    return sends


def body_for(key: str) -> dict[str, str]:
    kind, content = CONTENTS[int(key.rsplit("-", 1)[1]) % len(CONTENTS)]
    return {"kind": kind, "title": f"并发提交 {key}", "content": f"{content}（{key}）"}


@dataclass
class Burst:
    """What the clients saw."""

    acknowledged: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    numbers: dict[int, str] = field(default_factory=dict)
    statuses: Counter[int] = field(default_factory=Counter)
    outcome_ids: set[int] = field(default_factory=set)  # cases whose response carried their outcome
    seconds: list[float] = field(default_factory=list)  # acknowledgement time of each acknowledged request
    transport_errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def run_burst(site: Site, sends: list[str], *, retry_for: float = 0.0, acked: threading.Event | None = None) -> Burst:
    """Post every submission from its own thread, all released at once; retry lost ones for `retry_for` seconds."""
    burst = Burst()
    gate = threading.Barrier(len(sends))

    def send(key: str) -> None:
        headers = {"Authorization": f"Bearer {site.token}", "Idempotency-Key": key}
        deadline = time.monotonic() + retry_for
        with httpx.Client(timeout=60) as http:
            gate.wait()
            while True:
                started = time.monotonic()
                try:
                    r = http.post(f"{site.base}/api/v1/desk/cases", json=body_for(key), headers=headers)
                except httpx.TransportError:
                    with burst.lock:
                        burst.transport_errors += 1
                    if time.monotonic() > deadline:
                        return
                    time.sleep(0.2)
                    continue
                took = time.monotonic() - started
                with burst.lock:
                    burst.statuses[r.status_code] += 1
                    if r.status_code in (200, 201):
                        case = r.json()
                        burst.acknowledged[key].add(case["id"])
                        burst.numbers[case["id"]] = case["number"]
                        burst.seconds.append(took)
                        if case["status"] != "submitted":
                            burst.outcome_ids.add(case["id"])
                        if acked is not None and len(burst.seconds) >= 40:
                            acked.set()
                return

    threads = [threading.Thread(target=send, args=(key,)) for key in sends]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=retry_for + 90)
    return burst


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def check_stored_once(site: Site, burst: Burst, keys: set[str], *, extra: int = 0) -> dict[int, Case]:
    """Every key made exactly one case, every acknowledged case is stored, with one submitted event each."""
    assert set(burst.acknowledged) == keys, "a submission was never acknowledged"
    assert all(len(ids) == 1 for ids in burst.acknowledged.values()), "one key made more than one case"
    with site.database.session() as db:
        burst_cases = select(Case).where(Case.enterprise_id == site.enterprise_id, Case.idempotency_key.in_(keys))
        cases = {c.id: c for c in db.scalars(burst_cases)}
        firm_cases = db.scalar(select(func.count()).select_from(Case).where(Case.enterprise_id == site.enterprise_id))
        submitted = db.scalar(
            select(func.count())
            .select_from(CaseEvent)
            .where(CaseEvent.kind == "submitted", CaseEvent.case_id.in_(select(burst_cases.subquery().c.id)))
        )
        db.expunge_all()
    acknowledged = {i for ids in burst.acknowledged.values() for i in ids}
    assert acknowledged <= set(cases), "an acknowledged case is missing"
    assert len(cases) == len(keys) and firm_cases == len(keys) + extra, "a duplicate case"
    assert {cases[i].number for i in acknowledged} == {burst.numbers[i] for i in acknowledged}
    assert {c.idempotency_key: c.id for c in cases.values()} == {
        k: next(iter(v)) for k, v in burst.acknowledged.items()
    }
    assert submitted == len(keys)
    return cases


def count_pending(site: Site) -> int:
    """Return how many cases still wait for their intake outcome."""
    with site.database.session() as db:
        return db.scalar(select(func.count()).select_from(Case).where(Case.intake_done_at.is_(None))) or 0


def burst_outcomes(burst: Burst) -> int:
    """Return how many distinct cases came back from the burst already answered or routed."""
    return len(burst.outcome_ids)


def outcome_events(site: Site) -> Counter[int]:
    """Return how many intake outcome events each case has."""
    with site.database.session() as db:
        rows = db.execute(
            select(CaseEvent.case_id, func.count())
            .where(CaseEvent.kind.in_(OUTCOME_EVENTS), CaseEvent.from_status == "submitted")
            .group_by(CaseEvent.case_id)
        ).all()
    return Counter({case_id: n for case_id, n in rows})


def finish_and_check(site: Site, cases: dict[int, Case], matcher, settings: Settings) -> int:  # type: ignore[no-untyped-def]
    """Run the intake job until nothing is pending; every case then has exactly one outcome. Return how many it finished."""
    report = flows.finish_pending(database=site.database, matcher=matcher, settings=settings, grace=dt.timedelta(0))
    assert report.failed_keys == []
    again = flows.finish_pending(database=site.database, matcher=matcher, settings=settings, grace=dt.timedelta(0))
    assert again.total == 0, "the job found work after finishing everything"
    with site.database.session() as db:
        rows = db.execute(select(Case.id, Case.status, Case.intake_done_at).where(Case.id.in_(list(cases)))).all()
    assert all(r.intake_done_at is not None and r.status in ("answered", "dispatched") for r in rows)
    events = outcome_events(site)
    assert set(cases) <= set(events) and set(events.values()) == {1}, "an outcome missing or recorded twice"
    return report.total


def write_artifact(name: str, figures: dict) -> None:  # type: ignore[type-arg]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / "intake_load.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[name] = figures
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2))


# ---------------------------------------------------------------- the tests


def test_200_concurrent_submissions_on_sqlite_no_5xx_each_case_once(site: Site, matcher, test_settings) -> None:  # type: ignore[no-untyped-def]
    site.start()
    warm = httpx.post(
        f"{site.base}/api/v1/desk/cases",
        json=body_for("warm-0"),  # a consultation: loads the embedder and the routing model
        headers={"Authorization": f"Bearer {site.token}", "Idempotency-Key": "warm-0"},
        timeout=60,
    )
    assert warm.status_code == 201, warm.text
    assert warm.json()["status"] != "submitted", "a single caller gets its answer or department at once"

    sends = plan(seed=1)
    started = time.monotonic()
    burst = run_burst(site, sends)
    wall = time.monotonic() - started
    figures = {
        "submissions": len(sends),
        "distinct_keys": DISTINCT_KEYS,
        "statuses": dict(burst.statuses),
        "errors_5xx": sum(n for s, n in burst.statuses.items() if s >= 500),
        "transport_errors": burst.transport_errors,
        "ack_p50_s": round(percentile(burst.seconds, 0.5), 3),
        "ack_p99_s": round(percentile(burst.seconds, 0.99), 3),
        "ack_max_s": round(max(burst.seconds), 3),
        "cases_with_outcome_in_response": len(burst.outcome_ids),
        "burst_wall_s": round(wall, 2),
    }
    print(f"\nintake burst on SQLite: {json.dumps(figures, ensure_ascii=False)}")
    write_artifact("burst", figures)
    assert burst.transport_errors == 0
    assert figures["errors_5xx"] == 0, site.log_tail()
    assert dict(burst.statuses) == {201: DISTINCT_KEYS, 200: SUBMISSIONS - DISTINCT_KEYS}
    cases = check_stored_once(site, burst, set(sends), extra=1)  # and the warm-up case
    site.stop()
    pending = count_pending(site)
    assert pending == DISTINCT_KEYS - burst_outcomes(burst), "a case without outcome that its response had"
    assert finish_and_check(site, cases, matcher, test_settings) == pending


def test_server_killed_mid_burst_loses_no_case_and_the_job_finishes_intake(site: Site, matcher, test_settings) -> None:  # type: ignore[no-untyped-def]
    first = site.start(delay=0.5)
    # Fewer than the first test: most of them are left to the job, which finishes them one by one.
    sends = plan(seed=2, submissions=CRASH_SUBMISSIONS, distinct=CRASH_KEYS)
    acked = threading.Event()
    restarted = threading.Event()

    timeline: dict[str, float] = {}
    t0 = time.monotonic()

    def kill_and_restart() -> None:
        acked.wait(timeout=60)
        timeline["kill_s"] = time.monotonic() - t0
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        site.start(delay=0.5)
        timeline["restarted_s"] = time.monotonic() - t0
        restarted.set()

    killer = threading.Thread(target=kill_and_restart)
    killer.start()
    burst = run_burst(site, sends, retry_for=60, acked=acked)
    killer.join(timeout=60)
    timeline["burst_done_s"] = time.monotonic() - t0
    assert restarted.is_set() and first.returncode == -signal.SIGKILL
    assert burst.transport_errors > 0, "the kill did not land in the middle of the burst"
    assert not [s for s in burst.statuses if s >= 500], site.log_tail()
    cases = check_stored_once(site, burst, set(sends))
    site.stop()
    pending = count_pending(site)
    assert pending, "no case was left between its acknowledgement and its outcome"
    started = time.monotonic()
    finished = finish_and_check(site, cases, matcher, test_settings)
    job_seconds = time.monotonic() - started
    assert finished == pending
    figures = {
        "job_s": round(job_seconds, 2),
        "statuses": dict(burst.statuses),
        "transport_errors": burst.transport_errors,
        "left_without_outcome": pending,
        **{k: round(v, 2) for k, v in timeline.items()},
        "finished_by_job": finished,
    }
    print(f"\nintake crash on SQLite: {json.dumps(figures, ensure_ascii=False)}")
    write_artifact("crash", figures)
