"""Remote-diagnosis sessions: open one, send commands, read the transcript live, close it.

The service organisation only. Every command is committed to the transcript
(with the audit row) before it is published, so what an engineer sees was
written first; results reach the transcript through each API process's
``DiagnosisBus``. The live view is Server-Sent Events reading transcript rows
after a cursor, so it works whichever API process wrote them.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from api.admission import Overloaded
from api.deps import StaffOnly, admission, after_commit, current_principal, session_factory
from api.params import PathId
from api.problems import responses
from vigil.auth.service import Principal
from vigil.db.base import utcnow
from vigil.diagnosis import rules, service
from vigil.diagnosis.bus import DiagnosisBus
from vigil.diagnosis.models import DiagnosisSession, TranscriptEntry
from vigil.diagnosis.schemas import (
    ArgOut,
    CloseIn,
    CommandIn,
    CommandOut,
    EntryOut,
    SessionDetail,
    SessionIn,
    SessionOut,
)
from vigil.errors import Conflict, DomainError, Forbidden

router = APIRouter(prefix="/diagnosis", tags=["diagnosis"])

POLL_S = 0.25
MAX_WAIT_S = 300
# The live readings start at most this far back, and take device clocks this far ahead.
READINGS_BACKLOG = timedelta(minutes=10)
READINGS_SKEW = timedelta(minutes=5)


def _caller(principal: Principal) -> service.Caller:
    return service.Caller(principal.user_id, principal.username, principal.roles)


def _out(session: DiagnosisSession) -> SessionOut:
    return SessionOut(id=session.id, device_id=session.device_id, ticket_id=session.ticket_id,
                      engineer_id=session.engineer_id, opened_at=session.opened_at,
                      expires_at=session.expires_at, closed_at=session.closed_at,
                      close_reason=session.close_reason,
                      active=rules.is_active(expires_at=session.expires_at,
                                             closed_at=session.closed_at, now=utcnow()))


def _entry(entry: TranscriptEntry) -> EntryOut:
    return EntryOut.model_validate(entry)


def _allow_list(request: Request) -> rules.AllowList:
    allow: rules.AllowList = request.app.state.allow_list
    return allow


@router.post("/sessions", response_model=SessionOut, status_code=status.HTTP_201_CREATED,
             responses=responses(401, 403, 404, 409, 422),
             summary="Open a session on an online device, standalone or for one of its tickets")
def open_session(body: SessionIn, ctx: StaffOnly) -> SessionOut:
    session = service.open_session(ctx.db, device_id=body.device_id, ticket_id=body.ticket_id,
                                   caller=_caller(ctx.principal), now=utcnow())
    return _out(session)


@router.get("/sessions/{session_id}", response_model=SessionDetail,
            responses=responses(401, 403, 404),
            summary="One session with its transcript")
def get_session(session_id: PathId, ctx: StaffOnly) -> SessionDetail:
    session = service.get_session(ctx.db, session_id=session_id)
    return SessionDetail(**_out(session).model_dump(), device_state=session.device.state,
                         device_online=session.device.online,
                         transcript=[_entry(e) for e in session.transcript])


@router.get("/sessions/{session_id}/commands", response_model=list[CommandOut],
            responses=responses(401, 403, 404),
            summary="The commands allowed for the session's device model, and which may go now")
def list_commands(session_id: PathId, ctx: StaffOnly, request: Request) -> list[CommandOut]:
    session = service.get_session(ctx.db, session_id=session_id)
    now = utcnow()
    answer = []
    for spec in service.allowed_commands(session, _allow_list(request)):
        reason = None
        try:
            rules.may_send(spec, expires_at=session.expires_at, closed_at=session.closed_at,
                           online=session.device.online, state=session.device.state, now=now)
        except DomainError as exc:
            reason = str(exc)
        answer.append(CommandOut(
            name=spec.name, help=spec.help, changes_device=spec.changes_device,
            timeout_s=spec.timeout_s, available=reason is None, reason=reason,
            args=[ArgOut(name=a.name, type=a.type, min=a.min, max=a.max, required=a.required)
                  for a in spec.args]))
    return answer


@router.post("/sessions/{session_id}/commands", response_model=EntryOut,
             status_code=status.HTTP_202_ACCEPTED, responses=responses(401, 403, 404, 409, 422),
             summary="Send a command to the device; its result or timeout joins the transcript")
def send_command(session_id: PathId, body: CommandIn, ctx: StaffOnly,
                 request: Request) -> EntryOut:
    bus: DiagnosisBus | None = request.app.state.diagnosis
    if bus is None:
        raise Conflict("remote diagnosis is switched off on this server")
    # The session's row lock orders its transcript: ids are written in commit order.
    session = service.get_session(ctx.db, session_id=session_id, lock=True)
    outgoing = service.send_command(ctx.db, session=session, name=body.cmd, args=body.args,
                                    caller=_caller(ctx.principal), now=utcnow(),
                                    allow_list=_allow_list(request))
    after_commit(ctx.db, lambda: bus.deliver(outgoing))
    return _entry(outgoing.entry)


@router.post("/sessions/{session_id}/close", response_model=SessionOut,
             responses=responses(401, 403, 404, 422), summary="Close the session")
def close_session(session_id: PathId, ctx: StaffOnly, body: CloseIn | None = None) -> SessionOut:
    session = service.get_session(ctx.db, session_id=session_id, lock=True)
    reason = body.reason if body is not None else CloseIn().reason
    return _out(service.close_session(ctx.db, session=session, caller=_caller(ctx.principal),
                                      now=utcnow(), reason=reason))


def _sse(entry: TranscriptEntry) -> str:
    data = json.dumps(_entry(entry).model_dump(mode="json"), separators=(",", ":"))
    return f"id: {entry.id}\nevent: transcript\ndata: {data}\n\n"


@router.get("/sessions/{session_id}/events", response_class=StreamingResponse,
            responses={200: {"description": "Transcript entries as Server-Sent Events",
                             "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                       **responses(401, 403, 404, 422)},
            summary="The transcript live: entries after a cursor, as Server-Sent Events")
def session_events(
    session_id: PathId,
    request: Request,
    principal: Annotated[Principal, Depends(current_principal)],
    after: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    wait_s: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 60.0,
    last_event_id: Annotated[str | None, Header(pattern=r"^[0-9]{1,18}$")] = None,
) -> StreamingResponse:
    """Each event's id is the entry's; a reconnecting client resumes with ``Last-Event-ID``.

    The stream ends when the session is over and everything is sent, or after
    ``wait_s`` seconds (the client reconnects with its cursor).
    """
    _live(request, principal, session_id)
    factory = session_factory(request)
    cursor = after if last_event_id is None else int(last_event_id)

    def step(position: int) -> tuple[str, int, bool]:
        with factory() as db, db.begin():
            session = service.get_session(db, session_id=session_id)
            over = not rules.is_active(expires_at=session.expires_at,
                                       closed_at=session.closed_at, now=utcnow())
            entries = service.entries_after(db, session_id=session_id, after_id=position)
            last = entries[-1].id if entries else position
            return "".join(_sse(e) for e in entries), last, over

    return _stream(request, step, cursor, wait_s)


async def _poll(request: Request, step: Callable[[int], tuple[str, int, bool]], cursor: int,
                wait_s: float, poll_s: float) -> AsyncIterator[str]:
    """Events from ``step`` until it says the session is over, the client goes or time is up.

    Async, with each database or store read in a worker thread, so a waiting stream
    holds no thread of the server's pool; and each read takes a database slot of its
    own, so a stream holds none while it waits. A read that finds no slot in time is
    skipped: the stream tries again at its next poll.
    """
    position = cursor
    deadline = time.monotonic() + wait_s
    while True:
        try:
            async with admission(request).slot():
                chunk, position, over = await run_in_threadpool(step, position)
        except Overloaded:
            chunk, over = "", False
        if chunk:
            yield chunk
            continue
        if over or time.monotonic() >= deadline or await request.is_disconnected():
            return
        await asyncio.sleep(poll_s)


def _stream(request: Request, step: Callable[[int], tuple[str, int, bool]], cursor: int,
            wait_s: float, poll_s: float = POLL_S) -> StreamingResponse:
    return StreamingResponse(_poll(request, step, cursor, wait_s, poll_s),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _live(request: Request, principal: Principal, session_id: int) -> None:
    """Check, before a stream starts, that the caller may follow this session."""
    if not principal.is_staff:
        raise Forbidden("only the service organisation may do this")
    with session_factory(request)() as db, db.begin():
        service.get_session(db, session_id=session_id)


@router.get("/sessions/{session_id}/readings", response_class=StreamingResponse,
            responses={200: {"description": "The device's readings as Server-Sent Events",
                             "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                       **responses(401, 403, 404, 422)},
            summary="The device's readings live, as Server-Sent Events, from the telemetry store")
def session_readings(
    session_id: PathId,
    request: Request,
    principal: Annotated[Principal, Depends(current_principal)],
    since: Annotated[int, Query(ge=0, le=4_102_444_800_000)] = 0,
    wait_s: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 60.0,
    last_event_id: Annotated[str | None, Header(pattern=r"^[0-9]{1,13}$")] = None,
) -> StreamingResponse:
    """Readings newer than ``since`` (epoch ms; each event's id is its time), as ingest stores
    them: a ``set_sampling`` capture shows here at its own rate.

    The stream starts at most ten minutes back and ends with the session or after ``wait_s``.
    """
    _live(request, principal, session_id)
    factory = session_factory(request)
    with factory() as db, db.begin():
        device_id = service.get_session(db, session_id=session_id).device_id
    store = request.app.state.telemetry()
    cursor = since if last_event_id is None else int(last_event_id)

    def step(position: int) -> tuple[str, int, bool]:
        position = max(position, rules.epoch_ms(utcnow() - READINGS_BACKLOG))
        end = rules.epoch_ms(utcnow() + READINGS_SKEW)
        frame = store.query(device_id, position + 1, end) if position + 1 < end else None
        if frame is not None and len(frame):
            times = frame.index.as_unit("ms").asi8.tolist()
            columns = [str(c) for c in frame.columns]
            chunks = []
            for ts, row in zip(times, frame.to_numpy(dtype="float64").tolist(), strict=True):
                metrics = {c: v for c, v in zip(columns, row, strict=True) if not math.isnan(v)}
                data = json.dumps({"ts": ts, "metrics": metrics}, separators=(",", ":"))
                chunks.append(f"id: {ts}\nevent: reading\ndata: {data}\n\n")
            return "".join(chunks), times[-1], False
        with factory() as db, db.begin():
            session = service.get_session(db, session_id=session_id)
            over = not rules.is_active(expires_at=session.expires_at,
                                       closed_at=session.closed_at, now=utcnow())
        return "", position, over

    return _stream(request, step, cursor, wait_s, POLL_S * 2)
