"""Every model round-trips through both databases, with timestamps in UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from vigil.db.enums import (
    Category,
    DeviceState,
    Priority,
    RoleName,
    TicketEventKind,
    TicketSource,
    TicketState,
    TranscriptKind,
)
from vigil.db.models import (
    AuditLog,
    Customer,
    DeadLetter,
    Device,
    DeviceEvent,
    DiagnosisSession,
    InvalidValue,
    KnowledgeArticle,
    MaintenancePlan,
    Prediction,
    Role,
    Site,
    Ticket,
    TicketEvent,
    TranscriptEntry,
    User,
)
from vigil.db.session import transaction

T0 = datetime(2026, 5, 4, 3, 2, 1, 123456, tzinfo=UTC)


def test_site_and_device_with_presence(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as s:
        site = Site(name="Radiology", customer=Customer(name="General Hospital"),
                    address="1 Main St", timezone="America/New_York")
        s.add(Device(id="ct-7", serial="CT-0007", model="CT-64", site=site,
                     install_date=date(2023, 1, 2), warranty_end=date(2028, 1, 1),
                     firmware="5.0.3", credential_hash="$argon2id$v=19$...", online=True,
                     state=DeviceState.MAINTENANCE, last_seen=T0,
                     status_detail={"outbox_dropped": 3, "nested": {"ok": [1, 2.5, None]}}))
    with factory() as s:
        device = s.get_one(Device, "ct-7")
        assert (device.serial, device.model, device.firmware) == ("CT-0007", "CT-64", "5.0.3")
        assert device.install_date == date(2023, 1, 2) and device.warranty_end == date(2028, 1, 1)
        assert device.online is True and device.state == "maintenance"
        assert device.last_seen == T0 and device.last_seen.tzinfo == UTC
        assert device.status_detail == {"outbox_dropped": 3, "nested": {"ok": [1, 2.5, None]}}
        assert device.site is not None and device.site.timezone == "America/New_York"
        assert [d.id for d in device.site.devices] == ["ct-7"]


def test_a_new_device_is_offline_with_empty_detail(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as s:
        s.add(Device(id="mon-1", serial="M1", model="PM-5"))
    with factory() as s:
        device = s.get_one(Device, "mon-1")
        assert device.online is False and device.state is None and device.last_seen is None
        assert device.status_detail == {} and device.site is None
        assert device.created_at.tzinfo == UTC


def test_json_changed_in_place_is_saved(factory: sessionmaker[Session], device: Device) -> None:
    with transaction(factory) as s:
        found = s.get_one(Device, device.id)
        found.status_detail["outbox_dropped"] = 2
        s.add(article := KnowledgeArticle(title="t", body="b", category="software"))
        s.flush()
        article.tags.append("pump")
    with factory() as s:
        assert s.get_one(Device, device.id).status_detail == {"outbox_dropped": 2}
        assert s.scalars(select(KnowledgeArticle.tags)).one() == ["pump"]


def test_users_roles_and_customer_sites(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as s:
        customer_role = s.scalars(select(Role).where(Role.name == RoleName.CUSTOMER)).one()
        site = Site(name="Ward 3", customer=Customer(name="Hospital A"))
        s.add(User(username="nurse.kim", display_name="Kim", email="kim@example.org",
                   password_hash="hash", roles=[customer_role], sites=[site]))
    with factory() as s:
        user = s.scalars(select(User).where(User.username == "nurse.kim")).one()
        assert [r.name for r in user.roles] == ["customer"]
        assert [site.name for site in user.sites] == ["Ward 3"]
        assert user.active is True


def test_ticket_with_its_history(factory: sessionmaker[Session], device: Device) -> None:
    with transaction(factory) as s:
        engineer = s.scalars(select(User).where(User.username == "eng1")).one()
        ticket = Ticket(device_id=device.id, site_id=device.site_id, priority=Priority.P1,
                        category=Category.ELECTRICAL, source=TicketSource.DEVICE_EVENT,
                        signature="event:E042", title="Battery fault", description="E042 raised",
                        evidence={"codes": ["E042"], "readings": {"battery_v": 3.1}},
                        created_at=T0, respond_by=T0 + timedelta(hours=1),
                        diagnose_by=T0 + timedelta(hours=4), restore_by=T0 + timedelta(hours=24),
                        assigned_to=engineer)
        s.add(ticket)
        ticket.events.append(TicketEvent(at=T0, actor="ingest", kind=TicketEventKind.TRANSITION,
                                         to_state=TicketState.OPEN, note="opened"))
        ticket.events.append(TicketEvent(at=T0 + timedelta(minutes=5), actor="eng1",
                                         kind=TicketEventKind.TRANSITION,
                                         from_state=TicketState.OPEN,
                                         to_state=TicketState.ACKNOWLEDGED,
                                         data={"channel": "api"}))
        ticket.state = TicketState.ACKNOWLEDGED
        ticket.responded_at = T0 + timedelta(minutes=5)
        ticket.satisfaction_score = 5
        ticket.satisfaction_comment = "quick"
        ticket.signed_off_at = T0 + timedelta(days=1)
        ticket.signed_off_by = engineer
    with factory() as s:
        ticket = s.scalars(select(Ticket)).one()
        assert ticket.state == "acknowledged" and ticket.priority == "P1"
        assert ticket.evidence == {"codes": ["E042"], "readings": {"battery_v": 3.1}}
        assert ticket.restore_by == ticket.created_at + timedelta(hours=24)
        assert ticket.assigned_to is not None and ticket.assigned_to.username == "eng1"
        assert ticket.satisfaction_score == 5 and ticket.signed_off_by is ticket.assigned_to
        assert [(e.actor, e.from_state, e.to_state) for e in ticket.events] == [
            ("ingest", None, "open"), ("eng1", "open", "acknowledged")]
        assert ticket.events[1].data == {"channel": "api"}


def test_diagnosis_session_and_transcript(factory: sessionmaker[Session], device: Device) -> None:
    with transaction(factory) as s:
        engineer = s.scalars(select(User).where(User.username == "eng1")).one()
        session = DiagnosisSession(device_id=device.id, engineer=engineer, opened_at=T0,
                                   expires_at=T0 + timedelta(minutes=30))
        session.transcript.append(TranscriptEntry(at=T0, kind=TranscriptKind.COMMAND,
                                                  command_id="c-1", payload={"cmd": "self_test"}))
        session.transcript.append(TranscriptEntry(at=T0 + timedelta(seconds=2),
                                                  kind=TranscriptKind.RESULT, command_id="c-1",
                                                  payload={"ok": True, "output": {"pump": "pass"}}))
        s.add(session)
    with factory() as s:
        session = s.scalars(select(DiagnosisSession)).one()
        assert session.ticket is None and session.closed_at is None
        assert session.expires_at == T0 + timedelta(minutes=30)
        assert [(e.kind, e.payload) for e in session.transcript] == [
            ("command", {"cmd": "self_test"}), ("result", {"ok": True, "output": {"pump": "pass"}})]


def test_knowledge_article_and_maintenance_plans(factory: sessionmaker[Session],
                                                 device: Device) -> None:
    with transaction(factory) as s:
        s.add(KnowledgeArticle(title="Occlusion alarm", body="Check the tubing.\nThen...",
                               category=Category.MECHANICAL, device_model="IP-100",
                               symptoms=["occlusion", "pressure_high"], tags=["pump"]))
        s.add(MaintenancePlan(device_model="IP-100", kind="preventive", title="Yearly PM",
                              interval_days=365))
        s.add(MaintenancePlan(device_id=device.id, kind="calibration", title="Flow calibration",
                              interval_usage_hours=2000.5, last_done_at=T0,
                              next_due_at=T0 + timedelta(days=180)))
    with factory() as s:
        article = s.scalars(select(KnowledgeArticle)).one()
        assert article.symptoms == ["occlusion", "pressure_high"] and article.tags == ["pump"]
        plans = s.scalars(select(MaintenancePlan).order_by(MaintenancePlan.id)).all()
        assert [(p.device_model, p.interval_days, p.active) for p in plans] == [
            ("IP-100", 365, True), (None, None, True)]
        assert plans[1].interval_usage_hours == 2000.5 and plans[1].device is not None
        assert plans[1].next_due_at == T0 + timedelta(days=180)


def test_records_written_by_services(factory: sessionmaker[Session], device: Device) -> None:
    with transaction(factory) as s:
        s.add(AuditLog(at=T0, actor="admin", action="device.register", object_type="device",
                       object_id=device.id, details={"serial": device.serial}))
        s.add(DeviceEvent(device_id=device.id, seq=2**40, ts=T0, code="E042",
                          severity="critical", text="battery"))
        s.add(DeadLetter.from_message("vigil/v1/dev/x/telemetry", b"{not json", "invalid JSON"))
        s.add(Prediction(device_id=device.id, made_at=T0, horizon_days=30, rul_days=12.5,
                         probability=0.8, rul_lower_days=8, rul_upper_days=20,
                         model_version="rul-1", drivers={"motor_current": 0.6}))
    with factory() as s:
        audit = s.scalars(select(AuditLog)).one()
        assert (audit.action, audit.object_id, audit.details) == (
            "device.register", "pump-0001", {"serial": "IP100-0001"})
        event = s.scalars(select(DeviceEvent)).one()
        assert (event.seq, event.ts, event.severity) == (2**40, T0, "critical")
        letter = s.scalars(select(DeadLetter)).one()
        assert (letter.payload, letter.payload_size, letter.reason) == (
            "{not json", 9, "invalid JSON")
        prediction = s.scalars(select(Prediction)).one()
        assert (prediction.rul_days, prediction.probability, prediction.drivers) == (
            12.5, 0.8, {"motor_current": 0.6})


def test_dead_letter_keeps_a_bounded_storable_start_of_any_payload() -> None:
    payload = b"\x00\xff\xfe" + "é".encode() * 10_000
    letter = DeadLetter.from_message(b"vigil/v1/dev/\xff/x" * 100, payload, "r" * 5000)
    assert letter.payload.startswith("\\x00\\xff\\xfe\u00e9")
    assert len(letter.payload) == 4096 and letter.payload_size == len(payload)
    assert len(letter.topic) == 256 and len(letter.reason) == 1000
    assert "\x00" not in letter.payload + letter.topic + letter.reason


def test_dead_letter_with_binary_payload_is_stored(factory: sessionmaker[Session]) -> None:
    payload = bytes(range(256)) * 64
    with transaction(factory) as s:
        s.add(DeadLetter.from_message("t", payload, "not UTF-8"))
    with factory() as s:
        letter = s.scalars(select(DeadLetter)).one()
        assert letter.payload_size == 256 * 64 and len(letter.payload) == 4096
        assert letter.payload.startswith("\\x00\x01\x02")


@pytest.mark.parametrize("offset", [timedelta(0), timedelta(hours=5, minutes=30),
                                    -timedelta(hours=8)])
def test_timestamps_come_back_aware_utc(factory: sessionmaker[Session], offset: timedelta) -> None:
    given = datetime(2026, 1, 31, 23, 59, 59, 999999, tzinfo=timezone(offset))
    with transaction(factory) as s:
        s.add(AuditLog(at=given, actor="a", action="x", object_type="y"))
    with factory() as s:
        stored = s.scalars(select(AuditLog.at)).one()
    assert stored == given and stored.tzinfo == UTC and stored.utcoffset() == timedelta(0)


def test_timestamps_are_stored_as_utc(db: Engine, factory: sessionmaker[Session]) -> None:
    """Stored UTC, so ordering and range queries in SQL are right whatever zone was given."""
    late_utc = datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=-10)))  # 22:00 UTC
    early_utc = datetime(2026, 1, 1, 20, 0, tzinfo=timezone(timedelta(hours=5)))  # 15:00 UTC
    with transaction(factory) as s:
        s.add_all([AuditLog(at=late_utc, actor="late", action="x", object_type="y"),
                   AuditLog(at=early_utc, actor="early", action="x", object_type="y")])
    with factory() as s:
        actors = s.scalars(select(AuditLog.actor).order_by(AuditLog.at)).all()
        after = s.scalars(select(AuditLog.actor).where(
            AuditLog.at > datetime(2026, 1, 1, 18, 0, tzinfo=UTC))).all()
    assert actors == ["early", "late"] and after == ["late"]
    if db.dialect.name == "sqlite":
        with db.connect() as connection:
            raw = connection.scalars(text("SELECT at FROM audit_log ORDER BY at")).all()
        assert [str(value)[:19] for value in raw] == ["2026-01-01 15:00:00", "2026-01-01 22:00:00"]


def test_defaults_are_aware_utc_now(factory: sessionmaker[Session]) -> None:
    before = datetime.now(UTC)
    with transaction(factory) as s:
        s.add(AuditLog(actor="a", action="x", object_type="y"))
    with factory() as s:
        at = s.scalars(select(AuditLog.at)).one()
    assert at.tzinfo == UTC and before <= at <= datetime.now(UTC)


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(InvalidValue, match="AuditLog.at: .* not a timezone-aware datetime"):
        AuditLog(at=datetime(2026, 1, 1), actor="a", action="x", object_type="y")


def test_the_caller_owns_the_transaction(factory: sessionmaker[Session]) -> None:
    with pytest.raises(RuntimeError), transaction(factory) as s:
        s.add(Site(name="A", customer=Customer(name="B")))
        s.flush()
        raise RuntimeError("the caller's work failed after the write")
    with factory() as s:
        assert s.scalars(select(Site)).all() == []
