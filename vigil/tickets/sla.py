"""Service-level deadlines on a service calendar: pure functions, no I/O.

A contract promises to respond, diagnose and restore within so much *service
time*: the time its calendar is open (24 x 7, or business hours in the site's
time zone without weekends and holidays). The restore clock also stops while
the ticket waits on the customer or on parts (a ``Pause``).

Working hours are local wall-clock hours, so 08:00-17:00 stays 08:00-17:00 on
the days the clocks change; every instant is handled as an aware UTC datetime
because arithmetic on aware datetimes in one ``ZoneInfo`` is wall-clock
arithmetic and would be an hour off across a change. Results are in UTC.

The walk over the calendar takes one step per open period (a working day), so
weekends, holidays and long pauses cost a date check each, not minutes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from vigil.db.enums import Milestone

PRIORITIES: tuple[str, ...] = ("P1", "P2", "P3")
ALL_DAYS: frozenset[int] = frozenset(range(7))
MONDAY_TO_FRIDAY: frozenset[int] = frozenset(range(5))
DEFAULT_AT_RISK_FRACTION = 0.75

# Stands for "never" at the end of an open period or a pause that has not ended.
_FOREVER = datetime.max.replace(tzinfo=UTC)
_ONE_DAY = timedelta(days=1)


def _require_aware(value: datetime, name: str) -> datetime:
    """The instant in UTC; a naive datetime is refused because its zone would be a guess."""
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


class ClockStopped(Exception):
    """The duration cannot elapse: a pause without an end stops the clock before it does."""

    def __init__(self, remaining: timedelta) -> None:
        super().__init__(f"a pause without an end stops the clock with {remaining} still to run")
        self.remaining = remaining


@dataclass(frozen=True)
class ServiceCalendar:
    """When the service clock runs: working hours on working days in one time zone.

    ``hours`` None means whole days (24 x 7 with the default ``workdays``).
    ``workdays`` (0 = Monday) left None becomes every day for whole days and
    Monday-Friday for working hours; after construction it is always a set.
    ``holidays`` are local dates that are closed all day. Hours must not cross midnight.
    """

    timezone: str = "UTC"
    hours: tuple[time, time] | None = None
    workdays: frozenset[int] | None = None
    holidays: frozenset[date] = frozenset()
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _open_days: frozenset[int] = field(init=False, repr=False, compare=False)
    _always_open: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
            raise ValueError(f"unknown time zone {self.timezone!r}") from exc
        object.__setattr__(self, "_zone", zone)
        if self.hours is not None:
            hours = tuple(self.hours)
            if len(hours) != 2 or not all(isinstance(h, time) for h in hours):
                raise ValueError(f"hours must be a (start, end) pair of times, got {self.hours!r}")
            start, end = hours
            if start.tzinfo is not None or end.tzinfo is not None:
                raise ValueError("hours are local wall-clock times and must be naive")
            if end <= start:
                raise ValueError(
                    f"working hours must end after they start on the same day, got "
                    f"{start.isoformat()}-{end.isoformat()}; hours crossing midnight are not "
                    "supported"
                )
            object.__setattr__(self, "hours", (start, end))
        if self.workdays is None:
            workdays = ALL_DAYS if self.hours is None else MONDAY_TO_FRIDAY
        else:
            workdays = frozenset(self.workdays)
        if not workdays:
            raise ValueError("a service calendar needs at least one working day")
        if not all(type(d) is int and 0 <= d <= 6 for d in workdays):
            raise ValueError(f"workdays are 0 (Monday) to 6 (Sunday), got {sorted(workdays)}")
        object.__setattr__(self, "workdays", workdays)
        object.__setattr__(self, "_open_days", workdays)
        holidays = frozenset(self.holidays)
        if not all(isinstance(d, date) and not isinstance(d, datetime) for d in holidays):
            raise ValueError("holidays must be dates (local calendar days), not datetimes")
        object.__setattr__(self, "holidays", holidays)
        always = self.hours is None and workdays == ALL_DAYS and not holidays
        object.__setattr__(self, "_always_open", always)

    @classmethod
    def always(cls, timezone: str = "UTC", holidays: Iterable[date] = ()) -> ServiceCalendar:
        """24 x 7 service; the zone only matters for where holidays fall."""
        return cls(timezone=timezone, holidays=frozenset(holidays))

    @classmethod
    def business(
        cls,
        timezone: str,
        start: time = time(8),
        end: time = time(17),
        workdays: Iterable[int] = MONDAY_TO_FRIDAY,
        holidays: Iterable[date] = (),
    ) -> ServiceCalendar:
        """Business hours in the site's zone, Monday to Friday unless told otherwise."""
        return cls(
            timezone=timezone,
            hours=(start, end),
            workdays=frozenset(workdays),
            holidays=frozenset(holidays),
        )

    @property
    def is_always_open(self) -> bool:
        """Open at every instant, so service time is plain elapsed time."""
        return self._always_open

    def is_open(self, at: datetime) -> bool:
        """Whether the service clock runs at this instant (periods are [start, end))."""
        instant = _require_aware(at, "at")
        if self.is_always_open:
            return True
        day = instant.astimezone(self._zone).date()
        period = self._period(day)
        return period is not None and period[0] <= instant < period[1]

    def _period(self, day: date) -> tuple[datetime, datetime] | None:
        """The open period of a local day in UTC, or None if the day is closed.

        A nonexistent local time (clocks going forward) is taken with the offset
        before the change, i.e. moved later by the gap; an ambiguous one (clocks
        going back) means its first occurrence.
        """
        if day.weekday() not in self._open_days or day in self.holidays:
            return None
        return _local_period(self._zone, self.hours, day)

    def _next_open(self, at: datetime) -> tuple[datetime, datetime]:
        """The open stretch that contains ``at`` or comes first after it, cut to begin at ``at``."""
        if self.is_always_open:
            return at, _FOREVER
        day = at.astimezone(self._zone).date()
        while True:
            period = self._period(day)
            if period is not None and period[1] > at:
                return max(period[0], at), period[1]
            day += _ONE_DAY


