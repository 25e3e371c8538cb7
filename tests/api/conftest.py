"""An API on a migrated database (SQLite and PostgreSQL) with two customers and every role."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from vigil.auth.passwords import hash_password
from vigil.config import ApiSettings, Settings
from vigil.db import migrations
from vigil.db.enums import Category
from vigil.db.models import Customer, Device, Prediction, Role, Site, Ticket, User
from vigil.db.session import make_engine, make_session_factory, transaction
from vigil.diagnosis.models import DiagnosisSession
from vigil.knowledge import service as knowledge
from vigil.telemetry.embedded import EmbeddedStore
from vigil.telemetry.store import Point
from vigil.tickets.transitions import Actor, ActorRole

PASSWORD = "correct horse battery staple"
ROLES = ("admin", "manager", "engineer", "customer")


@cache
def password_hash() -> str:
    """One Argon2 hash for every test user: hashing is deliberately slow."""
    return hash_password(PASSWORD)


@dataclass
class World:
    """Two customers, each with a site, devices and a user; staff users of every role."""

    customer_ids: dict[str, int] = field(default_factory=dict)
    site_ids: dict[str, int] = field(default_factory=dict)
    devices: dict[str, list[str]] = field(default_factory=dict)
    ticket_ids: dict[str, int] = field(default_factory=dict)
    user_ids: dict[str, int] = field(default_factory=dict)
    article_id: int = 0
    # A diagnosis session on customer B's online device.
    diagnosis_session_id: int = 0


@pytest.fixture
def engine(sql_url: str) -> Iterator[Engine]:
    engine = make_engine(sql_url)
    migrations.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def add_user(session: Session, username: str, role: str, sites: list[Site] = ()) -> User:
    user = User(username=username, display_name=username.title(), password_hash=password_hash(),
                roles=[session.scalar(select(Role).where(Role.name == role))], sites=list(sites))
    session.add(user)
    session.flush()
    return user


@pytest.fixture
def world(sessions: sessionmaker[Session]) -> World:
    w = World()
    now = datetime.now(UTC)
    with transaction(sessions) as session:
        for key in ("a", "b"):
            customer = Customer(name=f"Hospital {key.upper()}")
            site = Site(name=f"ICU {key.upper()}", customer=customer, timezone="Europe/Berlin")
            devices = [
                Device(id=f"pump-{key}{n}", serial=f"SN-{key}{n}", model="IP-100", site=site,
                       online=n == 1, last_seen=now - timedelta(minutes=n) if n else None)
                for n in range(3)
            ]
            session.add_all([customer, site, *devices])
            session.flush()
            ticket = Ticket(device_id=devices[0].id, site_id=site.id, priority="P2",
                            category="mechanical", source="customer", signature="report:1",
                            title=f"Pump {key} alarms")
            session.add(ticket)
            session.add(Prediction(device_id=devices[1].id, horizon_days=30, probability=0.4,
                                   model_version="t1"))
            session.flush()
            w.customer_ids[key] = customer.id
            w.site_ids[key] = site.id
            w.devices[key] = [d.id for d in devices]
            w.ticket_ids[key] = ticket.id
            user = add_user(session, f"customer-{key}", "customer", [site])
            w.user_ids[f"customer-{key}"] = user.id
        for role in ("admin", "manager", "engineer"):
            w.user_ids[role] = add_user(session, role, role).id
        diagnosis = DiagnosisSession(device_id=w.devices["b"][1],
                                     engineer_id=w.user_ids["engineer"],
                                     expires_at=now + timedelta(hours=1))
        session.add(diagnosis)
        session.flush()
        w.diagnosis_session_id = diagnosis.id
        # Through the knowledge service, so each article has the version suggestions rank.
        author = Actor("eve", ActorRole.ENGINEER)
        article = knowledge.create_article(
            session, now=now, actor=author, content=knowledge.Content(
                title="Occlusion alarm: check the pressure sensor", symptoms="occlusion",
                fix="Clean the sensor, recalibrate.", device_models=["IP-100"],
                categories=[Category.MECHANICAL]))
        knowledge.create_article(session, now=now, actor=author, content=knowledge.Content(
            title="Any pump: fuse", fix="Swap it.", categories=[Category.ELECTRICAL]))
        w.article_id = article.id
    return w


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EmbeddedStore]:
    store = EmbeddedStore(tmp_path / "telemetry.db", synchronous="NORMAL")
    yield store
    store.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # No broker runs for these tests: the diagnosis tests start one with the bus.
    return Settings(data_dir=tmp_path, api=ApiSettings(diagnosis=False))


@pytest.fixture
def app(settings: Settings, engine: Engine, store: EmbeddedStore, world: World) -> FastAPI:
    return create_app(settings, engine=engine, telemetry=lambda: store)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    # https, so the Secure session cookie is sent back as a browser would.
    with TestClient(app, base_url="https://testserver", raise_server_exceptions=False) as client:
        yield client


def sign_in(client: TestClient, username: str, password: str = PASSWORD) -> dict[str, str]:
    answer = client.post("/api/v1/auth/token", json={"username": username, "password": password})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


@pytest.fixture
def headers(client: TestClient) -> Callable[[str], dict[str, str]]:
    """Bearer headers per user name, signing each in once."""
    signed: dict[str, dict[str, str]] = {}

    def get(username: str) -> dict[str, str]:
        if username not in signed:
            signed[username] = sign_in(client, username)
        return signed[username]

    return get


def write_readings(store: EmbeddedStore, device: str, start: datetime, count: int) -> None:
    base = int(start.timestamp() * 1000)
    store.write([Point(device=device, ts=base + i * 1000,
                       metrics={"temp_c": 20.0 + i % 10, "flow": float(i)}) for i in range(count)])
