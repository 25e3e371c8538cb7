"""Service contracts: the service levels and calendars customers bought (administrators)."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.deps import AdminOnly
from api.params import PathId, QueryId
from api.problems import responses
from vigil.db.base import utcnow
from vigil.schemas import DbId, not_null
from vigil.tickets import contracts

router = APIRouter(prefix="/contracts", tags=["contracts"])

Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Zone = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Weekday = Annotated[int, Field(ge=0, le=6)]
Minutes = Annotated[int, Field(gt=0, le=60 * 24 * 366)]
Levels = dict[Literal["P1", "P2", "P3"], dict[Literal["respond", "diagnose", "restore"], Minutes]]
LEVELS_DESCRIPTION = ("minutes per priority and milestone; what is left out keeps the "
                      "defaults (P1 60/240/1440, P2 120/1440/4320, P3 240/2880/10080)")


class ContractIn(BaseModel):
    """A contract for a customer (all its sites) or one site; no hours means 24 hours."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "name": "Full service, business hours", "customer_id": 1, "hours_start": "08:00:00",
        "hours_end": "17:00:00", "workdays": [0, 1, 2, 3, 4], "holidays": ["2026-12-25"],
        "levels": {"P1": {"respond": 30}}, "valid_from": "2026-01-01"}]})

    name: Name
    customer_id: DbId | None = None
    site_id: DbId | None = None
    timezone: Zone | None = Field(None, description="empty: the site's time zone")
    hours_start: time | None = None
    hours_end: time | None = None
    workdays: list[Weekday] = Field([0, 1, 2, 3, 4], max_length=7,
                                    description="0 = Monday")
    holidays: list[date] = Field(default_factory=list, max_length=400)
    levels: Levels = Field(default_factory=dict, description=LEVELS_DESCRIPTION)
    valid_from: date | None = None
    valid_to: date | None = None
    active: bool = True


class ContractPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "valid_to": "2027-12-31"}]})
    _required = not_null("name", "workdays", "holidays", "levels", "active")

    name: Name | None = None
    customer_id: DbId | None = None
    site_id: DbId | None = None
    timezone: Zone | None = None
    hours_start: time | None = None
    hours_end: time | None = None
    workdays: list[Weekday] | None = Field(None, max_length=7)
    holidays: list[date] | None = Field(None, max_length=400)
    levels: Levels | None = Field(None, description=LEVELS_DESCRIPTION)
    valid_from: date | None = None
    valid_to: date | None = None
    active: bool | None = None


class ContractOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{
        "id": 1, "name": "Full service, business hours", "customer_id": 1, "site_id": None,
        "timezone": None, "hours_start": "08:00:00", "hours_end": "17:00:00",
        "workdays": [0, 1, 2, 3, 4], "holidays": ["2026-12-25"],
        "levels": {"P1": {"respond": 30}}, "valid_from": "2026-01-01", "valid_to": None,
        "active": True, "created_at": "2026-01-01T00:00:00Z"}]})

    id: int
    name: str
    customer_id: int | None
    site_id: int | None
    timezone: str | None
    hours_start: time | None
    hours_end: time | None
    workdays: list[int]
    holidays: list[str]
    levels: dict[str, Any]
    valid_from: date | None
    valid_to: date | None
    active: bool
    created_at: datetime


@router.get("", response_model=list[ContractOut], responses=responses(401, 403, 422),
            summary="Service contracts, of one customer or site (administrators)")
def list_contracts(ctx: AdminOnly, customer_id: QueryId = None,
                   site_id: QueryId = None) -> list[ContractOut]:
    return [ContractOut.model_validate(c) for c in contracts.list_contracts(
        ctx.db, customer_id=customer_id, site_id=site_id)]


@router.get("/{contract_id}", response_model=ContractOut, responses=responses(401, 403, 404),
            summary="One service contract (administrators)")
def get_contract(contract_id: PathId, ctx: AdminOnly) -> ContractOut:
    return ContractOut.model_validate(contracts.get_contract(ctx.db, contract_id=contract_id))


@router.post("", response_model=ContractOut, status_code=status.HTTP_201_CREATED,
             responses=responses(401, 403, 422),
             summary="Add a service contract; it applies to tickets opened from then on "
                     "(administrators)")
def create_contract(body: ContractIn, ctx: AdminOnly) -> ContractOut:
    return ContractOut.model_validate(contracts.create_contract(
        ctx.db, values=body.model_dump(), actor=ctx.principal.username, now=utcnow()))


@router.patch("/{contract_id}", response_model=ContractOut,
              responses=responses(401, 403, 404, 422),
              summary="Change a service contract; open tickets keep their deadlines "
                      "(administrators)")
def update_contract(contract_id: PathId, body: ContractPatch, ctx: AdminOnly) -> ContractOut:
    return ContractOut.model_validate(contracts.update_contract(
        ctx.db, contract_id=contract_id, changes=body.model_dump(exclude_unset=True),
        actor=ctx.principal.username, now=utcnow()))
