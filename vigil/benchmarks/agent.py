"""Footprint of one edge agent: resident memory and CPU share at 1 Hz x 10 metrics.

The agent runs as its own process (`vigil-agent`, a simulated CT: ten metrics
per sample) against a real Mosquitto, started here unless --broker names one.
Memory and CPU time are read from /proc of the agent process; a subscriber
checks that the samples really arrive.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from vigil.benchmarks import open_broker

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
TARGET_RSS_MB = 40.0
TARGET_CPU_PCT = 2.0


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=300.0,
                        help="measurement duration (default 300 s)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring")
    parser.add_argument("--broker", default="", help="HOST:PORT of a broker (default: start one)")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def run(args: argparse.Namespace) -> int:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from edge_agent import protocol

    work = Path(tempfile.mkdtemp(prefix="vigil-bench-agent-"))
    host, port, broker = open_broker(args.broker, work)
    device = f"ct-bench-{uuid.uuid4().hex[:6]}"
    config = work / "agent.toml"
    config.write_text(f"""\
[device]
id = "{device}"
model = "ct"
[broker]
host = "{host}"
port = {port}
[outbox]
path = "{work / 'outbox.db'}"
[sampling]
interval_s = 1.0
[source]
kind = "simulated"
model = "ct"
""")
    received: list[int] = [0]
    lock = threading.Lock()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        n = len(protocol.decode_telemetry(bytes(msg.payload)).samples)
        with lock:
            received[0] += n

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sub.on_message = on_message
    sub.connect(host, port)
    sub.subscribe(protocol.topic(device, "telemetry"), qos=1)
    sub.loop_start()
    agent = subprocess.Popen([sys.executable, "-m", "edge_agent.cli", str(config),
                              "--log-level", "WARNING"],
                             stdout=subprocess.DEVNULL, stderr=open(work / "agent.log", "wb"))
    try:
        time.sleep(args.warmup)
        if agent.poll() is not None:
            print((work / "agent.log").read_text()[-2000:], file=sys.stderr)
            raise SystemExit("the agent exited during warm-up")
        cpu0, t0 = cpu_seconds(agent.pid), time.monotonic()
        with lock:
            got0 = received[0]
        rss_samples = [rss_mb(agent.pid)]
        while time.monotonic() - t0 < args.seconds:
            time.sleep(min(5.0, max(0.1, args.seconds - (time.monotonic() - t0))))
            rss_samples.append(rss_mb(agent.pid))
        cpu1, t1 = cpu_seconds(agent.pid), time.monotonic()
        with lock:
            got = received[0] - got0
    finally:
        agent.terminate()
        agent.wait(30)
        sub.loop_stop()
        sub.disconnect()
        if broker:
            broker.stop()
    elapsed = t1 - t0
    cpu_pct = 100.0 * (cpu1 - cpu0) / elapsed
    figures = {
        "benchmark": "agent",
        "seconds": round(elapsed, 1),
        "metrics_per_sample": 10,
        "rate_hz": 1.0,
        "rss_mb_max": round(max(rss_samples), 1),
        "rss_mb_end": round(rss_samples[-1], 1),
        "cpu_pct_of_one_core": round(cpu_pct, 3),
        "samples_delivered": got,
        "delivered_rate_hz": round(got / elapsed, 3),
        "rss_target_mb": TARGET_RSS_MB,
        "cpu_target_pct": TARGET_CPU_PCT,
        "meets_targets": max(rss_samples) < TARGET_RSS_MB and cpu_pct < TARGET_CPU_PCT,
    }
    print(f"edge agent footprint over {elapsed:.0f} s at 1 Hz x 10 metrics")
    print(f"  resident memory: max {figures['rss_mb_max']} MB, at end {figures['rss_mb_end']} MB "
          f"(target < {TARGET_RSS_MB:.0f} MB)")
    print(f"  CPU: {cpu_pct:.2f} % of one core (target < {TARGET_CPU_PCT:.0f} %)")
    print(f"  samples delivered to a subscriber: {got} ({got / elapsed:.2f}/s)")
    print(json.dumps(figures))
    return 0
