"""The audit log: who did what to which object, for administrators."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from api.deps import AdminOnly
from api.problems import responses
from vigil.audit.models import AuditLog
from vigil.errors import InvalidRequest

router = APIRouter(prefix="/audit", tags=["audit"])


class AuditEntry(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor: str
    action: str
    object_type: str
    object_id: str | None
    details: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_before_id: int | None


@router.get("", response_model=AuditPage, responses=responses(401, 403, 422),
            summary="The audit log, newest first, filtered (admins)")
def audit_log(
    ctx: AdminOnly,
    actor: Annotated[str | None, Query(max_length=128)] = None,
    object_type: Annotated[str | None, Query(max_length=64)] = None,
    object_id: Annotated[str | None, Query(max_length=128)] = None,
    since: datetime | None = None,
    before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1,
                                           description="the page after this entry")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AuditPage:
    query = select(AuditLog)
    if actor is not None:
        query = query.where(AuditLog.actor == actor)
    if object_type is not None:
        query = query.where(AuditLog.object_type == object_type)
    if object_id is not None:
        query = query.where(AuditLog.object_id == object_id)
    if since is not None:
        if since.tzinfo is None:
            raise InvalidRequest("since: give a time zone (e.g. 2026-12-01T00:00:00Z)")
        query = query.where(AuditLog.at >= since)
    if before_id is not None:
        query = query.where(AuditLog.id < before_id)
    rows = list(ctx.db.scalars(query.order_by(AuditLog.id.desc()).limit(limit + 1)))
    items = rows[:limit]
    return AuditPage(items=[AuditEntry.model_validate(r) for r in items],
                     next_before_id=items[-1].id if len(rows) > limit else None)
