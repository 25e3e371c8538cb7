"""The application's frame: probes, metrics, problem details, limits and the OpenAPI document."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from vigil.servers import Mosquitto

PROBLEM = "application/problem+json"


def test_healthz_answers(client: TestClient) -> None:
    answer = client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}


@pytest.mark.servers
def test_readyz_checks_database_store_and_broker(
    client: TestClient, app: FastAPI, mosquitto: Mosquitto
) -> None:
    app.state.settings.mqtt.port = mosquitto.port
    answer = client.get("/readyz")
    assert answer.status_code == 200, answer.text
    assert {name for name, check in answer.json()["checks"].items() if check["ok"]} == {
        "database", "telemetry", "broker"}


def test_readyz_says_which_dependency_is_down(client: TestClient, app: FastAPI) -> None:
    from vigil.servers import free_port

    app.state.settings.mqtt.port = free_port()
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.headers["content-type"] == PROBLEM
    body = answer.json()
    assert body["checks"]["broker"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True
    assert "broker" in body["detail"]


def test_metrics_count_requests_by_route_template(client: TestClient) -> None:
    client.get("/healthz")
    client.get("/api/v1/devices/pump-a0")
    text = client.get("/metrics").text
    assert 'vigil_api_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert 'route="/api/v1/devices/{device_id}",status="401"' in text
    assert "pump-a0" not in text


def test_unknown_route_is_a_problem(client: TestClient) -> None:
    answer = client.get("/api/v1/nothing-here")
    assert answer.status_code == 404
    assert answer.headers["content-type"] == PROBLEM
    body = answer.json()
    assert body["status"] == 404 and body["title"] == "Not Found"
    assert body["type"].startswith("https://")


def test_validation_error_names_the_field(client: TestClient) -> None:
    answer = client.post("/api/v1/auth/token", json={"username": "admin"})
    assert answer.status_code == 422
    assert answer.headers["content-type"] == PROBLEM
    body = answer.json()
    assert body["errors"][0]["field"] == "body.password"
    assert "body.password" in body["detail"]


def test_malformed_json_is_a_clear_4xx(client: TestClient) -> None:
    answer = client.post("/api/v1/auth/token", content=b"{not json",
                         headers={"content-type": "application/json"})
    assert answer.status_code == 422
    assert answer.headers["content-type"] == PROBLEM


def test_deeply_nested_json_is_a_clear_4xx(client: TestClient) -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    answer = client.post("/api/v1/auth/token", content=body,
                         headers={"content-type": "application/json"})
    assert 400 <= answer.status_code < 500
    assert answer.headers["content-type"] == PROBLEM


def test_oversized_body_is_refused_before_reading(client: TestClient) -> None:
    answer = client.post("/api/v1/auth/token", content=b"x" * (2 * 1024 * 1024),
                         headers={"content-type": "application/json"})
    assert answer.status_code == 413
    assert answer.headers["content-type"] == PROBLEM


def test_an_unexpected_error_reveals_nothing(app: FastAPI, client: TestClient) -> None:
    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret detail: password=hunter2 at /srv/vigil/api.py")

    answer = client.get("/boom")
    assert answer.status_code == 500
    assert answer.headers["content-type"] == PROBLEM
    assert "hunter2" not in answer.text and "Traceback" not in answer.text
    assert answer.json()["detail"] == "an internal error occurred; it has been logged"


def test_openapi_has_tags_per_domain_and_the_problem_schema(client: TestClient) -> None:
    doc = client.get("/api/v1/openapi.json").json()
    tags = {tag for path in doc["paths"].values() for op in path.values() for tag in op["tags"]}
    assert {"auth", "devices", "health"} <= tags
    assert "Problem" in doc["components"]["schemas"]
    assert all(p.startswith("/api/v1/") or p in ("/healthz", "/readyz", "/metrics")
               for p in doc["paths"])
