"""Who should take a ticket: qualified, on duty, least loaded; region breaks ties."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from vigil.db.enums import Priority
from vigil.engineers.assignment import Candidate, rank
from vigil.tickets.sla import ServiceCalendar

OFFICE = ServiceCalendar.business("Europe/Berlin", start=time(8), end=time(17))
ALWAYS = ServiceCalendar.always("Europe/Berlin")
WEDNESDAY_10 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)   # 10:00 in Berlin
SATURDAY_10 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


def candidate(engineer_id: int, *, calendar: ServiceCalendar = OFFICE, region: str = "north",
              until: date = date(2027, 1, 1), load: tuple[Priority, ...] = ()) -> Candidate:
    return Candidate(engineer_id=engineer_id, user_id=100 + engineer_id, name=f"e{engineer_id}",
                     region=region, calendar=calendar, qualified_until={"ventilator": until},
                     open_tickets=load)


def ids(candidates: list[Candidate]) -> list[int]:
    return [c.engineer_id for c in candidates]


def test_least_weighted_load_first() -> None:
    team = [candidate(1, load=(Priority.P1,)),                 # weight 3
            candidate(2, load=(Priority.P3, Priority.P3)),     # weight 2
            candidate(3, load=(Priority.P3,) * 4)]             # weight 4
    assert ids(rank(team, model="ventilator", region="north", now=WEDNESDAY_10)) == [2, 1, 3]


def test_expired_qualification_or_off_duty_is_not_suggested() -> None:
    team = [candidate(1, until=date(2026, 12, 1)), candidate(2), candidate(3, calendar=ALWAYS)]
    assert ids(rank(team, model="ventilator", region=None, now=WEDNESDAY_10)) == [2, 3]
    assert ids(rank(team, model="ventilator", region=None, now=SATURDAY_10)) == [3]
    assert rank(team, model="mri", region=None, now=WEDNESDAY_10) == []
    # A site-wide ticket needs no model qualification.
    assert ids(rank(team, model=None, region=None, now=WEDNESDAY_10)) == [1, 2, 3]


def test_the_sites_region_breaks_a_tie() -> None:
    team = [candidate(1, region="south"), candidate(2, region="north")]
    assert ids(rank(team, model="ventilator", region="north", now=WEDNESDAY_10)) == [2, 1]
    assert ids(rank(team, model="ventilator", region="south", now=WEDNESDAY_10)) == [1, 2]
