"""Deciding whether one received message is accepted or dead-lettered, and why.

The protocol module checks the schema; this module adds what only the platform
can judge: whether the device is registered, whether its clock runs ahead of
ours, and whether the payload was too large to even parse. Pure functions over
plain values, so every rule is tested without a broker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from edge_agent.protocol import (
    MAX_PAYLOAD_BYTES,
    Event,
    ProtocolError,
    Status,
    Telemetry,
    check_clock,
    decode_event,
    decode_status,
    decode_telemetry,
    parse_topic,
)


class RejectReason(StrEnum):
    """Coarse classes of rejection, used as a metric label (the full reason is stored)."""

    TOPIC = "topic"
    OVERSIZE = "oversize"
    SCHEMA = "schema"
    UNKNOWN_DEVICE = "unknown_device"
    CLOCK = "clock"
    STORE = "store"


class Rejected(Exception):
    """A message that must be dead-lettered; ``reason`` is readable by a person."""

    def __init__(self, kind: RejectReason, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Accepted:
    device: str
    kind: str  # "telemetry", "status" or "events"
    message: Telemetry | Status | Event


DECODERS: dict[str, Callable[[bytes], Telemetry | Status | Event]] = {
    "telemetry": decode_telemetry,
    "status": decode_status,
    "events": decode_event,
}


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
) -> Accepted:
    """Decode and judge one message; raises ``Rejected`` with the reason when it is refused.

    ``size`` is the payload's size on the wire, which may exceed ``len(payload)``
    when the receiver already cut an oversize payload short to save memory.
    """
    try:
        device, kind = parse_topic(topic)
    except ProtocolError as exc:
        raise Rejected(RejectReason.TOPIC, str(exc)) from None
    decoder = DECODERS.get(kind)
    if decoder is None:
        raise Rejected(RejectReason.TOPIC, f"ingest does not take {kind!r} messages")
    if size > rules.max_payload_bytes:
        raise Rejected(RejectReason.OVERSIZE,
                       f"payload of {size} bytes, at most {rules.max_payload_bytes}")
    try:
        message = decoder(payload)
    except ProtocolError as exc:
        raise Rejected(RejectReason.SCHEMA, str(exc)) from None
    if not is_known(device):
        raise Rejected(RejectReason.UNKNOWN_DEVICE, f"device {device!r} is not registered")
    check_timestamps(message, now_ms, rules.max_clock_skew_ms)
    return Accepted(device=device, kind=kind, message=message)


def check_timestamps(message: Telemetry | Status | Event, now_ms: int, max_skew_ms: int) -> None:
    """Refuse a message stamped further in the future than the allowed clock skew."""
    if isinstance(message, Telemetry):
        newest = max(sample.ts for sample in message.samples)
    else:
        newest = message.ts
    if not check_clock(newest, now_ms, max_skew_ms=max_skew_ms):
        ahead_s = (newest - now_ms) / 1000
        raise Rejected(RejectReason.CLOCK,
                       f"timestamp {newest} is {ahead_s:.0f} s ahead of the platform clock "
                       f"(at most {max_skew_ms / 1000:.0f} s allowed)")
