"""Retraining the multivariate detector of each device model, through the model registry.

Healthy history only: each device's readings, resampled to its model's
scoring step, minus the time around its tickets for real faults (from
``FAULT_LEAD`` before a ticket opened, while the device was degrading, until
the ticket was restored or closed; a ticket cancelled as a false alarm does
not count). Cross-validation holds out whole devices (folds grouped by
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
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from analytics.jobs import detector as adapter
from analytics.jobs import registry
from vigil.config import ScoringSettings
from vigil.db.enums import TicketScope, TicketState
from vigil.devices.models import Device
from vigil.scoring.models import ModelVersion
from vigil.telemetry.store import TelemetryStore
from vigil.tickets.models import Ticket

FAULT_LEAD = timedelta(days=14)
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
    """Per device, the periods around its real-fault tickets."""
    periods: dict[str, list[tuple[datetime, datetime]]] = {}
    tickets = session.scalars(select(Ticket).where(
        Ticket.scope == TicketScope.DEVICE.value, Ticket.device_id.in_(device_ids),
        Ticket.state != TicketState.CANCELLED.value))
    for ticket in tickets:
        opened = ticket.first_seen_at or ticket.created_at
        closed = ticket.restored_at or ticket.closed_at or end
        periods.setdefault(str(ticket.device_id), []).append((opened - FAULT_LEAD, closed))
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


def cross_validate(history: pd.DataFrame, *, folds: int = 5) -> dict[str, Any]:
    """Held-out-device calibration of the multivariate detector."""
    devices = np.array(sorted(history["device"].unique()))
    folds = min(folds, len(devices))
    metrics = history.columns.drop("device")
    rates, errors = [], []
    for k in range(folds):
        held = set(devices[k::folds])
        test = history["device"].isin(held)
        model = adapter.new_multivariate().fit(history.loc[~test, metrics])
        flagged = adapter.multivariate_flags(model, history.loc[test, metrics])
        rate = float(np.mean(flagged))
        rates.append(rate)
        errors.append(abs(rate - (1.0 - float(model.threshold))))
    return {"cv_calibration_error": float(np.mean(errors)),
            "cv_false_alarm_rate": float(np.mean(rates)), "folds": folds,
            "devices": len(devices), "rows": len(history), "metrics": list(metrics)}


def calibration_error(model: Any, history: pd.DataFrame) -> float:
    frame = history.reindex(columns=list(history.columns.drop("device")))
    rate = float(np.mean(adapter.multivariate_flags(model, frame)))
    return abs(rate - (1.0 - float(model.threshold)))


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
    fitted = adapter.new_multivariate().fit(history[figures["metrics"]])
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
