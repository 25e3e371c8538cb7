"""Device fault codes recorded by ingest become tickets, each event handled exactly once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.tickets.support import Org, seed
from vigil.db.enums import DeviceState, Priority, Severity, TicketSource
from vigil.devices.models import Device, DeviceEvent
from vigil.tickets.intake import handle_device_events
from vigil.tickets.models import Ticket
from vigil.tickets.priority import TicketRules

RULES = TicketRules.load()
T0 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


@pytest.fixture
def org(factory: sessionmaker[Session]) -> Org:
    return seed(factory)


def raise_code(s: Session, device: str, seq: int, code: str, severity: Severity,
               minutes: int = 0) -> None:
    s.add(DeviceEvent(device_id=device, seq=seq, ts=T0 + timedelta(minutes=minutes), code=code,
                      severity=severity, text=f"{code} raised"))


def test_fault_codes_file_one_ticket_per_code(factory: sessionmaker[Session], org: Org) -> None:
    with factory() as s, s.begin():
        raise_code(s, "vent-1", 1, "E042", Severity.ERROR)
        raise_code(s, "vent-1", 2, "E042", Severity.ERROR, minutes=5)
        raise_code(s, "vent-1", 3, "I001", Severity.INFO)
        raise_code(s, "mri-1", 1, "C900", Severity.CRITICAL)
        raise_code(s, "vent-2", 1, "E042", Severity.ERROR)
        device = s.get(Device, "vent-2")
        assert device is not None
        device.state = DeviceState.MAINTENANCE  # the engineer's own work raises nothing
    with factory() as s, s.begin():
        report = handle_device_events(s, now=T0 + timedelta(minutes=6), rules=RULES)
    assert (report.events, report.opened, report.joined, report.ignored) == (5, 2, 1, 2)
    with factory() as s:
        tickets = {t.device_id: t for t in s.scalars(select(Ticket))}
        assert set(tickets) == {"vent-1", "mri-1"}
        assert tickets["vent-1"].signature == "event:E042"
        assert tickets["vent-1"].evidence_count == 2
        assert tickets["vent-1"].source == TicketSource.DEVICE_EVENT
        assert tickets["mri-1"].priority == Priority.P1
        unhandled = s.scalar(select(func.count()).select_from(DeviceEvent)
                             .where(DeviceEvent.handled_at.is_(None)))
        assert unhandled == 0
        linked = s.scalars(select(DeviceEvent.ticket_id).where(DeviceEvent.device_id == "vent-1",
                                                               DeviceEvent.code == "E042")).all()
        assert linked == [tickets["vent-1"].id] * 2
    with factory() as s, s.begin():
        again = handle_device_events(s, now=T0 + timedelta(minutes=7), rules=RULES)
    assert again.events == 0


def test_a_failed_pass_leaves_the_events_for_the_next(factory: sessionmaker[Session],
                                                      org: Org) -> None:
    with factory() as s, s.begin():
        raise_code(s, "vent-1", 1, "E042", Severity.ERROR)
    with pytest.raises(RuntimeError), factory() as s, s.begin():
        handle_device_events(s, now=T0, rules=RULES)
        raise RuntimeError("the job died before committing")
    with factory() as s, s.begin():
        assert handle_device_events(s, now=T0, rules=RULES).opened == 1
