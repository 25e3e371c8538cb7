"""The fault catalogue: each device model's failure modes and the readings they show in.

A device maker knows which readings each of its failure modes shows in (the service manual,
the FMEA); a fleet's run-to-failure history has only a few failures per model. The catalogue
(``faults.toml`` beside this module) is that knowledge as data, used two ways:

- the failure predictor names only a fault of the device's own model, and prefers the fault
  whose readings moved (:mod:`analytics.prediction.failure`);
- an anomaly on a reading names the fault that reading belongs to (:meth:`likely_fault`), so
  an engineer sees "likely: battery ageing" on an ``anomaly:battery_voltage_v`` ticket;
- a mode whose readings follow what the clinician sets (``follows_settings``: a ventilator's
  oxygen readings follow the prescribed FiO2) shows only in how its readings relate, and one
  whose readings follow the mains (``follows_mains``: the supply voltage dips when the grid
  does) shows in their noise, so an anomaly on one of them alone is no evidence of a fault
  (:meth:`alone_no_evidence`).

Pure: :func:`load` reads the file, everything else works on the loaded data.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

DEFAULT_FILE = Path(__file__).with_name("faults.toml")


class CatalogueError(ValueError):
    """The fault catalogue's file does not describe failure modes as expected."""


@dataclass(frozen=True, slots=True)
class FaultMode:
    """One failure mode of a device model."""

    code: str  # the fault code the device raises when the fault becomes a failure
    name: str  # for an engineer: "battery ageing"
    readings: tuple[str, ...]  # the readings it shows in, the most direct measure first
    # The readings' levels follow the clinician's settings, so the mode shows in their relation.
    follows_settings: bool = False
    # The readings follow the mains: their dips and spikes are the grid's, the mode's ripple.
    follows_mains: bool = False

    def shown(self, moved: Mapping[str, float]) -> float:
        """How far the mode shows: the furthest any of its readings moved (``moved``: reading
        -> a size, 0 or missing for one that did not move)."""
        return max((max(0.0, float(moved.get(r, 0.0))) for r in self.readings), default=0.0)


@dataclass(frozen=True)
class FaultCatalogue:
    """Failure modes per device model."""

    modes: Mapping[str, tuple[FaultMode, ...]]

    def of(self, model: str) -> tuple[FaultMode, ...]:
        """The model's failure modes; none for a model the catalogue does not know."""
        return self.modes.get(model, ())

    def codes(self, model: str) -> list[str]:
        return [m.code for m in self.of(model)]

    def mode(self, model: str, code: str) -> FaultMode | None:
        return next((m for m in self.of(model) if m.code == code), None)

    def to_document(self) -> dict[str, dict[str, dict[str, Any]]]:
        """The catalogue as the TOML file's tables (:func:`parse` reads it back)."""
        return {model: {m.code: {"fault": m.name, "readings": list(m.readings),
                                 **({"follows_settings": True} if m.follows_settings else {}),
                                 **({"follows_mains": True} if m.follows_mains else {})}
                         for m in modes}
                for model, modes in self.modes.items()}

    def likely_fault(self, model: str, reading: str) -> FaultMode | None:
        """The failure mode of ``model`` that ``reading`` shows, if the catalogue names one."""
        return next((m for m in self.of(model) if reading in m.readings), None)

    def follows_settings(self, model: str, reading: str) -> bool:
        """Whether ``reading``'s level on ``model`` follows what the clinician sets."""
        mode = self.likely_fault(model, reading)
        return mode is not None and mode.follows_settings

    def alone_no_evidence(self, model: str, reading: str) -> bool:
        """Whether an anomaly on ``reading`` alone says nothing of ``model``'s faults: its level
        follows the clinician's settings or the mains."""
        mode = self.likely_fault(model, reading)
        return mode is not None and (mode.follows_settings or mode.follows_mains)


def parse(document: Mapping[str, Any]) -> FaultCatalogue:
    """A catalogue from the TOML document's tables (``[model.CODE]`` with ``fault``,
    ``readings`` and optionally ``follows_settings`` and ``follows_mains``);
    :class:`CatalogueError` names what is wrong."""
    modes: dict[str, tuple[FaultMode, ...]] = {}
    for model, faults in document.items():
        if not isinstance(faults, Mapping) or not faults:
            raise CatalogueError(f"{model}: expected a table of fault codes")
        out = []
        seen: dict[str, str] = {}
        for code, entry in faults.items():
            if not isinstance(entry, Mapping):
                raise CatalogueError(f"{model}.{code}: expected a table")
            name, readings = entry.get("fault"), entry.get("readings")
            if not isinstance(name, str) or not name:
                raise CatalogueError(f"{model}.{code}: `fault` must name the failure mode")
            if (not isinstance(readings, list) or not readings
                    or not all(isinstance(r, str) and r for r in readings)):
                raise CatalogueError(f"{model}.{code}: `readings` must list reading names")
            flags = {}
            for flag in ("follows_settings", "follows_mains"):
                flags[flag] = entry.get(flag, False)
                if not isinstance(flags[flag], bool):
                    raise CatalogueError(f"{model}.{code}: `{flag}` must be true or false")
            for reading in readings:
                if reading in seen:
                    raise CatalogueError(f"{model}: {reading} belongs to both {seen[reading]} "
                                         f"and {code}")
                seen[reading] = code
            out.append(FaultMode(str(code), name, tuple(readings), **flags))
        modes[str(model)] = tuple(out)
    return FaultCatalogue(modes)


def load(path: Path | None = None) -> FaultCatalogue:
    """The catalogue in ``path`` (by default the one shipped beside this module)."""
    with (path or DEFAULT_FILE).open("rb") as f:
        return parse(tomllib.load(f))


@cache
def shipped_catalogue() -> FaultCatalogue:
    """The catalogue shipped beside this module, read once."""
    return load()
