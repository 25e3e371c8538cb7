"""Run the platform on this machine: broker, schema, ingest, API, and optionally a demo fleet.

With the default (embedded) settings nothing needs configuring: the SQL schema
is brought to the newest revision (and, on an empty database, the first
administrator is created and its password printed once), a Mosquitto broker is
started on the configured loopback port if none answers there, requiring
credentials and applying the device ACL as in production (``vigil/broker.py``),
and `vigil ingest`, `vigil jobs` and `vigil api` run under supervision
(restarted with backoff if they die). `--simulate N` registers N virtual
devices as an administrator would, each with a credential of its own, and runs
`vigil simulate` with those credentials against the same broker, so telemetry
flows end to end. Ctrl-C or SIGTERM stops everything in order.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from vigil.config import Settings, get_settings
from vigil.logs import configure_logging
from vigil.net import is_loopback_host, redact_url

if TYPE_CHECKING:
    from vigil.servers import Mosquitto

log = logging.getLogger(__name__)

SIMULATOR_SEED = 1
SIMULATOR_FAULT_FRACTION = 0.2
# Who registers the simulated devices, in the audit log.
UP_ACTOR = "vigil-up"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--simulate", type=int, default=0, metavar="N",
                        help="also run N simulated devices (registered on start)")
    parser.add_argument("--backfill-days", type=float, default=0.0,
                        help="with --simulate: publish this many days of history first")
    parser.add_argument("--duration", type=float, default=0.0,
                        help="stop after this many seconds (0: until interrupted)")
    parser.add_argument("--ingest-workers", type=int, default=1, metavar="N",
                        help="ingest processes, each keeping a partition of the devices "
                             "(HTTP endpoints on ingest.metrics_port and the ports after it)")


@dataclass
class Supervised:
    """A child process restarted with growing backoff when it exits on its own."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    backoff_s: float = 1.0
    # Started only once this says so: the simulator waits for ingest's subscription, or
    # a backfill published before it would be acknowledged by the broker and dropped.
    requires: Callable[[], bool] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(self.argv, env=self.env, stdout=log_file,
                                            stderr=subprocess.STDOUT)
        log.info("%s started (pid %d), log in %s", self.name, self.process.pid, self.log_path)

    def poll(self, now: float) -> None:
        """Restart the child if it died; the backoff doubles up to a minute."""
        if self.process is None:
            if now >= self.next_start:
                if self.requires is not None and not self.requires():
                    self.next_start = now + 1.0
                    return
                self.start()
            return
        code = self.process.poll()
        if code is None:
            return
        self.process = None
        self.restarts += 1
        log.error("%s exited with code %d; restarting in %.0f s (see %s)",
                  self.name, code, self.backoff_s, self.log_path)
        self.next_start = now + self.backoff_s
        self.backoff_s = min(self.backoff_s * 2, 60.0)

    def stop(self, timeout: float) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s; killing it", self.name, timeout)
                self.process.kill()
                self.process.wait()


def vigil_command(*args: str) -> list[str]:
    """A `vigil` command run by this interpreter, whatever is on PATH."""
    return [sys.executable, "-m", "vigil.cli", *args]


def ensure_broker(settings: Settings, service_port: int) -> Mosquitto | None:
    """Start Mosquitto on the configured port if the broker is local and not yet running.

    The broker refuses anonymous clients and applies the device ACL; its files
    must be in place (``vigil.broker.prepare``). The platform's services connect
    to its second listener, on loopback ``service_port``. Returns the started
    server (to stop on exit) or None when a broker already answers.
    """
    from vigil.broker import MOSQUITTO_HEAD, broker_dir, local_broker_files, mosquitto_config
    from vigil.servers import Mosquitto, ServerUnavailable, port_open

    host, port = settings.mqtt.host, settings.mqtt.port
    if port_open(port, host):
        log.warning("MQTT broker already answering at %s:%d; it is not started by vigil up, "
                    "so its own users and ACL apply", host, port)
        return None
    if not is_loopback_host(host):
        raise SystemExit(f"the MQTT broker at {host}:{port} does not answer; start it, or unset "
                         "VIGIL_MQTT__HOST so `vigil up` runs one on this machine")
    broker = Mosquitto(broker_dir(settings), port=port, host=host, allow_anonymous=False,
                       head_config=MOSQUITTO_HEAD,
                       extra_config=mosquitto_config(local_broker_files(settings), service_port))
    try:
        broker.start()
    except ServerUnavailable as exc:
        raise SystemExit(f"could not start Mosquitto: {exc}") from exc
    log.info("Mosquitto started on %s:%d, persistence in %s", broker.host, port, broker.workdir)
    return broker


