"""How the watchdog's notifications leave Vigil: a signed webhook and e-mail over SMTP.

A notifier makes one delivery attempt per call and says whether a failure is
worth retrying (``DeliveryError.permanent``). Retrying with backoff is the job
of the caller's outbox, which keeps the notification until it is delivered:
``retry_delay`` and ``MAX_ATTEMPTS`` are its schedule. Every notification
carries an idempotency key, unique per escalation step, that travels with the
delivery (the ``X-Vigil-Delivery`` header, the e-mail's Message-ID), so a
receiver can drop a redelivery after an attempt whose answer was lost.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import smtplib
import ssl
import time
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import requests

DELIVERY_HEADER = "X-Vigil-Delivery"
TIMESTAMP_HEADER = "X-Vigil-Timestamp"
SIGNATURE_HEADER = "X-Vigil-Signature"
SIGNATURE_PREFIX = "sha256="
DEFAULT_TOLERANCE_S = 300

# 30 s doubling to an hour: 30 s, 1, 2, 4, 8, 16, 32 min, then hourly. Twelve attempts
# span about five hours; by then the escalation chain has moved to later steps, and the
# outbox should hand the notification to a person rather than drop it.
FIRST_RETRY_DELAY = timedelta(seconds=30)
MAX_RETRY_DELAY = timedelta(hours=1)
MAX_ATTEMPTS = 12

# Safe in an HTTP header and an e-mail header alike, and short enough for both.
_KEY_PATTERN = re.compile(r"[A-Za-z0-9._:/@+=-]{1,200}")
# HTTP statuses that say "later", not "never".
_TRANSIENT_HTTP = frozenset({408, 429})


class DeliveryError(Exception):
    """A delivery attempt failed; ``permanent`` says retrying the same thing cannot help.

    ``retry_after`` is the receiver's own hint (an HTTP Retry-After), if it gave one.
    """

    def __init__(
        self, message: str, *, permanent: bool, retry_after: timedelta | None = None
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


@dataclass(frozen=True)
class Notification:
    """One message to one recipient (an e-mail address or a webhook URL).

    ``key`` identifies the escalation step, e.g. ``ticket-42.restore.at_risk.2``;
    ``data`` is what a machine receiver needs (ticket id, deadline) and must be
    plain JSON.
    """

    key: str
    subject: str
    body: str
    data: dict[str, Any]
    recipient: str

    def __post_init__(self) -> None:
        if not _KEY_PATTERN.fullmatch(self.key):
            raise ValueError(
                f"notification key {self.key!r} must be 1-200 characters of letters, digits "
                "and ._:/@+=-"
            )
        if not self.recipient.strip():
            raise ValueError("a notification needs a recipient")
        if "\n" in self.subject or "\r" in self.subject:
            raise ValueError("a notification subject must be one line")
        try:
            json.dumps(self.data, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"notification data must be plain JSON: {exc}") from exc


@runtime_checkable
class Notifier(Protocol):
    """Delivers a notification once or raises ``DeliveryError``."""

    def send(self, notification: Notification) -> None: ...


def retry_delay(attempts: int) -> timedelta:
    """How long to wait after ``attempts`` failed attempts before the next one."""
    if attempts < 1:
        raise ValueError(f"attempts counts failed attempts and starts at 1, got {attempts}")
    # Past 2**7 the cap has long been reached; stop doubling before the numbers grow.
    return min(FIRST_RETRY_DELAY * (1 << min(attempts - 1, 16)), MAX_RETRY_DELAY)


def sign(secret: bytes, timestamp: str | int, body: bytes) -> str:
    """The signature header value: HMAC-SHA256 over ``"<timestamp>." + body``."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify_signature(
    secret: bytes,
    timestamp: str | int,
    body: bytes,
    header: str,
    now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> bool:
    """For receivers: whether a delivery is authentic and fresh.

    The timestamp is signed and must be within ``tolerance_s`` of ``now``
    (unix seconds), so a captured request cannot be replayed later.
    """
    try:
        sent_at = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs(now - sent_at) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body)
    return hmac.compare_digest(expected.encode(), str(header).encode("utf-8", "replace"))


def _retry_after(response: requests.Response) -> timedelta | None:
    value = response.headers.get("Retry-After", "")
    return timedelta(seconds=int(value)) if value.isdigit() else None


