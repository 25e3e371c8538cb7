"""Administration of customers, sites, users and devices: admins only, audited."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import World, sign_in
from vigil.db.models import AuditLog, Device
from vigil.devices.credentials import check_mosquitto_hash

Headers = Callable[[str], dict[str, str]]


def test_admin_builds_a_customer_with_a_site_a_user_and_a_device(
    client: TestClient, headers: Headers, sessions: sessionmaker[Session]
) -> None:
    admin = headers("admin")
    customer = client.post("/api/v1/customers", json={"name": "Hospital C"}, headers=admin)
    assert customer.status_code == 201
    cid = customer.json()["id"]
    site = client.post("/api/v1/sites", headers=admin,
                       json={"name": "Radiology", "customer_id": cid, "timezone": "Europe/Paris"})
    assert site.status_code == 201
    sid = site.json()["id"]
    user = client.post("/api/v1/users", headers=admin, json={
        "username": "c.nurse", "display_name": "C Nurse", "roles": ["customer"],
        "site_ids": [sid]})
    assert user.status_code == 201
    password = user.json()["password"]
    assert password and len(password) >= 16
    device = client.post("/api/v1/devices", headers=admin, json={
        "id": "ct-c1", "serial": "CT-0001", "model": "CT-9", "site_id": sid})
    assert device.status_code == 201, device.text
    credential = device.json()["credential"]
    assert credential["username"] == "ct-c1" and len(credential["password"]) >= 40
    assert device.json()["device"]["has_credential"] is True
    with sessions() as session:
        stored = session.get(Device, "ct-c1")
        assert stored is not None and stored.credential_hash is not None
        assert credential["password"] not in stored.credential_hash
        assert check_mosquitto_hash(stored.credential_hash, credential["password"])
        actions = set(session.scalars(select(AuditLog.action)))
    assert {"customer.create", "site.create", "user.create", "device.create",
            "credential.issue"} <= actions
    # The new user sees the new customer's device and nothing else.
    nurse = sign_in(client, "c.nurse", password)
    listed = client.get("/api/v1/devices", headers=nurse).json()
    assert [d["id"] for d in listed["items"]] == ["ct-c1"]
    assert [c["name"] for c in client.get("/api/v1/customers", headers=nurse).json()] == [
        "Hospital C"]


def test_duplicates_and_dangling_references_are_4xx(
    client: TestClient, headers: Headers, world: World
) -> None:
    admin = headers("admin")
    assert client.post("/api/v1/customers", json={"name": "Hospital A"},
                       headers=admin).status_code == 409
    assert client.post("/api/v1/sites", json={"name": "X", "customer_id": 999_999},
                       headers=admin).status_code == 422
    assert client.post("/api/v1/devices", headers=admin, json={
        "id": "pump-a0", "serial": "new", "model": "m"}).status_code == 409
    assert client.post("/api/v1/devices", headers=admin, json={
        "id": "bad id!", "serial": "new", "model": "m"}).status_code == 422
    assert client.post("/api/v1/users", headers=admin, json={
        "username": "admin", "display_name": "x", "roles": ["admin"]}).status_code == 409
    assert client.post("/api/v1/users", headers=admin, json={
        "username": "lonely", "display_name": "x", "roles": ["customer"]}).status_code == 422
    assert client.post("/api/v1/sites", headers=admin, json={
        "name": "X", "customer_id": world.customer_ids["a"],
        "timezone": "Mars/Olympus"}).status_code == 422


def test_only_admins_administer(client: TestClient, headers: Headers, world: World) -> None:
    for who in ("manager", "engineer", "customer-a"):
        h = headers(who)
        assert client.post("/api/v1/customers", json={"name": "Z"}, headers=h).status_code == 403
        assert client.get("/api/v1/users", headers=h).status_code == 403
        assert client.delete("/api/v1/devices/pump-a0/credential", headers=h).status_code == 403


def test_disabling_a_user_and_changing_roles(
    client: TestClient, headers: Headers, world: World
) -> None:
    admin = headers("admin")
    engineer = sign_in(client, "engineer")
    uid = world.user_ids["engineer"]
    answer = client.patch(f"/api/v1/users/{uid}", json={"roles": ["customer"],
                                                        "site_ids": [world.site_ids["b"]]},
                          headers=admin)
    assert answer.status_code == 200 and answer.json()["roles"] == ["customer"]
    # Roles are read per request: the old token now sees customer B only.
    listed = client.get("/api/v1/devices", headers=engineer).json()
    assert {d["id"] for d in listed["items"]} == set(world.devices["b"])
    client.patch(f"/api/v1/users/{uid}", json={"active": False}, headers=admin)
    assert client.get("/api/v1/devices", headers=engineer).status_code == 401


def test_the_audit_log_is_for_admins_and_pages(
    client: TestClient, headers: Headers, world: World
) -> None:
    admin = headers("admin")
    for n in range(3):
        client.post("/api/v1/customers", json={"name": f"Audited {n}"}, headers=admin)
    page = client.get("/api/v1/audit?object_type=customer&limit=2", headers=admin).json()
    assert [e["details"]["name"] for e in page["items"]] == ["Audited 2", "Audited 1"]
    assert all(e["actor"] == "admin" for e in page["items"])
    rest = client.get(f"/api/v1/audit?object_type=customer&before_id={page['next_before_id']}",
                      headers=admin).json()
    assert [e["details"]["name"] for e in rest["items"]] == ["Audited 0"]
    assert client.get("/api/v1/audit?since=2026-01-01T00:00:00", headers=admin).status_code == 422
    assert client.get("/api/v1/audit", headers=headers("manager")).status_code == 403
