"""Shape novelty: has the recent course of the stream been seen before?

Catches what a value-by-value test cannot: a daily cycle that flattens, a
spike that fails to come, a familiar level reached by an unfamiliar path. The
recent past is summarised as ``blocks`` block means of ``block_size`` samples
each (the averaging removes sample noise and lets a short vector span hours),
scaled by the range of the last ``window`` samples. Its distance (Chebyshev)
to the nearest of the last ``memory`` such vectors is the statistic, a bounded
nearest-neighbour search in the spirit of KNN-CAD and ARTime. The search runs
once per completed block, so its cost is spread over ``block_size`` samples.

A shape never spans a gap longer than ``max_gap`` seconds: the blocks before
it are dropped and the shape starts again, since joining the two sides would
draw a course the device never took. A stuck value makes flat shapes, novel
at first (a cycle that stopped), familiar once they fill the memory.
"""

from __future__ import annotations

from collections import deque
from typing import Any, ClassVar

import numpy as np

from analytics.detectors.base import Param, StreamingDetector
from analytics.detectors.range import RecentExtremes
from analytics.detectors.tail import EmpiricalTail


class ShapeNoveltyDetector(StreamingDetector):
    """Nearest-neighbour distance of the recent shape to past shapes, calibrated.

    Parameters: ``blocks`` and ``block_size`` set the span (64 samples by
    default), ``memory`` how many past shapes are compared, ``history`` the
    calibration window (see :class:`EmpiricalTail`), ``window`` the samples
    whose range scales the values, ``max_gap`` (seconds, None for no limit)
    the longest silence a shape may span.
    """

    _constraints: ClassVar[dict[str, Param]] = {
        "blocks": Param(int, 1, 256),
        "block_size": Param(int, 1, samples=True),
        "memory": Param(int, 20),
        "history": Param(int, 30, samples=True),
        "window": Param(int, 16, samples=True),
        "max_gap": Param(float, 0.0, seconds=True, optional=True),
    }

    def __init__(
        self,
        blocks: int = 8,
        block_size: int = 8,
        memory: int = 500,
        history: int = 500,
        window: int = 17280,
        max_gap: float | None = 21600.0,
    ) -> None:
        self.blocks = blocks
        self.block_size = block_size
        self.memory = memory
        self.history = history
        self.window = window
        self.max_gap = max_gap
        self.reset()

    def _reset(self) -> None:
        self.tail_ = EmpiricalTail(self.history)
        self.extremes_ = RecentExtremes(self.window)
        self.previous_: float | None = None
        self.block_sum_ = 0.0
        self.block_count_ = 0
        self.recent_: deque[float] = deque(maxlen=self.blocks)
        # shapes wait here until they no longer overlap the current one
        self.pending_: deque[list[float]] = deque()
        self.shapes_ = np.zeros((self.memory, self.blocks))
        self.stored_ = 0

    def statistic(self, timestamp: float, value: float) -> float | None:
        """Distance of the shape ending now to its nearest stored neighbour, or None."""
        previous, self.previous_ = self.previous_, timestamp
        gap = self.max_gap
        if previous is not None and gap is not None and timestamp - previous > gap:
            self.recent_.clear()
            self.block_sum_ = 0.0
            self.block_count_ = 0
        extremes = self.extremes_
        low, high = extremes.low, extremes.high
        extremes.add(value)
        if low is None or high is None:
            low = high = value
        span = high - low
        scaled = (value - low) / span if span > 0.0 else 0.0
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

    def _surprise(self, timestamp: float, value: float) -> float:
        d = self.statistic(timestamp, value)
        return 0.0 if d is None else self.tail_.update(d)

    def _export(self) -> dict[str, Any]:
        known = min(self.stored_, self.memory)
        return {
            "tail": self.tail_.get_state(),
            "extremes": self.extremes_.get_state(),
            "previous": self.previous_,
            "block_sum": self.block_sum_,
            "block_count": self.block_count_,
            "recent": list(self.recent_),
            "pending": [list(s) for s in self.pending_],
            "shapes": self.shapes_[:known].tolist(),
            "stored": self.stored_,
        }

    def _import(self, learned: dict[str, Any]) -> None:
        self.tail_.set_state(learned["tail"])
        self.extremes_.set_state(learned["extremes"])
        self.previous_ = learned["previous"]
        self.block_sum_ = learned["block_sum"]
        self.block_count_ = learned["block_count"]
        self.recent_.extend(learned["recent"])
        self.pending_.extend(list(s) for s in learned["pending"])
        shapes = learned["shapes"]
        if shapes:
            self.shapes_[: len(shapes)] = np.array(shapes, dtype=float)
        self.stored_ = learned["stored"]
