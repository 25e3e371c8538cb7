"""The telemetry store contract every implementation honours.

A point's identity is (measurement, device, model, site, timestamp): writing the
same point twice stores it once, so a replayed batch overwrites itself. Device
ids, metric names, tags and values are checked here, once, before either store
sees them, so both refuse exactly the same input.
"""

from __future__ import annotations

import itertools
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from edge_agent.protocol import (
    MAX_TS_MS,
    MIN_TS_MS,
    ProtocolError,
    validate_device_id,
    validate_metric_name,
)
from vigil import VigilError

if TYPE_CHECKING:
    import pandas as pd

Aggregate = Literal["mean", "min", "max", "sum", "count", "first", "last", "median"]
AGGREGATES: tuple[str, ...] = ("mean", "min", "max", "sum", "count", "first", "last", "median")
MEASUREMENT_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
TAG_VALUE_MAX = 128
DEFAULT_MEASUREMENT = "telemetry"

# Names a metric or an extra tag may not take: InfluxDB reserves ``time``, and a
# field or extra tag named like a tag would make ``WHERE "device" = ...`` ambiguous.
RESERVED_WORDS = ("device", "model", "site", "time")
# Every spelling of them in upper and lower case (128 strings), so the check stays
# a set intersection on the hot path while ``Time`` and ``DEVICE`` are refused too.
RESERVED_NAMES = frozenset(
    "".join(letters)
    for word in RESERVED_WORDS
    for letters in itertools.product(*((c.lower(), c.upper()) for c in word))
)


class TelemetryError(VigilError, ValueError):
    """Bad input to a telemetry store: the message says which value and why."""


class StoreUnavailable(VigilError, RuntimeError):
    """The store could not be reached or refused the request after retries."""


class WriteRefused(StoreUnavailable):
    """The store answers but refuses this data for good (say, older than its retention).

    Writing the same points again fails the same way, so a caller should set
    them aside rather than retry; any other ``StoreUnavailable`` may pass.
    """


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
    """The point, or TelemetryError saying what about it neither store would keep."""
    try:
        validate_device_id(point.device)
        for name, value in point.metrics.items():
            validate_metric_name(name)
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not is_finite_number(value)):
                shown = (f"an integer of {value.bit_length()} bits" if isinstance(value, int)
                         and not isinstance(value, bool) else f"{value!r:.80}")
                raise TelemetryError(f"metric {name!r} of {point.device}: {shown} is not a "
                                     "finite number of double precision")
    except ProtocolError as exc:
        raise TelemetryError(str(exc)) from exc
    if not point.metrics:
        raise TelemetryError(f"point of {point.device} at {point.ts} has no metrics")
    check_metric_names(point.metrics)
    validate_measurement(point.measurement)
    ts = point.ts
    if isinstance(ts, bool) or not isinstance(ts, int) or not MIN_TS_MS <= ts < MAX_TS_MS:
        raise TelemetryError(f"timestamp {ts!r} of {point.device} is not epoch ms in 2000..2100")
    for key, tag in (("model", point.model), ("site", point.site)):
        validate_tag(key, tag)
    for key, tag in point.extra_tags.items():
        validate_tag(key, tag)
        if key in RESERVED_NAMES:
            raise TelemetryError(f"extra tag {key!r} would clash with the sample's own {key}")
        if key in point.metrics:
            raise TelemetryError(f"extra tag {key!r} has the name of a metric")
    return point


def check_metric_names(names: Iterable[str]) -> None:
    """Refuse the reserved names, in any case, which the wire protocol alone allows."""
    clash = RESERVED_NAMES.intersection(names)
    if clash:
        raise TelemetryError(f"metric name {sorted(clash)[0]!r} is reserved by the telemetry "
                             f"store ({', '.join(RESERVED_WORDS)} name the sample itself)")


def is_finite_number(value: int | float) -> bool:
    """Whether ``value`` is a finite double; False too for an int beyond a double's range."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def validate_measurement(name: str) -> str:
    if not isinstance(name, str) or not MEASUREMENT_RE.fullmatch(name):
        raise TelemetryError(f"invalid measurement {name!r}: lower-case letters, digits, '_'")
    return name


def validate_tag(key: str, value: str) -> None:
    """Refuse a tag that either store would keep differently from what was written.

    InfluxDB's line protocol writes control characters as two-character escapes
    that InfluxDB then keeps literally, and a backslash as two that InfluxDB 1.x
    stores as two; the embedded store must not keep what InfluxDB cannot.
    """
    if not isinstance(key, str) or not MEASUREMENT_RE.fullmatch(key):
        raise TelemetryError(f"invalid tag key {key!r}")
    if not isinstance(value, str) or len(value) > TAG_VALUE_MAX:
        raise TelemetryError(f"invalid value for tag {key!r}: a string of at most "
                             f"{TAG_VALUE_MAX} characters")
    for char in value:
        if char < " " or char == "\x7f":
            raise TelemetryError(f"tag {key!r} value {value!r:.80}: control characters "
                                 "cannot be stored")
        if char == "\\":
            raise TelemetryError(f"tag {key!r} value {value!r:.80}: a backslash cannot be stored")
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
    def metrics(
        self, device: str | None = None, *, measurement: str = DEFAULT_MEASUREMENT
    ) -> list[str]:
        """Metric names, of one device or of all, sorted."""

    @abstractmethod
    def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers and accepts this client."""

    def close(self) -> None:  # noqa: B027 (nothing to release unless a store holds connections)
        """Release connections."""

    def __enter__(self) -> TelemetryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
