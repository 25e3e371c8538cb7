"""Run-to-failure rows of devices from their telemetry and what actually happened to them.

Pure functions, no I/O: the jobs read the telemetry and the failures and hand them here.

A device's history is cut into **lives**. A life starts when the device's data
starts or when it is repaired after a failure, and ends at its next failure
(a confirmed fault: a device failure code, or a fault ticket an engineer did
not cancel) or, for a device that never failed since, at the end of the data:
such a life is **censored**, its failure lies somewhere after the data. The
time between a failure and its repair is no life at all (the device is out of
service), and a failure without a repair yet ends the device's usable data.

Each life's first ``baseline_days`` are its normal (in a long life, the
``baseline_days`` that started ``baseline_lag_days`` before the row): every
row compares a window of readings (the last ``window_days``) with that baseline, per reading,
in four ways that need no knowledge of the device model:

- ``level``: the window's median against the baseline's, in robust standard deviations;
- ``spread``: the size of the noise (step-to-step changes), log of its ratio to the baseline's;
- ``relation``: how far the reading left what the other readings predicted from it in the
  baseline (a least-squares fit per life: motor current for a given flow, a temperature for
  a given ambient), in the baseline residuals' robust standard deviations. A reading that is
  often exactly zero (no flow while a pump stands, no tube current between scans) also
  enters as whether it is zero: motor current is not linear in flow across a stop;
- ``noise``: the size of that relation's residual, log of its ratio to the baseline's: the
  noise of a reading that moves with others (motor current with the flow), where the
  step-to-step changes of ``spread`` mostly measure the others' moves;
- ``missing``: the share of steps without the reading, beyond the baseline's (a dead sensor is
  evidence, not a gap to fill). A reading that rarely repeats a value in the baseline and
  repeats it now is stuck: those steps count as missing, not as readings.

No feature says how old the device or the life is: a prediction is driven by readings.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

KINDS = ("level", "spread", "relation", "noise", "missing")
SEPARATOR = "__"
# Features are clipped here: a reading 40 or 400 robust deviations off says the same thing.
CLIP = 50.0
DAY = timedelta(days=1)


@dataclass(frozen=True)
class Failure:
    """A confirmed fault of a device, when it was found, and what it was."""

    device: str
    at: datetime
    fault_type: str


@dataclass(frozen=True)
class Life:
    """One stretch of a device's service from a start (data start or repair) to a failure or to
    the end of the data (``failed`` false: censored)."""

    device: str
    model: str
    start: datetime
    end: datetime
    failed: bool
    fault_type: str | None = None


@dataclass(frozen=True)
class RowSettings:
    """How rows are cut from a life."""

    baseline_days: float = 3.0
    # A long life's baseline slides: at most this long before the window. Slow benign drift
    # (seasons, sensor ageing) then stays within a month's change, and a live device needs
    # no more than this much history read per prediction.
    baseline_lag_days: float = 30.0
    window_days: float = 1.0
    # The noise (``spread`` and ``noise``) is measured over this long a window, cut short by
    # the baseline's end. Against the 1-day window, 3 days raised the share of predictable
    # failures alarmed >= 24 h ahead at 0.5 false alarms per 100 device-days from 0.70 to 0.90
    # on `vigil bench prediction` (seeds 1/2; 0.67 to 0.83 on 3/4, 0.83 to 0.78 on 5/6) and
    # the cross-validated Brier score on each training fleet.
    noise_window_days: float = 3.0
    row_every_days: float = 1.0
    # A baseline or window with fewer steps of data than this share of its length is too thin.
    min_coverage: float = 0.3


def merge_failures(failures: Iterable[Failure], *, within: timedelta = DAY) -> list[Failure]:
    """One failure per episode: a failure code and the ticket it raised are the same failure.

    Failures of a device closer than ``within`` to the previous one join it; the earliest
    time stands and a device failure code (no ``:`` in its label) names the fault type.
    """
    out: list[Failure] = []
    for f in sorted(failures, key=lambda f: (f.device, f.at)):
        last = out[-1] if out else None
        if last is not None and last.device == f.device and f.at - last.at <= within:
            if ":" in last.fault_type and ":" not in f.fault_type:
                out[-1] = Failure(last.device, last.at, f.fault_type)
            continue
        out.append(f)
    return out


def lives(
    device: str, model: str, *, start: datetime, end: datetime, failures: Iterable[Failure],
    repairs: Iterable[datetime],
) -> list[Life]:
    """Cut ``[start, end)`` into lives at the device's failures, resuming at the next repair.

    A failure before ``start`` whose repair came after it starts the first life at that
    repair: the device was out of service until then. One before ``start`` with no repair
    recorded says nothing about the data, which shows the device at work.
    """
    failed = sorted((f for f in failures if f.device == device), key=lambda f: f.at)
    fixed = sorted(repairs)
    out: list[Life] = []
    cursor: datetime | None = start
    for failure in (f for f in failed if f.at < start):
        repair = next((r for r in fixed if r > failure.at), None)
        if cursor is not None and repair is not None and repair > cursor:
            cursor = repair
    for failure in failed:
        if cursor is None or failure.at < cursor:
            continue  # before the data, or a second report of a failure awaiting repair
        if failure.at >= end:
            break
        if failure.at > cursor:
            out.append(Life(device, model, cursor, failure.at, True, failure.fault_type))
        cursor = next((r for r in fixed if r > failure.at), None)
    if cursor is not None and cursor < end:
        out.append(Life(device, model, cursor, end, False))
    return out


def current_life(lives_: Sequence[Life], *, now: datetime) -> Life | None:
    """The life a device is in now: the censored one reaching ``now``; None if it awaits repair."""
    for life in lives_:
        if not life.failed and life.start <= now <= life.end:
            return life
    return None


# -- baseline and window features -------------------------------------------------------------


def _robust_sd(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return math.nan
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def _floor(scale: float, centre: float) -> float:
    """A scale never below a thousandth of the reading's size: a quantised or stuck baseline
    has no spread, and a division by zero would make any change infinitely abnormal."""
    low = 1e-3 * max(1.0, abs(centre)) if math.isfinite(centre) else 1e-3
    return max(scale, low) if math.isfinite(scale) else low


def _noise(values: np.ndarray) -> float:
    """Robust size of the step-to-step changes: the noise without the daily rhythm."""
    finite = values[np.isfinite(values)]
    if len(finite) < 3:
        return math.nan
    return _robust_sd(np.diff(finite)) / math.sqrt(2.0)


@dataclass(frozen=True)
class Baseline:
    """A life's normal, per reading."""

    metrics: tuple[str, ...]
    median: np.ndarray
    scale: np.ndarray
    noise: np.ndarray
    missing: np.ndarray
    # Per reading: least-squares weights on the regressors (see _regressors), an intercept and
    # the residuals' robust standard deviation.
    relation: dict[str, tuple[np.ndarray, float, float]]
    # Readings that are often exactly zero: whether they are zero is a regressor too.
    zeros: tuple[int, ...] = ()
    # Readings that rarely repeat a value from one step to the next: a run of repeats is a
    # stuck sensor, not a reading (see :func:`unstuck`).
    fluid: tuple[int, ...] = ()


