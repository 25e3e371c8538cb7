"""The service voucher on SQLite and PostgreSQL: what the handbook asks for, kept."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.tickets.support import Org, seed
from tests.tickets.test_survey import closed_ticket
from vigil.devices.models import Device
from vigil.errors import InvalidRequest
from vigil.tickets import service, voucher
from vigil.tickets.models import ServiceReport
from vigil.tickets.transitions import Actor, ActorRole

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ENGINEER = Actor("eve", ActorRole.ENGINEER)


@pytest.fixture
def org(factory: sessionmaker[Session]) -> Org:
    return seed(factory)


def test_a_closed_ticket_gets_its_voucher_in_html_and_pdf(
        factory: sessionmaker[Session], org: Org) -> None:
    with factory() as s, s.begin():
        device = s.get(Device, "vent-1")
        assert device is not None
        device.udi = "(01)04012345678901(21)V500-1"
        ticket_id = closed_ticket(s)
        service.assign(s, ticket_id=ticket_id, assignee_id=org.engineer_user_id,
                       actor=ENGINEER, now=T0 + timedelta(hours=3))
        voucher.record_part(s, ticket_id=ticket_id, part_number="500-17", quantity=2,
                            description="valve membrane", actor=ENGINEER, now=T0)
        with pytest.raises(InvalidRequest):
            voucher.record_part(s, ticket_id=ticket_id, part_number="500-17", quantity=0,
                                actor=ENGINEER, now=T0)
        first = voucher.issue(s, ticket_id=ticket_id, actor=ENGINEER,
                              now=T0 + timedelta(hours=4))
        second = voucher.issue(s, ticket_id=ticket_id, actor=ENGINEER,
                               now=T0 + timedelta(hours=5), with_pdf=False)
        assert (first.version, second.version) == (1, 2)
    with factory() as s:
        kept = s.scalars(select(ServiceReport).order_by(ServiceReport.version)).all()
        html = kept[0].html
        assert kept[0].pdf is not None and kept[0].pdf.startswith(b"%PDF")
        assert kept[1].pdf is None
        assert kept[0].digest == hashlib.sha256(html.encode()).hexdigest()
        for expected in ("V500-1", "ventilator", "(01)04012345678901(21)V500-1", "Central ICU",
                         "2026-12-01 09:00 UTC", "2026-12-01 09:30 UTC", "Eve Engineer",
                         "valve worn", "self-test passed", "500-17", "valve membrane",
                         "Signed off 2026-12-01 11:00 UTC"):
            assert expected in html, expected


def test_the_voucher_escapes_what_people_typed() -> None:
    data = voucher.VoucherData(
        ticket_id=1, title="<script>alert(1)</script>", priority="P2", state="closed",
        serial="S", model="m", udi=None, site=None, reported_at=T0, responded_at=None,
        diagnosed_at=None, restored_at=None, engineer=None, diagnosis="a < b", verification=None,
        measurements=[voucher.Measurement("flow", 5.5, -5, 5, "%", False)])
    html = voucher.voucher_html(data)
    assert "<script>" not in html and "&lt;script&gt;" in html and "a &lt; b" in html
    assert "OUT OF TOLERANCE" in html and "-5 .. 5" in html
