"""The `vigil jobs` service: a worker, APScheduler polling its jobs, the metrics endpoint.

APScheduler (3.x, ``BackgroundScheduler``) calls each job's pass every
``min(interval, poll_s)`` seconds, one pass of a job at a time; whether a pass
finds work is the leases' business (see :mod:`analytics.jobs.runner`), so a
restart neither repeats a job that ran nor waits a full interval for one
that is overdue.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from datetime import datetime, timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import start_http_server
from sqlalchemy.orm import Session, sessionmaker

from analytics.jobs.metrics import JobMetrics
from analytics.jobs.runner import FleetTask, LocalTask, TwoPhaseTask, Worker
from vigil.config import Settings
from vigil.memory import MemoryRelease
from vigil.telemetry.store import TelemetryStore
from vigil.tickets.priority import TicketRules

log = logging.getLogger("analytics.jobs")

PER_DEVICE_JOBS = ("scoring",)


def desk_tasks(settings: Settings, factory: sessionmaker[Session], desk: Any,
               store: TelemetryStore) -> tuple[dict[str, FleetTask], dict[str, LocalTask]]:
    """The service desk's jobs: the SLA watchdog, the fault-code intake, maintenance plans,
    satisfaction surveys and retention once per interval for the whole fleet (under a lease),
    the notification outbox's delivery in every worker (SKIP LOCKED shares it)."""
    from analytics.jobs.prediction import purge_predictions
    from vigil.auth.service import purge_auth_records
    from vigil.maintenance.scheduled import plan_usage, usage_from_store
    from vigil.maintenance.service import refresh
    from vigil.tickets.intake import handle_device_events
    from vigil.tickets.retention import check_years, purge
    from vigil.tickets.scheduled import delivery_job
    from vigil.tickets.survey import issue_due
    from vigil.tickets.watchdog import run_pass

    # A retention period under the three-year minimum stops the worker here, at start.
    years = check_years(settings.desk.retention_years)
    usage_source = usage_from_store(store)
    public_url = settings.desk.public_url or f"http://{settings.api.host}:{settings.api.port}"

    def watchdog(session: Session, now: datetime) -> dict[str, Any]:
        report = run_pass(session, now=now, policy=desk.policy, recipients=desk.recipients,
                          at_risk_fraction=desk.at_risk_fraction)
        return dataclasses.asdict(report)

    def intake(session: Session, now: datetime) -> dict[str, Any]:
        return dataclasses.asdict(handle_device_events(session, now=now, rules=desk.rules))

    def maintenance(session: Session, now: datetime) -> dict[str, Any]:
        report = refresh(session, now=now, ticket_rules=desk.rules,
                         usage=plan_usage(session, usage_source))
        return dataclasses.asdict(report)

    def surveys(session: Session, now: datetime) -> dict[str, Any]:
        report = issue_due(session, now=now, link_base=f"{public_url}/console/survey",
                           email=desk.recipients.email,
                           window=timedelta(days=settings.desk.survey_window_days),
                           valid_for=timedelta(days=settings.desk.survey_valid_days))
        return dataclasses.asdict(report)

    def retention(session: Session, now: datetime) -> dict[str, Any]:
        report = purge(session, now=now, years=years)
        auth = purge_auth_records(session, now=now)
        predictions = purge_predictions(
            session, now=now, keep=timedelta(days=settings.jobs.prediction.keep_days))
        return {"tickets": report.tickets, "maintenance_records": report.maintenance_records,
                "sign_in_attempts": auth.attempts, "auth_sessions": auth.sessions,
                "predictions": predictions}

    def delivery() -> dict[str, Any]:
        report = delivery_job(factory, desk)
        if not (report.sent or report.retried or report.failed):
            return {}
        return {"sent": report.sent, "retried": report.retried, "failed": report.failed}

    return ({"watchdog": watchdog, "intake": intake, "maintenance": maintenance,
             "surveys": surveys, "retention": retention}, {"delivery": delivery})


