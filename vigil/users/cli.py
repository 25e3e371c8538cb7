"""Manage users from the command line: ``vigil users create-admin``."""

from __future__ import annotations

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    admin = sub.add_parser("create-admin", help="create an administrator; prints its password once")
    admin.add_argument("--username", default="admin")
    admin.add_argument("--display-name", default="Administrator")
    admin.add_argument("--email")


def run(args: argparse.Namespace) -> int:
    from vigil.config import get_settings
    from vigil.db import migrations
    from vigil.db.session import (
        ensure_sqlite_folder,
        make_engine,
        make_session_factory,
        transaction,
    )
    from vigil.errors import Conflict
    from vigil.users.service import create_admin

    settings = get_settings()
    ensure_sqlite_folder(settings.sql_url)
    engine = make_engine(settings.sql_url)
    try:
        migrations.upgrade(engine)
        with transaction(make_session_factory(engine)) as session:
            user, password = create_admin(session, username=args.username,
                                          display_name=args.display_name, email=args.email)
    except Conflict as exc:
        print(f"vigil users create-admin: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(f"Administrator {user.username!r} created. Its password, shown only this once:")
    print(password)
    return 0
