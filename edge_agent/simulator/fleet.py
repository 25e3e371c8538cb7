"""Many virtual devices in one process, through the agent's own outbox, links and commands.

Each virtual device has its own MQTT session (client id and user name = device
id, its own will and retained status, its own ``cmd`` subscription), but all of
them share one selector loop and one outbox database, so hundreds run in one
thread. Live mode samples every device on its interval with the wall clock;
backfill mode generates weeks of history with historical timestamps and pushes
it through the same outbox and courier in full-size messages.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edge_agent import protocol
from edge_agent.commands import CommandProcessor, CommandRefused
from edge_agent.courier import Courier
from edge_agent.outbox import Outbox
from edge_agent.simulator.physics import DeviceSim
from edge_agent.simulator.scenario import DeviceSpec
from edge_agent.transport import BrokerSettings, Link, Reactor

log = logging.getLogger(__name__)

FW_VERSION = "sim-1.0"


@dataclass(slots=True)
class VirtualDevice:
    spec: DeviceSpec
    sim: DeviceSim
    link: Link
    interval_s: float
    commands: CommandProcessor = field(init=False)
    next_due: float = 0.0
    fast_until: float = 0.0
    state: str = "online"
    planned_state: str = "online"
    recent_events: list[str] = field(default_factory=list)


class Fleet:
    """Virtual devices sharing one loop, one outbox and one courier."""

    def __init__(self, specs: Sequence[DeviceSpec], *, seed: int, broker: BrokerSettings,
                 outbox_path: str | Path, interval_s: float = 1.0, window: int = 4,
                 max_entries: int = 100_000, status_interval_s: float = 300.0,
                 passwords: Mapping[str, str] | None = None) -> None:
        """``passwords`` holds each device's own MQTT password; the others use ``broker``'s."""
        self.seed = seed
        self.interval_s = interval_s
        self.status_interval_s = status_interval_s
        self.outbox = Outbox(outbox_path, max_entries=max_entries)
        self.courier = Courier(self.outbox, window=window)
        self.reactor = Reactor()
        self.devices: dict[str, VirtualDevice] = {}
        # Per device, when its connection was opened (its will's time), as the agent reports it.
        self._sessions: dict[str, int] = {}
        rng = random.Random(f"links:{seed}")
        for spec in specs:
            own = (passwords or {}).get(spec.device_id)
            link = Link(spec.device_id, replace(broker, password=own) if own else broker, self,
                        rng=random.Random(rng.random()),
                        offline_status=self._offline_payload(spec))
            self.reactor.add(link)
            self.courier.attach(link)
            device = VirtualDevice(spec, spec.build(seed), link, interval_s)
            device.commands = self._commands(device)
            self.devices[spec.device_id] = device
        self.samples_queued = 0
        self.events_queued = 0
        self.ticks_late = 0
        self._next_status = time.monotonic() + status_interval_s

    # --- connection --------------------------------------------------------------

    def connect(self, *, stagger_s: float = 0.002) -> None:
        """Schedule every device's first connection, spread out a little."""
        now = time.monotonic()
        for i, device in enumerate(self.devices.values()):
            device.link.next_attempt = now + i * stagger_s

    def connected(self) -> int:
        return sum(1 for d in self.devices.values() if d.link.connected)

    def wait_connected(self, timeout_s: float = 120.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.reactor.poll(0.05)
            self.courier.pump()
            if self.connected() == len(self.devices):
                return True
        return False

    # --- link listener -------------------------------------------------------------

    def on_online(self, link: Link) -> None:
        self._publish_status(self.devices[link.device_id])

    def on_offline(self, link: Link) -> None:
        pass

    def on_ack(self, link: Link, seq: int) -> None:
        self.courier.ack(link.device_id, seq)

    def on_refused(self, link: Link, seq: int) -> None:
        self.courier.refused(link.device_id, seq)

    def on_command(self, link: Link, payload: bytes) -> None:
        device = self.devices[link.device_id]
        reply = device.commands.handle(payload)
        if reply is not None:
            link.publish("cmd/result", protocol.encode(reply.result), topic=reply.topic)

    # --- status ----------------------------------------------------------------------

    def _extra(self, device_id: str) -> dict[str, Any]:
        return {"session_ts": self._sessions.get(device_id),
                "outbox_depth": self.outbox.depth(device_id),
                "outbox_dropped": self.outbox.dropped(device_id),
                "site": self.devices[device_id].spec.site.name if device_id in self.devices
                else ""}

    def _offline_payload(self, spec: DeviceSpec) -> Callable[[], bytes]:
        def payload() -> bytes:
            session_ts = self._sessions[spec.device_id] = int(time.time() * 1000)
            return protocol.encode(protocol.Status(
                state="offline", ts=session_ts, fw=FW_VERSION, model=spec.model,
                extra={"session_ts": session_ts, "site": spec.site.name}))
        return payload

    def _publish_status(self, device: VirtualDevice) -> None:
        if device.link.connected:
            device.link.publish("status", protocol.encode(protocol.Status(
                state=device.state, ts=int(time.time() * 1000), fw=FW_VERSION,
                model=device.spec.model, extra=self._extra(device.spec.device_id))), retain=True)

    def set_state(self, device_id: str, state: str) -> None:
        """Put a virtual device into or out of maintenance, as its operator would."""
        if state not in protocol.STATES:
            raise ValueError(f"state must be one of {protocol.STATES}")
        device = self.devices[device_id]
        device.state = state
        self._publish_status(device)

    # --- commands --------------------------------------------------------------------

    def _commands(self, device: VirtualDevice) -> CommandProcessor:
        processor = CommandProcessor(device.spec.device_id, lambda: device.state,
                                     lambda: int(time.time() * 1000))

        def self_test(args: dict[str, Any]) -> dict[str, Any]:
            now_ms = int(time.time() * 1000)
            if device.spec.realism is not None:
                # A real self-test finds a failed part, not the wear that leads to it.
                ok = not any(f.broken(now_ms) for f in device.spec.faults)
                return {"passed": ok, "checks": {
                    "outbox": {"ok": True, "depth": self.outbox.depth(device.spec.device_id)},
                    "hardware": {"ok": ok}}}
            severities = device.sim.severities(now_ms)
            worst = max(severities.values(), default=0.0)
            return {"passed": worst < 0.6, "checks": {
                "outbox": {"ok": True, "depth": self.outbox.depth(device.spec.device_id)},
                "hardware": {"ok": worst < 0.6, "wear_index": round(worst, 3)}}}

        def get_logs(args: dict[str, Any]) -> dict[str, Any]:
            return {"lines": device.recent_events[-int(args.get("lines", 100)):]}

        def get_config(args: dict[str, Any]) -> dict[str, Any]:
            return {"config": {"device": {"id": device.spec.device_id, "model": device.spec.model,
                                          "site": device.spec.site.name},
                               "sampling": {"interval_s": device.interval_s}},
                    "commands": processor.describe()}

        def set_sampling(args: dict[str, Any]) -> dict[str, Any]:
            interval, duration = args.get("interval_s"), args.get("duration_s", 60)
            if not isinstance(interval, (int, float)) or not 0.05 <= interval <= 3600:
                raise CommandRefused("'interval_s' must be between 0.05 and 3600")
            if not isinstance(duration, (int, float)) or not 0 < duration <= 900:
                raise CommandRefused("'duration_s' must be above 0 and at most 900")
            device.interval_s = float(interval)
            device.fast_until = time.monotonic() + duration
            device.next_due = time.monotonic()
            return {"interval_s": device.interval_s}

        processor.register("self_test", self_test)
        processor.register("get_logs", get_logs)
        processor.register("get_config", get_config)
        processor.register("set_sampling", set_sampling, changes_device=True)
        return processor

    # --- live ------------------------------------------------------------------------

    def tick(self) -> int:
        """Sample every device that is due; one outbox transaction for all of them."""
        mono = time.monotonic()
        now_ms = int(time.time() * 1000)
        rows = []
        for device in self.devices.values():
            if device.next_due > mono:
                continue
            if device.fast_until and mono >= device.fast_until:
                device.fast_until = 0.0
                device.interval_s = self.interval_s
            if device.spec.realism is not None and device.spec.realism.maintenance:
                self._follow_plan(device, now_ms)
            rows.append((device.spec.device_id, now_ms, device.sim.sample(now_ms)))
            for event in device.sim.events(now_ms):
                self.outbox.add_event(device.spec.device_id, now_ms, event.code, event.severity,
                                      event.text)
                device.recent_events.append(f"{now_ms} {event.severity} {event.code} {event.text}")
                self.events_queued += 1
            device.next_due = (device.next_due or mono) + device.interval_s
            if device.next_due < mono:
                self.ticks_late += 1
                device.next_due = mono + device.interval_s
        if rows:
            self.samples_queued += self.outbox.add_samples(rows)
        return len(rows)

    def _follow_plan(self, device: VirtualDevice, now_ms: int) -> None:
        """Enter and leave the plan's maintenance windows as the service engineer would."""
        planned = "maintenance" if device.spec.in_maintenance(now_ms) else "online"
        if planned != device.planned_state:
            device.planned_state = planned
            self.set_state(device.spec.device_id, planned)

    def step(self) -> None:
        """One pass of the loop: network, sampling when due, publishing, status."""
        next_due = min((d.next_due for d in self.devices.values()), default=time.monotonic() + 1)
        self.reactor.poll(min(0.2, max(0.0, next_due - time.monotonic())))
        self.tick()
        self.courier.pump()
        if time.monotonic() >= self._next_status:
            self._next_status = time.monotonic() + self.status_interval_s
            for device in self.devices.values():
                self._publish_status(device)
        self.reactor.flush()

    def run(self, duration_s: float, *, should_stop: Callable[[], bool] = lambda: False) -> None:
        start = time.monotonic()
        for i, device in enumerate(self.devices.values()):
            # Spread sampling over the interval so the broker sees a steady stream.
            device.next_due = start + self.interval_s * i / max(1, len(self.devices))
        while time.monotonic() - start < duration_s and not should_stop():
            self.step()

    # --- backfill ---------------------------------------------------------------------

    def backfill(self, start_ms: int, end_ms: int, step_s: float, *, chunk: int = 1000,
                 high_water: int = 200_000,
                 progress: Callable[[int], None] | None = None) -> int:
        """Generate history from ``start_ms`` to ``end_ms`` and publish it; returns samples.

        Devices take turns a message's worth of samples at a time, so the
        platform receives all devices' history in parallel. Generation pauses
        while the outbox holds more than ``high_water`` entries: the broker sets
        the pace and nothing is dropped.
        """
        step_ms = int(step_s * 1000)
        cursors = {d: start_ms for d in self.devices}
        total = 0
        while cursors:
            for device_id in list(cursors):
                device = self.devices[device_id]
                t = cursors[device_id]
                samples: list[tuple[int, dict[str, float]]] = []
                while t < end_ms and len(samples) < chunk:
                    samples.append((t, device.sim.sample(t)))
                    for event in device.sim.events(t):
                        self.outbox.add_event(device_id, t, event.code, event.severity, event.text)
                        self.events_queued += 1
                    t += step_ms
                if samples:
                    total += self.outbox.add_history(device_id, samples)
                if t >= end_ms:
                    del cursors[device_id]
                else:
                    cursors[device_id] = t
                self.reactor.poll(0)
                self.courier.pump()
                while self.outbox.total_depth() > high_water:
                    self.reactor.poll(0.05)
                    self.courier.pump()
            if progress:
                progress(total)
        self.samples_queued += total
        return total

    def drain(self, timeout_s: float = 300.0) -> bool:
        """Publish until the outbox is empty; False if it did not empty in time."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.reactor.poll(0.05)
            self.courier.pump()
            if self.outbox.total_depth() == 0:
                return True
        return False

    def close(self) -> None:
        for device in self.devices.values():
            if device.link.connected:
                device.link.publish("status", self._offline_payload(device.spec)(), retain=True)
        end = time.monotonic() + 5
        while any(d.link.client.want_write() for d in self.devices.values()) \
                and time.monotonic() < end:
            self.reactor.poll(0.05)
        self.reactor.close()
        self.outbox.close()
