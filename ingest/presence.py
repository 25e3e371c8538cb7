"""Device presence: what a status message changes in the registry, and when telemetry was last seen.

A status message is a full snapshot of what the device says about itself, so the
newest one wins, in a batch and against what the registry holds (``status_order``
says which is newest). Telemetry only moves ``last_seen`` forward; those updates
are gathered per device and written now and then, never one SQL write per message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from edge_agent.protocol import Status
from ingest.batcher import StatusItem

# Device-reported extras kept in ``status_detail``; larger ones are replaced by a note.
MAX_STATUS_DETAIL_BYTES = 4096
# Sorts an offline status after every other status of its connection.
END_OF_SESSION = 2**63

Order = tuple[int, int]


def status_order(state: str, session_ts: object, ts: int) -> Order | None:
    """Where a status stands in its device's history: by connection, then by time.

    The agent reports ``session_ts``, when it opened the connection, in every
    status, and stamps its will (the offline status the broker publishes when
    the connection dies) at that same moment, before the online statuses the
    will ends. So an offline status ends its own connection whatever its ``ts``,
    and any status of a later connection wins over it, however late or often it
    is delivered or replayed. A status without ``session_ts`` cannot be placed
    (None): it is taken in the order it arrives, as before the agent said.
    """
    if type(session_ts) is not int:
        return None
    return session_ts, END_OF_SESSION if state == "offline" else ts


def stored_order(state: str | None, detail: dict[str, Any] | None) -> Order | None:
    """The order of the status a device's row holds, or None if it cannot be placed."""
    if not detail or type(detail.get("status_ts")) is not int:
        return None
    return status_order(state or "", detail.get("session_ts"), detail["status_ts"])


def supersedes(new: Order | None, held: Order | None) -> bool:
    """Whether a status replaces the one held: unless both can be placed and it is older."""
    return new is None or held is None or new >= held


@dataclass(frozen=True, slots=True)
class PresenceUpdate:
    """The registry columns one status message sets."""

    device: str
    online: bool
    state: str
    firmware: str | None  # None leaves the registered firmware unchanged
    seen_ms: int
    detail: dict[str, Any]
    order: Order | None


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
        order=status_order(status.state, status.extra.get("session_ts"), status.ts),
    )


def latest_per_device(items: list[StatusItem]) -> list[PresenceUpdate]:
    """One update per device: its newest status (see ``supersedes``), else the last received."""
    latest: dict[str, PresenceUpdate] = {}
    for item in items:
        update = status_update(item)
        held = latest.get(item.device)
        if held is None or supersedes(update.order, held.order):
            latest[item.device] = update
    return list(latest.values())


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
