"""`vigil bench fleet`: the accounting by hand, and a tiny fleet end to end."""

from __future__ import annotations

import argparse
import json

import pytest

from analytics.bench import fleet_score as score
from vigil.servers import Mosquitto

START = 1_760_054_400_000  # a UTC midnight
DAY = score.DAY_MS
HOUR = score.HOUR_MS


def at(day: float) -> int:
    return START + int(day * DAY)


def fault(device: str, kind: str, onset: float, failure: float, repaired: float,
          predictable: bool = True, model: str = "infusion_pump", site: str = "A") -> dict:
    return {"device": device, "model": model, "site": site, "fault_type": kind,
            "onset_ms": at(onset), "failure_ms": at(failure), "predictable": predictable,
            "repaired_ms": at(repaired)}


TRUTH = {
    "start_ms": START, "end_ms": at(30),
    "devices": [{"device": "d1", "model": "infusion_pump", "site": "A"},
                {"device": "d2", "model": "infusion_pump", "site": "A"},
                {"device": "d3", "model": "infusion_pump", "site": "B"}],
    "faults": [fault("d1", "motor_wear", 10, 20, 21),
               fault("d2", "battery_ageing", 15, 15, 15.5, predictable=False),
               fault("d3", "power_problem", 12, 18, 19, site="B")],
    "site_episodes": [{"site": "B", "kind": "ac_failure", "start_ms": at(25),
                       "end_ms": at(25.5)}],
    "maintenance": [],
}


def ticket(id_: int, device: str | None, site: str | None, day: float, signature: str = "anomaly:m",
           scope: str = "device", parent: int | None = None) -> score.TicketView:
    return score.TicketView(id_, device, site, at(day), signature, scope, parent)


TICKETS = [
    ticket(1, "d1", "A", 12, "anomaly:motor_current"),  # 8 days ahead of d1's failure
    ticket(2, "d1", "A", 19.5),                         # same fault, later
    ticket(3, "d3", "B", 17.5),                         # only 12 h ahead: d3 is missed
    ticket(4, "d2", "A", 5),                            # warm-up week: not counted
    ticket(5, "d2", "A", 22),                           # false
    ticket(6, None, "B", 25.1, "anomaly:ambient_temp_c", scope="site"),
    ticket(7, "d3", "B", 25.2, "anomaly:ambient_temp_c", parent=6),
    ticket(8, "d2", "A", 14),                           # false; a day before a sudden failure
]


def test_hand_made_tickets_give_known_figures() -> None:
    types = score.learn_fault_types(TRUTH, TICKETS)
    assert types[("infusion_pump", "anomaly:motor_current")] == "motor_wear"
    predict = score.predictor(types)
    assert predict("ventilator", "anomaly:motor_current") == "motor_wear"
    assert predict("ventilator", "anomaly:never_seen") is None
    f = score.score_tickets(TRUTH, TICKETS, predict_type=score.predictor(types))
    assert f["predictable_failures"] == 2
    assert f["ticketed_24h"] == 1 and f["ticketed_24h_share"] == 0.5
    assert f["median_lead_h"] == 192.0
    assert (f["tickets"], f["true_tickets"], f["episode_tickets"], f["false_tickets"]) == \
        (7, 3, 2, 2)
    assert f["warmup_tickets"] == 1
    # 3 devices x 23 days after the warm-up, less 1 + 0.5 + 1 days lying broken.
    assert f["device_days"] == 66.5
    assert f["false_per_100_device_days"] == round(200 / 66.5, 3)
    assert (f["site_episodes"], f["site_episodes_ticketed"], f["tickets_per_site_episode"]) == \
        (1, 1, 1.0)
    assert f["fault_type_accuracy"] == 1.0
    assert (f["sudden_failures"], f["sudden_ticketed_before"]) == (1, 1)
    assert f["missed_by_fault_type"] == {"power_problem": 1}