ALWAYS = ServiceCalendar()


# A watchdog pass asks for the same few weeks of days for thousands of tickets.
@lru_cache(maxsize=16384)
def _local_period(
    zone: ZoneInfo, hours: tuple[time, time] | None, day: date
) -> tuple[datetime, datetime] | None:
    """The UTC stretch of a day's local working hours (the whole day if None)."""
    if hours is None:
        start = datetime.combine(day, time(), tzinfo=zone)
        end = datetime.combine(day + _ONE_DAY, time(), tzinfo=zone)
    else:
        start = datetime.combine(day, hours[0], tzinfo=zone)
        end = datetime.combine(day, hours[1], tzinfo=zone)
    start_utc, end_utc = start.astimezone(UTC), end.astimezone(UTC)
    if end_utc <= start_utc:
        return None
    return start_utc, end_utc


@dataclass(frozen=True)
class Pause:
    """A stretch when the restore clock stands still, e.g. waiting on the customer or parts.

    ``end`` None means the ticket is still waiting: the clock is stopped from
    ``start`` on until the pause is closed.
    """

    start: datetime
    end: datetime | None
    reason: str

    def __post_init__(self) -> None:
        _require_aware(self.start, "pause start")
        if self.end is not None:
            _require_aware(self.end, "pause end")
            if self.end < self.start:
                raise ValueError(
                    f"pause ends ({self.end.isoformat()}) before it starts "
                    f"({self.start.isoformat()})"
                )
        if not self.reason or not self.reason.strip():
            raise ValueError("a pause needs a reason (the service manager has to see why)")


def _merged_pauses(pauses: Sequence[Pause], after: datetime) -> list[tuple[datetime, datetime]]:
    """Pauses as sorted, disjoint UTC stretches ending after ``after``; open ends are _FOREVER."""
    stretches = sorted(
        (p.start.astimezone(UTC), _FOREVER if p.end is None else p.end.astimezone(UTC))
        for p in pauses
    )
    merged: list[tuple[datetime, datetime]] = []
    for start, end in stretches:
        if end <= after or end <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _running(
    calendar: ServiceCalendar, start: datetime, pauses: Sequence[Pause]
) -> Iterator[tuple[datetime, datetime]]:
    """The stretches from ``start`` on when the clock runs, in order; ends if a pause never does."""
    stops = _merged_pauses(pauses, start)
    at, i = start, 0
    while True:
        while i < len(stops) and stops[i][1] <= at:
            i += 1
        if i < len(stops) and stops[i][0] <= at:
            if stops[i][1] == _FOREVER:
                return
            at = stops[i][1]
            continue
        open_from, open_until = calendar._next_open(at)
        if i < len(stops) and stops[i][0] < open_until:
            if stops[i][0] > open_from:
                yield open_from, stops[i][0]
            at = stops[i][0]
        else:
            yield open_from, open_until
            at = open_until


