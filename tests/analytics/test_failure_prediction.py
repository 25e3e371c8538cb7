"""Failure prediction's pure logic on small hand-built cases: lives, window features, the model."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from analytics.prediction.catalogue import parse
from analytics.prediction.failure import (
    FailurePredictor,
    PredictorSettings,
    capped_target,
    fit_predictor,
    horizon_outcome,
)
from analytics.prediction.lives import (
    Failure,
    Life,
    RowSettings,
    baseline_of,
    current_life,
    life_rows,
    lives,
    merge_failures,
    window_features,
)

T = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def test_lives_end_at_failures_resume_at_repairs_and_end_censored() -> None:
    failures = [Failure("d", T + 10 * DAY, "E-MOTOR"),
                Failure("d", T + 11 * DAY, "E-MOTOR"),  # reported again while awaiting repair
                Failure("other", T + 5 * DAY, "E-PSU")]
    cut = lives("d", "pump", start=T, end=T + 40 * DAY, failures=failures,
                repairs=[T + 12 * DAY, T + 30 * DAY])
    assert cut == [Life("d", "pump", T, T + 10 * DAY, True, "E-MOTOR"),
                   Life("d", "pump", T + 12 * DAY, T + 40 * DAY, False)]
    assert current_life(cut, now=T + 40 * DAY) == cut[1]


def test_a_repair_after_a_failure_before_the_data_starts_the_first_life() -> None:
    before = [Failure("d", T - 2 * DAY, "E-PSU")]
    assert lives("d", "pump", start=T, end=T + 9 * DAY, failures=before,
                 repairs=[T + DAY]) == [Life("d", "pump", T + DAY, T + 9 * DAY, False)]
    # No repair recorded: the data shows the device at work, so the data stands.
    assert lives("d", "pump", start=T, end=T + 9 * DAY, failures=before,
                 repairs=[]) == [Life("d", "pump", T, T + 9 * DAY, False)]


def test_a_failure_not_repaired_yet_ends_the_usable_history() -> None:
    cut = lives("d", "pump", start=T, end=T + 40 * DAY,
                failures=[Failure("d", T + 20 * DAY, "E-PSU")], repairs=[T + 5 * DAY])
    assert cut == [Life("d", "pump", T, T + 20 * DAY, True, "E-PSU")]
    assert current_life(cut, now=T + 40 * DAY) is None


def test_a_failure_code_and_its_ticket_are_one_failure_named_by_the_code() -> None:
    merged = merge_failures([Failure("d", T, "anomaly:flow"),
                             Failure("d", T + timedelta(hours=3), "E-MOTOR"),
                             Failure("d", T + 9 * DAY, "event:E-PSU"),
                             Failure("e", T, "E-PSU")])
    assert merged == [Failure("d", T, "E-MOTOR"), Failure("d", T + 9 * DAY, "event:E-PSU"),
                      Failure("e", T, "E-PSU")]


def steps(days: float, *, seed: int = 0, start: datetime = T, noise: float = 1.0,
          shift: float = 0.0, current_gain: float = 0.1, dead: bool = False) -> pd.DataFrame:
    """10-minute steps: flow with a daily rhythm, motor current following it, a steady ambient."""
    rng = np.random.default_rng(seed)
    n = int(days * 144)
    index = pd.date_range(start, periods=n, freq="10min")
    hour = (np.arange(n) % 144) / 6
    flow = 50 + 10 * np.sin(2 * np.pi * hour / 24) + rng.normal(0, noise, n) + shift
    current = current_gain * flow + rng.normal(0, 0.05, n)
    ambient = 22 + rng.normal(0, 0.3, n)
    frame = pd.DataFrame({"flow": flow, "current": current, "ambient": ambient}, index=index)
    if dead:
        frame["ambient"] = np.nan
    return frame


def test_window_features_measure_level_noise_relation_and_dead_sensors() -> None:
    baseline = baseline_of(steps(3, seed=1))
    same = window_features(baseline, steps(1, seed=2))
    assert all(abs(v) < 1.0 for v in same.values()), same
    # Level: the flow's median moves by about its baseline's robust deviations.
    moved = window_features(baseline, steps(1, seed=2, shift=40))
    assert moved["flow__level"] > 3
    # Noise three times as large: the spread is close to log 3.
    noisy = window_features(baseline, steps(1, seed=2, noise=3.0))
    assert noisy["flow__spread"] == pytest.approx(math.log(3.0), abs=0.35)
    assert abs(noisy["flow__level"]) < 1
    # Motor current stops following the flow by 30 %: a relation break.
    broken = window_features(baseline, steps(1, seed=2, current_gain=0.13))
    assert abs(broken["current__relation"]) > 5 * abs(same["current__relation"]) + 3
    # A dead sensor is evidence: all its steps are missing.
    assert window_features(baseline, steps(1, seed=2, dead=True))["ambient__missing"] == 1.0


def pump_steps(days: float, *, seed: int = 0, current_noise: float = 1.0) -> pd.DataFrame:
    """A pump that stands a third of the time: no flow then and a small idle current, else a
    current that follows the flow; a tenth of the current's noise is its own."""
    rng = np.random.default_rng(seed)
    n = int(days * 144)
    running = rng.random(n) > 0.33
    flow = np.where(running, rng.uniform(5, 250, n), 0.0)
    current = np.where(running, 90 + 0.9 * flow + rng.normal(0, 3 * current_noise, n),
                       4 + rng.normal(0, 0.5, n))
    return pd.DataFrame({"flow": flow, "current": current},
                        index=pd.date_range(T, periods=n, freq="10min"))


