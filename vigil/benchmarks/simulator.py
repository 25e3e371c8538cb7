"""How many virtual devices one simulator process sustains, and how fast backfill runs.

Live: the fleet runs in this process at 1 sample/s per device against a real
Mosquitto while a subscriber in another process counts what arrives. Device
counts ramp up; a step passes when the delivered sample rate keeps up with the
device count (>= 97 %), fewer than 3 % of the sampling ticks run late, and the
outbox depth stays bounded (does not grow over the measuring window). The
highest passing count is the result.

Backfill: 200 devices publish 30 days of history (a sample every
--backfill-step seconds) through the same outbox and courier; the wall time is
measured until the subscriber has counted every sample.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from vigil.benchmarks import open_broker

DAY_MS = 86_400_000
KEEP_UP = 0.97


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--counts", default="100,250,500,1000,2000,3000,4000",
                        help="device counts to try, ascending")
    parser.add_argument("--window", type=float, default=20.0,
                        help="seconds measured per device count")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring")
    parser.add_argument("--backfill-devices", type=int, default=200)
    parser.add_argument("--backfill-days", type=float, default=30.0)
    parser.add_argument("--backfill-step", type=float, default=300.0,
                        help="seconds between historical samples")
    parser.add_argument("--skip-backfill", action="store_true")
    parser.add_argument("--skip-live", action="store_true")
    parser.add_argument("--broker", default="", help="HOST:PORT of a broker (default: start one)")
    parser.add_argument("--seed", type=int, default=7)


class TallyProcess:
    """The counting subscriber in its own process; latest totals kept from its output."""

    def __init__(self, host: str, port: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vigil.benchmarks.tally", "--host", host,
             "--port", str(port)], stdout=subprocess.PIPE, text=True)
        self.latest: dict[str, Any] = {}
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        if not self.ready.wait(60):
            raise RuntimeError("the counting subscriber did not start")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            data = json.loads(line)
            if data.get("ready"):
                self.ready.set()
            elif "samples" in data:
                self.latest = data

    def samples(self) -> int:
        return int(self.latest.get("samples", 0))

    def wait_update(self) -> dict[str, Any]:
        before = self.latest.get("t")
        deadline = time.monotonic() + 5
        while self.latest.get("t") == before and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.latest

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def live_step(count: int, args: argparse.Namespace, host: str, port: int, work: Path,
              tally: TallyProcess) -> dict[str, Any]:
    from edge_agent.simulator.fleet import Fleet
    from edge_agent.simulator.scenario import plan_fleet
    from edge_agent.transport import BrokerSettings

    now = int(time.time() * 1000)
    specs = plan_fleet(count, seed=args.seed, start_ms=now - DAY_MS, end_ms=now + 30 * DAY_MS,
                       prefix=f"b{count}-")
    fleet = Fleet(specs, seed=args.seed, broker=BrokerSettings(host=host, port=port),
                  outbox_path=work / f"live-{count}.db", interval_s=1.0)
    try:
        fleet.connect()
        if not fleet.wait_connected(120):
            return {"devices": count, "ok": False,
                    "reason": f"only {fleet.connected()} connected"}
        start = time.monotonic()
        for i, device in enumerate(fleet.devices.values()):
            device.next_due = start + i / count
        while time.monotonic() - start < args.warmup:
            fleet.step()
        snap0 = tally.latest
        queued0, depth0, late0 = fleet.samples_queued, fleet.outbox.total_depth(), fleet.ticks_late
        t0 = time.monotonic()
        depth_max = depth0
        while time.monotonic() - t0 < args.window:
            fleet.step()
            depth_max = max(depth_max, fleet.outbox.total_depth())
        elapsed = time.monotonic() - t0
        depth1 = fleet.outbox.total_depth()
        queued = fleet.samples_queued - queued0
        # Keep the loop running while the subscriber reports, so nothing stalls meanwhile.
        mark = time.monotonic()
        while time.monotonic() - mark < 0.6:
            fleet.step()
        snap1 = tally.latest
        dt = snap1["t"] - snap0["t"]
        delivered_rate = (snap1["samples"] - snap0["samples"]) / dt
        produced_rate = queued / elapsed
        late = fleet.ticks_late - late0
        # Keeping up means: samples taken on schedule, delivered as fast, no growing backlog.
        ok = (produced_rate >= KEEP_UP * count and delivered_rate >= KEEP_UP * count
              and depth1 <= max(depth0, 0) + count
              and late <= (1 - KEEP_UP) * count * elapsed)
        return {"devices": count, "ok": ok, "produced_per_s": round(produced_rate, 1),
                "delivered_per_s": round(delivered_rate, 1), "outbox_depth_start": depth0,
                "outbox_depth_end": depth1, "outbox_depth_max": depth_max,
                "late_ticks": late}
    finally:
        fleet.close()


def backfill_run(args: argparse.Namespace, host: str, port: int, work: Path,
                 tally: TallyProcess) -> dict[str, Any]:
    from edge_agent.simulator.fleet import Fleet
    from edge_agent.simulator.scenario import plan_fleet, write_labels
    from edge_agent.transport import BrokerSettings

    now = int(time.time() * 1000)
    start_ms = now - int(args.backfill_days * DAY_MS)
    specs = plan_fleet(args.backfill_devices, seed=args.seed, start_ms=start_ms, end_ms=now,
                       prefix="hist-")
    faults = write_labels(work / "labels.csv", specs)
    fleet = Fleet(specs, seed=args.seed, broker=BrokerSettings(host=host, port=port),
                  outbox_path=work / "backfill.db", interval_s=1.0, max_entries=10_000_000)
    try:
        fleet.connect()
        if not fleet.wait_connected(120):
            raise RuntimeError(f"only {fleet.connected()} backfill devices connected")
        base = tally.wait_update()["samples"]
        t0 = time.monotonic()
        produced = fleet.backfill(start_ms, now, args.backfill_step)
        t_generated = time.monotonic() - t0
        drained = fleet.drain(600)
        expected = base + produced
        deadline = time.monotonic() + 300
        while tally.samples() < expected and time.monotonic() < deadline:
            fleet.reactor.poll(0.1)
        wall = time.monotonic() - t0
        delivered = tally.samples() - base
    finally:
        fleet.close()
    return {"devices": args.backfill_devices, "days": args.backfill_days,
            "step_s": args.backfill_step, "samples": produced, "delivered": delivered,
            "faults": faults, "generate_s": round(t_generated, 1), "wall_s": round(wall, 1),
            "samples_per_s": round(delivered / wall), "complete": drained and delivered >= produced}


def run(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="vigil-bench-sim-"))
    host, port, broker = open_broker(args.broker, work)
    tally = TallyProcess(host, port)
    steps: list[dict[str, Any]] = []
    backfill: dict[str, Any] = {}
    try:
        if not args.skip_live:
            print("live: virtual devices at 1 sample/s, delivery counted by a separate subscriber")
            for count in [int(c) for c in args.counts.split(",") if c]:
                step = live_step(count, args, host, port, work, tally)
                steps.append(step)
                print(f"  {count:5d} devices: produced {step.get('produced_per_s', 0):8.1f}/s, "
                      f"delivered {step.get('delivered_per_s', 0):8.1f}/s, outbox depth "
                      f"{step.get('outbox_depth_start', '-')} -> "
                      f"{step.get('outbox_depth_end', '-')} "
                      f"(max {step.get('outbox_depth_max', '-')}): "
                      f"{'keeps up' if step['ok'] else 'falls behind'}")
                if not step["ok"]:
                    break
        if not args.skip_backfill:
            print(f"backfill: {args.backfill_devices} devices x {args.backfill_days:g} days, "
                  f"a sample every {args.backfill_step:g} s")
            backfill = backfill_run(args, host, port, work, tally)
            print(f"  {backfill['samples']:,} samples generated in {backfill['generate_s']} s, "
                  f"all delivered after {backfill['wall_s']} s "
                  f"({backfill['samples_per_s']:,} samples/s); complete: {backfill['complete']}")
    finally:
        tally.close()
        if broker:
            broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    sustained = max((s["devices"] for s in steps if s["ok"]), default=0)
    # When every step passed, the true limit lies above the largest count tried.
    limit_found = any(not s["ok"] for s in steps)
    if steps:
        print(f"sustained: {sustained} devices at 1 sample/s in one process (target >= 500)"
              + ("" if limit_found else "; every count tried kept up, the limit is higher"))
    print(json.dumps({"benchmark": "simulator", "sustained_devices": sustained,
                      "limit_found": limit_found, "target_devices": 500, "steps": steps,
                      "backfill": backfill}))
    return 0
