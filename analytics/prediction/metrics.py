"""Figures of merit for remaining-useful-life predictions."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def rmse(true: ArrayLike, predicted: ArrayLike) -> float:
    """Root mean squared error, in cycles."""
    d = np.asarray(predicted, dtype=float) - np.asarray(true, dtype=float)
    return float(np.sqrt(np.mean(d * d)))


def phm08_score(true: ArrayLike, predicted: ArrayLike) -> float:
    """The PHM 2008 challenge score: asymmetric, a late prediction costs more than an early one.

    Sum over units of exp(-d/13) - 1 when predicting early (d < 0) and
    exp(d/10) - 1 when late, with d = predicted - true. Lower is better.
    """
    d = np.asarray(predicted, dtype=float) - np.asarray(true, dtype=float)
    return float(np.sum(np.where(d < 0, np.exp(-d / 13.0), np.exp(d / 10.0)) - 1.0))


def brier_score(outcome: ArrayLike, probability: ArrayLike) -> float:
    """Mean squared error of a probability against what happened (0 or 1). Lower is better."""
    o = np.asarray(outcome, dtype=float)
    p = np.asarray(probability, dtype=float)
    return float(np.mean((p - o) ** 2))


def interval_coverage(true: ArrayLike, lower: ArrayLike, upper: ArrayLike) -> float:
    """Share of true values inside [lower, upper]."""
    t = np.asarray(true, dtype=float)
    return float(np.mean((np.asarray(lower) <= t) & (t <= np.asarray(upper))))
