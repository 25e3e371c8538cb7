"""Hostile values in every user-controlled place, against the embedded store and the real InfluxDB.

Each value is either refused with a TelemetryError (and nothing of its batch is
written) or stored and read back exactly; other devices' data never changes.
"""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest

from edge_agent.protocol import DEVICE_ID_RE, METRIC_NAME_RE
from vigil.servers import InfluxDB
from vigil.telemetry.embedded import EmbeddedStore
from vigil.telemetry.influxql import quote_ident, quote_literal
from vigil.telemetry.store import MEASUREMENT_RE, Point, TelemetryError, TelemetryStore

T0 = 1_700_000_000_000
HOSTILE = [
    "'", '"', "\\", "\\'", '\\"', "'; DROP DATABASE vigil; --",
    "'; DROP MEASUREMENT telemetry; SELECT '",
    '" OR 1=1 --', "' OR '1'='1", "x' OR device =~ /.*/ --", "/.*/", "*", "x\ny", "x\r\ny", "nul\0",
    "tab\there", "a,b=c d", "a b", " ", "  lead and trail  ", "=", ",", "\\ ", "trailing\\",
    "back\\slash", "\\\\", "$(rm -rf /)", "%s%n", "${jndi:ldap://x}", "null", "NaN", "inf",
    "-Infinity",
    "🙂 ünïcödé ☃", "x" * 64, "x" * 65, "q'\"" * 42, "x" * 129, "x" * 10_000,
    "SELECT * FROM telemetry", "telemetry\" WHERE \"device\" =~ /.*/ ;--", "time", "device",
    "lone \ud800 surrogate",
]
# Printable values without backslashes that both stores must store, not refuse.
MUST_STORE = [v for v in HOSTILE
              if len(v) <= 128 and v.isprintable() and "\\" not in v]


@pytest.fixture
def neighbour(store: TelemetryStore) -> pd.DataFrame:
    """Another device's data, written first; every test checks it is unchanged at the end."""
    store.write([Point("neighbour", T0 + i * 1000, {"temp": 20.0 + i, "load": i / 4},
                       model="N", site="ward-3") for i in range(20)])
    return store.query("neighbour", T0, T0 + 60_000)


def assert_untouched(store: TelemetryStore, before: pd.DataFrame, devices: list[str]) -> None:
    pd.testing.assert_frame_equal(store.query("neighbour", T0, T0 + 60_000), before)
    assert store.devices() == sorted(["neighbour", *devices])


