"""Ingest throughput and end-to-end latency, against a real Mosquitto and InfluxDB on this machine.

Three consumers drain the same flood, one after the other: a plain paho-mqtt
subscriber that only receives and parses JSON (the raw limit of a Python
consumer), then `vigil ingest` with one worker, then with two workers on the
shared subscription. For each, the consumer is connected and subscribed, then
frozen (SIGSTOP) while half the messages queue up at the broker; it is thawed
as the publisher floods the other half, so it always has work and the figure is
its own rate, not the publisher's. Ingest counts as done when InfluxDB has
every sample (its durable-sample counters).

Latency: with ingest running under a steady background load (half its measured
rate), probe messages stamped with their publish time are polled from
InfluxDB until they are queryable.

The servers (Mosquitto, InfluxDB, SQLite) are started in a temporary folder
and removed afterwards. Readable figures first, then one line of JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edge_agent import protocol

METRICS = [f"m{i}" for i in range(8)]
PROBE_DEVICE = "probe-0"
RAW_CLIENT_ID = "bench-raw"
# A consumer that finishes right after the publisher may have been waiting for it.
BOUND_NOTE = " - PUBLISHER-BOUND, rate understated: raise --messages"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--messages",
        type=int,
        default=200_000,
        help="telemetry messages per consumer (default 200000)",
    )
    parser.add_argument("--devices", type=int, default=1000, help="device ids (default 1000)")
    parser.add_argument(
        "--latency-seconds",
        type=float,
        default=10.0,
        help="how long to send latency probes per ingest setup (default 10)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[1, 2],
        help="ingest worker counts to measure (default: 1 2)",
    )


# --- payloads and processes ------------------------------------------------------


def payload(seq: int, ts: int, value: float) -> bytes:
    """A device's telemetry message: one sample of eight metrics, as the agent encodes it."""
    metrics = ",".join(f'"{name}":{value + i:.3f}' for i, name in enumerate(METRICS))
    return f'{{"v":1,"seq":{seq},"samples":[{{"ts":{ts},"metrics":{{{metrics}}}}}]}}'.encode()


def _publish(
    port: int,
    devices: int,
    start: int,
    stop: int,
    base_ms: int,
    client_id: str,
    rate: float,
    done: Any,
) -> None:
    """Publish messages start..stop round robin over the devices (QoS 1); report the rate."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(0)
    acked = [0]
    client.on_publish = lambda *a: acked.__setitem__(0, acked[0] + 1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    topics = [protocol.topic(f"dev-{d:05d}", "telemetry").encode() for d in range(devices)]
    window = 1000
    started = time.monotonic()
    for i in range(start, stop):
        seq, device = divmod(i, devices)
        while i - start - acked[0] >= window:
            time.sleep(0.0005)
        if rate:
            ahead = (i - start) / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
        client.publish(
            topics[device].decode(), payload(seq, base_ms + seq * 1000, (i % 997) / 10), qos=1
        )
    while acked[0] < stop - start:
        time.sleep(0.001)
    elapsed = time.monotonic() - started
    client.disconnect()
    client.loop_stop()
    done.put(((stop - start) / elapsed if elapsed > 0 else 0.0, time.time()))


def _raw_consumer(port: int, expected: int, ready: Any, result: Any) -> None:
    """The raw limit: a plain paho-mqtt subscriber that receives and parses JSON, nothing else."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    count = [0]

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        json.loads(message.payload)
        count[0] += 1
        if count[0] == expected:
            result.put(time.time())

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=RAW_CLIENT_ID, protocol=mqtt.MQTTv5
    )
    client.on_message = on_message
    client.on_subscribe = lambda *a: ready.set()
    client.on_connect = lambda c, *a: c.subscribe(protocol.subscription("telemetry"), qos=1)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 600
    client.connect("127.0.0.1", port, clean_start=False, properties=props)
    client.loop_forever()


# --- helpers ---------------------------------------------------------------------------


def _end_session(port: int, client_id: str) -> None:
    """Discard a stopped consumer's persistent session at the broker.

    Left alone, the broker would go on queueing every later message of the
    benchmark for it, work that would be charged to the next consumer measured.
    A clean start under the same client id replaces the session; disconnecting
    with no expiry then ends it.
    """
    import paho.mqtt.client as mqtt

    connected = threading.Event()
    refused: list[str] = []

    def on_connect(
        client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            refused.append(str(reason_code))
        connected.set()

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )
    client.on_connect = on_connect
    client.connect("127.0.0.1", port, clean_start=True)
    client.loop_start()
    try:
        if not connected.wait(30) or refused:
            raise RuntimeError(f"could not end the session of {client_id} at the broker"
                               f"{': ' + refused[0] if refused else ''}")
        client.disconnect()
    finally:
        client.loop_stop()


