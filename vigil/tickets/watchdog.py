"""The SLA watchdog: finds milestones at risk or breached and walks their escalation chains.

One pass (``run_pass``) looks at every open ticket that is worked on its own
(not grouped under a site or fleet ticket), raises an alert the first time a
milestone is at risk (``at_risk_fraction`` of its service time used) or
breached, and queues the notifications of every escalation step that is due.
Notifications are rows of an outbox, written in the pass's transaction with the
alert that caused them; ``deliver_due`` sends them afterwards, one transaction
each, retrying with backoff. A step's notification key is unique, so a step is
never queued twice, and a sent notification is never sent again by us (a crash
between sending and recording it is the one case a receiver sees it twice; the
key travels with it so the receiver can drop it).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from vigil.db.enums import (
    OPEN_TICKET_STATES,
    AlertState,
    Channel,
    Milestone,
    NotificationStatus,
    RoleName,
    TicketEventKind,
)
from vigil.db.session import transaction
from vigil.engineers import service as engineers
from vigil.engineers.assignment import rank
from vigil.tickets import sla
from vigil.tickets.escalation import FALLBACK, EscalationPolicy, Target
from vigil.tickets.models import Notification, Ticket, TicketAlert
from vigil.tickets.notifiers import MAX_ATTEMPTS, DeliveryError, Notifier, retry_delay
from vigil.tickets.notifiers import Notification as Message
from vigil.tickets.service import pauses_of, record_event, terms_of
from vigil.tickets.transitions import SYSTEM
from vigil.users.models import Role, User

log = logging.getLogger(__name__)

_MET = {Milestone.RESPOND: "responded_at", Milestone.DIAGNOSE: "diagnosed_at",
        Milestone.RESTORE: "restored_at"}


@dataclass
class PassReport:
    tickets: int = 0
    at_risk: int = 0
    breached: int = 0
    new_alerts: int = 0
    steps: int = 0
    notifications: int = 0


@dataclass(frozen=True)
class Recipients:
    """Where notifications go besides people's e-mail: every step also goes to each webhook."""

    webhooks: Sequence[str] = ()
    email: bool = True


def milestone_state(ticket: Ticket, milestone: Milestone, *, now: datetime,
                    levels: sla.ServiceLevels, calendar: sla.ServiceCalendar,
                    at_risk_fraction: float) -> AlertState | None:
    """At risk, breached, or nothing to say (met, fine, or its clock paused)."""
    if getattr(ticket, _MET[milestone]) is not None:
        return None
    pauses: list[sla.Pause] = []
    if milestone is Milestone.RESTORE:
        if ticket.paused_at is not None:
            return None
        pauses = pauses_of(ticket)
    due = getattr(ticket, f"{milestone.value}_by")
    if due is not None and now >= due:
        return AlertState.BREACHED
    duration = levels.duration(ticket.priority, milestone)
    fraction = sla.progress(ticket.created_at, duration, now, calendar, pauses)
    status = sla.classify(fraction, at_risk_fraction)
    if status is sla.MilestoneStatus.BREACHED:
        return AlertState.BREACHED
    if status is sla.MilestoneStatus.AT_RISK:
        return AlertState.AT_RISK
    return None


@dataclass
class _Directory:
    """Who can be told, read once per pass: the on-duty rules need every engineer's calendar."""

    managers: list[User]
    candidates: list[engineers.Candidate]
    users: dict[int, User]

    @classmethod
    def load(cls, session: Session) -> _Directory:
        managers = list(session.scalars(select(User).join(User.roles).where(
            Role.name == RoleName.MANAGER, User.active.is_(True))))
        candidates = engineers.candidates(session)
        ids = {c.user_id for c in candidates}
        users = {u.id: u for u in session.scalars(select(User).where(User.id.in_(ids)))} \
            if ids else {}
        return cls(managers, candidates, users)

    def people(self, ticket: Ticket, target: Target, *,
               now: datetime) -> tuple[Target | None, list[User]]:
        """The users a step reaches, falling back along the chain when a target is empty."""
        current: Target | None = target
        while current is not None:
            if current is Target.ASSIGNEE:
                people = [ticket.assigned_to] if ticket.assigned_to is not None else []
            elif current is Target.ON_DUTY:
                people = [self.users[c.user_id] for c in
                          rank(self.candidates, model=ticket.device_model, region=None, now=now)]
            else:
                people = list(self.managers)
            people = [p for p in people if p.active]
            if people:
                return current, people
            current = FALLBACK[current]
        return None, []


