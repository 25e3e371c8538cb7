"""Tables of the knowledge base: articles, their versions, and the tickets that used them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from vigil.db.base import Base, enum_column, utcnow
from vigil.db.enums import ArticleStatus, Category


class KnowledgeArticle(Base):
    """A known fault and its fix. The content is in versions; an edit adds one.

    ``title``, ``body``, ``category``, ``device_model``, ``symptoms`` and ``tags`` are
    the current version's copy for listing (``body`` is its cause and fix,
    ``device_model`` its first model, ``tags`` its fault codes). Engineers' feedback on
    suggestions is counted here and raises or lowers the article's rank.
    """

    __tablename__ = "knowledge_articles"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(String(100_000))
    category: Mapped[str] = enum_column(Category, index=True)
    device_model: Mapped[str | None] = mapped_column(String(64), index=True)
    symptoms: Mapped[list[Any]] = mapped_column(default=list)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    status: Mapped[str] = enum_column(ArticleStatus, default=ArticleStatus.PUBLISHED.value)
    version: Mapped[int] = mapped_column(Integer, default=1)
    helpful_count: Mapped[int] = mapped_column(Integer, default=0)
    not_helpful_count: Mapped[int] = mapped_column(Integer, default=0)
    # The resolved ticket a draft was written from.
    source_ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))


class ArticleVersion(Base):
    """One version of an article's content, never changed once written."""

    __tablename__ = "knowledge_article_versions"
    __table_args__ = (UniqueConstraint("article_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("knowledge_articles.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200))
    symptoms: Mapped[str] = mapped_column(String(10_000), default="")
    cause: Mapped[str] = mapped_column(String(10_000), default="")
    fix: Mapped[str] = mapped_column(String(50_000), default="")
    device_models: Mapped[list[Any]] = mapped_column(default=list)
    fault_codes: Mapped[list[Any]] = mapped_column(default=list)
    categories: Mapped[list[Any]] = mapped_column(default=list)
    author: Mapped[str] = mapped_column(String(128))
    note: Mapped[str] = mapped_column(String(1000), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    article: Mapped[KnowledgeArticle] = relationship()


class TicketArticle(Base):
    """An article a ticket used (at the version it used) and the engineer's verdict on it."""

    __tablename__ = "ticket_articles"
    __table_args__ = (UniqueConstraint("ticket_id", "article_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("knowledge_articles.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    linked_at: Mapped[datetime]
    linked_by: Mapped[str] = mapped_column(String(128))
    # None: no verdict yet.
    helpful: Mapped[bool | None]
    feedback_at: Mapped[datetime | None]
