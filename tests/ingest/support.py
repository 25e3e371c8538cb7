"""Helpers for ingest's integration tests: a device registry, a QoS 1 publisher, InfluxDB reads."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import func, select

from vigil.config import InfluxSettings, IngestSettings, MqttSettings, Settings
from vigil.db.migrations import upgrade
from vigil.db.models import DeadLetter, Device, DeviceEvent
from vigil.db.session import make_engine, make_session_factory, transaction
from vigil.servers import InfluxDB, Mosquitto

REPO = Path(__file__).resolve().parents[2]


def wait_for(
    condition: Callable[[], object], timeout: float, message: str, interval: float = 0.2
) -> object:
    """Poll until ``condition()`` is truthy; fail with ``message`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s: {message}")
        time.sleep(interval)


# --- SQL -------------------------------------------------------------------


def prepare_registry(url: str, devices: list[str], model: str = "PUMP-X1") -> None:
    """Migrate an empty database and register ``devices``."""
    engine = make_engine(url)
    try:
        upgrade(engine)
        with transaction(make_session_factory(engine)) as session:
            session.add_all(Device(id=d, serial=f"SN-{d}", model=model) for d in devices)
    finally:
        engine.dispose()


def prepare_registry_at_once(url: str, devices: list[str], staging: Path) -> None:
    """Like ``prepare_registry``, but the tables and the devices appear in one step.

    Migrating first and registering after leaves a moment in which the registry is
    readable and empty, so a reader there would rightly call every device unknown.
    SQLite's backup API copies a fully prepared database under one write lock.
    """
    staged = staging / "registry-staged.db"
    prepare_registry(f"sqlite:///{staged}", devices)
    source = sqlite3.connect(staged)
    target = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()


def sql_rows(url: str, query):  # type: ignore[no-untyped-def]
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            return session.execute(query).all()
    finally:
        engine.dispose()


def dead_letters(url: str) -> list[DeadLetter]:
    return [row[0] for row in sql_rows(url, select(DeadLetter))]


def dead_letter_count(url: str) -> int:
    return sql_rows(url, select(func.count()).select_from(DeadLetter))[0][0]


def devices(url: str) -> dict[str, Device]:
    return {row[0].id: row[0] for row in sql_rows(url, select(Device))}


def events(url: str) -> list[DeviceEvent]:
    return [row[0] for row in sql_rows(url, select(DeviceEvent))]


# --- settings ----------------------------------------------------------------


def settings_for(
    broker: Mosquitto, influx: InfluxDB, database: str, sql_url: str, **ingest: object
) -> Settings:
    return Settings(
        telemetry_store="influxdb",
        database_url=sql_url,
        mqtt=MqttSettings(host=broker.host, port=broker.port),
        influxdb=InfluxSettings(
            url=influx.url,
            database=database,
            username=influx.username,
            password=influx.password,
            timeout_s=5,
            retries=0,
        ),
        ingest=IngestSettings(**{"metrics_port": 0, "batch_interval_s": 0.2, **ingest}),
    )


def ingest_env(
    broker_port: int, influx: InfluxDB, database: str, sql_url: str, **ingest: object
) -> dict[str, str]:
    """Environment for a `vigil ingest` subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env.update(
        {
            "VIGIL_TELEMETRY_STORE": "influxdb",
            "VIGIL_DATABASE_URL": sql_url,
            "VIGIL_MQTT__HOST": "127.0.0.1",
            "VIGIL_MQTT__PORT": str(broker_port),
            "VIGIL_INFLUXDB__URL": influx.url,
            "VIGIL_INFLUXDB__DATABASE": database,
            "VIGIL_INFLUXDB__USERNAME": influx.username,
            "VIGIL_INFLUXDB__PASSWORD": influx.password,
            "VIGIL_INFLUXDB__TIMEOUT_S": "5",
            "VIGIL_INFLUXDB__RETRIES": "0",
        }
    )
    for key, value in ingest.items():
        env[f"VIGIL_INGEST__{key.upper()}"] = str(value)
    return env


def start_ingest(
    env: dict[str, str], workdir: Path, log_name: str = "ingest.log"
) -> subprocess.Popen[bytes]:
    log = open(workdir / log_name, "ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "vigil.cli", "ingest"],
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    finally:
        log.close()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# --- MQTT --------------------------------------------------------------------


class Publisher:
    """A device-side QoS 1 publisher with a persistent session; counts the broker's acks."""

    def __init__(self, broker_port: int, client_id: str) -> None:
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.2, 2)
        self.acked = 0
        self._lock = threading.Lock()
        self.client.on_publish = self._on_publish
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", broker_port, clean_start=False, properties=props)
        self.client.loop_start()
        self.sent = 0

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        with self._lock:
            self.acked += 1

    def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> None:
        self.client.publish(topic, payload, qos=qos)
        self.sent += 1

    def wait_acked(self, timeout: float = 120) -> None:
        wait_for(
            lambda: self.acked >= self.sent,
            timeout,
            f"broker acknowledged {self.acked} of {self.sent} publishes",
        )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def telemetry_payload(seq: int, ts: int, metrics: dict[str, float]) -> str:
    return json.dumps({"v": 1, "seq": seq, "samples": [{"ts": ts, "metrics": metrics}]})


# --- InfluxDB ----------------------------------------------------------------


def influx_select(influx: InfluxDB, database: str, q: str) -> list[dict]:
    """Series of an InfluxQL query, times in epoch milliseconds; [] while the server is away."""
    params = urllib.parse.urlencode({"q": q, "db": database, "epoch": "ms"})
    request = urllib.request.Request(f"{influx.url}/query?{params}")
    token = base64.b64encode(f"{influx.username}:{influx.password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.loads(response.read())
    return [s for r in body.get("results", []) for s in r.get("series", [])]


def points_per_device(influx: InfluxDB, database: str, field: str = "m0") -> dict[str, int]:
    try:
        series = influx_select(
            influx, database, f'SELECT count("{field}") FROM "telemetry" GROUP BY "device"'
        )
    except OSError:
        return {}
    return {s["tags"]["device"]: s["values"][0][1] for s in series}


def timestamps(influx: InfluxDB, database: str, device: str, field: str = "m0") -> list[int]:
    series = influx_select(
        influx, database, f'SELECT "{field}" FROM "telemetry" WHERE "device" = \'{device}\''
    )
    return [row[0] for s in series for row in s["values"]]
