"""The plain threshold rule, as a yardstick for how much a simulated fleet gives away.

Per device and metric (environment readings left out), the daily means are
compared with a band of ``k`` robust standard deviations (1.4826 x the median
absolute deviation) around the median of the device's own first week of daily
means; the device alarms when a metric stays outside its band two days running.
A ticket opens on the first day of each run of alarming days. A repaired
device starts a fresh first week, as the analytics do.

If this rule foresees most failures, the simulator's faults are too easy to
tell a good predictor from a bad one. Run it on a fleet with

    python -m edge_agent.simulator.plain_rule --devices 300 --days 90 --step 1800 --seed 5
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from edge_agent.simulator.scenario import (
    DAY_MS,
    ENVIRONMENT_METRICS,
    FAULT_KINDS,
    Scenario,
    plan_scenario,
)

BASELINE_DAYS = 7
PERSIST_DAYS = 2
START_MS = 1_760_054_400_000  # a UTC midnight, so days are calendar days

DailyMeans = dict[str, list[float | None]]


def daily_means(samples: Sequence[tuple[int, Mapping[str, float]]], start_ms: int,
                days: int) -> DailyMeans:
    """Each metric's mean per day since ``start_ms``; None for a day without readings."""
    sums: dict[str, list[float]] = {}
    counts: dict[str, list[int]] = {}
    for t, metrics in samples:
        day = (t - start_ms) // DAY_MS
        if not 0 <= day < days:
            continue
        for name, value in metrics.items():
            if name in ENVIRONMENT_METRICS:
                continue
            if name not in sums:
                sums[name], counts[name] = [0.0] * days, [0] * days
            sums[name][day] += value
            counts[name][day] += 1
    return {name: [s / c if c else None for s, c in zip(sums[name], counts[name], strict=True)]
            for name in sums}


def alarm_days(daily: DailyMeans, first: int, last: int, *, k: float) -> list[int]:
    """Days in ``[first, last)`` at whose end a ticket opens; ``first`` starts the baseline."""
    outside = [False] * (last - first)
    for values in daily.values():
        base = [v for v in values[first:first + BASELINE_DAYS] if v is not None]
        if len(base) < 3:
            continue
        centre = statistics.median(base)
        spread = 1.4826 * statistics.median(abs(v - centre) for v in base)
        if spread == 0.0:
            spread = 1e-9 * max(1.0, abs(centre))
        for day in range(first + BASELINE_DAYS + PERSIST_DAYS - 1, last):
            if _persists(values, day, centre, k * spread):
                outside[day - first] = True
    tickets = []
    for i in range(BASELINE_DAYS, len(outside)):
        if outside[i] and not outside[i - 1]:
            tickets.append(first + i)
    return tickets


def _persists(values: Sequence[float | None], day: int, centre: float, band: float) -> bool:
    for d in range(day - PERSIST_DAYS + 1, day + 1):
        v = values[d]
        if v is None or abs(v - centre) <= band:
            return False
    return True


def device_samples(spec: Any, seed: int, start_ms: int, end_ms: int,
                   step_ms: int) -> list[tuple[int, dict[str, float]]]:
    sim = spec.build(seed)
    return [(t, sim.sample(t)) for t in range(start_ms, end_ms, step_ms)]


