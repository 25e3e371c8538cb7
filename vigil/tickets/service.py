"""The service desk's ticket operations, applied inside the caller's transaction.

Every function takes the session and keyword arguments, writes what the pure
rules (``transitions``, ``priority``, ``sla``) decide, records a ``TicketEvent``
and an ``AuditLog`` row for each change, and never commits: the caller owns the
transaction, so a ticket and the audit entry about it are written together or
not at all. Clocks are passed in (``now``), never read here.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vigil.audit.service import record
from vigil.db.enums import (
    FINAL_TICKET_STATES,
    OPEN_TICKET_STATES,
    Category,
    Milestone,
    PauseReason,
    Priority,
    TicketEventKind,
    TicketScope,
    TicketSource,
    TicketState,
)
from vigil.devices.models import Device, Site
from vigil.errors import Conflict, Forbidden, InvalidRequest, NotFound
from vigil.tickets import sla, transitions
from vigil.tickets.models import Contract, Ticket, TicketAlert, TicketEvent, TicketPause
from vigil.tickets.priority import FleetGrouping, Signal, TicketRules, fleet_title, most_urgent
from vigil.tickets.transitions import Actor, ActorRole

# Pieces of evidence kept on the ticket row; every piece is also a ticket event.
RECENT_EVIDENCE = 20
SITE_DESCRIPTION = ("Several devices at this site show the same signature at once: a cause "
                    "in the room or the building's supply, not in one device.")



@dataclass(frozen=True, slots=True)
class Evidence:
    """One observation behind a ticket: when, how strong, and the data to show an engineer."""

    at: datetime
    score: float | None = None
    summary: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "score": self.score, "summary": self.summary,
                "data": dict(self.data)}


@dataclass(frozen=True, slots=True)
class SiteGrouping:
    """When several devices of a site show the same site-wide signature, file one site ticket.

    As Alertmanager groups alerts: an air-conditioning failure that heats a
    whole room, or a sag of the building's mains, is one ticket for the site,
    linking the device tickets, not forty. Which signatures may have such a
    shared cause is the rules file's ``site_grouping``.
    """

    window: timedelta = timedelta(hours=6)
    min_devices: int = 3


@dataclass(frozen=True, slots=True)
class Opened:
    ticket: Ticket
    created: bool
    # The site ticket this evidence was grouped under, if any.
    site_ticket: Ticket | None = None
    # The fleet ticket a new device ticket was linked to, if any.
    fleet_ticket: Ticket | None = None


# --- service terms: which levels, which calendar -----------------------------------


def _dates(values: Sequence[Any]) -> frozenset[date]:
    return frozenset(date.fromisoformat(str(v)) for v in values)


def calendar_of(contract: Contract | None, site: Site | None) -> sla.ServiceCalendar:
    """The clock a contract's service levels run on, in its zone or else the site's."""
    zone = (contract.timezone if contract is not None and contract.timezone else None) or (
        site.timezone if site is not None else "UTC")
    if contract is None:
        return sla.ServiceCalendar.always(zone)
    holidays = _dates(contract.holidays)
    if contract.hours_start is None or contract.hours_end is None:
        return sla.ServiceCalendar(timezone=zone, workdays=frozenset(contract.workdays),
                                   holidays=holidays)
    return sla.ServiceCalendar(timezone=zone, hours=(contract.hours_start, contract.hours_end),
                               workdays=frozenset(contract.workdays), holidays=holidays)


def levels_of(contract: Contract | None) -> sla.ServiceLevels:
    if contract is None or not contract.levels:
        return sla.DEFAULT_SERVICE_LEVELS
    return sla.ServiceLevels.from_minutes(contract.levels)


def contract_for(session: Session, *, site: Site | None, on: date) -> Contract | None:
    """The active contract covering a site on a day: the site's own before its customer's."""
    if site is None:
        return None
    candidates = session.scalars(
        select(Contract).where(
            Contract.active.is_(True),
            (Contract.site_id == site.id)
            | ((Contract.customer_id == site.customer_id) & Contract.site_id.is_(None)),
            (Contract.valid_from.is_(None)) | (Contract.valid_from <= on),
            (Contract.valid_to.is_(None)) | (Contract.valid_to >= on),
        ).order_by(Contract.site_id.is_(None), Contract.id)
    ).first()
    return candidates


def pauses_of(ticket: Ticket) -> list[sla.Pause]:
    return [sla.Pause(start=p.started_at, end=p.ended_at, reason=p.reason)
            for p in ticket.pauses]


def terms_of(ticket: Ticket) -> tuple[sla.ServiceLevels, sla.ServiceCalendar]:
    return levels_of(ticket.contract), calendar_of(ticket.contract, ticket.site)


def service_minutes(ticket: Ticket, milestone: Milestone, met_at: datetime) -> float:
    """Service time from opening to meeting a milestone; the restore clock skips pauses."""
    _levels, calendar = terms_of(ticket)
    pauses = pauses_of(ticket) if milestone is Milestone.RESTORE else []
    taken = sla.service_time_between(ticket.created_at, met_at, calendar, pauses)
    return round(taken.total_seconds() / 60, 3)


def _set_deadlines(ticket: Ticket) -> None:
    levels, calendar = terms_of(ticket)
    due = sla.deadlines(ticket.created_at, ticket.priority, levels, calendar, pauses_of(ticket))
    ticket.respond_by, ticket.diagnose_by, ticket.restore_by = (
        due.respond_by, due.diagnose_by, due.restore_by)


# --- history -------------------------------------------------------------------


def record_event(session: Session, ticket: Ticket, *, kind: TicketEventKind, actor: Actor,
           at: datetime, note: str = "", data: Mapping[str, Any] | None = None,
           from_state: str | None = None, to_state: str | None = None) -> TicketEvent:
    event = TicketEvent(ticket_id=ticket.id, kind=kind, actor=actor.name, at=at, note=note,
                        data=dict(data or {}), from_state=from_state, to_state=to_state)
    session.add(event)
    record(session, actor=actor.name, action=f"ticket.{kind.value}", object_type="ticket",
           object_id=ticket.id, at=at,
           details={"role": actor.role.value, "note": note, "from": from_state, "to": to_state,
                    **dict(data or {})})
    return event


def get_ticket(session: Session, *, ticket_id: int, lock: bool = False) -> Ticket:
    query = select(Ticket).where(Ticket.id == ticket_id)
    if lock:
        query = query.with_for_update()
    ticket = session.scalars(query).first()
    if ticket is None:
        raise NotFound(f"ticket {ticket_id} does not exist")
    return ticket


# --- opening and joining -------------------------------------------------------------


def _find_open(session: Session, *, scope: TicketScope, signature: str,
               device_id: str | None = None, site_id: int | None = None,
               model: str | None = None) -> Ticket | None:
    query = select(Ticket).where(Ticket.scope == scope, Ticket.signature == signature,
                                 Ticket.state.in_(OPEN_TICKET_STATES))
    if scope is TicketScope.DEVICE:
        query = query.where(Ticket.device_id == device_id)
    elif scope is TicketScope.SITE:
        query = query.where(Ticket.site_id == site_id)
    else:
        query = query.where(Ticket.model == model)
    # Lock it: two joiners must not both read the old count and each write count + 1.
    return session.scalars(query.with_for_update()).first()


def _add_evidence(session: Session, ticket: Ticket, evidence: Evidence, actor: Actor,
                  data: Mapping[str, Any] | None = None) -> None:
    ticket.evidence_count = (ticket.evidence_count or 0) + 1
    ticket.first_seen_at = min(filter(None, [ticket.first_seen_at, evidence.at]))
    ticket.last_seen_at = max(filter(None, [ticket.last_seen_at, evidence.at]))
    if evidence.score is not None:
        ticket.peak_score = max(evidence.score, ticket.peak_score or evidence.score)
    recent = list(ticket.evidence.get("recent", []))[-(RECENT_EVIDENCE - 1):]
    ticket.evidence = {"latest": evidence.as_json(), "recent": [*recent, evidence.as_json()],
                       **{k: v for k, v in ticket.evidence.items()
                          if k not in ("latest", "recent")}}
    record_event(session, ticket, kind=TicketEventKind.EVIDENCE, actor=actor, at=evidence.at,
           note=evidence.summary, data={"score": evidence.score, **dict(data or {})})


def _create(session: Session, *, scope: TicketScope, signature: str, device: Device | None,
            site: Site | None, source: TicketSource, priority: Priority, category: Category,
            title: str, description: str, evidence: Evidence, actor: Actor,
            now: datetime, model: str | None = None) -> Ticket | None:
    """Insert a ticket, or return None if another transaction just opened the same one."""
    contract = contract_for(session, site=site, on=now.date())
    ticket = Ticket(scope=scope, signature=signature, device=device, site=site, model=model,
                    contract=contract, source=source, priority=priority, category=category,
                    title=title, description=description, created_at=now, updated_at=now,
                    state=TicketState.OPEN, evidence={"latest": evidence.as_json(),
                                                      "recent": [evidence.as_json()]},
                    evidence_count=1, first_seen_at=evidence.at, last_seen_at=evidence.at,
                    peak_score=evidence.score)
    savepoint = session.begin_nested()
    try:
        session.add(ticket)
        session.flush()
    except IntegrityError:
        # The partial unique index refused a second open ticket for this signature.
        savepoint.rollback()
        return None
    savepoint.commit()
    _set_deadlines(ticket)
    record_event(session, ticket, kind=TicketEventKind.TRANSITION, actor=actor, at=now,
           to_state=TicketState.OPEN, note=title,
           data={"source": source.value, "priority": priority.value,
                 "category": category.value, "signature": signature,
                 "score": evidence.score})
    return ticket


def _raise_priority(session: Session, ticket: Ticket, priority: Priority, actor: Actor,
                    now: datetime) -> None:
    """New evidence may make a ticket more urgent, never less: an engineer lowers it."""
    current = Priority(ticket.priority)
    if most_urgent(current, priority) is current:
        return
    ticket.priority = priority
    _set_deadlines(ticket)
    record_event(session, ticket, kind=TicketEventKind.COMMENT, actor=actor, at=now,
           note=f"priority raised from {current} to {priority} by new evidence",
           data={"priority_from": current.value, "priority_to": priority.value})


def escalate(session: Session, *, ticket_id: int, priority: Priority, actor: Actor,
             now: datetime, note: str) -> Ticket:
    """Make a ticket more urgent for a reason beyond its evidence (overdue planned work)."""
    ticket = get_ticket(session, ticket_id=ticket_id, lock=True)
    _raise_priority(session, ticket, priority, actor, now)
    ticket.updated_at = now
    record_event(session, ticket, kind=TicketEventKind.ESCALATION, actor=actor, at=now,
                 note=note, data={"priority": ticket.priority})
    return ticket


def open_or_join(session: Session, *, device_id: str, signature: str, signal: Signal,
                 title: str, evidence: Evidence, now: datetime, rules: TicketRules,
                 description: str = "", actor: Actor = transitions.SYSTEM,
                 grouping: SiteGrouping | None = None) -> Opened:
    """One ticket per device and fault episode: open one, or add the evidence to the open one.

    Safe under concurrency: the partial unique index on open (device, signature)
    admits one insert; a transaction that loses the race joins the winner's
    ticket instead (on PostgreSQL it waits for the winner to commit first).
    A site-wide signature (``TicketRules.site_wide``) seen on several devices of
    one site within ``grouping.window`` is grouped under one site ticket. A new
    device ticket whose signature shows on enough devices of its model at enough
    sites (``TicketRules.fleet``) is linked to the fleet ticket of that model and
    signature, which it opens if none is open.
    """
    grouping = grouping or SiteGrouping()
    if not signature or len(signature) > 200:
        raise InvalidRequest("a fault signature needs 1 to 200 characters")
    device = session.get(Device, device_id)
    if device is None:
        raise NotFound(f"device {device_id!r} is not registered")
    decision = rules.decide(signal, signature=signature, model=device.model)
    site = device.site
    if decision.site_wide and site is not None:
        site_ticket = _find_open(session, scope=TicketScope.SITE, signature=signature,
                                 site_id=site.id)
        if site_ticket is not None:
            _add_evidence(session, site_ticket, evidence, actor, {"device": device_id})
            _raise_priority(session, site_ticket, decision.priority, actor, now)
            joined = _find_open(session, scope=TicketScope.DEVICE, signature=signature,
                                device_id=device_id)
            return Opened(ticket=joined or site_ticket, created=False, site_ticket=site_ticket)
    for _attempt in range(3):
        ticket = _find_open(session, scope=TicketScope.DEVICE, signature=signature,
                            device_id=device_id)
        if ticket is not None:
            _add_evidence(session, ticket, evidence, actor)
            _raise_priority(session, ticket, decision.priority, actor, now)
            return Opened(ticket=ticket, created=False)
        ticket = _create(session, scope=TicketScope.DEVICE, signature=signature, device=device,
                         site=site, source=signal.source, priority=decision.priority,
                         category=decision.category, title=title, description=description,
                         evidence=evidence, actor=actor, now=now)
        if ticket is not None:
            site_ticket = None
            if decision.site_wide and site is not None:
                site_ticket = _group_at_site(session, ticket=ticket, site=site,
                                             grouping=grouping, actor=actor, now=now,
                                             evidence=evidence, category=decision.category)
            fleet_ticket = None
            if decision.fleet_wide:
                fleet_ticket = _group_in_fleet(session, ticket=ticket, model=device.model,
                                               fleet=rules.fleet, actor=actor, now=now,
                                               evidence=evidence, category=decision.category)
            return Opened(ticket=ticket, created=True, site_ticket=site_ticket,
                          fleet_ticket=fleet_ticket)
    raise Conflict(f"the ticket for {device_id} / {signature} changed three times in a row")


def _find_or_create(session: Session, *, scope: TicketScope, signature: str,
                    create: Callable[[], Ticket | None], site_id: int | None = None,
                    model: str | None = None) -> tuple[Ticket, bool]:
    """The open site or fleet ticket for the signature, opening it with ``create`` if none is
    open; ``True`` with a ticket this call opened. A transaction that loses the race to open
    it finds the winner's on the next try."""
    for _attempt in range(3):
        ticket = _find_open(session, scope=scope, signature=signature, site_id=site_id,
                            model=model)
        if ticket is not None:
            return ticket, False
        ticket = create()
        if ticket is not None:
            return ticket, True
    where = site_id if scope is TicketScope.SITE else model
    raise Conflict(f"the {scope.value} ticket for {where} / {signature} kept changing")


