"""Maintenance and calibration plans and the work recorded against them.

Everyone signed in reads the plans and records of the devices they may see
(a customer's users: their own sites' devices, in the query); managers and
administrators create and change plans; engineers and managers record work
done (``vigil.maintenance.service`` sets the next due date and opens a
corrective ticket for a value out of tolerance).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import Select, select

from api.deps import Ctx, FieldStaff, ManagersOnly, SignedIn
from api.params import PathId, QueryId
from api.problems import responses
from api.tickets import actor_of, desk_rules
from vigil.auth.visibility import device_visible
from vigil.db.base import utcnow
from vigil.db.enums import MaintenanceKind
from vigil.devices.health import visible_device
from vigil.devices.models import Device
from vigil.errors import InvalidRequest, NotFound
from vigil.maintenance import service
from vigil.maintenance.models import MaintenancePlan
from vigil.schemas import not_null

router = APIRouter(prefix="/maintenance", tags=["maintenance"])

DeviceIdQuery = Annotated[str | None, Query(max_length=64, description="one device's id")]
ModelQuery = Annotated[str | None, Query(max_length=64, description="one device model")]
Title = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Procedure = Annotated[str, StringConstraints(max_length=4000)]


class ToleranceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    nominal: float | None = Field(None, allow_inf_nan=False)
    low: float | None = Field(None, allow_inf_nan=False)
    high: float | None = Field(None, allow_inf_nan=False)
    unit: Annotated[str, StringConstraints(max_length=32)] = ""


Tolerances = Annotated[dict[Annotated[str, StringConstraints(min_length=1, max_length=64)],
                            ToleranceIn], Field(max_length=50)]


class PlanIn(BaseModel):
    """A plan for one device or for every device of a model (exactly one of the two)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "kind": "calibration", "title": "Flow sensor calibration", "device_model": "IP-100",
        "interval_days": 365, "lead_days": 14, "grace_days": 7,
        "procedure": "Calibrate against the reference flow meter.",
        "tolerances": {"flow_error_pct": {"nominal": 0, "low": -5, "high": 5, "unit": "%"}}}]})

    kind: Literal["preventive", "calibration"]
    title: Title
    device_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    device_model: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    interval_days: int | None = Field(None, ge=1, le=36_500)
    interval_usage_hours: float | None = Field(None, gt=0, le=1_000_000, allow_inf_nan=False)
    lead_days: int = Field(14, ge=0, le=3650)
    grace_days: int = Field(0, ge=0, le=3650)
    procedure: Procedure = ""
    tolerances: Tolerances = Field(default_factory=dict)
    last_done_at: datetime | None = Field(
        None, description="when the work was last done before Vigil tracked it")


class PlanPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "interval_days": 180, "active": True}]})
    _required = not_null("title", "lead_days", "grace_days", "procedure", "tolerances",
                         "active")

    title: Title | None = None
    interval_days: int | None = Field(None, ge=1, le=36_500)
    interval_usage_hours: float | None = Field(None, gt=0, le=1_000_000, allow_inf_nan=False)
    lead_days: int | None = Field(None, ge=0, le=3650)
    grace_days: int | None = Field(None, ge=0, le=3650)
    procedure: Procedure | None = None
    tolerances: Tolerances | None = None
    active: bool | None = None


class PlanOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{
        "id": 1, "kind": "calibration", "title": "Flow sensor calibration", "device_id": None,
        "device_model": "IP-100", "interval_days": 365, "interval_usage_hours": None,
        "lead_days": 14, "grace_days": 7, "procedure": "", "tolerances": {},
        "last_done_at": None, "next_due_at": "2027-03-01T00:00:00Z", "active": True}]})

    id: int
    kind: str
    title: str
    device_id: str | None
    device_model: str | None
    interval_days: int | None
    interval_usage_hours: float | None
    lead_days: int
    grace_days: int
    procedure: str
    tolerances: dict[str, Any]
    last_done_at: datetime | None
    next_due_at: datetime | None
    active: bool


class RecordIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "device_id": "pump-0001", "performed_at": "2026-12-02T10:00:00Z",
        "results": "Calibrated; seals replaced.", "measurements": {"flow_error_pct": 1.2},
        "usage_hours": 5120.5}]})

    device_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    performed_at: datetime
    results: Annotated[str, StringConstraints(max_length=4000)] = ""
    measurements: Annotated[dict[Annotated[str, StringConstraints(min_length=1,
                                                                  max_length=64)],
                                 Annotated[float, Field(allow_inf_nan=False)]],
                            Field(max_length=50)] = Field(default_factory=dict)
    usage_hours: float | None = Field(None, ge=0, le=10_000_000, allow_inf_nan=False)


class RecordOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{
        "id": 9, "plan_id": 1, "device_id": "pump-0001", "kind": "calibration",
        "ticket_id": 40, "due_at": "2026-12-05T00:00:00Z",
        "performed_at": "2026-12-02T10:00:00Z", "performed_by": "eve", "usage_hours": 5120.5,
        "results": "Calibrated; seals replaced.", "measurements": [
            {"name": "flow_error_pct", "value": 1.2, "low": -5, "high": 5, "nominal": 0,
             "unit": "%", "within": True}],
        "passed": True, "corrective_ticket_id": None, "next_due_at": "2027-12-02T10:00:00Z",
        "created_at": "2026-12-02T10:05:00Z"}]})

    id: int
    plan_id: int
    device_id: str
    kind: str
    ticket_id: int | None
    due_at: datetime | None
    performed_at: datetime
    performed_by: str
    usage_hours: float | None
    results: str
    measurements: list[Any]
    passed: bool
    corrective_ticket_id: int | None
    next_due_at: datetime | None
    created_at: datetime


