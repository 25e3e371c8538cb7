"""`vigil up` end to end: its own Mosquitto, the schema, ingest, the API and a simulated fleet."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
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
        "VIGIL_API__PORT": str(api_port := free_port()),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "vigil.cli", "up", "--simulate", "4", "--backfill-days", "0.5",
         "--duration", "15"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    api_answered = False
    deadline = time.monotonic() + 60
    while not api_answered and time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/healthz", timeout=1) as r:
                api_answered = r.status == 200
        time.sleep(0.3)
    console_answered = False
    if api_answered:
        with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/console/sign-in",
                                    timeout=5) as r:
            console_answered = r.status == 200 and b"Sign in to Vigil" in r.read()
    stdout, stderr = process.communicate(timeout=180)
    done = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    assert done.returncode == 0, done.stderr[-3000:]
    assert api_answered, "vigil api never answered under vigil up"
    assert console_answered and f"Console: http://127.0.0.1:{api_port}/console/" in done.stdout
    # The first administrator's password is printed once, and stored only as a hash.
    assert "First administrator 'admin' created" in done.stdout
    password = done.stdout.split("shown only this once:\n", 1)[1].split()[0]
    with sqlite3.connect(tmp_path / "vigil.db") as sql:
        stored = sql.execute("SELECT password_hash FROM users WHERE username = 'admin'").fetchone()
    assert stored is not None and stored[0].startswith("$argon2id$") and password not in stored[0]
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
        # The half-day backfill arrived: the simulator waited for ingest's subscription, so
        # the broker had a subscriber to hand the history to (a first start has no session).
        now = datetime.now(UTC)
        for device, _ in devices:
            history = store.query(device, now - timedelta(days=1), now - timedelta(hours=1))
            assert len(history) > 0, device
            assert history.index.min() < now - timedelta(hours=11), device
