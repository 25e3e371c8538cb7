"""What a satisfaction-survey link asks about, read by its token (no sign-in).

Beside ``survey`` (issuing, finding and answering): the API's survey page shows
its question from this; it says only what the customer who got the link already
knows (the ticket's title, the device, when the ticket closed), and refuses
an unknown, answered or expired link exactly as ``survey.answer`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from vigil.errors import Conflict, Forbidden
from vigil.tickets.survey import find


@dataclass(frozen=True, slots=True)
class SurveyQuestion:
    title: str
    device_model: str | None
    device_serial: str | None
    closed_at: datetime | None
    expires_at: datetime


def question(session: Session, *, token: str, now: datetime) -> SurveyQuestion:
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