def stored_tags(
    store: TelemetryStore, request: pytest.FixtureRequest, device: str
) -> set[tuple[str, str]]:
    """(model, site) pairs stored for the device, read around the store's own API."""
    if isinstance(store, EmbeddedStore):
        with sqlite3.connect(store.path) as conn:
            rows = conn.execute('SELECT model, site FROM "m_telemetry" WHERE device = ?', (device,))
            return set(rows.fetchall())
    server: InfluxDB = request.getfixturevalue("influxdb")
    body = server.query(f'SELECT "temp", "model", "site" FROM "telemetry" '
                        f"WHERE \"device\" = {quote_literal(device)}", db=store.database)
    series = body["results"][0].get("series", [])
    return {(row[2] or "", row[3] or "") for s in series for row in s["values"]}


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_tag_values_are_refused_or_stored_exactly(
    store: TelemetryStore, neighbour: pd.DataFrame, request: pytest.FixtureRequest, value: str
) -> None:
    point = Point("hostile-1", T0, {"temp": 1.5}, model=value, site=value)
    try:
        store.write([Point("innocent", T0, {"temp": 2.0}), point])
    except TelemetryError as exc:
        assert value not in MUST_STORE, f"refused a value that must be stored: {exc}"
        assert "tag" in str(exc)
        assert_untouched(store, neighbour, [])
        return
    assert stored_tags(store, request, "hostile-1") == {(value, value)}
    assert store.query("hostile-1", T0, T0 + 1)["temp"].tolist() == [1.5]
    assert stored_tags(store, request, "neighbour") == {("N", "ward-3")}
    assert_untouched(store, neighbour, ["hostile-1", "innocent"])


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_device_ids_are_refused_or_stored_exactly(
    store: TelemetryStore, neighbour: pd.DataFrame, value: str
) -> None:
    valid = bool(DEVICE_ID_RE.fullmatch(value))
    point = Point(value, T0, {"temp": 3.0})
    if not valid:
        with pytest.raises(TelemetryError, match="device id"):
            store.write([Point("innocent", T0, {"temp": 2.0}), point])
        for call in (lambda: store.query(value, T0, T0 + 1000), lambda: store.latest([value]),
                     lambda: store.metrics(value)):
            with pytest.raises(TelemetryError, match="device id"):
                call()
        assert_untouched(store, neighbour, [])
        return
    store.write([point])
    assert store.query(value, T0, T0 + 1000)["temp"].tolist() == [3.0]
    assert store.latest([value])["temp"].tolist() == [3.0]
    assert store.metrics(value) == ["temp"]
    assert_untouched(store, neighbour, [value])


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_metric_names_are_refused_or_stored_exactly(
    store: TelemetryStore, neighbour: pd.DataFrame, value: str
) -> None:
    valid = bool(METRIC_NAME_RE.fullmatch(value)) and value not in ("time", "device")
    point = Point("hostile-1", T0, {value: 4.0, "temp": 1.0})
    if not valid:
        with pytest.raises(TelemetryError, match="metric name"):
            store.write([point])
        with pytest.raises(TelemetryError, match="metric name"):
            store.query("neighbour", T0, T0 + 1000, metrics=[value])
        with pytest.raises(TelemetryError, match="metric name"):
            store.query("neighbour", T0, T0 + 60_000, metrics=["temp", value],
                        interval=pd.Timedelta("10s"))
        assert_untouched(store, neighbour, [])
        return
    store.write([point])
    frame = store.query("hostile-1", T0, T0 + 1000, metrics=[value])
    assert list(frame.columns) == [value] and frame[value].tolist() == [4.0]
    assert value in store.metrics()
    assert_untouched(store, neighbour, ["hostile-1"])


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_measurements_are_refused_or_kept_apart(
    store: TelemetryStore, neighbour: pd.DataFrame, value: str
) -> None:
    if MEASUREMENT_RE.fullmatch(value):
        store.write([Point("hostile-1", T0, {"temp": 5.0}, measurement=value)])
        assert store.query("hostile-1", T0, T0 + 1, measurement=value)["temp"].tolist() == [5.0]
        assert store.devices(measurement=value) == ["hostile-1"]
        assert store.metrics(measurement=value) == ["temp"]
        assert store.latest(measurement=value)["temp"].tolist() == [5.0]
        assert_untouched(store, neighbour, [])
        return
    with pytest.raises(TelemetryError, match="measurement"):
        store.write([Point("hostile-1", T0, {"temp": 1.0}, measurement=value)])
    for call in (lambda: store.query("neighbour", T0, T0 + 1000, measurement=value),
                 lambda: store.latest(measurement=value), lambda: store.devices(measurement=value),
                 lambda: store.metrics(measurement=value)):
        with pytest.raises(TelemetryError, match="measurement"):
            call()
    assert_untouched(store, neighbour, [])


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400", "1; DROP DATABASE vigil"])
def test_hostile_metric_values_are_refused(store: TelemetryStore, neighbour: pd.DataFrame,
                                           value: str) -> None:
    number: object = value if value.startswith("1;") else float(value)
    with pytest.raises(TelemetryError, match="not a finite number"):
        store.write([Point("hostile-1", T0, {"temp": number})])  # type: ignore[dict-item]
    assert_untouched(store, neighbour, [])


def test_quoted_literals_select_exactly_one_tag_value_on_influxdb(
    influxdb: InfluxDB, influx_database: str
) -> None:
    """Each storable hostile value, as a quoted literal, matches its own point and nothing else."""
    from tests.telemetry.conftest import influx_store

    values = [v for v in HOSTILE if v.isprintable() and len(v) <= 128 and "\\" not in v]
    # The store refuses backslashes in tags, but other writers may store them: InfluxDB
    # 1.x keeps a backslash before any other character literally.
    backslashed = ["back\\slash", "a\\'b", 'a\\"b']
    with influx_store(influxdb, influx_database) as store:
        store.write([Point(f"dev-{i}", T0, {"temp": float(i)}, site=v)
                     for i, v in enumerate(values)])
        store.post_lines("".join(
            f"telemetry,device=dev-{i},site={v} temp={i}.0 {T0 * 1_000_000}\n"
            for i, v in enumerate(backslashed, start=len(values))).encode())
    values += backslashed
    for i, value in enumerate(values):
        body = influxdb.query(
            f'SELECT "temp", "device" FROM "telemetry" WHERE "site" = {quote_literal(value)}',
            db=influx_database)
        rows = body["results"][0]["series"][0]["values"]
        assert [(row[1], row[2]) for row in rows] == [(float(i), f"dev-{i}")], value


@pytest.mark.parametrize("value", HOSTILE[:30], ids=range(30))
def test_quoted_identifiers_stay_one_identifier_on_influxdb(
    influxdb: InfluxDB, influx_database: str, value: str
) -> None:
    """A hostile name quoted as an identifier selects a (missing) field and injects nothing."""
    if "\n" in value or "\r" in value or "\0" in value:
        with pytest.raises(TelemetryError):
            quote_ident(value)
        return
    body = influxdb.query(f"SELECT {quote_ident(value)} FROM {quote_ident(value)}",
                          db=influx_database)
    assert body["results"] == [{"statement_id": 0}]