def _open_at_site(session: Session, *, site: Site, signature: str, since: datetime
                  ) -> list[Ticket]:
    """The site's open device tickets for the signature, opened since ``since`` and not yet
    grouped under a site ticket (locked: a racing grouping must wait)."""
    return list(session.scalars(
        select(Ticket).where(Ticket.scope == TicketScope.DEVICE, Ticket.site_id == site.id,
                             Ticket.signature == signature,
                             Ticket.state.in_(OPEN_TICKET_STATES), Ticket.parent_id.is_(None),
                             Ticket.created_at >= since)
        .with_for_update()))


def _adopt(session: Session, site_ticket: Ticket, children: Sequence[Ticket], *,
           devices: Collection[str] = (), actor: Actor, now: datetime) -> None:
    """Group device tickets under the site ticket; its evidence lists every device seen."""
    for child in children:
        child.parent_id = site_ticket.id
        record_event(session, child, kind=TicketEventKind.LINK, actor=actor, at=now,
                     note=f"grouped under site ticket #{site_ticket.id}",
                     data={"parent_id": site_ticket.id})
    seen = {*site_ticket.evidence.get("devices", []), *devices,
            *(t.device_id for t in children if t.device_id)}
    site_ticket.evidence = {**site_ticket.evidence, "devices": sorted(seen)}