def upgrade_schema(settings: Settings) -> None:
    from vigil.db.migrations import upgrade
    from vigil.db.session import make_engine

    engine = make_engine(settings.sql_url)
    try:
        revision = upgrade(engine)
    finally:
        engine.dispose()
    log.info("SQL database %s at schema revision %s", redact_url(settings.sql_url), revision)


def ensure_first_admin(settings: Settings) -> None:
    """On an empty database, create the first administrator and print its password once."""
    from vigil.db.session import make_engine, make_session_factory, transaction
    from vigil.users.service import create_first_admin

    engine = make_engine(settings.sql_url)
    try:
        with transaction(make_session_factory(engine)) as session:
            created = create_first_admin(session)
    finally:
        engine.dispose()
    if created is not None:
        user, password = created
        # Printed, never logged: this is the only place the password appears.
        print(f"First administrator {user.username!r} created; its password, shown only "
              f"this once:\n{password}", flush=True)


def prepare_broker(settings: Settings) -> dict[str, str]:
    """The broker's password and ACL files from the registry; the services' MQTT passwords."""
    from vigil.broker import prepare
    from vigil.db.session import make_engine, make_session_factory

    engine = make_engine(settings.sql_url)
    try:
        return prepare(settings, make_session_factory(engine))
    finally:
        engine.dispose()


def register_fleet(settings: Settings, device_ids: Sequence[tuple[str, str]],
                   credentials_file: Path) -> int:
    """Register the simulated devices missing from the registry, as an administrator would.

    Each new device, and each known one the simulator holds no password for, is
    issued a credential, kept in ``credentials_file`` (only its owner may read
    it) for the simulator. A device whose credential an administrator revoked
    or rotated keeps that state: the simulator's old password is refused.
    Returns how many devices were added.
    """
    from datetime import UTC, datetime

    from vigil.broker import read_pairs, write_pairs
    from vigil.db.session import make_engine, make_session_factory, transaction
    from vigil.devices import registry
    from vigil.devices.credentials import issue_credential
    from vigil.devices.models import Device

    passwords = read_pairs(credentials_file)
    now = datetime.now(UTC)
    added = 0
    engine = make_engine(settings.sql_url)
    try:
        with transaction(make_session_factory(engine)) as session:
            for device_id, model in device_ids:
                if session.get(Device, device_id) is None:
                    registry.create_device(
                        session, device_id=device_id, actor=UP_ACTOR, now=now,
                        fields={"serial": f"SIM-{device_id}", "model": model})
                    added += 1
                elif device_id in passwords:
                    continue
                passwords[device_id] = issue_credential(session, device_id=device_id,
                                                        actor=UP_ACTOR, now=now)
    finally:
        engine.dispose()
    write_pairs(credentials_file, passwords)
    return added


def simulated_devices(count: int) -> list[tuple[str, str]]:
    """The ids and models `vigil simulate --devices COUNT` will use (same seed, same fleet)."""
    from edge_agent.simulator.scenario import plan_fleet

    now_ms = int(time.time() * 1000)
    specs = plan_fleet(count, seed=SIMULATOR_SEED, start_ms=now_ms - 1, end_ms=now_ms,
                       fault_fraction=SIMULATOR_FAULT_FRACTION)
    return [(spec.device_id, spec.model) for spec in specs]


