"""`vigil bench prediction`: the failure predictor trained on one simulated fleet, judged on
another.

Both fleets are the simulator's realistic ones (``--train-seed``, ``--eval-seed``); their
readings are resampled to ``--every-min`` and cut into lives at the ground truth's failures
and repairs, as the jobs cut them from failure codes and repair tickets. Every day of every
device in the evaluation fleet is predicted as the ``failure_prediction`` job would have
predicted it then. Sudden failures (no precursor, labelled so by the simulator) are left out
of the figures and reported apart: no method should claim to foresee them.

Figures on the evaluation fleet: Brier score and AUC of P(failure within the horizon) on
days whose outcome is known, the band's coverage on days whose capped remaining life is
known, the fault type's accuracy on days within the horizon of a failure, and the rate of
predicting rows.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from analytics.prediction.failure import (
    PredictorSettings,
    auc,
    capped_target,
    fit_predictor,
    horizon_outcome,
)
from analytics.prediction.lives import Failure, RowSettings, device_rows, lives
from analytics.prediction.metrics import brier_score, interval_coverage

DAY_MS = 86_400_000


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=int, default=120)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--every-min", type=int, default=30, help="reading and step interval")
    parser.add_argument("--fault-fraction", type=float, default=0.3)
    parser.add_argument("--train-seed", type=int, default=1)
    parser.add_argument("--eval-seed", type=int, default=2)
    parser.add_argument("--horizon-days", type=float, default=7.0)
    parser.set_defaults(_run=run)


def fleet_rows(*, devices: int, days: int, seed: int, every_min: int, fault_fraction: float,
               settings: RowSettings) -> tuple[pd.DataFrame, set[tuple[str, datetime]]]:
    """The fleet's rows, and the (device, failure time) of its sudden failures."""
    from edge_agent.simulator.plain_rule import device_samples
    from edge_agent.simulator.scenario import plan_scenario

    end_ms = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
    start_ms = end_ms - days * DAY_MS
    scenario = plan_scenario(devices, seed=seed, start_ms=start_ms, end_ms=end_ms,
                             fault_fraction=fault_fraction)
    step = timedelta(minutes=every_min)
    parts, sudden = [], set()
    for spec in scenario.specs:
        samples = device_samples(spec, seed, start_ms, end_ms, every_min * 60_000)
        frame = pd.DataFrame([m for _, m in samples], index=pd.DatetimeIndex(
            [pd.Timestamp(t, unit="ms", tz="UTC") for t, _ in samples]))
        failures = [Failure(spec.device_id, _at(f.failure_ms), f.fault_type) for f in spec.faults]
        repairs = [_at(f.repaired_ms) for f in spec.faults if f.repaired_ms is not None]
        sudden |= {(spec.device_id, _at(f.failure_ms)) for f in spec.faults if not f.predictable}
        cut = lives(spec.device_id, spec.model, start=_at(start_ms), end=_at(end_ms),
                    failures=failures, repairs=repairs)
        rows = device_rows(frame, cut, step=step, settings=settings)
        if not rows.empty:
            parts.append(rows)
    return pd.concat(parts, ignore_index=True), sudden


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _is_sudden(rows: pd.DataFrame, sudden: set[tuple[str, datetime]]) -> np.ndarray:
    return np.array([bool(f) and (d, pd.Timestamp(e).to_pydatetime()) in sudden
                     for d, e, f in zip(rows["device"], rows["life_end"], rows["failed"],
                                        strict=True)])


def run(args: argparse.Namespace) -> int:
    cut = RowSettings()
    settings = PredictorSettings(horizon_days=args.horizon_days)
    common = {"devices": args.devices, "days": args.days, "every_min": args.every_min,
              "fault_fraction": args.fault_fraction, "settings": cut}
    started = time.perf_counter()
    # Trained as the job trains: nobody knows which failures were sudden.
    train, _ = fleet_rows(seed=args.train_seed, **common)
    predictor, cv = fit_predictor(train, settings)
    print(f"trained on seed {args.train_seed}: {cv['rows']} rows, {cv['devices']} devices, "
          f"{cv['failures']} failures, in {time.perf_counter() - started:.0f} s")
    print(f"  cross-validated on held-out devices: Brier {cv['cv_brier']:.4f}, "
          f"AUC {cv['cv_auc']:.3f}, band coverage {cv['cv_band_coverage']:.3f} "
          f"(target {settings.coverage}), fault type {cv['cv_fault_type_accuracy']:.3f}")

    test, test_sudden = fleet_rows(seed=args.eval_seed, **common)
    is_sudden = _is_sudden(test, test_sudden)
    began = time.process_time()
    assessed = predictor.assess(test)
    cpu = time.process_time() - began
    probability = np.array([a.probability for a in assessed])
    lower = np.array([a.rul_lower_days for a in assessed])
    upper = np.array([a.rul_upper_days for a in assessed])
    faults = [a.fault_type for a in assessed]
    outcome = horizon_outcome(test, settings.horizon_days)
    target = capped_target(test, settings.cap_days)
    keep = ~is_sudden
    decided = keep & np.isfinite(outcome)
    known = keep & np.isfinite(target)
    near = keep & (outcome == 1)
    sudden_days = is_sudden & (outcome == 1)
    figures: dict[str, Any] = {
        "train_seed": args.train_seed, "eval_seed": args.eval_seed,
        "rows": int(len(test)), "devices": int(test["device"].nunique()),
        "brier": brier_score(outcome[decided], probability[decided]),
        "base_rate": float(np.mean(outcome[decided])),
        "auc": auc(outcome[decided], probability[decided]),
        "band_coverage": interval_coverage(target[known], lower[known], upper[known]),
        "fault_type_accuracy": float(np.mean([faults[i] == test["fault_type"].iloc[i]
                                              for i in np.flatnonzero(near)]))
        if near.any() else None,
        "sudden_days_mean_probability": float(np.mean(probability[sudden_days]))
        if sudden_days.any() else None,
        "healthy_days_mean_probability": float(np.mean(probability[decided & (outcome == 0)])),
        "failing_days_mean_probability": float(np.mean(probability[near]))
        if near.any() else None,
        "rows_per_cpu_s": len(test) / cpu if cpu > 0 else None,
        "settings": asdict(settings), "cv": {k: v for k, v in cv.items() if k != "per_model"},
    }
    print(f"evaluated on seed {args.eval_seed}: {figures['rows']} device-days, "
          f"{figures['devices']} devices")
    print(f"  P(failure within {settings.horizon_days:g} d): Brier {figures['brier']:.4f} "
          f"(base rate {figures['base_rate']:.3f}), AUC {figures['auc']:.3f}")
    print(f"  mean probability: {figures['failing_days_mean_probability']:.3f} in the last "
          f"{settings.horizon_days:g} days before a predictable failure, "
          f"{figures['healthy_days_mean_probability']:.3f} otherwise")
    print(f"  band coverage {figures['band_coverage']:.3f} (target {settings.coverage}); "
          f"fault type right on {figures['fault_type_accuracy']:.3f} of the failing days")
    print(f"  {figures['rows_per_cpu_s']:.0f} device-days predicted per CPU second "
          "(features computed before)")
    print(json.dumps(figures, default=str))
    return 0
