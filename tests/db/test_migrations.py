"""The migrations build the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from vigil.db import migrations
from vigil.db.enums import RoleName
from vigil.db.models import Base
from vigil.db.session import make_engine


def differences(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_upgrade_on_an_empty_database_creates_every_table(engine: Engine) -> None:
    assert migrations.current_revision(engine) is None
    reached = migrations.upgrade(engine)
    assert reached == migrations.head_revision()
    tables = set(inspect(engine).get_table_names())
    assert tables == set(Base.metadata.tables) | {"alembic_version"}


def test_models_match_the_migrations(db: Engine) -> None:
    assert differences(db) == []


def test_a_model_change_without_migration_is_noticed(db: Engine) -> None:
    """The comparison above can fail: an index the database lacks shows up."""
    with db.begin() as connection:
        connection.execute(text("DROP INDEX ix_devices_model"))
    found = differences(db)
    assert any(diff[0] == "add_index" for diff in found if isinstance(diff, tuple)), found


def test_upgrade_twice_changes_nothing(db: Engine) -> None:
    head = migrations.head_revision()
    assert migrations.upgrade(db) == head
    assert differences(db) == []


def test_downgrade_to_base_and_upgrade_again(db: Engine) -> None:
    assert migrations.downgrade(db, "base") is None
    assert set(inspect(db).get_table_names()) <= {"alembic_version"}
    assert migrations.upgrade(db) == migrations.head_revision()
    assert differences(db) == []
    with db.connect() as connection:
        roles = connection.scalars(text("SELECT name FROM roles ORDER BY id")).all()
    assert roles == [role.value for role in RoleName]


def test_the_four_roles_exist_after_upgrade(db: Engine) -> None:
    with db.connect() as connection:
        roles = set(connection.scalars(text("SELECT name FROM roles")).all())
    assert roles == {"admin", "manager", "engineer", "customer"}


def upgrade_in_process(url: str) -> None:
    engine = make_engine(url)
    try:
        migrations.upgrade(engine)
    finally:
        engine.dispose()


def test_concurrent_upgrades_leave_one_schema(sql_url: str, engine: Engine) -> None:
    """Services that start together may all run the upgrade; all succeed, once."""
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=upgrade_in_process, args=(sql_url,)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=240)
    assert [worker.exitcode for worker in workers] == [0, 0, 0]
    assert migrations.current_revision(engine) == migrations.head_revision()
    assert differences(engine) == []
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM roles")) == len(RoleName)


def test_a_failed_upgrade_leaves_the_database_as_it_was(engine: Engine) -> None:
    """The whole upgrade is one transaction, DDL included, on both databases."""
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE transcript_entries (id INTEGER PRIMARY KEY)"))
    with pytest.raises(DBAPIError):
        migrations.upgrade(engine)
    assert set(inspect(engine).get_table_names()) == {"transcript_entries"}
    assert migrations.current_revision(engine) is None
