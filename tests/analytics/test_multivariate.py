"""Multivariate detector: calibrated scores, separation of healthy and shifted devices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score
from sklearn.utils.estimator_checks import check_estimator

from analytics.multivariate import MultivariateDetector, WindowDetector, window_features

METRICS = ["temperature", "pressure", "flow", "current"]


def fleet(n: int, seed: int, shift: np.ndarray | None = None) -> pd.DataFrame:
    """Readings of one device model: correlated metrics on different scales."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 2))
    mixing = np.array([[1.0, 0.2], [0.8, -0.5], [0.1, 1.0], [0.6, 0.6]])
    values = latent @ mixing.T + 0.3 * rng.normal(size=(n, 4))
    if shift is not None:
        values = values + shift
    scale = np.array([1.0, 50.0, 0.01, 3.0])
    offset = np.array([37.0, 1000.0, 0.2, 12.0])
    return pd.DataFrame(values * scale + offset, columns=METRICS)


@pytest.mark.parametrize("method", ["mahalanobis", "isolation_forest"])
def test_separates_healthy_from_shifted(method: str) -> None:
    """A drift of about three standard deviations in one metric."""
    detector = MultivariateDetector(method=method).fit(fleet(3000, seed=0))
    healthy_rows = fleet(500, seed=1)
    shifted_rows = fleet(500, seed=2, shift=np.array([3.0, 0, 0, 0]))
    healthy = detector.anomaly_score(healthy_rows)
    shifted = detector.anomaly_score(shifted_rows)
    assert healthy.min() >= 0.0 and shifted.max() <= 1.0
    normal = np.r_[np.ones(500), np.zeros(500)]
    both = pd.concat([healthy_rows, shifted_rows])
    assert roc_auc_score(normal, detector.score_samples(both)) > 0.9  # lower is more abnormal
    assert np.median(shifted) > 0.85
    assert np.median(healthy) < 0.6


def test_scores_of_healthy_devices_are_calibrated() -> None:
    """A score is the share of healthy history less strange: about 1 % of healthy exceed 0.99."""
    detector = MultivariateDetector().fit(fleet(4000, seed=3))
    scores = detector.anomaly_score(fleet(4000, seed=4))
    assert 0.4 < np.median(scores) < 0.6
    assert np.mean(detector.predict(fleet(4000, seed=4)) == -1) < 0.03


def test_broken_correlation_is_caught_by_mahalanobis() -> None:
    """Each metric within its usual range, but temperature and pressure disagree."""
    detector = MultivariateDetector(method="mahalanobis").fit(fleet(3000, seed=5))
    typical = fleet(1, seed=6).iloc[0].to_dict()
    odd = dict(typical, temperature=37.0 + 1.5, pressure=1000.0 - 1.5 * 50.0)
    assert detector.anomaly_score(odd)[0] > 0.99
    z = detector.contributions(odd).iloc[0]
    assert abs(z["temperature"]) > 1 and abs(z["pressure"]) > 1


def test_missing_metric_counts_as_typical() -> None:
    detector = MultivariateDetector().fit(fleet(2000, seed=7))
    vector = fleet(1, seed=8, shift=np.array([0, 0, 0, 6.0])).drop(columns=["temperature"])
    assert detector.predict(vector)[0] == -1
    assert detector.anomaly_score(pd.DataFrame([{"pressure": 1000.0}]))[0] < 0.9


def test_rejects_unknown_method() -> None:
    with pytest.raises(ValueError):
        MultivariateDetector(method="nope").fit(fleet(100, seed=9))


@pytest.mark.parametrize("method", ["mahalanobis", "isolation_forest"])
def test_follows_scikit_learn_outlier_conventions(method: str) -> None:
    detector = MultivariateDetector(method=method, n_estimators=50).fit(fleet(2000, seed=10))
    rows = pd.concat([fleet(200, seed=11), fleet(200, seed=12, shift=np.array([6.0, 0, 0, 0]))])
    labels = detector.predict(rows)
    assert set(np.unique(labels)) == {-1, 1}
    decision = detector.decision_function(rows)
    assert ((decision < 0) == (labels == -1)).all()
    assert np.allclose(detector.score_samples(rows), 1.0 - detector.anomaly_score(rows))
    assert ((detector.anomaly_score(rows) > detector.threshold) == (labels == -1)).all()
    assert labels[200:].mean() < labels[:200].mean()  # the shifted devices come out -1
    assert not hasattr(detector, "score")


