"""Upload bodies against a real server: refused by their declared size, by the bytes streamed, and
from anonymous callers before the body is read.

uvicorn serves the app on 127.0.0.1 (a random port) over a migrated SQLite file; the client is a
plain socket, so the test controls exactly how much of a body it sends and sees when the server
answers without waiting for the rest.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auth.models import Role
from core import migrate, security
from core.config import Settings
from core.db import Database
from tests import factories
from tests.web.browser_support import LiveSite

LIMIT_MB = 1
BOUNDARY = "huiqi-test-boundary"


@pytest.fixture(scope="module")
def server(test_settings: Settings, matcher: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    settings = test_settings.model_copy(update={"upload_max_mb": LIMIT_MB})
    path: Path = tmp_path_factory.mktemp("upload-limits") / "huiqi.db"
    database = Database(f"sqlite:///{path}")
    with database.engine.connect() as conn:
        migrate.upgrade(connection=conn)
    with database.sessionmaker() as db:
        curator = factories.make_user(db, role=Role.curator)
        db.commit()
        token = security.create_access_token(settings=settings, subject=str(curator.id))
    live = LiveSite(settings, database, matcher, lifespan="off", worker=False)
    live.start()
    live.token = token  # type: ignore[attr-defined]
    yield live
    live.stop()
    database.dispose()


def _send(
    site: Any, head: dict[str, str], chunks: Iterator[bytes], path: str = "/api/v1/policies/import"
) -> tuple[int, dict[str, Any], int, float]:
    """Send a POST with the given headers and body chunks until the server answers.

    Returns (status, JSON body, bytes of body sent, seconds from the first byte to the answer).
    """
    sock = socket.create_connection(("127.0.0.1", site.port), timeout=20)
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{site.port}", *(f"{k}: {v}" for k, v in head.items())]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    started = time.monotonic()
    sent = 0
    sock.settimeout(0.05)
    response = b""
    try:
        for chunk in chunks:
            with contextlib.suppress(TimeoutError):
                response += sock.recv(65536)
            if response:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        sock.settimeout(10)
        while b"\r\n\r\n" not in response:
            part = sock.recv(65536)
            if not part:
                break
            response += part
        head_part, _, body = response.partition(b"\r\n\r\n")
        length = int(
            next(
                (ln.split(b":")[1] for ln in head_part.split(b"\r\n") if ln.lower().startswith(b"content-length")), b"0"
            )
        )
        while len(body) < length:
            part = sock.recv(65536)
            if not part:
                break
            body += part
    finally:
        sock.close()
    status = int(head_part.split(b" ")[1])
    return status, json.loads(body or b"{}"), sent, time.monotonic() - started


def _multipart_start() -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()


def _body(total: int, chunk: int = 64 * 1024) -> Iterator[bytes]:
    yield _multipart_start()
    for _ in range(total // chunk):
        yield b"a" * chunk


def test_anonymous_upload_declaring_a_huge_body_is_refused_at_once(server: Any) -> None:
    status, body, sent, seconds = _send(
        server,
        {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Content-Length": str(2 * 1024**3)},
        _body(2 * 1024**3),
    )
    assert status in (401, 413)
    assert body["code"] in ("not_authenticated", "payload_too_large") and body["message"]
    assert sent <= 256 * 1024 and seconds < 5  # answered after the headers, not after 2 GB


def test_anonymous_upload_without_a_length_is_refused_before_its_body_is_read(server: Any) -> None:
    def chunked() -> Iterator[bytes]:
        for piece in _body(50 * 1024**2):
            yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"

    status, body, sent, _ = _send(
        server, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Transfer-Encoding": "chunked"}, chunked()
    )
    assert status == 401 and body["code"] == "not_authenticated"
    assert sent < 2 * 1024**2  # of 50 MB offered


def test_signed_in_upload_past_the_limit_stops_while_streaming(server: Any) -> None:
    def chunked() -> Iterator[bytes]:
        for piece in _body(50 * 1024**2):
            yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"

    status, body, sent, _ = _send(
        server,
        {
            "Authorization": f"Bearer {server.token}",
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            "Transfer-Encoding": "chunked",
        },
        chunked(),
    )
    assert status == 413 and body["code"] == "payload_too_large"
    assert "MB" in body["message"]
    assert sent < 4 * 1024**2  # stopped near the 1 MB limit, not after 50 MB


def test_signed_in_upload_declaring_past_the_limit_is_refused_by_its_length(server: Any) -> None:
    status, body, sent, _ = _send(
        server,
        {
            "Authorization": f"Bearer {server.token}",
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            "Content-Length": str(5 * 1024**2),
        },
        _body(5 * 1024**2),
    )
    assert status == 413 and body["code"] == "payload_too_large"
    assert sent <= 256 * 1024


def test_a_small_signed_in_upload_still_imports(server: Any) -> None:
    import httpx

    response = httpx.post(
        f"{server.url}/api/v1/policies/import",
        files={"file": ("政策.csv", "标题\n".encode(), "text/csv")},
        headers={"Authorization": f"Bearer {server.token}"},
        timeout=20,
    )
    assert response.status_code in (200, 422), response.text  # a header-only file: a row report, not a crash
    assert response.json().get("code") != "payload_too_large"
