"""What the browser tests share: Debian's Chromium, its launch flags and the app served on 127.0.0.1."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from api.app import create_app
from auth.demo import DEMO_USERS
from core import migrate
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


def fresh_database(tmp_path_factory: pytest.TempPathFactory, name: str) -> Database:
    """An empty SQLite database in a temporary folder of its own, migrated to the head revision."""
    database = Database(f"sqlite:///{tmp_path_factory.mktemp(name) / 'huiqi.db'}")
    with database.engine.connect() as conn:
        migrate.upgrade(connection=conn)
    return database


def free_port() -> int:
    """Return a TCP port free on 127.0.0.1 now: one of HUIQI_TEST_PORTS ("8610-8629") when set, for a
    machine shared by several test runs each given its own ports; any otherwise."""
    wanted = os.environ.get("HUIQI_TEST_PORTS", "").strip()
    if wanted:
        lo, _, hi = wanted.partition("-")
        for port in range(int(lo), int(hi or lo) + 1):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
        raise RuntimeError(f"no free port in HUIQI_TEST_PORTS={wanted}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveSite:
    """The app served by uvicorn in a thread, with its database, and (as `huiqi worker` would) the
    matching catch-up running beside it every half second."""

    def __init__(
        self, settings: Settings, database: Database, matcher: Any, *, lifespan: str = "on", worker: bool = True
    ) -> None:
        import uvicorn

        self.settings = settings
        self.database = database
        self.matcher = matcher
        self._stop = threading.Event()
        self.worker = threading.Thread(target=self._catch_up, name="web-test-worker", daemon=True) if worker else None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        app = create_app(settings, database=database, matcher=matcher)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan=lifespan)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="web-test-server", daemon=True)

    def _catch_up(self) -> None:
        from matcher import runs

        while not self._stop.wait(0.5):
            try:
                runs.rematch_changed(self.database, self.matcher, should_stop=self._stop.is_set)
            except Exception:  # a failed round is retried on the next one, as the worker's would be
                logging.getLogger(__name__).exception("test worker: catch-up failed")

    def start(self) -> None:
        """Start serving (and the catch-up); raise when the server has not started within 20 s."""
        if self.worker is not None:
            self.worker.start()
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        """Ask the server (and the catch-up) to stop and wait for their threads."""
        self._stop.set()
        self.server.should_exit = True
        self.thread.join(timeout=10)
        if self.worker is not None:
            self.worker.join(timeout=30)


def reload_until(page: Any, selector: str, *, timeout: float = 60.0) -> None:
    """Reload the page until `selector` is on it, as a user would while "匹配计算中" is shown."""
    deadline = time.monotonic() + timeout
    while page.locator(selector).count() == 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"{selector} did not appear within {timeout:.0f} s")
        page.wait_for_timeout(500)
        page.reload()


def watch_errors(tab: Any, *, expected_statuses_for: tuple[str, ...] = ("document",)) -> list[str]:
    """Collect what should fail a browser test: script errors, console errors, CSP violations, failed assets.

    Responses >= 400 to the resource types in `expected_statuses_for` are pages a test may mean to
    see (a form answered 422 or 403). A request the browser cancels itself because the page moved on
    (net::ERR_ABORTED, e.g. the favicon of a page left at once) is not a failure of the site.
    """
    errors: list[str] = []
    # Whatever the Content-Security-Policy refuses (an inline handler, style or script) is an error too.
    tab.add_init_script(
        "document.addEventListener('securitypolicyviolation', e => console.error("
        "'CSP violation: ' + e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline') + ' at ' + e.sourceFile"
        " + ':' + e.lineNumber));"
    )
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
def desktop_tab(
    browser: Any,
    base_url: str,
    *,
    accept_dialogs: bool = False,
    expected_statuses_for: tuple[str, ...] = ("document",),
    ignore: Callable[[str], bool] = lambda error: False,
    **options: Any,
) -> Iterator[Any]:
    """A fresh browser context (no cookies) at desktop size; any page error the test did not expect fails it."""
    context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="zh-CN", base_url=base_url, **options)
    context.set_default_timeout(30_000)
    tab = context.new_page()
    errors = watch_errors(tab, expected_statuses_for=expected_statuses_for)
    if accept_dialogs:
        tab.on("dialog", lambda d: d.accept())
    yield tab
    context.close()
    unexpected = [e for e in errors if not ignore(e)]
    assert not unexpected, f"errors in the page: {errors}"


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


def add_page_style(page: Any, css: str) -> Any:
    """Apply test-only CSS as a constructed style sheet (the pages' CSP refuses an injected <style>).

    Returns a function that takes it off again.
    """
    page.evaluate(
        """css => { const sheet = new CSSStyleSheet(); sheet.replaceSync(css); sheet.__test = true;
                    document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet]; }""",
        css,
    )
    return lambda: page.evaluate(
        "() => { document.adoptedStyleSheets = document.adoptedStyleSheets.filter(s => !s.__test); }"
    )


# The demo users' passwords (auth/demo.py, development only), by username.
DEMO_PASSWORDS = {user[0]: user[1] for user in DEMO_USERS}


def sign_in(page: Any, username: str, password: str | None = None) -> None:
    """Sign in through the login form (signing out whoever was in); a demo user's password by default."""
    page.context.clear_cookies()
    page.goto("/login")
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(password or DEMO_PASSWORDS[username])
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(lambda url: "/login" not in url)
