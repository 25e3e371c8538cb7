"""The interface every streaming anomaly detector in Vigil follows.

A detector watches one metric of one device. It sees one sample at a time,
answers with an anomaly score in [0, 1] computed from that sample and the past
only, does a bounded amount of work per sample and keeps bounded memory. Its
whole learned state can be exported as plain JSON-able data and loaded into a
fresh instance, so a restarted scoring job resumes exactly where it stopped
instead of learning the stream again.

Conventions follow scikit-learn: parameters are the ``__init__`` arguments,
stored unchanged under the same names; learned state lives in attributes whose
names end with ``_``.
"""

from __future__ import annotations

import importlib
import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

# Scores are 1 - exp(-surprise / SURPRISE_SCALE): monotone in the surprise, so
# ranking and thresholds are preserved, and never saturating in floating point.
SURPRISE_SCALE = 10.0

# Saved states name their class; only classes from this package are rebuilt.
_PACKAGE = __name__.rpartition(".")[0]


def surprise_to_score(surprise: float) -> float:
    """Maps a surprise in nats (>= 0) to a score in [0, 1)."""
    if surprise <= 0.0:
        return 0.0
    return 1.0 - math.exp(-surprise / SURPRISE_SCALE)


def score_to_surprise(score: float) -> float:
    """Inverse of :func:`surprise_to_score`, for reading thresholds back in nats."""
    return -SURPRISE_SCALE * math.log1p(-min(score, 1.0 - 1e-16))


class StreamingDetector(ABC):
    """One metric stream in, one anomaly score per sample out."""

    @abstractmethod
    def surprise(self, timestamp: float, value: float) -> float:
        """Consumes one sample; returns how unexpected it was, in nats (>= 0).

        ``timestamp`` is in seconds since the epoch (UTC).
        """

    @abstractmethod
    def _export(self) -> dict[str, Any]:
        """Learned attributes as JSON-able data."""

    @abstractmethod
    def _import(self, learned: dict[str, Any]) -> None:
        """Loads what :meth:`_export` produced."""

    @abstractmethod
    def reset(self) -> None:
        """Forgets everything learned; parameters stay."""

    def score(self, timestamp: float, value: float) -> float:
        """Consumes one sample; returns its anomaly score in [0, 1]."""
        return surprise_to_score(self.surprise(timestamp, value))

    def score_many(self, timestamps: Iterable[float], values: Iterable[float]) -> list[float]:
        """Scores a sequence in order, exactly as repeated :meth:`score` calls would."""
        surprise = self.surprise
        out = []
        append = out.append
        exp = math.exp
        for t, x in zip(timestamps, values, strict=True):
            s = surprise(t, x)
            append(1.0 - exp(-s / SURPRISE_SCALE) if s > 0.0 else 0.0)
        return out

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
            "params": self.get_params(),
            "learned": self._export(),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Resumes from :meth:`get_state` output of a detector with the same parameters."""
        if state.get("params") != self.get_params():
            raise ValueError("state was saved by a detector with other parameters")
        self._import(state["learned"])

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
