"""Clock sanity: a device clock that is far off is noticed and reported, not trusted blindly.

A device without a working real-time clock battery boots in 1970 or 2000; an
operator may set it wrong; NTP may step it by hours. The guard compares each
sample time with a known-good floor (the agent's release date and the newest
timestamp it has ever sent) and with the monotonic clock, which never jumps:
when wall time and monotonic time disagree by more than a tolerance, the wall
clock was stepped. Suspect samples are still queued (they are real readings)
but counted, and the agent raises a ``CLOCK_SUSPECT`` event once per episode.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

# No sample taken by this agent release can be older than this (2025-01-01 UTC).
RELEASE_FLOOR_MS = 1_735_689_600_000


@dataclass(frozen=True, slots=True)
class Verdict:
    suspect: bool
    reason: str = ""


class ClockGuard:
    """Judges sample timestamps against the floor and the monotonic clock."""

    def __init__(self, *, floor_ms: int = RELEASE_FLOOR_MS, max_jump_ms: int = 120_000,
                 max_backwards_ms: int = 5_000,
                 monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.floor_ms = floor_ms
        self.max_jump_ms = max_jump_ms
        self.max_backwards_ms = max_backwards_ms
        self._monotonic = monotonic
        self._wall = wall
        self._offset_ms = self._current_offset()
        self.newest_ms = 0
        self.suspect_count = 0
        self.in_episode = False
        self.last_reason = ""

    def _current_offset(self) -> int:
        return int(self._wall() * 1000) - int(self._monotonic() * 1000)

    def check(self, ts_ms: int) -> Verdict:
        """Judge one sample time; updates the counters."""
        verdict = self._judge(ts_ms)
        if verdict.suspect:
            self.suspect_count += 1
            self.last_reason = verdict.reason
        else:
            self.newest_ms = max(self.newest_ms, ts_ms)
        return verdict

    def _judge(self, ts_ms: int) -> Verdict:
        if ts_ms < self.floor_ms:
            return Verdict(True, f"timestamp {ts_ms} is before the known-good floor "
                                 f"{self.floor_ms}")
        drift = self._current_offset() - self._offset_ms
        if abs(drift) > self.max_jump_ms:
            return Verdict(True, f"wall clock moved {drift / 1000:+.0f} s against the "
                                 "monotonic clock")
        if self.newest_ms and ts_ms < self.newest_ms - self.max_backwards_ms:
            return Verdict(True, f"timestamp {ts_ms} is {(self.newest_ms - ts_ms) / 1000:.0f} s "
                                 "before one already sent")
        return Verdict(False)

    def episode_started(self, verdict: Verdict) -> bool:
        """True once when suspect samples start, so one event is raised per episode."""
        started = verdict.suspect and not self.in_episode
        self.in_episode = verdict.suspect
        return started

    def accept_current_clock(self) -> None:
        """Take the present wall clock as correct (after an operator fixed it)."""
        self._offset_ms = self._current_offset()
        self.newest_ms = 0
        self.in_episode = False
