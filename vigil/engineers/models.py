"""Tables of engineers and their qualifications."""

from __future__ import annotations

from datetime import date, time
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from vigil.db.base import Base, timezone_name
from vigil.users.models import User


class Engineer(Base):
    """A user who services devices, with a home region and a working calendar."""

    __tablename__ = "engineers"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    region: Mapped[str | None] = mapped_column(String(64), index=True)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC",
                                          info={"rule": timezone_name})
    # Empty hours: on duty around the clock on working days (an on-call engineer).
    hours_start: Mapped[time | None]
    hours_end: Mapped[time | None]
    workdays: Mapped[list[Any]] = mapped_column(default=lambda: [0, 1, 2, 3, 4])
    # Local dates away (leave, training), as ISO text.
    days_off: Mapped[list[Any]] = mapped_column(default=list)
    active: Mapped[bool] = mapped_column(default=True)

    user: Mapped[User] = relationship()
    qualifications: Mapped[list[Qualification]] = relationship(back_populates="engineer")


class Qualification(Base):
    """Trained and assessed on a device model, until the assessment expires."""

    __tablename__ = "qualifications"
    __table_args__ = (UniqueConstraint("engineer_id", "device_model"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    engineer_id: Mapped[int] = mapped_column(ForeignKey("engineers.id"), index=True)
    device_model: Mapped[str] = mapped_column(String(64), index=True)
    qualified_on: Mapped[date]
    expires_on: Mapped[date]

    engineer: Mapped[Engineer] = relationship(back_populates="qualifications")
