"""InfluxQL statements built from validated parts, with every name and string escaped.

Nothing a caller passes is pasted into a statement: identifiers go through
``quote_ident`` and string literals through ``quote_literal``, times are integer
literals with a unit. The functions here are pure, so the escaping is tested
without a server.
"""

from __future__ import annotations

from collections.abc import Sequence

from vigil.telemetry.store import AGGREGATES, TelemetryError

# InfluxQL's name for each contract aggregate.
INFLUXQL_AGGREGATES: dict[str, str] = {name: name for name in AGGREGATES}


def quote_ident(name: str) -> str:
    """A double-quoted InfluxQL identifier: backslash and double quote escaped."""
    if not isinstance(name, str):
        raise TelemetryError(f"identifier {name!r} is not a string")
    if "\n" in name or "\r" in name or "\0" in name:
        raise TelemetryError(f"identifier {name!r} contains a line break or NUL")
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_literal(value: str) -> str:
    """A single-quoted InfluxQL string literal: backslash and single quote escaped."""
    if not isinstance(value, str):
        raise TelemetryError(f"string literal {value!r} is not a string")
    if "\n" in value or "\r" in value or "\0" in value:
        raise TelemetryError(f"string literal {value!r} contains a line break or NUL")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def time_literal(ms: int) -> str:
    """An integer time literal in milliseconds, e.g. ``1700000000000ms``.

    Exactly ``int``: a subclass (``bool``, or one with its own ``__format__``)
    could put any text into the statement.
    """
    if type(ms) is not int:
        raise TelemetryError(f"time {ms!r} is not an integer of milliseconds")
    return f"{ms}ms"


def select_range(
    measurement: str,
    device: str,
    start_ms: int,
    end_ms: int,
    metrics: Sequence[str] | None,
    interval_ms: int | None = None,
    aggregate: str = "mean",
    retention_policy: str | None = None,
) -> str:
    """One device's fields in [start, end), raw or downsampled into epoch-aligned intervals."""
    if interval_ms is None:
        fields = ",".join(quote_ident(m) for m in metrics) if metrics else "*::field"
    else:
        fn = INFLUXQL_AGGREGATES.get(aggregate)
        if fn is None:
            raise TelemetryError(f"unknown aggregate {aggregate!r}")
        if metrics:
            fields = ",".join(f"{fn}({quote_ident(m)}) AS {quote_ident(m)}" for m in metrics)
        else:
            fields = f"{fn}(*)"
    statement = (
        f"SELECT {fields} FROM {source(measurement, retention_policy)} "
        f"WHERE {quote_ident('device')} = {quote_literal(device)} "
        f"AND time >= {time_literal(start_ms)} AND time < {time_literal(end_ms)}"
    )
    if interval_ms is not None:
        if interval_ms <= 0 or interval_ms % 1000:
            raise TelemetryError(f"interval of {interval_ms} ms is not a whole number of seconds")
        statement += f" GROUP BY time({interval_ms // 1000}s) fill(none)"
    return statement


def select_latest(
    measurement: str, devices: Sequence[str] | None, retention_policy: str | None = None
) -> str:
    """Two statements: the last value of every field per device, and each device's newest time."""
    where = ""
    if devices:
        where = " WHERE " + " OR ".join(
            f"{quote_ident('device')} = {quote_literal(d)}" for d in devices
        )
    src = source(measurement, retention_policy)
    group = f" GROUP BY {quote_ident('device')}"
    return (
        f"SELECT last(*) FROM {src}{where}{group};"
        f"SELECT * FROM {src}{where}{group} ORDER BY time DESC LIMIT 1"
    )


def show_devices(measurement: str) -> str:
    return f"SHOW TAG VALUES FROM {quote_ident(measurement)} WITH KEY = {quote_ident('device')}"


def show_fields(measurement: str) -> str:
    return f"SHOW FIELD KEYS FROM {quote_ident(measurement)}"


def source(measurement: str, retention_policy: str | None) -> str:
    """``"rp"."measurement"`` or just ``"measurement"``, both quoted."""
    if retention_policy:
        return f"{quote_ident(retention_policy)}.{quote_ident(measurement)}"
    return quote_ident(measurement)
