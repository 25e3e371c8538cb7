"""What happens in a demo device's year, decided from a seed alone: pure, no clock, no I/O.

``plan_year`` picks the daily use, the days of the faults and predictions and the
calibration out of tolerance; ``work_order`` paces an engineer's work on a ticket;
``measure`` makes measured values against a plan's tolerances.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from edge_agent.simulator.physics import FAILURE_CODES, FAULT_TYPES, WARNING_CODES
from vigil.demo import PLANS
from vigil.errors import InvalidRequest

MODELS = tuple(sorted(PLANS))
DEFAULT_MODEL = "ventilator"
# Hours of use per day (mean, spread) by model: an ICU ventilator runs about half the day,
# which brings the demo's 200-hour lubrication plan due about every 17 days.
DAILY_USE_H: Mapping[str, tuple[float, float]] = {
    "ventilator": (12.0, 4.0), "infusion_pump": (9.0, 3.0), "patient_monitor": (20.0, 3.0),
    "ct": (10.0, 2.0), "mri": (12.0, 2.0)}


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


