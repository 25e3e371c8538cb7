"""Tables of the service desk: tickets, their history, service contracts, and escalations."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Computed,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from vigil.db.base import Base, BigId, enum_column, in_range, timezone_name, utcnow
from vigil.db.enums import (
    FINAL_TICKET_STATES,
    AlertState,
    Category,
    Channel,
    Milestone,
    NotificationStatus,
    PauseReason,
    Priority,
    TicketEventKind,
    TicketScope,
    TicketSource,
    TicketState,
)
from vigil.devices.models import Customer, Device, Site
from vigil.users.models import User

# The final states as an SQL list, spelt once for every predicate on open tickets.
FINAL_STATES_SQL = ", ".join(f"'{state.value}'" for state in sorted(FINAL_TICKET_STATES))
# Rows this predicate selects are the open tickets; used by the partial unique indexes.
OPEN_TICKET_PREDICATE = text(f"state NOT IN ({FINAL_STATES_SQL})")
_OPEN_SITE_PREDICATE = text(f"scope = 'site' AND state NOT IN ({FINAL_STATES_SQL})")
_OPEN_FLEET_PREDICATE = text(f"scope = 'fleet' AND state NOT IN ({FINAL_STATES_SQL})")
_ANALYTICS_PREDICATE = text(f"source = '{TicketSource.ANALYTICS.value}'")


# The lead time a prediction gave, in hours: ``hours_to_failure`` in the data of the oldest
# evidence piece kept (``recent[0]``), when it is a number. The same text is in migration 0011.
_PG_LEAD, _SQLITE_LEAD = "'{recent,0,data,hours_to_failure}'", "'$.recent[0].data.hours_to_failure'"
LEAD_HOURS_SQL = {
    "postgresql": f"CASE WHEN json_typeof(evidence #> {_PG_LEAD}) = 'number' "
                  f"THEN CAST(evidence #>> {_PG_LEAD} AS DOUBLE PRECISION) END",
    "sqlite": f"CASE WHEN json_type(evidence, {_SQLITE_LEAD}) IN ('integer', 'real') "
              f"THEN json_extract(evidence, {_SQLITE_LEAD}) END",
}


class lead_hours_of_evidence(FunctionElement[float]):  # noqa: N801 (an SQL function's name)
    """The generated ``tickets.lead_hours``: each database has its own JSON functions."""

    type = Float()
    inherit_cache = True


@compiles(lead_hours_of_evidence)
def _lead_hours_sql(element: lead_hours_of_evidence, compiler: SQLCompiler, **kw: Any) -> str:
    return LEAD_HOURS_SQL[compiler.dialect.name]


class Contract(Base):
    """A service contract: the service levels and the calendar their clocks run on.

    It covers one site, or every site of a customer; the site's own contract wins.
    ``hours_start``/``hours_end`` empty means 24 x 7. ``levels`` holds minutes per
    priority and milestone (``{"P1": {"respond": 60, ...}}``); empty means the
    defaults of DESIGN.md.
    """

    __tablename__ = "contracts"
    __table_args__ = (
        CheckConstraint("customer_id IS NOT NULL OR site_id IS NOT NULL", name="has_scope"),
        CheckConstraint("(hours_start IS NULL) = (hours_end IS NULL)", name="hours_pair"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"), index=True)
    # Empty: the site's time zone.
    timezone: Mapped[str | None] = mapped_column(String(64), info={"rule": timezone_name})
    hours_start: Mapped[time | None]
    hours_end: Mapped[time | None]
    # Working days, 0 = Monday; local dates of holidays as ISO text.
    workdays: Mapped[list[Any]] = mapped_column(default=lambda: [0, 1, 2, 3, 4])
    holidays: Mapped[list[Any]] = mapped_column(default=list)
    levels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    valid_from: Mapped[date | None]
    valid_to: Mapped[date | None]
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    customer: Mapped[Customer | None] = relationship()
    site: Mapped[Site | None] = relationship()


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
        # The same for a site-wide cause, and for a defect across a model's fleet.
        Index(
            "uq_tickets_open_site_signature",
            "site_id",
            "signature",
            unique=True,
            sqlite_where=_OPEN_SITE_PREDICATE,
            postgresql_where=_OPEN_SITE_PREDICATE,
        ),
        Index(
            "uq_tickets_open_fleet_model_signature",
            "model",
            "signature",
            unique=True,
            sqlite_where=_OPEN_FLEET_PREDICATE,
            postgresql_where=_OPEN_FLEET_PREDICATE,
        ),
        Index("ix_tickets_state_priority", "state", "priority"),
        # The analytics tickets of a period, for the service-quality report's false alarms
        # per rule (see migration 0013).
        Index(
            "ix_tickets_analytics_created_at",
            "created_at",
            sqlite_where=_ANALYTICS_PREDICATE,
            postgresql_where=_ANALYTICS_PREDICATE,
        ),
        CheckConstraint(
            "satisfaction_score IS NULL OR satisfaction_score BETWEEN 1 AND 5",
            name="satisfaction_score_range",
        ),
        CheckConstraint(
            "(scope = 'device') = (device_id IS NOT NULL)", name="device_scope_has_device"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = enum_column(TicketScope, default=TicketScope.DEVICE.value)
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id"), index=True)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"), index=True)
    # The device model a fleet ticket is about (it has no device and no site); empty otherwise.
    model: Mapped[str | None] = mapped_column(String(64))
    # A device ticket grouped under a site ticket, which is the one worked. A fleet ticket
    # links its device tickets without becoming their parent: each is still worked.
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    contract_id: Mapped[int | None] = mapped_column(ForeignKey("contracts.id"))
    priority: Mapped[str] = enum_column(Priority)
    category: Mapped[str] = enum_column(Category)
    state: Mapped[str] = enum_column(TicketState, default=TicketState.OPEN.value)
    source: Mapped[str] = enum_column(TicketSource)
    # What identifies "the same fault" of a device, e.g. "event:E042" or "anomaly:motor_current".
    signature: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(10_000), default="")
    # The latest evidence and a bounded list of earlier pieces; every piece is also an event.
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    evidence_count: Mapped[int] = mapped_column(Integer, default=1)
    first_seen_at: Mapped[datetime | None]
    last_seen_at: Mapped[datetime | None]
    peak_score: Mapped[float | None] = mapped_column(Float)
    assigned_to_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Service-level deadlines, set when the ticket is opened; the restore deadline
    # moves out by each pause of the restore clock.
    respond_by: Mapped[datetime | None]
    diagnose_by: Mapped[datetime | None]
    restore_by: Mapped[datetime | None]
    # When each service level was met, for SLA compliance and MTTR reports.
    responded_at: Mapped[datetime | None]
    diagnosed_at: Mapped[datetime | None]
    restored_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    # Service time each milestone took (minutes on the contract's calendar; restore without
    # pauses), kept when it is met so reports aggregate them in SQL.
    respond_minutes: Mapped[float | None] = mapped_column(Float)
    diagnose_minutes: Mapped[float | None] = mapped_column(Float)
    restore_minutes: Mapped[float | None] = mapped_column(Float)
    # Set while the restore clock is paused (waiting on the customer or on parts).
    paused_at: Mapped[datetime | None]
    pause_reason: Mapped[str | None] = enum_column(PauseReason)
    # What the guards of the transitions require.
    diagnosis_note: Mapped[str | None] = mapped_column(String(4000))
    verification_result: Mapped[str | None] = mapped_column(String(4000))
    cancel_reason: Mapped[str | None] = mapped_column(String(1000))
    # Reopened after closing: counts against first-time fix.
    reopen_count: Mapped[int] = mapped_column(SmallInteger, default=0)
    satisfaction_score: Mapped[int | None] = mapped_column(
        SmallInteger, info={"rule": in_range(1, 5, whole=True)})
    satisfaction_comment: Mapped[str | None] = mapped_column(String(2000))
    signed_off_at: Mapped[datetime | None]
    signed_off_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # Figures the service-quality report reads from every ticket of a period, kept on the row
    # so it neither joins the surveys nor parses the evidence per ticket (see migration 0011):
    # whether a satisfaction survey was issued (triggers on satisfaction_surveys keep it), and
    # the lead time in hours the first kept evidence piece gave (generated from ``evidence``).
    surveyed: Mapped[bool] = mapped_column(default=False, server_default=false())
    lead_hours: Mapped[float | None] = mapped_column(Float, Computed(lead_hours_of_evidence()))

    device: Mapped[Device | None] = relationship()
    site: Mapped[Site | None] = relationship()
    contract: Mapped[Contract | None] = relationship()
    parent: Mapped[Ticket | None] = relationship(remote_side=lambda: [Ticket.id])
    assigned_to: Mapped[User | None] = relationship(foreign_keys=lambda: [Ticket.assigned_to_id])
    signed_off_by: Mapped[User | None] = relationship(
        foreign_keys=lambda: [Ticket.signed_off_by_id]
    )
    events: Mapped[list[TicketEvent]] = relationship(
        back_populates="ticket", order_by=lambda: [TicketEvent.at, TicketEvent.id]
    )
    pauses: Mapped[list[TicketPause]] = relationship(
        order_by=lambda: [TicketPause.started_at, TicketPause.id]
    )

    @property
    def is_open(self) -> bool:
        return TicketState(self.state) not in FINAL_TICKET_STATES

    @property
    def device_model(self) -> str | None:
        """The device model the ticket is about: its device's, or a fleet ticket's own."""
        return self.device.model if self.device is not None else self.model


class TicketEvent(Base):
    """One entry of a ticket's history: a transition, a comment, evidence, an assignment..."""

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


