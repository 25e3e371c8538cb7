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

The top of the ranking, as a ticket rule would use it (:func:`alarm_figures`): an alarm is a
day whose probability reaches a threshold ``t``; a run of alarm days on one device is one
alarm, *false* if it starts outside a fault's way from onset to failure. ``t`` is the lowest
threshold whose false alarms stay within ``--false-per-100`` per 100 device-days; at it, the
share of predictable failures alarmed at least 24 h ahead (an alarm day between the fault's
onset and a day before the failure), the median lead of their first alarm, and the fault
type named on that first alarm.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from analytics.prediction.catalogue import shipped_catalogue
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
    parser.add_argument("--no-catalogue", action="store_true",
                        help="name the fault type by what was learned alone, without the "
                             "fault catalogue")
    parser.add_argument("--false-per-100", type=float, default=0.5,
                        help="false alarms allowed per 100 device-days at the alarm threshold")
    parser.set_defaults(_run=run)


@dataclass(frozen=True)
class FaultTruth:
    """What the simulator planned for one failure: when its precursor began, and if it had one."""

    onset: datetime
    predictable: bool
    fault_type: str


def fleet_rows(*, devices: int, days: int, seed: int, every_min: int, fault_fraction: float,
               settings: RowSettings
               ) -> tuple[pd.DataFrame, dict[tuple[str, datetime], FaultTruth]]:
    """The fleet's rows, and the ground truth of each failure by (device, failure time)."""
    from edge_agent.simulator.physics import FAILURE_CODES
    from edge_agent.simulator.plain_rule import device_samples
    from edge_agent.simulator.scenario import plan_scenario

    end_ms = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
    start_ms = end_ms - days * DAY_MS
    scenario = plan_scenario(devices, seed=seed, start_ms=start_ms, end_ms=end_ms,
                             fault_fraction=fault_fraction)
    step = timedelta(minutes=every_min)
    parts, truth = [], {}
    for spec in scenario.specs:
        samples = device_samples(spec, seed, start_ms, end_ms, every_min * 60_000)
        frame = pd.DataFrame([m for _, m in samples], index=pd.DatetimeIndex(
            [pd.Timestamp(t, unit="ms", tz="UTC") for t, _ in samples]))
        # Labelled as the platform labels them: by the failure code the device raised.
        failures = [Failure(spec.device_id, _at(f.failure_ms), FAILURE_CODES[f.fault_type])
                    for f in spec.faults]
        repairs = [_at(f.repaired_ms) for f in spec.faults if f.repaired_ms is not None]
        truth.update({(spec.device_id, _at(f.failure_ms)): FaultTruth(
            _at(f.onset_ms), f.predictable, FAILURE_CODES[f.fault_type]) for f in spec.faults})
        cut = lives(spec.device_id, spec.model, start=_at(start_ms), end=_at(end_ms),
                    failures=failures, repairs=repairs)
        rows = device_rows(frame, cut, step=step, settings=settings)
        if not rows.empty:
            parts.append(rows)
    return pd.concat(parts, ignore_index=True), truth


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _truth_of(rows: pd.DataFrame, truth: dict[tuple[str, datetime], FaultTruth]
              ) -> list[FaultTruth | None]:
    """Each row's failure's ground truth; None in a censored life."""
    return [truth.get((d, pd.Timestamp(e).to_pydatetime())) if f else None
            for d, e, f in zip(rows["device"], rows["life_end"], rows["failed"], strict=True)]


