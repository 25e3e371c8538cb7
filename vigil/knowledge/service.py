"""The knowledge base applied inside the caller's transaction: versions, suggestions, feedback.

An edit writes a new ``ArticleVersion`` and never changes an old one, so a
ticket that used version 2 still reads version 2 after the article moves on.
Suggestions rank the published articles for a ticket (``ranking.rank``);
an engineer's verdict on one is kept with the ticket and counted on the
article, which moves its rank. A resolved ticket can become a draft article.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.audit.service import record
from vigil.db.enums import ArticleStatus, Category, TicketEventKind, TicketState
from vigil.errors import Conflict, Forbidden, InvalidRequest, NotFound
from vigil.knowledge import ranking
from vigil.knowledge.models import ArticleVersion, KnowledgeArticle, TicketArticle
from vigil.tickets.models import Ticket
from vigil.tickets.service import get_ticket, record_event
from vigil.tickets.transitions import Actor, ActorRole

RESOLVED = frozenset({TicketState.REPAIRED, TicketState.VERIFIED, TicketState.CLOSED,
                      TicketState.RESOLVED_REMOTELY})
_AUTHORS = frozenset({ActorRole.ENGINEER, ActorRole.MANAGER, ActorRole.ADMIN})


@dataclass(frozen=True, slots=True)
class Content:
    """What an article says; every version holds all of it."""

    title: str
    symptoms: str = ""
    cause: str = ""
    fix: str = ""
    device_models: Sequence[str] = ()
    fault_codes: Sequence[str] = ()
    categories: Sequence[Category] = ()

    def checked(self) -> Content:
        if not self.title.strip():
            raise InvalidRequest("an article needs a title")
        if not self.categories:
            raise InvalidRequest("an article needs at least one fault category")
        for category in self.categories:
            Category(category)
        return self


def _author(actor: Actor) -> None:
    if actor.role not in _AUTHORS:
        raise Forbidden("only the service organisation writes knowledge-base articles")


def _apply(article: KnowledgeArticle, content: Content) -> None:
    article.title = content.title
    article.body = f"{content.cause}\n\n{content.fix}".strip()
    article.category = Category(content.categories[0])
    article.device_model = content.device_models[0] if content.device_models else None
    article.symptoms = [content.symptoms] if content.symptoms else []
    article.tags = list(content.fault_codes)


def _version(article: KnowledgeArticle, content: Content, actor: Actor, now: datetime,
             note: str) -> ArticleVersion:
    return ArticleVersion(
        article_id=article.id, version=article.version, title=content.title,
        symptoms=content.symptoms, cause=content.cause, fix=content.fix,
        device_models=list(content.device_models), fault_codes=list(content.fault_codes),
        categories=[Category(c).value for c in content.categories], author=actor.name,
        note=note, created_at=now)


def create_article(session: Session, *, content: Content, actor: Actor, now: datetime,
                   status: ArticleStatus = ArticleStatus.PUBLISHED,
                   source_ticket_id: int | None = None) -> KnowledgeArticle:
    _author(actor)
    content = content.checked()
    article = KnowledgeArticle(status=status, version=1, created_at=now, updated_at=now,
                               source_ticket_id=source_ticket_id)
    _apply(article, content)
    session.add(article)
    session.flush()
    session.add(_version(article, content, actor, now, "first version"))
    record(session, actor=actor.name, action="knowledge.created", object_type="article",
           object_id=article.id, at=now,
           details={"version": 1, "status": ArticleStatus(status).value,
                    "source_ticket_id": source_ticket_id})
    return article


def get_article(session: Session, *, article_id: int, lock: bool = False) -> KnowledgeArticle:
    query = select(KnowledgeArticle).where(KnowledgeArticle.id == article_id)
    article = session.scalars(query.with_for_update() if lock else query).first()
    if article is None:
        raise NotFound(f"article {article_id} does not exist")
    return article


def edit_article(session: Session, *, article_id: int, content: Content, actor: Actor,
                 now: datetime, note: str = "") -> ArticleVersion:
    """A new version; the old ones stay as they were for the tickets that used them."""
    _author(actor)
    content = content.checked()
    article = get_article(session, article_id=article_id, lock=True)
    article.version += 1
    article.updated_at = now
    _apply(article, content)
    version = _version(article, content, actor, now, note)
    session.add(version)
    record(session, actor=actor.name, action="knowledge.edited", object_type="article",
           object_id=article.id, at=now, details={"version": article.version, "note": note})
    return version


def set_status(session: Session, *, article_id: int, status: ArticleStatus, actor: Actor,
               now: datetime) -> KnowledgeArticle:
    """Publish a reviewed draft, or retire an article from suggestions."""
    _author(actor)
    article = get_article(session, article_id=article_id, lock=True)
    before = article.status
    article.status = status
    article.updated_at = now
    record(session, actor=actor.name, action="knowledge.status", object_type="article",
           object_id=article.id, at=now,
           details={"from": before, "to": ArticleStatus(status).value})
    return article


def version_of(session: Session, *, article_id: int, version: int) -> ArticleVersion:
    found = session.scalars(select(ArticleVersion).where(
        ArticleVersion.article_id == article_id, ArticleVersion.version == version)).first()
    if found is None:
        raise NotFound(f"article {article_id} has no version {version}")
    return found


def fault_codes_of(ticket: Ticket) -> frozenset[str]:
    """Fault codes a ticket names: its ``event:CODE`` signature and its evidence's ``code``."""
    codes = set()
    if ticket.signature.startswith("event:"):
        codes.add(ticket.signature.removeprefix("event:"))
    latest = ticket.evidence.get("latest") or {}
    code = (latest.get("data") or {}).get("code") if isinstance(latest, dict) else None
    if isinstance(code, str) and code:
        codes.add(code.removeprefix("event:"))
    return frozenset(codes)


