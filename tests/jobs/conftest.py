"""Fixtures for the jobs tests: a migrated SQL database with a small fleet, and telemetry stores."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from vigil.db import migrations
from vigil.db.models import Customer, Device, Site
from vigil.db.session import make_engine, make_session_factory, transaction
from vigil.telemetry.embedded import EmbeddedStore
from vigil.telemetry.store import Point, TelemetryStore

# A fixed wall clock for the tests: telemetry is written up to T0.
T0 = datetime(2026, 11, 20, tzinfo=UTC)
STEP = timedelta(minutes=5)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def migrated(url: str) -> Engine:
    engine = make_engine(url)
    migrations.upgrade(engine)
    return engine


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'vigil.db'}"


@pytest.fixture
def pg_url(postgresql, request: pytest.FixtureRequest) -> str:  # type: ignore[no-untyped-def]
    from tests.conftest import unique_name

    return postgresql.url(postgresql.create_database(unique_name("jobs")))


@pytest.fixture
def factory(sqlite_url: str) -> Iterator[sessionmaker[Session]]:
    engine = migrated(sqlite_url)
    yield make_session_factory(engine)
    engine.dispose()


def add_fleet(
    factory: sessionmaker[Session], count: int, model: str = "infusion_pump"
) -> list[str]:
    ids = [f"dev-{i:03d}" for i in range(count)]
    with transaction(factory) as session:
        site = Site(name="Ward 3", customer=Customer(name="General Hospital"))
        session.add_all(Device(id=i, serial=f"S-{i}", model=model, site=site) for i in ids)
    return ids


def readings(
    device: str, start: datetime, end: datetime, *, every: timedelta = timedelta(minutes=1),
    seed: int = 1, spike_at: datetime | None = None,
) -> list[Point]:
    """A daily rhythm with noise; an optional large spike on ``flow`` at ``spike_at``."""
    rng = random.Random(f"{device}-{seed}")
    points = []
    t = start
    while t < end:
        hour = t.hour + t.minute / 60
        flow = 50 + 10 * math.sin(2 * math.pi * hour / 24) + rng.gauss(0, 0.5)
        if spike_at is not None and spike_at <= t < spike_at + STEP:
            flow += 200
        temp = 30 + rng.gauss(0, 0.2)
        points.append(Point(device, int(t.timestamp() * 1000), {"flow": flow, "temp": temp},
                            model="infusion_pump", site="Ward 3"))
        t += every
    return points


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[TelemetryStore]:
    with EmbeddedStore(tmp_path / "telemetry.db") as store:
        yield store


WriteFn = Callable[[list[Point]], int]
