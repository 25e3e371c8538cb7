"""Ticket rules: anomaly alarms become service tickets through the desk's ``open_or_join``.

One alarm is not a ticket: the streaming detector, tuned on NAB, raises
isolated false alarms. A metric of a device that alarms ``min_alarms`` times
within ``window_s`` (telemetry time) is; its signature is ``anomaly:<metric>``,
so repeated evidence joins the device's open ticket for that metric, and the
desk's rules map the signature to a category (``*ambient*`` environmental,
``*supply_voltage*`` electrical, ...). A device reporting ``maintenance``
raises nothing: its alarms are marked handled without a ticket. After an
engineer cancelled a device's ticket for a metric as a false alarm, that
device and metric need ``damping_factor`` times as many alarms for a while
(``damping_days``); :func:`cancellations_by_rule` counts the cancellations
per signature for the quality report.

Each alarm is considered once (``handled_at``), in the transaction that files
its ticket, so a pass after a restart neither repeats evidence nor loses any.
A finding the desk refuses is logged and its alarms marked handled, so it
cannot block every later pass.
A pass considers alarms up to its ``now`` only, so a replay of history (``vigil
bench fleet``) files each ticket at the time live operation would have.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vigil.config import ScoringSettings, TicketRuleSettings
from vigil.db.enums import DeviceState, TicketEventKind, TicketSource, TicketState
from vigil.devices.models import Device
from vigil.errors import DomainError
from vigil.scoring.models import AnomalyAlarm
from vigil.telemetry.store import TelemetryStore
from vigil.tickets.models import Ticket, TicketEvent
from vigil.tickets.priority import Signal, TicketRules
from vigil.tickets.service import Evidence, open_or_join

log = logging.getLogger(__name__)

# The readings' window in a ticket's evidence, around the peak alarm (96 steps of 5 minutes).
WINDOW_BEFORE = timedelta(hours=6)
WINDOW_AFTER = timedelta(hours=2)
PREFIX = "anomaly:"  # signature of a streaming-anomaly ticket, followed by the metric
# Alarms considered per pass; the rest wait for the next one.
BATCH = 5000


@dataclass(frozen=True, slots=True)
class AlarmView:
    """The parts of an alarm the rule looks at."""

    id: int
    device_id: str
    metric: str
    ts: datetime
    score: float
    value: float


@dataclass(frozen=True, slots=True)
class Finding:
    """Enough alarms of one device and metric to file or join a ticket."""

    device_id: str
    metric: str
    alarms: tuple[AlarmView, ...]

    @property
    def signature(self) -> str:
        return f"{PREFIX}{self.metric}"

    @property
    def peak(self) -> AlarmView:
        return max(self.alarms, key=lambda a: (a.score, a.ts))

    @property
    def last(self) -> AlarmView:
        return max(self.alarms, key=lambda a: a.ts)


def findings(
    new: Sequence[AlarmView], recent: Sequence[AlarmView], *, min_alarms: int, window: timedelta,
    damped: Mapping[tuple[str, str], int] | None = None,
) -> list[Finding]:
    """Per device and metric with a new alarm: the alarms in the window ending at its newest
    alarm, if there are at least ``min_alarms`` (or ``damped[(device, metric)]``).
    ``recent``: earlier alarms (handled ones too)."""
    damped = damped or {}
    out = []
    keys = sorted({(a.device_id, a.metric) for a in new})
    by_key: dict[tuple[str, str], dict[int, AlarmView]] = {k: {} for k in keys}
    for alarm in (*recent, *new):
        bucket = by_key.get((alarm.device_id, alarm.metric))
        if bucket is not None:
            bucket[alarm.id] = alarm
    for key in keys:
        alarms = sorted(by_key[key].values(), key=lambda a: a.ts)
        newest = alarms[-1].ts
        inside = tuple(a for a in alarms if a.ts > newest - window)
        if len(inside) >= damped.get(key, min_alarms):
            out.append(Finding(key[0], key[1], inside))
    return out


def readings_window(
    store: TelemetryStore, finding: Finding, *, step_s: int, measurement: str,
    scores_measurement: str,
) -> dict[str, Any]:
    """The metric's readings and scores around the peak alarm, as the detector saw them."""
    start = finding.peak.ts - WINDOW_BEFORE
    end = finding.peak.ts + WINDOW_AFTER
    step = timedelta(seconds=step_s)
    window: dict[str, Any] = {"from": start.isoformat(), "to": end.isoformat(),
                              "step_s": step_s}
    for key, source in (("readings", measurement), ("scores", scores_measurement)):
        frame = store.query(finding.device_id, start, end, metrics=[finding.metric],
                            interval=step, measurement=source)
        if finding.metric in frame:
            window[key] = [[t.isoformat(), round(float(v), 6)]
                           for t, v in frame[finding.metric].dropna().items()]
    return window


