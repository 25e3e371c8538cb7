"""Fault kinds: the easy faults unchanged, realistic faults that a plain rule cannot read off."""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import pytest

from edge_agent.simulator.fleet import Fleet
from edge_agent.simulator.physics import Fault, Site
from edge_agent.simulator.plain_rule import START_MS, alarm_days, daily_means, evaluate
from edge_agent.simulator.realism import Realism, RealisticDeviceSim, SiteRealism, Window
from edge_agent.simulator.scenario import (
    DeviceSpec,
    ground_truth,
    plan_fleet,
    plan_scenario,
    read_labels,
    write_ground_truth,
    write_labels,
)
from edge_agent.transport import BrokerSettings

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
S = 1_760_000_000_000
# Readings of a small easy fleet as the simulator produced them before the realistic kind.
EASY_DIGEST = "e696d403bbfd9fca1491deb5f1ce6592a5522a07a5b640dd12f39b6d775d4797"


def quiet_site() -> SiteRealism:
    return SiteRealism("s", weather=((0.5, 9.0, 0.3),), busy=((0.05, 6.0, 1.0),),
                       season_c=1.0, season_phase=0.0)


def realism(**kw: object) -> Realism:
    fields: dict[str, object] = {
        "site": quiet_site(), "origin_ms": S, "noise": 1.0, "usage_scale": 1.0,
        "params": {name: 1.0 for name in ("c0", "slope", "occl", "capacity", "r", "bt", "fan",
                                          "th", "led", "ecg", "bv")}}
    fields.update(kw)
    return Realism(**fields)  # type: ignore[arg-type]


def test_easy_kind_gives_the_readings_it_always_gave() -> None:
    specs = plan_fleet(24, seed=3, start_ms=S, end_ms=S + 20 * DAY_MS, fault_fraction=0.5)
    assert specs == plan_scenario(24, seed=3, start_ms=S, end_ms=S + 20 * DAY_MS,
                                  fault_fraction=0.5, faults="easy").specs
    h = hashlib.sha256()
    for spec in specs:
        sim = spec.build(3)
        h.update(repr((spec.device_id, spec.model, spec.site.name,
                       [(f.fault_type, f.onset_ms, f.failure_ms) for f in spec.faults])).encode())
        for t in range(S, S + 20 * DAY_MS, HOUR_MS):
            h.update(json.dumps([sim.sample(t), [e.code for e in sim.events(t)]],
                                sort_keys=True).encode())
    assert h.hexdigest() == EASY_DIGEST


def test_realistic_plan_is_deterministic_and_keeps_the_easy_fleet() -> None:
    args = {"seed": 4, "start_ms": S, "end_ms": S + 60 * DAY_MS, "fault_fraction": 0.5}
    real = plan_scenario(200, **args)  # type: ignore[arg-type]
    assert ground_truth(real) == ground_truth(plan_scenario(200, **args))  # type: ignore[arg-type]
    assert ground_truth(real) != ground_truth(
        plan_scenario(200, **{**args, "seed": 5}))  # type: ignore[arg-type]
    easy = plan_fleet(200, **args)  # type: ignore[arg-type]
    # The same devices fail the same way at the same time; only how it shows differs.
    assert [(s.device_id, s.model, s.site) for s in real.specs] == \
        [(s.device_id, s.model, s.site) for s in easy]
    for r, e in zip(real.specs, easy, strict=True):
        assert [(f.fault_type, f.failure_ms) for f in r.faults] == \
            [(f.fault_type, f.failure_ms) for f in e.faults]
    with pytest.raises(ValueError, match="faults must be one of"):
        plan_scenario(5, seed=1, start_ms=S, end_ms=S + DAY_MS, faults="hard")


