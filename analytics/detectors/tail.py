"""Calibrates any non-negative anomaly statistic into a surprise in nats.

Raw statistics (a residual, a distance) have a different scale on every
stream, so one threshold cannot serve a fleet. What is comparable across
streams is how rare a value is in the stream's own recent history:
``surprise = -log P(statistic >= x)``. Inside the observed range the
probability is the empirical one over the last ``history`` values; beyond the
largest value it continues with a generalised Pareto tail fitted to the top
``tail_size`` values (peaks over threshold, as in SPOT, Siffer et al. 2017), so
a value far past anything seen is graded by how far, and a heavy-tailed stream
(bursty counts) is not as surprised by its next burst as a light-tailed one.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from typing import Any


class EmpiricalTail:
    """Sliding-window tail probability of a statistic, O(history) memory.

    ``history`` values are kept twice (arrival order and sorted); each update
    is one binary search plus one list insert and delete, which are memory moves
    in C and cost microseconds at the sizes used here.
    """

    MAX_EXCESS = 50.0  # nats beyond the record; keeps scores finite

    def __init__(self, history: int = 500, tail_size: int = 10, min_history: int = 30) -> None:
        self.history = history
        self.tail_size = tail_size
        self.min_history = min_history
        self.reset()

    def reset(self) -> None:
        self.window_: deque[float] = deque()
        self.sorted_: list[float] = []

    def surprise(self, x: float) -> float:
        """-log of the upper-tail probability of ``x``; 0 until enough history."""
        ranked = self.sorted_
        n = len(ranked)
        if n < self.min_history:
            return 0.0
        at_least = n - bisect_left(ranked, x)
        if at_least:
            return math.log((n + 1) / (at_least + 1))
        return math.log(n + 1) + min(self._beyond_record(x), self.MAX_EXCESS)

    def _beyond_record(self, x: float) -> float:
        """-log P(X >= x | X >= record) under a Pareto tail fitted to the top values.

        Shape and scale come from the moments of the excesses over the
        ``tail_size``-th largest value; the shape is kept in [0, 0.5), where the
        moment estimator is valid, so the tail is never lighter than exponential.
        """
        ranked = self.sorted_
        top = ranked[-self.tail_size :]
        base = top[0]
        record = ranked[-1]
        k = len(top)
        mean = sum(top) / k - base
        if mean <= 0.0:
            return self.MAX_EXCESS if x > record else 0.0
        var = sum((v - base - mean) ** 2 for v in top) / max(k - 1, 1)
        shape = 0.0 if var <= 0.0 else min(max(0.5 * (1.0 - mean * mean / var), 0.0), 0.49)
        scale = mean * (1.0 - shape)
        if shape < 1e-6:
            return (x - record) / scale
        return (
            math.log1p(shape * (x - base) / scale) - math.log1p(shape * (record - base) / scale)
        ) / shape

    def add(self, x: float) -> None:
        insort(self.sorted_, x)
        self.window_.append(x)
        if len(self.window_) > self.history:
            old = self.window_.popleft()
            del self.sorted_[bisect_left(self.sorted_, old)]

    def update(self, x: float) -> float:
        """Surprise of ``x`` against the history before it, then learns ``x``."""
        s = self.surprise(x)
        self.add(x)
        return s

    def get_state(self) -> dict[str, Any]:
        return {"window": list(self.window_)}

    def set_state(self, learned: dict[str, Any]) -> None:
        self.window_ = deque(float(v) for v in learned["window"])
        self.sorted_ = sorted(self.window_)
