"""Carries outbox messages over the links and hands acknowledgements back to the outbox.

Per device a window of messages may be in flight; a message leaves the outbox
only when its PUBACK arrives. After a reconnect paho resends what was in flight
in this process; after a restart everything still in the outbox is sent again
from the oldest, with the ``seq`` it was formed with.
"""

from __future__ import annotations

from edge_agent.outbox import Outbox
from edge_agent.transport import Link


class Courier:
    """Moves messages for a set of devices from one outbox to their links."""

    def __init__(self, outbox: Outbox, *, window: int = 8) -> None:
        self.outbox = outbox
        self.window = max(1, window)
        self.links: dict[str, Link] = {}
        self._cursor: dict[str, int] = {}
        self._in_flight: dict[str, dict[int, int]] = {}
        self._acks: list[tuple[str, int]] = []
        self.sent = 0
        self.acked = 0

    def attach(self, link: Link) -> None:
        self.links[link.device_id] = link
        self._cursor[link.device_id] = -1
        self._in_flight[link.device_id] = {}

    def in_flight(self, device: str) -> int:
        return len(self._in_flight.get(device, {}))

    def ack(self, device: str, seq: int) -> None:
        self._acks.append((device, seq))
        self._in_flight[device].pop(seq, None)

    def refused(self, device: str, seq: int) -> None:
        """The broker refused a message: send it (and what followed) again later."""
        self._in_flight[device].pop(seq, None)
        self._cursor[device] = min(self._cursor[device], seq - 1)

    def pump(self) -> int:
        """Commit acknowledgements, then fill every connected device's window; returns sends."""
        if self._acks:
            self.acked += len(self._acks)
            self.outbox.ack(self._acks)
            self._acks = []
        limits: dict[str, tuple[int, int]] = {}
        for device, link in self.links.items():
            if not link.connected:
                continue
            flying = self._in_flight[device]
            room = self.window - len(flying)
            if room > 0 and self.outbox.depth(device) > sum(flying.values()):
                limits[device] = (self._cursor[device], room)
        if not limits:
            return 0
        sent = 0
        for device, messages in self.outbox.messages(limits).items():
            link = self.links[device]
            for m in messages:
                link.publish(m.kind, m.payload, seq=m.seq)
                self._in_flight[device][m.seq] = m.entries
                self._cursor[device] = m.seq
                sent += 1
        self.sent += sent
        return sent