def test_ground_truth_holds_faults_episodes_glitches_and_maintenance(tmp_path: Path) -> None:
    scenario = plan_scenario(400, seed=8, start_ms=S, end_ms=S + 90 * DAY_MS, fault_fraction=0.5)
    write_ground_truth(tmp_path / "truth.json", scenario)
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["kind"] == "realistic" and truth["seed"] == 8 and len(truth["devices"]) == 400
    faults = truth["faults"]
    sudden = [f for f in faults if not f["predictable"]]
    assert 0.12 <= len(sudden) / len(faults) <= 0.28
    assert all(f["onset_ms"] == f["failure_ms"] for f in sudden)
    assert all(f["onset_ms"] < f["failure_ms"] for f in faults if f["predictable"])
    assert all(f["failure_ms"] < f["repaired_ms"] <= f["failure_ms"] + 240 * HOUR_MS
               for f in faults)
    assert len({f["fault_type"] for f in sudden}) >= 5
    repairs = {(m["device"], m["end_ms"]) for m in truth["maintenance"] if m["kind"] == "repair"}
    assert {(f["device"], f["repaired_ms"]) for f in faults} == repairs
    assert any(m["kind"] == "preventive" for m in truth["maintenance"])
    at_site = {d["device"] for d in truth["devices"] if d["site"] == "site-001"}
    kinds = {e["kind"] for e in truth["site_episodes"]}
    assert kinds == {"ac_failure", "mains_sag"}
    for episode in truth["site_episodes"]:
        assert episode["start_ms"] < episode["end_ms"]
        if episode["site"] == "site-001":
            assert set(episode["devices"]) == at_site
    assert {g["kind"] for g in truth["glitches"]} == {"spike", "stuck", "dropout"}
    assert {b["kind"] for b in truth["benign_changes"]} == {"use_change", "sensor_drift"}
    # The CSV labels carry the same faults.
    write_labels(tmp_path / "labels.csv", scenario.specs)
    rows = read_labels(tmp_path / "labels.csv")
    assert [(r["device"], r["predictable"] == "true", int(r["repaired_ms"])) for r in rows] == \
        [(f["device"], f["predictable"], f["repaired_ms"]) for f in faults]


def test_easy_labels_say_predictable_and_never_repaired(tmp_path: Path) -> None:
    specs = plan_fleet(50, seed=2, start_ms=S, end_ms=S + 30 * DAY_MS, fault_fraction=0.5)
    write_labels(tmp_path / "labels.csv", specs)
    rows = read_labels(tmp_path / "labels.csv")
    assert rows and all(r["predictable"] == "true" and r["repaired_at"] == "" for r in rows)


def test_sudden_failure_has_no_precursor_and_the_repair_restores_the_device() -> None:
    failure, repaired = S + 20 * DAY_MS, S + 22 * DAY_MS
    fault = Fault("mon-1", "patient_monitor", "fan_failure", failure, failure,
                  predictable=False, repaired_ms=repaired)
    site = Site("s", utc_offset_h=0)
    sick = RealisticDeviceSim("mon-1", "patient_monitor", site, 1, (fault,), realism())
    healthy = RealisticDeviceSim("mon-1", "patient_monitor", site, 1, (), realism())
    times = range(S, S + 30 * DAY_MS, 1_800_000)
    readings = {t: (sick.sample(t), healthy.sample(t), sick.events(t)) for t in times}
    before = [t for t in times if t < failure]
    # Up to the failure the sick device cannot be told from its healthy twin.
    assert all(readings[t][0] == readings[t][1] for t in before)
    raised = [(t, e.code) for t in times for e in readings[t][2]]
    assert raised == [(failure, "E-OVERTEMP")]

    def fan(which: int, lo: int, hi: int) -> float:
        return statistics.mean(readings[t][which]["fan_speed_rpm"] for t in times
                               if lo <= t < hi)

    # Failed, the fan runs slower; repaired, it runs like its twin's.
    assert fan(0, failure, repaired) < fan(1, failure, repaired) - 100
    assert abs(fan(0, repaired, times.stop) - fan(1, repaired, times.stop)) < 30


def test_realistic_devices_raise_no_warning_only_the_failure() -> None:
    scenario = plan_scenario(120, seed=6, start_ms=S, end_ms=S + 60 * DAY_MS, fault_fraction=1.0)
    codes: list[str] = []
    for spec in scenario.specs[:60]:
        sim = spec.build(6)
        for t in range(S, S + 60 * DAY_MS, 6 * HOUR_MS):
            sim.sample(t)
            codes += [e.code for e in sim.events(t)]
    assert codes and all(c.startswith("E-") for c in codes)
    last = S + 60 * DAY_MS - 6 * HOUR_MS
    assert len(codes) == sum(1 for s in scenario.specs[:60] for f in s.faults
                             if f.failure_ms <= last)


