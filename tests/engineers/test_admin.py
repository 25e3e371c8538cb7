"""Administering engineers and qualifications on SQLite and PostgreSQL: checked, audited, and
seen by the desk's assignment."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.tickets.support import seed
from vigil.audit.models import AuditLog
from vigil.engineers import service
from vigil.errors import Conflict, InvalidRequest, NotFound
from vigil.users.models import User

NOW = datetime(2026, 12, 2, 10, tzinfo=UTC)  # a Wednesday


def test_a_new_engineer_is_a_candidate_once_qualified(factory: sessionmaker[Session]) -> None:
    org = seed(factory)
    with factory() as s, s.begin():
        engineer = service.create_engineer(
            s, user_id=org.manager_user_id, actor="root", now=NOW,
            values={"region": "north", "timezone": "Europe/Berlin", "hours_start": time(8),
                    "hours_end": time(18), "days_off": ["2026-12-24", date(2026, 12, 23)]})
        assert engineer.days_off == ["2026-12-23", "2026-12-24"]
        assert org.manager_user_id not in [c.user_id for c in service.on_duty(
            s, now=NOW, model="mri")]
        qualification = service.add_qualification(
            s, engineer_id=engineer.id, device_model="mri", qualified_on=date(2026, 1, 1),
            expires_on=date(2026, 12, 1), actor="root", now=NOW)
        # Expired yesterday: not yet.
        assert org.manager_user_id not in [c.user_id for c in service.on_duty(
            s, now=NOW, model="mri")]
        service.update_qualification(s, engineer_id=engineer.id,
                                     qualification_id=qualification.id, qualified_on=None,
                                     expires_on=date(2028, 12, 1), actor="root", now=NOW)
        assert org.manager_user_id in [c.user_id for c in service.on_duty(
            s, now=NOW, model="mri")]
        service.update_engineer(s, engineer_id=engineer.id, actor="root", now=NOW,
                                changes={"active": False})
        assert org.manager_user_id not in [c.user_id for c in service.on_duty(
            s, now=NOW, model="mri")]
        actions = list(s.scalars(select(AuditLog.action).order_by(AuditLog.id)))
        assert actions == ["engineer.create", "qualification.create", "qualification.update",
                           "engineer.update"]


@pytest.mark.parametrize("values", [
    {"hours_start": time(8)},
    {"hours_start": time(18), "hours_end": time(8)},
    {"timezone": "Nowhere/Land"},
    {"workdays": []},
    {"days_off": ["someday"]},
    {"shoe_size": 44},
])
def test_working_time_the_desk_could_not_use_writes_nothing(
        factory: sessionmaker[Session], values: dict[str, Any]) -> None:
    org = seed(factory)
    with factory() as s, s.begin():
        with pytest.raises(InvalidRequest):
            service.create_engineer(s, user_id=org.manager_user_id, values=values,
                                    actor="root", now=NOW)
        assert s.scalar(select(func.count()).select_from(AuditLog)) == 0


def test_who_may_be_an_engineer_and_qualification_refusals(
        factory: sessionmaker[Session]) -> None:
    org = seed(factory)
    with factory() as s, s.begin():
        with pytest.raises(InvalidRequest):
            service.create_engineer(s, user_id=org.customer_user_id, values={}, actor="root",
                                    now=NOW)
        with pytest.raises(InvalidRequest):
            service.create_engineer(s, user_id=999_999, values={}, actor="root", now=NOW)
        # Seeded as an engineer already.
        with pytest.raises(Conflict):
            service.create_engineer(s, user_id=org.engineer_user_id, values={}, actor="root",
                                    now=NOW)
        eve = service.list_engineers(s)[0]
        assert s.get_one(User, eve.user_id).username == "eve"
        with pytest.raises(Conflict):
            service.add_qualification(s, engineer_id=eve.id, device_model="ventilator",
                                      qualified_on=date(2026, 1, 1),
                                      expires_on=date(2027, 1, 1), actor="root", now=NOW)
        with pytest.raises(InvalidRequest):
            service.add_qualification(s, engineer_id=eve.id, device_model="mri",
                                      qualified_on=date(2026, 1, 1),
                                      expires_on=date(2025, 1, 1), actor="root", now=NOW)
        with pytest.raises(NotFound):
            service.add_qualification(s, engineer_id=999_999, device_model="mri",
                                      qualified_on=date(2026, 1, 1),
                                      expires_on=date(2027, 1, 1), actor="root", now=NOW)
        other = service.list_engineers(s)[1]
        with pytest.raises(NotFound):
            # Another engineer's qualification, by its id.
            service.update_qualification(
                s, engineer_id=eve.id, qualification_id=other.qualifications[0].id,
                qualified_on=None, expires_on=date(2030, 1, 1), actor="root", now=NOW)
