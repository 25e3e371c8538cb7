"""Helpers for the edge agent tests: a recording subscriber, agent processes, waiting."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent import protocol

REPO = Path(__file__).resolve().parents[2]


def wait_for(condition: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll until ``condition()`` is truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class Recorder:
    """A platform-side subscriber with a persistent session that keeps everything it gets."""

    def __init__(self, host: str, port: int, topics: list[str]) -> None:
        self.lock = threading.Lock()
        self.messages: list[tuple[str, bytes, bool]] = []
        self.connected = threading.Event()
        self.topics = topics
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"rec-{uuid.uuid4().hex[:8]}",
                             protocol=mqtt.MQTTv5)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_disconnect = lambda *a: self.connected.clear()
        client.reconnect_delay_set(0.2, 1)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        client.connect(host, port, keepalive=10, clean_start=False, properties=props)
        client.loop_start()
        self.client = client
        assert self.connected.wait(30), "recorder could not connect"

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        for t in self.topics:
            client.subscribe(t, qos=1)
        self.connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, msg.payload, msg.retain))

    def of_kind(self, kind: str) -> list[tuple[str, bytes]]:
        with self.lock:
            return [(t, p) for t, p, _ in self.messages if t.endswith("/" + kind)]

    def telemetry(self) -> list[protocol.Telemetry]:
        return [protocol.decode_telemetry(p) for _, p in self.of_kind("telemetry")]

    def sample_ts(self) -> set[int]:
        return {s.ts for m in self.telemetry() for s in m.samples}

    def statuses(self) -> list[protocol.Status]:
        return [protocol.decode_status(p) for _, p in self.of_kind("status")]

    def results(self) -> dict[str, protocol.CommandResult]:
        out = {}
        with self.lock:
            found = [p for t, p, _ in self.messages if "/cmd/result" in t]
        for p in found:
            r = protocol.decode_command_result(p)
            out[r.id] = r
        return out

    def seen_topics(self) -> set[str]:
        with self.lock:
            return {t for t, _, _ in self.messages}

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def recorder_factory() -> Iterator[Callable[..., Recorder]]:
    made: list[Recorder] = []

    def make(host: str, port: int, topics: list[str] | None = None) -> Recorder:
        r = Recorder(host, port, topics or [f"{protocol.TOPIC_ROOT}/#"])
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def write_config(path: Path, *, device_id: str, port: int, outbox_path: Path,
                 **sections: dict) -> Path:
    """A TOML agent config; ``sections`` add or override settings per section."""
    base: dict[str, dict[str, Any]] = {
        "device": {"id": device_id, "model": "ct"},
        "broker": {"host": "127.0.0.1", "port": port, "keepalive_s": 5,
                   "backoff_initial_s": 0.2, "backoff_max_s": 1.0},
        "outbox": {"path": str(outbox_path)},
        "sampling": {"interval_s": 1.0, "status_interval_s": 5.0},
        "source": {"kind": "simulated", "model": "ct", "seed": 1},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    lines = []
    for name, values in base.items():
        lines.append(f"[{name}]")
        for key, value in values.items():
            lines.append(f"{key} = {json.dumps(value)}")
    path.write_text("\n".join(lines) + "\n")
    return path


class AgentProcess:
    """`vigil-agent` as a child process, so it can be killed like a device losing power."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edge_agent.cli", str(self.config), "--log-level", "INFO"],
                stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)})
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode if self.proc else None

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])


@pytest.fixture
def agent_processes() -> Iterator[list[AgentProcess]]:
    procs: list[AgentProcess] = []
    yield procs
    for p in procs:
        p.stop()
