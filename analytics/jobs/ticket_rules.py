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
(``damping_days``); the quality report counts the cancellations per signature
(``vigil.reports.quality.cancellations_by_rule``).

Each alarm is considered once (``handled_at``), in the transaction that files
its ticket, so a pass after a restart neither repeats evidence nor loses any.
A finding the desk refuses is logged and its alarms marked handled, so it
cannot block every later pass.
A pass considers alarms up to its ``now`` only, so a replay of history (``vigil
bench fleet``) files each ticket at the time live operation would have.

The room's readings (the rules' ``site_only`` signatures: ambient temperature,
humidity) are no fault of one device: a finding of one is held, its alarms left
unhandled while inside the window, until as large a share of its site's working
devices show it as a site episode needs (the rules' ``episode_share``; a few devices
of a site's thirty were chance, not the room: on six development fleets, the two site
tickets that three devices' findings made were both false) (:func:`corroborated`).

A reading whose level follows the clinician's settings or the mains (the fault catalogue's
``follows_settings``: a ventilator's oxygen readings follow the prescribed FiO2;
``follows_mains``: the supply voltage) opens no ticket on its own; it joins a fault episode
already open on the device (:func:`beside_episodes`).

Findings on several of a device's own readings within the window are one fault
episode (a worn motor moves its current and the volume it delivers): a finding
joins the device's open anomaly ticket opened within the window, whichever
reading that ticket was opened for, rather than opening a second ticket.

