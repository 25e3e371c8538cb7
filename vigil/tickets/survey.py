"""The satisfaction survey: issued when a ticket closes, answered once through a token.

The token is 32 random bytes sent to the customer; only its SHA-256 is kept on
the survey. A token answers one survey once, before it expires; issuing again
before an answer replaces the token, so an older link stops working.

``issue_due`` is the desk's job: every closed ticket of the last
``window`` gets its survey, and the customer's users who see the ticket get
the link by e-mail through the notification outbox (the message holds the
link until it is delivered: an outbox that forgot it would lose the survey).
A signed-in customer answers in the portal with ``answer_in_portal``, with or
without the link.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from vigil.db.enums import Channel, RoleName, TicketEventKind, TicketScope, TicketState
from vigil.errors import Conflict, Forbidden, InvalidRequest, NotFound
from vigil.tickets.models import Notification, SatisfactionSurvey, Ticket
from vigil.tickets.service import get_ticket, record_event
from vigil.tickets.transitions import SYSTEM, Actor, ActorRole
from vigil.users.models import Role, User, user_sites

DEFAULT_VALID_FOR = timedelta(days=30)
COMMENT_LIMIT = 2000


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Issued:
    survey: SatisfactionSurvey
    # Give this to the customer; it is not stored anywhere.
    token: str


def issue(session: Session, *, ticket_id: int, now: datetime,
          valid_for: timedelta = DEFAULT_VALID_FOR, actor: Actor = SYSTEM) -> Issued:
    """A survey link for a closed ticket (replacing an unanswered one's token)."""
    if valid_for <= timedelta(0):
        raise InvalidRequest("a survey must stay valid for some time")
    ticket = get_ticket(session, ticket_id=ticket_id, lock=True)
    if ticket.state != TicketState.CLOSED:
        raise Conflict(f"ticket {ticket_id} is {ticket.state}; surveys follow closing")
    token = secrets.token_urlsafe(32)
    survey = session.scalars(select(SatisfactionSurvey).where(
        SatisfactionSurvey.ticket_id == ticket.id).with_for_update()).first()
    if survey is not None and survey.answered_at is not None:
        raise Conflict(f"the survey of ticket {ticket_id} was answered already")
    if survey is None:
        survey = SatisfactionSurvey(ticket_id=ticket.id, token_hash=token_hash(token),
                                    issued_at=now, expires_at=now + valid_for)
        session.add(survey)
    else:
        survey.token_hash, survey.issued_at = token_hash(token), now
        survey.expires_at = now + valid_for
    session.flush()
    record_event(session, ticket, kind=TicketEventKind.COMMENT, actor=actor, at=now,
                 note="satisfaction survey sent",
                 data={"survey_id": survey.id, "expires_at": survey.expires_at.isoformat()})
    return Issued(survey=survey, token=token)


def _check_answer(score: int, comment: str) -> None:
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
        raise InvalidRequest(f"the score is a whole number from 1 to 5, not {score!r}")
    if len(comment) > COMMENT_LIMIT:
        raise InvalidRequest(f"the comment has {len(comment)} characters, at most "
                             f"{COMMENT_LIMIT}")


def _record(session: Session, survey: SatisfactionSurvey, *, score: int, comment: str,
            actor: Actor, now: datetime) -> SatisfactionSurvey:
    if survey.answered_at is not None:
        raise Conflict("this survey was answered already")
    if now >= survey.expires_at:
        raise Forbidden("this survey link has expired")
    survey.answered_at = now
    ticket = get_ticket(session, ticket_id=survey.ticket_id, lock=True)
    ticket.satisfaction_score = score
    ticket.satisfaction_comment = comment.strip() or None
    record_event(session, ticket, kind=TicketEventKind.COMMENT, actor=actor, at=now,
                 note=f"satisfaction survey answered: {score} of 5",
                 data={"score": score, "comment": comment})
    return survey


def answer(session: Session, *, token: str, score: int, comment: str = "",
           now: datetime) -> SatisfactionSurvey:
    """The customer's answer through the link, 1 to 5 and a comment; once, before it expires."""
    _check_answer(score, comment)
    survey = session.scalars(select(SatisfactionSurvey).where(
        SatisfactionSurvey.token_hash == token_hash(token)).with_for_update()).first()
    if survey is None:
        raise NotFound("no survey has this link")
    return _record(session, survey, score=score, comment=comment,
                   actor=Actor("customer survey", ActorRole.CUSTOMER), now=now)


def find(session: Session, *, token: str) -> SatisfactionSurvey:
    """The survey a link belongs to, for the page that asks the question."""
    survey = session.scalars(select(SatisfactionSurvey).where(
        SatisfactionSurvey.token_hash == token_hash(token))).first()
    if survey is None:
        raise NotFound("no survey has this link")
    return survey


@dataclass(frozen=True, slots=True)
class SurveyQuestion:
    title: str
    device_model: str | None
    device_serial: str | None
    closed_at: datetime | None
    expires_at: datetime


def question(session: Session, *, token: str, now: datetime) -> SurveyQuestion:
    """What a link asks about, for the page that asks it (no sign-in): only what the
    customer who got the link already knows. An answered or expired link is refused
    as ``answer`` refuses it."""
    survey = find(session, token=token)
    if survey.answered_at is not None:
        raise Conflict("this survey was answered already")
    if now >= survey.expires_at:
        raise Forbidden("this survey link has expired")
    ticket = survey.ticket
    device = ticket.device
    return SurveyQuestion(title=ticket.title,
                          device_model=device.model if device is not None else None,
                          device_serial=device.serial if device is not None else None,
                          closed_at=ticket.closed_at, expires_at=survey.expires_at)


def answer_in_portal(session: Session, *, ticket_id: int, actor: Actor, score: int,
                     comment: str = "", now: datetime,
                     valid_for: timedelta = DEFAULT_VALID_FOR) -> SatisfactionSurvey:
    """A signed-in customer's answer on a closed ticket they see (the caller checked that).

    Before the desk's job has sent the link, answering here counts as the survey
    being asked now, so the report's response rate stays answers over surveys.
    """
    if actor.role is not ActorRole.CUSTOMER:
        raise Forbidden("only the customer answers the satisfaction survey")
    _check_answer(score, comment)
    ticket = get_ticket(session, ticket_id=ticket_id, lock=True)
    if ticket.state != TicketState.CLOSED:
        raise Conflict(f"ticket {ticket_id} is {ticket.state}; the survey follows closing")
    survey = session.scalars(select(SatisfactionSurvey).where(
        SatisfactionSurvey.ticket_id == ticket.id).with_for_update()).first()
    if survey is None:
        survey = SatisfactionSurvey(ticket_id=ticket.id,
                                    token_hash=token_hash(secrets.token_urlsafe(32)),
                                    issued_at=now, expires_at=now + valid_for)
        session.add(survey)
        session.flush()
    return _record(session, survey, score=score, comment=comment, actor=actor, now=now)


@dataclass(frozen=True, slots=True)
class IssueReport:
    surveys: int
    notifications: int


def _customer_emails(session: Session, ticket: Ticket) -> list[str]:
    """The active customer users who see the ticket's site and have an e-mail address
    (a fleet-wide ticket belongs to no hospital and asks no one)."""
    if ticket.site_id is None:
        return []
    sites = select(user_sites.c.user_id).where(user_sites.c.site_id == ticket.site_id)
    return sorted(set(session.scalars(
        select(User.email).join(User.roles)
        .where(Role.name == RoleName.CUSTOMER, User.active.is_(True),
               User.email.is_not(None), User.id.in_(sites)))))


def issue_due(session: Session, *, now: datetime, link_base: str, email: bool,
              window: timedelta = timedelta(days=7),
              valid_for: timedelta = DEFAULT_VALID_FOR) -> IssueReport:
    """Issue the survey of every ticket closed in the last ``window`` that has none yet.

    A ticket grouped under a site ticket is asked about through its parent; a fleet
    ticket belongs to no hospital and is asked about through its device tickets. Only
    the recent window is read, so switching the job on does not ask about years
    of old repairs. ``link_base`` is the public address the token is appended to;
    with ``email`` the customer's users get the link through the outbox.
    """
    if window <= timedelta(0):
        raise InvalidRequest("the survey window must be positive")
    due = list(session.scalars(
        select(Ticket.id).where(
            Ticket.state == TicketState.CLOSED, Ticket.parent_id.is_(None),
            Ticket.scope != TicketScope.FLEET,
            Ticket.closed_at >= now - window, Ticket.closed_at <= now,
            ~exists().where(SatisfactionSurvey.ticket_id == Ticket.id))
        .order_by(Ticket.id)))
    notifications = 0
    for ticket_id in due:
        issued = issue(session, ticket_id=ticket_id, now=now, valid_for=valid_for)
        ticket = issued.survey.ticket
        if not email:
            continue
        url = link_base.rstrip("/") + "/" + issued.token
        for address in _customer_emails(session, ticket):
            digest = hashlib.sha256(address.encode()).hexdigest()[:12]
            session.add(Notification(
                key=f"survey.t{ticket.id}.s{issued.survey.id}.{digest}", ticket_id=ticket.id,
                channel=Channel.EMAIL, recipient=address,
                subject=f"How did we do? Ticket #{ticket.id}: {ticket.title}"[:300]
                .replace("\n", " "),
                body=(f"Your service ticket #{ticket.id} ({ticket.title}) was closed.\n"
                      f"Please tell us how satisfied you are, 1 to 5, at {url}\n"
                      f"The link works once, until {issued.survey.expires_at:%Y-%m-%d}."),
                data={"ticket_id": ticket.id, "survey_id": issued.survey.id},
                created_at=now, next_attempt_at=now))
            notifications += 1
    return IssueReport(surveys=len(due), notifications=notifications)
