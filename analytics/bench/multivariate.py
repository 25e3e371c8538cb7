"""`vigil bench multivariate`: the multivariate detector fitted on one simulated fleet, judged
on another.

Both fleets are the simulator's realistic ones (``--train-seed``, ``--eval-seed``), read at
``--every-min`` (the scoring step). Per device model, each detector learns the training
fleet's healthy rows: outside every fault's way (from its onset to its repair) and every
maintenance window, as the retraining job cuts them from tickets and maintenance; sensor
glitches and site episodes stay in, as they do in real history. Then every step of the
evaluation fleet is rated, the windowed detector by the window ending at that step.

Figures per detector: the ROC AUC of the anomaly score for steps in the ``--days-before``
days before a predictable failure (sudden ones have nothing to see) against healthy steps,
and the share of healthy steps flagged at the detector's threshold, over all healthy steps
and over quiet ones (healthy, and no sensor glitch or site episode either).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from analytics.multivariate import DEVICE, MultivariateDetector, WindowDetector

DAY_MS = 86_400_000


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=int, default=120)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--every-min", type=int, default=5, help="reading and step interval")
    parser.add_argument("--fault-fraction", type=float, default=0.3)
    parser.add_argument("--train-seed", type=int, default=1)
    parser.add_argument("--eval-seed", type=int, default=2)
    parser.add_argument("--window", type=int, default=WindowDetector().window,
                        help="steps per window of the windowed detector")
    parser.add_argument("--days-before", type=float, default=7.0)
    parser.set_defaults(_run=run)


def simulate(*, devices: int, days: int, seed: int, every_min: int, fault_fraction: float
             ) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Readings per device model (a ``device`` column, rows per device in time order), and
    the ground truth."""
    from edge_agent.simulator.plain_rule import device_samples
    from edge_agent.simulator.scenario import ground_truth, plan_scenario

    end_ms = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
    scenario = plan_scenario(devices, seed=seed, start_ms=end_ms - days * DAY_MS, end_ms=end_ms,
                             fault_fraction=fault_fraction)
    parts: dict[str, list[pd.DataFrame]] = {}
    for spec in scenario.specs:
        samples = device_samples(spec, seed, scenario.start_ms, end_ms, every_min * 60_000)
        frame = pd.DataFrame([m for _, m in samples], index=pd.to_datetime(
            [t for t, _ in samples], unit="ms", utc=True)).assign(**{DEVICE: spec.device_id})
        parts.setdefault(spec.model, []).append(frame)
    return {model: pd.concat(frames) for model, frames in parts.items()}, ground_truth(scenario)


def labels(frame: pd.DataFrame, truth: dict[str, Any], *, days_before: float
           ) -> pd.DataFrame:
    """Per row: ``healthy``, ``quiet`` (healthy and no glitch or site episode), ``before``
    (within ``days_before`` of a predictable failure)."""
    t = frame.index.as_unit("ms").asi8
    device = frame[DEVICE].to_numpy()
    out = pd.DataFrame({"healthy": True, "quiet": True, "before": False}, index=range(len(t)))
    sites = {d["device"]: d["site"] for d in truth["devices"]}

    def inside(rows: np.ndarray, start: int, end: int) -> np.ndarray:
        return rows & (t >= start) & (t < end)

    for f in truth["faults"]:
        rows = device == f["device"]
        end = f["repaired_ms"] or truth["end_ms"]
        out.loc[inside(rows, int(f["onset_ms"]), int(end)), ["healthy", "quiet"]] = False
        if f["predictable"]:
            failure = int(f["failure_ms"])
            out.loc[inside(rows, failure - int(days_before * DAY_MS), failure), "before"] = True
    for w in truth["maintenance"]:
        rows = device == w["device"]
        out.loc[inside(rows, w["start_ms"], w["end_ms"]), ["healthy", "quiet", "before"]] = False
    for g in truth["glitches"]:
        out.loc[inside(device == g["device"], g["start_ms"], g["end_ms"]), "quiet"] = False
    for e in truth["site_episodes"]:
        rows = np.isin(device, [d for d, s in sites.items() if s == e["site"]])
        out.loc[inside(rows, e["start_ms"], e["end_ms"]), "quiet"] = False
    return out


def run(args: argparse.Namespace) -> int:
    started = time.process_time()
    common = {"devices": args.devices, "days": args.days, "every_min": args.every_min,
              "fault_fraction": args.fault_fraction}
    train, train_truth = simulate(seed=args.train_seed, **common)
    test, test_truth = simulate(seed=args.eval_seed, **common)
    names = ("single_row", "windowed")
    scores: dict[str, list[np.ndarray]] = {name: [] for name in names}
    flags: dict[str, list[np.ndarray]] = {name: [] for name in names}
    marks = []
    for model in sorted(train):
        fit_rows = train[model][labels(train[model], train_truth,
                                       days_before=args.days_before)["healthy"].to_numpy()]
        rows = test[model]
        metrics = [c for c in fit_rows.columns if c != DEVICE]
        marks.append(labels(rows, test_truth, days_before=args.days_before))
        single = MultivariateDetector().fit(fit_rows[metrics])
        scores["single_row"].append(single.anomaly_score(rows.reindex(columns=metrics)))
        flags["single_row"].append(single.predict(rows.reindex(columns=metrics)) == -1)
        windowed = WindowDetector(window=args.window).fit(fit_rows)
        scores["windowed"].append(windowed.anomaly_score(rows))
        flags["windowed"].append(windowed.predict(rows) == -1)
        print(f"{model}: {len(fit_rows)} training rows, {len(rows)} rated", flush=True)
    mark = pd.concat(marks, ignore_index=True)
    healthy, quiet, before = (mark[c].to_numpy() for c in ("healthy", "quiet", "before"))
    judged = healthy | before
    result: dict[str, Any] = {"bench": "multivariate", "train_seed": args.train_seed,
                              "eval_seed": args.eval_seed, "devices": args.devices,
                              "days": args.days, "every_min": args.every_min,
                              "window": args.window, "before_steps": int(before.sum()),
                              "healthy_steps": int((healthy & ~before).sum())}
    for name in names:
        anomaly, flagged = np.concatenate(scores[name]), np.concatenate(flags[name])
        figures = {
            "auc_before_failure": round(float(roc_auc_score(before[judged],
                                                            anomaly[judged])), 3),
            "healthy_flag_rate": round(float(flagged[healthy & ~before].mean()), 4),
            "quiet_flag_rate": round(float(flagged[quiet & ~before].mean()), 4),
            "before_flag_rate": round(float(flagged[before].mean()), 4)}
        result[name] = figures
        print(f"{name}: {figures}")
    result["cpu_s"] = round(time.process_time() - started, 1)
    result["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result))
    return 0
