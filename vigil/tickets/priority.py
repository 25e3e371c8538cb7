"""Priority and fault category of a ticket, from its source and its device: rules as data.

The rules live in a TOML file (``rules.toml`` beside this module by default);
``TicketRules`` holds them parsed and validated, and ``decide`` is a pure
function of the rules and one ``Signal``. A life-support device (a ventilator)
never gets less than P2 for a failure-class signature, whatever the source says.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from vigil.db.enums import Category, Priority, Severity, TicketSource

DEFAULT_RULES_FILE = Path(__file__).with_name("rules.toml")

# P1 is the most urgent; "raising" a priority lowers its rank.
_RANK = {Priority.P1: 1, Priority.P2: 2, Priority.P3: 3}


def most_urgent(*priorities: Priority) -> Priority:
    return min(priorities, key=_RANK.__getitem__)


class RulesError(ValueError):
    """The rules file is not usable; the message names the entry."""


@dataclass(frozen=True, slots=True)
class Signal:
    """What a ticket is about to say, in the terms the rules decide on.

    ``failure_class`` is false for work that is not a fault (a due plan, an
    advisory): the risk-class floor applies only to faults.
    """

    source: TicketSource
    severity: Severity | None = None
    score: float | None = None
    hours_to_failure: float | None = None
    emergency: bool = False
    failure_class: bool = True
    category: Category | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    priority: Priority
    category: Category
    risk_class: str
    # The signature may have a cause shared by a room or a building (see ``site_wide``).
    site_wide: bool = False
    # The signature on many devices of one model may be a defect of the model (``fleet``).
    fleet_wide: bool = False


def read_rules_document(path: Path = DEFAULT_RULES_FILE) -> dict[str, Any]:
    """The ticket rules file, parsed; ``RulesError`` says what is wrong with it."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise RulesError(f"cannot read ticket rules {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"ticket rules {path}: {exc}") from None


def _priority(value: Any, where: str) -> Priority:
    try:
        return Priority(value)
    except ValueError:
        raise RulesError(f"{where}: {value!r} is not a priority (P1, P2, P3)") from None


def _thresholds(value: Any, where: str) -> tuple[tuple[float, Priority], ...]:
    if not isinstance(value, list):
        raise RulesError(f"{where}: expected a list of [number, priority] pairs")
    pairs = []
    for item in value:
        if (not isinstance(item, list) or len(item) != 2
                or not isinstance(item[0], int | float) or isinstance(item[0], bool)):
            raise RulesError(f"{where}: {item!r} is not a [number, priority] pair")
        pairs.append((float(item[0]), _priority(item[1], where)))
    return tuple(pairs)


