"""The knowledge base on SQLite and PostgreSQL: versions, suggestions, feedback, drafts."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.tickets.support import Org, seed
from tests.tickets.test_survey import closed_ticket
from vigil.db.enums import ArticleStatus, Category, Severity, TicketSource
from vigil.errors import Conflict, Forbidden
from vigil.knowledge import service
from vigil.knowledge.models import ArticleVersion, TicketArticle
from vigil.knowledge.service import Content
from vigil.tickets import service as tickets
from vigil.tickets.priority import Signal, TicketRules
from vigil.tickets.service import Evidence
from vigil.tickets.transitions import Actor, ActorRole

RULES = TicketRules.load()
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ENGINEER = Actor("eve", ActorRole.ENGINEER)

VALVE = Content(title="Expiratory valve leak (E042)",
                symptoms="Leak alarm, airway pressure drops during expiration",
                cause="Worn expiratory valve membrane", fix="Replace membrane part 500-17",
                device_models=["ventilator"], fault_codes=["E042"],
                categories=[Category.MECHANICAL])
BATTERY = Content(title="Battery does not hold charge", symptoms="Runs on mains only",
                  cause="Aged battery pack", fix="Replace battery pack",
                  device_models=["ventilator"], categories=[Category.ELECTRICAL])
MRI = Content(title="Helium level low", symptoms="Cold head alarm", cause="Cold head wear",
              fix="Service cold head", device_models=["mri"], categories=[Category.MECHANICAL])


@pytest.fixture
def org(factory: sessionmaker[Session]) -> Org:
    return seed(factory)


def fault(s: Session) -> int:
    return tickets.open_or_join(
        s, device_id="vent-1", signature="event:E042",
        signal=Signal(TicketSource.DEVICE_EVENT, severity=Severity.ERROR),
        title="E042 leak alarm", description="Nurse reports a leak alarm on expiration",
        evidence=Evidence(at=T0, summary="leak alarm", data={"code": "E042"}), now=T0,
        rules=RULES).ticket.id


def test_suggestions_feedback_and_versions(factory: sessionmaker[Session], org: Org) -> None:
    with factory() as s, s.begin():
        battery = service.create_article(s, content=BATTERY, actor=ENGINEER, now=T0).id
        valve = service.create_article(s, content=VALVE, actor=ENGINEER, now=T0).id
        service.create_article(s, content=MRI, actor=ENGINEER, now=T0)
        ticket_id = fault(s)
        ranked = service.suggest(s, ticket_id=ticket_id)
        assert ranked[0].article.id == valve
        assert ranked[0].reasons["fault_code"] > 0 and ranked[0].reasons["text"] > 0
        service.feedback(s, ticket_id=ticket_id, article_id=valve, helpful=True,
                         actor=ENGINEER, now=T0)
        with pytest.raises(Forbidden):
            service.feedback(s, ticket_id=ticket_id, article_id=valve, helpful=False,
                             actor=Actor("nora", ActorRole.CUSTOMER), now=T0)
        # An edit makes version 2; the ticket keeps version 1.
        service.edit_article(s, article_id=valve,
                             content=replace(VALVE, fix="Replace membrane part 500-18"),
                             actor=ENGINEER, now=T0 + timedelta(days=1), note="new part")
        assert battery < valve
    with factory() as s:
        link = s.scalars(select(TicketArticle)).one()
        assert (link.article_id, link.version, link.helpful) == (valve, 1, True)
        versions = s.scalars(select(ArticleVersion).where(ArticleVersion.article_id == valve)
                             .order_by(ArticleVersion.version)).all()
        assert [v.fix for v in versions] == ["Replace membrane part 500-17",
                                             "Replace membrane part 500-18"]
        assert service.version_of(s, article_id=valve, version=link.version).fix.endswith("17")


def flow_anomaly(s: Session, device: str) -> int:
    return tickets.open_or_join(
        s, device_id=device, signature="anomaly:flow", title="flow anomaly",
        signal=Signal(TicketSource.ANALYTICS, score=0.9), evidence=Evidence(at=T0), now=T0,
        rules=RULES).ticket.id


def test_not_helpful_verdicts_lower_the_rank(factory: sessionmaker[Session], org: Org) -> None:
    with factory() as s, s.begin():
        battery = service.create_article(s, content=BATTERY, actor=ENGINEER, now=T0).id
        valve = service.create_article(s, content=VALVE, actor=ENGINEER, now=T0).id
        ticket_id = flow_anomaly(s, "vent-2")
        # Model and category (mechanical) 0.45 against model alone 0.30.
        assert [r.article.id for r in service.suggest(s, ticket_id=ticket_id)] == [valve, battery]
        for device in ("vent-2", "vent-3", "vent-4", "vent-5"):
            service.feedback(s, ticket_id=flow_anomaly(s, device), article_id=valve,
                             helpful=False, actor=ENGINEER, now=T0)
        # 0.45 + 0.5 * (1/6 - 1/2) = 0.283 < 0.30. A changed verdict moves the counts back.
        assert [r.article.id for r in service.suggest(s, ticket_id=ticket_id)] == [battery, valve]
        service.feedback(s, ticket_id=ticket_id, article_id=valve, helpful=True,
                         actor=ENGINEER, now=T0)
        article = service.get_article(s, article_id=valve)
        assert (article.helpful_count, article.not_helpful_count) == (1, 3)


def test_a_resolved_ticket_becomes_a_draft(factory: sessionmaker[Session], org: Org) -> None:
    with factory() as s, s.begin():
        open_id = fault(s)
        with pytest.raises(Conflict):
            service.draft_from_ticket(s, ticket_id=open_id, actor=ENGINEER, now=T0)
        done = closed_ticket(s, device="vent-2")
        draft = service.draft_from_ticket(s, ticket_id=done, actor=ENGINEER,
                                          now=T0 + timedelta(hours=5))
        assert draft.status == ArticleStatus.DRAFT and draft.source_ticket_id == done
        assert draft.tags == ["E042"] and draft.device_model == "ventilator"
        assert "valve worn" in draft.body
        with pytest.raises(Conflict):
            service.draft_from_ticket(s, ticket_id=done, actor=ENGINEER, now=T0)
        # A draft is not suggested until it is published.
        assert service.suggest(s, ticket_id=open_id) == []
        service.set_status(s, article_id=draft.id, status=ArticleStatus.PUBLISHED,
                           actor=ENGINEER, now=T0 + timedelta(hours=6))
        assert [r.article.id for r in service.suggest(s, ticket_id=open_id)] == [draft.id]
