"""Failure prediction as jobs: training through the registry, and a pass that fills ``predictions``.

The I/O around :mod:`analytics.prediction.lives` and :mod:`analytics.prediction.failure`:

- **Labels from what happened.** A failure is a device's error or critical fault code
  (``device_events``) or a device ticket confirmed as a real fault: not cancelled, not a
  maintenance plan's nor the analytics' (a warning is dated before the failure it foresaw),
  and repaired or restored (or closed or resolved remotely). It is dated
  when it was first seen. A code and the ticket it raised are one failure, named by the code.
  A repair (a ticket's first transition to ``repaired``, or to ``verified``, ``closed`` or
  ``resolved_remotely`` without it, as scoring counts them) starts a new life.
- **Readings** are resampled to the device model's scoring step (``jobs.scoring.step_s``), as
  the scoring and retraining jobs read them.
- **Training** (:func:`train_predictor`) reads and fits outside any write transaction;
  :func:`register_predictor` stores the candidate as ``failure:fleet`` and promotes it only
  if its cross-validated Brier score is at least as good as the promoted version's (measured
  again on the rows it never saw, when there are enough).
- **The prediction pass** (:func:`assess_fleet`, then :func:`write_predictions`) scores each
  device's latest window with the promoted model and adds one ``predictions`` row per device
  and pass; a pass repeated at the same time writes nothing new.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.orm import Session, aliased

from analytics.jobs import registry
from analytics.jobs.retrain import Outcome
from analytics.jobs.scoring import REPAIR_STATES, align_down
from analytics.prediction.catalogue import shipped_catalogue
from analytics.prediction.failure import (
    Assessment,
    FailurePredictor,
    PredictorSettings,
    fit_predictor,
    horizon_outcome,
)
from analytics.prediction.lives import (
    Failure,
    RowSettings,
    current_life,
    device_rows,
    life_rows,
    lives,
    merge_failures,
)
from analytics.prediction.metrics import brier_score
from vigil.config import JobsSettings, PredictionSettings, ScoringSettings
from vigil.db.enums import Severity, TicketEventKind, TicketScope, TicketSource, TicketState
from vigil.devices.models import Device, DeviceEvent, Prediction
from vigil.scoring.models import ModelVersion
from vigil.telemetry.store import TelemetryStore
from vigil.tickets.models import Ticket, TicketEvent

NAME = "failure:fleet"
KIND = "failure_prediction"
FAILURE_SEVERITIES = (Severity.ERROR.value, Severity.CRITICAL.value)
# Tickets that do not date a failure: planned work, and the analytics' own warnings, opened
# days before the failure they foresaw (as a label they would end the life at the warning).
NOT_FAILURES = (TicketSource.MAINTENANCE_PLAN.value, TicketSource.ANALYTICS.value)
MIN_DEVICES = 4
MIN_FAILURES = 2
# Unseen rows needed to measure the promoted version again (with at least one failure).
MIN_UNSEEN_ROWS = 50
# Failures this long before the data read still count: their repair may start the first life.
BEFORE = timedelta(days=30)


def row_settings(s: PredictionSettings) -> RowSettings:
    return RowSettings(baseline_days=s.baseline_days, baseline_lag_days=s.baseline_lag_days,
                       window_days=s.window_days, noise_window_days=s.noise_window_days,
                       row_every_days=s.row_every_days)


def predictor_settings(s: PredictionSettings) -> PredictorSettings:
    return PredictorSettings(horizon_days=s.horizon_days, cap_days=s.cap_days,
                             coverage=s.coverage, min_failures=s.min_failures)


# -- what happened ------------------------------------------------------------------------------


def failures(session: Session, *, device_ids: Sequence[str], start: datetime, end: datetime
             ) -> list[Failure]:
    """Confirmed failures of the devices between ``start`` and ``end``, one per episode."""
    found: list[Failure] = []
    events = session.execute(select(DeviceEvent.device_id, DeviceEvent.ts, DeviceEvent.code).where(
        DeviceEvent.device_id.in_(device_ids), DeviceEvent.severity.in_(FAILURE_SEVERITIES),
        DeviceEvent.ts >= start, DeviceEvent.ts < end))
    found += [Failure(str(d), ts, str(code)) for d, ts, code in events]
    seen = func.coalesce(Ticket.first_seen_at, Ticket.created_at)
    confirmed = or_(Ticket.state.in_([s.value for s in REPAIR_STATES]),
                    Ticket.restored_at.is_not(None))
    tickets = session.execute(select(Ticket.device_id, seen, Ticket.signature).where(
        Ticket.scope == TicketScope.DEVICE.value, Ticket.device_id.in_(device_ids),
        Ticket.state != TicketState.CANCELLED.value,
        Ticket.source.not_in(NOT_FAILURES), confirmed, seen >= start, seen < end))
    found += [Failure(str(d), at, str(signature)) for d, at, signature in tickets]
    return merge_failures(found)


def repairs(session: Session, *, device_ids: Sequence[str]) -> dict[str, list[datetime]]:
    """Per device, when each of its tickets first reached a repair state."""
    first = (
        select(Ticket.device_id, func.min(TicketEvent.at))
        .join(Ticket, Ticket.id == TicketEvent.ticket_id)
        .where(Ticket.device_id.in_(device_ids),
               TicketEvent.kind == TicketEventKind.TRANSITION.value,
               TicketEvent.to_state.in_([s.value for s in REPAIR_STATES]))
        .group_by(Ticket.id, Ticket.device_id)
    )
    out: dict[str, list[datetime]] = {}
    for device_id, at in session.execute(first):
        out.setdefault(str(device_id), []).append(at)
    return out


def read_steps(store: TelemetryStore, device: Device, *, start: datetime, end: datetime,
               scoring: ScoringSettings) -> pd.DataFrame:
    """The device's readings as means over its model's scoring step."""
    step = timedelta(seconds=scoring.step_for(device.model))
    return store.query(device.id, start, end, interval=step, measurement=scoring.measurement)


# -- training -----------------------------------------------------------------------------------


def training_rows(session: Session, *, store: TelemetryStore, now: datetime,
                  settings: JobsSettings) -> pd.DataFrame:
    """Run-to-failure rows of every device over the last ``prediction.train_days``."""
    start = now - timedelta(days=settings.prediction.train_days)
    devices = list(session.scalars(select(Device).order_by(Device.id)))
    ids = [d.id for d in devices]
    failed = failures(session, device_ids=ids, start=start - BEFORE, end=now)
    fixed = repairs(session, device_ids=ids)
    cut = row_settings(settings.prediction)
    parts = []
    for device in devices:
        frame = read_steps(store, device, start=start, end=now, scoring=settings.scoring)
        if frame.empty:
            continue
        step = timedelta(seconds=settings.scoring.step_for(device.model))
        seen_until = min(now, frame.index[-1].to_pydatetime() + step)
        device_lives = lives(device.id, device.model, start=frame.index[0].to_pydatetime(),
                             end=seen_until, failures=failed, repairs=fixed.get(device.id, []))
        rows = device_rows(frame, device_lives, step=step, settings=cut)
        if not rows.empty:
            parts.append(rows)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


@dataclass(frozen=True)
class Candidate:
    """A trained, cross-validated predictor not registered yet, with the rows it learned from."""

    trained: registry.Trained
    rows: pd.DataFrame


def train_predictor(session: Session, *, store: TelemetryStore, now: datetime,
                    settings: JobsSettings) -> Candidate | Outcome:
    """Read the fleet's history and fit: the slow part, which writes nothing."""
    rows = training_rows(session, store=store, now=now, settings=settings)
    if rows.empty or rows["device"].nunique() < MIN_DEVICES:
        return Outcome(NAME, None, False, "not enough devices with history")
    ends = rows.loc[rows["failed"].astype(bool), ["device", "life_end"]].drop_duplicates()
    if len(ends) < MIN_FAILURES:
        return Outcome(NAME, None, False, "not enough failures to learn from")
    predictor, figures = fit_predictor(rows, predictor_settings(settings.prediction),
                                       catalogue=shipped_catalogue())
    if not np.isfinite(figures["cv_brier"]):
        return Outcome(NAME, None, False, "no row with a known outcome")
    trained = registry.Trained(
        name=NAME, kind=KIND, params=predictor.to_params(), score=figures["cv_brier"],
        higher_is_better=False, metrics=figures,
        data_start=now - timedelta(days=settings.prediction.train_days), data_end=now)
    return Candidate(trained, rows)


