"""Service contracts administered inside the caller's transaction (administrators).

A contract covers a site, or every site of a customer; its calendar and
service levels are checked with the same rules the desk's clocks use
(``sla.ServiceCalendar``, ``sla.ServiceLevels.from_minutes``) before anything
is written, so a contract the desk could not apply is refused here, not when a
ticket opens. Nothing here commits.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.audit.service import record
from vigil.devices.models import Customer, Site
from vigil.errors import InvalidRequest, NotFound
from vigil.tickets import sla
from vigil.tickets.models import Contract

FIELDS = frozenset({"name", "customer_id", "site_id", "timezone", "hours_start", "hours_end",
                    "workdays", "holidays", "levels", "valid_from", "valid_to", "active"})
_DEFAULTS: dict[str, Any] = {"customer_id": None, "site_id": None, "timezone": None,
                             "hours_start": None, "hours_end": None, "workdays": [0, 1, 2, 3, 4],
                             "holidays": [], "levels": {}, "valid_from": None,
                             "valid_to": None, "active": True}


def _checked(session: Session, values: Mapping[str, Any]) -> dict[str, Any]:
    """The contract's values as stored, or InvalidRequest naming what is wrong."""
    unknown = set(values) - FIELDS
    if unknown:
        raise InvalidRequest(f"unknown contract fields: {', '.join(sorted(unknown))}")
    doc = dict(values)
    if not str(doc.get("name") or "").strip():
        raise InvalidRequest("name: a contract needs a name")
    customer_id, site_id = doc.get("customer_id"), doc.get("site_id")
    if customer_id is None and site_id is None:
        raise InvalidRequest("customer_id: a contract covers a customer or one of its sites")
    site = session.get(Site, site_id) if site_id is not None else None
    if site_id is not None and site is None:
        raise InvalidRequest(f"site_id: site {site_id} does not exist")
    if customer_id is not None and session.get(Customer, customer_id) is None:
        raise InvalidRequest(f"customer_id: customer {customer_id} does not exist")
    if site is not None and customer_id is not None and site.customer_id != customer_id:
        raise InvalidRequest(f"site_id: site {site_id} is not the customer's")
    start, end = doc.get("hours_start"), doc.get("hours_end")
    if (start is None) != (end is None):
        raise InvalidRequest("hours_end: give both working hours or neither (24 hours)")
    workdays = list(doc.get("workdays") or [])
    zone = doc.get("timezone") or (site.timezone if site is not None else "UTC")
    hours = None if start is None or end is None else (start, end)
    try:
        holidays = [date.fromisoformat(str(d)) if not isinstance(d, date) else d
                    for d in doc.get("holidays") or []]
        sla.ServiceCalendar(timezone=zone, hours=hours, workdays=frozenset(workdays),
                            holidays=frozenset(holidays))
        sla.ServiceLevels.from_minutes(doc.get("levels") or {})
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    valid_from, valid_to = doc.get("valid_from"), doc.get("valid_to")
    if valid_from is not None and valid_to is not None and valid_to < valid_from:
        raise InvalidRequest("valid_to: a contract ends after it starts")
    doc["holidays"] = sorted({d.isoformat() for d in holidays})
    doc["workdays"] = sorted(set(workdays))
    return doc


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, date | datetime | time) else v
            for k, v in values.items()}


def list_contracts(session: Session, *, customer_id: int | None = None,
                   site_id: int | None = None) -> list[Contract]:
    query = select(Contract).order_by(Contract.id)
    if customer_id is not None:
        query = query.where(Contract.customer_id == customer_id)
    if site_id is not None:
        query = query.where(Contract.site_id == site_id)
    return list(session.scalars(query))


def get_contract(session: Session, *, contract_id: int) -> Contract:
    contract = session.get(Contract, contract_id)
    if contract is None:
        raise NotFound(f"contract {contract_id} not found")
    return contract


def create_contract(session: Session, *, values: Mapping[str, Any], actor: str,
                    now: datetime) -> Contract:
    doc = _checked(session, _DEFAULTS | dict(values))
    contract = Contract(**doc)
    session.add(contract)
    session.flush()
    record(session, actor=actor, action="contract.create", object_type="contract",
           object_id=contract.id, at=now, details=_plain(doc))
    return contract


def update_contract(session: Session, *, contract_id: int, changes: Mapping[str, Any],
                    actor: str, now: datetime) -> Contract:
    """Change a contract; tickets already open keep the deadlines they were given."""
    contract = get_contract(session, contract_id=contract_id)
    current = {name: getattr(contract, name) for name in FIELDS}
    doc = _checked(session, current | dict(changes))
    for name in changes:
        setattr(contract, name, doc[name])
    record(session, actor=actor, action="contract.update", object_type="contract",
           object_id=contract.id, at=now, details=_plain({k: doc[k] for k in changes}))
    return contract
