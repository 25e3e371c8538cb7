"""The whole platform for a while under injected faults: nothing lost, nothing twice, no leak.

On this machine, in a temporary folder: PostgreSQL, InfluxDB and Mosquitto
(`vigil.servers`), two `vigil ingest` and two `vigil jobs` processes and
`vigil api`, supervised as `vigil up` supervises them (`vigil.up.Supervised`),
and `vigil simulate` publishing a fleet (a day of history first, then live
readings). Every round of faults (one per 15 minutes of soak, at least one;
:func:`fault_schedule`) kills an ingest, a jobs and the API process (SIGKILL,
restarted by the supervisor), restarts the broker and PostgreSQL, and takes
InfluxDB away for a minute. Then the simulator stops and publishes what its
outbox still holds, and the bench waits for ingest to store it. It reports:

- samples the simulator measured against points InfluxDB holds for its devices
  (``samples_lost``);
- tickets of one device (or site) and signature open at the same time
  (``duplicate_tickets``: the desk's rule is one open ticket per device and
  fault signature);
- the failure codes the ground truth says the devices raised, each of which
  should have a ticket (``expected_missing``);
- each long-running process's resident memory, read from /proc every few
  seconds: growth is the median of the last quarter of its samples after its
  warm-up over the median of all of them (``rss_growth_pct``, the worst process
  that lived at least half the run).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

from analytics.bench.probe import answers, ready, wait_for

DAY_MS = 86_400_000
SEED = 1
FAULT_FRACTION = 0.2
# One round of every fault per this much soak time; a shorter run still gets one round.
ROUND_S = 900.0
# No faults in the first tenth (the services and the backfill settle) nor in the last
# 30 %: the last quarter is where memory growth is read, and the last faults' effects
# (the broker's backlog after InfluxDB's minute away) are caught up there.
QUIET_HEAD = 0.1
FAULT_SPAN = 0.6
INFLUXDB_DOWN_S = 60.0
RSS_EVERY_S = 5.0
PROGRESS_EVERY_S = 30.0
# A process's memory is judged after this share of its life (at least a minute): the
# jobs' first passes load the detectors and models, ingest's dedup window fills.
WARMUP_SHARE = 0.2
WARMUP_MIN_S = 60.0
# Ticket intake runs every 10 s; a failure code raised within this margin of the
# simulator's stop may not have been sampled and is neither expected nor missing.
END_MARGIN_MS = 5_000
# A device in maintenance raises no ticket (the intake's rule); the intake handles an
# event within about this long after it arrives.
INTAKE_LAG_MS = 30_000

# fault kind -> what it hits
FAULTS: dict[str, str] = {
    "kill_ingest": "ingest-1",
    "kill_jobs": "jobs-1",
    "kill_api": "api",
    "restart_broker": "mosquitto",
    "restart_postgresql": "postgresql",
    "influxdb_down": "influxdb",
}
SERVICES = ("ingest-1", "ingest-2", "jobs-1", "jobs-2", "api")

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=int, default=1000, help="simulated devices")
    parser.add_argument("--minutes", type=float, default=30.0,
                        help="minutes of soak (live readings and faults)")
    parser.add_argument("--interval", type=float, default=1.0,
                        help="seconds between a device's live readings")
    parser.add_argument("--backfill-days", type=float, default=1.0,
                        help="days of history the devices publish first (5-minute readings)")
    parser.add_argument("--influxdb-down", type=float, default=INFLUXDB_DOWN_S,
                        help="seconds InfluxDB is away per round (shortened to a third of a "
                             "round for short runs)")
    parser.add_argument("--catch-up", type=float, default=900.0,
                        help="at most this many seconds for the platform to store everything "
                             "after the simulator stops")
    parser.add_argument("--workdir", default="", help="keep the servers' data and logs here")


# --- pure parts ------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One fault: its kind, what it hits, when (seconds into the soak), for how long."""

    at_s: float
    kind: str
    target: str
    duration_s: float = 0.0


