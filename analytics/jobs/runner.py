"""One `vigil jobs` worker: the passes of each job, their leases, timing, logs and metrics.

A pass is safe to run at any time and in any number of workers: per-device
jobs claim due devices in small batches and write each device's result in the
transaction that releases its lease; fleet-wide jobs claim the job's single
``*`` lease, so one worker runs them per interval. When a job is due is kept
in the lease table, not in memory: after a restart a job runs when it falls
due, not again at once and not a whole interval late. APScheduler only polls.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from analytics.jobs import leases, registry
from analytics.jobs.detector import DecodedStates
from analytics.jobs.metrics import JobMetrics
from analytics.jobs.scoring import score_device
from vigil.config import JobsSettings
from vigil.db.session import transaction
from vigil.devices.models import Device
from vigil.memory import MemoryRelease
from vigil.scoring.models import ModelStatus, ModelVersion, StreamState
from vigil.telemetry.store import TelemetryStore

log = logging.getLogger("analytics.jobs")

Clock = Callable[[], datetime]
# A fleet-wide job's work: done in the caller's transaction, returns what to log.
FleetTask = Callable[[Session, datetime], dict[str, Any]]
# A job every worker runs on its own, safe in parallel by itself (the desk's outbox delivery).
LocalTask = Callable[[], dict[str, Any]]


@dataclass(frozen=True)
class TwoPhaseTask:
    """A fleet-wide job with slow reading and computing (``prepare``, outside any write
    transaction) and a quick write (``apply``, in the transaction that releases the lease)."""

    prepare: Callable[[datetime], Any]
    apply: Callable[[Session, datetime, Any], dict[str, Any]]
    # How long the claim holds: longer than ``prepare`` may take, or another worker starts over.
    lease: timedelta | None = None


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class PassReport:
    """What one pass of one job did, for the log line and the tests."""

    job: str
    units: int = 0
    failures: int = 0
    seconds: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)


class Worker:
    """The jobs of one process; every method is one pass and returns its report."""

    def __init__(
        self,
        *,
        factory: sessionmaker[Session],
        store: TelemetryStore,
        settings: JobsSettings,
        fleet_tasks: dict[str, FleetTask | TwoPhaseTask] | None = None,
        local_tasks: dict[str, LocalTask] | None = None,
        metrics: JobMetrics | None = None,
        clock: Clock = utc_now,
        owner: str | None = None,
        stop: threading.Event | None = None,
        memory: MemoryRelease | None = None,
    ) -> None:
        self.factory = factory
        self.store = store
        self.settings = settings
        self.fleet_tasks = dict(fleet_tasks or {})
        self.local_tasks = dict(local_tasks or {})
        self.metrics = metrics or JobMetrics()
        self.clock = clock
        self.owner = owner or settings.worker_id or leases.worker_name()
        self.stop = stop or threading.Event()
        # Hands what a pass freed back to the system (the service's workers; None: left alone).
        self.memory = memory
        # name -> (promoted version's id, its model), see _load_promoted
        self._promoted: dict[str, tuple[int, Any]] = {}
        self.decoded = DecodedStates(settings.scoring.decoded_states_devices)

    @property
    def ttl(self) -> timedelta:
        return timedelta(seconds=self.settings.lease_ttl_s)

    def interval(self, job: str) -> timedelta:
        return timedelta(seconds=self.settings.intervals_s[job])

    def run(self, job: str) -> PassReport:
        """One pass of ``job`` with its log line and metrics; errors are logged, not raised."""
        started = time.perf_counter()
        try:
            if job == "scoring":
                report = self.scoring_pass()
            elif job in self.local_tasks:
                detail = self.local_tasks[job]()
                report = PassReport(job, units=int(bool(detail)), detail=detail)
            else:
                report = self.fleet_pass(job)
        except Exception:
            self.metrics.failures.labels(job).inc()
            log.exception("%s pass failed after %.2f s%s", job, time.perf_counter() - started,
                          self._release_memory(job))
            return PassReport(job, failures=1, seconds=time.perf_counter() - started)
        report.seconds = time.perf_counter() - started
        if report.units:
            self.metrics.runs.labels(job).inc()
            self.metrics.duration.labels(job).observe(report.seconds)
            log.info("%s: %d units, %d failed, in %.2f s %s%s", job, report.units,
                     report.failures, report.seconds, report.detail, self._release_memory(job))
        if not report.failures:
            self.metrics.last_success.labels(job).set(time.time())
        return report

    def _release_memory(self, job: str) -> str:
        """After a pass that did work: freed memory back to the system; the log line's tail."""
        released = self.memory.after_pass() if self.memory is not None else None
        if released is None:
            return ""
        self.metrics.resident.set(released.after)
        self.metrics.returned.labels(job).inc(released.returned)
        return f"; RSS {released.after / 2**20:.0f} MB, {released.returned / 2**20:.1f} MB returned"

    # -- per-device: streaming scoring ------------------------------------------------------

    def scoring_pass(self) -> PassReport:
        """Score every due device, a claimed batch at a time, until none is due or stop is set."""
        job = "scoring"
        report = PassReport(job)
        totals = {"steps": 0, "alarms": 0, "resets": 0}
        with transaction(self.factory) as session:
            devices = list(session.scalars(select(Device.id)))
            leases.ensure(session, job=job, keys=devices, due_at=self.clock())
            self._load_promoted(session)
        while not self.stop.is_set():
            now = self.clock()
            with transaction(self.factory) as session:
                claimed = leases.claim(session, job=job, owner=self.owner, now=now, ttl=self.ttl,
                                       limit=self.settings.claim_batch)
            if not claimed:
                break
            for index, device_id in enumerate(claimed):
                if self.stop.is_set():
                    with transaction(self.factory) as session:
                        leases.give_back(session, job=job, keys=claimed[index:], owner=self.owner)
                    break
                done = self._score_one(device_id, totals)
                report.units += done
                report.failures += 1 - done
        self._update_lag()
        report.detail = totals
        return report

    def _score_one(self, device_id: str, totals: dict[str, int]) -> int:
        job = "scoring"
        now = self.clock()
        try:
            with transaction(self.factory) as session:
                lease = leases.hold(session, job=job, key=device_id, owner=self.owner, now=now)
                device = session.get(Device, device_id)
                if device is None:  # removed from the registry: nothing to score, ever
                    leases.release(session, lease=lease, now=now, next_due=now + 1000 * self.ttl)
                    return 1
                site = device.site.name if device.site is not None else ""
                model = self._promoted.get(f"multivariate:{device.model}", (0, None))[1]
                result = score_device(session, store=self.store, device=device,
                                      settings=self.settings.scoring, now=now, site=site,
                                      multivariate=model, decoded=self.decoded)
                next_due = now if result.more else now + self.interval(job)
                leases.release(session, lease=lease, now=now, next_due=next_due)
        except (leases.LeaseLost, StaleDataError) as exc:
            self.metrics.leases_lost.labels(job).inc()
            log.warning("scoring %s: %s; nothing written", device_id, exc)
            return 0
        except Exception:
            self.metrics.failures.labels(job).inc()
            log.exception("scoring %s failed; it is retried when its lease expires", device_id)
            return 0
        self.metrics.units.labels(job).inc()
        self.metrics.scored_steps.inc(result.steps)
        self.metrics.scored_samples.inc(result.samples)
        self.metrics.alarms.inc(result.alarms)
        totals["steps"] += result.steps
        totals["alarms"] += result.alarms
        if result.reset or result.dropped_states:
            self.metrics.resets.inc()
            totals["resets"] += 1
        return 1

    def _load_promoted(self, session: Session) -> None:
        """The promoted model of each name, rebuilt only when the promoted version changes."""
        current = dict(session.execute(select(ModelVersion.name, ModelVersion.id).where(
            ModelVersion.status == ModelStatus.PROMOTED.value)).all())
        for name, version_id in current.items():
            if self._promoted.get(name, (None, None))[0] != version_id:
                row = session.get(ModelVersion, version_id)
                try:
                    if row is None:
                        raise registry.UnsafeModel("the promoted version disappeared")
                    self._promoted[name] = (version_id, registry.load(row))
                except Exception:
                    log.exception("promoted model %s (id %d) could not be loaded", name, version_id)
                    self._promoted[name] = (version_id, None)
        for name in set(self._promoted) - set(current):
            del self._promoted[name]

    def _update_lag(self) -> None:
        """Lag: newest telemetry of a device minus its watermark, over the scored devices."""
        try:
            newest = self.store.latest(measurement=self.settings.scoring.measurement)
        except Exception:
            log.warning("could not read the newest telemetry for the lag metric", exc_info=True)
            return
        if newest.empty:
            self.metrics.lag.labels("scoring").set(0)
            return
        with self.factory() as session:
            marks = {device: mark for device, mark in session.execute(
                select(StreamState.device_id, StreamState.watermark_ms)
                .where(StreamState.watermark_ms.is_not(None)))}
        worst = 0.0
        for device_id, when in newest["time"].items():
            mark = marks.get(str(device_id))
            if mark is not None:  # a device not scored yet has no position to lag behind
                worst = max(worst, when.timestamp() - mark / 1000)
        self.metrics.lag.labels("scoring").set(worst)

    # -- fleet-wide jobs --------------------------------------------------------------------

    def fleet_pass(self, job: str) -> PassReport:
        """Run a fleet-wide job if it is due and no other worker holds it."""
        task = self.fleet_tasks[job]
        report = PassReport(job)
        now = self.clock()
        with transaction(self.factory) as session:
            leases.ensure(session, job=job, keys=[leases.FLEET], due_at=now)
        ttl = task.lease if isinstance(task, TwoPhaseTask) and task.lease else self.ttl
        with transaction(self.factory) as session:
            claimed = leases.claim(session, job=job, owner=self.owner, now=now, ttl=ttl, limit=1)
        if not claimed:
            return report
        prepared = task.prepare(now) if isinstance(task, TwoPhaseTask) else None
        try:
            with transaction(self.factory) as session:
                lease = leases.hold(session, job=job, key=leases.FLEET, owner=self.owner,
                                    now=self.clock())
                if isinstance(task, TwoPhaseTask):
                    report.detail = task.apply(session, now, prepared)
                else:
                    report.detail = task(session, now)
                leases.release(session, lease=lease, now=now, next_due=now + self.interval(job))
        except leases.LeaseLost as exc:
            self.metrics.leases_lost.labels(job).inc()
            log.warning("%s: %s; nothing written", job, exc)
            return report
        report.units = 1
        self.metrics.units.labels(job).inc()
        return report
