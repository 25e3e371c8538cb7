"""The demo year applied through the domain services: one transaction per action.

A discrete-event loop over the simulated clock: each morning the maintenance job,
at their moments the device's fault codes (as ingest records them, then the
desk's intake) and failure predictions (then the ticket rules' prediction pass),
and each ticket's steps (``scenario.work_order``) through the real transitions,
maintenance records, vouchers and surveys. It collects the timeline, the vouchers
and the year's service-quality report; it writes no files.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from analytics.jobs.ticket_rules import prediction_pass
from vigil.config import TicketRuleSettings
from vigil.db.enums import MaintenanceKind, TicketSource, TicketState
from vigil.db.session import transaction
from vigil.demo import seed_demo
from vigil.demo_year.scenario import Fault, Forecast, Scenario, Step, measure, step_time, work_order
from vigil.devices.models import Device, DeviceEvent, Prediction
from vigil.engineers.service import suggest_assignee
from vigil.errors import InvalidRequest
from vigil.maintenance import service as maintenance
from vigil.maintenance.models import MaintenancePlan
from vigil.maintenance.rules import Usage
from vigil.maintenance.scheduled import maintenance_job
from vigil.reports.quality import GroupBy, QualityReport, service_quality
from vigil.tickets import service as tickets
from vigil.tickets import survey, voucher
from vigil.tickets.intake import handle_device_events
from vigil.tickets.models import Ticket
from vigil.tickets.priority import TicketRules
from vigil.tickets.transitions import Actor, ActorRole, Request
from vigil.users.models import User

# The demo's hospital user, who signs repairs off and answers the surveys.
DEMO_CUSTOMER_USER = "hana"
# What an engineer fits for each fault the simulator knows.
PARTS: Mapping[str, tuple[str, str]] = {
    "battery_ageing": ("BAT-7V2-LI", "Battery pack"),
    "motor_wear": ("PMP-MECH-02", "Pumping mechanism"),
    "fan_failure": ("FAN-60-24V", "Cooling fan"),
    "turbine_bearing_wear": ("VNT-TRB-300", "Blower turbine module"),
    "o2_cell_drift": ("VNT-O2C-01", "Oxygen cell"),
    "tube_ageing": ("CT-TUBE-KIT", "Tube conditioning kit"),
    "anode_bearing_wear": ("CT-ANODE-BRG", "Anode bearing set"),
    "cold_head_decline": ("MR-COLDHEAD", "Cold head"),
    "compressor_failure": ("MR-COMPR-8", "Helium compressor"),
    "power_problem": ("PSU-INT-01", "Internal power supply"),
}


# --- the timeline ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    at: datetime
    what: str
    ticket: int | None
    text: str

    def render(self) -> str:
        ticket = f"#{self.ticket}" if self.ticket is not None else ""
        return f"{self.at:%Y-%m-%d %H:%M}  {self.what:<16} {ticket:<5} {self.text}"


@dataclass
class Year:
    scenario: Scenario
    site: str
    lines: list[Line] = field(default_factory=list)
    # Ticket id -> the voucher's HTML (and PDF, when asked for).
    vouchers: dict[int, str] = field(default_factory=dict)
    voucher_pdfs: dict[int, bytes] = field(default_factory=dict)
    report: QualityReport | None = None

    def opened(self) -> list[int]:
        return [line.ticket for line in self.lines
                if line.what == "ticket opened" and line.ticket is not None]


# --- the runner: applies the scenario through the services ------------------------------


@dataclass(frozen=True, slots=True)
class _Ticket:
    """What the runner remembers of a ticket it works."""

    id: int
    kind: str
    plan_id: int | None
    fault_type: str | None


class Runner:
    """A discrete-event loop over the simulated year: the agenda holds what happens when."""

    def __init__(self, factory: sessionmaker[Session], scenario: Scenario, *,
                 with_pdf: bool = False) -> None:

        self.factory, self.scenario, self.with_pdf = factory, scenario, with_pdf
        self.rules = TicketRules.load()
        self.rule_settings = TicketRuleSettings()
        self.agenda: list[tuple[datetime, int, Any]] = []
        self.order = itertools.count()
        self.tickets: dict[int, _Ticket] = {}
        self.steps: dict[int, list[Step]] = {}
        # Ticket id -> the engineer working it: as actor, user id, display name.
        self.engineer: dict[int, tuple[Actor, int, str]] = {}
        self.tokens: dict[int, str] = {}
        self.calibrations = 0
        self.year = Year(scenario, site="")

    def at(self, when: datetime, action: Any) -> None:
        if when < self.scenario.end:
            heapq.heappush(self.agenda, (when, next(self.order), action))

    def line(self, at: datetime, what: str, ticket: int | None, text: str) -> None:
        self.year.lines.append(Line(at, what, ticket, text))

    def run(self) -> Year:
        s = self.scenario
        for day in range(s.days):
            self.at(s.start + timedelta(days=day, hours=6), ("morning",))
        for fault in s.faults:
            self.at(fault.at, ("fault", fault))
        for forecast in s.forecasts:
            self.at(forecast.at, ("forecast", forecast))
        while self.agenda:
            when, _, action = heapq.heappop(self.agenda)
            kind = action[0]
            if kind == "morning":
                self.morning(when)
            elif kind == "fault":
                self.fault(when, action[1])
            elif kind == "forecast":
                self.forecast(when, action[1])
            else:
                self.work(when, action[1])
            self.find_new_tickets(when)
        self.year.report = self.report()
        return self.year

    # -- what happens to the device

    def morning(self, now: datetime) -> None:
        """The maintenance job's pass, with the counter's reading of the moment."""

        def usage(devices: Sequence[str]) -> dict[str, Usage]:
            reading = Usage(self.scenario.usage_at(now), now)
            return {d: reading for d in devices if d == self.scenario.device_id}

        maintenance_job(self.factory, self.rules, usage, clock=lambda: now)

    def fault(self, now: datetime, fault: Fault) -> None:
        """The device raises a code: ingest records it, the desk's intake files it."""
        with transaction(self.factory) as session:
            seq = len([f for f in self.scenario.faults if f.at <= now])
            session.add(DeviceEvent(device_id=self.scenario.device_id, seq=seq, ts=now,
                                    code=fault.code, severity=fault.severity, text=fault.text,
                                    received_at=now))
        self.line(now, "device event", None, f"{fault.code} ({fault.severity}): {fault.text}")
        with transaction(self.factory) as session:
            handle_device_events(session, now=now, rules=self.rules)

    def forecast(self, now: datetime, forecast: Forecast) -> None:
        """A failure prediction is stored; the ticket rules' prediction pass considers it."""
        with transaction(self.factory) as session:
            session.add(Prediction(
                device_id=self.scenario.device_id, made_at=now,
                horizon_days=forecast.horizon_days, probability=forecast.probability,
                rul_days=forecast.rul_days, rul_lower_days=round(forecast.rul_days * 0.6, 1),
                rul_upper_days=round(forecast.rul_days * 1.5, 1), model_version="demo-year",
                fault_type=forecast.fault_type, drivers={}))
        self.line(now, "prediction", None,
                  f"P(failure within {forecast.horizon_days:g} d) = {forecast.probability:.2f},"
                  f" remaining life {forecast.rul_days:g} d ({forecast.fault_type})")
        with transaction(self.factory) as session:
            prediction_pass(session, now=now, settings=self.rule_settings, rules=self.rules)

    def find_new_tickets(self, now: datetime) -> None:
        with self.factory() as session:
            new = session.scalars(select(Ticket).where(
                Ticket.device_id == self.scenario.device_id,
                Ticket.id.not_in(list(self.tickets))).order_by(Ticket.id)).all()
            for ticket in new:
                data = ticket.evidence.get("latest", {}).get("data", {})
                slack = None
                plan_id = data.get("plan_id")
                if ticket.source == TicketSource.MAINTENANCE_PLAN and plan_id is not None:
                    kind = "plan"
                    plan = session.get(MaintenancePlan, plan_id)
                    due = datetime.fromisoformat(data["due_at"])
                    slack = due - now
                    usage = (f" at {data['due_usage_hours']:,.0f} h of use (counter now "
                             f"{self.scenario.usage_at(now):,.0f} h)"
                             if data.get("by") == "usage" else "")
                    self.line(now, "plan due", ticket.id,
                              f"{plan.title if plan else plan_id}: due {due:%Y-%m-%d} "
                              f"by {data.get('by')}{usage}")
                elif ticket.source == TicketSource.MAINTENANCE_PLAN:
                    kind = "corrective"
                elif ticket.source == TicketSource.DEVICE_EVENT:
                    kind = "fault"
                else:
                    kind = "prediction"
                fault_type = data.get("fault_type") or next(
                    (f.fault_type for f in self.scenario.faults
                     if ticket.signature.endswith(f.code)), None)
                self.tickets[ticket.id] = _Ticket(ticket.id, kind, plan_id, fault_type)
                self.line(now, "ticket opened", ticket.id,
                          f"{ticket.priority} {ticket.source}: {ticket.title}")
                rng = random.Random(self.scenario.seed * 100_003 + ticket.id)
                self.steps[ticket.id] = list(work_order(kind, rng, slack=slack))
                self.next_step(ticket.id, now)

    def next_step(self, ticket_id: int, previous: datetime) -> None:
        steps = self.steps[ticket_id]
        if steps:
            self.at(step_time(previous, steps[0]), ("work", ticket_id))

    # -- what the engineer and the customer do

    def work(self, now: datetime, ticket_id: int) -> None:
        step = self.steps[ticket_id][0]
        with transaction(self.factory) as session:
            done = getattr(self, f"_{step.name}")(session, now, self.tickets[ticket_id])
        if done:
            self.steps[ticket_id].pop(0)
            self.next_step(ticket_id, now)
        else:  # nobody on duty: try again in an hour
            self.at(now + timedelta(hours=1), ("work", ticket_id))

    def _acknowledge(self, session: Session, now: datetime, t: _Ticket) -> bool:
        ticket = tickets.get_ticket(session, ticket_id=t.id)
        suggested = suggest_assignee(session, ticket=ticket, now=now)
        if not suggested:
            return False
        user = session.get(User, suggested[0].user_id)
        assert user is not None
        actor = Actor(user.username, ActorRole.ENGINEER)
        self.engineer[t.id] = (actor, user.id, user.display_name or user.username)
        tickets.assign(session, ticket_id=t.id, assignee_id=user.id, actor=actor, now=now)
        ticket = tickets.transition(session, ticket_id=t.id, to=TicketState.ACKNOWLEDGED,
                                    actor=actor, now=now)
        self.line(now, "acknowledged", t.id,
                  f"by {self.engineer[t.id][2]}, {_hours(ticket.respond_minutes)} service h "
                  f"({_met(now, ticket.respond_by)})")
        return True

    def _move(self, session: Session, now: datetime, t: _Ticket, to: TicketState,
              **request: str) -> Ticket:
        return tickets.transition(session, ticket_id=t.id, to=to, actor=self.engineer[t.id][0],
                                  now=now, request=Request(**request))

    def _diagnose(self, session: Session, now: datetime, t: _Ticket) -> bool:
        self._move(session, now, t, TicketState.DIAGNOSING)
        return True

    def _work(self, session: Session, now: datetime, t: _Ticket) -> bool:
        """The planned work: recorded with its measured values, then the ticket restored."""
        plan = session.get(MaintenancePlan, t.plan_id)
        assert plan is not None
        actor, user_id, _name = self.engineer[t.id]
        off = None
        if plan.kind == MaintenanceKind.CALIBRATION:
            self.calibrations += 1
            if self.calibrations == 1:
                off = (self.scenario.off_quantity, self.scenario.off_value)
        rng = random.Random(self.scenario.seed * 7919 + t.id)
        counter = self.scenario.usage_at(now)
        entry = maintenance.complete(
            session, plan_id=plan.id, device_id=self.scenario.device_id, actor=actor,
            performed_at=now, now=now, ticket_rules=self.rules, usage_hours=counter,
            results=f"{plan.title}: done to procedure", engineer_user_id=user_id,
            measurements=measure(plan.tolerances, rng, off=off))
        values = "; ".join(
            f"{m['name']} {m['value']:g} {m['unit']} "
            f"{'within' if m['within'] else 'OUT OF'} "
            f"[{number_text(m['low'])}, {number_text(m['high'])}]"
            for m in entry.measurements)
        next_due = f"{entry.next_due_at:%Y-%m-%d}" if entry.next_due_at else "by usage"
        self.line(now, str(plan.kind), t.id,
                  f"{plan.title}: {values or 'done'}; counter {counter:,.0f} h; "
                  f"next due {next_due}" + ("" if entry.passed else " -> corrective ticket"))
        ticket = self._move(session, now, t, TicketState.REPAIRED)
        self.line(now, "restored", t.id, f"{_hours(ticket.restore_minutes)} service h "
                                         f"({_met(now, ticket.restore_by)})")
        return True

    def _dispatch(self, session: Session, now: datetime, t: _Ticket) -> bool:
        if t.kind == "plan":
            visit = step_time(now, self.steps[t.id][1])
            note = f"planned work, visit booked for {visit:%Y-%m-%d %H:%M}"
        elif t.kind == "corrective":
            note = f"{self.scenario.off_quantity} out of tolerance: adjust and re-measure"
        else:
            note = f"{(t.fault_type or 'fault').replace('_', ' ')} confirmed"
        ticket = self._move(session, now, t, TicketState.DISPATCHED, diagnosis_note=note)
        self.line(now, "diagnosed", t.id, f"{note}; {_hours(ticket.diagnose_minutes)} service h "
                                          f"({_met(now, ticket.diagnose_by)})")
        return True

    def _repair(self, session: Session, now: datetime, t: _Ticket) -> bool:
        actor = self.engineer[t.id][0]
        done = "adjusted"
        part = PARTS.get(t.fault_type or "") if t.kind != "corrective" else None
        if part is not None:
            number, description = part
            voucher.record_part(session, ticket_id=t.id, part_number=number, quantity=1,
                                actor=actor, now=now, description=description)
            done = f"{description} replaced ({number} x1)"
        ticket = self._move(session, now, t, TicketState.REPAIRED)
        self.line(now, "restored", t.id, f"{done}; {_hours(ticket.restore_minutes)} service h "
                                         f"({_met(now, ticket.restore_by)})")
        return True

    def _verify(self, session: Session, now: datetime, t: _Ticket) -> bool:
        result = "function test and self-test passed"
        if t.kind == "corrective":
            result = f"re-measured {self.scenario.off_quantity}: within tolerance"
        self._move(session, now, t, TicketState.VERIFIED, verification_result=result)
        return True

    def _close(self, session: Session, now: datetime, t: _Ticket) -> bool:
        """The customer signs off and closes; the voucher is issued with the sign-off on it."""
        customer = session.scalars(select(User).where(User.username == DEMO_CUSTOMER_USER)).one()
        actor = Actor(customer.username, ActorRole.CUSTOMER)
        tickets.sign_off(session, ticket_id=t.id, actor=actor, user_id=customer.id, now=now)
        tickets.transition(session, ticket_id=t.id, to=TicketState.CLOSED, actor=actor, now=now)
        self.line(now, "closed", t.id, f"signed off by {customer.display_name}")
        report = voucher.issue(session, ticket_id=t.id, actor=self.engineer[t.id][0], now=now,
                               with_pdf=self.with_pdf)
        self.year.vouchers[t.id] = report.html
        if report.pdf is not None:
            self.year.voucher_pdfs[t.id] = report.pdf
        self.line(now, "voucher written", t.id,
                  f"service report v{report.version}, sha256 {report.digest[:12]}")
        return True

    def _survey(self, session: Session, now: datetime, t: _Ticket) -> bool:
        self.tokens[t.id] = survey.issue(session, ticket_id=t.id, now=now).token
        self.line(now, "survey sent", t.id, "link to the customer, valid 30 days")
        return True

    def _answer(self, session: Session, now: datetime, t: _Ticket) -> bool:
        rng = random.Random(self.scenario.seed * 31 + t.id)
        score = rng.choice([3, 4, 4, 5, 5, 5])
        comment = {3: "Fixed, but we waited for the visit.", 4: "Good work, thank you.",
                   5: "Quick and thorough."}[score]
        survey.answer(session, token=self.tokens.pop(t.id), score=score, comment=comment,
                      now=now)
        self.line(now, "survey answered", t.id, f"{score} of 5: {comment}")
        return True

    def report(self) -> QualityReport:
        with self.factory() as session:
            return service_quality(session, start=self.scenario.start, end=self.scenario.end,
                                   group_by=GroupBy.MODEL, rules=self.rules)


