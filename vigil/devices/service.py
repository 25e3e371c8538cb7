"""Registering devices: keyword-only functions on the caller's session, which they never commit."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.devices.models import Device
from vigil.errors import NotFound


@dataclass(frozen=True, slots=True)
class NewDevice:
    device_id: str
    model: str
    serial: str
    site_id: int | None = None


def register_missing(session: Session, *, devices: Iterable[NewDevice]) -> int:
    """Add the devices the registry does not know yet; returns how many were added."""
    wanted = list(devices)
    known = set(session.scalars(select(Device.id).where(
        Device.id.in_([d.device_id for d in wanted]))))
    new = [Device(id=d.device_id, serial=d.serial, model=d.model, site_id=d.site_id)
           for d in wanted if d.device_id not in known]
    session.add_all(new)
    return len(new)


def get_device(session: Session, *, device_id: str) -> Device:
    device = session.get(Device, device_id)
    if device is None:
        raise NotFound(f"device {device_id!r} is not registered")
    return device
