"""Administering service contracts on SQLite and PostgreSQL: what the desk can apply, audited."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.tickets.support import seed
from vigil.audit.models import AuditLog
from vigil.devices.models import Customer, Site
from vigil.errors import InvalidRequest, NotFound
from vigil.tickets import contracts
from vigil.tickets.service import calendar_of, contract_for, levels_of

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def test_a_contract_the_desk_applies_to_its_site(factory: sessionmaker[Session]) -> None:
    org = seed(factory)
    with factory() as s, s.begin():
        site = s.get_one(Site, org.site_id)
        contract = contracts.create_contract(s, actor="root", now=NOW, values={
            "name": "ICU business hours", "site_id": site.id, "hours_start": time(8),
            "hours_end": time(17), "holidays": [date(2026, 12, 25), "2026-12-24"],
            "workdays": [4, 0, 1, 2, 3, 0], "levels": {"P1": {"respond": 30}}})
        assert (contract.holidays, contract.workdays) == (["2026-12-24", "2026-12-25"],
                                                           [0, 1, 2, 3, 4])
        assert contract_for(s, site=site, on=NOW.date()) is contract
        assert levels_of(contract).for_priority("P1").respond.total_seconds() == 30 * 60
        # The contract names no zone: the site's runs its clock.
        assert calendar_of(contract, site).timezone == "Europe/Berlin"
        contracts.update_contract(s, contract_id=contract.id, actor="root", now=NOW,
                                  changes={"valid_to": date(2026, 11, 30)})
        assert contract_for(s, site=site, on=NOW.date()) is None
        actions = list(s.scalars(select(AuditLog.action).order_by(AuditLog.id)))
        assert actions == ["contract.create", "contract.update"]


@pytest.mark.parametrize("values", [
    {"name": "no scope"},
    {"name": " ", "customer_id": "own"},
    {"name": "x", "site_id": 999_999},
    {"name": "x", "customer_id": 999_999},
    {"name": "x", "customer_id": "other", "site_id": "own"},
    {"name": "x", "customer_id": "own", "hours_start": time(8)},
    {"name": "x", "customer_id": "own", "hours_start": time(17), "hours_end": time(8)},
    {"name": "x", "customer_id": "own", "timezone": "Mars/Olympus"},
    {"name": "x", "customer_id": "own", "workdays": [7]},
    {"name": "x", "customer_id": "own", "holidays": ["not a date"]},
    {"name": "x", "customer_id": "own", "levels": {"P1": {"respond": 0}}},
    {"name": "x", "customer_id": "own", "valid_from": date(2027, 1, 1),
     "valid_to": date(2026, 1, 1)},
    {"name": "x", "customer_id": "own", "colour": "blue"},
])
def test_a_contract_the_desk_could_not_apply_writes_nothing(
        factory: sessionmaker[Session], values: dict[str, Any]) -> None:
    org = seed(factory)
    with factory() as s, s.begin():
        own = s.get_one(Site, org.site_id)
        other = Customer(name="Elsewhere")
        s.add(other)
        s.flush()
        ids = {"own": own.customer_id, "other": other.id}
        resolved = {k: ids.get(v, v) if k == "customer_id" else
                    (own.id if v == "own" else v) if k == "site_id" else v
                    for k, v in values.items()}
        with pytest.raises(InvalidRequest):
            contracts.create_contract(s, values=resolved, actor="root", now=NOW)
        assert s.scalar(select(func.count()).select_from(AuditLog)) == 0
        with pytest.raises(NotFound):
            contracts.update_contract(s, contract_id=999_999, changes={}, actor="root", now=NOW)
