"""`vigil bench prediction`'s count of alarms at the top of the ranking, on a hand-built case."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from analytics.bench.prediction import FaultTruth, alarm_figures

T = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def test_alarms_count_runs_leads_and_types_at_the_threshold_within_the_false_limit() -> None:
    """Two predictable failures at day 20 (onsets day 10), a sudden one, a healthy device."""
    rows, probability, faults = [], [], []
    lives = {"a": (True, "fan"), "b": (True, "fan"), "s": (True, "psu"), "h": (False, None)}
    for device, (failed, fault) in lives.items():
        for day in range(20):
            rows.append({"device": device, "time": T + day * DAY, "life_end": T + 20 * DAY,
                         "left_days": 20.0 - day, "failed": failed, "fault_type": fault})
            p = 0.05
            if device == "a" and day >= 14:
                p = 0.9  # alarmed from 6 days out, fault named right
            if device == "b" and day == 5:
                p = 0.9  # alarmed before the onset only: a false alarm, the failure missed
            if device == "h" and day in (3, 4, 9):
                p = 0.6  # two false alarm runs
            probability.append(p)
            faults.append("fan" if device == "a" else "psu")
    truth = {("a", T + 20 * DAY): FaultTruth(T + 10 * DAY, True, "fan"),
             ("b", T + 20 * DAY): FaultTruth(T + 10 * DAY, True, "fan"),
             ("s", T + 20 * DAY): FaultTruth(T + 20 * DAY, False, "psu")}
    frame = pd.DataFrame(rows)
    strict = alarm_figures(frame, np.array(probability), faults, truth, false_per_100=1.5,
                           every_days=1.0)
    # 80 device-days: one false alarm at 0.9 (1.25 per 100), three at 0.6.
    assert strict["alarm_threshold"] == 0.9
    assert strict["predictable_failures"] == 2 and strict["alarmed_24h_share"] == 0.5
    assert strict["alarm_median_lead_h"] == 6 * 24 and strict["alarm_fault_type_accuracy"] == 1.0
    loose = alarm_figures(frame, np.array(probability), faults, truth, false_per_100=4.0,
                          every_days=1.0)
    assert loose["alarm_threshold"] == 0.6
    assert loose["alarm_false_per_100_device_days"] == 3.75
    assert loose["alarmed_24h_share"] == 0.5
