"""The report's arithmetic against small cases counted by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from vigil.reports.metrics import (
    Tally,
    combined,
    mean,
    mtbf_hours,
    percentile,
    rate,
    service_hours,
)


def test_percentiles_interpolate_as_percentile_cont() -> None:
    assert percentile([4, 1, 3, 2], 0.5) == 2.5
    assert percentile([1, 2, 3, 4], 0.9) == pytest.approx(3.7)  # rank 2.7: 3 + 0.7
    assert percentile([15, 20, 35, 40, 50], 0.9) == pytest.approx(46.0)  # rank 3.6
    assert percentile([10], 0.9) == 10
    assert percentile([], 0.5) is None
    with pytest.raises(ValueError):
        percentile([1], 1.5)


def test_rates_and_means_say_unknown_rather_than_zero() -> None:
    assert rate(3, 4) == 0.75
    assert rate(0, 0) is None
    assert mean(1920, 3) == 640
    assert mean(None, 0) is None


def test_mtbf_is_operating_hours_over_failures() -> None:
    assert mtbf_hours(8760, 4) == 2190
    assert mtbf_hours(8760, 0) is None


def test_service_hours_count_from_installation() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    end = start + timedelta(days=10)  # 240 hours
    # One device in service throughout, one installed on day 6 (120 h), one after the end.
    assert service_hours(start, end, [None, date(2026, 1, 6), date(2026, 2, 1)]) == 360


def test_counted_groups_combine_like_single_tasks() -> None:
    result = combined([Tally("calibration", True, due=3, done=2, on_time=1),
                       Tally("calibration", False, due=1, done=1, on_time=1)])
    assert (result.due, result.done, result.on_time) == (4, 3, 2)
    assert (result.rate, result.on_time_rate) == (0.75, 0.5)
    assert combined([]).rate is None
