"""The console against a running app: a seeded SQLite database, readings, and uvicorn on loopback.

The world is built once per test session (hashing passwords and starting a
browser are slow); tests that change it work on tickets of their own.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser, sync_playwright
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from tests.conftest import IN_CI
from tests.live_app import served
from vigil.auth.passwords import hash_password
from vigil.config import Settings
from vigil.db import migrations
from vigil.db.enums import Category, TicketSource
from vigil.db.models import Customer, Device, DeviceEvent, Prediction, Role, Site, User
from vigil.db.session import make_engine, make_session_factory, transaction
from vigil.knowledge import service as knowledge
from vigil.knowledge.service import Content
from vigil.telemetry.embedded import EmbeddedStore
from vigil.telemetry.store import Point
from vigil.tickets import service
from vigil.tickets.priority import Signal, TicketRules
from vigil.tickets.transitions import Actor, ActorRole

PASSWORD = "correct horse battery staple"
MODELS = ("IP-100", "PM-7", "VT-3")
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class World:
    """Two hospitals with sites, devices, readings and tickets; a user of every role."""

    devices: dict[str, list[str]] = field(default_factory=dict)
    tickets: dict[str, list[int]] = field(default_factory=dict)
    user_ids: dict[str, int] = field(default_factory=dict)


def _user(session: Session, username: str, display: str, role: str, password_hash: str,
          sites: list[Site] | None = None) -> User:
    user = User(username=username, display_name=display, password_hash=password_hash,
                roles=[session.scalars(select(Role).where(Role.name == role)).one()],
                sites=list(sites or []))
    session.add(user)
    session.flush()
    return user


def _readings(store: EmbeddedStore, device: str, model: str, now: datetime, phase: float,
              drift: bool) -> None:
    """A day of one-minute readings: a daily rhythm, noise-free, with a drift on a failing one."""
    end = int(now.timestamp() * 1000)
    points = []
    for i in range(24 * 60):
        ts = end - (24 * 60 - i) * 60_000
        day = math.sin(2 * math.pi * i / 1440 + phase)
        rise = (i / 1440) ** 3 * 9 if drift else 0.0
        points.append(Point(device=device, ts=ts, model=model, metrics={
            "temperature_c": round(36.5 + 1.5 * day + rise, 3),
            "motor_current_a": round(1.2 + 0.15 * math.cos(i / 37) + rise / 12, 4),
            "battery_pct": round(max(5.0, 96 - i / 40), 2),
        }))
    store.write(points)


def seed(sessions: sessionmaker[Session], store: EmbeddedStore, now: datetime) -> World:
    world = World()
    rules = TicketRules.load()
    digest = hash_password(PASSWORD)
    with transaction(sessions) as session:
        hospitals = {
            "a": ("St. Anna Hospital", ["ICU North", "Cardiology"], "Europe/Berlin", 46),
            "b": ("Riverside Clinic", ["Theatre 2"], "Europe/London", 14),
        }
        for key, (name, site_names, zone, count) in hospitals.items():
            customer = Customer(name=name)
            sites = [Site(name=s, customer=customer, timezone=zone) for s in site_names]
            session.add_all([customer, *sites])
            ids = []
            for n in range(count):
                model = MODELS[n % len(MODELS)]
                online = n % 5 != 3
                device = Device(
                    id=f"{model.lower().replace('-', '')}-{key}{n:03d}",
                    serial=f"{model}-{key.upper()}{n:05d}", model=model, site=sites[n % len(sites)],
                    firmware=f"2.{n % 4}.{n % 7}", online=online,
                    state="online" if online else "offline",
                    last_seen=now - timedelta(
                        minutes=1 + (n * 37) % 600 if online else 60 * 30 + n))
                session.add(device)
                ids.append(device.id)
            session.flush()
            for n, device_id in enumerate(ids):
                # The first device drifts in its readings (below): the model has noticed.
                probability = 0.87 if n == 0 else round(((n * 7919) % 97) / 100, 2)
                session.add(Prediction(
                    device_id=device_id, made_at=now - timedelta(hours=2), horizon_days=30,
                    probability=probability, rul_days=max(2.0, (1 - probability) * 120),
                    rul_lower_days=max(1.0, (1 - probability) * 90),
                    rul_upper_days=(1 - probability) * 150 + 5, model_version="rul-2026.11",
                    drivers={"motor_current_a": round(probability * 0.6, 2),
                             "temperature_c": round(probability * 0.3, 2)},
                    fault_type="E-MOTOR-STALL" if n == 0 else None,
                    basis={"calibration": "pooled", "model_failures": 1} if n == 0 else {}))
            session.add(DeviceEvent(device_id=ids[0], seq=1, ts=now - timedelta(hours=3),
                                    code="E042", severity="warning",
                                    text="Occlusion pressure above limit"))
            world.devices[key] = ids
            world.user_ids[f"customer-{key}"] = _user(
                session, f"customer-{key}", f"{name} biomed", "customer", digest, sites).id
        for role, display in (("admin", "Ada Admin"), ("manager", "Mia Manager"),
                              ("engineer", "Eli Engineer")):
            world.user_ids[role] = _user(session, role, display, role, digest).id
        _user(session, "engineer-2", "Noor Engineer", "engineer", digest)
        author = Actor("Eli Engineer", ActorRole.ENGINEER)
        for content in (
            Content(title="Occlusion alarms on IP-100 without a real occlusion",
                    symptoms="Occlusion alarm while the line is clear.",
                    cause="The pressure sensor is not seated.",
                    fix="Check the pressure sensor's seat; replace the pump segment if it is "
                        "worn.", device_models=["IP-100"], categories=[Category.MECHANICAL]),
            Content(title="Noisy fans", symptoms="Fan noise.", cause="A clogged filter.",
                    fix="Clean the filter; replace the fan.",
                    categories=[Category.MECHANICAL]),
        ):
            knowledge.create_article(session, content=content, actor=author, now=now)
        openings = [  # device index, hours ago, emergency, title, category
            (0, 0.4, True, "Occlusion alarm without occlusion", "mechanical"),
            (1, 3.5, False, "Display flickers after warm-up", "electrical"),
            (2, 20, False, "Battery drains within two hours", "electrical"),
            (4, 50, False, "Firmware update failed", "software"),
            (5, 1.7, False, "Fan noise", "mechanical"),
            (0, 14, False, "Temperature creeping up", "environmental"),
            (7, 0.1, False, "Calibration due", "mechanical"),
            (8, 0.2, False, "Screen cracked", "mechanical"),
        ]
        for key in ("a", "b"):
            world.tickets[key] = []
            for index, hours, emergency, title, category in openings:
                if index >= len(world.devices[key]):
                    continue
                at = now - timedelta(hours=hours)
                opened = service.open_or_join(
                    session, device_id=world.devices[key][index],
                    signature=f"report:{category}:{index}",
                    signal=Signal(source=TicketSource.CUSTOMER, emergency=emergency,
                                  category=Category(category)),
                    title=title, description=f"{title}. Reported by the ward.",
                    evidence=service.Evidence(at=at, summary=title), now=at, rules=rules)
                world.tickets[key].append(opened.ticket.id)
    for key in ("a", "b"):
        for n, device_id in enumerate(world.devices[key][:6]):
            _readings(store, device_id, MODELS[n % len(MODELS)], now, phase=n, drift=n == 0)
    return world


@dataclass
class Running:
    url: str
    world: World
    app: FastAPI
    sessions: sessionmaker[Session]


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    path = tmp_path_factory.mktemp("console-db") / "vigil.db"
    engine = make_engine(f"sqlite:///{path}")
    migrations.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStore]:
    store = EmbeddedStore(tmp_path_factory.mktemp("console-telemetry") / "t.db",
                          synchronous="NORMAL")
    yield store
    store.close()


@pytest.fixture(scope="session")
def world(engine: Engine, store: EmbeddedStore) -> World:
    return seed(make_session_factory(engine), store, datetime.now(UTC))


@pytest.fixture(scope="session")
def app(engine: Engine, store: EmbeddedStore, world: World,
        tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    settings = Settings(data_dir=tmp_path_factory.mktemp("console-data"))
    return create_app(settings, engine=engine, telemetry=lambda: store)


@pytest.fixture(scope="session")
def server(app: FastAPI, world: World, engine: Engine) -> Iterator[Running]:
    """The app on uvicorn in a thread, on a free loopback port."""
    with served(app, lifespan="off") as url:
        yield Running(url, world, app, make_session_factory(engine))


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Where the browser tests save a picture of every page (not committed: build/ is ignored)."""
    folder = Path(os.environ.get("VIGIL_SCREENSHOTS", ROOT / "build" / "console-screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def chromium_path() -> str | None:
    return os.environ.get("VIGIL_CHROMIUM") or shutil.which("chromium") or shutil.which(
        "chromium-browser")


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless Chromium for every browser test of the session (Playwright allows one)."""
    path = chromium_path()
    if path is None:
        if IN_CI:
            pytest.fail("Chromium is missing: scripts/setup installs Debian's package")
        pytest.skip("Chromium is not installed (scripts/setup installs it)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        yield browser
        browser.close()
