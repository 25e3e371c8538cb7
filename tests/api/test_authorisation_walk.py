"""Every route of the OpenAPI document, called by every role with another customer's ids.

Customer A's user aims at customer B's objects: each answer must be a refusal
(403) or a 404 that reads exactly like the one for an object that does not
exist, and no answer may carry B's data. Staff roles get no server error on any
route, and only admins pass the administration routes. A route whose path
parameter this walk does not know fails the test, so new routes join the walk.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import World
from vigil.db.session import transaction
from vigil.engineers.models import Engineer, Qualification
from vigil.maintenance.models import MaintenancePlan, MaintenanceRecord
from vigil.tickets import voucher
from vigil.tickets.models import Contract, SatisfactionSurvey, Ticket
from vigil.tickets.survey import token_hash
from vigil.tickets.transitions import Actor, ActorRole

Headers = Callable[[str], dict[str, str]]

ROLES = ("admin", "manager", "engineer", "customer-a")
# Text that only customer B's objects contain.
B_MARKERS = ("pump-b", "Hospital B", "ICU B", "SN-b", "customer-b", "Pump b")
# A minimal well-formed body per route, so a refusal is about rights, not syntax.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/api/v1/customers"): {"name": "Walked In"},
    ("patch", "/api/v1/customers/{customer_id}"): {"name": "Renamed"},
    ("post", "/api/v1/sites"): {"name": "Walk site", "customer_id": 0},
    ("patch", "/api/v1/sites/{site_id}"): {"name": "Renamed"},
    ("post", "/api/v1/users"): {"username": "walker", "display_name": "W", "roles": ["engineer"]},
    ("patch", "/api/v1/users/{user_id}"): {"display_name": "Renamed"},
    ("post", "/api/v1/devices"): {"id": "walk-1", "serial": "walk-1", "model": "m"},
    ("patch", "/api/v1/devices/{device_id}"): {"model": "renamed"},
    ("post", "/api/v1/auth/api-tokens"): {"name": "walk", "scopes": ["read"]},
    ("post", "/api/v1/auth/token"): {"username": "customer-b", "password": "wrong password"},
    ("post", "/api/v1/auth/session"): {"username": "customer-b", "password": "wrong password"},
    ("post", "/api/v1/auth/refresh"): {"refresh_token": "vrt_not-a-token"},
    ("post", "/api/v1/tickets"): {"device_id": "{device_id}", "title": "Walked fault"},
    ("post", "/api/v1/tickets/{ticket_id}/transitions"): {"to": "acknowledged"},
    ("post", "/api/v1/tickets/{ticket_id}/comments"): {"text": "walked"},
    ("put", "/api/v1/tickets/{ticket_id}/assignment"): {"assignee_id": None},
    ("post", "/api/v1/tickets/{ticket_id}/pause"): {"reason": "parts"},
    ("post", "/api/v1/diagnosis/sessions"): {"device_id": "{device_id}"},
    ("post", "/api/v1/diagnosis/sessions/{session_id}/commands"): {"cmd": "self_test"},
    ("put", "/api/v1/tickets/{ticket_id}/suggestions/{article_id}/feedback"): {"helpful": True},
    ("post", "/api/v1/maintenance/plans"): {"kind": "preventive", "title": "Walk plan",
                                            "device_id": "{device_id}", "interval_days": 30},
    ("patch", "/api/v1/maintenance/plans/{plan_id}"): {"interval_days": 60},
    ("post", "/api/v1/maintenance/plans/{plan_id}/records"): {
        "device_id": "{device_id}", "performed_at": "2026-11-01T00:00:00Z", "results": "walked"},
    ("post", "/api/v1/contracts"): {"name": "Walk contract", "customer_id": "{customer_id}"},
    ("patch", "/api/v1/contracts/{contract_id}"): {"name": "Renamed"},
    ("post", "/api/v1/engineers"): {"user_id": "{user_id}"},
    ("patch", "/api/v1/engineers/{engineer_id}"): {"region": "south"},
    ("post", "/api/v1/engineers/{engineer_id}/qualifications"): {
        "device_model": "CT-9", "qualified_on": "2026-01-01", "expires_on": "2027-01-01"},
    ("patch", "/api/v1/engineers/{engineer_id}/qualifications/{qualification_id}"): {
        "expires_on": "2028-01-01"},
    ("post", "/api/v1/surveys/{token}"): {"score": 4, "comment": "walked"},
}
QUERIES: dict[tuple[str, str], dict[str, str]] = {
    ("get", "/api/v1/devices/{device_id}/telemetry"): {
        "start": "2026-11-01T00:00:00Z", "end": "2026-11-01T01:00:00Z"},
    # The live transcript answers what there is and ends, rather than waiting for more.
    ("get", "/api/v1/diagnosis/sessions/{session_id}/events"): {"wait_s": "0"},
    ("get", "/api/v1/diagnosis/sessions/{session_id}/readings"): {"wait_s": "0"},
    # The other customer's report, by its id in the query.
    ("get", "/api/v1/reports/quality"): {
        "start": "2026-01-01T00:00:00Z", "end": "2027-01-01T00:00:00Z",
        "customer_id": "{customer_id}"},
    ("get", "/api/v1/reports/quality/published"): {
        "start": "2026-01-01T00:00:00Z", "end": "2027-01-01T00:00:00Z",
        "customer_id": "{customer_id}"},
}
STAFF_ONLY = re.compile(r"^get /api/v1/(knowledge|tickets/\{ticket_id\}/suggestions)"
                        r"|^(get|post) /api/v1/diagnosis/")
ADMIN_ONLY = re.compile(r"^(post|patch|delete) /api/v1/(customers|sites|users|devices)"
                        r"|^get /api/v1/(users|audit)"
                        r"|^(get|post|patch) /api/v1/(contracts|engineers)")
# Planning the service: managers and admins.
MANAGERS_ONLY = re.compile(r"^(post|patch) /api/v1/maintenance/plans(/\{plan_id\})?$")
# The service work itself: engineers and managers.
FIELD_ONLY = re.compile(r"^put /api/v1/tickets/\{ticket_id\}/suggestions/"
                        r"|^post /api/v1/tickets/\{ticket_id\}/voucher"
                        r"|^post /api/v1/maintenance/plans/\{plan_id\}/records")
# The service-quality report: managers, admins and customers (their own), not engineers.
NOT_ENGINEERS = re.compile(r"^get /api/v1/reports/")
# The survey link's token is its own permission: whoever holds it may read and answer.
PUBLIC = re.compile(r"^/(healthz|readyz|metrics)$|^/api/v1/(auth|surveys)/")
SURVEY_TOKEN = "walk-survey-token-of-customer-b-0123456789abcdef"
# Routes that change the caller's own sign-in state, walked last (and not as customer A).
SIGN_OUT = ("delete", "/api/v1/auth/session")


def b_objects(sessions: sessionmaker[Session], world: World) -> dict[str, str]:
    """Customer B's plan, record, voucher and survey; a contract, an engineer, a version."""
    now = datetime.now(UTC)
    with transaction(sessions) as s:
        plan = MaintenancePlan(kind="preventive", title="Pump b seal check", interval_days=90,
                               device_id=world.devices["b"][1])
        contract = Contract(name="Contract of Hospital B", customer_id=world.customer_ids["b"])
        engineer = Engineer(user_id=world.user_ids["engineer"], region="ICU B region")
        closed = Ticket(device_id=world.devices["b"][2], site_id=world.site_ids["b"],
                        priority="P3", category="software", source="customer",
                        signature="report:walk", title="Pump b display fixed", state="closed",
                        closed_at=now)
        s.add_all([plan, contract, engineer, closed])
        s.flush()
        s.add(MaintenanceRecord(plan_id=plan.id, device_id=world.devices["b"][1],
                                kind="preventive", performed_at=now, performed_by="engineer",
                                results="Pump b seals replaced"))
        qualification = Qualification(engineer_id=engineer.id, device_model="IP-100",
                                      qualified_on=date(2026, 1, 1),
                                      expires_on=date(2030, 1, 1))
        s.add(qualification)  # the world's articles have their first version already
        s.add(SatisfactionSurvey(ticket_id=closed.id, token_hash=token_hash(SURVEY_TOKEN),
                                 issued_at=now, expires_at=now + timedelta(days=30)))
        voucher.issue(s, ticket_id=world.ticket_ids["b"], with_pdf=False, now=now,
                      actor=Actor("engineer", ActorRole.ENGINEER))
        s.flush()
        return {"plan_id": str(plan.id), "contract_id": str(contract.id),
                "engineer_id": str(engineer.id), "qualification_id": str(qualification.id),
                "version": "1", "token": SURVEY_TOKEN}


