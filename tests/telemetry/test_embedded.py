"""The embedded store's own promises: several processes and threads on one file, and open_store."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from pathlib import Path

import pytest

from vigil.config import Settings
from vigil.telemetry import open_store
from vigil.telemetry.embedded import EmbeddedStore
from vigil.telemetry.influx import InfluxStore
from vigil.telemetry.store import Point, StoreUnavailable

T0 = 1_700_000_000_000


def write_device(path: str, device: str, batches: int, size: int) -> None:
    """Run in a child process: write ``batches`` batches, each overlapping the previous one."""
    with EmbeddedStore(path) as store:
        for b in range(batches):
            first = b * size // 2
            store.write([Point(device, T0 + i * 1000, {"temp": float(i), f"m{b % 3}": 1.0})
                         for i in range(first, first + size)])
        store.write([Point("shared", T0 + i, {device.replace("-", "_"): float(i)})
                     for i in range(200)])


def test_processes_writing_one_file_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "telemetry.db")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=write_device, args=(path, f"pump-{n}", 12, 2000))
               for n in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
        assert worker.exitcode == 0
    with EmbeddedStore(path) as store:
        assert store.devices() == ["pump-0", "pump-1", "pump-2", "shared"]
        for n in range(3):
            frame = store.query(f"pump-{n}", T0, T0 + 100_000_000)
            assert len(frame) == 11 * 1000 + 2000
            assert frame["temp"].tolist() == [float(i) for i in range(13_000)]
        shared = store.query("shared", T0, T0 + 1000)
        assert list(shared.columns) == ["pump_0", "pump_1", "pump_2"]
        assert len(shared) == 200 and not shared.isna().any().any()


def test_threads_share_one_store(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    with EmbeddedStore(tmp_path / "telemetry.db") as store:
        def work(n: int) -> None:
            try:
                for b in range(20):
                    store.write([Point(f"pump-{n}", T0 + (b * 50 + i) * 1000, {"temp": float(i)})
                                 for i in range(50)])
                    store.query(f"pump-{n}", T0, T0 + 10_000_000)
                    store.latest()
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors
        assert [len(store.query(f"pump-{n}", T0, T0 + 10_000_000)) for n in range(4)] == [1000] * 4


def test_a_metric_added_through_one_store_is_seen_by_another(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.db"
    with EmbeddedStore(path) as reader, EmbeddedStore(path) as writer:
        writer.write([Point("pump-1", T0, {"temp": 1.0})])
        assert list(reader.query("pump-1", T0, T0 + 1).columns) == ["temp"]
        writer.write([Point("pump-1", T0 + 1, {"flow": 2.0})])
        assert list(reader.query("pump-1", T0, T0 + 2).columns) == ["flow", "temp"]
        assert reader.metrics("pump-1") == ["flow", "temp"]


def test_data_survives_closing_and_reopening(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "telemetry.db"
    with EmbeddedStore(path) as store:
        store.write([Point("pump-1", T0, {"temp": 1.5})])
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    with EmbeddedStore(path) as store:
        assert store.query("pump-1", T0, T0 + 1)["temp"].tolist() == [1.5]


def test_an_unusable_path_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreUnavailable, match="embedded telemetry store"):
        EmbeddedStore(blocker / "telemetry.db")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreUnavailable, match="garbage.db"):
        EmbeddedStore(garbage)


def test_a_closed_store_says_so(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "telemetry.db")
    store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        threading_result: list[BaseException] = []

        def use() -> None:
            try:
                store.devices()
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                threading_result.append(exc)

        thread = threading.Thread(target=use)
        thread.start()
        thread.join()
        raise threading_result[0]


def test_open_store_follows_the_settings(tmp_path: Path) -> None:
    embedded = open_store(Settings(data_dir=tmp_path))
    assert isinstance(embedded, EmbeddedStore)
    assert embedded.path == tmp_path / "telemetry.db"
    embedded.close()
    settings = Settings(data_dir=tmp_path, telemetry_store="influxdb",
                        influxdb={"url": "http://127.0.0.1:1/", "database": "fleet",
                                  "username": "svc", "password": "pw", "batch_size": 123})
    with open_store(settings) as influx:
        assert isinstance(influx, InfluxStore)
        assert (influx.url, influx.database, influx.batch_size) == (
            "http://127.0.0.1:1", "fleet", 123)


def test_a_write_that_cannot_get_the_lock_fails_whole_and_clearly(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.db"
    with EmbeddedStore(path, busy_timeout_s=0.5) as store:
        store.write([Point("pump-1", T0, {"temp": 1.0})])
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreUnavailable, match="could not write: database is locked"):
                store.write([Point("pump-1", T0 + i, {"temp": 2.0, "new": 3.0})
                             for i in range(1, 100)])
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert len(store.query("pump-1", T0, T0 + 1000)) == 1
        assert store.metrics() == ["temp"]
        store.write([Point("pump-1", T0 + 1, {"new": 3.0})])
        assert store.metrics() == ["new", "temp"]
