"""Run the ingest service: MQTT telemetry, status and events into the stores, until SIGTERM.

Settings come from VIGIL_* variables and the TOML file (see vigil.config); the
[ingest] section holds the session, batching and limits. On SIGTERM or Ctrl-C
ingest writes and acknowledges what it received, then disconnects; messages
still at the broker wait there for the next start.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from types import FrameType

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="port of the /metrics, /healthz and /readyz endpoint "
        "(default: ingest.metrics_port; 0 picks a free one)",
    )
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=60.0,
        help="seconds allowed to flush on stop before giving up (default 60)",
    )


def run(args: argparse.Namespace) -> int:
    from ingest.service import open_service
    from vigil.config import get_settings
    from vigil.logs import configure_logging
    from vigil.memory import MemoryRelease

    memory = MemoryRelease.here()  # one malloc arena: before the client's and our threads
    settings = get_settings()
    configure_logging(settings.log_level)
    log.info("telemetry store: %s", settings.telemetry_store)
    service = open_service(settings, metrics_port=args.metrics_port, memory=memory)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("stop requested", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    service.start()
    while not stop.wait(1.0):
        if not service.alive:
            log.error("a worker thread died; stopping so a supervisor restarts ingest")
            service.stop(args.stop_timeout)
            return 1
    clean = service.stop(args.stop_timeout)
    return 0 if clean else 1
