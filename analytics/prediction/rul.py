"""Remaining useful life and probability of failure from run-to-failure histories.

:class:`RULRegressor` takes a history frame (one row per unit and time step,
see :mod:`analytics.prediction.features`) and predicts, for every row, how
many time steps the unit has left. It learns a capped ("piecewise-linear")
target: early in life nothing in the readings tells how far away failure is,
so the model predicts at most ``cap`` and learns the decline after that.

Uncertainty comes from out-of-fold residuals: the training units are split
into folds by unit, each fold is predicted by a model that never saw it, and
the residuals (true minus predicted, grouped by the size of the prediction)
form the predictive distribution around a new prediction. That gives the
interval and the probability of failure within any horizon from one model.
Every training row counts, however far from failure: a unit predicted at the
cap may have the cap's life left or three times as much, and the band of a
healthy unit has to say so.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.ensemble import ExtraTreesRegressor, HistGradientBoostingRegressor
from sklearn.model_selection import GroupKFold
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from analytics.prediction.features import (
    ConditionNormalizer,
    WindowFeatures,
    last_rows,
    rul_from_failures,
    sensor_of,
)


class RULRegressor(RegressorMixin, BaseEstimator):
    """Predicts remaining useful life with an ensemble of tree models on window features.

    ``fit(X, y)`` takes run-to-failure histories; ``y`` is each row's true
    remaining life (omit it when every unit's last row is its failure).
    Predictions, intervals and failure probabilities are per row; the row that
    matters for a live unit is its latest (see :meth:`assess`).

    ``eval_horizon`` limits :meth:`score` (and ``cv_rmse_``) to rows within
    that many steps of failure: farther out, a capped prediction is wrong by
    design and no reading can say by how much. The band and the failure
    probability are calibrated on all rows.

    scikit-learn's ``check_estimator``: its interface checks (construction,
    ``get_params``/``set_params``, cloning, tags, repr) pass; its data checks
    do not apply, because they fit plain arrays and this estimator needs a
    history DataFrame whose unit and time columns group and order the rows.
    The tests run it and require that only data checks fail.
    """

    def __init__(
        self,
        unit: str = "unit",
        time: str = "time",
        settings: Sequence[str] = (),
        sensors: Sequence[str] | None = None,
        n_conditions: int | str = "auto",
        window: int = 30,
        ewm_alpha: float = 0.1,
        baseline: int = 10,
        cap: float = 125.0,
        n_boosting: int = 2,
        learning_rate: float = 0.05,
        max_iter: int = 300,
        max_leaf_nodes: int = 15,
        min_samples_leaf: int = 50,
        forest_trees: int = 0,
        calibration_folds: int = 5,
        calibration_bins: int = 5,
        coverage: float = 0.9,
        eval_horizon: float = 150.0,
        n_jobs: int = 1,
        random_state: int = 0,
    ) -> None:
        self.unit = unit
        self.time = time
        self.settings = settings
        self.sensors = sensors
        self.n_conditions = n_conditions
        self.window = window
        self.ewm_alpha = ewm_alpha
        self.baseline = baseline
        self.cap = cap
        self.n_boosting = n_boosting
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.forest_trees = forest_trees
        self.calibration_folds = calibration_folds
        self.calibration_bins = calibration_bins
        self.coverage = coverage
        self.eval_horizon = eval_horizon
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _members(self) -> list[BaseEstimator]:
        """Boosted models differ by seed and feature subsampling; a forest adds a different bias."""
        members: list[BaseEstimator] = [
            HistGradientBoostingRegressor(
                learning_rate=self.learning_rate,
                max_iter=self.max_iter,
                max_leaf_nodes=self.max_leaf_nodes,
                min_samples_leaf=self.min_samples_leaf,
                max_features=1.0 if self.n_boosting == 1 else 0.7,
                early_stopping=False,
                random_state=self.random_state + i,
            )
            for i in range(self.n_boosting)
        ]
        if self.forest_trees > 0:
            members.append(
                ExtraTreesRegressor(
                    n_estimators=self.forest_trees,
                    min_samples_leaf=10,
                    max_features=0.3,
                    n_jobs=self.n_jobs,
                    random_state=self.random_state,
                )
            )
        if not members:
            raise ValueError("the ensemble is empty: set n_boosting or forest_trees above 0")
        return members

    def _features(self, X: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self)
        return self.windows_.transform(self.normalizer_.transform(X))

    def _fit_members(self, features: np.ndarray, target: np.ndarray) -> list[BaseEstimator]:
        with threadpool_limits(self.n_jobs):
            return [clone(m).fit(features, target) for m in self._members()]

    def _predict_members(self, members: list[BaseEstimator], features: np.ndarray) -> np.ndarray:
        with threadpool_limits(self.n_jobs):
            mean = np.mean([m.predict(features) for m in members], axis=0)
        return np.clip(mean, 0.0, self.cap)

    def fit(
        self, X: pd.DataFrame, y: Sequence[float] | np.ndarray | None = None
    ) -> RULRegressor:
        rul = rul_from_failures(X, self.unit, self.time) if y is None else np.asarray(y, float)
        self.normalizer_ = ConditionNormalizer(
            unit=self.unit,
            time=self.time,
            settings=self.settings,
            sensors=self.sensors,
            n_conditions=self.n_conditions,
            random_state=self.random_state,
        ).fit(X)
        self.windows_ = WindowFeatures(
            unit=self.unit,
            time=self.time,
            window=self.window,
            ewm_alpha=self.ewm_alpha,
            baseline=self.baseline,
        ).fit(self.normalizer_.transform(X.iloc[:1]))
        features = self._features(X)
        self.feature_names_ = list(features.columns)
        self.sensors_ = list(self.normalizer_.sensors_)
        matrix = features.to_numpy()
        target = np.minimum(rul, self.cap)
        self.models_ = self._fit_members(matrix, target)

        healthy = rul >= self.cap
        if not healthy.any():
            healthy = rul >= np.quantile(rul, 0.75)
        self.reference_ = np.median(matrix[healthy], axis=0)

        self.cv_rmse_: float | None = None
        self.oof_predictions_: np.ndarray | None = None
        self.bin_edges_ = np.array([])
        self.residuals_ = [np.zeros(1)]
        if self.calibration_folds >= 2:
            self._calibrate(X, matrix, target, rul)
        return self

    def _calibrate(
        self, X: pd.DataFrame, matrix: np.ndarray, target: np.ndarray, rul: np.ndarray
    ) -> None:
        """Out-of-fold predictions by unit; their residuals become the predictive distribution."""
        units = X[self.unit].to_numpy()
        oof = np.empty(len(rul))
        for train, held in GroupKFold(self.calibration_folds).split(matrix, target, units):
            members = self._fit_members(matrix[train], target[train])
            oof[held] = self._predict_members(members, matrix[held])
        near = rul <= self.eval_horizon
        self.cv_rmse_ = float(np.sqrt(np.mean((rul[near] - oof[near]) ** 2)))
        self.oof_predictions_ = oof
        self.bin_edges_, self.residuals_ = residual_bins(oof, rul, self.calibration_bins)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Remaining useful life of every row (at most ``cap``)."""
        features = self._features(X).to_numpy()
        return self._predict_members(self.models_, features)

    def predict_interval(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds holding the true life with probability ``coverage``."""
        return self._interval(self.predict(X))

    def _interval(self, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return band(predicted, self.bin_edges_, self.residuals_, self.coverage)

    def predict_failure_proba(self, X: pd.DataFrame, horizon: float) -> np.ndarray:
        """Probability that each row's unit fails within ``horizon`` steps."""
        return self._failure_proba(self.predict(X), horizon)

    def _failure_proba(self, predicted: np.ndarray, horizon: float) -> np.ndarray:
        return failure_probability(predicted, self.bin_edges_, self.residuals_, horizon)

    def explain(self, X: pd.DataFrame, latest: bool = False) -> pd.DataFrame:
        """Per row and sensor: how many steps of life that sensor's readings add to the prediction.

        Each sensor's features in turn are set to their typical value in
        healthy training rows; the prediction's change is that sensor's
        contribution. Negative means the sensor pulls the predicted life down.
        The unit's age appears under the time column's name. With ``latest``,
        only each unit's latest row is explained.
        """
        matrix = self._features(X).to_numpy()
        if not latest:
            return self._explain(matrix, X.index)
        rows = last_rows(X, self.unit, self.time)
        return self._explain(matrix[rows], X.index[rows])

    def _explain(self, matrix: np.ndarray, index: pd.Index) -> pd.DataFrame:
        full = self._predict_members(self.models_, matrix)
        groups: dict[str, list[int]] = {}
        for j, name in enumerate(self.feature_names_):
            groups.setdefault(sensor_of(name), []).append(j)
        contributions = {}
        for name, columns in groups.items():
            neutral = matrix.copy()
            neutral[:, columns] = self.reference_[columns]
            contributions[name] = full - self._predict_members(self.models_, neutral)
        return pd.DataFrame(contributions, index=index)

    def assess(self, X: pd.DataFrame, horizon: float = 30.0, top: int = 3) -> pd.DataFrame:
        """Each unit's current state: life left with its band, P(failure within horizon), drivers.

        Uses each unit's latest row, with the history before it. ``drivers``
        names the ``top`` readings that pull the predicted life down the most,
        the evidence a service engineer should look at first.
        """
        latest = last_rows(X, self.unit, self.time)
        matrix = self._features(X).to_numpy()[latest]
        predicted = self._predict_members(self.models_, matrix)
        lower, upper = self._interval(predicted)
        contributions = self._explain(matrix, X.index[latest])
        drivers = [
            [name for name, value in row.nsmallest(top).items() if value < 0]
            for _, row in contributions.iterrows()
        ]
        return pd.DataFrame(
            {
                "rul": predicted,
                "rul_lower": lower,
                "rul_upper": upper,
                "p_failure": self._failure_proba(predicted, horizon),
                "drivers": drivers,
            },
            index=pd.Index(X[self.unit].to_numpy()[latest], name=self.unit),
        )

    def score(self, X: pd.DataFrame, y: Sequence[float], sample_weight: object = None) -> float:
        """Negative RMSE against the true life, on rows within ``eval_horizon`` of failure.

        Negative so that higher is better, as scikit-learn's model selection expects.
        Every row is predicted with its full history before the rows are chosen.
        """
        rul = np.asarray(y, dtype=float)
        near = rul <= self.eval_horizon
        d = self.predict(X)[near] - rul[near]
        return -float(np.sqrt(np.mean(d * d)))


def residual_bins(
    predicted: np.ndarray, truth: np.ndarray, bins: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The predictive distribution: residuals (truth - predicted) by quantile bin of the prediction.

    Returns the bin edges and each bin's sorted residuals. Equal-count bins
    keep every bin's quantiles estimated from about ``len / bins`` residuals.
    """
    predicted = np.asarray(predicted, dtype=float)
    residual = np.asarray(truth, dtype=float) - predicted
    quantiles = np.linspace(0, 1, bins + 1)[1:-1]
    edges = np.unique(np.quantile(predicted, quantiles))
    which = np.searchsorted(edges, predicted, side="right")
    return edges, [np.sort(residual[which == b]) for b in range(len(edges) + 1)]


def band(
    predicted: np.ndarray, edges: np.ndarray, residuals: list[np.ndarray], coverage: float
) -> tuple[np.ndarray, np.ndarray]:
    """Central ``coverage`` interval of each prediction's residual distribution, floored at 0."""
    predicted = np.asarray(predicted, dtype=float)
    tail = (1.0 - coverage) / 2.0
    low = np.array([np.quantile(r, tail) if len(r) else 0.0 for r in residuals])
    high = np.array([np.quantile(r, 1.0 - tail) if len(r) else 0.0 for r in residuals])
    which = np.searchsorted(edges, predicted, side="right")
    lower = np.maximum(0.0, predicted + low[which])
    upper = np.maximum(lower, predicted + high[which])
    return lower, upper


def failure_probability(
    predicted: np.ndarray, edges: np.ndarray, residuals: list[np.ndarray], horizon: float
) -> np.ndarray:
    """Share of each prediction's residual distribution that puts failure within ``horizon``."""
    predicted = np.asarray(predicted, dtype=float)
    which = np.searchsorted(edges, predicted, side="right")
    out = np.zeros(len(predicted))
    for b, r in enumerate(residuals):
        rows = which == b
        if rows.any() and len(r):
            out[rows] = np.searchsorted(r, horizon - predicted[rows], side="right") / len(r)
    return out
