"""The health list's summary kept in the database: each device's newest prediction on its
row (triggers of migration 0008) and open-ticket counts, as the list shows them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, event, select, update
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import World
from vigil.auth.service import Principal
from vigil.db import migrations
from vigil.db.enums import RoleName, TicketState
from vigil.db.models import Device, Prediction, Ticket
from vigil.db.session import make_engine, make_session_factory, transaction
from vigil.devices.health import DeviceFilter, DeviceHealth, get_device_health, list_devices
from vigil.devices.schemas import DeviceOut
from vigil.errors import NotFound

Headers = Callable[[str], dict[str, str]]
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def test_the_rows_the_list_answers_with_are_the_documented_device() -> None:
    """The list sends its rows as JSON without DeviceOut: their fields must be its fields."""
    assert DeviceHealth._fields == tuple(DeviceOut.model_fields)


def predict(session: Session, device_id: str, probability: float, *, hours: float,
            horizon: float = 30.0) -> int:
    prediction = Prediction(device_id=device_id, made_at=T0 + timedelta(hours=hours),
                            horizon_days=horizon, probability=probability,
                            model_version="test", drivers={})
    session.add(prediction)
    session.flush()
    return prediction.id


def summary(sessions: sessionmaker[Session], device_id: str) -> tuple[object, ...]:
    with sessions() as session:
        row = session.execute(select(Device.risk, Device.risk_horizon_days,
                                     Device.risk_prediction_id)
                              .where(Device.id == device_id)).one()
    return tuple(row)


def test_the_newest_prediction_is_kept_on_the_device_whatever_the_order_of_inserts(
    sessions: sessionmaker[Session], world: World
) -> None:
    device = world.devices["a"][2]
    with transaction(sessions) as session:
        session.execute(delete(Prediction).where(Prediction.device_id == device))
    assert summary(sessions, device) == (None, None, None)
    with transaction(sessions) as session:
        newest = predict(session, device, 0.7, hours=2, horizon=14)
        predict(session, device, 0.1, hours=1)  # older, written later: changes nothing
    assert summary(sessions, device) == (0.7, 14.0, newest)
    with transaction(sessions) as session:
        # The same time: the later id is the newer, as the list always ordered them.
        tie = predict(session, device, 0.5, hours=2)
    assert summary(sessions, device) == (0.5, 30.0, tie)


def test_deleting_or_changing_predictions_works_the_newest_out_again(
    sessions: sessionmaker[Session], world: World
) -> None:
    device, other = world.devices["a"][2], world.devices["b"][0]
    with transaction(sessions) as session:
        session.execute(delete(Prediction).where(Prediction.device_id.in_([device, other])))
        old = predict(session, device, 0.2, hours=1)
        new = predict(session, device, 0.9, hours=2)
    with transaction(sessions) as session:
        session.execute(delete(Prediction).where(Prediction.id == old))  # not the newest
    assert summary(sessions, device) == (0.9, 30.0, new)
    with transaction(sessions) as session:
        session.execute(update(Prediction).where(Prediction.id == new).values(probability=0.8))
    assert summary(sessions, device) == (0.8, 30.0, new)
    with transaction(sessions) as session:
        older = predict(session, device, 0.3, hours=0)
        session.execute(delete(Prediction).where(Prediction.id == new))
    assert summary(sessions, device) == (0.3, 30.0, older)
    with transaction(sessions) as session:
        session.execute(update(Prediction).where(Prediction.id == older).values(device_id=other))
    assert summary(sessions, device) == (None, None, None)
    assert summary(sessions, other) == (0.3, 30.0, older)


def test_a_rolled_back_prediction_leaves_the_device_as_it_was(
    sessions: sessionmaker[Session], world: World
) -> None:
    device = world.devices["a"][1]
    before = summary(sessions, device)
    with sessions() as session:
        predict(session, device, 0.99, hours=10_000)
        assert session.scalar(select(Device.risk).where(Device.id == device)) == 0.99
        session.rollback()
    assert summary(sessions, device) == before


def test_the_list_shows_new_predictions_and_ticket_changes_at_once(
    client: TestClient, headers: Headers, sessions: sessionmaker[Session], world: World
) -> None:
    def row(device_id: str, sort: str = "risk") -> tuple[int, dict]:
        items = client.get(f"/api/v1/devices?sort={sort}&order=desc",
                           headers=headers("engineer")).json()["items"]
        place = [item["id"] for item in items].index(device_id)
        return place, items[place]

    device = world.devices["b"][1]
    with transaction(sessions) as session:
        predict(session, device, 1.0, hours=24 * 400, horizon=7)
    place, item = row(device)
    assert place == 0 and item["risk"] == 1.0 and item["risk_horizon_days"] == 7.0
    opened = item["open_tickets"]
    with transaction(sessions) as session:
        ticket = Ticket(device_id=device, site_id=world.site_ids["b"], priority="P2",
                        category="mechanical", source="customer", signature="t:health",
                        title="Noisy")
        session.add(ticket)
        session.flush()
        ticket_id = ticket.id
    assert row(device)[1]["open_tickets"] == opened + 1
    for state in (TicketState.CLOSED, TicketState.CANCELLED, TicketState.RESOLVED_REMOTELY):
        with transaction(sessions) as session:
            session.execute(update(Ticket).where(Ticket.id == ticket_id).values(state=state.value))
        assert row(device)[1]["open_tickets"] == opened
        with_open = client.get("/api/v1/devices?has_open_tickets=true",
                               headers=headers("engineer")).json()["items"]
        assert (device in [i["id"] for i in with_open]) == (opened > 0)


def test_sqlite_counts_open_tickets_from_their_partial_index(tmp_path: Path) -> None:
    """SQLite's planner would read every ticket of each device through ix_tickets_device_id
    (3.1 ms of a page of 100 with ten tickets a device, against 0.4 ms)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'vigil.db'}")
    migrations.upgrade(engine)
    sent: list[tuple[str, Any]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def keep(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
             executemany: bool) -> None:
        sent.append((statement, parameters))

    admin = Principal(1, "admin", frozenset({RoleName.ADMIN}), "bearer")
    try:
        with make_session_factory(engine)() as session:
            list_devices(session, principal=admin, filters=DeviceFilter(), sort="last_seen")
            with pytest.raises(NotFound):
                get_device_health(session, principal=admin, device_id="absent")
        statements = [(s, p) for s, p in sent if "open_tickets" in s]
        assert len(statements) == 2
        with engine.connect() as connection:
            for statement, parameters in statements:
                plan = " | ".join(row[3] for row in connection.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + statement, parameters))
                assert "INDEX uq_tickets_open_signature" in plan, plan
                assert "ix_tickets_device_id" not in plan, plan
    finally:
        engine.dispose()
