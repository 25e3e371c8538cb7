"""Ticket routes on the service desk's services: queue, history, reports, moves, isolation."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import PASSWORD, World
from vigil.db.enums import Severity, TicketSource
from vigil.db.session import transaction
from vigil.tickets import service
from vigil.tickets.priority import Signal, TicketRules, read_rules_document

Headers = Callable[[str], dict[str, str]]


def test_the_queue_shows_each_caller_what_it_may_see(
    client: TestClient, headers: Headers, world: World
) -> None:
    staff = client.get("/api/v1/tickets", headers=headers("engineer")).json()
    assert {t["id"] for t in staff["items"]} == set(world.ticket_ids.values())
    mine = client.get("/api/v1/tickets", headers=headers("customer-a")).json()
    assert [t["id"] for t in mine["items"]] == [world.ticket_ids["a"]]


def test_queue_pages_by_cursor(client: TestClient, headers: Headers, world: World) -> None:
    first = client.get("/api/v1/tickets?limit=1", headers=headers("manager")).json()
    second = client.get(f"/api/v1/tickets?limit=1&cursor={first['next_cursor']}",
                        headers=headers("manager")).json()
    assert [first["items"][0]["id"], second["items"][0]["id"]] == sorted(
        world.ticket_ids.values(), reverse=True)
    assert second["next_cursor"] is None


def test_a_customer_reports_a_fault_and_a_second_report_joins_it(
    client: TestClient, headers: Headers
) -> None:
    report = {"device_id": "pump-a2", "title": "Screen flickers", "category": "electrical"}
    first = client.post("/api/v1/tickets", json=report, headers=headers("customer-a"))
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["source"] == "customer" and body["state"] == "open"
    again = client.post("/api/v1/tickets", json=report, headers=headers("customer-a"))
    assert again.json()["id"] == body["id"] and again.json()["evidence_count"] == 2


def test_a_customer_cannot_report_on_anothers_device(client: TestClient, headers: Headers) -> None:
    answer = client.post("/api/v1/tickets", headers=headers("customer-a"),
                         json={"device_id": "pump-b2", "title": "x"})
    assert answer.status_code == 404


def test_engineer_works_a_ticket_and_its_history_records_it(
    client: TestClient, headers: Headers, world: World
) -> None:
    tid = world.ticket_ids["a"]
    h = headers("engineer")
    moved = client.post(f"/api/v1/tickets/{tid}/transitions", json={"to": "acknowledged"},
                        headers=h)
    assert moved.status_code == 200, moved.text
    assert moved.json()["state"] == "acknowledged" and moved.json()["responded_at"]
    assigned = client.put(f"/api/v1/tickets/{tid}/assignment",
                          json={"assignee_id": world.user_ids["engineer"]}, headers=h)
    assert assigned.json()["assigned_to_id"] == world.user_ids["engineer"]
    assert client.post(f"/api/v1/tickets/{tid}/comments", json={"text": "on my way"},
                       headers=h).status_code == 201
    history = client.get(f"/api/v1/tickets/{tid}", headers=headers("customer-a")).json()
    kinds = [e["kind"] for e in history["events"]]
    assert "transition" in kinds and "assignment" in kinds and "comment" in kinds


def test_a_move_the_rules_forbid_is_a_clear_4xx(
    client: TestClient, headers: Headers, world: World
) -> None:
    tid = world.ticket_ids["a"]
    skip = client.post(f"/api/v1/tickets/{tid}/transitions", json={"to": "closed"},
                       headers=headers("engineer"))
    assert skip.status_code in (403, 409), skip.text
    assert skip.headers["content-type"] == "application/problem+json"
    assign = client.put(f"/api/v1/tickets/{tid}/assignment",
                        json={"assignee_id": world.user_ids["customer-a"]},
                        headers=headers("manager"))
    assert assign.status_code == 422
    by_customer = client.put(f"/api/v1/tickets/{tid}/assignment", json={"assignee_id": None},
                             headers=headers("customer-a"))
    assert by_customer.status_code == 403


def test_another_customers_ticket_looks_missing(
    client: TestClient, headers: Headers, world: World
) -> None:
    other = client.get(f"/api/v1/tickets/{world.ticket_ids['b']}", headers=headers("customer-a"))
    missing = client.get("/api/v1/tickets/999999", headers=headers("customer-a"))
    assert other.status_code == missing.status_code == 404
    comment = client.post(f"/api/v1/tickets/{world.ticket_ids['b']}/comments",
                          json={"text": "peek"}, headers=headers("customer-a"))
    assert comment.status_code == 404


def test_knowledge_suggestions_for_a_ticket_are_for_staff(
    client: TestClient, headers: Headers, world: World
) -> None:
    tid = world.ticket_ids["a"]
    found = client.get(f"/api/v1/tickets/{tid}/suggestions", headers=headers("engineer")).json()
    # The pump's own mechanical article first; the electrical one only by its words.
    assert [a["id"] for a in found][0] == world.article_id and len(found) == 2
    assert client.get(f"/api/v1/tickets/{tid}/suggestions",
                      headers=headers("customer-a")).status_code == 403
    search = client.get("/api/v1/knowledge?q=occlusion", headers=headers("manager")).json()
    assert [a["id"] for a in search] == [world.article_id]
    assert client.get("/api/v1/knowledge?category=electrical&model=IP-100",
                      headers=headers("manager")).json()[0]["title"] == "Any pump: fuse"


def test_a_fleet_ticket_is_the_service_organisations(
    client: TestClient, headers: Headers, world: World, sessions: sessionmaker[Session]
) -> None:
    """No device and no site: staff see it with its model; no customer sees it."""
    doc = read_rules_document()
    doc["fleet_grouping"] = {"min_devices": 2, "min_sites": 2}
    rules = TicketRules.from_document(doc)
    now = datetime.now(UTC)
    with transaction(sessions) as session:
        for device in (world.devices["a"][1], world.devices["b"][1]):
            opened = service.open_or_join(
                session, device_id=device, signature="event:E900", rules=rules, now=now,
                signal=Signal(TicketSource.DEVICE_EVENT, severity=Severity.ERROR),
                title="E900", evidence=service.Evidence(at=now))
        assert opened.fleet_ticket is not None
        fleet_id = opened.fleet_ticket.id
    detail = client.get(f"/api/v1/tickets/{fleet_id}", headers=headers("manager"))
    assert detail.status_code == 200, detail.text
    body = detail.json()
    assert (body["scope"], body["model"], body["device_id"], body["site_id"]) == \
        ("fleet", "IP-100", None, None)
    assert body["title"] == "Fleet: event:E900 on 2 IP-100 devices at 2 sites"
    assert [e["kind"] for e in body["events"]] == ["transition", "link"]
    listed = client.get("/api/v1/tickets", params={"scope": "fleet"},
                        headers=headers("manager")).json()
    assert [t["id"] for t in listed["items"]] == [fleet_id]
    engineer = headers("engineer")
    assert client.get(f"/api/v1/tickets/{fleet_id}/suggestions", headers=engineer) \
        .status_code == 200
    assert client.post(f"/api/v1/tickets/{fleet_id}/transitions", json={"to": "acknowledged"},
                       headers=engineer).json()["state"] == "acknowledged"
    for customer in ("customer-a", "customer-b"):
        assert client.get(f"/api/v1/tickets/{fleet_id}",
                          headers=headers(customer)).status_code == 404
        queue = client.get("/api/v1/tickets", headers=headers(customer)).json()
        assert fleet_id not in {t["id"] for t in queue["items"]}
    # The console's page of it names the model and links the device tickets.
    signed_in = client.post("/console/sign-in", follow_redirects=False,
                            data={"username": "manager", "password": PASSWORD})
    assert signed_in.status_code == 303, signed_in.text
    page = client.get(f"/console/tickets/{fleet_id}")
    assert page.status_code == 200, page.text
    assert "IP-100 (fleet)" in page.text
    device_tickets = opened.fleet_ticket.evidence["tickets"]
    assert len(device_tickets) == 2
    assert all(f'href="/console/tickets/{t}"' in page.text for t in device_tickets)
    queue = client.get("/console/tickets")
    assert queue.status_code == 200 and "IP-100 (fleet)" in queue.text
