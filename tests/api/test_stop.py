"""`huiqi worker` and `huiqi serve` stop within 10 s of SIGTERM while a re-match runs; the run resumes later.

A fresh SQLite database with synthetic policies and firms and precomputed vectors (as the benchmarks
build it) and no stored matches: the catch-up a worker starts with is a full run, in chunks of 100
firms. Once it has written a chunk, SIGTERM goes to the process; it must exit within 10 s, leave
the run unfinished (so it really was stopped mid-run) and, started again, finish it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from bench import dataset
from core.db import Database
from matcher.models import MatchRun
from tests.web.browser_support import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
POLICIES = 200
FIRMS = 4_000
ENV = {"HUIQI_MATCH_CHUNK_WIDTH": "100", "HUIQI_LOG_LEVEL": "INFO"}


def _spawn(url: str, var_dir: Path, log: Path, *args: str, **env: str) -> subprocess.Popen[bytes]:
    fh = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", *args],
        cwd=ROOT,
        env=dataset.huiqi_env(url, var_dir, **ENV, **env),
        stdout=fh,
        stderr=fh,
    )


def _run(url: str) -> tuple[str, int, int] | None:
    database = Database(url)
    try:
        with database.session() as db:
            row = db.execute(
                select(MatchRun.status, MatchRun.chunks_done, MatchRun.chunks).order_by(MatchRun.id.desc()).limit(1)
            ).first()
        return None if row is None else (row[0], row[1], row[2])
    finally:
        database.dispose()


def _wait(pred: Callable[[], bool], timeout: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        if proc.poll() is not None:
            pytest.fail(f"process exited ({proc.returncode}) early:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout} s:\n{log.read_text()[-3000:]}")


def _stop_within(proc: subprocess.Popen[bytes], seconds: float, log: Path) -> float:
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"still running {seconds} s after SIGTERM:\n{log.read_text()[-3000:]}")
    return time.monotonic() - sent


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _check(url: str, var_dir: Path, log: Path, args: list[str], **env: str) -> None:
    proc = _spawn(url, var_dir, log, *args, **env)
    try:
        # Under way: at least one chunk written, not all.
        _wait(lambda: (r := _run(url)) is not None and r[1] >= 1, 600, proc, log)
        took = _stop_within(proc, 10.0, log)
    finally:
        _kill(proc)
    run = _run(url)
    assert run is not None and run[0] == "running" and run[1] < run[2], (run, took)
    assert proc.returncode in (0, -signal.SIGTERM), (proc.returncode, log.read_text()[-3000:])
    # Started again, the worker resumes the same run and finishes it.
    again = _spawn(url, var_dir, log, "worker")
    try:
        _wait(lambda: (r := _run(url)) is not None and r[0] == "done", 600, again, log)
        _stop_within(again, 10.0, log)
    finally:
        _kill(again)
    done = _run(url)
    assert done is not None and done[1] == done[2] == run[2]


@pytest.fixture
def site(tmp_path: Path) -> tuple[str, Path]:
    url = f"sqlite:///{(tmp_path / 'huiqi.db').as_posix()}"
    var_dir = tmp_path / "var"
    dataset.build(url, var_dir, policies=POLICIES, firms=FIRMS, seed=5)
    return url, var_dir


def test_worker_stops_within_10_s_of_sigterm_mid_rematch_and_resumes(site: tuple[str, Path], tmp_path: Path) -> None:
    url, var_dir = site
    _check(url, var_dir, tmp_path / "worker.log", ["worker"])


def test_serve_with_the_scheduler_in_process_stops_within_10_s_mid_rematch(
    site: tuple[str, Path], tmp_path: Path
) -> None:
    url, var_dir = site
    # `huiqi worker` queues the catch-up when it starts; an API running the scheduler runs what is queued.
    from core import scheduler
    from matcher.jobs import QUEUED_REMATCH_ID, REMATCH_JOB

    database = Database(url)
    try:
        scheduler.enqueue(REMATCH_JOB, db=database.engine, job_id=QUEUED_REMATCH_ID)
    finally:
        database.dispose()
    port = str(free_port())
    _check(
        url,
        var_dir,
        tmp_path / "serve.log",
        ["serve", "--host", "127.0.0.1", "--port", port, "--workers", "1"],
        HUIQI_SCHEDULER_ENABLED="true",
    )