def add_service_time(
    start: datetime,
    duration: timedelta,
    calendar: ServiceCalendar,
    pauses: Sequence[Pause] = (),
) -> datetime:
    """The instant (UTC) when ``duration`` of service time has run after ``start``.

    A zero duration gives ``start``. Otherwise the result is the end of running
    time, so it may be the closing time itself (Friday 16:00 + 1 h of 08-17 is
    Friday 17:00). Raises ``ClockStopped`` if a pause without an end stops the
    clock first; ``deadline`` turns that into None.
    """
    at = _require_aware(start, "start")
    if duration < timedelta(0):
        raise ValueError(f"duration must not be negative, got {duration}")
    if duration == timedelta(0):
        return at
    if calendar.is_always_open and not pauses:
        return at + duration
    remaining = duration
    for open_from, open_until in _running(calendar, at, pauses):
        available = open_until - open_from
        if remaining <= available:
            return open_from + remaining
        remaining -= available
    raise ClockStopped(remaining)


def deadline(
    start: datetime,
    duration: timedelta,
    calendar: ServiceCalendar,
    pauses: Sequence[Pause] = (),
) -> datetime | None:
    """Like ``add_service_time``, but None while an unended pause keeps the deadline open."""
    try:
        return add_service_time(start, duration, calendar, pauses)
    except ClockStopped:
        return None


def service_time_between(
    start: datetime,
    end: datetime,
    calendar: ServiceCalendar,
    pauses: Sequence[Pause] = (),
) -> timedelta:
    """Service time that ran from ``start`` to ``end``; zero if ``end`` is not after ``start``."""
    begin = _require_aware(start, "start")
    finish = _require_aware(end, "end")
    if finish <= begin:
        return timedelta(0)
    if calendar.is_always_open and not pauses:
        return finish - begin
    total = timedelta(0)
    for open_from, open_until in _running(calendar, begin, pauses):
        if open_from >= finish:
            break
        total += min(open_until, finish) - open_from
    return total


class MilestoneStatus(StrEnum):
    """Where a ticket stands against one milestone."""

    OK = "ok"
    AT_RISK = "at_risk"
    BREACHED = "breached"
    MET = "met"


@dataclass(frozen=True)
class Targets:
    """Service time allowed for each milestone of one priority."""

    respond: timedelta
    diagnose: timedelta
    restore: timedelta

    def __post_init__(self) -> None:
        for milestone in Milestone:
            value = getattr(self, milestone.value)
            if not isinstance(value, timedelta) or value <= timedelta(0):
                raise ValueError(f"{milestone} target must be a positive duration, got {value!r}")
        if not self.respond <= self.diagnose <= self.restore:
            raise ValueError(
                "targets must not shrink from respond to diagnose to restore, got "
                f"{self.respond} / {self.diagnose} / {self.restore}"
            )

    def __getitem__(self, milestone: Milestone | str) -> timedelta:
        match Milestone(milestone):
            case Milestone.RESPOND:
                return self.respond
            case Milestone.DIAGNOSE:
                return self.diagnose
            case Milestone.RESTORE:
                return self.restore


