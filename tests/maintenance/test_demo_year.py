"""`vigil demo-year`: a device's year through the real desk, shortened to 120 days."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from vigil.cli import main
from vigil.db.enums import TicketSource, TicketState
from vigil.demo import PLANS
from vigil.demo_year.runner import replay
from vigil.demo_year.scenario import Step, plan_year, step_time, work_order
from vigil.errors import InvalidRequest
from vigil.maintenance.models import MaintenanceRecord
from vigil.tickets.models import ServiceReport, Ticket

START = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_plan_is_the_seeds_and_the_counter_grows() -> None:
    one = plan_year(model="ventilator", seed=3, start=START, days=120)
    assert one == plan_year(model="ventilator", seed=3, start=START, days=120)
    assert one != plan_year(model="ventilator", seed=4, start=START, days=120)
    assert all(START <= f.at < one.end for f in (*one.faults, *one.forecasts))
    limits = PLANS["ventilator"][2][one.off_quantity]
    assert one.off_value > float(limits["high"])
    assert one.usage_at(START) == one.counter_start
    assert one.usage_at(START + timedelta(days=10)) == pytest.approx(
        one.counter_start + sum(one.daily_use[:10]), abs=0.01)
    with pytest.raises(InvalidRequest, match="toaster.*ventilator"):
        plan_year(model="toaster", seed=1, start=START)


def test_an_engineer_visits_before_planned_work_falls_due() -> None:
    booked = datetime(2026, 2, 2, 9, 5, tzinfo=UTC)
    assert step_time(booked, Step("work", timedelta(days=1), hour=8)) == booked.replace(
        day=3, hour=8, minute=0)
    assert step_time(booked, Step("work", timedelta(hours=1), hour=8)) == booked.replace(
        day=3, hour=8, minute=0)
    for seed in range(20):
        steps = work_order("plan", random.Random(seed), slack=timedelta(days=2, hours=22))
        at = booked
        for step in steps[:4]:
            at = step_time(at, step)
        assert steps[3].name == "work" and at < booked + timedelta(days=2, hours=22)


def test_a_short_year_on_the_desk(factory: sessionmaker[Session]) -> None:
    scenario = plan_year(model="ventilator", seed=1, start=START, days=120)
    year = replay(factory, scenario)
    what = Counter(line.what for line in year.lines)
    opened = year.opened()
    assert len(opened) == len(set(opened)) >= 8
    with factory() as s:
        tickets = {t.id: t for t in s.scalars(select(Ticket))}
        assert set(tickets) == set(opened)
        sources = Counter(tickets[i].source for i in opened)
        # Calendar plans (calibration, preventive) and the 200-hour lubrication by usage.
        plan_lines = [line.text for line in year.lines if line.what == "plan due"]
        assert any("by calendar" in text for text in plan_lines)
        assert any("by usage" in text for text in plan_lines)
        assert sources[TicketSource.DEVICE_EVENT] == 2 and sources[TicketSource.ANALYTICS] == 1
        # The first calibration was out of tolerance and opened a corrective ticket.
        failed = s.scalars(select(MaintenanceRecord).where(
            MaintenanceRecord.passed.is_(False))).one()
        assert failed.corrective_ticket_id in opened
        corrective = tickets[failed.corrective_ticket_id]
        assert corrective.title.startswith("Out of tolerance")
        assert any(line.what == "calibration" and "OUT OF" in line.text for line in year.lines)
        # Every closed ticket was signed off and has its voucher, kept with the ticket.
        closed = [line.ticket for line in year.lines if line.what == "closed"]
        assert len(closed) == what["voucher written"] >= 8
        assert failed.corrective_ticket_id in closed
        for ticket_id in closed:
            ticket = tickets[ticket_id]
            assert ticket.state == TicketState.CLOSED and ticket.signed_off_by_id is not None
            assert f"ticket #{ticket_id}" in year.vouchers[ticket_id]
        kept = s.scalars(select(ServiceReport.ticket_id)).all()
        assert sorted(kept) == sorted(closed)
    assert year.report is not None
    row = next(r for r in year.report.rows if r.group == "ventilator")
    assert row.opened == len(opened)
    assert row.by_source == {**{s.value: 0 for s in TicketSource},
                             **{str(k): v for k, v in sources.items()}}
    assert row.surveys_sent == what["survey sent"]
    assert row.satisfaction_answers == what["survey answered"] > 0
    assert (row.predicted.opened, row.predicted.confirmed) == (1, 1)


def test_the_command_writes_the_timeline_vouchers_and_report(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "year"
    assert main(["demo-year", "--start", "2026-01-01", "--days", "60", "--out", str(out),
                 "--format", "csv"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("vigil demo-year: ventilator ventilator-year-1 at ")
    assert any(line.startswith("ventilator ") for line in printed)
    timeline = (out / "timeline.csv").read_text().splitlines()
    assert timeline[0] == "at,what,ticket,detail"
    assert len(timeline) - 1 == sum(1 for line in printed if line[:4] == "2026")
    vouchers = sorted((out / "vouchers").glob("ticket-*.html"))
    assert vouchers and len(vouchers) == sum(",voucher written," in line for line in timeline)
    assert (out / "report.json").exists() and (out / "report.csv").exists()


def test_an_unknown_model_is_refused_and_nothing_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "year"
    assert main(["demo-year", "--device-model", "toaster", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no demo plans for device model 'toaster'" in err and "ventilator" in err
    assert not out.exists()
