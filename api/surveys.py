"""The satisfaction survey by its link's token: no sign-in, the token is the permission.

The token is 32 random bytes (``vigil.tickets.survey``), so it cannot be
guessed; what a link shows is only what its recipient already knows. Answers
are never cached (the token is in the URL) and pages send no referrer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Db
from api.problems import responses
from vigil.db.base import utcnow
from vigil.tickets import survey
from vigil.tickets.survey import question

router = APIRouter(prefix="/surveys", tags=["surveys"])

# token_urlsafe(32) is 43 characters of the URL-safe alphabet; a little room either side.
Token = Annotated[str, Path(min_length=20, max_length=128, pattern=r"^[A-Za-z0-9_-]+$",
                            description="the token from the survey link")]
PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


class SurveyOut(BaseModel):
    """What the survey asks about, and nothing else."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "ticket_title": "Occlusion alarm without occlusion", "device_model": "IP-100",
        "device_serial": "IP100-0001", "closed_at": "2026-12-01T15:30:00Z",
        "expires_at": "2026-12-31T15:30:00Z", "scores": [1, 2, 3, 4, 5]}]})

    ticket_title: str
    device_model: str | None
    device_serial: str | None
    closed_at: datetime | None
    expires_at: datetime
    scores: list[int] = Field(description="the scores an answer may give, worst to best")


class SurveyAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "score": 5, "comment": "Fixed the same day, thank you."}]})

    score: int = Field(ge=1, le=5, strict=True, description="1 (poor) to 5 (excellent)")
    comment: str = Field("", max_length=survey.COMMENT_LIMIT)


class SurveyAnswered(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "answered_at": "2026-12-02T09:00:00Z", "score": 5}]})

    answered_at: datetime
    score: int


@router.get("/{token}", response_model=SurveyOut, responses=responses(403, 404, 409, 422),
            summary="What a survey link asks about (no sign-in); answered: 409, expired: 403")
def get_survey(token: Token, db: Db, response: Response) -> SurveyOut:
    response.headers.update(PRIVATE)
    asked = question(db, token=token, now=utcnow())
    return SurveyOut(ticket_title=asked.title, device_model=asked.device_model,
                     device_serial=asked.device_serial, closed_at=asked.closed_at,
                     expires_at=asked.expires_at, scores=[1, 2, 3, 4, 5])


@router.post("/{token}", response_model=SurveyAnswered, responses=responses(403, 404, 409, 422),
             summary="Answer a survey once, 1 to 5 and a comment (no sign-in)")
def answer_survey(token: Token, body: SurveyAnswer, db: Db, response: Response) -> SurveyAnswered:
    response.headers.update(PRIVATE)
    now = utcnow()
    answered = survey.answer(db, token=token, score=body.score, comment=body.comment, now=now)
    assert answered.answered_at is not None
    return SurveyAnswered(answered_at=answered.answered_at, score=body.score)
