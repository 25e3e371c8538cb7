"""Faults while telemetry flows: ingest killed, InfluxDB away for a minute, Mosquitto restarted.

Everything runs for real: `vigil ingest` as a subprocess, and Mosquitto and
InfluxDB of this test's own (so they can be stopped) with persistence on. At
the end InfluxDB must hold exactly the samples the devices published: none
lost, none twice.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import start_or_skip
from tests.ingest.support import (
    Publisher,
    dead_letter_count,
    ingest_env,
    points_per_device,
    prepare_registry,
    start_ingest,
    telemetry_payload,
    timestamps,
    wait_for,
)
from vigil.servers import InfluxDB, Mosquitto, free_port

pytestmark = [pytest.mark.servers, pytest.mark.slow]

DEVICES = [f"dev-{i:03d}" for i in range(40)]
RATE_PER_S = 200  # messages per second over all devices
INFLUX_OUTAGE_S = 60


class Fleet(threading.Thread):
    """Publishes one sample per message, round robin over the devices, at a steady rate."""

    def __init__(self, broker_port: int, base_ms: int, client_id: str = "fault-fleet") -> None:
        super().__init__(daemon=True)
        self.publisher = Publisher(broker_port, client_id)
        self.base_ms = base_ms
        self.seq = dict.fromkeys(DEVICES, 0)
        self.halt = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        sent = 0
        while not self.halt.is_set():
            device = DEVICES[sent % len(DEVICES)]
            seq = self.seq[device]
            self.publisher.publish(
                f"vigil/v1/dev/{device}/telemetry",
                telemetry_payload(seq, self.base_ms + seq * 1000, {"m0": float(seq), "m1": 0.5}),
            )
            self.seq[device] = seq + 1
            sent += 1
            ahead = sent / RATE_PER_S - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)

    def expected(self, device: str) -> list[int]:
        return [self.base_ms + s * 1000 for s in range(self.seq[device])]


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return json.loads(r.read())["ok"]
    except OSError:
        return False


def assert_all_stored(influx: InfluxDB, database: str, fleet: Fleet) -> None:
    """InfluxDB holds exactly the samples the fleet published, each at its own time."""
    expected = {d: fleet.seq[d] for d in DEVICES}
    try:
        wait_for(
            lambda: points_per_device(influx, database) == expected,
            120,
            "InfluxDB holds every published sample",
        )
    except AssertionError:
        stored = points_per_device(influx, database)
        short = {d: expected[d] - stored.get(d, 0) for d in DEVICES
                 if stored.get(d, 0) != expected[d]}
        raise AssertionError(f"samples missing (negative: extra) per device: {short}") from None
    for device in DEVICES:
        assert timestamps(influx, database, device) == fleet.expected(device), device


def test_no_sample_lost_or_doubled_through_kill_outage_and_broker_restart(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "mosquitto", extra_config=["autosave_interval 5"])
    influx = InfluxDB(tmp_path / "influxdb")
    start_or_skip(broker)
    start_or_skip(influx)
    ingest: subprocess.Popen[bytes] | None = None
    fleet: Fleet | None = None
    try:
        database = influx.create_database("faults")
        sql_url = f"sqlite:///{tmp_path / 'vigil.db'}"
        prepare_registry(sql_url, DEVICES)
        http_port = free_port()
        # One worker, one partition: a plain subscription, which Mosquitto restores from its
        # persistence file (it does not restore shared subscriptions; see ingest/README.md).
        env = ingest_env(
            broker.port,
            influx,
            database,
            sql_url,
            client_id="fault-ingest",
            shared_group="",
            metrics_port=http_port,
            batch_interval_s=0.2,
            max_backoff_s=2,
        )
        ingest = start_ingest(env, tmp_path)
        wait_for(lambda: ready(http_port), 60, "ingest ready")

        now_s = int(time.time())
        fleet = Fleet(broker.port, (now_s - 3600) * 1000)
        fleet.start()
        time.sleep(6)

        ingest.send_signal(
            signal.SIGKILL
        )  # a crash: whatever was received but not written is not acked
        ingest.wait(30)
        time.sleep(2)
        ingest = start_ingest(env, tmp_path)
        wait_for(lambda: ready(http_port), 60, "ingest ready after the kill")
        time.sleep(4)

        influx.stop()
        time.sleep(INFLUX_OUTAGE_S)
        influx.start()
        wait_for(lambda: ready(http_port), 90, "ingest ready once InfluxDB is back")

        broker.stop()
        time.sleep(1)
        broker.start()
        wait_for(lambda: ready(http_port), 60, "ingest ready after the broker restart")
        time.sleep(4)

        fleet.halt.set()
        fleet.join(10)
        fleet.publisher.wait_acked(120)
        assert sum(fleet.seq.values()) > 60 * RATE_PER_S  # it really flowed throughout
        assert_all_stored(influx, database, fleet)
        assert dead_letter_count(sql_url) == 0

        ingest.send_signal(signal.SIGTERM)
        assert ingest.wait(60) == 0
        ingest = None
    finally:
        if fleet is not None:
            fleet.halt.set()
            fleet.publisher.close()
        if ingest is not None:
            ingest.kill()
            ingest.wait()
        broker.stop()
        influx.stop()


def pair_envs(
    broker: Mosquitto, influx: InfluxDB, database: str, sql_url: str, ports: list[int]
) -> list[dict[str, str]]:
    """Two workers, each keeping one partition of the devices."""
    return [
        ingest_env(
            broker.port,
            influx,
            database,
            sql_url,
            partitions=2,
            partition=i,
            metrics_port=port,
            batch_interval_s=0.2,
        )
        for i, port in enumerate(ports)
    ]


@dataclass
class Pair:
    """Two workers, a partition each, and the fleet publishing to their broker."""

    sql_url: str
    ports: list[int]
    envs: list[dict[str, str]]
    workers: list[subprocess.Popen[bytes]]
    fleet: Fleet

    def ready(self) -> bool:
        return all(ready(p) for p in self.ports)

    def finish(self, influx: InfluxDB, database: str) -> None:
        """Stop the fleet; all it published is stored, both took a share and stop cleanly."""
        self.fleet.halt.set()
        self.fleet.join(10)
        self.fleet.publisher.wait_acked(120)
        assert_all_stored(influx, database, self.fleet)
        shares = [_scrape_samples(p) for p in self.ports]
        assert all(share > 0 for share in shares), f"one worker took nothing: {shares}"
        for worker in self.workers:
            worker.send_signal(signal.SIGTERM)
        assert [w.wait(60) for w in self.workers] == [0, 0]


@contextlib.contextmanager
def running_pair(broker: Mosquitto, influx: InfluxDB, database: str, tmp_path: Path,
                 fleet_id: str) -> Iterator[Pair]:
    """The registry of DEVICES, two workers ready and the fleet started; all stopped after."""
    sql_url = f"sqlite:///{tmp_path / 'vigil.db'}"
    prepare_registry(sql_url, DEVICES)
    ports = [free_port(), free_port()]
    envs = pair_envs(broker, influx, database, sql_url, ports)
    workers = [start_ingest(env, tmp_path, f"ingest-{i}.log") for i, env in enumerate(envs)]
    fleet: Fleet | None = None
    try:
        wait_for(lambda: all(ready(p) for p in ports), 60, "both workers ready")
        fleet = Fleet(broker.port, (int(time.time()) - 3600) * 1000, client_id=fleet_id)
        fleet.start()
        # The tests replace workers in this same list, so the ones running at the end stop.
        yield Pair(sql_url, ports, envs, workers, fleet)
    finally:
        if fleet is not None:
            fleet.halt.set()
            fleet.publisher.close()
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


def test_two_workers_share_the_flow_and_survive_one_being_killed(
    mosquitto: Mosquitto, influxdb: InfluxDB, influx_database: str, tmp_path: Path
) -> None:
    """Two workers, a partition each; one is SIGKILLed mid-flow and restarted."""
    with running_pair(mosquitto, influxdb, influx_database, tmp_path, "pair-fleet") as pair:
        time.sleep(5)
        pair.workers[0].send_signal(signal.SIGKILL)
        pair.workers[0].wait(30)
        time.sleep(3)
        pair.workers[0] = start_ingest(pair.envs[0], tmp_path, "ingest-0.log")
        wait_for(lambda: ready(pair.ports[0]), 60, "the killed worker back")
        time.sleep(4)
        pair.finish(influxdb, influx_database)


def _scrape_samples(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("vigil_ingest_samples_total "):
                return float(line.split()[1])
    return 0.0


def test_two_workers_lose_nothing_the_broker_accepts_around_its_restarts(
    influxdb: InfluxDB, influx_database: str, tmp_path: Path
) -> None:
    """Nothing the broker acknowledged is lost across its restarts, with two workers.

    First the broker restarts under a running pair of workers while the devices
    publish; then it restarts while both workers are stopped, and the devices
    publish with no worker connected: only subscriptions the broker restored from
    its persistence file can take those messages (Mosquitto 2.0 drops the shared
    ones, and lost 15 to 165 samples per restart in `vigil bench soak` that way).
    """
    broker = Mosquitto(tmp_path / "mosquitto", extra_config=["autosave_interval 5"])
    start_or_skip(broker)
    try:
        with running_pair(broker, influxdb, influx_database, tmp_path, "restart-fleet") as pair:
            time.sleep(3)
            broker.stop()
            broker.start()
            wait_for(pair.ready, 60, "both workers back after the restart")
            time.sleep(2)

            for worker in pair.workers:
                worker.send_signal(signal.SIGTERM)
            assert [w.wait(60) for w in pair.workers] == [0, 0]
            broker.stop()
            broker.start()
            sent_before = pair.fleet.publisher.acked
            wait_for(lambda: pair.fleet.publisher.acked > sent_before + 2 * RATE_PER_S, 30,
                     "the broker acknowledging publications while no worker is connected")
            pair.workers[:] = [start_ingest(env, tmp_path, f"ingest-{i}.log")
                               for i, env in enumerate(pair.envs)]
            wait_for(pair.ready, 60, "both workers started again")
            time.sleep(2)
            pair.finish(influxdb, influx_database)
            assert dead_letter_count(pair.sql_url) == 0
    finally:
        broker.stop()
