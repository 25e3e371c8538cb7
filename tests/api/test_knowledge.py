"""Knowledge-base versions and engineers' feedback on suggestions, through the API."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import World
from vigil.db.enums import Category
from vigil.db.session import transaction
from vigil.knowledge import service
from vigil.knowledge.models import KnowledgeArticle, TicketArticle
from vigil.tickets.transitions import Actor, ActorRole

Headers = Callable[[str], dict[str, str]]
AUTHOR = Actor("eve", ActorRole.ENGINEER)


@pytest.fixture
def article_id(sessions: sessionmaker[Session]) -> int:
    """An article written and then corrected: two versions."""
    now = datetime.now(UTC)
    with transaction(sessions) as s:
        article = service.create_article(s, now=now, actor=AUTHOR, content=service.Content(
            title="Occlusion alarm", cause="Dirty sensor", fix="Clean it",
            device_models=["IP-100"], categories=[Category.MECHANICAL]))
        service.edit_article(s, article_id=article.id, now=now, actor=AUTHOR, note="recalibrate",
                             content=service.Content(
                                 title="Occlusion alarm", cause="Dirty sensor",
                                 fix="Clean it, then recalibrate", device_models=["IP-100"],
                                 categories=[Category.MECHANICAL]))
        return article.id


def test_versions_are_listed_and_each_reads_as_written(
    client: TestClient, headers: Headers, article_id: int
) -> None:
    h = headers("engineer")
    versions = client.get(f"/api/v1/knowledge/{article_id}/versions", headers=h).json()
    assert [(v["version"], v["fix"]) for v in versions] == [
        (1, "Clean it"), (2, "Clean it, then recalibrate")]
    first = client.get(f"/api/v1/knowledge/{article_id}/versions/1", headers=h)
    assert first.status_code == 200 and first.json()["note"] == "first version"
    assert client.get(f"/api/v1/knowledge/{article_id}/versions/3",
                      headers=h).status_code == 404
    assert client.get("/api/v1/knowledge/999999/versions", headers=h).status_code == 404
    assert client.get(f"/api/v1/knowledge/{article_id}/versions",
                      headers=headers("customer-a")).status_code == 403


def test_feedback_counts_once_per_ticket_and_can_change(
    client: TestClient, headers: Headers, world: World, article_id: int,
    sessions: sessionmaker[Session]
) -> None:
    url = f"/api/v1/tickets/{world.ticket_ids['a']}/suggestions/{article_id}/feedback"
    first = client.put(url, json={"helpful": True}, headers=headers("engineer"))
    assert first.status_code == 200, first.text
    assert (first.json()["helpful"], first.json()["version"]) == (True, 2)
    assert client.put(url, json={"helpful": True}, headers=headers("engineer")).status_code == 200
    with sessions() as s:
        article = s.get_one(KnowledgeArticle, article_id)
        assert (article.helpful_count, article.not_helpful_count) == (1, 0)
    changed = client.put(url, json={"helpful": False}, headers=headers("manager"))
    assert changed.json()["helpful"] is False
    with sessions() as s:
        article = s.get_one(KnowledgeArticle, article_id)
        assert (article.helpful_count, article.not_helpful_count) == (0, 1)
        links = s.scalars(select(TicketArticle)).all()
        assert [(link.ticket_id, link.helpful) for link in links] == [
            (world.ticket_ids["a"], False)]
    for who in ("admin", "customer-a"):
        assert client.put(url, json={"helpful": True}, headers=headers(who)).status_code == 403
    assert client.put(url, json={"helpful": "maybe"},
                      headers=headers("engineer")).status_code == 422
    missing = f"/api/v1/tickets/{world.ticket_ids['a']}/suggestions/999999/feedback"
    assert client.put(missing, json={"helpful": True},
                      headers=headers("engineer")).status_code == 404
    history = client.get(f"/api/v1/tickets/{world.ticket_ids['a']}",
                         headers=headers("engineer")).json()
    assert any("marked not helpful" in e["note"] for e in history["events"])


def test_suggestions_are_the_knowledge_services_ranking(
    client: TestClient, headers: Headers, world: World, article_id: int,
    sessions: sessionmaker[Session]
) -> None:
    url = f"/api/v1/tickets/{world.ticket_ids['a']}/suggestions"
    answer = client.get(url, headers=headers("engineer"))
    assert answer.status_code == 200, answer.text
    with sessions() as s:
        ranked = [r.article.id for r in service.suggest(s, ticket_id=world.ticket_ids["a"],
                                                        limit=10)]
    assert [a["id"] for a in answer.json()] == ranked and article_id in ranked
    assert client.get(url, headers=headers("customer-a")).status_code == 403
