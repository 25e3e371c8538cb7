"""Tables of remote-diagnosis sessions and their transcripts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from vigil.db.base import Base, BigId, enum_column, utcnow
from vigil.db.enums import TranscriptKind
from vigil.devices.models import Device
from vigil.tickets.models import Ticket
from vigil.users.models import User


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