def fault_schedule(seconds: float, *, influxdb_down_s: float = INFLUXDB_DOWN_S) -> list[Fault]:
    """Every fault once per round, evenly spaced, InfluxDB's absence last in each round.

    A round per :data:`ROUND_S` of soak (at least one), all within the middle
    :data:`FAULT_SPAN` of the run, so a 6-minute run gets each fault once and a
    30-minute run twice. InfluxDB stays away ``influxdb_down_s``, or a third of a
    round when rounds are shorter than three times that.
    """
    rounds = max(1, round(seconds / ROUND_S))
    round_s = seconds * FAULT_SPAN / rounds
    down = min(influxdb_down_s, round_s / 3)
    gap = (round_s - down) / len(FAULTS)
    out = []
    for r in range(rounds):
        start = seconds * QUIET_HEAD + r * round_s
        for i, (kind, target) in enumerate(FAULTS.items()):
            out.append(Fault(round(start + i * gap, 1), kind, target,
                             round(down, 1) if kind == "influxdb_down" else 0.0))
    return out


def rss_growth_pct(samples: Sequence[tuple[float, int]], *, warmup_s: float) -> float | None:
    """Median RSS of the last quarter after warm-up over the median after warm-up, in %.

    ``samples`` are (seconds, bytes) in time order; None when fewer than eight
    follow the warm-up (too short a life to judge).
    """
    if not samples:
        return None
    t0 = samples[0][0]
    after = [rss for t, rss in samples if t - t0 >= warmup_s]
    if len(after) < 8:
        return None
    base = median(after)
    last = median(after[-(len(after) // 4):])
    return round((last / base - 1.0) * 100.0, 1) if base else None


def warmup_for(life_s: float) -> float:
    return max(WARMUP_MIN_S, WARMUP_SHARE * life_s)


@dataclass(frozen=True)
class TicketSpan:
    """A ticket's identity for the desk's rule and when it was open (epoch seconds)."""

    id: int
    scope: str
    device_id: str | None
    site_id: int | None
    signature: str
    opened_s: float
    closed_s: float | None
    # A fleet ticket's device model: one open per model and signature.
    model: str | None = None


def duplicate_tickets(tickets: Iterable[TicketSpan]) -> list[TicketSpan]:
    """Tickets opened while another of the same device (or site, or fleet model) and signature
    was open."""
    by_key: dict[tuple[Any, ...], list[TicketSpan]] = {}
    for t in tickets:
        by_key.setdefault((t.scope, t.device_id, t.site_id, t.model, t.signature), []).append(t)
    out = []
    for group in by_key.values():
        group.sort(key=lambda t: (t.opened_s, t.id))
        for i, t in enumerate(group):
            if any(e.closed_s is None or e.closed_s > t.opened_s for e in group[:i]):
                out.append(t)
    return out


def points_per_device(series: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Points per device from ``SELECT count(*) ... GROUP BY "device"``.

    count(*) counts each field apart; every sample carries the environment
    readings (a glitch never drops them), so a device's largest field count is
    its number of points.
    """
    out: dict[str, int] = {}
    for s in series:
        device = s.get("tags", {}).get("device", "")
        counts = [int(v) for row in s.get("values", []) for v in row[1:] if v is not None]
        out[device] = out.get(device, 0) + max(counts, default=0)
    return out


def expected_tickets(truth: Mapping[str, Any], *, end_ms: int, live_ms: int
                     ) -> tuple[set[tuple[str, str]], int]:
    """(device, signature) of the failure codes the devices raised that the desk must ticket.

    A device raises its failure code at its first reading at or after the
    failure (in the backfill, or live). The intake files no ticket for a device
    in maintenance when it handles the code, and live devices report their
    maintenance windows from the moment they go live: a failure whose device was
    in maintenance then (for a code raised in the backfill: when it went live)
    is left out. Returns the expected pairs and how many were left out.
    """
    from edge_agent.simulator.physics import FAILURE_CODES
    from vigil.tickets.intake import signature_of

    windows: dict[str, list[tuple[int, int]]] = {}
    for w in truth.get("maintenance", []):
        windows.setdefault(w["device"], []).append((int(w["start_ms"]), int(w["end_ms"])))
    expected: set[tuple[str, str]] = set()
    left_out = 0
    for f in truth["faults"]:
        failure_ms = int(f["failure_ms"])
        if failure_ms > end_ms - END_MARGIN_MS:
            continue
        handled_from = max(failure_ms, live_ms)
        if any(a < handled_from + INTAKE_LAG_MS and handled_from < b
               for a, b in windows.get(f["device"], ())):
            left_out += 1
            continue
        expected.add((f["device"], signature_of(FAILURE_CODES[f["fault_type"]])))
    return expected, left_out


def read_rss(pid: int) -> int | None:
    """Resident memory of ``pid`` in bytes, from /proc; None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


# --- the run -------------------------------------------------------------------------


@dataclass
class Instance:
    """One process's life: name, pid, and its memory over time (seconds into the soak)."""

    name: str
    pid: int
    rss: list[tuple[float, int]] = field(default_factory=list)


@dataclass
class Injected:
    fault: Fault
    started_s: float
    recovered_s: float | None = None
    detail: str = ""


class Soak:
    """The servers, the supervised services and the simulator of one soak run."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        from vigil.servers import InfluxDB, Mosquitto, PostgreSQL, free_port

        self.args = args
        self.work = work
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.postgresql = PostgreSQL(work / "postgresql")
        self.influxdb = InfluxDB(work / "influxdb")
        self.broker = Mosquitto(work / "mosquitto")
        self.ingest_ports = {name: free_port() for name in ("ingest-1", "ingest-2")}
        self.jobs_ports = {name: free_port() for name in ("jobs-1", "jobs-2")}
        self.api_port = free_port()
        self.children: dict[str, Any] = {}
        self.simulator: subprocess.Popen[bytes] | None = None
        self.instances: dict[tuple[str, int], Instance] = {}
        self.started = 0.0
        self.live_ms = 0
        self.engine: Any = None

    # servers and services

    def env(self) -> dict[str, str]:
        """The platform's settings, shared by every service process."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
        env.update({
            "VIGIL_DATA_DIR": str(self.work / "data"),
            "VIGIL_DATABASE_URL": self.postgresql.url(),
            "VIGIL_TELEMETRY_STORE": "influxdb",
            "VIGIL_INFLUXDB__URL": self.influxdb.url,
            "VIGIL_INFLUXDB__USERNAME": self.influxdb.username,
            "VIGIL_INFLUXDB__PASSWORD": self.influxdb.password,
            "VIGIL_INFLUXDB__DATABASE": "vigil",
            "VIGIL_MQTT__HOST": self.broker.host,
            "VIGIL_MQTT__PORT": str(self.broker.port),
            "VIGIL_API__PORT": str(self.api_port),
            "VIGIL_LOG_LEVEL": "INFO",
        })
        return env

    def start_servers(self) -> None:
        from analytics.bench.fleet import register
        from edge_agent.simulator.scenario import ground_truth, plan_scenario
        from vigil.db import migrations
        from vigil.db.session import make_engine, make_session_factory

        for server in (self.postgresql, self.influxdb, self.broker):
            server.start()
        self.influxdb.create_database("vigil")
        self.engine = make_engine(self.postgresql.url())
        migrations.upgrade(self.engine)
        # The devices are the same for a seed and count whatever the period planned.
        now_ms = int(time.time() * 1000)
        truth = ground_truth(plan_scenario(self.args.devices, seed=SEED, start_ms=now_ms - DAY_MS,
                                           end_ms=now_ms, fault_fraction=FAULT_FRACTION))
        register(make_session_factory(self.engine), truth)

    def start_services(self) -> None:
        from vigil.up import Supervised, vigil_command

        env = self.env()
        # Two workers, a partition of the devices each (see ingest/partitions.py).
        for partition, (name, port) in enumerate(self.ingest_ports.items()):
            self.children[name] = Supervised(
                name, vigil_command("ingest"),
                env | {"VIGIL_INGEST__CLIENT_ID": f"soak-{name}",
                       "VIGIL_INGEST__PARTITIONS": str(len(self.ingest_ports)),
                       "VIGIL_INGEST__PARTITION": str(partition),
                       "VIGIL_INGEST__METRICS_PORT": str(port)}, self.logs / f"{name}.log")
        for name, port in self.jobs_ports.items():
            self.children[name] = Supervised(
                name, vigil_command("jobs"),
                env | {"VIGIL_JOBS__WORKER_ID": f"soak-{name}",
                       "VIGIL_JOBS__METRICS_PORT": str(port)}, self.logs / f"{name}.log")
        self.children["api"] = Supervised("api", vigil_command("api"), env,
                                          self.logs / "api.log")
        now = time.monotonic()
        for child in self.children.values():
            child.poll(now)
        wait_for(self.services_ready, 180, "ingest, jobs and the API to answer ready")

    def services_ready(self) -> bool:
        return (all(ready(p) for p in self.ingest_ports.values())
                and all(answers(p) for p in self.jobs_ports.values())
                and ready(self.api_port))

    def start_simulator(self) -> None:
        from vigil.up import vigil_command

        a = self.args
        out = open(self.work / "simulator.out", "wb")  # noqa: SIM115 (the process holds it)
        self.simulator = subprocess.Popen(
            vigil_command("simulate", "--devices", str(a.devices), "--seed", str(SEED),
                          "--fault-fraction", str(FAULT_FRACTION),
                          "--broker", f"{self.broker.host}:{self.broker.port}",
                          "--outbox", str(self.work / "simulator-outbox.db"),
                          "--labels", str(self.work / "labels.csv"),
                          "--truth", str(self.work / "truth.json"),
                          "--interval", str(a.interval), "--backfill-days", str(a.backfill_days),
                          # A plan as short as history and soak: most devices with a fault
                          # fail inside them (about 60 % with a day of history), and the
                          # failure codes they raise are what the desk must ticket.
                          "--plan-days", str(a.minutes / 1440),
                          "--drain", "600"),
            env=self.env() | {"PYTHONUNBUFFERED": "1"}, stdout=out, stderr=subprocess.STDOUT,
            cwd=self.work)
        out.close()
        if a.backfill_days <= 0:
            self.live_ms = int(time.time() * 1000)

    def simulator_line(self, prefix: str) -> str | None:
        try:
            text = (self.work / "simulator.out").read_text(errors="replace")
        except OSError:
            return None
        return next((line for line in reversed(text.splitlines()) if line.startswith(prefix)),
                    None)

    # measuring

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def sample_rss(self) -> None:
        now = self.elapsed()
        procs: list[tuple[str, subprocess.Popen[bytes] | None]] = [
            (name, child.process) for name, child in self.children.items()]
        procs += [("mosquitto", self.broker.process), ("influxdb", self.influxdb.process),
                  ("simulator", self.simulator)]
        for name, process in procs:
            if process is None or process.poll() is not None:
                continue
            rss = read_rss(process.pid)
            if rss is not None:
                self.instances.setdefault((name, process.pid),
                                          Instance(name, process.pid)).rss.append((now, rss))

    def stored(self) -> int | None:
        """Points InfluxDB holds; None while it does not answer."""
        try:
            body = self.influxdb.query('SELECT count(*) FROM "telemetry" GROUP BY "device"',
                                       db="vigil")
        except Exception:  # noqa: BLE001 - away during its fault, or busy: asked again later
            return None
        series = [s for r in body.get("results", []) for s in r.get("series", [])]
        return sum(points_per_device(series).values())

    def tickets_open(self) -> int | None:
        from sqlalchemy import func, select

        from vigil.db.enums import OPEN_TICKET_STATES
        from vigil.tickets.models import Ticket

        try:
            with self.engine.connect() as conn:
                return int(conn.execute(select(func.count()).select_from(Ticket).where(
                    Ticket.state.in_(OPEN_TICKET_STATES))).scalar_one())
        except Exception:  # noqa: BLE001 - PostgreSQL is restarted on purpose
            return None

    # faults

    def inject(self, fault: Fault) -> Callable[[], bool]:
        """Do ``fault``; returns the check that says the platform is whole again."""
        ingest_ok = lambda: all(ready(p) for p in self.ingest_ports.values())  # noqa: E731
        if fault.kind.startswith("kill_"):
            child = self.children[fault.target]
            if child.process is not None:
                child.process.kill()
            if fault.target.startswith("ingest"):
                return lambda: ready(self.ingest_ports[fault.target])
            if fault.target.startswith("jobs"):
                return lambda: answers(self.jobs_ports[fault.target])
            return lambda: ready(self.api_port)
        if fault.kind == "restart_broker":
            self.broker.restart()
            return ingest_ok
        if fault.kind == "restart_postgresql":
            self.postgresql.restart()
            return lambda: ready(self.api_port) and ingest_ok()
        self.influxdb.stop()
        return lambda: ready(self.api_port) and ingest_ok()

    def supervise(self, seconds: float) -> list[Injected]:
        """The soak itself: faults on schedule, supervision, memory, progress."""
        schedule = fault_schedule(seconds, influxdb_down_s=self.args.influxdb_down)
        pending = list(schedule)
        injected: list[Injected] = []
        checks: list[tuple[Injected, Callable[[], bool], float]] = []
        influx_back_at: float | None = None
        next_rss = next_progress = 0.0
        print(f"fault schedule ({len(schedule)} faults): " + "; ".join(
            f"{_clock(f.at_s)} {f.kind}" + (f" {f.duration_s:.0f} s" if f.duration_s else "")
            for f in schedule), flush=True)
        while (now := self.elapsed()) < seconds:
            mono = time.monotonic()
            for child in self.children.values():
                child.poll(mono)
            if not self.live_ms and self.simulator_line("backfill:"):
                self.live_ms = int(time.time() * 1000)
                print(f"[{_clock(now)}] simulator live: "
                      f"{self.simulator_line('backfill:')}", flush=True)
            if pending and pending[0].at_s <= now:
                fault = pending.pop(0)
                entry = Injected(fault, now)
                injected.append(entry)
                print(f"[{_clock(now)}] {fault.kind} ({fault.target})", flush=True)
                check = self.inject(fault)
                if fault.kind == "influxdb_down":
                    influx_back_at = now + fault.duration_s
                    checks.append((entry, check, influx_back_at + 1.0))
                else:
                    checks.append((entry, check, now + 1.0))
            if influx_back_at is not None and now >= influx_back_at:
                self.influxdb.start()
                influx_back_at = None
                print(f"[{_clock(self.elapsed())}] InfluxDB back", flush=True)
            for item in list(checks):
                entry, check, not_before = item
                if now >= not_before and check():
                    base = entry.started_s + entry.fault.duration_s
                    entry.recovered_s = round(self.elapsed() - base, 1)
                    checks.remove(item)
                    print(f"[{_clock(self.elapsed())}] whole again after {entry.fault.kind}: "
                          f"{entry.recovered_s:.1f} s", flush=True)
            if now >= next_rss:
                self.sample_rss()
                next_rss = now + RSS_EVERY_S
            if now >= next_progress:
                self.progress(now, seconds, pending)
                next_progress = now + PROGRESS_EVERY_S
            time.sleep(0.5)
        if influx_back_at is not None:
            self.influxdb.start()
        for entry, _check, _ in checks:
            entry.detail = "not whole again before the soak ended"
        return injected

    def progress(self, now: float, seconds: float, pending: Sequence[Fault]) -> None:
        stored, tickets = self.stored(), self.tickets_open()
        rss = {}
        for inst in self.instances.values():
            if inst.rss and inst.rss[-1][0] >= now - 2 * RSS_EVERY_S:
                rss[inst.name] = inst.rss[-1][1] / 2**20
        restarts = {n: c.restarts for n, c in self.children.items() if c.restarts}
        print(f"[{_clock(now)}/{_clock(seconds)}] stored "
              f"{'-' if stored is None else f'{stored:,}'} samples; "
              f"{'-' if tickets is None else tickets} tickets open; RSS MB "
              + " ".join(f"{n} {v:.0f}" for n, v in sorted(rss.items()))
              + (f"; restarts {restarts}" if restarts else "")
              + (f"; next {pending[0].kind} at {_clock(pending[0].at_s)}" if pending else ""),
              flush=True)

    # ending

    def stop_simulator(self) -> dict[str, Any]:
        assert self.simulator is not None
        self.simulator.send_signal(signal.SIGINT)
        try:
            self.simulator.wait(660)
        except subprocess.TimeoutExpired:
            self.simulator.kill()
            self.simulator.wait()
        line = self.simulator_line("{")
        if line is None:
            raise RuntimeError(f"the simulator printed no figures; see {self.work}/simulator.out")
        stats: dict[str, Any] = json.loads(line)
        return stats

    def catch_up(self, published: int, timeout: float) -> int:
        """Wait until InfluxDB holds every published sample, or stops gaining for 2 minutes."""
        deadline = time.monotonic() + timeout
        stall = min(120.0, timeout)
        best, best_at = -1, time.monotonic()
        while True:
            stored = self.stored()
            if stored is not None and stored > best:
                best, best_at = stored, time.monotonic()
            if best >= published or time.monotonic() > deadline \
                    or time.monotonic() - best_at > stall:
                return max(best, 0)
            print(f"  catching up: {best:,} of {published:,} samples stored", flush=True)
            time.sleep(10)

    def wait_intake(self, timeout: float = 120.0) -> None:
        """Until the desk's intake has handled every device event ingest recorded."""
        from sqlalchemy import text

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.engine.connect() as conn:
                if not conn.execute(text(
                        "SELECT count(*) FROM device_events WHERE handled_at IS NULL")
                        ).scalar_one():
                    return
            time.sleep(2)

    def tickets(self) -> list[TicketSpan]:
        from sqlalchemy import select

        from vigil.db.enums import FINAL_TICKET_STATES
        from vigil.db.session import make_session_factory
        from vigil.tickets.models import Ticket

        final = {s.value for s in FINAL_TICKET_STATES}
        with make_session_factory(self.engine)() as session:
            return [TicketSpan(t.id, t.scope, t.device_id, t.site_id, t.signature,
                               _epoch(t.created_at),
                               _epoch(t.closed_at or t.updated_at)
                               if t.state in final else None, t.model)
                    for t in session.scalars(select(Ticket))]

    def count(self, sql: str) -> int:
        from sqlalchemy import text

        with self.engine.connect() as conn:
            return int(conn.execute(text(sql)).scalar_one())

    def close(self) -> None:
        if self.simulator is not None and self.simulator.poll() is None:
            self.simulator.kill()
            self.simulator.wait()
        for child in self.children.values():  # all at once: each may take seconds to finish
            if child.process is not None and child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        for child in self.children.values():
            child.stop(60.0)
        if self.engine is not None:
            self.engine.dispose()
        for server in (self.broker, self.influxdb, self.postgresql):
            server.stop()


def _epoch(moment: Any) -> float:
    from datetime import UTC

    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return float(moment.timestamp())


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def memory_figures(instances: Iterable[Instance], seconds: float) -> list[dict[str, Any]]:
    """Per process life: memory at its start and end, growth; judged if it lived half the run."""
    out = []
    for inst in instances:
        if not inst.rss:
            continue
        life = inst.rss[-1][0] - inst.rss[0][0]
        out.append({
            "process": inst.name, "pid": inst.pid,
            "from_s": round(inst.rss[0][0]), "to_s": round(inst.rss[-1][0]),
            "first_mb": round(inst.rss[0][1] / 2**20, 1),
            "last_mb": round(inst.rss[-1][1] / 2**20, 1),
            "peak_mb": round(max(r for _, r in inst.rss) / 2**20, 1),
            "growth_pct": rss_growth_pct(inst.rss, warmup_s=warmup_for(life)),
            "judged": inst.name in SERVICES and life >= seconds / 2,
        })
    return sorted(out, key=lambda m: (m["process"], m["from_s"]))


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger("vigil.up").setLevel(logging.INFO)  # the supervisor's starts and exits
    seconds = args.minutes * 60.0
    started = time.monotonic()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="vigil-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    soak = Soak(args, work)
    print(f"soak: {args.devices} devices, a reading every {args.interval:g} s after "
          f"{args.backfill_days:g} days of history, {args.minutes:g} minutes; "
          f"PostgreSQL, InfluxDB, Mosquitto, 2 ingest, 2 jobs, the API; data in {work}",
          flush=True)
    try:
        soak.start_servers()
        soak.start_services()
        print(f"platform ready in {time.monotonic() - started:.0f} s", flush=True)
        soak.started = time.monotonic()
        soak.start_simulator()
        injected = soak.supervise(seconds)
        print(f"[{_clock(soak.elapsed())}] stopping the simulator; it publishes what its "
              "outbox holds", flush=True)
        stop_ms = int(time.time() * 1000)
        sim = soak.stop_simulator()
        published = int(sim["samples_queued"])
        stored = soak.catch_up(published, args.catch_up)
        soak.wait_intake()
        tickets = soak.tickets()
        dead_letters = soak.count("SELECT count(*) FROM dead_letters")
        events = soak.count("SELECT count(*) FROM device_events")
        restarts = {name: child.restarts for name, child in soak.children.items()}
        memory = memory_figures(soak.instances.values(), seconds)
    finally:
        soak.close()
    truth = json.loads((work / "truth.json").read_text())
    expected, left_out = expected_tickets(truth, end_ms=stop_ms,
                                          live_ms=soak.live_ms or stop_ms)
    found = {(t.device_id, t.signature) for t in tickets if t.scope == "device"}
    missing = sorted(expected - found)
    duplicates = duplicate_tickets(tickets)
    judged = [m["growth_pct"] for m in memory if m["judged"] and m["growth_pct"] is not None]
    worst = max(judged, default=None)
    result: dict[str, Any] = {
        "bench": "soak", "devices": args.devices, "minutes": args.minutes,
        "interval_s": args.interval, "backfill_days": args.backfill_days,
        "samples_published": published, "samples_stored": stored,
        "samples_lost": published - stored,
        "outbox_left": int(sim.get("outbox_depth", 0)),
        "outbox_dropped": int(sim.get("outbox_dropped", 0)),
        "dead_letters": dead_letters, "device_events": events,
        "tickets": len(tickets), "duplicate_tickets": len(duplicates),
        "expected_tickets": len(expected), "expected_found": len(expected & found),
        "expected_missing": len(missing), "expected_left_out_maintenance": left_out,
        "rss_growth_pct": worst, "restarts": restarts,
        "faults": [{"kind": i.fault.kind, "target": i.fault.target, "at_s": round(i.started_s),
                    "duration_s": i.fault.duration_s, "recovered_s": i.recovered_s}
                   for i in injected],
        "memory": memory, "wall_s": round(time.monotonic() - started, 1),
    }
    if not args.workdir:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    print_report(result, missing, duplicates)
    print(json.dumps(result))
    return 0


def print_report(r: Mapping[str, Any], missing: Sequence[tuple[str, str]],
                 duplicates: Sequence[TicketSpan]) -> None:
    print(f"samples: {r['samples_published']:,} measured by the devices, "
          f"{r['samples_stored']:,} in InfluxDB: {r['samples_lost']:,} lost "
          f"({r['outbox_left']} left in the outbox, {r['outbox_dropped']} dropped by its bounds, "
          f"{r['dead_letters']} dead letters)")
    print(f"tickets: {r['tickets']}, {r['duplicate_tickets']} duplicates"
          + (f" ({', '.join(f'#{t.id} {t.device_id} {t.signature}' for t in duplicates[:10])})"
             if duplicates else ""))
    print(f"failure codes the ground truth expects ticketed: {r['expected_found']} of "
          f"{r['expected_tickets']}"
          + (f"; missing {', '.join(f'{d} {s}' for d, s in missing[:10])}" if missing else "")
          + f" ({r['expected_left_out_maintenance']} left out: the device was in maintenance)")
    for f in r["faults"]:
        back = "not whole again" if f["recovered_s"] is None else f"{f['recovered_s']:.1f} s"
        print(f"  {_clock(f['at_s'])} {f['kind']:<19} {f['target']:<11} whole again after {back}")
    print("memory (MB at first and last sample, peak; growth = last-quarter median over "
          "post-warm-up median):")
    for m in r["memory"]:
        growth = "-" if m["growth_pct"] is None else f"{m['growth_pct']:+.1f} %"
        print(f"  {m['process']:<10} pid {m['pid']:<7} {_clock(m['from_s'])}-{_clock(m['to_s'])} "
              f"{m['first_mb']:7.1f} -> {m['last_mb']:7.1f} (peak {m['peak_mb']:.1f}) "
              f"growth {growth}{'' if m['judged'] else ' (not judged)'}")
    worst = r["rss_growth_pct"]
    print(f"worst judged growth: {'-' if worst is None else f'{worst:+.1f} %'}; "
          f"restarts {r['restarts']}; wall {r['wall_s']:.0f} s")

