"""Device credentials against a real Mosquitto that reads the password and ACL files Vigil writes.

A registered device connects with the password it was given once; it cannot
publish under another device's id; it cannot take over another device's
session by using its client id; once revoked it can no longer connect.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from tests.api.conftest import World
from tests.conftest import start_or_skip
from tests.mqtt_peer import Peer, connect_eventually
from vigil.config import Settings
from vigil.db.session import make_session_factory
from vigil.devices.credentials import (
    BrokerFiles,
    check_mosquitto_hash,
    mosquitto_hash,
    sync_broker,
)
from vigil.servers import Mosquitto

pytestmark = pytest.mark.servers

Headers = Callable[[str], dict[str, str]]
INGEST_PASSWORD = "ingest-password-for-tests"


@pytest.fixture
def broker_files(tmp_path: Path) -> BrokerFiles:
    service = tmp_path / "services.passwd"
    service.write_text(f"vigil-ingest:{mosquitto_hash(INGEST_PASSWORD)}\n")
    return BrokerFiles(password_file=tmp_path / "passwd", acl_file=tmp_path / "acl",
                       service_password_file=service, pid_file=tmp_path / "mosquitto.pid")


@pytest.fixture
def secured_broker(tmp_path: Path, broker_files: BrokerFiles, engine, world: World
                   ) -> Iterator[Mosquitto]:
    """A Mosquitto as deploy/mosquitto configures devices: password file, ACL, client id = user."""
    sync_broker(make_session_factory(engine), broker_files)
    broker = Mosquitto(tmp_path / "mosquitto", extra_config=[
        "allow_anonymous false",
        f"password_file {broker_files.password_file}",
        f"acl_file {broker_files.acl_file}",
        "use_username_as_clientid true",
        "log_type notice",
    ])
    start_or_skip(broker)
    assert broker.process is not None
    assert broker_files.pid_file is not None
    broker_files.pid_file.write_text(f"{broker.process.pid}\n")
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def secured_app(settings: Settings, engine, store, broker_files: BrokerFiles,
                secured_broker: Mosquitto) -> FastAPI:
    settings.mqtt.port = secured_broker.port
    settings.mqtt.password_file = broker_files.password_file
    settings.mqtt.acl_file = broker_files.acl_file
    settings.mqtt.service_password_file = broker_files.service_password_file
    settings.mqtt.pid_file = broker_files.pid_file
    return create_app(settings, engine=engine, telemetry=lambda: store)


@pytest.fixture
def api(secured_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(secured_app, base_url="https://testserver") as client:
        yield client


def register(api: TestClient, admin: dict[str, str], device_id: str) -> str:
    answer = api.post("/api/v1/devices", headers=admin, json={
        "id": device_id, "serial": f"SN-{device_id}", "model": "IP-100"})
    assert answer.status_code == 201, answer.text
    return answer.json()["credential"]["password"]


def sign_in_admin(api: TestClient) -> dict[str, str]:
    from tests.api.conftest import PASSWORD

    token = api.post("/api/v1/auth/token",
                     json={"username": "admin", "password": PASSWORD}).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("sql_url", ["sqlite"], indirect=True)
def test_password_file_holds_mosquitto_hashes_only(
    api: TestClient, broker_files: BrokerFiles
) -> None:
    password = register(api, sign_in_admin(api), "dev-1")
    text = broker_files.password_file.read_text()
    assert password not in text
    line = next(line for line in text.splitlines() if line.startswith("dev-1:"))
    assert line.split(":", 1)[1].startswith("$7$101$")
    assert check_mosquitto_hash(line.split(":", 1)[1], password)
    assert "vigil-ingest:" in text
    assert "pattern write vigil/v1/dev/%u/telemetry" in broker_files.acl_file.read_text()


@pytest.mark.parametrize("sql_url", ["sqlite"], indirect=True)
def test_registered_device_connects_and_publishes_only_as_itself(
    api: TestClient, secured_broker: Mosquitto
) -> None:
    admin = sign_in_admin(api)
    one = register(api, admin, "dev-1")
    register(api, admin, "dev-2")
    ingest = connect_eventually(secured_broker, "vigil-ingest", INGEST_PASSWORD)
    ingest.client.subscribe("vigil/v1/dev/+/telemetry", qos=1)
    device = connect_eventually(secured_broker, "dev-1", one)
    time.sleep(0.3)
    own = device.client.publish("vigil/v1/dev/dev-1/telemetry", b"mine", qos=1)
    forged = device.client.publish("vigil/v1/dev/dev-2/telemetry", b"forged", qos=1)
    own.wait_for_publish(5)
    forged.wait_for_publish(5)
    time.sleep(0.5)
    assert ("vigil/v1/dev/dev-1/telemetry", b"mine") in ingest.messages
    assert all(payload != b"forged" for _topic, payload in ingest.messages)
    # A wrong password is refused.
    wrong = Peer(secured_broker, "dev-2", "not-its-password")
    assert not wrong.wait_connected()
    for peer in (wrong, device, ingest):
        peer.close()


@pytest.mark.parametrize("sql_url", ["sqlite"], indirect=True)
def test_a_device_cannot_take_over_anothers_session_by_client_id(
    api: TestClient, secured_broker: Mosquitto
) -> None:
    admin = sign_in_admin(api)
    one = register(api, admin, "dev-1")
    two = register(api, admin, "dev-2")
    ingest = connect_eventually(secured_broker, "vigil-ingest", INGEST_PASSWORD)
    ingest.client.subscribe("vigil/v1/dev/+/status", qos=1)
    connect_eventually(secured_broker, "dev-1", one).close()
    victim = Peer(secured_broker, "dev-1", one, will_topic="vigil/v1/dev/dev-1/status")
    assert victim.wait_connected()
    time.sleep(0.3)
    intruder = Peer(secured_broker, "dev-2", two, client_id="dev-1")
    assert intruder.wait_connected()
    time.sleep(1.0)
    assert not victim.disconnected.is_set(), "the victim's session was taken over"
    assert all(topic != "vigil/v1/dev/dev-1/status" for topic, _ in ingest.messages), (
        "the victim's will fired")
    # The intruder is itself (dev-2): dev-1's topics stay closed to it.
    intruder.client.publish("vigil/v1/dev/dev-1/status", b"spoof", qos=1).wait_for_publish(5)
    time.sleep(0.3)
    assert all(payload != b"spoof" for _topic, payload in ingest.messages)
    for peer in (intruder, victim, ingest):
        peer.close()


@pytest.mark.parametrize("sql_url", ["sqlite"], indirect=True)
def test_a_revoked_device_can_no_longer_connect(
    api: TestClient, secured_broker: Mosquitto, broker_files: BrokerFiles
) -> None:
    admin = sign_in_admin(api)
    password = register(api, admin, "dev-1")
    connect_eventually(secured_broker, "dev-1", password).close()
    assert api.delete("/api/v1/devices/dev-1/credential", headers=admin).status_code == 204
    assert "dev-1:" not in broker_files.password_file.read_text()
    deadline = time.monotonic() + 10
    refused = None
    while time.monotonic() < deadline:
        peer = Peer(secured_broker, "dev-1", password)
        accepted = peer.wait_connected()
        peer.close()
        if not accepted:
            refused = peer.reason
            break
        time.sleep(0.2)
    assert refused is not None and refused.is_failure, "the revoked device still connects"
    device = api.get("/api/v1/devices/dev-1", headers=admin).json()
    assert device["has_credential"] is False


@pytest.mark.parametrize("sql_url", ["sqlite"], indirect=True)
def test_a_rotated_credential_replaces_the_old_one(
    api: TestClient, secured_broker: Mosquitto
) -> None:
    admin = sign_in_admin(api)
    old = register(api, admin, "dev-1")
    new = api.post("/api/v1/devices/dev-1/credential", headers=admin).json()["password"]
    assert new != old
    connect_eventually(secured_broker, "dev-1", new).close()
    stale = Peer(secured_broker, "dev-1", old)
    assert not stale.wait_connected()
    stale.close()


@pytest.mark.parametrize("sql_url", ["sqlite"], indirect=True)
def test_revoking_drops_the_devices_live_connection(
    api: TestClient, secured_broker: Mosquitto
) -> None:
    admin = sign_in_admin(api)
    password = register(api, admin, "dev-1")
    device = connect_eventually(secured_broker, "dev-1", password)
    assert api.delete("/api/v1/devices/dev-1/credential", headers=admin).status_code == 204
    dropped = device.disconnected.wait(10)
    device.close()
    assert dropped, "the revoked device stayed connected"
