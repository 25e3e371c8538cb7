"""The interface every streaming anomaly detector in Vigil follows.

A detector watches one metric of one device. It sees one sample at a time,
answers with an anomaly score in [0, 1] computed from that sample and the past
only, does a bounded amount of work per sample and keeps bounded memory. Its
whole learned state can be exported as plain JSON-able data and loaded into a
fresh instance, so a restarted scoring job resumes exactly where it stopped
instead of learning the stream again.

What live streams do that benchmark files do not, and what every detector
here does about it (in :meth:`StreamingDetector.surprise`, so no view can
differ):

- a sample whose timestamp is not after the last one accepted (a replay after
  a restart, a duplicate, a clock step back) is ignored: surprise 0, nothing
  learned. The saved state carries that last timestamp, so a job resuming from
  an older watermark cannot count a sample twice;
- a value that is not a finite number (NaN, infinity, None) is a missing
  reading: surprise 0, nothing learned, but its timestamp counts as seen;
- gaps and stuck values are ordinary input; each view says what it makes of
  them.

Conventions follow scikit-learn: parameters are the ``__init__`` arguments,
stored unchanged under the same names and checked in one place
(:meth:`StreamingDetector.reset`, against the class's ``_constraints``);
learned state lives in attributes whose names end with ``_``. Settings that
count samples can be stated as durations with
:meth:`StreamingDetector.with_durations`.
"""

from __future__ import annotations

import importlib
import inspect
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar

# Scores are 1 - exp(-surprise / SURPRISE_SCALE): monotone in the surprise, so
# ranking and thresholds are preserved, and never saturating in floating point.
SURPRISE_SCALE = 10.0

# Saved states name their class; only classes from this package are rebuilt.
_PACKAGE = __name__.rpartition(".")[0]

