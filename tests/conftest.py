"""Real servers for the test suite.

Mosquitto, InfluxDB and PostgreSQL are started once per test session from
Debian's packages (installed if missing) on free loopback ports, with their data
under pytest's temporary folder, and stopped at the end. Under CI (``CI=true``)
a server that cannot start fails the run instead of skipping tests.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import TypeVar

import pytest

from vigil.servers import InfluxDB, LocalServer, Mosquitto, PostgreSQL, ServerUnavailable

S = TypeVar("S", bound=LocalServer)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def start_or_skip(server: LocalServer) -> LocalServer:
    try:
        return server.start()
    except ServerUnavailable as exc:
        if IN_CI:
            pytest.fail(f"{server.name} failed to start under CI: {exc}", pytrace=False)
        pytest.skip(f"{server.name} unavailable: {exc}")


def serving(server: S) -> Iterator[S]:
    """A fixture body: the server started (or the test skipped, failed under CI), then stopped."""
    start_or_skip(server)
    try:
        yield server
    finally:
        server.stop()


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    yield from serving(Mosquitto(tmp_path_factory.mktemp("mosquitto")))


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB]:
    yield from serving(InfluxDB(tmp_path_factory.mktemp("influxdb")))


@pytest.fixture(scope="session")
def postgresql(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgreSQL]:
    yield from serving(PostgreSQL(tmp_path_factory.mktemp("postgresql")))


@pytest.fixture
def influx_database(influxdb: InfluxDB) -> Iterator[str]:
    """A fresh InfluxDB database for one test, dropped afterwards."""
    name = influxdb.create_database(unique_name("test"))
    yield name
    influxdb.query(f'DROP DATABASE "{name}"')


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A SQLAlchemy URL of an empty database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'vigil.db'}"
    server: PostgreSQL = request.getfixturevalue("postgresql")
    return server.url(server.create_database(unique_name("test")))
