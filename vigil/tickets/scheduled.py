"""The service desk's scheduled jobs: fault-code intake, the SLA watchdog, the notification
outbox, and retention.

``register`` adds them to an APScheduler scheduler (``vigil jobs`` runs it);
each job opens its own transaction, so a failed pass leaves nothing half done
and the next pass starts over from what is in the database.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.base import BaseScheduler
from sqlalchemy.orm import Session, sessionmaker

from vigil.config import DeskSettings
from vigil.db.enums import Channel
from vigil.db.session import transaction
from vigil.tickets.escalation import EscalationPolicy
from vigil.tickets.intake import IntakeReport, handle_device_events
from vigil.tickets.notifiers import Notifier, SmtpNotifier, WebhookNotifier
from vigil.tickets.priority import DEFAULT_RULES_FILE, TicketRules, read_rules_document
from vigil.tickets.retention import PurgeReport, check_years, purge
from vigil.tickets.watchdog import DeliveryReport, PassReport, Recipients, deliver_due, run_pass

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Desk:
    """What the desk's jobs need, read once from the settings (a bad rules file fails at start)."""

    rules: TicketRules
    policy: EscalationPolicy
    recipients: Recipients
    notifiers: dict[Channel, Notifier]
    at_risk_fraction: float
    reopen_window: timedelta

    @classmethod
    def from_settings(cls, settings: DeskSettings) -> Desk:
        doc = read_rules_document(settings.rules_file or DEFAULT_RULES_FILE)
        notifiers: dict[Channel, Notifier] = {}
        if settings.webhook_urls:
            if settings.webhook_secret is None:
                raise ValueError("desk.webhook_urls needs desk.webhook_secret to sign with")
            notifiers[Channel.WEBHOOK] = WebhookNotifier(
                settings.webhook_secret.get_secret_value().encode())
        if settings.smtp_host:
            password = settings.smtp_password
            notifiers[Channel.EMAIL] = SmtpNotifier(
                settings.smtp_host, settings.smtp_port, settings.smtp_sender,
                username=settings.smtp_username,
                password=password.get_secret_value() if password is not None else None,
                starttls=settings.smtp_starttls)
        return cls(rules=TicketRules.from_document(doc),
                   policy=EscalationPolicy.from_document(doc),
                   recipients=Recipients(webhooks=tuple(settings.webhook_urls),
                                         email=bool(settings.smtp_host)),
                   notifiers=notifiers, at_risk_fraction=settings.at_risk_fraction,
                   reopen_window=timedelta(days=settings.reopen_window_days))


def watchdog_job(factory: sessionmaker[Session], desk: Desk,
                 clock: Callable[[], datetime] = utc_now) -> PassReport:
    began = time.perf_counter()
    with transaction(factory) as session:
        report = run_pass(session, now=clock(), policy=desk.policy, recipients=desk.recipients,
                          at_risk_fraction=desk.at_risk_fraction)
    log.info("watchdog: %d open tickets, %d at risk, %d breached, %d new alerts, "
             "%d escalation steps, %d notifications queued in %.3f s", report.tickets,
             report.at_risk, report.breached, report.new_alerts, report.steps,
             report.notifications, time.perf_counter() - began)
    return report


def intake_job(factory: sessionmaker[Session], desk: Desk,
               clock: Callable[[], datetime] = utc_now) -> IntakeReport:
    with transaction(factory) as session:
        report = handle_device_events(session, now=clock(), rules=desk.rules)
    if report.events:
        log.info("device events: %d read, %d tickets opened, %d joined, %d not faults",
                 report.events, report.opened, report.joined, report.ignored)
    return report


def delivery_job(factory: sessionmaker[Session], desk: Desk,
                 clock: Callable[[], datetime] = utc_now) -> DeliveryReport:
    report = deliver_due(factory, notifiers=desk.notifiers, clock=clock)
    if report.sent or report.retried or report.failed:
        log.info("notifications: %d sent, %d to retry, %d failed", report.sent, report.retried,
                 report.failed)
    return report


def register(scheduler: BaseScheduler, factory: sessionmaker[Session],
             settings: DeskSettings) -> Desk:
    """Add the fault-code intake, the watchdog and the delivery job; one instance of each runs."""
    desk = Desk.from_settings(settings)
    scheduler.add_job(watchdog_job, "interval", seconds=settings.watchdog_interval_s,
                      args=(factory, desk), id="desk.watchdog", max_instances=1,
                      coalesce=True, replace_existing=True)
    scheduler.add_job(intake_job, "interval", seconds=settings.intake_interval_s,
                      args=(factory, desk), id="desk.intake", max_instances=1,
                      coalesce=True, replace_existing=True)
    scheduler.add_job(delivery_job, "interval", seconds=settings.delivery_interval_s,
                      args=(factory, desk), id="desk.delivery", max_instances=1,
                      coalesce=True, replace_existing=True)
    return desk


def retention_job(factory: sessionmaker[Session], years: int,
                  clock: Callable[[], datetime] = utc_now) -> PurgeReport:
    with transaction(factory) as session:
        report = purge(session, now=clock(), years=years)
    log.info("retention: %d tickets and %d maintenance records finished before %s removed",
             report.tickets, report.maintenance_records, report.cutoff.isoformat())
    return report


def register_retention(scheduler: BaseScheduler, factory: sessionmaker[Session],
                       settings: DeskSettings) -> None:
    """Add the daily retention job; a period under three years fails here, at start."""
    years = check_years(settings.retention_years)
    scheduler.add_job(retention_job, "interval", seconds=settings.retention_interval_s,
                      args=(factory, years), id="desk.retention", max_instances=1,
                      coalesce=True, replace_existing=True)
