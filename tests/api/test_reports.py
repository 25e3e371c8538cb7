"""The service-quality report through the API: who sees which customer's figures, and formats."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import World
from vigil.db.session import transaction
from vigil.tickets.models import Ticket

Headers = Callable[[str], dict[str, str]]
URL = "/api/v1/reports/quality"


def period() -> dict[str, str]:
    now = datetime.now(UTC)
    return {"start": (now - timedelta(days=1)).isoformat(),
            "end": (now + timedelta(days=1)).isoformat()}


def test_managers_see_every_customer_or_one(
    client: TestClient, headers: Headers, world: World
) -> None:
    for role in ("admin", "manager"):
        body = client.get(URL, params={**period(), "group_by": "site"},
                          headers=headers(role)).json()
        assert [(r["group"], r["opened"]) for r in body["rows"]] == [("ICU A", 1), ("ICU B", 1)]
        assert body["total"]["opened"] == 2 and body["customer_id"] is None
    one = client.get(URL, params={**period(), "group_by": "site",
                                  "customer_id": world.customer_ids["b"]},
                     headers=headers("manager")).json()
    assert [r["group"] for r in one["rows"]] == ["ICU B"]
    assert one["customer_id"] == world.customer_ids["b"]
    # The report judges the engineers' work; it is not theirs.
    for url in (URL, f"{URL}/published"):
        assert client.get(url, params=period(), headers=headers("engineer")).status_code == 403


def test_a_customer_sees_only_its_own_customer(
    client: TestClient, headers: Headers, world: World
) -> None:
    h = headers("customer-a")
    body = client.get(URL, params={**period(), "group_by": "site"}, headers=h).json()
    assert [(r["group"], r["opened"]) for r in body["rows"]] == [("ICU A", 1)]
    assert body["total"]["opened"] == 1 and body["customer_id"] == world.customer_ids["a"]
    assert [(m["model"], m["devices"]) for m in body["reliability"]] == [("IP-100", 3)]
    own = client.get(URL, params={**period(), "customer_id": world.customer_ids["a"]}, headers=h)
    assert own.status_code == 200
    other = client.get(URL, params={**period(), "customer_id": world.customer_ids["b"]},
                       headers=h)
    missing = client.get(URL, params={**period(), "customer_id": 999_999}, headers=h)
    assert other.status_code == missing.status_code == 404
    for answer in (other, missing):
        assert "Hospital B" not in answer.text and "ICU B" not in answer.text


def test_csv_has_a_line_per_group_and_a_total(client: TestClient, headers: Headers) -> None:
    answer = client.get(URL, params={**period(), "group_by": "priority", "format": "csv"},
                        headers=headers("manager"))
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"].startswith("attachment; filename=")
    lines = list(csv.DictReader(io.StringIO(answer.text)))
    assert [(line["group"], line["opened"]) for line in lines] == [("P2", "2"), ("(all)", "2")]


def test_the_published_version_names_no_one(client: TestClient, headers: Headers) -> None:
    url = f"{URL}/published"
    html = client.get(url, params={**period(), "organisation": "Example Medical"},
                      headers=headers("manager"))
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "Example Medical" in html.text and "IP-100" in html.text
    assert "default-src 'none'" in html.headers["content-security-policy"]
    for private in ("Hospital A", "Hospital B", "ICU A", "ICU B", "pump-a", "SN-a", "Engineer"):
        assert private not in html.text
    pdf = client.get(url, params={**period(), "format": "pdf"}, headers=headers("manager"))
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    by_site = client.get(url, params={**period(), "group_by": "site"},
                         headers=headers("manager"))
    assert by_site.status_code == 422


def test_periods_are_checked(client: TestClient, headers: Headers) -> None:
    h = headers("manager")
    naive = client.get(URL, params={"start": "2026-11-01T00:00:00",
                                    "end": "2026-12-01T00:00:00Z"}, headers=h)
    assert naive.status_code == 422 and "start" in naive.json()["detail"]
    backwards = client.get(URL, params={"start": "2026-12-01T00:00:00Z",
                                        "end": "2026-11-01T00:00:00Z"}, headers=h)
    assert backwards.status_code == 422 and "end" in backwards.json()["detail"]
    assert client.get(URL, params={**period(), "group_by": "nonsense"},
                      headers=h).status_code == 422
    too_long = client.get(URL, params={"start": "2024-01-01T00:00:00Z",
                                       "end": "2026-01-02T00:00:00Z"}, headers=h)
    assert too_long.status_code == 422 and "731 days" in too_long.json()["detail"]
    assert client.get(URL, params=period()).status_code == 401


def test_false_alarms_per_analytics_rule_as_json_and_csv(
    client: TestClient, headers: Headers, world: World, sessions: sessionmaker[Session]
) -> None:
    now = datetime.now(UTC)
    with transaction(sessions) as session:
        for key, state in (("a", "cancelled"), ("b", "open")):
            session.add(Ticket(device_id=world.devices[key][1], site_id=world.site_ids[key],
                               priority="P3", category="mechanical", source="analytics",
                               state=state, signature="anomaly:flow", title="flow",
                               created_at=now, updated_at=now))
    body = client.get(URL, params=period(), headers=headers("manager")).json()
    assert body["cancellations_by_rule"] == [
        {"signature": "anomaly:flow", "opened": 2, "cancelled": 1, "share": 0.5}]
    own = client.get(URL, params=period(), headers=headers("customer-a")).json()
    assert own["cancellations_by_rule"] == [
        {"signature": "anomaly:flow", "opened": 1, "cancelled": 1, "share": 1.0}]
    answer = client.get(URL, params={**period(), "format": "csv", "section": "rules"},
                        headers=headers("manager"))
    assert answer.status_code == 200 and "rules.csv" in answer.headers["content-disposition"]
    assert list(csv.DictReader(io.StringIO(answer.text))) == [
        {"rule": "anomaly:flow", "opened": "2", "cancelled_false_alarm": "1",
         "cancelled_share": "0.5"}]
    assert client.get(URL, params={**period(), "format": "csv", "section": "people"},
                      headers=headers("manager")).status_code == 422