def _group_at_site(session: Session, *, ticket: Ticket, site: Site, grouping: SiteGrouping,
                   actor: Actor, now: datetime, evidence: Evidence,
                   category: Category) -> Ticket | None:
    """Open a site ticket once enough devices of the site share the signature; link them."""
    siblings = _open_at_site(session, site=site, signature=ticket.signature,
                             since=now - grouping.window)
    if len({t.device_id for t in siblings}) < grouping.min_devices:
        return None
    site_ticket, _ = _find_or_create(
        session, scope=TicketScope.SITE, signature=ticket.signature, site_id=site.id,
        create=lambda: _create(
            session, scope=TicketScope.SITE, signature=ticket.signature, device=None,
            site=site, source=TicketSource(ticket.source),
            priority=most_urgent(*(Priority(t.priority) for t in siblings)), category=category,
            title=f"Site-wide: {ticket.signature} on {len(siblings)} devices at "
                  f"{site.name}"[:200],
            description=SITE_DESCRIPTION, evidence=evidence, actor=actor, now=now))
    _adopt(session, site_ticket, siblings, actor=actor, now=now)
    return site_ticket


def open_or_join_site(session: Session, *, site_id: int, signature: str, signal: Signal,
                      title: str, evidence: Evidence, devices: Collection[str], now: datetime,
                      rules: TicketRules, actor: Actor = transitions.SYSTEM,
                      grouping: SiteGrouping | None = None) -> Opened:
    """One site ticket for a site-wide signature that most of a site's devices show at once.

    The ticket rules call it for a site episode (``TicketRules.site_episode``: a mains sag
    seen once or twice by every device of a ward, too few times for any device ticket).
    It joins the site's open ticket for the signature or opens one, and groups the site's
    open device tickets for it from within ``grouping.window`` under it, as ``open_or_join``
    does once enough device tickets share a site-wide signature.
    """
    grouping = grouping or SiteGrouping()
    if not rules.site_wide(signature):
        raise InvalidRequest(f"{signature!r} is not a site-wide signature (the rules' "
                             "site_grouping)")
    site = session.get(Site, site_id)
    if site is None:
        raise NotFound(f"site {site_id} does not exist")
    decision = rules.decide(signal, signature=signature, model=None)
    ticket, created = _find_or_create(
        session, scope=TicketScope.SITE, signature=signature, site_id=site.id,
        create=lambda: _create(
            session, scope=TicketScope.SITE, signature=signature, device=None, site=site,
            source=signal.source, priority=decision.priority, category=decision.category,
            title=title[:200], description=SITE_DESCRIPTION, evidence=evidence, actor=actor,
            now=now))
    if not created:
        _add_evidence(session, ticket, evidence, actor, {"devices": sorted(devices)})
        _raise_priority(session, ticket, decision.priority, actor, now)
    _adopt(session, ticket, _open_at_site(session, site=site, signature=signature,
                                          since=now - grouping.window),
           devices=devices, actor=actor, now=now)
    return Opened(ticket=ticket, created=created, site_ticket=ticket)


