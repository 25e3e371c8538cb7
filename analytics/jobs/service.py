"""The `vigil jobs` service: a worker, APScheduler polling its jobs, the metrics endpoint.

APScheduler (3.x, ``BackgroundScheduler``) calls each job's pass every
``min(interval, poll_s)`` seconds, one pass of a job at a time; whether a pass
finds work is the leases' business (see :mod:`analytics.jobs.runner`), so a
restart neither repeats a job that ran nor waits a full interval for one
that is overdue.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import start_http_server
from sqlalchemy.orm import Session

from analytics.jobs.metrics import JobMetrics
from analytics.jobs.runner import FleetTask, Worker
from vigil.config import Settings
from vigil.telemetry.store import TelemetryStore

log = logging.getLogger("analytics.jobs")

PER_DEVICE_JOBS = ("scoring",)


def watchdog_task() -> FleetTask | None:
    """The service desk's SLA watchdog pass, if this version of the desk has one."""
    try:
        module = importlib.import_module("vigil.tickets.watchdog")
    except ImportError:
        return None
    run_pass: Callable[..., Any] | None = getattr(module, "run_pass", None)
    if run_pass is None:
        return None

    def task(session: Session, now: datetime) -> dict[str, Any]:
        outcome = run_pass(session, now=now)
        return outcome if isinstance(outcome, dict) else {"result": str(outcome)}

    return task


def fleet_tasks(settings: Settings, store: TelemetryStore) -> dict[str, FleetTask]:
    """The fleet-wide jobs this installation can run, by name."""
    from analytics.jobs.retrain import retrain_pass
    from analytics.jobs.ticket_rules import ticket_rules_pass
    from vigil.tickets.priority import TicketRules

    rules = TicketRules.load()

    def ticket_rules(session: Session, now: datetime) -> dict[str, Any]:
        return ticket_rules_pass(session, now=now, settings=settings.jobs.ticket_rules,
                                 rules=rules)

    def retrain(session: Session, now: datetime) -> dict[str, Any]:
        return retrain_pass(session, store=store, now=now,
                            period=timedelta(days=settings.jobs.retrain_days),
                            settings=settings.jobs.scoring)

    tasks: dict[str, FleetTask] = {"ticket_rules": ticket_rules, "retrain": retrain}
    watchdog = watchdog_task()
    if watchdog is not None:
        tasks["watchdog"] = watchdog
    return tasks


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
            if name in PER_DEVICE_JOBS or name in self.worker.fleet_tasks:
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

    engine = make_engine(settings.sql_url)
    store = open_store(settings)
    worker = Worker(factory=make_session_factory(engine), store=store,
                    settings=settings.jobs, fleet_tasks=fleet_tasks(settings, store),
                    metrics=JobMetrics(), stop=stop)
    port = settings.jobs.metrics_port if metrics_port is None else metrics_port
    return JobsService(worker, metrics_host=settings.jobs.metrics_host, metrics_port=port)
