"""The satisfaction survey by its token, without signing in: what it shows, one answer only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import World
from vigil.db.session import transaction
from vigil.tickets import survey
from vigil.tickets.models import SatisfactionSurvey, Ticket


@pytest.fixture
def token(sessions: sessionmaker[Session], world: World) -> str:
    """A survey link for customer A's ticket, closed an hour ago, as the desk issues it."""
    closed = datetime.now(UTC) - timedelta(hours=1)
    with transaction(sessions) as s:
        s.execute(update(Ticket).where(Ticket.id == world.ticket_ids["a"])
                  .values(state="closed", closed_at=closed))
        return survey.issue(s, ticket_id=world.ticket_ids["a"], now=closed).token


def test_the_link_shows_what_is_asked_and_nothing_else(client: TestClient, token: str) -> None:
    answer = client.get(f"/api/v1/surveys/{token}")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"ticket_title", "device_model", "device_serial", "closed_at",
                         "expires_at", "scores"}
    assert (body["ticket_title"], body["device_model"], body["device_serial"]) == (
        "Pump a alarms", "IP-100", "SN-a0")
    assert body["closed_at"] is not None and body["scores"] == [1, 2, 3, 4, 5]
    for private in ("Hospital A", "ICU A", "pump-a0", "customer-a"):
        assert private not in answer.text
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["referrer-policy"] == "no-referrer"


def test_answered_once(client: TestClient, token: str, sessions: sessionmaker[Session],
                       world: World) -> None:
    url = f"/api/v1/surveys/{token}"
    answer = client.post(url, json={"score": 5, "comment": "Quick and friendly."})
    assert answer.status_code == 200, answer.text
    assert answer.json()["score"] == 5
    with sessions() as s:
        ticket = s.get_one(Ticket, world.ticket_ids["a"])
        assert (ticket.satisfaction_score, ticket.satisfaction_comment) == (
            5, "Quick and friendly.")
    again = client.post(url, json={"score": 1})
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert client.get(url).status_code == 409
    with sessions() as s:
        assert s.get_one(Ticket, world.ticket_ids["a"]).satisfaction_score == 5


def test_unknown_and_expired_links(client: TestClient, token: str,
                                   sessions: sessionmaker[Session]) -> None:
    unknown = "x" * 43
    assert client.get(f"/api/v1/surveys/{unknown}").status_code == 404
    assert client.post(f"/api/v1/surveys/{unknown}", json={"score": 3}).status_code == 404
    with transaction(sessions) as s:
        s.execute(update(SatisfactionSurvey).values(
            expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert client.get(f"/api/v1/surveys/{token}").status_code == 403
    assert client.post(f"/api/v1/surveys/{token}", json={"score": 3}).status_code == 403


@pytest.mark.parametrize("body", [{"score": 0}, {"score": 6}, {"score": "5"}, {"score": 4.5},
                                  {"score": True}, {}, {"score": 3, "comment": "x" * 2001},
                                  {"score": 3, "extra": 1}])
def test_bad_answers_are_refused_and_change_nothing(
    client: TestClient, token: str, body: dict[str, object]
) -> None:
    answer = client.post(f"/api/v1/surveys/{token}", json=body)
    assert answer.status_code == 422, answer.text
    assert client.get(f"/api/v1/surveys/{token}").status_code == 200


def test_malformed_tokens_are_refused_before_any_lookup(client: TestClient) -> None:
    assert client.get("/api/v1/surveys/short").status_code == 422
    assert client.get("/api/v1/surveys/" + "a" * 200).status_code == 422
    assert client.get("/api/v1/surveys/" + "a" * 30 + "%27%20OR%201=1").status_code == 422