def group_under_site_episode(session: Session, *, ticket: Ticket, since: datetime,
                             now: datetime, actor: Actor = transitions.SYSTEM) -> Ticket | None:
    """Group a device ticket under its site's open site ticket last seen since ``since``, if
    there is one (the latest seen): the site-wide episode moved the readings the ticket rests
    on (a failure prediction whose window saw a mains sag, or the end of a day-long
    air-conditioning failure), so whoever handles the episode looks at it first, and it closes
    with the episode. Returns the site ticket."""
    if ticket.parent_id is not None or ticket.site_id is None:
        return None
    seen = func.coalesce(Ticket.last_seen_at, Ticket.created_at)
    site_ticket = session.scalars(
        select(Ticket).where(Ticket.scope == TicketScope.SITE, Ticket.site_id == ticket.site_id,
                             Ticket.state.in_(OPEN_TICKET_STATES), seen >= since)
        .order_by(seen.desc(), Ticket.id.desc()).limit(1)).first()
    if site_ticket is not None:
        _adopt(session, site_ticket, [ticket], actor=actor, now=now)
    return site_ticket


def _group_in_fleet(session: Session, *, ticket: Ticket, model: str, fleet: FleetGrouping,
                    actor: Actor, now: datetime, evidence: Evidence,
                    category: Category) -> Ticket | None:
    """Link a new device ticket to its model's fleet ticket for the signature, opening that
    once enough devices at enough sites had tickets for it within ``fleet.window``.

    The fleet ticket is the manager's: it lists its device tickets (``evidence``:
    ``tickets``, ``devices``, ``sites``) and each gets a LINK event, but none becomes
    its child. The devices still need their own repair, a site ticket stays the parent
    of the device tickets it grouped, and the quality report counts the device tickets,
    not the fleet ticket. Tickets cancelled as false alarms are no evidence of a defect,
    and tickets opened before a fleet ticket for the same model and signature was finished
    do not count again towards a new one.
    """
    fleet_ticket = _find_open(session, scope=TicketScope.FLEET, signature=ticket.signature,
                              model=model)
    if fleet_ticket is not None:
        _add_evidence(session, fleet_ticket, evidence, actor,
                      {"device": ticket.device_id, "ticket": ticket.id})
        _link_to_fleet(session, fleet_ticket, [ticket], model=model, actor=actor, now=now)
        return fleet_ticket
    # A finished fleet ticket settled the tickets before it: a new one needs new evidence.
    settled = session.scalar(
        select(func.max(Ticket.closed_at)).where(
            Ticket.scope == TicketScope.FLEET, Ticket.model == model,
            Ticket.signature == ticket.signature, Ticket.state.not_in(OPEN_TICKET_STATES)))
    since = max(now - fleet.window, settled) if settled is not None else now - fleet.window
    siblings = list(session.scalars(
        select(Ticket).join(Device, Device.id == Ticket.device_id)
        .where(Ticket.scope == TicketScope.DEVICE, Ticket.signature == ticket.signature,
               Device.model == model, Ticket.state != TicketState.CANCELLED,
               Ticket.created_at >= since)
        .order_by(Ticket.id)))
    devices = {t.device_id for t in siblings}
    sites = {t.site_id for t in siblings if t.site_id is not None}
    if not fleet.reached(devices=len(devices), sites=len(sites)):
        return None
    fleet_ticket, _ = _find_or_create(
        session, scope=TicketScope.FLEET, signature=ticket.signature, model=model,
        create=lambda: _create(
            session, scope=TicketScope.FLEET, signature=ticket.signature, device=None,
            site=None, model=model, source=TicketSource(ticket.source),
            priority=most_urgent(*(Priority(t.priority) for t in siblings)),
            category=category,
            title=fleet_title(model, ticket.signature, devices=len(devices), sites=len(sites)),
            description="The same fault signature on many devices of this model at several "
                        "sites within days: a cause shared by the model (a batch of parts, "
                        "a firmware defect), not by one device or one place.",
            evidence=evidence, actor=actor, now=now))
    _link_to_fleet(session, fleet_ticket, siblings, model=model, actor=actor, now=now)
    return fleet_ticket


