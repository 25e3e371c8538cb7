"""The edge agent: sample, queue durably, publish, answer commands, report status.

Two threads. The sampler reads the source on its schedule and commits each
reading, through the clock guard, to the outbox; nothing on the network can
delay it. The network thread runs the selector loop: it publishes what the
outbox holds as far as the broker has room, handles acknowledgements, commands
and status, and reconnects with backoff.
"""

from __future__ import annotations

import collections
import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_agent import protocol
from edge_agent.clock import ClockGuard
from edge_agent.commands import CommandProcessor, CommandRefused, Handler
from edge_agent.config import AgentConfig
from edge_agent.courier import Courier
from edge_agent.outbox import Outbox, OutboxError
from edge_agent.sources import CommandSource, SimulatedSource, Source
from edge_agent.transport import Link, Reactor

log = logging.getLogger(__name__)

EXPIRE_EVERY_S = 60.0


class LogRing(logging.Handler):
    """The last lines of the agent's log, for the get_logs command."""

    def __init__(self, capacity: int = 1000) -> None:
        super().__init__()
        self.lines: collections.deque[str] = collections.deque(maxlen=capacity)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # logging must never break the agent
            self.handleError(record)


def build_source(config: AgentConfig) -> Source:
    s = config.source
    if s.kind == "command":
        return CommandSource(list(s.command), mode=s.mode)
    return SimulatedSource(config.device.id, s.model or config.device.model, seed=s.seed)


