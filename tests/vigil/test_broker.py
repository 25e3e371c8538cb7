"""The broker `vigil up` runs, against a real Mosquitto configured by ``vigil.broker``.

Anonymous clients are refused; a device's own readings arrive while what it
publishes under another device's id is dropped; the services may do only
their part; a revoked device is refused once the files are rewritten and the
broker reloaded; the services' passwords stay in private files.
"""

from __future__ import annotations

import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import start_or_skip
from tests.mqtt_peer import Peer, connect_eventually
from vigil.broker import (
    MOSQUITTO_HEAD,
    broker_dir,
    local_broker_files,
    mosquitto_config,
    prepare,
    read_pairs,
    secrets_dir,
)
from vigil.config import Settings
from vigil.db import migrations
from vigil.db.session import make_engine, make_session_factory, transaction
from vigil.devices import registry
from vigil.devices.credentials import (
    API_USER,
    INGEST_USER,
    check_mosquitto_hash,
    issue_credential,
    render_acl,
    revoke_credential,
    sync_broker,
)
from vigil.servers import Mosquitto, free_port

REPO = Path(__file__).resolve().parents[2]
DEVICES = ("pump-1", "pump-2")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


@pytest.fixture
def sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine: Engine = make_engine(settings.sql_url)
    migrations.upgrade(engine)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def device_passwords(sessions: sessionmaker[Session]) -> dict[str, str]:
    """Two devices registered as an administrator registers them, with their passwords."""
    now = datetime.now(UTC)
    passwords = {}
    with transaction(sessions) as session:
        for device_id in DEVICES:
            registry.create_device(session, device_id=device_id, actor="admin", now=now,
                                   fields={"serial": f"SN-{device_id}", "model": "IP-100"})
            passwords[device_id] = issue_credential(session, device_id=device_id,
                                                    actor="admin", now=now)
    return passwords


@pytest.fixture
def service_passwords(settings: Settings, sessions: sessionmaker[Session],
                      device_passwords: dict[str, str]) -> dict[str, str]:
    return prepare(settings, sessions)


@pytest.fixture
def service_port() -> int:
    """The broker's second listener, for the platform's services."""
    return free_port()


@pytest.fixture
def broker(settings: Settings, service_passwords: dict[str, str],
           service_port: int) -> Iterator[Mosquitto]:
    server = Mosquitto(broker_dir(settings), allow_anonymous=False, head_config=MOSQUITTO_HEAD,
                       extra_config=mosquitto_config(local_broker_files(settings), service_port))
    start_or_skip(server)
    try:
        yield server
    finally:
        server.stop()


def settle() -> None:
    """Time for the broker to deliver what it is going to deliver."""
    time.sleep(0.5)


def test_anonymous_clients_and_wrong_passwords_are_refused(broker: Mosquitto) -> None:
    answer: list[mqtt.ReasonCode] = []
    anonymous = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="anonymous",
                            protocol=mqtt.MQTTv5)
    anonymous.on_connect = lambda _c, _u, _f, reason, _p: answer.append(reason)
    anonymous.connect(broker.host, broker.port)
    anonymous.loop_start()
    deadline = time.monotonic() + 5
    while not answer and time.monotonic() < deadline:
        time.sleep(0.05)
    anonymous.loop_stop()
    assert answer and answer[0].is_failure, answer
    wrong = Peer(broker, "pump-1", "not-its-password")
    assert not wrong.wait_connected()
    assert wrong.reason is not None and wrong.reason.is_failure
    wrong.close()


def test_a_devices_own_readings_arrive_and_forged_ones_are_dropped(
    broker: Mosquitto, device_passwords: dict[str, str], service_passwords: dict[str, str],
    service_port: int
) -> None:
    ingest = connect_eventually(broker, INGEST_USER, service_passwords[INGEST_USER],
                                port=service_port)
    # As ingest subscribes: a plain subscription, which the broker restores after a restart.
    ingest.client.subscribe("vigil/v1/dev/+/telemetry", qos=1)
    device = connect_eventually(broker, "pump-1", device_passwords["pump-1"])
    settle()
    device.client.publish("vigil/v1/dev/pump-1/telemetry", b"own", qos=1).wait_for_publish(5)
    device.client.publish("vigil/v1/dev/pump-2/telemetry", b"forged", qos=1).wait_for_publish(5)
    settle()
    assert ("vigil/v1/dev/pump-1/telemetry", b"own") in ingest.messages
    assert all(payload != b"forged" for _topic, payload in ingest.messages), ingest.messages
    for peer in (device, ingest):
        peer.close()