def evaluate(scenario: Scenario, *, step_s: float, ks: Sequence[float] = (6.0,)
             ) -> dict[float, dict[str, Any]]:
    """Figures of the rule for each ``k``: failures ticketed >= 24 h ahead, lead, false tickets.

    Only failures inside the data and after the first week count; those of
    faults labelled unpredictable (sudden) are reported apart, with the tickets
    that happened to open in the fortnight before them. A ticket is true
    if it opens between its device's fault onset and failure, false otherwise;
    the days a device spends failed and awaiting repair are not counted.
    """
    start, end = scenario.start_ms, scenario.end_ms
    days = -(-(end - start) // DAY_MS)
    per_k: dict[float, dict[str, Any]] = {
        k: {"caught": [], "missed": [], "sudden_caught": 0, "false": 0} for k in ks}
    device_days = 0
    failures: list[Any] = []
    sudden = 0
    for spec in scenario.specs:
        daily = daily_means(device_samples(spec, scenario.seed, start, end, int(step_s * 1000)),
                            start, days)
        lives, cuts = [], 0
        for f in sorted(spec.faults, key=lambda f: f.failure_ms):
            fail_day = (f.failure_ms - start) // DAY_MS
            if fail_day >= days:
                break
            lives.append((cuts, fail_day))
            cuts = days if f.repaired_ms is None else -(-(f.repaired_ms - start) // DAY_MS)
        lives.append((cuts, days))
        lives = [(a, b) for a, b in lives if b - a > BASELINE_DAYS]
        device_days += sum(b - a - BASELINE_DAYS for a, b in lives)
        counted = [f for f in spec.faults
                   if start + BASELINE_DAYS * DAY_MS < f.failure_ms <= end]
        failures += [f for f in counted if f.predictable]
        sudden += sum(not f.predictable for f in counted)
        for k, acc in per_k.items():
            tickets = [start + (d + 1) * DAY_MS for a, b in lives
                       for d in alarm_days(daily, a, b, k=k)]
            for t in tickets:
                if not any(f.onset_ms <= t <= f.failure_ms for f in spec.faults):
                    acc["false"] += 1
            for f in counted:
                if not f.predictable:
                    # Any ticket in the fortnight before a sudden failure is luck, not foresight.
                    acc["sudden_caught"] += any(f.failure_ms - 14 * DAY_MS <= t
                                                <= f.failure_ms - DAY_MS for t in tickets)
                    continue
                ahead = [f.failure_ms - t for t in tickets
                         if f.onset_ms <= t <= f.failure_ms - DAY_MS]
                if ahead:
                    acc["caught"].append((f.fault_type, max(ahead)))
                else:
                    acc["missed"].append(f.fault_type)
    out: dict[float, dict[str, Any]] = {}
    for k, acc in per_k.items():
        leads = [lead / 3_600_000 for _, lead in acc["caught"]]
        missed: dict[str, int] = {}
        for kind in acc["missed"]:
            missed[kind] = missed.get(kind, 0) + 1
        out[k] = {"k": k, "predictable_failures": len(failures),
                  "ticketed_24h": len(acc["caught"]),
                  "ticketed_24h_share": round(len(acc["caught"]) / max(1, len(failures)), 3),
                  "median_lead_h": round(statistics.median(leads), 1) if leads else None,
                  "false_tickets": acc["false"], "device_days": device_days,
                  "false_per_100_device_days": round(100 * acc["false"] / max(1, device_days), 3),
                  "sudden_failures": sudden, "sudden_ticketed_before": acc["sudden_caught"],
                  "missed_by_fault_type": dict(sorted(missed.items()))}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=300)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--step", type=float, default=1800.0, help="seconds between readings")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--fault-fraction", type=float, default=0.2)
    parser.add_argument("--faults", default=",".join(FAULT_KINDS),
                        help="comma-separated fault kinds to compare")
    parser.add_argument("--k", default="6", help="comma-separated band widths to try")
    args = parser.parse_args(argv)
    ks = [float(k) for k in args.k.split(",") if k]
    result: dict[str, Any] = {"devices": args.devices, "days": args.days, "step_s": args.step,
                              "seed": args.seed}
    for kind in [k for k in args.faults.split(",") if k]:
        scenario = plan_scenario(args.devices, seed=args.seed, start_ms=START_MS,
                                 end_ms=START_MS + args.days * DAY_MS,
                                 fault_fraction=args.fault_fraction, faults=kind)
        figures = evaluate(scenario, step_s=args.step, ks=ks)
        result[kind] = list(figures.values())
        for f in figures.values():
            lead = "-" if f["median_lead_h"] is None else f"{f['median_lead_h'] / 24:.1f} days"
            print(f"{kind:9s} k={f['k']:g}: {f['ticketed_24h']}/{f['predictable_failures']} "
                  f"predictable failures ticketed >= 24 h ahead "
                  f"({f['ticketed_24h_share']:.0%}), median lead {lead}, "
                  f"{f['false_per_100_device_days']:.2f} false tickets per 100 device-days; "
                  f"sudden failures with a ticket in the fortnight before "
                  f"{f['sudden_ticketed_before']}/{f['sudden_failures']}; "
                  f"missed {f['missed_by_fault_type']}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
