"""The knowledge base for the service organisation: known faults and their fixes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import or_, select

from api.deps import StaffOnly
from api.params import PathId
from api.problems import responses
from vigil.auth.visibility import ticket_visible
from vigil.errors import NotFound
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
            summary="Articles for a ticket: same fault category, for its device's model first")
def suggestions(ticket_id: PathId, ctx: StaffOnly) -> list[ArticleOut]:
    ticket = ctx.db.scalar(select(Ticket).where(Ticket.id == ticket_id,
                                                ticket_visible(ctx.principal)))
    if ticket is None:
        raise NotFound(f"ticket {ticket_id} not found")
    model = ticket.device.model if ticket.device is not None else None
    query = select(KnowledgeArticle).where(KnowledgeArticle.category == ticket.category)
    if model is not None:
        query = query.where(or_(KnowledgeArticle.device_model == model,
                                KnowledgeArticle.device_model.is_(None)))
        query = query.order_by(KnowledgeArticle.device_model.is_(None),
                               KnowledgeArticle.updated_at.desc())
    else:
        query = query.order_by(KnowledgeArticle.updated_at.desc())
    return [ArticleOut.model_validate(a) for a in ctx.db.scalars(query.limit(10))]
