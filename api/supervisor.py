"""`huiqi run`: the API and the worker as two child processes, started and stopped together.

Ctrl-C or SIGTERM stops both (SIGTERM to each, SIGKILL after 10 s); if either exits, the other is
stopped too and the exit code says which failed. The URL and the demo accounts are printed once
the API answers, after the children's start-up lines, so they are the last thing a new user reads.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

from core.config import Settings

STOP_GRACE = 10.0


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "api.cli", *args], env=os.environ.copy())


def _wait_until_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as response:  # noqa: S310 - our own local server
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.3)
    return False


def _banner(settings: Settings, url: str) -> None:
    lines = [
        "",
        f"惠企已启动：{url}    接口文档：{url}/docs",
        "后台任务（匹配、推送、诉求时限）由 worker 进程运行；按 Ctrl-C 同时停止两者。",
    ]
    if settings.is_development and settings.demo_users:
        lines.append("演示账号：admin / curator / supervisor / desk_kjj / firm（口令见 README「Demo accounts」）")
    print("\n".join(lines), flush=True)


def run(settings: Settings, *, host: str, port: int) -> int:
    """Run the API and the worker until one exits or we are told to stop; return an exit code."""
    api = _spawn("serve", "--host", host, "--port", str(port))
    worker = _spawn("worker")
    children = {"api": api, "worker": worker}
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    url = f"http://{host}:{port}"
    try:
        if _wait_until_up(url, api):
            _banner(settings, url)
        while not stop.is_set():
            if any(p.poll() is not None for p in children.values()):
                break
            stop.wait(0.5)
    finally:
        for p in children.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for p in children.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for s, handler in previous.items():
            signal.signal(s, handler)
    failed = [name for name, p in children.items() if p.returncode not in (0, -signal.SIGTERM, None)]
    if failed and not stop.is_set():
        print(f"{'、'.join(failed)} 进程异常退出，已停止全部进程", file=sys.stderr, flush=True)
        return 1
    return 0
