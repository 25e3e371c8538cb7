"""Device credentials for the MQTT broker, and the broker files Vigil keeps for Mosquitto.

A device's password is random (256 bits), shown once when issued, and kept only
as Mosquitto's own hash: PBKDF2-SHA512 in the ``$7$`` format of
``mosquitto_passwd`` (Mosquitto 2.0), so the same string goes into the
database and the broker's password file. The iteration count is
``mosquitto_passwd``'s: a random 256-bit secret cannot be guessed however fast
the hash, and the broker pays the iterations on every device connection.

The password file is rebuilt from the committed registry (plus the platform
services' own entries, kept by the operator in a separate file) and replaced
atomically; the broker is then told to reload it (SIGHUP). A device whose
credential is revoked is no longer in the file, so the broker refuses it. The
ACL file holds pattern rules on the user name (``%u``), so each device may
write only under its own id and read only its own command topic.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import logging
import os
import secrets
import signal
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edge_agent import protocol
from vigil.audit.service import record
from vigil.devices.models import Device
from vigil.errors import NotFound

log = logging.getLogger(__name__)

MOSQUITTO_ITERATIONS = 101
SALT_BYTES = 12

# The platform's own MQTT users; a device id equal to one of them never reaches the broker.
INGEST_USER = "vigil-ingest"
API_USER = "vigil-api"


def render_acl() -> str:
    """The broker's ACL, from the protocol's topics: each device only its own subtree.

    Devices connect with their id as user name; the ``pattern`` rules substitute
    it for ``%u``. Ingest reads what devices report, the API writes commands and
    reads their results: what each subscribes to, and nothing more.
    """
    own = f"{protocol.TOPIC_ROOT}/%u"
    lines = [
        "# Written by Vigil: every device connects with its device id as user name.",
        "# It may write only its own reports (status also as its will) and command results,",
        "# and read only its own command topic.",
        *(f"pattern write {own}/{kind}" for kind in (*protocol.REPORTS, "cmd/result")),
        f"pattern write {own}/cmd/result/#",
        f"pattern read {own}/cmd",
        "",
        f"user {INGEST_USER}",
        *(f"topic read {protocol.subscription(kind)}" for kind in protocol.REPORTS),
        "",
        f"user {API_USER}",
        f"topic write {protocol.subscription('cmd')}",
        f"topic read {protocol.subscription('cmd/result')}",
    ]
    return "\n".join(lines) + "\n"


def mosquitto_hash(password: str, *, salt: bytes | None = None,
                   iterations: int = MOSQUITTO_ITERATIONS) -> str:
    """The password in ``mosquitto_passwd``'s ``$7$`` format (PBKDF2-SHA512)."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    derived = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return (f"$7${iterations}${base64.b64encode(salt).decode()}"
            f"${base64.b64encode(derived).decode()}")


def check_mosquitto_hash(stored: str, password: str) -> bool:
    try:
        _, kind, iterations, salt, derived = stored.split("$")
        if kind != "7":
            return False
        expected = mosquitto_hash(password, salt=base64.b64decode(salt),
                                  iterations=int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(expected.rsplit("$", 1)[1], derived)


def _device(session: Session, device_id: str) -> Device:
    device = session.scalar(select(Device).where(Device.id == device_id).with_for_update())
    if device is None:
        raise NotFound(f"device {device_id!r} not found")
    return device


def issue_credential(session: Session, *, device_id: str, actor: str, now: datetime) -> str:
    """A new MQTT password for the device, replacing any earlier one; returned this once."""
    device = _device(session, device_id)
    password = secrets.token_urlsafe(32)
    replaced = device.credential_hash is not None
    device.credential_hash = mosquitto_hash(password)
    record(session, actor=actor, action="credential.rotate" if replaced else "credential.issue",
           object_type="device", object_id=device_id, at=now)
    return password


def revoke_credential(session: Session, *, device_id: str, actor: str, now: datetime) -> None:
    """The device can no longer connect once the broker has reloaded its password file."""
    device = _device(session, device_id)
    device.credential_hash = None
    record(session, actor=actor, action="credential.revoke", object_type="device",
           object_id=device_id, at=now)


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    """Where the broker reads its password and ACL files, and how to make it reload them."""

    password_file: Path
    acl_file: Path
    # Entries of the platform's own services (ingest, api), kept by the operator.
    service_password_file: Path | None = None
    pid_file: Path | None = None


def render_password_file(session: Session, *, service_entries: str = "") -> str:
    """The services' entries, then every device holding a credential.

    A device registered under a service's user name is left out: it would
    otherwise log in with that service's rights.
    """
    lines = [line for line in service_entries.splitlines()
             if line.strip() and not line.startswith("#")]
    services = {line.split(":", 1)[0] for line in lines} | {INGEST_USER, API_USER}
    devices = session.execute(
        select(Device.id, Device.credential_hash)
        .where(Device.credential_hash.is_not(None))
        .order_by(Device.id)
    )
    for device_id, digest in devices:
        if device_id in services:
            log.warning("device %r has a platform service's user name; it is left out of the "
                        "broker's password file", device_id)
            continue
        lines.append(f"{device_id}:{digest}")
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _replace(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` atomically; False if it already held exactly that."""
    with contextlib.suppress(OSError):
        if path.read_text() == text:
            return False
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o640)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return True


def reload_broker(files: BrokerFiles) -> bool:
    """SIGHUP the broker named by the pid file; False if there is none to signal."""
    if files.pid_file is None:
        return False
    try:
        pid = int(files.pid_file.read_text().split()[0])
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError, IndexError) as exc:
        log.warning("could not signal the broker to reload (%s): %s", files.pid_file, exc)
        return False
    return True


def sync_broker(factory: sessionmaker[Session], files: BrokerFiles) -> bool:
    """Bring the broker's files up to the committed registry and reload it if they changed.

    Concurrent calls (several API processes) are serialised by a file lock, and
    each reads the registry inside it, so the last writer writes the newest state.
    """
    files.password_file.parent.mkdir(parents=True, exist_ok=True)
    service = files.service_password_file.read_text() if files.service_password_file else ""
    with _locked(files.password_file):
        with factory() as session, session.begin():
            passwords = render_password_file(session, service_entries=service)
        changed = _replace(files.password_file, passwords)
        changed = _replace(files.acl_file, render_acl()) or changed
        if changed:
            reload_broker(files)
    return changed
