"""Tables of the scheduled jobs: leases, streaming-scoring state, anomaly alarms, model versions.

They live here, not under ``analytics/``, because the schema is the shared
package's: migrations and the API see them without importing the analytics code.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from vigil.db.base import Base, BigId, enum_column, utcnow


class ModelStatus(StrEnum):
    """A trained model's place in the registry: only a promoted one is used."""

    CANDIDATE = "candidate"
    PROMOTED = "promoted"
    REJECTED = "rejected"
    RETIRED = "retired"


class JobLease(Base):
    """Who works on one unit of a job (a device, or ``*`` for a fleet-wide job), and when it is due.

    A worker claims due, unowned or expired rows (``FOR UPDATE SKIP LOCKED`` on
    PostgreSQL) and writes its result in the transaction that releases the row
    with the next due time; a worker that dies leaves rows that expire and are
    taken over.
    """

    __tablename__ = "job_leases"
    __table_args__ = (Index("ix_job_leases_job_due_at", "job", "due_at"),)

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(128))
    expires_at: Mapped[datetime | None]
    due_at: Mapped[datetime]
    runs: Mapped[int] = mapped_column(BigInteger, default=0)
    last_done_at: Mapped[datetime | None]


class StreamState(Base):
    """A device's streaming-scoring position: detector states and the watermark, saved together.

    ``watermark_ms`` is the end of the last scored step (epoch ms): telemetry
    before it is never scored again. ``states`` is zlib-compressed JSON with
    float lists packed as base64 doubles (about 23 kB per metric stream), a
    format that runs no code when read. ``baseline_from`` is the repair the
    detectors were last reset for.
    ``version`` grows by one per save (SQLAlchemy's version counter): a writer
    that read an older version gets ``StaleDataError`` and writes nothing.
    """

    __tablename__ = "stream_states"

    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), primary_key=True)
    step_s: Mapped[int] = mapped_column(Integer)
    watermark_ms: Mapped[int | None] = mapped_column(BigInteger)
    states: Mapped[bytes | None] = mapped_column(LargeBinary)
    baseline_from: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(Integer, default=0)
    scored_steps: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 (SQLAlchemy reads it)


class AnomalyAlarm(Base):
    """A scored step whose anomaly score reached the detector's alarm level.

    The full score series goes to the telemetry store; these rows are the peaks
    the ticket rules and the console act on. ``handled_at`` is set once the
    ticket rules have considered the alarm.
    """

    __tablename__ = "anomaly_alarms"
    __table_args__ = (
        UniqueConstraint("device_id", "metric", "ts"),
        Index("ix_anomaly_alarms_device_id_ts", "device_id", "ts"),
        Index(
            "ix_anomaly_alarms_unhandled",
            "detected_at",
            sqlite_where=text("handled_at IS NULL"),
            postgresql_where=text("handled_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    metric: Mapped[str] = mapped_column(String(64))
    ts: Mapped[datetime]
    score: Mapped[float] = mapped_column(Float)
    value: Mapped[float] = mapped_column(Float)
    detected_at: Mapped[datetime] = mapped_column(default=utcnow)
    handled_at: Mapped[datetime | None]
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))


class ModelVersion(Base):
    """One trained model: its parameters as plain JSON, its validation figures and data period.

    At most one version per name is promoted (a partial unique index); a new
    version is promoted only if its validation score is at least as good.
    """

    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("name", "version"),
        Index(
            "uq_model_versions_promoted_name",
            "name",
            unique=True,
            sqlite_where=text("status = 'promoted'"),
            postgresql_where=text("status = 'promoted'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(128))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The figure promotion compares, and which way is better.
    score: Mapped[float] = mapped_column(Float)
    higher_is_better: Mapped[bool] = mapped_column(default=True)
    data_start: Mapped[datetime]
    data_end: Mapped[datetime]
    status: Mapped[str] = enum_column(ModelStatus, default=ModelStatus.CANDIDATE.value)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    promoted_at: Mapped[datetime | None]
