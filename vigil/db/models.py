"""The SQL store's tables: SQLAlchemy 2 typed declarative models.

Everything that is not telemetry lives here: sites, devices and their presence,
users and roles, tickets with their full history, diagnosis sessions and their
transcripts, the knowledge base, maintenance plans, the append-only audit log,
device-raised events, dead letters and failure predictions.

The same schema runs on SQLite (the embedded default) and PostgreSQL, so every
rule is written in a form both enforce: enumerated values and text lengths are
CHECK constraints (SQLite ignores VARCHAR lengths), timestamps are stored as UTC
and always come back timezone-aware, and "one open ticket per device and fault
signature" is a partial unique index. Values are also checked when assigned, so
a bad one fails early with a message naming the attribute, before any SQL runs.

The models hold no business rules; services decide what to write, and the
caller of a service owns the transaction.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.ext.mutable import MutableDict, MutableList
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from edge_agent.protocol import validate_device_id
from vigil.db.enums import (
    FINAL_TICKET_STATES,
    Category,
    DeviceState,
    MaintenanceKind,
    Priority,
    RoleName,
    Severity,
    TicketEventKind,
    TicketSource,
    TicketState,
    TranscriptKind,
)

# Stable constraint names, so migrations (and SQLite's batch mode, which
# rebuilds tables) can refer to every constraint by name.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Dead letters keep the start of a payload only: enough to diagnose, bounded in size.
DEAD_LETTER_PAYLOAD_CHARS = 4096
DEAD_LETTER_TOPIC_CHARS = 256
DEAD_LETTER_REASON_CHARS = 1000

# Big surrogate keys for the tables that grow with the fleet; SQLite only
# auto-numbers a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class InvalidValue(ValueError):
    """A value the schema cannot hold: the message names the attribute and the rule."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every database.

    PostgreSQL keeps the zone (timestamptz); SQLite keeps none, so values are
    stored as naive UTC (which also sorts correctly as text) and given their
    zone back when read. Naive datetimes are refused: their meaning is a guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
            raise InvalidValue(f"timestamp {value!r} is not a timezone-aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    # JSON documents notice in-place changes at their top level (``detail["x"] = 1``),
    # which a plain JSON column would silently not save; nested changes need reassignment.
    type_annotation_map = {
        datetime: UTCDateTime(),
        dict[str, Any]: MutableDict.as_mutable(JSON()),
        list[Any]: MutableList.as_mutable(JSON()),
    }


def enum_column(enum: type[StrEnum], **kwargs: Any) -> Mapped[Any]:
    """A text column that accepts only the values of ``enum`` (checked in the database too)."""
    width = max(len(member.value) for member in enum)
    return mapped_column(String(width), info={"enum": enum}, **kwargs)


# --- sites, devices, users ---------------------------------------------------

user_roles = Table(
    "user_roles",
    Base.metadata,
    Column("user_id", ForeignKey("users.id"), primary_key=True),
    Column("role_id", ForeignKey("roles.id"), primary_key=True),
)

# The sites a customer's users may see: their own hospital's devices and tickets.
user_sites = Table(
    "user_sites",
    Base.metadata,
    Column("user_id", ForeignKey("users.id"), primary_key=True),
    Column("site_id", ForeignKey("sites.id"), primary_key=True),
)


class Site(Base):
    """A place where devices are installed: a hospital (the customer) or one of its buildings."""

    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    customer: Mapped[str] = mapped_column(String(200))
    address: Mapped[str | None] = mapped_column(String(500))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    devices: Mapped[list[Device]] = relationship(back_populates="site")


class Device(Base):
    """An installed device, keyed by the id it uses on MQTT.

    ``online``, ``state``, ``last_seen`` and ``status_detail`` are kept by
    ingest from the device's status topic; the rest is the registry.
    """

    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    serial: Mapped[str] = mapped_column(String(64), unique=True)
    model: Mapped[str] = mapped_column(String(64), index=True)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"), index=True)
    install_date: Mapped[date | None]
    warranty_end: Mapped[date | None]
    firmware: Mapped[str | None] = mapped_column(String(64))
    # A hash of the device's MQTT credential, never the credential itself.
    credential_hash: Mapped[str | None] = mapped_column(String(255))
    online: Mapped[bool] = mapped_column(default=False)
    state: Mapped[str | None] = enum_column(DeviceState)
    last_seen: Mapped[datetime | None]
    status_detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    site: Mapped[Site | None] = relationship(back_populates="devices")


class Role(Base):
    __tablename__ = "roles"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = enum_column(RoleName, unique=True)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(254))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    roles: Mapped[list[Role]] = relationship(secondary=user_roles)
    sites: Mapped[list[Site]] = relationship(secondary=user_sites)


