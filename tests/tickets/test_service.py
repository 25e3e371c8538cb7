"""The ticket services against SQLite and PostgreSQL: one ticket per episode, a ticket's life,
service levels on contract calendars, pauses, site grouping, and refusals that change nothing."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.tickets.support import Org, seed
from vigil.audit.models import AuditLog
from vigil.db.enums import (
    Category,
    PauseReason,
    Priority,
    Severity,
    TicketEventKind,
    TicketScope,
    TicketSource,
    TicketState,
)
from vigil.errors import Conflict, Forbidden, InvalidRequest, InvalidTransition, NotFound
from vigil.tickets import service
from vigil.tickets.models import Contract, Ticket, TicketEvent
from vigil.tickets.priority import Signal, TicketRules
from vigil.tickets.service import Evidence
from vigil.tickets.transitions import Actor, ActorRole, Request

RULES = TicketRules.load()
T0 = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)  # a Friday, 16:00 in Berlin
ENGINEER = Actor("eve", ActorRole.ENGINEER)
MANAGER = Actor("mia", ActorRole.MANAGER)
CUSTOMER = Actor("nora", ActorRole.CUSTOMER)
FAULT = Signal(TicketSource.DEVICE_EVENT, severity=Severity.ERROR)


@pytest.fixture
def org(factory: sessionmaker[Session]) -> Org:
    return seed(factory)


def open_one(s: Session, device: str = "vent-1", signature: str = "event:E042",
             signal: Signal = FAULT, at: datetime = T0, score: float | None = None,
             ) -> service.Opened:
    return service.open_or_join(
        s, device_id=device, signature=signature, signal=signal, title=f"{signature} on {device}",
        evidence=Evidence(at=at, score=score, summary="seen", data={"code": signature}),
        now=at, rules=RULES)


def counts(s: Session) -> tuple[int, int, int]:
    return (s.scalar(select(func.count()).select_from(Ticket)) or 0,
            s.scalar(select(func.count()).select_from(TicketEvent)) or 0,
            s.scalar(select(func.count()).select_from(AuditLog)) or 0)


def test_repeated_evidence_joins_the_open_ticket(factory: sessionmaker[Session], org: Org) -> None:
    with factory() as s, s.begin():
        first = open_one(s, score=0.7)
        second = open_one(s, at=T0 + timedelta(minutes=10), score=0.9)
        third = open_one(s, at=T0 - timedelta(minutes=5), score=0.8)
        assert first.created and not second.created and not third.created
        ticket = first.ticket
        assert second.ticket.id == third.ticket.id == ticket.id
        assert ticket.evidence_count == 3
        assert ticket.first_seen_at == T0 - timedelta(minutes=5)
        assert ticket.last_seen_at == T0 + timedelta(minutes=10)
        assert ticket.peak_score == 0.9
        assert len(ticket.evidence["recent"]) == 3
        # A ventilator's error code: P2 (the life-support floor), 24 x 7 with no contract.
        assert ticket.priority == Priority.P2
        assert ticket.respond_by == T0 + timedelta(hours=2)
        assert ticket.restore_by == T0 + timedelta(hours=72)
        # Another signature or another device is another ticket.
        assert open_one(s, signature="event:E099").created
        assert open_one(s, device="vent-2").created
    with factory() as s:
        tickets, events, audits = counts(s)
        assert tickets == 3
        assert events == audits == 5  # three openings, two pieces of evidence


def test_a_ticket_from_fault_code_to_closing(factory: sessionmaker[Session], org: Org) -> None:
    with factory() as s, s.begin():
        ticket_id = open_one(s).ticket.id
    steps: list[tuple[TicketState, Actor, Request]] = [
        (TicketState.ACKNOWLEDGED, ENGINEER, Request()),
        (TicketState.DIAGNOSING, ENGINEER, Request()),
        (TicketState.DISPATCHED, ENGINEER, Request(diagnosis_note="flow sensor drift")),
        (TicketState.REPAIRED, ENGINEER, Request()),
        (TicketState.VERIFIED, ENGINEER, Request(verification_result="self-test passed")),
        (TicketState.CLOSED, CUSTOMER, Request()),
    ]
    for minutes, (to, actor, request) in enumerate(steps, start=1):
        with factory() as s, s.begin():
            service.transition(s, ticket_id=ticket_id, to=to, actor=actor, request=request,
                               now=T0 + timedelta(minutes=30 * minutes))
    with factory() as s:
        ticket = s.get(Ticket, ticket_id)
        assert ticket is not None
        assert ticket.state == TicketState.CLOSED
        assert ticket.responded_at == T0 + timedelta(minutes=30)
        assert ticket.diagnosed_at == T0 + timedelta(minutes=90)
        assert ticket.restored_at == T0 + timedelta(minutes=120)
        assert ticket.closed_at == ticket.signed_off_at == T0 + timedelta(minutes=180)
        moves = [(e.from_state, e.to_state, e.actor) for e in ticket.events
                 if e.kind == TicketEventKind.TRANSITION]
        assert moves[0] == (None, "open", "vigil")
        assert moves[-1] == ("verified", "closed", "nora")
        assert len(moves) == 7
        actions = s.scalars(select(AuditLog.action).where(AuditLog.object_id == str(ticket_id))
                            .order_by(AuditLog.id)).all()
        assert actions == ["ticket.transition"] * 7
    with factory() as s, s.begin():
        # The episode is over: the same fault again is a new ticket.
        assert open_one(s, at=T0 + timedelta(days=1)).created


def test_reopening_counts_against_first_time_fix(factory: sessionmaker[Session],
                                                 org: Org) -> None:
    with factory() as s, s.begin():
        ticket_id = open_one(s).ticket.id
        for to, request in [(TicketState.DIAGNOSING, Request()),
                            (TicketState.REPAIRED, Request(diagnosis_note="loose connector")),
                            (TicketState.VERIFIED, Request(verification_result="ok"))]:
            service.transition(s, ticket_id=ticket_id, to=to, actor=ENGINEER, request=request,
                               now=T0)
        service.transition(s, ticket_id=ticket_id, to=TicketState.CLOSED, actor=CUSTOMER, now=T0)
        reopened = service.transition(s, ticket_id=ticket_id, to=TicketState.OPEN, actor=CUSTOMER,
                                      request=Request(reason="alarm is back"),
                                      now=T0 + timedelta(days=2))
        assert reopened.reopen_count == 1
        assert reopened.closed_at is None and reopened.restored_at is None


def test_a_refused_move_changes_nothing(factory: sessionmaker[Session], org: Org) -> None:
    with factory() as s, s.begin():
        ticket_id = open_one(s).ticket.id
    with factory() as s:
        before = counts(s)
    refusals: list[tuple[TicketState, Actor, Request, type[Exception]]] = [
        (TicketState.REPAIRED, ENGINEER, Request(diagnosis_note="x"), InvalidTransition),
        (TicketState.ACKNOWLEDGED, CUSTOMER, Request(), Forbidden),
        (TicketState.CANCELLED, ENGINEER, Request(), InvalidTransition),
    ]
    for to, actor, request, error in refusals:
        with pytest.raises(error), factory() as s, s.begin():
            service.transition(s, ticket_id=ticket_id, to=to, actor=actor, request=request,
                               now=T0)
    with pytest.raises(NotFound), factory() as s, s.begin():
        service.transition(s, ticket_id=10_000, to=TicketState.ACKNOWLEDGED, actor=ENGINEER,
                           now=T0)
    with pytest.raises(NotFound), factory() as s, s.begin():
        open_one(s, device="no-such-device")
    with factory() as s:
        assert counts(s) == before
        ticket = s.get(Ticket, ticket_id)
        assert ticket is not None and ticket.state == TicketState.OPEN


def test_deadlines_run_on_the_contract_calendar(factory: sessionmaker[Session], org: Org) -> None:
    with factory() as s, s.begin():
        s.add(Contract(name="ICU business hours", site_id=org.site_id, hours_start=time(8),
                       hours_end=time(17), workdays=[0, 1, 2, 3, 4],
                       holidays=["2026-12-07"], levels={"P2": {"respond": 240}}))
    with factory() as s, s.begin():
        ticket = open_one(s).ticket
        # Friday 16:00 Berlin + 4 h of 08-17 service, Monday a holiday: Tuesday 11:00 Berlin.
        assert ticket.respond_by == datetime(2026, 12, 8, 10, 0, tzinfo=UTC)
        assert ticket.contract is not None
        # The other site has no contract of its own, nor its customer: 24 x 7 defaults.
        other = open_one(s, device="mri-1").ticket
        assert other.contract is None
        assert other.respond_by == T0 + timedelta(hours=2)


def test_a_pause_moves_the_restore_deadline_out(factory: sessionmaker[Session],
                                                org: Org) -> None:
    with factory() as s, s.begin():
        ticket = open_one(s).ticket
        ticket_id, restore_by = ticket.id, ticket.restore_by
        respond_by = ticket.respond_by
        assert restore_by is not None
        service.pause(s, ticket_id=ticket_id, reason=PauseReason.PARTS, actor=ENGINEER,
                      now=T0 + timedelta(hours=1), note="flow sensor on order")
        assert s.get(Ticket, ticket_id).restore_by is None  # type: ignore[union-attr]
        with pytest.raises(Conflict, match="already paused"):
            service.pause(s, ticket_id=ticket_id, reason=PauseReason.CUSTOMER, actor=ENGINEER,
                          now=T0 + timedelta(hours=2))
    with factory() as s, s.begin():
        resumed = service.resume(s, ticket_id=ticket_id, actor=ENGINEER,
                                 now=T0 + timedelta(hours=11))
        assert resumed.restore_by == restore_by + timedelta(hours=10)
        assert resumed.respond_by == respond_by  # only the restore clock pauses
        kinds = [e.kind for e in resumed.events]
        assert kinds.count(TicketEventKind.PAUSE) == kinds.count(TicketEventKind.RESUME) == 1
    with pytest.raises(Conflict, match="not paused"), factory() as s, s.begin():
        service.resume(s, ticket_id=ticket_id, actor=ENGINEER, now=T0 + timedelta(hours=12))


def test_new_evidence_raises_priority_never_lowers_it(factory: sessionmaker[Session],
                                                      org: Org) -> None:
    with factory() as s, s.begin():
        ticket = open_one(s, device="mri-1", signal=Signal(TicketSource.ANALYTICS,
                                                            hours_to_failure=300)).ticket
        assert ticket.priority == Priority.P3
        open_one(s, device="mri-1", signal=Signal(TicketSource.ANALYTICS, hours_to_failure=12),
                 at=T0 + timedelta(hours=1))
        assert ticket.priority == Priority.P1
        assert ticket.respond_by == T0 + timedelta(hours=1)
        open_one(s, device="mri-1", signal=Signal(TicketSource.ANALYTICS, hours_to_failure=400),
                 at=T0 + timedelta(hours=2))
        assert ticket.priority == Priority.P1


def test_a_site_wide_cause_is_one_site_ticket(factory: sessionmaker[Session], org: Org) -> None:
    heat = Signal(TicketSource.ANALYTICS, score=0.95)
    with factory() as s, s.begin():
        results = [open_one(s, device=f"vent-{i}", signature="anomaly:ambient_temp",
                            signal=heat, at=T0 + timedelta(minutes=i)) for i in range(1, 6)]
    assert [r.site_ticket is None for r in results] == [True, True, False, False, False]
    with factory() as s:
        site_tickets = s.scalars(select(Ticket).where(Ticket.scope == TicketScope.SITE)).all()
        assert len(site_tickets) == 1
        site_ticket = site_tickets[0]
        assert site_ticket.category == Category.ENVIRONMENTAL
        assert site_ticket.site_id == org.site_id and site_ticket.device_id is None
        device_tickets = s.scalars(select(Ticket).where(Ticket.scope == TicketScope.DEVICE)).all()
        # Three device tickets before the group formed; later devices join the site ticket.
        assert len(device_tickets) == 3
        assert {t.parent_id for t in device_tickets} == {site_ticket.id}
        assert site_ticket.evidence_count == 3
        site_id = site_ticket.id
    with factory() as s, s.begin():
        service.transition(s, ticket_id=site_id, to=TicketState.CANCELLED, actor=MANAGER,
                           request=Request(reason="air conditioning repaired by facilities"),
                           now=T0 + timedelta(hours=3))
    with factory() as s:
        states = s.scalars(select(Ticket.state).where(Ticket.parent_id == site_id)).all()
        assert states == [TicketState.CANCELLED] * 3


def test_a_site_episode_opens_the_site_ticket_and_groups_the_open_device_tickets(
        factory: sessionmaker[Session], org: Org) -> None:
    strange = Signal(TicketSource.ANALYTICS, score=0.95)
    with factory() as s, s.begin():
        open_one(s, device="vent-1", signature="anomaly:supply_voltage_v", signal=strange)

    def episode(s: Session, at: datetime) -> service.Opened:
        return service.open_or_join_site(
            s, site_id=org.site_id, signature="anomaly:supply_voltage_v", signal=strange,
            title="Site-wide: supply_voltage_v on 3 of 3 devices at once",
            evidence=Evidence(at=at, score=0.95, summary="sag"),
            devices=["vent-1", "vent-2", "vent-3"], now=at, rules=RULES)

    with factory() as s, s.begin():
        opened = episode(s, T0 + timedelta(minutes=30))
        assert opened.created and opened.site_ticket is opened.ticket
    with factory() as s, s.begin():
        again = episode(s, T0 + timedelta(minutes=50))
        assert not again.created and again.ticket.id == opened.ticket.id
    with factory() as s:
        site_ticket = s.get(Ticket, opened.ticket.id)
        assert site_ticket is not None
        assert (site_ticket.scope, site_ticket.category) == (TicketScope.SITE,
                                                              Category.ELECTRICAL)
        assert site_ticket.evidence["devices"] == ["vent-1", "vent-2", "vent-3"]
        assert site_ticket.evidence_count == 2
        [device_ticket] = s.scalars(select(Ticket).where(Ticket.scope == TicketScope.DEVICE))
        assert device_ticket.parent_id == site_ticket.id


def test_a_site_episode_needs_a_site_wide_signature_and_a_site(
        factory: sessionmaker[Session], org: Org) -> None:
    def episode(s: Session, *, site_id: int, signature: str) -> service.Opened:
        return service.open_or_join_site(
            s, site_id=site_id, signature=signature, signal=Signal(TicketSource.ANALYTICS),
            title="t", evidence=Evidence(at=T0), devices=["vent-1"], now=T0, rules=RULES)

    with factory() as s, s.begin():
        before = counts(s)
        with pytest.raises(InvalidRequest, match="not a site-wide signature"):
            episode(s, site_id=org.site_id, signature="anomaly:flow")
        with pytest.raises(NotFound, match="site 999"):
            episode(s, site_id=999, signature="anomaly:ambient_temp")
        assert counts(s) == before


def test_a_mains_sag_groups_but_coincident_device_faults_do_not(
        factory: sessionmaker[Session], org: Org) -> None:
    strange = Signal(TicketSource.ANALYTICS, score=0.95)
    with factory() as s, s.begin():
        sag = [open_one(s, device=f"vent-{i}", signature="anomaly:supply_voltage_v",
                        signal=strange, at=T0 + timedelta(minutes=i)) for i in range(1, 4)]
        worn = [open_one(s, device=f"vent-{i}", signature="anomaly:flow", signal=strange,
                         at=T0 + timedelta(minutes=i)) for i in range(1, 4)]
    assert sag[-1].site_ticket is not None
    assert all(r.site_ticket is None for r in worn)
    with factory() as s:
        [site_ticket] = s.scalars(select(Ticket).where(Ticket.scope == TicketScope.SITE)).all()
        assert site_ticket.category == Category.ELECTRICAL
        assert site_ticket.signature == "anomaly:supply_voltage_v"


def test_assignment_and_comments_are_history(factory: sessionmaker[Session], org: Org) -> None:
    with factory() as s, s.begin():
        ticket_id = open_one(s).ticket.id
        service.assign(s, ticket_id=ticket_id, assignee_id=org.engineer_user_id, actor=MANAGER,
                       now=T0)
        service.comment(s, ticket_id=ticket_id, actor=ENGINEER, text="on my way", now=T0)
        with pytest.raises(Forbidden):
            service.assign(s, ticket_id=ticket_id, assignee_id=None, actor=CUSTOMER, now=T0)
    with factory() as s:
        ticket = s.get(Ticket, ticket_id)
        assert ticket is not None and ticket.assigned_to_id == org.engineer_user_id
        assert [e.kind for e in ticket.events][-2:] == [TicketEventKind.ASSIGNMENT,
                                                         TicketEventKind.COMMENT]


def test_sign_off_is_the_customers(factory: sessionmaker[Session], org: Org) -> None:
    with factory() as s, s.begin():
        ticket_id = open_one(s).ticket.id
        with pytest.raises(Conflict, match="verified"):
            service.sign_off(s, ticket_id=ticket_id, actor=CUSTOMER,
                             user_id=org.customer_user_id, now=T0)
        with pytest.raises(Forbidden):
            service.sign_off(s, ticket_id=ticket_id, actor=ENGINEER,
                             user_id=org.engineer_user_id, now=T0)


def test_contract_for_prefers_the_sites_own(factory: sessionmaker[Session], org: Org) -> None:
    with factory() as s, s.begin():
        site = s.get(service.Site, org.site_id)
        assert site is not None
        customer_wide = Contract(name="group", customer_id=site.customer_id)
        own = Contract(name="icu", site_id=site.id, valid_to=date(2026, 12, 31))
        s.add_all([customer_wide, own])
        s.flush()

        def pick(on: date) -> Contract | None:
            return service.contract_for(s, site=site, on=on)

        assert pick(date(2026, 12, 4)) is own
        assert pick(date(2027, 1, 1)) is customer_wide


def test_assignee_suggestions_from_the_database(factory: sessionmaker[Session], org: Org) -> None:
    from vigil.engineers.service import suggest_assignee

    wednesday = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    with factory() as s, s.begin():
        vent = open_one(s, at=wednesday).ticket
        mri = open_one(s, device="mri-1", at=wednesday).ticket
        # Eve is qualified for ventilators; Nick's ventilator qualification has expired.
        assert [c.user_id for c in suggest_assignee(s, ticket=vent, now=wednesday)] == [
            org.engineer_user_id]
        assert [c.user_id for c in suggest_assignee(s, ticket=mri, now=wednesday)] == [
            org.night_engineer_user_id]
