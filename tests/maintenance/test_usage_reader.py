"""The maintenance job's usage readings from the embedded telemetry store (same contract as
InfluxDB's): the newest usage-hours value per device, and nothing for devices without one."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from vigil.maintenance.rules import Usage
from vigil.maintenance.scheduled import usage_from_store
from vigil.telemetry.embedded import EmbeddedStore
from vigil.telemetry.store import Point

T0 = datetime(2026, 12, 1, tzinfo=UTC)
MS = int(T0.timestamp() * 1000)


def test_latest_usage_hours_per_device(tmp_path: Path) -> None:
    with EmbeddedStore(tmp_path / "telemetry.db") as store:
        store.write([Point("vent-1", MS, {"usage_hours": 1000.0, "flow": 1.0}),
                     Point("vent-1", MS + 3_600_000, {"usage_hours": 1001.0}),
                     Point("mri-1", MS, {"helium_pct": 80.0})])
        read = usage_from_store(store)
        found = read(["vent-1", "mri-1", "nope-1"])
        assert found == {"vent-1": Usage(1001.0, datetime(2026, 12, 1, 1, 0, tzinfo=UTC))}
        assert read([]) == {}
