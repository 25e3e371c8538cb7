"""The satisfaction survey on SQLite and PostgreSQL: one answer per token, before it expires."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.tickets.support import Org, seed
from vigil.db.enums import Severity, TicketSource, TicketState
from vigil.errors import Conflict, Forbidden, InvalidRequest, NotFound
from vigil.tickets import service, survey
from vigil.tickets.models import Notification, SatisfactionSurvey, Ticket
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
                                                        "satisfaction survey answered: 4 of 5"]


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


def test_the_job_asks_about_recent_closings_once_and_mails_the_customers_link(
        factory: sessionmaker[Session], org: Org) -> None:
    with factory() as s, s.begin():
        recent = closed_ticket(s, device="vent-1", at=T0)
        old = closed_ticket(s, device="vent-2", at=T0 - timedelta(days=20))
    now = T0 + timedelta(days=1)
    with factory() as s, s.begin():
        report = survey.issue_due(s, now=now, link_base="https://vigil.example/console/survey/",
                                  email=True)
        assert (report.surveys, report.notifications) == (1, 1)
    with factory() as s, s.begin():
        assert survey.issue_due(s, now=now, link_base="https://x", email=True).surveys == 0
        asked = s.scalars(select(SatisfactionSurvey)).all()
        assert [a.ticket_id for a in asked] == [recent] and old != recent
        mail = s.scalars(select(Notification)).one()
        assert mail.recipient == "nora@hospital.example" and mail.channel == "email"
        link = re.search(r"https://vigil\.example/console/survey/(\S+)", mail.body)
        assert link is not None
    with factory() as s, s.begin():
        survey.answer(s, token=link.group(1), score=5, now=now + timedelta(hours=1))
        assert s.get(Ticket, recent).satisfaction_score == 5  # type: ignore[union-attr]


def test_without_email_the_survey_waits_in_the_portal(
        factory: sessionmaker[Session], org: Org) -> None:
    with factory() as s, s.begin():
        ticket_id = closed_ticket(s)
        report = survey.issue_due(s, now=T0 + timedelta(hours=5), link_base="https://x",
                                  email=False)
        assert (report.surveys, report.notifications) == (1, 0)
        assert s.scalars(select(Notification)).all() == []
        survey.answer_in_portal(s, ticket_id=ticket_id, actor=CUSTOMER, score=3,
                                now=T0 + timedelta(hours=6))
        with pytest.raises(Conflict):
            survey.answer_in_portal(s, ticket_id=ticket_id, actor=CUSTOMER, score=4,
                                    now=T0 + timedelta(hours=7))


def test_a_portal_answer_before_the_link_counts_as_asked_and_only_customers_answer(
        factory: sessionmaker[Session], org: Org) -> None:
    with factory() as s, s.begin():
        ticket_id = closed_ticket(s)
        with pytest.raises(Forbidden):
            survey.answer_in_portal(s, ticket_id=ticket_id, actor=ENGINEER, score=5, now=T0)
        with pytest.raises(InvalidRequest):
            survey.answer_in_portal(s, ticket_id=ticket_id, actor=CUSTOMER, score=0, now=T0)
        survey.answer_in_portal(s, ticket_id=ticket_id, actor=CUSTOMER, score=4,
                                comment="fine", now=T0 + timedelta(hours=3))
        asked = s.scalars(select(SatisfactionSurvey)).one()
        assert asked.answered_at is not None
        # The job sees it was asked: no link goes out afterwards.
        assert survey.issue_due(s, now=T0 + timedelta(hours=4), link_base="https://x",
                                email=True).surveys == 0
