"""The arithmetic of the service-quality report: pure functions, checked against hand counts.

Percentiles interpolate linearly between ranks, exactly as PostgreSQL's
``percentile_cont`` does, so a figure is the same whether the database or
Python computed it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime


def percentile(values: Iterable[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) with linear interpolation; None for no values."""
    if not 0 <= q <= 1:
        raise ValueError(f"a quantile is between 0 and 1, got {q}")
    ordered = sorted(values)
    if not ordered:
        return None
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def rate(part: int, whole: int) -> float | None:
    """A share, or None when there is nothing to take a share of (not 0 %: unknown)."""
    return part / whole if whole else None


def mean(total: float | None, count: int) -> float | None:
    return total / count if count and total is not None else None


def mtbf_hours(device_hours: float, failures: int) -> float | None:
    """Mean time between failures: operating hours over failures (None without a failure)."""
    return device_hours / failures if failures else None


def service_hours(period_start: datetime, period_end: datetime,
                  installed: Sequence[date | None]) -> float:
    """Operating hours of devices over a period; a device counts from its installation day.

    A device without an installation date is taken as in service for the whole period.
    """
    total = 0.0
    for day in installed:
        begin = period_start
        if day is not None:
            begin = max(period_start, datetime.combine(day, datetime.min.time(),
                                                       tzinfo=period_start.tzinfo))
        if begin < period_end:
            total += (period_end - begin).total_seconds() / 3600
    return total


@dataclass(frozen=True, slots=True)
class Completion:
    due: int
    done: int
    on_time: int
    rate: float | None
    on_time_rate: float | None


@dataclass(frozen=True, slots=True)
class Tally:
    """Planned work already counted (by the database): how much fell due, was done, on time."""

    kind: str
    high_risk: bool
    due: int
    done: int
    on_time: int


def combined(tallies: Iterable[Tally]) -> Completion:
    """Planned work done, and done by its due date, out of the work that fell due."""
    items = list(tallies)
    due = sum(t.due for t in items)
    done = sum(t.done for t in items)
    on_time = sum(t.on_time for t in items)
    return Completion(due=due, done=done, on_time=on_time, rate=rate(done, due),
                      on_time_rate=rate(on_time, due))
