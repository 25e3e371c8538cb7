"""Engines and sessions for the SQL store, on SQLite or PostgreSQL.

A service function takes a ``Session`` and never commits: the caller owns the
transaction, so several services' writes can succeed or fail together. The
``transaction`` helper is the usual way for a caller to own one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

# How long a SQLite writer waits for another writer's lock before failing.
SQLITE_BUSY_TIMEOUT_MS = 30_000

# Execution option naming how a SQLite transaction begins: DEFERRED (the default,
# for readers) or IMMEDIATE (for units of work, see ``transaction``).
SQLITE_BEGIN_OPTION = "vigil_sqlite_begin"

# NaN and infinities are not JSON; PostgreSQL refuses them, so refuse them everywhere.
_json_dumps = partial(json.dumps, allow_nan=False, ensure_ascii=False)

SUPPORTED_BACKENDS = ("sqlite", "postgresql")


def normalise_url(url: str | URL) -> URL:
    """The URL with the driver this project uses: psycopg 3 for PostgreSQL.

    Raises ``ArgumentError`` for a URL that is not one, or names a database
    the schema is not made for (its triggers and checks exist for SQLite and
    PostgreSQL only).
    """
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        raise ArgumentError(f"{backend} is not supported; use SQLite or PostgreSQL")
    return parsed


def sqlite_path(url: str | URL) -> Path | None:
    """The file of a SQLite URL, or None for other databases and in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def ensure_sqlite_folder(url: str | URL) -> None:
    """Create the folder of a SQLite database file, which SQLite will not do itself."""
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # The sqlite3 module's own transaction handling leaves DDL and SAVEPOINTs out
    # of transactions; turn it off and let SQLAlchemy emit BEGIN (see _sqlite_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        # WAL lets readers run while one writer writes; meaningless for in-memory databases.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    mode = connection.get_execution_options().get(SQLITE_BEGIN_OPTION, "DEFERRED")
    connection.exec_driver_sql(f"BEGIN {mode}")


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    """An engine for ``url`` with the settings this project relies on.

    SQLite gets foreign keys enforced (off by default), WAL, a busy timeout and
    real transactions, DDL included, so a failed migration or batch leaves nothing;
    PostgreSQL goes through psycopg 3 and checks pooled connections before use.
    Connecting is lazy: an unreachable database fails on first use.
    """
    parsed = normalise_url(url)
    options: dict[str, Any] = {"json_serializer": _json_dumps}
    if parsed.get_backend_name() == "sqlite":
        options["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    else:
        options["pool_pre_ping"] = True
        options["connect_args"] = {"connect_timeout": 10}
    options.update(kwargs)
    try:
        engine = create_engine(parsed, **options)
    except ImportError as exc:
        raise ArgumentError(
            f"the driver of {parsed.drivername} is not installed ({exc.name}); "
            "use sqlite:/// or postgresql+psycopg://"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit (no reload on attribute access)."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit if the block succeeds, roll back if it raises.

    On SQLite the unit of work takes the write lock when it starts (BEGIN
    IMMEDIATE), waiting for another writer up to the busy timeout. A deferred
    transaction that reads and then writes would instead fail at once with
    "database is locked" whenever another process wrote in between, and a
    read-modify-write could not be lost or interleaved either way.
    """
    with factory() as session, session.begin():
        if session.get_bind().dialect.name == "sqlite":
            session.connection(execution_options={SQLITE_BEGIN_OPTION: "IMMEDIATE"})
        yield session