def _query(ticket: Ticket) -> ranking.Query:
    latest = ticket.evidence.get("latest") or {}
    summary = latest.get("summary", "") if isinstance(latest, dict) else ""
    text = " ".join(filter(None, [ticket.title, ticket.description, ticket.diagnosis_note,
                                  summary, ticket.signature.replace(":", " ")]))
    return ranking.Query(text=text, model=ticket.device_model,
                         fault_codes=fault_codes_of(ticket), category=ticket.category)


@dataclass(frozen=True, slots=True)
class Suggestion:
    article: KnowledgeArticle
    version: ArticleVersion
    score: float
    reasons: dict[str, float]


def suggest(session: Session, *, ticket_id: int, limit: int = 5,
            weights: ranking.Weights = ranking.DEFAULT_WEIGHTS) -> list[Suggestion]:
    """The published articles that fit a ticket best, best first."""
    ticket = get_ticket(session, ticket_id=ticket_id)
    rows = session.execute(
        select(KnowledgeArticle, ArticleVersion)
        .join(ArticleVersion, (ArticleVersion.article_id == KnowledgeArticle.id)
              & (ArticleVersion.version == KnowledgeArticle.version))
        .where(KnowledgeArticle.status == ArticleStatus.PUBLISHED)).all()
    by_id = {article.id: (article, version) for article, version in rows}
    candidates = [ranking.Candidate(
        article_id=article.id,
        text=" ".join([version.title, version.symptoms, version.cause, version.fix,
                       *version.fault_codes]),
        models=frozenset(version.device_models), fault_codes=frozenset(version.fault_codes),
        categories=frozenset(version.categories), helpful=article.helpful_count,
        not_helpful=article.not_helpful_count) for article, version in rows]
    ranked = ranking.rank(_query(ticket), candidates, weights=weights, limit=limit)
    return [Suggestion(*by_id[r.article_id], score=r.score, reasons=r.reasons) for r in ranked]


