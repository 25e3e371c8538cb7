"""Service-level deadlines: hand-computed cases, then properties over many calendars."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil.tickets.sla import (
    ALL_DAYS,
    ALWAYS,
    DEFAULT_SERVICE_LEVELS,
    ClockStopped,
    Milestone,
    MilestoneStatus,
    Pause,
    ServiceCalendar,
    ServiceLevels,
    Targets,
    add_service_time,
    classify,
    deadline,
    deadlines,
    milestone_status,
    progress,
    service_time_between,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
H = timedelta(hours=1)
BERLIN_OFFICE = ServiceCalendar.business("Europe/Berlin")
# Working every day, so the clock-change Sundays are working days.
BERLIN_EVERY_DAY = ServiceCalendar.business("Europe/Berlin", workdays=ALL_DAYS)
NEW_YORK_EVERY_DAY = ServiceCalendar.business("America/New_York", workdays=ALL_DAYS)


def berlin(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=BERLIN)


def new_york(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=NEW_YORK)


class TestBusinessHours:
    def test_friday_afternoon_runs_into_monday(self) -> None:
        friday = berlin(2026, 12, 4, 16)
        assert friday.weekday() == 4
        assert add_service_time(friday, 4 * H, BERLIN_OFFICE) == berlin(2026, 12, 7, 11)

    def test_result_is_utc(self) -> None:
        result = add_service_time(berlin(2026, 12, 4, 16), 4 * H, BERLIN_OFFICE)
        assert result.tzinfo is UTC
        assert result == datetime(2026, 12, 7, 10, tzinfo=UTC)

    def test_ending_exactly_at_closing_time_is_not_pushed_to_the_next_day(self) -> None:
        assert add_service_time(berlin(2026, 12, 4, 16), H, BERLIN_OFFICE) == berlin(
            2026, 12, 4, 17
        )

    def test_start_before_opening_counts_from_opening(self) -> None:
        assert add_service_time(berlin(2026, 12, 7, 6), H, BERLIN_OFFICE) == berlin(2026, 12, 7, 9)

    def test_start_on_saturday_counts_from_monday(self) -> None:
        saturday = berlin(2026, 12, 5, 12)
        assert add_service_time(saturday, 2 * H, BERLIN_OFFICE) == berlin(2026, 12, 7, 10)

    def test_zero_duration_is_the_start(self) -> None:
        saturday = berlin(2026, 12, 5, 12)
        assert add_service_time(saturday, timedelta(0), BERLIN_OFFICE) == saturday

    def test_seven_days_of_service_time_on_office_hours(self) -> None:
        # 168 h at 9 h a day: 18 working days and 6 h, from Monday 08:00.
        monday = berlin(2026, 11, 2, 8)
        assert add_service_time(monday, timedelta(days=7), BERLIN_OFFICE) == berlin(
            2026, 11, 26, 14
        )

    def test_holidays_are_skipped(self) -> None:
        calendar = ServiceCalendar.business(
            "Europe/Berlin", holidays=[date(2026, 12, 25), date(2026, 12, 28)]
        )
        christmas_eve = berlin(2026, 12, 24, 16)
        # 1 h on Thursday; Friday and Monday are holidays; 2 h on Tuesday.
        assert add_service_time(christmas_eve, 3 * H, calendar) == berlin(2026, 12, 29, 10)
        assert not calendar.is_open(berlin(2026, 12, 25, 10))
        assert calendar.is_open(berlin(2026, 12, 29, 10))

    def test_whole_day_holidays_on_a_24x7_calendar(self) -> None:
        calendar = ServiceCalendar.always("America/New_York", holidays=[date(2026, 12, 25)])
        start = new_york(2026, 12, 24, 23)
        assert add_service_time(start, 2 * H, calendar) == new_york(2026, 12, 26, 1)

    def test_other_working_week(self) -> None:
        # Sunday to Thursday.
        calendar = ServiceCalendar.business("Asia/Dubai", workdays={6, 0, 1, 2, 3})
        thursday = datetime(2026, 12, 3, 16, tzinfo=ZoneInfo("Asia/Dubai"))
        assert add_service_time(thursday, 2 * H, calendar) == datetime(
            2026, 12, 6, 9, tzinfo=ZoneInfo("Asia/Dubai")
        )

    def test_is_open_is_half_open(self) -> None:
        assert BERLIN_OFFICE.is_open(berlin(2026, 12, 7, 8))
        assert BERLIN_OFFICE.is_open(berlin(2026, 12, 7, 16, 59, 59))
        assert not BERLIN_OFFICE.is_open(berlin(2026, 12, 7, 17))
        assert not BERLIN_OFFICE.is_open(berlin(2026, 12, 7, 7, 59))
        assert not BERLIN_OFFICE.is_open(berlin(2026, 12, 5, 12))

    def test_is_open_uses_the_calendar_zone_not_the_argument_zone(self) -> None:
        # 08:30 in New York is 14:30 in Berlin, a Monday.
        assert BERLIN_OFFICE.is_open(new_york(2026, 12, 7, 8, 30))
        # 12:00 in New York is 18:00 in Berlin: closed there.
        assert not BERLIN_OFFICE.is_open(new_york(2026, 12, 7, 12))


class TestDaylightSaving:
    def test_berlin_spring_forward_day_keeps_its_local_hours(self) -> None:
        day = BERLIN_EVERY_DAY
        saturday = berlin(2026, 3, 28, 16)
        assert add_service_time(saturday, 2 * H, day) == berlin(2026, 3, 29, 9)
        assert berlin(2026, 3, 29, 9).utcoffset() == 2 * H
        assert service_time_between(berlin(2026, 3, 29), berlin(2026, 3, 30), day) == 9 * H

    def test_berlin_fall_back_day_keeps_its_local_hours(self) -> None:
        saturday = berlin(2026, 10, 24, 16)
        assert add_service_time(saturday, 2 * H, BERLIN_EVERY_DAY) == berlin(2026, 10, 25, 9)
        assert berlin(2026, 10, 25, 9).utcoffset() == H
        between = service_time_between(berlin(2026, 10, 25), berlin(2026, 10, 26), BERLIN_EVERY_DAY)
        assert between == 9 * H

    def test_new_york_weekend_change_moves_monday_by_the_offset(self) -> None:
        friday = new_york(2026, 3, 6, 16)
        result = add_service_time(friday, 2 * H, ServiceCalendar.business("America/New_York"))
        assert result == new_york(2026, 3, 9, 9)
        assert result == datetime(2026, 3, 9, 13, tzinfo=UTC)

    def test_new_york_spring_forward_and_fall_back_days(self) -> None:
        assert add_service_time(new_york(2026, 3, 7, 16, 30), H, NEW_YORK_EVERY_DAY) == new_york(
            2026, 3, 8, 8, 30
        )
        assert add_service_time(new_york(2026, 10, 31, 16, 30), H, NEW_YORK_EVERY_DAY) == new_york(
            2026, 11, 1, 8, 30
        )
        assert datetime(2026, 11, 1, 13, 30, tzinfo=UTC) == new_york(2026, 11, 1, 8, 30)

    def test_whole_days_follow_the_wall_clock(self) -> None:
        # The spring-forward day has 23 hours, the fall-back day 25.
        for calendar in (
            ServiceCalendar.always("Europe/Berlin"),
            ServiceCalendar.always("Europe/Berlin", holidays=[date(2026, 1, 1)]),
        ):
            spring = service_time_between(berlin(2026, 3, 29), berlin(2026, 3, 30), calendar)
            autumn = service_time_between(berlin(2026, 10, 25), berlin(2026, 10, 26), calendar)
            assert (spring, autumn) == (23 * H, 25 * H)

    def test_hours_across_the_change_count_real_time(self) -> None:
        calendar = ServiceCalendar("Europe/Berlin", hours=(time(0), time(6)), workdays=ALL_DAYS)
        assert service_time_between(berlin(2026, 3, 29), berlin(2026, 3, 30), calendar) == 5 * H
        assert service_time_between(berlin(2026, 10, 25), berlin(2026, 10, 26), calendar) == 7 * H

    def test_opening_time_in_the_gap_moves_later(self) -> None:
        # 02:30 does not exist on 29 March; the day opens at 03:30 CEST.
        calendar = ServiceCalendar("Europe/Berlin", hours=(time(2, 30), time(5)), workdays=ALL_DAYS)
        day_start, day_end = berlin(2026, 3, 29), berlin(2026, 3, 30)
        assert service_time_between(day_start, day_end, calendar) == timedelta(hours=1.5)
        assert add_service_time(day_start, H, calendar) == datetime(2026, 3, 29, 2, 30, tzinfo=UTC)


class TestPauses:
    def test_pause_inside_working_hours_moves_the_deadline(self) -> None:
        pause = Pause(berlin(2026, 12, 7, 10), berlin(2026, 12, 7, 12), "waiting on customer")
        start = berlin(2026, 12, 7, 9)
        assert add_service_time(start, 4 * H, BERLIN_OFFICE, [pause]) == berlin(2026, 12, 7, 15)
        assert service_time_between(start, berlin(2026, 12, 7, 15), BERLIN_OFFICE, [pause]) == 4 * H

    def test_pause_over_a_weekend_costs_nothing(self) -> None:
        pause = Pause(berlin(2026, 12, 4, 17), berlin(2026, 12, 7, 8), "waiting on parts")
        friday = berlin(2026, 12, 4, 16)
        assert add_service_time(friday, 4 * H, BERLIN_OFFICE, [pause]) == berlin(2026, 12, 7, 11)

    def test_overlapping_pauses_count_once(self) -> None:
        pauses = [
            Pause(berlin(2026, 12, 7, 10), berlin(2026, 12, 7, 12), "waiting on parts"),
            Pause(berlin(2026, 12, 7, 11), berlin(2026, 12, 7, 13), "waiting on customer"),
        ]
        start = berlin(2026, 12, 7, 9)
        assert add_service_time(start, 4 * H, BERLIN_OFFICE, pauses) == berlin(2026, 12, 7, 16)

    def test_pause_already_over_before_start_is_ignored(self) -> None:
        pause = Pause(berlin(2026, 12, 1, 10), berlin(2026, 12, 1, 12), "waiting on parts")
        start = berlin(2026, 12, 7, 9)
        assert add_service_time(start, H, BERLIN_OFFICE, [pause]) == berlin(2026, 12, 7, 10)

    def test_pause_without_end_stops_the_clock(self) -> None:
        pause = Pause(berlin(2026, 12, 7, 10), None, "waiting on customer")
        start = berlin(2026, 12, 7, 9)
        with pytest.raises(ClockStopped) as stopped:
            add_service_time(start, 4 * H, BERLIN_OFFICE, [pause])
        assert stopped.value.remaining == 3 * H
        assert deadline(start, 4 * H, BERLIN_OFFICE, [pause]) is None
        later = berlin(2026, 12, 9, 12)
        assert service_time_between(start, later, BERLIN_OFFICE, [pause]) == H

    def test_pause_without_end_after_the_deadline_changes_nothing(self) -> None:
        pause = Pause(berlin(2026, 12, 7, 14), None, "waiting on customer")
        start = berlin(2026, 12, 7, 9)
        assert deadline(start, 4 * H, BERLIN_OFFICE, [pause]) == berlin(2026, 12, 7, 13)

    def test_pause_on_a_24x7_calendar(self) -> None:
        start = datetime(2026, 12, 7, tzinfo=UTC)
        pause = Pause(start + H, start + 3 * H, "waiting on parts")
        assert add_service_time(start, 4 * H, ALWAYS, [pause]) == start + 6 * H

    def test_pause_is_validated(self) -> None:
        with pytest.raises(ValueError, match="before it starts"):
            Pause(berlin(2026, 12, 7, 12), berlin(2026, 12, 7, 10), "parts")
        with pytest.raises(ValueError, match="reason"):
            Pause(berlin(2026, 12, 7, 10), None, " ")
        with pytest.raises(ValueError, match="timezone-aware"):
            Pause(datetime(2026, 12, 7, 10), None, "parts")


class TestDeadlines:
    def test_default_levels_are_the_handbook_table(self) -> None:
        assert DEFAULT_SERVICE_LEVELS.to_minutes() == {
            "P1": {"respond": 60, "diagnose": 240, "restore": 1440},
            "P2": {"respond": 120, "diagnose": 1440, "restore": 4320},
            "P3": {"respond": 240, "diagnose": 2880, "restore": 10080},
        }

    def test_p1_on_office_hours(self) -> None:
        friday = berlin(2026, 12, 4, 16)
        due = deadlines(friday, "P1", DEFAULT_SERVICE_LEVELS, BERLIN_OFFICE)
        assert due.respond_by == berlin(2026, 12, 4, 17)
        assert due.diagnose_by == berlin(2026, 12, 7, 11)
        # 1 h Friday, 9 h Monday, 9 h Tuesday, 5 h Wednesday.
        assert due.restore_by == berlin(2026, 12, 9, 13)
        assert due[Milestone.DIAGNOSE] == due.diagnose_by

    def test_only_the_restore_clock_pauses(self) -> None:
        opened = datetime(2026, 12, 7, 9, tzinfo=UTC)
        pause = Pause(opened, opened + 10 * H, "waiting on customer")
        due = deadlines(opened, "P2", DEFAULT_SERVICE_LEVELS, ALWAYS, [pause])
        assert due.respond_by == opened + 2 * H
        assert due.diagnose_by == opened + 24 * H
        assert due.restore_by == opened + 82 * H

    def test_open_pause_leaves_restore_without_deadline(self) -> None:
        opened = datetime(2026, 12, 7, 9, tzinfo=UTC)
        pause = Pause(opened + H, None, "waiting on parts")
        due = deadlines(opened, "P1", DEFAULT_SERVICE_LEVELS, ALWAYS, [pause])
        assert due.respond_by == opened + H
        assert due.restore_by is None

    def test_unknown_priority(self) -> None:
        with pytest.raises(ValueError, match="P4"):
            deadlines(datetime(2026, 12, 7, tzinfo=UTC), "P4", DEFAULT_SERVICE_LEVELS, ALWAYS)


class TestServiceLevelsFromContracts:
    def test_round_trip(self) -> None:
        minutes = DEFAULT_SERVICE_LEVELS.to_minutes()
        assert ServiceLevels.from_minutes(minutes) == DEFAULT_SERVICE_LEVELS

    def test_partial_override_keeps_the_rest(self) -> None:
        levels = ServiceLevels.from_minutes({"P1": {"respond": 30}})
        assert levels.duration("P1", "respond") == timedelta(minutes=30)
        assert levels.p1.restore == timedelta(hours=24)
        assert levels.p3 == DEFAULT_SERVICE_LEVELS.p3

    def test_override_on_another_base(self) -> None:
        base = ServiceLevels.from_minutes({"P3": {"restore": 20160}})
        levels = ServiceLevels.from_minutes({"P3": {"respond": 60}}, base=base)
        assert levels.p3 == Targets(timedelta(hours=1), timedelta(hours=48), timedelta(days=14))

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            ({"P4": {"respond": 10}}, r"unknown priorities \['P4'\]"),
            ({"P1": {"repair": 10}}, r"unknown milestones \['repair'\] for P1"),
            ({"P1": {"respond": 0}}, "P1 respond must be a positive whole number of minutes"),
            ({"P2": {"respond": -5}}, "P2 respond must be a positive"),
            ({"P1": {"respond": 1.5}}, "got 1.5"),
            ({"P1": {"respond": "60"}}, "got '60'"),
            ({"P1": {"respond": True}}, "got True"),
            ({"P1": {"respond": 600}}, "P1: targets must not shrink"),
            ({"P1": 60}, "service levels for P1 must be a mapping"),
            ([["P1", 60]], "must be a mapping of priorities"),
        ],
    )
    def test_invalid(self, data: object, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            ServiceLevels.from_minutes(data)  # type: ignore[arg-type]


class TestProgress:
    opened = datetime(2026, 12, 7, 9, tzinfo=UTC)

    def test_fraction_of_service_time_used(self) -> None:
        used = progress(berlin(2026, 12, 4, 16), 4 * H, berlin(2026, 12, 7, 9), BERLIN_OFFICE)
        assert used == pytest.approx(0.5)
        # Nothing runs over the weekend.
        weekend = progress(berlin(2026, 12, 4, 16), 4 * H, berlin(2026, 12, 6, 23), BERLIN_OFFICE)
        assert weekend == pytest.approx(0.25)

    def test_pause_holds_the_fraction(self) -> None:
        pause = Pause(self.opened + H, None, "waiting on customer")
        assert progress(self.opened, 4 * H, self.opened + 30 * H, ALWAYS, [pause]) == 0.25

    @pytest.mark.parametrize(
        ("elapsed", "status"),
        [
            (timedelta(0), MilestoneStatus.OK),
            (2 * H, MilestoneStatus.OK),
            (3 * H, MilestoneStatus.AT_RISK),
            (4 * H - timedelta(microseconds=1), MilestoneStatus.AT_RISK),
            (4 * H, MilestoneStatus.BREACHED),
            (9 * H, MilestoneStatus.BREACHED),
        ],
    )
    def test_status_while_open(self, elapsed: timedelta, status: MilestoneStatus) -> None:
        now = self.opened + elapsed
        assert milestone_status(self.opened, 4 * H, now, ALWAYS) is status

    def test_at_risk_fraction_is_configurable(self) -> None:
        now = self.opened + 2 * H
        assert milestone_status(self.opened, 4 * H, now, ALWAYS, at_risk_fraction=0.5) == (
            MilestoneStatus.AT_RISK
        )
        with pytest.raises(ValueError, match="at_risk_fraction"):
            classify(0.2, at_risk_fraction=1.0)

    def test_met_in_time_and_late(self) -> None:
        now = self.opened + 100 * H
        on_time = self.opened + 4 * H
        late = on_time + timedelta(seconds=1)
        assert milestone_status(self.opened, 4 * H, now, ALWAYS, met_at=on_time) is (
            MilestoneStatus.MET
        )
        assert milestone_status(self.opened, 4 * H, now, ALWAYS, met_at=late) is (
            MilestoneStatus.BREACHED
        )


class TestValidation:
    def test_naive_datetimes_are_refused(self) -> None:
        naive = datetime(2026, 12, 7, 9)
        with pytest.raises(ValueError, match="timezone-aware"):
            add_service_time(naive, H, ALWAYS)
        with pytest.raises(ValueError, match="timezone-aware"):
            service_time_between(datetime(2026, 12, 7, tzinfo=UTC), naive, ALWAYS)
        with pytest.raises(ValueError, match="timezone-aware"):
            BERLIN_OFFICE.is_open(naive)

    def test_negative_duration_is_refused(self) -> None:
        with pytest.raises(ValueError, match="negative"):
            add_service_time(datetime(2026, 12, 7, tzinfo=UTC), -H, ALWAYS)

    def test_measuring_backwards_is_zero(self) -> None:
        start = datetime(2026, 12, 7, tzinfo=UTC)
        assert service_time_between(start, start - H, ALWAYS) == timedelta(0)

    def test_calendar_is_validated(self) -> None:
        with pytest.raises(ValueError, match="unknown time zone 'Europe/Atlantis'"):
            ServiceCalendar("Europe/Atlantis")
        with pytest.raises(ValueError, match="unknown time zone"):
            ServiceCalendar("../etc/passwd")
        with pytest.raises(ValueError, match="crossing midnight"):
            ServiceCalendar.business("UTC", start=time(22), end=time(6))
        with pytest.raises(ValueError, match="crossing midnight"):
            ServiceCalendar.business("UTC", start=time(8), end=time(8))
        with pytest.raises(ValueError, match="at least one working day"):
            ServiceCalendar.business("UTC", workdays=())
        with pytest.raises(ValueError, match="0 \\(Monday\\) to 6"):
            ServiceCalendar.business("UTC", workdays={7})
        with pytest.raises(ValueError, match="not datetimes"):
            ServiceCalendar.always(holidays=[datetime(2026, 12, 25)])
        with pytest.raises(ValueError, match="naive"):
            ServiceCalendar.business("UTC", start=time(8, tzinfo=UTC))

    def test_defaults(self) -> None:
        assert ALWAYS.is_always_open
        assert ALWAYS.workdays == ALL_DAYS
        assert BERLIN_OFFICE.workdays == frozenset(range(5))
        assert BERLIN_OFFICE.hours == (time(8), time(17))
        assert ServiceCalendar.business("UTC") == ServiceCalendar.business("UTC")


CALENDARS = [
    ALWAYS,
    BERLIN_OFFICE,
    BERLIN_EVERY_DAY,
    ServiceCalendar.business(
        "America/New_York",
        start=time(7, 30),
        end=time(19),
        holidays=[date(2026, 7, 3), date(2026, 11, 26), date(2026, 12, 25), date(2027, 1, 1)],
    ),
    # Hours around the clock change, to land in the gap and the repeated hour.
    ServiceCalendar("Europe/Berlin", hours=(time(1, 30), time(3, 30)), workdays=ALL_DAYS),
    ServiceCalendar(
        "America/New_York", hours=(time(0, 15), time(2, 45)), workdays=frozenset({5, 6})
    ),
    ServiceCalendar.always("Australia/Sydney", holidays=[date(2026, 4, 5), date(2026, 10, 4)]),
    ServiceCalendar.business("Asia/Kolkata", start=time(9, 30), end=time(18, 15)),
]

calendars = st.sampled_from(CALENDARS)
instants = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)
durations = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30))
positive_durations = st.timedeltas(
    min_value=timedelta(microseconds=1), max_value=timedelta(days=30)
)


@st.composite
def pause_lists(draw: st.DrawFn, start: datetime) -> list[Pause]:
    pauses = []
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        offset = draw(st.timedeltas(min_value=timedelta(days=-2), max_value=timedelta(days=20)))
        length = draw(
            st.none() | st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=5))
        )
        begin = start + offset
        pauses.append(Pause(begin, None if length is None else begin + length, "parts"))
    return pauses


@settings(max_examples=300, deadline=None)
@given(calendar=calendars, start=instants, duration=durations)
def test_measuring_an_added_duration_gives_it_back(
    calendar: ServiceCalendar, start: datetime, duration: timedelta
) -> None:
    end = add_service_time(start, duration, calendar)
    assert end >= start
    assert service_time_between(start, end, calendar) == duration


@settings(max_examples=200, deadline=None)
@given(calendar=calendars, start=instants, duration=durations, data=st.data())
def test_measuring_with_pauses_gives_the_duration_back(
    calendar: ServiceCalendar, start: datetime, duration: timedelta, data: st.DataObject
) -> None:
    pauses = data.draw(pause_lists(start))
    end = deadline(start, duration, calendar, pauses)
    if end is None:
        assert any(p.end is None for p in pauses)
    else:
        assert service_time_between(start, end, calendar, pauses) == duration


@settings(max_examples=200, deadline=None)
@given(calendar=calendars, start=instants, first=durations, second=durations)
def test_monotonic_in_duration(
    calendar: ServiceCalendar, start: datetime, first: timedelta, second: timedelta
) -> None:
    shorter, longer = sorted((first, second))
    assert add_service_time(start, shorter, calendar) <= add_service_time(start, longer, calendar)


@settings(max_examples=200, deadline=None)
@given(calendar=calendars, first=instants, second=instants, duration=durations)
def test_monotonic_in_start(
    calendar: ServiceCalendar, first: datetime, second: datetime, duration: timedelta
) -> None:
    earlier, later = sorted((first, second))
    assert add_service_time(earlier, duration, calendar) <= add_service_time(
        later, duration, calendar
    )


@settings(max_examples=200, deadline=None)
@given(calendar=calendars, start=instants, duration=positive_durations, data=st.data())
def test_the_clock_ran_just_before_the_deadline(
    calendar: ServiceCalendar, start: datetime, duration: timedelta, data: st.DataObject
) -> None:
    pauses = data.draw(pause_lists(start))
    end = deadline(start, duration, calendar, pauses)
    if end is None:
        return
    just_before = end - timedelta(microseconds=1)
    assert calendar.is_open(just_before)
    assert not any(
        p.start <= just_before and (p.end is None or just_before < p.end) for p in pauses
    )


@settings(max_examples=200, deadline=None)
@given(calendar=calendars, start=instants, duration=durations, data=st.data())
def test_pauses_never_bring_a_deadline_forward(
    calendar: ServiceCalendar, start: datetime, duration: timedelta, data: st.DataObject
) -> None:
    pauses = data.draw(pause_lists(start))
    paused = deadline(start, duration, calendar, pauses)
    assert paused is None or paused >= add_service_time(start, duration, calendar)


@settings(max_examples=200, deadline=None)
@given(calendar=calendars, at=instants)
def test_is_open_agrees_with_the_walk(calendar: ServiceCalendar, at: datetime) -> None:
    tick = timedelta(microseconds=1)
    assert calendar.is_open(at) == (service_time_between(at, at + tick, calendar) == tick)


@settings(max_examples=200, deadline=None)
@given(start=instants, duration=durations, zone=st.sampled_from(["UTC", "Europe/Berlin"]))
def test_24x7_is_plain_addition(start: datetime, duration: timedelta, zone: str) -> None:
    # A holiday long past takes the day-by-day walk instead of the shortcut.
    for calendar in (
        ServiceCalendar.always(zone),
        ServiceCalendar.always(zone, holidays=[date(2000, 1, 1)]),
    ):
        assert add_service_time(start, duration, calendar) == start + duration
        assert service_time_between(start, start + duration, calendar) == duration
