"""A ticket names its likely fault by the fault catalogue: an engineer sees "likely: ..."."""

from __future__ import annotations

from analytics.jobs.ticket_rules import likely_fault, likely_note
from tests.jobs.conftest import T0, add_fleet
from tests.jobs.test_prediction_tickets import add_predictions, tickets
from tests.jobs.test_prediction_tickets import run as run_predictions
from tests.jobs.test_ticket_rules import HOUR, add_alarms
from tests.jobs.test_ticket_rules import run as run_alarms


def test_a_signature_names_the_fault_the_catalogue_gives_it_on_the_devices_model() -> None:
    battery = likely_fault("infusion_pump", "anomaly:battery_voltage_v")
    assert battery is not None and battery.code == "E-BATT-FAIL"
    fan = likely_fault("patient_monitor", "prediction:E-OVERTEMP")
    assert fan is not None and fan.name == "fan failure"
    assert likely_fault("infusion_pump", "prediction:E-OVERTEMP") is None  # not a pump's fault
    assert likely_fault("infusion_pump", "anomaly:ambient_temp_c") is None  # the room's
    assert likely_fault("infusion_pump", "threshold") is None
    assert likely_note("ct", "anomaly:arcs_per_hour") == " (likely: x-ray tube ageing)"
    assert likely_note("ct", "anomaly:scans_per_hour") == ""


def test_an_anomaly_ticket_and_a_prediction_ticket_say_their_likely_fault(factory) -> None:
    add_fleet(factory, 2)  # infusion pumps
    add_alarms(factory, "dev-000", "battery_voltage_v", [1, 2, 3])
    add_alarms(factory, "dev-001", "flow", [1, 2, 3])  # a reading the catalogue has no fault for
    assert run_alarms(factory, T0 + 12 * HOUR)["tickets_opened"] == 2
    add_predictions(factory, "dev-001", [1, 2], 0.9)
    assert run_predictions(factory, T0 + 60 * HOUR)["tickets_opened"] == 1
    assert [t.title for t in tickets(factory)] == [
        "Unusual battery_voltage_v on dev-000 (likely: battery ageing)",
        "Unusual flow on dev-001",
        "Predicted failure (E-MOTOR-STALL) of dev-001 (likely: motor wear)"]