def test_the_fault_type_a_ticket_names_comes_before_the_learned_one() -> None:
    from analytics.bench.fleet import named_fault

    assert named_fault("prediction:E-MOTOR-STALL") == "motor_wear"  # the devices' code book
    assert named_fault("prediction:unknown") is None
    assert named_fault("anomaly:motor_current") is None
    # An anomaly's reading names the fault the catalogue says it shows, on the device's model.
    assert named_fault("anomaly:battery_voltage_v", "infusion_pump") == "battery_ageing"
    assert named_fault("anomaly:supply_voltage_v", "mri") == "power_problem"
    assert named_fault("anomaly:ambient_temp_c", "infusion_pump") is None
    learned = score.predictor({("*", "anomaly:m"): "motor_wear"})
    named = [ticket(1, "d1", "A", 11), score.TicketView(2, "d1", "A", at(12), "prediction:x",
                                                         fault_type="battery_ageing")]
    f = score.score_tickets(TRUTH, named, predict_type=learned)
    assert f["median_lead_h"] == 216.0 and f["fault_type_accuracy"] == 0.0
    f = score.score_tickets(TRUTH, named[:1], predict_type=learned)
    assert f["fault_type_accuracy"] == 1.0


def test_a_fleet_ticket_is_counted_apart_not_judged() -> None:
    """It has no device and no site: it links device tickets, which are judged themselves."""
    fleet = [ticket(9, None, None, 21, "anomaly:m", scope="fleet"),
             ticket(10, None, None, 3, "anomaly:m", scope="fleet")]  # in the warm-up week
    plain = score.score_tickets(TRUTH, TICKETS)
    f = score.score_tickets(TRUTH, [*TICKETS, *fleet])
    assert f["fleet_tickets"] == 1 and plain["fleet_tickets"] == 0
    assert {k: v for k, v in f.items() if k != "fleet_tickets"} == \
        {k: v for k, v in plain.items() if k != "fleet_tickets"}
    assert (f["tickets"], f["false_tickets"], f["warmup_tickets"]) == (7, 2, 1)


def test_one_ticket_per_device_in_an_episode_counts_each() -> None:
    tickets = [ticket(1, "d3", "B", 25.1, "anomaly:ambient_temp_c"),
               ticket(2, "d3", "B", 25.3, "anomaly:humidity_pct")]
    assert score.score_tickets(TRUTH, tickets)["tickets_per_site_episode"] == 2.0


def test_threshold_rule_tickets_after_two_days_out_of_band_and_k_follows_the_target() -> None:
    noise = [10.0, 10.1, 9.9, 10.0, 10.2, 9.8, 10.0]
    flat: list[float | None] = [noise[d % 7] for d in range(30)]
    broken: list[float | None] = [noise[d % 7] if d < 10 or d >= 21 else 20.0 for d in range(30)]
    daily = {"d1": {"m": broken}, "d2": {"m": flat}, "d3": {"m": flat}}
    tickets = score.threshold_tickets(TRUTH, daily, k=6.0)
    # Days 10 and 11 out of band: the ticket opens at the end of day 11.
    assert [(t.device, t.created_ms) for t in tickets] == [("d1", at(12))]
    f = score.score_tickets(TRUTH, tickets)
    assert (f["ticketed_24h"], f["median_lead_h"], f["false_tickets"]) == (1, 192.0, 0)
    k, figures = score.choose_k(TRUTH, daily, target_false_per_100=0.0, ks=[0.5, 6.0])
    assert k == 6.0 and figures["false_tickets"] == 0


def test_lives_restart_after_a_repair() -> None:
    assert score.lives(TRUTH, "d1", 30) == [(0, 20), (21, 30)]
    assert score.lives(TRUTH, "d2", 30) == [(0, 15), (16, 30)]


