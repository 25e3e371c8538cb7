"""Benchmark the telemetry stores: write rate, one-day query and downsampled 30-day query.

Writes the same data set into each store: 1,000,000 samples of 8 metrics from
500 devices. One device, the query device, holds a full day at 1 Hz (86,400
samples) plus the 30 days before it at one sample a minute (43,200); the other
499 devices share the rest at one sample a minute, ending at the same time.
Samples go to the store device by device in batches, as ingest sends them.
Values have three decimals, like real sensor readings.

Then it times two queries of the query device, repeated: its 1 Hz day with all
8 metrics, and the last 30 days as 1-hour means. On InfluxDB it times them
twice: right after writing, while much of the data is still in InfluxDB's
in-memory write cache, and again once InfluxDB has moved it to its files, as
a running server holds all but its last minutes. An InfluxDB is started for the
run (Debian's, in a temporary folder) unless ``--influx-url`` names one, and the
embedded store lives in a temporary folder; both are removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

DAY_MS = 86_400_000
MINUTE_MS = 60_000
METRICS = ("temperature", "humidity", "supply_voltage", "current", "pressure", "flow_rate",
           "motor_rpm", "battery_level")
QUERY_DEVICE = "bench-000"
END_MS = 1_767_225_600_000  # 2026-01-01 00:00 UTC: the end of the query device's 1 Hz day


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--samples", type=int, default=1_000_000,
                        help="samples to write into each store (at least 200,000)")
    parser.add_argument("--devices", type=int, default=500, help="devices the samples come from")
    parser.add_argument("--repeat", type=int, default=7, help="times each query is run")
    parser.add_argument("--stores", default="influxdb,embedded",
                        help="comma-separated stores to measure: influxdb, embedded")
    parser.add_argument("--write-size", type=int, default=50_000, help="samples per write call")
    parser.add_argument("--batch-size", type=int, default=5000,
                        help="samples per InfluxDB request (the store splits each write call)")
    parser.add_argument("--concurrency", type=int, default=2,
                        help="InfluxDB posts in flight at once")
    parser.add_argument("--gzip", choices=["auto", "on", "off"], default="auto",
                        help="gzip InfluxDB request bodies "
                        "(auto: unless InfluxDB is on this machine)")
    parser.add_argument("--influx-url", help="an existing InfluxDB (default: start one)")
    parser.add_argument("--influx-database",
                        help="database to write into and drop afterwards (default: a new name)")
    parser.add_argument("--influx-username")
    parser.add_argument("--influx-password")
    parser.add_argument("--influx-token")


def plan(samples: int, devices: int) -> list[tuple[str, int, int, int]]:
    """(device, first ts, step ms, count) runs that make up the data set."""
    if samples < 200_000:
        raise SystemExit("--samples must be at least 200,000 "
                         "(the query device alone holds 129,600)")
    if devices < 2:
        raise SystemExit("--devices must be at least 2")
    day_start = END_MS - DAY_MS
    runs = [(QUERY_DEVICE, day_start - 30 * DAY_MS, MINUTE_MS, 30 * 1440),
            (QUERY_DEVICE, day_start, 1000, 86_400)]
    rest = samples - 30 * 1440 - 86_400
    others = devices - 1
    for i in range(others):
        count = rest // others + (1 if i < rest % others else 0)
        runs.append((f"bench-{i + 1:03d}", END_MS - count * MINUTE_MS, MINUTE_MS, count))
    return runs


def chunks(runs: list[tuple[str, int, int, int]], size: int) -> Iterator[list[Any]]:
    """Points in batches of ``size``; generated lazily, so memory stays small."""
    import numpy as np

    from vigil.telemetry.store import Point

    rng = np.random.default_rng(7)
    batch: list[Point] = []
    for device, first, step, count in runs:
        model = f"model-{int(device[-3:]) % 7}"
        site = f"site-{int(device[-3:]) % 40:02d}"
        done = 0
        while done < count:
            n = min(count - done, size - len(batch))
            ts = (first + (done + np.arange(n)) * step).tolist()
            values = np.round(rng.normal(50.0, 15.0, size=(n, len(METRICS))), 3).tolist()
            batch.extend(Point(device, t, dict(zip(METRICS, row, strict=True)), model=model,
                               site=site)
                         for t, row in zip(ts, values, strict=True))
            done += n
            if len(batch) == size:
                yield batch
                batch = []
    if batch:
        yield batch


def measure_store(name: str, store: Any, runs: list[tuple[str, int, int, int]], total: int,
                  write_size: int, repeat: int,
                  settle: Callable[[], float | None] | None = None) -> dict[str, Any]:
    """Write the data set, then time the queries; with ``settle``, again once it returns."""
    write_s = 0.0
    written = 0
    next_report = total // 10
    for batch in chunks(runs, write_size):
        started = time.perf_counter()
        written += store.write(batch)
        write_s += time.perf_counter() - started
        if written >= next_report or written == total:
            print(f"  {name}: {written:>9,} / {total:,} samples written "
                  f"({written / write_s:,.0f} samples/s)", flush=True)
            next_report += total // 10
    rate = written / write_s

    day = END_MS - DAY_MS, END_MS
    month = END_MS - 30 * DAY_MS, END_MS

    def one_day() -> int:
        frame = store.query(QUERY_DEVICE, *day)
        if frame.shape != (86_400, len(METRICS)):
            raise RuntimeError(f"{name}: one-day query returned {frame.shape}, expected (86400, 8)")
        return len(frame)

    def thirty_days() -> int:
        frame = store.query(QUERY_DEVICE, *month, interval=timedelta(hours=1), aggregate="mean")
        if frame.shape != (720, len(METRICS)):
            raise RuntimeError(f"{name}: 30-day query returned {frame.shape}, expected (720, 8)")
        return len(frame)

    def fleet_latest() -> int:
        frame = store.latest()
        if len(frame) != len({run[0] for run in runs}):
            raise RuntimeError(f"{name}: latest() returned {len(frame)} devices")
        return len(frame)

    day_ms = timed(one_day, repeat)
    month_ms = timed(thirty_days, repeat)
    latest_ms = timed(fleet_latest, max(1, repeat // 2))
    print(f"  {name}: write {rate:,.0f} samples/s ({written:,} samples in {write_s:.1f} s)")
    print(f"  {name}: one-day query (86,400 rows x 8 metrics): median {day_ms['median']:.0f} ms, "
          f"max {day_ms['max']:.0f} ms over {repeat} runs")
    print(f"  {name}: 30-day query as 1-hour means (720 rows): median {month_ms['median']:.0f} ms, "
          f"max {month_ms['max']:.0f} ms over {repeat} runs")
    print(f"  {name}: latest values of all devices: median {latest_ms['median']:.0f} ms, "
          f"max {latest_ms['max']:.0f} ms", flush=True)
    results: dict[str, Any] = {
        "write_samples_per_s": round(rate), "samples": written, "write_s": round(write_s, 2),
        "day_query_ms": day_ms, "downsampled_30d_query_ms": month_ms,
        "latest_all_devices_ms": latest_ms,
    }
    if settle is not None:
        waited = settle()
        if waited is None:
            print(f"  {name}: could not tell when the server had settled; no settled figures",
                  flush=True)
        else:
            day_ms = timed(one_day, repeat)
            month_ms = timed(thirty_days, repeat)
            print(f"  {name}: after {waited:.0f} s, the data moved from the server's write cache "
                  f"to its files: one-day query median {day_ms['median']:.0f} ms, max "
                  f"{day_ms['max']:.0f} ms; 30-day query median {month_ms['median']:.0f} ms, "
                  f"max {month_ms['max']:.0f} ms", flush=True)
            results["settled"] = {"wait_s": round(waited, 1), "day_query_ms": day_ms,
                                  "downsampled_30d_query_ms": month_ms}
    return results


def raw_post_rate(store: Any, runs: list[tuple[str, int, int, int]], batch_size: int,
                  concurrency: int, share: int = 4) -> float:
    """Lines/s of plain batched posts of already serialised lines: the server's ceiling.

    Every ``share``-th batch of the data set is used, so the lines spread over all
    devices as the store's own writes do.
    """
    from concurrent.futures import ThreadPoolExecutor

    bodies = [store.serialise(batch) for i, batch in enumerate(chunks(runs, batch_size))
              if i % share == 0]
    lines = sum(body.count(b"\n") for body in bodies)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(store.post_lines, bodies))
    return lines / (time.perf_counter() - started)


def influx_settled(store: Any, timeout_s: float = 180.0) -> float | None:
    """Wait until InfluxDB holds none of the database in its write cache; seconds waited.

    Data just written sits in InfluxDB's in-memory cache until a shard has been
    idle for a while, and reading from there is slower than from its TSM files,
    where a long-running server keeps everything but the last minutes. The
    figures of ``/debug/vars`` tell when every shard has been snapshotted and no
    compaction runs. None if the server does not show them or takes too long.
    """
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            stats = store._request("GET", "/debug/vars").json()
        except Exception:  # noqa: BLE001 - any failure means the figures cannot be read
            return None
        cached = active = 0
        for value in stats.values():
            tags = value.get("tags") if isinstance(value, dict) else None
            if not isinstance(value, dict) or (tags or {}).get("database") != store.database:
                continue
            figures = value.get("values", {})
            if value.get("name") == "tsm1_cache":
                cached += figures.get("memBytes", 0)
            elif value.get("name") == "tsm1_engine":
                active += sum(v for k, v in figures.items() if k.endswith("CompactionsActive"))
        if cached == 0 and active == 0:
            return time.monotonic() - started
        time.sleep(1.0)
    return None


def drop_database(store: Any) -> None:
    """Remove the benchmark's database, so a server named with --influx-url is left as it was."""
    from vigil.telemetry.influxql import quote_ident

    store._query(f"DROP DATABASE {quote_ident(store.database)}", method="POST", database=False)


