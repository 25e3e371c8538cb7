"""The satisfaction survey on SQLite and PostgreSQL: one answer per token, before it expires."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.tickets.support import Org, seed
from vigil.db.enums import Severity, TicketSource, TicketState
from vigil.errors import Conflict, Forbidden, InvalidRequest, NotFound
from vigil.tickets import service, survey
from vigil.tickets.models import SatisfactionSurvey, Ticket
from vigil.tickets.priority import Signal, TicketRules
from vigil.tickets.service import Evidence
from vigil.tickets.transitions import Actor, ActorRole, Request

RULES = TicketRules.load()
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ENGINEER = Actor("eve", ActorRole.ENGINEER)
CUSTOMER = Actor("nora", ActorRole.CUSTOMER)


def closed_ticket(s: Session, device: str = "vent-1", at: datetime = T0) -> int:
    """A ticket taken from a fault code to closing, as the desk does it."""
    ticket = service.open_or_join(
        s, device_id=device, signature="event:E042",
        signal=Signal(TicketSource.DEVICE_EVENT, severity=Severity.ERROR), title="E042",
        evidence=Evidence(at=at), now=at, rules=RULES).ticket
    steps = [(TicketState.DIAGNOSING, ENGINEER, Request()),
             (TicketState.REPAIRED, ENGINEER, Request(diagnosis_note="valve worn")),
             (TicketState.VERIFIED, ENGINEER, Request(verification_result="self-test passed")),
             (TicketState.CLOSED, CUSTOMER, Request())]
    for minutes, (to, actor, request) in enumerate(steps, start=1):
        service.transition(s, ticket_id=ticket.id, to=to, actor=actor, request=request,
                           now=at + timedelta(minutes=30 * minutes))
    return ticket.id


@pytest.fixture
def org(factory: sessionmaker[Session]) -> Org:
    return seed(factory)


def test_a_survey_is_answered_once_and_only_its_hash_is_kept(
        factory: sessionmaker[Session], org: Org) -> None:
    with factory() as s, s.begin():
        ticket_id = closed_ticket(s)
        issued = survey.issue(s, ticket_id=ticket_id, now=T0 + timedelta(hours=3))
        token = issued.token
    with factory() as s:
        stored = s.scalars(select(SatisfactionSurvey)).one()
        assert stored.token_hash == survey.token_hash(token) and token not in stored.token_hash
    with factory() as s, s.begin():
        with pytest.raises(InvalidRequest):
            survey.answer(s, token=token, score=6, now=T0 + timedelta(days=1))
        with pytest.raises(NotFound):
            survey.answer(s, token=token + "x", score=4, now=T0 + timedelta(days=1))
        survey.answer(s, token=token, score=4, comment=" quick and friendly ",
                      now=T0 + timedelta(days=1))
    with factory() as s, s.begin():
        with pytest.raises(Conflict):
            survey.answer(s, token=token, score=1, now=T0 + timedelta(days=2))
        with pytest.raises(Conflict):
            survey.issue(s, ticket_id=ticket_id, now=T0 + timedelta(days=2))
    with factory() as s:
        ticket = s.get(Ticket, ticket_id)
        assert ticket is not None
        assert (ticket.satisfaction_score, ticket.satisfaction_comment) == (
            4, "quick and friendly")
        assert [e.note for e in ticket.events][-2:] == ["satisfaction survey sent",
                                                        "satisfaction 4/5"]


def test_an_expired_or_replaced_link_answers_nothing(
        factory: sessionmaker[Session], org: Org) -> None:
    with factory() as s, s.begin():
        ticket_id = closed_ticket(s)
        first = survey.issue(s, ticket_id=ticket_id, now=T0, valid_for=timedelta(days=7))
        with pytest.raises(Forbidden):
            survey.answer(s, token=first.token, score=5, now=T0 + timedelta(days=7))
        second = survey.issue(s, ticket_id=ticket_id, now=T0 + timedelta(days=8))
        with pytest.raises(NotFound):
            survey.answer(s, token=first.token, score=5, now=T0 + timedelta(days=8))
        survey.answer(s, token=second.token, score=5, now=T0 + timedelta(days=9))
        assert s.get(Ticket, ticket_id).satisfaction_score == 5  # type: ignore[union-attr]


def test_only_closed_tickets_get_a_survey(factory: sessionmaker[Session], org: Org) -> None:
    with factory() as s, s.begin():
        ticket = service.open_or_join(
            s, device_id="vent-2", signature="event:E1",
            signal=Signal(TicketSource.DEVICE_EVENT, severity=Severity.ERROR), title="E1",
            evidence=Evidence(at=T0), now=T0, rules=RULES).ticket
        with pytest.raises(Conflict):
            survey.issue(s, ticket_id=ticket.id, now=T0)
