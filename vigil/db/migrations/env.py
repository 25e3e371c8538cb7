"""Alembic's migration environment for the SQL store.

Run through :mod:`vigil.db.migrations`, which passes the engine in; when
Alembic's own command line runs it, the database is the configured one.
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection, Engine, text

from vigil.db.models import Base, UTCDateTime
from vigil.db.session import SQLITE_BEGIN_OPTION, ensure_sqlite_folder, make_engine

# An arbitrary constant naming the advisory lock that serialises migrations.
MIGRATION_LOCK_KEY = 7_160_519_001


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Write project types as plain SQLAlchemy ones, so migrations never import the models."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite alters most things only by rebuilding the table.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=render_item,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Services starting together may all upgrade: one does, the others then
            # find the schema current. SQLite gets the same from BEGIN IMMEDIATE.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": MIGRATION_LOCK_KEY})
        context.run_migrations()


def run_online() -> None:
    given: Engine | None = context.config.attributes.get("engine")
    owned = given is None
    if given is None:
        from vigil.config import get_settings

        url = get_settings().sql_url
        ensure_sqlite_folder(url)
        engine = make_engine(url)
    else:
        engine = given
    try:
        with engine.connect() as connection:
            connection.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
            run_migrations(connection)
    finally:
        if owned:
            engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run `vigil db upgrade`")
run_online()
