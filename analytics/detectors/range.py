"""Range novelty: a value clearly outside everything the stream has shown lately.

The simplest and most reliable sign of trouble on a device is a reading it has
not produced before: a temperature above any seen, a pressure below any seen.
A value further than ``tolerance`` times the observed span beyond the observed
minimum or maximum is reported as a confident anomaly, graded by how far it
lies beyond. (Numenta's NAB detectors use the same rule, with the same 5 %
tolerance, as their "spatial anomaly".)

"Seen" means within the last ``window`` samples (:class:`RecentExtremes`):
all-time extremes would let one glitch (a 1e9 from a bad conversion) widen the
span for ever, and nothing after it could be new again.
"""

from __future__ import annotations

from collections import deque
from typing import Any, ClassVar

from analytics.detectors.base import Param, StreamingDetector


class RecentExtremes:
    """Minimum and maximum over about the last ``window`` values, in constant memory.

    The window is cut into ``BLOCKS`` blocks; the extremes are those of the
    complete blocks kept plus the block being filled, so they cover between
    ``window * (BLOCKS - 1) / BLOCKS`` and ``window`` values. Each value costs
    two comparisons, each completed block one pass over ``BLOCKS`` numbers.
    """

    BLOCKS = 16

    def __init__(self, window: int) -> None:
        self.window = window
        self.block = max(1, window // self.BLOCKS)
        self.lows: deque[float] = deque(maxlen=self.BLOCKS - 1)
        self.highs: deque[float] = deque(maxlen=self.BLOCKS - 1)
        self.block_low = self.block_high = 0.0
        self.count = 0
        self.low: float | None = None
        self.high: float | None = None

    def add(self, x: float) -> None:
        if self.count == 0:
            self.block_low = self.block_high = x
        elif x < self.block_low:
            self.block_low = x
        elif x > self.block_high:
            self.block_high = x
        self.count += 1
        if self.low is None or x < self.low:
            self.low = x
        if self.high is None or x > self.high:
            self.high = x
        if self.count == self.block:
            self.lows.append(self.block_low)
            self.highs.append(self.block_high)
            self.count = 0
            self.low = min(self.lows)
            self.high = max(self.highs)

    def get_state(self) -> dict[str, Any]:
        return {"lows": list(self.lows), "highs": list(self.highs), "block_low": self.block_low,
                "block_high": self.block_high, "count": self.count, "low": self.low,
                "high": self.high}

    def set_state(self, learned: dict[str, Any]) -> None:
        self.lows.clear()
        self.lows.extend(float(v) for v in learned["lows"])
        self.highs.clear()
        self.highs.extend(float(v) for v in learned["highs"])
        self.block_low = float(learned["block_low"])
        self.block_high = float(learned["block_high"])
        self.count = int(learned["count"])
        self.low = learned["low"]
        self.high = learned["high"]


class RangeNoveltyDetector(StreamingDetector):
    """Surprise ``confident + excess / span`` for values beyond the recent range, else 0.

    Parameters: ``tolerance`` as a fraction of the span, ``window`` the samples
    whose extremes count as seen, ``min_samples`` before the range is trusted,
    ``confident`` the surprise in nats (20: p ~ 2e-9) given to any such value
    so it outranks every calibrated statistic.

    A stuck value has span 0 and scores 0 until the value moves; the first
    move is then new and scores. Gaps change nothing.
    """

    _constraints: ClassVar[dict[str, Param]] = {
        "tolerance": Param(float, 0.0),
        "window": Param(int, 16, samples=True),
        "min_samples": Param(int, 1, samples=True),
        "confident": Param(float, 0.0),
    }

    def __init__(
        self,
        tolerance: float = 0.05,
        window: int = 17280,
        min_samples: int = 30,
        confident: float = 20.0,
    ) -> None:
        self.tolerance = tolerance
        self.window = window
        self.min_samples = min_samples
        self.confident = confident
        self.reset()

    def _reset(self) -> None:
        self.extremes_ = RecentExtremes(self.window)
        self.seen_ = 0

    def _surprise(self, timestamp: float, value: float) -> float:
        extremes = self.extremes_
        low, high = extremes.low, extremes.high
        extremes.add(value)
        self.seen_ += 1
        if low is None or high is None:
            return 0.0
        span = high - low
        if span <= 0.0 or self.seen_ <= self.min_samples:
            return 0.0
        excess = max(value - high, low - value) / span
        return self.confident + excess if excess > self.tolerance else 0.0

    def _export(self) -> dict[str, Any]:
        return {"extremes": self.extremes_.get_state(), "seen": self.seen_}

    def _import(self, learned: dict[str, Any]) -> None:
        self.extremes_.set_state(learned["extremes"])
        self.seen_ = int(learned["seen"])