def register_predictor(session: Session, *, candidate: Candidate, now: datetime) -> Outcome:
    """Register; promote if its Brier score is at least as good as the promoted version's."""
    rows = candidate.rows
    row = registry.register(session, trained=candidate.trained, now=now)
    horizon = float(candidate.trained.metrics["horizon_days"])

    def evaluate(current: ModelVersion) -> float:
        unseen = rows[pd.to_datetime(rows["time"], utc=True) >= pd.Timestamp(current.data_end)]
        outcome = horizon_outcome(unseen, horizon)
        decided = np.isfinite(outcome)
        if decided.sum() < MIN_UNSEEN_ROWS or not (outcome[decided] == 1).any():
            return current.score
        model = FailurePredictor.from_params(current.params)
        known = unseen[decided]
        probability = model.probability(known, model.predict_rul(known))
        return brier_score(outcome[decided], probability)

    promoted = registry.promote_if_better(session, candidate=row, now=now, evaluate=evaluate)
    return Outcome(row.name, row.version, promoted, metrics=dict(candidate.trained.metrics))


# -- the prediction pass ------------------------------------------------------------------------


@dataclass
class Assessed:
    """What a prediction pass computed, ready to write."""

    model_version: str
    items: list[tuple[str, Assessment]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)


def assessed_readings(store: TelemetryStore, device: Device, *, at: datetime,
                      settings: JobsSettings, failed: Sequence[Failure],
                      fixed: Sequence[datetime]) -> pd.DataFrame:
    """The readings an assessment at ``at`` looks at: the baseline days at the start of the
    device's current life (at most ``baseline_lag_days`` back) and the recent window.

    Not the month between them: reading the whole month took 0.22 s a device on the embedded
    store at 5-minute steps (three quarters of the prediction job); the two spans are a fifth
    of it. Where the month's first step holds no reading (a new device, a gap), or the
    spans meet, the month is read whole, as before, so the life starts where it did.
    """
    p = settings.prediction
    step = timedelta(seconds=settings.scoring.step_for(device.model))
    start = at - timedelta(days=p.baseline_lag_days)
    base_days = timedelta(days=p.baseline_days)
    recent = at - timedelta(days=p.reading_days)

    def read(a: datetime, b: datetime) -> pd.DataFrame:
        return read_steps(store, device, start=a, end=b, scoring=settings.scoring)

    first = read(start, start + step)
    life = current_life(lives(device.id, device.model, start=start, end=at, failures=failed,
                              repairs=fixed), now=at) if not first.empty else None
    # One step more than the baseline, so that its last step is a whole mean, as in the month.
    if life is None or life.start + base_days + step >= recent:
        return read(start, at)
    parts = [read(life.start, life.start + base_days + step), read(recent, at)]
    if life.start > start:
        parts.insert(0, first)  # where the month's data starts: the life is cut from it
    frame = pd.concat([part for part in parts if not part.empty])
    return frame[~frame.index.duplicated()].sort_index()


