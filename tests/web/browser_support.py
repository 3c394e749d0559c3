"""What the browser tests share: Debian's Chromium, its launch flags and the app served on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from api.app import create_app
from core.config import Settings
from core.db import Database

CHROMIUM = Path("/usr/bin/chromium")
SIZES = {"phone": (390, 844), "desktop": (1366, 900)}
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-quic",
    "--no-first-run",
    "--metrics-recording-only",
    "--lang=zh-CN",
]


def require_chromium() -> None:
    """Skip without Debian's chromium, except under CI=true, where its absence fails the test."""
    if CHROMIUM.exists():
        return
    why = "Debian's chromium is not installed (/usr/bin/chromium); `make test` installs it"
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)


def free_port() -> int:
    """Return a TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveSite:
    """The app served by uvicorn in a thread, with its database."""

    def __init__(self, settings: Settings, database: Database, matcher: Any, *, lifespan: str = "on") -> None:
        import uvicorn

        self.database = database
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        app = create_app(settings, database=database, matcher=matcher)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan=lifespan)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="web-test-server", daemon=True)

    def start(self) -> None:
        """Start serving; raise when the server has not started within 20 s."""
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        """Ask the server to stop and wait for its thread."""
        self.server.should_exit = True
        self.thread.join(timeout=10)


def watch_errors(tab: Any, *, expected_statuses_for: tuple[str, ...] = ("document",)) -> list[str]:
    """Collect what should fail a browser test: script errors, console errors and failed assets.

    Responses >= 400 to the resource types in `expected_statuses_for` are pages a test may mean to
    see (a form answered 422 or 403). A request the browser cancels itself because the page moved on
    (net::ERR_ABORTED, e.g. the favicon of a page left at once) is not a failure of the site.
    """
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource")
            else None
        ),
    )
    tab.on(
        "response",
        lambda r: (
            errors.append(f"{r.status} {r.url}")
            if r.status >= 400 and r.request.resource_type not in expected_statuses_for
            else None
        ),
    )
    tab.on(
        "requestfailed",
        lambda r: errors.append(f"failed {r.url} ({r.failure})") if "ERR_ABORTED" not in (r.failure or "") else None,
    )
    return errors


@contextmanager
def launched_chromium(artifacts: Path) -> Iterator[Any]:
    """Headless Debian Chromium under Playwright (nothing downloaded), with an emptied screenshot folder."""
    from playwright.sync_api import sync_playwright

    shutil.rmtree(artifacts, ignore_errors=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