Failure predictions (the ``failure_prediction`` job's rows) become tickets the same way,
each considered once (``handled_at``): a device whose last ``prediction_passes`` passes
(after its last repair) all gave a probability of failure within the horizon of at least
``prediction_probability`` files or joins the ticket ``prediction:<fault type>``. Its
priority follows the predicted remaining life and the device's risk class; its category
the fault type where the rules name one, else the reading that drove the prediction most
(ambient temperature and humidity point to the environment, supply voltage to the mains);
its evidence holds the probability, the band, the drivers and their readings. A device's
open prediction ticket takes its later predictions, whatever fault type they name. A device
in maintenance raises nothing, and a cancelled false alarm damps the device's predictions as
it damps an anomaly rule: ``damping_factor`` times as many passes, counted from the
cancellation, and each above the highest probability the cancelled ticket rested on (the
engineer looked at that level and found the device sound; without the bar, a device whose
predictions hover above the threshold was re-ticketed every six days).
A prediction ticket is grouped under its site's open site ticket when the episode was seen
inside the readings of one of the passes the prediction rests on (a mains sag or an
air-conditioning failure that moved those readings; the readings reach back the
prediction's longest window, the noise's 3 days): that ticket is looked at first. Once the
site ticket is finished, predictions whose last ``prediction_passes`` passes read the
episode (from its first sighting to its end) file nothing: the service has put the episode
behind it, and on the evaluation fleet of seed 42, an air-conditioning failure's aftermath
filed 17 prediction tickets at once the day after its site ticket was finished, all false.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from functools import partial
from typing import Any

import pandas as pd
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from analytics.prediction.catalogue import FaultCatalogue, FaultMode, shipped_catalogue
from vigil.config import PredictionSettings, ScoringSettings, TicketRuleSettings
from vigil.db.enums import (
    OPEN_TICKET_STATES,
    Category,
    DeviceState,
    TicketEventKind,
    TicketScope,
    TicketSource,
    TicketState,
)
from vigil.devices.models import Device, Prediction
from vigil.errors import DomainError
from vigil.scoring.models import AnomalyAlarm
from vigil.telemetry.store import TelemetryStore
from vigil.tickets.models import Ticket, TicketEvent
from vigil.tickets.priority import Signal, SiteEpisode, TicketRules
from vigil.tickets.service import (
    Evidence,
    Opened,
    SiteGrouping,
    group_under_site_episode,
    open_or_join,
    open_or_join_site,
)

log = logging.getLogger(__name__)

# The readings' window in a ticket's evidence, around the peak alarm (96 steps of 5 minutes).
WINDOW_BEFORE = timedelta(hours=6)
WINDOW_AFTER = timedelta(hours=2)
PREFIX = "anomaly:"  # signature of a streaming-anomaly ticket, followed by the metric
# Alarms considered per pass; the rest wait for the next one.
BATCH = 5000
# The desk's grouping of site-wide signatures, which a site-only finding waits to reach.
GROUPING = SiteGrouping()
# Peers a device's reading is compared with before it is called the ward's (``shared_with_peers``).
MIN_PEERS = 2


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


def corroborated(
    found: Sequence[Finding], *, site_of: Mapping[str, int | None],
    site_only: Callable[[str], bool], needed: Callable[[int], int],
    site_open: Collection[tuple[int, str]] = (),
) -> tuple[list[Finding], list[Finding]]:
    """Split findings into those to file and those to hold back.

    A finding of a site-only signature (``TicketRules.site_only``: the room's air) files
    when ``needed(site)`` devices of its site have one, or when its site already has an
    open ticket for it (``site_open``: (site, signature)); until then it is held.
    """
    devices = Counter((site_of.get(f.device_id), f.signature) for f in found
                      if site_only(f.signature))
    to_file: list[Finding] = []
    held: list[Finding] = []
    for finding in found:
        site = site_of.get(finding.device_id)
        if (not site_only(finding.signature) or (site is not None and (
                devices[site, finding.signature] >= needed(site)
                or (site, finding.signature) in site_open))):
            to_file.append(finding)
        else:
            held.append(finding)
    return to_file, held


def shared_with_peers(
    found: Sequence[Finding], peer_alarms: Sequence[AlarmView], *,
    peers_of: Mapping[str, Collection[str]], share: float, window: timedelta,
    site_wide: Callable[[str], bool],
) -> tuple[list[Finding], list[Finding]]:
    """Split findings into the devices' own and those their peers share.

    A device's peers are the other working devices of its model at its site: the same
    room, the same ward's use. A reading that alarmed on at least ``share`` of them within
    the window ending at the finding's last alarm moved with the ward (a hot week warms
    every ventilator's turbine), not with this device. Site-wide signatures have their own
    grouping, and a device with fewer than ``MIN_PEERS`` peers is compared with nobody.
    """
    by_metric: dict[str, list[AlarmView]] = {}
    for a in peer_alarms:
        by_metric.setdefault(a.metric, []).append(a)
    own: list[Finding] = []
    shared: list[Finding] = []
    for finding in found:
        peers = peers_of.get(finding.device_id, ())
        if share <= 0 or site_wide(finding.signature) or len(peers) < MIN_PEERS:
            own.append(finding)
            continue
        end = finding.last.ts
        alarming = {a.device_id for a in by_metric.get(finding.metric, ())
                    if a.device_id in peers and end - window < a.ts <= end}
        (shared if len(alarming) >= share * len(peers) else own).append(finding)
    return own, shared


def beside_episodes(
    found: Sequence[Finding], *, model_of: Mapping[str, str], episodes: Mapping[str, str],
    catalogue: FaultCatalogue, site_of: Mapping[str, int | None] | None = None,
    site_open: Collection[tuple[int, str]] = (),
) -> tuple[list[Finding], list[Finding]]:
    """Split off the findings on readings an anomaly on which alone is no evidence of a fault
    (:meth:`FaultCatalogue.alone_no_evidence`) and that stand alone: no fault episode open on
    the device, no other finding of it in this pass, and no open ticket of its site for the
    same signature (``site_open``: (site, signature); a mains sag's site ticket).

    A reading whose level follows the clinician's settings shows the prescription: on six
    development fleets (`vigil bench fleet`, seeds 11/12, 21/22, 31/32), 20 of 21 anomaly
    tickets on ventilators' oxygen readings (measured FiO2, the O2 cell) were false and the
    other split a mains sag's site episode. The supply voltage follows the mains, whose dips
    are the grid's: on the six fleets of seeds 41/42, 51/52 and 61/62, 31 of 37 device
    tickets on it were false, 2 a site episode's, and of the 4 true, 2 lay in another fault's
    run-up and named the wrong fault; on those of seeds 71/72 and 81/82, first run after this
    rule was written, 21 of 22 were false and 1 a site episode's. A site's sag is the site
    pass's, a failing power supply's ripple the failure predictor's. Beside a fault these
    findings join its ticket as evidence, so they come after the device's other findings,
    which open it.
    """

    def alone_no_evidence(finding: Finding) -> bool:
        return catalogue.alone_no_evidence(model_of.get(finding.device_id, ""), finding.metric)

    def beside(finding: Finding) -> bool:
        site = (site_of or {}).get(finding.device_id)
        return finding.device_id in faulty or (site, finding.signature) in site_open

    own = [f for f in found if not alone_no_evidence(f)]
    faulty = set(episodes) | {f.device_id for f in own}
    joining = [f for f in found if alone_no_evidence(f) and beside(f)]
    return own + joining, [f for f in found if alone_no_evidence(f) and not beside(f)]


@dataclass(frozen=True, slots=True)
class SiteFinding:
    """Most of a site's devices alarming on one site-wide reading at once: a site episode."""

    site_id: int
    metric: str
    alarms: tuple[AlarmView, ...]
    devices_at_site: int

    @property
    def signature(self) -> str:
        return f"{PREFIX}{self.metric}"

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(sorted({a.device_id for a in self.alarms}))


def site_findings(
    new: Sequence[AlarmView], recent: Sequence[AlarmView], *, site_of: Mapping[str, int | None],
    devices_at_site: Mapping[int, int], site_wide: Callable[[str], bool], episode: SiteEpisode,
    min_devices: int,
) -> list[SiteFinding]:
    """Per site and site-wide metric with a new alarm: the ``episode.window`` ending at a new
    alarm in which the most devices of the site alarmed, if they are ``episode.needed`` of the
    site's devices. ``recent``: the site's earlier alarms (handled ones too)."""
    keys: set[tuple[int, str]] = set()
    for a in new:
        site = site_of.get(a.device_id)
        if site is not None and site_wide(f"{PREFIX}{a.metric}"):
            keys.add((site, a.metric))
    by_key: dict[tuple[int, str], dict[int, AlarmView]] = {k: {} for k in keys}
    for a in (*recent, *new):
        site = site_of.get(a.device_id)
        bucket = None if site is None else by_key.get((site, a.metric))
        if bucket is not None:
            bucket[a.id] = a
    new_ids = {a.id for a in new}
    out = []
    for site, metric in sorted(keys):
        alarms = sorted(by_key[site, metric].values(), key=lambda a: (a.ts, a.id))
        need = episode.needed(devices_at_site.get(site, 0), least=min_devices)
        best: tuple[AlarmView, ...] = ()
        for end in (a for a in alarms if a.id in new_ids):
            inside = tuple(a for a in alarms if end.ts - episode.window < a.ts <= end.ts)
            if len({a.device_id for a in inside}) > len({a.device_id for a in best}):
                best = inside
        if len({a.device_id for a in best}) >= need:
            out.append(SiteFinding(site, metric, best, devices_at_site.get(site, 0)))
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
            window[key] = _points(frame[finding.metric])
    return window


def _points(series: pd.Series) -> list[list[Any]]:
    """A series as ``[time, value]`` pairs for a ticket's evidence, gaps left out."""
    return [[t.isoformat(), round(float(v), 6)] for t, v in series.dropna().items()]


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


def _cancelled_since(device_ids: Collection[str], since: datetime, prefix: str
                     ) -> tuple[ColumnElement[bool], ...]:
    """Where a ticket of ``device_ids`` with a ``prefix`` signature was cancelled since
    ``since`` (with ``TicketEvent`` joined)."""
    return (Ticket.device_id.in_(device_ids), Ticket.signature.like(f"{prefix}%"),
            TicketEvent.kind == TicketEventKind.TRANSITION.value,
            TicketEvent.to_state == TicketState.CANCELLED.value, TicketEvent.at >= since)


def false_alarms(
    session: Session, *, device_ids: Collection[str], since: datetime, prefix: str = PREFIX
) -> dict[tuple[str, str], datetime]:
    """(device, what follows ``prefix`` in the signature: the metric, or the predicted fault
    type) of tickets cancelled as a false alarm since ``since``, with the latest cancellation."""
    if not device_ids:
        return {}
    rows = session.execute(
        select(Ticket.device_id, Ticket.signature, func.max(TicketEvent.at))
        .join(TicketEvent, TicketEvent.ticket_id == Ticket.id)
        .where(*_cancelled_since(device_ids, since, prefix))
        .group_by(Ticket.device_id, Ticket.signature))
    return {(str(device), signature[len(prefix):]): at for device, signature, at in rows}


def dismissed_predictions(session: Session, *, device_ids: Collection[str], since: datetime
                          ) -> dict[str, Dismissal]:
    """Per device, its prediction tickets cancelled as false alarms since ``since``, whatever
    fault type they named: the latest cancellation and the highest probability linked to
    those tickets."""
    if not device_ids:
        return {}
    rows = session.execute(
        select(Ticket.device_id, func.max(TicketEvent.at), func.max(Prediction.probability))
        .join(TicketEvent, TicketEvent.ticket_id == Ticket.id)
        .outerjoin(Prediction, Prediction.ticket_id == Ticket.id)
        .where(*_cancelled_since(device_ids, since, PREDICTION_PREFIX))
        .group_by(Ticket.device_id))
    return {str(device): Dismissal(at, peak or 0.0) for device, at, peak in rows}


def ticket_rules_pass(
    session: Session, *, now: datetime, settings: TicketRuleSettings, rules: TicketRules,
    store: TelemetryStore | None = None, scoring: ScoringSettings | None = None,
    prediction: PredictionSettings | None = None,
) -> dict[str, Any]:
    """Consider every unhandled alarm and prediction once; file or join tickets. Returns
    counts for the log.

    With ``store``, each ticket's evidence holds the readings (and scores) it rests on.
    """
    out = alarm_pass(session, now=now, settings=settings, rules=rules, store=store,
                     scoring=scoring)
    out["predictions"] = prediction_pass(session, now=now, settings=settings, rules=rules,
                                         store=store, scoring=scoring, prediction=prediction)
    return out


def alarm_pass(
    session: Session, *, now: datetime, settings: TicketRuleSettings, rules: TicketRules,
    store: TelemetryStore | None = None, scoring: ScoringSettings | None = None,
) -> dict[str, Any]:
    """Consider every unhandled anomaly alarm once; file or join tickets."""
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
    filed = Filed()
    episodes_filed = _site_pass(session, live, devices=devices, now=now, rules=rules,
                                filed=filed)
    found = findings([_view(a) for a in live], [_view(a) for a in recent],
                     min_alarms=settings.min_alarms, window=window, damped=damped)
    site_of = {d: device.site_id for d, device in devices.items()}
    # The site tickets open after this pass's site episodes, for the findings to join.
    site_open = _open_site_tickets(session, {f.signature for f in found})
    sizes = _working_devices(session, {site_of[f.device_id] for f in found
                                       if rules.site_only(f.signature)} - {None})
    found, held = corroborated(
        found, site_of=site_of, site_only=rules.site_only,
        needed=lambda site: rules.site_episode.needed(sizes.get(site, 0),
                                                      least=GROUPING.min_devices),
        site_open=site_open)
    found, shared = _peer_split(session, found, now=now, window=window, rules=rules)
    by_id = {a.id: a for a in (*recent, *pending)}
    episodes = _open_episodes(session, device_ids={f.device_id for f in found},
                              since=now - window, rules=rules)
    found, alone = beside_episodes(
        found, model_of={d: device.model for d, device in devices.items()}, episodes=episodes,
        catalogue=shipped_catalogue(), site_of=site_of, site_open=site_open)
    for finding in found:
        signature = finding.signature
        if not rules.site_wide(signature):
            signature = episodes.setdefault(finding.device_id, signature)
        peak = finding.peak
        shown = None
        if store is not None:
            scoring = scoring or ScoringSettings()
            shown = readings_window(
                store, finding, step_s=scoring.step_for(devices[finding.device_id].model),
                measurement=scoring.measurement, scores_measurement=scoring.scores_measurement)
        result = file_ticket(
            session, device_id=finding.device_id, signature=signature,
            signal=Signal(source=TicketSource.ANALYTICS, score=peak.score),
            title=(f"Unusual {finding.metric} on {finding.device_id}"
                   f"{likely_note(devices[finding.device_id].model, finding.signature)}"),
            evidence=evidence_of(finding, shown), now=now, rules=rules)
        filed.count(result)
        if result is not None:
            _link((by_id[a.id] for a in finding.alarms), result)
    # A held finding's alarms wait for the devices beside it while they are inside the window.
    waiting = {a.id for f in held for a in f.alarms if a.ts > now - window}
    for row in pending:
        if row.id not in waiting:
            row.handled_at = now
    return {"alarms": len(pending), "in_maintenance": len(pending) - len(live),
            "held_alarms": len(waiting), "site_episodes": episodes_filed,
            "shared_with_peers": len(shared), "no_evidence_alone": len(alone),
            **filed.figures()}


def _peer_split(session: Session, found: Sequence[Finding], *, now: datetime,
                window: timedelta, rules: TicketRules) -> tuple[list[Finding], list[Finding]]:
    """:func:`shared_with_peers` on the findings, with their devices' peers read here."""
    if rules.peer_share <= 0 or not found:
        return list(found), []
    devices = list(session.execute(
        select(Device.id, Device.site_id, Device.model)
        .where(Device.site_id.in_(select(Device.site_id).where(
                   Device.id.in_({f.device_id for f in found}))),
               Device.state.is_distinct_from(DeviceState.MAINTENANCE.value))))
    ward: dict[tuple[int | None, str], set[str]] = {}
    for device, site, model in devices:
        ward.setdefault((site, model), set()).add(device)
    peers_of = {device: ward[site, model] - {device} for device, site, model in devices}
    everyone = {d for peers in peers_of.values() for d in peers}
    alarms = session.scalars(select(AnomalyAlarm).where(
        AnomalyAlarm.device_id.in_(everyone),
        AnomalyAlarm.metric.in_({f.metric for f in found}),
        AnomalyAlarm.ts > min(f.last.ts for f in found) - window, AnomalyAlarm.ts <= now))
    return shared_with_peers(found, [_view(a) for a in alarms], peers_of=peers_of,
                             share=rules.peer_share, window=window, site_wide=rules.site_wide)


def _site_pass(session: Session, live: Sequence[AnomalyAlarm], *, devices: Mapping[str, Device],
               now: datetime, rules: TicketRules, filed: Filed) -> int:
    """File the site episodes among the pass's alarms (:func:`site_findings`) as site tickets,
    before the device findings, which then join them. Returns how many it filed or joined."""
    wide = [a for a in live if rules.site_wide(PREFIX + a.metric)]
    sites = {devices[a.device_id].site_id for a in wide} - {None}
    if not sites:
        return 0
    episode = rules.site_episode
    working = Device.state.is_distinct_from(DeviceState.MAINTENANCE.value)
    rows = session.execute(
        select(AnomalyAlarm, Device.site_id).join(Device, Device.id == AnomalyAlarm.device_id)
        .where(Device.site_id.in_(sites), working,
               AnomalyAlarm.metric.in_({a.metric for a in wide}),
               AnomalyAlarm.ts > min(a.ts for a in wide) - episode.window,
               AnomalyAlarm.ts <= now)).all()
    sizes = _working_devices(session, sites)
    by_id = {alarm.id: alarm for alarm in (*live, *(alarm for alarm, _site in rows))}
    site_of: dict[str, int | None] = {alarm.device_id: site for alarm, site in rows}
    site_of.update({d: device.site_id for d, device in devices.items()})
    found = site_findings([_view(a) for a in wide], [_view(a) for a, _site in rows],
                          site_of=site_of, devices_at_site=sizes, site_wide=rules.site_wide,
                          episode=episode, min_devices=GROUPING.min_devices)
    for finding in found:
        peak = max(finding.alarms, key=lambda a: (a.score, a.ts))
        seen = len(finding.devices)
        evidence = Evidence(
            at=max(a.ts for a in finding.alarms), score=peak.score,
            summary=(f"{finding.metric}: {seen} of the site's {finding.devices_at_site} devices "
                     f"alarmed within {episode.window}, peak score {peak.score:.3f}"),
            data={"metric": finding.metric, "devices": list(finding.devices),
                  "alarms": [{"device": a.device_id, "ts": a.ts.isoformat(),
                              "score": round(a.score, 4), "value": a.value}
                             for a in finding.alarms]})
        result = _refusable(session, f"site {finding.site_id} {finding.signature}", partial(
            open_or_join_site, session, site_id=finding.site_id, signature=finding.signature,
            signal=Signal(source=TicketSource.ANALYTICS, score=peak.score),
            title=f"Site-wide: {finding.metric} on {seen} of {finding.devices_at_site} devices "
                  "at once",
            evidence=evidence, devices=finding.devices, now=now, rules=rules))
        filed.count(result)
        if result is not None:
            _link((by_id[a.id] for a in finding.alarms), result)
    return len(found)


def _working_devices(session: Session, sites: Collection[int | None]) -> dict[int, int]:
    """How many devices of each of ``sites`` are working (not in maintenance)."""
    if not sites:
        return {}
    working = Device.state.is_distinct_from(DeviceState.MAINTENANCE.value)
    return {int(site): int(n) for site, n in session.execute(
        select(Device.site_id, func.count()).where(Device.site_id.in_(sites), working)
        .group_by(Device.site_id)) if site is not None}


def _open_episodes(session: Session, *, device_ids: Collection[str], since: datetime,
                   rules: TicketRules) -> dict[str, str]:
    """Per device, the signature of its open anomaly ticket opened since ``since`` on one of
    its own readings (not a site-wide one): the fault episode later findings join."""
    if not device_ids:
        return {}
    rows = session.execute(
        select(Ticket.device_id, Ticket.signature)
        .where(Ticket.scope == TicketScope.DEVICE.value, Ticket.device_id.in_(device_ids),
               Ticket.signature.like(f"{PREFIX}%"), Ticket.state.in_(OPEN_TICKET_STATES),
               Ticket.created_at >= since)
        .order_by(Ticket.created_at, Ticket.id))
    out: dict[str, str] = {}
    for device, signature in rows:
        if not rules.site_wide(signature):
            out.setdefault(str(device), str(signature))
    return out


def _open_predictions(session: Session, *, device_ids: Collection[str]) -> dict[str, str]:
    """Per device, the signature of its oldest open prediction ticket: a later prediction
    naming another fault type joins it, as the same predicted failure with a changed guess
    of its type, rather than opening a second ticket for the device."""
    if not device_ids:
        return {}
    rows = session.execute(
        select(Ticket.device_id, Ticket.signature)
        .where(Ticket.scope == TicketScope.DEVICE.value, Ticket.device_id.in_(device_ids),
               Ticket.signature.like(f"{PREDICTION_PREFIX}%"),
               Ticket.state.in_(OPEN_TICKET_STATES))
        .order_by(Ticket.created_at, Ticket.id))
    out: dict[str, str] = {}
    for device, signature in rows:
        out.setdefault(str(device), str(signature))
    return out


def _finished_site_episodes(session: Session, *, site_ids: Collection[int], since: datetime
                            ) -> dict[int, list[tuple[datetime, datetime]]]:
    """Per site, the spans (first seen to finished) of its site tickets finished since
    ``since``: the episodes the service has looked at and put behind it."""
    if not site_ids:
        return {}
    seen = func.coalesce(Ticket.first_seen_at, Ticket.created_at)
    out: dict[int, list[tuple[datetime, datetime]]] = {}
    for site, start, end in session.execute(
            select(Ticket.site_id, seen, Ticket.closed_at).where(
                Ticket.scope == TicketScope.SITE.value, Ticket.site_id.in_(site_ids),
                Ticket.state.not_in(OPEN_TICKET_STATES), Ticket.closed_at >= since)):
        if site is not None and end is not None:
            out.setdefault(site, []).append((start, end))
    return out


def read_during_episode(made_at: datetime, reading: timedelta,
                        episodes: Sequence[tuple[datetime, datetime]]) -> bool:
    """Whether the readings behind a prediction made at ``made_at`` (``reading`` back) overlap
    one of ``episodes``."""
    return any(start <= made_at and end >= made_at - reading for start, end in episodes)


def _open_site_tickets(session: Session, signatures: Collection[str]) -> set[tuple[int, str]]:
    """(site, signature) of the open site tickets with one of ``signatures``."""
    if not signatures:
        return set()
    rows = session.execute(select(Ticket.site_id, Ticket.signature).where(
        Ticket.scope == TicketScope.SITE.value, Ticket.signature.in_(signatures),
        Ticket.state.in_(OPEN_TICKET_STATES)))
    return {(int(site), str(signature)) for site, signature in rows if site is not None}


@dataclass
class Filed:
    """What one pass's filings came to, for its log line."""

    opened: int = 0
    joined: int = 0
    refused: int = 0

    def count(self, result: Opened | None) -> None:
        """Count one ``file_ticket`` result (None: the desk refused it)."""
        if result is None:
            self.refused += 1
        else:
            self.opened += result.created
            self.joined += not result.created

    def figures(self) -> dict[str, int]:
        return {"tickets_opened": self.opened, "tickets_joined": self.joined,
                "refused": self.refused}


def _link(rows: Iterable[AnomalyAlarm | Prediction], result: Opened) -> None:
    """Point the rows a ticket rests on at it; a row keeps the ticket it first led to."""
    for row in rows:
        if row.ticket_id is None:
            row.ticket_id = result.ticket.id


def file_ticket(session: Session, *, device_id: str, signature: str, signal: Signal, title: str,
                evidence: Evidence, now: datetime, rules: TicketRules) -> Opened | None:
    """``open_or_join`` in a savepoint; None (logged) when the desk refuses, so that one refused
    finding or prediction does not hold back the others."""
    return _refusable(session, f"{device_id} {signature}", partial(
        open_or_join, session, device_id=device_id, signature=signature, signal=signal,
        title=title, evidence=evidence, now=now, rules=rules))


def _refusable(session: Session, what: str, call: Callable[[], Opened]) -> Opened | None:
    """Run one filing in a savepoint; None (logged) when the desk refuses it."""
    try:
        with session.begin_nested():
            return call()
    except DomainError as exc:
        log.error("no ticket for %s: %s", what, exc)
        return None


# -- failure predictions --------------------------------------------------------------------

PREDICTION_PREFIX = "prediction:"  # followed by the predicted fault type
UNKNOWN_FAULT = "unknown"


def likely_fault(model: str, signature: str, catalogue: FaultCatalogue | None = None
                 ) -> FaultMode | None:
    """The failure mode a ticket's signature names on a device of ``model`` by the fault
    catalogue: a prediction's fault code, or the mode an anomalous reading shows in (none for
    the room's readings or a model the catalogue does not know)."""
    catalogue = catalogue or shipped_catalogue()
    if signature.startswith(PREDICTION_PREFIX):
        return catalogue.mode(model, signature[len(PREDICTION_PREFIX):])
    if signature.startswith(PREFIX):
        return catalogue.likely_fault(model, signature[len(PREFIX):])
    return None


def likely_note(model: str, signature: str) -> str:
    """`` (likely: battery ageing)`` for a ticket's title, or nothing."""
    mode = likely_fault(model, signature)
    return "" if mode is None else f" (likely: {mode.name})"


@dataclass(frozen=True, slots=True)
class PredictionView:
    """The parts of a prediction the rule looks at."""

    id: int
    device_id: str
    made_at: datetime
    probability: float
    horizon_days: float
    rul_days: float | None = None
    rul_lower_days: float | None = None
    rul_upper_days: float | None = None
    fault_type: str | None = None
    drivers: Mapping[str, float] | None = None
    model_version: str = ""

    @property
    def fault(self) -> str:
        return self.fault_type or UNKNOWN_FAULT


@dataclass(frozen=True, slots=True)
class PredictedFailure:
    """A device's newest run of consecutive predictions above the threshold: a ticket."""

    device_id: str
    predictions: tuple[PredictionView, ...]  # oldest first

    @property
    def latest(self) -> PredictionView:
        return self.predictions[-1]

    @property
    def signature(self) -> str:
        return f"{PREDICTION_PREFIX}{self.latest.fault}"


@dataclass(frozen=True, slots=True)
class Dismissal:
    """A device's prediction tickets cancelled as false alarms: the latest cancellation, and
    the highest probability those tickets rested on."""

    at: datetime
    peak: float


def predicted_failures(
    new: Sequence[PredictionView], recent: Sequence[PredictionView], *, min_probability: float,
    min_passes: int, since: Mapping[str, datetime] | None = None,
    damped: Mapping[str, Dismissal] | None = None, damping_factor: int = 1,
) -> list[PredictedFailure]:
    """Per device with a new prediction: its newest run of consecutive predictions at or above
    ``min_probability``, if the run holds ``min_passes`` of them.

    ``recent``: earlier predictions (handled ones too). ``since[device]`` (its last repair):
    predictions up to then are of an earlier life and do not count. ``damped[device]`` (the
    device's prediction tickets cancelled as false alarms): the run counts from the latest
    cancellation, needs ``damping_factor`` times as many passes, and each above the
    probability the cancelled tickets peaked at. Whatever fault type they named: the engineer
    found the device sound, and the predictor's guess of the type may change from one day to
    the next on the same readings (on the development fleet of seed 32, three devices were
    re-ticketed within eight days under another fault type after a cancellation).
    """
    since = since or {}
    damped = damped or {}
    by_device: dict[str, dict[int, PredictionView]] = {p.device_id: {} for p in new}
    for p in (*recent, *new):
        bucket = by_device.get(p.device_id)
        if bucket is not None:
            bucket[p.id] = p
    out = []
    for device in sorted(by_device):
        history = sorted(by_device[device].values(), key=lambda p: (p.made_at, p.id))
        cancelled = damped.get(device)
        cuts = [at for at in (since.get(device), cancelled.at if cancelled else None) if at]
        dismissed = -1.0 if cancelled is None else cancelled.peak
        run: list[PredictionView] = []
        for p in reversed(history):
            if p.probability < min_probability or p.probability <= dismissed or \
                    any(p.made_at <= at for at in cuts):
                break
            run.append(p)
        need = min_passes * (damping_factor if cancelled is not None else 1)
        if run and len(run) >= need:
            out.append(PredictedFailure(device, tuple(reversed(run))))
    return out


def _named_category(rules: TicketRules, signature: str) -> Category | None:
    """The category the rules give a signature by a pattern of its own, not the catch-all."""
    for pattern, category in rules.categories:
        if fnmatchcase(signature, pattern):
            return None if pattern == "*" else category
    return None


def prediction_category(rules: TicketRules, *, fault_type: str | None,
                        drivers: Mapping[str, float] | None) -> Category:
    """The fault type's category where the rules name one; else that of the reading that
    drove the prediction most (an ambient temperature or humidity is environmental, a
    supply voltage electrical); else the rules' fallback."""
    signature = f"{PREDICTION_PREFIX}{fault_type or UNKNOWN_FAULT}"
    named = _named_category(rules, signature)
    if named is not None:
        return named
    strongest = sorted((drivers or {}).items(), key=lambda kv: (-abs(kv[1]), kv[0]))
    if strongest:
        by_reading = _named_category(rules, f"{PREDICTION_PREFIX}{strongest[0][0]}")
        if by_reading is not None:
            return by_reading
    return rules.category(signature)


def prediction_evidence(found: PredictedFailure,
                        window: Mapping[str, Any] | None = None) -> Evidence:
    p = found.latest
    lead = "" if p.rul_days is None else (
        f", remaining life {p.rul_days:.1f} d ({p.rul_lower_days:.1f} to {p.rul_upper_days:.1f})")
    data: dict[str, Any] = {
        "fault_type": p.fault_type, "probability": round(p.probability, 4),
        "horizon_days": p.horizon_days, "rul_days": p.rul_days,
        "band_days": [p.rul_lower_days, p.rul_upper_days], "drivers": dict(p.drivers or {}),
        "model_version": p.model_version,
        "passes": [{"made_at": q.made_at.isoformat(), "probability": round(q.probability, 4)}
                   for q in found.predictions]}
    if window is not None:
        data["window"] = dict(window)
    drivers = ", ".join(p.drivers or {}) or "none named"
    return Evidence(
        at=p.made_at, score=p.probability,
        summary=(f"P(failure within {p.horizon_days:g} d) = {p.probability:.2f} in "
                 f"{len(found.predictions)} passes{lead}; likely {p.fault}; drivers: {drivers}"),
        data=data)


def drivers_window(store: TelemetryStore, found: PredictedFailure, *, step_s: int,
                   measurement: str, days: float) -> dict[str, Any]:
    """The drivers' readings over the window the newest prediction looked at."""
    p = found.latest
    start = p.made_at - timedelta(days=days)
    window: dict[str, Any] = {"from": start.isoformat(), "to": p.made_at.isoformat(),
                              "step_s": step_s, "readings": {}}
    metrics = sorted(p.drivers or {})
    if metrics:
        frame = store.query(found.device_id, start, p.made_at, metrics=metrics,
                            interval=timedelta(seconds=step_s), measurement=measurement)
        window["readings"] = {m: _points(frame[m]) for m in metrics if m in frame}
    return window


def _prediction_view(row: Prediction) -> PredictionView:
    return PredictionView(row.id, row.device_id, row.made_at, row.probability, row.horizon_days,
                          row.rul_days, row.rul_lower_days, row.rul_upper_days, row.fault_type,
                          dict(row.drivers or {}), row.model_version)


def prediction_pass(
    session: Session, *, now: datetime, settings: TicketRuleSettings, rules: TicketRules,
    store: TelemetryStore | None = None, scoring: ScoringSettings | None = None,
    prediction: PredictionSettings | None = None,
) -> dict[str, Any]:
    """Consider every unhandled prediction once; file or join tickets."""
    from analytics.jobs.prediction import repairs

    pending = list(session.scalars(
        select(Prediction).where(Prediction.handled_at.is_(None), Prediction.made_at <= now)
        .order_by(Prediction.made_at, Prediction.id).limit(BATCH)))
    if not pending:
        return {"considered": 0, "tickets_opened": 0, "tickets_joined": 0}
    devices = {d.id: d for d in session.scalars(
        select(Device).where(Device.id.in_({p.device_id for p in pending})))}
    live = [p for p in pending
            if devices[p.device_id].state != DeviceState.MAINTENANCE.value]
    ids = {p.device_id for p in live}
    recent: list[Prediction] = []
    if live:
        earliest = min(p.made_at for p in live) - timedelta(days=settings.prediction_lookback_days)
        recent = list(session.scalars(select(Prediction).where(
            Prediction.device_id.in_(ids), Prediction.made_at > earliest,
            Prediction.handled_at.is_not(None))))
    last_repair = {device: max(times) for device, times in
                   repairs(session, device_ids=sorted(ids)).items() if times}
    damped = dismissed_predictions(session, device_ids=ids,
                                   since=now - timedelta(days=settings.damping_days))
    found = predicted_failures(
        [_prediction_view(p) for p in live], [_prediction_view(p) for p in recent],
        min_probability=settings.prediction_probability, min_passes=settings.prediction_passes,
        since=last_repair, damped=damped, damping_factor=settings.damping_factor)
    by_id = {p.id: p for p in (*recent, *pending)}
    prediction = prediction or PredictionSettings()
    reading = timedelta(days=prediction.reading_days)
    open_predictions = _open_predictions(session, device_ids={f.device_id for f in found})
    behind = _finished_site_episodes(
        session, since=min((f.predictions[0].made_at for f in found), default=now) - reading,
        site_ids={site for f in found if (site := devices[f.device_id].site_id) is not None})
    filed = Filed()
    held = 0
    for item in found:
        p = item.latest
        site = devices[item.device_id].site_id
        # The passes a ticket needs must rest on readings clear of a finished site episode.
        if site is not None and any(
                read_during_episode(q.made_at, reading, behind.get(site, ()))
                for q in item.predictions[-settings.prediction_passes:]):
            held += 1
            continue
        shown = None
        if store is not None:
            scoring = scoring or ScoringSettings()
            shown = drivers_window(
                store, item, step_s=scoring.step_for(devices[item.device_id].model),
                measurement=scoring.measurement, days=prediction.window_days)
        signal = Signal(
            source=TicketSource.ANALYTICS, score=p.probability,
            hours_to_failure=None if p.rul_days is None else 24 * p.rul_days,
            category=prediction_category(rules, fault_type=p.fault_type, drivers=p.drivers))
        result = file_ticket(
            session, device_id=item.device_id,
            signature=open_predictions.get(item.device_id, item.signature), signal=signal,
            title=(f"Predicted failure ({p.fault}) of {item.device_id}"
                   f"{likely_note(devices[item.device_id].model, item.signature)}"),
            evidence=prediction_evidence(item, shown), now=now, rules=rules)
        filed.count(result)
        if result is not None:
            _link((by_id[q.id] for q in item.predictions), result)
            if result.created:
                # Any of the run's readings: from its first pass's reading span on.
                first = item.predictions[0].made_at
                group_under_site_episode(session, ticket=result.ticket, now=now,
                                         since=first - reading)
    for row in pending:
        row.handled_at = now
    return {"considered": len(pending), "in_maintenance": len(pending) - len(live),
            "after_site_episode": held, **filed.figures()}
