"""Devices as FHIR R4 resources: the mapping, validated by fhir.resources, and its routes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.device import Device as FhirDevice
from fhir.resources.R4B.devicemetric import DeviceMetric
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import World, write_readings
from vigil.db.session import transaction
from vigil.devices import fhir
from vigil.devices.models import Customer, Device, Site
from vigil.maintenance.models import MaintenancePlan
from vigil.telemetry.embedded import EmbeddedStore

Headers = Callable[[str], dict[str, str]]
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
UDI = "(01)00844588003288(17)141120(10)7654321D(21)10987654d321"
# The R4 value sets of the coded elements this export fills.
DEVICE_STATUS = {"active", "inactive", "entered-in-error", "unknown"}
STATUS_REASON = {"online", "paused", "standby", "offline", "not-ready", "transduc-discon",
                 "hw-discon", "off"}
OPERATIONAL_STATUS = {"on", "off", "standby", "entered-in-error"}
CALIBRATION_STATE = {"not-calibrated", "calibration-required", "calibrated", "unspecified"}


def a_device(**fields: Any) -> Device:
    site = Site(name="ICU North", customer=Customer(name="St. Elsewhere"))
    values: dict[str, Any] = {"id": "pump-1", "serial": "SN-1", "model": "IP-100",
                              "online": True, "state": "online", "last_seen": NOW,
                              "firmware": "2.4.1", "site": site}
    return Device(**(values | fields))


def plan(**fields: Any) -> MaintenancePlan:
    values: dict[str, Any] = {"kind": "calibration", "title": "Flow sensor", "active": True,
                              "interval_days": 365}
    return MaintenancePlan(**(values | fields))


def reparsed(resource: FhirDevice) -> FhirDevice:
    """The resource as a client reads it: serialised, then validated again by the library."""
    return FhirDevice.model_validate_json(resource.model_dump_json())


def contained_metrics(resource: FhirDevice) -> list[DeviceMetric]:
    metrics = list(resource.contained or [])
    assert all(isinstance(m, DeviceMetric) for m in metrics)
    return metrics


def codes(concepts: list[Any] | None) -> list[str]:
    return [coding.code for concept in concepts or [] for coding in concept.coding or []]


def test_a_device_with_readings_udi_and_calibration_is_a_valid_r4_device() -> None:
    device = a_device(udi=UDI)
    calibration = fhir.calibration_of(
        device, [plan(device_id="pump-1", last_done_at=NOW - timedelta(days=30),
                      next_due_at=NOW + timedelta(days=335))], now=NOW)
    resource = reparsed(fhir.device_resource(device, metrics=["temp_c", "flow"],
                                             calibration=calibration))

    assert resource.id == "pump-1"
    assert resource.serialNumber == "SN-1"
    assert resource.modelNumber == "IP-100"
    assert [(n.name, n.type) for n in resource.deviceName] == [("IP-100", "model-name")]
    assert [(v.type.text, v.value) for v in resource.version] == [("firmware", "2.4.1")]
    assert [(i.system, i.value) for i in resource.identifier][0] == (fhir.DEVICE_ID_SYSTEM,
                                                                     "pump-1")
    assert codes([resource.identifier[1].type]) == ["SNO"]
    [carrier] = resource.udiCarrier
    assert (carrier.carrierHRF, carrier.deviceIdentifier) == (UDI, "00844588003288")
    assert carrier.issuer == fhir.GS1_DI_ISSUER
    assert (resource.status, codes(resource.statusReason)) == ("active", ["online"])
    assert resource.location.display == "ICU North"
    assert resource.owner.display == "St. Elsewhere"

    metrics = contained_metrics(resource)
    assert [m.type.text for m in metrics] == ["flow", "temp_c"]
    assert [m.identifier[0].value for m in metrics] == ["flow", "temp_c"]
    assert len({m.id for m in metrics}) == 2
    for metric in metrics:
        assert metric.category == "measurement"
        assert metric.source.reference == "#"
        assert metric.operationalStatus == "on"
        [cal] = metric.calibration
        assert (cal.state, cal.time, cal.type) == ("calibrated", NOW - timedelta(days=30),
                                                   "unspecified")


def test_a_bare_device_has_no_metrics_udi_version_or_location() -> None:
    resource = reparsed(fhir.device_resource(
        a_device(firmware=None, site=None, online=False, state=None, last_seen=None)))
    assert resource.contained is None
    assert resource.udiCarrier is None
    assert resource.version is None
    assert resource.location is None and resource.owner is None
    assert (resource.status, resource.statusReason) == ("unknown", None)


def test_a_udi_in_another_format_is_carried_as_printed() -> None:
    resource = reparsed(fhir.device_resource(a_device(udi="+H123PQ3C20100000")))
    [carrier] = resource.udiCarrier
    assert (carrier.carrierHRF, carrier.deviceIdentifier) == ("+H123PQ3C20100000", None)


@pytest.mark.parametrize(("online", "state", "last_seen", "status", "reason", "operational"), [
    (True, "online", NOW, "active", "online", "on"),
    (True, None, NOW, "active", "online", "on"),
    (False, "offline", NOW, "active", "offline", "off"),
    (False, None, NOW, "active", "offline", "off"),
    (True, "maintenance", NOW, "active", "not-ready", "standby"),
    (False, None, None, "unknown", None, None),
])
def test_status_follows_what_the_device_last_said(
    online: bool, state: str | None, last_seen: datetime | None, status: str,
    reason: str | None, operational: str | None,
) -> None:
    resource = reparsed(fhir.device_resource(
        a_device(online=online, state=state, last_seen=last_seen), metrics=["flow"]))
    assert resource.status == status
    assert codes(resource.statusReason) == ([reason] if reason else [])
    [metric] = contained_metrics(resource)
    assert metric.operationalStatus == operational
    assert resource.status in DEVICE_STATUS
    assert set(codes(resource.statusReason)) <= STATUS_REASON
    assert operational is None or operational in OPERATIONAL_STATUS


@pytest.mark.parametrize(("plans", "expected"), [
    ([], None),
    ([plan(device_id="pump-1", kind="preventive", last_done_at=NOW)], None),
    ([plan(device_id="pump-1", active=False, last_done_at=NOW)], None),
    ([plan(device_id="pump-9", last_done_at=NOW)], None),
    ([plan(device_model="IP-200", last_done_at=NOW)], None),
    ([plan(device_id="pump-1", last_done_at=NOW - timedelta(days=400),
           next_due_at=NOW - timedelta(days=35))],
     fhir.Calibration("calibration-required", NOW - timedelta(days=400))),
    ([plan(device_id="pump-1", last_done_at=None, next_due_at=NOW + timedelta(days=1))],
     fhir.Calibration("not-calibrated", None)),
    ([plan(device_model="IP-100", last_done_at=NOW - timedelta(days=2))],
     fhir.Calibration("calibrated", NOW - timedelta(days=2))),
    # The device's own plan overrides its model's overdue one.
    ([plan(device_model="IP-100", next_due_at=NOW - timedelta(days=1)),
      plan(device_id="pump-1", last_done_at=NOW - timedelta(days=3),
           next_due_at=NOW + timedelta(days=10))],
     fhir.Calibration("calibrated", NOW - timedelta(days=3))),
    # Of the device's own plans, the one due first speaks.
    ([plan(device_id="pump-1", last_done_at=NOW - timedelta(days=3),
           next_due_at=NOW + timedelta(days=10)),
      plan(device_id="pump-1", last_done_at=NOW - timedelta(days=90),
           next_due_at=NOW - timedelta(hours=1))],
     fhir.Calibration("calibration-required", NOW - timedelta(days=90))),
])
def test_calibration_state_comes_from_the_calibration_plans(
    plans: list[MaintenancePlan], expected: fhir.Calibration | None
) -> None:
    device = a_device()
    calibration = fhir.calibration_of(device, plans, now=NOW)
    assert calibration == expected
    metric_calibration = contained_metrics(reparsed(fhir.device_resource(
        device, metrics=["flow"], calibration=calibration)))[0].calibration
    if expected is None:
        assert metric_calibration is None
    else:
        assert [(c.state, c.time) for c in metric_calibration] == [(expected.state,
                                                                    expected.time)]
        assert expected.state in CALIBRATION_STATE


@pytest.mark.parametrize(("device_id", "logical_id"), [
    ("pump-1", "pump-1"),
    ("pump_1", "pump.5f1"),
    ("v2.pump_a.b", "v2.2epump.5fa.2eb"),
    ("a_" * 32, "a.5f" * 32),
])
def test_device_ids_map_to_fhir_ids_and_back(device_id: str, logical_id: str) -> None:
    assert fhir.fhir_id(device_id) == logical_id
    assert fhir.device_id_of(logical_id) == device_id
    assert reparsed(fhir.device_resource(a_device(id=device_id))).id == logical_id


@pytest.mark.parametrize("logical_id", ["pump.1", "pump_1", "a.5F", "", "x" * 65, "a/b",
                                        "a.5f" * 48 + "a"])
def test_a_logical_id_no_device_maps_to_is_refused(logical_id: str) -> None:
    assert fhir.device_id_of(logical_id) is None


def test_a_searchset_bundle_is_valid_and_links_its_pages() -> None:
    resources = [fhir.device_resource(a_device(id=f"pump-{n}", serial=f"SN-{n}"))
                 for n in (1, 2)]
    bundle = Bundle.model_validate_json(fhir.searchset(
        resources, base_url="https://vigil.example/api/v1/fhir/",
        self_url="https://vigil.example/api/v1/fhir/Device?_count=2",
        next_url="https://vigil.example/api/v1/fhir/Device?_count=2&_cursor=abc",
        now=NOW).model_dump_json())
    assert bundle.type == "searchset"
    assert bundle.timestamp == NOW
    assert [(link.relation, link.url.endswith("_cursor=abc")) for link in bundle.link] == [
        ("self", False), ("next", True)]
    assert [e.fullUrl for e in bundle.entry] == [
        "https://vigil.example/api/v1/fhir/Device/pump-1",
        "https://vigil.example/api/v1/fhir/Device/pump-2"]
    assert all(e.search.mode == "match" for e in bundle.entry)
    assert [e.resource.serialNumber for e in bundle.entry] == ["SN-1", "SN-2"]


def test_an_empty_searchset_has_no_entries() -> None:
    bundle = Bundle.model_validate_json(fhir.searchset(
        [], base_url="https://x/", self_url="https://x/Device", next_url=None).model_dump_json())
    assert bundle.entry is None
    assert [link.relation for link in bundle.link] == ["self"]


# Routes, on SQLite and PostgreSQL (the client fixture's engine takes sql_url).


def add_calibration(sessions: sessionmaker[Session], device_id: str, done: datetime,
                    due: datetime) -> None:
    with transaction(sessions) as session:
        session.add(plan(device_id=device_id, last_done_at=done, next_due_at=due))


def read(client: TestClient, path: str, headers: dict[str, str]) -> Any:
    answer = client.get(f"/api/v1/fhir/{path}", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/fhir+json")
    return answer.text


def test_one_device_as_fhir_with_its_readings_and_calibration(
    client: TestClient, headers: Headers, world: World, store: EmbeddedStore,
    sessions: sessionmaker[Session],
) -> None:
    write_readings(store, "pump-a1", datetime.now(UTC) - timedelta(minutes=5), 3)
    done = datetime(2026, 6, 1, tzinfo=UTC)
    add_calibration(sessions, "pump-a1", done, datetime.now(UTC) + timedelta(days=30))
    with transaction(sessions) as session:
        device = session.get(Device, "pump-a1")
        assert device is not None
        device.udi = UDI

    resource = FhirDevice.model_validate_json(read(client, "Device/pump-a1",
                                                   headers("customer-a")))
    assert (resource.id, resource.serialNumber, resource.modelNumber) == (
        "pump-a1", "SN-a1", "IP-100")
    assert resource.udiCarrier[0].carrierHRF == UDI
    assert (resource.status, codes(resource.statusReason)) == ("active", ["online"])
    assert resource.location.display == "ICU A"
    metrics = contained_metrics(resource)
    assert [m.type.text for m in metrics] == ["flow", "temp_c"]
    assert {m.operationalStatus for m in metrics} == {"on"}
    assert {(c.state, c.time) for m in metrics for c in m.calibration} == {("calibrated", done)}


def test_a_device_without_readings_or_plans_has_no_metrics(
    client: TestClient, headers: Headers, world: World
) -> None:
    resource = FhirDevice.model_validate_json(read(client, "Device/pump-a0", headers("engineer")))
    assert resource.contained is None
    assert resource.status == "unknown"


def test_another_customers_device_is_not_found_like_a_missing_one(
    client: TestClient, headers: Headers, world: World
) -> None:
    theirs = client.get("/api/v1/fhir/Device/pump-b1", headers=headers("customer-a"))
    missing = client.get("/api/v1/fhir/Device/pump-zz", headers=headers("customer-a"))
    assert (theirs.status_code, missing.status_code) == (404, 404)
    assert theirs.json()["detail"].replace("pump-b1", "X") == missing.json()[
        "detail"].replace("pump-zz", "X")
    assert "pump-b" not in theirs.text.replace("'pump-b1'", "")
    assert client.get("/api/v1/fhir/Device/pump-b1",
                      headers=headers("customer-b")).status_code == 200
    assert client.get("/api/v1/fhir/Device/pump.1",
                      headers=headers("engineer")).status_code == 404
    assert client.get("/api/v1/fhir/Device/pump-a1").status_code == 401


def test_the_searchset_holds_only_the_callers_devices(
    client: TestClient, headers: Headers, world: World, store: EmbeddedStore
) -> None:
    write_readings(store, "pump-b1", datetime.now(UTC) - timedelta(minutes=5), 2)
    write_readings(store, "pump-a2", datetime.now(UTC) - timedelta(minutes=5), 2)
    bundle = Bundle.model_validate_json(read(client, "Device", headers("customer-a")))
    assert bundle.type == "searchset"
    assert [e.resource.id for e in bundle.entry] == ["pump-a0", "pump-a1", "pump-a2"]
    assert all(e.fullUrl.endswith(f"/api/v1/fhir/Device/{e.resource.id}") for e in bundle.entry)
    metrics = {e.resource.id: [m.type.text for m in e.resource.contained or []]
               for e in bundle.entry}
    assert metrics == {"pump-a0": [], "pump-a1": [], "pump-a2": ["flow", "temp_c"]}


def test_the_searchset_pages_by_its_next_link_and_filters_by_model(
    client: TestClient, headers: Headers, world: World
) -> None:
    seen: list[str] = []
    url: str | None = "/api/v1/fhir/Device?_count=4"
    pages = 0
    while url is not None:
        answer = client.get(url, headers=headers("engineer"))
        assert answer.status_code == 200, answer.text
        bundle = Bundle.model_validate_json(answer.text)
        seen += [e.resource.id for e in bundle.entry or []]
        url = next((link.url for link in bundle.link if link.relation == "next"), None)
        pages += 1
    assert seen == ["pump-a0", "pump-a1", "pump-a2", "pump-b0", "pump-b1", "pump-b2"]
    assert pages == 2
    empty = Bundle.model_validate_json(read(client, "Device?model=IP-999", headers("engineer")))
    assert empty.entry is None
    assert client.get("/api/v1/fhir/Device?_count=0",
                      headers=headers("engineer")).status_code == 422


def test_the_searchset_reads_sites_once_not_per_device(
    client: TestClient, headers: Headers, world: World, engine: Engine
) -> None:
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    h = headers("engineer")
    event.listen(engine, "before_cursor_execute", count)
    try:
        read(client, "Device?_count=1", h)
        one = len(statements)
        statements.clear()
        read(client, "Device?_count=6", h)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == one


def test_an_admin_records_a_devices_udi_and_the_export_carries_it(
    client: TestClient, headers: Headers, world: World
) -> None:
    h = headers("admin")
    created = client.post("/api/v1/devices", headers=h, json={
        "id": "pump_new", "serial": "SN-new", "model": "IP-100", "udi": f"  {UDI} "})
    assert created.status_code == 201, created.text
    assert created.json()["device"]["udi"] == UDI
    resource = FhirDevice.model_validate_json(read(client, "Device/pump.5fnew", h))
    assert resource.udiCarrier[0].deviceIdentifier == "00844588003288"

    changed = client.patch("/api/v1/devices/pump_new", headers=h, json={"udi": "+H123PQ3C201"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["udi"] == "+H123PQ3C201"
    resource = FhirDevice.model_validate_json(read(client, "Device/pump.5fnew", h))
    assert [c.carrierHRF for c in resource.udiCarrier] == ["+H123PQ3C201"]

    too_long = client.patch("/api/v1/devices/pump_new", headers=h, json={"udi": "9" * 256})
    assert too_long.status_code == 422
    cleared = client.patch("/api/v1/devices/pump_new", headers=h, json={"udi": None})
    assert cleared.json()["udi"] is None
    assert FhirDevice.model_validate_json(read(client, "Device/pump.5fnew", h)).udiCarrier is None


def test_the_migrated_database_refuses_a_udi_over_255_characters(
    sessions: sessionmaker[Session], world: World
) -> None:
    """SQLite ignores VARCHAR(255): migration 0005's CHECK constraint is what refuses there."""
    change = text("UPDATE devices SET udi = :udi WHERE id = 'pump-a1'")
    with pytest.raises((IntegrityError, DataError)), transaction(sessions) as session:
        session.execute(change, {"udi": "é" * 256})
    with transaction(sessions) as session:
        session.execute(change, {"udi": "é" * 255})
    with sessions() as session:
        assert session.scalar(text("SELECT udi FROM devices WHERE id = 'pump-a1'")) == "é" * 255
