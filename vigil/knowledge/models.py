"""Tables of the knowledge base."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from vigil.db.base import Base, enum_column, utcnow
from vigil.db.enums import Category


class KnowledgeArticle(Base):
    """A known fault and its fix; tickets find articles by category, model and symptoms."""

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

