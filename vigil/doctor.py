"""Check that the configured broker, telemetry store and SQL database are reachable and usable.

Prints one line per check in plain words, with what to do when it fails, and
exits with 1 if any check failed. Secrets never appear in the output.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from vigil.config import Settings, get_settings
from vigil.net import mqtt_client, redact_url


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    hint: str = ""


def check_broker(settings: Settings, timeout: float = 5.0) -> Check:
    """Connect with MQTT 5 and wait for the broker's CONNACK."""
    import paho.mqtt.client as mqtt

    where = f"{settings.mqtt.host}:{settings.mqtt.port}"
    name = "MQTT broker"
    # The same client set-up as ingest's, so the answer holds for the service.
    client = mqtt_client(settings.mqtt, f"vigil-doctor-{time.time_ns()}")
    answered = threading.Event()
    outcome: dict[str, object] = {}

    def on_connect(
        _c: mqtt.Client, _u: object, _f: object, reason: mqtt.ReasonCode, _p: object
    ) -> None:
        outcome["reason"] = reason
        answered.set()

    client.on_connect = on_connect
    try:
        client.connect(settings.mqtt.host, settings.mqtt.port, keepalive=10)
    except OSError as exc:
        return Check(name, False, f"cannot reach {where}: {exc.strerror or exc}",
                     "start the broker (`vigil up` starts Mosquitto) or set VIGIL_MQTT__HOST/PORT")
    client.loop_start()
    try:
        if not answered.wait(timeout):
            return Check(name, False, f"{where} accepted the connection but did not answer MQTT "
                         f"within {timeout:.0f} s", "is this port really an MQTT broker?")
        reason = outcome["reason"]
        if getattr(reason, "is_failure", False) and _up_broker_refused_anonymous(settings):
            return Check(name, True, f"{where} answers and refuses anonymous clients, as the "
                         "broker `vigil up` starts does: its services log in with their own "
                         "passwords")
        if getattr(reason, "is_failure", False):
            return Check(name, False, f"{where} refused the connection: {reason}",
                         "check VIGIL_MQTT__USERNAME / VIGIL_MQTT__PASSWORD and the broker's ACL")
        return Check(name, True, f"{where} accepts MQTT 5 connections")
    finally:
        client.disconnect()
        client.loop_stop()


def _up_broker_refused_anonymous(settings: Settings) -> bool:
    """Whether an anonymous check met the broker `vigil up` secures (its secrets are here)."""
    from vigil.broker import service_passwords_file

    return settings.mqtt.username is None and service_passwords_file(settings).is_file()


def check_telemetry(settings: Settings) -> Check:
    from vigil.telemetry import open_store
    from vigil.telemetry.store import StoreUnavailable

    if settings.telemetry_store == "influxdb":
        name, where = "InfluxDB", f"{settings.influxdb.url} database {settings.influxdb.database!r}"
        hint = ("check VIGIL_INFLUXDB__URL, __DATABASE and the credentials "
                "(__TOKEN or __USERNAME/__PASSWORD)")
    else:
        name, where = "embedded telemetry store", str(settings.embedded_telemetry_path)
        hint = "check that VIGIL_DATA_DIR is writable"
    try:
        with open_store(settings) as store:
            store.ping()
            devices = len(store.devices())
    except (StoreUnavailable, OSError, ValueError) as exc:
        return Check(name, False, f"{where}: {exc}", hint)
    return Check(name, True, f"{where} reads and writes ({devices} devices with telemetry)")


def check_sql(settings: Settings) -> Check:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    from vigil.db.migrations import head_revision
    from vigil.db.session import make_engine

    url = redact_url(settings.sql_url)
    name = "SQL database"
    try:
        engine = make_engine(settings.sql_url)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            current = MigrationContext.configure(conn).get_current_revision()
        engine.dispose()
    except (SQLAlchemyError, OSError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return Check(name, False, f"{url}: {reason}",
                     "check VIGIL_DATABASE_URL and that the server runs")
    head = head_revision()
    if current != head:
        return Check(name, False, f"{url} is reachable but its schema is at "
                     f"{current or 'nothing'}, "
                     f"this version needs {head}", "run `vigil db upgrade`")
    return Check(name, True, f"{url} is reachable, schema up to date ({head})")


CHECKS: tuple[Callable[[Settings], Check], ...] = (check_broker, check_telemetry, check_sql)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", choices=["broker", "telemetry", "sql"],
                        help="run one check only")


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    checks = CHECKS
    if args.only:
        checks = tuple(c for c in CHECKS if c.__name__ == f"check_{args.only}")
    failed = 0
    for check in checks:
        try:
            result = check(settings)
        except Exception as exc:  # a check must report, never crash the doctor
            result = Check(check.__name__.removeprefix("check_"), False,
                           f"unexpected {type(exc).__name__}: {exc}")
        mark = "ok  " if result.ok else "FAIL"
        print(f"[{mark}] {result.name}: {result.detail}")
        if not result.ok and result.hint:
            print(f"       what to do: {result.hint}")
        failed += not result.ok
    print("all checks passed" if not failed else f"{failed} of {len(checks)} checks failed")
    return 1 if failed else 0
