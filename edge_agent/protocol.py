"""Wire protocol v1: topics, payloads and their validation.

This module is the single source of truth for what travels between a device and
the platform. The edge agent uses it to build messages and the server side
imports it to check them, so both always agree. Standard library only: it runs
on the device.

Every decode function either returns a well-formed message or raises
``ProtocolError`` with a reason a person can act on; ingest stores that reason
with the dead-lettered payload.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from edge_agent import EdgeAgentError

VERSION = 1
TOPIC_ROOT = f"vigil/v{VERSION}/dev"

# Limits that keep one message from hurting the pipeline. A catch-up batch after
# an outage is split by the agent to stay below them.
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_SAMPLES_PER_MESSAGE = 1000
MAX_METRICS_PER_SAMPLE = 64
MAX_TEXT_LENGTH = 1000
MAX_JSON_DEPTH = 8
# No device reading is this large; a value beyond it is corruption or an attack.
MAX_ABS_VALUE = 1e15

# Epoch milliseconds accepted at all: 2000-01-01 to 2100-01-01 UTC. Whether a
# timestamp is plausible *now* is a separate check (``check_clock``).
MIN_TS_MS = 946_684_800_000
MAX_TS_MS = 4_102_444_800_000

DEVICE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
METRIC_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
COMMAND_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
TOKEN_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")

Kind = Literal["telemetry", "status", "events", "cmd", "cmd/result"]
KINDS: tuple[Kind, ...] = ("telemetry", "status", "events", "cmd", "cmd/result")
STATES = ("online", "offline", "maintenance")
SEVERITIES = ("info", "warning", "error", "critical")


class ProtocolError(EdgeAgentError, ValueError):
    """A message or identifier that does not follow protocol v1."""


# --- identifiers and topics -------------------------------------------------


def validate_device_id(device_id: object) -> str:
    if not isinstance(device_id, str) or not DEVICE_ID_RE.fullmatch(device_id):
        raise ProtocolError(
            f"invalid device id {_show(device_id)}: 1-64 characters, letters, digits, "
            "'_', '.', '-', starting with a letter or digit"
        )
    return device_id


def validate_metric_name(name: object) -> str:
    if not isinstance(name, str) or not METRIC_NAME_RE.fullmatch(name):
        raise ProtocolError(
            f"invalid metric name {_show(name)}: 1-64 characters, letters, digits and '_', "
            "starting with a letter"
        )
    return name


def topic(device_id: str, kind: Kind) -> str:
    return f"{TOPIC_ROOT}/{validate_device_id(device_id)}/{kind}"


def subscription(kind: Kind, *, shared_group: str | None = None) -> str:
    """Wildcard filter for one kind of message from every device."""
    pattern = f"{TOPIC_ROOT}/+/{kind}"
    return f"$share/{shared_group}/{pattern}" if shared_group else pattern


def parse_topic(value: str) -> tuple[str, Kind]:
    """Split a topic into (device id, kind)."""
    prefix = TOPIC_ROOT + "/"
    if not value.startswith(prefix):
        raise ProtocolError(f"topic {_show(value)} is not under {prefix}")
    device_id, _, kind = value[len(prefix) :].partition("/")
    if kind not in KINDS:
        raise ProtocolError(f"topic {_show(value)} has unknown kind {_show(kind)}")
    return validate_device_id(device_id), kind


# --- messages ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    ts: int
    metrics: dict[str, float]


@dataclass(frozen=True, slots=True)
class Telemetry:
    seq: int
    samples: tuple[Sample, ...]


@dataclass(frozen=True, slots=True)
class Status:
    state: str
    ts: int
    fw: str = ""
    model: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    ts: int
    code: str
    severity: str
    text: str = ""


@dataclass(frozen=True, slots=True)
class Command:
    id: str
    cmd: str
    args: dict[str, Any]
    reply_to: str
    expires: int


@dataclass(frozen=True, slots=True)
class CommandResult:
    id: str
    ok: bool
    ts: int
    output: dict[str, Any]


def encode(message: Telemetry | Status | Event | Command | CommandResult) -> bytes:
    """Serialise a message as compact JSON; refuses NaN and infinities."""
    if isinstance(message, Telemetry):
        body: dict[str, Any] = {
            "v": VERSION,
            "seq": message.seq,
            "samples": [{"ts": s.ts, "metrics": s.metrics} for s in message.samples],
        }
    elif isinstance(message, Status):
        body = {**message.extra, "v": VERSION, "state": message.state, "ts": message.ts,
                "fw": message.fw, "model": message.model}
    elif isinstance(message, Event):
        body = {"v": VERSION, "seq": message.seq, "ts": message.ts, "code": message.code,
                "severity": message.severity, "text": message.text}
    elif isinstance(message, Command):
        body = {"v": VERSION, "id": message.id, "cmd": message.cmd, "args": message.args,
                "reply_to": message.reply_to, "expires": message.expires}
    else:
        body = {"v": VERSION, "id": message.id, "ok": message.ok, "ts": message.ts,
                "output": message.output}
    try:
        return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    except ValueError as exc:
        raise ProtocolError(f"cannot encode {type(message).__name__}: {exc}") from exc


def decode_telemetry(payload: bytes) -> Telemetry:
    body = _load(payload)
    seq = _seq(body)
    samples = body.get("samples")
    if not isinstance(samples, list) or not samples:
        raise ProtocolError("'samples' must be a non-empty list")
    if len(samples) > MAX_SAMPLES_PER_MESSAGE:
        raise ProtocolError(
            f"{len(samples)} samples in one message, at most {MAX_SAMPLES_PER_MESSAGE}"
        )
    return Telemetry(seq=seq, samples=tuple(_sample(s, i) for i, s in enumerate(samples)))


def decode_status(payload: bytes) -> Status:
    body = _load(payload)
    state = body.get("state")
    if state not in STATES:
        raise ProtocolError(f"'state' must be one of {', '.join(STATES)}, got {_show(state)}")
    extra = {k: v for k, v in body.items() if k not in ("v", "state", "ts", "fw", "model")}
    _storable(extra, "status")
    return Status(state=state, ts=_ts(body.get("ts"), "ts"), fw=_text(body, "fw", 64),
                  model=_text(body, "model", 64), extra=extra)


def decode_event(payload: bytes) -> Event:
    body = _load(payload)
    code = body.get("code")
    if not isinstance(code, str) or not TOKEN_RE.fullmatch(code):
        raise ProtocolError(f"invalid event code {_show(code)}")
    severity = body.get("severity")
    if severity not in SEVERITIES:
        raise ProtocolError(
            f"'severity' must be one of {', '.join(SEVERITIES)}, got {_show(severity)}"
        )
    return Event(seq=_seq(body), ts=_ts(body.get("ts"), "ts"), code=code, severity=severity,
                 text=_text(body, "text", MAX_TEXT_LENGTH))


def decode_command(payload: bytes) -> Command:
    body = _load(payload)
    cid = body.get("id")
    if not isinstance(cid, str) or not TOKEN_RE.fullmatch(cid):
        raise ProtocolError(f"invalid command id {_show(cid)}")
    name = body.get("cmd")
    if not isinstance(name, str) or not COMMAND_NAME_RE.fullmatch(name):
        raise ProtocolError(f"invalid command name {_show(name)}")
    args = body.get("args", {})
    if not isinstance(args, dict):
        raise ProtocolError("'args' must be an object")
    reply_to = body.get("reply_to", "")
    if not isinstance(reply_to, str) or len(reply_to) > 256:
        raise ProtocolError("'reply_to' must be a topic string")
    return Command(id=cid, cmd=name, args=args, reply_to=reply_to,
                   expires=_ts(body.get("expires"), "expires"))


def decode_command_result(payload: bytes) -> CommandResult:
    body = _load(payload)
    cid = body.get("id")
    if not isinstance(cid, str) or not TOKEN_RE.fullmatch(cid):
        raise ProtocolError(f"invalid command id {_show(cid)}")
    ok = body.get("ok")
    if not isinstance(ok, bool):
        raise ProtocolError("'ok' must be true or false")
    output = body.get("output", {})
    if not isinstance(output, dict):
        raise ProtocolError("'output' must be an object")
    return CommandResult(id=cid, ok=ok, ts=_ts(body.get("ts"), "ts"), output=output)


# What a device reports on its own, and how each is decoded: the kinds ingest takes.
REPORTS: dict[Kind, Callable[[bytes], Telemetry | Status | Event]] = {
    "telemetry": decode_telemetry,
    "status": decode_status,
    "events": decode_event,
}


def check_clock(ts_ms: int, now_ms: int, *, max_skew_ms: int = 5 * 60_000) -> bool:
    """True when a device timestamp is not in the future beyond the allowed skew."""
    return ts_ms <= now_ms + max_skew_ms


# --- helpers ----------------------------------------------------------------


def _load(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ProtocolError(f"payload of {len(payload)} bytes, at most {MAX_PAYLOAD_BYTES}")
    try:
        # Decoded here, strictly: given bytes, json.loads would also take UTF-16, UTF-32
        # and a byte-order mark, which the protocol does not allow.
        body = json.loads(payload.decode("utf-8"), parse_constant=_refuse_constant)
    except ProtocolError:
        raise
    except RecursionError as exc:
        raise ProtocolError("JSON nested too deeply") from exc
    except ValueError as exc:  # bad UTF-8, a BOM, bad JSON, integers too long to convert
        raise ProtocolError(f"not valid UTF-8 JSON ({exc})") from exc
    if not isinstance(body, dict):
        raise ProtocolError("payload must be a JSON object")
    if _depth(body) > MAX_JSON_DEPTH:
        raise ProtocolError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    version = body.get("v")
    if version != VERSION or isinstance(version, bool):
        raise ProtocolError(f"unsupported protocol version {_show(version)}, expected {VERSION}")
    return body


def _refuse_constant(name: str) -> Any:
    raise ProtocolError(f"{name} is not a number the protocol accepts")


def _depth(value: Any, level: int = 1) -> int:
    if level > MAX_JSON_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level)
    return level - 1


def _seq(body: dict[str, Any]) -> int:
    seq = body.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < 2**63:
        raise ProtocolError(f"'seq' must be an integer from 0 to 2^63-1, got {_show(seq)}")
    return seq


def _ts(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolError(f"'{name}' must be integer epoch milliseconds, got {_show(value)}")
    if not MIN_TS_MS <= value < MAX_TS_MS:
        raise ProtocolError(f"'{name}' {value} is outside 2000-01-01..2100-01-01 (epoch ms)")
    return value


def _text(body: dict[str, Any], name: str, limit: int) -> str:
    value = body.get(name, "")
    if not isinstance(value, str) or len(value) > limit:
        raise ProtocolError(f"'{name}' must be a string of at most {limit} characters")
    _storable(value, name)
    return value


def _storable(value: object, where: str) -> None:
    """Refuse text no database can store: NUL characters and unpaired surrogates.

    JSON can carry both (as ``\\u0000`` and ``\\ud800``); PostgreSQL cannot.
    """
    if isinstance(value, str):
        if "\x00" in value:
            raise ProtocolError(f"'{where}' contains a NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ProtocolError(
                f"'{where}' contains an unpaired surrogate (invalid Unicode)"
            ) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _storable(key, where)
            _storable(item, f"{where}.{key}")
    elif isinstance(value, list):
        for item in value:
            _storable(item, where)


def _sample(raw: object, index: int) -> Sample:
    if not isinstance(raw, dict):
        raise ProtocolError(f"sample {index} is not an object")
    metrics = raw.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise ProtocolError(f"sample {index}: 'metrics' must be a non-empty object")
    if len(metrics) > MAX_METRICS_PER_SAMPLE:
        raise ProtocolError(
            f"sample {index}: {len(metrics)} metrics, at most {MAX_METRICS_PER_SAMPLE}"
        )
    clean: dict[str, float] = {}
    for name, value in metrics.items():
        validate_metric_name(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ProtocolError(f"sample {index}: metric {name!r} is not a number")
        value = float(value)
        if not math.isfinite(value) or abs(value) > MAX_ABS_VALUE:
            raise ProtocolError(
                f"sample {index}: metric {name!r} is not finite or beyond ±{MAX_ABS_VALUE:g}"
            )
        clean[name] = value
    return Sample(ts=_ts(raw.get("ts"), f"samples[{index}].ts"), metrics=clean)


def _show(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