def assess_readings(frame: pd.DataFrame, device: Device, *, predictor: FailurePredictor,
                    at: datetime, settings: JobsSettings, failed: Sequence[Failure],
                    fixed: Sequence[datetime]) -> Assessment | str:
    """The device's assessment at ``at`` from its readings, or why there is none."""
    if frame.empty:
        return "no telemetry"
    device_lives = lives(device.id, device.model, start=frame.index[0].to_pydatetime(), end=at,
                         failures=failed, repairs=fixed)
    life = current_life(device_lives, now=at)
    if life is None:
        return "failed, awaiting repair"
    step = timedelta(seconds=settings.scoring.step_for(device.model))
    rows = life_rows(frame, life, step=step, settings=row_settings(settings.prediction),
                     at=[at])
    if rows.empty:
        return "too little telemetry since the data or the life started"
    return predictor.assess(rows)[0]


def assessed_at(device: Device, *, now: datetime, settings: JobsSettings) -> datetime:
    """The start of the device's last complete step at ``now``: where an assessment stands."""
    step_s = settings.scoring.step_for(device.model)
    return datetime.fromtimestamp(
        align_down(int(now.timestamp() * 1000), step_s * 1000) / 1000, tz=now.tzinfo)


def assess_device(store: TelemetryStore, device: Device, *, predictor: FailurePredictor,
                  now: datetime, settings: JobsSettings, failed: Sequence[Failure],
                  fixed: Sequence[datetime]) -> Assessment | str:
    """The device's assessment at its last complete step, or why there is none."""
    at = assessed_at(device, now=now, settings=settings)
    frame = assessed_readings(store, device, at=at, settings=settings, failed=failed,
                              fixed=fixed)
    return assess_readings(frame, device, predictor=predictor, at=at, settings=settings,
                           failed=failed, fixed=fixed)


