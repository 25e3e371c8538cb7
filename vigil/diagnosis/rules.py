"""The pure rules of remote diagnosis: which commands a device model allows, and when.

No I/O here apart from reading the allow-list file: the service applies these
rules inside its transaction, and the tests call them directly.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from vigil.db.enums import DeviceState, RoleName
from vigil.errors import Conflict, Forbidden, InvalidRequest

DEFAULT_ALLOW_LIST = Path(__file__).with_name("commands.toml")
DEFAULT_SESSION_TTL = timedelta(hours=1)
# The roles that may open a session and send commands: the people who diagnose devices.
DIAGNOSING_ROLES = frozenset({RoleName.ENGINEER.value, RoleName.MANAGER.value})
ANY_MODEL = "*"
_ARG_TYPES = ("integer", "number")


@dataclass(frozen=True, slots=True)
class ArgSpec:
    """One argument of a command: its type and bounds."""

    name: str
    type: str
    min: float | None = None
    max: float | None = None
    required: bool = False

    def check(self, value: object) -> int | float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidRequest(f"args.{self.name}: must be a number")
        if self.type == "integer" and not (isinstance(value, int) or value.is_integer()):
            raise InvalidRequest(f"args.{self.name}: must be a whole number")
        if value != value or (self.min is not None and value < self.min) or (
                self.max is not None and value > self.max):
            raise InvalidRequest(f"args.{self.name}: must be between {self.min} and {self.max}")
        return int(value) if self.type == "integer" else value


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """A command the platform may send, and what it needs."""

    name: str
    help: str
    changes_device: bool
    timeout_s: float
    args: tuple[ArgSpec, ...] = ()

    def check_args(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments validated against the spec; unknown ones are refused, never passed on."""
        known = {a.name: a for a in self.args}
        unknown = sorted(set(args) - set(known))
        if unknown:
            raise InvalidRequest(f"args.{unknown[0]}: {self.name} takes no such argument")
        clean: dict[str, Any] = {}
        for spec in self.args:
            if spec.name in args:
                clean[spec.name] = spec.check(args[spec.name])
            elif spec.required:
                raise InvalidRequest(f"args.{spec.name}: required by {self.name}")
        return clean


@dataclass(frozen=True, slots=True)
class AllowList:
    """The commands per device model, as ``commands.toml`` lists them."""

    commands: Mapping[str, CommandSpec]
    models: Mapping[str, tuple[str, ...]]

    @classmethod
    def load(cls, path: Path = DEFAULT_ALLOW_LIST) -> AllowList:
        with path.open("rb") as f:
            return cls.parse(tomllib.load(f))

    @classmethod
    def parse(cls, document: Mapping[str, Any]) -> AllowList:
        commands: dict[str, CommandSpec] = {}
        for name, body in document.get("commands", {}).items():
            args = []
            for arg_name, arg in body.get("args", {}).items():
                if arg.get("type") not in _ARG_TYPES:
                    raise ValueError(f"commands.{name}.args.{arg_name}: type must be one of "
                                     f"{', '.join(_ARG_TYPES)}")
                args.append(ArgSpec(arg_name, arg["type"], arg.get("min"), arg.get("max"),
                                    bool(arg.get("required", False))))
            timeout = float(body.get("timeout_s", 30))
            if timeout <= 0:
                raise ValueError(f"commands.{name}.timeout_s must be above 0")
            commands[name] = CommandSpec(name, str(body.get("help", "")),
                                         bool(body.get("changes_device", False)), timeout,
                                         tuple(args))
        models: dict[str, tuple[str, ...]] = {}
        for model, names in document.get("models", {}).items():
            missing = [n for n in names if n not in commands]
            if missing:
                raise ValueError(f"models.{model}: unknown command {missing[0]!r}")
            models[model] = tuple(names)
        return cls(commands, models)

    def for_model(self, model: str) -> list[CommandSpec]:
        names = self.models.get(model, self.models.get(ANY_MODEL, ()))
        return [self.commands[n] for n in names]

    def find(self, model: str, name: str) -> CommandSpec:
        for spec in self.for_model(model):
            if spec.name == name:
                return spec
        allowed = ", ".join(s.name for s in self.for_model(model)) or "none"
        raise InvalidRequest(f"cmd: {name!r} is not allowed for model {model}; allowed: {allowed}")


def may_diagnose(roles: Iterable[str]) -> None:
    """Engineers and managers diagnose devices; other roles are refused."""
    if not DIAGNOSING_ROLES & set(roles):
        raise Forbidden("only engineers and managers may run diagnosis sessions")


def may_open(*, online: bool, state: str | None) -> None:
    """A session needs a device that is connected now."""
    if not online or state == DeviceState.OFFLINE.value:
        raise Conflict("the device is offline; a session needs an online device")


def is_active(*, expires_at: datetime, closed_at: datetime | None, now: datetime) -> bool:
    return closed_at is None and now < expires_at


def may_send(spec: CommandSpec, *, expires_at: datetime, closed_at: datetime | None,
             online: bool, state: str | None, now: datetime) -> None:
    """Whether ``spec`` may be sent now: an active session, and maintenance if it changes things.

    The agent checks the maintenance state again on the device; this check
    spares the device a command it would refuse and the engineer a wait.
    """
    if closed_at is not None:
        raise Conflict("the session is closed")
    if now >= expires_at:
        raise Conflict("the session has expired")
    may_open(online=online, state=state)
    if spec.changes_device and state != DeviceState.MAINTENANCE.value:
        raise Conflict(f"{spec.name} changes the device's behaviour and needs the maintenance "
                       f"state; the device reports {state or 'no state'}")


def command_expiry(spec: CommandSpec, now: datetime, session_expires_at: datetime) -> datetime:
    """When the platform stops waiting for the answer: the timeout, at most the session's end."""
    return min(now + timedelta(seconds=spec.timeout_s), session_expires_at)


def epoch_ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)