def alarm_figures(rows: pd.DataFrame, probability: np.ndarray, faults: Sequence[str | None],
                  truth: dict[tuple[str, datetime], FaultTruth], *, false_per_100: float,
                  every_days: float, ahead_days: float = 1.0) -> dict[str, Any]:
    """The top of the ranking at the lowest threshold within ``false_per_100`` false alarms.

    ``rows``: one per device every ``every_days`` (device-days are their count times it).
    """
    of = _truth_of(rows, truth)
    times = pd.to_datetime(rows["time"], utc=True)
    # A day is in a fault's way when it lies between the fault's onset and its failure.
    during = np.array([t is not None and at >= pd.Timestamp(t.onset)
                       for t, at in zip(of, times, strict=True)])
    life = rows["device"].astype(str) + "|" + rows["life_end"].astype(str)
    order = np.lexsort((times.to_numpy(), life.to_numpy()))
    previous = np.full(len(rows), -1)
    same = life.to_numpy()[order][1:] == life.to_numpy()[order][:-1]
    previous[order[1:][same]] = order[:-1][same]
    device_days = len(rows) * every_days

    def false_rate(threshold: float) -> float:
        alarm = probability >= threshold
        starts = alarm & ~np.where(previous >= 0, alarm[np.maximum(previous, 0)], False)
        return 100.0 * float(np.sum(starts & ~during)) / device_days

    candidates = np.unique(probability)[::-1]
    threshold = float(candidates[0]) + 1e-12 if len(candidates) else 1.0
    # Down from the top: the lowest threshold before the false alarms first exceed the limit.
    for t in candidates:
        if false_rate(float(t)) > false_per_100:
            break
        threshold = float(t)
    alarm = probability >= threshold
    left = rows["left_days"].to_numpy(dtype=float)
    leads: list[float] = []
    typed: list[bool] = []
    failures = {(d, e) for (d, e), t in zip(zip(rows["device"], rows["life_end"], strict=True),
                                            of, strict=True) if t is not None and t.predictable}
    for device, end in failures:
        mine = np.flatnonzero((rows["device"].to_numpy() == device)
                              & (rows["life_end"].to_numpy() == end) & during & alarm)
        if not len(mine) or left[mine].max() < ahead_days:
            continue
        first = mine[np.argmax(left[mine])]
        leads.append(float(left[first]) * 24.0)
        fault = of[first]
        typed.append(fault is not None and faults[first] == fault.fault_type)
    return {
        "alarm_threshold": threshold,
        "alarm_false_per_100_device_days": false_rate(threshold),
        "alarmed_24h_share": len(leads) / len(failures) if failures else None,
        "alarm_median_lead_h": float(np.median(leads)) if leads else None,
        "alarm_fault_type_accuracy": float(np.mean(typed)) if typed else None,
        "predictable_failures": len(failures),
    }


def run(args: argparse.Namespace) -> int:
    cut = RowSettings()
    settings = PredictorSettings(horizon_days=args.horizon_days)
    common = {"devices": args.devices, "days": args.days, "every_min": args.every_min,
              "fault_fraction": args.fault_fraction, "settings": cut}
    started = time.perf_counter()
    # Trained as the job trains: nobody knows which failures were sudden.
    train, _ = fleet_rows(seed=args.train_seed, **common)
    predictor, cv = fit_predictor(
        train, settings, catalogue=None if args.no_catalogue else shipped_catalogue())
    print(f"trained on seed {args.train_seed}: {cv['rows']} rows, {cv['devices']} devices, "
          f"{cv['failures']} failures, in {time.perf_counter() - started:.0f} s")
    print(f"  cross-validated on held-out devices: Brier {cv['cv_brier']:.4f}, "
          f"AUC {cv['cv_auc']:.3f}, band coverage {cv['cv_band_coverage']:.3f} "
          f"(target {settings.coverage}), fault type {cv['cv_fault_type_accuracy']:.3f}")

    test, truth = fleet_rows(seed=args.eval_seed, **common)
    is_sudden = np.array([t is not None and not t.predictable for t in _truth_of(test, truth)])
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
        **alarm_figures(test, probability, faults, truth, false_per_100=args.false_per_100,
                        every_days=cut.row_every_days),
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
    lead = figures["alarm_median_lead_h"]
    print(f"  alarm at P >= {figures['alarm_threshold']:.3f} "
          f"({figures['alarm_false_per_100_device_days']:.2f} false alarms per 100 device-days, "
          f"limit {args.false_per_100:g}): {figures['alarmed_24h_share']:.3f} of "
          f"{figures['predictable_failures']} predictable failures alarmed >= 24 h ahead, "
          f"median lead {'-' if lead is None else f'{lead:.0f} h'}, fault type right on "
          f"{figures['alarm_fault_type_accuracy'] or 0.0:.3f} of their first alarms")
    print(f"  {figures['rows_per_cpu_s']:.0f} device-days predicted per CPU second "
          "(features computed before)")
    print(json.dumps(figures, default=str))
    return 0
