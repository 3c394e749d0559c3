"""A real local HTTP receiver for webhook and SMS-gateway tests: records every POST and answers by path.

Paths: /ok (200 with an id), /status/<code> (that status; Retry-After on 429/503, Location on 3xx),
/sleep/<seconds>, /close (drops the connection), /reply/<name> (a canned answer set in ``replies``);
any other path answers 200. ``delay`` slows every answer (a slow receiver).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple


class Recorded(NamedTuple):
    """One request the receiver got; header names in lower case."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.server.delay:
            time.sleep(self.server.delay)
        with self.server.lock:
            self.server.requests.append(Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        parts = urllib.parse.urlsplit(self.path).path.strip("/").split("/")
        if parts[0] == "close":
            self.close_connection = True
            return
        if parts[0] == "sleep":
            time.sleep(float(parts[1]))
            self._answer(200, b'{"id":"late"}')
            return
        if parts[0] == "status":
            code = int(parts[1])
            headers = {"Retry-After": "120"} if code in (429, 503) else {}
            if 300 <= code < 400:
                headers["Location"] = "/ok"
            self._answer(code, "失败原因：测试".encode(), "text/plain; charset=utf-8", headers)
            return
        if parts[0] == "reply":
            status, payload = self.server.replies[parts[1]]
            self._answer(status, json.dumps(payload).encode())
            return
        self._answer(200, b'{"id":"rcv-1"}')

    def _answer(
        self, status: int, body: bytes, content_type: str = "application/json", headers: dict[str, str] | None = None
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
            pass


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[Recorded] = []
        self.replies: dict[str, tuple[int, Any]] = {}
        self.lock = threading.RLock()  # re-entrant: tests may hold it around bodies() or delivery_ids()
        self.delay = 0.0

    def url(self, path: str = "/ok") -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def bodies(self) -> list[Any]:
        """The JSON bodies received, in order."""
        with self.lock:
            return [r.json() for r in self.requests]

    def delivery_ids(self) -> list[str]:
        """The X-Huiqi-Delivery header of every request, in order."""
        with self.lock:
            return [r.headers.get("x-huiqi-delivery", "") for r in self.requests]


@contextmanager
def running() -> Iterator[Receiver]:
    """Start a receiver on a free loopback port; stop it afterwards."""
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
