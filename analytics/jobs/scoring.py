"""Streaming scoring of one device: telemetry after its watermark, resampled, scored, saved.

Per pass and device, in the caller's transaction:

1. steps of the device model's fixed length (``jobs.scoring.step_s``) are read
   from the telemetry store as means, from the watermark up to the last step
   that ended ``settle_s`` before now (later steps may still be filling);
2. each metric's detector (restored from the saved state) scores the steps in
   order;
3. the scores go to the telemetry store as measurement ``scores`` (one field
   per metric, same timestamps, and ``multivariate`` for the device model's
   promoted multivariate detector) for the console and for the evidence of a
   ticket; scores at or above the detector's alarm level also become
   :class:`AnomalyAlarm` rows, which the ticket rules read;
4. the detector states and the new watermark are saved in the same SQL
   transaction as the alarms.

Nothing before the watermark is scored again: a replayed or late sample for a
step already scored is left out (the store keeps it; the score stands). If the
transaction fails after step 3, the same states score the same steps again and
write the same points, which overwrite themselves in the store.

The watermark moves only over steps that had data, so telemetry a device
delivers late after an outage (its outbox replays in order) is still scored.

A device whose ticket reached ``repaired`` (or was closed or resolved remotely
without that step) since its detectors' baseline started gets fresh detectors:
after a repair the old normal no longer applies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from analytics.jobs import detector as adapter
from vigil.config import ScoringSettings
from vigil.db.enums import TicketEventKind, TicketState
from vigil.devices.models import Device
from vigil.scoring.models import AnomalyAlarm, StreamState
from vigil.telemetry.store import Point, TelemetryStore
from vigil.tickets.models import Ticket, TicketEvent

MULTIVARIATE = "multivariate"  # the field of the multivariate detector's score
REPAIR_STATES = (TicketState.REPAIRED, TicketState.VERIFIED, TicketState.CLOSED,
                 TicketState.RESOLVED_REMOTELY)
# With no watermark yet, scoring starts this far back.
FIRST_LOOKBACK = timedelta(days=120)


@dataclass
class DeviceResult:
    """What one pass did for one device."""

    device_id: str
    steps: int = 0
    samples: int = 0
    alarms: int = 0
    watermark_ms: int | None = None
    more: bool = False
    reset: bool = False
    dropped_states: list[str] = field(default_factory=list)


def align_down(ms: int, step_ms: int) -> int:
    return (ms // step_ms) * step_ms


def last_repair(session: Session, *, device_id: str) -> datetime | None:
    """When the device was last repaired: per ticket, the first time it reached a repair state."""
    first_per_ticket = (
        select(func.min(TicketEvent.at).label("at"))
        .join(Ticket, Ticket.id == TicketEvent.ticket_id)
        .where(Ticket.device_id == device_id, TicketEvent.kind == TicketEventKind.TRANSITION.value,
               TicketEvent.to_state.in_([s.value for s in REPAIR_STATES]))
        .group_by(TicketEvent.ticket_id)
        .subquery()
    )
    return session.scalar(select(func.max(first_per_ticket.c.at)))


def score_device(
    session: Session,
    *,
    store: TelemetryStore,
    device: Device,
    settings: ScoringSettings,
    now: datetime,
    site: str = "",
    multivariate: Any = None,
    decoded: adapter.DecodedStates | None = None,
) -> DeviceResult:
    """Score the device's complete steps after its watermark (at most ``max_steps_per_pass``).

    ``decoded``: the worker's detectors kept from its last passes (saved states are decoded
    when it has none for the device, or not the ones saved).

    ``multivariate``: the promoted multivariate detector of the device's model, if any; its
    anomaly per step, rated by the window ending at that step (read back before the
    watermark as far as the window reaches), goes to the scores as field ``multivariate``.
    It raises no alarms: on a simulated fleet it flagged 1.2 % of healthy steps (three or
    four a day per device at 5-minute steps) and only 3.0 % of the steps in the week before
    a failure (``vigil bench multivariate``), so alarms on it would be mostly false.
    """
    result = DeviceResult(device.id)
    step_s = settings.step_for(device.model)
    step_ms = step_s * 1000
    state = session.scalars(
        select(StreamState).where(StreamState.device_id == device.id)
        .execution_options(populate_existing=True)
    ).one_or_none()
    if state is None:
        state = StreamState(device_id=device.id, step_s=step_s, watermark_ms=None, states=None,
                            scored_steps=0)
        session.add(state)
    fresh = False  # True: the saved detectors no longer apply
    repaired = last_repair(session, device_id=device.id)
    if repaired is not None and (state.baseline_from is None or repaired > state.baseline_from):
        result.reset = state.states is not None
        fresh = True
        state.baseline_from = repaired
    if state.step_s != step_s:  # detectors count steps: another step length is another stream
        result.reset, fresh = state.states is not None, True
        state.step_s = step_s
        if state.watermark_ms is not None:
            state.watermark_ms = -(-state.watermark_ms // step_ms) * step_ms
    if fresh:
        state.states = None

    cutoff = align_down(int((now.timestamp() - settings.settle_s) * 1000), step_ms)
    if state.watermark_ms is None:
        start = align_down(cutoff - int(FIRST_LOOKBACK.total_seconds() * 1000), step_ms)
    else:
        start = state.watermark_ms
    result.watermark_ms = state.watermark_ms
    if start >= cutoff:  # no step has settled since the last pass: nothing to load or save
        session.flush()
        return result
    end = cutoff
    if state.watermark_ms is not None:
        end = min(cutoff, start + settings.max_steps_per_pass * step_ms)
    interval = timedelta(seconds=step_s)
    measurement = settings.measurement
    frame = store.query(device.id, start, end, interval=interval, measurement=measurement)
    if frame.empty and end < cutoff:  # a gap longer than one pass: look past it
        end = cutoff
        frame = store.query(device.id, start, end, interval=interval, measurement=measurement)
    if len(frame) > settings.max_steps_per_pass:
        frame = frame.iloc[: settings.max_steps_per_pass]
        result.more = True
    else:
        result.more = end < cutoff
    if frame.empty:
        session.flush()
        return result
    # Loading and saving the states is most of a live pass's cost (about 8 ms per metric stream).
    decoded = decoded if decoded is not None else adapter.DecodedStates(capacity=0)
    detectors, result.dropped_states = decoded.take(device.id, state.states)

    times_ms = [int(t.timestamp() * 1000) for t in frame.index]
    times_s = [t / 1000.0 for t in times_ms]
    per_step: list[dict[str, float]] = [{} for _ in times_ms]
    for metric in frame.columns:
        column = frame[metric].to_numpy(dtype="float64")
        rows = [i for i, v in enumerate(column) if math.isfinite(v)]
        if not rows:
            continue
        det = detectors.get(metric)
        if det is None:
            det = detectors[metric] = adapter.new_detector()
        seen = adapter.samples_seen(det)
        # The first row that may alarm: the one after the stream's probation.
        may_alarm = 0 if seen is None else max(0, settings.alarm_after_steps - seen)
        scores = adapter.score(det, [times_s[i] for i in rows], [float(column[i]) for i in rows])
        level = adapter.alarm_score(det)
        for k, (i, s) in enumerate(zip(rows, scores, strict=True)):
            per_step[i][metric] = s
            if s >= level and k >= may_alarm:
                session.add(AnomalyAlarm(
                    device_id=device.id, metric=metric, ts=_utc(times_ms[i]), score=s,
                    value=float(column[i]), detected_at=now))
                result.alarms += 1
        result.samples += len(rows)
    if multivariate is not None:
        history = frame
        context = adapter.multivariate_context(multivariate)
        if context:  # the first steps' windows reach back before this pass
            before = store.query(device.id, frame.index[0] - context * interval,
                                 frame.index[0], interval=interval, measurement=measurement)
            history = pd.concat([before, frame])
            context = len(before)
        for i, value in enumerate(adapter.multivariate_steps(multivariate, history,
                                                              context=context)):
            if math.isfinite(value):
                per_step[i][MULTIVARIATE] = value

    points = [Point(device=device.id, ts=ts, metrics=m, model=device.model, site=site,
                    measurement=settings.scores_measurement)
              for ts, m in zip(times_ms, per_step, strict=True) if m]
    if points:
        store.write(points)
    result.steps = len(times_ms)
    state.watermark_ms = times_ms[-1] + step_ms
    state.scored_steps += result.steps
    result.watermark_ms = state.watermark_ms
    _save(session, state, detectors, now)
    decoded.keep(device.id, state.states, detectors)
    return result


def _save(session: Session, state: StreamState, detectors: dict[str, adapter.Detector],
          now: datetime) -> None:
    """Write states and watermark; the version counter refuses a writer that read a stale row."""
    state.states = adapter.encode_states(detectors) if detectors else None
    state.updated_at = now
    session.flush()


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