# --- tickets ----------------------------------------------------------------

_FINAL_STATES_SQL = ", ".join(f"'{state.value}'" for state in sorted(FINAL_TICKET_STATES))
# Rows this predicate selects are the open tickets; used by the partial unique index.
OPEN_TICKET_PREDICATE = text(f"state NOT IN ({_FINAL_STATES_SQL})")


class Ticket(Base):
    """A service ticket. Its history is in ``events``; nothing is ever deleted."""

    __tablename__ = "tickets"
    __table_args__ = (
        # One open ticket per device and fault signature: more evidence joins it.
        Index(
            "uq_tickets_open_signature",
            "device_id",
            "signature",
            unique=True,
            sqlite_where=OPEN_TICKET_PREDICATE,
            postgresql_where=OPEN_TICKET_PREDICATE,
        ),
        Index("ix_tickets_state_priority", "state", "priority"),
        CheckConstraint(
            "satisfaction_score IS NULL OR satisfaction_score BETWEEN 1 AND 5",
            name="satisfaction_score_range",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), index=True)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"), index=True)
    priority: Mapped[str] = enum_column(Priority)
    category: Mapped[str] = enum_column(Category)
    state: Mapped[str] = enum_column(TicketState, default=TicketState.OPEN.value)
    source: Mapped[str] = enum_column(TicketSource)
    # What identifies "the same fault" of a device, e.g. "event:E042" or "anomaly:motor_current".
    signature: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(10_000), default="")
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    assigned_to_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Service-level deadlines, set when the ticket is opened.
    respond_by: Mapped[datetime | None]
    diagnose_by: Mapped[datetime | None]
    restore_by: Mapped[datetime | None]
    # When each service level was met, for SLA compliance and MTTR reports.
    responded_at: Mapped[datetime | None]
    diagnosed_at: Mapped[datetime | None]
    restored_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    satisfaction_score: Mapped[int | None] = mapped_column(SmallInteger)
    satisfaction_comment: Mapped[str | None] = mapped_column(String(2000))
    signed_off_at: Mapped[datetime | None]
    signed_off_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    device: Mapped[Device] = relationship()
    site: Mapped[Site | None] = relationship()
    assigned_to: Mapped[User | None] = relationship(foreign_keys=[assigned_to_id])
    signed_off_by: Mapped[User | None] = relationship(foreign_keys=[signed_off_by_id])
    events: Mapped[list[TicketEvent]] = relationship(
        back_populates="ticket", order_by=lambda: [TicketEvent.at, TicketEvent.id]
    )


class TicketEvent(Base):
    """One entry of a ticket's history: a state transition, a comment or new evidence."""

    __tablename__ = "ticket_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    # A user name, or the service that acted ("analytics", "ingest", ...).
    actor: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = enum_column(TicketEventKind)
    from_state: Mapped[str | None] = enum_column(TicketState)
    to_state: Mapped[str | None] = enum_column(TicketState)
    note: Mapped[str] = mapped_column(String(4000), default="")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)

    ticket: Mapped[Ticket] = relationship(back_populates="events")


# --- remote diagnosis ------------------------------------------------------


class DiagnosisSession(Base):
    """An engineer's remote session on a device, tied to a ticket or standalone."""

    __tablename__ = "diagnosis_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), index=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    engineer_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    close_reason: Mapped[str | None] = mapped_column(String(200))

    device: Mapped[Device] = relationship()
    ticket: Mapped[Ticket | None] = relationship()
    engineer: Mapped[User] = relationship()
    transcript: Mapped[list[TranscriptEntry]] = relationship(
        back_populates="session", order_by=lambda: [TranscriptEntry.at, TranscriptEntry.id]
    )


class TranscriptEntry(Base):
    """A command sent, its result or timeout, or an engineer's note, in a session."""

    __tablename__ = "transcript_entries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("diagnosis_sessions.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = enum_column(TranscriptKind)
    command_id: Mapped[str | None] = mapped_column(String(128), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)

    session: Mapped[DiagnosisSession] = relationship(back_populates="transcript")


# --- knowledge and maintenance ---------------------------------------------


