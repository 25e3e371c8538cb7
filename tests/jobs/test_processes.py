"""Two `vigil jobs` processes on PostgreSQL share a fleet; one is killed; all is scored once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.jobs.conftest import add_fleet, migrated, readings
from vigil.db.session import make_session_factory
from vigil.scoring.models import JobLease, StreamState
from vigil.telemetry.embedded import EmbeddedStore

pytestmark = [pytest.mark.servers, pytest.mark.slow]

DEVICES = 10
DAYS = 45
STEP_MS = 300_000


def start_worker(name: str, env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    env = {**env, "VIGIL_JOBS__WORKER_ID": name}
    with (logs / f"{name}.log").open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "vigil.cli", "jobs"], env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def test_a_killed_workers_devices_are_taken_over_and_scored_once(
    pg_url: str, tmp_path: Path
) -> None:
    engine = migrated(pg_url)
    factory = make_session_factory(engine)
    devices = add_fleet(factory, DEVICES)
    end_ms = (int(time.time() * 1000) - 3_600_000) // STEP_MS * STEP_MS
    end = datetime.fromtimestamp(end_ms / 1000, UTC)
    with EmbeddedStore(tmp_path / "telemetry.db") as store:
        for device in devices:
            store.write(readings(device, end - timedelta(days=DAYS), end,
                                 every=timedelta(minutes=5)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env.update({
        "VIGIL_DATABASE_URL": pg_url, "VIGIL_DATA_DIR": str(tmp_path),
        "VIGIL_TELEMETRY_STORE": "embedded", "VIGIL_JOBS__INTERVALS_S": json.dumps({"scoring": 1}),
        "VIGIL_JOBS__POLL_S": "0.5", "VIGIL_JOBS__LEASE_TTL_S": "3", "VIGIL_JOBS__CLAIM_BATCH": "2",
        "VIGIL_JOBS__METRICS_PORT": "0", "VIGIL_JOBS__SCORING__MAX_STEPS_PER_PASS": "300",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    })
    victim = start_worker("w1", env, tmp_path)
    survivor = start_worker("w2", env, tmp_path)
    try:
        held: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not held:
            with factory() as session:
                mine = (JobLease.owner == "w1") & (JobLease.job == "scoring")
                if session.scalar(select(JobLease.runs).where(mine).limit(1)) is not None:
                    held = list(session.scalars(select(JobLease.key).where(mine)))
            time.sleep(0.02)
        assert held, "w1 never held a device"
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        killed_at = datetime.now(UTC)

        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            with factory() as session:
                marks = dict(session.execute(
                    select(StreamState.device_id, StreamState.watermark_ms)).all())
                # A device whose last chunk reached the end is due once more at once, to find
                # nothing left: its lease is free only after that claim is released.
                busy = session.scalar(select(func.count()).select_from(JobLease).where(
                    JobLease.job == "scoring", JobLease.key.in_(held),
                    JobLease.owner.is_not(None)))
            if len(marks) == DEVICES and set(marks.values()) == {end_ms} and not busy:
                break
            assert survivor.poll() is None, "the surviving worker died"
            time.sleep(0.5)
        with factory() as session:
            states = session.scalars(select(StreamState)).all()
            rows = {r.key: r for r in session.scalars(
                select(JobLease).where(JobLease.job == "scoring"))}
        assert {s.watermark_ms for s in states} == {end_ms}
        # Each device's steps were scored exactly once, whoever scored which chunk.
        assert {s.scored_steps for s in states} == {DAYS * 288}
        for key in held:  # what w1 held when it died was finished by w2 after the lease expired
            assert rows[key].owner is None and rows[key].last_done_at > killed_at
        with EmbeddedStore(tmp_path / "telemetry.db") as store:
            for device in devices:
                scores = store.query(device, end - timedelta(days=DAYS + 1), end,
                                     measurement="scores")
                assert len(scores) == DAYS * 288
    finally:
        for process in (victim, survivor):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        assert survivor.wait(60) == 0
        engine.dispose()
