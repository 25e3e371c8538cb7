"""Real receivers on loopback for the notifier and watchdog tests: an HTTP server and an
aiosmtpd SMTP server that record what they were sent and answer as real ones would."""

from __future__ import annotations

import email
import email.policy
import socket
import time
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


# Path -> (status, extra headers) the receiver answers with.
ANSWERS: dict[str, tuple[int, dict[str, str]]] = {
    "/ok": (204, {}),
    "/fail": (500, {}),
    "/unavailable": (503, {"Retry-After": "90"}),
    "/bad": (400, {}),
    "/gone": (404, {}),
    "/busy": (429, {"Retry-After": "120"}),
    "/timeout": (408, {}),
    "/moved": (302, {"Location": "/ok"}),
}


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), RecordingHandler)
        self.received: list[Received] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class RecordingHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.received.append(Received(self.path, dict(self.headers.items()), body))
        if self.path == "/slow":
            time.sleep(1.5)
        status, headers = ANSWERS.get(self.path, (204, {}))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test asserts on what was received."""


class Inbox:
    """aiosmtpd handler: refuses some mailboxes as a real relay would, keeps the rest."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.startswith("gone@"):
            return "550 5.1.1 No such mailbox"
        if address.startswith("full@"):
            return "452 4.2.2 Mailbox full, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if any(rcpt.startswith("spamtrap@") for rcpt in envelope.rcpt_tos):
            return "554 5.7.1 Message rejected"
        self.envelopes.append(envelope)
        return "250 Message accepted"


def message_of(envelope: Envelope) -> EmailMessage:
    raw = envelope.original_content or envelope.content
    assert isinstance(raw, bytes)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed
