"""Ticket rules: repeated alarms become one ticket per device and metric through the desk."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from analytics.jobs.ticket_rules import AlarmView, findings, ticket_rules_pass
from tests.jobs.conftest import T0, add_fleet
from vigil.config import TicketRuleSettings
from vigil.db.models import Device, Ticket
from vigil.db.session import transaction
from vigil.scoring.models import AnomalyAlarm
from vigil.tickets.priority import TicketRules

RULES = TicketRules.load()
SETTINGS = TicketRuleSettings(min_alarms=3, window_s=24 * 3600)
HOUR = timedelta(hours=1)


def alarm(i: int, hours: float, metric: str = "flow", device: str = "dev-000") -> AlarmView:
    return AlarmView(i, device, metric, T0 + hours * HOUR, 0.7, 1.0)


def test_findings_need_enough_alarms_of_one_metric_inside_the_window() -> None:
    new = [alarm(3, 30), alarm(4, 30, metric="temp")]
    recent = [alarm(1, 0), alarm(2, 10)]  # the first is more than a day before the newest
    assert findings(new, recent, min_alarms=3, window=24 * HOUR) == []
    found = findings(new, [*recent, alarm(5, 20)], min_alarms=3, window=24 * HOUR)
    assert [(f.signature, [a.id for a in f.alarms]) for f in found] == [("anomaly:flow", [2, 5, 3])]


def add_alarms(factory, device: str, metric: str, hours: list[float], score: float = 0.7) -> None:
    with transaction(factory) as session:
        session.add_all(AnomalyAlarm(device_id=device, metric=metric, ts=T0 + h * HOUR, score=score,
                                     value=99.0, detected_at=T0 + h * HOUR) for h in hours)


# A pass considers only alarms up to its own time; these tests' alarms lie in the hours after T0.
def run(factory, now=T0 + 12 * HOUR):
    with transaction(factory) as session:
        return ticket_rules_pass(session, now=now, settings=SETTINGS, rules=RULES)


def tickets(factory) -> list[Ticket]:
    with factory() as session:
        return list(session.scalars(select(Ticket).order_by(Ticket.id)))


def test_alarms_open_one_ticket_and_later_alarms_join_it(factory) -> None:
    add_fleet(factory, 2)
    add_alarms(factory, "dev-000", "flow", [1, 2])
    assert run(factory)["tickets_opened"] == 0  # two alarms are not yet a pattern
    add_alarms(factory, "dev-000", "flow", [3], score=0.9)
    add_alarms(factory, "dev-001", "flow", [3])  # one alarm on another device: nothing
    assert run(factory)["tickets_opened"] == 1
    [ticket] = tickets(factory)
    assert (ticket.device_id, ticket.signature) == ("dev-000", "anomaly:flow")
    assert ticket.source == "analytics"
    assert ticket.peak_score == pytest.approx(0.9)
    assert len(ticket.evidence["latest"]["data"]["alarms"]) == 3
    add_alarms(factory, "dev-000", "flow", [5])
    outcome = run(factory)
    assert (outcome["tickets_opened"], outcome["tickets_joined"]) == (0, 1)
    [ticket] = tickets(factory)
    assert ticket.evidence_count == 2
    assert run(factory)["alarms"] == 0  # every alarm was considered once
    with factory() as session:
        linked = session.scalar(select(func.count()).select_from(AnomalyAlarm).where(
            AnomalyAlarm.ticket_id == ticket.id))
    assert linked == 4


def test_the_category_follows_the_metric(factory) -> None:
    add_fleet(factory, 1)
    add_alarms(factory, "dev-000", "supply_voltage", [1, 2, 3])
    run(factory)
    [ticket] = tickets(factory)
    assert ticket.category == "electrical"


def test_a_device_in_maintenance_raises_nothing(factory) -> None:
    add_fleet(factory, 1)
    with transaction(factory) as session:
        session.get(Device, "dev-000").state = "maintenance"
    add_alarms(factory, "dev-000", "flow", [1, 2, 3, 4])
    outcome = run(factory)
    assert outcome["in_maintenance"] == 4 and outcome["tickets_opened"] == 0
    assert tickets(factory) == []


def test_scoring_then_ticket_rules_end_to_end(factory, embedded) -> None:
    """Spikes in the telemetry store become one ticket through the worker's two jobs."""
    from analytics.jobs.metrics import JobMetrics
    from analytics.jobs.runner import Worker
    from analytics.jobs.service import fleet_tasks
    from tests.jobs.conftest import FakeClock, readings
    from vigil.config import JobsSettings, Settings
    from vigil.telemetry.store import Point

    add_fleet(factory, 2)
    for device in ("dev-000", "dev-001"):
        embedded.write(readings(device, T0 - timedelta(days=4), T0))
    # Three spikes on dev-000 within a day, each beyond anything seen before.
    for hours, height in ((30, 200.0), (20, 400.0), (10, 800.0)):
        at = int((T0 - hours * HOUR).timestamp() * 1000)
        embedded.write([Point("dev-000", at + minute * 60_000, {"flow": 50 + height},
                              model="infusion_pump", site="Ward 3") for minute in range(5)])
    settings = Settings(jobs=JobsSettings(intervals_s={"scoring": 60.0, "ticket_rules": 60.0}))
    worker = Worker(factory=factory, store=embedded, settings=settings.jobs,
                    fleet_tasks=fleet_tasks(settings, embedded, RULES, factory),
                    metrics=JobMetrics(), clock=FakeClock())
    assert worker.run("scoring").detail["alarms"] >= 3
    assert worker.run("ticket_rules").units == 1
    flow = [t for t in tickets(factory) if t.signature == "anomaly:flow"]
    assert [t.device_id for t in flow] == ["dev-000"]
    assert flow[0].peak_score > 0.9
    # The evidence shows the 5-minute readings and scores from 6 h before the peak alarm to
    # 2 h after it: the peak's spike is in it, with its score.
    data = flow[0].evidence["latest"]["data"]
    peak = max(data["alarms"], key=lambda alarm: alarm["score"])
    window = data["window"]
    assert window["step_s"] == 300 and len(window["readings"]) == 96
    assert [peak["ts"], round(peak["value"], 6)] in window["readings"]
    assert max(score for _, score in window["scores"]) == pytest.approx(peak["score"], abs=1e-4)


def test_a_finding_the_desk_refuses_does_not_block_the_others(factory, monkeypatch) -> None:
    from analytics.jobs import ticket_rules
    from vigil.errors import Conflict

    add_fleet(factory, 2)
    add_alarms(factory, "dev-000", "flow", [1, 2, 3])
    add_alarms(factory, "dev-001", "flow", [1, 2, 3])
    real = ticket_rules.open_or_join

    def refuse_dev_000(session, **kwargs):
        if kwargs["device_id"] == "dev-000":
            real(session, **kwargs)  # writes, then fails: the savepoint must undo the write
            raise Conflict("changed three times in a row")
        return real(session, **kwargs)

    monkeypatch.setattr(ticket_rules, "open_or_join", refuse_dev_000)
    outcome = run(factory)
    assert (outcome["tickets_opened"], outcome["refused"]) == (1, 1)
    assert [t.device_id for t in tickets(factory)] == ["dev-001"]
    assert run(factory)["alarms"] == 0


def test_a_false_alarm_damps_the_same_pattern_on_the_same_device(factory) -> None:
    from vigil.db.models import TicketEvent

    add_fleet(factory, 2)
    add_alarms(factory, "dev-000", "flow", [1, 2, 3])
    run(factory)
    [ticket] = tickets(factory)
    with transaction(factory) as session:  # the engineer cancels it as a false alarm
        row = session.get(Ticket, ticket.id)
        row.state, row.cancel_reason = "cancelled", "false alarm"
        session.add(TicketEvent(ticket_id=row.id, actor="eng1", kind="transition",
                                from_state="open", to_state="cancelled", at=T0 + 4 * HOUR))
    later = T0 + 3 * 24 * HOUR
    add_alarms(factory, "dev-000", "flow", [49, 50, 51])  # the same pattern again
    add_alarms(factory, "dev-001", "flow", [49, 50, 51])  # on another device: not damped
    assert run(factory, later)["tickets_opened"] == 1
    assert [t.device_id for t in tickets(factory) if t.state == "open"] == ["dev-001"]
    add_alarms(factory, "dev-000", "flow", [52, 53, 54])  # twice as many: a ticket after all
    assert run(factory, later)["tickets_opened"] == 1
    with factory() as session:  # and the quality report counts it against the rule
        from vigil.reports.quality import cancellations_by_rule

        [rule] = cancellations_by_rule(session, start=T0, end=later + HOUR)
        assert (rule.signature, rule.opened, rule.cancelled) == ("anomaly:flow", 3, 1)


def test_a_pass_considers_only_alarms_up_to_its_time(factory) -> None:
    """A replay of history files each ticket when live operation would have, not earlier."""
    add_fleet(factory, 1)
    add_alarms(factory, "dev-000", "flow", [1, 2, 3])
    assert run(factory, T0 + 2.5 * HOUR)["tickets_opened"] == 0  # the third is still to come
    assert run(factory, T0 + 4 * HOUR)["tickets_opened"] == 1


def test_findings_of_the_room_wait_for_the_devices_beside_them() -> None:
    from analytics.jobs.ticket_rules import Finding, corroborated

    def finding(device: str, metric: str) -> Finding:
        return Finding(device, metric, (alarm(1, 0, metric, device),))

    found = [finding("a", "ambient_temp_c"), finding("b", "ambient_temp_c"),
             finding("c", "motor_current"), finding("d", "ambient_temp_c")]
    site_of = {"a": 1, "b": 1, "c": 1, "d": 2}
    filed, held = corroborated(found, site_of=site_of, site_only=RULES.site_only,
                               needed=lambda site: 2)
    assert [f.device_id for f in filed] == ["a", "b", "c"]
    assert [f.device_id for f in held] == ["d"]
    filed, held = corroborated(found, site_of=site_of, site_only=RULES.site_only,
                               needed=lambda site: 2, site_open={(2, "anomaly:ambient_temp_c")})
    assert held == []


def test_one_device_s_room_reading_opens_nothing_until_the_site_shows_it(factory) -> None:
    add_fleet(factory, 4)
    add_alarms(factory, "dev-000", "ambient_temp_c", [1, 2, 3])
    outcome = run(factory)
    assert (outcome["tickets_opened"], outcome["held_alarms"]) == (0, 3)
    assert tickets(factory) == []
    add_alarms(factory, "dev-001", "ambient_temp_c", [4, 5, 6])
    assert run(factory)["tickets_opened"] == 0
    add_alarms(factory, "dev-002", "ambient_temp_c", [7, 8, 9])
    outcome = run(factory)
    assert outcome["held_alarms"] == 0
    opened = tickets(factory)
    # Three device tickets grouped under one site ticket.
    assert sorted((t.scope, t.device_id) for t in opened) == [
        ("device", "dev-000"), ("device", "dev-001"), ("device", "dev-002"), ("site", None)]
    site = next(t for t in opened if t.scope == "site")
    assert all(t.parent_id == site.id for t in opened if t.scope == "device")
    add_alarms(factory, "dev-003", "ambient_temp_c", [10, 11, 12])
    assert run(factory, now=T0 + 13 * HOUR)["tickets_joined"] == 1  # the site ticket is open


def test_a_room_reading_on_a_few_of_a_large_site_s_devices_is_chance(factory) -> None:
    add_fleet(factory, 8)  # the rules' episode share (0.75) of 8: six devices
    for i, device in enumerate(("dev-000", "dev-001", "dev-002", "dev-003", "dev-004")):
        add_alarms(factory, device, "ambient_temp_c", [1 + i, 2 + i, 3 + i])
    outcome = run(factory)
    assert (outcome["tickets_opened"], outcome["held_alarms"]) == (0, 15)
    add_alarms(factory, "dev-005", "ambient_temp_c", [7, 8, 9])
    outcome = run(factory)
    assert outcome["held_alarms"] == 0
    assert outcome["tickets_opened"] + outcome["tickets_joined"] == 6
    assert [t.scope for t in tickets(factory)].count("site") == 1


def test_a_held_room_finding_lapses_after_the_window(factory) -> None:
    add_fleet(factory, 1)
    add_alarms(factory, "dev-000", "humidity_pct", [1, 2, 3])
    assert run(factory)["held_alarms"] == 3
    outcome = run(factory, now=T0 + 30 * HOUR)
    assert (outcome["held_alarms"], outcome["tickets_opened"]) == (0, 0)
    assert run(factory, now=T0 + 31 * HOUR)["alarms"] == 0


