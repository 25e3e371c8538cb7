"""Device fault codes become tickets: the service desk's intake of what ingest recorded.

Ingest writes every event a device raises (``DeviceEvent``) and nothing else;
this pass reads the events not handled yet, files or joins a ticket for each
warning, error and critical code (signature ``event:<code>``: one ticket per
device and code while it is open), and marks every event handled with the
ticket, in the same transaction. A crash before commit leaves the events
unhandled for the next pass; a commit marks them, so none is filed twice.
A device in maintenance raises nothing: its codes are the engineer's own work.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.db.enums import DeviceState, Severity, TicketSource
from vigil.devices.models import Device, DeviceEvent
from vigil.tickets.priority import Signal, TicketRules
from vigil.tickets.service import Evidence, open_or_join

# Info codes are a device's diary, not a fault.
TICKETED = frozenset({Severity.WARNING, Severity.ERROR, Severity.CRITICAL})


@dataclass
class IntakeReport:
    events: int = 0
    opened: int = 0
    joined: int = 0
    ignored: int = 0


def signature_of(code: str) -> str:
    return f"event:{code}"[:200]


def handle_device_events(session: Session, *, now: datetime, rules: TicketRules,
                         limit: int = 500) -> IntakeReport:
    """One pass over up to ``limit`` unhandled events, oldest first, in the caller's transaction.

    On PostgreSQL, ``SKIP LOCKED`` lets several job workers share the backlog.
    """
    report = IntakeReport()
    events = session.scalars(
        select(DeviceEvent).where(DeviceEvent.handled_at.is_(None))
        .order_by(DeviceEvent.id).limit(limit).with_for_update(skip_locked=True)).all()
    for event in events:
        report.events += 1
        event.handled_at = now
        device = session.get(Device, event.device_id)
        if (Severity(event.severity) not in TICKETED or device is None
                or device.state == DeviceState.MAINTENANCE):
            report.ignored += 1
            continue
        opened = open_or_join(
            session, device_id=event.device_id, signature=signature_of(event.code),
            signal=Signal(TicketSource.DEVICE_EVENT, severity=Severity(event.severity)),
            title=f"{event.code} on {event.device_id}: {event.text}"[:200] if event.text
            else f"{event.code} on {event.device_id}",
            description=event.text,
            evidence=Evidence(at=event.ts, summary=f"{event.severity} {event.code}",
                              data={"code": event.code, "severity": event.severity,
                                    "text": event.text, "seq": event.seq}),
            now=now, rules=rules)
        event.ticket_id = opened.ticket.id
        report.opened += opened.created
        report.joined += not opened.created
    return report
