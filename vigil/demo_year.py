"""`vigil demo-year`: one device's year of service, replayed through the real desk.

The demo organisation of ``vigil demo-data`` gets one device of the chosen model;
then a simulated clock runs over the year. Each morning the maintenance job
(``vigil.maintenance.scheduled.maintenance_job``) sees the device's usage-hours
counter and opens P3 tickets ahead of due plans; the device raises two fault
codes (recorded as ingest records them, filed by the desk's intake); failure
predictions on two days file a ticket through the ticket rules' prediction pass.
An engineer the desk suggests works every ticket through the real transitions,
records the planned work with its measured values (the first calibration out of
tolerance, which opens a corrective ticket), the customer signs off and answers
the survey, and each closed ticket's voucher is issued. At the end, the year's
service-quality report for the device's model.

``plan_year`` (pure: which happenings on which days, from the seed) and
``work_order`` (pure: how an engineer paces a ticket) decide; ``replay`` applies
them through the domain services, one transaction per action, the clock passed in.
"""

from __future__ import annotations

import argparse
import csv
import heapq
import io
import itertools
import random
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edge_agent.simulator.physics import FAILURE_CODES, FAULT_TYPES, WARNING_CODES
from vigil.db.enums import MaintenanceKind, TicketSource, TicketState
from vigil.demo import PLANS, seed_demo
from vigil.errors import InvalidRequest
from vigil.reports.quality import QualityReport, Row

MODELS = tuple(sorted(PLANS))
DEFAULT_MODEL = "ventilator"
# Hours of use per day (mean, spread) by model: an ICU ventilator runs about half the day,
# which brings the demo's 200-hour lubrication plan due about every 17 days.
DAILY_USE_H: Mapping[str, tuple[float, float]] = {
    "ventilator": (12.0, 4.0), "infusion_pump": (9.0, 3.0), "patient_monitor": (20.0, 3.0),
    "ct": (10.0, 2.0), "mri": (12.0, 2.0)}
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


# --- the scenario: pure ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault code the device raises."""

    at: datetime
    fault_type: str
    code: str
    severity: str
    text: str


@dataclass(frozen=True, slots=True)
class Forecast:
    """A failure prediction made for the device."""

    at: datetime
    fault_type: str
    probability: float
    rul_days: float
    horizon_days: float = 14.0


@dataclass(frozen=True)
class Scenario:
    model: str
    device_id: str
    seed: int
    start: datetime
    days: int
    counter_start: float
    daily_use: tuple[float, ...]
    faults: tuple[Fault, ...]
    forecasts: tuple[Forecast, ...]
    # The first calibration's quantity out of tolerance, and the value measured.
    off_quantity: str
    off_value: float

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)

    def usage_at(self, at: datetime) -> float:
        """The usage-hours counter at ``at``: each day's use spread evenly over the day."""
        elapsed = max(0.0, (at - self.start).total_seconds() / 86400)
        whole = min(int(elapsed), len(self.daily_use))
        hours = self.counter_start + sum(self.daily_use[:whole])
        if whole < len(self.daily_use):
            hours += self.daily_use[whole] * (elapsed - whole)
        return round(hours, 2)


def check_model(model: str) -> str:
    if model not in PLANS:
        raise InvalidRequest(f"no demo plans for device model {model!r}; "
                             f"one of: {', '.join(MODELS)}")
    return model


def _moment(start: datetime, rng: random.Random, days: int, low: float, high: float) -> datetime:
    day = rng.randint(int(days * low), max(int(days * low), int(days * high) - 1))
    return start + timedelta(days=day, hours=rng.randint(0, 23), minutes=rng.randint(0, 59))


