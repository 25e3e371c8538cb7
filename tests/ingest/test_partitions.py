"""Partitions: every device's messages kept by exactly one worker, the same on every host."""

from __future__ import annotations

import zlib
from collections import Counter

import pytest
from pydantic import ValidationError

from edge_agent.protocol import topic
from ingest.partitions import keeps, partition_of
from vigil.config import IngestSettings

DEVICES = [f"dev-{i:05d}" for i in range(1000)]


def test_each_message_is_kept_by_exactly_one_of_the_workers() -> None:
    for partitions in (1, 2, 3, 7):
        for device in DEVICES[:200]:
            for kind in ("telemetry", "status", "events"):
                keepers = [p for p in range(partitions)
                           if keeps(topic(device, kind), p, partitions)]
                assert keepers == [partition_of(device, partitions)]


def test_the_partition_is_crc32_of_the_id_so_every_process_agrees() -> None:
    # Python's own hash() of a str changes from one process to the next; CRC-32 does not.
    assert partition_of("dev-00042", 5) == zlib.crc32(b"dev-00042") % 5
    assert partition_of("pump-7", 1) == 0


def test_partitions_share_a_fleet_evenly() -> None:
    shares = Counter(partition_of(d, 2) for d in DEVICES)
    assert set(shares) == {0, 1}
    assert min(shares.values()) > 0.45 * len(DEVICES)


def test_a_topic_naming_no_device_goes_to_the_first_partition_only() -> None:
    for bad in ("elsewhere/x", "vigil/v1/dev/", "vigil/v1/dev/no-kind", "vigil/v1/dev//telemetry"):
        assert [p for p in range(3) if keeps(bad, p, 3)] == [0], bad


def test_partition_settings_are_checked() -> None:
    assert IngestSettings(partitions=2, partition=1).partition == 1
    with pytest.raises(ValidationError, match="below ingest.partitions"):
        IngestSettings(partitions=2, partition=2)
    with pytest.raises(ValidationError, match="exclude each other"):
        IngestSettings(partitions=2, shared_group="ingest")
    with pytest.raises(ValueError, match="at least 1"):
        partition_of("dev-1", 0)