@dataclass(frozen=True)
class ServiceLevels:
    """The targets of a contract for each priority."""

    p1: Targets
    p2: Targets
    p3: Targets

    def for_priority(self, priority: str) -> Targets:
        by_priority = {"P1": self.p1, "P2": self.p2, "P3": self.p3}
        if priority not in by_priority:
            raise ValueError(f"unknown priority {priority!r}; expected one of {PRIORITIES}")
        return by_priority[priority]

    def duration(self, priority: str, milestone: Milestone | str) -> timedelta:
        return self.for_priority(priority)[milestone]

    def to_minutes(self) -> dict[str, dict[str, int]]:
        """The plain form contracts store as JSON (whole minutes)."""
        return {
            priority: {
                m.value: int(self.for_priority(priority)[m] // timedelta(minutes=1))
                for m in Milestone
            }
            for priority in PRIORITIES
        }

    @classmethod
    def from_minutes(
        cls, data: Mapping[str, Any], base: ServiceLevels | None = None
    ) -> ServiceLevels:
        """Levels from ``{"P1": {"respond": 60, ...}, ...}`` in minutes, as contracts store them.

        A contract may override only some entries; the others are taken from
        ``base`` (the defaults when None). Raises ValueError naming the
        offending entry.
        """
        # ValueError, not TypeError: a bad contract document is bad data, like a bad number.
        if not isinstance(data, Mapping):
            raise ValueError(  # noqa: TRY004
                f"service levels must be a mapping of priorities, got {data!r}"
            )
        unknown = set(data) - set(PRIORITIES)
        if unknown:
            raise ValueError(
                f"unknown priorities {sorted(map(str, unknown))} in service levels; "
                f"expected {', '.join(PRIORITIES)}"
            )
        fallback = DEFAULT_SERVICE_LEVELS if base is None else base
        targets: dict[str, Targets] = {}
        for priority in PRIORITIES:
            given = data.get(priority, {})
            if not isinstance(given, Mapping):
                raise ValueError(  # noqa: TRY004
                    f"service levels for {priority} must be a mapping, got {given!r}"
                )
            unknown_milestones = set(given) - {m.value for m in Milestone}
            if unknown_milestones:
                raise ValueError(
                    f"unknown milestones {sorted(map(str, unknown_milestones))} for {priority}; "
                    f"expected {', '.join(m.value for m in Milestone)}"
                )
            durations: dict[str, timedelta] = {}
            for milestone in Milestone:
                if milestone.value not in given:
                    durations[milestone.value] = fallback.duration(priority, milestone)
                    continue
                minutes = given[milestone.value]
                if isinstance(minutes, bool) or not isinstance(minutes, int) or minutes <= 0:
                    raise ValueError(
                        f"{priority} {milestone} must be a positive whole number of minutes, "
                        f"got {minutes!r}"
                    )
                durations[milestone.value] = timedelta(minutes=minutes)
            try:
                targets[priority] = Targets(**durations)
            except ValueError as exc:
                raise ValueError(f"{priority}: {exc}") from exc
        return cls(p1=targets["P1"], p2=targets["P2"], p3=targets["P3"])


DEFAULT_SERVICE_LEVELS = ServiceLevels(
    p1=Targets(
        respond=timedelta(hours=1), diagnose=timedelta(hours=4), restore=timedelta(hours=24)
    ),
    p2=Targets(
        respond=timedelta(hours=2), diagnose=timedelta(hours=24), restore=timedelta(hours=72)
    ),
    p3=Targets(respond=timedelta(hours=4), diagnose=timedelta(hours=48), restore=timedelta(days=7)),
)


@dataclass(frozen=True)
class Deadlines:
    """When each milestone of a ticket is due (UTC); ``restore_by`` None while it is paused."""

    respond_by: datetime
    diagnose_by: datetime
    restore_by: datetime | None

    def __getitem__(self, milestone: Milestone | str) -> datetime | None:
        match Milestone(milestone):
            case Milestone.RESPOND:
                return self.respond_by
            case Milestone.DIAGNOSE:
                return self.diagnose_by
            case Milestone.RESTORE:
                return self.restore_by


def deadlines(
    opened_at: datetime,
    priority: str,
    levels: ServiceLevels,
    calendar: ServiceCalendar,
    restore_pauses: Sequence[Pause] = (),
) -> Deadlines:
    """The three deadlines of a ticket; only the restore clock stops for pauses."""
    targets = levels.for_priority(priority)
    return Deadlines(
        respond_by=add_service_time(opened_at, targets.respond, calendar),
        diagnose_by=add_service_time(opened_at, targets.diagnose, calendar),
        restore_by=deadline(opened_at, targets.restore, calendar, restore_pauses),
    )


def progress(
    opened_at: datetime,
    deadline_duration: timedelta,
    now: datetime,
    calendar: ServiceCalendar,
    pauses: Sequence[Pause] = (),
) -> float:
    """Fraction of a milestone's service time used by ``now``; 1.0 or more is a breach."""
    if deadline_duration <= timedelta(0):
        raise ValueError(f"a milestone's duration must be positive, got {deadline_duration}")
    return service_time_between(opened_at, now, calendar, pauses) / deadline_duration


def classify(
    fraction: float, at_risk_fraction: float = DEFAULT_AT_RISK_FRACTION
) -> MilestoneStatus:
    """Status of a milestone not yet met, from the fraction of its time used."""
    if not 0.0 < at_risk_fraction < 1.0:
        raise ValueError(f"at_risk_fraction must be between 0 and 1, got {at_risk_fraction}")
    if fraction >= 1.0:
        return MilestoneStatus.BREACHED
    if fraction >= at_risk_fraction:
        return MilestoneStatus.AT_RISK
    return MilestoneStatus.OK


def milestone_status(
    opened_at: datetime,
    deadline_duration: timedelta,
    now: datetime,
    calendar: ServiceCalendar,
    pauses: Sequence[Pause] = (),
    met_at: datetime | None = None,
    at_risk_fraction: float = DEFAULT_AT_RISK_FRACTION,
) -> MilestoneStatus:
    """Status of one milestone at ``now``.

    A milestone reached (``met_at``) is MET if it was reached within its
    service time, otherwise BREACHED for good: meeting it late does not undo
    the breach.
    """
    if met_at is not None:
        used = service_time_between(opened_at, met_at, calendar, pauses)
        return MilestoneStatus.MET if used <= deadline_duration else MilestoneStatus.BREACHED
    fraction = progress(opened_at, deadline_duration, now, calendar, pauses)
    return classify(fraction, at_risk_fraction)