@dataclass(frozen=True)
class SectionRules:
    """The priority rules of every source, for one device model (or the default)."""

    device_event: Mapping[str, Priority]
    failure_within_hours: tuple[tuple[float, Priority], ...]
    failure_later: Priority
    anomaly_score_at_least: tuple[tuple[float, Priority], ...]
    anomaly_otherwise: Priority
    customer_emergency: Priority
    customer_default: Priority
    maintenance_default: Priority

    @classmethod
    def parse(cls, doc: Mapping[str, Any], where: str) -> SectionRules:
        try:
            events = doc["device_event"]
            unknown = set(events) - {s.value for s in Severity}
            if unknown:
                raise RulesError(f"{where}.device_event: unknown severities {sorted(unknown)}")
            missing = {s.value for s in Severity} - set(events)
            if missing:
                raise RulesError(f"{where}.device_event: no priority for {sorted(missing)}")
            analytics = doc["analytics"]
            return cls(
                device_event={k: _priority(v, f"{where}.device_event.{k}")
                              for k, v in events.items()},
                failure_within_hours=_thresholds(analytics["failure_within_hours"],
                                                 f"{where}.analytics.failure_within_hours"),
                failure_later=_priority(analytics["failure_later"], f"{where}.analytics"),
                anomaly_score_at_least=_thresholds(analytics["anomaly_score_at_least"],
                                                   f"{where}.analytics.anomaly_score_at_least"),
                anomaly_otherwise=_priority(analytics["anomaly_otherwise"], f"{where}.analytics"),
                customer_emergency=_priority(doc["customer"]["emergency"], f"{where}.customer"),
                customer_default=_priority(doc["customer"]["default"], f"{where}.customer"),
                maintenance_default=_priority(doc["maintenance_plan"]["default"],
                                              f"{where}.maintenance_plan"),
            )
        except KeyError as exc:
            raise RulesError(f"{where}: missing entry {exc.args[0]!r}") from None
        except TypeError as exc:
            raise RulesError(f"{where}: {exc}") from None

    def priority(self, signal: Signal) -> Priority:
        if signal.source is TicketSource.DEVICE_EVENT:
            return self.device_event[Severity(signal.severity or Severity.ERROR)]
        if signal.source is TicketSource.ANALYTICS:
            if signal.hours_to_failure is not None:
                for hours, priority in self.failure_within_hours:
                    if signal.hours_to_failure <= hours:
                        return priority
                return self.failure_later
            if signal.score is not None:
                for score, priority in self.anomaly_score_at_least:
                    if signal.score >= score:
                        return priority
            return self.anomaly_otherwise
        if signal.source is TicketSource.CUSTOMER:
            return self.customer_emergency if signal.emergency else self.customer_default
        return self.maintenance_default


def _patterns(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
        raise RulesError(f"{where}: a list of signature patterns")
    return tuple(value)


def _whole(value: Any, where: str, least: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise RulesError(f"{where}: a whole number of at least {least}, not {value!r}")
    return value


_FLEET_KEYS = frozenset({"signatures", "exclude", "min_devices", "min_sites", "window_days"})


@dataclass(frozen=True, slots=True)
class FleetGrouping:
    """When one fault signature shows on many devices of one model across sites, within days.

    A batch of bad parts or a firmware defect is not any one device's fault: the
    desk opens one fleet ticket for the service manager per (model, signature),
    linking the device tickets, which are still worked one by one. Signatures
    whose cause is a room or a building (``exclude``: by default the site
    grouping's) are never a fleet signal; neither are signatures no pattern of
    ``signatures`` matches (planned work, customers' reports by category).
    """

    signatures: tuple[str, ...] = ("anomaly:*", "prediction:*", "event:*")
    exclude: tuple[str, ...] = ()
    min_devices: int = 5
    min_sites: int = 3
    window: timedelta = timedelta(days=7)

    @classmethod
    def parse(cls, doc: Any, *, default_exclude: tuple[str, ...]) -> FleetGrouping:
        """The ``fleet_grouping`` section; ``RulesError`` names a bad or unknown entry."""
        where = "fleet_grouping"
        if not isinstance(doc, Mapping):
            raise RulesError(f"{where}: a table of settings")
        unknown = set(doc) - _FLEET_KEYS
        if unknown:
            raise RulesError(f"{where}: unknown settings {sorted(unknown)} "
                             f"(known: {', '.join(sorted(_FLEET_KEYS))})")
        default = cls()
        window = doc.get("window_days", default.window.total_seconds() / 86_400)
        if (not isinstance(window, int | float) or isinstance(window, bool)
                or not 0 < window <= 366):
            raise RulesError(f"{where}.window_days: a number of days above 0 and at most 366, "
                             f"not {window!r}")
        min_devices = _whole(doc.get("min_devices", default.min_devices),
                             f"{where}.min_devices", 2)
        min_sites = _whole(doc.get("min_sites", default.min_sites), f"{where}.min_sites", 1)
        if min_sites > min_devices:
            raise RulesError(f"{where}: min_sites ({min_sites}) cannot exceed min_devices "
                             f"({min_devices}): each site counts with a device of its own")
        return cls(
            signatures=_patterns(doc.get("signatures", list(default.signatures)),
                                 f"{where}.signatures"),
            exclude=_patterns(doc.get("exclude", list(default_exclude)), f"{where}.exclude"),
            min_devices=min_devices, min_sites=min_sites, window=timedelta(days=window))

    def applies(self, signature: str) -> bool:
        """Whether the signature may be a defect of a model rather than of a place."""
        return (any(fnmatchcase(signature, p) for p in self.signatures)
                and not any(fnmatchcase(signature, p) for p in self.exclude))

    def reached(self, *, devices: int, sites: int) -> bool:
        return devices >= self.min_devices and sites >= self.min_sites


@dataclass(frozen=True, slots=True)
class SiteEpisode:
    """When most of a site's devices alarm on one site-wide reading at once: one site ticket.

    A sag of the building's mains or a failed air conditioner touches every device in
    the room for an hour or two; each device's detector sees it once or twice, too few
    alarms for a device ticket, but together they are unmistakable. On the training fleet
    of `vigil bench fleet` (seed 11, no site episodes planned), weather moved the ambient
    temperature or humidity of at most 55 % of a site's 33 devices within two hours and
    the mains of at most 5; ``share`` sits well above the weather.
    """

    share: float = 0.75
    window: timedelta = timedelta(hours=2)

    def needed(self, devices_at_site: int, *, least: int) -> int:
        """Devices that must alarm together at a site of ``devices_at_site`` devices."""
        return max(least, math.ceil(self.share * devices_at_site))


def fleet_title(model: str, signature: str, *, devices: int, sites: int) -> str:
    """What the service manager reads in the queue: which model, which fault, how widespread."""
    return (f"Fleet: {signature} on {devices} {model} devices at "
            f"{sites} site{'s' if sites != 1 else ''}")[:200]


def _merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), Mapping):
            merged[key] = _merged(base[key], value)
        else:
            merged[key] = value
    return merged


