"""Ingest under pressure, in process: a store that falls behind, a flood of large payloads,
the SQL database going away, and the embedded telemetry store end to end."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text

from edge_agent.protocol import topic
from ingest.records import IngestRecords
from ingest.service import IngestService
from tests.conftest import start_or_skip
from tests.ingest.support import (
    Publisher,
    dead_letters,
    devices,
    events,
    prepare_registry,
    telemetry_payload,
    wait_for,
)
from vigil.config import IngestSettings, MqttSettings, Settings
from vigil.db.session import make_engine
from vigil.servers import Mosquitto, PostgreSQL, ServerUnavailable
from vigil.telemetry.embedded import EmbeddedStore
from vigil.telemetry.store import Point, TelemetryStore

pytestmark = [pytest.mark.servers]

DEVICES = ["pump-1", "pump-2"]
T0 = (int(time.time()) - 3600) * 1000  # whole seconds, an hour ago


class GatedStore(EmbeddedStore):
    """The embedded store behind a gate: until it opens, every write waits, as on a store
    that has fallen far behind."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = threading.Event()

    def write(self, points: Sequence[Point]) -> int:  # type: ignore[override]
        self.gate.wait(120)
        return super().write(points)


class Peaks(threading.Thread):
    """Samples the service's memory gauges every few milliseconds and keeps their peaks."""

    def __init__(self, service: IngestService) -> None:
        super().__init__(daemon=True)
        self.service = service
        self.inbox = self.inbox_bytes = self.buffered = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.005):
            self.inbox = max(self.inbox, len(self.service.inbox))
            self.inbox_bytes = max(self.inbox_bytes, self.service.inbox.bytes)
            self.buffered = max(self.buffered, self.service.pipeline.buffered_samples)


def settings(broker: Mosquitto, sql_url: str, name: str, **ingest: object) -> Settings:
    return Settings(
        database_url=sql_url,
        mqtt=MqttSettings(host=broker.host, port=broker.port),
        ingest=IngestSettings(**{"metrics_port": 0, "batch_interval_s": 0.2,
                                 "client_id": name, "shared_group": name, **ingest}),
    )


@contextmanager
def running(config: Settings, store: TelemetryStore) -> Iterator[IngestService]:
    service = IngestService(config, store, IngestRecords.from_url(config.sql_url),
                            owns_stores=True)
    service.start()
    try:
        assert service.subscriber.wait_subscribed(30), "ingest did not subscribe"
        yield service
    finally:
        service.stop(60)


def acks(service: IngestService) -> float:
    return service.metrics.acks._value.get()


def stored(store: TelemetryStore, device: str) -> int:
    return len(store.query(device, T0, T0 + 3_600_000))


@pytest.mark.parametrize("sql_url", ["sqlite"], indirect=True)
def test_a_store_that_falls_behind_holds_ingest_to_its_memory_bounds(
    mosquitto: Mosquitto, sql_url: str, tmp_path: Path
) -> None:
    """Batches wait for the writer, the inbox fills, and the broker stops at Receive Maximum."""
    prepare_registry(sql_url, DEVICES)
    config = settings(mosquitto, sql_url, "lim-slow", receive_maximum=60, batch_size=10,
                      max_buffered_samples=1000)
    store = GatedStore(tmp_path / "telemetry.db")
    with running(config, store) as service:
        peaks = Peaks(service)
        peaks.start()
        pub = Publisher(mosquitto.port, "lim-slow-pub")
        for seq in range(300):
            pub.publish(topic("pump-1", "telemetry"), telemetry_payload(seq, T0 + seq * 1000,
                                                                         {"m0": 1.0}))
        pub.wait_acked()
        # Three batches of 10 in memory (being written, waiting, being handed over): the
        # other 30 messages of the window wait in the inbox, and the broker keeps the rest.
        wait_for(lambda: len(service.inbox) == 30, 30, "the broker's window full")
        assert acks(service) == 0
        assert service.pipeline.buffered_samples == 30
        store.gate.set()
        wait_for(lambda: acks(service) == 300, 60, "everything written once the store is back")
        peaks.done.set()
        peaks.join()
        pub.close()
        assert stored(store, "pump-1") == 300
    assert peaks.inbox <= 60 + 1  # the inbox's own bound, Receive Maximum and one
    assert peaks.buffered <= 30