def _fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    mx, my = statistics.mean(xs), statistics.mean(ys)
    covariance = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    slope = covariance / sum((x - mx) ** 2 for x in xs)
    return my - slope * mx, slope


def test_motor_wear_shows_in_current_for_flow_and_noise_not_in_the_daily_band() -> None:
    onset, failure = S + 14 * DAY_MS, S + 32 * DAY_MS
    fault = Fault("pump-1", "infusion_pump", "motor_wear", onset, failure)
    sim = RealisticDeviceSim("pump-1", "infusion_pump", Site("s", utc_offset_h=0), 3, (fault,),
                             realism())
    samples = [(t, sim.sample(t)) for t in range(S, failure - DAY_MS, 600_000)]
    running = [(t, m["flow_rate_ml_h"], m["motor_current_ma"]) for t, m in samples
               if m["flow_rate_ml_h"] > 0]
    week = [(f, c) for t, f, c in running if t < S + 7 * DAY_MS]
    a, b = _fit([f for f, _ in week], [c for _, c in week])
    sd = statistics.stdev(c - a - b * f for f, c in week)

    def residuals(lo: int, hi: int) -> list[float]:
        return [c - a - b * f for t, f, c in running if lo <= t < hi]

    late = residuals(failure - 4 * DAY_MS, failure - DAY_MS)
    early = residuals(onset + 7 * DAY_MS, onset + 10 * DAY_MS)
    # Three days before the failure the relation has moved by many standard errors...
    assert statistics.mean(late) > 8 * sd / len(late) ** 0.5
    # ... and half-way the noise has grown by more than a quarter.
    assert statistics.stdev(early) > 1.25 * sd
    # Yet the daily mean of the current stays inside a 6-sigma band of its first week.
    days = 30
    current = daily_means(samples, S, days)["motor_current_ma"]
    base = current[:7]
    centre = statistics.median(base)  # type: ignore[type-var]
    spread = 1.4826 * statistics.median(abs(v - centre) for v in base)  # type: ignore[operator]
    assert all(abs(v - centre) < 6 * spread for v in current[7:] if v is not None)


def test_site_air_conditioning_failure_heats_the_room_and_is_no_fault() -> None:
    heat = Window("ac_failure", S + 10 * DAY_MS, S + 10 * DAY_MS + 12 * HOUR_MS, 8.0)
    site = Site("s", utc_offset_h=0, ambient_swing_c=1.0)
    real = realism(site=SiteRealism("s", (), (), 0.0, 0.0, (heat,)))
    sim = RealisticDeviceSim("mon-1", "patient_monitor", site, 2, (), real)
    day_before = [sim.sample(t)["ambient_temp_c"]
                  for t in range(S + 9 * DAY_MS + 3 * HOUR_MS, S + 9 * DAY_MS + 12 * HOUR_MS,
                                 HOUR_MS)]
    during = [sim.sample(t)["ambient_temp_c"]
              for t in range(S + 10 * DAY_MS + 3 * HOUR_MS, S + 10 * DAY_MS + 12 * HOUR_MS,
                             HOUR_MS)]
    assert statistics.mean(during) - statistics.mean(day_before) > 7.0
    assert not sim.events(S + 10 * DAY_MS + 6 * HOUR_MS)


def test_glitches_spike_once_stick_and_drop_out() -> None:
    glitches = (Window("spike", S + HOUR_MS, S + 7 * HOUR_MS, 3.0, "internal_temp_c"),
                Window("stuck", S + 2 * HOUR_MS, S + 5 * HOUR_MS, 0.0, "fan_speed_rpm"),
                Window("dropout", S + 3 * HOUR_MS, S + 4 * HOUR_MS, 0.0, "battery_voltage_v"))
    site = Site("s", utc_offset_h=0)
    sim = RealisticDeviceSim("mon-1", "patient_monitor", site, 2, (), realism(glitches=glitches))
    twin = RealisticDeviceSim("mon-1", "patient_monitor", site, 2, (), realism())
    got = {t: (sim.sample(t), twin.sample(t)) for t in range(S, S + 6 * HOUR_MS, 1_800_000)}
    spiked = [t for t, (a, b) in got.items() if a["internal_temp_c"] != b["internal_temp_c"]]
    assert spiked == [S + HOUR_MS]
    assert got[S + HOUR_MS][0]["internal_temp_c"] == pytest.approx(
        4 * got[S + HOUR_MS][1]["internal_temp_c"], abs=0.01)
    stuck = {got[t][0]["fan_speed_rpm"] for t in range(S + 2 * HOUR_MS, S + 5 * HOUR_MS,
                                                        1_800_000)}
    assert len(stuck) == 1
    assert got[S + 5 * HOUR_MS][0]["fan_speed_rpm"] != got[S + 4 * HOUR_MS][0]["fan_speed_rpm"]
    assert [t for t, (a, _) in got.items() if "battery_voltage_v" not in a] == \
        [S + 3 * HOUR_MS, S + 3 * HOUR_MS + 1_800_000]


