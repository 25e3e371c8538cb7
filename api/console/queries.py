"""Read queries the pages need beyond the API's routes, each restricted to what the caller may see.

Visibility comes from ``vigil.auth.visibility``, as in the API: an object the
caller may not see is never loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, func, nulls_last, select, true
from sqlalchemy.orm import Session

from vigil.auth.service import Principal
from vigil.auth.visibility import device_visible, ticket_visible, visible_site_ids
from vigil.db.enums import FINAL_TICKET_STATES, RoleName
from vigil.devices.models import Customer, Device, Prediction, Site
from vigil.diagnosis.models import DiagnosisSession
from vigil.knowledge.models import TicketArticle
from vigil.tickets.models import Ticket
from vigil.users.models import Role, User

_FINAL = sorted(state.value for state in FINAL_TICKET_STATES)
# A device whose latest prediction gives at least this probability of failure is "at risk".
AT_RISK = 0.5


def _site_visible(principal: Principal) -> ColumnElement[bool]:
    ids = visible_site_ids(principal)
    return true() if ids is None else Site.id.in_(ids)


@dataclass(frozen=True, slots=True)
class SiteRow:
    id: int
    name: str
    customer: str


@dataclass(frozen=True, slots=True)
class FleetSummary:
    devices: int
    online: int
    with_open_tickets: int
    at_risk: int


def sites(session: Session, principal: Principal) -> list[SiteRow]:
    rows = session.execute(
        select(Site.id, Site.name, Customer.name).join(Customer)
        .where(_site_visible(principal)).order_by(Customer.name, Site.name))
    return [SiteRow(*row) for row in rows]


def models(session: Session, principal: Principal) -> list[str]:
    return list(session.scalars(select(Device.model).where(device_visible(principal))
                                .distinct().order_by(Device.model)))


def fleet_summary(session: Session, principal: Principal) -> FleetSummary:
    """Counts over every device the caller may see, in one pass."""
    open_tickets = (select(func.count(Ticket.id))
                    .where(Ticket.device_id == Device.id, Ticket.state.not_in(_FINAL))
                    .correlate(Device).scalar_subquery())
    risk = (select(Prediction.probability).where(Prediction.device_id == Device.id)
            .order_by(Prediction.made_at.desc(), Prediction.id.desc()).limit(1)
            .correlate(Device).scalar_subquery())
    row = session.execute(select(
        func.count(),
        func.coalesce(func.sum(case((Device.online.is_(True), 1), else_=0)), 0),
        func.coalesce(func.sum(case((open_tickets > 0, 1), else_=0)), 0),
        func.coalesce(func.sum(case((risk >= AT_RISK, 1), else_=0)), 0),
    ).where(device_visible(principal))).one()
    return FleetSummary(*(int(v) for v in row))


def next_deadline() -> Any:
    """The deadline of the first service level not yet met: what the queue sorts by."""
    return case(
        (Ticket.responded_at.is_(None), Ticket.respond_by),
        (Ticket.diagnosed_at.is_(None), Ticket.diagnose_by),
        (Ticket.restored_at.is_(None), Ticket.restore_by),
        else_=None,
    )


@dataclass(frozen=True, slots=True)
class QueueFilter:
    priority: str | None = None
    state: str | None = None
    mine: bool = False
    include_closed: bool = False


@dataclass(frozen=True, slots=True)
class QueuePage:
    tickets: list[Ticket]
    page: int
    has_next: bool


QUEUE_PAGE = 50


def ticket_queue(session: Session, principal: Principal, f: QueueFilter,
                 page: int = 1) -> QueuePage:
    """Tickets by the deadline closest to breach first; finished ones only when asked for."""
    query = select(Ticket).where(ticket_visible(principal))
    if not f.include_closed:
        query = query.where(Ticket.state.not_in(_FINAL))
    if f.priority:
        query = query.where(Ticket.priority == f.priority)
    if f.state:
        query = query.where(Ticket.state == f.state)
    if f.mine:
        query = query.where(Ticket.assigned_to_id == principal.user_id)
    query = query.order_by(nulls_last(next_deadline().asc()), Ticket.priority, Ticket.id)
    rows = list(session.scalars(query.offset((page - 1) * QUEUE_PAGE).limit(QUEUE_PAGE + 1)))
    return QueuePage(rows[:QUEUE_PAGE], page, len(rows) > QUEUE_PAGE)


def user_names(session: Session, ids: set[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = session.execute(select(User.id, User.display_name).where(User.id.in_(wanted)))
    return {int(i): str(n) for i, n in rows}


def assignees(session: Session) -> list[tuple[int, str]]:
    """Active engineers and managers: whom a ticket may be assigned to."""
    rows = session.execute(
        select(User.id, User.display_name).join(User.roles)
        .where(User.active.is_(True), Role.name.in_([RoleName.ENGINEER, RoleName.MANAGER]))
        .distinct().order_by(User.display_name))
    return [(int(i), str(n)) for i, n in rows]


def site_names(session: Session, principal: Principal, ids: set[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = session.execute(select(Site.id, Site.name).where(
        Site.id.in_(wanted), _site_visible(principal)))
    return {int(i): str(n) for i, n in rows}


def deadline_window(ticket: Ticket) -> tuple[str, datetime | None]:
    """The milestone a ticket works towards now and its deadline."""
    for name, met, due in (("respond", ticket.responded_at, ticket.respond_by),
                           ("diagnose", ticket.diagnosed_at, ticket.diagnose_by),
                           ("restore", ticket.restored_at, ticket.restore_by)):
        if met is None:
            return name, due
    return "done", None


def tickets_near_breach(session: Session, principal: Principal, *, within: timedelta,
                        now: datetime, limit: int = 25) -> list[Ticket]:
    """Open tickets whose next deadline has passed or falls within ``within``, soonest first."""
    due = next_deadline()
    return list(session.scalars(
        select(Ticket).where(ticket_visible(principal), Ticket.state.not_in(_FINAL),
                             due.is_not(None), due <= now + within)
        .order_by(due.asc(), Ticket.id).limit(limit)))


def article_verdicts(session: Session, ticket_id: int) -> dict[int, bool | None]:
    """The verdict recorded on this ticket for each article it used (None: used, not rated)."""
    rows = session.execute(select(TicketArticle.article_id, TicketArticle.helpful)
                           .where(TicketArticle.ticket_id == ticket_id))
    return {int(article_id): helpful for article_id, helpful in rows}


def diagnosis_sessions(session: Session, device_id: str, limit: int = 10) -> list[DiagnosisSession]:
    """A device's latest diagnosis sessions, newest first (the service organisation sees all)."""
    return list(session.scalars(
        select(DiagnosisSession).where(DiagnosisSession.device_id == device_id)
        .order_by(DiagnosisSession.opened_at.desc(), DiagnosisSession.id.desc()).limit(limit)))
