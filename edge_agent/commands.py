"""Diagnostic commands: an allow-list of handlers, each answered with a result or a clear refusal.

A command is refused, with the reason in the result, when it is unknown, has
expired, or would change the device's behaviour while the device is not in the
``maintenance`` state. A handler that raises yields ``ok: false`` with the
error; it never takes the agent down.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge_agent import EdgeAgentError, protocol

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class CommandRefused(EdgeAgentError):
    """A handler's way to refuse with a reason (bad arguments, device busy)."""


@dataclass(frozen=True, slots=True)
class Registered:
    handler: Handler
    changes_device: bool
    help: str


@dataclass(frozen=True, slots=True)
class Reply:
    """Where the result goes and what it says."""

    topic: str
    result: protocol.CommandResult


class CommandProcessor:
    """Decides about and runs commands addressed to one device."""

    def __init__(self, device_id: str, state: Callable[[], str],
                 now_ms: Callable[[], int]) -> None:
        self.device_id = device_id
        self._state = state
        self._now_ms = now_ms
        self._handlers: dict[str, Registered] = {}
        self.handled = 0
        self.refused = 0

    def register(self, name: str, handler: Handler, *, changes_device: bool = False,
                 help: str = "") -> None:
        if not protocol.COMMAND_NAME_RE.fullmatch(name):
            raise ValueError(f"invalid command name {name!r}")
        self._handlers[name] = Registered(handler, changes_device, help)

    @property
    def names(self) -> list[str]:
        return sorted(self._handlers)

    def describe(self) -> dict[str, dict[str, Any]]:
        return {n: {"changes_device": r.changes_device, "help": r.help}
                for n, r in sorted(self._handlers.items())}

    def handle(self, payload: bytes) -> Reply | None:
        """Run one command payload; ``None`` only when there is no id to answer to."""
        default_topic = protocol.topic(self.device_id, "cmd/result")
        try:
            command = protocol.decode_command(payload)
        except protocol.ProtocolError as exc:
            command_id = _salvage_id(payload)
            log.warning("malformed command %s: %s", command_id or "(no id)", exc)
            if command_id is None:
                return None
            self.refused += 1
            return Reply(default_topic, self._result(command_id, False,
                                                     {"error": f"malformed command: {exc}"}))
        topic = self._reply_topic(command.reply_to) or default_topic
        if command.reply_to and topic == default_topic and command.reply_to != default_topic:
            return self._refuse(command, topic, f"reply_to {command.reply_to!r} is outside this "
                                                "device's cmd/result topics")
        now = self._now_ms()
        if command.expires <= now:
            return self._refuse(command, topic, f"expired {(now - command.expires) / 1000:.1f} s "
                                                "before it arrived")
        registered = self._handlers.get(command.cmd)
        if registered is None:
            return self._refuse(command, topic, f"unknown command {command.cmd!r}; allowed: "
                                                f"{', '.join(self.names)}")
        state = self._state()
        if registered.changes_device and state != "maintenance":
            return self._refuse(command, topic, f"{command.cmd} changes the device and needs the "
                                                f"maintenance state; the device is {state}")
        try:
            output = registered.handler(dict(command.args))
        except CommandRefused as exc:
            return self._refuse(command, topic, str(exc))
        except Exception as exc:  # a faulty handler must never stop the agent
            log.exception("command %s (%s) failed", command.id, command.cmd)
            self.refused += 1
            return Reply(topic, self._result(command.id, False,
                                             {"error": f"{type(exc).__name__}: {exc}"}))
        self.handled += 1
        log.info("command %s (%s) done", command.id, command.cmd)
        return Reply(topic, self._result(command.id, True, output))

    def _refuse(self, command: protocol.Command, topic: str, reason: str) -> Reply:
        self.refused += 1
        log.info("command %s (%s) refused: %s", command.id, command.cmd, reason)
        return Reply(topic, self._result(command.id, False, {"error": reason, "refused": True}))

    def _result(self, command_id: str, ok: bool, output: dict[str, Any]) -> protocol.CommandResult:
        return protocol.CommandResult(id=command_id, ok=ok, ts=self._now_ms(), output=output)

    def _reply_topic(self, reply_to: str) -> str:
        """``reply_to`` if it is this device's cmd/result topic or below it, else ''."""
        base = protocol.topic(self.device_id, "cmd/result")
        if reply_to == base or (reply_to.startswith(base + "/") and "+" not in reply_to
                                and "#" not in reply_to):
            return reply_to
        return ""


def _salvage_id(payload: bytes) -> str | None:
    """The id of a malformed command, when it has a usable one, to answer it."""
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    cid = body.get("id") if isinstance(body, dict) else None
    return cid if isinstance(cid, str) and protocol.TOKEN_RE.fullmatch(cid) else None
