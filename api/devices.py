"""Devices: the fleet's health, one device's page, telemetry ranges and CSV export."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import pydantic_core
from fastapi import APIRouter, Depends, Path, Query, Request, status
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from api.deps import AdminOnly, SignedIn, after_commit
from api.params import QueryId
from api.problems import responses
from vigil.db.base import utcnow
from vigil.devices import credentials, health, registry
from vigil.devices.models import DeviceEvent, Prediction
from vigil.devices.schemas import (
    DeviceCredential,
    DeviceDetail,
    DeviceIn,
    DeviceOut,
    DevicePage,
    DevicePatch,
    EventOut,
    PlanOut,
    PredictionOut,
    TelemetryOut,
    TicketBrief,
)
from vigil.errors import InvalidRequest
from vigil.maintenance.models import MaintenancePlan
from vigil.telemetry.store import AGGREGATES, TelemetryStore
from vigil.tickets.models import Ticket

router = APIRouter(prefix="/devices", tags=["devices"])

DeviceId = Annotated[str, Path(max_length=64, description="the device's MQTT id")]
# A raw (unaggregated) range longer than this must ask for a resolution.
MAX_RAW_RANGE = timedelta(days=2)
MAX_ROWS = 200_000


def device_out(item: health.DeviceHealth) -> DeviceOut:
    return DeviceOut(**item._asdict())


def latest_readings(
    store: TelemetryStore, device_ids: Sequence[str]
) -> dict[str, tuple[dict[str, float | None], datetime | None]]:
    """Each device's newest value per metric and their time, for the devices with readings.

    A metric without a number is None: with several devices, that includes the
    metrics only other devices report.
    """
    latest = store.latest(list(device_ids))
    found: dict[str, tuple[dict[str, float | None], datetime | None]] = {}
    for device_id, row in latest.iterrows():
        readings: dict[str, float | None] = {}
        readings_at = None
        for name, value in row.items():
            if name == "time":
                readings_at = value.to_pydatetime() if hasattr(value, "to_pydatetime") else value
            else:
                readings[str(name)] = None if value is None or math.isnan(value) else float(value)
        found[str(device_id)] = (readings, readings_at)
    return found


def device_page(
    ctx: SignedIn,
    site_id: QueryId = None,
    customer_id: QueryId = None,
    model: Annotated[str | None, Query(max_length=64)] = None,
    online: bool | None = None,
    has_open_tickets: bool | None = None,
    q: Annotated[str | None, Query(max_length=64, description="part of the id or serial")] = None,
    sort: Literal["id", "last_seen", "model", "serial", "risk"] = "id",
    order: Literal["asc", "desc"] = "asc",
    limit: Annotated[int, Query(ge=1, le=health.MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> health.Page:
    """The health list's page as rows, for the API and the console alike."""
    return health.list_devices(
        ctx.db, principal=ctx.principal,
        filters=health.DeviceFilter(site_id=site_id, customer_id=customer_id, model=model,
                                    online=online, has_open_tickets=has_open_tickets, search=q),
        sort=sort, descending=order == "desc", limit=limit, cursor=cursor,
    )


# Answered with JSON made straight from the rows: DevicePage documents it, but building and
# validating 100 DeviceOut models a page cost about 4 ms of the list's time (cProfile).
# Async, as the page is loaded by then: a plain function would make one more trip to a
# worker thread and back for 0.24 ms of serialising.
@router.get("", response_model=DevicePage, responses=responses(401, 403, 422),
            summary="Devices with their health, filtered, sorted and paged by cursor")
async def list_devices(page: Annotated[health.Page, Depends(device_page)]) -> Response:
    body = {"items": [item._asdict() for item in page.items], "next_cursor": page.next_cursor}
    return Response(pydantic_core.to_json(body), media_type="application/json")


@router.get("/{device_id}", response_model=DeviceDetail, responses=responses(401, 403, 404),
            summary="One device: health, latest readings, events, tickets and predictions")
def get_device(device_id: DeviceId, ctx: SignedIn, request: Request) -> DeviceDetail:
    item = health.get_device_health(ctx.db, principal=ctx.principal, device_id=device_id)
    readings, readings_at = latest_readings(request.app.state.telemetry(), [device_id]).get(
        device_id, ({}, None))
    events = ctx.db.scalars(select(DeviceEvent).where(DeviceEvent.device_id == device_id)
                            .order_by(DeviceEvent.ts.desc()).limit(20))
    tickets = ctx.db.scalars(select(Ticket).where(Ticket.device_id == device_id)
                             .order_by(Ticket.created_at.desc()).limit(20))
    predictions = ctx.db.scalars(select(Prediction).where(Prediction.device_id == device_id)
                                 .order_by(Prediction.made_at.desc()).limit(5))
    plans = ctx.db.scalars(
        select(MaintenancePlan)
        .where(MaintenancePlan.active.is_(True),
               or_(MaintenancePlan.device_id == device_id,
                   MaintenancePlan.device_model == item.model))
        .order_by(MaintenancePlan.next_due_at, MaintenancePlan.id))
    return DeviceDetail(
        **device_out(item).model_dump(), readings=readings, readings_at=readings_at,
        events=[EventOut.model_validate(e) for e in events],
        tickets=[TicketBrief.model_validate(t) for t in tickets],
        predictions=[PredictionOut.model_validate(p) for p in predictions],
        plans=[PlanOut.model_validate(p) for p in plans],
    )


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise InvalidRequest(f"{name}: give a time zone (e.g. 2026-12-01T00:00:00Z)")
    return value.astimezone(UTC)