class TicketPause(Base):
    """A stretch of time the restore clock stood still, and why."""

    __tablename__ = "ticket_pauses"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    reason: Mapped[str] = enum_column(PauseReason)
    note: Mapped[str] = mapped_column(String(1000), default="")
    actor: Mapped[str] = mapped_column(String(128))


class TicketAlert(Base):
    """A milestone of a ticket found at risk or breached, and how far its escalation has gone.

    One row per ticket, milestone and state, so the watchdog raising it again is a no-op.
    """

    __tablename__ = "ticket_alerts"
    __table_args__ = (UniqueConstraint("ticket_id", "milestone", "state"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    milestone: Mapped[str] = enum_column(Milestone)
    state: Mapped[str] = enum_column(AlertState)
    raised_at: Mapped[datetime]
    # The next escalation step to take, and when; steps past the chain repeat its last one.
    next_step: Mapped[int] = mapped_column(Integer, default=0)
    next_step_at: Mapped[datetime] = mapped_column(index=True)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(128))

    ticket: Mapped[Ticket] = relationship()


class Notification(Base):
    """A message the desk must deliver: written in the transaction that decided it (an outbox).

    ``key`` is unique per escalation step and recipient, so a step is never queued
    twice; receivers get it too (webhook header, e-mail Message-ID) to drop a
    redelivery after a crash between sending and recording.
    """

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    channel: Mapped[str] = enum_column(Channel)
    recipient: Mapped[str] = mapped_column(String(500))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(String(10_000))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = enum_column(NotificationStatus, default=NotificationStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(1000))


class SatisfactionSurvey(Base):
    """The customer's survey on a closed ticket: a single-use link that expires.

    Only a hash of the link's token is kept, so the table cannot answer on anyone's
    behalf; the answer itself is on the ticket (``satisfaction_score``/``_comment``).
    """

    __tablename__ = "satisfaction_surveys"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), unique=True)
    # SHA-256 of the token, hex.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    issued_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]

    ticket: Mapped[Ticket] = relationship()


class TicketPart(Base):
    """A spare part used on a ticket: part number and quantity, for the service voucher."""

    __tablename__ = "ticket_parts"
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    part_number: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(String(200), default="")
    quantity: Mapped[int] = mapped_column(Integer)
    recorded_at: Mapped[datetime]
    recorded_by: Mapped[str] = mapped_column(String(128))


class ServiceReport(Base):
    """The service voucher of a ticket as issued: the HTML and its PDF, kept with the ticket.

    Issuing again (after a correction) adds a version; an issued voucher never changes.
    """

    __tablename__ = "service_reports"
    __table_args__ = (UniqueConstraint("ticket_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    issued_at: Mapped[datetime]
    issued_by: Mapped[str] = mapped_column(String(128))
    html: Mapped[str] = mapped_column(String(500_000))
    pdf: Mapped[bytes | None] = mapped_column(LargeBinary)
    # SHA-256 of the HTML, printed on the voucher, so a copy can be checked against the record.
    digest: Mapped[str] = mapped_column(String(64))
