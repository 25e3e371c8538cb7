"""Leases: how several `vigil jobs` workers share the fleet and the fleet-wide jobs.

One row per job and unit of work (a device id, or ``*`` for a job that runs
once for the whole fleet). A worker claims rows that are due and unowned or
whose owner's lease expired; on PostgreSQL with ``FOR UPDATE SKIP LOCKED``, so
two workers claiming at once get disjoint rows without waiting for each
other. The work on a unit is written in the transaction that first re-checks
the lease under a row lock (:func:`hold`) and ends with :func:`release`, so a
worker whose lease was taken over writes nothing: a device window is never
scored twice. On SQLite every unit of work takes the database's write lock
(``BEGIN IMMEDIATE``), which gives the same guarantee for the one worker it runs.

Keyword-only functions on the caller's session; they never commit.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from vigil.scoring.models import JobLease

FLEET = "*"  # the key of a job that runs once for the whole fleet


class LeaseLost(RuntimeError):
    """This worker no longer holds the lease: another took it over after it expired."""


def worker_name() -> str:
    """A name unique to this process, readable in the lease table."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def ensure(session: Session, *, job: str, keys: Iterable[str], due_at: datetime) -> None:
    """Add the lease rows missing for ``keys`` (due at ``due_at``); existing rows stay as they are.

    Only the missing keys are inserted (insert-or-ignore, as another worker may
    add them at the same moment), so the usual pass writes nothing here.
    """
    known = set(session.scalars(select(JobLease.key).where(JobLease.job == job)))
    rows = [{"job": job, "key": key, "due_at": due_at, "runs": 0}
            for key in dict.fromkeys(keys) if key not in known]
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    for start in range(0, len(rows), 500):
        stmt = insert(JobLease).values(rows[start:start + 500]).on_conflict_do_nothing()
        session.execute(stmt)


def claim(
    session: Session, *, job: str, owner: str, now: datetime, ttl: timedelta, limit: int,
    keys: Sequence[str] | None = None,
) -> list[str]:
    """Take up to ``limit`` due units of ``job`` nobody holds (or whose holder's lease expired).

    Commit right after: the claim is what other workers see. Returns the keys,
    most overdue first.
    """
    free = or_(JobLease.owner.is_(None), JobLease.expires_at.is_(None), JobLease.expires_at < now)
    query = (
        select(JobLease.key)
        .where(JobLease.job == job, JobLease.due_at <= now, free)
        .order_by(JobLease.due_at, JobLease.key)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if keys is not None:
        query = query.where(JobLease.key.in_(keys))
    claimed = list(session.scalars(query))
    if claimed:
        session.execute(
            update(JobLease)
            .where(JobLease.job == job, JobLease.key.in_(claimed))
            .values(owner=owner, expires_at=now + ttl)
        )
    return claimed


def hold(session: Session, *, job: str, key: str, owner: str, now: datetime) -> JobLease:
    """Lock the lease row for this unit of work and check it is still ours; raises LeaseLost."""
    lease = session.scalars(
        select(JobLease)
        .where(JobLease.job == job, JobLease.key == key)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if lease is None or lease.owner != owner or lease.expires_at is None or lease.expires_at <= now:
        raise LeaseLost(f"{job} {key}: held by {lease.owner if lease else 'nobody'}, not {owner}")
    return lease


def release(session: Session, *, lease: JobLease, now: datetime, next_due: datetime) -> None:
    """The unit's work is done (in this transaction): free it and set when it is due again."""
    lease.owner = None
    lease.expires_at = None
    lease.due_at = next_due
    lease.runs += 1
    lease.last_done_at = now


def give_back(session: Session, *, job: str, keys: Sequence[str], owner: str) -> int:
    """Free units claimed but not worked on (on shutdown), so others need not wait for expiry."""
    if not keys:
        return 0
    result = session.execute(
        update(JobLease)
        .where(and_(JobLease.job == job, JobLease.key.in_(keys), JobLease.owner == owner))
        .values(owner=None, expires_at=None)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
