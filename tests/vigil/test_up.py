"""`vigil up` end to end: its own Mosquitto, the schema, ingest, the API and a simulated fleet.

The broker it starts refuses anonymous clients; the simulated devices log in
with the credentials they were registered with; two ingest workers, logging in
as the same service user, each keep their connection and a partition of the
fleet; a device revoked through the API is refused by the running broker; no
MQTT password is printed or logged.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import paho.mqtt.client as mqtt
import pytest

from vigil.broker import read_pairs
from vigil.config import Settings
from vigil.servers import ensure_package, free_port
from vigil.telemetry import open_store

pytestmark = [pytest.mark.servers]
DEVICES = 4


class Output:
    """What a process writes to a pipe, read as it comes (the pipe never fills up)."""

    def __init__(self, pipe: IO[str]) -> None:
        self.text = ""
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: IO[str]) -> None:
        for line in pipe:
            self.text += line

    def join(self) -> str:
        self._thread.join(30)
        return self.text


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def mqtt_answer(port: int, username: str | None, password: str | None) -> mqtt.ReasonCode:
    """The broker's answer to a connection as ``username`` (None: anonymous)."""
    answer: list[mqtt.ReasonCode] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{time.monotonic()}",
                         protocol=mqtt.MQTTv5)
    if username is not None:
        client.username_pw_set(username, password)
    client.on_connect = lambda _c, _u, _f, reason, _p: answer.append(reason)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        wait_until(lambda: bool(answer), 10, "the broker's answer")
    finally:
        client.disconnect()
        client.loop_stop()
    return answer[0]


def api_call(url: str, method: str = "GET", body: object = None,
             token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method,
                                     data=json.dumps(body).encode() if body is not None else None)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read()


def test_up_runs_broker_ingest_and_simulator_and_stops_cleanly(tmp_path: Path) -> None:
    ensure_package("mosquitto", ["mosquitto", "/usr/sbin/mosquitto"])
    mqtt_port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")},
        "VIGIL_DATA_DIR": str(tmp_path),
        "VIGIL_MQTT__PORT": str(mqtt_port),
        "VIGIL_INGEST__METRICS_PORT": str(free_port()),
        "VIGIL_API__PORT": str(api_port := free_port()),
    }
    api = f"http://127.0.0.1:{api_port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "vigil.cli", "up", "--simulate", str(DEVICES),
         "--backfill-days", "0.5", "--duration", "240", "--ingest-workers", "2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    assert process.stdout is not None and process.stderr is not None
    stdout, stderr = Output(process.stdout), Output(process.stderr)
    database = tmp_path / "vigil.db"

    def api_answers() -> bool:
        assert process.poll() is None, stderr.text[-3000:]
        with contextlib.suppress(OSError):
            return api_call(f"{api}/healthz")[0] == 200
        return False

    def devices_seen() -> list[tuple[str, str | None]]:
        with contextlib.closing(sqlite3.connect(database, timeout=10)) as sql:
            return sql.execute("SELECT id, last_seen FROM devices").fetchall()

    def history_arrived() -> bool:
        with open_store(Settings(data_dir=tmp_path)) as store:
            return len(set(store.devices())) == DEVICES

    try:
        wait_until(api_answers, 90, "vigil api under vigil up")
        _, page = api_call(f"{api}/console/sign-in")
        assert b"Sign in to Vigil" in page
        wait_until(lambda: "shown only this once:\n" in stdout.text, 10, "the admin's password")
        admin_password = stdout.text.split("shown only this once:\n", 1)[1].split()[0]

        # Anonymous clients are refused; each simulated device has a credential of its own.
        assert mqtt_answer(mqtt_port, None, None).is_failure
        device_passwords = read_pairs(tmp_path / "secrets" / "simulator-credentials")
        assert len(device_passwords) == DEVICES
        assert len(set(device_passwords.values())) == DEVICES
        # With them the simulated fleet reaches ingest through the broker.
        wait_until(lambda: len(devices_seen()) == DEVICES and all(
            seen for _, seen in devices_seen()), 90, "every simulated device seen by ingest")
        wait_until(history_arrived, 60, "every device's readings stored")

        # A device revoked through the API is refused by the running broker.
        revoked = sorted(device_passwords)[0]
        _, body = api_call(f"{api}/api/v1/auth/token", "POST",
                           {"username": "admin", "password": admin_password})
        token = json.loads(body)["access_token"]
        status, _ = api_call(f"{api}/api/v1/devices/{revoked}/credential", "DELETE", token=token)
        assert status == 204
        wait_until(lambda: mqtt_answer(mqtt_port, revoked, device_passwords[revoked]).is_failure,
                   15, "the broker to refuse the revoked device")
        other = sorted(device_passwords)[1]
        assert mqtt_answer(mqtt_port, other, device_passwords[other] + "x").is_failure
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(120)
    out, err = stdout.join(), stderr.join()
    assert returncode == 0, err[-3000:]
    assert f"Console: http://127.0.0.1:{api_port}/console/" in out
    # The first administrator's password is printed once, and stored only as a hash.
    assert "First administrator 'admin' created" in out
    with sqlite3.connect(database) as sql:
        stored = sql.execute("SELECT password_hash FROM users WHERE username = 'admin'").fetchone()
    assert stored is not None and stored[0].startswith("$argon2id$")
    assert admin_password not in stored[0]
    assert "Mosquitto started" in err
    # Each worker connected once for the whole run: neither took over the other's session.
    for worker in ("ingest-1", "ingest-2"):
        log = (tmp_path / "logs" / f"{worker}.log").read_text()
        assert log.count('"msg": "connected to broker"') == 1, log[-3000:]
    assert f"{DEVICES} simulated devices registered ({DEVICES} new)" in err
    # No MQTT password is printed or logged.
    written = out + err + "".join(path.read_text() for path in tmp_path.glob("*/*.log"))
    service_passwords = read_pairs(tmp_path / "secrets" / "mqtt-services")
    assert set(service_passwords) == {"vigil-ingest", "vigil-api"}
    for secret in (*service_passwords.values(), *device_passwords.values()):
        assert secret not in written

    devices = devices_seen()
    with sqlite3.connect(database) as sql:
        dead = sql.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
    assert len(devices) == DEVICES
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
