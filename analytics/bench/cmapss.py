"""Failure prediction on NASA C-MAPSS FD001: settings chosen by cross-validation, test figures.

Settings (window, drift baseline, RUL cap) are chosen by cross-validation on
the training engines, grouped by engine so no engine is on both sides of a
split. The test engines are predicted once at the end, at their last cycle,
against the published true remaining life: RMSE, the PHM08 score, the
coverage of the uncertainty band and the Brier score of the probability of
failure within the horizon.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared/datasets/cmapss"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="folder of the C-MAPSS files"
    )
    parser.add_argument("--subset", default="FD001", help="C-MAPSS subset name (default FD001)")
    parser.add_argument("--train", type=Path, help="training file (default: DATA/train_SUBSET.txt)")
    parser.add_argument("--test", type=Path, help="test file (default: DATA/test_SUBSET.txt)")
    parser.add_argument("--rul", type=Path, help="true remaining cycles of the test engines "
                        "(default: DATA/RUL_SUBSET.txt)")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds, by engine")
    parser.add_argument(
        "--horizon", type=float, default=30.0, help="cycles for the probability of failure"
    )
    parser.add_argument(
        "--quick", action="store_true", help="one candidate setting and a smaller ensemble"
    )
    parser.add_argument("--n-jobs", type=int, default=1, help="threads for model fitting")
    parser.add_argument("--seed", type=int, default=0)


def _grid(quick: bool) -> list[dict[str, float]]:
    if quick:
        return [{"window": 30, "baseline": 10, "cap": 125}]
    windows, baselines, caps = (20, 30), (0, 10), (115, 125, 135)
    return [
        {"window": w, "baseline": b, "cap": c}
        for w, b, c in itertools.product(windows, baselines, caps)
    ]


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from sklearn.model_selection import GroupKFold

    from analytics.prediction import metrics
    from analytics.prediction.cmapss import CYCLE, SETTINGS, UNIT, load_files, subset_files
    from analytics.prediction.features import rul_from_failures
    from analytics.prediction.rul import RULRegressor

    started = time.monotonic()
    defaults = subset_files(args.data, args.subset)
    files = [given or default for given, default in zip((args.train, args.test, args.rul), defaults)]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise SystemExit(f"C-MAPSS file not found: {', '.join(missing)}")
    data = load_files(*files)
    train, test = data.train, data.test
    print(
        f"{args.subset}: {train[UNIT].nunique()} training engines ({len(train)} cycles), "
        f"{test[UNIT].nunique()} test engines ({len(test)} cycles)",
        flush=True,
    )
    rul = rul_from_failures(train, UNIT, CYCLE)
    units = train[UNIT].to_numpy()
    base = dict(
        unit=UNIT, time=CYCLE, settings=SETTINGS, n_jobs=args.n_jobs, random_state=args.seed
    )
    splits = list(GroupKFold(args.folds).split(train, rul, units))
    horizon = RULRegressor().eval_horizon

    print(
        f"choosing settings: {args.folds}-fold CV grouped by engine, one boosted model, "
        f"RMSE on cycles within {horizon:.0f} of failure",
        flush=True,
    )
    results = []
    for candidate in _grid(args.quick):
        model = RULRegressor(**base, **candidate, n_boosting=1, calibration_folds=0)
        squared = []
        for fit_rows, held_rows in splits:
            model.fit(train.iloc[fit_rows], rul[fit_rows])
            near = rul[held_rows] <= horizon
            predicted = model.predict(train.iloc[held_rows])
            squared.append((predicted[near] - rul[held_rows][near]) ** 2)
        cv = float(np.sqrt(np.mean(np.concatenate(squared))))
        results.append((cv, candidate))
        print(f"  window={candidate['window']:>2} baseline={candidate['baseline']:>2} "
              f"cap={candidate['cap']:>3}  CV RMSE {cv:6.2f}", flush=True)
    grid_cv, best = min(results, key=lambda r: r[0])
    print(f"chosen: {best} (CV RMSE {grid_cv:.2f})", flush=True)

    ensemble = dict(n_boosting=1, forest_trees=0) if args.quick else dict(n_boosting=3)
    print(f"fitting the final ensemble {ensemble} with out-of-fold calibration", flush=True)
    final = RULRegressor(**base, **best, **ensemble, calibration_folds=args.folds)
    final.fit(train, rul)
    print(f"ensemble CV RMSE {final.cv_rmse_:.2f}", flush=True)

    assessment = final.assess(test, horizon=args.horizon)
    test_units = np.sort(test[UNIT].unique())
    truth = data.test_rul[np.searchsorted(test_units, assessment.index.to_numpy())]
    predicted = assessment["rul"].to_numpy()
    failed = truth <= args.horizon
    figures = {
        "bench": "cmapss",
        "subset": args.subset,
        "test_rmse": round(metrics.rmse(truth, predicted), 3),
        "phm08": round(metrics.phm08_score(truth, predicted), 1),
        "cv_rmse": round(float(final.cv_rmse_), 3),
        "grid_cv_rmse": round(grid_cv, 3),
        "band_coverage": round(
            metrics.interval_coverage(truth, assessment["rul_lower"], assessment["rul_upper"]), 3
        ),
        "band_nominal": final.coverage,
        "band_mean_width": round(
            float(np.mean(assessment["rul_upper"] - assessment["rul_lower"])), 1
        ),
        "brier": round(metrics.brier_score(failed, assessment["p_failure"]), 4),
        "brier_base_rate": round(
            metrics.brier_score(failed, np.full(len(truth), failed.mean())), 4
        ),
        "horizon": args.horizon,
        "window": best["window"],
        "baseline": best["baseline"],
        "cap": best["cap"],
        "seconds": round(time.monotonic() - started, 1),
    }

    contributions = final.explain(test, latest=True)
    drivers = contributions.abs().mean().sort_values(ascending=False).head(5)
    print("readings that moved test predictions most (mean |contribution|, cycles):")
    for name, value in drivers.items():
        print(f"  {name:<10} {value:6.2f}")
    print(
        f"test: RMSE {figures['test_rmse']:.2f}, PHM08 score {figures['phm08']:.0f}, "
        f"{final.coverage:.0%} band covers {figures['band_coverage']:.0%} "
        f"(mean width {figures['band_mean_width']:.0f} cycles), "
        f"Brier P(fail within {args.horizon:.0f}) {figures['brier']:.3f} "
        f"(base rate {figures['brier_base_rate']:.3f})"
    )
    print(json.dumps(figures))
    return 0
