"""Diagnosis sessions, applied inside the caller's transaction.

Every function takes the session and keyword arguments, writes the transcript
entry and an audit row for each command, result, timeout and close, and never
commits. Publishing on MQTT is the caller's part, after the commit, so a
command is on record before a device can answer it. Clocks are passed in.

Results and timeouts lock their diagnosis session's row (a no-op on SQLite,
whose writers are serialised anyway), so two API processes recording the same
command's outcome write it once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, select
from sqlalchemy.orm import Session, aliased

from edge_agent import protocol
from vigil.audit.service import record
from vigil.db.enums import TranscriptKind
from vigil.devices.models import Device
from vigil.diagnosis import rules
from vigil.diagnosis.models import DiagnosisSession, TranscriptEntry
from vigil.errors import InvalidRequest, NotFound
from vigil.tickets.models import Ticket

_OUTCOMES = (TranscriptKind.RESULT.value, TranscriptKind.TIMEOUT.value)
# How far back the sweep looks for unanswered commands (by their session's end).
SWEEP_LOOKBACK = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who acts: the user's id and name for the record, their roles for the rules."""

    user_id: int
    username: str
    roles: frozenset[str]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A command on record, and the message to publish once that record is committed."""

    entry: TranscriptEntry
    topic: str
    message: protocol.Command


def _audit(db: Session, *, actor: str, action: str, session: DiagnosisSession, at: datetime,
           details: dict[str, Any]) -> None:
    record(db, actor=actor, action=f"diagnosis.{action}", object_type="diagnosis_session",
           object_id=session.id, at=at, details={"device_id": session.device_id, **details})


def get_session(db: Session, *, session_id: int, lock: bool = False) -> DiagnosisSession:
    query = select(DiagnosisSession).where(DiagnosisSession.id == session_id)
    found = db.scalar(query.with_for_update() if lock else query)
    if found is None:
        raise NotFound(f"diagnosis session {session_id} not found")
    return found


def open_session(db: Session, *, device_id: str, ticket_id: int | None, caller: Caller,
                 now: datetime, ttl: timedelta = rules.DEFAULT_SESSION_TTL) -> DiagnosisSession:
    """A session on an online device, for an engineer or a manager; tied to one of its tickets."""
    rules.may_diagnose(caller.roles)
    device = db.get(Device, device_id)
    if device is None:
        raise NotFound(f"device {device_id!r} not found")
    if ticket_id is not None:
        ticket = db.get(Ticket, ticket_id)
        if ticket is None or ticket.device_id != device_id:
            raise InvalidRequest(f"ticket_id: ticket {ticket_id} is not one of this device's")
    rules.may_open(online=device.online, state=device.state)
    session = DiagnosisSession(device_id=device_id, ticket_id=ticket_id,
                               engineer_id=caller.user_id, opened_at=now, expires_at=now + ttl)
    db.add(session)
    db.flush()
    _audit(db, actor=caller.username, action="open", session=session, at=now,
           details={"ticket_id": ticket_id, "expires_at": session.expires_at.isoformat()})
    return session


def allowed_commands(session: DiagnosisSession,
                     allow_list: rules.AllowList) -> list[rules.CommandSpec]:
    return allow_list.for_model(session.device.model)


def send_command(db: Session, *, session: DiagnosisSession, name: str, args: dict[str, Any],
                 caller: Caller, now: datetime, allow_list: rules.AllowList) -> Outgoing:
    """Put a command on record (transcript and audit); the caller publishes it after commit."""
    rules.may_diagnose(caller.roles)
    device = session.device
    spec = allow_list.find(device.model, name)
    clean = spec.check_args(args)
    rules.may_send(spec, expires_at=session.expires_at, closed_at=session.closed_at,
                   online=device.online, state=device.state, now=now)
    expires = rules.command_expiry(spec, now, session.expires_at)
    command_id = uuid.uuid4().hex
    message = protocol.Command(id=command_id, cmd=name, args=clean,
                               reply_to=protocol.topic(device.id, "cmd/result"),
                               expires=rules.epoch_ms(expires))
    entry = TranscriptEntry(session_id=session.id, at=now, kind=TranscriptKind.COMMAND,
                            command_id=command_id,
                            payload={"cmd": name, "args": clean, "reply_to": message.reply_to,
                                     "expires": message.expires, "by": caller.username})
    db.add(entry)
    db.flush()
    _audit(db, actor=caller.username, action="command", session=session, at=now,
           details={"command_id": command_id, "cmd": name, "args": clean})
    return Outgoing(entry, protocol.topic(device.id, "cmd"), message)


def record_result(db: Session, *, device_id: str, result: protocol.CommandResult,
                  now: datetime) -> TranscriptEntry | None:
    """A device's answer into its session's transcript, once; None for a repeat or a stranger.

    An answer after the timeout is still kept (marked late): the engineer sees what
    the device did.
    """
    command = db.scalar(select(TranscriptEntry).where(
        TranscriptEntry.command_id == result.id,
        TranscriptEntry.kind == TranscriptKind.COMMAND.value))
    if command is None:
        return None
    session = get_session(db, session_id=command.session_id, lock=True)
    if session.device_id != device_id:
        return None
    earlier = list(db.scalars(select(TranscriptEntry.kind).where(
        TranscriptEntry.command_id == result.id, TranscriptEntry.kind.in_(_OUTCOMES))))
    if TranscriptKind.RESULT.value in earlier:
        return None
    late = TranscriptKind.TIMEOUT.value in earlier
    entry = TranscriptEntry(session_id=session.id, at=now, kind=TranscriptKind.RESULT,
                            command_id=result.id,
                            payload={"cmd": command.payload.get("cmd"), "ok": result.ok,
                                     "ts": result.ts, "output": result.output, "late": late})
    db.add(entry)
    db.flush()
    _audit(db, actor=f"device:{device_id}", action="result", session=session, at=now,
           details={"command_id": result.id, "cmd": command.payload.get("cmd"), "ok": result.ok,
                    "late": late})
    return entry


def pending_commands(db: Session, *, now: datetime) -> list[TranscriptEntry]:
    """Commands with neither a result nor a timeout yet, in sessions that ended recently at most.

    A command expires by its session's end at the latest, so older sessions have
    none left unless the sweep was stopped longer than ``SWEEP_LOOKBACK``; looking
    no further keeps each sweep from reading the whole history.
    """
    outcome = aliased(TranscriptEntry)
    answered = exists().where(and_(outcome.command_id == TranscriptEntry.command_id,
                                   outcome.kind.in_(_OUTCOMES)))
    recent = select(DiagnosisSession.id).where(
        DiagnosisSession.expires_at >= now - SWEEP_LOOKBACK)
    return list(db.scalars(select(TranscriptEntry).where(
        TranscriptEntry.session_id.in_(recent),
        TranscriptEntry.kind == TranscriptKind.COMMAND.value, ~answered)
        .order_by(TranscriptEntry.id)))


def _timeout(db: Session, command: TranscriptEntry, *, now: datetime, action: str,
             details: dict[str, Any]) -> TranscriptEntry | None:
    """A timeout entry for ``command`` unless it has an outcome already (checked under lock)."""
    session = get_session(db, session_id=command.session_id, lock=True)
    again = db.scalar(select(TranscriptEntry.id).where(
        TranscriptEntry.command_id == command.command_id, TranscriptEntry.kind.in_(_OUTCOMES)))
    if again is not None:
        return None
    entry = TranscriptEntry(session_id=session.id, at=now, kind=TranscriptKind.TIMEOUT,
                            command_id=command.command_id,
                            payload={"cmd": command.payload.get("cmd"), **details})
    db.add(entry)
    db.flush()
    _audit(db, actor="system", action=action, session=session, at=now,
           details={"command_id": command.command_id, "cmd": command.payload.get("cmd"),
                    **details})
    return entry


def record_timeouts(db: Session, *, now: datetime) -> list[TranscriptEntry]:
    """A timeout entry for each command past its expiry with no answer."""
    now_ms = rules.epoch_ms(now)
    written = []
    for command in pending_commands(db, now=now):
        if int(command.payload.get("expires", 0)) > now_ms:
            continue
        entry = _timeout(db, command, now=now, action="timeout",
                         details={"expired": command.payload.get("expires")})
        if entry is not None:
            written.append(entry)
    return written


def record_undelivered(db: Session, *, command_id: str, reason: str,
                       now: datetime) -> TranscriptEntry | None:
    """The command never reached the broker: its outcome, at once rather than at its expiry."""
    command = db.scalar(select(TranscriptEntry).where(
        TranscriptEntry.command_id == command_id,
        TranscriptEntry.kind == TranscriptKind.COMMAND.value))
    if command is None:
        return None
    return _timeout(db, command, now=now, action="undelivered",
                    details={"undelivered": reason[:500]})


def sweep_due(db: Session, *, now: datetime) -> bool:
    """Whether a command has timed out or a session has expired, unrecorded yet."""
    now_ms = rules.epoch_ms(now)
    if any(int(c.payload.get("expires", 0)) <= now_ms for c in pending_commands(db, now=now)):
        return True
    return db.scalar(select(DiagnosisSession.id).where(
        DiagnosisSession.closed_at.is_(None), DiagnosisSession.expires_at <= now).limit(1)
    ) is not None


def close_session(db: Session, *, session: DiagnosisSession, caller: Caller, now: datetime,
                  reason: str = "closed by the engineer") -> DiagnosisSession:
    """Close an open session; closing a closed one changes nothing."""
    rules.may_diagnose(caller.roles)
    if session.closed_at is None:
        session.closed_at = now
        session.close_reason = reason[:200]
        _audit(db, actor=caller.username, action="close", session=session, at=now,
               details={"reason": session.close_reason})
    return session


def expire_sessions(db: Session, *, now: datetime) -> list[DiagnosisSession]:
    """Close the sessions whose time is up, so none stays open for ever."""
    due = list(db.scalars(select(DiagnosisSession).where(
        DiagnosisSession.closed_at.is_(None), DiagnosisSession.expires_at <= now)
        .with_for_update()))
    for session in due:
        session.closed_at = now
        session.close_reason = "expired"
        _audit(db, actor="system", action="expire", session=session, at=now, details={})
    return due


def entries_after(db: Session, *, session_id: int, after_id: int,
                  limit: int = 100) -> list[TranscriptEntry]:
    """Transcript entries written after the cursor ``after_id``, oldest first."""
    return list(db.scalars(select(TranscriptEntry).where(
        TranscriptEntry.session_id == session_id, TranscriptEntry.id > after_id)
        .order_by(TranscriptEntry.id).limit(limit)))
