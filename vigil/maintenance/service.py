"""Maintenance plans applied inside the caller's transaction: due dates, tickets, completions.

``refresh`` is what the scheduled job runs: for every active plan and every
device it covers, it works out the next due date (``rules.next_due``), opens a
P3 ticket through the ticket service a lead time ahead, and escalates work left
overdue. ``complete`` records the work (who, when, results, measured values
against tolerances), opens a corrective ticket when a value is out of
tolerance, and sets the next due date. Like every service, nothing here commits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from vigil.audit.service import record
from vigil.db.enums import (
    FINAL_TICKET_STATES,
    MaintenanceKind,
    Priority,
    TicketEventKind,
    TicketSource,
)
from vigil.devices.models import Device
from vigil.errors import InvalidRequest, NotFound
from vigil.maintenance import rules
from vigil.maintenance.models import MaintenanceDue, MaintenancePlan, MaintenanceRecord
from vigil.tickets import service as tickets
from vigil.tickets.models import Ticket
from vigil.tickets.priority import Signal, TicketRules
from vigil.tickets.service import Evidence
from vigil.tickets.transitions import SYSTEM, Actor

# Risk classes whose devices' planned maintenance is reported on its own (accreditation
# expects 100 % completion for them).
HIGH_RISK_CLASSES = frozenset({"life_support", "high"})


def signature_of(plan: MaintenancePlan) -> str:
    return f"plan:{plan.id}:{plan.kind}"


def corrective_signature(plan: MaintenancePlan) -> str:
    return f"plan:{plan.id}:out_of_tolerance"


def interval_of(plan: MaintenancePlan) -> rules.Interval:
    return rules.Interval(days=plan.interval_days, usage_hours=plan.interval_usage_hours)


def tolerances_of(plan: MaintenancePlan) -> dict[str, rules.Tolerance]:
    return {name: rules.Tolerance.from_json(name, doc) for name, doc in plan.tolerances.items()}


def create_plan(session: Session, *, kind: MaintenanceKind, title: str, actor: Actor,
                now: datetime, device_id: str | None = None, device_model: str | None = None,
                interval_days: int | None = None, interval_usage_hours: float | None = None,
                lead_days: int = 14, grace_days: int = 0, procedure: str = "",
                tolerances: Mapping[str, Mapping[str, Any]] | None = None,
                baseline: datetime | None = None) -> MaintenancePlan:
    """A plan for one device or every device of a model; checked before anything is written."""
    if (device_id is None) == (device_model is None):
        raise InvalidRequest("a plan covers one device or one device model")
    rules.Interval(days=interval_days, usage_hours=interval_usage_hours)
    if lead_days < 0 or grace_days < 0:
        raise InvalidRequest("lead and grace days cannot be negative")
    for name, doc in (tolerances or {}).items():
        rules.Tolerance.from_json(name, doc)
    if device_id is not None and session.get(Device, device_id) is None:
        raise NotFound(f"device {device_id!r} is not registered")
    plan = MaintenancePlan(kind=kind, title=title, device_id=device_id,
                           device_model=device_model, interval_days=interval_days,
                           interval_usage_hours=interval_usage_hours, lead_days=lead_days,
                           grace_days=grace_days, procedure=procedure,
                           tolerances={k: dict(v) for k, v in (tolerances or {}).items()},
                           last_done_at=baseline, active=True)
    session.add(plan)
    session.flush()
    record(session, actor=actor.name, action="maintenance.plan_created",
           object_type="maintenance_plan", object_id=plan.id, at=now,
           details={"kind": MaintenanceKind(kind).value, "title": title, "device": device_id,
                    "model": device_model, "days": interval_days,
                    "usage_hours": interval_usage_hours})
    return plan


def devices_of(session: Session, plan: MaintenancePlan) -> list[Device]:
    if plan.device_id is not None:
        device = session.get(Device, plan.device_id)
        return [device] if device is not None else []
    return list(session.scalars(select(Device).where(Device.model == plan.device_model)
                                .order_by(Device.id)))


def _baseline(plan: MaintenancePlan, device: Device, now: datetime) -> datetime:
    if plan.last_done_at is not None:
        return plan.last_done_at
    if device.install_date is not None:
        return datetime.combine(device.install_date, time(), tzinfo=UTC)
    return now


def due_for(session: Session, *, plan: MaintenancePlan, device: Device,
            now: datetime) -> MaintenanceDue:
    """The device's row on the plan, made from the plan's baseline the first time."""
    due = session.scalars(select(MaintenanceDue).where(
        MaintenanceDue.plan_id == plan.id, MaintenanceDue.device_id == device.id)
        .with_for_update()).first()
    if due is None:
        due = MaintenanceDue(plan_id=plan.id, device_id=device.id,
                             last_done_at=_baseline(plan, device, now))
        session.add(due)
        session.flush()
    return due


@dataclass
class RefreshReport:
    checked: int = 0
    tickets_opened: int = 0
    escalated: int = 0


def _ticket_open(session: Session, ticket_id: int | None) -> Ticket | None:
    if ticket_id is None:
        return None
    ticket = session.get(Ticket, ticket_id)
    if ticket is None or ticket.state in FINAL_TICKET_STATES:
        return None
    return ticket


def refresh(session: Session, *, now: datetime, ticket_rules: TicketRules,
            usage: Mapping[str, rules.Usage] | None = None,
            actor: Actor = SYSTEM) -> RefreshReport:
    """One pass of the maintenance job over every active plan and device it covers.

    ``usage`` holds the latest usage-hours reading per device (from telemetry).
    """
    usage = usage or {}
    report = RefreshReport()
    plans = list(session.scalars(select(MaintenancePlan).where(MaintenancePlan.active.is_(True))
                                 .order_by(MaintenancePlan.id)))
    for plan in plans:
        earliest: datetime | None = None
        for device in devices_of(session, plan):
            report.checked += 1
            due = due_for(session, plan=plan, device=device, now=now)
            reading = usage.get(device.id)
            if (due.last_usage_hours is None and reading is not None
                    and plan.interval_usage_hours is not None):
                # The counter when work was last done is unknown: count from the first reading.
                due.last_usage_hours, due.last_usage_at = reading.hours, reading.at
            answer = rules.next_due(interval_of(plan), done_at=due.last_done_at,
                                    done_usage_hours=due.last_usage_hours,
                                    done_usage_at=due.last_usage_at, usage=reading)
            due.next_due_at, due.due_usage_hours = answer.at, answer.usage_hours
            if answer.at is not None and (earliest is None or answer.at < earliest):
                earliest = answer.at
            state = rules.status(answer.at, now=now, lead=timedelta(days=plan.lead_days),
                                 grace=timedelta(days=plan.grace_days))
            if state is rules.DueStatus.SCHEDULED:
                continue
            ticket = _ticket_open(session, due.ticket_id)
            if ticket is None:
                ticket = _open_ticket(session, plan=plan, device=device, answer=answer,
                                      ticket_rules=ticket_rules, actor=actor, now=now)
                due.ticket_id = ticket.id
                due.escalated_at = None
                report.tickets_opened += 1
            if state is rules.DueStatus.OVERDUE and due.escalated_at is None:
                tickets.escalate(session, ticket_id=ticket.id, priority=Priority.P2, actor=actor,
                                 now=now, note=f"{plan.kind} work overdue since "
                                               f"{answer.at.isoformat() if answer.at else '?'}")
                due.escalated_at = now
                report.escalated += 1
        plan.next_due_at = earliest
    return report


def _open_ticket(session: Session, *, plan: MaintenancePlan, device: Device,
                 answer: rules.Due, ticket_rules: TicketRules, actor: Actor,
                 now: datetime) -> Ticket:
    when = answer.at.isoformat() if answer.at else "now"
    opened = tickets.open_or_join(
        session, device_id=device.id, signature=signature_of(plan),
        signal=Signal(TicketSource.MAINTENANCE_PLAN, failure_class=False),
        title=f"{plan.kind.capitalize()} due: {plan.title}"[:200],
        description=f"{plan.title}, due {when} (by {answer.by}).\n{plan.procedure}".strip(),
        evidence=Evidence(at=now, summary=f"due {when} by {answer.by}",
                          data={"plan_id": plan.id, "due_at": when, "by": answer.by,
                                "due_usage_hours": answer.usage_hours}),
        now=now, rules=ticket_rules, actor=actor)
    return opened.ticket


def complete(session: Session, *, plan_id: int, device_id: str, actor: Actor,
             performed_at: datetime, now: datetime, ticket_rules: TicketRules,
             results: str = "", measurements: Mapping[str, float] | None = None,
             usage_hours: float | None = None,
             engineer_user_id: int | None = None) -> MaintenanceRecord:
    """Record work done on a plan and set the next due date.

    A measured value outside its tolerance opens (or joins) a corrective ticket
    for the device, a fault like any other (the risk-class floor applies).
    """
    plan = session.get(MaintenancePlan, plan_id)
    if plan is None:
        raise NotFound(f"maintenance plan {plan_id} does not exist")
    device = session.get(Device, device_id)
    if device is None or device not in devices_of(session, plan):
        raise NotFound(f"plan {plan_id} does not cover device {device_id!r}")
    if performed_at > now:
        raise InvalidRequest("maintenance cannot be recorded as done in the future")
    checked = rules.check_measurements(measurements or {}, tolerances_of(plan))
    due = due_for(session, plan=plan, device=device, now=now)
    ticket = _ticket_open(session, due.ticket_id)
    entry = MaintenanceRecord(
        plan_id=plan.id, device_id=device.id, kind=plan.kind,
        ticket_id=ticket.id if ticket is not None else due.ticket_id, due_at=due.next_due_at,
        performed_at=performed_at, performed_by=actor.name, engineer_user_id=engineer_user_id,
        usage_hours=usage_hours, results=results, measurements=[m.as_json() for m in checked],
        passed=all(m.within for m in checked), created_at=now)
    session.add(entry)
    reading = rules.Usage(usage_hours, performed_at) if usage_hours is not None else None
    answer = rules.next_due(interval_of(plan), done_at=performed_at,
                            done_usage_hours=usage_hours, usage=reading)
    due.last_done_at, due.last_usage_hours = performed_at, usage_hours
    due.last_usage_at = performed_at if usage_hours is not None else None
    due.next_due_at, due.due_usage_hours = answer.at, answer.usage_hours
    due.ticket_id, due.escalated_at = None, None
    entry.next_due_at = answer.at
    session.flush()
    out = [m for m in checked if not m.within]
    if out:
        opened = tickets.open_or_join(
            session, device_id=device.id, signature=corrective_signature(plan),
            signal=Signal(TicketSource.MAINTENANCE_PLAN, failure_class=True),
            title=f"Out of tolerance after {plan.kind}: {plan.title}"[:200],
            description="; ".join(f"{m.name} = {m.value:g} outside "
                                  f"[{_limit(m.tolerance, 'low')}, {_limit(m.tolerance, 'high')}]"
                                  for m in out),
            evidence=Evidence(at=performed_at, summary=f"{len(out)} values out of tolerance",
                              data={"record_id": entry.id,
                                    "measurements": [m.as_json() for m in out]}),
            now=now, rules=ticket_rules, actor=actor)
        entry.corrective_ticket_id = opened.ticket.id
    if ticket is not None:
        tickets.record_event(session, ticket, kind=TicketEventKind.COMMENT, actor=actor,
                             at=now, note=f"{plan.kind} done: record #{entry.id}"
                                          f"{'' if entry.passed else ', out of tolerance'}",
                             data={"maintenance_record_id": entry.id, "passed": entry.passed})
    record(session, actor=actor.name, action="maintenance.completed",
           object_type="maintenance_record", object_id=entry.id, at=now,
           details={"plan_id": plan.id, "device": device.id, "passed": entry.passed,
                    "next_due_at": answer.at.isoformat() if answer.at else None,
                    "corrective_ticket_id": entry.corrective_ticket_id})
    return entry


def _limit(tolerance: rules.Tolerance | None, side: str) -> str:
    value = getattr(tolerance, side) if tolerance is not None else None
    return "-" if value is None else f"{value:g}"


def plans_for_device(session: Session, *, device: Device) -> list[MaintenancePlan]:
    return list(session.scalars(select(MaintenancePlan).where(
        MaintenancePlan.active.is_(True),
        or_(MaintenancePlan.device_id == device.id,
            MaintenancePlan.device_model == device.model)).order_by(MaintenancePlan.id)))


# What a plan's owner may change after creating it; coverage (device or model) and kind stay.
PLAN_FIELDS = frozenset({"title", "interval_days", "interval_usage_hours", "lead_days",
                         "grace_days", "procedure", "tolerances", "active"})


def update_plan(session: Session, *, plan_id: int, changes: Mapping[str, Any], actor: Actor,
                now: datetime) -> MaintenancePlan:
    """Change a plan's schedule, procedure, tolerances or whether it is active.

    The result is checked as a whole before anything is written: a plan keeps an
    interval, non-negative lead and grace days and valid tolerances. The next
    pass of ``refresh`` recomputes due dates from the new interval.
    """
    unknown = set(changes) - PLAN_FIELDS
    if unknown:
        raise InvalidRequest(f"a plan's {', '.join(sorted(unknown))} cannot be changed")
    plan = session.scalars(select(MaintenancePlan).where(MaintenancePlan.id == plan_id)
                           .with_for_update()).first()
    if plan is None:
        raise NotFound(f"maintenance plan {plan_id} does not exist")
    merged = {name: getattr(plan, name) for name in PLAN_FIELDS} | dict(changes)
    rules.Interval(days=merged["interval_days"], usage_hours=merged["interval_usage_hours"])
    if merged["lead_days"] < 0 or merged["grace_days"] < 0:
        raise InvalidRequest("lead and grace days cannot be negative")
    if not str(merged["title"]).strip():
        raise InvalidRequest("a plan needs a title")
    for name, doc in (merged["tolerances"] or {}).items():
        rules.Tolerance.from_json(name, doc)
    for name, value in changes.items():
        setattr(plan, name, {k: dict(v) for k, v in value.items()} if name == "tolerances"
                else value)
    record(session, actor=actor.name, action="maintenance.plan_updated",
           object_type="maintenance_plan", object_id=plan.id, at=now,
           details={"fields": sorted(changes)})
    return plan


def visible_plans(session: Session, *, device_ids: Any | None, device_id: str | None = None,
                  device_model: str | None = None, active: bool | None = None,
                  plan_id: int | None = None, limit: int = 200) -> list[MaintenancePlan]:
    """Plans, optionally for one device (its own and its model's) or one model.

    ``device_ids`` (a select of device ids, or None for every device) bounds what
    the caller may see: a plan of one of those devices, or of a model one of them has.
    """
    query = select(MaintenancePlan)
    if device_ids is not None:
        models = select(Device.model).where(Device.id.in_(device_ids))
        query = query.where(or_(MaintenancePlan.device_id.in_(device_ids),
                                MaintenancePlan.device_model.in_(models)))
    if device_id is not None:
        device = session.get(Device, device_id)
        if device is None:
            return []
        query = query.where(or_(MaintenancePlan.device_id == device.id,
                                MaintenancePlan.device_model == device.model))
    if device_model is not None:
        query = query.where(or_(MaintenancePlan.device_model == device_model,
                                MaintenancePlan.device_id.in_(
                                    select(Device.id).where(Device.model == device_model))))
    if active is not None:
        query = query.where(MaintenancePlan.active.is_(active))
    if plan_id is not None:
        query = query.where(MaintenancePlan.id == plan_id)
    return list(session.scalars(query.order_by(MaintenancePlan.id).limit(limit)))


def visible_records(session: Session, *, device_ids: Any | None, device_id: str | None = None,
                    device_model: str | None = None, plan_id: int | None = None,
                    before_id: int | None = None, limit: int = 100) -> list[MaintenanceRecord]:
    """Work done, newest first, within ``device_ids`` (a select, or None for every device)."""
    query = select(MaintenanceRecord)
    if device_ids is not None:
        query = query.where(MaintenanceRecord.device_id.in_(device_ids))
    if device_id is not None:
        query = query.where(MaintenanceRecord.device_id == device_id)
    if device_model is not None:
        query = query.where(MaintenanceRecord.device_id.in_(
            select(Device.id).where(Device.model == device_model)))
    if plan_id is not None:
        query = query.where(MaintenanceRecord.plan_id == plan_id)
    if before_id is not None:
        query = query.where(MaintenanceRecord.id < before_id)
    return list(session.scalars(query.order_by(MaintenanceRecord.id.desc()).limit(limit)))
