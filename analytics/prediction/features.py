"""Feature engineering for run-to-failure histories.

A history is a DataFrame with one row per unit (a device, an engine) and time
step: a unit column, a time column, optional operating-setting columns and
sensor columns. Two transformers turn it into model inputs:

- :class:`ConditionNormalizer` removes the effect of the operating condition
  (clusters of operating settings) by standardising each sensor per cluster,
  and drops sensors that carry no trend (constant or two-level).
- :class:`WindowFeatures` summarises each sensor over the last ``window`` rows
  of the same unit. Every feature of a row uses only that row and earlier rows
  of its unit, so a model trained on them can score a live device.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.cluster import KMeans
from sklearn.utils.validation import check_is_fitted

FEATURE_SEPARATOR = "__"


def rul_from_failures(history: pd.DataFrame, unit: str = "unit", time: str = "time") -> np.ndarray:
    """Remaining useful life of every row, assuming each unit's last row is its failure."""
    last = history.groupby(unit)[time].transform("max")
    return (last - history[time]).to_numpy(dtype=float)


def sensor_of(feature: str) -> str:
    """The sensor a feature was computed from (features are named ``<sensor>__<kind>``)."""
    return feature.split(FEATURE_SEPARATOR, 1)[0]


def last_rows(history: pd.DataFrame, unit: str = "unit", time: str = "time") -> np.ndarray:
    """Boolean mask of each unit's latest row: the row whose prediction is the unit's now."""
    latest = history.groupby(unit)[time].transform("max")
    return (history[time] == latest).to_numpy()


class ConditionNormalizer(TransformerMixin, BaseEstimator):
    """Standardises sensors per operating condition and drops sensors without a trend.

    Operating conditions are found by k-means on the operating settings. With
    ``n_conditions="auto"`` the number of clusters is the smallest k (up to
    ``max_conditions``) whose clusters are tight (within-cluster sum of squares
    below ``tightness`` of the total), else 1: settings that only jitter around
    one point are one condition.

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
        max_conditions: int = 8,
        tightness: float = 0.01,
        max_levels: int = 2,
        random_state: int = 0,
    ) -> None:
        self.unit = unit
        self.time = time
        self.settings = settings
        self.sensors = sensors
        self.n_conditions = n_conditions
        self.max_conditions = max_conditions
        self.tightness = tightness
        self.max_levels = max_levels
        self.random_state = random_state

    def _sensor_columns(self, history: pd.DataFrame) -> list[str]:
        if self.sensors is not None:
            return list(self.sensors)
        skip = {self.unit, self.time, *self.settings}
        return [
            c for c in history.columns
            if c not in skip and pd.api.types.is_numeric_dtype(history[c])
        ]

    def _settings_matrix(self, history: pd.DataFrame) -> np.ndarray:
        if not self.settings:
            return np.zeros((len(history), 0))
        return (history[list(self.settings)].to_numpy(dtype=float) - self.settings_mean_) / (
            self.settings_scale_
        )

    def _choose_clusters(self, points: np.ndarray) -> KMeans | None:
        if points.shape[1] == 0 or self.n_conditions == 1:
            return None
        if self.n_conditions != "auto":
            return KMeans(int(self.n_conditions), n_init=4, random_state=self.random_state).fit(
                points
            )
        total = float(((points - points.mean(axis=0)) ** 2).sum())
        if total == 0.0:
            return None
        sample = points[:: max(1, len(points) // 2000)]
        sample_total = float(((sample - sample.mean(axis=0)) ** 2).sum())
        for k in range(2, self.max_conditions + 1):
            model = KMeans(k, n_init=2, random_state=self.random_state).fit(sample)
            if model.inertia_ <= self.tightness * sample_total:
                return model
        return None

    def fit(self, history: pd.DataFrame, y: object = None) -> ConditionNormalizer:
        if self.settings:
            raw = history[list(self.settings)].to_numpy(dtype=float)
            self.settings_mean_ = raw.mean(axis=0)
            scale = raw.std(axis=0)
            self.settings_scale_ = np.where(scale > 0, scale, 1.0)
        self.clusters_ = self._choose_clusters(self._settings_matrix(history))
        self.n_conditions_ = 1 if self.clusters_ is None else self.clusters_.n_clusters
        condition = self._condition(history)
        candidates = self._sensor_columns(history)
        values = history[candidates].to_numpy(dtype=float)
        means = np.zeros((self.n_conditions_, len(candidates)))
        scales = np.ones((self.n_conditions_, len(candidates)))
        informative = np.zeros(len(candidates), dtype=bool)
        for c in range(self.n_conditions_):
            rows = values[condition == c]
            if len(rows) == 0:
                continue
            means[c] = rows.mean(axis=0)
            std = rows.std(axis=0)
            scales[c] = np.where(std > 0, std, 1.0)
            levels = np.array([len(np.unique(rows[:, j])) for j in range(rows.shape[1])])
            informative |= (levels > self.max_levels) & (std > 0)
        kept = list(zip(candidates, informative, strict=True))
        self.dropped_sensors_ = [s for s, keep in kept if not keep]
        self.sensors_ = [s for s, keep in kept if keep]
        self.means_ = means[:, informative]
        self.scales_ = scales[:, informative]
        return self

    def _condition(self, history: pd.DataFrame) -> np.ndarray:
        if self.clusters_ is None:
            return np.zeros(len(history), dtype=int)
        return self.clusters_.predict(self._settings_matrix(history))

    def transform(self, history: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self)
        condition = self._condition(history)
        values = history[self.sensors_].to_numpy(dtype=float)
        normalised = (values - self.means_[condition]) / self.scales_[condition]
        out = pd.DataFrame(normalised, columns=self.sensors_, index=history.index)
        out.insert(0, self.time, history[self.time].to_numpy())
        out.insert(0, self.unit, history[self.unit].to_numpy())
        return out


def _window_sums(values: np.ndarray, units: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Sum of ``values[starts[i]:i+1]`` for every row i (``starts`` never crosses a unit).

    Cumulative sums restart at each unit, so a unit's features do not depend on
    which other units share the frame.
    """
    cumulative = pd.DataFrame(values).groupby(units, sort=False).cumsum().to_numpy()
    before = np.vstack([np.zeros((1, values.shape[1])), cumulative])[starts]
    same_unit = np.r_[False, units[1:] == units[:-1]][starts]
    return cumulative - np.where(same_unit[:, None], before, 0.0)


