"""A fleet plan: which devices, where, and which of them will fail how and when.

The plan is a pure function of the seed, the period and the kind of faults, so
a run can be repeated exactly; its ground truth is what a failure predictor is
judged against.

Two kinds of faults (``FAULT_KINDS``): ``easy``, the original simulator, where
a fault drives one reading out of its band and the device warns before it
fails; and ``realistic`` (see ``realism``), where degradation hides in noise
and relations, devices differ, sites have episodes, sensors glitch, devices go
into maintenance, a share fail suddenly, and failed devices are repaired. Both
kinds give the same devices, models, sites, faulty devices, fault types and
failure times for one seed, so the two can be compared device by device.
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge_agent.simulator.physics import (
    DAY_S,
    FAULT_DAYS,
    FAULT_TYPES,
    MODELS,
    DeviceSim,
    Fault,
    Site,
    _poisson,
)
from edge_agent.simulator.realism import (
    DRIFTING,
    PARAMETERS,
    Realism,
    RealisticDeviceSim,
    SiteRealism,
    Window,
)

# How common each model is in a hospital fleet.
MODEL_WEIGHTS: dict[str, float] = {"infusion_pump": 40, "patient_monitor": 25, "ventilator": 15,
                                   "ct": 12, "mri": 8}
ID_PREFIX: dict[str, str] = {"infusion_pump": "pump", "patient_monitor": "mon",
                             "ventilator": "vent", "ct": "ct", "mri": "mri"}
LABEL_FIELDS = ("device", "model", "site", "fault_type", "onset_ms", "failure_ms",
                "onset", "failure", "predictable", "repaired_ms", "repaired_at")
FAULT_KINDS = ("easy", "realistic")
ENVIRONMENT_METRICS = frozenset({"ambient_temp_c", "humidity_pct", "supply_voltage_v"})
DAY_MS = int(DAY_S * 1000)
HOUR_MS = 3_600_000

@dataclass(frozen=True, slots=True)
class DeviceSpec:
    device_id: str
    model: str
    site: Site
    faults: tuple[Fault, ...]
    realism: Realism | None = None

    def build(self, seed: int) -> DeviceSim:
        if self.realism is None:
            return DeviceSim(self.device_id, self.model, self.site, seed, self.faults)
        return RealisticDeviceSim(self.device_id, self.model, self.site, seed, self.faults,
                                  self.realism)

    def in_maintenance(self, t_ms: int) -> bool:
        """Whether the plan has the device in a maintenance window at ``t_ms``."""
        return self.realism is not None and any(
            w.start_ms <= t_ms < w.end_ms for w in self.realism.maintenance)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A planned fleet with what it was planned from: enough to write its ground truth."""

    kind: str
    seed: int
    start_ms: int
    end_ms: int
    specs: list[DeviceSpec]


def plan_fleet(devices: int, *, seed: int, start_ms: int, end_ms: int,
               fault_fraction: float = 0.2, models: Sequence[str] = MODELS,
               devices_per_site: int = 40, prefix: str = "", faults: str = "easy",
               sudden_share: float = 0.2) -> list[DeviceSpec]:
    """Devices spread over sites; ``fault_fraction`` of them degrade towards a failure.

    Failures fall between 40 % of the period and 30 % past its end, so some
    devices fail within the data and others are still degrading at its end.
    ``faults`` is one of ``FAULT_KINDS``; see ``plan_scenario``.
    """
    return plan_scenario(devices, seed=seed, start_ms=start_ms, end_ms=end_ms,
                         fault_fraction=fault_fraction, models=models,
                         devices_per_site=devices_per_site, prefix=prefix, faults=faults,
                         sudden_share=sudden_share).specs


