"""Writing the audit log: always inside the caller's transaction, with the change it records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from vigil.audit.models import AuditLog


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: str | int | None,
    at: datetime,
    details: dict[str, Any] | None = None,
) -> AuditLog:
    entry = AuditLog(actor=actor, action=action, object_type=object_type,
                     object_id=None if object_id is None else str(object_id), at=at,
                     details=details or {})
    session.add(entry)
    return entry
