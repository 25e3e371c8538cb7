"""Run a fleet of simulated devices against an MQTT broker.

Live mode samples every device at its interval for --duration seconds (until
interrupted by default). With --backfill-days the fleet first publishes that
much history, with historical timestamps, as fast as the broker takes it. The
ground truth of injected faults goes to --labels (one CSV row per fault) and,
with everything else planned (site episodes, glitches, maintenance, benign
changes), to --truth as JSON. --faults picks the kind: ``realistic`` (faults
hidden in noise and relations, a share of sudden failures, repairs) or
``easy`` (the original faults, the same readings as before for a seed).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
import time
from pathlib import Path

from edge_agent.simulator.physics import MODELS
from edge_agent.simulator.scenario import (
    FAULT_KINDS,
    plan_scenario,
    write_ground_truth,
    write_labels,
)
from edge_agent.transport import BrokerSettings

DAY_MS = 86_400_000


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=int, default=20, help="number of virtual devices")
    parser.add_argument("--seed", type=int, default=1, help="same seed, same fleet and readings")
    parser.add_argument("--broker", default="127.0.0.1:1883", help="HOST:PORT of the MQTT broker")
    parser.add_argument("--password", default="", help="MQTT password shared by the devices")
    parser.add_argument("--credentials", default="",
                        help="file of DEVICE_ID:PASSWORD lines: each device's own MQTT password "
                             "(devices not in it use --password)")
    parser.add_argument("--ca-file", default="", help="CA certificate for TLS")
    parser.add_argument("--outbox", default="vigil-simulator-outbox.db",
                        help="outbox database shared by the virtual devices")
    parser.add_argument("--labels", default="vigil-simulator-labels.csv",
                        help="CSV file for the ground truth of injected faults")
    parser.add_argument("--truth", default="",
                        help="JSON file for the whole ground truth (default: --labels with "
                             "the suffix .json)")
    parser.add_argument("--faults", choices=FAULT_KINDS, default="realistic",
                        help="kind of faults: realistic, or easy (the original ones)")
    parser.add_argument("--sudden-share", type=float, default=0.2,
                        help="with realistic faults: share of failures with no precursor")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    parser.add_argument("--duration", type=float, default=0.0,
                        help="seconds of live running (0: until interrupted)")
    parser.add_argument("--backfill-days", type=float, default=0.0,
                        help="publish this many days of history before going live")
    parser.add_argument("--backfill-step", type=float, default=300.0,
                        help="seconds between historical samples")
    parser.add_argument("--plan-days", type=float, default=30.0,
                        help="days the plan reaches past now; faults develop and fail within "
                             "the history, the day before it and these days")
    parser.add_argument("--fault-fraction", type=float, default=0.2,
                        help="share of devices that degrade towards a failure")
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"comma-separated models to include (of {', '.join(MODELS)})")
    parser.add_argument("--prefix", default="", help="prefix for device ids")
    parser.add_argument("--live-only", action="store_true",
                        help="with --backfill-days: skip the live phase")
    parser.add_argument("--drain", type=float, default=0.0, metavar="SECONDS",
                        help="on stopping, keep publishing until the outbox is empty, at most "
                             "this long (what was measured then reaches the platform)")


def read_credentials(path: Path) -> dict[str, str]:
    """Each device's password from ``DEVICE_ID:PASSWORD`` lines (a device id has no colon)."""
    pairs = (line.split(":", 1) for line in path.read_text().splitlines() if ":" in line)
    return {device_id: password for device_id, password in pairs}


def _stop_on_signals() -> threading.Event:
    """An event SIGINT or SIGTERM sets, so the live run ends and the drain still publishes.

    Set explicitly rather than relying on Python's KeyboardInterrupt: a process
    started in the background by a non-interactive shell inherits SIGINT ignored,
    and then Python installs no handler of its own (the soak bench's simulator
    ran on through its SIGINT that way and was killed with its outbox full). A
    second signal interrupts the drain as usual.
    """
    stop = threading.Event()

    def request(signum: int, _frame: object) -> None:
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)

    signal.signal(signal.SIGINT, request)
    signal.signal(signal.SIGTERM, request)
    return stop


def run(args: argparse.Namespace) -> int:
    from edge_agent.simulator.fleet import Fleet

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    host, _, port = args.broker.rpartition(":")
    now_ms = int(time.time() * 1000)
    history_ms = int(args.backfill_days * DAY_MS)
    # The plan spans the history and --plan-days ahead, so live runs see faults develop too.
    scenario = plan_scenario(args.devices, seed=args.seed,
                             start_ms=now_ms - history_ms - DAY_MS,
                             end_ms=now_ms + int(args.plan_days * DAY_MS),
                             fault_fraction=args.fault_fraction,
                             models=[m for m in args.models.split(",") if m], prefix=args.prefix,
                             faults=args.faults, sudden_share=args.sudden_share)
    specs = scenario.specs
    n_labels = write_labels(args.labels, specs)
    truth_path = args.truth or str(Path(args.labels).with_suffix(".json"))
    truth = write_ground_truth(truth_path, scenario)
    print(f"{len(specs)} devices, {n_labels} injected {args.faults} faults -> {args.labels}; "
          f"{len(truth['site_episodes'])} site episodes, {len(truth['glitches'])} glitches, "
          f"{len(truth['maintenance'])} maintenance windows -> {truth_path}")
    broker = BrokerSettings(host=host or "127.0.0.1", port=int(port or 1883),
                            password=args.password, ca_file=args.ca_file)
    fleet = Fleet(specs, seed=args.seed, broker=broker, outbox_path=Path(args.outbox),
                  interval_s=args.interval,
                  passwords=read_credentials(Path(args.credentials)) if args.credentials else None)
    try:
        fleet.connect()
        if not fleet.wait_connected(120):
            print(f"only {fleet.connected()} of {len(specs)} devices connected; continuing")
        if history_ms:
            t0 = time.monotonic()
            n = fleet.backfill(now_ms - history_ms, now_ms, args.backfill_step)
            fleet.drain()
            wall = time.monotonic() - t0
            print(f"backfill: {n} samples in {wall:.1f} s ({n / wall:,.0f} samples/s)")
        if not (history_ms and args.live_only):
            stop = _stop_on_signals()
            fleet.run(args.duration or float("inf"), should_stop=stop.is_set)
    except KeyboardInterrupt:
        pass
    finally:
        if args.drain > 0:
            try:
                fleet.drain(args.drain)
            except KeyboardInterrupt:
                pass
        stats = {"samples_queued": fleet.samples_queued, "events_queued": fleet.events_queued,
                 "messages_sent": fleet.courier.sent, "messages_acked": fleet.courier.acked,
                 "outbox_depth": fleet.outbox.total_depth(),
                 "outbox_dropped": sum(fleet.outbox.dropped(d) for d in fleet.devices)}
        fleet.close()
        print(json.dumps(stats))
    return 0
