"""Maintenance plans and records through the API: who plans, who records, who sees what."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import World
from vigil.db.models import AuditLog
from vigil.maintenance.models import MaintenanceDue

Headers = Callable[[str], dict[str, str]]
PLANS = "/api/v1/maintenance/plans"
RECORDS = "/api/v1/maintenance/records"
CALIBRATION: dict[str, Any] = {
    "kind": "calibration", "title": "Flow calibration", "device_model": "IP-100",
    "interval_days": 365, "lead_days": 14,
    "tolerances": {"flow_error_pct": {"nominal": 0, "low": -5, "high": 5, "unit": "%"}}}


def add_plan(client: TestClient, headers: Headers, body: dict[str, Any],
             who: str = "manager") -> dict[str, Any]:
    answer = client.post(PLANS, json=body, headers=headers(who))
    assert answer.status_code == 201, answer.text
    result: dict[str, Any] = answer.json()
    return result


def test_managers_plan_and_everyone_sees_the_plans_of_their_devices(
    client: TestClient, headers: Headers, world: World
) -> None:
    model_plan = add_plan(client, headers, CALIBRATION)
    b_plan = add_plan(client, headers, {"kind": "preventive", "title": "B's seals",
                                        "device_id": "pump-b1", "interval_days": 90},
                      who="admin")
    assert model_plan["tolerances"]["flow_error_pct"]["high"] == 5
    assert client.post(PLANS, json=CALIBRATION, headers=headers("engineer")).status_code == 403
    assert client.post(PLANS, json=CALIBRATION,
                       headers=headers("customer-a")).status_code == 403
    staff = client.get(PLANS, headers=headers("engineer")).json()
    assert [p["id"] for p in staff] == [model_plan["id"], b_plan["id"]]
    # Customer A has IP-100 pumps: the model's plan is theirs too; B's device plan is not.
    mine = client.get(PLANS, headers=headers("customer-a")).json()
    assert [p["id"] for p in mine] == [model_plan["id"]]
    assert client.get(f"{PLANS}/{b_plan['id']}", headers=headers("customer-a")).status_code == 404
    assert client.get(f"{PLANS}?device_id=pump-b1",
                      headers=headers("customer-a")).status_code == 404
    for_b1 = client.get(f"{PLANS}?device_id=pump-b1", headers=headers("manager")).json()
    assert {p["id"] for p in for_b1} == {model_plan["id"], b_plan["id"]}
    by_model = client.get(f"{PLANS}?model=IP-100", headers=headers("manager")).json()
    assert {p["id"] for p in by_model} == {model_plan["id"], b_plan["id"]}
    assert client.get(f"{PLANS}?model=CT-9", headers=headers("manager")).json() == []


def test_a_plan_is_checked_before_it_is_written(client: TestClient, headers: Headers) -> None:
    h = headers("manager")
    both = {**CALIBRATION, "device_id": "pump-a1"}
    assert client.post(PLANS, json=both, headers=h).status_code == 422
    no_interval = {k: v for k, v in CALIBRATION.items() if k != "interval_days"}
    assert client.post(PLANS, json=no_interval, headers=h).status_code == 422
    unknown_device = {**{k: v for k, v in CALIBRATION.items() if k != "device_model"},
                      "device_id": "nosuch"}
    assert client.post(PLANS, json=unknown_device, headers=h).status_code == 404
    naive = {**CALIBRATION, "last_done_at": "2026-01-01T00:00:00"}
    assert client.post(PLANS, json=naive, headers=h).status_code == 422
    assert client.get(PLANS, headers=h).json() == []


def test_changing_a_plan(client: TestClient, headers: Headers,
                         sessions: sessionmaker[Session]) -> None:
    plan = add_plan(client, headers, CALIBRATION)
    url = f"{PLANS}/{plan['id']}"
    changed = client.patch(url, json={"interval_days": 180, "title": "Yearly calibration"},
                           headers=headers("manager"))
    assert changed.status_code == 200, changed.text
    assert (changed.json()["interval_days"], changed.json()["title"]) == (
        180, "Yearly calibration")
    # Without a usage interval the plan must keep its days.
    assert client.patch(url, json={"interval_days": None},
                        headers=headers("manager")).status_code == 422
    assert client.patch(url, json={"active": None}, headers=headers("manager")).status_code == 422
    assert client.patch(url, json={"device_model": "CT-9"},
                        headers=headers("manager")).status_code == 422
    assert client.patch(url, json={"active": False},
                        headers=headers("engineer")).status_code == 403
    retired = client.patch(url, json={"active": False}, headers=headers("admin"))
    assert retired.json()["active"] is False
    assert client.get(f"{PLANS}?active=true", headers=headers("manager")).json() == []
    assert client.get(f"{PLANS}/{plan['id']}", headers=headers("manager")).json()["interval_days"] \
        == 180
    with sessions() as s:
        actions = list(s.scalars(select(AuditLog.action).where(
            AuditLog.object_type == "maintenance_plan").order_by(AuditLog.id)))
    assert actions == ["maintenance.plan_created", "maintenance.plan_updated",
                       "maintenance.plan_updated"]


def test_engineers_record_work_and_an_out_of_tolerance_value_opens_a_ticket(
    client: TestClient, headers: Headers, sessions: sessionmaker[Session]
) -> None:
    plan = add_plan(client, headers, CALIBRATION)
    done = datetime.now(UTC) - timedelta(hours=2)
    url = f"{PLANS}/{plan['id']}/records"
    record = client.post(url, headers=headers("engineer"), json={
        "device_id": "pump-a1", "performed_at": done.isoformat(), "results": "calibrated",
        "measurements": {"flow_error_pct": 7.5}, "usage_hours": 1200})
    assert record.status_code == 201, record.text
    body = record.json()
    assert body["passed"] is False and body["performed_by"] == "engineer"
    assert body["measurements"][0]["within"] is False
    assert datetime.fromisoformat(body["next_due_at"]) == done + timedelta(days=365)
    corrective = body["corrective_ticket_id"]
    assert corrective is not None
    # The corrective ticket is customer A's, in their queue.
    queue = client.get("/api/v1/tickets", headers=headers("customer-a")).json()
    assert corrective in [t["id"] for t in queue["items"]]
    with sessions() as s:
        due = s.scalars(select(MaintenanceDue).where(MaintenanceDue.device_id == "pump-a1")).one()
        assert due.next_due_at is not None
    good = client.post(url, headers=headers("manager"), json={
        "device_id": "pump-b1", "performed_at": done.isoformat(),
        "measurements": {"flow_error_pct": 1.0}})
    assert good.status_code == 201 and good.json()["passed"] is True
    for who in ("admin", "customer-a"):
        assert client.post(url, headers=headers(who), json={
            "device_id": "pump-a1", "performed_at": done.isoformat()}).status_code == 403
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert client.post(url, headers=headers("engineer"), json={
        "device_id": "pump-a1", "performed_at": future}).status_code == 422
    assert client.post(url, headers=headers("engineer"), json={
        "device_id": "pump-a1", "performed_at": "2026-01-01T00:00:00"}).status_code == 422
    # A device the plan does not cover.
    other = add_plan(client, headers, {"kind": "preventive", "title": "B only",
                                       "device_id": "pump-b2", "interval_days": 30})
    assert client.post(f"{PLANS}/{other['id']}/records", headers=headers("engineer"), json={
        "device_id": "pump-a1", "performed_at": done.isoformat()}).status_code == 404

    staff = client.get(RECORDS, headers=headers("engineer")).json()
    assert [r["device_id"] for r in staff] == ["pump-b1", "pump-a1"]
    mine = client.get(RECORDS, headers=headers("customer-a")).json()
    assert [r["device_id"] for r in mine] == ["pump-a1"]
    assert client.get(f"{RECORDS}?device_id=pump-b1",
                      headers=headers("customer-a")).status_code == 404
    assert [r["device_id"] for r in client.get(
        f"{RECORDS}?device_id=pump-b1", headers=headers("manager")).json()] == ["pump-b1"]
    assert len(client.get(f"{RECORDS}?model=IP-100&plan_id={plan['id']}",
                          headers=headers("manager")).json()) == 2
    page = client.get(f"{RECORDS}?limit=1", headers=headers("manager")).json()
    rest = client.get(f"{RECORDS}?before_id={page[0]['id']}",
                      headers=headers("manager")).json()
    assert [r["device_id"] for r in page + rest] == ["pump-b1", "pump-a1"]