def test_the_noise_of_a_relation_shows_where_step_changes_hide_it() -> None:
    baseline = baseline_of(pump_steps(3, seed=1))
    same = window_features(baseline, pump_steps(1, seed=2))
    # Whether the pump stands is a regressor: the current's relation holds across stops.
    assert abs(same["current__relation"]) < 1 and abs(same["current__noise"]) < 0.3
    noisy = window_features(baseline, pump_steps(1, seed=2, current_noise=3.0))
    assert noisy["current__noise"] == pytest.approx(math.log(3.0), abs=0.35)
    # The flow's jumps dwarf the current's own noise in its step-to-step changes.
    assert noisy["current__spread"] < 0.5 * noisy["current__noise"]


def test_life_rows_count_down_to_the_failure_and_carry_no_age() -> None:
    frame = steps(12)
    life = Life("d", "pump", T, T + 12 * DAY, True, "E-MOTOR")
    rows = life_rows(frame, life, step=timedelta(minutes=10), settings=RowSettings())
    # Baseline of 3 days, a 1-day window: rows at days 4..11, each a day less to go.
    assert list(rows["left_days"]) == [8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]
    features = [c for c in rows.columns if "__" in c]
    assert {c.split("__")[0] for c in features} == {"flow", "current", "ambient"}
    # A life too short for its baseline gives no rows.
    short = Life("d", "pump", T, T + 2 * DAY, False)
    assert life_rows(frame, short, step=timedelta(minutes=10), settings=RowSettings()).empty


def test_censored_rows_are_used_only_where_their_capped_life_is_known() -> None:
    rows = pd.DataFrame({"left_days": [3.0, 40.0, 40.0, 10.0, 5.0],
                         "failed": [True, True, False, False, False]})
    target = capped_target(rows, cap=30.0)
    assert list(target[:3]) == [3.0, 30.0, 30.0] and np.isnan(target[3:]).all()
    outcome = horizon_outcome(rows, horizon=7.0)
    assert list(outcome[:4]) == [1.0, 0.0, 0.0, 0.0] and np.isnan(outcome[4])


def synthetic_rows(models: dict[str, int], *, seed: int = 0, healthy: int = 6) -> pd.DataFrame:
    """Rows as life_rows gives them: per failing device a 40-day life whose failing reading
    (``flow`` for fault A, ``temp`` for fault B) leaves its baseline over the last 10 days;
    ``healthy`` devices per model never fail. ``noise`` never changes anything."""
    rng = np.random.default_rng(seed)
    out = []
    for model, failing in models.items():
        for d in range(failing + healthy):
            device = f"{model}-{d}"
            fails = d < failing
            fault = "A" if d % 2 == 0 else "B"
            for day in range(4, 40):
                left = 40.0 - day
                strength = max(0.0, 10 - left) / 2 if fails else 0.0
                row = {"device": device, "model": model, "time": T + day * DAY,
                       "life_end": T + 40 * DAY, "left_days": left, "failed": fails,
                       "fault_type": fault if fails else None}
                for metric in ("flow", "temp", "noise"):
                    hit = fails and metric == ("flow" if fault == "A" else "temp")
                    row[f"{metric}__level"] = rng.normal(0, 1) + (3 * strength if hit else 0)
                    row[f"{metric}__spread"] = rng.normal(0, 0.1) + (0.3 * strength if hit else 0)
                    row[f"{metric}__relation"] = rng.normal(0, 1)
                    row[f"{metric}__missing"] = 0.0
                out.append(row)
    return pd.DataFrame(out)