# A reading repeats its last value at most this share of the baseline's steps to be fluid.
# Taking stuck steps as missing lowered the Brier score on `vigil bench prediction` from
# 0.0094, 0.0097, 0.0097 to 0.0080, 0.0092, 0.0082 (seeds 1/2, 3/4, 5/6).
FLUID_REPEATS = 0.02


def _repeats(values: np.ndarray) -> np.ndarray:
    """Per step and reading: the same value as the step before (a stuck sensor's sign)."""
    same = np.zeros(values.shape, dtype=bool)
    if len(values) > 1:
        same[1:] = values[1:] == values[:-1]
    return same


def unstuck(baseline: Baseline, values: np.ndarray) -> np.ndarray:
    """``values`` with the repeats of the baseline's fluid readings taken as missing: a sensor
    stuck for a day would otherwise read as a reading with no noise that left its relations."""
    if not baseline.fluid:
        return values
    stuck = _repeats(values)
    keep = np.zeros(values.shape[1], dtype=bool)
    keep[list(baseline.fluid)] = True
    return np.where(stuck & keep, np.nan, values)


# A reading enters the relations as "is it zero" too when this share of its baseline is zero.
ZERO_SHARE = (0.05, 0.95)


def _regressors(z: np.ndarray, values: np.ndarray, j: int, zeros: tuple[int, ...]) -> np.ndarray:
    """What reading ``j`` is fitted on: the other readings (standardised) and their zero flags."""
    flags = [(values[:, k] == 0.0).astype(float) for k in zeros if k != j]
    return np.column_stack([np.delete(z, j, axis=1), *flags]) if flags else np.delete(z, j, axis=1)


