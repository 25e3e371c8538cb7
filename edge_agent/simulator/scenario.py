"""A fleet plan: which devices, where, and which of them will fail how and when.

The plan is a pure function of the seed and the period, so a run can be
repeated exactly; its ground truth (device, fault type, onset, failure) is what
a failure predictor is judged against.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from edge_agent.simulator.physics import (
    DAY_S,
    FAULT_DAYS,
    FAULT_TYPES,
    MODELS,
    DeviceSim,
    Fault,
    Site,
)

# How common each model is in a hospital fleet.
MODEL_WEIGHTS: dict[str, float] = {"infusion_pump": 40, "patient_monitor": 25, "ventilator": 15,
                                   "ct": 12, "mri": 8}
ID_PREFIX: dict[str, str] = {"infusion_pump": "pump", "patient_monitor": "mon",
                             "ventilator": "vent", "ct": "ct", "mri": "mri"}
LABEL_FIELDS = ("device", "model", "site", "fault_type", "onset_ms", "failure_ms",
                "onset", "failure")


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    device_id: str
    model: str
    site: Site
    faults: tuple[Fault, ...]

    def build(self, seed: int) -> DeviceSim:
        return DeviceSim(self.device_id, self.model, self.site, seed, self.faults)


def plan_fleet(devices: int, *, seed: int, start_ms: int, end_ms: int,
               fault_fraction: float = 0.2, models: Sequence[str] = MODELS,
               devices_per_site: int = 40, prefix: str = "") -> list[DeviceSpec]:
    """Devices spread over sites; ``fault_fraction`` of them degrade towards a failure.

    Failures fall between 40 % of the period and 30 % past its end, so some
    devices fail within the data and others are still degrading at its end.
    """
    if devices < 1:
        raise ValueError("a fleet needs at least one device")
    if end_ms <= start_ms:
        raise ValueError("the period must end after it starts")
    unknown = set(models) - set(MODELS)
    if unknown:
        raise ValueError(f"unknown models {sorted(unknown)}; known: {', '.join(MODELS)}")
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
        faults: tuple[Fault, ...] = ()
        if rng.random() < fault_fraction:
            kind = rng.choice(FAULT_TYPES[model])
            failure = int(start_ms + span * rng.uniform(0.4, 1.3))
            lasting = FAULT_DAYS[kind] * DAY_S * 1000 * rng.uniform(0.7, 1.3)
            onset = int(max(start_ms, failure - lasting))
            faults = (Fault(device_id, model, kind, onset, failure),)
        specs.append(DeviceSpec(device_id, model, site, faults))
    return specs


def labels(specs: Iterable[DeviceSpec]) -> list[dict[str, object]]:
    """Ground truth rows, one per injected fault."""
    rows: list[dict[str, object]] = []
    for spec in specs:
        for f in spec.faults:
            rows.append({"device": f.device, "model": f.model, "site": spec.site.name,
                         "fault_type": f.fault_type, "onset_ms": f.onset_ms,
                         "failure_ms": f.failure_ms, "onset": _iso(f.onset_ms),
                         "failure": _iso(f.failure_ms)})
    return rows


def write_labels(path: str | Path, specs: Iterable[DeviceSpec]) -> int:
    """Write the ground truth as CSV; returns the number of faults."""
    rows = labels(specs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=LABEL_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def read_labels(path: str | Path) -> list[dict[str, str]]:
    with Path(path).open(newline="") as fh:
        return list(csv.DictReader(fh))


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
