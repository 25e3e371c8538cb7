"""Fixtures for the telemetry store tests: each store, empty, once per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from vigil.servers import InfluxDB
from vigil.telemetry.embedded import EmbeddedStore
from vigil.telemetry.influx import InfluxStore
from vigil.telemetry.store import TelemetryStore

STORES = ["embedded", "influxdb"]


def influx_store(server: InfluxDB, database: str, **kwargs: object) -> InfluxStore:
    """A store on the test server with basic auth as its admin user."""
    options: dict[str, object] = {"username": server.username, "password": server.password,
                                  "retries": 2, "backoff_s": 0.2}
    options.update(kwargs)
    return InfluxStore(server.url, database, **options)  # type: ignore[arg-type]


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TelemetryStore]:
    """An empty telemetry store: the embedded one, then the one on the real InfluxDB."""
    if request.param == "embedded":
        impl: TelemetryStore = EmbeddedStore(tmp_path / "telemetry.db")
    else:
        server: InfluxDB = request.getfixturevalue("influxdb")
        impl = influx_store(server, request.getfixturevalue("influx_database"))
    with impl:
        yield impl
