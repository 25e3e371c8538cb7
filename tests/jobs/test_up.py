"""`vigil up` supervises `vigil jobs`: simulated telemetry flows through ingest and gets scored."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from vigil.config import Settings
from vigil.servers import ensure_package, free_port
from vigil.telemetry import open_store

pytestmark = [pytest.mark.servers, pytest.mark.slow]


def test_up_runs_the_jobs_worker_which_scores_the_simulated_fleet(tmp_path: Path) -> None:
    ensure_package("mosquitto", ["mosquitto", "/usr/sbin/mosquitto"])
    jobs_port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")},
        "VIGIL_DATA_DIR": str(tmp_path),
        "VIGIL_MQTT__PORT": str(free_port()),
        "VIGIL_INGEST__METRICS_PORT": str(free_port()),
        "VIGIL_JOBS__METRICS_PORT": str(jobs_port),
        "VIGIL_API__PORT": str(free_port()),
        "VIGIL_JOBS__INTERVALS_S": json.dumps({"scoring": 2, "ticket_rules": 2}),
        "VIGIL_JOBS__POLL_S": "1",
        # The simulated devices sample every second: 2-second steps give a step to score soon.
        "VIGIL_JOBS__SCORING__DEFAULT_STEP_S": "2",
        "VIGIL_JOBS__SCORING__SETTLE_S": "1",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "vigil.cli", "up", "--simulate", "3", "--duration", "40"],
        env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "jobs started" in done.stderr
    assert "jobs exited" not in done.stderr  # it was never restarted
    log = (tmp_path / "logs" / "jobs.log").read_text()
    assert "scoring:" in log and "Traceback" not in log, log[-3000:]
    with sqlite3.connect(tmp_path / "vigil.db") as sql:
        scored = dict(sql.execute("SELECT device_id, scored_steps FROM stream_states").fetchall())
    assert len(scored) == 3 and min(scored.values()) >= 5
    with open_store(Settings(data_dir=tmp_path)) as store:
        assert set(store.devices(measurement="scores")) == set(scored)


def test_jobs_once_runs_every_job_a_single_time_and_exits(tmp_path: Path) -> None:
    from tests.jobs.conftest import migrated

    migrated(f"sqlite:///{tmp_path / 'vigil.db'}").dispose()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")},
        "VIGIL_DATA_DIR": str(tmp_path),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    done = subprocess.run([sys.executable, "-m", "vigil.cli", "jobs", "--once",
                           "--metrics-port", "0"],
                          env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    fleet_wide = ("watchdog", "intake", "maintenance", "surveys", "retention", "ticket_rules",
                  "retrain", "failure_prediction")
    for job in fleet_wide:
        assert f"{job}: 1 units, 0 failed" in done.stderr
    with sqlite3.connect(tmp_path / "vigil.db") as sql:
        due = dict(sql.execute("SELECT job, runs FROM job_leases WHERE key = '*'").fetchall())
    assert due == dict.fromkeys(fleet_wide, 1)
