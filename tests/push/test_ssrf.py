"""Firm webhooks cannot reach the platform's own network (SSRF), when saved nor when delivered."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session

from auth.models import Role
from core.netguard import AddressGuard
from push import preferences, sender
from push.channels import WebhookChannel, WebhookRecipient
from push.models import PushPreference
from push.schemas import PreferencesIn
from tests import factories
from tests.push.test_channels import SECRET, make_message
from tests.push.test_service import _pending_webhook_row, http_server  # noqa: F401 - fixture
from tests.support.receiver import Receiver

CHINESE = re.compile(r"[\u4e00-\u9fff]")
# Each is refused: loopback (outside the tests' 127.0.0.1/32 allow-list), metadata, private, IPv6 loopback,
# numeric spellings of loopback, unspecified, multicast, CGNAT, IPv4-mapped IPv6.
UNSAFE = [
    "http://127.0.0.2:8080/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.5/hook",
    "http://192.168.1.1/hook",
    "http://172.16.0.1/hook",
    "http://[::1]:8000/hook",
    "http://0x7f000002/hook",
    "http://2130706434/hook",
    "http://0.0.0.0:8000/hook",
    "http://224.0.0.1/hook",
    "http://100.64.0.1/hook",
    "http://[::ffff:169.254.169.254]/hook",
]


@pytest.mark.parametrize("url", UNSAFE)
def test_saving_an_internal_webhook_is_refused_naming_the_field(client, auth_headers, url) -> None:  # type: ignore[no-untyped-def]
    firm_user = auth_headers(Role.enterprise)
    r = client.put("/api/v1/push/preferences", json={"channels": ["webhook"], "webhook_url": url}, headers=firm_user)
    assert r.status_code == 422, r.text
    (error,) = r.json()["errors"]
    assert error["field"] == "webhook_url" and error["code"] == "unsafe_address"
    assert CHINESE.search(error["reason"])


def test_loopback_by_name_is_refused_without_an_allow_list(db: Session) -> None:
    firm = factories.make_enterprise(db)
    for url in ("http://localhost:8000/hook", "http://127.0.0.1:8000/hook", "http://LOCALHOST./x"):
        with pytest.raises(Exception) as caught:
            preferences.update_preferences(
                db=db, enterprise_id=firm.id, prefs_in=PreferencesIn(channels=["webhook"], webhook_url=url)
            )
        assert [e.field for e in caught.value.errors] == ["webhook_url"], url  # type: ignore[attr-defined]


def test_a_public_or_allow_listed_webhook_is_saved(db: Session) -> None:
    firm = factories.make_enterprise(db)
    pref = preferences.update_preferences(
        db=db,
        enterprise_id=firm.id,
        prefs_in=PreferencesIn(channels=["webhook"], webhook_url="http://10.20.1.5:9000/hook"),
        guard=AddressGuard("10.20.0.0/16"),
    )
    assert pref.webhook_url == "http://10.20.1.5:9000/hook"
    pref = preferences.update_preferences(
        db=db, enterprise_id=firm.id, prefs_in=PreferencesIn(webhook_url="https://1.2.4.8/hook")
    )
    assert pref.webhook_url is not None and pref.webhook_url.startswith("https://1.2.4.8")


def test_web_preferences_page_shows_the_refusal_by_the_field(db, client, test_settings) -> None:  # type: ignore[no-untyped-def]
    from tests.web.test_web_roles import _csrf, _sign_in

    firm = factories.make_enterprise(db)
    _sign_in(client, db, test_settings, Role.enterprise, enterprise_id=firm.id)
    form = {
        "csrf_token": _csrf(client),
        "channels": ["inbox", "webhook"],
        "frequency": "instant",
        "quiet_start": "22:00",
        "quiet_end": "08:00",
        "weekly_cap": "5",
        "webhook_url": "http://169.254.169.254/latest/meta-data/",
        "webhook_format": "huiqi",
    }
    page = client.post("/me/preferences", data=form, follow_redirects=False)
    assert page.status_code == 422
    assert 'id="webhook_url-error"' in page.text and "内网" in page.text
    assert db.get(PushPreference, firm.id) is None or db.get(PushPreference, firm.id).webhook_url is None


def test_a_stored_internal_url_is_refused_again_at_delivery(
    db: Session,
    matcher,  # type: ignore[no-untyped-def]
    test_settings,  # type: ignore[no-untyped-def]
    http_server: Receiver,  # noqa: F811
) -> None:
    """A URL that got in before the check (or whose name now resolves inside) is checked when connecting."""
    row = _pending_webhook_row(db, matcher, http_server.url("/status/500"))  # saved through the tests' allow-list
    with WebhookChannel(timeout=2.0) as strict:  # the production default: public addresses only
        sender.send_due(db=db, channels={"webhook": strict}, settings=test_settings)
    db.refresh(row)
    assert http_server.requests == []  # nothing reached the internal service
    assert row.status == "dead" and "内网" in (row.last_error or "")


def test_the_remote_body_is_never_stored(db: Session, matcher, test_settings, http_server: Receiver) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    row = _pending_webhook_row(db, matcher, http_server.url("/status/500"))
    with WebhookChannel(timeout=2.0, guard=AddressGuard("127.0.0.1/32")) as channel:
        sender.send_due(db=db, channels={"webhook": channel}, settings=test_settings)
    db.refresh(row)
    assert row.last_error == "接收方暂时不可用（HTTP 500 Internal Server Error）"
    assert "失败原因" not in (row.last_error or "")


class _PinnedResolver(AddressGuard):
    """A resolver for a name no DNS knows: answers 127.0.0.1 once; a second lookup would fail."""

    def __init__(self) -> None:
        super().__init__("127.0.0.1/32")
        self.lookups = 0

    def resolve(self, host: str, port: int):  # type: ignore[no-untyped-def]
        self.lookups += 1
        if host != "hooks.firm.example" or self.lookups > 1:
            return super().resolve(host, port)
        return [ipaddress.ip_address("127.0.0.1")]


@pytest.fixture
def pinned() -> Iterator[_PinnedResolver]:
    yield _PinnedResolver()


def test_delivery_connects_to_the_checked_address_with_the_names_host_header(
    http_server: Receiver,  # noqa: F811
    pinned: _PinnedResolver,
) -> None:
    """DNS rebinding: the connection goes to the address that was checked, not to a second lookup's answer."""
    port = http_server.server_address[1]
    with WebhookChannel(timeout=2.0, guard=pinned) as channel:
        result = channel.send(make_message(), WebhookRecipient(f"http://hooks.firm.example:{port}/ok", SECRET))
    assert result.ok, result.detail
    assert pinned.lookups == 1
    ((path, headers, _),) = http_server.requests
    assert path == "/ok" and headers["host"] == f"hooks.firm.example:{port}"