def plan_scenario(devices: int, *, seed: int, start_ms: int, end_ms: int,
                  fault_fraction: float = 0.2, models: Sequence[str] = MODELS,
                  devices_per_site: int = 40, prefix: str = "", faults: str = "realistic",
                  sudden_share: float = 0.2) -> Scenario:
    """Plan a fleet of the given fault kind; ``realistic`` is the benchmark's default.

    ``sudden_share`` of the realistic faults have no precursor at all.
    """
    if devices < 1:
        raise ValueError("a fleet needs at least one device")
    if end_ms <= start_ms:
        raise ValueError("the period must end after it starts")
    unknown = set(models) - set(MODELS)
    if unknown:
        raise ValueError(f"unknown models {sorted(unknown)}; known: {', '.join(MODELS)}")
    if faults not in FAULT_KINDS:
        raise ValueError(f"faults must be one of {', '.join(FAULT_KINDS)}, not {faults!r}")
    rng = random.Random(f"fleet:{seed}")
    n_sites = max(1, -(-devices // devices_per_site))
    sites = [Site.generate(f"site-{i + 1:03d}", rng) for i in range(n_sites)]
    weights = [MODEL_WEIGHTS[m] for m in models]
    span = end_ms - start_ms
    specs: list[DeviceSpec] = []
    for i in range(devices):
        model = rng.choices(list(models), weights)[0]
        device_id = f"{prefix}{ID_PREFIX[model]}-{i + 1:05d}"
        site = sites[i % n_sites]
        planned: tuple[Fault, ...] = ()
        if rng.random() < fault_fraction:
            kind = rng.choice(FAULT_TYPES[model])
            failure = int(start_ms + span * rng.uniform(0.4, 1.3))
            lasting = FAULT_DAYS[kind] * DAY_S * 1000 * rng.uniform(0.7, 1.3)
            onset = int(max(start_ms, failure - lasting))
            planned = (Fault(device_id, model, kind, onset, failure),)
        specs.append(DeviceSpec(device_id, model, site, planned))
    if faults == "realistic":
        specs = _realistic(specs, sites, seed=seed, start_ms=start_ms, end_ms=end_ms,
                           sudden_share=sudden_share)
    return Scenario(faults, seed, start_ms, end_ms, specs)


def _realistic(specs: list[DeviceSpec], sites: list[Site], *, seed: int, start_ms: int,
               end_ms: int, sudden_share: float) -> list[DeviceSpec]:
    """The same devices and failures, made realistic from a random stream of their own."""
    rng = random.Random(f"realistic:{seed}")
    span = end_ms - start_ms
    span_days = span / DAY_MS
    site_real = {site.name: _plan_site(site, rng, start_ms, span, span_days) for site in sites}
    out: list[DeviceSpec] = []
    for spec in specs:
        maintenance: list[Window] = []
        faults: list[Fault] = []
        for f in spec.faults:
            predictable = rng.random() >= sudden_share
            # Repairs follow the service levels: most within a day or two, a few take a week.
            repaired = f.failure_ms + int(HOUR_MS * min(240.0, 4.0 + rng.expovariate(1 / 30)))
            faults.append(replace(f, onset_ms=f.onset_ms if predictable else f.failure_ms,
                                  predictable=predictable, repaired_ms=repaired))
            maintenance.append(Window("repair", max(f.failure_ms, repaired - int(
                HOUR_MS * rng.uniform(1.0, 4.0))), repaired))
        if rng.random() < min(1.0, span_days / 120):
            # A preventive visit on a working day in the morning, local time.
            day = start_ms - start_ms % DAY_MS + DAY_MS * rng.randrange(max(1, int(span_days)))
            begin = day + HOUR_MS * (9 - spec.site.utc_offset_h) + int(HOUR_MS * rng.random())
            maintenance.append(Window("preventive", begin,
                                      begin + int(HOUR_MS * rng.uniform(1.0, 4.0))))
        params = {name: rng.gauss(1.0, 0.06) for name in PARAMETERS[spec.model]}
        use_change_ms, use_change_scale = None, 1.0
        if rng.random() < 0.12:
            # Moved to a busier (or quieter) ward: a step in usage that is no fault.
            use_change_ms = start_ms + int(span * rng.uniform(0.2, 0.8))
            use_change_scale = rng.uniform(1.3, 1.7) if rng.random() < 0.7 else rng.uniform(0.5,
                                                                                           0.75)
        drift: dict[str, float] = {}
        if rng.random() < 0.5:
            drift[rng.choice(DRIFTING[spec.model])] = rng.choice((-1, 1)) * rng.uniform(3e-4,
                                                                                       1.2e-3)
        glitches = []
        names = sorted(metric_names(spec.model) - ENVIRONMENT_METRICS)
        for _ in range(_poisson(rng, span_days / 45)):
            kind = rng.choice(("spike", "stuck", "dropout"))
            begin = start_ms + int(span * rng.random())
            hours = {"spike": 6.0, "stuck": rng.uniform(2.0, 48.0),
                     "dropout": rng.uniform(1.0, 36.0)}[kind]
            size = rng.choice((rng.uniform(1.0, 4.0), -0.9)) if kind == "spike" else 0.0
            glitches.append(Window(kind, begin, begin + int(HOUR_MS * hours), round(size, 3),
                                   rng.choice(names)))
        realism = Realism(site=site_real[spec.site.name], origin_ms=start_ms, params=params,
                          noise=rng.uniform(0.75, 1.4), usage_scale=rng.uniform(0.75, 1.25),
                          use_change_ms=use_change_ms, use_change_scale=use_change_scale,
                          drift_per_day=drift, glitches=tuple(sorted(glitches, key=_start)),
                          maintenance=tuple(sorted(maintenance, key=_start)))
        out.append(replace(spec, faults=tuple(faults), realism=realism))
    return out


def _start(w: Window) -> int:
    return w.start_ms


def _plan_site(site: Site, rng: random.Random, start_ms: int, span: int,
               span_days: float) -> SiteRealism:
    def phase() -> float:
        return rng.uniform(0.0, 2 * math.pi)

    weather = tuple((rng.uniform(0.2, 0.7), period, phase())
                    for period in (rng.uniform(2.5, 5.0), rng.uniform(6.0, 12.0),
                                   rng.uniform(15.0, 40.0)))
    busy = tuple((rng.uniform(0.03, 0.08), period, phase())
                 for period in (rng.uniform(3.0, 6.0), rng.uniform(7.0, 15.0),
                                rng.uniform(20.0, 45.0)))
    episodes = []
    for _ in range(_poisson(rng, span_days / 75)):
        begin = start_ms + int(span * rng.random())
        episodes.append(Window("ac_failure", begin, begin + int(HOUR_MS * rng.uniform(3, 36)),
                               round(rng.uniform(4.0, 10.0), 2)))
    for _ in range(_poisson(rng, span_days / 50)):
        begin = start_ms + int(span * rng.random())
        episodes.append(Window("mains_sag", begin, begin + int(HOUR_MS * rng.uniform(0.5, 8)),
                               round(rng.uniform(0.05, 0.12), 3)))
    return SiteRealism(site.name, weather, busy, season_c=rng.uniform(0.5, 2.5),
                       season_phase=phase(), episodes=tuple(sorted(episodes, key=_start)))


_METRIC_NAMES: dict[str, frozenset[str]] = {}


def metric_names(model: str) -> frozenset[str]:
    """The metrics a device of ``model`` reports, environment included."""
    if model not in _METRIC_NAMES:
        _METRIC_NAMES[model] = frozenset(DeviceSim("probe", model, Site("probe"), 0).sample(0))
    return _METRIC_NAMES[model]


def labels(specs: Iterable[DeviceSpec]) -> list[dict[str, object]]:
    """Ground truth rows, one per injected fault."""
    rows: list[dict[str, object]] = []
    for spec in specs:
        for f in spec.faults:
            rows.append({"device": f.device, "model": f.model, "site": spec.site.name,
                         "fault_type": f.fault_type, "onset_ms": f.onset_ms,
                         "failure_ms": f.failure_ms, "onset": _iso(f.onset_ms),
                         "failure": _iso(f.failure_ms),
                         "predictable": "true" if f.predictable else "false",
                         "repaired_ms": "" if f.repaired_ms is None else f.repaired_ms,
                         "repaired_at": "" if f.repaired_ms is None else _iso(f.repaired_ms)})
    return rows


def write_labels(path: str | Path, specs: Iterable[DeviceSpec]) -> int:
    """Write the fault labels as CSV; returns the number of faults."""
    rows = labels(specs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=LABEL_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def ground_truth(scenario: Scenario) -> dict[str, Any]:
    """Everything planned that a judge needs: faults, site episodes, glitches, maintenance.

    Times are epoch milliseconds (``*_ms``) with an ISO copy beside each.
    Benign changes (use changes, sensor drifts) are listed per device so that
    a judge can tell a false alarm on them from one on nothing.
    """
    faults = [{**row, "predictable": row["predictable"] == "true",
               "repaired_ms": row["repaired_ms"] or None,
               "repaired_at": row["repaired_at"] or None} for row in labels(scenario.specs)]
    by_site: dict[str, list[str]] = {}
    for spec in scenario.specs:
        by_site.setdefault(spec.site.name, []).append(spec.device_id)
    episodes: list[dict[str, Any]] = []
    seen: set[str] = set()
    glitches: list[dict[str, Any]] = []
    maintenance: list[dict[str, Any]] = []
    benign: list[dict[str, Any]] = []
    for spec in scenario.specs:
        real = spec.realism
        if real is None:
            continue
        if spec.site.name not in seen:
            seen.add(spec.site.name)
            episodes += [{"site": spec.site.name, "kind": w.kind, **_span(w), "size": w.size,
                          "devices": by_site[spec.site.name]} for w in real.site.episodes]
        glitches += [{"device": spec.device_id, "model": spec.model, "site": spec.site.name,
                      "kind": w.kind, "metric": w.metric, **_span(w), "size": w.size}
                     for w in real.glitches]
        maintenance += [{"device": spec.device_id, "model": spec.model, "site": spec.site.name,
                         "kind": w.kind, **_span(w)} for w in real.maintenance]
        if real.use_change_ms is not None:
            benign.append({"device": spec.device_id, "kind": "use_change",
                           "start_ms": real.use_change_ms, "start": _iso(real.use_change_ms),
                           "usage_factor": round(real.use_change_scale, 3)})
        benign += [{"device": spec.device_id, "kind": "sensor_drift", "metric": metric,
                    "per_day": rate} for metric, rate in real.drift_per_day.items()]
    return {"kind": scenario.kind, "seed": scenario.seed, "start_ms": scenario.start_ms,
            "end_ms": scenario.end_ms, "start": _iso(scenario.start_ms),
            "end": _iso(scenario.end_ms),
            "devices": [{"device": s.device_id, "model": s.model, "site": s.site.name}
                        for s in scenario.specs],
            "faults": faults, "site_episodes": sorted(episodes, key=lambda e: e["start_ms"]),
            "glitches": glitches, "maintenance": maintenance, "benign_changes": benign}


def write_ground_truth(path: str | Path, scenario: Scenario) -> dict[str, Any]:
    """Write ``ground_truth(scenario)`` as JSON and return it."""
    truth = ground_truth(scenario)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(truth, indent=1) + "\n")
    return truth


def _span(w: Window) -> dict[str, Any]:
    return {"start_ms": w.start_ms, "end_ms": w.end_ms, "start": _iso(w.start_ms),
            "end": _iso(w.end_ms)}


def read_labels(path: str | Path) -> list[dict[str, str]]:
    with Path(path).open(newline="") as fh:
        return list(csv.DictReader(fh))


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