def other_ids(world: World, client: TestClient, headers: Headers,
              sessions: sessionmaker[Session]) -> dict[str, str]:
    """Customer B's ids, one per path parameter name; B's own API token for token_id."""
    token = client.post("/api/v1/auth/api-tokens", headers=headers("customer-b"),
                        json={"name": "b's", "scopes": ["read"]}).json()
    return {
        **b_objects(sessions, world),
        "device_id": world.devices["b"][1],
        "customer_id": str(world.customer_ids["b"]),
        "site_id": str(world.site_ids["b"]),
        "user_id": str(world.user_ids["customer-b"]),
        "ticket_id": str(world.ticket_ids["b"]),
        "token_id": str(token["id"]),
        "article_id": str(world.article_id),
        "session_id": str(world.diagnosis_session_id),
    }


MISSING = {"device_id": "nosuch-device", "customer_id": "999999", "site_id": "999999",
           "user_id": "999999", "ticket_id": "999999", "token_id": "999999",
           "article_id": "999999", "session_id": "999999", "plan_id": "999999",
           "contract_id": "999999", "engineer_id": "999999", "qualification_id": "999999",
           "version": "999999", "token": "no-such-survey-token-0123456789abcdef"}


def operations(client: TestClient) -> list[tuple[str, str]]:
    doc = client.get("/api/v1/openapi.json").json()
    found = [(method, path) for path, item in doc["paths"].items() for method in item
             if method in ("get", "post", "put", "patch", "delete")]
    assert len(found) > 20
    return sorted(found, key=lambda op: op == SIGN_OUT)


