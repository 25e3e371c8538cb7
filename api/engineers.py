"""Service engineers, their working time and their qualifications (administrators)."""

from __future__ import annotations

from datetime import date, time
from typing import Annotated

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.deps import AdminOnly
from api.params import PathId
from api.problems import responses
from vigil.db.base import utcnow
from vigil.engineers import service
from vigil.engineers.models import Engineer, Qualification
from vigil.schemas import DbId, not_null

router = APIRouter(prefix="/engineers", tags=["engineers"])

ShortText = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]
Weekday = Annotated[int, Field(ge=0, le=6)]


class EngineerIn(BaseModel):
    """A user of the service organisation made assignable; no hours: on call all day."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "user_id": 3, "region": "north", "timezone": "Europe/Berlin",
        "hours_start": "08:00:00", "hours_end": "17:00:00", "workdays": [0, 1, 2, 3, 4]}]})

    user_id: DbId
    region: ShortText | None = None
    timezone: ShortText = "UTC"
    hours_start: time | None = None
    hours_end: time | None = None
    workdays: list[Weekday] = Field([0, 1, 2, 3, 4], max_length=7, description="0 = Monday")
    days_off: list[date] = Field(default_factory=list, max_length=400)
    active: bool = True


class EngineerPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "days_off": ["2026-12-24", "2026-12-31"]}]})
    _required = not_null("timezone", "workdays", "days_off", "active")

    region: ShortText | None = None
    timezone: ShortText | None = None
    hours_start: time | None = None
    hours_end: time | None = None
    workdays: list[Weekday] | None = Field(None, max_length=7)
    days_off: list[date] | None = Field(None, max_length=400)
    active: bool | None = None


class QualificationIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "device_model": "IP-100", "qualified_on": "2026-01-15", "expires_on": "2028-01-14"}]})

    device_model: ShortText
    qualified_on: date
    expires_on: date


class QualificationPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "qualified_on": "2028-01-10", "expires_on": "2030-01-09"}]})

    qualified_on: date | None = None
    expires_on: date | None = None


class QualificationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    device_model: str
    qualified_on: date
    expires_on: date


class EngineerOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": 1, "user_id": 3, "username": "eve", "display_name": "Eve Engineer",
        "region": "north", "timezone": "Europe/Berlin", "hours_start": "08:00:00",
        "hours_end": "17:00:00", "workdays": [0, 1, 2, 3, 4], "days_off": [], "active": True,
        "qualifications": [{"id": 1, "device_model": "IP-100", "qualified_on": "2026-01-15",
                            "expires_on": "2028-01-14"}]}]})

    id: int
    user_id: int
    username: str
    display_name: str
    region: str | None
    timezone: str
    hours_start: time | None
    hours_end: time | None
    workdays: list[int]
    days_off: list[str]
    active: bool
    qualifications: list[QualificationOut]


def engineer_out(engineer: Engineer) -> EngineerOut:
    return EngineerOut(
        id=engineer.id, user_id=engineer.user_id, username=engineer.user.username,
        display_name=engineer.user.display_name, region=engineer.region,
        timezone=engineer.timezone, hours_start=engineer.hours_start,
        hours_end=engineer.hours_end, workdays=list(engineer.workdays),
        days_off=[str(d) for d in engineer.days_off], active=engineer.active,
        qualifications=[QualificationOut.model_validate(q) for q in
                        sorted(engineer.qualifications, key=lambda q: q.id)])


@router.get("", response_model=list[EngineerOut], responses=responses(401, 403),
            summary="Every engineer with qualifications (administrators)")
def list_engineers(ctx: AdminOnly) -> list[EngineerOut]:
    return [engineer_out(e) for e in service.list_engineers(ctx.db)]


@router.get("/{engineer_id}", response_model=EngineerOut, responses=responses(401, 403, 404),
            summary="One engineer (administrators)")
def get_engineer(engineer_id: PathId, ctx: AdminOnly) -> EngineerOut:
    return engineer_out(service.get_engineer(ctx.db, engineer_id=engineer_id))


@router.post("", response_model=EngineerOut, status_code=status.HTTP_201_CREATED,
             responses=responses(401, 403, 409, 422),
             summary="Make an engineer or manager assignable, with working time "
                     "(administrators)")
def create_engineer(body: EngineerIn, ctx: AdminOnly) -> EngineerOut:
    engineer = service.create_engineer(
        ctx.db, user_id=body.user_id, values=body.model_dump(exclude={"user_id"}),
        actor=ctx.principal.username, now=utcnow())
    ctx.db.refresh(engineer)
    return engineer_out(engineer)


@router.patch("/{engineer_id}", response_model=EngineerOut,
              responses=responses(401, 403, 404, 422),
              summary="Change an engineer's region, working time or days off (administrators)")
def update_engineer(engineer_id: PathId, body: EngineerPatch, ctx: AdminOnly) -> EngineerOut:
    return engineer_out(service.update_engineer(
        ctx.db, engineer_id=engineer_id, changes=body.model_dump(exclude_unset=True),
        actor=ctx.principal.username, now=utcnow()))


@router.post("/{engineer_id}/qualifications", response_model=QualificationOut,
             status_code=status.HTTP_201_CREATED, responses=responses(401, 403, 404, 409, 422),
             summary="Record an engineer's assessment on a device model (administrators)")
def add_qualification(engineer_id: PathId, body: QualificationIn,
                      ctx: AdminOnly) -> QualificationOut:
    return QualificationOut.model_validate(service.add_qualification(
        ctx.db, engineer_id=engineer_id, device_model=body.device_model,
        qualified_on=body.qualified_on, expires_on=body.expires_on,
        actor=ctx.principal.username, now=utcnow()))


@router.patch("/{engineer_id}/qualifications/{qualification_id}",
              response_model=QualificationOut, responses=responses(401, 403, 404, 422),
              summary="Renew or correct a qualification's dates (administrators)")
def update_qualification(engineer_id: PathId, qualification_id: PathId,
                         body: QualificationPatch, ctx: AdminOnly) -> QualificationOut:
    qualification: Qualification = service.update_qualification(
        ctx.db, engineer_id=engineer_id, qualification_id=qualification_id,
        qualified_on=body.qualified_on, expires_on=body.expires_on,
        actor=ctx.principal.username, now=utcnow())
    return QualificationOut.model_validate(qualification)
