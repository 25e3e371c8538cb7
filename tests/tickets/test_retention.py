"""Retention on SQLite and PostgreSQL: nothing younger than the period goes, never under 3 years."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.tickets.support import Org, seed
from tests.tickets.test_survey import closed_ticket
from vigil.audit.models import AuditLog
from vigil.config import DeskSettings
from vigil.db.enums import Severity, TicketSource
from vigil.tickets import service, survey, voucher
from vigil.tickets.models import Ticket, TicketEvent
from vigil.tickets.priority import Signal, TicketRules
from vigil.tickets.retention import RetentionTooShort, check_years, cutoff, purge
from vigil.tickets.scheduled import register_retention
from vigil.tickets.service import Evidence
from vigil.tickets.transitions import Actor, ActorRole

NOW = datetime(2029, 12, 2, 12, 0, tzinfo=UTC)


def test_the_cutoff_is_calendar_years_and_never_under_three() -> None:
    assert cutoff(NOW, 3) == datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    leap = datetime(2028, 2, 29, 8, 0, tzinfo=UTC)
    assert cutoff(leap, 3) == datetime(2025, 2, 28, 8, 0, tzinfo=UTC)
    assert check_years(5) == 5
    for short in (2, 0, -1):
        with pytest.raises(RetentionTooShort, match="at least 3 years"):
            check_years(short)
    with pytest.raises(RetentionTooShort):
        check_years(2.5)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="at least 3 years"):
        DeskSettings(retention_years=2)


def test_a_short_setting_stops_the_job_from_being_registered() -> None:
    from apscheduler.schedulers.background import BackgroundScheduler

    settings = DeskSettings.model_construct(retention_years=1, retention_interval_s=60.0)
    with pytest.raises(RetentionTooShort):
        register_retention(BackgroundScheduler(), None, settings)  # type: ignore[arg-type]


@pytest.fixture
def org(factory: sessionmaker[Session]) -> Org:
    return seed(factory)


def test_only_records_finished_before_the_cutoff_go(
        factory: sessionmaker[Session], org: Org) -> None:
    edge = cutoff(NOW, 3)
    with factory() as s, s.begin():
        # Closing takes 2 hours after opening (see closed_ticket).
        old = closed_ticket(s, device="vent-1", at=edge - timedelta(hours=2, seconds=1))
        young = closed_ticket(s, device="vent-2", at=edge - timedelta(hours=2) + timedelta(
            seconds=1))
        # Opened long before the cut-off but never finished: kept.
        still_open = service.open_or_join(
            s, device_id="vent-3", signature="event:E7", title="E7",
            signal=Signal(TicketSource.DEVICE_EVENT, severity=Severity.ERROR),
            evidence=Evidence(at=edge - timedelta(days=400)), now=edge - timedelta(days=400),
            rules=TicketRules.load()).ticket.id
        survey.issue(s, ticket_id=old, now=edge)
        voucher.issue(s, ticket_id=old, actor=Actor("eve", ActorRole.ENGINEER), now=edge,
                      with_pdf=False)
    with factory() as s, s.begin():
        audits_before = s.scalar(select(func.count()).select_from(AuditLog))
        report = purge(s, now=NOW, years=3)
        assert report.tickets == 1
    with factory() as s:
        assert s.get(Ticket, old) is None and s.get(Ticket, young) is not None
        assert s.get(Ticket, still_open) is not None
        assert s.scalar(select(func.count()).select_from(TicketEvent)
                        .where(TicketEvent.ticket_id == old)) == 0
        # The audit log keeps everything and says what was removed.
        audits = s.scalar(select(func.count()).select_from(AuditLog))
        assert audits == (audits_before or 0) + 1
    with factory() as s, s.begin():
        assert purge(s, now=NOW, years=3).tickets == 0
        # Five years keeps even more; the young ticket is safe either way.
        assert purge(s, now=NOW + timedelta(days=365), years=5).tickets == 0
