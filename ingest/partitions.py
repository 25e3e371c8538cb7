"""Which ingest worker keeps which device's messages.

Mosquitto 2.0 does not restore shared subscriptions (``$share/...``) from its
persistence file after a restart, so what devices publish between the broker's
restart and ingest's new SUBSCRIBE would match no subscriber and be dropped,
although the broker acknowledged it. Each ingest worker therefore holds a
persistent session with plain subscriptions, which the broker does restore and
queues for while the worker is away: every worker receives every report and
keeps those of the devices in its partition, acknowledging the rest at once.

A device's partition depends on its id and the number of partitions only
(CRC-32, the same on every host and Python run), so each message is kept by
exactly one worker.
"""

from __future__ import annotations

import zlib

from edge_agent.protocol import TOPIC_ROOT


def partition_of(device_id: str, partitions: int) -> int:
    """The partition (0 .. partitions-1) that keeps ``device_id``'s messages."""
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    return zlib.crc32(device_id.encode()) % partitions


def keeps(topic: str, partition: int, partitions: int) -> bool:
    """Whether worker ``partition`` keeps a message on ``topic``.

    A topic that names no device (the broker passed on something malformed)
    belongs to partition 0, which dead-letters it; the others drop it.
    """
    if partitions == 1:
        return True
    prefix = TOPIC_ROOT + "/"
    device_id, sep, _ = topic.removeprefix(prefix).partition("/")
    if not topic.startswith(prefix) or not sep or not device_id:
        return partition == 0
    return partition_of(device_id, partitions) == partition