def _link_to_fleet(session: Session, fleet_ticket: Ticket, tickets: Sequence[Ticket], *,
                   model: str, actor: Actor, now: datetime) -> None:
    """Record the links of device tickets not yet linked, and bring the fleet ticket's
    lists, title and priority up to date (a racing transaction may have linked some)."""
    linked = set(fleet_ticket.evidence.get("tickets", []))
    new = [t for t in tickets if t.id not in linked]
    if not new:
        return
    for device_ticket in new:
        record_event(session, device_ticket, kind=TicketEventKind.LINK, actor=actor, at=now,
                     note=f"linked to fleet ticket #{fleet_ticket.id}",
                     data={"fleet_ticket_id": fleet_ticket.id})
    devices = set(fleet_ticket.evidence.get("devices", [])) | {t.device_id for t in new}
    sites = set(fleet_ticket.evidence.get("sites", [])) | {
        t.site_id for t in new if t.site_id is not None}
    fleet_ticket.evidence = {**fleet_ticket.evidence,
                             "tickets": sorted(linked | {t.id for t in new}),
                             "devices": sorted(d for d in devices if d),
                             "sites": sorted(sites)}
    fleet_ticket.title = fleet_title(model, fleet_ticket.signature, devices=len(devices),
                                     sites=len(sites))
    fleet_ticket.updated_at = now
    record_event(session, fleet_ticket, kind=TicketEventKind.LINK, actor=actor, at=now,
                 note="linked device tickets " + ", ".join(f"#{t.id}" for t in new),
                 data={"tickets": [t.id for t in new]})
    _raise_priority(session, fleet_ticket, most_urgent(*(Priority(t.priority) for t in new)),
                    actor, now)


