"""Fleet tickets against SQLite and PostgreSQL: one fault signature on many devices of one model
across sites within days is one ticket for the service manager, linking the device tickets."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.tickets.support import Fleet, seed, seed_fleet
from vigil.db.enums import (
    Category,
    Priority,
    Severity,
    TicketEventKind,
    TicketScope,
    TicketSource,
    TicketState,
)
from vigil.db.session import make_engine, make_session_factory, transaction
from vigil.tickets import service, survey
from vigil.tickets.escalation import EscalationPolicy
from vigil.tickets.models import Notification, Ticket, TicketEvent
from vigil.tickets.priority import Signal, TicketRules, read_rules_document
from vigil.tickets.service import Evidence
from vigil.tickets.transitions import Actor, ActorRole, Request
from vigil.tickets.watchdog import Recipients, run_pass

RULES = TicketRules.load()  # five devices at three sites within seven days
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
MANAGER = Actor("mia", ActorRole.MANAGER)
WARNING = Signal(TicketSource.DEVICE_EVENT, severity=Severity.WARNING)  # P3
CRITICAL = Signal(TicketSource.DEVICE_EVENT, severity=Severity.CRITICAL)  # P1
CRC = "event:firmware_crc"


@pytest.fixture
def fleet(factory: sessionmaker[Session]) -> Fleet:
    return seed_fleet(factory)


def open_at(factory: sessionmaker[Session], device: str, at: datetime, *,
            signature: str = CRC, signal: Signal = WARNING,
            rules: TicketRules = RULES) -> service.Opened:
    with factory(expire_on_commit=False) as s, s.begin():
        return service.open_or_join(
            s, device_id=device, signature=signature, signal=signal,
            title=f"{signature} on {device}", evidence=Evidence(at=at, summary="seen"),
            now=at, rules=rules)


def tickets_of(s: Session, scope: TicketScope) -> list[Ticket]:
    return list(s.scalars(select(Ticket).where(Ticket.scope == scope).order_by(Ticket.id)))


def links(s: Session, ticket_id: int) -> list[TicketEvent]:
    return list(s.scalars(select(TicketEvent).where(TicketEvent.ticket_id == ticket_id,
                                                    TicketEvent.kind == TicketEventKind.LINK)))


def test_a_defect_across_sites_is_one_fleet_ticket(factory: sessionmaker[Session],
                                                  fleet: Fleet) -> None:
    (a1, a2, _a3), (b1, b2), (c1,), (d1, _d2) = fleet.pumps
    # Four pumps at two sites: not yet a fleet signal; the monitor's ticket is another model's.
    for i, device in enumerate([a1, a2, b1, b2]):
        assert open_at(factory, device, T0 + i * DAY).fleet_ticket is None
    assert open_at(factory, fleet.monitors[2], T0 + 3 * DAY).fleet_ticket is None
    fifth = open_at(factory, c1, T0 + 4 * DAY, signal=CRITICAL)
    assert fifth.created and fifth.fleet_ticket is not None
    with factory() as s:
        [ticket] = tickets_of(s, TicketScope.FLEET)
        assert ticket.id == fifth.fleet_ticket.id
        assert (ticket.device_id, ticket.site_id, ticket.model) == (None, None, "IP-100")
        assert ticket.title == f"Fleet: {CRC} on 5 IP-100 devices at 3 sites"
        # The most urgent of the linked tickets; the category from the signature.
        assert ticket.priority == Priority.P1 and ticket.category == Category.SOFTWARE
        assert ticket.source == TicketSource.DEVICE_EVENT and ticket.state == TicketState.OPEN
        assert ticket.contract_id is None and ticket.respond_by == T0 + 4 * DAY + timedelta(hours=1)
        pumps = [t for t in tickets_of(s, TicketScope.DEVICE) if t.model is None
                 and t.device_id != fleet.monitors[2]]
        assert ticket.evidence["tickets"] == [t.id for t in pumps]
        assert ticket.evidence["devices"] == sorted([a1, a2, b1, b2, c1])
        assert ticket.evidence["sites"] == sorted(fleet.sites[:3])
        # Linked, not parented: each device is still worked on its own.
        for pump in pumps:
            assert pump.parent_id is None
            assert [e.data for e in links(s, pump.id)] == [{"fleet_ticket_id": ticket.id}]
        monitor = s.scalars(select(Ticket).where(Ticket.device_id == fleet.monitors[2])).one()
        assert links(s, monitor.id) == []
        assert [e.data["tickets"] for e in links(s, ticket.id)] == [[t.id for t in pumps]]
        fleet_id = ticket.id
    # A sixth pump at a fourth site joins the open fleet ticket.
    sixth = open_at(factory, d1, T0 + 5 * DAY)
    assert sixth.fleet_ticket is not None and sixth.fleet_ticket.id == fleet_id
    # More evidence on a ticket already open links nothing again.
    again = open_at(factory, d1, T0 + 5 * DAY + timedelta(hours=1))
    assert not again.created and again.fleet_ticket is None
    with factory() as s:
        [ticket] = tickets_of(s, TicketScope.FLEET)
        assert ticket.title == f"Fleet: {CRC} on 6 IP-100 devices at 4 sites"
        assert len(ticket.evidence["tickets"]) == 6 and ticket.evidence_count == 2
        assert ticket.evidence["sites"] == sorted(fleet.sites)
        assert ticket.evidence["latest"]["data"] == {}
        [joined] = s.scalars(select(Ticket).where(Ticket.device_id == d1)).all()
        assert [e.data for e in links(s, joined.id)] == [{"fleet_ticket_id": fleet_id}]


def test_the_window_false_alarms_and_site_wide_signatures(factory: sessionmaker[Session],
                                                          fleet: Fleet) -> None:
    (a1, a2, a3), (b1, b2), (c1,), (d1, d2) = fleet.pumps
    # Two weeks ago is outside the seven days.
    open_at(factory, a1, T0 - 14 * DAY)
    for i, device in enumerate([a2, b1, c1]):
        open_at(factory, device, T0 + i * timedelta(hours=1))
    cancelled = open_at(factory, d1, T0 + 4 * timedelta(hours=1)).ticket
    with factory() as s, s.begin():
        service.transition(s, ticket_id=cancelled.id, to=TicketState.CANCELLED, actor=MANAGER,
                           request=Request(reason="false alarm"), now=T0 + 5 * timedelta(hours=1))
    assert open_at(factory, b2, T0 + 6 * timedelta(hours=1)).fleet_ticket is None
    # The fifth device within the week, not counting the false alarm: now it is one.
    assert open_at(factory, d2, T0 + DAY).fleet_ticket is not None
    # The air of six rooms at once is no defect of the pumps.
    heat = Signal(TicketSource.ANALYTICS, score=0.95)
    for device in [a1, a3, b1, b2, c1, d1, d2]:
        assert open_at(factory, device, T0 + 2 * DAY, signature="anomaly:ambient_temp",
                       signal=heat).fleet_ticket is None
    with factory() as s:
        [ticket] = tickets_of(s, TicketScope.FLEET)
        assert ticket.signature == CRC and len(ticket.evidence["tickets"]) == 5


def test_a_finished_fleet_ticket_needs_new_evidence_for_the_next(
        factory: sessionmaker[Session], fleet: Fleet) -> None:
    (a1, a2, a3), (b1, b2), (c1,), (d1, d2) = fleet.pumps
    for i, device in enumerate([a1, a2, b1, b2]):
        open_at(factory, device, T0 + i * timedelta(hours=1))
    first = open_at(factory, c1, T0 + 5 * timedelta(hours=1)).fleet_ticket
    assert first is not None
    with factory() as s, s.begin():
        service.transition(s, ticket_id=first.id, to=TicketState.CANCELLED, actor=MANAGER,
                           request=Request(reason="coincidence: five different causes"),
                           now=T0 + DAY)
    with factory() as s:
        # The device tickets were linked, not grouped: they stay open for their repairs.
        states = {t.state for t in tickets_of(s, TicketScope.DEVICE)}
        assert states == {TicketState.OPEN}
    # The same week's earlier tickets do not count again.
    for i, device in enumerate([a3, d1]):
        assert open_at(factory, device, T0 + DAY + (i + 1) * timedelta(hours=1)) \
            .fleet_ticket is None
    with factory() as s:
        assert len(tickets_of(s, TicketScope.FLEET)) == 1


def test_a_site_grouped_device_ticket_is_linked_and_keeps_its_site_parent(
        factory: sessionmaker[Session], fleet: Fleet) -> None:
    """A signature both site-wide and fleet-wide (as a service organisation may configure)."""
    doc = read_rules_document()
    doc["fleet_grouping"] = {"signatures": ["anomaly:*"], "exclude": []}
    rules = TicketRules.from_document(doc)
    sag = Signal(TicketSource.ANALYTICS, score=0.95)
    (a1, a2, a3), (b1, _b2), (c1,), _d = fleet.pumps
    opened = [open_at(factory, device, T0 + i * timedelta(minutes=10), rules=rules,
                      signature="anomaly:supply_voltage_v", signal=sag)
              for i, device in enumerate([a1, a2, a3, b1, c1])]
    assert opened[2].site_ticket is not None and opened[-1].fleet_ticket is not None
    with factory() as s:
        [site_ticket] = tickets_of(s, TicketScope.SITE)
        [fleet_ticket] = tickets_of(s, TicketScope.FLEET)
        device_tickets = tickets_of(s, TicketScope.DEVICE)
        assert [t.parent_id for t in device_tickets] == [site_ticket.id] * 3 + [None] * 2
        assert fleet_ticket.evidence["tickets"] == [t.id for t in device_tickets]
        for t in device_tickets:
            assert [e.data for e in links(s, t.id)][-1] == {"fleet_ticket_id": fleet_ticket.id}
    # The site's cause found and cancelled: its device tickets follow, the fleet ticket not.
    with factory() as s, s.begin():
        service.transition(s, ticket_id=site_ticket.id, to=TicketState.CANCELLED,
                           actor=MANAGER, request=Request(reason="building's mains"),
                           now=T0 + timedelta(hours=3))
    with factory() as s:
        ticket = s.get(Ticket, fleet_ticket.id)
        assert ticket is not None and ticket.state == TicketState.OPEN


def test_a_fleet_ticket_closes_without_a_customers_sign_off(factory: sessionmaker[Session],
                                                           fleet: Fleet) -> None:
    for i, device in enumerate(["pump-1", "pump-2", "pump-4", "pump-5", "pump-6"]):
        last = open_at(factory, device, T0 + i * timedelta(hours=1))
    assert last.fleet_ticket is not None
    fleet_id, at = last.fleet_ticket.id, T0 + DAY
    with factory() as s, s.begin():
        for to, request in [
                (TicketState.ACKNOWLEDGED, Request()), (TicketState.DIAGNOSING, Request()),
                (TicketState.REPAIRED, Request(diagnosis_note="bad batch of flash chips")),
                (TicketState.VERIFIED, Request(verification_result="firmware 2.5 on all")),
                (TicketState.CLOSED, Request())]:
            service.transition(s, ticket_id=fleet_id, to=to, actor=MANAGER, request=request,
                               now=at)
    with factory() as s:
        ticket = s.get(Ticket, fleet_id)
        assert ticket is not None and ticket.state == TicketState.CLOSED
        assert {t.state for t in tickets_of(s, TicketScope.DEVICE)} == {TicketState.OPEN}


RACE_ROUNDS = 8


def racer(url: str, device: str, barrier: Any, results: Any) -> None:
    engine = make_engine(url)
    factory = make_session_factory(engine)
    linked = []
    try:
        for i in range(RACE_ROUNDS):
            barrier.wait(timeout=60)  # both start each round together
            at = T0 + timedelta(hours=i)
            with transaction(factory) as s:
                opened = service.open_or_join(
                    s, device_id=device, signature=f"event:F{i:02d}", signal=WARNING,
                    title="race", evidence=Evidence(at=at), now=at, rules=RULES)
                linked.append(opened.fleet_ticket is not None)
        results.put(linked)
    finally:
        engine.dispose()


@pytest.mark.servers
def test_racing_processes_open_one_fleet_ticket(factory: sessionmaker[Session], fleet: Fleet,
                                                sql_url: str) -> None:
    """Two new device tickets at once, each the fifth: one fleet ticket links all six."""
    if not sql_url.startswith("postgresql"):
        pytest.skip("SQLite serialises writers: one process runs the jobs there")
    (a1, a2, _a3), (b1, b2), (c1,), (d1, _d2) = fleet.pumps
    for i in range(RACE_ROUNDS):
        for device in (a1, a2, b1, b2):
            open_at(factory, device, T0 - DAY, signature=f"event:F{i:02d}")
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    workers = [context.Process(target=racer, args=(sql_url, device, barrier, results))
               for device in (c1, d1)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=240)
    assert [w.exitcode for w in workers] == [0, 0]
    assert [results.get(timeout=5), results.get(timeout=5)] == [[True] * RACE_ROUNDS] * 2
    with factory() as s:
        fleet_tickets = tickets_of(s, TicketScope.FLEET)
        assert sorted(t.signature for t in fleet_tickets) == \
            [f"event:F{i:02d}" for i in range(RACE_ROUNDS)]
        for ticket in fleet_tickets:
            assert len(ticket.evidence["tickets"]) == 6
            assert ticket.title.endswith("on 6 IP-100 devices at 4 sites")
        # Every device ticket linked once, by whichever transaction saw it first.
        per_ticket = s.execute(
            select(TicketEvent.ticket_id, func.count()).join(Ticket)
            .where(Ticket.scope == TicketScope.DEVICE, TicketEvent.kind == TicketEventKind.LINK)
            .group_by(TicketEvent.ticket_id)).all()
        assert len(per_ticket) == 6 * RACE_ROUNDS and {n for _, n in per_ticket} == {1}


def test_a_fleet_ticket_escalates_to_engineers_qualified_for_its_model_and_asks_no_customer(
        factory: sessionmaker[Session]) -> None:
    """Two ventilators of one site with a critical code, grouped with looser settings."""
    seed(factory)
    doc = read_rules_document()
    doc["fleet_grouping"] = {"min_devices": 2, "min_sites": 1}
    rules = TicketRules.from_document(doc)
    # Wednesday 09:00 in Berlin: Eve, qualified on ventilators, works office hours.
    at = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
    for device in ("vent-1", "vent-2"):
        opened = open_at(factory, device, at, signal=CRITICAL, rules=rules)
    assert opened.fleet_ticket is not None
    fleet_id = opened.fleet_ticket.id
    with factory() as s, s.begin():
        run_pass(s, now=at + timedelta(minutes=45), recipients=Recipients(email=True),
                 policy=EscalationPolicy.from_document(doc))
    with factory() as s:
        sent = s.scalars(select(Notification).where(Notification.ticket_id == fleet_id)).all()
        assert [(n.recipient, n.data["device_id"], n.data["site_id"]) for n in sent] == [
            ("eve@service.example", None, None)]
    with factory() as s, s.begin():
        for to, request in [
                (TicketState.DIAGNOSING, Request()),
                (TicketState.REPAIRED, Request(diagnosis_note="firmware defect")),
                (TicketState.VERIFIED, Request(verification_result="2.5 rolled out")),
                (TicketState.CLOSED, Request())]:
            service.transition(s, ticket_id=fleet_id, to=to, actor=MANAGER, request=request,
                               now=at + DAY)
    with factory() as s, s.begin():  # closed, and nobody to ask how it went
        assert survey.issue_due(s, now=at + 2 * DAY, link_base="https://vigil.example/s",
                                email=True).surveys == 0
