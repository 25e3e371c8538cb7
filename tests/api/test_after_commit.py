"""Side effects after the request's commit: not on a savepoint's release, not after a rollback."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from api.deps import after_commit
from vigil.db.session import make_engine, make_session_factory


def test_actions_wait_for_the_outermost_commit_and_drop_with_their_savepoint(
        tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    done: list[str] = []
    with make_session_factory(engine)() as session:
        session.begin()
        with session.begin_nested():
            session.execute(text("SELECT 1"))
            after_commit(session, lambda: done.append("kept"))
        assert done == []  # the savepoint's release is not the commit
        with pytest.raises(ValueError), session.begin_nested():
            after_commit(session, lambda: done.append("undone"))
            raise ValueError
        after_commit(session, lambda: done.append("outer"))
        session.commit()
        assert done == ["kept", "outer"]
        session.begin()
        after_commit(session, lambda: done.append("rolled back"))
        session.rollback()
        session.begin()
        session.commit()
    assert done == ["kept", "outer"]
    engine.dispose()