@pytest.mark.parametrize("sql_url", ["sqlite"], indirect=True)
def test_a_flood_of_large_payloads_stops_at_the_inbox_byte_limit(
    mosquitto: Mosquitto, sql_url: str, tmp_path: Path
) -> None:
    prepare_registry(sql_url, DEVICES)
    limit = 1024 * 1024
    config = settings(mosquitto, sql_url, "lim-bytes", receive_maximum=1000, batch_size=10,
                      max_inbox_bytes=limit)
    store = GatedStore(tmp_path / "telemetry.db")
    with running(config, store) as service:
        peaks = Peaks(service)
        peaks.start()
        pub = Publisher(mosquitto.port, "lim-bytes-pub")
        for seq in range(30):  # three batches, held by the gated store
            pub.publish(topic("pump-1", "telemetry"), telemetry_payload(seq, T0 + seq * 1000,
                                                                         {"m0": 1.0}))
        big = b"x" * (200 * 1024)  # not JSON: each becomes a dead letter
        for _ in range(20):
            pub.publish(topic("pump-2", "telemetry"), big)
        pub.wait_acked()
        wait_for(lambda: service.inbox.producer_waiting, 30, "the inbox pushing back")
        assert service.inbox.bytes <= limit
        store.gate.set()
        wait_for(lambda: acks(service) == 50, 60, "everything handled once the store is back")
        peaks.done.set()
        peaks.join()
        pub.close()
    assert peaks.inbox_bytes <= limit
    assert len(dead_letters(sql_url)) == 20


def checkpoint(sql_url: str) -> None:
    engine = make_engine(sql_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("CHECKPOINT"))
    finally:
        engine.dispose()


def restart_after_crash(server: PostgreSQL, timeout: float = 60.0) -> None:
    """Start a killed PostgreSQL again, once its orphaned backends have let go of its data."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            server.start()
            return
        except ServerUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_the_sql_database_going_away_holds_acknowledgements_until_it_is_back(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    server = PostgreSQL(tmp_path / "postgresql")
    start_or_skip(server)
    try:
        sql_url = server.url(server.create_database("ingest_sql_down"))
        prepare_registry(sql_url, DEVICES)
        config = settings(mosquitto, sql_url, "lim-sql", max_backoff_s=0.5)
        store = EmbeddedStore(tmp_path / "telemetry.db")
        with running(config, store) as service:
            pub = Publisher(mosquitto.port, "lim-sql-pub")

            def event(seq: int) -> str:
                return json.dumps({"v": 1, "seq": seq, "ts": T0 + seq, "code": "E-1",
                                   "severity": "info", "text": f"event {seq}"})

            for seq in range(5):
                pub.publish(topic("pump-1", "events"), event(seq))
            pub.wait_acked()
            wait_for(lambda: acks(service) == 5, 30, "the first events acknowledged")
            # The test server commits asynchronously, for speed: make what it acknowledged
            # durable before pulling the plug, as a production server does on every commit.
            checkpoint(sql_url)
            server.kill()
            for seq in range(5, 10):
                pub.publish(topic("pump-1", "events"), event(seq))
            pub.wait_acked()
            wait_for(lambda: not service.ready()[1]["sql"], 60, "the failure noticed")
            assert acks(service) == 5
            assert not service.ready()[0]
            restart_after_crash(server)
            wait_for(lambda: acks(service) == 10, 60, "the rest acknowledged once it is back")
            assert service.ready()[1]["sql"]
            pub.close()
        assert sorted(e.seq for e in events(sql_url)) == list(range(10))
    finally:
        server.stop()


@pytest.mark.parametrize("sql_url", ["sqlite"], indirect=True)
def test_ingest_on_the_embedded_store(mosquitto: Mosquitto, sql_url: str, tmp_path: Path) -> None:
    """The default set-up: telemetry into the embedded store, presence and events into SQLite."""
    prepare_registry(sql_url, DEVICES)
    config = settings(mosquitto, sql_url, "lim-embedded")
    with running(config, EmbeddedStore(tmp_path / "telemetry.db")) as service:
        pub = Publisher(mosquitto.port, "lim-embedded-pub")
        for seq in range(20):
            pub.publish(topic("pump-2", "telemetry"), telemetry_payload(seq, T0 + seq * 1000,
                                                                         {"m0": float(seq)}))
        pub.publish(topic("pump-2", "status"),
                    json.dumps({"v": 1, "state": "online", "ts": T0, "fw": "3.1"}))
        pub.wait_acked()
        wait_for(lambda: acks(service) == 21, 30, "all acknowledged")
        pub.close()
    with EmbeddedStore(tmp_path / "telemetry.db") as store:
        frame = store.query("pump-2", T0, T0 + 3_600_000)
    assert frame["m0"].tolist() == [float(s) for s in range(20)]
    assert devices(sql_url)["pump-2"].online and devices(sql_url)["pump-2"].firmware == "3.1"
