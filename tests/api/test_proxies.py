"""`huiqi serve` believes X-Forwarded-For only from HUIQI_TRUSTED_PROXIES: a rotating header cannot dodge the limits.

Real server processes (`python -m api.cli serve`) on a fresh SQLite file; requests come from 127.0.0.1,
which uvicorn trusted by default before this setting existed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core import migrate

ROOT = Path(__file__).resolve().parents[2]
BODY = {"qualifications": ["不存在的资质"]}  # refused after the rate-limit check, before any matching work


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('proxies') / 'huiqi.db'}"
    migrate.upgrade(url=url)
    return url


def _serve(database_url: str, tmp: Path, **env: str) -> Iterator[str]:
    port = _free_port()
    environment = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HUIQI_ENV": "test",
        "HUIQI_SECRET_KEY": "p" * 48,
        "HUIQI_DATABASE_URL": database_url,
        "HUIQI_VAR_DIR": str(tmp),
        "HUIQI_WARM_UP": "false",
        "HUIQI_CALCULATOR_PER_MINUTE": "3",
        **env,
    }
    log = open(tmp / f"serve-{port}.log", "wb")  # noqa: SIM115 - the process writes to it
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=ROOT,
        env=environment,
        stdout=log,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp / f"serve-{port}.log").read_text(errors="replace")[-2000:]
            assert time.monotonic() < deadline, "server did not start within 60 s"
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


def _rotating(base: str, n: int) -> list[int]:
    return [
        httpx.post(
            f"{base}/api/v1/match/calculator", json=BODY, headers={"X-Forwarded-For": f"203.0.113.{i}"}, timeout=30
        ).status_code
        for i in range(n)
    ]


def test_rotating_forwarded_for_does_not_bypass_the_limit_by_default(database_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    for base in _serve(database_url, tmp_path):
        assert _rotating(base, 5) == [422, 422, 422, 429, 429]


def test_a_configured_proxy_is_believed(database_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    for base in _serve(database_url, tmp_path, HUIQI_TRUSTED_PROXIES="127.0.0.1"):
        # Behind a trusted proxy each forwarded client has its own count.
        assert _rotating(base, 5) == [422] * 5
