"""Two processes racing to open the same ticket on PostgreSQL: exactly one ticket results."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.tickets.support import seed
from vigil.db.enums import Severity, TicketSource
from vigil.db.session import make_engine, make_session_factory, transaction
from vigil.tickets import service
from vigil.tickets.models import Ticket
from vigil.tickets.priority import Signal, TicketRules

ROUNDS = 30
T0 = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)


def racer(url: str, barrier: Any, results: Any) -> None:
    engine = make_engine(url)
    factory = make_session_factory(engine)
    rules = TicketRules.load()
    created = 0
    try:
        for i in range(ROUNDS):
            barrier.wait(timeout=60)  # both start each round together
            with transaction(factory) as s:
                opened = service.open_or_join(
                    s, device_id="vent-1", signature=f"event:E{i:03d}",
                    signal=Signal(TicketSource.DEVICE_EVENT, severity=Severity.ERROR),
                    title="race", evidence=service.Evidence(at=T0), now=T0, rules=rules)
                created += opened.created
        results.put(created)
    finally:
        engine.dispose()


@pytest.mark.servers
def test_racing_processes_file_one_ticket(factory: sessionmaker[Session], sql_url: str) -> None:
    if not sql_url.startswith("postgresql"):
        pytest.skip("SQLite serialises writers: one process runs the jobs there")
    seed(factory)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    workers = [context.Process(target=racer, args=(sql_url, barrier, results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=240)
    assert [w.exitcode for w in workers] == [0, 0]
    created = [results.get(timeout=5), results.get(timeout=5)]
    assert sum(created) == ROUNDS
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(Ticket)) == ROUNDS
        counts = s.scalars(select(Ticket.evidence_count)).all()
        assert set(counts) == {2}  # the loser's evidence joined the winner's ticket
