"""What the ticket routes take and return."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from vigil.devices.schemas import TicketBrief
from vigil.schemas import DbId

StateLiteral = Literal["open", "acknowledged", "diagnosing", "dispatched", "repaired",
                       "verified", "closed", "cancelled", "resolved_remotely"]


class TicketOut(TicketBrief):
    scope: str
    device_id: str | None
    site_id: int | None
    model: str | None = Field(description="the device model a fleet ticket is about (a fleet "
                                          "ticket has no device and no site); null otherwise")
    source: str
    signature: str
    description: str
    evidence_count: int
    assigned_to_id: int | None
    updated_at: datetime
    respond_by: datetime | None
    diagnose_by: datetime | None
    restore_by: datetime | None
    responded_at: datetime | None
    diagnosed_at: datetime | None
    restored_at: datetime | None
    closed_at: datetime | None
    paused_at: datetime | None
    pause_reason: str | None
    signed_off_at: datetime | None


class TicketEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor: str
    kind: str
    from_state: str | None
    to_state: str | None
    note: str
    data: dict[str, Any]


class TicketDetail(TicketOut):
    events: list[TicketEventOut]


class TicketPage(BaseModel):
    items: list[TicketOut]
    next_cursor: str | None


class FaultReport(BaseModel):
    """A customer's (or engineer's) report of a fault on a device."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "device_id": "pump-0001", "title": "Occlusion alarm without occlusion",
        "description": "Alarms every few minutes on ward 3 since this morning.",
        "category": "mechanical", "emergency": False}]})

    device_id: str = Field(min_length=1, max_length=64)
    title: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=10_000)
    category: Literal["mechanical", "electrical", "software", "environmental"] | None = None
    emergency: bool = Field(False, description="patient-safety risk or the device cannot start")


class TransitionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "to": "diagnosing", "note": "remote session opened"}]})

    to: StateLiteral
    note: str = Field("", max_length=4000)
    diagnosis_note: str | None = Field(None, max_length=4000)
    verification_result: str | None = Field(None, max_length=4000)
    reason: str | None = Field(None, max_length=1000)


class CommentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=4000)


class AssignmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assignee_id: DbId | None = Field(description="a user id; null unassigns")


class PauseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Literal["customer", "parts"]
    note: str = Field("", max_length=1000)