class WindowFeatures(TransformerMixin, BaseEstimator):
    """Per-sensor summaries of each unit's recent past, causal by construction.

    For every sensor: an exponentially smoothed value (``ewm``, noise-robust
    level), the mean, standard deviation and least-squares slope over the last
    ``window`` rows of the unit, and, with ``baseline > 0``, the smoothed value
    minus the mean of the unit's first ``baseline`` rows (how far this unit has
    drifted from its own as-new state, which removes unit-to-unit offsets).
    The unit's age (its time column) is a feature too. Early rows use the
    shorter history they have.

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
        window: int = 30,
        ewm_alpha: float = 0.1,
        baseline: int = 0,
        include_age: bool = True,
    ) -> None:
        self.unit = unit
        self.time = time
        self.window = window
        self.ewm_alpha = ewm_alpha
        self.baseline = baseline
        self.include_age = include_age

    def fit(self, history: pd.DataFrame, y: object = None) -> WindowFeatures:
        self.sensors_ = [c for c in history.columns if c not in (self.unit, self.time)]
        return self

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        kinds = ["ewm", "mean", "std", "slope"] + (["drift"] if self.baseline > 0 else [])
        names = [f"{s}{FEATURE_SEPARATOR}{k}" for s in self.sensors_ for k in kinds]
        if self.include_age:
            names.append(self.time)
        return np.array(names, dtype=object)

    def transform(self, history: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self)
        order = np.lexsort((history[self.time].to_numpy(), history[self.unit].to_numpy()))
        frame = history.iloc[order]
        units = frame[self.unit].to_numpy()
        n = len(frame)
        new_unit = np.r_[True, units[1:] != units[:-1]]
        unit_start = np.maximum.accumulate(np.where(new_unit, np.arange(n), 0))
        position = np.arange(n) - unit_start
        starts = np.maximum(unit_start, np.arange(n) - self.window + 1)
        count = (np.arange(n) - starts + 1).astype(float)[:, None]

        y = frame[self.sensors_].to_numpy(dtype=float)
        t = frame[self.time].to_numpy(dtype=float)
        t = (t - t[unit_start])[:, None]
        sum_y = _window_sums(y, units, starts)
        sum_yy = _window_sums(y * y, units, starts)
        sum_t = _window_sums(t, units, starts)
        sum_tt = _window_sums(t * t, units, starts)
        sum_ty = _window_sums(t * y, units, starts)
        mean = sum_y / count
        var = np.maximum(sum_yy / count - mean**2, 0.0)
        denominator = count * sum_tt - sum_t**2
        with np.errstate(invalid="ignore", divide="ignore"):
            slope = np.where(denominator > 0, (count * sum_ty - sum_t * sum_y) / denominator, 0.0)
        ewm = (
            pd.DataFrame(y, columns=self.sensors_)
            .groupby(units, sort=False)
            .transform(lambda g: g.ewm(alpha=self.ewm_alpha).mean())
            .to_numpy()
        )
        blocks = [ewm, mean, np.sqrt(var), slope]
        if self.baseline > 0:
            first = position < self.baseline
            in_base = np.where(first[:, None], y, 0.0)
            base_sum = pd.DataFrame(in_base).groupby(units, sort=False).cumsum().to_numpy()
            base_count = np.minimum(position + 1, self.baseline)[:, None]
            blocks.append(ewm - base_sum / base_count)
        per_sensor = np.stack(blocks, axis=2).reshape(n, -1)
        columns = list(self.get_feature_names_out())
        if self.include_age:
            per_sensor = np.column_stack([per_sensor, frame[self.time].to_numpy(dtype=float)])
        restore = np.empty(n, dtype=np.int64)
        restore[order] = np.arange(n)
        return pd.DataFrame(per_sensor[restore], columns=columns, index=history.index)