def test_the_predictor_ranks_failing_devices_explains_by_readings_and_names_the_fault() -> None:
    rows = synthetic_rows({"pump": 6, "monitor": 6})
    predictor, figures = fit_predictor(rows, PredictorSettings(horizon_days=7, cap_days=20))
    assert figures["cv_auc"] > 0.9 and figures["cv_fault_type_accuracy"] > 0.8
    # The band is calibrated on all rows: about the promised share falls inside it.
    assert abs(figures["cv_band_coverage"] - 0.8) < 0.1
    fresh = synthetic_rows({"pump": 2}, seed=7, healthy=2)
    latest = fresh[fresh["left_days"] == 3.0]  # failing devices 3 days out, healthy ones too
    got = predictor.assess(latest)
    failing = [a for a, fails in zip(got, latest["failed"], strict=True) if fails]
    healthy = [a for a, fails in zip(got, latest["failed"], strict=True) if not fails]
    assert min(a.probability for a in failing) > max(a.probability for a in healthy)
    assert all(a.rul_lower_days <= a.rul_days <= a.rul_upper_days for a in got)
    # Device 0 has fault A (flow), device 1 fault B (temp): the driver and the type say so.
    assert list(failing[0].drivers)[0] == "flow" and failing[0].fault_type == "A"
    assert list(failing[1].drivers)[0] == "temp" and failing[1].fault_type == "B"
    assert all("noise" not in a.drivers or abs(a.drivers["noise"]) < 1 for a in failing)
    assert not any(k.startswith(("model", "time", "left")) for a in got for k in a.drivers)


def test_a_model_with_few_failures_borrows_the_pooled_band_and_says_so() -> None:
    rows = synthetic_rows({"pump": 6, "mri": 1})
    predictor, figures = fit_predictor(rows, PredictorSettings(min_failures=3))
    assert figures["per_model"] == {"mri": {"failures": 1, "devices": 7},
                                    "pump": {"failures": 6, "devices": 12}}
    mri = predictor.assess(rows[(rows["model"] == "mri") & (rows["left_days"] == 2.0)])
    pump = predictor.assess(rows[(rows["model"] == "pump") & (rows["left_days"] == 2.0)])
    assert {a.basis["calibration"] for a in mri} == {"pooled"}
    assert {a.basis["model_failures"] for a in mri} == {1}
    assert {a.basis["calibration"] for a in pump} == {"own"}


def ct_rows(failing: int, *, seed: int, healthy: int) -> pd.DataFrame:
    """:func:`synthetic_rows` of a model whose readings no other model has."""
    rows = synthetic_rows({"ct": failing}, seed=seed, healthy=healthy)
    names = {"flow": "gantry", "temp": "anode", "noise": "tilt"}
    return rows.rename(columns=lambda c: names.get(c.split("__")[0], "") + "__" +
                       c.split("__")[1] if "__" in c else c)


