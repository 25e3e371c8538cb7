"""The database itself enforces the schema's rules, whoever writes to it.

Raw SQL bypasses the models' checks on assignment, so these tests show what
the database refuses on its own; the models' checks are tested beside them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, delete, select, text, update
from sqlalchemy.exc import DataError, IntegrityError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import unique_name
from vigil.db import migrations
from vigil.db.enums import TicketState
from vigil.db.models import (
    AuditLog,
    Device,
    DeviceEvent,
    InvalidValue,
    MaintenancePlan,
    Prediction,
    Role,
    Site,
    Ticket,
)
from vigil.db.session import make_engine, make_session_factory, transaction
from vigil.servers import PostgreSQL

T0 = datetime(2026, 3, 1, tzinfo=UTC)
REFUSED = (IntegrityError, DataError)


def refused(factory: sessionmaker[Session], work: Callable[[Session], Any],
            errors: tuple[type[Exception], ...] = REFUSED) -> Exception:
    """Run ``work`` in its own transaction, expect the database to refuse it, return the error."""
    with pytest.raises(errors) as caught, transaction(factory) as session:
        work(session)
        session.flush()
    return caught.value


def ticket(device_id: str, signature: str = "anomaly:motor", **overrides: Any) -> Ticket:
    values: dict[str, Any] = dict(device_id=device_id, priority="P2", category="mechanical",
                                  source="analytics", signature=signature, title="Motor current")
    values.update(overrides)
    return Ticket(**values)


TICKET_ROW = {"device_id": "pump-0001", "priority": "P2", "category": "mechanical",
              "state": "open", "source": "analytics", "signature": "s", "title": "t",
              "description": "", "evidence": "{}", "created_at": T0, "updated_at": T0}


def insert_ticket_sql(session: Session, **overrides: Any) -> None:
    row = {**TICKET_ROW, **overrides}
    columns = ", ".join(row)
    values = ", ".join(f":{name}" for name in row)
    session.execute(text(f"INSERT INTO tickets ({columns}) VALUES ({values})"), row)


def test_serial_numbers_are_unique(factory: sessionmaker[Session], device: Device,
                                   snapshot: Callable[[], dict[str, int]]) -> None:
    before = snapshot()
    refused(factory, lambda s: s.add(Device(id="pump-0002", serial=device.serial, model="IP-100")))
    assert snapshot() == before


def test_device_ids_are_unique(factory: sessionmaker[Session], device: Device) -> None:
    refused(factory, lambda s: s.add(Device(id=device.id, serial="other", model="IP-100")))


def test_foreign_keys_are_enforced(factory: sessionmaker[Session], device: Device,
                                   snapshot: Callable[[], dict[str, int]]) -> None:
    before = snapshot()
    refused(factory, lambda s: s.add(Device(id="pump-9", serial="S9", model="M", site_id=999)))
    refused(factory, lambda s: s.add(ticket("no-such-device")))
    refused(factory, lambda s: s.add(DeviceEvent(device_id="no-such-device", seq=1, ts=T0,
                                                 code="E1", severity="info")))
    assert snapshot() == before


def test_a_device_with_history_cannot_be_deleted(factory: sessionmaker[Session],
                                                 device: Device) -> None:
    with transaction(factory) as s:
        s.add(ticket(device.id))
    refused(factory, lambda s: s.execute(delete(Device).where(Device.id == device.id)))
    with factory() as s:
        assert s.get(Device, device.id) is not None


@pytest.mark.parametrize("column, value", [
    ("state", "reopened"), ("priority", "P0"), ("category", "magic"), ("source", "rumour"),
    ("state", "OPEN"), ("priority", ""),
])
def test_enumerated_values_are_checked_by_the_database(
        factory: sessionmaker[Session], device: Device, column: str, value: str) -> None:
    refused(factory, lambda s: insert_ticket_sql(s, **{column: value}))
    with transaction(factory) as s:  # the same row with valid values is accepted
        insert_ticket_sql(s)


@pytest.mark.parametrize("model, field, value", [
    (Ticket, "state", "reopened"), (Ticket, "priority", "p1"), (Device, "state", "asleep"),
    (Role, "name", "root"), (DeviceEvent, "severity", "fatal"), (MaintenancePlan, "kind", "x"),
])
def test_enumerated_values_are_checked_on_assignment(model: type, field: str, value: str) -> None:
    with pytest.raises(InvalidValue, match=f"{model.__name__}.{field}: '{value}' is not one of"):
        model(**{field: value})


def test_enum_members_and_their_text_are_both_accepted() -> None:
    assert Ticket(state=TicketState.DIAGNOSING).state == "diagnosing"
    assert type(Ticket(state=TicketState.DIAGNOSING).state) is str
    assert Ticket(state="closed").state == "closed"


@pytest.mark.parametrize("score, accepted", [(0, False), (1, True), (5, True), (6, False),
                                             (-1, False)])
def test_satisfaction_score_is_1_to_5_in_the_database(
        factory: sessionmaker[Session], device: Device, score: int, accepted: bool) -> None:
    if accepted:
        with transaction(factory) as s:
            insert_ticket_sql(s, satisfaction_score=score)
    else:
        refused(factory, lambda s: insert_ticket_sql(s, satisfaction_score=score))


@pytest.mark.parametrize("score", [0, 6, 2.5, True, "5"])
def test_satisfaction_score_is_checked_on_assignment(score: Any) -> None:
    with pytest.raises(InvalidValue, match="Ticket.satisfaction_score"):
        Ticket(satisfaction_score=score)


def test_text_lengths_are_enforced_by_the_database(factory: sessionmaker[Session],
                                                   device: Device) -> None:
    """SQLite ignores VARCHAR(n); the CHECK constraints make it refuse too."""
    refused(factory, lambda s: insert_ticket_sql(s, title="x" * 201))
    refused(factory, lambda s: s.execute(
        text("UPDATE devices SET serial = :serial WHERE id = :id"),
        {"serial": "S" * 65, "id": device.id}))
    with transaction(factory) as s:  # at the limit is fine, and counted in characters
        insert_ticket_sql(s, title="é" * 200)


def test_text_lengths_are_checked_on_assignment() -> None:
    with pytest.raises(InvalidValue, match=r"Device.serial: 65 characters, at most 64"):
        Device(serial="S" * 65)


def test_one_open_ticket_per_device_and_signature(factory: sessionmaker[Session],
                                                  device: Device) -> None:
    with transaction(factory) as s:
        s.add(ticket(device.id))
    error = refused(factory, lambda s: s.add(ticket(device.id)))
    assert "uq_tickets_open_signature" in str(error) or "UNIQUE" in str(error)
    with transaction(factory) as s:  # another fault of the same device is its own ticket
        s.add(ticket(device.id, signature="event:E042"))
    for final in (TicketState.CLOSED, TicketState.CANCELLED, TicketState.RESOLVED_REMOTELY):
        with transaction(factory) as s:
            s.execute(update(Ticket).where(Ticket.signature == "anomaly:motor",
                                           Ticket.state == "open").values(state=final))
        with transaction(factory) as s:  # once finished, the fault may be filed again
            s.add(ticket(device.id))
    refused(factory, lambda s: s.add(ticket(device.id)))
    with factory() as s:
        states = s.scalars(select(Ticket.state).where(Ticket.signature == "anomaly:motor")
                           .order_by(Ticket.id)).all()
    assert states == ["closed", "cancelled", "resolved_remotely", "open"]


def test_a_finished_ticket_cannot_be_reopened_beside_an_open_one(
        factory: sessionmaker[Session], device: Device) -> None:
    with transaction(factory) as s:
        s.add(ticket(device.id, state="closed"))
        s.add(ticket(device.id))
    refused(factory, lambda s: s.execute(
        update(Ticket).where(Ticket.state == "closed").values(state="open")))


def test_device_events_are_stored_once_per_device_and_seq(factory: sessionmaker[Session],
                                                          device: Device) -> None:
    def event() -> DeviceEvent:
        return DeviceEvent(device_id=device.id, seq=7, ts=T0, code="E042", severity="error")

    with transaction(factory) as s:
        s.add(event())
    refused(factory, lambda s: s.add(event()))
    with factory() as s:
        assert len(s.scalars(select(DeviceEvent)).all()) == 1


@pytest.mark.parametrize("values", [
    dict(kind="preventive", title="t", interval_days=30),  # neither device nor model
    dict(kind="preventive", title="t", device_model="M"),  # no interval
    dict(kind="preventive", title="t", device_model="M", interval_days=0),
    dict(kind="calibration", title="t", device_model="M", interval_usage_hours=-1.0),
])
def test_maintenance_plans_need_a_target_and_a_positive_interval(
        factory: sessionmaker[Session], values: dict[str, Any]) -> None:
    refused(factory, lambda s: s.add(MaintenancePlan(**values)))


def test_prediction_probability_is_checked(factory: sessionmaker[Session],
                                           device: Device) -> None:
    with pytest.raises(InvalidValue, match="Prediction.probability"):
        Prediction(probability=1.5)
    refused(factory, lambda s: s.execute(text(
        "INSERT INTO predictions (device_id, made_at, horizon_days, probability, model_version,"
        " drivers) VALUES (:d, :t, 30, 1.5, 'v', '{}')"), {"d": device.id, "t": T0}))


def test_nan_is_refused_in_json(factory: sessionmaker[Session], device: Device) -> None:
    error = refused(factory, lambda s: s.add(Prediction(device_id=device.id, horizon_days=1,
                                                        probability=0.5, model_version="v",
                                                        drivers={"x": float("nan")})),
                    errors=(StatementError, ValueError))
    assert "not JSON compliant" in str(error)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_numbers_must_be_finite(value: float) -> None:
    with pytest.raises(InvalidValue, match="Prediction.rul_days: .* is not a finite number"):
        Prediction(rul_days=value)


def test_site_timezone_must_be_a_real_zone() -> None:
    with pytest.raises(InvalidValue, match="Site.timezone: 'Mars/Olympus' is not an IANA"):
        Site(timezone="Mars/Olympus")


# --- the audit log is append-only ------------------------------------------


@pytest.fixture
def audited(factory: sessionmaker[Session]) -> int:
    with transaction(factory) as s:
        entry = AuditLog(at=T0, actor="admin", action="user.create", object_type="user",
                         object_id="7", details={"username": "kim"})
        s.add(entry)
        s.flush()
        return entry.id


def audit_rows(db: Engine) -> list[tuple[Any, ...]]:
    with db.connect() as connection:
        return [tuple(row) for row in connection.execute(
            text("SELECT id, actor, action, object_id FROM audit_log ORDER BY id"))]


@pytest.mark.parametrize("statement", [
    "UPDATE audit_log SET actor = 'mallory'",
    "UPDATE audit_log SET details = '{}' WHERE id = :id",
    "DELETE FROM audit_log WHERE id = :id",
    "DELETE FROM audit_log",
])
def test_audit_log_refuses_update_and_delete_in_sql(
        db: Engine, factory: sessionmaker[Session], audited: int, statement: str) -> None:
    before = audit_rows(db)
    error = refused(factory, lambda s: s.execute(text(statement), {"id": audited}))
    assert "append-only" in str(error)
    assert audit_rows(db) == before == [(audited, "admin", "user.create", "7")]


def test_audit_log_refuses_changes_through_the_orm(
        db: Engine, factory: sessionmaker[Session], audited: int) -> None:
    before = audit_rows(db)

    def edit(s: Session) -> None:
        s.get_one(AuditLog, audited).actor = "mallory"

    refused(factory, edit)
    refused(factory, lambda s: s.delete(s.get_one(AuditLog, audited)))
    assert audit_rows(db) == before


def test_audit_log_refuses_truncate_on_postgresql(postgresql: PostgreSQL) -> None:
    engine = make_engine(postgresql.url(postgresql.create_database(unique_name("truncate"))))
    try:
        migrations.upgrade(engine)
        factory = make_session_factory(engine)
        with transaction(factory) as s:
            s.add(AuditLog(actor="admin", action="x", object_type="y"))
        error = refused(factory, lambda s: s.execute(text("TRUNCATE audit_log")))
        assert "append-only: TRUNCATE refused" in str(error)
        assert len(audit_rows(engine)) == 1
    finally:
        engine.dispose()


def test_audit_log_still_accepts_new_entries(db: Engine, factory: sessionmaker[Session],
                                             audited: int) -> None:
    with transaction(factory) as s:
        s.add(AuditLog(actor="admin", action="user.disable", object_type="user", object_id="7"))
    assert [row[2] for row in audit_rows(db)] == ["user.create", "user.disable"]