# --- moving a ticket ---------------------------------------------------------------


def _facts(ticket: Ticket) -> transitions.TicketFacts:
    return transitions.TicketFacts(
        state=TicketState(ticket.state), scope=TicketScope(ticket.scope),
        diagnosis_note=ticket.diagnosis_note, verification_result=ticket.verification_result,
        signed_off=ticket.signed_off_at is not None, closed_at=ticket.closed_at)


_MET_COLUMN = {Milestone.RESPOND: "responded_at", Milestone.DIAGNOSE: "diagnosed_at",
               Milestone.RESTORE: "restored_at"}


def transition(session: Session, *, ticket_id: int, to: TicketState, actor: Actor,
               now: datetime, request: transitions.Request | None = None,
               note: str = "",
               reopen_window: timedelta = transitions.DEFAULT_REOPEN_WINDOW) -> Ticket:
    """Move a ticket as the transition table allows, recording who, when and why."""
    request = request or transitions.Request()
    ticket = get_ticket(session, ticket_id=ticket_id, lock=True)
    source = TicketState(ticket.state)
    outcome = transitions.check(_facts(ticket), TicketState(to), actor.role, request, now=now,
                                reopen_window=reopen_window)
    if request.diagnosis_note:
        ticket.diagnosis_note = request.diagnosis_note
    if request.verification_result:
        ticket.verification_result = request.verification_result
    if to == TicketState.CANCELLED:
        ticket.cancel_reason = request.reason
    if actor.role is ActorRole.CUSTOMER and to == TicketState.CLOSED and not ticket.signed_off_at:
        ticket.signed_off_at = now
    for milestone in outcome.meets:
        if getattr(ticket, _MET_COLUMN[milestone]) is None:
            setattr(ticket, _MET_COLUMN[milestone], now)
            setattr(ticket, f"{milestone.value}_minutes", service_minutes(ticket, milestone, now))
    if TicketState(to) in FINAL_TICKET_STATES:
        ticket.closed_at = now
        _end_pause(session, ticket, actor=actor, now=now)
    if outcome.reopens:
        ticket.reopen_count += 1
        ticket.closed_at = None
        ticket.restored_at = None
        ticket.restore_minutes = None
        ticket.verification_result = None
        ticket.signed_off_at = None
        ticket.signed_off_by_id = None
    ticket.state = to
    ticket.updated_at = now
    _acknowledge_alerts(session, ticket, milestones=outcome.meets, actor=actor, now=now)
    record_event(session, ticket, kind=TicketEventKind.TRANSITION, actor=actor, at=now,
           from_state=source, to_state=TicketState(to), note=note or (request.reason or ""),
           data={k: v for k, v in {"diagnosis_note": request.diagnosis_note,
                                   "verification_result": request.verification_result,
                                   "reason": request.reason}.items() if v})
    _follow_parent(session, ticket, actor=actor, now=now)
    return ticket


