"""The SQL schema's Alembic migrations, driven from code.

Alembic is configured here rather than by an ``alembic.ini``, so the schema
can be upgraded from any working folder and from an installed package. The
engine is handed to the migration environment directly; the URL (and its
password) never passes through Alembic's configuration.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

SCRIPT_LOCATION = Path(__file__).resolve().parent


def alembic_config(engine: Engine | None = None) -> Config:
    """An Alembic configuration for this package's migrations, bound to ``engine`` if given."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.set_main_option("path_separator", "os")
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    """The revision this version of the code needs."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("no migrations found")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Bring the schema up to ``revision`` in one transaction; return the revision reached."""
    command.upgrade(alembic_config(engine), revision)
    return current_revision(engine)


def downgrade(engine: Engine, revision: str) -> str | None:
    """Take the schema back to ``revision`` ("base" empties it); return the revision reached."""
    command.downgrade(alembic_config(engine), revision)
    return current_revision(engine)
