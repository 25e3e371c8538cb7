"""What a principal may see, as SQL to put in the queries themselves.

A customer's users see the sites they are attached to (``user_sites``) and what
belongs to those sites; the service organisation sees everything. Services add
these conditions to their queries, so an object outside the caller's reach is
never loaded, and looks exactly like one that does not exist.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, or_, select, true
from sqlalchemy.orm import InstrumentedAttribute

from vigil.auth.service import Principal
from vigil.devices.models import Device, Site
from vigil.users.models import user_sites

Column = ColumnElement[Any] | InstrumentedAttribute[Any]


def visible_site_ids(principal: Principal) -> Select[tuple[int]] | None:
    """The ids of the sites the principal may see, or None for all of them."""
    if principal.is_staff:
        return None
    return select(user_sites.c.site_id).where(user_sites.c.user_id == principal.user_id)


def site_visible(principal: Principal, site_id: Column) -> ColumnElement[bool]:
    ids = visible_site_ids(principal)
    return true() if ids is None else site_id.in_(ids)


def device_visible(principal: Principal) -> ColumnElement[bool]:
    return site_visible(principal, Device.site_id)


def customer_visible(principal: Principal, customer_id: Column) -> ColumnElement[bool]:
    ids = visible_site_ids(principal)
    if ids is None:
        return true()
    return customer_id.in_(select(Site.customer_id).where(Site.id.in_(ids)))


def ticket_visible(principal: Principal) -> ColumnElement[bool]:
    """A customer's users see the tickets of their sites and of their sites' devices."""
    from vigil.tickets.models import Ticket

    ids = visible_site_ids(principal)
    if ids is None:
        return true()
    return or_(Ticket.site_id.in_(ids),
               Ticket.device_id.in_(select(Device.id).where(Device.site_id.in_(ids))))
