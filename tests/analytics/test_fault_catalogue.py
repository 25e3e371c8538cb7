"""The fault catalogue, the fault type it helps name, and the ticket's "likely" fault."""

from __future__ import annotations

import json

import pytest

from analytics.prediction.catalogue import CatalogueError, FaultMode, load, parse
from analytics.prediction.failure import combine_fault

PUMP = (FaultMode("E-BATT", "battery ageing", ("battery_voltage_v",)),
        FaultMode("E-MOTOR", "motor wear", ("motor_current_ma", "volume_error_pct")),
        FaultMode("E-PSU", "power problem", ("supply_voltage_v",)))


def test_the_shipped_catalogue_names_each_simulated_models_own_fault_codes_and_readings() -> None:
    from edge_agent.simulator.physics import FAILURE_CODES, FAULT_TYPES, MODELS, DeviceSim, Site

    catalogue = load()
    for model in MODELS:
        assert sorted(catalogue.codes(model)) == sorted(FAILURE_CODES[f]
                                                        for f in FAULT_TYPES[model])
        readings = set(DeviceSim("d", model, Site("s"), 1).sample(1_800_000_000_000))
        for mode in catalogue.of(model):
            assert set(mode.readings) <= readings, (model, mode.code)
    assert catalogue.of("toaster") == ()


def test_an_anomalous_reading_names_the_fault_it_shows_and_a_rooms_reading_none() -> None:
    catalogue = load()
    battery = catalogue.likely_fault("infusion_pump", "battery_voltage_v")
    assert battery is not None and (battery.code, battery.name) == ("E-BATT-FAIL",
                                                                    "battery ageing")
    assert catalogue.likely_fault("infusion_pump", "ambient_temp_c") is None
    assert catalogue.likely_fault("toaster", "battery_voltage_v") is None
    assert parse(json.loads(json.dumps(catalogue.to_document()))) == catalogue


@pytest.mark.parametrize("document", [
    {"pump": {"E-A": {"fault": "a", "readings": ["x"]}, "E-B": {"fault": "b", "readings": ["x"]}}},
    {"pump": {"E-A": {"fault": "a", "readings": []}}},
    {"pump": {"E-A": {"readings": ["x"]}}},
    {"pump": {"E-A": "x"}},
    {"pump": {}},
])
def test_a_catalogue_that_is_not_one_reading_to_one_fault_is_refused(document: dict) -> None:
    with pytest.raises(CatalogueError):
        parse(document)


def test_the_readings_that_moved_outweigh_a_classifier_learned_on_a_few_failures() -> None:
    sure = {"E-MOTOR": 0.95, "E-PSU": 0.05}  # a classifier that saw motor and power faults only
    assert combine_fault(PUMP, sure, {}, doubt=0.5, evidence=1.0) == "E-MOTOR"
    assert combine_fault(PUMP, sure, {"battery_voltage_v": 6.0, "motor_current_ma": 1.0},
                         doubt=0.5, evidence=1.0) == "E-BATT"
    # A small move does not overturn what was learned; without doubt nothing unseen is named.
    assert combine_fault(PUMP, sure, {"battery_voltage_v": 1.0}, doubt=0.5,
                         evidence=1.0) == "E-MOTOR"
    assert combine_fault(PUMP, sure, {"battery_voltage_v": 50.0}, doubt=0.0,
                         evidence=1.0) == "E-MOTOR"


def test_only_the_models_own_faults_are_named_and_nothing_learned_leaves_the_readings() -> None:
    other = {"E-OVERTEMP": 1.0}  # another model's fault code
    assert combine_fault(PUMP, other, {"supply_voltage_v": 2.0}, doubt=0.5,
                         evidence=1.0) == "E-PSU"
    assert combine_fault(PUMP, {}, {"volume_error_pct": 3.0, "supply_voltage_v": 2.0},
                         doubt=0.5, evidence=1.0) == "E-MOTOR"
    with pytest.raises(ValueError):
        combine_fault((), {}, {}, doubt=0.5, evidence=1.0)


def test_a_mode_whose_readings_follow_the_clinicians_settings_is_marked_so() -> None:
    catalogue = load()
    assert catalogue.follows_settings("ventilator", "fio2_measured_pct")
    assert catalogue.follows_settings("ventilator", "o2_cell_mv")
    assert not catalogue.follows_settings("ventilator", "turbine_vibration_mm_s")
    assert not catalogue.follows_settings("ventilator", "ambient_temp_c")
    assert not catalogue.follows_settings("toaster", "fio2_measured_pct")
    assert catalogue.alone_no_evidence("ventilator", "o2_cell_mv")
    assert catalogue.alone_no_evidence("mri", "supply_voltage_v")
    assert not catalogue.alone_no_evidence("mri", "cold_head_temp_k")
    assert not catalogue.alone_no_evidence("toaster", "supply_voltage_v")
    assert parse(catalogue.to_document()) == catalogue
    with pytest.raises(CatalogueError, match="follows_mains"):
        parse({"vent": {"E-PSU": {"fault": "psu", "readings": ["v"], "follows_mains": 1}}})
    with pytest.raises(CatalogueError, match="follows_settings"):
        parse({"vent": {"E-O2": {"fault": "o2", "readings": ["x"], "follows_settings": "yes"}}})