def _hours(minutes: float | None) -> str:
    return "–" if minutes is None else f"{minutes / 60:.1f}"


def _met(at: datetime, deadline: datetime | None) -> str:
    if deadline is None:
        return "no deadline"
    return f"{'met' if at <= deadline else 'LATE'}, due {deadline:%m-%d %H:%M}"


def number_text(value: float | None, digits: int | None = None) -> str:
    """A limit or figure as short text: "-" when there is none."""
    if value is None:
        return "-"
    return f"{value if digits is None else round(value, digits):g}"


def replay(factory: sessionmaker[Session], scenario: Scenario, *,
           with_pdf: bool = False) -> Year:
    """Seed the demo organisation with the scenario's device and live its year.

    Raises ``InvalidRequest`` when the database holds the demo organisation already.
    """
    with transaction(factory) as session:
        created = seed_demo(session, devices=[(scenario.device_id, scenario.model)],
                            now=scenario.start)
        if created is None:
            raise InvalidRequest("the database holds the demo organisation already; "
                                 "demo-year replays into a database without it")
    runner = Runner(factory, scenario, with_pdf=with_pdf)
    with factory() as session:
        device = session.get(Device, scenario.device_id)
        runner.year.site = device.site.name if device is not None and device.site else ""
    return runner.run()


