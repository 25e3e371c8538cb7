"""The hand-over between the MQTT network thread and the worker, bounded in count and bytes.

The network thread only appends here, so MQTT callbacks stay quick. Its size is
normally bounded by the broker itself: with manual acknowledgement the broker
sends at most Receive Maximum unacknowledged messages. The byte limit is a last
resort against a flood of large payloads: the network thread then waits, and
TCP pushes back to the broker.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Inbound:
    """One received message, as the network thread saw it."""

    mid: int
    epoch: int
    topic: str
    payload: bytes
    size: int  # on the wire; ``payload`` may have been cut short
    received_at: float  # monotonic seconds
    received_ms: int  # wall clock, epoch milliseconds


class Inbox:
    """One producer (the network thread), one consumer (the worker).

    Appending is lock-free in the common case: a deque is safe to append to and
    pop from in different threads, and each byte counter has a single writer.
    The condition is only taken to wake a waiting side.
    """

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("an inbox must hold at least one message and one byte")
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._items: deque[Inbound] = deque()
        self._bytes_in = 0  # written by the producer only
        self._bytes_out = 0  # written by the consumer only
        self._cond = threading.Condition()
        self._consumer_waiting = False
        self._producer_waiting = False
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def producer_waiting(self) -> bool:
        """Whether the network thread waits for room: the inbox is pushing back."""
        return self._producer_waiting

    @property
    def bytes(self) -> int:
        return self._bytes_in - self._bytes_out

    @property
    def fill(self) -> float:
        """The fuller of the two limits, as a fraction."""
        return max(len(self._items) / self.max_messages, self.bytes / self.max_bytes)

    def _full(self, size: int) -> bool:
        items = self._items
        return bool(items) and (
            len(items) >= self.max_messages or self.bytes + size > self.max_bytes
        )

    def put(self, item: Inbound) -> bool:
        """Append, waiting while the inbox is full; False if it was closed."""
        size = len(item.payload)
        if self._closed:
            return False
        if self._full(size):
            with self._cond:
                self._producer_waiting = True
                while self._full(size) and not self._closed:
                    self._cond.wait(0.5)
                self._producer_waiting = False
            if self._closed:
                return False
        self._items.append(item)
        self._bytes_in += size
        if self._consumer_waiting:
            with self._cond:
                self._cond.notify_all()
        return True

    def take(self, max_items: int, timeout: float) -> list[Inbound]:
        """Up to ``max_items`` of the oldest messages, waiting at most ``timeout`` for the first."""
        items = self._items
        if not items and not self._closed:
            deadline = time.monotonic() + timeout
            with self._cond:
                self._consumer_waiting = True
                try:
                    while not items and not self._closed:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            return []
                        self._cond.wait(remaining)
                finally:
                    self._consumer_waiting = False
        out: list[Inbound] = []
        taken = 0
        for _ in range(min(max_items, len(items))):
            item = items.popleft()
            taken += len(item.payload)
            out.append(item)
        self._bytes_out += taken
        if self._producer_waiting:
            with self._cond:
                self._cond.notify_all()
        return out

    def close(self) -> None:
        """Wake every waiter; later puts are refused."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