def _visible_device_ids(ctx: Ctx) -> Select[Any] | None:
    """The devices the caller may see, as a query; None for the service organisation."""
    if ctx.principal.is_staff:
        return None
    return select(Device.id).where(device_visible(ctx.principal))


def _plan(ctx: Ctx, plan_id: int) -> MaintenancePlan:
    plans = service.visible_plans(ctx.db, device_ids=_visible_device_ids(ctx), plan_id=plan_id)
    if not plans:
        raise NotFound(f"maintenance plan {plan_id} not found")
    return plans[0]


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise InvalidRequest(f"{name}: give a time zone (e.g. 2026-12-01T00:00:00Z)")
    return None if value is None else value.astimezone(UTC)


@router.get("/plans", response_model=list[PlanOut], responses=responses(401, 403, 404, 422),
            summary="Plans of the devices the caller may see, for one device or one model")
def list_plans(
    ctx: SignedIn,
    device_id: DeviceIdQuery = None,
    model: ModelQuery = None,
    active: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> list[PlanOut]:
    if device_id is not None:
        visible_device(ctx.db, principal=ctx.principal, device_id=device_id)
    plans = service.visible_plans(ctx.db, device_ids=_visible_device_ids(ctx),
                                  device_id=device_id, device_model=model, active=active,
                                  limit=limit)
    return [PlanOut.model_validate(p) for p in plans]


@router.get("/plans/{plan_id}", response_model=PlanOut, responses=responses(401, 403, 404),
            summary="One plan")
def get_plan(plan_id: PathId, ctx: SignedIn) -> PlanOut:
    return PlanOut.model_validate(_plan(ctx, plan_id))


@router.post("/plans", response_model=PlanOut, status_code=status.HTTP_201_CREATED,
             responses=responses(401, 403, 404, 422),
             summary="Add a plan for a device or a model (managers and administrators)")
def create_plan(body: PlanIn, ctx: ManagersOnly) -> PlanOut:
    plan = service.create_plan(
        ctx.db, kind=MaintenanceKind(body.kind), title=body.title,
        actor=actor_of(ctx.principal), now=utcnow(), device_id=body.device_id,
        device_model=body.device_model, interval_days=body.interval_days,
        interval_usage_hours=body.interval_usage_hours, lead_days=body.lead_days,
        grace_days=body.grace_days, procedure=body.procedure,
        tolerances={k: v.model_dump(exclude_none=True) for k, v in body.tolerances.items()},
        baseline=_aware(body.last_done_at, "last_done_at"))
    return PlanOut.model_validate(plan)


@router.patch("/plans/{plan_id}", response_model=PlanOut,
              responses=responses(401, 403, 404, 422),
              summary="Change a plan's schedule, procedure or tolerances, or retire it "
                      "(managers and administrators)")
def update_plan(plan_id: PathId, body: PlanPatch, ctx: ManagersOnly) -> PlanOut:
    changes = body.model_dump(exclude_unset=True)
    if "tolerances" in changes and body.tolerances is not None:
        changes["tolerances"] = {k: v.model_dump(exclude_none=True)
                                 for k, v in body.tolerances.items()}
    return PlanOut.model_validate(service.update_plan(
        ctx.db, plan_id=plan_id, changes=changes, actor=actor_of(ctx.principal), now=utcnow()))


@router.get("/records", response_model=list[RecordOut], responses=responses(401, 403, 404, 422),
            summary="Work done on the devices the caller may see, newest first")
def list_records(
    ctx: SignedIn,
    device_id: DeviceIdQuery = None,
    model: ModelQuery = None,
    plan_id: QueryId = None,
    before_id: QueryId = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[RecordOut]:
    if device_id is not None:
        visible_device(ctx.db, principal=ctx.principal, device_id=device_id)
    records = service.visible_records(ctx.db, device_ids=_visible_device_ids(ctx),
                                      device_id=device_id, device_model=model, plan_id=plan_id,
                                      before_id=before_id, limit=limit)
    return [RecordOut.model_validate(r) for r in records]


@router.post("/plans/{plan_id}/records", response_model=RecordOut,
             status_code=status.HTTP_201_CREATED, responses=responses(401, 403, 404, 422),
             summary="Record work done on a plan for one of its devices (engineers and "
                     "managers); sets the next due date")
def record_work(plan_id: PathId, body: RecordIn, ctx: FieldStaff,
                request: Request) -> RecordOut:
    performed_at = _aware(body.performed_at, "performed_at")
    assert performed_at is not None
    entry = service.complete(
        ctx.db, plan_id=plan_id, device_id=body.device_id, actor=actor_of(ctx.principal),
        performed_at=performed_at, now=utcnow(), ticket_rules=desk_rules(request),
        results=body.results, measurements=body.measurements, usage_hours=body.usage_hours,
        engineer_user_id=ctx.principal.user_id)
    return RecordOut.model_validate(entry)
