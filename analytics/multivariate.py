"""Multivariate anomaly detection per device model.

One detector is trained per device model on the healthy history of many
devices of that model: each row is one device's vector of readings at one
time (a column per metric). It then scores a device's current vector in
[0, 1]: the share of healthy training vectors that looked less unusual. A
score of 0.99 therefore means "stranger than 99 % of healthy history",
whatever the method and the number of metrics, so ticket rules can use one
threshold for every device model.

Readings are robustly scaled (median and interquartile range), so a few bad
rows in the "healthy" history move nothing much. Two methods:

- ``"mahalanobis"``: distance under a robust (minimum covariance determinant)
  Gaussian fit; catches a reading that breaks the usual relation between
  metrics even when each metric alone looks normal.
- ``"isolation_forest"``: no distributional assumption, for multimodal data.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.covariance import MinCovDet
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score

METHODS = ("mahalanobis", "isolation_forest")


class MultivariateDetector(OutlierMixin, BaseEstimator):
    """Scores vectors of readings against the healthy history of one device model.

    Metrics missing from a vector (NaN or absent column) count as their
    healthy median, so a device that does not report one metric is still scored.
    """

    def __init__(
        self,
        method: str = "mahalanobis",
        threshold: float = 0.99,
        support_fraction: float | None = None,
        n_estimators: int = 200,
        max_fit_rows: int = 20000,
        random_state: int = 0,
    ) -> None:
        self.method = method
        self.threshold = threshold
        self.support_fraction = support_fraction
        self.n_estimators = n_estimators
        self.max_fit_rows = max_fit_rows
        self.random_state = random_state

    @staticmethod
    def _frame(X: pd.DataFrame | pd.Series | Mapping[str, float]) -> pd.DataFrame:
        if isinstance(X, pd.DataFrame):
            return X
        return pd.DataFrame([dict(X)])

    def _scaled(self, X: pd.DataFrame | pd.Series | Mapping[str, float]) -> np.ndarray:
        frame = self._frame(X).reindex(columns=self.metrics_)
        z = (frame.to_numpy(dtype=float) - self.center_) / self.scale_
        return np.nan_to_num(z, nan=0.0)

    def fit(self, X: pd.DataFrame, y: object = None) -> MultivariateDetector:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, not {self.method!r}")
        frame = self._frame(X)
        self.metrics_ = list(frame.columns)
        values = frame.to_numpy(dtype=float)
        self.center_ = np.nanmedian(values, axis=0)
        q75, q25 = np.nanpercentile(values, [75, 25], axis=0)
        scale = (q75 - q25) / 1.349
        std = np.nanstd(values, axis=0)
        scale = np.where(scale > 0, scale, std)
        self.scale_ = np.where(scale > 0, scale, 1.0)
        z = self._scaled(frame)
        rng = np.random.default_rng(self.random_state)
        if len(z) > self.max_fit_rows:
            sample = z[rng.choice(len(z), self.max_fit_rows, replace=False)]
        else:
            sample = z
        if self.method == "mahalanobis":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                covariance = MinCovDet(
                    support_fraction=self.support_fraction, random_state=self.random_state
                ).fit(sample)
            self.location_ = covariance.location_
            ridge = 1e-6 * np.eye(len(self.metrics_))
            self.precision_ = np.linalg.pinv(covariance.covariance_ + ridge)
        else:
            self.forest_ = IsolationForest(
                n_estimators=self.n_estimators, random_state=self.random_state
            ).fit(sample)
        self.training_scores_ = np.sort(self._raw(z))
        return self

    def _raw(self, z: np.ndarray) -> np.ndarray:
        """Unbounded anomaly measure, larger is stranger."""
        if self.method == "mahalanobis":
            d = z - self.location_
            return np.einsum("ij,jk,ik->i", d, self.precision_, d)
        return -self.forest_.score_samples(z)

    def score_samples(self, X: pd.DataFrame | pd.Series | Mapping[str, float]) -> np.ndarray:
        """Anomaly score in [0, 1] per vector: share of healthy training vectors less strange."""
        raw = self._raw(self._scaled(X))
        below = np.searchsorted(self.training_scores_, raw, side="left")
        return below / len(self.training_scores_)

    def decision_function(self, X: pd.DataFrame | pd.Series | Mapping[str, float]) -> np.ndarray:
        """Score minus threshold: positive means anomalous."""
        return self.score_samples(X) - self.threshold

    def predict(self, X: pd.DataFrame | pd.Series | Mapping[str, float]) -> np.ndarray:
        """1 for anomalous vectors (score at or above ``threshold``), 0 otherwise."""
        return (self.score_samples(X) >= self.threshold).astype(int)

    def contributions(self, X: pd.DataFrame | pd.Series | Mapping[str, float]) -> pd.DataFrame:
        """Robust z-score of each metric: which readings are off, and in which direction."""
        frame = self._frame(X)
        return pd.DataFrame(self._scaled(frame), columns=self.metrics_, index=frame.index)

    def score(self, X: pd.DataFrame, y: object) -> float:
        """ROC AUC of the scores against labels (1 = known anomalous), for model selection."""
        return float(roc_auc_score(np.asarray(y), self.score_samples(X)))
