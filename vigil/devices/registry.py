"""Administering the registry: customers, sites and devices.

Keyword-only functions on the caller's session, which they never commit.
Reads take the caller's principal and see only what it may see; writes are for
administrators, which the API checks before calling them.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.audit.service import record
from vigil.auth.service import Principal
from vigil.auth.visibility import customer_visible, site_visible
from vigil.devices.models import Customer, Device, Site
from vigil.errors import Conflict, InvalidRequest, NotFound


def list_customers(session: Session, *, principal: Principal) -> list[Customer]:
    return list(session.scalars(
        select(Customer).where(customer_visible(principal, Customer.id)).order_by(Customer.id)))


def get_customer(session: Session, *, principal: Principal, customer_id: int) -> Customer:
    customer = session.scalar(select(Customer).where(
        Customer.id == customer_id, customer_visible(principal, Customer.id)))
    if customer is None:
        raise NotFound(f"customer {customer_id} not found")
    return customer


def create_customer(session: Session, *, name: str, actor: str, now: datetime) -> Customer:
    if session.scalar(select(Customer.id).where(Customer.name == name)) is not None:
        raise Conflict(f"name: a customer named {name!r} exists")
    customer = Customer(name=name)
    session.add(customer)
    session.flush()
    record(session, actor=actor, action="customer.create", object_type="customer",
           object_id=customer.id, at=now, details={"name": name})
    return customer


def rename_customer(
    session: Session, *, principal: Principal, customer_id: int, name: str, actor: str,
    now: datetime,
) -> Customer:
    customer = get_customer(session, principal=principal, customer_id=customer_id)
    if session.scalar(select(Customer.id).where(Customer.name == name,
                                                Customer.id != customer_id)) is not None:
        raise Conflict(f"name: a customer named {name!r} exists")
    customer.name = name
    record(session, actor=actor, action="customer.update", object_type="customer",
           object_id=customer.id, at=now, details={"name": name})
    return customer


def list_sites(
    session: Session, *, principal: Principal, customer_id: int | None = None
) -> list[Site]:
    query = select(Site).where(site_visible(principal, Site.id)).order_by(Site.id)
    if customer_id is not None:
        query = query.where(Site.customer_id == customer_id)
    return list(session.scalars(query))


def get_site(session: Session, *, principal: Principal, site_id: int) -> Site:
    site = session.scalar(select(Site).where(Site.id == site_id, site_visible(principal, Site.id)))
    if site is None:
        raise NotFound(f"site {site_id} not found")
    return site


def create_site(
    session: Session, *, customer_id: int, fields: dict[str, Any], actor: str, now: datetime
) -> Site:
    if session.get(Customer, customer_id) is None:
        raise InvalidRequest(f"customer_id: customer {customer_id} does not exist")
    site = Site(customer_id=customer_id, **fields)
    session.add(site)
    session.flush()
    record(session, actor=actor, action="site.create", object_type="site", object_id=site.id,
           at=now, details={"customer_id": customer_id, **_plain(fields)})
    return site


def update_site(
    session: Session, *, principal: Principal, site_id: int, fields: dict[str, Any], actor: str,
    now: datetime,
) -> Site:
    site = get_site(session, principal=principal, site_id=site_id)
    for key, value in fields.items():
        setattr(site, key, value)
    record(session, actor=actor, action="site.update", object_type="site", object_id=site.id,
           at=now, details=_plain(fields))
    return site


def _plain(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, date | datetime) else v for k, v in fields.items()}


def _check_site(session: Session, site_id: int | None) -> None:
    if site_id is not None and session.get(Site, site_id) is None:
        raise InvalidRequest(f"site_id: site {site_id} does not exist")


def create_device(
    session: Session, *, device_id: str, fields: dict[str, Any], actor: str, now: datetime
) -> Device:
    if session.get(Device, device_id) is not None:
        raise Conflict(f"id: device {device_id!r} is registered already")
    serial = fields.get("serial")
    if session.scalar(select(Device.id).where(Device.serial == serial)) is not None:
        raise Conflict(f"serial: another device has serial {serial!r}")
    _check_site(session, fields.get("site_id"))
    device = Device(id=device_id, **fields)
    session.add(device)
    session.flush()
    record(session, actor=actor, action="device.create", object_type="device",
           object_id=device_id, at=now, details=_plain(fields))
    return device


def update_device(
    session: Session, *, device_id: str, fields: dict[str, Any], actor: str, now: datetime
) -> Device:
    device = session.get(Device, device_id)
    if device is None:
        raise NotFound(f"device {device_id!r} not found")
    if "serial" in fields and session.scalar(select(Device.id).where(
            Device.serial == fields["serial"], Device.id != device_id)) is not None:
        raise Conflict(f"serial: another device has serial {fields['serial']!r}")
    if "site_id" in fields:
        _check_site(session, fields["site_id"])
    for key, value in fields.items():
        setattr(device, key, value)
    record(session, actor=actor, action="device.update", object_type="device",
           object_id=device_id, at=now, details=_plain(fields))
    return device