def assess_fleet(session: Session, *, store: TelemetryStore, now: datetime,
                 settings: JobsSettings) -> Assessed | None:
    """Each device's assessment by the promoted predictor (None without one); reads only."""
    row = registry.promoted(session, name=NAME)
    if row is None:
        return None
    predictor = registry.load(row)
    out = Assessed(model_version=f"{NAME} v{row.version}")
    devices = list(session.scalars(select(Device).order_by(Device.id)))
    ids = [d.id for d in devices]
    lag = timedelta(days=settings.prediction.baseline_lag_days)
    failed = failures(session, device_ids=ids, start=now - lag - BEFORE, end=now)
    fixed = repairs(session, device_ids=ids)
    for device in devices:
        result = assess_device(store, device, predictor=predictor, now=now, settings=settings,
                               failed=failed, fixed=fixed.get(device.id, []))
        if isinstance(result, str):
            out.skipped[result] = out.skipped.get(result, 0) + 1
        else:
            out.items.append((device.id, result))
    return out


def write_predictions(session: Session, *, assessed: Assessed | None, now: datetime
                      ) -> dict[str, Any]:
    """One ``predictions`` row per assessed device made at ``now``; none twice for one pass."""
    if assessed is None:
        return {"predictions": 0, "reason": "no promoted failure predictor"}
    done = set(session.scalars(select(Prediction.device_id).where(and_(
        Prediction.made_at == now, Prediction.model_version == assessed.model_version))))
    written = 0
    for device_id, a in assessed.items:
        if device_id in done:
            continue
        session.add(Prediction(
            device_id=device_id, made_at=now, horizon_days=a.horizon_days, rul_days=a.rul_days,
            probability=min(1.0, max(0.0, a.probability)), rul_lower_days=a.rul_lower_days,
            rul_upper_days=a.rul_upper_days, model_version=assessed.model_version,
            drivers=a.drivers, fault_type=a.fault_type, basis=a.basis))
        written += 1
    session.flush()
    return {"predictions": written, "model_version": assessed.model_version,
            "skipped": dict(assessed.skipped)}


def purge_predictions(session: Session, *, now: datetime, keep: timedelta) -> int:
    """Remove predictions made before ``now - keep``, keeping each device's newest."""
    latest = aliased(Prediction)
    newest = (select(func.max(latest.made_at)).where(latest.device_id == Prediction.device_id)
              .scalar_subquery())
    removed = session.execute(delete(Prediction).where(Prediction.made_at < now - keep,
                                                       Prediction.made_at < newest))
    return int(getattr(removed, "rowcount", 0) or 0)
