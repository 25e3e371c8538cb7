"""The Mosquitto that `vigil up` runs: credentials required and the device ACL applied.

The broker reads the same two files as in production (see
``vigil/devices/credentials.py``), kept under ``DATA_DIR/mosquitto``: the
password file, rebuilt from the device registry plus the platform services'
hashed entries (``services.passwd``), and the ACL rendered from the protocol's
topics. Anonymous clients are refused. On the devices' listener a client's id
is always its user name, so a device can neither publish as another nor take
over its session. The platform's services connect to a second listener, on
loopback, that knows only their users (``services.passwd``): there each chooses
its client id, so several ingest workers logging in as ``vigil-ingest`` keep a
session each instead of taking over one another's.

The services' passwords (``vigil-ingest``, ``vigil-api``) are generated on the
first start and kept in ``DATA_DIR/secrets`` (a folder and files only their
owner may read); they reach `vigil ingest` and `vigil api` through their
environment and are never printed. `vigil jobs` does not use MQTT and gets none.

While `vigil up` runs, the API keeps the files: when a device's credential is
issued, rotated or revoked it rewrites them after the commit and sends the
broker SIGHUP (through the pid file Mosquitto writes), and it brings them up to
the registry when it starts. `vigil up` does the same before it starts the
broker, so changes made while nothing ran are applied too.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from vigil.config import Settings
from vigil.devices.credentials import (
    API_USER,
    INGEST_USER,
    BrokerFiles,
    check_mosquitto_hash,
    mosquitto_hash,
    sync_broker,
)

SERVICE_USERS = (INGEST_USER, API_USER)


def broker_dir(settings: Settings) -> Path:
    """Where the broker keeps its files and persistence."""
    return settings.data_dir / "mosquitto"


def secrets_dir(settings: Settings) -> Path:
    return settings.data_dir / "secrets"


def local_broker_files(settings: Settings) -> BrokerFiles:
    directory = broker_dir(settings)
    return BrokerFiles(password_file=directory / "passwd", acl_file=directory / "acl",
                       service_password_file=directory / "services.passwd",
                       pid_file=directory / "mosquitto.pid")


# Before the first listener: each listener has its own password file and client-id rule.
MOSQUITTO_HEAD = ["per_listener_settings true"]


def configured_broker_files(settings: Settings) -> BrokerFiles | None:
    """The broker's files the settings name (a deployment's, as the API keeps them), if any."""
    mqtt = settings.mqtt
    if mqtt.password_file is None or mqtt.acl_file is None:
        return None
    return BrokerFiles(password_file=mqtt.password_file, acl_file=mqtt.acl_file,
                       service_password_file=mqtt.service_password_file,
                       pid_file=mqtt.pid_file)


def mosquitto_config(files: BrokerFiles, service_port: int) -> list[str]:
    """The lines, after the devices' listener, that make Mosquitto authenticate and authorise.

    The devices' listener (the first) takes every credential, with the client id
    forced to the user name; the services' listener on ``service_port`` (loopback)
    only the services' users, whose client ids are their own.
    """
    assert files.pid_file is not None
    assert files.service_password_file is not None
    return [
        f"password_file {files.password_file}",
        f"acl_file {files.acl_file}",
        "use_username_as_clientid true",
        # Mosquitto writes its pid here, and removes it on exit; the API signals it through it.
        f"pid_file {files.pid_file}",
        f"listener {service_port} 127.0.0.1",
        "allow_anonymous false",
        f"password_file {files.service_password_file}",
        f"acl_file {files.acl_file}",
    ]


def write_secret(path: Path, text: str) -> None:
    """Replace ``path`` atomically with a file only its owner may read, in a private folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_pairs(path: Path) -> dict[str, str]:
    """``name:value`` lines (a password file, a credentials file); empty if there is none."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    pairs = (line.split(":", 1) for line in text.splitlines()
             if ":" in line and not line.startswith("#"))
    return {name: value for name, value in pairs}


def write_pairs(path: Path, pairs: Mapping[str, str]) -> None:
    write_secret(path, "".join(f"{name}:{value}\n" for name, value in sorted(pairs.items())))


def service_passwords_file(settings: Settings) -> Path:
    return secrets_dir(settings) / "mqtt-services"


def service_passwords(settings: Settings) -> dict[str, str]:
    """Each platform service's MQTT password: generated once, then read from the secrets folder."""
    path = service_passwords_file(settings)
    known = read_pairs(path)
    passwords = {user: known.get(user) or secrets.token_urlsafe(32) for user in SERVICE_USERS}
    if passwords != known:
        write_pairs(path, passwords)
    return passwords


def write_service_entries(files: BrokerFiles, passwords: Mapping[str, str]) -> None:
    """The services' hashed entries, rewritten only when they no longer match the passwords."""
    assert files.service_password_file is not None
    entries = read_pairs(files.service_password_file)
    if entries.keys() == passwords.keys() and all(
            check_mosquitto_hash(entries[user], password) for user, password in passwords.items()):
        return
    write_pairs(files.service_password_file,
                {user: mosquitto_hash(password) for user, password in passwords.items()})


def prepare(settings: Settings, sessions: sessionmaker[Session]) -> dict[str, str]:
    """The broker's files up to date before it starts; returns the services' passwords."""
    files = local_broker_files(settings)
    assert files.pid_file is not None
    # Left behind by a broker that was killed: its pid may be another process's by now.
    files.pid_file.unlink(missing_ok=True)
    passwords = service_passwords(settings)
    write_service_entries(files, passwords)
    sync_broker(sessions, files)
    return passwords


def service_env(settings: Settings, user: str, password: str,
                service_port: int) -> dict[str, str]:
    """The environment that connects a `vigil` service as ``user`` to the services' listener.

    The API also keeps the broker's files.
    """
    env = {"VIGIL_MQTT__HOST": "127.0.0.1", "VIGIL_MQTT__PORT": str(service_port),
           "VIGIL_MQTT__USERNAME": user, "VIGIL_MQTT__PASSWORD": password}
    if user == API_USER:
        files = local_broker_files(settings)
        env |= {
            "VIGIL_MQTT__PASSWORD_FILE": str(files.password_file),
            "VIGIL_MQTT__ACL_FILE": str(files.acl_file),
            "VIGIL_MQTT__SERVICE_PASSWORD_FILE": str(files.service_password_file),
            "VIGIL_MQTT__PID_FILE": str(files.pid_file),
        }
    return env