def fleet_tasks(settings: Settings, store: TelemetryStore, rules: TicketRules,
                factory: sessionmaker[Session]) -> dict[str, FleetTask | TwoPhaseTask]:
    """The analytics' fleet-wide jobs, by name."""
    from analytics.jobs.prediction import (
        Candidate,
        assess_fleet,
        register_predictor,
        train_predictor,
        write_predictions,
    )
    from analytics.jobs.retrain import register_all, train_all
    from analytics.jobs.ticket_rules import ticket_rules_pass

    def ticket_rules(session: Session, now: datetime) -> dict[str, Any]:
        return ticket_rules_pass(session, now=now, settings=settings.jobs.ticket_rules,
                                 rules=rules, store=store, scoring=settings.jobs.scoring,
                                 prediction=settings.jobs.prediction)

    def train(now: datetime) -> Any:
        with factory() as session:
            detectors = train_all(session, store=store, now=now,
                                  period=timedelta(days=settings.jobs.retrain_days),
                                  settings=settings.jobs.scoring)
            predictor = train_predictor(session, store=store, now=now, settings=settings.jobs)
        return detectors, predictor

    def register(session: Session, now: datetime, trained: Any) -> dict[str, Any]:
        detectors, predictor = trained
        out = register_all(session, trained=detectors, now=now)
        outcome = (register_predictor(session, candidate=predictor, now=now)
                   if isinstance(predictor, Candidate) else predictor)
        out[outcome.name] = (
            f"v{outcome.version} {'promoted' if outcome.promoted else 'kept current'}"
            if outcome.version else outcome.reason)
        return out

    def assess(now: datetime) -> Any:
        with factory() as session:
            return assess_fleet(session, store=store, now=now, settings=settings.jobs)

    def predict(session: Session, now: datetime, assessed: Any) -> dict[str, Any]:
        return write_predictions(session, assessed=assessed, now=now)

    # Training every model may take minutes; a worker that dies mid-way delays it by an hour.
    retrain = TwoPhaseTask(train, register, lease=timedelta(hours=1))
    # Reading a month of each device's steps takes a while for a large fleet: the same.
    prediction = TwoPhaseTask(assess, predict, lease=timedelta(hours=1))
    return {"ticket_rules": ticket_rules, "retrain": retrain, "failure_prediction": prediction}


class JobsService:
    """Runs the configured jobs of one worker until :meth:`stop`."""

    def __init__(self, worker: Worker, *, metrics_host: str, metrics_port: int) -> None:
        self.worker = worker
        self.scheduler = BackgroundScheduler(timezone="UTC")
        self.metrics_host = metrics_host
        self.metrics_port = metrics_port
        self.http: Any = None
        self.jobs = self._schedulable()

    def _schedulable(self) -> list[str]:
        settings = self.worker.settings
        jobs = []
        for name in settings.intervals_s:
            if (name in PER_DEVICE_JOBS or name in self.worker.fleet_tasks
                    or name in self.worker.local_tasks):
                jobs.append(name)
            else:
                log.warning("job %s is configured but not available here; skipped", name)
        return jobs

    @property
    def port(self) -> int:
        return int(self.http.server_port) if self.http is not None else 0

    def start(self) -> None:
        self.http, _thread = start_http_server(self.metrics_port, self.metrics_host,
                                               registry=self.worker.metrics.registry)
        settings = self.worker.settings
        for name in self.jobs:
            every = min(settings.intervals_s[name], settings.poll_s)
            self.scheduler.add_job(self.worker.run, "interval", args=[name], id=name, name=name,
                                   seconds=every, max_instances=1, coalesce=True,
                                   next_run_time=datetime.now().astimezone())
        self.scheduler.start()
        log.info("jobs worker %s running %s; metrics on %s:%d", self.worker.owner,
                 ", ".join(self.jobs), self.metrics_host, self.port)

    def stop(self) -> None:
        """Finish the passes under way (each stops after its current device), then return."""
        self.worker.stop.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
        log.info("jobs worker %s stopped", self.worker.owner)


def open_service(settings: Settings, *, metrics_port: int | None = None,
                 stop: threading.Event | None = None) -> JobsService:
    from vigil.db.session import make_engine, make_session_factory
    from vigil.telemetry import open_store
    from vigil.tickets.scheduled import Desk

    memory = MemoryRelease.here()  # before the store's and the scheduler's threads start
    engine = make_engine(settings.sql_url)
    factory = make_session_factory(engine)
    store = open_store(settings)
    desk = Desk.from_settings(settings.desk)
    fleet, local = desk_tasks(settings, factory, desk, store)
    tasks: dict[str, FleetTask | TwoPhaseTask] = {**fleet}
    tasks.update(fleet_tasks(settings, store, desk.rules, factory))
    intervals = {"watchdog": settings.desk.watchdog_interval_s,
                 "intake": settings.desk.intake_interval_s,
                 "delivery": settings.desk.delivery_interval_s,
                 "maintenance": settings.desk.maintenance_interval_s,
                 "surveys": settings.desk.survey_interval_s,
                 "retention": settings.desk.retention_interval_s, **settings.jobs.intervals_s}
    jobs = settings.jobs.model_copy(update={"intervals_s": intervals})
    worker = Worker(factory=factory, store=store, settings=jobs, fleet_tasks=tasks,
                    local_tasks=local, metrics=JobMetrics(), stop=stop, memory=memory)
    port = settings.jobs.metrics_port if metrics_port is None else metrics_port
    return JobsService(worker, metrics_host=settings.jobs.metrics_host, metrics_port=port)
