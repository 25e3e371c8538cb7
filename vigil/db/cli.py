"""Manage the SQL database schema: upgrade it, show its revision, or take it back.

The database is the configured one (VIGIL_DATABASE_URL, or the embedded
SQLite file under the data folder). Its URL is shown with the password hidden.
"""

from __future__ import annotations

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = sub.add_parser("upgrade", help="bring the schema up to a revision (default: the latest)")
    up.add_argument("--revision", default="head", help="target revision (default: head)")
    sub.add_parser("current", help="show the revision the database is at")
    down = sub.add_parser("downgrade", help="take the schema back to a revision; may drop data")
    down.add_argument("revision", help='target revision, e.g. "-1" or "base" (drops everything)')
    down.add_argument("--yes", action="store_true",
                      help="confirm: tables and their data may be dropped")


def _reason(exc: BaseException) -> str:
    """The first line of the driver's message: readable, and free of SQL and secrets."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run(args: argparse.Namespace) -> int:
    from alembic.util import CommandError
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    from vigil import config
    from vigil.db import migrations
    from vigil.db.session import ensure_sqlite_folder, make_engine

    url = config.get_settings().sql_url
    shown = config.redact_url(url)
    print(f"database: {shown}")
    if args.db_command == "downgrade" and not args.yes:
        print("downgrade may drop tables and their data; repeat with --yes to confirm",
              file=sys.stderr)
        return 2
    try:
        ensure_sqlite_folder(url)
        engine = make_engine(url)
    except (SQLAlchemyError, OSError, ValueError) as exc:
        print(f"error: cannot use {shown}: {_reason(exc)}", file=sys.stderr)
        return 1
    try:
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError) as exc:
            print(f"error: cannot reach {shown}: {_reason(exc)}", file=sys.stderr)
            return 1
        head = migrations.head_revision()
        try:
            if args.db_command == "upgrade":
                before = migrations.current_revision(engine)
                reached = migrations.upgrade(engine, args.revision)
                if before == reached:
                    change = "already at"
                else:
                    change = f"upgraded from {before or 'empty'} to"
                mark = " (head)" if reached == head else ""
                print(f"schema {change} revision {reached}{mark}")
            elif args.db_command == "downgrade":
                reached = migrations.downgrade(engine, args.revision)
                print(f"schema downgraded to {reached or 'base (empty)'}")
            else:
                current = migrations.current_revision(engine)
                state = "up to date" if current == head else f"not {head}: run `vigil db upgrade`"
                print(f"schema at revision {current or 'none (empty database)'}, {state}")
        except CommandError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except SQLAlchemyError as exc:
            print(f"error: migration failed on {shown}, nothing was changed: {_reason(exc)}",
                  file=sys.stderr)
            return 1
        return 0
    finally:
        engine.dispose()
