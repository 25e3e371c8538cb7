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
    def __init__(self, max_messages: int, max_bytes: int) -> None:
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("an inbox must hold at least one message and one byte")
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._items: deque[Inbound] = deque()
        self._bytes = 0
        self._cond = threading.Condition()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        return self._bytes

    @property
    def fill(self) -> float:
        """The fuller of the two limits, as a fraction."""
        return max(len(self._items) / self.max_messages, self._bytes / self.max_bytes)

    def put(self, item: Inbound) -> bool:
        """Append, waiting while the inbox is full; False if it was closed meanwhile."""
        with self._cond:
            while (self._items and not self._closed
                   and (len(self._items) >= self.max_messages
                        or self._bytes + len(item.payload) > self.max_bytes)):
                self._cond.wait(0.5)
            if self._closed:
                return False
            self._items.append(item)
            self._bytes += len(item.payload)
            self._cond.notify_all()
            return True

    def take(self, max_items: int, timeout: float) -> list[Inbound]:
        """Up to ``max_items`` of the oldest messages, waiting at most ``timeout`` for the first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._items and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._cond.wait(remaining)
            n = min(max_items, len(self._items))
            out = [self._items.popleft() for _ in range(n)]
            self._bytes -= sum(len(item.payload) for item in out)
            self._cond.notify_all()
            return out

    def close(self) -> None:
        """Wake every waiter; later puts are refused."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
