"""Ingest end to end against real Mosquitto, InfluxDB and SQLite/PostgreSQL, in process."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from edge_agent.protocol import topic
from ingest.records import IngestRecords
from ingest.service import IngestService
from tests.edge_agent.conftest import AgentProcess, write_config
from tests.ingest.support import (
    Publisher,
    dead_letters,
    devices,
    events,
    points_per_device,
    prepare_registry,
    prepare_registry_at_once,
    settings_for,
    telemetry_payload,
    timestamps,
    wait_for,
)
from vigil.config import Settings
from vigil.memory import MemoryRelease
from vigil.servers import InfluxDB, Mosquitto
from vigil.telemetry.influx import InfluxStore
from vigil.telemetry.store import StoreUnavailable

pytestmark = [pytest.mark.servers]

DEVICES = ["pump-1", "pump-2", "mon-3"]


@contextmanager
def running(settings: Settings, store: InfluxStore | None = None,
            memory: MemoryRelease | None = None) -> Iterator[IngestService]:
    store = store or InfluxStore.from_settings(settings.influxdb)
    service = IngestService(settings, store, IngestRecords.from_url(settings.sql_url),
                            memory=memory)
    service.start()
    try:
        assert service.subscriber.wait_subscribed(30), "ingest did not subscribe"
        yield service
    finally:
        service.stop(30)
        store.close()
        service.records.close()


def now_ms() -> int:
    return int(time.time() * 1000)


def whole_second_ago(seconds: int) -> int:
    """A timestamp on a whole second, which every store keeps exactly."""
    return (now_ms() // 1000 - seconds) * 1000


def test_telemetry_status_events_and_bad_messages(
    mosquitto: Mosquitto, influxdb: InfluxDB, influx_database: str, sql_url: str
) -> None:
    prepare_registry(sql_url, DEVICES)
    settings = settings_for(
        mosquitto,
        influxdb,
        influx_database,
        sql_url,
        client_id="it-basic",
        shared_group="it-basic",
        last_seen_interval_s=0.2,
    )
    base = whole_second_ago(120)
    with running(settings) as service:
        pub = Publisher(mosquitto.port, "it-basic-pub")
        for seq in range(20):
            for device in DEVICES:
                pub.publish(
                    f"vigil/v1/dev/{device}/telemetry",
                    telemetry_payload(seq, base + seq * 1000, {"m0": float(seq), "m1": 1.0}),
                )
        # a redelivered or replayed copy stores nothing twice
        pub.publish(
            "vigil/v1/dev/pump-1/telemetry",
            telemetry_payload(3, base + 3000, {"m0": 3.0, "m1": 1.0}),
        )
        pub.publish(
            "vigil/v1/dev/pump-1/status",
            json.dumps(
                {
                    "v": 1,
                    "state": "maintenance",
                    "ts": now_ms(),
                    "fw": "4.2.0",
                    "model": "PUMP-X1",
                    "battery": 77,
                }
            ),
        )
        pub.publish(
            "vigil/v1/dev/mon-3/status", json.dumps({"v": 1, "state": "offline", "ts": now_ms()})
        )
        event = json.dumps(
            {
                "v": 1,
                "seq": 9,
                "ts": now_ms(),
                "code": "E-OCCL",
                "severity": "error",
                "text": "occlusion",
            }
        )
        pub.publish("vigil/v1/dev/pump-2/events", event)
        pub.publish("vigil/v1/dev/pump-2/events", event)
        # text PostgreSQL cannot store: refused by the protocol, never a stuck batch
        nul_event = json.loads(event) | {"seq": 10, "text": "bad\x00text"}
        pub.publish("vigil/v1/dev/pump-2/events", json.dumps(nul_event))
        pub.publish(
            "vigil/v1/dev/pump-1/status",
            '{"v": 1, "state": "online", "ts": %d, "note": "\\ud800"}' % now_ms(),
        )
        pub.publish("vigil/v1/dev/stranger/telemetry", telemetry_payload(1, base, {"m0": 1.0}))
        pub.publish("vigil/v1/dev/pump-1/telemetry", b"\x00\xffnot json")
        pub.publish(
            "vigil/v1/dev/pump-2/telemetry",
            telemetry_payload(99, now_ms() + 3_600_000, {"m0": 1.0}),
        )
        pub.wait_acked()

        wait_for(
            lambda: points_per_device(influxdb, influx_database) == {d: 20 for d in DEVICES},
            60,
            "all 60 samples queryable",
        )
        wait_for(lambda: len(dead_letters(sql_url)) == 5, 30, "five dead letters")
        wait_for(
            lambda: service.metrics.acks._value.get() >= pub.sent, 30, "every message acknowledged"
        )
        wait_for(
            lambda: all(d.last_seen for d in devices(sql_url).values()),
            30,
            "last_seen set from telemetry",
        )

        assert timestamps(influxdb, influx_database, "pump-1") == [
            base + s * 1000 for s in range(20)
        ]
        reasons = sorted(d.reason for d in dead_letters(sql_url))
        assert any("not registered" in r for r in reasons)
        assert any("UTF-8 JSON" in r for r in reasons)
        assert any("ahead of the platform clock" in r for r in reasons)
        assert any("NUL character" in r for r in reasons)
        assert any("unpaired surrogate" in r for r in reasons)
        letters = {d.topic: d for d in dead_letters(sql_url)}
        assert letters["vigil/v1/dev/pump-1/telemetry"].payload.startswith("\\x00\\xffnot json")

        registry = devices(sql_url)
        pump = registry["pump-1"]
        assert (pump.state, pump.online, pump.firmware) == ("maintenance", True, "4.2.0")
        assert pump.status_detail["battery"] == 77
        assert (registry["mon-3"].state, registry["mon-3"].online) == ("offline", False)
        stored = events(sql_url)
        assert [(e.device_id, e.seq, e.code, e.severity) for e in stored] == [
            ("pump-2", 9, "E-OCCL", "error")
        ]

        with urllib.request.urlopen(f"http://127.0.0.1:{service.endpoints.port}/metrics") as r:
            text = r.read().decode()
        assert 'vigil_ingest_messages_total{kind="telemetry",outcome="duplicate"} 1.0' in text
        assert 'vigil_ingest_dead_letters_total{reason="unknown_device"} 1.0' in text
        assert "vigil_ingest_samples_total 60.0" in text
        with urllib.request.urlopen(f"http://127.0.0.1:{service.endpoints.port}/readyz") as r:
            assert json.loads(r.read())["ok"] is True
        pub.close()


class FlakyStore(InfluxStore):
    """The real store, made to fail while ``down`` is set (an outage on demand)."""

    down = True

    def write(self, points):  # type: ignore[no-untyped-def]
        if self.down:
            raise StoreUnavailable("InfluxDB is down (test)")
        return super().write(points)


@pytest.mark.parametrize("sql_url", ["sqlite"], indirect=True)
def test_nothing_is_acknowledged_while_the_store_is_down(
    mosquitto: Mosquitto, influxdb: InfluxDB, influx_database: str, sql_url: str
) -> None:
    prepare_registry(sql_url, DEVICES)
    settings = settings_for(
        mosquitto,
        influxdb,
        influx_database,
        sql_url,
        client_id="it-down",
        shared_group="it-down",
        max_backoff_s=0.5,
    )
    store = FlakyStore.from_settings(settings.influxdb)
    base = whole_second_ago(120)
    pub = Publisher(mosquitto.port, "it-down-pub")
    with running(settings, store) as service:
        for seq in range(50):
            pub.publish(
                "vigil/v1/dev/pump-1/telemetry",
                telemetry_payload(seq, base + seq * 1000, {"m0": 1.0}),
            )
        pub.wait_acked()
        wait_for(
            lambda: service.metrics.store_errors.labels("telemetry")._value.get() >= 2,
            30,
            "ingest retrying the store",
        )
        assert service.metrics.acks._value.get() == 0
        with urllib.request.urlopen(f"http://127.0.0.1:{service.endpoints.port}/healthz") as r:
            assert r.status == 200
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{service.endpoints.port}/readyz")
            raise AssertionError("ready while the store is down")
        except urllib.error.HTTPError as exc:
            assert exc.code == 503
        # stop without flushing: like a crash, the broker keeps every unacknowledged message
        service.pipeline.stop(timeout=0.5)
    settings2 = settings.model_copy()
    with running(settings2) as service:
        wait_for(
            lambda: points_per_device(influxdb, influx_database) == {"pump-1": 50},
            60,
            "the 50 samples arrive after the restart",
        )
        wait_for(lambda: service.metrics.acks._value.get() >= 50, 30, "all acknowledged")
    pub.close()


@pytest.mark.parametrize("sql_url", ["sqlite"], indirect=True)
def test_the_offline_will_marks_a_device_offline(
    mosquitto: Mosquitto, influxdb: InfluxDB, influx_database: str, sql_url: str
) -> None:
    import paho.mqtt.client as mqtt

    prepare_registry(sql_url, DEVICES)
    settings = settings_for(
        mosquitto, influxdb, influx_database, sql_url, client_id="it-will", shared_group="it-will"
    )
    with running(settings):
        device = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="pump-2", protocol=mqtt.MQTTv5
        )
        device.will_set(
            "vigil/v1/dev/pump-2/status",
            json.dumps({"v": 1, "state": "offline", "ts": now_ms(), "fw": "1.0"}),
            qos=1,
        )
        device.connect("127.0.0.1", mosquitto.port, keepalive=5)
        device.loop_start()
        device.publish(
            "vigil/v1/dev/pump-2/status",
            json.dumps({"v": 1, "state": "online", "ts": now_ms(), "fw": "1.0"}),
            qos=1,
        ).wait_for_publish(10)
        wait_for(lambda: devices(sql_url)["pump-2"].online, 30, "pump-2 online")
        device.loop_stop()
        # the connection drops without DISCONNECT: the broker sends the will
        device.socket().close()
        wait_for(
            lambda: devices(sql_url)["pump-2"].state == "offline",
            30,
            "the will marks pump-2 offline",
        )
        assert devices(sql_url)["pump-2"].online is False


@pytest.mark.parametrize("sql_url", ["sqlite"], indirect=True)
def test_the_agents_own_will_reaches_ingest_and_a_stale_one_changes_nothing(
    mosquitto: Mosquitto, influxdb: InfluxDB, influx_database: str, sql_url: str, tmp_path: Path
) -> None:
    """The real agent: its will, stamped when it connected, marks it offline after a power
    cut; once it is back, that will replayed (a retained copy, a redelivery) changes nothing."""
    prepare_registry(sql_url, DEVICES)
    settings = settings_for(
        mosquitto, influxdb, influx_database, sql_url, client_id="it-agent", shared_group="it-agent"
    )
    config = write_config(
        tmp_path / "agent.toml", device_id="mon-3", port=mosquitto.port,
        outbox_path=tmp_path / "outbox.db", sampling={"interval_s": 1.0, "status_interval_s": 1.0},
    )

    def held() -> dict:
        return devices(sql_url)["mon-3"].status_detail or {}

    with running(settings):
        agent = AgentProcess(config, tmp_path / "agent.log").start()
        try:
            first = wait_for(lambda: devices(sql_url)["mon-3"].online and held().get("session_ts"),
                             60, "the agent online")
            wait_for(lambda: held()["status_ts"] > first + 1000, 30, "a later status")
            agent.kill()  # a power cut: the broker sends the will after 1.5 keepalives
            wait_for(lambda: devices(sql_url)["mon-3"].state == "offline", 60, "the will")
            assert held()["session_ts"] == held()["status_ts"] == first

            agent.start()
            wait_for(lambda: devices(sql_url)["mon-3"].online and held()["session_ts"] > first,
                     60, "the agent online again")
            pub = Publisher(mosquitto.port, "it-agent-pub")
            stale = {"v": 1, "state": "offline", "ts": first, "fw": "", "model": "ct",
                     "session_ts": first}
            pub.publish(topic("mon-3", "status"), json.dumps(stale))
            # Published after it on the same connection: once stored, the stale will was judged.
            marker = {"v": 1, "seq": 10**9, "ts": now_ms(), "code": "MARKER", "severity": "info",
                      "text": ""}
            pub.publish(topic("mon-3", "events"), json.dumps(marker))
            pub.wait_acked()
            wait_for(lambda: any(e.code == "MARKER" for e in events(sql_url)), 30, "the marker")
            assert devices(sql_url)["mon-3"].online
            pub.close()
        finally:
            assert agent.stop() is not None, agent.tail()


@pytest.mark.parametrize("sql_url", ["sqlite"], indirect=True)
def test_samples_the_store_refuses_are_dead_lettered_without_stalling(
    mosquitto: Mosquitto, influxdb: InfluxDB, sql_url: str
) -> None:
    """InfluxDB refuses points older than its retention policy (HTTP 400) for good: no retry."""
    from tests.conftest import unique_name

    database = unique_name("test_rp")
    influxdb.query(f'CREATE DATABASE "{database}" WITH DURATION 1h NAME "short"')
    try:
        prepare_registry(sql_url, DEVICES)
        settings = settings_for(
            mosquitto,
            influxdb,
            database,
            sql_url,
            client_id="it-rp",
            shared_group="it-rp",
            max_backoff_s=0.5,
        )
        recent = whole_second_ago(60)
        old = whole_second_ago(3 * 3600)
        with running(settings) as service:
            pub = Publisher(mosquitto.port, "it-rp-pub")
            for seq in range(10):
                pub.publish(
                    "vigil/v1/dev/pump-1/telemetry",
                    telemetry_payload(seq, recent + seq * 1000, {"m0": 1.0}),
                )
            pub.publish("vigil/v1/dev/pump-2/telemetry", telemetry_payload(1, old, {"m0": 1.0}))
            pub.wait_acked()
            wait_for(lambda: service.metrics.acks._value.get() >= 11, 60, "all acknowledged")
            assert points_per_device(influxdb, database) == {"pump-1": 10}
            letters = dead_letters(sql_url)
            assert len(letters) == 1 and "retention policy" in letters[0].reason
            assert "pump-2" in letters[0].topic
            pub.close()
    finally:
        influxdb.query(f'DROP DATABASE "{database}"')


@pytest.mark.parametrize("sql_url", ["sqlite"], indirect=True)
def test_nothing_is_judged_before_the_device_registry_can_be_read(
    mosquitto: Mosquitto, influxdb: InfluxDB, influx_database: str, sql_url: str, tmp_path: Path
) -> None:
    """With the registry unreadable every device would look unknown: ingest waits instead."""
    settings = settings_for(
        mosquitto, influxdb, influx_database, sql_url, client_id="it-noreg", shared_group="it-noreg"
    )
    base = whole_second_ago(60)
    with running(settings) as service:  # the database has no tables yet
        pub = Publisher(mosquitto.port, "it-noreg-pub")
        for seq in range(5):
            pub.publish(
                "vigil/v1/dev/pump-1/telemetry",
                telemetry_payload(seq, base + seq * 1000, {"m0": 1.0}),
            )
        pub.wait_acked()
        # Received (so the broker has sent them) but left in the inbox, judged by nobody.
        wait_for(lambda: len(service.inbox) == 5, 30, "the messages received")
        assert service.metrics.acks._value.get() == 0
        assert not service.ready()[0]
        prepare_registry_at_once(sql_url, DEVICES, tmp_path)
        wait_for(
            lambda: points_per_device(influxdb, influx_database) == {"pump-1": 5},
            60,
            "the samples arrive once the registry is readable",
        )
        assert dead_letters(sql_url) == []
        pub.close()


@pytest.mark.parametrize("sql_url", ["sqlite"], indirect=True)
def test_millisecond_timestamps_survive_the_trip(
    mosquitto: Mosquitto, influxdb: InfluxDB, influx_database: str, sql_url: str
) -> None:
    prepare_registry(sql_url, DEVICES)
    settings = settings_for(
        mosquitto, influxdb, influx_database, sql_url, client_id="it-ms", shared_group="it-ms"
    )
    base = now_ms() - 60_000
    with running(settings) as service:
        pub = Publisher(mosquitto.port, "it-ms-pub")
        for seq in range(200):
            pub.publish(
                "vigil/v1/dev/pump-1/telemetry", telemetry_payload(seq, base + seq, {"m0": 1.0})
            )
        pub.wait_acked()
        wait_for(lambda: service.metrics.acks._value.get() >= 200, 60, "all acknowledged")
        pub.close()
    assert timestamps(influxdb, influx_database, "pump-1") == [base + s for s in range(200)]


@pytest.mark.parametrize("sql_url", ["sqlite"], indirect=True)
def test_acknowledged_messages_are_not_delivered_again(
    mosquitto: Mosquitto, influxdb: InfluxDB, influx_database: str, sql_url: str
) -> None:
    """The broker really took the acknowledgements: a restarted session gets nothing twice."""
    prepare_registry(sql_url, DEVICES)
    settings = settings_for(
        mosquitto, influxdb, influx_database, sql_url, client_id="it-acked", shared_group="it-acked"
    )
    base = whole_second_ago(60)
    pub = Publisher(mosquitto.port, "it-acked-pub")
    with running(settings) as service:
        for seq in range(300):
            pub.publish(
                "vigil/v1/dev/pump-1/telemetry", telemetry_payload(seq, base + seq, {"m0": 1.0})
            )
        pub.wait_acked()
        wait_for(lambda: service.metrics.acks._value.get() >= 300, 60, "all acknowledged")
    with running(settings) as service:
        # A resumed session gets what was left unacknowledged before anything new, so once
        # two new messages are through, any redelivery would have been counted already.
        pub.publish("vigil/v1/dev/pump-1/telemetry", telemetry_payload(999, base, {"m0": 2.0}))
        pub.publish("vigil/v1/dev/pump-1/telemetry", telemetry_payload(1000, base, {"m0": 3.0}))
        wait_for(lambda: service.metrics.acks._value.get() >= 2, 30, "the new messages")
        received = sum(
            service.metrics.messages.labels("telemetry", outcome)._value.get()
            for outcome in ("accepted", "duplicate")
        )
        assert received == 2
    pub.close()


@pytest.mark.parametrize("sql_url", ["sqlite"], indirect=True)
def test_the_writer_hands_freed_memory_back_after_writing_and_not_while_idle(
    mosquitto: Mosquitto, influxdb: InfluxDB, influx_database: str, sql_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ingest.pipeline

    prepare_registry(sql_url, DEVICES)
    settings = settings_for(
        mosquitto, influxdb, influx_database, sql_url, client_id="it-trim", shared_group="it-trim"
    )
    trims: list[float] = []
    sizes = iter(range(200 * 2**20, 0, -2**20))  # each reading 1 MB below the one before

    def trim() -> bool:
        trims.append(time.monotonic())
        return True

    monkeypatch.setattr(ingest.pipeline, "TRIM_EVERY_S", 0.0)
    memory = MemoryRelease(trim=trim, resident=lambda: next(sizes))
    with running(settings, memory=memory) as service:
        time.sleep(1.5)  # idle: nothing written, so nothing to hand back
        assert trims == []
        pub = Publisher(mosquitto.port, "it-trim-pub")
        base = whole_second_ago(60)
        for seq in range(50):
            pub.publish(topic("pump-1", "telemetry"),
                        telemetry_payload(seq, base + seq, {"m0": 1.0}))
        pub.wait_acked()
        wait_for(lambda: service.metrics.acks._value.get() >= 50, 60, "all acknowledged")
        wait_for(lambda: trims, 10, "a trim after the write")
        time.sleep(1.5)
        after_write = len(trims)
        time.sleep(1.5)  # idle again: no further trims
        assert len(trims) == after_write
        pub.close()
        metric = service.metrics.registry.get_sample_value
        assert metric("vigil_ingest_memory_returned_bytes_total") == 2**20 * len(trims)
        resident = metric("vigil_ingest_resident_memory_bytes")
        assert resident is not None and resident < 200 * 2**20