class KnowledgeArticle(Base):
    """A known fault and its fix; tickets find articles by category, model and symptoms."""

    __tablename__ = "knowledge_articles"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(String(100_000))
    category: Mapped[str] = enum_column(Category, index=True)
    device_model: Mapped[str | None] = mapped_column(String(64), index=True)
    symptoms: Mapped[list[Any]] = mapped_column(default=list)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class MaintenancePlan(Base):
    """Preventive or calibration work due by calendar or usage, for one device or a whole model."""

    __tablename__ = "maintenance_plans"
    __table_args__ = (
        CheckConstraint(
            "device_id IS NOT NULL OR device_model IS NOT NULL", name="device_or_model"
        ),
        CheckConstraint(
            "interval_days IS NOT NULL OR interval_usage_hours IS NOT NULL", name="has_interval"
        ),
        CheckConstraint(
            "interval_days IS NULL OR interval_days > 0", name="interval_days_positive"
        ),
        CheckConstraint(
            "interval_usage_hours IS NULL OR interval_usage_hours > 0",
            name="interval_usage_hours_positive",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id"), index=True)
    device_model: Mapped[str | None] = mapped_column(String(64), index=True)
    kind: Mapped[str] = enum_column(MaintenanceKind)
    title: Mapped[str] = mapped_column(String(200))
    interval_days: Mapped[int | None]
    interval_usage_hours: Mapped[float | None] = mapped_column(Float)
    last_done_at: Mapped[datetime | None]
    next_due_at: Mapped[datetime | None] = mapped_column(index=True)
    active: Mapped[bool] = mapped_column(default=True)

    device: Mapped[Device | None] = relationship()


# --- records written by services -------------------------------------------


class AuditLog(Base):
    """Who did what to which object. Append-only: the database refuses UPDATE and DELETE."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_object", "object_type", "object_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str | None] = mapped_column(String(128))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class DeviceEvent(Base):
    """A fault code a device raised on its events topic; (device, seq) makes redelivery harmless."""

    __tablename__ = "device_events"
    __table_args__ = (UniqueConstraint("device_id", "seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    seq: Mapped[int] = mapped_column(BigInteger)
    ts: Mapped[datetime] = mapped_column(index=True)
    code: Mapped[str] = mapped_column(String(128))
    severity: Mapped[str] = enum_column(Severity)
    text: Mapped[str] = mapped_column(String(1000), default="")
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeadLetter(Base):
    """A message ingest could not accept, kept (truncated) with the reason, for diagnosis."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    topic: Mapped[str] = mapped_column(String(DEAD_LETTER_TOPIC_CHARS))
    reason: Mapped[str] = mapped_column(String(DEAD_LETTER_REASON_CHARS))
    payload: Mapped[str] = mapped_column(String(DEAD_LETTER_PAYLOAD_CHARS))
    payload_size: Mapped[int] = mapped_column(Integer)

    @classmethod
    def from_message(cls, topic: str | bytes, payload: bytes, reason: str) -> DeadLetter:
        """Build a dead letter from raw input, which may be of any size or encoding."""
        return cls(
            topic=storable_text(topic, DEAD_LETTER_TOPIC_CHARS),
            reason=storable_text(reason, DEAD_LETTER_REASON_CHARS),
            payload=storable_text(payload, DEAD_LETTER_PAYLOAD_CHARS),
            payload_size=len(payload),
        )


def storable_text(raw: str | bytes, limit: int) -> str:
    """Text any database stores, at most ``limit`` characters.

    Undecodable bytes and NUL become backslash escapes (PostgreSQL refuses NUL
    in text), and the result is cut to ``limit``.
    """
    if isinstance(raw, bytes):
        text = raw[: limit * 4].decode("utf-8", errors="backslashreplace")
    else:
        text = raw[: limit * 4].encode("utf-8", errors="backslashreplace").decode("utf-8")
    return text.replace("\x00", "\\x00")[:limit]


class Prediction(Base):
    """A failure prediction for a device: remaining useful life and probability within a horizon."""

    __tablename__ = "predictions"
    __table_args__ = (
        Index("ix_predictions_device_made_at", "device_id", "made_at"),
        CheckConstraint("probability >= 0 AND probability <= 1", name="probability_range"),
        CheckConstraint("horizon_days > 0", name="horizon_days_positive"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    made_at: Mapped[datetime] = mapped_column(default=utcnow)
    horizon_days: Mapped[float] = mapped_column(Float)
    rul_days: Mapped[float | None] = mapped_column(Float)
    probability: Mapped[float] = mapped_column(Float)
    rul_lower_days: Mapped[float | None] = mapped_column(Float)
    rul_upper_days: Mapped[float | None] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String(64))
    # What pushed the prediction: metric -> contribution, for the engineer to read.
    drivers: Mapped[dict[str, Any]] = mapped_column(default=dict)


# --- checks on assignment and in the database ------------------------------


def _check_text(name: str, limit: int | None) -> Callable[[Any, Any, Any, Any], Any]:
    def check(target: Any, value: Any, oldvalue: Any, initiator: Any) -> Any:
        if value is None:
            return value
        if not isinstance(value, str):
            raise InvalidValue(f"{name}: expected text, got {type(value).__name__}")
        if limit is not None and len(value) > limit:
            raise InvalidValue(f"{name}: {len(value)} characters, at most {limit}")
        if "\x00" in value:
            raise InvalidValue(f"{name}: contains a NUL character, which databases cannot store")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidValue(f"{name}: not valid Unicode ({exc.reason} at {exc.start})") from None
        return value

    return check


def _check_enum(name: str, enum: type[StrEnum]) -> Callable[[Any, Any, Any, Any], Any]:
    allowed = {member.value for member in enum}

    def check(target: Any, value: Any, oldvalue: Any, initiator: Any) -> Any:
        if value is None:
            return value
        if isinstance(value, str) and value in allowed:
            return str.__str__(value)  # the plain text, whichever way it was given
        raise InvalidValue(f"{name}: {value!r} is not one of {', '.join(m.value for m in enum)}")

    return check


def _check_timestamp(name: str) -> Callable[[Any, Any, Any, Any], Any]:
    def check(target: Any, value: Any, oldvalue: Any, initiator: Any) -> Any:
        if value is None:
            return value
        if not isinstance(value, datetime) or value.utcoffset() is None:
            raise InvalidValue(f"{name}: {value!r} is not a timezone-aware datetime")
        return value

    return check


def _check_with(name: str, rule: Callable[[Any], object]) -> Callable[[Any, Any, Any, Any], Any]:
    def check(target: Any, value: Any, oldvalue: Any, initiator: Any) -> Any:
        if value is not None:
            try:
                rule(value)
            except InvalidValue:
                raise
            except (ValueError, TypeError) as exc:
                raise InvalidValue(f"{name}: {exc}") from None
        return value

    return check


def _finite(value: Any) -> None:
    """NaN and infinities: SQLite turns NaN into NULL, PostgreSQL keeps it; neither is a reading."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number")


def _timezone_name(value: str) -> None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone name") from None


def _in_range(low: float, high: float, *, whole: bool = False) -> Callable[[Any], None]:
    kind = "a whole number" if whole else "a number"

    def rule(value: Any) -> None:
        number = not isinstance(value, bool) and isinstance(value, int if whole else int | float)
        if not number or not low <= value <= high:
            raise ValueError(f"{value!r} is not {kind} between {low:g} and {high:g}")

    return rule


_EXTRA_RULES: dict[tuple[type[Base], str], Callable[[Any], object]] = {
    (Device, "id"): validate_device_id,
    (Site, "timezone"): _timezone_name,
    (Ticket, "satisfaction_score"): _in_range(1, 5, whole=True),
    (Prediction, "probability"): _in_range(0, 1),
}


def _install_checks() -> None:
    """Add the portable CHECK constraints and the on-assignment checks for every model."""
    for table in Base.metadata.tables.values():
        for column in table.columns:
            enum = column.info.get("enum")
            if enum is not None:
                values = ", ".join(f"'{member.value}'" for member in enum)
                table.append_constraint(
                    CheckConstraint(f"{column.name} IN ({values})", name=f"{column.name}_valid")
                )
            elif isinstance(column.type, String) and column.type.length:
                # SQLite ignores VARCHAR lengths; this makes both databases enforce them.
                table.append_constraint(
                    CheckConstraint(
                        f"length({column.name}) <= {column.type.length}",
                        name=f"{column.name}_length",
                    )
                )
    for mapper in Base.registry.mappers:
        cls = mapper.class_
        for attr in mapper.column_attrs:
            mapped: Any = attr.columns[0]
            name = f"{cls.__name__}.{attr.key}"
            checks: list[Callable[[Any, Any, Any, Any], Any]] = []
            if mapped.info.get("enum") is not None:
                checks.append(_check_enum(name, mapped.info["enum"]))
            elif isinstance(mapped.type, String):
                checks.append(_check_text(name, mapped.type.length))
            elif isinstance(mapped.type, UTCDateTime):
                checks.append(_check_timestamp(name))
            elif isinstance(mapped.type, Float):
                checks.append(_check_with(name, _finite))
            rule = _EXTRA_RULES.get((cls, attr.key))
            if rule is not None:
                checks.append(_check_with(name, rule))
            for check in checks:
                event.listen(getattr(cls, attr.key), "set", check, retval=True)


_install_checks()
