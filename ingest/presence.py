"""Device presence: what a status message changes in the registry, and when telemetry was last seen.

A status message is a full snapshot of what the device says about itself, so the
newest one of a batch wins. Telemetry only moves ``last_seen`` forward; those
updates are gathered per device and written now and then, never one SQL write
per message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from edge_agent.protocol import Status
from ingest.batcher import StatusItem

# Device-reported extras kept in ``status_detail``; larger ones are replaced by a note.
MAX_STATUS_DETAIL_BYTES = 4096


@dataclass(frozen=True, slots=True)
class PresenceUpdate:
    """The registry columns one status message sets."""

    device: str
    online: bool
    state: str
    firmware: str | None  # None leaves the registered firmware unchanged
    seen_ms: int
    detail: dict[str, Any]


def status_update(item: StatusItem) -> PresenceUpdate:
    status: Status = item.status
    detail: dict[str, Any] = dict(status.extra)
    if len(json.dumps(detail, default=str)) > MAX_STATUS_DETAIL_BYTES:
        detail = {"note": f"device sent more than {MAX_STATUS_DETAIL_BYTES} bytes of status detail"}
    if status.model:
        detail["reported_model"] = status.model
    detail["status_ts"] = status.ts
    return PresenceUpdate(
        device=item.device,
        online=status.state != "offline",
        state=status.state,
        firmware=status.fw or None,
        seen_ms=item.received_ms,
        detail=detail,
    )


def latest_per_device(items: list[StatusItem]) -> list[PresenceUpdate]:
    """One update per device: the last status received wins (messages arrive in order)."""
    last: dict[str, StatusItem] = {}
    for item in items:
        last[item.device] = item
    return [status_update(item) for item in last.values()]


class LastSeen:
    """The newest receipt time per device since the last drain."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def record(self, device: str, ms: int) -> None:
        if ms > self._seen.get(device, 0):
            self._seen[device] = ms

    def drain(self) -> dict[str, int]:
        seen, self._seen = self._seen, {}
        return seen
