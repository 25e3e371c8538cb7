"""Engines come with the settings the store relies on, and bad URLs fail clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import ArgumentError

from vigil.db.session import ensure_sqlite_folder, make_engine, normalise_url, sqlite_path


def test_sqlite_connections_enforce_foreign_keys_with_wal_and_a_busy_timeout(
        tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'v.db'}")
    try:
        with engine.connect() as connection:
            assert connection.scalar(text("PRAGMA foreign_keys")) == 1
            assert connection.scalar(text("PRAGMA journal_mode")) == "wal"
            assert connection.scalar(text("PRAGMA busy_timeout")) >= 10_000
    finally:
        engine.dispose()


@pytest.mark.parametrize("given, driver", [
    ("postgresql://u@h/db", "postgresql+psycopg"),
    ("postgres://u@h/db", "postgresql+psycopg"),
    ("postgresql+psycopg://u@h/db", "postgresql+psycopg"),
    ("sqlite:///x.db", "sqlite"),
])
def test_postgresql_urls_use_psycopg_3(given: str, driver: str) -> None:
    assert normalise_url(given).drivername == driver


@pytest.mark.parametrize("url, message", [
    ("mysql://u:pw@h/db", "mysql is not supported; use SQLite or PostgreSQL"),
    ("not a url", "Could not parse"),
    ("postgresql+asyncpg://u@h/db", r"driver of postgresql\+asyncpg is not installed"),
])
def test_unusable_urls_are_refused_clearly(url: str, message: str) -> None:
    with pytest.raises(ArgumentError, match=message) as caught:
        make_engine(url)
    assert "pw" not in str(caught.value)


def test_the_sqlite_folder_is_created(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a' / 'b' / 'v.db'}"
    assert sqlite_path(url) == tmp_path / "a" / "b" / "v.db"
    ensure_sqlite_folder(url)
    assert (tmp_path / "a" / "b").is_dir()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "postgresql://u@h/db"])
def test_no_folder_for_in_memory_or_server_databases(url: str) -> None:
    assert sqlite_path(url) is None
