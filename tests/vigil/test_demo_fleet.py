"""`vigil demo-fleet`: the simulated fleet registered with a credential per device, which it uses.

Against a real Mosquitto configured as a deployment's (password and ACL files
the command rewrites, the broker reloaded through its pid file): the devices
`vigil simulate` runs log in with the printed credentials and publish until
their outbox is empty, and one device's password does not open another's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import start_or_skip
from tests.mqtt_peer import Peer, connect_eventually
from vigil.broker import read_pairs
from vigil.servers import Mosquitto

pytestmark = [pytest.mark.servers]
DEVICES = 3


def vigil(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vigil.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=180, check=False)


def test_the_demo_fleet_logs_in_with_a_credential_per_device(tmp_path: Path) -> None:
    files = tmp_path / "broker"
    files.mkdir()
    for name in ("passwd", "acl"):
        (files / name).write_text("")
    broker = Mosquitto(tmp_path / "mosquitto", allow_anonymous=False, extra_config=[
        f"password_file {files / 'passwd'}", f"acl_file {files / 'acl'}",
        f"pid_file {files / 'mosquitto.pid'}", "use_username_as_clientid true"])
    start_or_skip(broker)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")} | {
            "VIGIL_DATA_DIR": str(tmp_path / "data"),
            "VIGIL_MQTT__PASSWORD_FILE": str(files / "passwd"),
            "VIGIL_MQTT__ACL_FILE": str(files / "acl"),
            "VIGIL_MQTT__PID_FILE": str(files / "mosquitto.pid"),
        }
        done = vigil(["demo-fleet", "--devices", str(DEVICES)], env, tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        credentials = tmp_path / "simulator-credentials"
        credentials.write_text(done.stdout)
        passwords = read_pairs(credentials)
        assert len(passwords) == DEVICES and len(set(passwords.values())) == DEVICES
        assert f"{DEVICES} simulated devices registered ({DEVICES} new)" in done.stderr
        for secret in passwords.values():
            assert secret not in (files / "passwd").read_text()

        first, second = sorted(passwords)[:2]
        connect_eventually(broker, first, passwords[first]).close()
        borrowed = Peer(broker, first, passwords[second])
        assert not borrowed.wait_connected(), "one device's password opened another's account"
        borrowed.close()

        simulated = vigil(["simulate", "--devices", str(DEVICES),
                           "--broker", f"{broker.host}:{broker.port}",
                           "--credentials", str(credentials),
                           "--outbox", str(tmp_path / "outbox.db"),
                           "--labels", str(tmp_path / "labels.csv"),
                           "--duration", "4", "--drain", "30"], env, tmp_path)
        assert simulated.returncode == 0, simulated.stdout[-2000:]
        stats = json.loads(next(line for line in reversed(simulated.stdout.splitlines())
                                if line.startswith("{")))
        assert stats["samples_queued"] > 0
        assert stats["outbox_depth"] == 0, "the broker refused the devices' publications"
    finally:
        broker.stop()