def test_a_model_with_no_failures_gets_the_probability_every_model_shares() -> None:
    """The CT never failed in training, so nothing taught what its own readings mean; how far
    they moved from the device's baseline means the same on every model."""
    rows = pd.concat([synthetic_rows({"pump": 6}), ct_rows(0, seed=1, healthy=6)],
                     ignore_index=True)
    predictor, _ = fit_predictor(rows, PredictorSettings(min_failures=3))
    fresh = ct_rows(2, seed=7, healthy=4)
    latest = fresh[fresh["left_days"] == 3.0].reset_index(drop=True)
    got = predictor.assess(latest)
    assert {a.basis["probability"] for a in got} == {"shared"}
    failing = [a.probability for a, f in zip(got, latest["failed"], strict=True) if f]
    healthy = [a.probability for a, f in zip(got, latest["failed"], strict=True) if not f]
    assert min(failing) > 0.5 > 0.1 > max(healthy)
    # Without the shared regression, the pumps' own one sees nothing in the CT's readings.
    own = FailurePredictor.from_params({**predictor.to_params(), "shared_hazard": {}})
    assert max(a.probability for a in own.assess(latest)) < 0.2
    pump = predictor.assess(rows[(rows["model"] == "pump") & (rows["left_days"] == 2.0)])
    assert {a.basis["probability"] for a in pump} == {"own"}


def relation_ct(failing: int, *, seed: int, healthy: int) -> pd.DataFrame:
    """:func:`ct_rows` whose fault A shows in how the gantry relates to the other readings,
    not in its level or noise: a way no training failure showed."""
    rows = ct_rows(failing, seed=seed, healthy=healthy)
    rng = np.random.default_rng(seed + 100)
    hit = rows["failed"].to_numpy(dtype=bool) & (rows["fault_type"] == "A").to_numpy()
    strength = np.maximum(0.0, 10 - rows["left_days"].to_numpy(dtype=float)) / 2
    rows.loc[hit, "gantry__relation"] += 3 * strength[hit]
    rows.loc[hit, "gantry__level"] = rng.normal(0, 1, hit.sum())
    rows.loc[hit, "gantry__spread"] = rng.normal(0, 0.1, hit.sum())
    return rows


def test_the_shared_probability_reads_how_far_a_catalogue_fault_s_readings_moved() -> None:
    """Pumps failed with a reading's level and noise leaving their band, so the
    strongest-of-a-kind columns learned nothing of relations. A CT, which never failed in
    training, whose gantry (its fault A's reading, says the catalogue) leaves its relation:
    how far a fault's readings moved, in healthy spreads, was learned from the pumps."""
    catalogue = parse({model: {"A": {"fault": "a", "readings": [a]},
                               "B": {"fault": "b", "readings": [b]}}
                       for model, a, b in (("pump", "flow", "temp"), ("ct", "gantry", "anode"))})
    rows = pd.concat([synthetic_rows({"pump": 6}), ct_rows(0, seed=1, healthy=6)],
                     ignore_index=True)
    settings = PredictorSettings(min_failures=3)
    with_catalogue, _ = fit_predictor(rows, settings, catalogue=catalogue)
    alone, _ = fit_predictor(rows, settings)
    fresh = relation_ct(2, seed=7, healthy=4)
    near = fresh[fresh["left_days"].isin([1.0, 2.0, 3.0])].reset_index(drop=True)
    failing = (near["fault_type"] == "A").to_numpy()
    healthy = ~near["failed"].to_numpy(dtype=bool)
    for predictor, ranked in ((with_catalogue, True), (alone, False)):
        got = predictor.assess(near)
        assert {a.basis["probability"] for a in got} == {"shared"}
        p = np.array([a.probability for a in got])
        assert bool(p[failing].min() > p[healthy].max()) is ranked
    stored = json.loads(json.dumps(with_catalogue.to_params()))
    assert stored["shared_hazard"]["inputs"] == "evidence"
    assert FailurePredictor.from_params(stored).assess(near) == with_catalogue.assess(near)


def test_plain_parameters_rebuild_the_same_predictor() -> None:
    rows = synthetic_rows({"pump": 4})
    predictor, _ = fit_predictor(rows)
    stored = json.loads(json.dumps(predictor.to_params(), allow_nan=False))
    assert stored["hazard"]["coef"] and stored["fault_classifiers"]["pump"]["classes"] == ["A", "B"]
    again = FailurePredictor.from_params(stored)
    sample = rows[rows["left_days"] <= 5]
    assert again.assess(sample) == predictor.assess(sample)
    with pytest.raises(ValueError):
        FailurePredictor.from_params({**stored, "class": "os.system"})


