"""Administration of service contracts, engineers and qualifications: admins only, checked,
audited, and used by the desk."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import World
from vigil.db.models import AuditLog

Headers = Callable[[str], dict[str, str]]
EVERY_DAY = [0, 1, 2, 3, 4, 5, 6]
# Minutes to respond per priority, each different, so a ticket's deadline shows its contract.
LEVELS = {"P1": {"respond": 11}, "P2": {"respond": 22}, "P3": {"respond": 33}}


def test_a_contract_sets_the_deadlines_of_tickets_opened_after_it(
    client: TestClient, headers: Headers, world: World
) -> None:
    admin = headers("admin")
    created = client.post("/api/v1/contracts", headers=admin, json={
        "name": "24 x 7 premium", "customer_id": world.customer_ids["a"],
        "workdays": EVERY_DAY, "levels": LEVELS, "valid_from": "2026-01-01"})
    assert created.status_code == 201, created.text
    assert created.json()["levels"] == LEVELS
    report = client.post("/api/v1/tickets", headers=headers("customer-a"), json={
        "device_id": "pump-a2", "title": "Door latch broken"})
    ticket = report.json()
    opened = datetime.fromisoformat(ticket["created_at"])
    respond = datetime.fromisoformat(ticket["respond_by"]) - opened
    assert respond.total_seconds() == 60 * LEVELS[ticket["priority"]]["respond"]
    listed = client.get(f"/api/v1/contracts?customer_id={world.customer_ids['a']}",
                        headers=admin).json()
    assert [c["name"] for c in listed] == ["24 x 7 premium"]
    assert client.get(f"/api/v1/contracts?customer_id={world.customer_ids['b']}",
                      headers=admin).json() == []


def test_contract_changes_are_checked_and_audited(
    client: TestClient, headers: Headers, world: World, sessions: sessionmaker[Session]
) -> None:
    admin = headers("admin")
    contract = client.post("/api/v1/contracts", headers=admin, json={
        "name": "Business hours", "site_id": world.site_ids["a"], "hours_start": "08:00:00",
        "hours_end": "17:00:00", "holidays": ["2026-12-25"]}).json()
    assert contract["customer_id"] is None and contract["holidays"] == ["2026-12-25"]
    url = f"/api/v1/contracts/{contract['id']}"
    changed = client.patch(url, json={"valid_to": "2027-12-31", "active": False}, headers=admin)
    assert changed.status_code == 200
    assert (changed.json()["valid_to"], changed.json()["active"]) == ("2027-12-31", False)
    assert client.get(url, headers=admin).json()["valid_to"] == "2027-12-31"
    bad: list[dict[str, Any]] = [
        {"hours_end": None},
        {"valid_from": "2028-01-01"},
        {"timezone": "Mars/Olympus"},
        {"customer_id": world.customer_ids["b"]},
        {"site_id": 999_999},
        {"workdays": []},
        {"levels": {"P4": {"respond": 1}}},
        {"levels": {"P1": {"respond": -1}}},
        {"name": None},
    ]
    for body in bad:
        answer = client.patch(url, json=body, headers=admin)
        assert answer.status_code == 422, (body, answer.text)
    assert client.get(url, headers=admin).json() == changed.json()
    assert client.post("/api/v1/contracts", headers=admin,
                       json={"name": "Nobody's"}).status_code == 422
    with sessions() as s:
        actions = list(s.scalars(select(AuditLog.action).where(
            AuditLog.object_type == "contract").order_by(AuditLog.id)))
    assert actions == ["contract.create", "contract.update"]


@pytest.mark.parametrize("who", ["manager", "engineer", "customer-a"])
def test_only_admins_see_or_change_contracts_and_engineers(
    client: TestClient, headers: Headers, who: str
) -> None:
    h = headers(who)
    assert client.get("/api/v1/contracts", headers=h).status_code == 403
    assert client.post("/api/v1/contracts", json={"name": "x", "customer_id": 1},
                       headers=h).status_code == 403
    assert client.get("/api/v1/engineers", headers=h).status_code == 403
    assert client.post("/api/v1/engineers", json={"user_id": 1}, headers=h).status_code == 403


def test_engineers_and_their_qualifications(
    client: TestClient, headers: Headers, world: World, sessions: sessionmaker[Session]
) -> None:
    admin = headers("admin")
    created = client.post("/api/v1/engineers", headers=admin, json={
        "user_id": world.user_ids["engineer"], "region": "north", "timezone": "Europe/Berlin",
        "hours_start": "08:00:00", "hours_end": "17:00:00", "days_off": ["2026-12-24"]})
    assert created.status_code == 201, created.text
    engineer = created.json()
    assert (engineer["username"], engineer["days_off"], engineer["qualifications"]) == (
        "engineer", ["2026-12-24"], [])
    again = client.post("/api/v1/engineers", headers=admin,
                        json={"user_id": world.user_ids["engineer"]})
    assert again.status_code == 409
    for user in (world.user_ids["customer-a"], 999_999):
        assert client.post("/api/v1/engineers", headers=admin,
                           json={"user_id": user}).status_code == 422
    url = f"/api/v1/engineers/{engineer['id']}"
    assert client.patch(url, json={"hours_start": "18:00:00"}, headers=admin).status_code == 422
    assert client.patch(url, json={"timezone": "Nowhere/Land"}, headers=admin).status_code == 422
    on_call = client.patch(url, json={"hours_start": None, "hours_end": None,
                                      "workdays": EVERY_DAY}, headers=admin)
    assert on_call.status_code == 200 and on_call.json()["hours_start"] is None

    added = client.post(f"{url}/qualifications", headers=admin, json={
        "device_model": "IP-100", "qualified_on": "2026-01-01", "expires_on": "2027-01-01"})
    assert added.status_code == 201, added.text
    qid = added.json()["id"]
    assert client.post(f"{url}/qualifications", headers=admin, json={
        "device_model": "IP-100", "qualified_on": "2026-02-01",
        "expires_on": "2028-01-01"}).status_code == 409
    assert client.post(f"{url}/qualifications", headers=admin, json={
        "device_model": "CT-9", "qualified_on": "2026-02-01",
        "expires_on": "2025-01-01"}).status_code == 422
    renewed = client.patch(f"{url}/qualifications/{qid}", headers=admin,
                           json={"expires_on": "2029-01-01"})
    assert renewed.json() == {"id": qid, "device_model": "IP-100", "qualified_on": "2026-01-01",
                              "expires_on": "2029-01-01"}
    assert client.patch(f"{url}/qualifications/{qid}", headers=admin,
                        json={"expires_on": "2025-12-31"}).status_code == 422
    assert client.patch(f"/api/v1/engineers/999999/qualifications/{qid}", headers=admin,
                        json={"expires_on": "2029-01-01"}).status_code == 404
    listed = client.get("/api/v1/engineers", headers=admin).json()
    assert [(e["id"], [q["expires_on"] for q in e["qualifications"]]) for e in listed] == [
        (engineer["id"], ["2029-01-01"])]
    with sessions() as s:
        actions = list(s.scalars(select(AuditLog.action).where(
            AuditLog.object_type == "engineer").order_by(AuditLog.id)))
    assert actions == ["engineer.create", "engineer.update", "qualification.create",
                       "qualification.update"]
