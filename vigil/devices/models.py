"""Tables of the device registry."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from edge_agent.protocol import validate_device_id
from vigil.db.base import Base, BigId, enum_column, in_range, storable_text, timezone_name, utcnow
from vigil.db.enums import DeviceState, Severity

# Dead letters keep the start of a payload only: enough to diagnose, bounded in size.
DEAD_LETTER_PAYLOAD_CHARS = 4096
DEAD_LETTER_TOPIC_CHARS = 256
DEAD_LETTER_REASON_CHARS = 1000


class Customer(Base):
    """A hospital or hospital group under service; its users see only its own sites."""

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    sites: Mapped[list[Site]] = relationship(back_populates="customer")


class Site(Base):
    """A place where devices are installed: a hospital or one of its buildings."""

    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    address: Mapped[str | None] = mapped_column(String(500))
    # Service calendars (business hours, holidays) are read in the site's own time zone.
    timezone: Mapped[str] = mapped_column(String(64), default="UTC",
                                          info={"rule": timezone_name})
    region: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    customer: Mapped[Customer] = relationship(back_populates="sites")
    devices: Mapped[list[Device]] = relationship(back_populates="site")


class Device(Base):
    """An installed device, keyed by the id it uses on MQTT.

    ``online``, ``state``, ``last_seen`` and ``status_detail`` are kept by
    ingest from the device's status topic; the rest is the registry.
    """

    __tablename__ = "devices"
    __table_args__ = (
        # The health list's orders and cursors (most recently seen, most at risk): with them
        # a page is read in index order instead of sorting the fleet (1.3 ms for 5,000
        # devices by last_seen, 9.5 ms by the newest prediction's risk, on SQLite).
        Index("ix_devices_last_seen_id", "last_seen", "id"),
        Index("ix_devices_risk_id", "risk", "id"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True,
                                    info={"rule": validate_device_id})
    serial: Mapped[str] = mapped_column(String(64), unique=True)
    model: Mapped[str] = mapped_column(String(64), index=True)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"), index=True)
    install_date: Mapped[date | None]
    warranty_end: Mapped[date | None]
    firmware: Mapped[str | None] = mapped_column(String(64))
    # The Unique Device Identifier (EU MDR / FDA UDI) as its label prints it (human-readable
    # form), where the manufacturer assigned one.
    udi: Mapped[str | None] = mapped_column(String(255))
    # A hash of the device's MQTT credential, never the credential itself.
    credential_hash: Mapped[str | None] = mapped_column(String(255))
    online: Mapped[bool] = mapped_column(default=False)
    state: Mapped[str | None] = enum_column(DeviceState)
    last_seen: Mapped[datetime | None]
    status_detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The newest prediction (latest made_at, then id): its risk and horizon, and which it is.
    # Kept by triggers on predictions (migration 0008) in the transaction that writes them;
    # never written from here.
    risk: Mapped[float | None] = mapped_column(Float)
    risk_horizon_days: Mapped[float | None] = mapped_column(Float)
    risk_made_at: Mapped[datetime | None]
    risk_prediction_id: Mapped[int | None] = mapped_column(BigId)

    site: Mapped[Site | None] = relationship(back_populates="devices")


class DeviceEvent(Base):
    """A fault code a device raised on its events topic; (device, seq) makes redelivery harmless."""

    __tablename__ = "device_events"
    __table_args__ = (
        UniqueConstraint("device_id", "seq"),
        # The service desk's intake reads the events it has not handled yet.
        Index("ix_device_events_unhandled", "id", sqlite_where=sql_text("handled_at IS NULL"),
              postgresql_where=sql_text("handled_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    seq: Mapped[int] = mapped_column(BigInteger)
    ts: Mapped[datetime] = mapped_column(index=True)
    code: Mapped[str] = mapped_column(String(128))
    severity: Mapped[str] = enum_column(Severity)
    text: Mapped[str] = mapped_column(String(1000), default="")
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Set by the service desk when it has looked at the event, with the ticket it filed or joined.
    handled_at: Mapped[datetime | None]
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))


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


class Prediction(Base):
    """A failure prediction for a device: remaining useful life and probability within a horizon."""

    __tablename__ = "predictions"
    __table_args__ = (
        Index("ix_predictions_device_made_at", "device_id", "made_at"),
        # The ticket rules read the predictions they have not considered yet.
        Index("ix_predictions_unhandled", "made_at", sqlite_where=sql_text("handled_at IS NULL"),
              postgresql_where=sql_text("handled_at IS NULL")),
        CheckConstraint("probability >= 0 AND probability <= 1", name="probability_range"),
        CheckConstraint("horizon_days > 0", name="horizon_days_positive"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    made_at: Mapped[datetime] = mapped_column(default=utcnow)
    horizon_days: Mapped[float] = mapped_column(Float)
    rul_days: Mapped[float | None] = mapped_column(Float)
    probability: Mapped[float] = mapped_column(Float, info={"rule": in_range(0, 1)})
    rul_lower_days: Mapped[float | None] = mapped_column(Float)
    rul_upper_days: Mapped[float | None] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String(64))
    # What pushed the prediction: metric -> contribution, for the engineer to read.
    drivers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The likely fault (a failure code or ticket signature the model learned from), if any.
    fault_type: Mapped[str | None] = mapped_column(String(128))
    # What the prediction rests on: e.g. how many failures of the device's model the model
    # saw, and whether its band is the model's own or the fleet's pooled one.
    basis: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Set by the ticket rules when they have considered the prediction, with the ticket it
    # filed or joined, if any.
    handled_at: Mapped[datetime | None]
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