def call(client: TestClient, method: str, path: str, ids: dict[str, str],
         headers: dict[str, str]) -> Any:
    names = re.findall(r"{(\w+)}", path)
    unknown = [name for name in names if name not in ids]
    assert not unknown, f"{method} {path}: the walk knows no id for {unknown}"
    url = path
    for name in names:
        url = url.replace("{" + name + "}", ids[name])
    return client.request(method.upper(), url, headers=headers,
                          json=filled(BODIES.get((method, path)), ids),
                          params=filled(QUERIES.get((method, path)), ids))


def filled(values: dict[str, Any] | None, ids: dict[str, str]) -> dict[str, Any] | None:
    """``values`` with each "{name}" replaced by the id of that name."""
    if values is None:
        return None
    return {key: ids[value[1:-1]] if isinstance(value, str) and value[1:-1] in ids
            and value.startswith("{") else value for key, value in values.items()}


def normalised(detail: str, ids: dict[str, str]) -> str:
    # Longest first, so a short id ("1") does not replace part of a longer one ("pump-b1").
    for value in sorted(ids.values(), key=len, reverse=True):
        detail = detail.replace(repr(value), "ID").replace(value, "ID")
    return detail


@pytest.mark.parametrize("role", ROLES)
def test_every_route_with_another_customers_ids(
    role: str, client: TestClient, headers: Headers, world: World,
    sessions: sessionmaker[Session]
) -> None:
    ids = other_ids(world, client, headers, sessions)
    h = headers(role)
    for method, path in operations(client):
        if (method, path) == SIGN_OUT and role == "customer-a":
            continue
        answer = call(client, method, path, ids, h)
        where = f"{role}: {method.upper()} {path} -> {answer.status_code} {answer.text[:200]}"
        # No broker runs here, so readiness rightly says 503.
        assert answer.status_code < 500 or path == "/readyz", where
        public = PUBLIC.search(path) is not None
        operation = f"{method} {path}"
        if ADMIN_ONLY.search(operation) and role != "admin":
            assert answer.status_code == 403, where
        if STAFF_ONLY.search(operation) and role == "customer-a":
            assert answer.status_code == 403, where
        if MANAGERS_ONLY.search(operation) and role not in ("admin", "manager"):
            assert answer.status_code == 403, where
        if FIELD_ONLY.search(operation) and role not in ("engineer", "manager"):
            assert answer.status_code == 403, where
        if NOT_ENGINEERS.search(operation) and role == "engineer":
            assert answer.status_code == 403, where
        if role != "customer-a" or public:
            continue
        if answer.status_code == 404:
            again = call(client, method, path, MISSING, h)
            assert again.status_code == 404, where
            assert normalised(answer.json()["detail"], ids) == normalised(
                again.json()["detail"], MISSING), where
        else:
            assert answer.status_code in (200, 403), where
        # The ids the caller sent may be echoed; nothing else of B's may appear.
        assert not any(marker in normalised(answer.text, ids) for marker in B_MARKERS), where


def test_a_customer_cannot_read_or_revoke_anothers_api_token(
    client: TestClient, headers: Headers, world: World, sessions: sessionmaker[Session]
) -> None:
    ids = other_ids(world, client, headers, sessions)
    listed = client.get("/api/v1/auth/api-tokens", headers=headers("customer-a")).json()
    assert listed == []
    answer = client.delete(f"/api/v1/auth/api-tokens/{ids['token_id']}",
                           headers=headers("customer-a"))
    assert answer.status_code == 404
    mine = client.get("/api/v1/auth/api-tokens", headers=headers("customer-b")).json()
    assert [t["revoked_at"] for t in mine] == [None]