@router.get(
    "/{device_id}/telemetry",
    response_model=TelemetryOut,
    responses={**responses(401, 403, 404, 422, 503),
               200: {"content": {"application/json": {}, "text/csv": {}},
                     "description": "the readings, as JSON columns or as CSV"}},
    summary="A device's readings over a time range, raw or at a resolution; JSON or CSV",
)
def telemetry(
    device_id: DeviceId,
    ctx: SignedIn,
    request: Request,
    start: datetime,
    end: datetime,
    metrics: Annotated[list[str] | None, Query(max_length=50)] = None,
    resolution_s: Annotated[int | None, Query(ge=1, le=31 * 86400)] = None,
    aggregate: Literal["mean", "min", "max", "sum", "count", "first", "last", "median"] = "mean",
    format: Literal["json", "csv"] = "json",
) -> TelemetryOut | Response:
    health.visible_device(ctx.db, principal=ctx.principal, device_id=device_id)
    start, end = _aware(start, "start"), _aware(end, "end")
    if end <= start:
        raise InvalidRequest("end: must be after start")
    if resolution_s is None and end - start > MAX_RAW_RANGE:
        raise InvalidRequest(f"resolution_s: needed for ranges over {MAX_RAW_RANGE.days} days")
    if resolution_s is not None and (end - start).total_seconds() / resolution_s > MAX_ROWS:
        raise InvalidRequest(f"resolution_s: too fine for this range (over {MAX_ROWS} rows)")
    assert aggregate in AGGREGATES
    frame = request.app.state.telemetry().query(
        device_id, start, end, metrics=metrics or None,
        interval=timedelta(seconds=resolution_s) if resolution_s else None, aggregate=aggregate,
    )
    columns = [str(c) for c in frame.columns]
    times = frame.index.as_unit("ms").asi8.tolist() if len(frame) else []
    values = frame.to_numpy(dtype="float64", na_value=math.nan).tolist() if len(frame) else []
    rows = [[t, *(None if math.isnan(v) else v for v in row)]
            for t, row in zip(times, values, strict=True)]
    if format == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["time", *columns])
        for t, *vals in rows:
            stamp = datetime.fromtimestamp(t / 1000, UTC).isoformat().replace("+00:00", "Z")
            writer.writerow([stamp, *("" if v is None else repr(v) for v in vals)])
        name = f"{device_id}_{start:%Y%m%dT%H%M%SZ}_{end:%Y%m%dT%H%M%SZ}.csv"
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
    return TelemetryOut(device=device_id, start=start, end=end, resolution_s=resolution_s,
                        aggregate=aggregate if resolution_s else None,
                        columns=["time", *columns], rows=rows)




class RegisteredDevice(BaseModel):
    device: DeviceOut
    credential: DeviceCredential


def _sync_broker_after_commit(request: Request, session: Session) -> None:
    files: credentials.BrokerFiles | None = request.app.state.broker_files
    if files is not None:
        factory = request.app.state.sessions
        after_commit(session, lambda: credentials.sync_broker(factory, files))


def _issue(request: Request, ctx: AdminOnly, device_id: str) -> DeviceCredential:
    password = credentials.issue_credential(ctx.db, device_id=device_id,
                                            actor=ctx.principal.username, now=utcnow())
    _sync_broker_after_commit(request, ctx.db)
    return DeviceCredential(device_id=device_id, username=device_id, password=password)


@router.post("", response_model=RegisteredDevice, status_code=status.HTTP_201_CREATED,
             responses=responses(401, 403, 409, 422),
             summary="Register a device; its MQTT password is in this answer only (admins)")
def register_device(body: DeviceIn, ctx: AdminOnly, request: Request) -> RegisteredDevice:
    registry.create_device(ctx.db, device_id=body.id, fields=body.model_dump(exclude={"id"}),
                           actor=ctx.principal.username, now=utcnow())
    credential = _issue(request, ctx, body.id)
    item = health.get_device_health(ctx.db, principal=ctx.principal, device_id=body.id)
    return RegisteredDevice(device=device_out(item), credential=credential)


@router.patch("/{device_id}", response_model=DeviceOut,
              responses=responses(401, 403, 404, 409, 422),
              summary="Change a device's registry entry (admins)")
def update_device(device_id: DeviceId, body: DevicePatch, ctx: AdminOnly) -> DeviceOut:
    registry.update_device(ctx.db, device_id=device_id, fields=body.model_dump(exclude_unset=True),
                           actor=ctx.principal.username, now=utcnow())
    return device_out(health.get_device_health(ctx.db, principal=ctx.principal,
                                               device_id=device_id))


@router.post("/{device_id}/credential", response_model=DeviceCredential,
             responses=responses(401, 403, 404),
             summary="Issue a new MQTT password, replacing the old one (admins)")
def rotate_credential(device_id: DeviceId, ctx: AdminOnly, request: Request) -> DeviceCredential:
    return _issue(request, ctx, device_id)


@router.delete("/{device_id}/credential", status_code=status.HTTP_204_NO_CONTENT,
               responses=responses(401, 403, 404),
               summary="Revoke the device's MQTT credential: the broker refuses it (admins)")
def revoke_credential(device_id: DeviceId, ctx: AdminOnly, request: Request) -> Response:
    credentials.revoke_credential(ctx.db, device_id=device_id, actor=ctx.principal.username,
                                  now=utcnow())
    _sync_broker_after_commit(request, ctx.db)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
