"""Keeping service records at least as long as the handbook asks, and no longer than configured.

Records are kept at least three years (DESIGN.md); a shorter setting is
refused with ``RetentionTooShort``. The purge removes finished tickets closed
before the cut-off, with their history, pauses, alerts, notifications, survey,
parts, vouchers and knowledge-base links, and maintenance records done before
it. It never touches a ticket that is open or closed after the cut-off, nor
the audit log (append-only: the database refuses deletes); it writes an audit
entry saying what it removed. The cut-off is counted in calendar years, so a
29 February moves it earlier, never later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from vigil.audit.service import record
from vigil.db.enums import FINAL_TICKET_STATES
from vigil.errors import InvalidRequest
from vigil.knowledge.models import KnowledgeArticle, TicketArticle
from vigil.maintenance.models import MaintenanceDue, MaintenanceRecord
from vigil.tickets.models import (
    Notification,
    SatisfactionSurvey,
    ServiceReport,
    Ticket,
    TicketAlert,
    TicketEvent,
    TicketPart,
    TicketPause,
)
from vigil.tickets.transitions import SYSTEM, Actor

MINIMUM_YEARS = 3
DEFAULT_YEARS = MINIMUM_YEARS
# Tickets removed per statement, so one purge never holds a huge transaction's worth of locks.
BATCH = 500


class RetentionTooShort(InvalidRequest):
    """A retention period under the minimum the service handbook requires."""


def check_years(years: int) -> int:
    if isinstance(years, bool) or not isinstance(years, int):
        raise RetentionTooShort(f"retention is a whole number of years, not {years!r}")
    if years < MINIMUM_YEARS:
        raise RetentionTooShort(
            f"service records are kept at least {MINIMUM_YEARS} years; a retention of "
            f"{years} year(s) is refused")
    return years


def cutoff(now: datetime, years: int) -> datetime:
    """The instant ``years`` calendar years before ``now``; records finished before it may go."""
    check_years(years)
    try:
        return now.replace(year=now.year - years)
    except ValueError:  # 29 February: take the 28th, a day earlier, keeping more
        return now.replace(year=now.year - years, day=28)


@dataclass
class PurgeReport:
    cutoff: datetime
    tickets: int = 0
    maintenance_records: int = 0


_DEPENDENTS = (TicketEvent, TicketPause, TicketAlert, Notification, SatisfactionSurvey,
               TicketArticle, TicketPart, ServiceReport)


def purge(session: Session, *, now: datetime, years: int = DEFAULT_YEARS,
          actor: Actor = SYSTEM) -> PurgeReport:
    """Remove service records finished before the cut-off (see the module's docstring)."""
    report = PurgeReport(cutoff=cutoff(now, years))
    final = [s.value for s in FINAL_TICKET_STATES]
    while True:
        ids = list(session.scalars(select(Ticket.id).where(
            Ticket.state.in_(final), Ticket.closed_at.is_not(None),
            Ticket.closed_at < report.cutoff).order_by(Ticket.id).limit(BATCH)))
        if not ids:
            break
        for table in _DEPENDENTS:
            session.execute(delete(table).where(table.ticket_id.in_(ids)))
        session.execute(update(Ticket).where(Ticket.parent_id.in_(ids)).values(parent_id=None))
        session.execute(update(MaintenanceDue).where(MaintenanceDue.ticket_id.in_(ids))
                        .values(ticket_id=None))
        session.execute(update(MaintenanceRecord).where(MaintenanceRecord.ticket_id.in_(ids))
                        .values(ticket_id=None))
        session.execute(update(MaintenanceRecord)
                        .where(MaintenanceRecord.corrective_ticket_id.in_(ids))
                        .values(corrective_ticket_id=None))
        session.execute(update(KnowledgeArticle).where(KnowledgeArticle.source_ticket_id.in_(ids))
                        .values(source_ticket_id=None))
        session.execute(delete(Ticket).where(Ticket.id.in_(ids)))
        report.tickets += len(ids)
    removed = session.execute(delete(MaintenanceRecord).where(
        MaintenanceRecord.performed_at < report.cutoff))
    report.maintenance_records = int(getattr(removed, "rowcount", 0) or 0)
    if report.tickets or report.maintenance_records:
        record(session, actor=actor.name, action="retention.purged", object_type="retention",
               object_id=None, at=now,
               details={"cutoff": report.cutoff.isoformat(), "years": years,
                        "tickets": report.tickets,
                        "maintenance_records": report.maintenance_records})
    return report