def plan_year(*, model: str, seed: int, start: datetime, days: int = 365) -> Scenario:
    """Which happenings fall on which days, from the seed alone."""
    check_model(model)
    if days < 30:
        raise InvalidRequest(f"a demo year needs at least 30 days, not {days}")
    rng = random.Random(seed)
    mean, spread = DAILY_USE_H[model]
    daily = tuple(round(min(24.0, max(0.0, rng.gauss(mean, spread))), 2) for _ in range(days))
    first, second, predicted = rng.sample(FAULT_TYPES[model], 3)
    faults = (
        Fault(_moment(start, rng, days, 0.15, 0.35), first, WARNING_CODES[first], "warning",
              f"{first.replace('_', ' ')} suspected"),
        Fault(_moment(start, rng, days, 0.7, 0.9), second, FAILURE_CODES[second], "critical",
              f"{second.replace('_', ' ')}: device out of service"))
    made = _moment(start, rng, days, 0.45, 0.6).replace(hour=3, minute=0)
    rul = round(rng.uniform(8, 14), 1)
    forecasts = (Forecast(made, predicted, round(rng.uniform(0.55, 0.7), 2), rul),
                 Forecast(made + timedelta(days=1), predicted, round(rng.uniform(0.7, 0.85), 2),
                          rul - 1))
    tolerances = PLANS[model][2]
    off = rng.choice(sorted(tolerances))
    limits = tolerances[off]
    span = float(limits.get("high", 0)) - float(limits.get("low", 0))
    off_value = round(float(limits["high"]) + rng.uniform(0.1, 0.6) * span / 2, 2)
    return Scenario(model=model, device_id=f"{model.replace('_', '-')}-year-1", seed=seed,
                    start=start, days=days, counter_start=round(rng.uniform(4000, 9000), 1),
                    daily_use=daily, faults=faults, forecasts=forecasts, off_quantity=off,
                    off_value=off_value)


def measure(tolerances: Mapping[str, Mapping[str, Any]], rng: random.Random, *,
            off: tuple[str, float] | None = None) -> dict[str, float]:
    """Measured values near nominal, within tolerance unless ``off`` names one and its value."""
    values = {}
    for name, limits in sorted(tolerances.items()):
        low, high = limits.get("low"), limits.get("high")
        nominal = float(limits.get("nominal", 0.0))
        reach = min(abs(float(v) - nominal) for v in (low, high) if v is not None)
        values[name] = round(nominal + rng.uniform(-0.4, 0.4) * reach, 2)
    if off is not None:
        values[off[0]] = off[1]
    return values


@dataclass(frozen=True, slots=True)
class Step:
    """One thing an engineer (or the customer) does on a ticket, ``after`` the previous step;
    with ``hour``, at that hour (UTC) of the day ``after`` brings (the day after, if that
    hour is not later than the previous step): a visit two days on, at eight."""

    name: str
    after: timedelta
    hour: int | None = None


def work_order(kind: str, rng: random.Random, *, slack: timedelta | None = None,
               ) -> tuple[Step, ...]:
    """How a ticket of ``kind`` (plan, corrective, fault, prediction) is worked, paced by ``rng``.

    Planned work is visited before it falls due (``slack``: the time left until then).
    """
    def minutes(low: int, high: int) -> timedelta:
        return timedelta(minutes=rng.randint(low, high))

    if kind == "plan":
        # The visit is booked on a day before the work falls due (when the lead allows).
        visit_days = 4 if slack is None else max(1, min(4, (slack - timedelta(days=1)).days))
        steps = [Step("acknowledge", minutes(30, 180)), Step("diagnose", minutes(10, 60)),
                 Step("dispatch", minutes(5, 30)),
                 Step("work", timedelta(days=rng.randint(1, visit_days)),
                      hour=rng.choice([7, 8, 9])),
                 Step("verify", minutes(20, 40))]
    elif kind == "corrective":
        steps = [Step("acknowledge", minutes(20, 90)), Step("diagnose", minutes(10, 60)),
                 Step("dispatch", minutes(30, 120)), Step("repair", timedelta(days=1), hour=8),
                 Step("verify", minutes(30, 60))]
    elif kind == "fault":
        steps = [Step("acknowledge", minutes(10, 45)), Step("diagnose", minutes(5, 30)),
                 Step("dispatch", minutes(60, 180)), Step("repair", minutes(240, 720)),
                 Step("verify", minutes(60, 90))]
    else:
        steps = [Step("acknowledge", minutes(30, 150)), Step("diagnose", minutes(60, 240)),
                 Step("dispatch", minutes(30, 90)),
                 Step("repair", timedelta(days=rng.randint(1, 2)), hour=8),
                 Step("verify", minutes(30, 60))]
    steps += [Step("close", timedelta(days=1), hour=9), Step("survey", minutes(30, 90))]
    if rng.random() < 0.8:  # most customers answer
        steps.append(Step("answer", timedelta(days=rng.randint(0, 3)), hour=14))
    return tuple(steps)


