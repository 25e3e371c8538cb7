"""Due dates by calendar and by usage hours, lead and grace, and tolerances: the pure rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vigil.errors import InvalidRequest
from vigil.maintenance.rules import (
    DueStatus,
    Interval,
    Tolerance,
    Usage,
    check_measurements,
    next_due,
    status,
)

DONE = datetime(2026, 1, 1, tzinfo=UTC)


def test_calendar_only_is_due_n_days_after_it_was_done() -> None:
    due = next_due(Interval(days=180), done_at=DONE, done_usage_hours=None)
    assert (due.at, due.by, due.usage_hours) == (DONE + timedelta(days=180), "calendar", None)


def test_usage_is_projected_at_the_rate_of_use_since_it_was_done() -> None:
    # 100 hours used in 10 days: 10 h a day; 200 hours are reached 10 days later still.
    reading = Usage(hours=1100.0, at=DONE + timedelta(days=10))
    due = next_due(Interval(usage_hours=200), done_at=DONE, done_usage_hours=1000.0,
                   usage=reading)
    assert due.by == "usage"
    assert due.usage_hours == 1200.0
    assert due.at == DONE + timedelta(days=20)


def test_whichever_comes_first() -> None:
    interval = Interval(days=30, usage_hours=200)
    heavy = Usage(hours=1150.0, at=DONE + timedelta(days=5))  # 30 h a day: 200 h on day 6.67
    light = Usage(hours=1010.0, at=DONE + timedelta(days=5))  # 2 h a day: 200 h on day 100
    assert next_due(interval, done_at=DONE, done_usage_hours=1000.0, usage=heavy).by == "usage"
    by_light = next_due(interval, done_at=DONE, done_usage_hours=1000.0, usage=light)
    assert (by_light.at, by_light.by) == (DONE + timedelta(days=30), "calendar")


def test_a_reading_past_the_threshold_is_due_at_once() -> None:
    reading = Usage(hours=1250.0, at=DONE + timedelta(days=3))
    due = next_due(Interval(usage_hours=200), done_at=DONE, done_usage_hours=1000.0,
                   usage=reading)
    assert (due.at, due.by) == (reading.at, "usage")


def test_usage_only_without_a_rate_has_no_date_yet() -> None:
    still = Usage(hours=1000.0, at=DONE + timedelta(days=3))
    assert next_due(Interval(usage_hours=200), done_at=DONE, done_usage_hours=1000.0,
                    usage=still).at is None
    assert next_due(Interval(usage_hours=200), done_at=DONE, done_usage_hours=None).at is None


def test_status_moves_through_lead_due_and_grace() -> None:
    due = DONE + timedelta(days=30)
    lead, grace = timedelta(days=7), timedelta(days=2)
    assert status(due, now=due - timedelta(days=8), lead=lead, grace=grace) is DueStatus.SCHEDULED
    assert status(due, now=due - timedelta(days=7), lead=lead, grace=grace) is DueStatus.UPCOMING
    assert status(due, now=due, lead=lead, grace=grace) is DueStatus.DUE
    assert status(due, now=due + grace, lead=lead, grace=grace) is DueStatus.OVERDUE
    assert status(None, now=due, lead=lead) is DueStatus.SCHEDULED
    assert status(due, now=due, lead=lead) is DueStatus.OVERDUE


def test_intervals_and_tolerances_refuse_nonsense() -> None:
    with pytest.raises(InvalidRequest):
        Interval()
    with pytest.raises(InvalidRequest):
        Interval(days=0)
    with pytest.raises(InvalidRequest):
        Tolerance(low=5, high=1)
    with pytest.raises(InvalidRequest):
        Tolerance.from_json("x", {"low": "one"})
    with pytest.raises(InvalidRequest):
        Tolerance.from_json("x", {"lo": 1})


def test_measurements_against_tolerances() -> None:
    tolerances = {"flow_error_pct": Tolerance(low=-5, high=5, unit="%"),
                  "occlusion_kpa": Tolerance(high=100)}
    results = check_measurements({"flow_error_pct": 5.0, "occlusion_kpa": 101.5,
                                  "battery_v": 12.1}, tolerances)
    assert [(m.name, m.within) for m in results] == [
        ("battery_v", True), ("flow_error_pct", True), ("occlusion_kpa", False)]
    assert results[1].as_json()["unit"] == "%"
    with pytest.raises(InvalidRequest, match="occlusion_kpa"):
        check_measurements({"flow_error_pct": 1.0}, tolerances)
    with pytest.raises(InvalidRequest):
        check_measurements({"flow_error_pct": float("nan"), "occlusion_kpa": 1.0}, tolerances)


def test_a_counter_first_read_after_the_work_counts_its_rate_from_that_reading() -> None:
    # Installed on DONE, counter unknown; first read on day 30 at 5,000 h, then 10 h a day.
    first = DONE + timedelta(days=30)
    reading = Usage(hours=5100.0, at=first + timedelta(days=10))
    due = next_due(Interval(usage_hours=200), done_at=DONE, done_usage_hours=5000.0,
                   done_usage_at=first, usage=reading)
    assert (due.at, due.usage_hours) == (first + timedelta(days=20), 5200.0)
    # Counted from the installation instead, the rate would be a quarter and the date far off.
    from_work = next_due(Interval(usage_hours=200), done_at=DONE, done_usage_hours=5000.0,
                         usage=reading)
    assert from_work.at == reading.at + timedelta(days=40)
