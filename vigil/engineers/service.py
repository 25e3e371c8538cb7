"""Engineers as the desk needs them: who is on duty, who is qualified, who should take a ticket."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from vigil.db.enums import OPEN_TICKET_STATES, Priority
from vigil.engineers.assignment import Candidate, rank
from vigil.engineers.models import Engineer
from vigil.tickets.models import Ticket
from vigil.tickets.sla import ServiceCalendar


def calendar_of(engineer: Engineer) -> ServiceCalendar:
    """An engineer's working time; no hours means on call around the clock on working days."""
    days_off = frozenset(date.fromisoformat(str(d)) for d in engineer.days_off)
    hours = (None if engineer.hours_start is None or engineer.hours_end is None
             else (engineer.hours_start, engineer.hours_end))
    return ServiceCalendar(timezone=engineer.timezone, hours=hours,
                           workdays=frozenset(engineer.workdays), holidays=days_off)


def candidates(session: Session) -> list[Candidate]:
    """Every active engineer with qualifications and current open-ticket load, in two queries."""
    engineers = session.scalars(
        select(Engineer).where(Engineer.active.is_(True))
        .options(selectinload(Engineer.qualifications), selectinload(Engineer.user))).all()
    load: dict[int, list[Priority]] = defaultdict(list)
    rows = session.execute(select(Ticket.assigned_to_id, Ticket.priority).where(
        Ticket.assigned_to_id.is_not(None), Ticket.state.in_(OPEN_TICKET_STATES)))
    for user_id, priority in rows:
        if user_id is not None:
            load[user_id].append(Priority(priority))
    return [Candidate(engineer_id=e.id, user_id=e.user_id, name=e.user.display_name,
                      region=e.region, calendar=calendar_of(e),
                      qualified_until={q.device_model: q.expires_on for q in e.qualifications},
                      open_tickets=tuple(load.get(e.user_id, ())))
            for e in engineers if e.user.active]


def on_duty(session: Session, *, now: datetime, model: str | None) -> list[Candidate]:
    return rank(candidates(session), model=model, region=None, now=now)


def suggest_assignee(session: Session, *, ticket: Ticket, now: datetime) -> list[Candidate]:
    """Ranked suggestions for a ticket: the first is the one to assign."""
    model = ticket.device.model if ticket.device is not None else None
    region = ticket.site.region if ticket.site is not None else None
    return rank(candidates(session), model=model, region=region, now=now)
