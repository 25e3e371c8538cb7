"""Reconnect delays: exponential with jitter, so a fleet does not reconnect in lockstep.

When a broker restarts, thousands of devices notice at the same moment. With
"full jitter" each waits a random time up to an exponentially growing cap, which
spreads their reconnects out instead of hammering the broker in waves.
"""

from __future__ import annotations

import random


class Backoff:
    """Delay before the next reconnect attempt; ``reset()`` after a good connection."""

    def __init__(self, initial_s: float = 1.0, maximum_s: float = 60.0, factor: float = 2.0,
                 rng: random.Random | None = None) -> None:
        if initial_s <= 0 or maximum_s < initial_s or factor < 1:
            raise ValueError("backoff needs 0 < initial <= maximum and factor >= 1")
        self.initial_s = initial_s
        self.maximum_s = maximum_s
        self.factor = factor
        self.attempts = 0
        self._rng = rng or random.Random()

    def ceiling(self) -> float:
        """The cap for the current attempt, before jitter."""
        return min(self.maximum_s, self.initial_s * self.factor ** min(self.attempts, 64))

    def next_delay(self) -> float:
        """Half the cap plus a random part up to the other half: never zero, never above it."""
        cap = self.ceiling()
        self.attempts += 1
        return cap / 2 + self._rng.uniform(0, cap / 2)

    def reset(self) -> None:
        self.attempts = 0
