"""What the device, customer and site routes take and return."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from edge_agent.protocol import DEVICE_ID_RE
from vigil.schemas import DbId, not_null

Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]
Udi = Annotated[str, StringConstraints(min_length=1, max_length=255, strip_whitespace=True)]
UDI_DESCRIPTION = "Unique Device Identifier, human-readable form, e.g. GS1 (01)...(21)..."


class DeviceOut(BaseModel):
    """A device and its health: what it last said, open tickets, and the latest failure risk."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "pump-0001", "serial": "IP100-0001", "model": "IP-100", "site_id": 1,
        "firmware": "2.4.1", "online": True, "state": "online",
        "last_seen": "2026-12-02T10:00:00Z", "open_tickets": 1, "risk": 0.12,
        "risk_horizon_days": 30.0, "has_credential": True,
        "install_date": "2024-03-01", "warranty_end": None,
    }]})

    id: str
    serial: str
    model: str
    site_id: int | None
    firmware: str | None
    online: bool
    state: str | None
    last_seen: datetime | None
    open_tickets: int
    risk: float | None = Field(description="probability of failure within the horizon")
    risk_horizon_days: float | None
    has_credential: bool = Field(description="the device holds a live MQTT credential")
    install_date: date | None
    warranty_end: date | None
    udi: str | None = Field(default=None, description=UDI_DESCRIPTION)


class DevicePage(BaseModel):
    items: list[DeviceOut]
    next_cursor: str | None = Field(description="?cursor= for the next page; null at the end")


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    ts: datetime
    code: str
    severity: str
    text: str


class TicketBrief(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    state: str
    priority: str
    category: str
    created_at: datetime


class PredictionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    made_at: datetime
    horizon_days: float
    probability: float
    rul_days: float | None
    rul_lower_days: float | None
    rul_upper_days: float | None
    model_version: str
    drivers: dict[str, object]
    fault_type: str | None = None
    basis: dict[str, object] = {}


class PlanOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    title: str
    interval_days: int | None
    interval_usage_hours: float | None
    last_done_at: datetime | None
    next_due_at: datetime | None


class DeviceDetail(DeviceOut):
    """One device's page: health, latest readings, recent events, tickets, predictions, plans."""

    readings: dict[str, float | None]
    readings_at: datetime | None
    events: list[EventOut]
    tickets: list[TicketBrief]
    predictions: list[PredictionOut]
    plans: list[PlanOut] = Field(description="active maintenance and calibration plans")


class TelemetryOut(BaseModel):
    """Readings as columns: ``time`` (epoch ms, UTC) then one column per metric; null = no value."""

    device: str
    start: datetime
    end: datetime
    resolution_s: int | None
    aggregate: str | None
    columns: list[str]
    rows: list[list[float | int | None]]


class DeviceIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "id": "pump-0001", "serial": "IP100-0001", "model": "IP-100", "site_id": 1,
    }]})

    id: str = Field(pattern=f"^{DEVICE_ID_RE.pattern}$", max_length=64,
                    description="the device's MQTT id and user name")
    serial: ShortText
    model: ShortText
    site_id: DbId | None = None
    install_date: date | None = None
    warranty_end: date | None = None
    firmware: ShortText | None = None
    udi: Udi | None = Field(default=None, description=UDI_DESCRIPTION)


class DevicePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    _required = not_null("serial", "model")

    serial: ShortText | None = None
    model: ShortText | None = None
    site_id: DbId | None = None
    install_date: date | None = None
    warranty_end: date | None = None
    udi: Udi | None = Field(default=None, description=UDI_DESCRIPTION)


class DeviceCredential(BaseModel):
    """The device's MQTT password, shown this once; Vigil keeps only a hash."""

    device_id: str
    username: str
    password: str


class CustomerIn(BaseModel):
    model_config = ConfigDict(extra="forbid",
                              json_schema_extra={"examples": [{"name": "St. Example Hospital"}]})

    name: Name


class CustomerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    created_at: datetime


class SiteIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "name": "Central ICU", "customer_id": 1, "timezone": "Europe/Berlin"}]})

    name: Name
    customer_id: DbId
    address: Annotated[str, StringConstraints(max_length=500)] | None = None
    timezone: ShortText = "UTC"
    region: ShortText | None = None


class SitePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    _required = not_null("name", "timezone")

    name: Name | None = None
    address: Annotated[str, StringConstraints(max_length=500)] | None = None
    timezone: ShortText | None = None
    region: ShortText | None = None


class SiteOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    customer_id: int
    address: str | None
    timezone: str
    region: str | None
    created_at: datetime
