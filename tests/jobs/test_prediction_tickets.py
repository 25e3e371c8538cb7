"""Ticket rules over failure predictions: consecutive confident passes become one ticket."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from analytics.jobs.ticket_rules import (
    Dismissal,
    PredictionView,
    predicted_failures,
    prediction_category,
    ticket_rules_pass,
)
from tests.jobs.conftest import T0, add_fleet
from vigil.config import TicketRuleSettings
from vigil.db.enums import TicketSource
from vigil.db.models import Customer, Device, Site, Ticket, TicketEvent
from vigil.db.session import transaction
from vigil.devices.models import Prediction
from vigil.tickets.priority import Signal, TicketRules
from vigil.tickets.service import Evidence, open_or_join_site

RULES = TicketRules.load()
SETTINGS = TicketRuleSettings(prediction_probability=0.5, prediction_passes=2)
DAY = timedelta(days=1)


def view(i: int, days: float, probability: float, device: str = "dev-000",
         fault: str | None = "E-MOTOR-STALL") -> PredictionView:
    return PredictionView(i, device, T0 + days * DAY, probability, 7.0, fault_type=fault)


def test_a_ticket_needs_enough_consecutive_passes_above_the_threshold() -> None:
    def found(new, recent=(), **kw):
        kw = {"min_probability": 0.5, "min_passes": 2, **kw}
        return [(f.device_id, [p.id for p in f.predictions])
                for f in predicted_failures(new, list(recent), **kw)]

    assert found([view(2, 1, 0.9)], [view(1, 0, 0.4)]) == []  # the pass before was below
    assert found([view(2, 1, 0.9)], [view(1, 0, 0.6)]) == [("dev-000", [1, 2])]
    assert found([view(3, 2, 0.3)], [view(1, 0, 0.6), view(2, 1, 0.9)]) == []  # it fell back
    # Passes before the device's last repair are of its earlier life.
    assert found([view(2, 1, 0.9)], [view(1, 0, 0.6)], since={"dev-000": T0 + 0.5 * DAY}) == []
    # A device whose newest prediction is not new is not considered again.
    assert found([view(1, 0, 0.9, device="dev-001")], [view(2, 1, 0.9)]) == []


def test_a_cancelled_false_alarm_counts_passes_from_the_cancellation_and_needs_more() -> None:
    history = [view(i, i, 0.8) for i in range(1, 6)]
    damped = {"dev-000": Dismissal(T0 + 2.5 * DAY, peak=0.7)}
    kw = {"min_probability": 0.5, "min_passes": 2, "damping_factor": 2}
    assert predicted_failures(history[-1:], history[:3], damped=damped, **kw) == []
    [found] = predicted_failures(history[-1:], history[:4], damped=damped, **{
        **kw, "min_passes": 1})
    assert [p.id for p in found.predictions] == [3, 4, 5]
    # Another device is not damped.
    other = {"dev-001": Dismissal(T0 + 2.5 * DAY, peak=0.7)}
    assert len(predicted_failures(history[-1:], history[:4], damped=other, **kw)) == 1


def test_after_a_cancellation_only_passes_above_what_the_engineer_dismissed_count() -> None:
    kw = {"min_probability": 0.5, "min_passes": 2, "damping_factor": 1}
    damped = {"dev-000": Dismissal(T0 + 0.5 * DAY, peak=0.8)}
    level = [view(i, i, 0.8) for i in range(1, 6)]  # as high as the dismissed ticket: sound
    assert predicted_failures(level[-1:], level[:4], damped=damped, **kw) == []
    worse = [*level[:3], view(4, 4, 0.85), view(5, 5, 0.9)]
    [found] = predicted_failures(worse[-1:], worse[:4], damped=damped, **kw)
    assert [p.id for p in found.predictions] == [4, 5]
    assert len(predicted_failures(level[-1:], level[:4], **kw)) == 1  # undamped: a ticket


def test_the_category_follows_the_fault_type_else_the_strongest_reading() -> None:
    assert prediction_category(RULES, fault_type="battery_ageing", drivers={}) == "electrical"
    assert prediction_category(RULES, fault_type="E-PSU",
                               drivers={"supply_voltage_v": -0.9, "flow": -0.2}) == "electrical"
    assert prediction_category(RULES, fault_type="E-OVERTEMP",
                               drivers={"ambient_temp_c": -0.5, "flow": -0.1}) == "environmental"
    motor = {"humidity_pct": -0.1, "motor_current": -0.7}
    assert prediction_category(RULES, fault_type="E-MOTOR-STALL", drivers=motor) == "mechanical"
    assert prediction_category(RULES, fault_type=None, drivers=None) == "mechanical"


def add_predictions(factory, device: str, days: list[float], probability: float,
                    fault: str = "E-MOTOR-STALL", rul_days: float = 5.0) -> None:
    with transaction(factory) as session:
        session.add_all(Prediction(
            device_id=device, made_at=T0 + d * DAY, horizon_days=7.0, rul_days=rul_days,
            probability=probability, rul_lower_days=rul_days / 2, rul_upper_days=rul_days * 2,
            model_version="failure:fleet v1", drivers={"motor_current": -0.8},
            fault_type=fault, basis={}) for d in days)


def run(factory, now):
    with transaction(factory) as session:
        return ticket_rules_pass(session, now=now, settings=SETTINGS, rules=RULES)["predictions"]


def tickets(factory) -> list[Ticket]:
    with factory() as session:
        return list(session.scalars(select(Ticket).order_by(Ticket.id)))


def test_predictions_open_one_ticket_with_their_fault_type_and_evidence(factory) -> None:
    add_fleet(factory, 2)
    add_predictions(factory, "dev-000", [0], 0.8)
    add_predictions(factory, "dev-001", [0, 1], 0.3)  # never confident: nothing
    assert run(factory, T0 + 0.5 * DAY)["tickets_opened"] == 0  # one pass is not enough
    add_predictions(factory, "dev-000", [1], 0.9, rul_days=0.5)
    outcome = run(factory, T0 + 1.5 * DAY)
    assert (outcome["considered"], outcome["tickets_opened"]) == (2, 1)
    [ticket] = tickets(factory)
    assert (ticket.device_id, ticket.signature, ticket.source) == (
        "dev-000", "prediction:E-MOTOR-STALL", "analytics")
    assert ticket.category == "mechanical"
    assert ticket.priority == "P1"  # expected within 12 h: the rules' most urgent
    data = ticket.evidence["latest"]["data"]
    assert data["fault_type"] == "E-MOTOR-STALL" and data["probability"] == pytest.approx(0.9)
    assert data["band_days"] == [0.25, 1.0] and data["drivers"] == {"motor_current": -0.8}
    assert len(data["passes"]) == 2
    assert run(factory, T0 + 2 * DAY)["considered"] == 0  # each prediction considered once
    add_predictions(factory, "dev-000", [2], 0.95)
    assert run(factory, T0 + 2.5 * DAY)["tickets_joined"] == 1
    with factory() as session:
        linked = session.scalars(select(Prediction.ticket_id).where(
            Prediction.device_id == "dev-000")).all()
    assert linked == [ticket.id] * 3


def test_the_priority_follows_the_remaining_life_and_the_risk_class(factory) -> None:
    add_fleet(factory, 1, model="ventilator")
    add_predictions(factory, "dev-000", [0, 1], 0.7, rul_days=20.0)
    run(factory, T0 + 1.5 * DAY)
    [ticket] = tickets(factory)
    assert ticket.priority == "P2"  # 20 days is P3 by the rules; a ventilator's floor is P2


def test_a_device_in_maintenance_raises_nothing_from_predictions(factory) -> None:
    add_fleet(factory, 1)
    with transaction(factory) as session:
        session.get(Device, "dev-000").state = "maintenance"
    add_predictions(factory, "dev-000", [0, 1], 0.9)
    outcome = run(factory, T0 + 1.5 * DAY)
    assert outcome["in_maintenance"] == 2 and outcome["tickets_opened"] == 0
    assert tickets(factory) == []


def test_a_cancelled_prediction_ticket_damps_the_device_s_predictions(factory) -> None:
    add_fleet(factory, 1)
    add_predictions(factory, "dev-000", [0, 1], 0.9)
    run(factory, T0 + 1.5 * DAY)
    [ticket] = tickets(factory)
    with transaction(factory) as session:  # the engineer cancels it as a false alarm
        row = session.get(Ticket, ticket.id)
        row.state, row.cancel_reason = "cancelled", "false alarm"
        session.add(TicketEvent(ticket_id=row.id, actor="eng1", kind="transition",
                                from_state="open", to_state="cancelled", at=T0 + 2 * DAY))
    # Four passes since, but no higher than the 0.9 the engineer found the device sound at.
    add_predictions(factory, "dev-000", [3, 4, 5, 6], 0.9)
    assert run(factory, T0 + 6.5 * DAY)["tickets_opened"] == 0
    # Three passes higher, now naming another fault type: not yet four.
    add_predictions(factory, "dev-000", [7, 8, 9], 0.95, fault="E-BATT-FAIL")
    assert run(factory, T0 + 9.5 * DAY)["tickets_opened"] == 0
    add_predictions(factory, "dev-000", [10], 0.95, fault="E-BATT-FAIL")
    assert run(factory, T0 + 10.5 * DAY)["tickets_opened"] == 1


def test_a_prediction_naming_another_fault_joins_the_device_s_open_prediction_ticket(
        factory) -> None:
    add_fleet(factory, 1)
    add_predictions(factory, "dev-000", [0, 1], 0.9)
    run(factory, T0 + 1.5 * DAY)
    add_predictions(factory, "dev-000", [2, 3], 0.9, fault="E-BATT-FAIL")
    outcome = run(factory, T0 + 3.5 * DAY)
    assert (outcome["tickets_opened"], outcome["tickets_joined"]) == (0, 1)
    [ticket] = tickets(factory)
    assert ticket.signature == "prediction:E-MOTOR-STALL"
    assert ticket.evidence["latest"]["data"]["fault_type"] == "E-BATT-FAIL"


def test_a_prediction_whose_window_saw_a_site_episode_is_grouped_under_its_ticket(
        factory) -> None:
    add_fleet(factory, 3)

    def site_wide(reading: str, at) -> None:
        with transaction(factory) as session:
            open_or_join_site(
                session, site_id=session.get(Device, "dev-000").site_id,
                signature=f"anomaly:{reading}",
                signal=Signal(source=TicketSource.ANALYTICS, score=0.9), title="Site-wide",
                evidence=Evidence(at=at, score=0.9, summary=reading),
                devices=["dev-000", "dev-001", "dev-002"], now=at, rules=RULES)

    # The readings behind a pass reach back 3 days (the noise's window).
    site_wide("ambient_temp_c", T0 - 3 * DAY)  # a warm room, still open, last seen days ago
    site_wide("supply_voltage_v", T0 + 0.8 * DAY)  # a mains sag inside dev-000's readings
    add_predictions(factory, "dev-000", [0, 1], 0.9)
    run(factory, T0 + 3 * DAY)
    add_predictions(factory, "dev-001", [4, 5], 0.9)  # its readings began after the sag
    run(factory, T0 + 5.5 * DAY)
    site_wide("ambient_temp_c", T0 + 5.8 * DAY)  # the warm room seen again: still going on
    add_predictions(factory, "dev-002", [6, 7], 0.9)  # the first pass's readings saw the room
    run(factory, T0 + 7.5 * DAY)
    by_device = {t.device_id: t for t in tickets(factory)}
    sag, room = (next(t for t in tickets(factory) if t.signature == f"anomaly:{reading}")
                 for reading in ("supply_voltage_v", "ambient_temp_c"))
    assert by_device["dev-000"].parent_id == sag.id
    assert by_device["dev-001"].parent_id is None
    assert by_device["dev-002"].parent_id == room.id


def test_a_finished_site_episode_s_readings_file_no_prediction_ticket(factory) -> None:
    """An air-conditioning failure warms every device of a ward; once its site ticket is
    finished, predictions resting on those days' readings are its aftermath, not faults."""
    add_fleet(factory, 2)
    with transaction(factory) as session:
        elsewhere = Site(name="Ward 9", customer=Customer(name="Other Hospital"))
        session.get(Device, "dev-001").site = elsewhere
        site_ticket = open_or_join_site(
            session, site_id=session.get(Device, "dev-000").site_id,
            signature="anomaly:ambient_temp_c",
            signal=Signal(source=TicketSource.ANALYTICS, score=0.9), title="Warm ward",
            evidence=Evidence(at=T0 + 0.5 * DAY, score=0.9, summary="ambient_temp_c"),
            devices=["dev-000"], now=T0 + 0.5 * DAY, rules=RULES).ticket
        site_ticket.state, site_ticket.closed_at = "cancelled", T0 + 1.5 * DAY
    for device in ("dev-000", "dev-001"):
        add_predictions(factory, device, [2, 3], 0.9)
    outcome = run(factory, T0 + 3.5 * DAY)
    assert (outcome["tickets_opened"], outcome["after_site_episode"]) == (1, 1)
    assert [t.device_id for t in tickets(factory) if t.scope == "device"] == ["dev-001"]
    # The pass on day 4 still read the ward's last warm hours; days 5 and 6 are clear.
    for day in (4, 5):
        add_predictions(factory, "dev-000", [day], 0.9)
        assert run(factory, T0 + (day + 0.5) * DAY)["after_site_episode"] == 1
    add_predictions(factory, "dev-000", [6], 0.9)
    assert run(factory, T0 + 6.5 * DAY)["tickets_opened"] == 1
    ticket = next(t for t in tickets(factory) if t.device_id == "dev-000")
    assert ticket.parent_id is None


def test_an_analytics_ticket_is_no_failure_label_but_its_repair_starts_a_life(factory) -> None:
    """A warning confirmed by a repair is dated days before the failure it foresaw."""
    from analytics.jobs.prediction import failures, repairs

    add_fleet(factory, 1)
    with transaction(factory) as session:
        for source, signature, day in (("analytics", "anomaly:flow", 1),
                                       ("customer", "customer:stopped", 3)):
            ticket = Ticket(device_id="dev-000", priority="P2", category="mechanical",
                            state="repaired", source=source, signature=signature,
                            title=signature, created_at=T0 + day * DAY,
                            first_seen_at=T0 + day * DAY)
            session.add(ticket)
            session.flush()
            session.add(TicketEvent(ticket_id=ticket.id, actor="eng1", kind="transition",
                                    from_state="diagnosing", to_state="repaired",
                                    at=T0 + 4 * DAY))
    with factory() as session:
        found = failures(session, device_ids=["dev-000"], start=T0, end=T0 + 10 * DAY)
        assert [(f.at, f.fault_type) for f in found] == [(T0 + 3 * DAY, "customer:stopped")]
        assert repairs(session, device_ids=["dev-000"]) == {"dev-000": [T0 + 4 * DAY] * 2}