def test_live_devices_follow_the_planned_maintenance_windows(tmp_path: Path) -> None:
    visit = Window("preventive", S + HOUR_MS, S + 3 * HOUR_MS)
    spec = DeviceSpec("mon-7", "patient_monitor", Site("s"), (), realism(maintenance=(visit,)))
    fleet = Fleet([spec], seed=1, broker=BrokerSettings(port=1), outbox_path=tmp_path / "o.db")
    try:
        device = fleet.devices["mon-7"]
        states = []
        for t in (S, S + HOUR_MS, S + 2 * HOUR_MS, S + 3 * HOUR_MS):
            fleet._follow_plan(device, t)
            states.append(device.state)
        assert states == ["online", "maintenance", "maintenance", "online"]
    finally:
        fleet.close()


def test_plain_rule_needs_two_days_outside_a_band_from_the_first_week() -> None:
    level = [10.0, 10.2, 9.9, 10.1, 9.8, 10.0, 10.1] + [10.0] * 13
    spike = level.copy()
    spike[10] = 50.0
    step = level[:12] + [12.0] * 8
    assert alarm_days({"x": spike}, 0, 20, k=6) == []
    assert alarm_days({"x": step}, 0, 20, k=6) == [13]
    assert alarm_days({"x": step}, 0, 20, k=20) == []
    # A fresh baseline (after a repair) takes the new level as normal.
    assert alarm_days({"x": step}, 12, 20, k=6) == []
    assert alarm_days({"x": step[:13] + [None] + step[14:]}, 0, 20, k=6) == [15]


def test_the_plain_rule_foresees_far_fewer_realistic_failures() -> None:
    """The step in difficulty, on a fleet small enough for a unit test (about 10 s)."""
    args = {"seed": 5, "start_ms": START_MS, "end_ms": START_MS + 60 * DAY_MS,
            "fault_fraction": 0.5}
    easy = evaluate(plan_scenario(80, faults="easy", **args),  # type: ignore[arg-type]
                    step_s=3600, ks=(6.0, 10.0))
    real = evaluate(plan_scenario(80, faults="realistic", **args),  # type: ignore[arg-type]
                    step_s=3600, ks=(6.0, 10.0))
    assert easy[6.0]["predictable_failures"] >= 12 and real[6.0]["predictable_failures"] >= 8
    assert easy[6.0]["ticketed_24h_share"] >= 0.6
    for k in (6.0, 10.0):
        assert real[k]["ticketed_24h_share"] <= easy[k]["ticketed_24h_share"] - 0.25
    assert real[6.0]["sudden_failures"] >= 1


def test_a_realistic_self_test_finds_the_failure_not_the_wear(tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    wearing = Fault("mon-1", "patient_monitor", "fan_failure", now - DAY_MS, now + DAY_MS)
    failed = Fault("mon-2", "patient_monitor", "fan_failure", now - 3 * DAY_MS, now - HOUR_MS,
                   repaired_ms=now + DAY_MS)
    specs = [DeviceSpec(f.device, f.model, Site("s"), (f,), realism()) for f in (wearing, failed)]
    easy = DeviceSpec("mon-3", "patient_monitor", Site("s"),
                      (replace(wearing, device="mon-3", onset_ms=now - 9 * DAY_MS),))
    fleet = Fleet([*specs, easy], seed=1, broker=BrokerSettings(port=1),
                  outbox_path=tmp_path / "o.db")
    try:
        passed = {d: fleet.devices[d].commands._handlers["self_test"].handler({})["passed"]
                  for d in ("mon-1", "mon-2", "mon-3")}
        assert passed == {"mon-1": True, "mon-2": False, "mon-3": False}
    finally:
        fleet.close()
