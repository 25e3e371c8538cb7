"""False alarms per analytics rule in the quality report, on SQLite and PostgreSQL, counted by
hand: root tickets only (a site ticket once, its device tickets not; fleet tickets not at all),
analytics tickets only, the period only, and a customer's own sites and devices."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.tickets.support import Fleet, seed_fleet
from vigil.db.enums import TicketScope, TicketSource, TicketState
from vigil.reports import render
from vigil.reports.quality import (
    GroupBy,
    RuleCancellations,
    cancellations_by_rule,
    service_quality,
)
from vigil.tickets.models import Ticket
from vigil.tickets.priority import TicketRules

RULES = TicketRules.load()
START = datetime(2026, 12, 1, tzinfo=UTC)
END = datetime(2027, 1, 1, tzinfo=UTC)
OPEN, CANCELLED, CLOSED = TicketState.OPEN, TicketState.CANCELLED, TicketState.CLOSED
ANALYTICS = TicketSource.ANALYTICS


def add(s: Session, signature: str, state: TicketState, *, device: str | None = None,
        site_id: int | None = None, source: TicketSource = ANALYTICS, day: int = 2,
        scope: TicketScope = TicketScope.DEVICE, model: str | None = None,
        parent: Ticket | None = None) -> Ticket:
    at = START + timedelta(days=day)
    ticket = Ticket(scope=scope, device_id=device, site_id=site_id, model=model,
                    parent_id=parent.id if parent else None, source=source, priority="P3",
                    category="mechanical", state=state, signature=signature, title=signature,
                    created_at=at, updated_at=at)
    s.add(ticket)
    s.flush()
    return ticket


@pytest.fixture
def desk(factory: sessionmaker[Session]) -> Fleet:
    fleet = seed_fleet(factory)
    (p1, p2, p3), (p4, _p5), (p6,), (p7, _p8) = fleet.pumps
    site_a, site_b, site_c, site_d = fleet.sites
    with factory() as s, s.begin():
        add(s, "anomaly:flow", CANCELLED, device=p1, site_id=site_a)
        add(s, "anomaly:flow", OPEN, device=p4, site_id=site_b)
        add(s, "anomaly:flow", CANCELLED, device=p6, site_id=site_c)
        add(s, "anomaly:flow", CLOSED, device=p7, site_id=site_d)
        add(s, "prediction:bearing_wear", OPEN, device=p2, site_id=site_a)
        add(s, "prediction:bearing_wear", CANCELLED, device=p3, site_id=site_a)
        # A site ticket counts once for the device tickets it grouped.
        room = add(s, "anomaly:ambient_temp", CANCELLED, site_id=site_a, scope=TicketScope.SITE)
        for device in (p1, p2, p3):
            add(s, "anomaly:ambient_temp", CANCELLED, device=device, site_id=site_a, parent=room)
        add(s, "anomaly:motor", OPEN, device=fleet.monitors[0], site_id=site_a)
        # Not counted: a fleet ticket, a fault code, and a ticket before the period.
        add(s, "anomaly:flow", CANCELLED, scope=TicketScope.FLEET, model="IP-100")
        add(s, "event:E1", CANCELLED, device=p4, site_id=site_b,
            source=TicketSource.DEVICE_EVENT)
        add(s, "anomaly:flow", CANCELLED, device=p7, site_id=site_d, day=-3)
    return fleet


def test_cancellations_per_rule_noisiest_first(factory: sessionmaker[Session],
                                               desk: Fleet) -> None:
    north, south = desk.customer_ids
    with factory() as s:
        everyone = cancellations_by_rule(s, start=START, end=END)
        mine = cancellations_by_rule(s, start=START, end=END, customer_id=north)
        theirs = cancellations_by_rule(s, start=START, end=END, customer_id=south)
        later = cancellations_by_rule(s, start=END, end=END + timedelta(days=30))
    assert everyone == [RuleCancellations("anomaly:flow", 4, 2, 0.5),
                        RuleCancellations("anomaly:ambient_temp", 1, 1, 1.0),
                        RuleCancellations("prediction:bearing_wear", 2, 1, 0.5),
                        RuleCancellations("anomaly:motor", 1, 0, 0.0)]
    # Sites A and B: a tie on cancellations and share goes by the rule's name.
    assert mine == [RuleCancellations("anomaly:ambient_temp", 1, 1, 1.0),
                    RuleCancellations("anomaly:flow", 2, 1, 0.5),
                    RuleCancellations("prediction:bearing_wear", 2, 1, 0.5),
                    RuleCancellations("anomaly:motor", 1, 0, 0.0)]
    assert theirs == [RuleCancellations("anomaly:flow", 2, 1, 0.5)]
    assert later == []


def test_the_report_shows_the_rules_and_counts_no_fleet_ticket(
        factory: sessionmaker[Session], desk: Fleet) -> None:
    with factory() as s:
        report = service_quality(s, start=START, end=END, group_by=GroupBy.MODEL, rules=RULES)
        mine = service_quality(s, start=START, end=END, group_by=GroupBy.SITE, rules=RULES,
                               customer_id=desk.customer_ids[1])
    # Eight analytics tickets and the fault code; not the fleet ticket, nor grouped ones.
    assert report.total.opened == 9 and report.total.by_source["analytics"] == 8
    assert [(r.group, r.opened) for r in report.rows] == [("(none)", 1), ("IP-100", 7),
                                                          ("PM-7", 1)]
    assert report.total.predicted.false_alarms == sum(
        r.cancelled for r in report.cancellations_by_rule) == 4
    assert [r.signature for r in mine.cancellations_by_rule] == ["anomaly:flow"]
    doc = render.as_json(report)
    assert doc["cancellations_by_rule"][0] == {"signature": "anomaly:flow", "opened": 4,
                                               "cancelled": 2, "share": 0.5}
    lines = list(csv.DictReader(io.StringIO(render.as_csv(report, "rules"))))
    assert [(line["rule"], line["opened"], line["cancelled_false_alarm"],
             line["cancelled_share"]) for line in lines] == [
        ("anomaly:flow", "4", "2", "0.5"), ("anomaly:ambient_temp", "1", "1", "1.0"),
        ("prediction:bearing_wear", "2", "1", "0.5"), ("anomaly:motor", "1", "0", "0.0")]
    assert [line["group"] for line in csv.DictReader(io.StringIO(render.as_csv(report)))] == \
        ["(none)", "IP-100", "PM-7", "(all)"]
    html = render.publishable_html(report, organisation="Example Medical")
    assert "False alarms by analytics rule" in html
    assert "<td>prediction:bearing_wear</td><td>2</td><td>1</td><td>50.0%</td>" in html
    for private in ("Site A", "North Hospitals", "pump-1"):
        assert private not in html
