"""Plans against SQLite and PostgreSQL: tickets a lead time ahead, escalation, completion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.tickets.support import Org, seed
from vigil.audit.models import AuditLog
from vigil.db.enums import MaintenanceKind, Priority, TicketEventKind, TicketSource
from vigil.devices.models import Device
from vigil.errors import InvalidRequest, NotFound
from vigil.maintenance import service
from vigil.maintenance.models import MaintenanceDue, MaintenanceRecord
from vigil.maintenance.rules import Usage
from vigil.maintenance.scheduled import maintenance_job
from vigil.tickets.models import Ticket, TicketEvent
from vigil.tickets.priority import TicketRules
from vigil.tickets.transitions import Actor, ActorRole

RULES = TicketRules.load()
T0 = datetime(2026, 1, 1, tzinfo=UTC)
ENGINEER = Actor("eve", ActorRole.ENGINEER)


@pytest.fixture
def org(factory: sessionmaker[Session]) -> Org:
    return seed(factory)


def plan_tickets(s: Session) -> list[Ticket]:
    return list(s.scalars(select(Ticket).where(Ticket.source == TicketSource.MAINTENANCE_PLAN)
                          .order_by(Ticket.id)))


def test_a_model_plan_opens_a_p3_ticket_per_device_a_lead_time_ahead(
        factory: sessionmaker[Session], org: Org) -> None:
    with factory() as s, s.begin():
        plan = service.create_plan(s, kind=MaintenanceKind.PREVENTIVE, title="Annual PM",
                                   device_model="ventilator", interval_days=365, lead_days=14,
                                   actor=ENGINEER, now=T0, baseline=T0)
        plan_id = plan.id
    due = T0 + timedelta(days=365)
    with factory() as s, s.begin():
        early = service.refresh(s, now=due - timedelta(days=15), ticket_rules=RULES)
        assert (early.checked, early.tickets_opened) == (5, 0)
    with factory() as s, s.begin():
        report = service.refresh(s, now=due - timedelta(days=14), ticket_rules=RULES)
        assert report.tickets_opened == 5
        again = service.refresh(s, now=due - timedelta(days=13), ticket_rules=RULES)
        assert again.tickets_opened == 0
    with factory() as s:
        opened = plan_tickets(s)
        # Planned work is not a failure: the ventilator's P2 floor does not apply.
        assert [t.priority for t in opened] == [Priority.P3] * 5
        assert {t.device_id for t in opened} == set(org.devices[:5])
        assert all(t.signature == f"plan:{plan_id}:preventive" for t in opened)
        dues = s.scalars(select(MaintenanceDue)).all()
        assert {d.next_due_at for d in dues} == {due}
        assert all(d.ticket_id is not None for d in dues)


def test_overdue_work_is_escalated_once(factory: sessionmaker[Session], org: Org) -> None:
    with factory() as s, s.begin():
        service.create_plan(s, kind=MaintenanceKind.CALIBRATION, title="Flow calibration",
                            device_id="mri-1", interval_days=90, lead_days=7, grace_days=3,
                            actor=ENGINEER, now=T0, baseline=T0)
    due = T0 + timedelta(days=90)
    with factory() as s, s.begin():
        assert service.refresh(s, now=due + timedelta(days=2), ticket_rules=RULES).escalated == 0
        report = service.refresh(s, now=due + timedelta(days=3), ticket_rules=RULES)
        assert (report.tickets_opened, report.escalated) == (0, 1)
        assert service.refresh(s, now=due + timedelta(days=4), ticket_rules=RULES).escalated == 0
    with factory() as s:
        [ticket] = plan_tickets(s)
        assert ticket.priority == Priority.P2
        escalations = s.scalars(select(TicketEvent).where(
            TicketEvent.ticket_id == ticket.id,
            TicketEvent.kind == TicketEventKind.ESCALATION)).all()
        assert len(escalations) == 1 and "overdue" in escalations[0].note


def test_usage_plan_falls_due_from_the_telemetry_reading(
        factory: sessionmaker[Session], org: Org) -> None:
    with factory() as s, s.begin():
        service.create_plan(s, kind=MaintenanceKind.PREVENTIVE, title="Lubrication",
                            device_id="vent-1", interval_usage_hours=200, lead_days=2,
                            actor=ENGINEER, now=T0, baseline=T0)
    # The counter stood at 1000 h at the baseline and runs 10 h a day.
    readings = [Usage(1000.0, T0), Usage(1150.0, T0 + timedelta(days=15))]
    calls: list[list[str]] = []

    def source(devices: object) -> dict[str, Usage]:
        calls.append(list(devices))  # type: ignore[call-overload]
        return {"vent-1": readings[len(calls) - 1]}

    report = maintenance_job(factory, RULES, source, clock=lambda: T0)
    assert report.tickets_opened == 0 and calls == [["vent-1"]]
    with factory() as s:
        # The first reading sets where the 200 hours count from.
        assert s.scalars(select(MaintenanceDue)).one().last_usage_hours == 1000.0
    report = maintenance_job(factory, RULES, source, clock=lambda: T0 + timedelta(days=15))
    with factory() as s:
        due = s.scalars(select(MaintenanceDue)).one()
        assert due.due_usage_hours == 1200.0
        assert due.next_due_at == T0 + timedelta(days=20)
    assert report.tickets_opened == 0  # due on day 20, lead 2 days


def test_a_counter_first_read_a_month_in_projects_from_that_reading(
        factory: sessionmaker[Session], org: Org) -> None:
    with factory() as s, s.begin():
        service.create_plan(s, kind=MaintenanceKind.PREVENTIVE, title="Lubrication",
                            device_id="vent-1", interval_usage_hours=200, lead_days=2,
                            actor=ENGINEER, now=T0, baseline=T0)
    # The device reports its counter only from day 30, then runs 10 h a day.
    month = T0 + timedelta(days=30)
    readings = iter([Usage(1000.0, month), Usage(1150.0, month + timedelta(days=15))])
    maintenance_job(factory, RULES, lambda devices: {"vent-1": next(readings)},
                    clock=lambda: month)
    report = maintenance_job(factory, RULES, lambda devices: {"vent-1": next(readings)},
                             clock=lambda: month + timedelta(days=15))
    with factory() as s:
        due = s.scalars(select(MaintenanceDue)).one()
        assert (due.last_usage_hours, due.due_usage_hours) == (1000.0, 1200.0)
        assert due.next_due_at == month + timedelta(days=20)
    assert report.tickets_opened == 0


def test_completion_records_values_sets_next_due_and_opens_a_corrective_ticket(
        factory: sessionmaker[Session], org: Org) -> None:
    with factory() as s, s.begin():
        plan = service.create_plan(
            s, kind=MaintenanceKind.CALIBRATION, title="Pressure sensor calibration",
            device_id="vent-2", interval_days=180, lead_days=10, actor=ENGINEER, now=T0,
            baseline=T0, tolerances={"pressure_error_cmh2o": {"low": -1, "high": 1,
                                                              "unit": "cmH2O"}})
        plan_id = plan.id
    due = T0 + timedelta(days=180)
    with factory() as s, s.begin():
        service.refresh(s, now=due - timedelta(days=5), ticket_rules=RULES)
    done = due - timedelta(days=2)
    with factory() as s, s.begin():
        with pytest.raises(InvalidRequest, match="pressure_error_cmh2o"):
            service.complete(s, plan_id=plan_id, device_id="vent-2", actor=ENGINEER,
                             performed_at=done, now=done, ticket_rules=RULES)
        with pytest.raises(NotFound):
            service.complete(s, plan_id=plan_id, device_id="vent-3", actor=ENGINEER,
                             performed_at=done, now=done, ticket_rules=RULES,
                             measurements={"pressure_error_cmh2o": 0.0})
        entry = service.complete(
            s, plan_id=plan_id, device_id="vent-2", actor=ENGINEER, performed_at=done,
            now=done, ticket_rules=RULES, results="sensor re-zeroed",
            measurements={"pressure_error_cmh2o": 1.4}, engineer_user_id=org.engineer_user_id)
        record_id = entry.id
    with factory() as s:
        entry = s.get(MaintenanceRecord, record_id)
        assert entry is not None
        assert not entry.passed and entry.due_at == due
        assert entry.next_due_at == done + timedelta(days=180)
        assert entry.measurements[0]["within"] is False
        corrective = s.get(Ticket, entry.corrective_ticket_id)
        assert corrective is not None
        # Out of tolerance is a fault: the ventilator's life-support floor makes it P2.
        assert corrective.priority == Priority.P2
        assert corrective.signature == f"plan:{plan_id}:out_of_tolerance"
        due_row = s.scalars(select(MaintenanceDue)).one()
        assert (due_row.last_done_at, due_row.next_due_at, due_row.ticket_id) == (
            done, done + timedelta(days=180), None)
        planned = s.get(Ticket, entry.ticket_id)
        assert planned is not None
        assert any("record #" in e.note for e in planned.events)
        assert s.scalar(select(func.count()).select_from(AuditLog).where(
            AuditLog.action == "maintenance.completed")) == 1
    # The next pass finds nothing due: the work is done.
    with factory() as s, s.begin():
        assert service.refresh(s, now=due, ticket_rules=RULES).tickets_opened == 0


def test_a_bad_plan_writes_nothing(factory: sessionmaker[Session], org: Org) -> None:
    with factory() as s, s.begin():
        with pytest.raises(InvalidRequest):
            service.create_plan(s, kind=MaintenanceKind.PREVENTIVE, title="x", actor=ENGINEER,
                                now=T0, device_id="vent-1", device_model="ventilator",
                                interval_days=10)
        with pytest.raises(InvalidRequest):
            service.create_plan(s, kind=MaintenanceKind.PREVENTIVE, title="x", actor=ENGINEER,
                                now=T0, device_id="vent-1")
        with pytest.raises(NotFound):
            service.create_plan(s, kind=MaintenanceKind.PREVENTIVE, title="x", actor=ENGINEER,
                                now=T0, device_id="nope-1", interval_days=10)
        assert s.scalar(select(func.count()).select_from(AuditLog)) == 0


def test_updating_a_plan_checks_the_result_as_a_whole(
        factory: sessionmaker[Session], org: Org) -> None:
    with factory() as s, s.begin():
        plan = service.create_plan(s, kind=MaintenanceKind.CALIBRATION, title="Cal",
                                   actor=ENGINEER, now=T0, device_model="ventilator",
                                   interval_days=90, interval_usage_hours=500)
        # Dropping one interval leaves the other.
        service.update_plan(s, plan_id=plan.id, changes={"interval_days": None},
                            actor=ENGINEER, now=T0)
        for changes in ({"interval_usage_hours": None}, {"lead_days": -1}, {"title": " "},
                        {"tolerances": {"flow": {"low": "x"}}}, {"device_model": "mri"}):
            with pytest.raises(InvalidRequest):
                service.update_plan(s, plan_id=plan.id, changes=changes, actor=ENGINEER, now=T0)
        with pytest.raises(NotFound):
            service.update_plan(s, plan_id=999_999, changes={}, actor=ENGINEER, now=T0)
        assert (plan.interval_days, plan.interval_usage_hours, plan.lead_days) == (None, 500, 14)
        assert plan.device_model == "ventilator"


def test_visible_plans_and_records_stay_within_the_devices_given(
        factory: sessionmaker[Session], org: Org) -> None:
    with factory() as s, s.begin():
        by_model = service.create_plan(s, kind=MaintenanceKind.PREVENTIVE, title="PM",
                                       actor=ENGINEER, now=T0, device_model="ventilator",
                                       interval_days=30)
        mri = service.create_plan(s, kind=MaintenanceKind.PREVENTIVE, title="MRI",
                                  actor=ENGINEER, now=T0, device_id="mri-1", interval_days=30)
        for device in ("vent-1", "mri-1"):
            plan = by_model if device == "vent-1" else mri
            service.complete(s, plan_id=plan.id, device_id=device, actor=ENGINEER,
                             performed_at=T0, now=T0, ticket_rules=RULES)
        ventilators = select(Device.id).where(Device.model == "ventilator")
        assert [p.id for p in service.visible_plans(s, device_ids=ventilators)] == [by_model.id]
        assert [p.id for p in service.visible_plans(s, device_ids=None)] == [by_model.id, mri.id]
        assert [p.id for p in service.visible_plans(s, device_ids=None, device_id="mri-1")] == [
            mri.id]
        assert service.visible_plans(s, device_ids=None, device_id="nope-1") == []
        assert [r.device_id for r in service.visible_records(s, device_ids=ventilators)] == [
            "vent-1"]
        assert [r.device_id for r in service.visible_records(s, device_ids=None)] == [
            "mri-1", "vent-1"]
