"""Time one SLA watchdog pass and the 90-day service-quality report over a large service desk,
against a plain count of its tickets.

Builds 5,000 devices at 250 sites of 50 customers, engineers with
qualifications, service contracts (half the sites on business hours with
holidays, half 24 x 7) and 50,000 tickets over three years, of which a share is
still open with deadlines spread around now, so a pass finds tickets fine, at
risk and breached. Then it times ``SELECT count(*) FROM tickets`` and watchdog
passes: the first raises every alert and queues its notifications, the later
ones find nothing new, as a pass every minute usually does. Then the
service-quality report over the last 90 days, grouped each of the four ways
(the JSON's ``report_s`` is the slowest grouping's median), each run after a run
of the same plain count so both meet the same load (``report_ratio_to_count``
divides by the median of those counts); a count of only the period's tickets
is printed beside it. The table is vacuumed and analysed once built, as
autovacuum keeps it in production. PostgreSQL is started for the run unless
``--database-url`` names one.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping
from contextlib import ExitStack
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from vigil.db.enums import Priority, RoleName, TicketSource, TicketState
from vigil.db.session import make_engine, make_session_factory, transaction
from vigil.reports.quality import GroupBy

MODELS = ("infusion_pump", "patient_monitor", "ventilator", "ct", "mri")
CLOSED_STATES = (TicketState.CLOSED, TicketState.CLOSED, TicketState.CLOSED,
                 TicketState.RESOLVED_REMOTELY, TicketState.CANCELLED)
OPEN_STATES = (TicketState.OPEN, TicketState.ACKNOWLEDGED, TicketState.DIAGNOSING,
               TicketState.DISPATCHED, TicketState.REPAIRED, TicketState.VERIFIED)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=int, default=5000)
    parser.add_argument("--tickets", type=int, default=50_000)
    parser.add_argument("--open-share", type=float, default=0.05,
                        help="share of the tickets still open (default 0.05: 2,500 of 50,000)")
    parser.add_argument("--repeat", type=int, default=5, help="timed passes after the first")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--database-url", default=None,
                        help="an empty PostgreSQL database (default: start one for the run)")


def run(args: argparse.Namespace) -> int:
    from vigil.servers import PostgreSQL, ServerUnavailable

    if not 0 <= args.open_share <= 1 or args.devices < 50 or args.tickets < 1:
        print("vigil bench desk: --open-share is 0 to 1, --devices at least 50", file=sys.stderr)
        return 2
    with ExitStack() as stack:
        url = args.database_url
        if url is None:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vigil-bench-desk-")))
            print("  starting PostgreSQL ...", flush=True)
            try:
                server = PostgreSQL(tmp / "postgresql").start()
            except ServerUnavailable as exc:
                print(f"vigil bench desk: {exc}", file=sys.stderr)
                return 1
            stack.callback(server.stop)
            url = server.url(server.create_database("desk"))
        return measure(url, args)


def _median_s(action: Any, repeat: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        action()
        times.append(time.perf_counter() - began)
    return statistics.median(times), times


def measure(url: str, args: argparse.Namespace) -> int:
    from vigil.config import DeskSettings
    from vigil.db import migrations
    from vigil.tickets.scheduled import Desk
    from vigil.tickets.watchdog import run_pass

    engine = make_engine(url)
    try:
        migrations.upgrade(engine)
        factory = make_session_factory(engine)
        now = datetime.now(UTC).replace(microsecond=0)
        began = time.perf_counter()
        with transaction(factory) as session:
            counts = populate(session, args, now)
        print(f"vigil bench desk: {args.devices:,} devices at {counts['sites']} sites, "
              f"{counts['tickets']:,} tickets ({counts['open']:,} open), "
              f"{counts['engineers']} engineers; built in {time.perf_counter() - began:.1f} s",
              flush=True)
        # VACUUM ANALYZE outside a transaction, as autovacuum leaves a table in production: an
        # ANALYZE in the connection's implicit transaction was rolled back at close (no
        # statistics), and autovacuum then vacuumed the table mid-run, so the count (a heap scan
        # of the fresh table, 12 to 17 ms) and the report (later, on the vacuumed table) were
        # measured on different tables; vacuumed, the count is an index-only scan of 6 to 7 ms.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))
        # Every step is e-mailed to the people it reaches and posted to one webhook, as in
        # production; the bench measures queueing them, not sending.
        desk = Desk.from_settings(DeskSettings(
            smtp_host="127.0.0.1", webhook_urls=["http://127.0.0.1:9/desk"],
            webhook_secret=SecretStr("bench")))

        def plain_count() -> None:
            with factory() as session:
                session.scalar(select(func.count()).select_from(text("tickets")))

        def period_count() -> None:
            with factory() as session:
                session.scalar(select(func.count()).select_from(text("tickets")).where(
                    text("created_at >= :start AND created_at < :end")),
                    {"start": now - timedelta(days=90), "end": now})

        count_s, _ = _median_s(plain_count, max(args.repeat, 5))
        reports = []

        def one_pass() -> None:
            with transaction(factory) as session:
                reports.append(run_pass(session, now=now, policy=desk.policy,
                                        recipients=desk.recipients))

        first_s, _ = _median_s(one_pass, 1)
        first = reports[0]
        pass_s, times = _median_s(one_pass, args.repeat)
        report_times = {group: time_report(factory, group, now, args.repeat, plain_count)
                        for group in GroupBy}
        period_s, _ = _median_s(period_count, max(args.repeat, 5))
    finally:
        engine.dispose()
    print(f"  plain count over the tickets table: {count_s * 1000:.1f} ms (median)")
    print(f"  first watchdog pass: {first_s:.2f} s over {first.tickets:,} open tickets: "
          f"{first.at_risk} milestones at risk, {first.breached} breached, "
          f"{first.new_alerts} alerts raised, {first.notifications} notifications queued")
    print(f"  later passes (nothing new): median {pass_s:.2f} s "
          f"({', '.join(f'{t:.2f}' for t in times)}); {pass_s / count_s:.0f} x the plain count; "
          f"{pass_s / 60:.1%} of a one-minute interval")
    for group, (seconds, rows, beside_s) in report_times.items():
        print(f"  90-day service-quality report by {group}: median {seconds * 1000:.1f} ms "
              f"({rows} groups); {seconds / beside_s:.1f} x the plain count timed between "
              f"its runs ({beside_s * 1000:.1f} ms)")
    report_s = max(seconds for seconds, _rows, _beside in report_times.values())
    report_count_s = statistics.median(beside for _s, _r, beside in report_times.values())
    print(f"  plain count of the period's tickets: {period_s * 1000:.1f} ms (median); "
          f"the slowest report is {report_s / period_s:.1f} x that; load average "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    figures = {"devices": args.devices, "tickets": counts["tickets"],
               "open_tickets": counts["open"], "plain_count_s": round(count_s, 4),
               "watchdog_first_pass_s": round(first_s, 3), "watchdog_pass_s": round(pass_s, 3),
               "watchdog_ratio_to_count": round(pass_s / count_s, 1),
               "alerts_raised": first.new_alerts, "notifications_queued": first.notifications,
               "report_s": round(report_s, 4),
               "report_plain_count_s": round(report_count_s, 4),
               "report_ratio_to_count": round(report_s / report_count_s, 1),
               "period_count_s": round(period_s, 4),
               "load_average": [round(v, 2) for v in os.getloadavg()]}
    print(json.dumps(figures))
    return 0


def time_report(factory: sessionmaker[Session], group: GroupBy, now: datetime,
                repeat: int, plain_count: Any) -> tuple[float, int, float]:
    """Median seconds of the 90-day report grouped one way, how many groups it had, and the
    median of the plain count run before each report run (both under the same load)."""
    from vigil.reports.quality import service_quality
    from vigil.tickets.priority import TicketRules

    rules = TicketRules.load()
    found: list[int] = []

    def one() -> None:
        with factory() as session:
            report = service_quality(session, start=now - timedelta(days=90), end=now,
                                     group_by=group, rules=rules)
            found.append(len(report.rows))

    one()
    counts, reports = [], []
    for _ in range(max(repeat, 5)):
        counts.append(_median_s(plain_count, 1)[0])
        reports.append(_median_s(one, 1)[0])
    return statistics.median(reports), found[-1], statistics.median(counts)


def populate(session: Session, args: argparse.Namespace, now: datetime) -> dict[str, int]:
    """Bulk rows through SQLAlchemy Core; deadlines from the same rules the desk uses."""
    from vigil.devices.models import Customer, Device, Site
    from vigil.engineers.models import Engineer, Qualification
    from vigil.tickets import sla
    from vigil.tickets.models import Contract, SatisfactionSurvey, Ticket
    from vigil.tickets.priority import TicketRules
    from vigil.users.models import Role, User, user_roles

    rng = random.Random(args.seed)
    rules = TicketRules.load()
    sites_n = max(1, args.devices // 20)
    customers = [{"id": i + 1, "name": f"Hospital group {i + 1}", "created_at": now}
                 for i in range(max(1, sites_n // 5))]
    session.execute(insert(Customer), customers)
    zones = ("Europe/Berlin", "Europe/London", "America/New_York", "Asia/Tokyo")
    sites: list[dict[str, Any]] = [
        {"id": i + 1, "name": f"Site {i + 1}", "customer_id": i % len(customers) + 1,
         "timezone": zones[i % len(zones)], "region": f"r{i % 8}", "created_at": now}
        for i in range(sites_n)]
    session.execute(insert(Site), sites)
    holidays = [(now.date() + timedelta(days=d)).isoformat() for d in (-40, -3, 25)]
    contracts = []
    calendars: dict[int, tuple[int | None, sla.ServiceCalendar]] = {}
    for site in sites:
        business = site["id"] % 2 == 0
        contracts.append({"id": site["id"], "name": f"contract {site['id']}",
                          "site_id": site["id"], "timezone": None,
                          "hours_start": clock_time(8) if business else None,
                          "hours_end": clock_time(17) if business else None,
                          "workdays": [0, 1, 2, 3, 4] if business else list(range(7)),
                          "holidays": holidays if business else [], "levels": {},
                          "active": True, "created_at": now})
        calendar = (sla.ServiceCalendar.business(
            site["timezone"], holidays=[date.fromisoformat(h) for h in holidays])
            if business else sla.ServiceCalendar.always(site["timezone"]))
        calendars[site["id"]] = (site["id"], calendar)
    session.execute(insert(Contract), contracts)
    devices: list[dict[str, Any]] = [
        {"id": f"dev-{i:05d}", "serial": f"SN{i:07d}", "model": MODELS[i % len(MODELS)],
         "site_id": i % sites_n + 1, "online": True, "status_detail": {},
         "created_at": now} for i in range(args.devices)]
    session.execute(insert(Device), devices)
    roles = {r.name: r.id for r in session.scalars(select(Role))}
    people = 105
    users: list[dict[str, Any]] = [
        {"id": i + 1, "username": f"user{i + 1}", "display_name": f"User {i + 1}",
         "email": f"user{i + 1}@service.example", "active": True, "created_at": now}
        for i in range(people)]
    session.execute(insert(User), users)
    session.execute(insert(user_roles), [
        {"user_id": u["id"], "role_id": roles[RoleName.MANAGER if u["id"] > 100
                                              else RoleName.ENGINEER]} for u in users])
    session.execute(insert(Engineer), [
        {"id": i, "user_id": i, "region": f"r{i % 8}", "timezone": zones[i % len(zones)],
         "hours_start": clock_time(8) if i % 3 else None,
         "hours_end": clock_time(17) if i % 3 else None,
         "workdays": [0, 1, 2, 3, 4] if i % 3 else list(range(7)), "days_off": [],
         "active": True} for i in range(1, 101)])
    session.execute(insert(Qualification), [
        {"engineer_id": i, "device_model": model, "qualified_on": date(2024, 1, 1),
         "expires_on": date(2028, 1, 1)}
        for i in range(1, 101) for model in rng.sample(MODELS, 2)])
    open_n = round(args.tickets * args.open_share)
    signatures = analytics_signatures()
    taken: set[tuple[str, str]] = set()
    rows: list[dict[str, Any]] = []
    surveyed: list[bool] = []
    for n in range(args.tickets):
        device = devices[rng.randrange(len(devices))]
        site_id = device["site_id"]
        priority = rng.choices(list(Priority), weights=(1, 3, 6))[0]
        is_open = n < open_n
        if is_open:
            created = now - timedelta(minutes=rng.uniform(1, 7 * 24 * 60))
            state = rng.choice(OPEN_STATES)
        else:
            created = now - timedelta(days=rng.uniform(7, 3 * 365))
            state = rng.choice(CLOSED_STATES)
        contract_id, calendar = calendars[site_id]
        due = sla.deadlines(created, priority, sla.DEFAULT_SERVICE_LEVELS, calendar)
        progressed = state not in (TicketState.OPEN,)
        restored = state in (TicketState.REPAIRED, TicketState.VERIFIED, *CLOSED_STATES)
        source = rng.choice(list(TicketSource))
        signature = f"bench:{n}"
        if source is TicketSource.ANALYTICS:
            signature = analytics_signature(device, is_open, rng, signatures, taken)
        # Milestones met after spread-out delays, with the service time the desk keeps.
        met = {"responded_at": created + timedelta(minutes=rng.uniform(5, 300))
               if progressed else None,
               "diagnosed_at": created + timedelta(hours=rng.uniform(1, 40))
               if restored else None,
               "restored_at": created + timedelta(hours=rng.uniform(4, 150))
               if restored else None}
        minutes: dict[str, float | None] = {}
        for name, column in (("responded_at", "respond_minutes"),
                             ("diagnosed_at", "diagnose_minutes"),
                             ("restored_at", "restore_minutes")):
            at = met[name]
            minutes[column] = None if at is None else round(
                sla.service_time_between(created, at, calendar).total_seconds() / 60, 3)
        evidence: dict[str, Any] = {}
        if source is TicketSource.ANALYTICS:
            evidence = {"recent": [{"data": {"hours_to_failure": rng.uniform(12, 400)}}]}
        closed = state is TicketState.CLOSED
        answered = closed and rng.random() < 0.5
        rows.append({
            "scope": "device", "device_id": device["id"], "site_id": site_id,
            "contract_id": contract_id, "priority": priority.value,
            "category": rules.category(signature).value, "state": state.value,
            "source": source.value, "signature": signature,
            "title": f"Bench ticket {n}", "description": "", "evidence": evidence,
            "evidence_count": 1, "first_seen_at": created, "last_seen_at": created,
            "assigned_to_id": rng.randint(1, 100) if progressed else None,
            "created_at": created, "updated_at": created, "respond_by": due.respond_by,
            "diagnose_by": due.diagnose_by, "restore_by": due.restore_by, **met,
            "respond_minutes": minutes["respond_minutes"],
            "diagnose_minutes": minutes["diagnose_minutes"],
            "restore_minutes": minutes["restore_minutes"],
            "closed_at": created + timedelta(days=2) if not is_open else None,
            "reopen_count": 1 if rng.random() < 0.08 else 0,
            "satisfaction_score": rng.randint(1, 5) if answered else None})
        surveyed.append(closed and rng.random() < 0.8)
    # Tickets are written as they are opened: ids and table order follow creation time,
    # which keeps a period's tickets together on disk as in production.
    order = sorted(range(len(rows)), key=lambda i: rows[i]["created_at"])
    rows = [{**rows[i], "id": position + 1} for position, i in enumerate(order)]
    for start in range(0, len(rows), 5000):
        session.execute(insert(Ticket), rows[start:start + 5000])
    surveys = [{"ticket_id": row["id"], "token_hash": f"{row['id']:064x}",
                "issued_at": row["created_at"] + timedelta(days=2),
                "expires_at": row["created_at"] + timedelta(days=32),
                "answered_at": row["created_at"] + timedelta(days=3)
                if row["satisfaction_score"] is not None else None}
               for row, i in zip(rows, order, strict=True) if surveyed[i]]
    session.execute(insert(SatisfactionSurvey), surveys)
    populate_maintenance(session, rng, devices, now)
    for table in ("customers", "sites", "contracts", "users", "engineers", "tickets"):
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"))
    return {"sites": sites_n, "tickets": args.tickets, "open": open_n, "engineers": 100}


def analytics_signatures() -> dict[str, tuple[str, ...]]:
    """The signatures the jobs' ticket rules file per device model: an anomaly on each reading
    the simulated model reports and a prediction of each fault type it develops (11 to 13 a
    model, 41 in all). The report counts tickets and false alarms per signature, so a bench
    with a signature per ticket (as this one had) times a report of a rule per ticket."""
    from edge_agent.simulator.physics import FAULT_TYPES, DeviceSim, Site

    out = {}
    for model in MODELS:
        readings = DeviceSim("probe", model, Site("probe"), seed=0).sample(0)
        out[model] = (*(f"anomaly:{reading}" for reading in sorted(readings)),
                      *(f"prediction:{fault}" for fault in FAULT_TYPES[model]))
    return out


def analytics_signature(device: Mapping[str, Any], is_open: bool, rng: random.Random,
                        signatures: Mapping[str, tuple[str, ...]],
                        taken: set[tuple[str, str]]) -> str:
    """One of the device model's signatures; an open ticket's not open on the device yet (the
    desk keeps one open ticket per device and signature)."""
    choices = signatures[device["model"]]
    if not is_open:
        return rng.choice(choices)
    free = [s for s in choices if (device["id"], s) not in taken]
    signature = rng.choice(free)
    taken.add((device["id"], signature))
    return signature


def populate_maintenance(session: Session, rng: random.Random, devices: list[dict[str, Any]],
                         now: datetime) -> None:
    """A preventive and a calibration plan per model; each device done once or twice a year."""
    from vigil.db.enums import MaintenanceKind
    from vigil.maintenance.models import MaintenanceDue, MaintenancePlan, MaintenanceRecord

    plans: list[dict[str, Any]] = []
    for i, model in enumerate(MODELS):
        for j, kind in enumerate(MaintenanceKind):
            plans.append({"id": 2 * i + j + 1, "device_model": model, "kind": kind.value,
                          "title": f"{kind.value} {model}", "interval_days": 180 + 185 * j,
                          "active": True, "lead_days": 14, "grace_days": 0, "procedure": "",
                          "tolerances": {}})
    session.execute(insert(MaintenancePlan), plans)
    dues, records = [], []
    for device in devices:
        for plan in plans:
            if plan["device_model"] != device["model"]:
                continue
            interval: int = plan["interval_days"]
            last = now - timedelta(days=rng.uniform(0, interval + 30))
            if rng.random() < 0.9:
                records.append({"plan_id": plan["id"], "device_id": device["id"],
                                "kind": plan["kind"], "due_at": last + timedelta(days=2),
                                "performed_at": last, "performed_by": "bench", "results": "",
                                "measurements": [], "passed": True, "created_at": last})
            dues.append({"plan_id": plan["id"], "device_id": device["id"], "last_done_at": last,
                         "next_due_at": last + timedelta(days=interval)})
    session.execute(insert(MaintenanceDue), dues)
    session.execute(insert(MaintenanceRecord), records)