def _queue(session: Session, *, ticket: Ticket, alert: TicketAlert, step: int, target: Target,
           people: Sequence[User], recipients: Recipients, now: datetime,
           known_keys: set[str]) -> int:
    base = f"t{ticket.id}.{alert.milestone}.{alert.state}.s{step}"
    due = getattr(ticket, f"{alert.milestone}_by")
    subject = (f"[Vigil {ticket.priority}] ticket #{ticket.id} {alert.milestone} "
               f"{'BREACHED' if alert.state == AlertState.BREACHED else 'at risk'}: "
               f"{ticket.title}")[:300].replace("\n", " ")
    body = (f"Ticket #{ticket.id} ({ticket.priority}, {ticket.state}): {ticket.title}\n"
            f"Milestone: {alert.milestone}, due {due.isoformat() if due else 'paused'}\n"
            f"Escalation step {step + 1} ({target.value}).\n"
            "Acknowledge the escalation or act on the ticket to stop further notices.")
    data = {"ticket_id": ticket.id, "priority": ticket.priority, "state": ticket.state,
            "milestone": alert.milestone, "alert": alert.state, "step": step,
            "target": target.value, "due": due.isoformat() if due else None,
            "device_id": ticket.device_id, "site_id": ticket.site_id,
            "people": [p.username for p in people]}
    rows = []
    if recipients.email:
        rows += [(Channel.EMAIL, p.email) for p in people if p.email]
    rows += [(Channel.WEBHOOK, url) for url in recipients.webhooks]
    queued = 0
    for channel, address in rows:
        digest = hashlib.sha256(f"{channel}:{address}".encode()).hexdigest()[:12]
        key = f"{base}.{digest}"
        if key in known_keys:
            continue
        known_keys.add(key)
        session.add(Notification(key=key, ticket_id=ticket.id, channel=channel,
                                 recipient=address, subject=subject, body=body, data=data,
                                 created_at=now, next_attempt_at=now))
        queued += 1
    return queued


def run_pass(session: Session, *, now: datetime, policy: EscalationPolicy,
             recipients: Recipients = Recipients(), at_risk_fraction: float = 0.75) -> PassReport:
    """One watchdog pass over every open ticket, in the caller's transaction."""
    report = PassReport()
    tickets = session.scalars(
        select(Ticket).where(Ticket.state.in_(OPEN_TICKET_STATES), Ticket.parent_id.is_(None))
        .options(selectinload(Ticket.contract), selectinload(Ticket.site),
                 selectinload(Ticket.pauses))).all()
    report.tickets = len(tickets)
    alerts: dict[tuple[int, str, str], TicketAlert] = {}
    for alert in session.scalars(select(TicketAlert).join(Ticket).where(
            Ticket.state.in_(OPEN_TICKET_STATES), Ticket.parent_id.is_(None))):
        alerts[(alert.ticket_id, alert.milestone, alert.state)] = alert
    for ticket in tickets:
        levels, calendar = terms_of(ticket)
        for milestone in Milestone:
            state = milestone_state(ticket, milestone, now=now, levels=levels,
                                    calendar=calendar, at_risk_fraction=at_risk_fraction)
            if state is None:
                continue
            report.at_risk += state is AlertState.AT_RISK
            report.breached += state is AlertState.BREACHED
            if (ticket.id, milestone.value, state.value) in alerts:
                continue
            alert = TicketAlert(ticket_id=ticket.id, milestone=milestone, state=state,
                                raised_at=now, next_step=0, next_step_at=now)
            session.add(alert)
            alerts[(ticket.id, milestone.value, state.value)] = alert
            if state is AlertState.BREACHED:
                # The breach takes over the escalation from the warning.
                earlier = alerts.get((ticket.id, milestone.value, AlertState.AT_RISK.value))
                if earlier is not None and earlier.acknowledged_at is None:
                    earlier.acknowledged_at = now
                    earlier.acknowledged_by = SYSTEM.name
            report.new_alerts += 1
            record_event(session, ticket, kind=TicketEventKind.ESCALATION, actor=SYSTEM, at=now,
                   note=f"{milestone} {state.value.replace('_', ' ')}",
                   data={"milestone": milestone.value, "alert": state.value})
    session.flush()
    report.steps, report.notifications = _escalate(session, now=now, policy=policy,
                                                   recipients=recipients)
    return report


