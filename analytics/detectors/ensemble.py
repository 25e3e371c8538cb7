"""The default streaming detector: several calibrated views, one alarm rule.

Each view turns the stream into its own statistic and calibrates it into a
surprise in nats against the stream's own history (see
:mod:`analytics.detectors.tail`), which makes the views comparable with each
other and across streams; the ensemble reports the largest. Three views cover
the anomalies met in practice:

- :class:`~analytics.detectors.range.RangeNoveltyDetector`: a value beyond
  anything seen;
- :class:`~analytics.detectors.seasonal.DailyProfileDetector`: a value unusual
  for the hour of the day (spikes, dips, level shifts);
- :class:`~analytics.detectors.shape.ShapeNoveltyDetector`: an unfamiliar
  course over the last hours (pattern changes, missing cycles).

After an alarm (surprise at least ``log(history) + alarm_margin``: rarer than
anything in the calibration window, by a factor e**alarm_margin) the detector
stays quiet for ``refractory`` samples: one incident should raise one alarm,
and the repeats an operator would see as noise are suppressed. The first
``warmup`` samples only teach.

Tuned on the Numenta Anomaly Benchmark (one setting for the whole corpus):
``history`` (500), ``alarm_margin`` (3), ``refractory`` (20) and the shape
span (8 blocks of 8 samples). The rest are conventional choices: hourly
profile, 5 % range tolerance, a warm-up shorter than NAB's probation.
"""

from __future__ import annotations

import math
from typing import Any

from analytics.detectors.base import StreamingDetector
from analytics.detectors.range import RangeNoveltyDetector
from analytics.detectors.seasonal import DailyProfileDetector
from analytics.detectors.shape import ShapeNoveltyDetector


class NoveltyEnsembleDetector(StreamingDetector):
    """Max of calibrated view surprises, with a refractory period after each alarm."""

    def __init__(
        self,
        history: int = 500,
        alarm_margin: float = 3.0,
        refractory: int = 20,
        warmup: int = 150,
        shape_blocks: int = 8,
        shape_block_size: int = 8,
        shape_memory: int = 500,
        profile_slots: int = 24,
        profile_alpha: float = 0.05,
        range_tolerance: float = 0.05,
    ) -> None:
        self.history = history
        self.alarm_margin = alarm_margin
        self.refractory = refractory
        self.warmup = warmup
        self.shape_blocks = shape_blocks
        self.shape_block_size = shape_block_size
        self.shape_memory = shape_memory
        self.profile_slots = profile_slots
        self.profile_alpha = profile_alpha
        self.range_tolerance = range_tolerance
        self.reset()

    @property
    def alarm_surprise(self) -> float:
        """Surprise (nats) at which an alarm fires and the refractory period starts."""
        return math.log(self.history) + self.alarm_margin

    def reset(self) -> None:
        self.range_ = RangeNoveltyDetector(tolerance=self.range_tolerance)
        self.profile_ = DailyProfileDetector(
            slots=self.profile_slots, alpha=self.profile_alpha, history=self.history
        )
        self.shape_ = ShapeNoveltyDetector(
            blocks=self.shape_blocks,
            block_size=self.shape_block_size,
            memory=self.shape_memory,
            history=self.history,
        )
        self.seen_ = 0
        self.quiet_ = 0

    def surprise(self, timestamp: float, value: float) -> float:
        if not math.isfinite(value):
            return 0.0
        s = max(
            self.range_.surprise(timestamp, value),
            self.profile_.surprise(timestamp, value),
            self.shape_.surprise(timestamp, value),
        )
        self.seen_ += 1
        if self.seen_ <= self.warmup:
            return 0.0
        if self.quiet_ > 0:
            self.quiet_ -= 1
            return 0.0
        if s >= self.alarm_surprise:
            self.quiet_ = self.refractory
        return s

    def _export(self) -> dict[str, Any]:
        return {
            "range": self.range_.get_state(),
            "profile": self.profile_.get_state(),
            "shape": self.shape_.get_state(),
            "seen": self.seen_,
            "quiet": self.quiet_,
        }

    def _import(self, learned: dict[str, Any]) -> None:
        self.reset()
        self.range_.set_state(learned["range"])
        self.profile_.set_state(learned["profile"])
        self.shape_.set_state(learned["shape"])
        self.seen_ = int(learned["seen"])
        self.quiet_ = int(learned["quiet"])
