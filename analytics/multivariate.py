"""Multivariate anomaly detection per device model.

One detector is trained per device model on the healthy history of many
devices of that model: each row is one device's vector of readings at one
time (a column per metric). It then rates a device's current vector by the
share of healthy training vectors that looked less unusual
(:meth:`MultivariateDetector.anomaly_score`, in [0, 1]). A rating of 0.99
means "stranger than 99 % of healthy history", whatever the method and the
number of metrics, so ticket rules can use one threshold for every device
model.

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
from typing import TypeAlias

import numpy as np
import pandas as pd
from scipy.sparse import issparse
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.covariance import MinCovDet
from sklearn.ensemble import IsolationForest
from sklearn.utils import Tags
from sklearn.utils.validation import check_is_fitted, validate_data

METHODS = ("mahalanobis", "isolation_forest")

Readings: TypeAlias = pd.DataFrame | pd.Series | Mapping[str, float] | np.ndarray


class MultivariateDetector(OutlierMixin, BaseEstimator):
    """Rates vectors of readings against the healthy history of one device model.

    Follows scikit-learn's outlier-detector conventions: :meth:`predict` gives
    +1 for normal vectors and -1 for anomalous ones, :meth:`score_samples` is
    lower for more abnormal vectors (the share of healthy training vectors at
    least as strange, a p-value) and :meth:`decision_function` is negative
    exactly for the vectors :meth:`predict` calls anomalous. A vector is
    anomalous when its :meth:`anomaly_score` exceeds ``threshold``.

    Metrics missing from a vector (NaN, or a column absent from a DataFrame)
    count as their healthy median, so a device that does not report one metric
    is still rated. Fitted on a DataFrame, the detector matches columns by
    name; fitted on an array, by position.

    There is no ``score``: like scikit-learn's own outlier detectors it has
    no labels to rate itself against; with labelled anomalies, use
    ``roc_auc_score(y == 1, detector.score_samples(X))``.

    It passes scikit-learn's ``check_estimator`` (run by the tests), with the
    ``allow_nan`` tag set for the missing readings; infinity is refused.
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

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # a missing reading, counted as the healthy median
        return tags

    def _values(self, X: Readings) -> np.ndarray:
        """Readings as a float array in the fitted column order."""
        check_is_fitted(self)
        names = getattr(self, "feature_names_in_", None)
        X = _one_row(X)
        if isinstance(X, pd.DataFrame) and names is not None:
            return X.reindex(columns=names).to_numpy(dtype=float)
        return validate_data(self, X, reset=False, ensure_all_finite="allow-nan")

    def _scaled(self, values: np.ndarray) -> np.ndarray:
        z = (values - self.center_) / self.scale_
        return np.nan_to_num(z, nan=0.0)

    def fit(self, X: Readings, y: object = None) -> MultivariateDetector:
        """Learns the healthy history ``X`` (one row per device and time); ``y`` is ignored."""
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, not {self.method!r}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), not {self.threshold!r}")
        values = validate_data(
            self, _one_row(X), ensure_all_finite="allow-nan", ensure_min_samples=2,
            dtype=np.float64,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column
            self.center_ = np.nan_to_num(np.nanmedian(values, axis=0))
            q75, q25 = np.nanpercentile(values, [75, 25], axis=0)
            std = np.nanstd(values, axis=0)
        scale = np.nan_to_num((q75 - q25) / 1.349)
        scale = np.where(scale > 0, scale, np.nan_to_num(std))
        self.scale_ = np.where(scale > 0, scale, 1.0)
        z = self._scaled(values)
        rng = np.random.default_rng(self.random_state)
        if len(z) > self.max_fit_rows:
            sample = z[rng.choice(len(z), self.max_fit_rows, replace=False)]
        else:
            sample = z
        if self.method == "mahalanobis":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                warnings.simplefilter("ignore", UserWarning)  # singular covariance
                covariance = MinCovDet(
                    support_fraction=self.support_fraction, random_state=self.random_state
                ).fit(sample)
            self.location_ = covariance.location_
            ridge = 1e-6 * np.eye(z.shape[1])
            self.precision_ = np.linalg.pinv(covariance.covariance_ + ridge)
        else:
            self.forest_ = IsolationForest(
                n_estimators=self.n_estimators, random_state=self.random_state
            ).fit(sample)
        self.training_strangeness_ = np.sort(self._strangeness(z))
        self.offset_ = 1.0 - self.threshold
        return self

    def _strangeness(self, z: np.ndarray) -> np.ndarray:
        """Unbounded anomaly measure, larger is stranger."""
        if self.method == "mahalanobis":
            d = z - self.location_
            return np.einsum("ij,jk,ik->i", d, self.precision_, d)
        return -self.forest_.score_samples(z)

    def anomaly_score(self, X: Readings) -> np.ndarray:
        """Share of healthy training vectors less strange than each vector, in [0, 1].

        The figure ticket rules threshold: 0.99 is "stranger than 99 % of
        healthy history" for every device model. Higher is more abnormal, the
        opposite of :meth:`score_samples`.
        """
        raw = self._strangeness(self._scaled(self._values(X)))
        below = np.searchsorted(self.training_strangeness_, raw, side="left")
        return below / len(self.training_strangeness_)

    def score_samples(self, X: Readings) -> np.ndarray:
        """Share of healthy training vectors at least as strange: lower is more abnormal."""
        return 1.0 - self.anomaly_score(X)

    def decision_function(self, X: Readings) -> np.ndarray:
        """``score_samples - offset_``: negative for the vectors called anomalous."""
        return self.score_samples(X) - self.offset_

    def predict(self, X: Readings) -> np.ndarray:
        """-1 for anomalous vectors (anomaly score above ``threshold``), +1 for normal ones."""
        return np.where(self.decision_function(X) < 0.0, -1, 1)

    def contributions(self, X: Readings) -> pd.DataFrame:
        """Robust z-score of each metric: which readings are off, and in which direction."""
        values = self._values(X)
        names = getattr(self, "feature_names_in_", None)
        columns = list(names) if names is not None else list(range(values.shape[1]))
        index = X.index if isinstance(X, pd.DataFrame) else None
        return pd.DataFrame(self._scaled(values), columns=columns, index=index)


def _one_row(X: Readings) -> Readings:
    """A Series or a mapping of metric to value is one vector: a one-row DataFrame."""
    if isinstance(X, pd.Series) or (
        isinstance(X, Mapping) and not isinstance(X, pd.DataFrame) and not issparse(X)
    ):
        return pd.DataFrame([dict(X)])
    return X

