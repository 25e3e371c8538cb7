"""Which sequence numbers of each device's stream were seen lately, in memory fixed per device.

Redelivery and outbox replay repeat messages; the stores make a repeat harmless
(point identity, the unique (device, seq) of events), and this memory only saves
the work of writing it again. A device numbers its messages in order (the edge
agent's outbox), so per stream (a device's telemetry, or its events) it keeps the
highest number seen and one bit for each of the ``span`` numbers below it. A
number further below than that is let through: written again, harmlessly.

The memory grows with the devices, not with the traffic: about 0.6 KiB a
stream at the default span. The window of recent (kind, device, seq) keys it
replaced held 100,000 keys in about 32 MiB, filled at a fleet's message rate:
in `vigil bench soak` (1,000 devices, two workers) each worker's resident
memory climbed for the first 17 minutes, and then covered 100 messages of a
device; this covers 4,096.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable


class RecentSequences:
    """Per stream, the sequence numbers seen among the ``span`` below its highest.

    At most ``max_streams`` streams are remembered; the one unheard of longest is
    forgotten first, so a burst of new device ids cannot grow it without bound.
    """

    def __init__(self, span: int = 4096, max_streams: int = 100_000) -> None:
        if span < 1:
            raise ValueError(f"span must be at least 1, got {span}")
        if max_streams < 1:
            raise ValueError(f"max_streams must be at least 1, got {max_streams}")
        self.span = span
        self.max_streams = max_streams
        self._full = (1 << span) - 1
        # stream -> [highest seq, bits]: bit i set when seq ``highest - i`` was seen.
        self._streams: OrderedDict[Hashable, list[int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._streams)

    def add(self, stream: Hashable, seq: int) -> bool:
        """Remember ``seq`` of ``stream``; False when it was seen already (a repeat)."""
        entry = self._streams.get(stream)
        if entry is None:
            self._streams[stream] = [seq, 1]
            if len(self._streams) > self.max_streams:
                self._streams.popitem(last=False)
            return True
        self._streams.move_to_end(stream)
        top, bits = entry
        if seq > top:
            shift = seq - top
            entry[0] = seq
            entry[1] = ((bits << shift) | 1) & self._full if shift < self.span else 1
            return True
        below = top - seq
        if below >= self.span:
            return True  # too old to tell: written again, which the stores make harmless
        if bits >> below & 1:
            return False
        entry[1] = bits | 1 << below
        return True
