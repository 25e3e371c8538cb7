"""What the diagnosis routes take and return."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from vigil.schemas import DbId


class SessionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"device_id": "pump-7", "ticket_id": 42}]})

    device_id: str = Field(min_length=1, max_length=64)
    ticket_id: DbId | None = None


class CommandIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"cmd": "self_test"}, {"cmd": "set_sampling",
                                            "args": {"interval_s": 0.1, "duration_s": 60}}]})

    cmd: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    args: dict[str, float | int] = Field(default_factory=dict, max_length=16)


class CloseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field("closed by the engineer", min_length=1, max_length=200)


class ArgOut(BaseModel):
    name: str
    type: str
    min: float | None
    max: float | None
    required: bool


class CommandOut(BaseModel):
    """A command of the device's allow-list, and whether the device's state allows it now."""

    name: str
    help: str
    changes_device: bool
    timeout_s: float
    args: list[ArgOut]
    available: bool
    reason: str | None = None


class EntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    kind: str
    command_id: str | None
    payload: dict[str, Any]


class SessionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    device_id: str
    ticket_id: int | None
    engineer_id: int
    opened_at: datetime
    expires_at: datetime
    closed_at: datetime | None
    close_reason: str | None
    active: bool


class SessionDetail(SessionOut):
    device_state: str | None
    device_online: bool
    transcript: list[EntryOut]