def step_time(previous: datetime, step: Step) -> datetime:
    at = previous + step.after
    if step.hour is None:
        return at
    on_hour = datetime.combine(at.date(), time(step.hour), tzinfo=UTC)
    return on_hour if on_hour > previous else on_hour + timedelta(days=1)


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
        from vigil.config import TicketRuleSettings
        from vigil.tickets.priority import TicketRules

        self.factory, self.scenario, self.with_pdf = factory, scenario, with_pdf
        self.rules = TicketRules.load()
        self.rule_settings = TicketRuleSettings()
        self.agenda: list[tuple[datetime, int, Any]] = []
        self.order = itertools.count()
        self.tickets: dict[int, _Ticket] = {}
        self.steps: dict[int, list[Step]] = {}
        self.engineer: dict[int, tuple[Any, int, str]] = {}
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
        from vigil.maintenance.rules import Usage
        from vigil.maintenance.scheduled import maintenance_job

        def usage(devices: Sequence[str]) -> dict[str, Usage]:
            reading = Usage(self.scenario.usage_at(now), now)
            return {d: reading for d in devices if d == self.scenario.device_id}

        maintenance_job(self.factory, self.rules, usage, clock=lambda: now)

    def fault(self, now: datetime, fault: Fault) -> None:
        """The device raises a code: ingest records it, the desk's intake files it."""
        from vigil.db.session import transaction
        from vigil.devices.models import DeviceEvent
        from vigil.tickets.intake import handle_device_events

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
        from analytics.jobs.ticket_rules import prediction_pass
        from vigil.db.session import transaction
        from vigil.devices.models import Prediction

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
        from vigil.maintenance.models import MaintenancePlan
        from vigil.tickets.models import Ticket

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
        from vigil.db.session import transaction

        step = self.steps[ticket_id][0]
        with transaction(self.factory) as session:
            done = getattr(self, f"_{step.name}")(session, now, self.tickets[ticket_id])
        if done:
            self.steps[ticket_id].pop(0)
            self.next_step(ticket_id, now)
        else:  # nobody on duty: try again in an hour
            self.at(now + timedelta(hours=1), ("work", ticket_id))

    def _acknowledge(self, session: Session, now: datetime, t: _Ticket) -> bool:
        from vigil.engineers.service import suggest_assignee
        from vigil.tickets import service as tickets
        from vigil.tickets.transitions import Actor, ActorRole
        from vigil.users.models import User

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
              **request: str) -> Any:
        from vigil.tickets import service as tickets
        from vigil.tickets.transitions import Request

        return tickets.transition(session, ticket_id=t.id, to=to, actor=self.engineer[t.id][0],
                                  now=now, request=Request(**request))

    def _diagnose(self, session: Session, now: datetime, t: _Ticket) -> bool:
        self._move(session, now, t, TicketState.DIAGNOSING)
        return True

    def _work(self, session: Session, now: datetime, t: _Ticket) -> bool:
        """The planned work: recorded with its measured values, then the ticket restored."""
        from vigil.maintenance import service as maintenance
        from vigil.maintenance.models import MaintenancePlan

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
            f"{'within' if m['within'] else 'OUT OF'} [{_num(m['low'])}, {_num(m['high'])}]"
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
        from vigil.tickets.voucher import record_part

        actor = self.engineer[t.id][0]
        done = "adjusted"
        part = PARTS.get(t.fault_type or "") if t.kind != "corrective" else None
        if part is not None:
            number, description = part
            record_part(session, ticket_id=t.id, part_number=number, quantity=1, actor=actor,
                        now=now, description=description)
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
        from vigil.tickets import service as tickets
        from vigil.tickets import voucher
        from vigil.tickets.transitions import Actor, ActorRole
        from vigil.users.models import User

        customer = session.scalars(select(User).where(User.username == "hana")).one()
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
        from vigil.tickets import survey

        self.tokens[t.id] = survey.issue(session, ticket_id=t.id, now=now).token
        self.line(now, "survey sent", t.id, "link to the customer, valid 30 days")
        return True

    def _answer(self, session: Session, now: datetime, t: _Ticket) -> bool:
        from vigil.tickets import survey

        rng = random.Random(self.scenario.seed * 31 + t.id)
        score = rng.choice([3, 4, 4, 5, 5, 5])
        comment = {3: "Fixed, but we waited for the visit.", 4: "Good work, thank you.",
                   5: "Quick and thorough."}[score]
        survey.answer(session, token=self.tokens.pop(t.id), score=score, comment=comment,
                      now=now)
        self.line(now, "survey answered", t.id, f"{score} of 5: {comment}")
        return True

    def report(self) -> QualityReport:
        from vigil.reports.quality import GroupBy, service_quality

        with self.factory() as session:
            return service_quality(session, start=self.scenario.start, end=self.scenario.end,
                                   group_by=GroupBy.MODEL, rules=self.rules)


