"""Register the simulated fleet of `vigil simulate`, each device with an MQTT credential of its own.

The broker's ACL lets a device publish only under its own id, with its own
password: a fleet sharing one password cannot log in. This registers the
devices `vigil simulate --devices N` runs (the same seed gives the same ids and
models), as an administrator would, issues each a credential, and writes
``DEVICE_ID:PASSWORD`` lines for `vigil simulate --credentials`: to
``--credentials FILE`` (only its owner may read it; devices it already holds
keep their password), or to standard output, every device then getting a new
one. Where the settings name the broker's files (``VIGIL_MQTT__PASSWORD_FILE``,
``__ACL_FILE``, ``__PID_FILE``, as the API's do), they are rewritten and the
broker reloads them, as after a registration in the console.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=int, required=True, metavar="N",
                        help="the fleet of `vigil simulate --devices N` (its default seed)")
    parser.add_argument("--credentials", default="", metavar="FILE",
                        help="write the credentials here (default: standard output)")


def run(args: argparse.Namespace) -> int:
    from vigil.broker import configured_broker_files, read_pairs
    from vigil.config import get_settings
    from vigil.db.session import ensure_sqlite_folder, make_engine, make_session_factory
    from vigil.devices.credentials import sync_broker
    from vigil.up import register_fleet, simulated_devices, upgrade_schema

    if args.devices < 1:
        print("vigil demo-fleet: --devices must be at least 1", file=sys.stderr)
        return 2
    settings = get_settings()
    ensure_sqlite_folder(settings.sql_url)
    upgrade_schema(settings)
    devices = simulated_devices(args.devices)
    with tempfile.TemporaryDirectory() as scratch:
        target = Path(args.credentials) if args.credentials else Path(scratch) / "credentials"
        added = register_fleet(settings, devices, target)
        passwords = read_pairs(target)
    files = configured_broker_files(settings)
    if files is not None:
        engine = make_engine(settings.sql_url)
        try:
            sync_broker(make_session_factory(engine), files)
        finally:
            engine.dispose()
    if not args.credentials:
        for device_id, _model in devices:
            print(f"{device_id}:{passwords[device_id]}")
    print(f"{len(devices)} simulated devices registered ({added} new)"
          + ("; the broker's files rewritten" if files is not None else ""), file=sys.stderr)
    return 0
