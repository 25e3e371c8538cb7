"""The maintenance job: due dates, tickets a lead time ahead, escalation of overdue work.

``register`` adds it to an APScheduler scheduler next to the desk's jobs. The
latest usage-hours readings come from a callable (by default the telemetry
store's ``latest``), read before the transaction opens so a slow store never
holds database locks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from apscheduler.schedulers.base import BaseScheduler
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from vigil.db.session import transaction
from vigil.devices.models import Device
from vigil.maintenance.models import MaintenancePlan
from vigil.maintenance.rules import Usage
from vigil.maintenance.service import RefreshReport, refresh
from vigil.telemetry.store import TelemetryStore
from vigil.tickets.priority import TicketRules

log = logging.getLogger(__name__)

# The telemetry metric holding a device's usage-hours counter.
USAGE_METRIC = "usage_hours"

UsageSource = Callable[[Sequence[str]], Mapping[str, Usage]]


def usage_from_store(store: TelemetryStore, metric: str = USAGE_METRIC) -> UsageSource:
    """Latest usage-hours readings of the given devices from a telemetry store."""

    def read(devices: Sequence[str]) -> dict[str, Usage]:
        if not devices:
            return {}
        frame = store.latest(list(devices))
        if metric not in frame.columns:
            return {}
        readings: dict[str, Usage] = {}
        for device, row in frame.iterrows():
            value, at = row[metric], row["time"]
            if value == value and at is not None:  # NaN: the device never reported it
                readings[str(device)] = Usage(float(value), at.to_pydatetime())
        return readings

    return read


def _usage_plan_devices(session: Session) -> list[str]:
    plans = list(session.scalars(select(MaintenancePlan).where(
        MaintenancePlan.active.is_(True), MaintenancePlan.interval_usage_hours.is_not(None))))
    ids = {p.device_id for p in plans if p.device_id}
    models = {p.device_model for p in plans if p.device_model}
    if models:
        ids |= set(session.scalars(select(Device.id).where(Device.model.in_(models))))
    return sorted(ids)


def plan_usage(session: Session, source: UsageSource | None) -> Mapping[str, Usage]:
    """The latest usage hours of the devices whose plans count them."""
    if source is None:
        return {}
    return source(_usage_plan_devices(session))


def maintenance_job(factory: sessionmaker[Session], ticket_rules: TicketRules,
                    usage_source: UsageSource | None = None,
                    clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> RefreshReport:
    usage: Mapping[str, Usage] = {}
    if usage_source is not None:
        with factory() as session:
            devices = _usage_plan_devices(session)
        usage = usage_source(devices)
    with transaction(factory) as session:
        report = refresh(session, now=clock(), ticket_rules=ticket_rules, usage=usage)
    log.info("maintenance: %d plan devices checked, %d tickets opened, %d escalated",
             report.checked, report.tickets_opened, report.escalated)
    return report


def register(scheduler: BaseScheduler, factory: sessionmaker[Session],
             ticket_rules: TicketRules, usage_source: UsageSource | None = None,
             interval_s: float = 3600.0) -> None:
    """Add the maintenance job; hourly is plenty for due dates counted in days."""
    scheduler.add_job(maintenance_job, "interval", seconds=interval_s,
                      args=(factory, ticket_rules, usage_source), id="maintenance.plans",
                      max_instances=1, coalesce=True, replace_existing=True)
