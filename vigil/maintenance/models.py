"""Tables of preventive-maintenance and calibration plans, their due dates and their records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from vigil.db.base import Base, enum_column, utcnow
from vigil.db.enums import MaintenanceKind
from vigil.devices.models import Device


class MaintenancePlan(Base):
    """Preventive or calibration work due by calendar or usage, for one device or a whole model.

    ``last_done_at`` is the baseline the first due date counts from (when the work
    was last done before Vigil tracked it; empty: the device's installation, or
    when the plan first covered the device). ``next_due_at`` is the earliest due
    date over the plan's devices, for listing; each device's own is a ``MaintenanceDue``.
    ``tolerances`` maps a measured quantity to its limits:
    ``{"flow_error_pct": {"nominal": 0, "low": -5, "high": 5, "unit": "%"}}``.
    """

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
        CheckConstraint("lead_days >= 0", name="lead_days_not_negative"),
        CheckConstraint("grace_days >= 0", name="grace_days_not_negative"),
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
    # The ticket opens this many days before the work falls due.
    lead_days: Mapped[int] = mapped_column(Integer, default=14)
    # Past due by this many days, the work is escalated.
    grace_days: Mapped[int] = mapped_column(Integer, default=0)
    procedure: Mapped[str] = mapped_column(String(4000), default="")
    tolerances: Mapped[dict[str, Any]] = mapped_column(default=dict)

    device: Mapped[Device | None] = relationship()


class MaintenanceDue(Base):
    """Where one device stands on one plan: last done, next due, the ticket opened for it."""

    __tablename__ = "maintenance_dues"
    __table_args__ = (UniqueConstraint("plan_id", "device_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("maintenance_plans.id"), index=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), index=True)
    last_done_at: Mapped[datetime]
    # The usage-hours reading when it was last done (empty: not known).
    last_usage_hours: Mapped[float | None] = mapped_column(Float)
    # When that reading was taken: the work, or the first reading of a device whose counter at
    # the work is unknown. The rate of use is counted from it (empty: from ``last_done_at``).
    last_usage_at: Mapped[datetime | None]
    next_due_at: Mapped[datetime | None] = mapped_column(index=True)
    # The reading at which usage makes it due (empty: the plan has no usage interval).
    due_usage_hours: Mapped[float | None] = mapped_column(Float)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    escalated_at: Mapped[datetime | None]

    plan: Mapped[MaintenancePlan] = relationship()
    device: Mapped[Device] = relationship()


class MaintenanceRecord(Base):
    """Work done on a plan: who, when, the results, and each measured value against its limits.

    ``measurements`` is a list of ``{"name", "value", "low", "high", "nominal", "unit",
    "within"}``; ``passed`` is false when any value was outside its tolerance.
    """

    __tablename__ = "maintenance_records"

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("maintenance_plans.id"), index=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), index=True)
    kind: Mapped[str] = enum_column(MaintenanceKind)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    # The due date this work answered, for on-time completion.
    due_at: Mapped[datetime | None] = mapped_column(index=True)
    performed_at: Mapped[datetime] = mapped_column(index=True)
    performed_by: Mapped[str] = mapped_column(String(128))
    engineer_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    usage_hours: Mapped[float | None] = mapped_column(Float)
    results: Mapped[str] = mapped_column(String(4000), default="")
    measurements: Mapped[list[Any]] = mapped_column(default=list)
    passed: Mapped[bool] = mapped_column(default=True)
    corrective_ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    next_due_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    plan: Mapped[MaintenancePlan] = relationship()
