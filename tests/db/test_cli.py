"""`vigil db` through the command line, as an operator runs it, on both databases."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from vigil.db import migrations
from vigil.db.models import Base
from vigil.db.session import make_engine
from vigil.servers import PostgreSQL, free_port

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "s3cr@t/pw'"


def vigil_db(*args: str, url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("VIGIL_")}
    env.update(VIGIL_DATABASE_URL=url, VIGIL_DATA_DIR=str(cwd / "data"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "vigil.cli", "db", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=180)


def with_password(url: str) -> str:
    """The test PostgreSQL trusts loopback, so a password in the URL is carried but unused."""
    return make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)


@pytest.fixture
def cli_url(sql_url: str, tmp_path: Path) -> str:
    if sql_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'not' / 'yet' / 'there' / 'vigil.db'}"
    return with_password(sql_url)


def test_upgrade_creates_the_schema_and_shows_the_url_redacted(cli_url: str,
                                                               tmp_path: Path) -> None:
    result = vigil_db("upgrade", url=cli_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    head = migrations.head_revision()
    shown = make_url(cli_url).render_as_string(hide_password=True)
    assert f"database: {shown}" in result.stdout
    assert f"schema upgraded from empty to revision {head} (head)" in result.stdout
    assert "s3cr" not in result.stdout + result.stderr
    engine = make_engine(cli_url)
    try:
        assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
        assert migrations.current_revision(engine) == head
    finally:
        engine.dispose()

    again = vigil_db("upgrade", url=cli_url, cwd=tmp_path)
    assert again.returncode == 0 and f"already at revision {head}" in again.stdout
    current = vigil_db("current", url=cli_url, cwd=tmp_path)
    assert current.returncode == 0 and f"at revision {head}, up to date" in current.stdout


def test_downgrade_needs_confirmation(cli_url: str, tmp_path: Path) -> None:
    assert vigil_db("upgrade", url=cli_url, cwd=tmp_path).returncode == 0
    unconfirmed = vigil_db("downgrade", "base", url=cli_url, cwd=tmp_path)
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
    current = vigil_db("current", url=cli_url, cwd=tmp_path)
    assert "up to date" in current.stdout
    confirmed = vigil_db("downgrade", "base", "--yes", url=cli_url, cwd=tmp_path)
    assert confirmed.returncode == 0 and "downgraded to base" in confirmed.stdout
    empty = vigil_db("current", url=cli_url, cwd=tmp_path)
    assert "none (empty database)" in empty.stdout and "vigil db upgrade" in empty.stdout


def test_an_unknown_revision_is_a_clear_error(cli_url: str, tmp_path: Path) -> None:
    result = vigil_db("upgrade", "--revision", "nonsense", url=cli_url, cwd=tmp_path)
    assert result.returncode == 1
    assert "error:" in result.stderr and "nonsense" in result.stderr


def test_an_unreachable_database_fails_clearly_without_the_password(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://vigil:{PASSWORD.replace('@', '%40').replace('/', '%2F')}" \
          f"@127.0.0.1:{free_port()}/vigil"
    result = vigil_db("upgrade", url=url, cwd=tmp_path)
    assert result.returncode == 1
    assert "error: cannot reach postgresql+psycopg://vigil:***@127.0.0.1" in result.stderr
    assert "Traceback" not in result.stderr
    assert "s3cr" not in result.stdout + result.stderr


def test_a_missing_postgresql_database_fails_clearly(postgresql: PostgreSQL,
                                                     tmp_path: Path) -> None:
    result = vigil_db("current", url=postgresql.url("no_such_database"), cwd=tmp_path)
    assert result.returncode == 1
    assert "no_such_database" in result.stderr and "does not exist" in result.stderr


def test_an_unusable_sqlite_folder_fails_clearly(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = vigil_db("upgrade", url=f"sqlite:///{blocker / 'vigil.db'}", cwd=tmp_path)
    assert result.returncode == 1
    assert "error: cannot use sqlite:///" in result.stderr and "Traceback" not in result.stderr
