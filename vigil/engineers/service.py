"""Engineers as the desk needs them: who is on duty, who is qualified, who should take a ticket."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from vigil.audit.service import record
from vigil.db.enums import OPEN_TICKET_STATES, Priority, RoleName
from vigil.engineers.assignment import Candidate, rank
from vigil.engineers.models import Engineer, Qualification
from vigil.errors import Conflict, InvalidRequest, NotFound
from vigil.tickets.models import Ticket
from vigil.tickets.sla import ServiceCalendar
from vigil.users.models import User


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
    region = ticket.site.region if ticket.site is not None else None
    return rank(candidates(session), model=ticket.device_model, region=region, now=now)


# --- administration (administrators; the API checks the role) -------------------------

ENGINEER_FIELDS = frozenset({"region", "timezone", "hours_start", "hours_end", "workdays",
                             "days_off", "active"})


def _check_calendar(values: Mapping[str, Any]) -> dict[str, Any]:
    """The engineer's working time as stored, refused when the desk could not use it."""
    doc = dict(values)
    start, end = doc.get("hours_start"), doc.get("hours_end")
    if (start is None) != (end is None):
        raise InvalidRequest("hours_end: give both working hours or neither (on call)")
    workdays = sorted(set(doc.get("workdays") or []))
    try:
        days_off = [d if isinstance(d, date) else date.fromisoformat(str(d))
                    for d in doc.get("days_off") or []]
        ServiceCalendar(timezone=doc.get("timezone") or "UTC",
                        hours=None if start is None or end is None else (start, end),
                        workdays=frozenset(workdays), holidays=frozenset(days_off))
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    doc["workdays"] = workdays
    doc["days_off"] = sorted({d.isoformat() for d in days_off})
    return doc


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, date | time) else v for k, v in values.items()}


def list_engineers(session: Session) -> list[Engineer]:
    return list(session.scalars(select(Engineer).options(
        selectinload(Engineer.qualifications), selectinload(Engineer.user))
        .order_by(Engineer.id)))


def get_engineer(session: Session, *, engineer_id: int) -> Engineer:
    engineer = session.get(Engineer, engineer_id)
    if engineer is None:
        raise NotFound(f"engineer {engineer_id} not found")
    return engineer


def create_engineer(session: Session, *, user_id: int, values: Mapping[str, Any], actor: str,
                    now: datetime) -> Engineer:
    """Make a user of the service organisation an engineer the desk can assign."""
    unknown = set(values) - ENGINEER_FIELDS
    if unknown:
        raise InvalidRequest(f"unknown engineer fields: {', '.join(sorted(unknown))}")
    user = session.get(User, user_id)
    if user is None:
        raise InvalidRequest(f"user_id: user {user_id} does not exist")
    if not {r.name for r in user.roles} & {RoleName.ENGINEER, RoleName.MANAGER}:
        raise InvalidRequest(f"user_id: user {user_id} is not an engineer or manager")
    if session.scalar(select(Engineer.id).where(Engineer.user_id == user_id)) is not None:
        raise Conflict(f"user_id: user {user_id} is an engineer already")
    doc = _check_calendar({"timezone": "UTC", "workdays": [0, 1, 2, 3, 4], **values})
    engineer = Engineer(user_id=user_id, **doc)
    session.add(engineer)
    session.flush()
    record(session, actor=actor, action="engineer.create", object_type="engineer",
           object_id=engineer.id, at=now, details={"user_id": user_id, **_plain(doc)})
    return engineer


def update_engineer(session: Session, *, engineer_id: int, changes: Mapping[str, Any],
                    actor: str, now: datetime) -> Engineer:
    unknown = set(changes) - ENGINEER_FIELDS
    if unknown:
        raise InvalidRequest(f"unknown engineer fields: {', '.join(sorted(unknown))}")
    engineer = get_engineer(session, engineer_id=engineer_id)
    doc = _check_calendar({name: getattr(engineer, name) for name in ENGINEER_FIELDS}
                          | dict(changes))
    for name in changes:
        setattr(engineer, name, doc[name])
    record(session, actor=actor, action="engineer.update", object_type="engineer",
           object_id=engineer.id, at=now, details=_plain({k: doc[k] for k in changes}))
    return engineer


def _check_dates(qualified_on: date, expires_on: date) -> None:
    if expires_on < qualified_on:
        raise InvalidRequest("expires_on: a qualification expires after it is gained")


def add_qualification(session: Session, *, engineer_id: int, device_model: str,
                      qualified_on: date, expires_on: date, actor: str,
                      now: datetime) -> Qualification:
    engineer = get_engineer(session, engineer_id=engineer_id)
    _check_dates(qualified_on, expires_on)
    if not device_model.strip():
        raise InvalidRequest("device_model: name the device model")
    if session.scalar(select(Qualification.id).where(
            Qualification.engineer_id == engineer.id,
            Qualification.device_model == device_model)) is not None:
        raise Conflict(f"device_model: the engineer is qualified on {device_model!r} already; "
                       "change that qualification")
    qualification = Qualification(device_model=device_model, qualified_on=qualified_on,
                                  expires_on=expires_on)
    # Through the relationship, so an engineer already loaded in this session sees it.
    engineer.qualifications.append(qualification)
    session.flush()
    record(session, actor=actor, action="qualification.create", object_type="engineer",
           object_id=engineer.id, at=now,
           details={"qualification_id": qualification.id, "device_model": device_model,
                    "qualified_on": qualified_on.isoformat(),
                    "expires_on": expires_on.isoformat()})
    return qualification


def update_qualification(session: Session, *, engineer_id: int, qualification_id: int,
                         qualified_on: date | None, expires_on: date | None, actor: str,
                         now: datetime) -> Qualification:
    """Renew (or correct) a qualification's dates after a new assessment."""
    qualification = session.scalar(select(Qualification).where(
        Qualification.id == qualification_id, Qualification.engineer_id == engineer_id))
    if qualification is None:
        raise NotFound(f"qualification {qualification_id} of engineer {engineer_id} not found")
    new_on = qualified_on or qualification.qualified_on
    new_expiry = expires_on or qualification.expires_on
    _check_dates(new_on, new_expiry)
    qualification.qualified_on, qualification.expires_on = new_on, new_expiry
    record(session, actor=actor, action="qualification.update", object_type="engineer",
           object_id=engineer_id,
           details={"qualification_id": qualification.id, "qualified_on": new_on.isoformat(),
                    "expires_on": new_expiry.isoformat()}, at=now)
    return qualification
