"""The API with its diagnosis bus on a real Mosquitto, and simulated devices answering commands.

A simulated device runs the edge agent's own ``CommandProcessor`` (the same
refusals as on a device) behind a plain MQTT client on the device's topics.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from edge_agent import protocol
from edge_agent.commands import CommandProcessor, CommandRefused
from tests.api import conftest as api_fixtures
from vigil.config import ApiSettings, MqttSettings, Settings
from vigil.db.models import Device
from vigil.db.session import transaction
from vigil.diagnosis.bus import DiagnosisBus
from vigil.servers import Mosquitto
from vigil.telemetry.embedded import EmbeddedStore

# The API tests' database with two customers and every role, and their sign-in.
engine = api_fixtures.engine
sessions = api_fixtures.sessions
world = api_fixtures.world
store = api_fixtures.store
headers = api_fixtures.headers


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class SimulatedDevice:
    """A device's MQTT side: it answers commands with the agent's command processor."""

    def __init__(self, host: str, port: int, device_id: str, state: str = "online") -> None:
        self.device_id = device_id
        self.state = state
        self.received: list[protocol.Command] = []
        self.sampling_s = 1.0
        self.processor = CommandProcessor(device_id, lambda: self.state,
                                          lambda: int(time.time() * 1000))
        self.processor.register("self_test", lambda args: {"passed": True,
                                                            "checks": {"pump": {"ok": True}}})
        self.processor.register("get_config", lambda args: {"sampling_s": self.sampling_s})
        self.processor.register("set_sampling", self._set_sampling, changes_device=True)
        self._ready = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id,
                             protocol=mqtt.MQTTv5)
        client.on_connect = self._on_connect
        client.on_subscribe = lambda *a: self._ready.set()
        client.on_message = self._on_message
        client.connect(host, port, keepalive=10)
        client.loop_start()
        self.client = client
        assert self._ready.wait(10), "the simulated device could not subscribe"

    def _set_sampling(self, args: dict[str, Any]) -> dict[str, Any]:
        interval = args.get("interval_s")
        if not isinstance(interval, (int, float)):
            raise CommandRefused("'interval_s' is required")
        self.sampling_s = float(interval)
        return {"interval_s": self.sampling_s}

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        client.subscribe(protocol.topic(self.device_id, "cmd"), qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.received.append(protocol.decode_command(msg.payload))
        reply = self.processor.handle(msg.payload)
        if reply is not None:
            client.publish(reply.topic, protocol.encode(reply.result), qos=1)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def settings(tmp_path: Path, mosquitto: Mosquitto) -> Settings:
    return Settings(data_dir=tmp_path, mqtt=MqttSettings(host=mosquitto.host, port=mosquitto.port),
                    api=ApiSettings(diagnosis_client_id=f"diag-{uuid.uuid4().hex[:10]}",
                                    diagnosis_sweep_s=0.2))


@pytest.fixture
def group() -> str:
    """A shared-subscription group of this test's own: other tests' sessions stay out of it."""
    return f"diag{uuid.uuid4().hex[:8]}"


def make_app(settings: Settings, engine: Engine, store: EmbeddedStore, group: str,
             client_id: str | None = None) -> FastAPI:
    app = create_app(settings, engine=engine, telemetry=lambda: store)
    app.state.diagnosis = DiagnosisBus(settings.mqtt, app.state.sessions,
                                       client_id=client_id or str(settings.api.diagnosis_client_id),
                                       shared_group=group, sweep_s=0.2)
    return app


@pytest.fixture
def app(settings: Settings, engine: Engine, store: EmbeddedStore, world: Any,
        group: str) -> FastAPI:
    return make_app(settings, engine, store, group)


def serve(app: FastAPI) -> TestClient:
    """The app's test client, started, once its bus has subscribed to the results."""
    client = TestClient(app, base_url="https://testserver", raise_server_exceptions=False)
    client.__enter__()
    assert app.state.diagnosis.wait_subscribed(10), "the diagnosis bus did not subscribe"
    return client


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    client = serve(app)
    yield client
    client.__exit__(None, None, None)


@pytest.fixture
def devices(mosquitto: Mosquitto) -> Iterator[Callable[..., SimulatedDevice]]:
    made: list[SimulatedDevice] = []

    def make(device_id: str, state: str = "online") -> SimulatedDevice:
        device = SimulatedDevice(mosquitto.host, mosquitto.port, device_id, state)
        made.append(device)
        return device

    yield make
    for device in made:
        device.close()


def set_device(sessions: sessionmaker[Session], device_id: str, *, online: bool = True,
               state: str | None = "online") -> None:
    """What ingest records from the device's status topic."""
    with transaction(sessions) as db:
        db.execute(update(Device).where(Device.id == device_id).values(online=online, state=state))
