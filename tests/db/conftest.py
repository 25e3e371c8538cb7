"""Fixtures for the SQL store tests: a migrated database on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date

import pytest
from sqlalchemy import Engine, func, inspect, select
from sqlalchemy.orm import Session, sessionmaker

from vigil.db import migrations
from vigil.db.models import Base, Customer, Device, Site, User
from vigil.db.session import make_engine, make_session_factory


@pytest.fixture
def engine(sql_url: str) -> Iterator[Engine]:
    """An engine on an empty database (the schema is not created)."""
    engine = make_engine(sql_url)
    yield engine
    engine.dispose()


@pytest.fixture
def db(engine: Engine) -> Engine:
    """An engine on a database upgraded to the latest revision by the migrations."""
    migrations.upgrade(engine)
    return engine


@pytest.fixture
def factory(db: Engine) -> sessionmaker[Session]:
    return make_session_factory(db)


@pytest.fixture
def session(factory: sessionmaker[Session]) -> Iterator[Session]:
    with factory() as session:
        yield session


@pytest.fixture
def device(factory: sessionmaker[Session]) -> Device:
    """A committed site, device and engineer to hang other rows on."""
    with factory() as session, session.begin():
        site = Site(name="Central ICU", customer=Customer(name="St. Example Hospital"),
                    timezone="Europe/Berlin")
        device = Device(id="pump-0001", serial="IP100-0001", model="IP-100", site=site,
                        install_date=date(2024, 3, 1), firmware="2.4.1")
        session.add_all([device, User(username="eng1", display_name="Engineer One")])
    return device


@pytest.fixture
def snapshot(db: Engine) -> Callable[[], dict[str, int]]:
    """Rows in every table of the schema, to show that a refused write changed nothing.

    Reading a table that no longer exists fails, so a snapshot also proves
    every table is still there.
    """

    def take() -> dict[str, int]:
        assert set(Base.metadata.tables) <= set(inspect(db).get_table_names())
        with db.connect() as connection:
            return {
                name: connection.scalar(select(func.count()).select_from(table)) or 0
                for name, table in Base.metadata.tables.items()
            }

    return take