def timed(call: Callable[[], int], repeat: int) -> dict[str, float]:
    durations = []
    for _ in range(max(1, repeat)):
        started = time.perf_counter()
        call()
        durations.append((time.perf_counter() - started) * 1000)
    return {"median": round(statistics.median(durations), 1), "max": round(max(durations), 1)}


def run(args: argparse.Namespace) -> int:
    from vigil.servers import ServerUnavailable
    from vigil.telemetry.store import StoreUnavailable

    try:
        return measure(args)
    except (ServerUnavailable, StoreUnavailable) as exc:
        print(f"vigil bench store: {exc}", file=sys.stderr)
        return 1


def measure(args: argparse.Namespace) -> int:
    from vigil.servers import InfluxDB
    from vigil.telemetry.embedded import EmbeddedStore
    from vigil.telemetry.influx import InfluxStore

    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    unknown = set(stores) - {"influxdb", "embedded"}
    if unknown or not stores:
        print(f"unknown store(s) {', '.join(sorted(unknown)) or '(none)'}; "
              "choose from influxdb, embedded", file=sys.stderr)
        return 2
    runs = plan(args.samples, args.devices)
    total = sum(run[3] for run in runs)
    print(f"vigil bench store: {total:,} samples of {len(METRICS)} metrics "
          f"from {args.devices} devices, "
          f"write calls of {args.write_size:,}")
    print(f"  query device {QUERY_DEVICE}: one day at 1 Hz (86,400 samples) and the 30 days before "
          f"it at 1/min (43,200); the other {args.devices - 1} devices share the remaining "
          f"{total - 129_600:,} at 1/min", flush=True)
    results: dict[str, Any] = {"samples": total, "devices": args.devices, "metrics": len(METRICS),
                               "write_size": args.write_size, "repeat": args.repeat}
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vigil-bench-store-")))
        for name in stores:
            if name == "influxdb":
                url = args.influx_url
                username, password = args.influx_username, args.influx_password
                if url is None:
                    print("  starting InfluxDB ...", flush=True)
                    server = InfluxDB(tmp / "influxdb").start()
                    stack.callback(server.stop)
                    url, username, password = server.url, server.username, server.password
                database = args.influx_database or f"vigil_bench_{uuid.uuid4().hex[:8]}"
                store: Any = InfluxStore(url, database, username=username,
                                         password=password, token=args.influx_token,
                                         batch_size=args.batch_size, concurrency=args.concurrency,
                                         gzip_body={"on": True, "off": False}.get(args.gzip))
                store.ping()
                with InfluxStore(url, database + "_raw", username=username,
                                 password=password, token=args.influx_token,
                                 gzip_body=store.gzip_body) as raw:
                    raw.ping()
                    try:
                        rate = raw_post_rate(raw, runs, args.batch_size, args.concurrency)
                    finally:
                        drop_database(raw)
                results["influxdb_raw_post_lines_per_s"] = round(rate)
                print(f"  influxdb: plain posts of the same lines, already serialised: "
                      f"{rate:,.0f} lines/s (the server's ceiling for this data)", flush=True)
                results["influxdb_batch_size"] = args.batch_size
                results["influxdb_concurrency"] = args.concurrency
                results["influxdb_gzip"] = store.gzip_body
                print(f"  influxdb: requests of {args.batch_size:,} samples, {args.concurrency} in "
                      f"flight, gzip {'on' if store.gzip_body else 'off'}", flush=True)
            else:
                store = EmbeddedStore(tmp / "telemetry.db")
            with store:
                try:
                    settle = partial(influx_settled, store) if name == "influxdb" else None
                    results[name] = measure_store(name, store, runs, total, args.write_size,
                                                  args.repeat, settle)
                finally:
                    if name == "influxdb":
                        drop_database(store)
            if name == "embedded":
                results[name]["file_mb"] = round((tmp / "telemetry.db").stat().st_size / 1e6, 1)
    print(json.dumps(results, sort_keys=True))
    return 0
