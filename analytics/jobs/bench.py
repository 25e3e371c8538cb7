"""Streaming scoring speed: device-days scored per CPU second, through the real job.

Writes a synthetic fleet's readings (a daily rhythm with noise, one reading
every ``--every`` seconds, ``--metrics`` metrics) into a fresh embedded
telemetry store and SQLite database in a temporary folder, then runs the
scoring job's passes until every device is scored, timing wall-clock and
process CPU time. The CPU time covers the whole job: reading and resampling
in the store, scoring, writing the scores and saving state (SQLite and the
embedded store run in this process). ``arrival_ratio`` compares the rate with
the telemetry of 5,000 devices (one device-day per device per day).

Live, a device is scored one step at a time, and each pass pays for loading
and saving the detectors' state: the second figure times one more step on
every device and gives the devices one core keeps up with at that cadence
(``live_devices_per_core``).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

FLEET_FOR_RATIO = 5000


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--every", type=float, default=10.0, help="seconds between readings")
    parser.add_argument("--metrics", type=int, default=6)
    parser.add_argument("--step", type=int, default=300, help="scoring step in seconds")


def synthetic(device: str, start_ms: int, end_ms: int, every_ms: int, metrics: int,
              seed: int) -> list:
    from vigil.telemetry.store import Point

    rng = random.Random(f"{device}-{seed}")
    points = []
    for ts in range(start_ms, end_ms, every_ms):
        day = 2 * math.pi * (ts / 86_400_000.0)
        values = {f"m{i}": 50 + 10 * math.sin(day + i) + rng.gauss(0, 1) for i in range(metrics)}
        points.append(Point(device, ts, values, model="bench"))
    return points


class _Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def run(args: argparse.Namespace) -> int:
    from analytics.jobs.metrics import JobMetrics
    from analytics.jobs.runner import Worker
    from vigil.config import JobsSettings, ScoringSettings
    from vigil.db import migrations
    from vigil.db.models import Device
    from vigil.db.session import make_engine, make_session_factory, transaction
    from vigil.telemetry.embedded import EmbeddedStore

    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    end_ms = int(end.timestamp() * 1000)
    start_ms = end_ms - int(args.days * 86_400_000)
    with tempfile.TemporaryDirectory() as folder:
        engine = make_engine(f"sqlite:///{Path(folder) / 'vigil.db'}")
        migrations.upgrade(engine)
        factory = make_session_factory(engine)
        ids = [f"bench-{i:05d}" for i in range(args.devices)]
        with transaction(factory) as session:
            session.add_all(Device(id=i, serial=i, model="bench") for i in ids)
        store = EmbeddedStore(Path(folder) / "telemetry.db", synchronous="NORMAL")
        t = time.perf_counter()
        readings = 0
        for n, device in enumerate(ids):
            points = synthetic(device, start_ms, end_ms, int(args.every * 1000), args.metrics, n)
            readings += store.write(points)
        print(f"wrote {readings:,} readings of {args.metrics} metrics in "
              f"{time.perf_counter() - t:.1f} s")
        settings = JobsSettings(intervals_s={"scoring": float(args.step)},
                                scoring=ScoringSettings(default_step_s=args.step))
        clock = _Clock(end + timedelta(seconds=settings.scoring.settle_s + 1))
        worker = Worker(factory=factory, store=store, settings=settings, metrics=JobMetrics(),
                        clock=clock)
        wall, cpu = time.perf_counter(), time.process_time()
        report = worker.run("scoring")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        step_ms = args.step * 1000
        for n, device in enumerate(ids):
            store.write(synthetic(device, end_ms, end_ms + step_ms, int(args.every * 1000),
                                  args.metrics, n))
        clock.now += timedelta(seconds=args.step)
        live_cpu = time.process_time()
        live = worker.run("scoring")
        live_cpu = time.process_time() - live_cpu
        store.close()
        engine.dispose()
    device_days = args.devices * args.days
    per_core = device_days / cpu
    arrival = FLEET_FOR_RATIO / 86_400.0
    figures = {
        "bench": "scoring", "devices": args.devices, "days": args.days, "every_s": args.every,
        "metrics": args.metrics, "step_s": args.step, "steps": report.detail.get("steps", 0),
        "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
        "device_days_per_s_per_core": round(per_core, 1),
        "arrival_ratio": round(per_core / arrival, 1),
        "live_steps": live.detail.get("steps", 0),
        "live_ms_per_device_step": round(1000 * live_cpu / args.devices, 1),
        "live_devices_per_core": int(args.step / (live_cpu / args.devices)),
    }
    print(f"scored {device_days:g} device-days ({figures['steps']:,} steps x {args.metrics} "
          f"metrics) in {wall:.1f} s wall, {cpu:.1f} s CPU")
    print(f"{per_core:.1f} device-days per CPU second; {figures['arrival_ratio']:g} x the "
          f"arrival rate of {FLEET_FOR_RATIO:,} devices")
    print(f"live: one step on each device costs {figures['live_ms_per_device_step']} ms CPU; "
          f"one core keeps up with {figures['live_devices_per_core']:,} devices at a "
          f"{args.step} s step")
    print(json.dumps(figures))
    return 0 if report.failures == 0 else 1
