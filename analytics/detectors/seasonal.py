"""Daily-profile residual: is this value unusual for this hour of the day?

Device load, ambient temperature and usage follow the working day. Comparing a
value with what the stream usually does at the same hour separates a normal
daily peak from a real excursion, and notices an expected rise that does not
come. The profile is an exponentially weighted mean per hour of the day (UTC),
so it follows slow drift. On a stream without a daily rhythm all hours
converge to the same level and this reduces to a residual from the mean.

Gaps need nothing special: a slot is found from the timestamp, not from a
count of samples, and a slot not visited for days keeps its last mean. A stuck
value gives residuals from the profile like any other value: the first hours
of a flattened daily cycle are surprising, and the profile then follows it at
``alpha`` per visit.
"""

from __future__ import annotations

from typing import Any, ClassVar

from analytics.detectors.base import Param, StreamingDetector
from analytics.detectors.tail import EmpiricalTail


class DailyProfileDetector(StreamingDetector):
    """|value - usual value at this hour|, calibrated by :class:`EmpiricalTail`.

    Parameters: ``slots`` per day (24: hourly), ``alpha`` the profile's
    forgetting rate per visit of a slot, i.e. per sample falling in that hour
    (0.05: the mean follows about the last 20 such samples, under two days of
    five-minute data), ``min_visits`` before a slot is trusted, ``history`` the
    calibration window.
    """

    _constraints: ClassVar[dict[str, Param]] = {
        "slots": Param(int, 1, 86400),
        "alpha": Param(float, 0.0, 1.0),
        "min_visits": Param(int, 1),
        "history": Param(int, 30, samples=True),
    }

    def __init__(
        self, slots: int = 24, alpha: float = 0.05, min_visits: int = 3, history: int = 500
    ) -> None:
        self.slots = slots
        self.alpha = alpha
        self.min_visits = min_visits
        self.history = history
        self.reset()

    def _reset(self) -> None:
        self.tail_ = EmpiricalTail(self.history)
        self.mean_: list[float] = [0.0] * self.slots
        self.visits_: list[int] = [0] * self.slots

    def statistic(self, timestamp: float, value: float) -> float | None:
        """Absolute residual from the slot's profile (None while the slot is new)."""
        slot = int(timestamp // (86400 / self.slots)) % self.slots
        visits = self.visits_[slot] + 1
        self.visits_[slot] = visits
        mean = self.mean_[slot]
        if visits == 1:
            self.mean_[slot] = value
            return None
        residual = abs(value - mean)
        rate = 1.0 / visits if visits * self.alpha < 1.0 else self.alpha
        self.mean_[slot] = mean + rate * (value - mean)
        return residual if visits > self.min_visits else None

    def _surprise(self, timestamp: float, value: float) -> float:
        r = self.statistic(timestamp, value)
        return 0.0 if r is None else self.tail_.update(r)

    def _export(self) -> dict[str, Any]:
        return {
            "tail": self.tail_.get_state(),
            "mean": list(self.mean_),
            "visits": list(self.visits_),
        }

    def _import(self, learned: dict[str, Any]) -> None:
        self.tail_.set_state(learned["tail"])
        self.mean_ = [float(v) for v in learned["mean"]]
        self.visits_ = [int(v) for v in learned["visits"]]
