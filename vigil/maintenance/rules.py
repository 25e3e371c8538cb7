"""When maintenance falls due, and whether measured values are within tolerance: pure rules.

A plan is due every N days, every N hours of use, or whichever comes first.
Usage is a reading of the device's usage-hours counter (from telemetry); the
date it will reach the next threshold is projected from the rate of use since
the work was last done, so a ticket can open a lead time ahead for usage plans
too. Nothing here reads a clock or a database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from vigil.errors import InvalidRequest


@dataclass(frozen=True, slots=True)
class Interval:
    """Every ``days`` days, every ``usage_hours`` hours of use, or whichever comes first."""

    days: int | None = None
    usage_hours: float | None = None

    def __post_init__(self) -> None:
        if self.days is None and self.usage_hours is None:
            raise InvalidRequest("a maintenance interval needs days, usage hours or both")
        if self.days is not None and self.days <= 0:
            raise InvalidRequest(f"interval days must be positive, got {self.days}")
        if self.usage_hours is not None and self.usage_hours <= 0:
            raise InvalidRequest(f"interval usage hours must be positive, got {self.usage_hours}")


@dataclass(frozen=True, slots=True)
class Usage:
    """A reading of a device's usage-hours counter, and when it was taken."""

    hours: float
    at: datetime


@dataclass(frozen=True, slots=True)
class Due:
    """The next due date, and what sets it (``calendar`` or ``usage``; None: not yet known)."""

    at: datetime | None
    by: str | None
    usage_hours: float | None


def next_due(interval: Interval, *, done_at: datetime, done_usage_hours: float | None,
             usage: Usage | None = None, done_usage_at: datetime | None = None) -> Due:
    """The next due date after work done at ``done_at`` (with the counter at ``done_usage_hours``,
    read at ``done_usage_at``, by default the work's time).

    By usage: due at once when the latest reading has reached the threshold;
    otherwise projected at the rate of use since the counter was read. Without a
    usage rate (no reading since, or the counter stood still) a usage-only plan
    has no date yet, and a combined plan falls due by the calendar. A device whose
    counter at the work is unknown counts from its first reading, taken later: the
    rate must be counted from that reading's time, not the work's.
    """
    since = done_usage_at or done_at
    calendar_at = done_at + timedelta(days=interval.days) if interval.days else None
    usage_at: datetime | None = None
    threshold: float | None = None
    if interval.usage_hours is not None:
        base = done_usage_hours
        if base is None and usage is not None and usage.at <= done_at:
            base = usage.hours
        if base is not None:
            threshold = base + interval.usage_hours
        if threshold is not None and usage is not None:
            if usage.hours >= threshold:
                usage_at = max(usage.at, done_at)
            elif base is not None and usage.at > since and usage.hours > base:
                rate = (usage.hours - base) / (usage.at - since).total_seconds()
                usage_at = usage.at + timedelta(seconds=(threshold - usage.hours) / rate)
    candidates = [(at, by) for at, by in ((calendar_at, "calendar"), (usage_at, "usage"))
                  if at is not None]
    if not candidates:
        return Due(at=None, by=None, usage_hours=threshold)
    at, by = min(candidates, key=lambda c: c[0])
    return Due(at=at, by=by, usage_hours=threshold)


class DueStatus(StrEnum):
    SCHEDULED = "scheduled"  # not yet within the lead time
    UPCOMING = "upcoming"  # within the lead time: the ticket opens
    DUE = "due"  # past the due date, within the grace period
    OVERDUE = "overdue"  # past the grace period: escalated


def status(due_at: datetime | None, *, now: datetime, lead: timedelta,
           grace: timedelta = timedelta(0)) -> DueStatus:
    if due_at is None or now < due_at - lead:
        return DueStatus.SCHEDULED
    if now < due_at:
        return DueStatus.UPCOMING
    if now < due_at + grace:
        return DueStatus.DUE
    return DueStatus.OVERDUE


@dataclass(frozen=True, slots=True)
class Tolerance:
    """Acceptable limits of one measured quantity (either may be open)."""

    low: float | None = None
    high: float | None = None
    nominal: float | None = None
    unit: str = ""

    def __post_init__(self) -> None:
        if self.low is not None and self.high is not None and self.low > self.high:
            raise InvalidRequest(f"tolerance low {self.low} is above high {self.high}")

    def within(self, value: float) -> bool:
        return ((self.low is None or value >= self.low)
                and (self.high is None or value <= self.high))

    @classmethod
    def from_json(cls, name: str, doc: Mapping[str, Any]) -> Tolerance:
        unknown = set(doc) - {"low", "high", "nominal", "unit"}
        if unknown:
            raise InvalidRequest(f"tolerance {name!r}: unknown keys {sorted(unknown)}")
        try:
            return cls(low=_number(doc.get("low")), high=_number(doc.get("high")),
                       nominal=_number(doc.get("nominal")), unit=str(doc.get("unit", "")))
        except (TypeError, ValueError):
            raise InvalidRequest(f"tolerance {name!r}: limits must be numbers") from None


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(value)
    return float(value)


@dataclass(frozen=True, slots=True)
class Measured:
    name: str
    value: float
    tolerance: Tolerance | None
    within: bool

    def as_json(self) -> dict[str, Any]:
        limits = self.tolerance or Tolerance()
        return {"name": self.name, "value": self.value, "low": limits.low, "high": limits.high,
                "nominal": limits.nominal, "unit": limits.unit, "within": self.within}


def check_measurements(values: Mapping[str, float],
                       tolerances: Mapping[str, Tolerance]) -> list[Measured]:
    """Each value against its tolerance; every toleranced quantity must be measured.

    A value without a tolerance is recorded as within (there is nothing to hold it to).
    """
    missing = sorted(set(tolerances) - set(values))
    if missing:
        raise InvalidRequest(f"measurements missing for {', '.join(missing)}")
    results = []
    for name in sorted(values):
        value = values[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            raise InvalidRequest(f"measurement {name!r}: {value!r} is not a number")
        tolerance = tolerances.get(name)
        within = tolerance.within(float(value)) if tolerance is not None else True
        results.append(Measured(name, float(value), tolerance, within))
    return results
