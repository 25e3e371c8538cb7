"""What the user administration routes take and return."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from vigil.auth.passwords import MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS
from vigil.schemas import DbId

RoleLiteral = Literal["admin", "manager", "engineer", "customer"]
Username = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")]
DisplayName = Annotated[str, StringConstraints(min_length=1, max_length=200,
                                               strip_whitespace=True)]
Email = Annotated[str, StringConstraints(max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")]
Password = Annotated[str, StringConstraints(min_length=MIN_PASSWORD_CHARS,
                                            max_length=MAX_PASSWORD_CHARS)]


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "username": "n.nurse", "display_name": "Nina Nurse", "roles": ["customer"],
        "site_ids": [1]}]})

    username: Username
    display_name: DisplayName
    email: Email | None = None
    roles: list[RoleLiteral] = Field(min_length=1, max_length=4)
    site_ids: list[DbId] = Field(default_factory=list, max_length=1000,
                                description="the sites a customer's user may see")
    password: Password | None = Field(None, description="empty: one is generated and shown once")


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    display_name: DisplayName | None = None
    email: Email | None = None
    active: bool | None = None
    roles: list[RoleLiteral] | None = Field(None, min_length=1, max_length=4)
    site_ids: list[DbId] | None = Field(None, max_length=1000)
    password: Password | None = None


class UserAdminOut(BaseModel):
    id: int
    username: str
    display_name: str
    email: str | None
    active: bool
    roles: list[str]
    site_ids: list[int]
    created_at: datetime


class NewUser(UserAdminOut):
    password: str | None = Field(description="the generated password, shown this once")
