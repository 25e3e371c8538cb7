"""`vigil bench soak`'s arithmetic: the fault schedule, memory growth, duplicates, counting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from analytics.bench.soak import (
    END_MARGIN_MS,
    FAULTS,
    SERVICES,
    TicketSpan,
    duplicate_tickets,
    expected_tickets,
    fault_schedule,
    points_per_device,
    rss_growth_pct,
)


@pytest.mark.parametrize("minutes, rounds", [(2, 1), (6, 1), (30, 2), (60, 4)])
def test_each_fault_once_a_round_within_the_middle_of_the_run(minutes: int, rounds: int) -> None:
    seconds = minutes * 60.0
    schedule = fault_schedule(seconds)
    assert len(schedule) == rounds * len(FAULTS)
    assert [f.kind for f in schedule] == list(FAULTS) * rounds
    assert [f.at_s for f in schedule] == sorted(f.at_s for f in schedule)
    assert schedule[0].at_s >= 0.1 * seconds
    # Every fault, InfluxDB's absence included, is over before the last 30 % of the run.
    assert all(f.at_s + f.duration_s <= 0.7 * seconds + 0.1 for f in schedule)
    # Faults never overlap: each starts after the one before it is over.
    for before, after in zip(schedule, schedule[1:], strict=False):
        assert after.at_s >= before.at_s + before.duration_s


def test_influxdb_is_away_a_minute_unless_the_round_is_too_short() -> None:
    assert {f.duration_s for f in fault_schedule(1800) if f.kind == "influxdb_down"} == {60.0}
    short = [f for f in fault_schedule(120) if f.kind == "influxdb_down"]
    assert short[0].duration_s == pytest.approx(120 * 0.6 / 3, abs=0.1)


def test_growth_is_the_last_quarter_over_the_whole_after_warm_up() -> None:
    # Warm-up climbs to 100 MB, then flat: no growth whatever the warm-up did.
    flat = [(t, min(100, 10 + t) * 2**20) for t in range(0, 400, 5)]
    assert rss_growth_pct(flat, warmup_s=100) == 0.0
    # Flat at 100 after warm-up, then the last quarter at 110: 10 % over the median (100).
    samples = [(float(t), 100) for t in range(0, 300, 5)] + [(float(t), 110)
                                                               for t in range(300, 400, 5)]
    assert rss_growth_pct(samples, warmup_s=0) == 10.0
    assert rss_growth_pct(samples[:7], warmup_s=0) is None  # too short a life to judge
    assert rss_growth_pct([], warmup_s=0) is None


def _ticket(id_: int, opened: float, closed: float | None, device: str = "d1",
            signature: str = "event:E1", scope: str = "device") -> TicketSpan:
    return TicketSpan(id_, scope, device, None, signature, opened, closed)


def test_duplicates_are_tickets_opened_while_their_twin_was_open() -> None:
    tickets = [
        _ticket(1, 0, 100),            # closed before 2 opened: a new episode, not a duplicate
        _ticket(2, 150, None),
        _ticket(3, 160, None),         # opened while 2 is open: duplicate
        _ticket(4, 170, None, device="d2"),
        _ticket(5, 170, None, signature="event:E2"),
        _ticket(6, 175, None, scope="site"),
    ]
    assert [t.id for t in duplicate_tickets(tickets)] == [3]
    assert duplicate_tickets([_ticket(1, 0, 100), _ticket(2, 100, None)]) == []


def test_fleet_tickets_of_two_models_with_one_signature_are_no_duplicates() -> None:
    def fleet(id_: int, model: str, opened: float) -> TicketSpan:
        return TicketSpan(id_, "fleet", None, None, "event:E1", opened, None, model)

    assert [t.id for t in duplicate_tickets(
        [fleet(1, "IP-100", 0), fleet(2, "PM-7", 10), fleet(3, "IP-100", 20)])] == [3]


def test_points_are_each_device_s_largest_field_count() -> None:
    series = [
        {"name": "telemetry", "tags": {"device": "a"},
         "columns": ["time", "count_flow", "count_ambient_temp_c"], "values": [[0, 95, 100]]},
        {"name": "telemetry", "tags": {"device": "b"},
         "columns": ["time", "count_flow", "count_ambient_temp_c"], "values": [[0, 7, None]]},
    ]
    assert points_per_device(series) == {"a": 100, "b": 7}


def test_expected_tickets_are_failures_raised_outside_maintenance() -> None:
    truth = {
        "faults": [
            {"device": "pump-1", "fault_type": "motor_wear", "failure_ms": 1_000},
            {"device": "pump-2", "fault_type": "motor_wear", "failure_ms": 50_000_000},
            {"device": "pump-3", "fault_type": "motor_wear", "failure_ms": 2_000},
            {"device": "pump-4", "fault_type": "motor_wear", "failure_ms": 90_000_000},
        ],
        # pump-3 is in maintenance when the devices go live (at 10,000,000): left out.
        "maintenance": [{"device": "pump-3", "start_ms": 9_990_000, "end_ms": 20_000_000}],
    }
    expected, left_out = expected_tickets(truth, end_ms=60_000_000, live_ms=10_000_000)
    assert {d for d, _ in expected} == {"pump-1", "pump-2"}  # pump-4 fails after the end
    assert all(s.startswith("event:") for _, s in expected)
    assert left_out == 1
    # A failure within the margin before the end may not have been sampled yet.
    near_end, _ = expected_tickets(truth, end_ms=50_000_000 + END_MARGIN_MS - 1,
                                   live_ms=10_000_000)
    assert "pump-2" not in {d for d, _ in near_end}


@pytest.mark.servers
@pytest.mark.slow
def test_a_one_minute_soak_through_every_fault(tmp_path: Path) -> None:
    """The command end to end, small: about two and a half minutes on the development machine.

    ``samples_lost`` is printed, not asserted: Mosquitto does not restore
    ingest's shared subscription after a restart, so it drops what devices
    publish until ingest subscribes again (analytics/bench/README.md); that is
    the ingest subscription's to fix, not this bench's. A one-minute
    life is too short to judge memory growth; the figures are there, the
    growth is None.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    done = subprocess.run(
        [sys.executable, "-m", "vigil.cli", "bench", "soak", "--minutes", "1", "--devices", "20",
         "--backfill-days", "0.5", "--influxdb-down", "10", "--catch-up", "60",
         "--workdir", str(tmp_path / "soak")],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert [f["kind"] for f in figures["faults"]] == list(FAULTS)
    assert all(f["recovered_s"] is not None for f in figures["faults"]), figures["faults"]
    assert figures["restarts"] == {"ingest-1": 1, "ingest-2": 0, "jobs-1": 1, "jobs-2": 0,
                                   "api": 1}
    assert figures["samples_published"] > 20 * 60
    assert figures["outbox_left"] == 0 and figures["outbox_dropped"] == 0
    assert figures["dead_letters"] == 0
    assert figures["duplicate_tickets"] == 0
    assert figures["expected_tickets"] > 0
    assert figures["expected_missing"] == 0
    assert {m["process"] for m in figures["memory"] if m["judged"]} == set(SERVICES)
    print(f"samples lost: {figures['samples_lost']} of {figures['samples_published']}")
