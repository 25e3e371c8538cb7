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
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import World

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
}
QUERIES: dict[tuple[str, str], dict[str, str]] = {
    ("get", "/api/v1/devices/{device_id}/telemetry"): {
        "start": "2026-11-01T00:00:00Z", "end": "2026-11-01T01:00:00Z"},
    # The live transcript answers what there is and ends, rather than waiting for more.
    ("get", "/api/v1/diagnosis/sessions/{session_id}/events"): {"wait_s": "0"},
    ("get", "/api/v1/diagnosis/sessions/{session_id}/readings"): {"wait_s": "0"},
}
STAFF_ONLY = re.compile(r"^get /api/v1/(knowledge|tickets/\{ticket_id\}/suggestions)"
                        r"|^(get|post) /api/v1/diagnosis/")
ADMIN_ONLY = re.compile(r"^(post|patch|delete) /api/v1/(customers|sites|users|devices)"
                        r"|^get /api/v1/(users|audit)")
# Routes that change the caller's own sign-in state, walked last (and not as customer A).
SIGN_OUT = ("delete", "/api/v1/auth/session")


def other_ids(world: World, client: TestClient, headers: Headers) -> dict[str, str]:
    """Customer B's ids, one per path parameter name; B's own API token for token_id."""
    token = client.post("/api/v1/auth/api-tokens", headers=headers("customer-b"),
                        json={"name": "b's", "scopes": ["read"]}).json()
    return {
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
           "article_id": "999999", "session_id": "999999"}


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
    body = BODIES.get((method, path))
    if body is not None:
        body = {key: ids[value[1:-1]] if isinstance(value, str) and value[1:-1] in ids
                and value.startswith("{") else value for key, value in body.items()}
    return client.request(method.upper(), url, headers=headers, json=body,
                          params=QUERIES.get((method, path)))


def normalised(detail: str, ids: dict[str, str]) -> str:
    for value in ids.values():
        detail = detail.replace(repr(value), "ID").replace(value, "ID")
    return detail


@pytest.mark.parametrize("role", ROLES)
def test_every_route_with_another_customers_ids(
    role: str, client: TestClient, headers: Headers, world: World
) -> None:
    ids = other_ids(world, client, headers)
    h = headers(role)
    for method, path in operations(client):
        if (method, path) == SIGN_OUT and role == "customer-a":
            continue
        answer = call(client, method, path, ids, h)
        where = f"{role}: {method.upper()} {path} -> {answer.status_code} {answer.text[:200]}"
        # No broker runs here, so readiness rightly says 503.
        assert answer.status_code < 500 or path == "/readyz", where
        public = path in ("/healthz", "/readyz", "/metrics") or path.startswith("/api/v1/auth/")
        if ADMIN_ONLY.search(f"{method} {path}") and role != "admin":
            assert answer.status_code == 403, where
        if STAFF_ONLY.search(f"{method} {path}") and role == "customer-a":
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
    client: TestClient, headers: Headers, world: World
) -> None:
    ids = other_ids(world, client, headers)
    listed = client.get("/api/v1/auth/api-tokens", headers=headers("customer-a")).json()
    assert listed == []
    answer = client.delete(f"/api/v1/auth/api-tokens/{ids['token_id']}",
                           headers=headers("customer-a"))
    assert answer.status_code == 404
    mine = client.get("/api/v1/auth/api-tokens", headers=headers("customer-b")).json()
    assert [t["revoked_at"] for t in mine] == [None]
