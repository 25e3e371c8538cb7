"""The fleet's health as people read it: devices with state, open tickets and risk of failure.

Every query takes the caller's principal and restricts itself to what that
principal may see (``vigil.auth.visibility``), so another customer's device is
never loaded at all. Lists page by cursor (keyset), which stays fast and stable
while devices are added, unlike offsets.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import Session, defer

from vigil.auth.service import Principal
from vigil.auth.visibility import device_visible
from vigil.db.enums import FINAL_TICKET_STATES
from vigil.devices.models import Device, Prediction, Site
from vigil.errors import InvalidRequest, NotFound
from vigil.tickets.models import Ticket

SortKey = Literal["id", "last_seen", "model", "serial", "risk"]
SORT_KEYS: tuple[str, ...] = ("id", "last_seen", "model", "serial", "risk")
MAX_PAGE = 500
# Devices never seen sort as if last seen at the epoch, so keyset paging has no NULLs to skip.
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)
_FINAL = sorted(state.value for state in FINAL_TICKET_STATES)


@dataclass(frozen=True, slots=True)
class DeviceFilter:
    site_id: int | None = None
    customer_id: int | None = None
    model: str | None = None
    online: bool | None = None
    has_open_tickets: bool | None = None
    search: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    device: Device
    open_tickets: int
    risk: float | None
    risk_horizon_days: float | None


@dataclass(frozen=True, slots=True)
class Page:
    items: list[DeviceHealth]
    next_cursor: str | None


def _open_tickets() -> Any:
    return (
        select(func.count(Ticket.id))
        .where(Ticket.device_id == Device.id, Ticket.state.not_in(_FINAL))
        .correlate(Device)
        .scalar_subquery()
    )


def _latest_prediction(column: Any) -> Any:
    return (
        select(column)
        .where(Prediction.device_id == Device.id)
        .order_by(Prediction.made_at.desc(), Prediction.id.desc())
        .limit(1)
        .correlate(Device)
        .scalar_subquery()
    )


def _health_query(principal: Principal) -> Select[Any]:
    # The device's last status document is not part of its health and is the costly
    # column to load (JSON with change tracking): a fifth of a 100-device page's time.
    return select(
        Device,
        _open_tickets().label("open_tickets"),
        _latest_prediction(Prediction.probability).label("risk"),
        _latest_prediction(Prediction.horizon_days).label("horizon"),
    ).options(defer(Device.status_detail)).where(device_visible(principal))


def _sort_column(key: str) -> Any:
    if key == "last_seen":
        return func.coalesce(Device.last_seen, _NEVER)
    if key == "risk":
        return func.coalesce(_latest_prediction(Prediction.probability), -1.0)
    return {"id": Device.id, "model": Device.model, "serial": Device.serial}[key]


def encode_cursor(values: Sequence[Any]) -> str:
    raw = json.dumps([v.isoformat() if isinstance(v, datetime) else v for v in values])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, key: str) -> tuple[Any, str]:
    """The (sort value, device id) a cursor resumes after; a damaged cursor is refused."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value, device_id = json.loads(raw)
        if not isinstance(device_id, str):
            raise TypeError
        if key == "last_seen":
            value = datetime.fromisoformat(value)
            if value.tzinfo is None:
                raise TypeError
        elif key == "risk":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError
            value = float(value)
        elif not isinstance(value, str):
            raise TypeError
        return value, device_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidRequest("cursor: not a cursor this list handed out") from None


def _filters(query: Select[Any], f: DeviceFilter) -> Select[Any]:
    if f.site_id is not None:
        query = query.where(Device.site_id == f.site_id)
    if f.customer_id is not None:
        query = query.where(
            Device.site_id.in_(select(Site.id).where(Site.customer_id == f.customer_id)))
    if f.model is not None:
        query = query.where(Device.model == f.model)
    if f.online is not None:
        query = query.where(Device.online.is_(f.online))
    if f.has_open_tickets is not None:
        condition: ColumnElement[bool] = _open_tickets() > 0
        query = query.where(condition if f.has_open_tickets else ~condition)
    if f.search:
        pattern = "%" + f.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(or_(Device.id.ilike(pattern, escape="\\"),
                                Device.serial.ilike(pattern, escape="\\")))
    return query


def list_devices(
    session: Session,
    *,
    principal: Principal,
    filters: DeviceFilter,
    sort: str = "id",
    descending: bool = False,
    limit: int = 100,
    cursor: str | None = None,
) -> Page:
    """One page of the devices the principal may see, with their health."""
    if sort not in SORT_KEYS:
        raise InvalidRequest(f"sort: one of {', '.join(SORT_KEYS)}")
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit: between 1 and {MAX_PAGE}")
    column = _sort_column(sort)
    # The page's ids first, then the health of those devices only: the per-device
    # subqueries then run for one page, not for every device the sort has to look at.
    query = _filters(select(Device.id).where(device_visible(principal)), filters)
    if cursor is not None:
        value, after_id = decode_cursor(cursor, sort)
        if sort == "id":
            query = query.where(Device.id < after_id if descending else Device.id > after_id)
        elif descending:
            query = query.where(or_(column < value, and_(column == value, Device.id < after_id)))
        else:
            query = query.where(or_(column > value, and_(column == value, Device.id > after_id)))
    order = [column.desc(), Device.id.desc()] if descending else [column.asc(), Device.id.asc()]
    if sort == "id":
        order = order[:1]
    page_ids = list(session.scalars(query.order_by(*order).limit(limit + 1)))
    found = {row[0].id: row for row in session.execute(
        _health_query(principal).where(Device.id.in_(page_ids[:limit])))}
    items = [DeviceHealth(row[0], row[1] or 0, row[2], row[3])
             for row in (found[i] for i in page_ids[:limit] if i in found)]
    next_cursor = None
    if len(page_ids) > limit and items:
        last = items[-1]
        value = {
            "id": last.device.id,
            "last_seen": last.device.last_seen or _NEVER,
            "model": last.device.model,
            "serial": last.device.serial,
            "risk": last.risk if last.risk is not None else -1.0,
        }[sort]
        next_cursor = encode_cursor([value, last.device.id])
    return Page(items, next_cursor)


def get_device_health(session: Session, *, principal: Principal, device_id: str) -> DeviceHealth:
    """One device the principal may see; one it may not see is reported as not found."""
    row = session.execute(_health_query(principal).where(Device.id == device_id)).first()
    if row is None:
        raise NotFound(f"device {device_id!r} not found")
    return DeviceHealth(row[0], row[1] or 0, row[2], row[3])


def visible_device(session: Session, *, principal: Principal, device_id: str) -> Device:
    device = session.scalar(select(Device).where(Device.id == device_id, device_visible(principal)))
    if device is None:
        raise NotFound(f"device {device_id!r} not found")
    return device