@pytest.mark.servers
@pytest.mark.slow
@pytest.mark.parametrize("shared_broker", [False, True], ids=["two-processes", "one-broker"])
def test_tiny_fleet_end_to_end(mosquitto: Mosquitto, tmp_path, capfd, shared_broker: bool
                               ) -> None:
    """Without --broker each fleet has a Mosquitto of its own and two processes share the
    fleets; with one, the fleets run one after another in this process."""
    from analytics.bench import fleet

    parser = argparse.ArgumentParser()
    fleet.configure(parser)
    broker = ["--broker", f"{mosquitto.host}:{mosquitto.port}"] if shared_broker else []
    args = parser.parse_args(["--devices", "6", "--days", "9", "--step", "3600",
                              "--rules-min", "240",
                              "--workdir", str(tmp_path), *broker])
    assert fleet.run(args) == 0
    out = capfd.readouterr().out
    result = json.loads(out.strip().splitlines()[-1])
    for key in ("ticketed_24h_share", "median_lead_h", "false_per_100_device_days",
                "tickets_per_site_episode", "fault_type_accuracy", "device_days_per_s_per_core",
                "arrival_ratio", "threshold_rule", "easy_faults", "sudden_failures"):
        assert key in result
    assert result["devices"] == 6 and result["days"] == 9
    assert result["device_days_per_s_per_core"] > 0
    assert result["easy_faults"] is not None
    for name in ("train", "eval", "easy"):
        truth = json.loads((tmp_path / name / "truth.json").read_text())
        assert len(truth["devices"]) == 6
        assert f"[{name}] replay:" in out
    # Each fleet's replay ends with its analytics tickets counted, whichever process ran it.
    assert (tmp_path / "easy" / "run.json").exists()


def test_prediction_tickets_follow_runs_of_confident_passes_and_the_budget_sets_the_bar() -> None:
    from datetime import UTC, datetime, timedelta

    from analytics.bench.fleet import choose_probability, prediction_tickets
    from analytics.jobs.ticket_rules import PredictionView

    start = datetime.fromtimestamp(START / 1000, tz=UTC)
    views = []
    for day in range(8, 30):
        # d1 grows confident from day 12 (its fault's onset is day 10, failure day 20);
        # d2 is a little confident on days 23 to 25, with no fault behind it.
        p1 = 0.9 if 12 <= day < 20 else 0.1
        p2 = 0.4 if 23 <= day <= 25 else 0.05
        for device, p in (("d1", p1), ("d2", p2)):
            views.append(PredictionView(len(views) + 1, device, start + timedelta(days=day), p,
                                        7.0, fault_type="E-MOTOR-STALL"))
    tickets = prediction_tickets(views, TRUTH, probability=0.3, passes=2)
    assert [(t.device, t.created_ms, t.fault_type) for t in tickets] == [
        ("d1", at(13), "motor_wear"), ("d2", at(24), "motor_wear")]
    p, figures = choose_probability(views, TRUTH, passes=2, false_budget=0.0,
                                    grid=(0.2, 0.3, 0.5, 0.95))
    assert p == 0.5 and figures["ticketed_24h"] == 1 and figures["false_tickets"] == 0
    # Within a loose budget: as many failures at 0.5 as lower, and no false ticket.
    p, _ = choose_probability(views, TRUTH, passes=2, false_budget=5.0, grid=(0.2, 0.3, 0.5))
    assert p == 0.5
    # d1 only 0.4 confident: the bar that tickets its failure wins, false ticket and all.
    timid = [v if v.device_id == "d2" or v.probability < 0.5 else
             PredictionView(v.id, v.device_id, v.made_at, 0.4, 7.0, fault_type=v.fault_type)
             for v in views]
    p, figures = choose_probability(timid, TRUTH, passes=2, false_budget=5.0,
                                    grid=(0.2, 0.3, 0.5))
    assert p == 0.2 and figures["ticketed_24h"] == 1 and figures["false_tickets"] == 1
    # d1 never confident: no bar catches anything, so the budget is spent, not saved.
    blind = [v if v.device_id == "d2" else
             PredictionView(v.id, v.device_id, v.made_at, 0.1, 7.0, fault_type=v.fault_type)
             for v in views]
    p, figures = choose_probability(blind, TRUTH, passes=2, false_budget=5.0,
                                    grid=(0.2, 0.3, 0.5))
    assert p == 0.2 and figures["ticketed_24h"] == 0 and figures["false_tickets"] == 1
    p, _ = choose_probability(blind, TRUTH, passes=2, false_budget=0.0, grid=(0.2, 0.3, 0.5))
    assert p == 0.5