def baseline_of(frame: pd.DataFrame) -> Baseline:
    """The baseline of the readings in ``frame`` (steps by readings)."""
    metrics = tuple(str(c) for c in frame.columns)
    values = frame.to_numpy(dtype=float)
    median = np.array([np.nanmedian(values[:, j]) if np.isfinite(values[:, j]).any() else math.nan
                       for j in range(values.shape[1])])
    scale = np.array([_floor(_robust_sd(values[:, j]), median[j]) for j in range(len(metrics))])
    noise = np.array([_floor(_noise(values[:, j]), median[j]) for j in range(len(metrics))])
    missing = np.mean(~np.isfinite(values), axis=0) if len(values) else np.ones(len(metrics))
    relation: dict[str, tuple[np.ndarray, float, float]] = {}
    complete = values[np.isfinite(values).all(axis=1)]
    zero_share = np.mean(complete == 0.0, axis=0) if len(complete) else np.zeros(len(metrics))
    zeros = tuple(int(j) for j in np.flatnonzero((zero_share >= ZERO_SHARE[0])
                                                  & (zero_share <= ZERO_SHARE[1])))
    if len(metrics) >= 2 and len(complete) > 3 * (len(metrics) + len(zeros)):
        z = (complete - median) / scale
        for j, metric in enumerate(metrics):
            design = np.column_stack([_regressors(z, complete, j, zeros), np.ones(len(z))])
            # A little ridge: readings that move together (flow and motor current) stay stable.
            gram = design.T @ design + 1e-3 * len(z) * np.eye(design.shape[1])
            weights = np.linalg.solve(gram, design.T @ z[:, j])
            residual = z[:, j] - design @ weights
            spread = _floor(_robust_sd(residual), 0.0)
            relation[metric] = (weights[:-1], float(weights[-1]), spread)
    repeats = _repeats(values).mean(axis=0) if len(values) > 1 else np.ones(len(metrics))
    fluid = tuple(int(j) for j in np.flatnonzero(repeats <= FLUID_REPEATS))
    return Baseline(metrics, median, scale, noise, missing, relation, zeros, fluid)


def _array(baseline: Baseline, window: pd.DataFrame | np.ndarray) -> np.ndarray:
    if isinstance(window, pd.DataFrame):
        return window.reindex(columns=list(baseline.metrics)).to_numpy(dtype=float)
    return window


def window_features(baseline: Baseline, window: pd.DataFrame | np.ndarray,
                    noise_window: pd.DataFrame | np.ndarray | None = None) -> dict[str, float]:
    """The window's readings against the baseline: ``<reading>__<kind>`` for each of KINDS.

    ``window``: a frame of readings, or an array whose columns are the baseline's readings;
    ``noise_window`` (the window itself if None), the readings whose noise ``spread`` and
    ``noise`` measure: a size of noise needs more steps than a median to be as sure.
    """
    values = unstuck(baseline, _array(baseline, window))
    noisy = values if noise_window is None else unstuck(baseline, _array(baseline, noise_window))
    out: dict[str, float] = {}
    z = (values - baseline.median) / baseline.scale
    complete = np.isfinite(z).all(axis=1)
    noisy_z = (noisy - baseline.median) / baseline.scale
    noisy_complete = np.isfinite(noisy_z).all(axis=1)
    for j, metric in enumerate(baseline.metrics):
        column = values[:, j]
        finite = np.isfinite(column)
        level = spread = relation = residual_noise = 0.0
        if finite.any() and math.isfinite(baseline.median[j]):
            level = (float(np.median(column[finite])) - baseline.median[j]) / baseline.scale[j]
            noise = _noise(noisy[:, j])
            if math.isfinite(noise):
                spread = math.log(max(noise, 1e-12) / baseline.noise[j])
        fit = baseline.relation.get(metric)
        if fit is not None and complete.sum() >= 3:
            weights, intercept, sd = fit
            regressors = _regressors(z[complete], values[complete], j, baseline.zeros)
            residual = z[complete, j] - (regressors @ weights + intercept)
            relation = float(np.median(residual)) / sd
        if fit is not None and noisy_complete.sum() >= 3:
            weights, intercept, sd = fit
            regressors = _regressors(noisy_z[noisy_complete], noisy[noisy_complete], j,
                                     baseline.zeros)
            residual = noisy_z[noisy_complete, j] - (regressors @ weights + intercept)
            residual_noise = math.log(_floor(_robust_sd(residual), 0.0) / sd)
        missing = max(0.0, float(np.mean(~finite)) - float(baseline.missing[j])) if len(
            column) else 1.0
        for kind, value in zip(KINDS, (level, spread, relation, residual_noise, missing),
                               strict=True):
            out[f"{metric}{SEPARATOR}{kind}"] = float(np.clip(value, -CLIP, CLIP))
    return out


