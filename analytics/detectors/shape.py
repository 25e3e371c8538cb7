"""Shape novelty: has the recent course of the stream been seen before?

Catches what a value-by-value test cannot: a daily cycle that flattens, a
spike that fails to come, a familiar level reached by an unfamiliar path. The
recent past is summarised as ``blocks`` block means of ``block_size`` samples
each (the averaging removes sample noise and lets a short vector span hours),
scaled by the range seen so far. Its distance (Chebyshev) to the nearest of the
last ``memory`` such vectors is the statistic, a bounded nearest-neighbour
search in the spirit of KNN-CAD and ARTime. The search runs once per completed
block, so its cost is spread over ``block_size`` samples.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from analytics.detectors.base import StreamingDetector
from analytics.detectors.tail import EmpiricalTail


class ShapeNoveltyDetector(StreamingDetector):
    """Nearest-neighbour distance of the recent shape to past shapes, calibrated.

    Parameters: ``blocks`` and ``block_size`` set the span (64 samples by
    default), ``memory`` how many past shapes are compared, ``history`` the
    calibration window (see :class:`EmpiricalTail`).
    """

    def __init__(
        self, blocks: int = 8, block_size: int = 8, memory: int = 500, history: int = 500
    ) -> None:
        self.blocks = blocks
        self.block_size = block_size
        self.memory = memory
        self.history = history
        self.reset()

    def reset(self) -> None:
        self.tail_ = EmpiricalTail(self.history)
        self.low_: float | None = None
        self.high_: float | None = None
        self.block_sum_ = 0.0
        self.block_count_ = 0
        self.recent_: deque[float] = deque(maxlen=self.blocks)
        # shapes wait here until they no longer overlap the current one
        self.pending_: deque[list[float]] = deque()
        self.shapes_ = np.zeros((self.memory, self.blocks))
        self.stored_ = 0

    def statistic(self, value: float) -> float | None:
        """Distance of the shape ending now to its nearest stored neighbour, or None."""
        low, high = self.low_, self.high_
        if low is None or high is None:
            self.low_ = self.high_ = value
            low = high = value
        span = high - low
        scaled = (value - low) / span if span > 0.0 else 0.0
        if value < low:
            self.low_ = value
        elif value > high:
            self.high_ = value
        self.block_sum_ += scaled
        self.block_count_ += 1
        if self.block_count_ < self.block_size:
            return None
        self.recent_.append(self.block_sum_ / self.block_count_)
        self.block_sum_ = 0.0
        self.block_count_ = 0
        if len(self.recent_) < self.blocks:
            return None
        shape = list(self.recent_)
        known = min(self.stored_, self.memory)
        distance = None
        if known >= 20:
            diff = np.abs(self.shapes_[:known] - np.array(shape))
            distance = float(diff.max(axis=1).min())
        self.pending_.append(shape)
        if len(self.pending_) > self.blocks:
            self.shapes_[self.stored_ % self.memory] = self.pending_.popleft()
            self.stored_ += 1
        return distance

    def surprise(self, timestamp: float, value: float) -> float:
        d = self.statistic(value)
        return 0.0 if d is None else self.tail_.update(d)

    def _export(self) -> dict[str, Any]:
        known = min(self.stored_, self.memory)
        return {
            "tail": self.tail_.export(),
            "low": self.low_,
            "high": self.high_,
            "block_sum": self.block_sum_,
            "block_count": self.block_count_,
            "recent": list(self.recent_),
            "pending": [list(s) for s in self.pending_],
            "shapes": self.shapes_[:known].tolist(),
            "stored": self.stored_,
        }

    def _import(self, learned: dict[str, Any]) -> None:
        self.reset()
        self.tail_.load(learned["tail"])
        self.low_ = learned["low"]
        self.high_ = learned["high"]
        self.block_sum_ = learned["block_sum"]
        self.block_count_ = learned["block_count"]
        self.recent_.extend(learned["recent"])
        self.pending_.extend(list(s) for s in learned["pending"])
        shapes = learned["shapes"]
        if shapes:
            self.shapes_[: len(shapes)] = np.array(shapes, dtype=float)
        self.stored_ = learned["stored"]