def test_commands_reach_only_their_device_and_services_do_only_their_part(
    broker: Mosquitto, device_passwords: dict[str, str], service_passwords: dict[str, str],
    service_port: int
) -> None:
    one = connect_eventually(broker, "pump-1", device_passwords["pump-1"])
    two = connect_eventually(broker, "pump-2", device_passwords["pump-2"])
    one.client.subscribe("vigil/v1/dev/+/cmd", qos=1)
    two.client.subscribe("vigil/v1/dev/pump-2/cmd", qos=1)
    api = connect_eventually(broker, API_USER, service_passwords[API_USER], port=service_port)
    api.client.subscribe("$share/diagnosis/vigil/v1/dev/+/cmd/result", qos=1)
    ingest = connect_eventually(broker, INGEST_USER, service_passwords[INGEST_USER],
                                port=service_port)
    settle()
    api.client.publish("vigil/v1/dev/pump-2/cmd", b"self_test", qos=1).wait_for_publish(5)
    # Only the API sends commands, and a device cannot send one to another.
    ingest.client.publish("vigil/v1/dev/pump-2/cmd", b"from-ingest", qos=1).wait_for_publish(5)
    one.client.publish("vigil/v1/dev/pump-2/cmd", b"from-pump-1", qos=1).wait_for_publish(5)
    two.client.publish("vigil/v1/dev/pump-2/cmd/result", b"passed", qos=1).wait_for_publish(5)
    settle()
    assert two.messages == [("vigil/v1/dev/pump-2/cmd", b"self_test")]
    assert one.messages == [], "pump-1 read pump-2's commands"
    assert api.messages == [("vigil/v1/dev/pump-2/cmd/result", b"passed")]
    for peer in (one, two, api, ingest):
        peer.close()


def test_two_ingest_workers_keep_a_connection_each_on_the_services_listener(
    broker: Mosquitto, device_passwords: dict[str, str], service_passwords: dict[str, str],
    service_port: int
) -> None:
    """Both log in as vigil-ingest; each chooses its client id, so neither takes over the other.

    On the devices' listener the client id is the user name: a second login as
    vigil-ingest there ends the first, as a device's does. A device's credential
    is refused on the services' listener, where it could choose another's id.
    """
    password = service_passwords[INGEST_USER]
    workers = [connect_eventually(broker, INGEST_USER, password, client_id=f"vigil-ingest-{k}",
                                  port=service_port) for k in range(2)]
    for worker in workers:
        worker.client.subscribe("vigil/v1/dev/+/telemetry", qos=1)
    device = connect_eventually(broker, "pump-1", device_passwords["pump-1"])
    settle()
    device.client.publish("vigil/v1/dev/pump-1/telemetry", b"reading", qos=1).wait_for_publish(5)
    settle()
    for worker in workers:
        assert not worker.disconnected.is_set(), "one ingest worker took over the other"
        assert worker.messages == [("vigil/v1/dev/pump-1/telemetry", b"reading")]
    intruder = Peer(broker, "pump-2", device_passwords["pump-2"], client_id="pump-1",
                    port=service_port)
    assert not intruder.wait_connected()
    assert intruder.reason is not None and intruder.reason.is_failure
    first = connect_eventually(broker, INGEST_USER, password, client_id="ingest-a")
    second = connect_eventually(broker, INGEST_USER, password, client_id="ingest-b")
    assert first.disconnected.wait(5), "the devices' listener forces the client id to the user"
    assert not device.disconnected.is_set()
    for peer in (*workers, intruder, first, second, device):
        peer.close()


def test_a_revoked_device_is_refused_after_the_resync(
    settings: Settings, sessions: sessionmaker[Session], broker: Mosquitto,
    device_passwords: dict[str, str]
) -> None:
    files = local_broker_files(settings)
    assert files.pid_file is not None and broker.process is not None
    # Mosquitto writes its own pid file, which the API signals after rewriting the files.
    assert int(files.pid_file.read_text().split()[0]) == broker.process.pid
    connect_eventually(broker, "pump-1", device_passwords["pump-1"]).close()
    with transaction(sessions) as session:
        revoke_credential(session, device_id="pump-1", actor="admin", now=datetime.now(UTC))
    assert sync_broker(sessions, files)
    deadline = time.monotonic() + 10
    while True:
        peer = Peer(broker, "pump-1", device_passwords["pump-1"])
        accepted = peer.wait_connected()
        peer.close()
        if not accepted:
            break
        assert time.monotonic() < deadline, "the revoked device is still accepted"
        time.sleep(0.2)
    # The other device is unaffected.
    connect_eventually(broker, "pump-2", device_passwords["pump-2"]).close()


