"""Agent settings: a TOML file, then ``VIGIL_AGENT_<SECTION>_<KEY>`` environment overrides.

Environment overrides let a fleet image ship one file and set the device id,
broker and secrets per device (``VIGIL_AGENT_DEVICE_ID``,
``VIGIL_AGENT_BROKER_PASSWORD``). Unknown keys and wrongly typed values are
errors naming the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from edge_agent import EdgeAgentError, protocol
from edge_agent.transport import BrokerSettings

ENV_PREFIX = "VIGIL_AGENT_"
SECRET_KEYS = ("password", "key_file")


class ConfigError(EdgeAgentError, ValueError):
    """A setting that cannot be used; the message names it."""


@dataclass(frozen=True, slots=True)
class DeviceSettings:
    id: str = ""
    model: str = "infusion_pump"
    fw: str = "1.0.0"
    # The device's service mode switch: the state is "maintenance" while this file exists.
    maintenance_flag: str = ""


@dataclass(frozen=True, slots=True)
class OutboxSettings:
    path: str = "vigil-outbox.db"
    max_entries: int = 1_000_000
    max_age_days: float = 30.0
    window: int = 8


@dataclass(frozen=True, slots=True)
class SamplingSettings:
    interval_s: float = 1.0
    min_interval_s: float = 0.05
    max_fast_s: float = 900.0
    status_interval_s: float = 60.0


@dataclass(frozen=True, slots=True)
class SourceSettings:
    kind: str = "simulated"
    model: str = ""
    seed: int = 0
    command: list[str] = field(default_factory=list)
    mode: str = "stream"


@dataclass(frozen=True, slots=True)
class ClockSettings:
    floor_ms: int = 1_735_689_600_000
    max_jump_s: float = 120.0


@dataclass(frozen=True, slots=True)
class AgentConfig:
    device: DeviceSettings = field(default_factory=DeviceSettings)
    broker: BrokerSettings = field(default_factory=BrokerSettings)
    outbox: OutboxSettings = field(default_factory=OutboxSettings)
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    source: SourceSettings = field(default_factory=SourceSettings)
    clock: ClockSettings = field(default_factory=ClockSettings)

    def redacted(self) -> dict[str, Any]:
        """The settings for get_config, secrets replaced."""
        data = dataclasses.asdict(self)
        for section in data.values():
            for key in SECRET_KEYS:
                if section.get(key):
                    section[key] = "***"
        return data


def load_config(path: str | Path | None = None,
                environ: Mapping[str, str] | None = None) -> AgentConfig:
    """Read the TOML file (if any), apply environment overrides, check the result."""
    data: dict[str, dict[str, Any]] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    environ = os.environ if environ is None else environ
    sections = {f.name: f.type for f in dataclasses.fields(AgentConfig)}
    hints = get_type_hints(AgentConfig)
    for name in data:
        if name not in sections:
            raise ConfigError(f"unknown config section [{name}]; known: {', '.join(sections)}")
    built: dict[str, Any] = {}
    for name in sections:
        cls = hints[name]
        values = dict(data.get(name, {}))
        if not isinstance(values, dict):
            raise ConfigError(f"[{name}] must be a table")
        fields = get_type_hints(cls)
        for key, value in environ.items():
            prefix = f"{ENV_PREFIX}{name.upper()}_"
            if key.startswith(prefix):
                fname = key[len(prefix):].lower()
                if fname not in fields:
                    raise ConfigError(f"{key}: [{name}] has no setting {fname!r}")
                values[fname] = _from_env(key, value, fields[fname])
        for key, value in values.items():
            if key not in fields:
                raise ConfigError(f"[{name}] has no setting {key!r}; known: {', '.join(fields)}")
            values[key] = _check_type(f"{name}.{key}", value, fields[key])
        built[name] = cls(**values)
    config = AgentConfig(**built)
    _validate(config)
    return config


def _from_env(key: str, value: str, kind: Any) -> Any:
    try:
        if kind is bool:
            if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("1", "true", "yes")
        if kind is int:
            return int(value)
        if kind is float:
            return float(value)
        if kind == list[str]:
            return value.split()
    except ValueError as exc:
        name = getattr(kind, "__name__", kind)
        raise ConfigError(f"{key}={value!r} is not a valid {name}") from exc
    return value


def _check_type(name: str, value: Any, kind: Any) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind == list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name} must be a list of strings")
        return value
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{name} must be {kind.__name__}, got {value!r}")
    return value


def _validate(config: AgentConfig) -> None:
    try:
        protocol.validate_device_id(config.device.id)
    except protocol.ProtocolError as exc:
        raise ConfigError(f"device.id: {exc}") from exc
    if not 0 < config.broker.port < 65536:
        raise ConfigError(f"broker.port {config.broker.port} is not a TCP port")
    if config.broker.keepalive_s < 5:
        raise ConfigError("broker.keepalive_s must be at least 5")
    s = config.sampling
    if not s.min_interval_s <= s.interval_s <= 3600:
        raise ConfigError(f"sampling.interval_s must be between {s.min_interval_s} and 3600")
    if config.source.kind not in ("simulated", "command"):
        raise ConfigError("source.kind must be 'simulated' or 'command'")
    if config.source.kind == "command" and not config.source.command:
        raise ConfigError("source.command is required for the command source")
    if config.outbox.max_entries < 1 or config.outbox.window < 1:
        raise ConfigError("outbox.max_entries and outbox.window must be at least 1")
