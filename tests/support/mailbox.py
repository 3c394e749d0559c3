"""A real local SMTP server for email tests (aiosmtpd): records every message it accepts."""

from __future__ import annotations

import email
import email.policy
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiosmtpd.controller import Controller


class Mailbox:
    """The SMTP handler: keeps every envelope received."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def mails(self) -> list[tuple[str, str, str]]:
        """(recipient, subject, Message-ID) of every mail received."""
        out = []
        for env in self.envelopes:
            parsed = email.message_from_bytes(env.content, policy=email.policy.default)
            for rcpt in env.rcpt_tos:
                out.append((rcpt, str(parsed["Subject"]), str(parsed["Message-ID"])))
        return out


def free_port() -> int:
    """A port nothing listens on (aiosmtpd's Controller probes its own port on start, so not 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    """Serve SMTP on 127.0.0.1 for the block; yield the mailbox and the port."""
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield mailbox, controller.port
    finally:
        controller.stop()
