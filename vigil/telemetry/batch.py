"""Checking a batch of points and shaping query results, shared by both stores.

``validate_batch`` gives the contract's errors (those of ``validate_point``) but
checks each distinct device, metric name and tag value once per batch instead of
once per point, which is what keeps validation from dominating the write path.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from edge_agent.protocol import (
    MAX_TS_MS,
    MIN_TS_MS,
    ProtocolError,
    validate_device_id,
    validate_metric_name,
)
from vigil.telemetry.store import (
    Point,
    TelemetryError,
    check_metric_names,
    validate_point,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


def check_device(device: str) -> str:
    """A device id as a query argument, or TelemetryError."""
    try:
        return validate_device_id(device)
    except ProtocolError as exc:
        raise TelemetryError(str(exc)) from None


def check_metrics(metrics: Sequence[str] | None) -> list[str] | None:
    """Metric names asked for in a query, or None for all of them."""
    if metrics is None:
        return None
    if isinstance(metrics, str):
        raise TelemetryError(f"metrics must be a list of names, not the string {metrics!r:.80}")
    names = list(metrics)
    try:
        for name in names:
            validate_metric_name(name)
    except ProtocolError as exc:
        raise TelemetryError(str(exc)) from None
    check_metric_names(names)
    if len(set(names)) != len(names):
        raise TelemetryError(f"metrics {names!r} name a metric twice")
    return names or None


def validate_batch(points: Iterable[Point]) -> list[Point]:
    """All points of the batch, or TelemetryError naming the first bad one."""
    batch = list(points) if not isinstance(points, list) else points
    ok_devices: set[str] = set()
    ok_metrics: set[str] = set()
    ok_tags: set[tuple[str, str, str]] = set()
    for point in batch:
        if not isinstance(point, Point):
            raise TelemetryError(f"{type(point).__name__} {point!r:.80} is not a telemetry Point")
        ts = point.ts
        metrics = point.metrics
        known = (
            type(ts) is int
            and MIN_TS_MS <= ts < MAX_TS_MS
            and point.device in ok_devices
            and (point.measurement, point.model, point.site) in ok_tags
            and not point.extra_tags
            and bool(metrics)
            and metrics.keys() <= ok_metrics
        )
        if known:
            try:
                for value in metrics.values():
                    kind = type(value)
                    if (kind is not float and kind is not int) or not math.isfinite(value):
                        known = False
                        break
            except OverflowError:  # an int beyond a double: validate_point says so
                known = False
        if not known:
            validate_point(point)
            ok_devices.add(point.device)
            ok_metrics.update(metrics)
            ok_tags.add((point.measurement, point.model, point.site))
    return batch


def result_frame(
    times_ms: np.ndarray, columns: dict[str, np.ndarray], metrics: Sequence[str] | None
) -> pd.DataFrame:
    """The contract's query result: UTC time index named ``time``, float columns.

    With ``metrics`` the columns are exactly those, in that order (missing ones
    all NaN); without, the metrics that hold at least one value, sorted.
    """
    import numpy as np
    import pandas as pd

    index = pd.DatetimeIndex(pd.to_datetime(np.asarray(times_ms, dtype="int64"), unit="ms",
                                            utc=True),
                             name="time")
    if metrics:
        names = list(metrics)
    else:
        names = sorted(name for name, values in columns.items()
                       if len(values) and not np.isnan(np.asarray(values, dtype="float64")).all())
    data = {}
    for name in names:
        values = columns.get(name)
        data[name] = (np.full(len(index), np.nan) if values is None
                      else np.asarray(values, dtype="float64"))
    frame = pd.DataFrame(data, index=index, columns=names)
    frame.columns.name = None
    return frame


def latest_frame(rows: dict[str, tuple[int, dict[str, float]]]) -> pd.DataFrame:
    """Per device its newest time and the newest value of each metric, indexed by device."""
    import numpy as np
    import pandas as pd

    devices = sorted(rows)
    names = sorted({name for _, values in rows.values() for name in values})
    data: dict[str, object] = {
        "time": pd.to_datetime(np.array([rows[d][0] for d in devices], dtype="int64"),
                               unit="ms", utc=True),
    }
    for name in names:
        data[name] = np.array([rows[d][1].get(name, np.nan) for d in devices], dtype="float64")
    frame = pd.DataFrame(data, index=pd.Index(devices, name="device", dtype=object))
    return frame
