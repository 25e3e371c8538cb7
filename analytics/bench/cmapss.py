"""Failure prediction on NASA C-MAPSS FD001: every setting accounted for, test figures last.

Every hyper-parameter of the model is either chosen here by cross-validation
on the training engines, grouped by engine so no engine is on both sides of a
split, or fixed with its reason (``FIXED``, printed at the start). The
cross-validation figures are printed first; the test engines are predicted
once, at the end, at their last cycle, against the published true remaining
life: RMSE, the PHM08 score, the coverage of the uncertainty band and the
Brier score of the probability of failure within the horizon, over all test
engines and over those far from failure (more than ``FAR`` cycles left).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared/datasets/cmapss"

FAR = 100  # cycles left above which an engine counts as far from failure

# Stage 1, chosen jointly: the feature window, the drift baseline, the RUL cap.
STAGE1 = {"window": (20, 30), "baseline": (0, 10), "cap": (125, 135, 145)}
# Stage 2, one at a time around stage 1's choice (the default first).
STAGE2: dict[str, tuple[Any, ...]] = {
    "ewm_alpha": (0.1, 0.05, 0.2),
    "min_samples_leaf": (50, 20, 100),
    "max_leaf_nodes": (15, 7, 31),
    "boosting": ((0.05, 300), (0.1, 150)),  # (learning_rate, max_iter): same budget
}
# Calibration bins, chosen on the chosen setting's out-of-fold predictions.
BINS = (5, 10, 20, 40)

# Settings not searched, each with its reason.
FIXED: dict[str, tuple[Any, str]] = {
    "coverage": (0.9, "the band's nominal coverage is a requirement, not a model choice"),
    "eval_horizon": (150.0, "defines the CV criterion, not the model: RMSE over cycles "
                     "within 150 of failure, where a prediction steers maintenance; "
                     "farther out a capped prediction is wrong by design"),
    "n_boosting": (3, "members differ only by seed and feature subsampling: more lowers "
                   "variance, never bias; 3 is what two shared cores allow in minutes"),
    "forest_trees": (0, "an extra-trees member did not lower the grouped-CV RMSE "
                     "(13.37 against 13.12 for three boosted models, earlier run)"),
    "calibration_folds": (5, "the same grouped 5-fold split as the search"),
    "n_conditions": ("auto", "found by a k-means tightness rule; FD001 runs in one "
                     "operating condition"),
    "random_state": (0, "a seed; the ensemble averages three"),
}
# Constants inside the model, not parameters of RULRegressor, and why.
BUILT_IN: dict[str, str] = {
    "members' max_features 0.7": "decorrelates the averaged boosted models (1.0 for one model)",
    "early_stopping off": "a fixed number of iterations, searched above, keeps folds comparable",
    "sensor kept if > 2 levels": "constant and two-level sensors carry no wear trend",
    "condition tightness 0.01": "k-means clusters count as conditions only if the settings "
                                "sit on them (1 % of the variance left)",
    "engine age as a feature": "the only reading of time in service",
}


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
        "--quick", action="store_true",
        help="no search: the defaults of RULRegressor, one boosted model",
    )
    parser.add_argument("--n-jobs", type=int, default=1, help="threads for model fitting")


def interval_score(truth: Any, lower: Any, upper: Any, coverage: float) -> float:
    """Mean Winkler interval score: width plus 2/alpha times any miss. Lower is better.

    A proper score for a central interval: it rewards narrow bands only as
    long as they hold the truth as often as they claim.
    """
    import numpy as np

    t, lo, hi = (np.asarray(v, dtype=float) for v in (truth, lower, upper))
    alpha = 1.0 - coverage
    miss = np.maximum(lo - t, 0.0) + np.maximum(t - hi, 0.0)
    return float(np.mean(hi - lo + 2.0 / alpha * miss))


def cross_fitted_calibration(
    predicted: Any, truth: Any, splits: Sequence[tuple[Any, Any]], bins: int,
    coverage: float, horizon: float,
) -> dict[str, Any]:
    """Band and failure probability for each fold from the other folds' out-of-fold residuals.

    The out-of-fold predictions exist once; calibrating on some folds and
    judging on the one left out tells how the band and the probability hold
    on engines the calibration did not see, at no extra fit.
    """
    import numpy as np

    from analytics.prediction.rul import band, failure_probability, residual_bins

    predicted = np.asarray(predicted, dtype=float)
    truth = np.asarray(truth, dtype=float)
    lower = np.empty(len(truth))
    upper = np.empty(len(truth))
    proba = np.empty(len(truth))
    for fit_rows, held in splits:
        edges, residuals = residual_bins(predicted[fit_rows], truth[fit_rows], bins)
        lower[held], upper[held] = band(predicted[held], edges, residuals, coverage)
        proba[held] = failure_probability(predicted[held], edges, residuals, horizon)
    return {"lower": lower, "upper": upper, "proba": proba}


def band_figures(
    truth: Any, lower: Any, upper: Any, proba: Any, horizon: float, coverage: float
) -> dict[str, float]:
    """Coverage, interval score and Brier score, over all and over those far from failure."""
    import numpy as np

    from analytics.prediction import metrics

    truth = np.asarray(truth, dtype=float)
    far = truth > FAR
    failed = truth <= horizon
    out = {
        "band_coverage": metrics.interval_coverage(truth, lower, upper),
        "band_coverage_far": metrics.interval_coverage(truth[far], lower[far], upper[far]),
        "band_mean_width": float(np.mean(np.asarray(upper) - np.asarray(lower))),
        "interval_score": interval_score(truth, lower, upper, coverage),
        "brier": metrics.brier_score(failed, proba),
        "brier_far": metrics.brier_score(failed[far], proba[far]),
        "brier_base_rate": metrics.brier_score(failed, np.full(len(truth), failed.mean())),
    }
    return out


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from sklearn.model_selection import GroupKFold

    from analytics.prediction import metrics
    from analytics.prediction.cmapss import CYCLE, SETTINGS, UNIT, load_files, subset_files
    from analytics.prediction.features import rul_from_failures
    from analytics.prediction.rul import RULRegressor

    started = time.monotonic()
    defaults = subset_files(args.data, args.subset)
    files = [given or default for given, default in
             zip((args.train, args.test, args.rul), defaults, strict=True)]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise SystemExit(f"C-MAPSS file not found: {', '.join(missing)}")
    data = load_files(*files)
    train = data.train
    print(f"{args.subset}: {train[UNIT].nunique()} training engines ({len(train)} cycles)",
          flush=True)
    print("fixed settings and why:")
    for name, (value, reason) in FIXED.items():
        print(f"  {name} = {value!r}: {reason}")
    for name, reason in BUILT_IN.items():
        print(f"  {name}: {reason}")
    fixed = {name: value for name, (value, _) in FIXED.items()}
    rul = rul_from_failures(train, UNIT, CYCLE)
    units = train[UNIT].to_numpy()
    base: dict[str, Any] = {"unit": UNIT, "time": CYCLE, "settings": SETTINGS,
                            "n_jobs": args.n_jobs, "random_state": fixed["random_state"],
                            "coverage": fixed["coverage"], "eval_horizon": fixed["eval_horizon"],
                            "n_conditions": fixed["n_conditions"]}
    splits = list(GroupKFold(args.folds).split(train, rul, units))
    horizon = fixed["eval_horizon"]
    near = rul <= horizon

    def cross_validate(setting: dict[str, Any]) -> tuple[float, Any]:
        """Grouped-CV RMSE within the horizon and the out-of-fold predictions of all rows."""
        model = RULRegressor(**base, **_model_params(setting), n_boosting=1, calibration_folds=0)
        oof = np.empty(len(rul))
        for fit_rows, held_rows in splits:
            model.fit(train.iloc[fit_rows], rul[fit_rows])
            oof[held_rows] = model.predict(train.iloc[held_rows])
        return metrics.rmse(rul[near], oof[near]), oof

    print(f"\ncross-validation: {args.folds} folds grouped by engine, one boosted model, "
          f"RMSE on cycles within {horizon:.0f} of failure against the true life", flush=True)
    if args.quick:
        chosen: dict[str, Any] = {}
        chosen_cv, chosen_oof = cross_validate(chosen)
        print(f"  --quick: RULRegressor's defaults, CV RMSE {chosen_cv:.2f}")
    else:
        chosen, chosen_cv, chosen_oof = _search(cross_validate, _log)
    print(f"chosen: {chosen} (CV RMSE {chosen_cv:.2f})", flush=True)

    coverage = fixed["coverage"]
    scores = {}
    for bins in BINS:
        cal = cross_fitted_calibration(chosen_oof, rul, splits, bins, coverage,
                                       args.horizon)
        scores[bins] = interval_score(rul, cal["lower"], cal["upper"], coverage)
        print(f"  calibration_bins={bins:>2}  CV interval score {scores[bins]:7.2f}")
    bins = min(scores, key=lambda b: (scores[b], b))
    print(f"chosen: calibration_bins={bins}", flush=True)

    members = 1 if args.quick else fixed["n_boosting"]
    print(f"\nfitting the final model ({members} boosted, forest_trees "
          f"{fixed['forest_trees']}) with {fixed['calibration_folds']}-fold out-of-fold "
          "calibration on all training rows", flush=True)
    final = RULRegressor(**base, **_model_params(chosen), n_boosting=members,
                         forest_trees=fixed["forest_trees"],
                         calibration_folds=fixed["calibration_folds"], calibration_bins=bins)
    final.fit(train, rul)
    assert final.cv_rmse_ is not None  # calibration_folds >= 2
    cal = cross_fitted_calibration(final.oof_predictions_, rul, splits, bins, coverage,
                                   args.horizon)
    cv = band_figures(rul, cal["lower"], cal["upper"], cal["proba"], args.horizon, coverage)
    print(f"CV (out-of-fold, every training cycle as a cut point): RMSE within {horizon:.0f} "
          f"{final.cv_rmse_:.2f}; {coverage:.0%} band covers {cv['band_coverage']:.1%} "
          f"(more than {FAR} left: {cv['band_coverage_far']:.1%}), mean width "
          f"{cv['band_mean_width']:.0f}; Brier P(fail within {args.horizon:.0f}) "
          f"{cv['brier']:.4f} (far {cv['brier_far']:.4f}, base rate {cv['brier_base_rate']:.4f})",
          flush=True)

    figures: dict[str, Any] = {
        "bench": "cmapss",
        "subset": args.subset,
        "cv_rmse": round(float(final.cv_rmse_), 3),
        "cv_rmse_single_model": round(chosen_cv, 3),
        "cv_band_coverage": round(cv["band_coverage"], 3),
        "cv_band_coverage_far": round(cv["band_coverage_far"], 3),
        "cv_brier": round(cv["brier"], 4),
        "cv_brier_far": round(cv["brier_far"], 4),
        "chosen": chosen,
        "calibration_bins": bins,
    }

    # The test set, once.
    test = data.test
    assessment = final.assess(test, horizon=args.horizon)
    test_units = np.sort(test[UNIT].unique())
    truth = data.test_rul[np.searchsorted(test_units, assessment.index.to_numpy())]
    predicted = assessment["rul"].to_numpy()
    lower, upper = assessment["rul_lower"].to_numpy(), assessment["rul_upper"].to_numpy()
    tested = band_figures(truth, lower, upper, assessment["p_failure"].to_numpy(),
                          args.horizon, coverage)
    n_far = int((truth > FAR).sum())
    figures.update({
        "rmse": round(metrics.rmse(truth, predicted), 3),
        "phm08": round(metrics.phm08_score(truth, predicted), 1),
        "band_coverage": round(tested["band_coverage"], 3),
        "band_coverage_far": round(tested["band_coverage_far"], 3),
        "band_mean_width": round(tested["band_mean_width"], 1),
        "brier": round(tested["brier"], 4),
        "brier_far": round(tested["brier_far"], 4),
        "brier_base_rate": round(tested["brier_base_rate"], 4),
        "test_engines": len(truth),
        "test_engines_far": n_far,
        "horizon": args.horizon,
        "seconds": round(time.monotonic() - started, 1),
    })
    drivers = final.explain(test, latest=True).abs().mean().sort_values(ascending=False).head(5)
    print(f"\ntest ({len(truth)} engines, {n_far} with more than {FAR} cycles left), once:")
    print("  readings that moved test predictions most (mean |contribution|, cycles): "
          + ", ".join(f"{name} {value:.2f}" for name, value in drivers.items()))
    print(f"  RMSE {figures['rmse']:.2f}, PHM08 score {figures['phm08']:.0f}; "
          f"{coverage:.0%} band covers {figures['band_coverage']:.0%} "
          f"(more than {FAR} left: {figures['band_coverage_far']:.0%}), mean width "
          f"{figures['band_mean_width']:.0f}; Brier P(fail within {args.horizon:.0f}) "
          f"{figures['brier']:.4f} (far {figures['brier_far']:.4f}, "
          f"base rate {figures['brier_base_rate']:.4f})")
    print(json.dumps(figures))
    return 0


def _model_params(setting: dict[str, Any]) -> dict[str, Any]:
    """A searched setting as RULRegressor arguments (the boosting pair unpacked)."""
    params = dict(setting)
    if "boosting" in params:
        params["learning_rate"], params["max_iter"] = params.pop("boosting")
    return params


def _log(text: str) -> None:
    print(text, flush=True)


def _search(
    cross_validate: Callable[[dict[str, Any]], tuple[float, Any]],
    log: Callable[[str], None],
) -> tuple[dict[str, Any], float, Any]:
    """Stage 1 jointly, then each stage-2 setting in turn; a change is kept only if CV improves."""
    results = []
    for values in itertools.product(*STAGE1.values()):
        setting = dict(zip(STAGE1, values, strict=True))
        cv, oof = cross_validate(setting)
        results.append((cv, setting, oof))
        log("  " + " ".join(f"{k}={v}" for k, v in setting.items()) + f"  CV RMSE {cv:6.2f}")
    best_cv, best, best_oof = min(results, key=lambda r: r[0])
    log(f"stage 1: {best} (CV RMSE {best_cv:.2f})")
    for name, values in STAGE2.items():
        for value in values[1:]:
            setting = {**best, name: value}
            cv, oof = cross_validate(setting)
            log(f"  {name}={value}  CV RMSE {cv:6.2f}")
            if cv < best_cv:
                best_cv, best, best_oof = cv, setting, oof
        log(f"  keeps {name}={best.get(name, values[0])}")
    return best, best_cv, best_oof