# Version 2 added the last timestamp and the windowed extremes, version 3 the
# shape view's scales; a state of another version is refused rather than
# half-understood.
STATE_VERSION = 3

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(s|min|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def surprise_to_score(surprise: float) -> float:
    """Maps a surprise in nats (>= 0) to a score in [0, 1)."""
    if surprise <= 0.0:
        return 0.0
    return 1.0 - math.exp(-surprise / SURPRISE_SCALE)


def score_to_surprise(score: float) -> float:
    """Inverse of :func:`surprise_to_score`, for reading thresholds back in nats."""
    return -SURPRISE_SCALE * math.log1p(-min(score, 1.0 - 1e-16))


def duration_seconds(duration: str | float | timedelta) -> float:
    """Seconds in a duration given as a timedelta, seconds, or text like ``"90min"``, ``"2d"``."""
    if isinstance(duration, timedelta):
        return duration.total_seconds()
    if isinstance(duration, str):
        match = _DURATION.match(duration)
        if not match:
            raise ValueError(f"not a duration: {duration!r} (use s, min, h, d or w)")
        return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return float(duration)


@dataclass(frozen=True)
class Param:
    """What one ``__init__`` argument may be: its type and inclusive bounds.

    ``samples`` marks a count of samples and ``seconds`` a time span, which
    :meth:`StreamingDetector.with_durations` may derive from a duration.
    """

    kind: type
    low: float | None = None
    high: float | None = None
    samples: bool = False
    seconds: bool = False
    optional: bool = False

    def check(self, name: str, value: Any) -> None:
        if value is None and self.optional:
            return
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if not numeric or (self.kind is int and not isinstance(value, int)):
            raise TypeError(f"{name} must be {self.kind.__name__}, not {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, not {value!r}")
        if self.low is not None and value < self.low:
            raise ValueError(f"{name} must be >= {self.low}, not {value!r}")
        if self.high is not None and value > self.high:
            raise ValueError(f"{name} must be <= {self.high}, not {value!r}")


class StreamingDetector(ABC):
    """One metric stream in, one anomaly score per sample out."""

    _constraints: ClassVar[dict[str, Param]] = {}

    @abstractmethod
    def _surprise(self, timestamp: float, value: float) -> float:
        """Surprise in nats (>= 0) of one accepted sample (finite, in time order)."""

    @abstractmethod
    def _reset(self) -> None:
        """Creates the learned attributes, empty."""

    @abstractmethod
    def _export(self) -> dict[str, Any]:
        """Learned attributes as JSON-able data."""

    @abstractmethod
    def _import(self, learned: dict[str, Any]) -> None:
        """Loads what :meth:`_export` produced into freshly reset attributes."""

    def reset(self) -> None:
        """Checks the parameters, then forgets everything learned."""
        for name, rule in self._constraints.items():
            rule.check(name, getattr(self, name))
        self.last_timestamp_: float | None = None
        self._reset()

    def surprise(self, timestamp: float, value: float) -> float:
        """Consumes one sample; returns how unexpected it was, in nats (>= 0).

        ``timestamp`` is in seconds since the epoch (UTC). Replayed or
        out-of-order samples and non-finite values give 0 and teach nothing
        (see the module docstring).
        """
        last = self.last_timestamp_
        if last is not None and not timestamp > last:
            return 0.0
        if timestamp != timestamp:  # NaN: no place in time
            return 0.0
        self.last_timestamp_ = timestamp
        if value is None or not math.isfinite(value):
            return 0.0
        return self._surprise(timestamp, value)

    def update(self, timestamp: float, value: float) -> float:
        """Consumes one sample; returns its anomaly score in [0, 1].

        Named ``update``, not ``score``: in scikit-learn and in the rest of
        :mod:`analytics`, ``score`` rates a model against labelled data.
        """
        return surprise_to_score(self.surprise(timestamp, value))

    def update_many(self, timestamps: Iterable[float], values: Iterable[float]) -> list[float]:
        """Scores a sequence in order, exactly as repeated :meth:`update` calls would."""
        surprise = self.surprise
        out: list[float] = []
        append = out.append
        exp = math.exp
        for t, x in zip(timestamps, values, strict=True):
            s = surprise(t, x)
            append(1.0 - exp(-s / SURPRISE_SCALE) if s > 0.0 else 0.0)
        return out

    @classmethod
    def with_durations(
        cls, sample_period: str | float | timedelta, **settings: Any
    ) -> StreamingDetector:
        """A detector whose sample counts are given as durations at a nominal sampling period.

        ``sample_period`` is the device's sampling interval; any setting marked
        as a count of samples may be a duration (``"2d"``, seconds, a
        timedelta) and becomes the number of samples it spans, at least 1;
        a setting in seconds (``max_gap``) may be given the same ways.
        The detector itself counts samples: its work per sample stays constant.
        """
        period = duration_seconds(sample_period)
        if not period > 0.0:
            raise ValueError(f"sample_period must be positive, not {sample_period!r}")
        params = {}
        for name, value in settings.items():
            rule = cls._constraints.get(name)
            if rule is not None and rule.samples and not isinstance(value, int):
                value = max(1, round(duration_seconds(value) / period))
            elif rule is not None and rule.seconds and value is not None:
                value = duration_seconds(value)
            params[name] = value
        return cls(**params)

    def get_params(self) -> dict[str, Any]:
        """The ``__init__`` arguments, as given."""
        names = [
            p.name
            for p in inspect.signature(type(self).__init__).parameters.values()
            if p.name != "self" and p.kind is not p.VAR_KEYWORD
        ]
        return {name: _plain(getattr(self, name)) for name in names}

    def get_state(self) -> dict[str, Any]:
        """Everything needed to resume: which detector, its parameters, what it learned."""
        cls = type(self)
        return {
            "detector": f"{cls.__module__}.{cls.__qualname__}",
            "version": STATE_VERSION,
            "params": self.get_params(),
            "last_timestamp": self.last_timestamp_,
            "learned": self._export(),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Resumes from :meth:`get_state` output of a detector with the same parameters."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(
                f"state version {state.get('version')!r} is not {STATE_VERSION}: start afresh"
            )
        if state.get("params") != self.get_params():
            raise ValueError("state was saved by a detector with other parameters")
        self.reset()
        self._import(state["learned"])
        last = state["last_timestamp"]
        self.last_timestamp_ = None if last is None else float(last)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> StreamingDetector:
        """Builds the saved detector (of whichever class saved it) and loads its state."""
        module, _, name = state["detector"].rpartition(".")
        if not module.startswith(_PACKAGE + "."):
            raise TypeError(f"{state['detector']} is not one of Vigil's detectors")
        target = getattr(importlib.import_module(module), name)
        if not (isinstance(target, type) and issubclass(target, cls)):
            raise TypeError(f"{state['detector']} is not a {cls.__name__}")
        params = {k: tuple(v) if isinstance(v, list) else v for k, v in state["params"].items()}
        detector = target(**params)
        detector.set_state(state)
        return detector


def _plain(value: Any) -> Any:
    """Parameters as they survive a JSON round trip (tuples become lists)."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value