def test_findings_on_several_of_a_device_s_readings_are_one_ticket(factory) -> None:
    add_fleet(factory, 1)
    add_alarms(factory, "dev-000", "flow", [1, 2, 3])
    add_alarms(factory, "dev-000", "motor_current", [2, 3, 4])
    add_alarms(factory, "dev-000", "supply_voltage_v", [2, 3, 4])  # may be the building's
    outcome = run(factory)
    assert (outcome["tickets_opened"], outcome["tickets_joined"]) == (2, 1)
    assert sorted(t.signature for t in tickets(factory)) == ["anomaly:flow",
                                                             "anomaly:supply_voltage_v"]
    add_alarms(factory, "dev-000", "pressure", [40, 41, 42])  # more than a day later
    run(factory, now=T0 + 43 * HOUR)
    assert "anomaly:pressure" in {t.signature for t in tickets(factory)}


def test_most_of_a_site_alarming_at_once_is_a_site_episode() -> None:
    from analytics.jobs.ticket_rules import site_findings

    site_of = {"a": 1, "b": 1, "c": 1, "d": 1, "e": 2}
    sizes = {1: 4, 2: 1}

    def found(new, recent=()):
        return [(f.site_id, f.metric, f.devices) for f in site_findings(
            new, list(recent), site_of=site_of, devices_at_site=sizes,
            site_wide=RULES.site_wide, episode=RULES.site_episode, min_devices=3)]

    sag = [alarm(1, 1.0, "supply_voltage_v", "a"), alarm(2, 1.5, "supply_voltage_v", "b")]
    assert found(sag) == []  # two of four devices
    third = alarm(3, 2.5, "supply_voltage_v", "c")
    assert found([third], sag) == [(1, "supply_voltage_v", ("a", "b", "c"))]
    late = alarm(4, 3.4, "supply_voltage_v", "d")  # over two hours after the first: a apart
    assert found([late], [*sag, third]) == [(1, "supply_voltage_v", ("b", "c", "d"))]
    assert found([alarm(5, 9.0, "supply_voltage_v", "a")], [*sag, third]) == []  # old news
    # A device's own reading is never a site episode; nor is a site too small for the grouping.
    assert found([alarm(6, 1, "flow", d) for d in "abcd"]) == []
    assert found([alarm(7, 1, "ambient_temp_c", "e")]) == []


def test_a_site_episode_seen_once_by_each_device_is_one_site_ticket(factory) -> None:
    add_fleet(factory, 4)
    for i, device in enumerate(["dev-000", "dev-001", "dev-002"]):
        add_alarms(factory, device, "supply_voltage_v", [1 + i / 4])
    add_alarms(factory, "dev-003", "ambient_temp_c", [1])  # the room: held, one device alone
    outcome = run(factory)
    assert (outcome["site_episodes"], outcome["tickets_opened"]) == (1, 1)
    [site_ticket] = tickets(factory)
    assert (site_ticket.scope, site_ticket.device_id) == ("site", None)
    assert site_ticket.evidence["devices"] == ["dev-000", "dev-001", "dev-002"]
    with factory() as session:
        linked = session.scalars(select(AnomalyAlarm.ticket_id).where(
            AnomalyAlarm.metric == "supply_voltage_v")).all()
    assert linked == [site_ticket.id] * 3
    # The fourth device's own finding on the reading joins the open site ticket.
    add_alarms(factory, "dev-003", "supply_voltage_v", [6, 7, 8])
    outcome = run(factory, now=T0 + 13 * HOUR)
    assert (outcome["tickets_opened"], outcome["tickets_joined"]) == (0, 1)
    assert [t.id for t in tickets(factory)] == [site_ticket.id]


