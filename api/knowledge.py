"""The knowledge base for the service organisation: known faults and their fixes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import or_, select

from api.deps import FieldStaff, StaffOnly
from api.params import PathId
from api.problems import responses
from api.tickets import actor_of
from vigil.auth.visibility import ticket_visible
from vigil.db.base import utcnow
from vigil.errors import NotFound
from vigil.knowledge import service
from vigil.knowledge.models import KnowledgeArticle
from vigil.tickets.models import Ticket

router = APIRouter(tags=["knowledge"])


class ArticleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    body: str
    category: str
    device_model: str | None
    symptoms: list[Any]
    tags: list[Any]
    updated_at: datetime


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


@router.get("/knowledge", response_model=list[ArticleOut], responses=responses(401, 403, 422),
            summary="Knowledge-base articles, filtered by category, model and text")
def list_articles(
    ctx: StaffOnly,
    category: Annotated[str | None, Query(max_length=32)] = None,
    model: Annotated[str | None, Query(max_length=64)] = None,
    q: Annotated[str | None, Query(max_length=200, description="words of the title")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[ArticleOut]:
    query = select(KnowledgeArticle)
    if category is not None:
        query = query.where(KnowledgeArticle.category == category)
    if model is not None:
        query = query.where(or_(KnowledgeArticle.device_model == model,
                                KnowledgeArticle.device_model.is_(None)))
    if q:
        query = query.where(KnowledgeArticle.title.ilike(_like(q), escape="\\"))
    rows = ctx.db.scalars(query.order_by(KnowledgeArticle.updated_at.desc(),
                                         KnowledgeArticle.id.desc()).limit(limit))
    return [ArticleOut.model_validate(a) for a in rows]


@router.get("/knowledge/{article_id}", response_model=ArticleOut,
            responses=responses(401, 403, 404), summary="One knowledge-base article")
def get_article(article_id: PathId, ctx: StaffOnly) -> ArticleOut:
    article = ctx.db.get(KnowledgeArticle, article_id)
    if article is None:
        raise NotFound(f"article {article_id} not found")
    return ArticleOut.model_validate(article)


@router.get("/tickets/{ticket_id}/suggestions", response_model=list[ArticleOut],
            responses=responses(401, 403, 404),
            summary="Articles for a ticket, best first (model, code, category, text, feedback)")
def suggestions(ticket_id: PathId, ctx: StaffOnly) -> list[ArticleOut]:
    ticket = ctx.db.scalar(select(Ticket.id).where(Ticket.id == ticket_id,
                                                   ticket_visible(ctx.principal)))
    if ticket is None:
        raise NotFound(f"ticket {ticket_id} not found")
    # The console's ranking: model, fault code, category, text similarity and feedback.
    return [ArticleOut.model_validate(s.article)
            for s in service.suggest(ctx.db, ticket_id=ticket_id, limit=10)]


class ArticleVersionOut(BaseModel):
    """One version of an article as written; versions never change."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{
        "article_id": 3, "version": 2, "title": "Occlusion alarm: check the pressure sensor",
        "symptoms": "Occlusion alarms with an open line", "cause": "Dirty pressure sensor",
        "fix": "Clean the sensor, recalibrate.", "device_models": ["IP-100"],
        "fault_codes": ["E042"], "categories": ["mechanical"], "author": "eve",
        "note": "added the fault code", "created_at": "2026-12-01T10:00:00Z"}]})

    article_id: int
    version: int
    title: str
    symptoms: str
    cause: str
    fix: str
    device_models: list[Any]
    fault_codes: list[Any]
    categories: list[Any]
    author: str
    note: str
    created_at: datetime


VersionNumber = Annotated[int, Path(ge=1, le=1_000_000)]


@router.get("/knowledge/{article_id}/versions", response_model=list[ArticleVersionOut],
            responses=responses(401, 403, 404), summary="Every version of an article, oldest "
                                                        "first")
def list_versions(article_id: PathId, ctx: StaffOnly) -> list[ArticleVersionOut]:
    return [ArticleVersionOut.model_validate(v)
            for v in service.versions_of(ctx.db, article_id=article_id)]


@router.get("/knowledge/{article_id}/versions/{version}", response_model=ArticleVersionOut,
            responses=responses(401, 403, 404, 422),
            summary="One version of an article, as a ticket that used it read it")
def get_version(article_id: PathId, version: VersionNumber, ctx: StaffOnly) -> ArticleVersionOut:
    return ArticleVersionOut.model_validate(
        service.version_of(ctx.db, article_id=article_id, version=version))


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"helpful": True}]})

    helpful: bool = Field(description="whether the article helped with this ticket")


class TicketArticleOut(BaseModel):
    """An article a ticket used, at the version it used, with the verdict on it."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{
        "ticket_id": 42, "article_id": 3, "version": 2, "linked_at": "2026-12-02T09:00:00Z",
        "linked_by": "eve", "helpful": True, "feedback_at": "2026-12-02T09:00:00Z"}]})

    ticket_id: int
    article_id: int
    version: int
    linked_at: datetime
    linked_by: str
    helpful: bool | None
    feedback_at: datetime | None


@router.put("/tickets/{ticket_id}/suggestions/{article_id}/feedback",
            response_model=TicketArticleOut, responses=responses(401, 403, 404, 422),
            summary="Mark a suggested article helpful or not for a ticket (engineers and "
                    "managers); it moves the article's rank")
def feedback(ticket_id: PathId, article_id: PathId, body: FeedbackIn,
             ctx: FieldStaff) -> TicketArticleOut:
    ticket = ctx.db.scalar(select(Ticket.id).where(Ticket.id == ticket_id,
                                                   ticket_visible(ctx.principal)))
    if ticket is None:
        raise NotFound(f"ticket {ticket_id} not found")
    link = service.feedback(ctx.db, ticket_id=ticket_id, article_id=article_id,
                            helpful=body.helpful, actor=actor_of(ctx.principal), now=utcnow())
    return TicketArticleOut.model_validate(link)