def test_service_passwords_are_private_stable_and_stored_hashed(
    settings: Settings, sessions: sessionmaker[Session], service_passwords: dict[str, str]
) -> None:
    folder = secrets_dir(settings)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert set(service_passwords) == {INGEST_USER, API_USER}
    assert len(set(service_passwords.values())) == 2
    assert prepare(settings, sessions) == service_passwords
    files = local_broker_files(settings)
    assert files.service_password_file is not None
    broker_files_text = files.password_file.read_text() + files.service_password_file.read_text()
    entries = read_pairs(files.password_file)
    for user, password in service_passwords.items():
        assert password not in broker_files_text
        assert check_mosquitto_hash(entries[user], password)


def test_a_device_named_like_a_service_never_reaches_the_password_file(
    settings: Settings, sessions: sessionmaker[Session], service_passwords: dict[str, str]
) -> None:
    now = datetime.now(UTC)
    with transaction(sessions) as session:
        registry.create_device(session, device_id=API_USER, actor="admin", now=now,
                               fields={"serial": "SN-impostor", "model": "IP-100"})
        impostor = issue_credential(session, device_id=API_USER, actor="admin", now=now)
    sync_broker(sessions, local_broker_files(settings))
    entries = read_pairs(local_broker_files(settings).password_file)
    assert check_mosquitto_hash(entries[API_USER], service_passwords[API_USER])
    assert not check_mosquitto_hash(entries[API_USER], impostor)
    assert "pump-1" in entries


def test_the_shipped_acl_holds_the_rules_vigil_writes() -> None:
    def rules(text: str) -> list[str]:
        return [line.strip() for line in text.splitlines()
                if line.strip() and not line.lstrip().startswith("#")]

    assert rules((REPO / "deploy" / "mosquitto" / "acl").read_text()) == rules(render_acl())


def test_doctor_recognises_the_secured_broker_and_still_catches_wrong_passwords(
    settings: Settings, broker: Mosquitto, service_passwords: dict[str, str]
) -> None:
    from pydantic import SecretStr

    from vigil.doctor import check_broker

    settings.mqtt.port = broker.port
    anonymous = check_broker(settings)
    assert anonymous.ok and "refuses anonymous clients" in anonymous.detail
    settings.mqtt.username = INGEST_USER
    settings.mqtt.password = SecretStr("not-its-password")
    assert not check_broker(settings).ok
    elsewhere = Settings(data_dir=settings.data_dir / "elsewhere")
    elsewhere.mqtt.port = broker.port
    assert not check_broker(elsewhere).ok, "no vigil up here: anonymous refusal is a failure"


def test_simulated_devices_keep_their_credentials_across_starts_and_revocation_sticks(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    from vigil.db.models import Device
    from vigil.up import register_fleet

    file = secrets_dir(settings) / "simulator-credentials"
    with transaction(sessions) as session:  # as `vigil demo-data` leaves it: no credential
        session.add(Device(id="sim-0", serial="SIM-sim-0", model="ct"))
    fleet = [("sim-0", "ct"), ("sim-1", "mri")]
    assert register_fleet(settings, fleet, file) == 1
    first = read_pairs(file)
    assert set(first) == {"sim-0", "sim-1"}
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    with transaction(sessions) as session:
        hashes = {d.id: d.credential_hash for d in session.query(Device)}
    assert all(check_mosquitto_hash(str(hashes[d]), first[d]) for d in first)

    assert register_fleet(settings, fleet, file) == 0
    assert read_pairs(file) == first, "a second start re-issued credentials"
    with transaction(sessions) as session:
        revoke_credential(session, device_id="sim-1", actor="admin", now=datetime.now(UTC))
    register_fleet(settings, [*fleet, ("sim-2", "ct")], file)
    with transaction(sessions) as session:
        assert session.get(Device, "sim-1").credential_hash is None, "revocation undone"
        assert session.get(Device, "sim-2").credential_hash is not None
