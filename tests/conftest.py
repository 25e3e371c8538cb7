"""Real servers for the test suite.

Mosquitto, InfluxDB and PostgreSQL are started once per test session from
Debian's packages (installed if missing) on free loopback ports, with their data
under pytest's temporary folder, and stopped at the end. A test is skipped only
when a server's program is missing and cannot be installed, and never under CI
(``CI=true``); a server that is there but fails to start (say, on the project's
own configuration) fails the test everywhere.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import TypeVar

import pytest

from vigil.servers import (
    InfluxDB,
    LocalServer,
    Mosquitto,
    PostgreSQL,
    ServerNotInstalled,
    ServerUnavailable,
)

S = TypeVar("S", bound=LocalServer)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


# Fixtures that start a server, and the parameters of fixtures that start one on demand.
SERVER_FIXTURES = frozenset({"mosquitto", "influxdb", "influx_database", "postgresql"})
SERVER_PARAMS = {"store": "influxdb", "sql_url": "postgresql"}


def start_or_skip(server: LocalServer) -> LocalServer:
    """The server started; skipped if its program is missing (outside CI), failed otherwise."""
    try:
        return server.start()
    except ServerNotInstalled as exc:
        if IN_CI:
            pytest.fail(f"{server.name} is not installed under CI: {exc}", pytrace=False)
        pytest.skip(f"{server.name} is not installed: {exc}")
    except ServerUnavailable as exc:
        pytest.fail(f"{server.name} failed to start: {exc}", pytrace=False)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``servers`` every test that uses a real server through a fixture.

    Tests that start a server themselves carry the mark in their module.
    """
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        if names & SERVER_FIXTURES or any(
            params.get(name) == value for name, value in SERVER_PARAMS.items()
        ):
            item.add_marker(pytest.mark.servers)


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
