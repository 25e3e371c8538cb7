"""The customer's satisfaction survey on a closed ticket (1 to 5 and a comment).

The service desk stores the answer on the ticket (``satisfaction_score`` and
``satisfaction_comment``) but has no operation for it yet; this one writes it
the desk's way, with a ticket event and an audit entry, inside the caller's
transaction.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from vigil.db.enums import TicketEventKind, TicketState
from vigil.errors import Conflict, Forbidden, InvalidRequest
from vigil.tickets import service
from vigil.tickets.transitions import Actor, ActorRole

MAX_COMMENT = 2000


def record_survey(session: Session, *, ticket_id: int, score: int, comment: str, actor: Actor,
                  now: datetime) -> None:
    """Record the customer's answer once; a closed ticket is the only one asked about."""
    if actor.role is not ActorRole.CUSTOMER:
        raise Forbidden("only the customer answers the satisfaction survey")
    if not 1 <= score <= 5:
        raise InvalidRequest("score: a whole number from 1 to 5")
    if len(comment) > MAX_COMMENT:
        raise InvalidRequest(f"comment: at most {MAX_COMMENT} characters")
    ticket = service.get_ticket(session, ticket_id=ticket_id, lock=True)
    if ticket.state != TicketState.CLOSED:
        raise Conflict(f"ticket {ticket_id} is {ticket.state}; the survey follows closing")
    if ticket.satisfaction_score is not None:
        raise Conflict(f"the survey of ticket {ticket_id} has been answered")
    ticket.satisfaction_score = score
    ticket.satisfaction_comment = comment.strip() or None
    ticket.updated_at = now
    service.record_event(session, ticket, kind=TicketEventKind.COMMENT, actor=actor, at=now,
                         note=f"satisfaction survey answered: {score} of 5",
                         data={"satisfaction_score": score})