def evidence_of(finding: Finding, window: Mapping[str, Any] | None = None) -> Evidence:
    peak = finding.peak
    data: dict[str, Any] = {
        "metric": finding.metric,
        "alarms": [{"ts": a.ts.isoformat(), "score": round(a.score, 4), "value": a.value}
                   for a in finding.alarms]}
    if window is not None:
        data["window"] = dict(window)
    return Evidence(
        at=finding.last.ts,
        score=peak.score,
        summary=(f"{finding.metric}: {len(finding.alarms)} anomaly alarms, peak score "
                 f"{peak.score:.3f} at {peak.ts.isoformat()} (value {peak.value:.4g})"),
        data=data,
    )


def _view(alarm: AnomalyAlarm) -> AlarmView:
    return AlarmView(alarm.id, alarm.device_id, alarm.metric, alarm.ts, alarm.score, alarm.value)


def false_alarms(
    session: Session, *, device_ids: Collection[str], since: datetime
) -> set[tuple[str, str]]:
    """(device, metric) pairs whose anomaly ticket was cancelled as a false alarm lately."""
    if not device_ids:
        return set()
    rows = session.execute(
        select(Ticket.device_id, Ticket.signature)
        .join(TicketEvent, TicketEvent.ticket_id == Ticket.id)
        .where(Ticket.device_id.in_(device_ids), Ticket.signature.like(f"{PREFIX}%"),
               TicketEvent.kind == TicketEventKind.TRANSITION.value,
               TicketEvent.to_state == TicketState.CANCELLED.value, TicketEvent.at >= since))
    return {(str(device), signature[len(PREFIX):]) for device, signature in rows}


def cancellations_by_rule(session: Session, *, since: datetime) -> dict[str, int]:
    """Analytics tickets cancelled as false alarms since ``since``, per rule (signature), so
    that a noisy rule shows in the quality report."""
    rows = session.execute(
        select(Ticket.signature, func.count(func.distinct(Ticket.id)))
        .join(TicketEvent, TicketEvent.ticket_id == Ticket.id)
        .where(Ticket.source == TicketSource.ANALYTICS.value,
               TicketEvent.kind == TicketEventKind.TRANSITION.value,
               TicketEvent.to_state == TicketState.CANCELLED.value, TicketEvent.at >= since)
        .group_by(Ticket.signature))
    return {signature: int(count) for signature, count in rows}


def ticket_rules_pass(
    session: Session, *, now: datetime, settings: TicketRuleSettings, rules: TicketRules,
    store: TelemetryStore | None = None, scoring: ScoringSettings | None = None,
) -> dict[str, Any]:
    """Consider every unhandled alarm once; file or join tickets. Returns counts for the log.

    With ``store``, each ticket's evidence holds the readings and scores around its peak alarm.
    """
    pending = list(session.scalars(
        select(AnomalyAlarm).where(AnomalyAlarm.handled_at.is_(None), AnomalyAlarm.ts <= now)
        .order_by(AnomalyAlarm.detected_at, AnomalyAlarm.id).limit(BATCH)))
    if not pending:
        return {"alarms": 0, "tickets_opened": 0, "tickets_joined": 0}
    window = timedelta(seconds=settings.window_s)
    devices = {d.id: d for d in session.scalars(
        select(Device).where(Device.id.in_({a.device_id for a in pending})))}
    quiet = {d for d, device in devices.items() if device.state == DeviceState.MAINTENANCE.value}
    live = [a for a in pending if a.device_id not in quiet]
    recent: list[AnomalyAlarm] = []
    if live:
        earliest = min(a.ts for a in live) - window
        recent = list(session.scalars(
            select(AnomalyAlarm).where(
                AnomalyAlarm.device_id.in_({a.device_id for a in live}),
                AnomalyAlarm.ts > earliest, AnomalyAlarm.handled_at.is_not(None))))
    damped = {key: settings.min_alarms * settings.damping_factor
              for key in false_alarms(session, device_ids={a.device_id for a in live},
                                      since=now - timedelta(days=settings.damping_days))}
    found = findings([_view(a) for a in live], [_view(a) for a in recent],
                     min_alarms=settings.min_alarms, window=window, damped=damped)
    by_id = {a.id: a for a in (*recent, *pending)}
    opened = joined = refused = 0
    for finding in found:
        peak = finding.peak
        shown = None
        if store is not None:
            scoring = scoring or ScoringSettings()
            shown = readings_window(
                store, finding, step_s=scoring.step_for(devices[finding.device_id].model),
                measurement=scoring.measurement, scores_measurement=scoring.scores_measurement)
        try:
            with session.begin_nested():
                result = open_or_join(
                    session, device_id=finding.device_id, signature=finding.signature,
                    signal=Signal(source=TicketSource.ANALYTICS, score=peak.score),
                    title=f"Unusual {finding.metric} on {finding.device_id}",
                    evidence=evidence_of(finding, shown), now=now, rules=rules)
        except DomainError as exc:  # one refused finding must not hold back the others
            log.error("no ticket for %s %s: %s", finding.device_id, finding.signature, exc)
            refused += 1
            continue
        opened += result.created
        joined += not result.created
        for alarm in finding.alarms:
            row = by_id[alarm.id]
            if row.ticket_id is None:
                row.ticket_id = result.ticket.id
    for row in pending:
        row.handled_at = now
    return {"alarms": len(pending), "in_maintenance": len(pending) - len(live),
            "tickets_opened": opened, "tickets_joined": joined, "refused": refused}
