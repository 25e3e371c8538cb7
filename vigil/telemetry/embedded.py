"""The embedded telemetry store: one SQLite file, no server.

Why SQLite rather than DuckDB: it ships with Python (nothing to install, no
native wheel to match), and it is built for what this store does all day:
many small transactional upserts from ingest while the API reads in another
process. WAL mode lets readers run beside one writer across processes, and an
upsert (``INSERT … ON CONFLICT DO UPDATE``) makes a replayed sample overwrite
itself. DuckDB scans faster, but it takes a single writing process per file,
and its per-row upserts are slow; our queries are narrow (one device, a time
range) and a primary key ``(device, ts, …)`` answers them from one contiguous
range of a B-tree.

Layout: a table per measurement, ``WITHOUT ROWID`` with primary key
``(device, ts, model, site, tags)``, and one REAL column per metric, added with
``ALTER TABLE`` when a metric is first seen. Metric names map to generated
column names (``c1``, ``c2``…) in ``_metrics``, so a metric name never becomes
SQL and ``Temp`` and ``temp`` stay two metrics as they are in InfluxDB. A small
``_latest`` table keeps the newest value per device and metric, updated once
per batch, so ``latest``, ``devices`` and ``metrics`` do not scan the data.
Commits use ``synchronous=FULL``: a write that returned survives a power cut.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from vigil.telemetry.batch import (
    check_device,
    check_metrics,
    latest_frame,
    result_frame,
    validate_batch,
)
from vigil.telemetry.store import (
    DEFAULT_MEASUREMENT,
    Aggregate,
    Point,
    StoreUnavailable,
    TelemetryStore,
    validate_interval,
    validate_measurement,
    validate_range,
)

if TYPE_CHECKING:
    import pandas as pd

# Stored values are finite, so infinity can stand for "no value" on the way out of SQLite.
MISSING = "9e999"
SQL_AGGREGATES = {"mean": "avg", "min": "min", "max": "max", "sum": "total", "count": "count"}
BUSY_TIMEOUT_MS = 30_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS _metrics (
    measurement TEXT NOT NULL, metric TEXT NOT NULL, col TEXT NOT NULL,
    PRIMARY KEY (measurement, metric)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _latest (
    measurement TEXT NOT NULL, device TEXT NOT NULL, metric TEXT NOT NULL,
    ts INTEGER NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (measurement, device, metric)) WITHOUT ROWID;
"""


@contextmanager
def locked_write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT on a raw sqlite3 connection.

    The write lock is taken up front, so the batch never fails half-way on a lock;
    anything that goes wrong, a failed COMMIT included, rolls it all back.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def table_name(measurement: str) -> str:
    """The quoted table of a (validated) measurement."""
    return '"m_' + validate_measurement(measurement) + '"'


