"""Run the scheduled jobs (streaming scoring, ticket rules, the SLA watchdog) until SIGTERM.

Settings come from the [jobs] section (see vigil.config): each job's interval,
the lease time after which a dead worker's devices are taken over, the
scoring step per device model. Several workers may run against one
PostgreSQL database and share the fleet; on SQLite run one.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from types import FrameType

log = logging.getLogger("analytics.jobs")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="port of /metrics (default: jobs.metrics_port; 0 picks a free one)")
    parser.add_argument("--once", action="store_true",
                        help="run each configured job's pass once, then exit")


def run(args: argparse.Namespace) -> int:
    from analytics.jobs.service import open_service
    from vigil.config import get_settings
    from vigil.db.session import sqlite_path

    settings = get_settings()
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # APScheduler logs every poll of every job; the passes log what they did.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    if sqlite_path(settings.sql_url) is not None:
        log.info("SQL database is SQLite: run one jobs worker")
    stop = threading.Event()
    service = open_service(settings, metrics_port=args.metrics_port, stop=stop)
    if args.once:
        failures = sum(service.worker.run(name).failures for name in service.jobs)
        return 1 if failures else 0

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("stop requested (%s)", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    service.start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        service.stop()
        service.worker.store.close()
    return 0
