"""Failure prediction: C-MAPSS loader, causal features, RUL model on synthetic run-to-failure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import check_estimator

from analytics.prediction import metrics
from analytics.prediction.cmapss import COLUMNS, load_subset, read_history, read_rul
from analytics.prediction.features import (
    ConditionNormalizer,
    WindowFeatures,
    last_rows,
    rul_from_failures,
)
from analytics.prediction.rul import RULRegressor, band, failure_probability, residual_bins

CONDITIONS = np.array([[0.0, 0.0], [20.0, 0.7], [35.0, 0.84]])


def fleet(n_units: int, seed: int, conditions: int = 1) -> pd.DataFrame:
    """Run-to-failure histories: a hidden wear that grows faster near the end, seen through noise.

    ``wear_a`` and ``wear_b`` follow the wear, ``noise`` does not, ``flat`` is
    constant and ``switch`` two-level; the operating condition offsets every sensor.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for unit in range(1, n_units + 1):
        life = int(rng.integers(120, 260))
        t = np.arange(1, life + 1)
        wear = np.maximum(0.0, (t - 0.4 * life) / (0.6 * life)) ** 1.5 + rng.normal(0, 0.05)
        condition = rng.integers(0, conditions, size=life)
        settings = CONDITIONS[condition] + rng.normal(0, 0.002, size=(life, 2))
        offset = 5.0 * condition
        rows.append(
            pd.DataFrame(
                {
                    "unit": unit,
                    "time": t,
                    "op_1": settings[:, 0],
                    "op_2": settings[:, 1],
                    "wear_a": 10 + offset + 3.0 * wear + rng.normal(0, 0.3, life),
                    "wear_b": 50 + offset - 2.0 * wear + rng.normal(0, 0.3, life),
                    "noise": offset + rng.normal(0, 1.0, life),
                    "flat": 7.0,
                    "switch": rng.choice([0.0, 1.0], life),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def model(**overrides: object) -> RULRegressor:
    params = dict(
        settings=("op_1", "op_2"),
        window=15,
        baseline=10,
        cap=100,
        n_boosting=1,
        max_iter=100,
        learning_rate=0.1,
        calibration_folds=3,
        eval_horizon=120,
    )
    params.update(overrides)
    return RULRegressor(**params)


@pytest.fixture(scope="module")
def trained() -> RULRegressor:
    train = fleet(40, seed=0)
    return model().fit(train, rul_from_failures(train))


@pytest.fixture(scope="module")
def held_out() -> pd.DataFrame:
    return fleet(20, seed=1)


def test_loader_reads_published_format(tmp_path: Path) -> None:
    """Trailing spaces on every row and blank lines at the end of the RUL file."""
    row = " ".join(["1", "1", "-0.0007", "-0.0004", "100.0"] + ["518.67"] * 21)
    second = row.replace("1 1 ", "1 2 ", 1)
    for name in ("train_FD001.txt", "test_FD001.txt"):
        (tmp_path / name).write_text(f"{row}  \n{second}  \n")
    (tmp_path / "RUL_FD001.txt").write_text("112 \n\n\n")
    subset = load_subset(tmp_path)
    assert list(subset.train.columns) == list(COLUMNS)
    assert subset.train["cycle"].tolist() == [1, 2]
    assert subset.test_rul.tolist() == [112]
    (tmp_path / "RUL_two.txt").write_text("112 \n98 \n\n")
    assert read_rul(tmp_path / "RUL_two.txt").tolist() == [112, 98]


def test_loader_rejects_wrong_column_count(tmp_path: Path) -> None:
    (tmp_path / "bad.txt").write_text("1 1 0.1 0.2\n")
    with pytest.raises(ValueError):
        read_history(tmp_path / "bad.txt")


def test_features_use_only_past_rows() -> None:
    """Cutting the future off a unit's history changes none of its past features."""
    history = fleet(5, seed=2)
    normalised = ConditionNormalizer(settings=("op_1", "op_2")).fit(history).transform(history)
    windows = WindowFeatures(window=10, baseline=5).fit(normalised)
    full = windows.transform(normalised)
    past = normalised[normalised["time"] <= 60]
    cut = windows.transform(past)
    np.testing.assert_allclose(cut.to_numpy(), full.loc[past.index].to_numpy(), atol=1e-9)
    changed = normalised.copy()
    changed.loc[changed["time"] > 60, "wear_a"] += 100.0
    np.testing.assert_allclose(
        windows.transform(changed).loc[past.index].to_numpy(), cut.to_numpy(), atol=1e-9
    )


def test_features_do_not_depend_on_row_order() -> None:
    history = fleet(3, seed=3)
    normalised = ConditionNormalizer().fit(history).transform(history)
    windows = WindowFeatures(window=8).fit(normalised)
    shuffled = normalised.sample(frac=1.0, random_state=0)
    pd.testing.assert_frame_equal(
        windows.transform(shuffled).loc[normalised.index], windows.transform(normalised)
    )


def test_window_slope_and_mean_are_exact() -> None:
    frame = pd.DataFrame({"unit": 1, "time": np.arange(1, 21), "x": 2.0 * np.arange(1, 21)})
    features = WindowFeatures(window=5).fit(frame).transform(frame)
    assert features["x__slope"].iloc[10] == pytest.approx(2.0)
    assert features["x__mean"].iloc[10] == pytest.approx(2.0 * np.mean(np.arange(7, 12)))
    assert features["x__std"].iloc[0] == 0.0


def test_normalizer_finds_conditions_and_drops_flat_sensors() -> None:
    history = fleet(10, seed=4, conditions=3)
    normalizer = ConditionNormalizer(settings=("op_1", "op_2")).fit(history)
    assert normalizer.n_conditions_ == 3
    assert set(normalizer.dropped_sensors_) == {"flat", "switch"}
    normalised = normalizer.transform(history)
    assert abs(normalised["noise"].mean()) < 0.1 and 0.9 < normalised["noise"].std() < 1.1
    single = ConditionNormalizer(settings=("op_1", "op_2")).fit(fleet(10, seed=4))
    assert single.n_conditions_ == 1


def test_rul_error_much_smaller_than_constant_predictor(
    trained: RULRegressor, held_out: pd.DataFrame
) -> None:
    truth = rul_from_failures(held_out)
    near = truth <= trained.eval_horizon
    constant = np.full(near.sum(), np.mean(np.minimum(truth[near], trained.cap)))
    model_error = -trained.score(held_out, truth)
    assert model_error < 0.5 * metrics.rmse(truth[near], constant)
    assert trained.cv_rmse_ is not None and trained.cv_rmse_ < 0.5 * metrics.rmse(
        truth[near], constant
    )


def test_band_and_failure_probability(trained: RULRegressor, held_out: pd.DataFrame) -> None:
    truth = rul_from_failures(held_out)
    predicted = trained.predict(held_out)
    lower, upper = trained.predict_interval(held_out)
    assert np.all(lower <= predicted + 1e-9) and np.all(predicted <= upper + 1e-9)
    near = truth <= trained.eval_horizon
    assert metrics.interval_coverage(truth[near], lower[near], upper[near]) > 0.75
    p20 = trained.predict_failure_proba(held_out, 20)
    p60 = trained.predict_failure_proba(held_out, 60)
    assert np.all((0 <= p20) & (p20 <= p60) & (p60 <= 1))
    assert p20[truth <= 5].mean() > 0.8 and p20[truth >= 100].mean() < 0.05
    assert metrics.brier_score(truth[near] <= 20, p20[near]) < 0.1


def test_explanations_name_the_wear_sensors(trained: RULRegressor, held_out: pd.DataFrame) -> None:
    late = held_out[rul_from_failures(held_out) >= 5]
    assessment = trained.assess(late, horizon=20)
    assert len(assessment) == held_out["unit"].nunique()
    assert assessment.index.name == "unit"
    contributions = trained.explain(late, latest=True).abs().mean()
    assert contributions[["wear_a", "wear_b"]].min() > contributions["noise"]
    assert {"flat", "switch"}.isdisjoint(contributions.index)
    worn = assessment.loc[assessment["rul"] < 30, "drivers"]
    assert len(worn) > 0 and all(set(d) & {"wear_a", "wear_b"} for d in worn)


def test_assess_uses_history_before_the_latest_row(
    trained: RULRegressor, held_out: pd.DataFrame
) -> None:
    assessment = trained.assess(held_out)
    latest = trained.predict(held_out)[last_rows(held_out)]
    np.testing.assert_allclose(assessment["rul"].to_numpy(), latest)


def test_estimator_interface(held_out: pd.DataFrame) -> None:
    estimator = model(cap=90, calibration_folds=0)
    copy = clone(estimator)
    assert copy.get_params()["cap"] == 90
    assert not hasattr(copy, "models_")
    fitted = copy.fit(held_out)
    assert fitted is copy and fitted.predict(held_out).max() <= 90
    with pytest.raises(ValueError):
        model(n_boosting=0, forest_trees=0).fit(held_out)


def test_metrics() -> None:
    assert metrics.rmse([1, 2], [1, 4]) == pytest.approx(np.sqrt(2))
    late = metrics.phm08_score([50], [60])
    early = metrics.phm08_score([50], [40])
    assert late == pytest.approx(np.e - 1) and early == pytest.approx(np.exp(10 / 13) - 1)
    assert metrics.interval_coverage([1, 5], [0, 0], [2, 2]) == 0.5


CMAPSS = Path(__file__).resolve().parents[2].parent / "shared/datasets/cmapss"


@pytest.mark.slow
@pytest.mark.skipif(not (CMAPSS / "train_FD001.txt").exists(), reason="C-MAPSS data not present")
def test_fd001_cross_validation() -> None:
    """Real data, quick setting: grouped CV on the training engines only."""
    train = load_subset(CMAPSS).train
    fitted = RULRegressor(
        unit="unit",
        time="cycle",
        settings=("setting_1", "setting_2", "setting_3"),
        n_boosting=1,
        max_iter=150,
        learning_rate=0.1,
        calibration_folds=3,
    ).fit(train)
    assert len(fitted.normalizer_.dropped_sensors_) == 7
    assert fitted.cv_rmse_ < 16.0


INTERFACE_CHECKS = {
    "check_estimator_cloneable",
    "check_estimator_repr",
    "check_get_params_invariance",
    "check_set_params",
    "check_no_attributes_set_in_init",
    "check_parameters_default_constructible",
    "check_do_not_raise_errors_in_init_or_set_params",
    "check_mixin_order",
}


@pytest.mark.parametrize(
    "estimator", [ConditionNormalizer(), WindowFeatures(), RULRegressor(calibration_folds=0)]
)
def test_interface_checks_of_scikit_learn_pass(estimator: object) -> None:
    """The data checks fit plain arrays, which carry no unit or time column (see docstrings)."""
    results = check_estimator(estimator, on_fail=None)
    passed = {r["check_name"] for r in results if r["status"] == "passed"}
    failed = {r["check_name"] for r in results if r["status"] == "failed"}
    assert INTERFACE_CHECKS <= passed
    assert not failed & INTERFACE_CHECKS


@pytest.mark.parametrize("estimator", [ConditionNormalizer(), WindowFeatures(), RULRegressor()])
def test_unfitted_estimators_say_so(estimator: ConditionNormalizer) -> None:
    method = getattr(estimator, "predict", None) or estimator.transform
    with pytest.raises(NotFittedError):
        method(fleet(2, seed=0))


def test_band_holds_far_from_failure_too(trained: RULRegressor, held_out: pd.DataFrame) -> None:
    """Calibrated on every row: a unit predicted at the cap may have much more life left."""
    truth = rul_from_failures(held_out)
    lower, upper = trained.predict_interval(held_out)
    far = truth > trained.cap
    assert far.sum() > 100
    assert metrics.interval_coverage(truth[far], lower[far], upper[far]) > 0.8
    assert metrics.interval_coverage(truth, lower, upper) > 0.8
    assert trained.oof_predictions_ is not None
    assert len(trained.oof_predictions_) == len(rul_from_failures(fleet(40, seed=0)))


def test_calibration_functions_follow_the_residuals() -> None:
    rng = np.random.default_rng(0)
    predicted = rng.uniform(0, 100, 20000)
    spread = np.where(predicted < 50, 5.0, 20.0)  # wider where the prediction is high
    truth = predicted + rng.normal(0, 1, len(predicted)) * spread
    edges, residuals = residual_bins(predicted, truth, bins=4)
    assert len(edges) == 3 and len(residuals) == 4
    assert all(np.all(np.diff(r) >= 0) for r in residuals)
    lower, upper = band(np.array([25.0, 75.0]), edges, residuals, coverage=0.9)
    width = upper - lower
    assert width[0] == pytest.approx(2 * 1.645 * 5, rel=0.1)
    assert width[1] == pytest.approx(2 * 1.645 * 20, rel=0.1)
    p = failure_probability(np.array([25.0, 25.0]), edges, residuals, horizon=25.0)
    assert p[0] == pytest.approx(0.5, abs=0.03)
    assert band(np.array([1.0]), edges, residuals, 0.9)[0][0] == 0.0  # life is never negative


def test_cross_fitted_calibration_covers_as_claimed() -> None:
    from analytics.bench.cmapss import band_figures, cross_fitted_calibration, interval_score

    rng = np.random.default_rng(1)
    predicted = rng.uniform(0, 150, 5000)
    truth = np.maximum(predicted + rng.normal(0, 10, len(predicted)), 0)
    folds = np.arange(len(truth)) % 5
    splits = [(np.flatnonzero(folds != k), np.flatnonzero(folds == k)) for k in range(5)]
    cal = cross_fitted_calibration(predicted, truth, splits, bins=5, coverage=0.9, horizon=30)
    figures = band_figures(truth, cal["lower"], cal["upper"], cal["proba"], 30, 0.9)
    assert 0.87 < figures["band_coverage"] < 0.93
    assert 0.85 < figures["band_coverage_far"] < 0.95
    assert figures["brier"] < figures["brier_base_rate"]
    narrow = interval_score(truth, predicted - 1, predicted + 1, 0.9)
    assert interval_score(truth, cal["lower"], cal["upper"], 0.9) < narrow
