"""Leases on real PostgreSQL (and SQLite): disjoint claims, expiry, takeover, no double scoring."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from analytics.jobs import leases
from analytics.jobs.metrics import JobMetrics
from analytics.jobs.runner import Worker
from tests.jobs.conftest import T0, FakeClock, add_fleet, migrated, readings
from vigil.config import JobsSettings
from vigil.db.session import make_session_factory, transaction
from vigil.scoring.models import JobLease, StreamState

TTL = timedelta(seconds=30)


@pytest.fixture(params=["postgresql", "sqlite"])
def shared(request: pytest.FixtureRequest):
    url = request.getfixturevalue("pg_url" if request.param == "postgresql" else "sqlite_url")
    engine = migrated(url)
    yield make_session_factory(engine)
    engine.dispose()


def claim(factory, owner: str, now, limit: int = 100) -> list[str]:
    with transaction(factory) as session:
        return leases.claim(session, job="scoring", owner=owner, now=now, ttl=TTL, limit=limit)


def test_claims_are_disjoint_and_expired_ones_are_taken_over(shared) -> None:
    keys = [f"d{i}" for i in range(10)]
    with transaction(shared) as session:
        leases.ensure(session, job="scoring", keys=keys, due_at=T0)
        leases.ensure(session, job="scoring", keys=keys, due_at=T0 + timedelta(days=1))  # no-op
    a = claim(shared, "a", T0, limit=4)
    b = claim(shared, "b", T0)
    assert a == keys[:4] and b == keys[4:]
    assert claim(shared, "c", T0 + TTL) == []  # still held at the last instant of the lease
    taken = claim(shared, "c", T0 + TTL + timedelta(seconds=1), limit=4)
    assert sorted(taken) == sorted(a)  # a and b both died: the oldest due go first


def test_a_worker_whose_lease_was_taken_over_writes_nothing(shared) -> None:
    with transaction(shared) as session:
        leases.ensure(session, job="scoring", keys=["d0"], due_at=T0)
    assert claim(shared, "slow", T0) == ["d0"]
    later = T0 + TTL + timedelta(seconds=1)
    assert claim(shared, "fast", later) == ["d0"]
    with pytest.raises(leases.LeaseLost), transaction(shared) as session:
        leases.hold(session, job="scoring", key="d0", owner="slow", now=later)
    with transaction(shared) as session:
        lease = leases.hold(session, job="scoring", key="d0", owner="fast", now=later)
        leases.release(session, lease=lease, now=later, next_due=later + timedelta(minutes=1))
    with shared() as session:
        row = session.get(JobLease, ("scoring", "d0"))
        assert (row.owner, row.runs, row.due_at) == (None, 1, later + timedelta(minutes=1))


def test_concurrent_claims_never_share_a_device(pg_url: str) -> None:
    """Eight threads claim at once on PostgreSQL: SKIP LOCKED hands each device to one of them."""
    engine = migrated(pg_url)
    factory = make_session_factory(engine)
    keys = [f"d{i:03d}" for i in range(200)]
    with transaction(factory) as session:
        leases.ensure(session, job="scoring", keys=keys, due_at=T0)
    got: dict[str, list[str]] = {}
    start = threading.Barrier(8)

    def run(owner: str) -> None:
        start.wait()
        mine = got.setdefault(owner, [])
        while batch := claim(factory, owner, T0, limit=5):
            mine.extend(batch)

    threads = [threading.Thread(target=run, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    claimed = [k for batch in got.values() for k in batch]
    assert sorted(claimed) == keys  # every device once, none twice
    assert sum(1 for batch in got.values() if batch) >= 2
    engine.dispose()


def test_two_workers_share_a_fleet_and_score_each_window_once(pg_url: str, embedded) -> None:
    engine = migrated(pg_url)
    factory = make_session_factory(engine)
    devices = add_fleet(factory, 6)
    for device in devices:
        embedded.write(readings(device, T0 - timedelta(days=2), T0, every=timedelta(minutes=5)))
    settings = JobsSettings(intervals_s={"scoring": 60.0}, claim_batch=1)
    clock = FakeClock()
    workers = [Worker(factory=factory, store=embedded, settings=settings, metrics=JobMetrics(),
                      clock=clock, owner=name) for name in ("a", "b")]
    reports = []
    threads = [threading.Thread(target=lambda w=w: reports.append(w.run("scoring")))
               for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sum(r.units for r in reports) == 6 and sum(r.failures for r in reports) == 0
    with factory() as session:
        states = session.scalars(select(StreamState)).all()
    assert len(states) == 6 and {s.scored_steps for s in states} == {2 * 288 - 1}
    engine.dispose()


def test_a_fleet_wide_job_runs_once_per_interval_across_workers(pg_url: str, embedded) -> None:
    engine = migrated(pg_url)
    factory = make_session_factory(engine)
    ran: list[str] = []
    start = threading.Barrier(4)

    def task_of(name: str):
        def task(session, now):
            ran.append(name)
            return {}
        return task

    settings = JobsSettings(intervals_s={"report": 60.0})
    workers = [Worker(factory=factory, store=embedded, settings=settings,
                      fleet_tasks={"report": task_of(f"w{i}")}, metrics=JobMetrics(),
                      clock=FakeClock(), owner=f"w{i}") for i in range(4)]

    def run(worker: Worker) -> None:
        start.wait()
        worker.run("report")

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(ran) == 1
    engine.dispose()
