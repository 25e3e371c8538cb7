"""The registered devices, cached so no message costs a SQL query.

The cache is reloaded now and then, and early when a message names a device it
does not know (at most once per ``miss_refresh_s``, so a flood of unknown ids
cannot hammer the database). A failed reload keeps the previous set.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeviceTags:
    """What a device's telemetry points are tagged with."""

    model: str
    site: str


class KnownDevices:
    def __init__(
        self,
        load: Callable[[], dict[str, DeviceTags]],
        *,
        refresh_s: float = 30.0,
        miss_refresh_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self.refresh_s = refresh_s
        self.miss_refresh_s = miss_refresh_s
        self._clock = clock
        self._devices: dict[str, DeviceTags] = {}
        self._loaded_at: float | None = None
        self.loads = 0

    def __len__(self) -> int:
        return len(self._devices)

    @property
    def loaded(self) -> bool:
        return self._loaded_at is not None

    def refresh(self) -> bool:
        """Reload the set; False (keeping the old set) when the database cannot be read."""
        try:
            devices = self._load()
        except Exception as exc:  # the database may be down; keep serving the set we have
            log.warning("device registry reload failed", extra={"error": str(exc)[:300]})
            if self._loaded_at is not None:
                # Try again no sooner than a miss would allow, not on every message.
                self._loaded_at = self._clock() - self.refresh_s + self.miss_refresh_s
            return False
        self._devices = devices
        self._loaded_at = self._clock()
        self.loads += 1
        return True

    def maybe_refresh(self) -> None:
        """Reload when the set is older than ``refresh_s``."""
        if self._loaded_at is None or self._clock() - self._loaded_at >= self.refresh_s:
            self.refresh()

    def get(self, device: str) -> DeviceTags | None:
        tags = self._devices.get(device)
        if tags is None and (
            self._loaded_at is None or self._clock() - self._loaded_at >= self.miss_refresh_s
        ):
            self.refresh()
            tags = self._devices.get(device)
        return tags

    def is_known(self, device: str) -> bool:
        return self.get(device) is not None