def _scrape(port: int, name: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except (OSError, urllib.error.URLError):
        return 0.0
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(json.loads(response.read())["ok"])
    except (OSError, urllib.error.URLError, ValueError):
        return False


def _wait(condition: Any, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        from vigil.servers import InfluxDB, Mosquitto

        self.args = args
        self.workdir = workdir
        # Publishers may have many QoS 1 messages in flight; the consumers set their own window.
        self.broker = Mosquitto(workdir / "mosquitto", extra_config=["max_inflight_messages 1000"])
        self.influx = InfluxDB(workdir / "influxdb")
        self.sql_url = f"sqlite:///{workdir / 'vigil.db'}"
        self.base_ms = (int(time.time()) - 7200) * 1000
        self.ctx = mp.get_context("spawn")
        self.processes: list[subprocess.Popen[bytes]] = []

    # -- setup --------------------------------------------------------------------------

    def start(self) -> None:
        from vigil.db.migrations import upgrade
        from vigil.db.models import Device
        from vigil.db.session import make_engine, make_session_factory, transaction

        self.broker.start()
        self.influx.start()
        engine = make_engine(self.sql_url)
        upgrade(engine)
        ids = [f"dev-{d:05d}" for d in range(self.args.devices)] + [PROBE_DEVICE]
        with transaction(make_session_factory(engine)) as session:
            session.add_all(Device(id=d, serial=f"SN-{d}", model="BENCH-1") for d in ids)
        engine.dispose()

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.broker.stop()
        self.influx.stop()

    # -- the flood ------------------------------------------------------------------------

    def _flood(self, client_id: str, start: int, stop: int, rate: float = 0.0) -> tuple[Any, Any]:
        done = self.ctx.Queue()
        process = self.ctx.Process(
            target=_publish,
            args=(
                self.broker.port,
                self.args.devices,
                start,
                stop,
                self.base_ms,
                client_id,
                rate,
                done,
            ),
            daemon=True,
        )
        process.start()
        return process, done

    def _preload_then_flood(self, label: str, freeze: list[int]) -> tuple[float, float, float]:
        """Queue half the messages while the consumer is frozen, thaw it and flood the rest.

        Returns the moment of thawing, the live publisher's rate and when it finished.
        """
        n = self.args.messages
        half = n // 2
        for pid in freeze:
            os.kill(pid, signal.SIGSTOP)
        try:
            process, done = self._flood(f"bench-pre-{label}", 0, half)
            done.get(timeout=600)
            process.join(30)
            process, done = self._flood(f"bench-live-{label}", half, n)
        finally:
            thawed = time.time()
            for pid in freeze:
                os.kill(pid, signal.SIGCONT)
        live_rate, published = done.get(timeout=600)
        process.join(30)
        return thawed, live_rate, published

    # -- raw limit ------------------------------------------------------------------------

    def raw_limit(self) -> dict[str, float]:
        ready, result = self.ctx.Event(), self.ctx.Queue()
        consumer = self.ctx.Process(
            target=_raw_consumer,
            args=(self.broker.port, self.args.messages, ready, result),
            daemon=True,
        )
        consumer.start()
        try:
            if not ready.wait(60):
                raise RuntimeError("raw consumer did not subscribe")
            assert consumer.pid is not None  # started above
            thawed, live_rate, published = self._preload_then_flood("raw", [consumer.pid])
            finished = result.get(timeout=900)
        finally:
            consumer.kill()
            consumer.join(10)
            _end_session(self.broker.port, RAW_CLIENT_ID)
        return {
            "msgs_per_s": self.args.messages / (finished - thawed),
            "publisher_msgs_per_s": live_rate,
            "backlog_left_s": finished - published,
        }

    # -- ingest ----------------------------------------------------------------------------

    @contextmanager
    def ingest_workers(self, workers: int, database: str) -> Iterator[list[tuple[int, int]]]:
        """`vigil ingest` workers on one shared subscription; yields (pid, HTTP port) of each."""
        from vigil.servers import free_port

        ports = [free_port() for _ in range(workers)]
        started: list[subprocess.Popen[bytes]] = []
        env_base = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
        env_base.update(
            {
                "VIGIL_TELEMETRY_STORE": "influxdb",
                "VIGIL_DATABASE_URL": self.sql_url,
                "VIGIL_MQTT__HOST": "127.0.0.1",
                "VIGIL_MQTT__PORT": str(self.broker.port),
                "VIGIL_INFLUXDB__URL": self.influx.url,
                "VIGIL_INFLUXDB__DATABASE": database,
                "VIGIL_INFLUXDB__USERNAME": self.influx.username,
                "VIGIL_INFLUXDB__PASSWORD": self.influx.password,
                "VIGIL_INGEST__SHARED_GROUP": database,
                "VIGIL_LOG_LEVEL": "WARNING",
            }
        )
        for i, port in enumerate(ports):
            env = {
                **env_base,
                "VIGIL_INGEST__CLIENT_ID": f"{database}-{i}",
                "VIGIL_INGEST__METRICS_PORT": str(port),
            }
            log = open(self.workdir / f"{database}-{i}.log", "ab")
            process = subprocess.Popen(
                [sys.executable, "-m", "vigil.cli", "ingest"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
            log.close()
            started.append(process)
            self.processes.append(process)
        try:
            _wait(lambda: all(_ready(p) for p in ports), 120, "ingest workers ready", 0.2)
            yield [(p.pid, port) for p, port in zip(started, ports, strict=True)]
        finally:
            for process in started:
                process.send_signal(signal.SIGTERM)
            for process in started:
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            for i in range(workers):
                _end_session(self.broker.port, f"{database}-{i}")

    def ingest_run(self, workers: int) -> dict[str, float]:
        database = self.influx.create_database(f"bench_w{workers}")
        n = self.args.messages
        with self.ingest_workers(workers, database) as handles:
            pids = [pid for pid, _ in handles]
            ports = [port for _, port in handles]
            thawed, live_rate, published = self._preload_then_flood(f"w{workers}", pids)

            def durable() -> float:
                return sum(_scrape(p, "vigil_ingest_samples_total") for p in ports)

            # Each scrape costs ingest CPU: poll 4 times a second (at most 0.25 s late).
            _wait(lambda: durable() >= n, 900, f"{n} samples durable in InfluxDB", 0.25)
            finished = time.time()
            stored = self._count(database)
            rate = n / (finished - thawed)
            latency = self.latency(database, ports, rate / 2)
        return {
            "msgs_per_s": rate,
            "publisher_msgs_per_s": live_rate,
            "stored": stored,
            "backlog_left_s": finished - published,
            **latency,
        }

    def _count(self, database: str) -> int:
        body = self.influx.query(
            'SELECT count("m0") FROM "telemetry" WHERE "device" =~ /^dev-/', db=database
        )
        series = body["results"][0].get("series", [])
        return int(series[0]["values"][0][1]) if series else 0

    # -- latency ----------------------------------------------------------------------------

    def latency(self, database: str, ports: list[int], background_rate: float) -> dict[str, float]:
        import paho.mqtt.client as mqtt

        duration = self.args.latency_seconds
        # Background messages follow the flood's, so their points are new ones.
        offset = (self.args.messages // self.args.devices + 10) * self.args.devices
        background, done = self._flood(
            f"bench-bg-{database}",
            offset,
            offset + int(background_rate * (duration + 2)),
            rate=background_rate,
        )
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"bench-probe-{database}",
            protocol=mqtt.MQTTv5,
        )
        client.connect("127.0.0.1", self.broker.port)
        client.loop_start()
        sent: dict[int, float] = {}
        seen: dict[int, float] = {}
        stop = threading.Event()
        start_ms = int(time.time() * 1000) - 1000

        def poll() -> None:
            query = (
                f'SELECT "m0" FROM "telemetry" WHERE "device" = \'{PROBE_DEVICE}\' '
                f"AND time >= {start_ms}ms"
            )
            url = f"{self.influx.url}/query?" + urllib.parse.urlencode(
                {"q": query, "db": database, "u": self.influx.username, "p": self.influx.password}
            )
            while not stop.is_set() or len(seen) < len(sent):
                try:
                    with urllib.request.urlopen(url, timeout=10) as response:
                        body = json.loads(response.read())
                except (OSError, urllib.error.URLError, ValueError):
                    body = {"results": [{}]}
                now = time.time()
                for series in body["results"][0].get("series", []):
                    for _, value in series["values"]:
                        seen.setdefault(int(value), now)
                if stop.is_set() and time.time() > deadline:
                    return
                time.sleep(0.01)

        deadline = float("inf")
        poller = threading.Thread(target=poll, daemon=True)
        time.sleep(1.0)  # let the background load settle
        poller.start()
        k = 0
        end = time.time() + duration
        while time.time() < end:
            now = time.time()
            ts = int(now * 1000)
            client.publish(
                protocol.topic(PROBE_DEVICE, "telemetry"), payload(k, ts, float(k)), qos=1
            )
            sent[k] = now
            k += 1
            time.sleep(0.05)
        deadline = time.time() + 30
        stop.set()
        poller.join(40)
        client.disconnect()
        client.loop_stop()
        done.get(timeout=120)
        background.join(30)
        latencies = [(seen[i] - sent[i]) * 1000 for i in sent if i in seen]
        return {
            "latency_p50_ms": _percentile(latencies, 50),
            "latency_p99_ms": _percentile(latencies, 99),
            "probes": len(sent),
            "probes_seen": len(latencies),
            "background_msgs_per_s": background_rate,
        }


def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="vigil-bench-ingest-"))
    bench = Bench(args, workdir)
    figures: dict[str, Any] = {
        "messages": args.messages,
        "devices": args.devices,
        "metrics_per_message": len(METRICS),
        "cpus": os.cpu_count(),
    }
    try:
        bench.start()
        print(
            f"vigil bench ingest: {args.messages} messages from {args.devices} devices, "
            f"{len(METRICS)} metrics each, one sample per message; {os.cpu_count()} CPUs"
        )
        raw = bench.raw_limit()
        figures["raw_msgs_per_s"] = round(raw["msgs_per_s"])
        figures["raw_publisher_msgs_per_s"] = round(raw["publisher_msgs_per_s"])
        figures["raw_backlog_left_s"] = round(raw["backlog_left_s"], 2)
        print(
            f"raw paho-mqtt consumer (receive + json.loads): {raw['msgs_per_s']:,.0f} msg/s "
            f"(live publisher {raw['publisher_msgs_per_s']:,.0f} msg/s; the consumer finished "
            f"{raw['backlog_left_s']:.1f} s after it"
            f"{BOUND_NOTE if raw['backlog_left_s'] < 0.5 else ''})"
        )
        for workers in args.workers:
            result = bench.ingest_run(workers)
            ratio = result["msgs_per_s"] / raw["msgs_per_s"]
            key = f"ingest_{workers}w"
            figures.update(
                {
                    f"{key}_msgs_per_s": round(result["msgs_per_s"]),
                    f"{key}_ratio_to_raw": round(ratio, 3),
                    f"{key}_samples_stored": result["stored"],
                    f"{key}_latency_p50_ms": round(result["latency_p50_ms"], 1),
                    f"{key}_latency_p99_ms": round(result["latency_p99_ms"], 1),
                    f"{key}_latency_background_msgs_per_s": round(result["background_msgs_per_s"]),
                    f"{key}_latency_probes_seen": f"{result['probes_seen']}/{result['probes']}",
                    f"{key}_publisher_msgs_per_s": round(result["publisher_msgs_per_s"]),
                    f"{key}_backlog_left_s": round(result["backlog_left_s"], 2),
                }
            )
            print(
                f"ingest, {workers} worker{'s' if workers > 1 else ''}: "
                f"{result['msgs_per_s']:,.0f} msg/s = {ratio:.2f} x raw; "
                f"{result['stored']:,} of {args.messages:,} samples in InfluxDB; "
                f"publish-to-queryable p50 {result['latency_p50_ms']:.0f} ms, "
                f"p99 {result['latency_p99_ms']:.0f} ms "
                f"(under {result['background_msgs_per_s']:,.0f} msg/s background, "
                f"{result['probes_seen']}/{result['probes']} probes); live publisher "
                f"{result['publisher_msgs_per_s']:,.0f} msg/s, ingest finished "
                f"{result['backlog_left_s']:.1f} s after it"
                f"{BOUND_NOTE if result['backlog_left_s'] < 0.5 else ''}"
            )
    finally:
        bench.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(figures))
    return 0
