"""What a survey link asks about, on SQLite and PostgreSQL: refused exactly as answering is."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.tickets.support import seed
from tests.tickets.test_survey import T0, closed_ticket
from vigil.errors import Conflict, Forbidden, NotFound
from vigil.tickets import survey
from vigil.tickets.survey import question


def test_the_question_then_the_refusals_of_answered_unknown_and_expired_links(
        factory: sessionmaker[Session]) -> None:
    seed(factory)
    later = T0 + timedelta(hours=3)
    with factory() as s, s.begin():
        ticket_id = closed_ticket(s)
        token = survey.issue(s, ticket_id=ticket_id, now=later,
                             valid_for=timedelta(days=2)).token
        other = survey.issue(s, ticket_id=closed_ticket(s, device="vent-2"), now=later).token
    with factory() as s:
        asked = question(s, token=token, now=later)
        assert (asked.title, asked.device_model, asked.device_serial) == (
            "E042", "ventilator", "V500-1")
        assert asked.closed_at is not None and asked.closed_at <= later
        assert asked.expires_at == later + timedelta(days=2)
        with pytest.raises(NotFound):
            question(s, token=token + "x", now=later)
        with pytest.raises(Forbidden):
            question(s, token=token, now=later + timedelta(days=2))
    with factory() as s, s.begin():
        survey.answer(s, token=token, score=4, now=later)
    with factory() as s:
        with pytest.raises(Conflict):
            question(s, token=token, now=later)
        # Another ticket's link is unaffected.
        assert question(s, token=other, now=later).device_serial == "V500-2"
