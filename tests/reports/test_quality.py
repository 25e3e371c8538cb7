"""The service-quality report on SQLite and PostgreSQL against a small desk counted by hand."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.tickets.support import Org, seed
from tests.tickets.test_survey import closed_ticket
from vigil.db.enums import MaintenanceKind, Priority, TicketSource, TicketState
from vigil.devices.models import Customer, Device, Site
from vigil.errors import InvalidRequest
from vigil.maintenance.models import MaintenanceDue, MaintenancePlan, MaintenanceRecord
from vigil.reports import render
from vigil.reports.quality import GroupBy, service_quality
from vigil.tickets.models import SatisfactionSurvey, Ticket
from vigil.tickets.priority import TicketRules

RULES = TicketRules.load()
START = datetime(2026, 12, 1, tzinfo=UTC)
END = datetime(2027, 1, 1, tzinfo=UTC)  # 744 hours
H = timedelta(hours=1)
M = timedelta(minutes=1)


def add_ticket(s: Session, n: int, *, device: str, source: TicketSource, priority: Priority,
               state: TicketState, respond: int | None, diagnose: int | None = None,
               restore: int | None = None, respond_within: int = 120,
               diagnose_within: int = 1440, restore_within: int = 4320, reopen: int = 0,
               score: int | None = None, surveyed: bool = False, lead_h: float | None = None,
               created: datetime | None = None, site_id: int | None = None) -> Ticket:
    """A ticket row with its milestones met after the given minutes (service time = elapsed)."""
    at = created or START + timedelta(days=1, hours=n)
    data: dict[str, Any] = {} if lead_h is None else {"hours_to_failure": lead_h}
    ticket = Ticket(
        device_id=device, site_id=site_id, source=source, priority=priority, category="mechanical",
        state=state, signature=f"test:{n}", title=f"ticket {n}", created_at=at, updated_at=at,
        evidence={"recent": [{"data": data}]}, respond_by=at + respond_within * M,
        diagnose_by=at + diagnose_within * M, restore_by=at + restore_within * M,
        responded_at=at + respond * M if respond is not None else None,
        diagnosed_at=at + diagnose * M if diagnose is not None else None,
        restored_at=at + restore * M if restore is not None else None,
        respond_minutes=respond, diagnose_minutes=diagnose, restore_minutes=restore,
        reopen_count=reopen, satisfaction_score=score)
    s.add(ticket)
    s.flush()
    if surveyed:
        s.add(SatisfactionSurvey(ticket_id=ticket.id, token_hash=f"{n:064d}", issued_at=at,
                                 expires_at=at + 30 * 24 * H,
                                 answered_at=at + 24 * H if score else None))
    return ticket


@pytest.fixture
def desk(factory: sessionmaker[Session]) -> Org:
    org = seed(factory)
    with factory() as s, s.begin():
        icu, ward = org.site_id, org.other_site_id
        add_ticket(s, 1, device="vent-1", site_id=icu, source=TicketSource.DEVICE_EVENT,
                   priority=Priority.P2, state=TicketState.CLOSED, respond=30, diagnose=180,
                   restore=600, score=5, surveyed=True)
        add_ticket(s, 2, device="vent-2", site_id=icu, source=TicketSource.CUSTOMER,
                   priority=Priority.P2, state=TicketState.CLOSED, respond=180, diagnose=300,
                   restore=1200, reopen=1, surveyed=True)
        add_ticket(s, 3, device="vent-3", site_id=icu, source=TicketSource.ANALYTICS,
                   priority=Priority.P3, state=TicketState.RESOLVED_REMOTELY, respond=60,
                   diagnose=120, restore=120, respond_within=240, lead_h=48)
        add_ticket(s, 4, device="mri-1", site_id=ward, source=TicketSource.ANALYTICS,
                   priority=Priority.P3, state=TicketState.CANCELLED, respond=60,
                   respond_within=240, lead_h=12)
        add_ticket(s, 5, device="mri-1", site_id=ward, source=TicketSource.MAINTENANCE_PLAN,
                   priority=Priority.P3, state=TicketState.OPEN, respond=None,
                   respond_within=240, diagnose_within=60 * 24 * 60)
        # Before the period: not counted.
        add_ticket(s, 6, device="vent-4", site_id=icu, source=TicketSource.CUSTOMER,
                   priority=Priority.P1, state=TicketState.CLOSED, respond=10,
                   created=START - timedelta(days=3))
        pm = MaintenancePlan(kind=MaintenanceKind.PREVENTIVE, title="PM", device_id="vent-1",
                             interval_days=30)
        cal = MaintenancePlan(kind=MaintenanceKind.CALIBRATION, title="Cal", device_id="mri-1",
                              interval_days=90)
        s.add_all([pm, cal])
        s.flush()
        due = START + timedelta(days=9)
        s.add(MaintenanceRecord(plan_id=pm.id, device_id="vent-1", kind=pm.kind, due_at=due,
                                performed_at=due - 24 * H, performed_by="eve"))
        s.add(MaintenanceDue(plan_id=cal.id, device_id="mri-1", last_done_at=START - 70 * 24 * H,
                             next_due_at=START + timedelta(days=20)))
    return org


def test_the_totals_match_the_hand_count(factory: sessionmaker[Session], desk: Org) -> None:
    with factory() as s:
        report = service_quality(s, start=START, end=END, group_by=GroupBy.MODEL, rules=RULES)
    total = report.total
    assert total.opened == 5
    assert total.by_source == {"analytics": 2, "device_event": 1, "customer": 1,
                               "maintenance_plan": 1}
    # Respond minutes 30, 180, 60, 60: median 60, p90 at rank 2.7 = 60 + 0.7 * 120 = 144.
    assert (total.times["respond"].count, total.times["respond"].median_h) == (4, 1.0)
    assert total.times["respond"].p90_h == pytest.approx(2.4)
    # Diagnose 120, 180, 300: median 180, p90 at rank 1.8 = 180 + 0.8 * 120 = 276.
    assert total.times["diagnose"].median_h == 3.0
    assert total.times["diagnose"].p90_h == pytest.approx(4.6)
    assert total.times["restore"].median_h == 10.0
    # Respond: #2 late, #5 unmet past its deadline, #1 #3 #4 on time.
    assert (total.compliance["respond"].met, total.compliance["respond"].decided) == (3, 5)
    assert total.compliance["respond"].rate == 0.6
    # Diagnose: the cancelled #4 and #5 (deadline after the period) are not decided.
    assert (total.compliance["diagnose"].met, total.compliance["diagnose"].decided) == (3, 3)
    assert total.mttr_h == pytest.approx(640 / 60, abs=1e-3)
    assert total.finished == 3
    assert total.first_time_fix_rate == pytest.approx(2 / 3)
    assert total.remote_fix_rate == pytest.approx(1 / 3)
    assert (total.satisfaction_mean, total.satisfaction_answers, total.surveys_sent) == (5, 1, 2)
    assert total.survey_response_rate == 0.5
    predicted = total.predicted
    assert (predicted.opened, predicted.confirmed, predicted.false_alarms) == (2, 1, 1)
    assert (predicted.precision, predicted.median_lead_h) == (0.5, 48.0)


def test_groups_reliability_and_maintenance(factory: sessionmaker[Session], desk: Org) -> None:
    with factory() as s:
        by_model = service_quality(s, start=START, end=END, group_by=GroupBy.MODEL, rules=RULES)
        by_site = service_quality(s, start=START, end=END, group_by=GroupBy.SITE, rules=RULES)
    groups = {r.group: r for r in by_model.rows}
    assert set(groups) == {"ventilator", "mri"}
    assert groups["ventilator"].opened == 3
    assert groups["ventilator"].times["respond"].median_h == 1.0  # 30, 60, 180
    assert groups["mri"].compliance["respond"].rate == 0.5  # #4 on time, #5 breached
    assert {r.group: r.opened for r in by_site.rows} == {"Central ICU": 3, "Ward 7": 2}
    reliability = {r.model: r for r in by_model.reliability}
    # 5 ventilators x 744 h over 3 failures; the MRI's only tickets are a false alarm and PM.
    assert reliability["ventilator"].device_hours == 3720
    assert reliability["ventilator"].mtbf_h == 1240
    assert (reliability["mri"].failures, reliability["mri"].mtbf_h) == (0, None)
    pm = by_model.maintenance
    assert (pm["preventive"].due, pm["preventive"].done, pm["preventive"].rate) == (1, 1, 1.0)
    assert pm["preventive_high_risk"].on_time == 1
    assert (pm["calibration"].due, pm["calibration"].done, pm["calibration"].rate) == (1, 0, 0.0)
    assert pm["calibration_high_risk"].due == 0


def test_devices_count_from_installation_and_later_ones_not_at_all(
        factory: sessionmaker[Session], desk: Org) -> None:
    from vigil.devices.models import Device

    with factory() as s, s.begin():
        s.get_one(Device, "vent-4").install_date = (START + timedelta(days=21)).date()
        s.get_one(Device, "vent-5").install_date = (END + timedelta(days=1)).date()
        s.get_one(Device, "mri-1").install_date = (START - timedelta(days=400)).date()
    with factory() as s:
        report = service_quality(s, start=START, end=END, group_by=GroupBy.MODEL, rules=RULES)
    reliability = {r.model: r for r in report.reliability}
    # Three ventilators all month, one for its last ten days (240 h), one not yet installed.
    assert reliability["ventilator"].devices == 4
    assert reliability["ventilator"].device_hours == 3 * 744 + 240
    assert reliability["mri"].device_hours == 744


def test_milestones_met_through_the_service_keep_their_service_time(
        factory: sessionmaker[Session]) -> None:
    seed(factory)
    with factory() as s, s.begin():
        ticket = s.get(Ticket, closed_ticket(s, at=START))
        assert ticket is not None
        # No contract: 24 x 7; diagnosing after 30 minutes, repaired after 60.
        assert (ticket.respond_minutes, ticket.diagnose_minutes, ticket.restore_minutes) == (
            30, 60, 60)


def test_outputs_and_the_published_version(factory: sessionmaker[Session], desk: Org) -> None:
    with factory() as s:
        report = service_quality(s, start=START, end=END, group_by=GroupBy.MODEL, rules=RULES)
        by_site = service_quality(s, start=START, end=END, group_by=GroupBy.SITE, rules=RULES)
    doc = render.as_json(report)
    assert doc["total"]["opened"] == 5 and doc["group_by"] == "model"
    lines = list(csv.DictReader(io.StringIO(render.as_csv(report))))
    assert [line["group"] for line in lines] == ["mri", "ventilator", "(all)"]
    assert lines[-1]["respond_compliance"] == "0.6"
    html = render.publishable_html(report, organisation="Example Medical")
    assert "ventilator" in html and "60.0%" in html
    for private in ("Central ICU", "Ward 7", "St. Example Hospital", "vent-1", "Eve"):
        assert private not in html
    with pytest.raises(InvalidRequest):
        render.publishable_html(by_site, organisation="Example Medical")
    assert render.pdf_from_html(html).startswith(b"%PDF")


def test_an_empty_period_reports_nothing_as_unknown(
        factory: sessionmaker[Session], desk: Org) -> None:
    with factory() as s:
        report = service_quality(s, start=END, end=END + timedelta(days=30),
                                 group_by=GroupBy.PRIORITY, rules=RULES)
        with pytest.raises(InvalidRequest):
            service_quality(s, start=END, end=START, group_by=GroupBy.SITE, rules=RULES)
    assert report.rows == []
    assert (report.total.opened, report.total.mttr_h, report.total.satisfaction_mean) == (
        0, None, None)
    assert report.total.compliance["respond"].rate is None


def test_a_customer_filter_counts_only_that_customers_sites_and_devices(
        factory: sessionmaker[Session], desk: Org) -> None:
    with factory() as s, s.begin():
        other = Customer(name="Other Hospital")
        site = Site(name="Other ICU", customer=other, timezone="UTC")
        s.add_all([other, site, Device(id="vent-x", serial="X-1", model="ventilator",
                                       site=site)])
        s.flush()
        # One ticket on the device only, one on the site only: both are the other's.
        add_ticket(s, 7, device="vent-x", source=TicketSource.CUSTOMER, priority=Priority.P1,
                   state=TicketState.CLOSED, respond=5, diagnose=10, restore=20, score=1)
        add_ticket(s, 8, device="vent-x", site_id=site.id, source=TicketSource.DEVICE_EVENT,
                   priority=Priority.P1, state=TicketState.OPEN, respond=5)
        pm = MaintenancePlan(kind=MaintenanceKind.PREVENTIVE, title="PM", device_id="vent-x",
                             interval_days=30)
        s.add(pm)
        s.flush()
        due = START + timedelta(days=3)
        s.add(MaintenanceRecord(plan_id=pm.id, device_id="vent-x", kind=pm.kind, due_at=due,
                                performed_at=due + 24 * H, performed_by="eve"))
        other_id = other.id
        mine_id = s.get_one(Site, desk.site_id).customer_id
    with factory() as s:
        everyone = service_quality(s, start=START, end=END, group_by=GroupBy.PRIORITY,
                                   rules=RULES)
        mine = service_quality(s, start=START, end=END, group_by=GroupBy.PRIORITY,
                               rules=RULES, customer_id=mine_id)
        theirs = service_quality(s, start=START, end=END, group_by=GroupBy.SITE,
                                 rules=RULES, customer_id=other_id)
    assert everyone.total.opened == 7
    # The hand-counted desk alone, exactly as before the other customer existed.
    assert mine.total.opened == 5 and "P1" not in {r.group for r in mine.rows}
    assert mine.total.satisfaction_mean == 5
    assert {r.model: r.devices for r in mine.reliability} == {"ventilator": 5, "mri": 1}
    assert mine.maintenance["preventive"].due == 1 and mine.maintenance["preventive"].on_time == 1
    assert [(r.group, r.opened) for r in theirs.rows] == [("(none)", 1), ("Other ICU", 1)]
    assert theirs.total.opened == 2 and theirs.total.satisfaction_mean == 1
    assert [(r.model, r.devices, r.failures) for r in theirs.reliability] == [
        ("ventilator", 1, 2)]
    assert (theirs.maintenance["preventive"].done, theirs.maintenance["preventive"].on_time) == (
        1, 0)


def test_the_report_command_writes_csv_and_the_published_pdf(
        factory: sessionmaker[Session], desk: Org, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from vigil.cli import main
    from vigil.config import get_settings

    url = factory.kw["bind"].url.render_as_string(hide_password=False)
    monkeypatch.setenv("VIGIL_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        period = ["--from", "2026-12-01", "--to", "2027-01-01"]
        assert main(["report", *period, "--group-by", "site", "--out",
                     str(tmp_path / "q.csv")]) == 0
        lines = list(csv.DictReader(io.StringIO((tmp_path / "q.csv").read_text())))
        assert [line["group"] for line in lines] == ["Central ICU", "Ward 7", "(all)"]
        assert lines[-1]["opened"] == "5"
        assert main(["report", *period, "--section", "rules", "--out",
                     str(tmp_path / "rules.csv")]) == 0
        rules = list(csv.DictReader(io.StringIO((tmp_path / "rules.csv").read_text())))
        # The two analytics tickets of the desk, each its own rule; one a false alarm.
        assert [(r["rule"], r["opened"], r["cancelled_false_alarm"]) for r in rules] == [
            ("test:4", "1", "1"), ("test:3", "1", "0")]
        assert main(["report", *period, "--format", "pdf", "--out",
                     str(tmp_path / "q.pdf")]) == 0
        assert (tmp_path / "q.pdf").read_bytes().startswith(b"%PDF")
        # Sites are not named in public: refused, and nothing written.
        assert main(["report", *period, "--group-by", "site", "--format", "pdf", "--out",
                     str(tmp_path / "no.pdf")]) == 2
        assert not (tmp_path / "no.pdf").exists()
    finally:
        get_settings.cache_clear()
