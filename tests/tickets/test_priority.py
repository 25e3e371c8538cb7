"""Priority and category rules read from data, with the life-support floor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from vigil.db.enums import Category, Priority, Severity, TicketSource
from vigil.tickets.escalation import EscalationPolicy, Target
from vigil.tickets.priority import (
    RulesError,
    Signal,
    TicketRules,
    fleet_title,
    read_rules_document,
)

RULES = TicketRules.load()


@pytest.mark.parametrize(("severity", "model", "expected"), [
    (Severity.CRITICAL, "mri", Priority.P1),
    (Severity.ERROR, "mri", Priority.P2),
    (Severity.WARNING, "mri", Priority.P3),
    (Severity.WARNING, "ventilator", Priority.P2),   # the model's own rule
    (Severity.INFO, "ventilator", Priority.P2),      # the life-support floor
    (Severity.INFO, "unknown-model", Priority.P3),
])
def test_device_event_priority(severity: Severity, model: str, expected: Priority) -> None:
    decision = RULES.decide(Signal(TicketSource.DEVICE_EVENT, severity=severity),
                            signature="event:E042", model=model)
    assert decision.priority is expected


@pytest.mark.parametrize(("hours", "expected"), [(6, Priority.P1), (24, Priority.P1),
                                                 (100, Priority.P2), (500, Priority.P3)])
def test_predicted_failure_priority_by_time_to_failure(hours: float, expected: Priority) -> None:
    decision = RULES.decide(Signal(TicketSource.ANALYTICS, hours_to_failure=hours),
                            signature="predicted:bearing", model="ct")
    assert decision.priority is expected


def test_life_support_floor_applies_only_to_faults() -> None:
    fault = RULES.decide(Signal(TicketSource.ANALYTICS, score=0.5),
                         signature="anomaly:flow", model="ventilator")
    plan = RULES.decide(Signal(TicketSource.MAINTENANCE_PLAN, failure_class=False),
                        signature="plan:7", model="ventilator")
    assert (fault.priority, fault.risk_class) == (Priority.P2, "life_support")
    assert plan.priority is Priority.P3


def test_customer_reports() -> None:
    assert RULES.decide(Signal(TicketSource.CUSTOMER, emergency=True), signature="report",
                        model="mri").priority is Priority.P1
    assert RULES.decide(Signal(TicketSource.CUSTOMER), signature="report",
                        model="mri").priority is Priority.P2


@pytest.mark.parametrize(("signature", "category"), [
    ("anomaly:ambient_temp", Category.ENVIRONMENTAL),
    ("anomaly:humidity", Category.ENVIRONMENTAL),
    ("anomaly:supply_voltage", Category.ELECTRICAL),
    ("event:firmware_crash", Category.SOFTWARE),
    ("anomaly:motor_current", Category.MECHANICAL),
])
def test_category_from_the_signature(signature: str, category: Category) -> None:
    assert RULES.category(signature) is category


@pytest.mark.parametrize(("signature", "site_wide"), [
    ("anomaly:ambient_temp", True), ("site:power_outage", True),
    ("anomaly:supply_voltage_v", True), ("anomaly:battery_v", False),
    ("anomaly:motor_current", False),
])
def test_signatures_that_may_share_a_cause_at_a_site(signature: str, site_wide: bool) -> None:
    assert RULES.decide(Signal(TicketSource.ANALYTICS, score=0.9), signature=signature,
                        model="mri").site_wide is site_wide


@pytest.mark.parametrize(("signature", "site_only"), [
    ("anomaly:ambient_temp_c", True), ("anomaly:humidity_pct", True),
    ("anomaly:supply_voltage_v", False), ("anomaly:motor_current", False),
])
def test_the_room_s_readings_are_site_only(signature: str, site_only: bool) -> None:
    # A supply voltage may be the building's mains or the device's own power supply.
    assert RULES.site_only(signature) is site_only


def test_without_site_grouping_the_environmental_patterns_group() -> None:
    doc = read_rules_document()
    del doc["site_grouping"]
    rules = TicketRules.from_document(doc)
    assert rules.site_wide("anomaly:humidity") and not rules.site_wide("anomaly:supply_voltage")


def test_an_explicit_category_wins() -> None:
    decision = RULES.decide(Signal(TicketSource.DEVICE_EVENT, severity=Severity.ERROR,
                                   category=Category.SOFTWARE),
                            signature="anomaly:motor_current", model="mri")
    assert decision.category is Category.SOFTWARE


def _doc(**changes: Any) -> dict[str, Any]:
    doc = read_rules_document()
    doc.update(changes)
    return doc


@pytest.mark.parametrize(("changes", "message"), [
    ({"device_event": {"critical": "P0", "error": "P2", "warning": "P3", "info": "P3"}},
     "not a priority"),
    ({"device_event": {"critical": "P1"}}, "no priority for"),
    ({"risk_class": {"ventilator": "sacred"}}, "has no floor"),
    ({"category": [{"pattern": "*", "category": "cosmic"}]}, "needs a pattern"),
    ({"analytics": {"failure_within_hours": [[24]], "failure_later": "P3",
                    "anomaly_score_at_least": [], "anomaly_otherwise": "P3"}}, "pair"),
    ({"site_grouping": {"signatures": "*ambient*"}}, "site_grouping.signatures"),
    ({"site_grouping": {"signatures": ["*ambient*"], "site_only": "*ambient*"}},
     "site_grouping.site_only: a list"),
    ({"site_grouping": {"signatures": ["*ambient*"], "site_only": ["*humidity*"]}},
     "not among its signatures"),
    ({"site_grouping": {"signatures": ["*ambient*"], "episode_share": 1.5}},
     "site_grouping.episode_share"),
    ({"site_grouping": {"signatures": ["*ambient*"], "episode_minutes": 0}},
     "site_grouping.episode_minutes"),
    ({"peer_comparison": {"share": 2}}, "peer_comparison.share"),
])
def test_bad_rules_are_refused_with_the_entry_named(changes: dict[str, Any],
                                                    message: str) -> None:
    with pytest.raises(RulesError, match=message):
        TicketRules.from_document(_doc(**changes))


def test_escalation_chains_from_the_rules() -> None:
    policy = EscalationPolicy.from_document(read_rules_document())
    chain = policy.chain("P1")
    assert [s.target for s in chain.steps] == [Target.ASSIGNEE, Target.ON_DUTY, Target.MANAGERS]
    raised = datetime(2026, 1, 1, tzinfo=UTC)
    minutes = [(chain.due_at(raised, i) - raised).total_seconds() / 60 for i in range(6)]
    assert minutes == [0, 15, 30, 60, 90, 120]   # the last step repeats every 30 minutes
    assert chain.target(5) is Target.MANAGERS
    with pytest.raises(RulesError, match="escalation.P2"):
        EscalationPolicy.from_document(_doc(escalation={"P1": read_rules_document()
                                                        ["escalation"]["P1"]}))


# --- fleet grouping -------------------------------------------------------------------


@pytest.mark.parametrize(("signature", "fleet_wide"), [
    ("anomaly:motor_current", True), ("prediction:bearing_wear", True), ("event:E042", True),
    # A room's or a building's cause is never a defect of the model.
    ("anomaly:ambient_temp", False), ("anomaly:humidity", False), ("site:power_outage", False),
    ("anomaly:supply_voltage_v", False),
    # Planned work falls due on many devices at once; a customer's report names a category.
    ("plan:3:calibration", False), ("report:mechanical", False),
])
def test_signatures_that_may_be_a_defect_of_the_model(signature: str, fleet_wide: bool) -> None:
    assert RULES.decide(Signal(TicketSource.ANALYTICS, score=0.9), signature=signature,
                        model="mri").fleet_wide is fleet_wide


def test_fleet_grouping_settings_from_the_rules_file() -> None:
    fleet = RULES.fleet
    assert (fleet.min_devices, fleet.min_sites, fleet.window) == (5, 3, timedelta(days=7))
    assert fleet.reached(devices=5, sites=3)
    assert not fleet.reached(devices=4, sites=3) and not fleet.reached(devices=9, sites=2)


def test_without_fleet_grouping_the_defaults_exclude_the_site_wide_signatures() -> None:
    doc = read_rules_document()
    del doc["fleet_grouping"]
    doc["site_grouping"] = {"signatures": ["*ambient*", "*mains*"]}
    fleet = TicketRules.from_document(doc).fleet
    assert fleet.exclude == ("*ambient*", "*mains*")
    assert fleet.applies("anomaly:flow") and not fleet.applies("anomaly:mains_v")
    assert (fleet.min_devices, fleet.min_sites, fleet.window) == (5, 3, timedelta(days=7))


def test_a_fractional_window_and_no_signatures() -> None:
    doc = _doc(fleet_grouping={"signatures": [], "window_days": 1.5})
    fleet = TicketRules.from_document(doc).fleet
    assert fleet.window == timedelta(hours=36)
    assert not fleet.applies("anomaly:flow")


def test_fleet_title_names_model_signature_devices_and_sites() -> None:
    assert fleet_title("IP-100", "event:E042", devices=6, sites=3) == \
        "Fleet: event:E042 on 6 IP-100 devices at 3 sites"
    assert fleet_title("mri", "x" * 300, devices=2, sites=1).endswith("x")
    assert len(fleet_title("mri", "x" * 300, devices=2, sites=1)) == 200


@pytest.mark.parametrize(("fleet", "message"), [
    ({"min_devices": 1}, r"fleet_grouping\.min_devices: a whole number of at least 2"),
    ({"min_devices": 4.5}, r"fleet_grouping\.min_devices"),
    ({"min_devices": True}, r"fleet_grouping\.min_devices"),
    ({"min_sites": 0}, r"fleet_grouping\.min_sites: a whole number of at least 1"),
    ({"min_sites": 6, "min_devices": 5}, "min_sites .6. cannot exceed min_devices .5."),
    ({"window_days": 0}, r"fleet_grouping\.window_days: a number of days above 0"),
    ({"window_days": "7"}, r"fleet_grouping\.window_days"),
    ({"window_days": 400}, "at most 366"),
    ({"signatures": "anomaly:*"}, r"fleet_grouping\.signatures: a list of signature patterns"),
    ({"exclude": ["*ambient*", ""]}, r"fleet_grouping\.exclude"),
    ({"min_device": 3}, r"unknown settings \['min_device'\]"),
])
def test_bad_fleet_grouping_is_refused_with_the_entry_named(fleet: dict[str, Any],
                                                            message: str) -> None:
    with pytest.raises(RulesError, match=message):
        TicketRules.from_document(_doc(fleet_grouping=fleet))


def test_fleet_grouping_must_be_a_table() -> None:
    with pytest.raises(RulesError, match="fleet_grouping: a table"):
        TicketRules.from_document(_doc(fleet_grouping=[5]))


def test_a_site_episode_needs_most_of_the_site_and_at_least_the_grouping_s_devices() -> None:
    episode = RULES.site_episode
    assert (episode.share, episode.window) == (0.75, timedelta(hours=2))
    assert episode.needed(33, least=3) == 25
    assert episode.needed(2, least=3) == 3
    assert RULES.peer_share == 0.4