class Agent:
    """One device's agent."""

    def __init__(self, config: AgentConfig, *, source: Source | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        self.config = config
        self.device_id = config.device.id
        self._wall = wall
        self.source = source or build_source(config)
        self.outbox = Outbox(config.outbox.path, max_entries=config.outbox.max_entries,
                             max_age_s=config.outbox.max_age_days * 86400.0)
        self.courier = Courier(self.outbox, window=config.outbox.window)
        self.reactor = Reactor()
        self.session_ts: int | None = None
        self.link = Link(self.device_id, config.broker, self, offline_status=self._will_payload)
        self.reactor.add(self.link)
        self.courier.attach(self.link)
        self.clock = ClockGuard(floor_ms=config.clock.floor_ms,
                                max_jump_ms=int(config.clock.max_jump_s * 1000))
        self.logs = LogRing()
        package_log = logging.getLogger("edge_agent")
        if package_log.level == logging.NOTSET:
            # get_logs must show the agent's own INFO lines whatever the root logger keeps.
            package_log.setLevel(logging.INFO)
        package_log.addHandler(self.logs)
        self.commands = CommandProcessor(self.device_id, self.state, self.now_ms)
        self._register_builtins()
        self.interval_s = config.sampling.interval_s
        self._fast_until = 0.0
        self._next_sample = time.monotonic()
        self._next_status = float("inf")
        self._last_status = 0.0
        self._next_expire = time.monotonic() + EXPIRE_EVERY_S
        self._last_state = self.state()
        self._reported_dropped = self.outbox.dropped(self.device_id)
        self._stop = threading.Event()
        self._wake_sampler = threading.Event()
        self._sampler: threading.Thread | None = None
        self.samples_taken = 0
        self.rejected = 0

    # --- state ---------------------------------------------------------------

    def now_ms(self) -> int:
        return int(self._wall() * 1000)

    def state(self) -> str:
        flag = self.config.device.maintenance_flag
        return "maintenance" if flag and os.path.exists(flag) else "online"

    def status_extra(self) -> dict[str, Any]:
        return {
            # When this connection was opened: its will carries the same time, so the
            # platform can tell this connection's will from an older one, however delayed.
            "session_ts": self.session_ts,
            "outbox_depth": self.outbox.depth(self.device_id),
            "outbox_dropped": self.outbox.dropped(self.device_id),
            "clock_suspect": self.clock.suspect_count,
            "sampling_interval_s": self.current_interval(),
            "source": self.source.name,
        }

    def _status_payload(self, state: str, ts: int | None = None) -> bytes:
        return protocol.encode(protocol.Status(state=state, ts=self.now_ms() if ts is None else ts,
                                               fw=self.config.device.fw,
                                               model=self.config.device.model,
                                               extra=self.status_extra()))

    def _will_payload(self) -> bytes:
        """The offline status the broker publishes if this connection dies; it opens a session."""
        self.session_ts = self.now_ms()
        return self._status_payload("offline", self.session_ts)

    def publish_status(self) -> None:
        self._last_status = time.monotonic()
        self._next_status = self._last_status + self.config.sampling.status_interval_s
        self._reported_dropped = self.outbox.dropped(self.device_id)
        if self.link.connected:
            self.link.publish("status", self._status_payload(self._last_state), retain=True)

    # --- link listener ---------------------------------------------------------

    def on_online(self, link: Link) -> None:
        log.info("connected to %s:%d", self.config.broker.host, self.config.broker.port)
        self._last_state = self.state()
        self.publish_status()

    def on_offline(self, link: Link) -> None:
        log.warning("connection lost (%s); outbox depth %d", link.last_error,
                    self.outbox.depth(self.device_id))

    def on_ack(self, link: Link, seq: int) -> None:
        self.courier.ack(link.device_id, seq)

    def on_refused(self, link: Link, seq: int) -> None:
        self.courier.refused(link.device_id, seq)

    def on_command(self, link: Link, payload: bytes) -> None:
        reply = self.commands.handle(payload)
        if reply is not None:
            link.publish("cmd/result", protocol.encode(reply.result), topic=reply.topic)

    # --- sampling ----------------------------------------------------------------

    def current_interval(self) -> float:
        if self._fast_until and time.monotonic() < self._fast_until:
            return self.interval_s
        if self._fast_until:
            self._fast_until = 0.0
            self.interval_s = self.config.sampling.interval_s
            log.info("high-rate sampling ended; back to %.2f s", self.interval_s)
        return self.interval_s

    def sample(self) -> None:
        """Read the source and queue what it produced, flagging suspect clocks."""
        now = self.now_ms()
        batch = self.source.read(now)
        rows = []
        for reading in batch.readings:
            verdict = self.clock.check(reading.ts)
            if self.clock.episode_started(verdict):
                log.warning("clock suspect: %s", verdict.reason)
                self._queue_event(now, "CLOCK_SUSPECT", "warning", verdict.reason)
            rows.append((self.device_id, reading.ts, reading.metrics))
        try:
            self.samples_taken += self.outbox.add_samples(rows)
        except OutboxError:
            # Keep every good reading; refuse only the bad ones, each with its reason.
            for row in rows:
                try:
                    self.samples_taken += self.outbox.add_samples([row])
                except OutboxError as exc:
                    self.rejected += 1
                    log.warning("%s", exc)
        for event in batch.events:
            self._queue_event(event.ts or now, event.code, event.severity, event.text)

    def _queue_event(self, ts: int, code: str, severity: str, text: str) -> None:
        try:
            self.outbox.add_event(self.device_id, ts, code, severity, text)
        except OutboxError as exc:
            self.rejected += 1
            log.warning("%s", exc)

    # --- loop --------------------------------------------------------------------

    def _sample_loop(self) -> None:
        """The sampler thread: read the source when due, whatever the network does."""
        while not self._stop.is_set():
            delay = self._next_sample - time.monotonic()
            if delay > 0:
                self._wake_sampler.wait(delay)
                self._wake_sampler.clear()
                continue
            try:
                self.sample()
            except Exception:  # a failing source must not end sampling for good
                log.exception("sampling failed")
            self.reactor.wake()
            interval = self.current_interval()
            self._next_sample += interval
            mono = time.monotonic()
            if self._next_sample < mono:
                self._next_sample = mono + interval

    def step(self) -> None:
        """One pass of the network thread: traffic, publishing, status, bounds."""
        self.reactor.poll(0.5)
        mono = time.monotonic()
        if mono >= self._next_expire:
            self._next_expire = mono + EXPIRE_EVERY_S
            self.outbox.expire()
        self.courier.pump()
        state = self.state()
        dropped = self.outbox.dropped(self.device_id)
        if (state != self._last_state or mono >= self._next_status
                or (dropped != self._reported_dropped and mono >= self._last_status + 5.0)):
            self._last_state = state
            self.publish_status()
        self.reactor.flush()

    def run(self, duration_s: float | None = None) -> None:
        """Run until ``stop()`` (or SIGTERM/SIGINT when in the main thread)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self.stop())
            signal.signal(signal.SIGINT, lambda *_: self.stop())
        log.info("agent %s starting: outbox %s holds %d, next seq %d", self.device_id,
                 self.config.outbox.path, self.outbox.depth(self.device_id),
                 self.outbox.next_seq(self.device_id))
        self._sampler = threading.Thread(target=self._sample_loop, name="sampler", daemon=True)
        self._sampler.start()
        self.link.attempt()
        end = time.monotonic() + duration_s if duration_s else float("inf")
        try:
            while not self._stop.is_set() and time.monotonic() < end:
                self.step()
        finally:
            self.shutdown()

    def stop(self) -> None:
        self._stop.set()
        self._wake_sampler.set()
        self.reactor.wake()

    def shutdown(self) -> None:
        """Say offline (a clean disconnect discards the will), then close everything."""
        self._stop.set()
        self._wake_sampler.set()
        if self._sampler is not None:
            self._sampler.join(30)
        if self.link.connected:
            self.link.publish("status", self._status_payload("offline"), retain=True)
            deadline = time.monotonic() + 2.0
            while self.link.client.want_write() and time.monotonic() < deadline:
                self.reactor.poll(0.05)
        self.reactor.close()
        self.source.close()
        self.outbox.close()
        logging.getLogger("edge_agent").removeHandler(self.logs)

    # --- commands --------------------------------------------------------------

    def register_command(self, name: str, handler: Handler, *, changes_device: bool = False,
                         help: str = "") -> None:
        self.commands.register(name, handler, changes_device=changes_device, help=help)

    def _register_builtins(self) -> None:
        self.register_command("self_test", self._cmd_self_test, help="check outbox, source, clock")
        self.register_command("get_logs", self._cmd_get_logs, help="last log lines: lines=N")
        self.register_command("get_config", self._cmd_get_config, help="settings, secrets hidden")
        self.register_command("set_sampling", self._cmd_set_sampling, changes_device=True,
                              help="interval_s for duration_s seconds")

    def _cmd_self_test(self, args: dict[str, Any]) -> dict[str, Any]:
        outbox_dir = Path(self.config.outbox.path).resolve().parent
        free_mb = shutil.disk_usage(outbox_dir).free / 1e6
        checks: dict[str, dict[str, Any]] = {
            "outbox": {"ok": self.outbox.integrity_ok(),
                       "depth": self.outbox.depth(self.device_id),
                       "dropped": self.outbox.dropped(self.device_id)},
            "disk": {"ok": free_mb > 50, "free_mb": round(free_mb, 1)},
            "source": self.source.self_test(),
            "clock": {"ok": not self.clock.in_episode, "suspect_samples": self.clock.suspect_count,
                      "last_reason": self.clock.last_reason},
            "broker": {"ok": self.link.connected, "connects": self.link.connects},
        }
        return {"passed": all(c["ok"] for c in checks.values()), "checks": checks}

    def _cmd_get_logs(self, args: dict[str, Any]) -> dict[str, Any]:
        lines = args.get("lines", 100)
        if isinstance(lines, bool) or not isinstance(lines, int) or not 1 <= lines <= 1000:
            raise CommandRefused("'lines' must be an integer from 1 to 1000")
        return {"lines": list(self.logs.lines)[-lines:]}

    def _cmd_get_config(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"config": self.config.redacted(), "commands": self.commands.describe()}

    def _cmd_set_sampling(self, args: dict[str, Any]) -> dict[str, Any]:
        s = self.config.sampling
        interval = _number(args, "interval_s", None)
        duration = _number(args, "duration_s", 60)
        if not s.min_interval_s <= interval <= 3600:
            raise CommandRefused(f"'interval_s' must be between {s.min_interval_s} and 3600")
        if not 0 < duration <= s.max_fast_s:
            raise CommandRefused(f"'duration_s' must be above 0 and at most {s.max_fast_s}")
        self.interval_s = float(interval)
        self._fast_until = time.monotonic() + float(duration)
        self._next_sample = time.monotonic()
        self._wake_sampler.set()
        log.info("sampling every %.3f s for %.0f s", self.interval_s, duration)
        return {"interval_s": self.interval_s,
                "until_ms": self.now_ms() + int(duration * 1000)}


def _number(args: dict[str, Any], name: str, default: float | None) -> float:
    """A command's numeric argument, or CommandRefused (booleans are not numbers here)."""
    value = args.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CommandRefused(f"'{name}' must be a number")
    return value