def _escalate(session: Session, *, now: datetime, policy: EscalationPolicy,
              recipients: Recipients) -> tuple[int, int]:
    due = session.scalars(
        select(TicketAlert).join(Ticket).where(
            TicketAlert.acknowledged_at.is_(None), TicketAlert.next_step_at <= now,
            Ticket.state.in_(OPEN_TICKET_STATES), Ticket.parent_id.is_(None))
        .options(selectinload(TicketAlert.ticket).selectinload(Ticket.assigned_to),
                 selectinload(TicketAlert.ticket).selectinload(Ticket.device))
        .with_for_update(of=TicketAlert, skip_locked=True)).all()
    if not due:
        return 0, 0
    directory = _Directory.load(session)
    keys = set(session.scalars(select(Notification.key).where(
        Notification.ticket_id.in_({a.ticket_id for a in due}))))
    steps = queued = 0
    for alert in due:
        ticket = alert.ticket
        chain = policy.chain(ticket.priority)
        # Catch up on missed steps (the watchdog was down) with one notice for the latest.
        step = alert.next_step
        while chain.due_at(alert.raised_at, step + 1) <= now:
            step += 1
        target, people = directory.people(ticket, chain.target(step), now=now)
        if target is not None or recipients.webhooks:
            queued += _queue(session, ticket=ticket, alert=alert, step=step,
                             target=target or chain.target(step), people=people,
                             recipients=recipients, now=now, known_keys=keys)
        alert.next_step = step + 1
        alert.next_step_at = chain.due_at(alert.raised_at, step + 1)
        steps += 1
        record_event(session, ticket, kind=TicketEventKind.ESCALATION, actor=SYSTEM, at=now,
               note=f"{alert.milestone} {alert.state}: step {step + 1} "
                    f"({(target or chain.target(step)).value}), "
                    f"{len(people)} people notified",
               data={"alert_id": alert.id, "step": step,
                     "people": [p.username for p in people]})
    return steps, queued


# --- delivery -----------------------------------------------------------------------


@dataclass
class DeliveryReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def deliver_due(factory: sessionmaker[Session], *, notifiers: Mapping[Channel, Notifier],
                clock: Callable[[], datetime], limit: int = 200) -> DeliveryReport:
    """Send due notifications, each in its own transaction, holding its row while sending.

    On PostgreSQL, ``SKIP LOCKED`` lets several delivery workers share the
    outbox without sending one notification twice.
    """
    report = DeliveryReport()
    for _ in range(limit):
        with transaction(factory) as session:
            now = clock()
            row = session.scalars(
                select(Notification).where(
                    Notification.status == NotificationStatus.PENDING,
                    Notification.next_attempt_at <= now,
                    Notification.channel.in_([c.value for c in notifiers]))
                .order_by(Notification.next_attempt_at, Notification.id)
                .limit(1).with_for_update(skip_locked=True)).first()
            if row is None:
                break
            message = Message(key=row.key, subject=row.subject, body=row.body,
                              data=dict(row.data), recipient=row.recipient)
            row.attempts += 1
            try:
                notifiers[Channel(row.channel)].send(message)
            except DeliveryError as exc:
                row.last_error = str(exc)[:1000]
                if exc.permanent or row.attempts >= MAX_ATTEMPTS:
                    row.status = NotificationStatus.FAILED
                    report.failed += 1
                    log.error("notification %s to %s failed for good: %s", row.key,
                              row.recipient, exc)
                else:
                    row.next_attempt_at = now + (exc.retry_after or retry_delay(row.attempts))
                    report.retried += 1
                report.errors.append(f"{row.key}: {exc}")
                continue
            row.status = NotificationStatus.SENT
            row.sent_at = now
            row.last_error = None
            report.sent += 1
    return report