def run(args: argparse.Namespace) -> int:
    from vigil.broker import secrets_dir, service_env
    from vigil.devices.credentials import API_USER, INGEST_USER

    settings = get_settings()
    configure_logging(settings.log_level)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    logs = settings.data_dir / "logs"
    upgrade_schema(settings)
    ensure_first_admin(settings)
    credentials_file = secrets_dir(settings) / "simulator-credentials"
    if args.simulate > 0:
        added = register_fleet(settings, simulated_devices(args.simulate), credentials_file)
        log.info("%d simulated devices registered (%d new)", args.simulate, added)
    from vigil.servers import free_port

    if args.ingest_workers < 1:
        raise SystemExit("--ingest-workers must be at least 1")
    passwords = prepare_broker(settings)
    service_port = free_port()
    broker = ensure_broker(settings, service_port)
    children: list[Supervised] = []
    try:
        env = dict(os.environ)

        def as_user(user: str) -> dict[str, str]:
            """The services log in with their own credentials on the broker started here."""
            if broker is None:
                return env
            return env | service_env(settings, user, passwords[user], service_port)

        workers = args.ingest_workers
        for partition in range(workers):
            name = "ingest" if workers == 1 else f"ingest-{partition + 1}"
            children.append(Supervised(
                name, vigil_command("ingest"),
                as_user(INGEST_USER) | ingest_partition_env(settings, partition, workers),
                logs / f"{name}.log"))
        children.append(Supervised("jobs", vigil_command("jobs"), env, logs / "jobs.log"))
        children.append(Supervised("api", vigil_command("api"), as_user(API_USER),
                                   logs / "api.log"))
        print(f"Console: http://{settings.api.host}:{settings.api.port}/console/", flush=True)
        if args.simulate > 0:
            children.append(Supervised(
                "simulator",
                vigil_command(
                    "simulate", "--devices", str(args.simulate), "--seed", str(SIMULATOR_SEED),
                    "--fault-fraction", str(SIMULATOR_FAULT_FRACTION),
                    "--broker", f"{settings.mqtt.host}:{settings.mqtt.port}",
                    "--credentials", str(credentials_file),
                    "--outbox", str(settings.data_dir / "simulator-outbox.db"),
                    "--labels", str(settings.data_dir / "simulator-labels.csv"),
                    "--backfill-days", str(args.backfill_days)),
                env, logs / "simulator.log",
                requires=partial(ingest_ready, settings, workers)))
        return _supervise(children, args.duration)
    finally:
        for child in reversed(children):
            child.stop(65.0)
        if broker is not None:
            broker.stop()
            log.info("Mosquitto stopped")


def ingest_partition_env(settings: Settings, partition: int, workers: int) -> dict[str, str]:
    """Worker ``partition`` of ``workers``: its share of the devices and its HTTP port."""
    if workers == 1:
        return {}
    return {"VIGIL_INGEST__PARTITIONS": str(workers),
            "VIGIL_INGEST__PARTITION": str(partition),
            "VIGIL_INGEST__METRICS_PORT": str(settings.ingest.metrics_port + partition)}


def ingest_ready(settings: Settings, workers: int = 1) -> bool:
    """Whether every ingest worker answers ready: connected, subscribed, its stores usable."""
    for partition in range(workers):
        port = settings.ingest.metrics_port + partition
        try:
            with urllib.request.urlopen(f"http://{settings.ingest.metrics_host}:{port}/readyz",
                                        timeout=2) as response:
                if response.status != 200:
                    return False
        except OSError:
            return False
    return True


def _supervise(children: list[Supervised], duration: float) -> int:
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping (%s)", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    deadline = time.monotonic() + duration if duration > 0 else float("inf")
    log.info("Vigil is up; Ctrl-C stops it")
    while not stop.wait(0.5) and time.monotonic() < deadline:
        now = time.monotonic()
        for child in children:
            child.poll(now)
    return 0
