"""Range novelty: a value clearly outside everything the stream has shown.

The simplest and most reliable sign of trouble on a device is a reading it has
never produced: a temperature above any seen, a pressure below any seen. A
value further than ``tolerance`` times the observed span beyond the observed
minimum or maximum is reported as a confident anomaly, graded by how far it
lies beyond. (Numenta's NAB detectors use the same rule, with the same 5 %
tolerance, as their "spatial anomaly".)
"""

from __future__ import annotations

from typing import Any

from analytics.detectors.base import StreamingDetector


class RangeNoveltyDetector(StreamingDetector):
    """Surprise ``confident + excess / span`` for values beyond the seen range, else 0.

    Parameters: ``tolerance`` as a fraction of the span, ``min_samples`` before
    the range is trusted, ``confident`` the surprise in nats (20: p ~ 2e-9)
    given to any such value so it outranks every calibrated statistic.
    """

    def __init__(
        self, tolerance: float = 0.05, min_samples: int = 30, confident: float = 20.0
    ) -> None:
        self.tolerance = tolerance
        self.min_samples = min_samples
        self.confident = confident
        self.reset()

    def reset(self) -> None:
        self.low_: float | None = None
        self.high_: float | None = None
        self.seen_ = 0

    def surprise(self, timestamp: float, value: float) -> float:
        low, high = self.low_, self.high_
        self.seen_ += 1
        if low is None or high is None:
            self.low_ = self.high_ = value
            return 0.0
        if value < low:
            self.low_ = value
        elif value > high:
            self.high_ = value
        span = high - low
        if span <= 0.0 or self.seen_ <= self.min_samples:
            return 0.0
        excess = max(value - high, low - value) / span
        return self.confident + excess if excess > self.tolerance else 0.0

    def _export(self) -> dict[str, Any]:
        return {"low": self.low_, "high": self.high_, "seen": self.seen_}

    def _import(self, learned: dict[str, Any]) -> None:
        self.low_ = learned["low"]
        self.high_ = learned["high"]
        self.seen_ = int(learned["seen"])
