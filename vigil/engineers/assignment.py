"""Who should take a ticket: qualified for the model, on duty now, least loaded. Pure rules.

The service handbook requires trained, assessed staff: a qualification that has
expired does not count. Load is the engineer's open tickets weighted by priority,
so one emergency weighs as much as three routine jobs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from vigil.db.enums import Priority
from vigil.tickets.sla import ServiceCalendar

PRIORITY_WEIGHT: Mapping[Priority, int] = {Priority.P1: 3, Priority.P2: 2, Priority.P3: 1}


@dataclass(frozen=True, slots=True)
class Candidate:
    engineer_id: int
    user_id: int
    name: str
    region: str | None
    calendar: ServiceCalendar
    # Device model -> the last day the qualification is valid.
    qualified_until: Mapping[str, date]
    open_tickets: Sequence[Priority] = ()

    @property
    def load(self) -> int:
        return sum(PRIORITY_WEIGHT[p] for p in self.open_tickets)

    def qualified_for(self, model: str, on: date) -> bool:
        until = self.qualified_until.get(model)
        return until is not None and on <= until

    def on_duty(self, at: datetime) -> bool:
        return self.calendar.is_open(at)


def rank(candidates: Iterable[Candidate], *, model: str | None, region: str | None,
         now: datetime) -> list[Candidate]:
    """Qualified, on-duty engineers, the least loaded first; the site's region breaks ties.

    ``model`` None (a site-wide ticket) needs no model qualification.
    """
    today = now.date()
    eligible = [c for c in candidates if c.on_duty(now)
                and (model is None or c.qualified_for(model, today))]
    return sorted(eligible, key=lambda c: (c.load, c.region != region, c.engineer_id))