class EmbeddedStore(TelemetryStore):
    """Telemetry in a SQLite file; safe for several threads and processes."""

    def __init__(self, path: Path | str, *, synchronous: str = "FULL",
                 busy_timeout_s: float = BUSY_TIMEOUT_MS / 1000) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        self.path = Path(path)
        self.synchronous = synchronous
        self.busy_timeout_ms = int(busy_timeout_s * 1000)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._conn()
            with locked_write(conn):
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    conn.execute(statement)
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(f"embedded telemetry store {self.path}: {exc}") from exc

    # -- connections -------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self._closed:
            raise StoreUnavailable(f"embedded telemetry store {self.path} is closed")
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=self.busy_timeout_ms / 1000)
        conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        conn.execute("PRAGMA cache_size = -65536")
        self._local.conn = conn
        with self._lock:
            self._connections.append(conn)
        return conn

    def _columns(self, conn: sqlite3.Connection, measurement: str) -> dict[str, str]:
        rows = conn.execute("SELECT metric, col FROM _metrics WHERE measurement = ?",
                            (measurement,)).fetchall()
        return dict(rows)

    # -- writing -----------------------------------------------------------

    def write(self, points: Iterable[Point]) -> int:
        batch = validate_batch(points)
        if not batch:
            return 0
        by_measurement: dict[str, list[Point]] = {}
        for point in batch:
            by_measurement.setdefault(point.measurement, []).append(point)
        try:
            conn = self._conn()
            with locked_write(conn):
                for measurement, group in by_measurement.items():
                    self._write_measurement(conn, measurement, group)
        except sqlite3.Error as exc:
            raise StoreUnavailable(
                f"embedded telemetry store {self.path} could not write: {exc}") from exc
        return len(batch)

    def _write_measurement(self, conn: sqlite3.Connection, measurement: str,
                           points: list[Point]) -> None:
        table = table_name(measurement)
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table} ("
                     "device TEXT NOT NULL, ts INTEGER NOT NULL, "
                     "model TEXT NOT NULL, site TEXT NOT NULL, tags TEXT NOT NULL, "
                     "PRIMARY KEY (device, ts, model, site, tags)) WITHOUT ROWID")
        columns = self._columns(conn, measurement)
        by_keys: dict[tuple[str, ...], list[Point]] = {}
        for point in points:
            keys = tuple(point.metrics)
            group = by_keys.get(keys)
            if group is None:
                by_keys[keys] = [point]
            else:
                group.append(point)
            for name in keys:
                if name not in columns:
                    col = f"c{len(columns) + 1}"
                    conn.execute(f'ALTER TABLE {table} ADD COLUMN "{col}" REAL')
                    conn.execute("INSERT INTO _metrics (measurement, metric, col) VALUES (?, ?, ?)",
                                 (measurement, name, col))
                    columns[name] = col
        newest: dict[tuple[str, str], tuple[int, float]] = {}
        for keys, group in by_keys.items():
            cols = [f'"{columns[name]}"' for name in keys]
            updates = ", ".join(f"{c} = coalesce(excluded.{c}, {c})" for c in cols)
            sql = (f"INSERT INTO {table} (device, ts, model, site, tags, {', '.join(cols)}) "
                   f"VALUES (?, ?, ?, ?, ?{', ?' * len(cols)}) "
                   f"ON CONFLICT (device, ts, model, site, tags) DO UPDATE SET {updates}")
            rows = []
            for p in group:
                tags = json.dumps(dict(sorted(p.extra_tags.items()))) if p.extra_tags else ""
                values = [float(p.metrics[name]) for name in keys]
                rows.append((p.device, p.ts, p.model, p.site, tags, *values))
                for name, value in zip(keys, values, strict=True):
                    key = (p.device, name)
                    seen = newest.get(key)
                    if seen is None or p.ts >= seen[0]:
                        newest[key] = (p.ts, value)
            conn.executemany(sql, rows)
        conn.executemany(
            "INSERT INTO _latest (measurement, device, metric, ts, value) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (measurement, device, metric) DO UPDATE SET ts = excluded.ts, "
            "value = excluded.value WHERE excluded.ts >= _latest.ts",
            [(measurement, device, name, ts, value)
             for (device, name), (ts, value) in newest.items()],
        )

    # -- reading -----------------------------------------------------------

    def query(
        self,
        device: str,
        start: datetime | int,
        end: datetime | int,
        *,
        metrics: Sequence[str] | None = None,
        interval: timedelta | None = None,
        aggregate: Aggregate = "mean",
        measurement: str = DEFAULT_MEASUREMENT,
    ) -> pd.DataFrame:
        import numpy as np

        check_device(device)
        start_ms, end_ms = validate_range(start, end)
        interval_ms = validate_interval(interval, aggregate)
        table = table_name(measurement)
        names = check_metrics(metrics)
        try:
            conn = self._conn()
            columns = self._columns(conn, measurement)
            wanted = [n for n in (names or sorted(columns)) if n in columns]
            if not wanted:
                return result_frame(np.empty(0, dtype="int64"), {}, names)
            cols = [f'"{columns[n]}"' for n in wanted]
            where = "WHERE device = ? AND ts >= ? AND ts < ?"
            args: tuple[object, ...] = (device, start_ms, end_ms)
            if interval_ms is not None and aggregate in SQL_AGGREGATES:
                fn = SQL_AGGREGATES[aggregate]
                sql = (f"SELECT (ts / {interval_ms}) * {interval_ms} AS bucket, "
                       f"{', '.join(f'ifnull({fn}({c}), {MISSING})' for c in cols)} "
                       f"FROM {table} {where} GROUP BY bucket ORDER BY bucket")
            else:
                sql = (f"SELECT ts, {', '.join(f'ifnull({c}, {MISSING})' for c in cols)} "
                       f"FROM {table} {where} ORDER BY ts")
            # Straight from the cursor into one float array: no list of row tuples.
            flat = np.fromiter(itertools.chain.from_iterable(conn.execute(sql, args)),
                               dtype="float64")
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return result_frame(np.empty(0, dtype="int64"), {}, names)
            raise StoreUnavailable(
                f"embedded telemetry store {self.path} could not read: {exc}") from exc
        data = flat.reshape(-1, len(cols) + 1)
        times = data[:, 0].astype("int64")
        values = data[:, 1:]
        values[np.isinf(values)] = np.nan
        if interval_ms is not None:
            if aggregate in SQL_AGGREGATES:
                if aggregate == "count":
                    values[values == 0] = np.nan
            else:
                times, values = _aggregate(times, values, interval_ms, aggregate)
            keep = ~np.isnan(values).all(axis=1)
            times, values = times[keep], values[keep]
        return result_frame(times, {n: values[:, i] for i, n in enumerate(wanted)}, names)

    def latest(
        self, devices: Sequence[str] | None = None, *, measurement: str = DEFAULT_MEASUREMENT
    ) -> pd.DataFrame:
        validate_measurement(measurement)
        sql = "SELECT device, metric, ts, value FROM _latest WHERE measurement = ?"
        args: list[object] = [measurement]
        if devices is not None:
            wanted = [check_device(d) for d in devices]
            if not wanted:
                return latest_frame({})
            sql += f" AND device IN ({', '.join('?' * len(wanted))})"
            args.extend(wanted)
        rows: dict[str, tuple[int, dict[str, float]]] = {}
        for device, metric, ts, value in self._read(sql, args):
            newest, values = rows.get(device, (ts, {}))
            values[metric] = value
            rows[device] = (max(newest, ts), values)
        return latest_frame(rows)

    def devices(self, *, measurement: str = DEFAULT_MEASUREMENT) -> list[str]:
        validate_measurement(measurement)
        rows = self._read("SELECT DISTINCT device FROM _latest WHERE measurement = ?",
                          [measurement])
        return sorted(row[0] for row in rows)

    def metrics(
        self, device: str | None = None, *, measurement: str = DEFAULT_MEASUREMENT
    ) -> list[str]:
        validate_measurement(measurement)
        sql = "SELECT DISTINCT metric FROM _latest WHERE measurement = ?"
        args: list[object] = [measurement]
        if device is not None:
            sql += " AND device = ?"
            args.append(check_device(device))
        return sorted(row[0] for row in self._read(sql, args))

    def ping(self) -> None:
        try:
            conn = self._conn()
            conn.execute("SELECT count(*) FROM _metrics").fetchone()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise StoreUnavailable(
                f"embedded telemetry store {self.path} is not usable: {exc}") from exc

    def close(self) -> None:
        self._closed = True
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()

    def _read(self, sql: str, args: Sequence[object]) -> list[tuple]:
        try:
            return self._conn().execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailable(
                f"embedded telemetry store {self.path} could not read: {exc}") from exc


def _aggregate(times: object, values: object, interval_ms: int, aggregate: str) -> tuple:
    """first/last/median per epoch-aligned interval, skipping missing values as InfluxDB does."""
    import numpy as np
    import pandas as pd

    frame = pd.DataFrame(values)
    buckets = (np.asarray(times) // interval_ms) * interval_ms
    grouped = frame.groupby(buckets, sort=True).agg(aggregate)
    return grouped.index.to_numpy(dtype="int64"), grouped.to_numpy(dtype="float64")