def _hours(minutes: float | None) -> str:
    return "–" if minutes is None else f"{minutes / 60:.1f}"


def _met(at: datetime, deadline: datetime | None) -> str:
    if deadline is None:
        return "no deadline"
    return f"met, due {deadline:%m-%d %H:%M}" if at <= deadline else \
        f"LATE, due {deadline:%m-%d %H:%M}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def replay(factory: sessionmaker[Session], scenario: Scenario, *,
           with_pdf: bool = False) -> Year:
    """Seed the demo organisation with the scenario's device and live its year.

    Raises ``InvalidRequest`` when the database holds the demo organisation already.
    """
    from vigil.db.session import transaction
    from vigil.devices.models import Device

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


# --- printing and files ---------------------------------------------------------------------

REPORT_HEAD = ("group", "opened", "plan", "event", "analytics", "respond", "diagnose",
               "restore", "mttr_h", "ftf", "surveys", "score", "predicted")


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def report_rows(report: QualityReport) -> list[tuple[str, ...]]:
    """The report's rows (and total) as short columns for the terminal."""
    def cells(row: Row) -> tuple[str, ...]:
        c = row.compliance
        return (row.group, str(row.opened),
                *(str(row.by_source.get(s.value, 0)) for s in (
                    TicketSource.MAINTENANCE_PLAN, TicketSource.DEVICE_EVENT,
                    TicketSource.ANALYTICS)),
                *(f"{c[m].met}/{c[m].decided}" for m in ("respond", "diagnose", "restore")),
                _num(None if row.mttr_h is None else round(row.mttr_h, 1)),
                _pct(row.first_time_fix_rate),
                f"{row.satisfaction_answers}/{row.surveys_sent}",
                _num(None if row.satisfaction_mean is None else round(row.satisfaction_mean, 2)),
                f"{row.predicted.confirmed}/{row.predicted.opened}")
    return [cells(r) for r in [*report.rows, report.total]]


def printout(year: Year) -> Iterator[str]:
    s = year.scenario
    yield (f"vigil demo-year: {s.model} {s.device_id} at {year.site}, {s.start:%Y-%m-%d} to "
           f"{s.end:%Y-%m-%d} (exclusive), seed {s.seed}")
    yield from (line.render() for line in year.lines)
    report = year.report
    if report is None:
        return
    yield ""
    yield (f"Service-quality report {report.start:%Y-%m-%d} to {report.end:%Y-%m-%d}, by device "
           "model (compliance: met/decided; surveys: answered/sent; predicted: confirmed/opened)")
    table = [REPORT_HEAD, *report_rows(report)]
    widths = [max(len(r[i]) for r in table) for i in range(len(REPORT_HEAD))]
    for row in table:
        yield "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
    for kind in MaintenanceKind:
        done = report.maintenance.get(kind.value)
        if done is not None:
            yield (f"{kind.value}: {done.done} of {done.due} due done ({_pct(done.rate)}), "
                   f"{done.on_time} on time ({_pct(done.on_time_rate)})")


def timeline_markdown(year: Year) -> str:
    rows = ["| when (UTC) | what | ticket | detail |", "|---|---|---|---|"]
    rows += [f"| {ln.at:%Y-%m-%d %H:%M} | {ln.what} | {'' if ln.ticket is None else ln.ticket}"
             f" | {ln.text.replace('|', '/')} |" for ln in year.lines]
    return "\n".join(rows) + "\n"


