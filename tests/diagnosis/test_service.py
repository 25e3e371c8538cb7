"""The session service on the database: expiry, timeouts written once, closing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edge_agent import protocol
from tests.api.conftest import World
from vigil.audit.models import AuditLog
from vigil.db.session import transaction
from vigil.diagnosis import rules, service
from vigil.diagnosis.models import TranscriptEntry
from vigil.errors import Conflict

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ALLOW = rules.AllowList.load()


def caller(world: World, role: str = "engineer") -> service.Caller:
    return service.Caller(world.user_ids[role], role, frozenset({role}))


def test_a_session_expires_and_then_refuses_commands(
    sessions: sessionmaker[Session], world: World,
) -> None:
    with transaction(sessions) as db:
        opened = service.open_session(db, device_id=world.devices["a"][1], ticket_id=None,
                                      caller=caller(world), now=NOW, ttl=timedelta(minutes=10))
        session_id = opened.id
    with transaction(sessions) as db:
        assert service.expire_sessions(db, now=NOW + timedelta(minutes=9)) == []
        assert service.sweep_due(db, now=NOW + timedelta(minutes=10))
        expired = service.expire_sessions(db, now=NOW + timedelta(minutes=10))
        assert [s.id for s in expired] == [session_id]
    with transaction(sessions) as db:
        session = service.get_session(db, session_id=session_id)
        assert session.close_reason == "expired"
        assert not service.sweep_due(db, now=NOW + timedelta(minutes=11))
        with pytest.raises(Conflict, match="closed"):
            service.send_command(db, session=session, name="self_test", args={},
                                 caller=caller(world), now=NOW + timedelta(minutes=11),
                                 allow_list=ALLOW)
        actions = list(db.scalars(select(AuditLog.action).where(
            AuditLog.object_type == "diagnosis_session",
            AuditLog.object_id == str(session_id)).order_by(AuditLog.id)))
    assert actions == ["diagnosis.open", "diagnosis.expire"]


def test_a_timeout_is_written_once_and_a_late_result_is_kept_as_late(
    sessions: sessionmaker[Session], world: World,
) -> None:
    device_id = world.devices["a"][1]
    with transaction(sessions) as db:
        session = service.open_session(db, device_id=device_id, ticket_id=None,
                                       caller=caller(world, "manager"), now=NOW)
        sent = service.send_command(db, session=session, name="get_logs", args={"lines": 5},
                                    caller=caller(world, "manager"), now=NOW, allow_list=ALLOW)
        command_id = sent.message.id
        assert sent.topic == protocol.topic(device_id, "cmd")
        assert sent.message.expires == rules.epoch_ms(NOW + timedelta(seconds=30))
    with transaction(sessions) as db:
        assert service.record_timeouts(db, now=NOW + timedelta(seconds=29)) == []
        assert len(service.record_timeouts(db, now=NOW + timedelta(seconds=30))) == 1
        assert service.record_timeouts(db, now=NOW + timedelta(seconds=31)) == []
        late = service.record_result(db, device_id=device_id, now=NOW + timedelta(seconds=40),
                                     result=protocol.CommandResult(command_id, True, 1, {}))
        assert late is not None and late.payload["late"] is True
        kinds = list(db.scalars(select(TranscriptEntry.kind).where(
            TranscriptEntry.command_id == command_id).order_by(TranscriptEntry.id)))
    assert kinds == ["command", "timeout", "result"]


def test_closing_twice_changes_nothing_the_second_time(
    sessions: sessionmaker[Session], world: World,
) -> None:
    with transaction(sessions) as db:
        session = service.open_session(db, device_id=world.devices["a"][1], ticket_id=None,
                                       caller=caller(world), now=NOW)
        service.close_session(db, session=session, caller=caller(world), now=NOW,
                              reason="fixed")
        service.close_session(db, session=session, caller=caller(world),
                              now=NOW + timedelta(minutes=1), reason="again")
        assert (session.closed_at, session.close_reason) == (NOW, "fixed")


def test_the_sweep_looks_back_only_so_far(sessions: sessionmaker[Session], world: World) -> None:
    with transaction(sessions) as db:
        session = service.open_session(db, device_id=world.devices["a"][1], ticket_id=None,
                                       caller=caller(world), now=NOW)
        service.send_command(db, session=session, name="self_test", args={},
                             caller=caller(world), now=NOW, allow_list=ALLOW)
    too_late = session.expires_at + service.SWEEP_LOOKBACK + timedelta(seconds=1)
    with transaction(sessions) as db:
        assert service.pending_commands(db, now=too_late) == []
        assert len(service.pending_commands(db, now=too_late - timedelta(seconds=2))) == 1
