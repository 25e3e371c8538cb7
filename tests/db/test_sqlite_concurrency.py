"""Processes sharing the embedded SQLite database: units of work wait, none fails or is lost."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from sqlalchemy import select

from vigil.db import migrations
from vigil.db.models import Device
from vigil.db.session import make_engine, make_session_factory, transaction

WORKERS = 4
INCREMENTS = 40


def increment(url: str, worker: int) -> None:
    """Read-modify-write a counter in its own unit of work, again and again."""
    engine = make_engine(url)
    factory = make_session_factory(engine)
    for _ in range(INCREMENTS):
        with transaction(factory) as session:
            device = session.scalars(select(Device).where(Device.id == "shared")).one()
            counts = dict(device.status_detail)
            counts["total"] = counts.get("total", 0) + 1
            counts[str(worker)] = counts.get(str(worker), 0) + 1
            device.status_detail = counts
    engine.dispose()


def test_concurrent_read_modify_write_units_of_work(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    engine = make_engine(url)
    migrations.upgrade(engine)
    factory = make_session_factory(engine)
    with transaction(factory) as session:
        session.add(Device(id="shared", serial="S", model="M"))

    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=increment, args=(url, n)) for n in range(WORKERS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=240)
    assert [worker.exitcode for worker in workers] == [0] * WORKERS

    with factory() as session:
        counts = session.get_one(Device, "shared").status_detail
    assert counts == {"total": WORKERS * INCREMENTS,
                      **{str(n): INCREMENTS for n in range(WORKERS)}}
    engine.dispose()
