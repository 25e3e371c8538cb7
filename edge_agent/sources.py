"""Where readings come from: a small interface and two built-ins.

``SimulatedSource`` produces a virtual device's readings from the simulator's
physics. ``CommandSource`` runs a program that prints one JSON object per line,
so a real device's service port is plugged in by writing a small script, not by
changing the agent. A line is either a reading::

    {"ts": 1735689600000, "metrics": {"motor_current_ma": 181.5}}

(``ts`` optional: the agent's clock is used), or a device-raised fault code::

    {"event": {"code": "E-042", "severity": "error", "text": "occlusion"}}

Lines that are not valid are logged and counted, never fatal. In ``stream``
mode the program runs continuously and the agent restarts it if it exits; in
``poll`` mode it is run once per sampling tick.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from edge_agent.simulator.physics import MODELS, DeviceSim, Site

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Reading:
    ts: int
    metrics: dict[str, float]


@dataclass(frozen=True, slots=True)
class SourceEvent:
    code: str
    severity: str
    text: str = ""
    ts: int | None = None


@dataclass(slots=True)
class Batch:
    """What one read produced."""

    readings: list[Reading] = field(default_factory=list)
    events: list[SourceEvent] = field(default_factory=list)


class Source(Protocol):
    """A supplier of readings for one device."""

    name: str

    def read(self, now_ms: int) -> Batch:
        """Readings and events available now; never blocks for long."""

    def self_test(self) -> dict[str, Any]:
        """Whether the source works, for the self_test command."""

    def close(self) -> None: ...


class SimulatedSource:
    """One virtual device of a simulator model, sampled at the agent's clock."""

    def __init__(self, device_id: str, model: str, seed: int = 0, site: Site | None = None) -> None:
        if model not in MODELS:
            raise ValueError(f"unknown simulated model {model!r}; known: {', '.join(MODELS)}")
        self.name = f"simulated:{model}"
        self.device = DeviceSim(device_id, model, site or Site("local"), seed)

    def read(self, now_ms: int) -> Batch:
        metrics = self.device.sample(now_ms)
        events = [SourceEvent(e.code, e.severity, e.text) for e in self.device.events(now_ms)]
        return Batch([Reading(now_ms, metrics)], events)

    def self_test(self) -> dict[str, Any]:
        return {"ok": True, "model": self.device.model}

    def close(self) -> None:
        pass


class CommandSource:
    """Readings printed as JSON lines by an external program."""

    def __init__(self, command: list[str], mode: str = "stream", timeout_s: float = 10.0,
                 restart_delay_s: float = 5.0) -> None:
        if not command:
            raise ValueError("the command source needs a program to run")
        if mode not in ("stream", "poll"):
            raise ValueError(f"command source mode must be 'stream' or 'poll', not {mode!r}")
        self.name = f"command:{os.path.basename(command[0])}"
        self.command = command
        self.mode = mode
        self.timeout_s = timeout_s
        self.restart_delay_s = restart_delay_s
        self.bad_lines = 0
        self.starts = 0
        self.last_error = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self._next_start = 0.0

    # --- stream mode -----------------------------------------------------------

    def _ensure_running(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        if self._proc is not None:
            self.last_error = f"program exited with code {self._proc.returncode}"
            log.warning("source %s: %s; restarting in %.0f s", self.name, self.last_error,
                        self.restart_delay_s)
            self._proc = None
            self._next_start = time.monotonic() + self.restart_delay_s
        if time.monotonic() < self._next_start:
            return
        try:
            self._proc = subprocess.Popen(self.command, stdout=subprocess.PIPE,
                                          stdin=subprocess.DEVNULL)
        except OSError as exc:
            self.last_error = f"cannot start {self.command[0]}: {exc}"
            log.error("source %s: %s", self.name, self.last_error)
            self._next_start = time.monotonic() + self.restart_delay_s
            return
        self.starts += 1
        assert self._proc.stdout is not None
        os.set_blocking(self._proc.stdout.fileno(), False)

    def _drain(self) -> bytes:
        if self._proc is None or self._proc.stdout is None:
            return b""
        chunks = []
        while True:
            try:
                chunk = os.read(self._proc.stdout.fileno(), 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def read(self, now_ms: int) -> Batch:
        if self.mode == "poll":
            return self._poll(now_ms)
        self._ensure_running()
        data = self._buffer + self._drain()
        *lines, self._buffer = data.split(b"\n")
        return self._parse(lines, now_ms)

    def _poll(self, now_ms: int) -> Batch:
        try:
            done = subprocess.run(self.command, capture_output=True, timeout=self.timeout_s,
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.last_error = str(exc)
            log.error("source %s: %s", self.name, exc)
            return Batch()
        if done.returncode != 0:
            self.last_error = f"program exited with code {done.returncode}"
            log.warning("source %s: %s", self.name, self.last_error)
        return self._parse(done.stdout.split(b"\n"), now_ms)

    def _parse(self, lines: list[bytes], now_ms: int) -> Batch:
        batch = Batch()
        for raw in lines:
            if not raw.strip():
                continue
            try:
                item = parse_line(raw, now_ms)
            except ValueError as exc:
                self.bad_lines += 1
                self.last_error = f"bad line: {exc}"
                log.warning("source %s: %s", self.name, self.last_error)
                continue
            if isinstance(item, Reading):
                batch.readings.append(item)
            else:
                batch.events.append(item)
        return batch

    def self_test(self) -> dict[str, Any]:
        running = self.mode == "poll" or (self._proc is not None and self._proc.poll() is None)
        return {"ok": running and not self.last_error.startswith("cannot start"),
                "running": running, "bad_lines": self.bad_lines, "starts": self.starts,
                "last_error": self.last_error}

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None


def parse_line(raw: bytes, now_ms: int) -> Reading | SourceEvent:
    """One JSON line from a command source; ValueError says what is wrong."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ValueError("a line must be a JSON object")
    ts = body.get("ts", now_ms)
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise ValueError(f"'ts' must be integer epoch milliseconds, got {ts!r}")
    if "event" in body:
        e = body["event"]
        if not isinstance(e, dict) or not isinstance(e.get("code"), str):
            raise ValueError("'event' must be an object with a 'code'")
        return SourceEvent(e["code"], str(e.get("severity", "error")), str(e.get("text", "")), ts)
    metrics = body.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise ValueError("'metrics' must be a non-empty object")
    return Reading(ts, metrics)
