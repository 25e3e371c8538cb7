"""Deciding whether one received message is accepted or dead-lettered, and why.

The protocol module checks the schema; this module adds what only the platform
can judge: whether the device is registered, whether its clock runs ahead of
ours, and whether the payload was too large to even parse. Pure functions over
plain values, so every rule is tested without a broker.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from edge_agent.protocol import (
    MAX_ABS_VALUE,
    MAX_METRICS_PER_SAMPLE,
    MAX_PAYLOAD_BYTES,
    MAX_SAMPLES_PER_MESSAGE,
    MAX_TS_MS,
    MIN_TS_MS,
    REPORTS,
    VERSION,
    Event,
    Kind,
    ProtocolError,
    Sample,
    Status,
    Telemetry,
    check_clock,
    parse_topic,
    validate_metric_name,
)
from ingest import IngestError
from vigil.telemetry.store import TelemetryError, check_metric_names


class RejectReason(StrEnum):
    """Coarse classes of rejection, used as a metric label (the full reason is stored)."""

    TOPIC = "topic"
    OVERSIZE = "oversize"
    SCHEMA = "schema"
    UNKNOWN_DEVICE = "unknown_device"
    CLOCK = "clock"
    STORE = "store"
    INTERNAL = "internal"


class Rejected(IngestError):
    """A message that must be dead-lettered; ``reason`` is readable by a person."""

    def __init__(self, kind: RejectReason, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Accepted:
    device: str
    kind: Kind  # one of protocol.REPORTS
    message: Telemetry | Status | Event


@dataclass(frozen=True, slots=True)
class Rules:
    """The limits beyond the protocol schema."""

    max_payload_bytes: int = MAX_PAYLOAD_BYTES
    max_clock_skew_ms: int = 5 * 60_000


def check_message(
    topic: str,
    payload: bytes,
    *,
    size: int,
    now_ms: int,
    is_known: Callable[[str], bool],
    rules: Rules = Rules(),
    fast: FastTelemetry | None = None,
) -> Accepted:
    """Decode and judge one message; raises ``Rejected`` with the reason when it is refused.

    ``size`` is the payload's size on the wire, which may exceed ``len(payload)``
    when the receiver already cut an oversize payload short to save memory.
    """
    try:
        device, kind = parse_topic(topic)
    except ProtocolError as exc:
        raise Rejected(RejectReason.TOPIC, str(exc)) from None
    decoder = REPORTS.get(kind)
    if decoder is None:
        raise Rejected(RejectReason.TOPIC, f"ingest does not take {kind!r} messages")
    if size > rules.max_payload_bytes:
        raise Rejected(
            RejectReason.OVERSIZE, f"payload of {size} bytes, at most {rules.max_payload_bytes}"
        )
    try:
        message = (
            fast.decode(payload) if fast is not None and kind == "telemetry" else None
        ) or decoder(payload)
    except ProtocolError as exc:
        raise Rejected(RejectReason.SCHEMA, str(exc)) from None
    except (ArithmeticError, ValueError, TypeError, RecursionError) as exc:
        # A decoder gap (say, an integer too large for a float) must not become a poison
        # message that stops the pipeline on every redelivery.
        raise Rejected(
            RejectReason.SCHEMA, f"undecodable payload ({type(exc).__name__}: {exc})"
        ) from None
    if not is_known(device):
        raise Rejected(RejectReason.UNKNOWN_DEVICE, f"device {device!r} is not registered")
    check_timestamps(message, now_ms, rules.max_clock_skew_ms)
    if isinstance(message, Telemetry):
        check_storable_names(message)
    return Accepted(device=device, kind=kind, message=message)


def check_storable_names(message: Telemetry) -> None:
    """Refuse the names the telemetry store reserves, which the wire protocol alone allows."""
    try:
        for sample in message.samples:
            check_metric_names(sample.metrics)
    except TelemetryError as exc:
        raise Rejected(RejectReason.SCHEMA, str(exc)) from None


def check_timestamps(message: Telemetry | Status | Event, now_ms: int, max_skew_ms: int) -> None:
    """Refuse a message stamped further in the future than the allowed clock skew."""
    if isinstance(message, Telemetry):
        newest = max(sample.ts for sample in message.samples)
    else:
        newest = message.ts
    if not check_clock(newest, now_ms, max_skew_ms=max_skew_ms):
        ahead_s = (newest - now_ms) / 1000
        raise Rejected(
            RejectReason.CLOCK,
            f"timestamp {newest} is {ahead_s:.0f} s ahead of the platform clock "
            f"(at most {max_skew_ms / 1000:.0f} s allowed)",
        )


_BODY_KEYS = frozenset({"v", "seq", "samples"})
_SAMPLE_KEYS = frozenset({"ts", "metrics"})


def _refuse(name: str) -> Any:
    raise ValueError(name)


class FastTelemetry:
    """The common, well-formed telemetry message decoded in one pass, or None.

    Accepts only what ``decode_telemetry`` accepts, with the same result, but
    checks each metric name's pattern once (then remembers it) and judges values
    by type and range without conversions. Anything unusual (extra keys, odd
    types, a name never seen) returns None, and the protocol's decoder has the
    final word and gives the reason. Tests hold the two to the same answers.
    """

    def __init__(self, max_names: int = 10_000) -> None:
        self.max_names = max_names
        self._names: set[str] = set()

    def _learn(self, name: object) -> bool:
        try:
            validate_metric_name(name)
        except ProtocolError:
            return False
        if len(self._names) < self.max_names:
            self._names.add(name)  # type: ignore[arg-type]
        return True

    def decode(self, payload: bytes) -> Telemetry | None:
        if len(payload) > MAX_PAYLOAD_BYTES:
            return None
        try:
            body = json.loads(payload.decode("utf-8"), parse_constant=_refuse)
        except (ValueError, RecursionError):
            return None
        if type(body) is not dict or body.keys() - _BODY_KEYS:
            return None
        version, seq, samples = body.get("v"), body.get("seq"), body.get("samples")
        if type(version) is not int or version != VERSION:
            return None
        if type(seq) is not int or not 0 <= seq < 2**63:
            return None
        if type(samples) is not list or not 0 < len(samples) <= MAX_SAMPLES_PER_MESSAGE:
            return None
        names = self._names
        decoded: list[Sample] = []
        for raw in samples:
            if type(raw) is not dict or raw.keys() - _SAMPLE_KEYS:
                return None
            ts, metrics = raw.get("ts"), raw.get("metrics")
            if type(ts) is not int or not MIN_TS_MS <= ts < MAX_TS_MS:
                return None
            if type(metrics) is not dict or not 0 < len(metrics) <= MAX_METRICS_PER_SAMPLE:
                return None
            clean: dict[str, float] = {}
            for name, value in metrics.items():
                if name not in names and not self._learn(name):
                    return None
                kind = type(value)
                # NaN fails every comparison, so the range test refuses it too.
                if (
                    kind is not float and kind is not int
                ) or not -MAX_ABS_VALUE <= value <= MAX_ABS_VALUE:
                    return None
                clean[name] = float(value)
            decoded.append(Sample(ts=ts, metrics=clean))
        return Telemetry(seq=seq, samples=tuple(decoded))
