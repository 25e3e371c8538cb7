"""Devices: the health list (filters, sorting, cursor pages), one device, telemetry and CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import World, write_readings
from vigil.db.models import Device, Prediction
from vigil.db.session import transaction
from vigil.maintenance.models import MaintenancePlan
from vigil.telemetry.embedded import EmbeddedStore

Headers = Callable[[str], dict[str, str]]


def ids(answer: dict) -> list[str]:
    return [item["id"] for item in answer["items"]]


def test_staff_see_every_device_with_health(client: TestClient, headers: Headers,
                                            world: World) -> None:
    answer = client.get("/api/v1/devices", headers=headers("engineer"))
    assert answer.status_code == 200
    body = answer.json()
    assert ids(body) == sorted(world.devices["a"] + world.devices["b"])
    by_id = {item["id"]: item for item in body["items"]}
    assert by_id["pump-a0"]["open_tickets"] == 1 and by_id["pump-a2"]["open_tickets"] == 0
    assert by_id["pump-a1"]["risk"] == 0.4 and by_id["pump-a1"]["risk_horizon_days"] == 30
    assert by_id["pump-a1"]["online"] is True and by_id["pump-a0"]["last_seen"] is None
    assert body["next_cursor"] is None


def test_a_customer_sees_only_its_own_devices(client: TestClient, headers: Headers,
                                              world: World) -> None:
    body = client.get("/api/v1/devices", headers=headers("customer-a")).json()
    assert ids(body) == world.devices["a"]
    # Filtering by the other customer's site or customer finds nothing rather than refusing.
    for query in (f"site_id={world.site_ids['b']}", f"customer_id={world.customer_ids['b']}"):
        other = client.get(f"/api/v1/devices?{query}", headers=headers("customer-a")).json()
        assert other["items"] == []


def test_cursor_pages_cover_the_list_once_in_every_sort(
    client: TestClient, headers: Headers, world: World
) -> None:
    everything = sorted(world.devices["a"] + world.devices["b"])
    for sort in ("id", "last_seen", "model", "serial", "risk"):
        for order in ("asc", "desc"):
            seen: list[str] = []
            cursor = None
            for _ in range(10):
                query = f"/api/v1/devices?limit=2&sort={sort}&order={order}"
                if cursor:
                    query += f"&cursor={cursor}"
                body = client.get(query, headers=headers("manager")).json()
                assert len(body["items"]) <= 2
                seen += ids(body)
                cursor = body["next_cursor"]
                if cursor is None:
                    break
            assert sorted(seen) == everything and len(seen) == len(everything), (sort, order)


def test_sorting_by_last_seen_puts_the_freshest_first(client: TestClient, headers: Headers) -> None:
    body = client.get("/api/v1/devices?sort=last_seen&order=desc&customer_id=1",
                      headers=headers("admin")).json()
    assert ids(body)[:2] == ["pump-a1", "pump-a2"]


def test_filters(client: TestClient, headers: Headers) -> None:
    h = headers("engineer")
    assert ids(client.get("/api/v1/devices?online=true", headers=h).json()) == [
        "pump-a1", "pump-b1"]
    assert ids(client.get("/api/v1/devices?has_open_tickets=true", headers=h).json()) == [
        "pump-a0", "pump-b0"]
    assert ids(client.get("/api/v1/devices?q=b2", headers=h).json()) == ["pump-b2"]
    assert ids(client.get("/api/v1/devices?q=%25", headers=h).json()) == []
    assert client.get("/api/v1/devices?model=IP-100&limit=1", headers=h).json()[
        "next_cursor"] is not None


def test_bad_paging_input_is_a_clear_4xx(client: TestClient, headers: Headers) -> None:
    h = headers("engineer")
    for query in ("limit=0", "limit=100000", "sort=password_hash", "cursor=%%%", "cursor=bm9wZQ",
                  "q=" + "x" * 500):
        answer = client.get(f"/api/v1/devices?{query}", headers=h)
        assert answer.status_code == 422, (query, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"


def test_one_device_has_readings_events_tickets_predictions(
    client: TestClient, headers: Headers, store: EmbeddedStore
) -> None:
    write_readings(store, "pump-a1", datetime.now(UTC) - timedelta(minutes=5), 3)
    body = client.get("/api/v1/devices/pump-a1", headers=headers("customer-a")).json()
    assert body["readings"] == {"temp_c": 22.0, "flow": 2.0}
    assert body["readings_at"] is not None
    assert body["predictions"][0]["probability"] == 0.4
    tickets = client.get("/api/v1/devices/pump-a0", headers=headers("customer-a")).json()[
        "tickets"]
    assert [t["title"] for t in tickets] == ["Pump a alarms"]
    assert body["plans"] == []


def test_another_customers_device_is_not_found_like_a_missing_one(
    client: TestClient, headers: Headers
) -> None:
    other = client.get("/api/v1/devices/pump-b1", headers=headers("customer-a"))
    missing = client.get("/api/v1/devices/pump-zz", headers=headers("customer-a"))
    assert other.status_code == missing.status_code == 404
    assert other.json()["detail"].replace("pump-b1", "X") == missing.json()["detail"].replace(
        "pump-zz", "X")


def test_telemetry_range_raw_and_at_a_resolution(
    client: TestClient, headers: Headers, store: EmbeddedStore
) -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    write_readings(store, "pump-a1", start, 120)
    params = {"start": start.isoformat(), "end": (start + timedelta(minutes=2)).isoformat()}
    raw = client.get("/api/v1/devices/pump-a1/telemetry", params=params,
                     headers=headers("customer-a")).json()
    assert raw["columns"] == ["time", "flow", "temp_c"]
    assert len(raw["rows"]) == 120
    assert raw["rows"][1] == [int(start.timestamp() * 1000) + 1000, 1.0, 21.0]
    minute = client.get("/api/v1/devices/pump-a1/telemetry",
                        params={**params, "resolution_s": 60, "aggregate": "max",
                                "metrics": ["flow"]},
                        headers=headers("customer-a")).json()
    assert minute["columns"] == ["time", "flow"]
    assert [row[1] for row in minute["rows"]] == [59.0, 119.0]


def test_telemetry_csv_export(client: TestClient, headers: Headers, store: EmbeddedStore) -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    write_readings(store, "pump-a1", start, 3)
    answer = client.get("/api/v1/devices/pump-a1/telemetry",
                        params={"start": start.isoformat(),
                                "end": (start + timedelta(seconds=3)).isoformat(),
                                "format": "csv"},
                        headers=headers("engineer"))
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert rows[0] == ["time", "flow", "temp_c"]
    assert rows[1] == ["2026-11-01T00:00:00Z", "0.0", "20.0"]
    assert len(rows) == 4


def test_telemetry_refuses_unbounded_or_odd_ranges(client: TestClient, headers: Headers) -> None:
    h = headers("engineer")
    url = "/api/v1/devices/pump-a1/telemetry"
    cases = [
        {"start": "2026-11-01T00:00:00Z", "end": "2026-11-30T00:00:00Z"},
        {"start": "2026-11-02T00:00:00Z", "end": "2026-11-01T00:00:00Z"},
        {"start": "2026-11-01T00:00:00", "end": "2026-11-01T01:00:00"},
        {"start": "2026-11-01T00:00:00Z", "end": "2026-11-01T01:00:00Z", "metrics": ["1; DROP"]},
        {"start": "1900-01-01T00:00:00Z", "end": "1900-01-01T01:00:00Z"},
    ]
    for params in cases:
        answer = client.get(url, params=params, headers=h)
        assert answer.status_code == 422, (params, answer.text)


def test_telemetry_of_another_customers_device_is_404(client: TestClient, headers: Headers) -> None:
    answer = client.get("/api/v1/devices/pump-b1/telemetry",
                        params={"start": "2026-11-01T00:00:00Z", "end": "2026-11-01T01:00:00Z"},
                        headers=headers("customer-a"))
    assert answer.status_code == 404


def test_a_device_without_a_site_is_staff_only(
    client: TestClient, headers: Headers, sessions: sessionmaker[Session]
) -> None:
    with transaction(sessions) as session:
        session.add(Device(id="spare-1", serial="SN-spare", model="IP-100"))
    assert client.get("/api/v1/devices/spare-1", headers=headers("engineer")).status_code == 200
    assert client.get("/api/v1/devices/spare-1", headers=headers("customer-a")).status_code == 404


def test_a_device_page_lists_its_own_and_its_models_plans(
    client: TestClient, headers: Headers, sessions: sessionmaker[Session]
) -> None:
    with transaction(sessions) as session:
        session.add_all([
            MaintenancePlan(device_id="pump-a1", kind="calibration", title="Flow calibration",
                            interval_days=180),
            MaintenancePlan(device_model="IP-100", kind="preventive", title="Seal check",
                            interval_days=365),
            MaintenancePlan(device_model="CT-9", kind="preventive", title="Tube",
                            interval_days=90),
        ])
    plans = client.get("/api/v1/devices/pump-a1", headers=headers("engineer")).json()["plans"]
    assert sorted(p["title"] for p in plans) == ["Flow calibration", "Seal check"]


def test_predictions_ranked_by_risk_for_what_the_caller_sees(
    client: TestClient, headers: Headers, sessions: sessionmaker[Session]
) -> None:
    now = datetime.now(UTC)
    with transaction(sessions) as session:
        session.add_all([
            Prediction(device_id="pump-a1", made_at=now, horizon_days=30, probability=0.9,
                       rul_days=12, rul_lower_days=8, rul_upper_days=20,
                       model_version="t2", drivers={"motor_current": -0.7},
                       fault_type="E-MOTOR-STALL", basis={"calibration": "pooled"}),
            Prediction(device_id="pump-a2", made_at=now, horizon_days=30, probability=0.2,
                       model_version="t2"),
        ])
    staff = client.get("/api/v1/predictions", headers=headers("manager")).json()
    assert [(p["device_id"], p["probability"]) for p in staff] == [
        ("pump-a1", 0.9), ("pump-b1", 0.4), ("pump-a2", 0.2)]
    assert staff[0]["rul_band_days"] == [8, 20]
    assert staff[0]["drivers"] == {"motor_current": -0.7}
    assert staff[0]["fault_type"] == "E-MOTOR-STALL"
    assert staff[0]["basis"] == {"calibration": "pooled"}
    assert staff[2]["fault_type"] is None and staff[2]["basis"] == {}
    mine = client.get("/api/v1/predictions?min_probability=0.3",
                      headers=headers("customer-a")).json()
    assert [p["device_id"] for p in mine] == ["pump-a1"]