def _follow_parent(session: Session, parent: Ticket, *, actor: Actor, now: datetime) -> None:
    """Device tickets grouped under a site ticket finish when it finishes (a fleet ticket
    has none: its device tickets are linked, each worked on its own)."""
    if parent.scope == TicketScope.DEVICE or TicketState(parent.state) not in FINAL_TICKET_STATES:
        return
    children = session.scalars(select(Ticket).where(Ticket.parent_id == parent.id,
                                                    Ticket.state.in_(OPEN_TICKET_STATES)))
    for child in children:
        before = child.state
        child.state = parent.state
        child.closed_at = now
        child.updated_at = now
        if parent.state == TicketState.CANCELLED:
            child.cancel_reason = parent.cancel_reason
        record_event(session, child, kind=TicketEventKind.TRANSITION, actor=actor, at=now,
               from_state=before, to_state=TicketState(parent.state),
               note=f"finished with {parent.scope} ticket #{parent.id}",
               data={"parent_id": parent.id})


def _acknowledge_alerts(session: Session, ticket: Ticket, *, milestones: Sequence[Milestone],
                        actor: Actor, now: datetime) -> None:
    """A milestone met, or a ticket finished, stops its escalation."""
    finished = TicketState(ticket.state) in FINAL_TICKET_STATES
    query = select(TicketAlert).where(TicketAlert.ticket_id == ticket.id,
                                      TicketAlert.acknowledged_at.is_(None))
    if not finished:
        query = query.where(TicketAlert.milestone.in_([m.value for m in milestones]))
    for alert in session.scalars(query):
        alert.acknowledged_at = now
        alert.acknowledged_by = actor.name


def acknowledge_alert(session: Session, *, alert_id: int, actor: Actor, now: datetime) -> None:
    """Someone on the escalation chain has taken it: stop notifying further steps."""
    if actor.role not in (ActorRole.ENGINEER, ActorRole.MANAGER):
        raise Forbidden("only the service organisation acknowledges escalations")
    alert = session.get(TicketAlert, alert_id, with_for_update=True)
    if alert is None:
        raise NotFound(f"alert {alert_id} does not exist")
    if alert.acknowledged_at is None:
        alert.acknowledged_at = now
        alert.acknowledged_by = actor.name
        ticket = get_ticket(session, ticket_id=alert.ticket_id)
        record_event(session, ticket, kind=TicketEventKind.ESCALATION, actor=actor, at=now,
               note=f"{alert.milestone} {alert.state} escalation acknowledged",
               data={"alert_id": alert.id})


