"""Tables of preventive-maintenance and calibration plans."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Float, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from vigil.db.base import Base, enum_column
from vigil.db.enums import MaintenanceKind
from vigil.devices.models import Device


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

