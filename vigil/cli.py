"""The `vigil` command line.

Each command lives in the module that owns it; this file only lists them. A
command module provides ``configure(parser)`` to declare its arguments and
``run(args) -> int``. Only the chosen command's module is imported, so the
command line starts fast and one service's dependencies never load another's.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("vigil.up", "run the whole platform on this machine"),
    "doctor": ("vigil.doctor", "check that the broker, InfluxDB and SQL database are usable"),
    "db": ("vigil.db.cli", "manage the SQL database schema"),
    "ingest": ("ingest.cli", "run the MQTT-to-telemetry-store ingest service"),
    "jobs": ("analytics.jobs.cli", "run the scheduled jobs: scoring, ticket rules, watchdog"),
    "simulate": ("edge_agent.simulator.cli", "run a fleet of simulated devices"),
    "api": ("api.cli", "serve the HTTP API"),
    "users": ("vigil.users.cli", "manage users (create the first administrator)"),
    "demo-data": ("vigil.demo", "create a demo service organisation, plans and knowledge base"),
    "demo-year": ("vigil.demo_year", "replay one demo device's year of plans, tickets and "
                  "vouchers on a simulated clock"),
    "demo-fleet": ("vigil.demo_fleet", "register `vigil simulate`'s devices, a credential each"),
    "report": ("vigil.reports.cli", "the service-quality report: CSV, JSON, published HTML/PDF"),
}

# `vigil bench NAME` -> (module, one-line help)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "store": ("vigil.telemetry.bench", "telemetry store write rate and query latency"),
    "agent": ("vigil.benchmarks.agent", "edge agent memory and CPU footprint"),
    "simulator": ("vigil.benchmarks.simulator", "simulated devices one process sustains"),
    "ingest": ("ingest.bench", "ingest throughput and end-to-end latency"),
    "nab": ("analytics.bench.nab", "score the streaming detector on NAB data"),
    "cmapss": ("analytics.bench.cmapss", "failure prediction on C-MAPSS FD001"),
    "prediction": ("analytics.bench.prediction",
                   "failure prediction trained on one simulated fleet, judged on another"),
    "multivariate": ("analytics.bench.multivariate",
                     "multivariate detectors fitted on one simulated fleet, judged on another"),
    "scoring": ("analytics.jobs.bench", "streaming scoring job: device-days scored per CPU second"),
    "api": ("api.bench", "API requests per second and latency under concurrent clients"),
    "desk": ("vigil.tickets.bench", "SLA watchdog pass and quality report over a large desk"),
    "fleet": ("analytics.bench.fleet", "end to end on a simulated fleet: tickets days ahead"),
    "soak": ("analytics.bench.soak", "the whole platform under injected faults: loss, "
             "duplicate tickets, memory growth"),
}


def _configure(parser: argparse.ArgumentParser, module: str) -> None:
    mod = importlib.import_module(module)
    if mod.__doc__:
        parser.description = mod.__doc__.strip()
    mod.configure(parser)
    parser.set_defaults(_run=mod.run)


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """Lists every command, but imports only the module of the one chosen."""
    parser = argparse.ArgumentParser(prog="vigil", description="Vigil service platform")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = list(argv[:2])
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_)
        if chosen[:1] == [name]:
            _configure(p, module)
    bench = sub.add_parser("bench", help="benchmarks: print figures, end with one JSON line")
    bench_sub = bench.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for name, (module, help_) in BENCHMARKS.items():
        p = bench_sub.add_parser(name, help=help_)
        if chosen == ["bench", name]:
            _configure(p, module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
