"""`vigil up` end to end: its own Mosquitto, the schema, ingest and a simulated fleet."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from vigil.config import Settings
from vigil.servers import ensure_package, free_port
from vigil.telemetry import open_store

pytestmark = [pytest.mark.servers]


def test_up_runs_broker_ingest_and_simulator_and_stops_cleanly(tmp_path: Path) -> None:
    ensure_package("mosquitto", ["mosquitto", "/usr/sbin/mosquitto"])
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")},
        "VIGIL_DATA_DIR": str(tmp_path),
        "VIGIL_MQTT__PORT": str(free_port()),
        "VIGIL_INGEST__METRICS_PORT": str(free_port()),
    }
    done = subprocess.run(
        [sys.executable, "-m", "vigil.cli", "up", "--simulate", "4", "--duration", "15"],
        env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Mosquitto started" in done.stderr
    assert "4 simulated devices registered (4 new)" in done.stderr

    with sqlite3.connect(tmp_path / "vigil.db") as sql:
        devices = sql.execute("SELECT id, last_seen FROM devices").fetchall()
        dead = sql.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
    assert len(devices) == 4
    assert all(last_seen is not None for _, last_seen in devices), devices
    assert dead == 0
    with open_store(Settings(data_dir=tmp_path)) as store:
        assert set(store.devices()) == {device for device, _ in devices}
