"""HL7 FHIR R4: devices as ``Device`` resources, one by one or as a searchset Bundle.

For a hospital's systems (device inventories, biomedical engineering software)
that speak FHIR rather than Vigil's own API. The same visibility applies: a
customer's users find only their own devices; another customer's answers 404.
Errors stay RFC 9457 problems like the rest of the API.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from fhir.resources.R4B.device import Device as FhirDevice
from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from api.deps import SignedIn
from api.devices import latest_readings
from api.problems import responses
from vigil.db.base import utcnow
from vigil.db.enums import MaintenanceKind
from vigil.devices import fhir, health
from vigil.devices.models import Device, Site
from vigil.errors import NotFound
from vigil.maintenance.models import MaintenancePlan

router = APIRouter(prefix="/fhir", tags=["fhir"])

MAX_COUNT = 500


def _fhir_content(resource_type: str, description: str) -> dict[int | str, dict[str, Any]]:
    schema = {"type": "object", "required": ["resourceType"],
              "properties": {"resourceType": {"type": "string", "enum": [resource_type]}}}
    return {200: {"description": description,
                  "content": {fhir.FHIR_JSON: {"schema": schema}}}}


class FhirResponse(Response):
    media_type = fhir.FHIR_JSON


def _calibration_plans(db: Session, devices: Sequence[Device]) -> list[MaintenancePlan]:
    ids = sorted({d.id for d in devices})
    models = sorted({d.model for d in devices})
    return list(db.scalars(
        select(MaintenancePlan)
        .where(MaintenancePlan.active.is_(True),
               MaintenancePlan.kind == MaintenanceKind.CALIBRATION,
               or_(MaintenancePlan.device_id.in_(ids), MaintenancePlan.device_model.in_(models)))
        .order_by(MaintenancePlan.id)))


def _resources(db: Session, request: Request, devices: Sequence[Device]) -> list[FhirDevice]:
    """Each device's resource, with its reported metrics and calibration."""
    if not devices:
        return []
    latest = latest_readings(request.app.state.telemetry(), [d.id for d in devices])
    plans = _calibration_plans(db, devices)
    # Loaded at once and held, the sites and customers are in the identity map, not read per device.
    site_ids = sorted({d.site_id for d in devices if d.site_id is not None})
    sites = list(db.scalars(select(Site).options(selectinload(Site.customer))
                            .where(Site.id.in_(site_ids))))
    now = utcnow()
    resources = []
    for device in devices:
        readings, _ = latest.get(device.id, ({}, None))
        resources.append(fhir.device_resource(
            device,
            metrics=[name for name, value in readings.items() if value is not None],
            calibration=fhir.calibration_of(device, plans, now=now),
        ))
    del sites
    return resources


@router.get(
    "/Device/{device_id}",
    response_class=FhirResponse,
    responses={**_fhir_content("Device", "the device as a FHIR R4 Device resource"),
               **responses(401, 403, 404, 503)},
    summary="One device as a FHIR R4 Device, with a DeviceMetric per reading it reports",
)
def read_device(
    device_id: Annotated[str, Path(max_length=200, description="the Device's logical id")],
    ctx: SignedIn,
    request: Request,
) -> Response:
    wanted = fhir.device_id_of(device_id)
    if wanted is None:
        raise NotFound(f"device {device_id!r} not found")
    device = health.visible_device(ctx.db, principal=ctx.principal, device_id=wanted)
    [resource] = _resources(ctx.db, request, [device])
    return FhirResponse(resource.model_dump_json())


@router.get(
    "/Device",
    response_class=FhirResponse,
    responses={**_fhir_content("Bundle", "a searchset Bundle of the devices the caller sees"),
               **responses(401, 403, 422, 503)},
    summary="Devices as a FHIR R4 searchset Bundle, paged by the Bundle's next link",
)
def search_devices(
    ctx: SignedIn,
    request: Request,
    model: Annotated[str | None, Query(max_length=64, description="the model number")] = None,
    count: Annotated[int, Query(alias="_count", ge=1, le=MAX_COUNT,
                                description="devices per page")] = 100,
    cursor: Annotated[str | None, Query(alias="_cursor", max_length=500,
                                        description="from the Bundle's next link")] = None,
) -> Response:
    page = health.list_devices(ctx.db, principal=ctx.principal,
                               filters=health.DeviceFilter(model=model), sort="id",
                               limit=count, cursor=cursor)
    devices = health.devices_of(ctx.db, page.items)
    base = str(request.url.replace(query="")).removesuffix("Device")
    next_url = None
    if page.next_cursor is not None:
        next_url = str(request.url.include_query_params(_cursor=page.next_cursor))
    bundle = fhir.searchset(_resources(ctx.db, request, devices), base_url=base,
                            self_url=str(request.url), next_url=next_url)
    return FhirResponse(bundle.model_dump_json())
