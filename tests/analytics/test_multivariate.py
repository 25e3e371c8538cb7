"""Multivariate detector: calibrated scores, separation of healthy and shifted devices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.utils.estimator_checks import check_estimator

from analytics.multivariate import MultivariateDetector

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
