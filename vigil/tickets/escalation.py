"""Escalation chains: who is told, and when, while a milestone is at risk or breached.

As on-call tools do: notify the assignee, then the engineers on duty, then the
service managers, and keep repeating the last step until someone acknowledges.
The chains are data (the ``[escalation]`` section of the ticket rules file); the
functions here are pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from vigil.db.enums import Priority
from vigil.tickets.priority import RulesError


class Target(StrEnum):
    ASSIGNEE = "assignee"
    ON_DUTY = "on_duty"
    MANAGERS = "managers"


# When a step's target has nobody to tell, the next in this order is told instead.
FALLBACK: Mapping[Target, Target | None] = {
    Target.ASSIGNEE: Target.ON_DUTY, Target.ON_DUTY: Target.MANAGERS, Target.MANAGERS: None}


@dataclass(frozen=True, slots=True)
class Step:
    after: timedelta
    target: Target


@dataclass(frozen=True, slots=True)
class Chain:
    steps: tuple[Step, ...]
    repeat_every: timedelta

    def __post_init__(self) -> None:
        if not self.steps:
            raise RulesError("an escalation chain needs at least one step")
        if any(b.after < a.after for a, b in zip(self.steps, self.steps[1:], strict=False)):
            raise RulesError("escalation steps must come in time order")
        if self.repeat_every <= timedelta(0):
            raise RulesError("an escalation chain must repeat after a positive time")

    def target(self, step: int) -> Target:
        return self.steps[min(step, len(self.steps) - 1)].target

    def due_at(self, raised_at: datetime, step: int) -> datetime:
        """When step ``step`` (0-based) fires; steps past the chain repeat its last one."""
        last = len(self.steps) - 1
        if step <= last:
            return raised_at + self.steps[step].after
        return raised_at + self.steps[last].after + (step - last) * self.repeat_every


@dataclass(frozen=True)
class EscalationPolicy:
    chains: Mapping[Priority, Chain]

    def chain(self, priority: str) -> Chain:
        return self.chains[Priority(priority)]

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> EscalationPolicy:
        section = doc.get("escalation", {})
        chains: dict[Priority, Chain] = {}
        for priority in Priority:
            entry = section.get(priority.value)
            if entry is None:
                raise RulesError(f"escalation.{priority}: missing")
            try:
                steps = tuple(Step(timedelta(minutes=float(m)), Target(t))
                              for m, t in entry["steps"])
                repeat = timedelta(minutes=float(entry["repeat_minutes"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise RulesError(f"escalation.{priority}: steps are [minutes, one of "
                                 f"{', '.join(t.value for t in Target)}] and repeat_minutes "
                                 f"is a number ({exc})") from None
            chains[priority] = Chain(steps, repeat)
        return cls(chains)
