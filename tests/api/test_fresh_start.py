"""A fresh start is usable at once: the first search answers within 5 s of the server saying it is up.

`huiqi serve` on a fresh SQLite database (synthetic policies, as the benchmarks build it) with the
default warm-up: the e5 model and the policy index load in the background, and until they are ready
search answers from the keyword index and says so (`mode`: keyword). Measured from the first 200 of
`/healthz` to the first search's answer.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bench import dataset
from tests.web.browser_support import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]


def test_first_search_answers_within_5_s_of_the_server_being_up(tmp_path: Path) -> None:
    url = f"sqlite:///{(tmp_path / 'huiqi.db').as_posix()}"
    var_dir = tmp_path / "var"
    dataset.build(url, var_dir, policies=300, firms=200, seed=11)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            cwd=ROOT,
            env=dataset.huiqi_env(url, var_dir, HUIQI_SCHEDULER_ENABLED="false"),
            stdout=fh,
            stderr=fh,
        )
    try:
        dataset.wait_healthy(base, proc, log, timeout=400)
        up = time.monotonic()
        r = httpx.get(f"{base}/api/v1/policies/search", params={"q": "研发费用补贴"}, timeout=60)
        took = time.monotonic() - up
        assert r.status_code == 200, r.text[:300]
        assert took <= 5.0, f"first search took {took:.2f} s after the server was up\n{log.read_text()[-2000:]}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