# --- everything else an engineer does with a ticket -----------------------------------


def comment(session: Session, *, ticket_id: int, actor: Actor, text: str,
            now: datetime) -> TicketEvent:
    if not text.strip():
        raise InvalidRequest("a comment needs some text")
    ticket = get_ticket(session, ticket_id=ticket_id)
    ticket.updated_at = now
    return record_event(session, ticket, kind=TicketEventKind.COMMENT, actor=actor, at=now,
                        note=text)


def assign(session: Session, *, ticket_id: int, assignee_id: int | None, actor: Actor,
           now: datetime) -> Ticket:
    if actor.role not in (ActorRole.ENGINEER, ActorRole.MANAGER, ActorRole.SYSTEM):
        raise Forbidden("only the service organisation assigns tickets")
    ticket = get_ticket(session, ticket_id=ticket_id, lock=True)
    previous = ticket.assigned_to_id
    ticket.assigned_to_id = assignee_id
    ticket.updated_at = now
    record_event(session, ticket, kind=TicketEventKind.ASSIGNMENT, actor=actor, at=now,
           data={"from": previous, "to": assignee_id})
    return ticket


def pause(session: Session, *, ticket_id: int, reason: PauseReason, actor: Actor,
          now: datetime, note: str = "") -> Ticket:
    """Stop the restore clock while the ticket waits on the customer or on parts."""
    if actor.role not in (ActorRole.ENGINEER, ActorRole.MANAGER):
        raise Forbidden("only the service organisation pauses the restore clock")
    ticket = get_ticket(session, ticket_id=ticket_id, lock=True)
    if not ticket.is_open:
        raise Conflict(f"ticket {ticket_id} is {ticket.state}; only open tickets pause")
    if ticket.paused_at is not None:
        raise Conflict(f"ticket {ticket_id} is already paused ({ticket.pause_reason})")
    ticket.paused_at = now
    ticket.pause_reason = reason
    session.add(TicketPause(ticket_id=ticket.id, started_at=now, reason=reason, note=note,
                            actor=actor.name))
    session.flush()
    session.refresh(ticket, ["pauses"])
    _set_deadlines(ticket)
    record_event(session, ticket, kind=TicketEventKind.PAUSE, actor=actor, at=now, note=note,
           data={"reason": PauseReason(reason).value})
    return ticket


def _end_pause(session: Session, ticket: Ticket, *, actor: Actor, now: datetime) -> bool:
    if ticket.paused_at is None:
        return False
    for stretch in ticket.pauses:
        if stretch.ended_at is None:
            stretch.ended_at = now
    ticket.paused_at = None
    ticket.pause_reason = None
    _set_deadlines(ticket)
    record_event(session, ticket, kind=TicketEventKind.RESUME, actor=actor, at=now)
    return True


def resume(session: Session, *, ticket_id: int, actor: Actor, now: datetime) -> Ticket:
    """Restart the restore clock; its deadline moves out by the time it stood still."""
    ticket = get_ticket(session, ticket_id=ticket_id, lock=True)
    if not _end_pause(session, ticket, actor=actor, now=now):
        raise Conflict(f"ticket {ticket_id} is not paused")
    ticket.updated_at = now
    return ticket


def sign_off(session: Session, *, ticket_id: int, actor: Actor, user_id: int,
             now: datetime) -> Ticket:
    """The customer accepts the repair; closing may follow (DESIGN.md: no close without it)."""
    if actor.role is not ActorRole.CUSTOMER:
        raise Forbidden("only the customer signs off a repair")
    ticket = get_ticket(session, ticket_id=ticket_id, lock=True)
    if ticket.state != TicketState.VERIFIED:
        raise Conflict(f"ticket {ticket_id} is {ticket.state}; a repair is signed off once "
                       "it is verified")
    ticket.signed_off_at = now
    ticket.signed_off_by_id = user_id
    ticket.updated_at = now
    record_event(session, ticket, kind=TicketEventKind.COMMENT, actor=actor, at=now,
           note="repair signed off by the customer")
    return ticket


def open_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Ticket)
                          .where(Ticket.state.in_(OPEN_TICKET_STATES))) or 0
