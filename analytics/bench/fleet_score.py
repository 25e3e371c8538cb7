"""Accounting of `vigil bench fleet`: tickets judged against a simulated fleet's ground truth.

Pure functions, no I/O, so the rules of the count can be tested by hand. The
ground truth is the simulator's JSON (``edge_agent.simulator.scenario.ground_truth``);
tickets are reduced to :class:`TicketView`.

The rules, the same for the analytics and for the plain threshold rule:

- The first ``baseline_days`` of the period are a warm-up: a detector, like the
  threshold rule, first learns each device's normal. Failures and tickets in it
  are not counted (those tickets are reported as ``warmup_tickets``).
- A predictable failure is *ticketed 24 h ahead* if a ticket on its device was
  opened between the fault's onset and 24 h before the failure. Its lead is the
  failure time minus the earliest ticket opened between onset and failure.
- A ticket is *true* if its device has a fault whose onset came before it and
  whose repair (or, unrepaired, the failure plus ``BROKEN_GRACE``) came after;
  else it belongs to a *site episode* if it was opened at the episode's site
  between the episode's start and ``EPISODE_GRACE`` after its end; else it is
  *false*. Device-days exclude the warm-up and the time a device lay broken.
- Tickets per site episode count distinct root tickets (a device ticket linked
  under a site ticket counts as its site ticket), over the episodes that raised
  any ticket.
- Fleet tickets (one signature on many devices of a model, for the service manager)
  have no device: they link device tickets that are judged themselves, so they are
  neither true nor false and are only counted (``fleet_tickets``).
- Sudden failures (no precursor, labelled so) are counted apart, with the
  tickets that happened to open in the fortnight before them.
- The fault type of a ticketed failure is the one the earliest of its tickets that names
  one names (a prediction's fault code, or the fault the catalogue says an anomaly's reading
  shows in: the ticket's "likely: ..."); else the type learned for the first ticket's
  signature.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
AHEAD_MS = 24 * HOUR_MS
BROKEN_GRACE = 7 * DAY_MS
EPISODE_GRACE = DAY_MS
SUDDEN_LOOKBACK = 14 * DAY_MS
BASELINE_DAYS = 7
FLEET = "fleet"  # the scope of a fleet ticket (``vigil.db.enums.TicketScope``)

# (device model, ticket signature) -> predicted fault type
TypePredictor = Callable[[str, str], str | None]


@dataclass(frozen=True, slots=True)
class TicketView:
    """What the accounting needs of a ticket."""

    id: int
    device: str | None
    site: str | None
    created_ms: int
    signature: str
    scope: str = "device"
    parent_id: int | None = None
    # The fault type the ticket itself names (a prediction's), if any.
    fault_type: str | None = None


@dataclass(frozen=True, slots=True)
class FaultView:
    device: str
    model: str
    site: str
    fault_type: str
    onset_ms: int
    failure_ms: int
    predictable: bool
    repaired_ms: int | None

    @property
    def until_ms(self) -> int:
        """Until when a ticket on the device is about this fault."""
        return self.repaired_ms if self.repaired_ms is not None else self.failure_ms + BROKEN_GRACE


def faults_of(truth: Mapping[str, Any]) -> list[FaultView]:
    return [FaultView(str(f["device"]), str(f["model"]), str(f["site"]), str(f["fault_type"]),
                      int(f["onset_ms"]), int(f["failure_ms"]), bool(f["predictable"]),
                      None if f.get("repaired_ms") in (None, "") else int(f["repaired_ms"]))
            for f in truth["faults"]]


def _by_device(faults: Iterable[FaultView]) -> dict[str, list[FaultView]]:
    out: dict[str, list[FaultView]] = {}
    for f in faults:
        out.setdefault(f.device, []).append(f)
    return out


def classify(ticket: TicketView, *, faults: Mapping[str, Sequence[FaultView]],
             episodes: Sequence[Mapping[str, Any]]) -> tuple[str, int | None]:
    """``("true", None)``, ``("episode", index into episodes)`` or ``("false", None)``."""
    if ticket.device is not None:
        for f in faults.get(ticket.device, ()):
            if f.onset_ms <= ticket.created_ms <= f.until_ms:
                return "true", None
    for i, e in enumerate(episodes):
        if e["site"] == ticket.site and \
                e["start_ms"] <= ticket.created_ms <= e["end_ms"] + EPISODE_GRACE:
            return "episode", i
    return "false", None


def device_days(truth: Mapping[str, Any], *, baseline_days: int = BASELINE_DAYS) -> float:
    """Days each device was watched after the warm-up, less the days it lay broken."""
    first = int(truth["start_ms"]) + baseline_days * DAY_MS
    end = int(truth["end_ms"])
    total = max(0, end - first) * len(truth["devices"])
    for f in faults_of(truth):
        until = f.repaired_ms if f.repaired_ms is not None else end
        total -= max(0, min(until, end) - max(f.failure_ms, first))
    return total / DAY_MS


def score_tickets(truth: Mapping[str, Any], tickets: Sequence[TicketView], *,
                  predict_type: TypePredictor | None = None,
                  baseline_days: int = BASELINE_DAYS) -> dict[str, Any]:
    """The benchmark's figures for one set of tickets on one fleet (see the module's rules)."""
    first = int(truth["start_ms"]) + baseline_days * DAY_MS
    end = int(truth["end_ms"])
    faults = faults_of(truth)
    per_device = _by_device(faults)
    episodes = [e for e in truth["site_episodes"] if first <= e["start_ms"] <= end]
    in_period = [t for t in tickets if first <= t.created_ms <= end]
    counted = [t for t in in_period if t.scope != FLEET]
    device_tickets: dict[str, list[TicketView]] = {}
    for t in tickets:
        if t.device is not None:
            device_tickets.setdefault(t.device, []).append(t)

    kinds: Counter[str] = Counter()
    roots_per_episode: dict[int, set[int]] = {}
    for t in counted:
        kind, episode = classify(t, faults=per_device, episodes=episodes)
        kinds[kind] += 1
        if episode is not None:
            roots_per_episode.setdefault(episode, set()).add(t.parent_id or t.id)

    predictable = [f for f in faults if f.predictable and first < f.failure_ms <= end]
    sudden = [f for f in faults if not f.predictable and first < f.failure_ms <= end]
    leads: list[float] = []
    typed: list[bool] = []
    missed: Counter[str] = Counter()
    for f in predictable:
        during = sorted((t for t in device_tickets.get(f.device, ())
                         if f.onset_ms <= t.created_ms <= f.failure_ms),
                        key=lambda t: t.created_ms)
        if not during or f.failure_ms - during[0].created_ms < AHEAD_MS:
            missed[f.fault_type] += 1
            continue
        leads.append((f.failure_ms - during[0].created_ms) / HOUR_MS)
        named = next((t.fault_type for t in during if t.fault_type is not None), None)
        if named is not None:
            typed.append(named == f.fault_type)
        elif predict_type is not None:
            typed.append(predict_type(f.model, during[0].signature) == f.fault_type)
    sudden_before = sum(
        any(f.failure_ms - SUDDEN_LOOKBACK <= t.created_ms <= f.failure_ms - AHEAD_MS
            for t in device_tickets.get(f.device, ())) for f in sudden)
    days = device_days(truth, baseline_days=baseline_days)
    ticketed_episodes = len(roots_per_episode)
    episode_tickets = sum(len(r) for r in roots_per_episode.values())
    return {
        "predictable_failures": len(predictable),
        "ticketed_24h": len(leads),
        "ticketed_24h_share": round(len(leads) / len(predictable), 3) if predictable else None,
        "median_lead_h": round(statistics.median(leads), 1) if leads else None,
        "tickets": len(counted),
        "fleet_tickets": len(in_period) - len(counted),
        "warmup_tickets": sum(t.created_ms < first and t.scope != FLEET for t in tickets),
        "true_tickets": kinds["true"],
        "episode_tickets": kinds["episode"],
        "false_tickets": kinds["false"],
        "device_days": round(days, 1),
        "false_per_100_device_days": round(100 * kinds["false"] / days, 3) if days else None,
        "site_episodes": len(episodes),
        "site_episodes_ticketed": ticketed_episodes,
        "tickets_per_site_episode": (round(episode_tickets / ticketed_episodes, 2)
                                     if ticketed_episodes else None),
        "fault_type_accuracy": round(sum(typed) / len(typed), 3) if typed else None,
        "sudden_failures": len(sudden),
        "sudden_ticketed_before": sudden_before,
        "missed_by_fault_type": dict(sorted(missed.items())),
    }


def learn_fault_types(truth: Mapping[str, Any], tickets: Sequence[TicketView]
                      ) -> dict[tuple[str, str], str]:
    """Per device model and ticket signature, the fault type its true tickets most often had.

    Learned on the training fleet only, then used to name the fault of the
    evaluation fleet's tickets. Keys with model ``*`` vote across models, for a
    signature the training fleet showed on another model only (a supply voltage
    behaves alike on every model).
    """
    per_device = _by_device(faults_of(truth))
    votes: dict[tuple[str, str], Counter[str]] = {}
    for t in tickets:
        if t.device is None:
            continue
        for f in per_device.get(t.device, ()):
            if f.onset_ms <= t.created_ms <= f.failure_ms:
                votes.setdefault((f.model, t.signature), Counter())[f.fault_type] += 1
                votes.setdefault(("*", t.signature), Counter())[f.fault_type] += 1
    return {key: counts.most_common(1)[0][0] for key, counts in sorted(votes.items())}


def predictor(table: Mapping[tuple[str, str], str]) -> TypePredictor:
    """The fault type for a model's signature, else the signature's across models, else None."""
    def predict(model: str, signature: str) -> str | None:
        return table.get((model, signature)) or table.get(("*", signature))
    return predict


# -- the plain threshold rule --------------------------------------------------------------

def lives(truth: Mapping[str, Any], device: str, days: int) -> list[tuple[int, int]]:
    """Day ranges ``[first, last)`` between repairs, each long enough for a baseline week."""
    start = int(truth["start_ms"])
    spans: list[tuple[int, int]] = []
    cut = 0
    for f in sorted((f for f in faults_of(truth) if f.device == device),
                    key=lambda f: f.failure_ms):
        fail_day = (f.failure_ms - start) // DAY_MS
        if fail_day >= days:
            break
        spans.append((cut, int(fail_day)))
        cut = days if f.repaired_ms is None else int(-(-(f.repaired_ms - start) // DAY_MS))
    spans.append((cut, days))
    return [(a, b) for a, b in spans if b - a > BASELINE_DAYS]


def threshold_tickets(truth: Mapping[str, Any],
                      daily: Mapping[str, Mapping[str, list[float | None]]], *, k: float
                      ) -> list[TicketView]:
    """The plain rule's tickets: one at the end of the first day of each run of alarming days."""
    from edge_agent.simulator.plain_rule import alarm_days

    start = int(truth["start_ms"])
    days = int(-(-(int(truth["end_ms"]) - start) // DAY_MS))
    site_of = {d["device"]: d["site"] for d in truth["devices"]}
    out: list[TicketView] = []
    for device, means in sorted(daily.items()):
        for first, last in lives(truth, device, days):
            for day in alarm_days(dict(means), first, last, k=k):
                out.append(TicketView(len(out) + 1, device, site_of.get(device),
                                      start + (day + 1) * DAY_MS, "threshold"))
    return out


def choose_k(truth: Mapping[str, Any], daily: Mapping[str, Mapping[str, list[float | None]]],
             *, target_false_per_100: float, ks: Sequence[float]) -> tuple[float, dict[str, Any]]:
    """The band width whose false-ticket rate is closest to the target (the stricter on ties)."""
    best: tuple[float, float, dict[str, Any]] | None = None
    for k in sorted(ks, reverse=True):
        figures = score_tickets(truth, threshold_tickets(truth, daily, k=k))
        gap = abs((figures["false_per_100_device_days"] or 0.0) - target_false_per_100)
        if best is None or gap < best[0] - 1e-12:
            best = (gap, k, figures)
    if best is None:
        raise ValueError("no band width to choose from")
    return best[1], best[2]
