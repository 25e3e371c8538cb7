"""Figures the report reads from the ticket row follow what they are kept from, on SQLite and
PostgreSQL: ``surveyed`` the satisfaction surveys, ``lead_hours`` the evidence."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from tests.reports.test_quality import START, add_ticket
from tests.tickets.support import Org, seed
from tests.tickets.test_survey import T0, closed_ticket
from vigil.db.enums import Priority, TicketSource, TicketState
from vigil.tickets import survey
from vigil.tickets.models import SatisfactionSurvey, Ticket


@pytest.fixture
def org(factory: sessionmaker[Session]) -> Org:
    return seed(factory)


def stored(factory: sessionmaker[Session], ticket_id: int) -> tuple[bool, float | None]:
    """What the database holds, not what a session remembers."""
    with factory() as s:
        row = s.execute(select(Ticket.surveyed, Ticket.lead_hours)
                        .where(Ticket.id == ticket_id)).one()
    return row.surveyed, row.lead_hours


def test_surveyed_is_set_when_a_survey_is_issued_and_cleared_when_it_goes(
        factory: sessionmaker[Session], org: Org) -> None:
    with factory() as s, s.begin():
        ticket_id = closed_ticket(s)
        other_id = closed_ticket(s, device="vent-2")
    assert stored(factory, ticket_id)[0] is False
    with factory() as s, s.begin():
        survey.issue(s, ticket_id=ticket_id, now=T0 + timedelta(hours=3))
    assert stored(factory, ticket_id)[0] is True
    # Issuing again replaces the token of the same survey: still one, still surveyed.
    with factory() as s, s.begin():
        survey.issue(s, ticket_id=ticket_id, now=T0 + timedelta(hours=4))
    assert stored(factory, ticket_id)[0] is True
    assert stored(factory, other_id)[0] is False
    # A survey moved to another ticket (no code does it; the column must still follow).
    with factory() as s, s.begin():
        s.execute(update(SatisfactionSurvey).where(SatisfactionSurvey.ticket_id == ticket_id)
                  .values(ticket_id=other_id))
    assert (stored(factory, ticket_id)[0], stored(factory, other_id)[0]) == (False, True)
    with factory() as s, s.begin():
        s.execute(delete(SatisfactionSurvey))
    assert stored(factory, other_id)[0] is False


@pytest.mark.parametrize(("data", "expected"), [
    ({"hours_to_failure": 36}, 36.0),
    ({"hours_to_failure": 12.5}, 12.5),
    ({"hours_to_failure": "soon"}, None),
    ({"hours_to_failure": None}, None),
    ({}, None),
])
def test_lead_hours_is_the_first_kept_evidence_pieces_number(
        factory: sessionmaker[Session], org: Org, data: dict[str, Any],
        expected: float | None) -> None:
    with factory() as s, s.begin():
        ticket = add_ticket(s, 1, device="vent-1", source=TicketSource.ANALYTICS,
                            priority=Priority.P2, state=TicketState.OPEN, respond=None)
        ticket.evidence = {"recent": [{"data": data}, {"data": {"hours_to_failure": 99}}]}
        ticket_id = ticket.id
    assert stored(factory, ticket_id)[1] == expected


def test_lead_hours_follows_the_evidence_when_it_changes(
        factory: sessionmaker[Session], org: Org) -> None:
    with factory() as s, s.begin():
        ticket_id = add_ticket(s, 1, device="vent-1", source=TicketSource.ANALYTICS,
                               priority=Priority.P2, state=TicketState.OPEN, respond=None,
                               lead_h=48, created=START).id
    assert stored(factory, ticket_id)[1] == 48.0
    with factory() as s, s.begin():
        ticket = s.get_one(Ticket, ticket_id)
        ticket.evidence = {"latest": {}, "recent": [{"data": {"hours_to_failure": 20}}]}
    assert stored(factory, ticket_id)[1] == 20.0
    with factory() as s, s.begin():
        s.execute(update(Ticket).where(Ticket.id == ticket_id).values(evidence={}))
    assert stored(factory, ticket_id)[1] is None
