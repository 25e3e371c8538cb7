"""One ventilator's year through the desk: plans, calibrations, a fault, vouchers, the report.

The maintenance job runs every morning; an engineer does the planned work a few
days before it falls due and takes each ticket to closing with the customer's
sign-off; one calibration is out of tolerance and opens a corrective ticket;
the device reports one fault. At the end of the year the service-quality report
must hold exactly what the year produced. Run with ``-s`` to see the year.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.tickets.support import Org, seed
from vigil.db.enums import MaintenanceKind, Severity, TicketSource, TicketState
from vigil.devices.models import Device
from vigil.maintenance import service as maintenance
from vigil.maintenance.models import MaintenancePlan, MaintenanceRecord
from vigil.reports.quality import GroupBy, service_quality
from vigil.tickets import service, survey, voucher
from vigil.tickets.models import ServiceReport, Ticket
from vigil.tickets.priority import Signal, TicketRules
from vigil.tickets.service import Evidence
from vigil.tickets.transitions import Actor, ActorRole, Request

RULES = TicketRules.load()
YEAR = datetime(2025, 1, 1, 8, tzinfo=UTC)
ENGINEER = Actor("eve", ActorRole.ENGINEER)
CUSTOMER = Actor("nora", ActorRole.CUSTOMER)
DEVICE = "vent-1"


@pytest.fixture
def org(factory: sessionmaker[Session]) -> Org:
    return seed(factory)


def work_to_closing(s: Session, ticket_id: int, at: datetime, note: str) -> None:
    steps = [(TicketState.DIAGNOSING, ENGINEER, Request()),
             (TicketState.REPAIRED, ENGINEER, Request(diagnosis_note=note)),
             (TicketState.VERIFIED, ENGINEER, Request(verification_result="self-test passed")),
             (TicketState.CLOSED, CUSTOMER, Request())]
    for minutes, (to, actor, request) in enumerate(steps, start=1):
        service.transition(s, ticket_id=ticket_id, to=to, actor=actor, request=request,
                           now=at + timedelta(minutes=20 * minutes))
    voucher.issue(s, ticket_id=ticket_id, actor=ENGINEER, now=at + timedelta(hours=2),
                  with_pdf=False)


def test_a_ventilators_year(factory: sessionmaker[Session], org: Org) -> None:
    with factory() as s, s.begin():
        pm = maintenance.create_plan(
            s, kind=MaintenanceKind.PREVENTIVE, title="Quarterly PM", device_id=DEVICE,
            interval_days=91, lead_days=14, actor=ENGINEER, now=YEAR, baseline=YEAR)
        cal = maintenance.create_plan(
            s, kind=MaintenanceKind.CALIBRATION, title="O2 sensor calibration",
            device_id=DEVICE, interval_days=182, lead_days=14, actor=ENGINEER, now=YEAR,
            baseline=YEAR, tolerances={"o2_pct": {"low": 20.0, "high": 22.0, "unit": "%"}})
        plans = {pm.id: pm.kind, cal.id: cal.kind}
    o2_readings = iter([21.1, 23.4])  # the second calibration drifts out of tolerance
    fault_day = YEAR + timedelta(days=200)
    for day in range(365):
        now = YEAR + timedelta(days=day)
        with factory() as s, s.begin():
            maintenance.refresh(s, now=now, ticket_rules=RULES)
            if now == fault_day:
                opened = service.open_or_join(
                    s, device_id=DEVICE, signature="event:E042",
                    signal=Signal(TicketSource.DEVICE_EVENT, severity=Severity.ERROR),
                    title="E042 expiratory valve", evidence=Evidence(at=now), now=now,
                    rules=RULES)
                work_to_closing(s, opened.ticket.id, now + timedelta(hours=1), "valve worn")
            for plan_id, kind in plans.items():
                due = maintenance.due_for(s, plan=s.get_one(MaintenancePlan, plan_id),
                                          device=s.get_one(Device, DEVICE), now=now)
                assert due.next_due_at is not None
                ticket_id = due.ticket_id  # completing the work clears it
                if ticket_id is None or due.next_due_at - now > timedelta(days=3):
                    continue
                measured = ({"o2_pct": next(o2_readings)}
                            if kind == MaintenanceKind.CALIBRATION else {})
                record = maintenance.complete(
                    s, plan_id=plan_id, device_id=DEVICE, actor=ENGINEER, performed_at=now,
                    now=now, ticket_rules=RULES, results=f"{kind} done",
                    measurements=measured)
                work_to_closing(s, ticket_id, now + timedelta(hours=3), f"{kind} done")
                if record.corrective_ticket_id is not None:
                    work_to_closing(s, record.corrective_ticket_id, now + timedelta(hours=6),
                                    "O2 sensor replaced")
            survey.issue_due(s, now=now + timedelta(hours=12), link_base="https://x",
                             email=True)

    end = YEAR + timedelta(days=365)
    with factory() as s:
        records = s.scalars(select(MaintenanceRecord).order_by(MaintenanceRecord.performed_at)
                            ).all()
        tickets = s.scalars(select(Ticket).order_by(Ticket.created_at)).all()
        vouchers = s.scalars(select(ServiceReport)).all()
        report = service_quality(s, start=YEAR, end=end, group_by=GroupBy.MODEL, rules=RULES)
    print(f"\n{DEVICE}, {YEAR:%Y}:")
    for r in records:
        print(f"  {r.performed_at:%Y-%m-%d} {r.kind:<11} due {r.due_at:%Y-%m-%d} "
              f"{'passed' if r.passed else 'OUT OF TOLERANCE'} next {r.next_due_at:%Y-%m-%d}")
    for t in tickets:
        print(f"  ticket #{t.id} {t.created_at:%Y-%m-%d} {t.priority} {t.source:<16} "
              f"{t.state:<7} {t.title}")
    row = report.total
    print(f"  vouchers {len(vouchers)}; report: opened {row.opened} {row.by_source}, "
          f"finished {row.finished}, first-time fix {row.first_time_fix_rate}, surveys sent "
          f"{row.surveys_sent}, maintenance {report.maintenance}")

    # Every 91 days from when it was last done, three days early each time: days 88, 176,
    # 264 and 352; the calibration every 182 days: days 179 and 358.
    assert [r.kind for r in records].count(MaintenanceKind.PREVENTIVE) == 4
    assert [r.passed for r in records if r.kind == MaintenanceKind.CALIBRATION] == [True, False]
    assert len(tickets) == 4 + 2 + 1 + 1  # PM, calibrations, the fault, the correction
    assert all(t.state == TicketState.CLOSED for t in tickets)
    assert len(vouchers) == len(tickets)
    assert row.opened == len(tickets) and row.by_source["maintenance_plan"] == 7
    assert row.by_source["device_event"] == 1 and row.surveys_sent == len(tickets)
    assert report.maintenance["preventive"].done == 4
    assert report.maintenance["calibration"].done == 2