def test_unresolvable_name_is_retried_not_sent(pinned: _PinnedResolver) -> None:
    with WebhookChannel(timeout=2.0, guard=AddressGuard()) as channel:
        result = channel.send(make_message(), WebhookRecipient("http://no-such-host.invalid/hook", SECRET))
    assert (result.ok, result.retryable) == (False, True) and "无法解析" in result.detail


def _tls_receiver(tmp_path):  # type: ignore[no-untyped-def]
    """A real HTTPS receiver on 127.0.0.1 whose certificate names hooks.firm.example (made with openssl)."""
    import shutil
    import ssl
    import subprocess
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=hooks.firm.example"]
        + ["-addext", "subjectAltName=DNS:hooks.firm.example", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    seen: dict[str, str | None] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format, *args):  # type: ignore[no-untyped-def]  # noqa: A002
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen["host"] = self.headers.get("Host")
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: seen.__setitem__("sni", name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, cert, seen


def test_https_delivery_to_the_pinned_address_keeps_sni_and_certificate_checks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import ssl

    import httpx

    server, cert, seen = _tls_receiver(tmp_path)
    port = server.server_address[1]
    try:
        client = httpx.Client(verify=ssl.create_default_context(cafile=str(cert)), follow_redirects=False, timeout=5)
        with WebhookChannel(timeout=5.0, client=client, guard=_PinnedResolver()) as channel:
            result = channel.send(make_message(), WebhookRecipient(f"https://hooks.firm.example:{port}/ok", SECRET))
        assert result.ok, result.detail
        assert seen["sni"] == "hooks.firm.example" and seen["host"] == f"hooks.firm.example:{port}"
        # The certificate is checked against the name, not the pinned address: another name fails.
        other = AddressGuard("127.0.0.1/32")
        with WebhookChannel(timeout=5.0, client=client, guard=other) as channel:
            refused = channel.send(make_message(), WebhookRecipient(f"https://127.0.0.1:{port}/ok", SECRET))
        assert not refused.ok
        client.close()
    finally:
        server.shutdown()
        server.server_close()