def test_a_long_lifes_baseline_slides_so_a_slow_benign_drift_stays_small() -> None:
    """Flow drifts by 1 a day for 80 days: against the life's first days the last window would
    be 80 units off; against a baseline at most 30 days back, about 30."""
    frame = steps(80)
    frame["flow"] += np.arange(len(frame)) / 144.0
    life = Life("d", "pump", T, T + 80 * DAY, False)
    sliding = life_rows(frame, life, step=timedelta(minutes=10),
                        settings=RowSettings(baseline_lag_days=30))
    fixed = life_rows(frame, life, step=timedelta(minutes=10),
                      settings=RowSettings(baseline_lag_days=1000))
    assert sliding["flow__level"].iloc[-1] < 0.5 * fixed["flow__level"].iloc[-1]
    assert sliding["flow__level"].iloc[:20].equals(fixed["flow__level"].iloc[:20])


def test_a_reading_the_device_does_not_have_never_drives_its_prediction() -> None:
    rows = synthetic_rows({"pump": 6})
    rows["pressure__level"] = np.where(rows["failed"], 3.0, 0.0)
    for kind in ("spread", "relation", "missing"):
        rows[f"pressure__{kind}"] = 0.0
    other = synthetic_rows({"monitor": 6}, seed=3)  # monitors have no pressure reading
    predictor, _ = fit_predictor(pd.concat([rows, other], ignore_index=True))
    monitors = other[other["left_days"] == 2.0]
    assert all("pressure" not in a.drivers for a in predictor.assess(monitors))
    pumps = rows[rows["failed"] & (rows["left_days"] == 2.0)]
    assert any("pressure" in a.drivers for a in predictor.assess(pumps))


def test_a_fault_type_of_several_models_is_named_on_a_model_never_seen_with_it() -> None:
    """Fault B (the shared temp reading rises) failed pumps and monitors; vents only ever
    failed of fault A. A vent whose temp rises has B, which only the shared readings tell."""
    rows = synthetic_rows({"pump": 6, "monitor": 6, "vent": 6})
    odd = rows["device"].str.startswith("vent-") & rows["device"].str[-1].isin(list("135"))
    rows = rows[~odd].reset_index(drop=True)
    predictor, _ = fit_predictor(rows)
    assert predictor.fault_models["vent"] == ["A"]
    fresh = synthetic_rows({"vent": 2}, seed=7, healthy=0)
    latest = fresh[fresh["left_days"] == 2.0]
    assert predictor.fault_type(latest) == ["A", "B"]


def test_a_stuck_sensor_reads_as_missing_not_as_a_reading_without_noise() -> None:
    baseline = baseline_of(steps(3, seed=1))
    window = steps(1, seed=2)
    window.iloc[60:, window.columns.get_loc("flow")] = window["flow"].iloc[60]
    got = window_features(baseline, window)
    # The frozen flow's steps are missing; the rest of the day reads as usual.
    assert got["flow__missing"] == pytest.approx(83 / 144, abs=0.01)
    assert abs(got["flow__spread"]) < 0.5 and abs(got["current__relation"]) < 3


def test_the_catalogue_names_a_fault_the_fleet_never_saw_on_the_model_from_its_readings() -> None:
    """Pumps only ever failed of fault A (flow): learned alone, a pump whose temp rises is A.
    The catalogue says fault B shows in temp, so that pump is named B, and a flow pump A."""
    rows = synthetic_rows({"pump": 6})
    rows = rows[~rows["device"].str[-1].isin(list("135"))].reset_index(drop=True)
    catalogue = parse({"pump": {"A": {"fault": "a", "readings": ["flow"]},
                                "B": {"fault": "b", "readings": ["temp"]}}})
    alone, _ = fit_predictor(rows)
    both, figures = fit_predictor(rows, catalogue=catalogue)
    fresh = synthetic_rows({"pump": 2}, seed=7, healthy=0)
    latest = fresh[fresh["left_days"] == 2.0]
    assert alone.fault_type(latest) == ["A", "A"]
    assert both.fault_type(latest) == ["A", "B"]
    assert figures["cv_fault_type_accuracy"] == 1.0
    again = FailurePredictor.from_params(json.loads(json.dumps(both.to_params())))
    assert again.catalogue == catalogue and again.fault_type(latest) == ["A", "B"]
    # A model the catalogue does not know keeps what was learned.
    assert both.fault_type(latest.assign(model="vent")) == alone.fault_type(
        latest.assign(model="vent"))
