"""Schemathesis over the OpenAPI document against the app on PostgreSQL, signed in as an admin.

Every generated request (valid and invalid) must get an answer that is not a
server error and that conforms to the document: a documented status code,
content type and body schema.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import update

from tests.api.conftest import PASSWORD
from vigil.db.base import utcnow
from vigil.db.session import transaction
from vigil.diagnosis.models import DiagnosisSession
from vigil.servers import Mosquitto

pytestmark = [pytest.mark.servers, pytest.mark.slow]

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.fixture
def sql_url(request: pytest.FixtureRequest) -> str:
    """PostgreSQL only: the database production runs on."""
    from tests.conftest import unique_name
    from vigil.servers import PostgreSQL

    server: PostgreSQL = request.getfixturevalue("postgresql")
    return server.url(server.create_database(unique_name("schemathesis")))


@pytest.fixture
def admin_headers(app: FastAPI) -> Iterator[dict[str, str]]:
    with TestClient(app, base_url="https://testserver") as client:
        answer = client.post("/api/v1/auth/token",
                             json={"username": "admin", "password": PASSWORD})
        api_token = client.post(
            "/api/v1/auth/api-tokens", json={"name": "fuzz", "scopes": ["read", "write"]},
            headers={"Authorization": f"Bearer {answer.json()['access_token']}"}).json()["token"]
    # An API token does not expire during the run, unlike a 15-minute access token.
    yield {"Authorization": f"Bearer {api_token}"}


# Routes that would end the run's own credential; they are walked elsewhere.
SKIPPED = {("DELETE", "/api/v1/auth/session"), ("DELETE", "/api/v1/auth/api-tokens/{token_id}")}


def test_no_server_errors_and_answers_conform(
    app: FastAPI, admin_headers: dict[str, str], mosquitto: Mosquitto
) -> None:
    app.state.settings.mqtt.port = mosquitto.port
    with transaction(app.state.sessions) as db:
        # A live transcript waits for entries while its session is open; closed, it answers at once.
        db.execute(update(DiagnosisSession).values(closed_at=utcnow(), close_reason="fuzzing"))
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIPPED:
            continue
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=admin_headers, checks=CHECKS)

        try:
            run()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - Schemathesis' failures are BaseExceptions
            failures.append(f"{operation.label}: {str(exc)[:1500]}")
    assert operations > 20
    assert not failures, "\n\n".join(failures)