def test_a_reading_that_moved_with_the_same_model_beside_it_is_the_ward_s() -> None:
    from analytics.jobs.ticket_rules import Finding, shared_with_peers

    finding = Finding("a", "turbine_temp_c", (alarm(1, 10, "turbine_temp_c", "a"),))
    peers_of = {"a": {"b", "c", "d", "e"}}

    def split(peer_alarms, share=0.4, peers=peers_of, found=(finding,)):
        own, shared = shared_with_peers(list(found), peer_alarms, peers_of=peers, share=share,
                                        window=24 * HOUR, site_wide=RULES.site_wide)
        return [f.device_id for f in own], [f.device_id for f in shared]

    two = [alarm(2, 5, "turbine_temp_c", "b"), alarm(3, 9, "turbine_temp_c", "c")]
    assert split(two) == ([], ["a"])  # two of four peers
    assert split(two[:1]) == (["a"], [])  # one of four
    assert split(two, share=0.0) == (["a"], [])  # the comparison switched off
    assert split([alarm(2, -20, "turbine_temp_c", "b"), *two[1:]]) == (["a"], [])  # a day before
    assert split([alarm(2, 5, "flow", "b"), *two[1:]]) == (["a"], [])  # another reading
    assert split(two, peers={"a": {"b"}}) == (["a"], [])  # too few peers to compare with
    sag = Finding("a", "supply_voltage_v", (alarm(1, 10, "supply_voltage_v", "a"),))
    assert split([alarm(2, 5, "supply_voltage_v", d) for d in "bcde"], found=(sag,)) == (
        ["a"], [])  # the site grouping's


def test_a_finding_the_ward_shares_opens_no_device_ticket(factory) -> None:
    add_fleet(factory, 4)
    add_alarms(factory, "dev-000", "battery_temp_c", [1, 2, 3])
    add_alarms(factory, "dev-001", "battery_temp_c", [2])
    outcome = run(factory)
    assert (outcome["tickets_opened"], outcome["shared_with_peers"]) == (1, 0)  # 1 of 3 peers
    add_alarms(factory, "dev-002", "battery_temp_c", [4, 5, 6])
    add_alarms(factory, "dev-003", "battery_temp_c", [5])
    outcome = run(factory)
    assert (outcome["tickets_opened"], outcome["shared_with_peers"]) == (0, 1)  # 3 of 3
    assert [t.device_id for t in tickets(factory)] == ["dev-000"]


def test_a_reading_that_follows_the_prescription_opens_nothing_alone_but_joins_a_fault(
    factory,
) -> None:
    add_fleet(factory, 2, model="ventilator")
    add_alarms(factory, "dev-000", "fio2_measured_pct", [1, 2, 3])  # a patient on more oxygen
    outcome = run(factory)
    assert (outcome["tickets_opened"], outcome["no_evidence_alone"]) == (0, 1)
    assert tickets(factory) == []
    add_alarms(factory, "dev-001", "turbine_vibration_mm_s", [4, 5, 6])
    add_alarms(factory, "dev-001", "o2_cell_mv", [5, 6, 7])
    outcome = run(factory, now=T0 + 13 * HOUR)
    assert (outcome["tickets_opened"], outcome["tickets_joined"]) == (1, 1)
    [ticket] = tickets(factory)
    assert (ticket.device_id, ticket.signature) == ("dev-001", "anomaly:turbine_vibration_mm_s")
    with factory() as session:  # the prescribed reading's alarms are handled, not left waiting
        waiting = session.scalar(select(func.count()).select_from(AnomalyAlarm)
                                 .where(AnomalyAlarm.handled_at.is_(None)))
    assert waiting == 0


def test_a_device_s_supply_dips_alone_are_the_mains_and_open_nothing(factory) -> None:
    """The supply voltage follows the mains: a dip is the grid's, a failing power supply's
    ripple the failure predictor's. Beside the device's own fault it joins as evidence."""
    add_fleet(factory, 4)
    add_alarms(factory, "dev-000", "supply_voltage_v", [1, 2, 3])
    outcome = run(factory)
    assert (outcome["tickets_opened"], outcome["no_evidence_alone"]) == (0, 1)
    assert tickets(factory) == []
    add_alarms(factory, "dev-001", "motor_current_ma", [4, 5, 6])
    add_alarms(factory, "dev-001", "supply_voltage_v", [5, 6, 7])
    outcome = run(factory, now=T0 + 13 * HOUR)
    assert outcome["no_evidence_alone"] == 0
    assert sorted((t.device_id, t.signature) for t in tickets(factory)) == [
        ("dev-001", "anomaly:motor_current_ma"), ("dev-001", "anomaly:supply_voltage_v")]
