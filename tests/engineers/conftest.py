"""Fixtures of the engineers' tests: migrated databases on SQLite and PostgreSQL."""

from tests.db.conftest import db, engine, factory  # noqa: F401  (fixtures used here too)