def use_article(session: Session, *, ticket_id: int, article_id: int, actor: Actor,
                now: datetime) -> TicketArticle:
    """Attach an article to a ticket at its current version (kept even after later edits)."""
    ticket = get_ticket(session, ticket_id=ticket_id)
    article = get_article(session, article_id=article_id)
    link = session.scalars(select(TicketArticle).where(
        TicketArticle.ticket_id == ticket.id, TicketArticle.article_id == article.id)).first()
    if link is not None:
        return link
    link = TicketArticle(ticket_id=ticket.id, article_id=article.id, version=article.version,
                         linked_at=now, linked_by=actor.name)
    session.add(link)
    record_event(session, ticket, kind=TicketEventKind.LINK, actor=actor, at=now,
                 note=f"knowledge article #{article.id} v{article.version}: {article.title}",
                 data={"article_id": article.id, "version": article.version})
    return link


def feedback(session: Session, *, ticket_id: int, article_id: int, helpful: bool,
             actor: Actor, now: datetime) -> TicketArticle:
    """An engineer's verdict on a suggestion; a changed verdict moves the counts back first."""
    if actor.role not in (ActorRole.ENGINEER, ActorRole.MANAGER):
        raise Forbidden("only the service organisation rates suggestions")
    link = use_article(session, ticket_id=ticket_id, article_id=article_id, actor=actor, now=now)
    article = get_article(session, article_id=article_id, lock=True)
    if link.helpful is helpful:
        return link
    if link.helpful is True:
        article.helpful_count -= 1
    elif link.helpful is False:
        article.not_helpful_count -= 1
    if helpful:
        article.helpful_count += 1
    else:
        article.not_helpful_count += 1
    link.helpful, link.feedback_at = helpful, now
    ticket = get_ticket(session, ticket_id=ticket_id)
    record_event(session, ticket, kind=TicketEventKind.COMMENT, actor=actor, at=now,
                 note=f"article #{article.id} marked {'helpful' if helpful else 'not helpful'}",
                 data={"article_id": article.id, "helpful": helpful})
    return link


def draft_from_ticket(session: Session, *, ticket_id: int, actor: Actor,
                      now: datetime) -> KnowledgeArticle:
    """A draft article from what a resolved ticket recorded, for an engineer to edit and publish."""
    ticket = get_ticket(session, ticket_id=ticket_id)
    if TicketState(ticket.state) not in RESOLVED:
        raise Conflict(f"ticket {ticket_id} is {ticket.state}; only a resolved ticket "
                       "becomes an article")
    if not ticket.diagnosis_note:
        raise Conflict(f"ticket {ticket_id} has no diagnosis to write up")
    existing = session.scalars(select(KnowledgeArticle).where(
        KnowledgeArticle.source_ticket_id == ticket.id)).first()
    if existing is not None:
        raise Conflict(f"ticket {ticket_id} is already article #{existing.id}")
    latest = ticket.evidence.get("latest") or {}
    summary = latest.get("summary", "") if isinstance(latest, dict) else ""
    content = Content(
        title=ticket.title, symptoms="\n".join(filter(None, [ticket.description, summary])),
        cause=ticket.diagnosis_note, fix=ticket.verification_result or "",
        device_models=[ticket.device_model] if ticket.device_model else [],
        fault_codes=sorted(fault_codes_of(ticket)), categories=[Category(ticket.category)])
    article = create_article(session, content=content, actor=actor, now=now,
                             status=ArticleStatus.DRAFT, source_ticket_id=ticket.id)
    record_event(session, ticket, kind=TicketEventKind.LINK, actor=actor, at=now,
                 note=f"written up as draft article #{article.id}",
                 data={"article_id": article.id})
    return article


def versions_of(session: Session, *, article_id: int) -> list[ArticleVersion]:
    """Every version of an article, oldest first (the article must exist)."""
    article = get_article(session, article_id=article_id)
    return list(session.scalars(select(ArticleVersion).where(
        ArticleVersion.article_id == article.id).order_by(ArticleVersion.version)))
