"""Notifiers against real receivers on loopback: an HTTP server and an aiosmtpd SMTP server."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.tickets.receivers import Inbox, Receiver, free_port, message_of
from vigil.tickets.notifiers import (
    MAX_ATTEMPTS,
    DeliveryError,
    Notification,
    Notifier,
    SmtpNotifier,
    WebhookNotifier,
    retry_delay,
    sign,
    verify_signature,
)

SECRET = b"shared-webhook-secret"


def notification(recipient: str, key: str = "ticket-42.restore.at_risk.1") -> Notification:
    return Notification(
        key=key,
        subject="P1 ticket 42 at risk: Beatmungsgerät V500, ICU 3",
        body="75 % of the restore time is used.\nAcknowledge in the console.",
        data={"ticket_id": 42, "milestone": "restore", "restore_by": "2026-12-07T10:00:00Z"},
        recipient=recipient,
    )


class TestWebhook:
    def test_delivery_is_signed_json(self, receiver: Receiver) -> None:
        before = int(time.time())
        WebhookNotifier(SECRET, timeout_s=5).send(notification(receiver.url("/ok")))
        after = int(time.time())

        [request] = receiver.received
        assert request.path == "/ok"
        assert request.headers["Content-Type"].startswith("application/json")
        assert json.loads(request.body) == {
            "key": "ticket-42.restore.at_risk.1",
            "subject": "P1 ticket 42 at risk: Beatmungsgerät V500, ICU 3",
            "body": "75 % of the restore time is used.\nAcknowledge in the console.",
            "data": {"ticket_id": 42, "milestone": "restore", "restore_by": "2026-12-07T10:00:00Z"},
        }
        assert request.headers["X-Vigil-Delivery"] == "ticket-42.restore.at_risk.1"
        timestamp = request.headers["X-Vigil-Timestamp"]
        assert before <= int(timestamp) <= after
        signature = request.headers["X-Vigil-Signature"]
        assert signature.startswith("sha256=") and len(signature) == len("sha256=") + 64
        assert verify_signature(SECRET, timestamp, request.body, signature, now=time.time())

    def test_signature_fails_with_the_wrong_secret_or_a_changed_body(
        self, receiver: Receiver
    ) -> None:
        WebhookNotifier(SECRET, timeout_s=5).send(notification(receiver.url("/ok")))
        [request] = receiver.received
        timestamp = request.headers["X-Vigil-Timestamp"]
        signature = request.headers["X-Vigil-Signature"]
        now = time.time()
        assert not verify_signature(b"another-secret", timestamp, request.body, signature, now)
        tampered = request.body.replace(b"42", b"43")
        assert tampered != request.body
        assert not verify_signature(SECRET, timestamp, tampered, signature, now)
        later = str(int(timestamp) + 1)
        assert not verify_signature(SECRET, later, request.body, signature, now)

    def test_stale_or_malformed_timestamps_fail(self) -> None:
        body = b'{"key":"k"}'
        signature = sign(SECRET, 1_000_000, body)
        assert verify_signature(SECRET, "1000000", body, signature, now=1_000_300)
        assert not verify_signature(SECRET, "1000000", body, signature, now=1_000_301)
        assert not verify_signature(SECRET, "1000000", body, signature, now=999_000)
        assert verify_signature(SECRET, 1_000_000, body, signature, 1_000_600, tolerance_s=600)
        assert not verify_signature(SECRET, "yesterday", body, signature, now=1_000_000)
        assert not verify_signature(SECRET, "1000000", body, "sha256=zz", now=1_000_000)
        assert not verify_signature(SECRET, "1000000", body, "sha256=é", now=1_000_000)

    def test_redelivery_carries_the_same_key_and_body(self, receiver: Receiver) -> None:
        notifier = WebhookNotifier(SECRET, timeout_s=5)
        notifier.send(notification(receiver.url("/ok")))
        notifier.send(notification(receiver.url("/ok")))
        first, second = receiver.received
        assert first.headers["X-Vigil-Delivery"] == second.headers["X-Vigil-Delivery"]
        assert first.body == second.body

    @pytest.mark.parametrize(
        ("path", "permanent", "retry_after"),
        [
            ("/fail", False, None),
            ("/unavailable", False, timedelta(seconds=90)),
            ("/busy", False, timedelta(seconds=120)),
            ("/timeout", False, None),
            ("/bad", True, None),
            ("/gone", True, None),
            ("/moved", True, None),
        ],
    )
    def test_http_errors(
        self, receiver: Receiver, path: str, permanent: bool, retry_after: timedelta | None
    ) -> None:
        with pytest.raises(DeliveryError) as failed:
            WebhookNotifier(SECRET, timeout_s=5).send(notification(receiver.url(path)))
        assert failed.value.permanent is permanent
        assert failed.value.retry_after == retry_after
        # One attempt per call, and a redirect is not followed.
        assert [r.path for r in receiver.received] == [path]

    def test_closed_port_is_transient(self) -> None:
        url = f"http://127.0.0.1:{free_port()}/ok"
        with pytest.raises(DeliveryError) as failed:
            WebhookNotifier(SECRET, timeout_s=5).send(notification(url))
        assert failed.value.permanent is False

    def test_slow_receiver_times_out_transiently(self, receiver: Receiver) -> None:
        began = time.monotonic()
        with pytest.raises(DeliveryError) as failed:
            WebhookNotifier(SECRET, timeout_s=0.3).send(notification(receiver.url("/slow")))
        assert failed.value.permanent is False
        assert time.monotonic() - began < 1.4

    def test_not_a_url_is_permanent(self) -> None:
        with pytest.raises(DeliveryError) as failed:
            WebhookNotifier(SECRET).send(notification("ward3@hospital.example"))
        assert failed.value.permanent is True

    def test_empty_secret_is_refused(self) -> None:
        with pytest.raises(ValueError, match="secret"):
            WebhookNotifier(b"")


class TestRetrySchedule:
    def test_doubles_from_30_seconds_to_an_hour(self) -> None:
        delays = [retry_delay(n) for n in range(1, 10)]
        assert delays[:7] == [timedelta(seconds=30 * 2**n) for n in range(7)]
        assert delays[7:] == [timedelta(hours=1)] * 2
        assert retry_delay(10**6) == timedelta(hours=1)

    def test_schedule_spans_hours_not_days(self) -> None:
        total = sum((retry_delay(n) for n in range(1, MAX_ATTEMPTS)), timedelta(0))
        assert timedelta(hours=2) < total < timedelta(hours=12)

    def test_attempts_start_at_one(self) -> None:
        with pytest.raises(ValueError, match="starts at 1"):
            retry_delay(0)


class TestNotification:
    @pytest.mark.parametrize("key", ["", "with space", "line\nbreak", "x" * 201])
    def test_key_must_be_header_safe(self, key: str) -> None:
        with pytest.raises(ValueError, match="key"):
            notification("ops@hospital.example", key=key)

    @pytest.mark.parametrize("data", [{"at": {1, 2}}, {"score": float("nan")}])
    def test_data_must_be_json(self, data: dict[str, Any]) -> None:
        with pytest.raises(ValueError, match="plain JSON"):
            Notification("k", "subject", "body", data, "ops@hospital.example")

    def test_subject_is_one_line(self) -> None:
        with pytest.raises(ValueError, match="one line"):
            Notification("k", "a\r\nBcc: everyone@example.org", "body", {}, "ops@example.org")

    def test_notifiers_satisfy_the_protocol(self) -> None:
        assert isinstance(WebhookNotifier(SECRET), Notifier)
        assert isinstance(SmtpNotifier("127.0.0.1", 25, "vigil@service.example"), Notifier)


class Passwords:
    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            b"vigil",
            b"s3cret",
        )
        # handled=False: aiosmtpd itself answers a failure with 535.
        return AuthResult(success=ok, handled=False)


@pytest.fixture
def guarded_inbox() -> Iterator[tuple[Inbox, int]]:
    handler = Inbox()
    port = free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        authenticator=Passwords(),
        auth_required=True,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


class TestSmtp:
    def test_message_arrives(self, inbox: tuple[Inbox, int]) -> None:
        handler, port = inbox
        notifier = SmtpNotifier("127.0.0.1", port, "Vigil <vigil@service.example>", timeout_s=5)
        notifier.send(notification("Ward 3 <ward3@hospital.example>"))

        [envelope] = handler.envelopes
        assert envelope.mail_from == "vigil@service.example"
        assert envelope.rcpt_tos == ["ward3@hospital.example"]
        message = message_of(envelope)
        assert message["Subject"] == "P1 ticket 42 at risk: Beatmungsgerät V500, ICU 3"
        assert message["X-Vigil-Delivery"] == "ticket-42.restore.at_risk.1"
        assert message["Message-ID"] == notifier.message_id("ticket-42.restore.at_risk.1")
        assert message["Message-ID"].endswith("@service.example>")
        body = message.get_content()
        assert "75 % of the restore time is used." in body
        assert "Acknowledge in the console." in body

    def test_same_key_same_message_id_other_key_other(self, inbox: tuple[Inbox, int]) -> None:
        handler, port = inbox
        notifier = SmtpNotifier("127.0.0.1", port, "vigil@service.example", timeout_s=5)
        notifier.send(notification("ward3@hospital.example"))
        notifier.send(notification("ward3@hospital.example"))
        notifier.send(notification("ward3@hospital.example", key="ticket-42.restore.at_risk.2"))
        ids = [message_of(e)["Message-ID"] for e in handler.envelopes]
        assert len(ids) == 3
        assert ids[0] == ids[1] != ids[2]

    @pytest.mark.parametrize(
        ("recipient", "permanent"),
        [
            ("gone@hospital.example", True),
            ("full@hospital.example", False),
            ("spamtrap@hospital.example", True),
        ],
    )
    def test_refusals(self, inbox: tuple[Inbox, int], recipient: str, permanent: bool) -> None:
        handler, port = inbox
        notifier = SmtpNotifier("127.0.0.1", port, "vigil@service.example", timeout_s=5)
        with pytest.raises(DeliveryError) as failed:
            notifier.send(notification(recipient))
        assert failed.value.permanent is permanent
        assert handler.envelopes == []

    def test_closed_port_is_transient(self) -> None:
        notifier = SmtpNotifier("127.0.0.1", free_port(), "vigil@service.example", timeout_s=5)
        with pytest.raises(DeliveryError) as failed:
            notifier.send(notification("ward3@hospital.example"))
        assert failed.value.permanent is False

    def test_not_an_address_is_permanent(self, inbox: tuple[Inbox, int]) -> None:
        _, port = inbox
        notifier = SmtpNotifier("127.0.0.1", port, "vigil@service.example", timeout_s=5)
        with pytest.raises(DeliveryError) as failed:
            notifier.send(notification("https://hooks.example/vigil"))
        assert failed.value.permanent is True

    def test_configuration_is_validated(self) -> None:
        with pytest.raises(ValueError, match="sender"):
            SmtpNotifier("127.0.0.1", 25, "vigil")
        with pytest.raises(ValueError, match="both username and password"):
            SmtpNotifier("127.0.0.1", 25, "vigil@service.example", username="vigil")


# The test relay asks for a password over plain SMTP on loopback, which aiosmtpd warns about.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
class TestSmtpLogin:
    def test_login(self, guarded_inbox: tuple[Inbox, int]) -> None:
        handler, port = guarded_inbox
        notifier = SmtpNotifier(
            "127.0.0.1", port, "vigil@service.example", "vigil", "s3cret", timeout_s=5
        )
        notifier.send(notification("ward3@hospital.example"))
        assert len(handler.envelopes) == 1

    def test_wrong_password_is_permanent(self, guarded_inbox: tuple[Inbox, int]) -> None:
        handler, port = guarded_inbox
        notifier = SmtpNotifier(
            "127.0.0.1", port, "vigil@service.example", "vigil", "guess", timeout_s=5
        )
        with pytest.raises(DeliveryError) as failed:
            notifier.send(notification("ward3@hospital.example"))
        assert failed.value.permanent is True
        assert handler.envelopes == []

    def test_without_login_the_guarded_relay_refuses(
        self, guarded_inbox: tuple[Inbox, int]
    ) -> None:
        handler, port = guarded_inbox
        notifier = SmtpNotifier("127.0.0.1", port, "vigil@service.example", timeout_s=5)
        with pytest.raises(DeliveryError):
            notifier.send(notification("ward3@hospital.example"))
        assert handler.envelopes == []


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the test relay's certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_inbox(certificate: tuple[Path, Path]) -> Iterator[tuple[Inbox, int]]:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    handler = Inbox()
    port = free_port()
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True
    )
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


class TestStarttls:
    def test_trusted_relay(
        self, tls_inbox: tuple[Inbox, int], certificate: tuple[Path, Path]
    ) -> None:
        handler, port = tls_inbox
        trusted = ssl.create_default_context(cafile=certificate[0])
        notifier = SmtpNotifier(
            "127.0.0.1", port, "vigil@service.example", starttls=True, ssl_context=trusted
        )
        notifier.send(notification("ward3@hospital.example"))
        assert len(handler.envelopes) == 1

    def test_untrusted_certificate_is_permanent(self, tls_inbox: tuple[Inbox, int]) -> None:
        handler, port = tls_inbox
        notifier = SmtpNotifier("127.0.0.1", port, "vigil@service.example", starttls=True)
        with pytest.raises(DeliveryError) as failed:
            notifier.send(notification("ward3@hospital.example"))
        assert failed.value.permanent is True
        assert handler.envelopes == []

    def test_relay_requiring_tls_refuses_plain_mail(self, tls_inbox: tuple[Inbox, int]) -> None:
        handler, port = tls_inbox
        notifier = SmtpNotifier("127.0.0.1", port, "vigil@service.example", timeout_s=5)
        with pytest.raises(DeliveryError):
            notifier.send(notification("ward3@hospital.example"))
        assert handler.envelopes == []

    def test_relay_without_starttls_is_permanent(self, inbox: tuple[Inbox, int]) -> None:
        handler, port = inbox
        notifier = SmtpNotifier("127.0.0.1", port, "vigil@service.example", starttls=True)
        with pytest.raises(DeliveryError) as failed:
            notifier.send(notification("ward3@hospital.example"))
        assert failed.value.permanent is True
        assert handler.envelopes == []