class WebhookNotifier:
    """POSTs the notification as signed JSON to the recipient URL."""

    def __init__(
        self,
        secret: bytes,
        timeout_s: float = 10.0,
        session: requests.Session | None = None,
    ) -> None:
        if not secret:
            raise ValueError("a webhook secret must not be empty")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self._secret = bytes(secret)
        self._timeout_s = timeout_s
        self._session = session if session is not None else requests.Session()

    @staticmethod
    def payload(notification: Notification) -> bytes:
        """The request body; compact and key-sorted so it is the same bytes every attempt."""
        document = {
            "key": notification.key,
            "subject": notification.subject,
            "body": notification.body,
            "data": notification.data,
        }
        return json.dumps(
            document, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()

    def send(self, notification: Notification) -> None:
        url = notification.recipient
        if urlsplit(url).scheme not in ("http", "https"):
            raise DeliveryError(f"webhook recipient {url!r} is not an http(s) URL", permanent=True)
        body = self.payload(notification)
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            DELIVERY_HEADER: notification.key,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
        }
        try:
            # A redirect would resend the payload to a place nobody configured: refuse it.
            response = self._session.post(
                url, data=body, headers=headers, timeout=self._timeout_s, allow_redirects=False
            )
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise DeliveryError(f"webhook {url} unreachable: {exc}", permanent=False) from exc
        except requests.RequestException as exc:
            raise DeliveryError(f"webhook {url} refused: {exc}", permanent=True) from exc
        status = response.status_code
        response.close()
        if 200 <= status < 300:
            return
        permanent = status < 500 and status not in _TRANSIENT_HTTP
        raise DeliveryError(
            f"webhook {url} answered HTTP {status}",
            permanent=permanent,
            retry_after=_retry_after(response),
        )


class SmtpNotifier:
    """Sends the notification as a plain-text e-mail through an SMTP relay.

    With ``starttls`` the relay's certificate is verified against the system's
    authorities, or ``ssl_context``'s (a hospital's own CA).
    """

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout_s: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if "@" not in parseaddr(sender)[1]:
            raise ValueError(f"sender {sender!r} is not an e-mail address")
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        self.host = host
        self.port = port
        self.sender = sender
        self._username = username
        self._password = password
        self._starttls = starttls
        self._timeout_s = timeout_s
        self._ssl_context = ssl_context

    def message_id(self, key: str) -> str:
        """The Message-ID of a key: the same for every attempt, so a duplicate shows."""
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        domain = parseaddr(self.sender)[1].rpartition("@")[2]
        return f"<vigil.{digest}@{domain}>"

    def message(self, notification: Notification) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = notification.recipient
        message["Subject"] = notification.subject
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = self.message_id(notification.key)
        message[DELIVERY_HEADER] = notification.key
        message.set_content(notification.body)
        return message

    def send(self, notification: Notification) -> None:
        recipient = parseaddr(notification.recipient)[1]
        if "@" not in recipient:
            raise DeliveryError(
                f"e-mail recipient {notification.recipient!r} is not an address", permanent=True
            )
        message = self.message(notification)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self._timeout_s) as smtp:
                if self._starttls:
                    context = self._ssl_context or ssl.create_default_context()
                    smtp.starttls(context=context)
                if self._username is not None and self._password is not None:
                    smtp.login(self._username, self._password)
                refused = smtp.send_message(message, from_addr=self.sender, to_addrs=[recipient])
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise DeliveryError(
                f"SMTP {self.host} refused {recipient}: {exc.recipients}",
                permanent=all(code >= 500 for code in codes),
            ) from exc
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"SMTP {self.host} answered {exc.smtp_code} {exc.smtp_error!r}",
                permanent=exc.smtp_code >= 500,
            ) from exc
        except (smtplib.SMTPNotSupportedError, ssl.SSLCertVerificationError) as exc:
            # No STARTTLS offered, or a certificate we do not trust: configuration, not weather.
            raise DeliveryError(f"SMTP {self.host}: {exc}", permanent=True) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP {self.host} unreachable: {exc}", permanent=False) from exc
        if refused:
            raise DeliveryError(f"SMTP {self.host} refused {refused}", permanent=True)
