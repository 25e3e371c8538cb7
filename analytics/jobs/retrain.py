"""Retraining the multivariate detector of each device model, through the model registry.

Healthy history only: each device's readings, resampled to its model's
scoring step, minus the time around its tickets for real faults (from
``FAULT_LEAD`` before a ticket opened, while the device was degrading, until
the ticket was restored or closed; a ticket cancelled as a false alarm does
not count) and its maintenance (:func:`unhealthy_periods`). The detector rates
windows of steps, cut where history is cut, so no window joins the two sides
of a fault or a visit. Cross-validation holds out whole devices (folds grouped by
device), since the detector must serve devices it never saw. The figure
compared for promotion is the calibration error on held-out devices: how far
the share of healthy rows flagged is from the share the threshold promises
(``1 - threshold``). A model that flags too much buries engineers in tickets;
one that flags nothing scores badly too, so neither wins by default. The
promoted model is measured again on the history that came after its own
training period, when there is enough of it.

Training reads and computes for a while (seconds to minutes per model), so the
job trains outside any write transaction (:func:`train_all`) and only
registers in one (:func:`register_all`): on SQLite a write transaction blocks
every other writer, ingest's included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from analytics.jobs import detector as adapter
from analytics.jobs import registry
from vigil.config import ScoringSettings
from vigil.db.enums import DeviceState, TicketScope, TicketSource, TicketState
from vigil.devices.models import Device
from vigil.maintenance.models import MaintenanceRecord
from vigil.scoring.models import ModelVersion
from vigil.telemetry.store import TelemetryStore
from vigil.tickets.models import Ticket

FAULT_LEAD = timedelta(days=14)
# A maintenance record says when the work was recorded, not how long the visit took (the
# simulator's preventive visits and repairs last 1 to 4 h).
MAINTENANCE_MARGIN = timedelta(hours=12)
OUT_OF_TOLERANCE = ":out_of_tolerance"  # a plan's corrective ticket: a fault, not planned work
MIN_DEVICES = 2
MIN_ROWS = 200


@dataclass(frozen=True)
class Outcome:
    name: str
    version: int | None
    promoted: bool
    reason: str = ""
    metrics: dict[str, Any] | None = None


def unhealthy_periods(
    session: Session, *, device_ids: Sequence[str], end: datetime
) -> dict[str, list[tuple[datetime, datetime]]]:
    """Per device, the periods that are not healthy history: its faults and its maintenance.

    A device ticket (not cancelled) cuts from ``FAULT_LEAD`` before it opened until
    restored or closed; a maintenance plan's ticket for due work cuts from its opening to
    its closing only (planned work, no fault to lead up to; an out-of-tolerance finding is
    a fault). Devices report maintenance on their status topic, but only the latest status
    is kept, so past visits are known from their records: ``MAINTENANCE_MARGIN`` either side
    of each record's time, and a device in maintenance now from its status onwards.
    """
    periods: dict[str, list[tuple[datetime, datetime]]] = {}
    tickets = session.scalars(select(Ticket).where(
        Ticket.scope == TicketScope.DEVICE.value, Ticket.device_id.in_(device_ids),
        Ticket.state != TicketState.CANCELLED.value))
    for ticket in tickets:
        opened = ticket.first_seen_at or ticket.created_at
        closed = ticket.restored_at or ticket.closed_at or end
        planned = (ticket.source == TicketSource.MAINTENANCE_PLAN.value
                   and not ticket.signature.endswith(OUT_OF_TOLERANCE))
        periods.setdefault(str(ticket.device_id), []).append(
            (opened if planned else opened - FAULT_LEAD, closed))
    records = session.execute(select(MaintenanceRecord.device_id, MaintenanceRecord.performed_at)
                              .where(MaintenanceRecord.device_id.in_(device_ids)))
    for device_id, performed in records:
        periods.setdefault(str(device_id), []).append(
            (performed - MAINTENANCE_MARGIN, performed + MAINTENANCE_MARGIN))
    in_maintenance = session.execute(select(Device.id, Device.status_detail).where(
        Device.id.in_(device_ids), Device.state == DeviceState.MAINTENANCE.value))
    for device_id, detail in in_maintenance:
        since_ms = (detail or {}).get("status_ts")
        since = (datetime.fromtimestamp(since_ms / 1000, UTC) if isinstance(since_ms, int)
                 else end - MAINTENANCE_MARGIN)
        periods.setdefault(str(device_id), []).append((since, end))
    return periods


def healthy_history(
    session: Session, *, store: TelemetryStore, model: str, start: datetime, end: datetime,
    settings: ScoringSettings,
) -> pd.DataFrame:
    """Healthy resampled readings of every device of ``model``, with a ``device`` column."""
    devices = list(session.scalars(select(Device.id).where(Device.model == model)))
    excluded = unhealthy_periods(session, device_ids=devices, end=end)
    step = timedelta(seconds=settings.step_for(model))
    frames = []
    for device_id in devices:
        frame = store.query(device_id, start, end, interval=step, measurement=settings.measurement)
        if frame.empty:
            continue
        keep = np.ones(len(frame), dtype=bool)
        for low, high in excluded.get(device_id, []):
            keep &= ~((frame.index >= low) & (frame.index < high))
        frame = frame[keep].assign(device=device_id)
        frames.append(frame)
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames).sort_index()


def healthy_flag_rate(model: Any, history: pd.DataFrame) -> float:
    """Share of the history's steps flagged, each rated by its device's window ending there;
    steps whose window shows a dead or stuck sensor are left out (a sensor fault is no
    healthy step, and the detector learns without them)."""
    flagged = adapter.multivariate_flags(model, history)
    kept = ~adapter.multivariate_sensor_faults(model, history)
    return float(np.mean(flagged[kept])) if kept.any() else 0.0


def cross_validate(history: pd.DataFrame, *, folds: int = 5) -> dict[str, Any]:
    """Held-out-device calibration of the multivariate detector."""
    devices = np.array(sorted(history["device"].unique()))
    folds = min(folds, len(devices))
    metrics = history.columns.drop("device")
    rates, errors = [], []
    for k in range(folds):
        held = set(devices[k::folds])
        test = history["device"].isin(held).to_numpy()
        model = adapter.new_multivariate().fit(history[~test])
        rate = healthy_flag_rate(model, history[test])
        rates.append(rate)
        errors.append(abs(rate - (1.0 - float(model.threshold))))
    return {"cv_calibration_error": float(np.mean(errors)),
            "cv_false_alarm_rate": float(np.mean(rates)), "folds": folds,
            "devices": len(devices), "rows": len(history), "metrics": list(metrics)}


def calibration_error(model: Any, history: pd.DataFrame) -> float:
    return abs(healthy_flag_rate(model, history) - (1.0 - float(model.threshold)))


@dataclass(frozen=True)
class Candidate:
    """A model trained and cross-validated, not yet registered, with the history it saw."""

    trained: registry.Trained
    history: pd.DataFrame


def train_candidate(
    session: Session, *, store: TelemetryStore, model: str, now: datetime, period: timedelta,
    settings: ScoringSettings,
) -> Candidate | Outcome:
    """Read healthy history, cross-validate and fit: the slow part, which writes nothing."""
    name = f"multivariate:{model}"
    start = now - period
    history = healthy_history(session, store=store, model=model, start=start, end=now,
                              settings=settings)
    if history.empty or history["device"].nunique() < MIN_DEVICES or len(history) < MIN_ROWS:
        return Outcome(name, None, False, "not enough healthy history")
    figures = cross_validate(history)
    fitted = adapter.new_multivariate().fit(history)
    trained = registry.Trained(
        name=name, kind="multivariate", params=registry.estimator_to_params(fitted),
        score=figures["cv_calibration_error"], higher_is_better=False, metrics=figures,
        data_start=start, data_end=now)
    return Candidate(trained, history)


def register_candidate(session: Session, *, candidate: Candidate, now: datetime) -> Outcome:
    """Register the candidate; promote it if at least as well calibrated as the current one."""
    history = candidate.history
    row = registry.register(session, trained=candidate.trained, now=now)

    def evaluate(current: ModelVersion) -> float:
        """The promoted model on the part of this history it never saw, if there is enough."""
        unseen = history[history.index >= current.data_end]
        if unseen["device"].nunique() < MIN_DEVICES or len(unseen) < MIN_ROWS:
            return current.score
        return calibration_error(registry.estimator_from_params(current.params), unseen)

    promoted = registry.promote_if_better(session, candidate=row, now=now, evaluate=evaluate)
    return Outcome(row.name, row.version, promoted, metrics=dict(candidate.trained.metrics))


def retrain_model(
    session: Session, *, store: TelemetryStore, model: str, now: datetime, period: timedelta,
    settings: ScoringSettings,
) -> Outcome:
    """Train, cross-validate, register and maybe promote, all on one session."""
    candidate = train_candidate(session, store=store, model=model, now=now, period=period,
                                settings=settings)
    if isinstance(candidate, Outcome):
        return candidate
    return register_candidate(session, candidate=candidate, now=now)


def train_all(
    session: Session, *, store: TelemetryStore, now: datetime, period: timedelta,
    settings: ScoringSettings,
) -> list[Candidate | Outcome]:
    """A candidate (or the reason for none) per device model; reads only."""
    models = sorted(set(session.scalars(select(Device.model))))
    return [train_candidate(session, store=store, model=model, now=now, period=period,
                            settings=settings) for model in models]


def register_all(
    session: Session, *, trained: list[Candidate | Outcome], now: datetime
) -> dict[str, Any]:
    """Register what :func:`train_all` produced; returns what happened to each, for the log."""
    out: dict[str, Any] = {}
    for item in trained:
        outcome = (item if isinstance(item, Outcome)
                   else register_candidate(session, candidate=item, now=now))
        out[outcome.name] = (
            f"v{outcome.version} {'promoted' if outcome.promoted else 'kept current'}"
            if outcome.version else outcome.reason)
    return out
