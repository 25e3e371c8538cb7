"""The telemetry store contract every implementation honours.

A point's identity is (measurement, device, model, site, timestamp): writing the
same point twice stores it once, so a replayed batch overwrites itself. Metric
names and device ids follow the wire protocol's rules and are checked here,
before anything reaches a database.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Literal

from edge_agent.protocol import (
    MAX_TS_MS,
    MIN_TS_MS,
    ProtocolError,
    validate_device_id,
    validate_metric_name,
)

if TYPE_CHECKING:
    import pandas as pd

Aggregate = Literal["mean", "min", "max", "sum", "count", "first", "last", "median"]
AGGREGATES: tuple[str, ...] = ("mean", "min", "max", "sum", "count", "first", "last", "median")
MEASUREMENT_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
TAG_VALUE_MAX = 128
DEFAULT_MEASUREMENT = "telemetry"


class TelemetryError(ValueError):
    """Bad input to a telemetry store: the message says which value and why."""


class StoreUnavailable(RuntimeError):
    """The store could not be reached or refused the request after retries."""


@dataclass(frozen=True, slots=True)
class Point:
    """One sample of one device: a timestamp and its metric values."""

    device: str
    ts: int  # epoch milliseconds, UTC
    metrics: Mapping[str, float]
    model: str = ""
    site: str = ""
    measurement: str = DEFAULT_MEASUREMENT
    extra_tags: Mapping[str, str] = field(default_factory=dict)


def validate_point(point: Point) -> Point:
    try:
        validate_device_id(point.device)
        for name, value in point.metrics.items():
            validate_metric_name(name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
                shown = (f"an integer of {value.bit_length()} bits" if isinstance(value, int)
                         and not isinstance(value, bool) else f"{value!r:.80}")
                raise TelemetryError(f"metric {name!r} of {point.device}: {shown} is not a finite "
                                     "number of double precision")
    except ProtocolError as exc:
        raise TelemetryError(str(exc)) from exc
    if not point.metrics:
        raise TelemetryError(f"point of {point.device} at {point.ts} has no metrics")
    validate_measurement(point.measurement)
    if isinstance(point.ts, bool) or not isinstance(point.ts, int) or not MIN_TS_MS <= point.ts < MAX_TS_MS:
        raise TelemetryError(f"timestamp {point.ts!r} of {point.device} is not epoch ms in 2000..2100")
    for key, tag in (("model", point.model), ("site", point.site), *point.extra_tags.items()):
        validate_tag(key, tag)
    return point


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond the range of a double
        return False


def validate_measurement(name: str) -> str:
    if not isinstance(name, str) or not MEASUREMENT_RE.fullmatch(name):
        raise TelemetryError(f"invalid measurement {name!r}: lower-case letters, digits, '_'")
    return name


def validate_tag(key: str, value: str) -> None:
    if not isinstance(key, str) or not MEASUREMENT_RE.fullmatch(key):
        raise TelemetryError(f"invalid tag key {key!r}")
    if not isinstance(value, str) or len(value) > TAG_VALUE_MAX or any(c in value for c in "\n\r\0"):
        raise TelemetryError(f"invalid value for tag {key!r}: at most {TAG_VALUE_MAX} characters, "
                             "no line breaks or NUL")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise TelemetryError(f"invalid value for tag {key!r}: {value!r:.80} is not valid "
                             "Unicode (an unpaired surrogate)") from None


def to_epoch_ms(value: datetime | int) -> int:
    """Accepts epoch ms or an aware datetime; a naive datetime is refused as ambiguous."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise TelemetryError(f"datetime {value.isoformat()} has no time zone")
        return int(value.timestamp() * 1000)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TelemetryError(f"time {value!r} is neither epoch ms nor a datetime")
    return value


def validate_range(start: datetime | int, end: datetime | int) -> tuple[int, int]:
    a, b = to_epoch_ms(start), to_epoch_ms(end)
    if not MIN_TS_MS <= a < MAX_TS_MS or not MIN_TS_MS <= b <= MAX_TS_MS:
        raise TelemetryError("time range must lie within 2000-01-01..2100-01-01")
    if a >= b:
        raise TelemetryError(f"empty time range: start {a} is not before end {b}")
    return a, b


def validate_interval(interval: timedelta | None, aggregate: str) -> int | None:
    if aggregate not in AGGREGATES:
        raise TelemetryError(f"unknown aggregate {aggregate!r}; one of {', '.join(AGGREGATES)}")
    if interval is None:
        return None
    ms = int(interval.total_seconds() * 1000)
    if ms < 1000 or ms % 1000:
        raise TelemetryError(f"interval {interval} must be a whole number of seconds, at least 1 s")
    return ms


def utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


class TelemetryStore(ABC):
    """Where telemetry lives. Implementations: InfluxDB and the embedded store."""

    @abstractmethod
    def write(self, points: Iterable[Point]) -> int:
        """Store points durably (idempotent); returns how many were written.

        Raises TelemetryError for bad input (nothing of the batch is written) and
        StoreUnavailable when the store cannot take it after retries.
        """

    @abstractmethod
    def query(
        self,
        device: str,
        start: datetime | int,
        end: datetime | int,
        *,
        metrics: Sequence[str] | None = None,
        interval: timedelta | None = None,
        aggregate: Aggregate = "mean",
        measurement: str = DEFAULT_MEASUREMENT,
    ) -> pd.DataFrame:
        """A device's metrics in [start, end): a DataFrame indexed by UTC time, a column per metric.

        With ``interval``, one row per interval (aligned to the epoch) holding the
        aggregate of each metric; intervals with no data are left out.
        """

    @abstractmethod
    def latest(
        self, devices: Sequence[str] | None = None, *, measurement: str = DEFAULT_MEASUREMENT
    ) -> pd.DataFrame:
        """The newest value of each metric per device: indexed by device, with a ``time`` column."""

    @abstractmethod
    def devices(self, *, measurement: str = DEFAULT_MEASUREMENT) -> list[str]:
        """Devices that have telemetry, sorted."""

    @abstractmethod
    def metrics(self, device: str | None = None, *, measurement: str = DEFAULT_MEASUREMENT) -> list[str]:
        """Metric names, of one device or of all, sorted."""

    @abstractmethod
    def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers and accepts this client."""

    def close(self) -> None:
        """Release connections."""

    def __enter__(self) -> TelemetryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
