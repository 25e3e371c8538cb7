"""`vigil demo-data` on SQLite and PostgreSQL: a living desk, created once."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from vigil.demo import seed_demo
from vigil.devices.models import Device
from vigil.knowledge.models import KnowledgeArticle
from vigil.maintenance import service as maintenance
from vigil.maintenance.models import MaintenancePlan
from vigil.tickets.priority import TicketRules

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
FLEET = [("sim-0001", "ventilator"), ("sim-0002", "mri"), ("sim-0003", "infusion_pump")]


def test_demo_data_is_created_once_and_works(factory: sessionmaker[Session]) -> None:
    with factory() as s, s.begin():
        created = seed_demo(s, devices=FLEET, now=NOW)
        assert created is not None
        assert (created.sites, created.devices, created.engineers) == (3, 3, 3)
    with factory() as s, s.begin():
        assert seed_demo(s, devices=FLEET, now=NOW) is None
    with factory() as s, s.begin():
        vent = s.get(Device, "sim-0001")
        assert vent is not None and vent.site is not None
        assert vent.site.name == "Intensive Care Unit"
        assert vent.udi is not None and vent.udi.endswith("(21)SIM-sim-0001")
        assert s.scalar(select(func.count()).select_from(MaintenancePlan)) == 11
        assert s.scalar(select(func.count()).select_from(KnowledgeArticle)) == 8
        # The plans are live: a pass of the maintenance job finds each device's dues.
        report = maintenance.refresh(s, now=NOW, ticket_rules=TicketRules.load())
        assert report.checked == 3 * 2 + 1
