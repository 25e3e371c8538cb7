"""What goes into one durable write, and when it is time to write it.

A batch gathers the points of many messages, the dead letters, status changes
and events that arrived with them, and the broker packet ids to acknowledge
once all of it is durable. It is written when it is big enough or old enough,
whichever comes first: big batches for throughput, a time limit for latency.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_agent.protocol import Event, Status
from ingest.validation import RejectReason
from vigil.db.models import DEAD_LETTER_PAYLOAD_CHARS
from vigil.telemetry.store import Point

# Bytes of a refused payload kept in memory until its dead letter is written: the
# table keeps characters, and a character takes at most 4 bytes of UTF-8.
DEAD_LETTER_KEEP_BYTES = 4 * DEAD_LETTER_PAYLOAD_CHARS


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """Size and time limits of a batch."""

    max_samples: int = 5000
    max_messages: int = 5000
    max_age_s: float = 0.5

    def __post_init__(self) -> None:
        if self.max_samples < 1 or self.max_messages < 1:
            raise ValueError("a batch must be allowed at least one sample and one message")
        if self.max_age_s <= 0:
            raise ValueError(f"max_age_s must be positive, got {self.max_age_s}")

    def due(self, samples: int, messages: int, age_s: float) -> bool:
        """Whether a batch holding this much, opened ``age_s`` ago, should be written now."""
        if messages == 0:
            return False
        return (
            samples >= self.max_samples or messages >= self.max_messages or age_s >= self.max_age_s
        )

    def wait_s(self, messages: int, age_s: float) -> float:
        """How long to wait for more input before the batch falls due by age."""
        if messages == 0:
            return self.max_age_s
        return max(0.0, self.max_age_s - age_s)


@dataclass(frozen=True, slots=True)
class DeadLetterItem:
    topic: str
    payload: bytes  # possibly already cut short; ``size`` is the size on the wire
    size: int
    reason: str
    kind: RejectReason

    @classmethod
    def of(
        cls, topic: str, payload: bytes, reason: str, kind: RejectReason, size: int = 0
    ) -> DeadLetterItem:
        """A dead letter holding no more of the payload than its table keeps.

        ``size`` is the payload's size on the wire (0 for what ingest rebuilt
        from a point or a status rather than received).
        """
        return cls(topic, payload[:DEAD_LETTER_KEEP_BYTES], size, reason, kind)


@dataclass(frozen=True, slots=True)
class StatusItem:
    device: str
    status: Status
    received_ms: int


@dataclass(frozen=True, slots=True)
class EventItem:
    device: str
    event: Event


@dataclass(slots=True)
class Batch:
    """Everything to make durable together, and the packets to acknowledge afterwards."""

    opened_at: float  # monotonic seconds
    points: list[Point] = field(default_factory=list)
    dead_letters: list[DeadLetterItem] = field(default_factory=list)
    statuses: list[StatusItem] = field(default_factory=list)
    events: list[EventItem] = field(default_factory=list)
    # (packet id, connection epoch) of every message in the batch, in arrival order
    acks: list[tuple[int, int]] = field(default_factory=list)
    messages: int = 0
    oldest_received: float | None = None  # monotonic seconds

    @property
    def samples(self) -> int:
        return len(self.points)

    @property
    def has_sql_work(self) -> bool:
        return bool(self.dead_letters or self.statuses or self.events)

    def add_message(self, mid: int, epoch: int, received_at: float) -> None:
        self.messages += 1
        self.acks.append((mid, epoch))
        if self.oldest_received is None:
            self.oldest_received = received_at