def timeline_csv(year: Year) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["at", "what", "ticket", "detail"])
    writer.writerows([ln.at.isoformat(), ln.what, ln.ticket, ln.text] for ln in year.lines)
    return out.getvalue()


def write_files(year: Year, out: Path, timeline_format: str) -> list[Path]:
    import json

    from vigil.reports import render

    out.mkdir(parents=True, exist_ok=True)
    written = []
    timeline = out / f"timeline.{timeline_format}"
    timeline.write_text(timeline_markdown(year) if timeline_format == "md"
                        else timeline_csv(year), encoding="utf-8")
    written.append(timeline)
    vouchers = out / "vouchers"
    vouchers.mkdir(exist_ok=True)
    for ticket_id, html in sorted(year.vouchers.items()):
        path = vouchers / f"ticket-{ticket_id}.html"
        path.write_text(html, encoding="utf-8")
        written.append(path)
    for ticket_id, pdf in sorted(year.voucher_pdfs.items()):
        path = vouchers / f"ticket-{ticket_id}.pdf"
        path.write_bytes(pdf)
        written.append(path)
    if year.report is not None:
        (out / "report.json").write_text(json.dumps(render.as_json(year.report), indent=2) + "\n",
                                         encoding="utf-8")
        (out / "report.csv").write_text(render.as_csv(year.report), encoding="utf-8")
        written += [out / "report.json", out / "report.csv"]
    return written


# --- the command ----------------------------------------------------------------------------


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a day as YYYY-MM-DD, not {text!r}") from None


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device-model", default=DEFAULT_MODEL,
                        help=f"the device's model, one of {', '.join(MODELS)} "
                             f"(default {DEFAULT_MODEL})")
    parser.add_argument("--seed", type=int, default=1,
                        help="decides the days of faults and predictions, the daily use, the "
                             "calibration out of tolerance and the engineer's pace")
    parser.add_argument("--start", type=_day,
                        help="first day, UTC (default: --days before today)")
    parser.add_argument("--days", type=int, default=365, help="how long to replay")
    parser.add_argument("--database", choices=["fresh", "configured"], default="fresh",
                        help="fresh: a new SQLite database (year.sqlite in --out, else a "
                             "temporary one); configured: the configured database, which must "
                             "not hold the demo organisation yet")
    parser.add_argument("--out", type=Path,
                        help="also write the timeline, each voucher's HTML and the report "
                             "(JSON, CSV) into this folder")
    parser.add_argument("--format", choices=["md", "csv"], default="md",
                        help="the timeline file's format with --out")
    parser.add_argument("--pdf", action="store_true",
                        help="render each voucher as PDF as well (WeasyPrint)")


def run(args: argparse.Namespace) -> int:
    from vigil.config import get_settings
    from vigil.db import migrations
    from vigil.db.session import make_engine, make_session_factory

    try:
        start_day = args.start or datetime.now(UTC).date() - timedelta(days=args.days)
        scenario = plan_year(model=args.device_model, seed=args.seed, days=args.days,
                             start=datetime.combine(start_day, time(), UTC))
    except InvalidRequest as exc:
        print(f"vigil demo-year: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="vigil-demo-year-") as scratch:
        if args.database == "configured":
            url = get_settings().sql_url
        else:
            folder = args.out or Path(scratch)
            folder.mkdir(parents=True, exist_ok=True)
            database = folder / "year.sqlite"
            if database.exists():
                print(f"vigil demo-year: {database} exists; remove it or choose another --out",
                      file=sys.stderr)
                return 2
            url = f"sqlite:///{database}"
        engine = make_engine(url)
        try:
            migrations.upgrade(engine)
            year = replay(make_session_factory(engine), scenario, with_pdf=args.pdf)
        except InvalidRequest as exc:
            print(f"vigil demo-year: {exc}", file=sys.stderr)
            return 2
        finally:
            engine.dispose()
    for text in printout(year):
        print(text)
    if args.out is not None:
        written = write_files(year, args.out, args.format)
        print(f"\nvigil demo-year: {len(written)} files in {args.out}", file=sys.stderr)
    return 0