def _site_episode(grouping: Mapping[str, Any]) -> SiteEpisode:
    """The ``site_grouping`` section's ``episode_share`` and ``episode_minutes``."""
    default = SiteEpisode()
    share = grouping.get("episode_share", default.share)
    if not isinstance(share, int | float) or isinstance(share, bool) or not 0 < share <= 1:
        raise RulesError(f"site_grouping.episode_share: a share of a site's devices above 0 "
                         f"and at most 1, not {share!r}")
    minutes = _whole(grouping.get("episode_minutes", int(default.window.total_seconds() // 60)),
                     "site_grouping.episode_minutes", 1)
    return SiteEpisode(share=float(share), window=timedelta(minutes=minutes))


@dataclass(frozen=True)
class TicketRules:
    default: SectionRules
    by_model: Mapping[str, SectionRules]
    risk_classes: Mapping[str, str]
    floors: Mapping[str, Priority]
    categories: tuple[tuple[str, Category], ...]
    default_risk_class: str = field(default="standard")
    # Signature patterns whose cause may be shared by a room or a building: several devices
    # of one site showing one at once become a site ticket. Without a ``site_grouping``
    # section, the environmental categories' patterns.
    site_wide_patterns: tuple[str, ...] = ()
    # Of those, the patterns only a shared cause explains (readings of the room's air): one
    # device alone showing one is no fault of that device. See ``site_only``.
    site_only_patterns: tuple[str, ...] = ()
    # When a signature on many devices of one model becomes a fleet ticket.
    fleet: FleetGrouping = field(default_factory=FleetGrouping)
    # When a site-wide signature on most of a site's devices at once becomes a site ticket.
    site_episode: SiteEpisode = field(default_factory=SiteEpisode)
    # A device's finding is the ward's, not the device's, when at least this share of the
    # same model's other devices at its site alarmed on the same reading (0: never).
    peer_share: float = 0.0

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> TicketRules:
        """Rules from a parsed TOML document; raises ``RulesError`` naming a bad entry."""
        risk = dict(doc.get("risk_class", {}))
        default_class = risk.pop("default", "standard")
        floors = {name: _priority(value, f"floor.{name}")
                  for name, value in doc.get("floor", {}).items()}
        for model, risk_class in [("default", default_class), *risk.items()]:
            if risk_class not in floors:
                raise RulesError(f"risk_class.{model}: {risk_class!r} has no floor")
        categories = []
        for i, entry in enumerate(doc.get("category", [])):
            try:
                categories.append((str(entry["pattern"]), Category(entry["category"])))
            except (KeyError, ValueError):
                raise RulesError(f"category[{i}]: needs a pattern and one of "
                                 f"{', '.join(c.value for c in Category)}") from None
        if not categories:
            raise RulesError("category: at least one pattern is needed (end with '*')")
        grouping = doc.get("site_grouping", {})
        site_wide = grouping.get("signatures", [p for p, c in categories
                                                if c is Category.ENVIRONMENTAL])
        site_only = grouping.get("site_only", [])
        for name, value in (("signatures", site_wide), ("site_only", site_only)):
            if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
                raise RulesError(f"site_grouping.{name}: a list of signature patterns")
        if stray := [p for p in site_only if p not in site_wide]:
            raise RulesError(f"site_grouping.site_only: {', '.join(stray)} not among its "
                             "signatures (a site-only signature is grouped at its site)")
        fleet = FleetGrouping.parse(doc.get("fleet_grouping", {}),
                                    default_exclude=tuple(site_wide))
        episode = _site_episode(grouping)
        peer_share = doc.get("peer_comparison", {}).get("share", 0.0)
        if (not isinstance(peer_share, int | float) or isinstance(peer_share, bool)
                or not 0 <= peer_share <= 1):
            raise RulesError(f"peer_comparison.share: a share from 0 to 1, not {peer_share!r}")
        by_model = {model: SectionRules.parse(_merged(doc, override), f"model.{model}")
                    for model, override in doc.get("model", {}).items()}
        return cls(default=SectionRules.parse(doc, "rules"), by_model=by_model,
                   risk_classes=risk, floors=floors, categories=tuple(categories),
                   default_risk_class=default_class, site_wide_patterns=tuple(site_wide),
                   site_only_patterns=tuple(site_only), fleet=fleet, site_episode=episode,
                   peer_share=float(peer_share))

    @classmethod
    def load(cls, path: Path = DEFAULT_RULES_FILE) -> TicketRules:
        return cls.from_document(read_rules_document(path))

    def risk_class(self, model: str | None) -> str:
        return self.risk_classes.get(model or "", self.default_risk_class)

    def category(self, signature: str) -> Category:
        for pattern, category in self.categories:
            if fnmatchcase(signature, pattern):
                return category
        return self.categories[-1][1]

    def site_wide(self, signature: str) -> bool:
        return any(fnmatchcase(signature, pattern) for pattern in self.site_wide_patterns)

    def site_only(self, signature: str) -> bool:
        """A signature that is news only when most devices of one site show it together.

        The room's temperature or humidity read by one device while the devices beside it
        read nothing unusual is the weather of a corner, or that device's sensor, not a
        fault to send an engineer for; the same reading on most of the site's devices
        (``site_episode.share``) is the room.
        """
        return any(fnmatchcase(signature, pattern) for pattern in self.site_only_patterns)

    def decide(self, signal: Signal, *, signature: str, model: str | None) -> Decision:
        """Priority and category for a ticket with ``signature`` on a device of ``model``."""
        section = self.by_model.get(model or "", self.default)
        priority = section.priority(signal)
        risk_class = self.risk_class(model)
        if signal.failure_class:
            floor = self.floors[risk_class]
            priority = most_urgent(priority, floor)
        category = signal.category or self.category(signature)
        return Decision(priority=priority, category=category, risk_class=risk_class,
                        site_wide=self.site_wide(signature),
                        fleet_wide=self.fleet.applies(signature))