@pytest.mark.parametrize("method", ["mahalanobis", "isolation_forest"])
def test_passes_scikit_learn_estimator_checks(method: str) -> None:
    check_estimator(MultivariateDetector(method=method, n_estimators=20))


def test_refuses_infinity_but_takes_nan_as_missing() -> None:
    rows = fleet(300, seed=13)
    rows.iloc[0, 0] = np.nan
    detector = MultivariateDetector().fit(rows.to_numpy())  # matched by position
    with pytest.raises(ValueError):
        detector.predict(np.array([[np.inf, 1000.0, 0.2, 12.0]]))
    assert detector.predict(np.array([[np.nan, 1000.0, 0.2, 12.0]]))[0] == 1


# -- windows of readings -------------------------------------------------------------------

STEP = pd.Timedelta(minutes=5)


def device_history(steps: int, seed: int, device: str = "dev-1", noise: float = 1.0,
                   start: str = "2026-01-01") -> pd.DataFrame:
    """One device's resampled readings: current follows flow, a daily cycle of use."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    use = 50.0 + 20.0 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 2.0, steps)
    flow = use + noise * rng.normal(0, 1.0, steps)
    current = 0.1 * use + noise * rng.normal(0, 0.1, steps)
    temperature = 35.0 + 0.02 * use + rng.normal(0, 0.1, steps)
    index = pd.date_range(start, periods=steps, freq=STEP, tz="UTC")
    return pd.DataFrame({"flow": flow, "current": current, "temperature": temperature,
                         "device": device}, index=index)


def healthy_fleet(devices: int = 8, steps: int = 2016, dropouts: bool = True) -> pd.DataFrame:
    """A week per device; with ``dropouts``, every device loses a metric for two hours once."""
    frames = []
    for n in range(devices):
        frame = device_history(steps, seed=100 + n, device=f"dev-{n}")
        if dropouts:
            at = 300 + 150 * n
            frame.iloc[at:at + 24, n % 3] = np.nan
        frames.append(frame)
    return pd.concat(frames).sort_index(kind="stable")  # interleaved, as a store returns a fleet


def test_window_features_are_exact_and_cut_at_gaps_and_devices() -> None:
    index = pd.date_range("2026-01-01", periods=8, freq=STEP, tz="UTC")
    one = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0, np.nan, 6.0, 6.0, 6.0],
                        "b": np.arange(8.0)}, index=index)
    one = one.drop(index[3])  # a step with no reading: the window restarts after it
    features = window_features(one, ["a", "b"], window=4)
    assert features["a:level"].tolist()[:3] == [1.0, 1.5, 2.0]
    assert features["a:spread"].iloc[2] == pytest.approx(np.std([1.0, 2.0, 3.0]))
    # After the gap: NaN, 6, 6, 6 -> one of four steps missing, stuck at 6 once three agree.
    assert features["a:missing"].tolist()[3:] == pytest.approx([1.0, 0.5, 1 / 3, 0.25])
    assert features["a:stuck"].tolist() == [0, 0, 0, 0, 0, 0, 1]
    assert np.isnan(features["a:level"].iloc[3])
    assert features["a:change"].iloc[6] == pytest.approx(6.0 - 6.0)
    assert features["a:change"].iloc[2] != features["a:change"].iloc[2]  # too short: NaN
    # Two devices interleaved give each device's own windows.
    other = one.assign(a=one["a"] * 10, b=one["b"] + 0.5, device="y")
    both = pd.concat([one.assign(device="x"), other]).sort_index(kind="stable")
    mixed = window_features(both, ["a", "b"], window=4)
    alone = pd.concat([window_features(one, ["a", "b"], 4),
                       window_features(other, ["a", "b"], 4)])
    order = np.r_[np.arange(0, 14, 2), np.arange(1, 14, 2)]
    assert np.allclose(mixed.iloc[order].to_numpy(), alone.to_numpy(), equal_nan=True)


def test_a_dead_or_stuck_sensor_is_evidence_though_healthy_history_had_dropouts() -> None:
    detector = WindowDetector(window=12).fit(healthy_fleet())
    fresh = device_history(600, seed=7, device="new")
    dead, stuck = fresh.copy(), fresh.copy()
    dead.iloc[300:, 0] = np.nan  # the flow sensor dies
    stuck.iloc[300:, 1] = stuck.iloc[300, 1]  # the current sensor repeats one value
    usual = detector.anomaly_score(fresh)[320:]
    assert np.mean(usual > detector.threshold) < 0.05
    assert (detector.predict(dead)[320:] == -1).all()
    assert (detector.predict(stuck)[320:] == -1).all()
    assert detector.sensor_faults(dead)[320:].all() and not detector.sensor_faults(fresh).any()
    # The dead sensor's level is not filled in as healthy: it has none.
    z = detector.contributions(dead).iloc[400]
    assert np.isnan(z["flow:level"]) and z["flow:missing"] >= 10


def test_windows_see_noise_that_single_rows_do_not() -> None:
    """The noise of flow and current around their shared use doubles: each row stays in band."""
    fleet = healthy_fleet(dropouts=False)
    windowed = WindowDetector(window=12).fit(fleet)
    single = MultivariateDetector().fit(fleet.drop(columns="device"))
    healthy = device_history(1000, seed=50)
    noisy = device_history(1000, seed=51, noise=2.5)
    labels = np.r_[np.ones(1000), np.zeros(1000)]
    auc_windowed = roc_auc_score(labels, np.r_[windowed.score_samples(healthy),
                                               windowed.score_samples(noisy)])
    auc_single = roc_auc_score(labels, np.r_[single.score_samples(healthy.drop(columns="device")),
                                             single.score_samples(noisy.drop(columns="device"))])
    assert auc_windowed > 0.9 and auc_windowed > auc_single + 0.1, (auc_windowed, auc_single)


def test_window_detector_follows_scikit_learn_outlier_conventions() -> None:
    detector = WindowDetector(window=6).fit(healthy_fleet(devices=4))
    rows = pd.concat([device_history(300, seed=60, device="a"),
                      device_history(300, seed=61, device="b", noise=4.0)])
    labels = detector.predict(rows)
    assert set(np.unique(labels)) == {-1, 1}
    assert ((detector.decision_function(rows) < 0) == (labels == -1)).all()
    assert np.allclose(detector.score_samples(rows), 1.0 - detector.anomaly_score(rows))
    assert labels[300:].mean() < labels[:300].mean()
    assert not hasattr(detector, "score")
    with pytest.raises(ValueError):
        detector.predict(rows.assign(flow=np.inf))
    with pytest.raises(ValueError):
        WindowDetector(window=0).fit(rows)


WINDOW_INTERFACE_CHECKS = {
    "check_estimator_cloneable",
    "check_estimator_repr",
    "check_get_params_invariance",
    "check_set_params",
    "check_no_attributes_set_in_init",
    "check_parameters_default_constructible",
    "check_do_not_raise_errors_in_init_or_set_params",
    "check_mixin_order",
}


def test_window_detector_passes_scikit_learns_interface_checks() -> None:
    """Data checks rate subsets of rows, which are other windows (see the docstring)."""
    results = check_estimator(WindowDetector(), on_fail=None)
    passed = {r["check_name"] for r in results if r["status"] == "passed"}
    assert WINDOW_INTERFACE_CHECKS <= passed


def test_unfitted_window_detector_says_so() -> None:
    with pytest.raises(NotFittedError):
        WindowDetector().predict(device_history(10, seed=0))