def _enough(values: np.ndarray, days: float, step: timedelta, share: float) -> bool:
    expected = days * DAY / step
    return bool(np.isfinite(values).any(axis=1).sum() >= share * expected)


def life_rows(
    frame: pd.DataFrame, life: Life, *, step: timedelta, settings: RowSettings,
    at: Sequence[datetime] | None = None,
) -> pd.DataFrame:
    """A row per ``row_every_days`` of the life after its baseline (or at the times ``at``).

    ``frame``: the device's readings resampled to ``step`` (index: step start times, UTC).
    Columns: ``device``, ``model``, ``time``, ``life_end``, ``left_days`` (time to that end),
    ``failed`` (whether that end is a failure), ``fault_type``, and the window features.
    """
    columns = ["device", "model", "time", "life_end", "left_days", "failed", "fault_type"]
    stamps = _stamps(frame.index)
    values = frame.to_numpy(dtype=float)
    lo, hi = np.searchsorted(stamps, [_stamp(life.start), _stamp(life.end)])
    base_days = timedelta(days=settings.baseline_days)
    window = timedelta(days=settings.window_days)
    noise_window = timedelta(days=max(settings.noise_window_days, settings.window_days))
    lag = timedelta(days=settings.baseline_lag_days)
    if at is None:
        every = timedelta(days=settings.row_every_days)
        first = life.start + base_days + window
        count = max(0, math.ceil((life.end - first) / every))
        at = [first + k * every for k in range(count)]
    baselines: dict[datetime, Baseline | None] = {}
    rows = []
    for t in at:
        base_start = max(life.start, t - lag)
        if t - window < base_start + base_days or t > life.end:
            continue
        if base_start not in baselines:
            a, b = np.searchsorted(stamps, [_stamp(base_start), _stamp(base_start + base_days)])
            base = values[max(a, lo):min(b, hi)]
            baselines[base_start] = (
                baseline_of(pd.DataFrame(base, columns=frame.columns))
                if _enough(base, settings.baseline_days, step, settings.min_coverage) else None)
        baseline = baselines[base_start]
        if baseline is None:
            continue
        a, b = np.searchsorted(stamps, [_stamp(t - window), _stamp(t)])
        chunk = values[max(a, lo):min(b, hi)]
        if not _enough(chunk, settings.window_days, step, settings.min_coverage):
            continue
        c = np.searchsorted(stamps, _stamp(max(t - noise_window, base_start + base_days)))
        long = values[max(c, lo):min(b, hi)]
        row: dict[str, object] = {
            "device": life.device, "model": life.model, "time": t, "life_end": life.end,
            "left_days": (life.end - t) / DAY, "failed": life.failed,
            "fault_type": life.fault_type}
        row.update(window_features(baseline, chunk, long))
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=columns)
    return pd.DataFrame(rows)


def _stamp(t: datetime) -> int:
    return int(pd.Timestamp(t).as_unit("ns").value)


def _stamps(index: pd.Index) -> np.ndarray:
    return np.asarray(pd.DatetimeIndex(index).as_unit("ns").asi8, dtype=np.int64)


def device_rows(
    frame: pd.DataFrame, lives_: Iterable[Life], *, step: timedelta, settings: RowSettings,
) -> pd.DataFrame:
    """The training rows of all of a device's lives."""
    parts = [life_rows(frame, life, step=step, settings=settings) for life in lives_]
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def metric_of(feature: str) -> str:
    return feature.rsplit(SEPARATOR, 1)[0]


def kind_of(feature: str) -> str:
    return feature.rsplit(SEPARATOR, 1)[1]
