"""The satisfaction survey: issued when a ticket closes, answered once through a token.

The token is 32 random bytes sent to the customer (by the caller, in the
closing e-mail or page); only its SHA-256 is stored. A token answers one
survey once, before it expires; issuing again before an answer replaces the
token, so an older link stops working.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.db.enums import TicketEventKind, TicketState
from vigil.errors import Conflict, Forbidden, InvalidRequest, NotFound
from vigil.tickets.models import SatisfactionSurvey
from vigil.tickets.service import get_ticket, record_event
from vigil.tickets.transitions import SYSTEM, Actor, ActorRole

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


def answer(session: Session, *, token: str, score: int, comment: str = "",
           now: datetime) -> SatisfactionSurvey:
    """The customer's answer, 1 to 5 and a comment; once per survey, before it expires."""
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
        raise InvalidRequest(f"the score is a whole number from 1 to 5, not {score!r}")
    if len(comment) > COMMENT_LIMIT:
        raise InvalidRequest(f"the comment has {len(comment)} characters, at most "
                             f"{COMMENT_LIMIT}")
    survey = session.scalars(select(SatisfactionSurvey).where(
        SatisfactionSurvey.token_hash == token_hash(token)).with_for_update()).first()
    if survey is None:
        raise NotFound("no survey has this link")
    if survey.answered_at is not None:
        raise Conflict("this survey was answered already")
    if now >= survey.expires_at:
        raise Forbidden("this survey link has expired")
    survey.answered_at = now
    ticket = get_ticket(session, ticket_id=survey.ticket_id, lock=True)
    ticket.satisfaction_score = score
    ticket.satisfaction_comment = comment.strip() or None
    record_event(session, ticket, kind=TicketEventKind.COMMENT,
                 actor=Actor("customer survey", ActorRole.CUSTOMER), at=now,
                 note=f"satisfaction {score}/5", data={"score": score, "comment": comment})
    return survey
