"""Ingest's SQL side on SQLite and PostgreSQL: the dead-letter bound and status ordering."""

from __future__ import annotations

import pytest

from edge_agent.protocol import Status
from ingest.batcher import DeadLetterItem, StatusItem
from ingest.records import IngestRecords
from ingest.validation import RejectReason
from tests.ingest.support import dead_letters, devices, prepare_registry


def letter(i: int) -> DeadLetterItem:
    return DeadLetterItem.of("vigil/v1/dev/x/telemetry", f"payload {i}".encode(), f"bad {i}",
                             RejectReason.SCHEMA, 9)


def test_the_dead_letter_table_keeps_only_the_newest(sql_url: str) -> None:
    prepare_registry(sql_url, [])
    records = IngestRecords.from_url(sql_url, max_dead_letters=10)
    try:
        for start in range(0, 25, 5):  # five batches, as a flood of bad messages would come
            records.write([letter(i) for i in range(start, start + 5)], [], [])
            assert len(dead_letters(sql_url)) == min(start + 5, 10)
    finally:
        records.close()
    kept = sorted(dead_letters(sql_url), key=lambda d: d.id)
    assert [d.reason for d in kept] == [f"bad {i}" for i in range(15, 25)]


def test_without_a_bound_every_dead_letter_is_kept(sql_url: str) -> None:
    prepare_registry(sql_url, [])
    records = IngestRecords.from_url(sql_url)
    try:
        records.write([letter(i) for i in range(30)], [], [])
    finally:
        records.close()
    assert len(dead_letters(sql_url)) == 30


def test_a_bound_below_one_is_refused(sql_url: str) -> None:
    with pytest.raises(ValueError, match="max_dead_letters"):
        IngestRecords.from_url(sql_url, max_dead_letters=0)


def status(state: str, ts: int, session_ts: int | None) -> StatusItem:
    extra = {} if session_ts is None else {"session_ts": session_ts}
    return StatusItem("pump-1", Status(state=state, ts=ts, extra=extra), ts + 5)


def test_a_late_or_replayed_status_never_overrides_a_newer_one(sql_url: str) -> None:
    prepare_registry(sql_url, ["pump-1"])
    t1 = 1_764_000_000_000
    records = IngestRecords.from_url(sql_url)

    def state_after(item: StatusItem) -> str | None:
        records.write([], [item], [])
        return devices(sql_url)["pump-1"].state

    try:
        assert state_after(status("online", t1, t1)) == "online"
        assert state_after(status("online", t1 + 60_000, t1)) == "online"
        # The connection's own will, stamped when it opened, ends it.
        assert state_after(status("offline", t1, t1)) == "offline"
        t2 = t1 + 120_000
        assert state_after(status("online", t2, t2)) == "online"
        # The first connection's will again (a retained copy, a redelivery): too old.
        assert state_after(status("offline", t1, t1)) == "online"
        # A device clock in 2001.
        assert state_after(status("offline", 978_307_200_000, 978_307_200_000)) == "online"
        assert devices(sql_url)["pump-1"].status_detail["session_ts"] == t2
        # A status that does not say its connection is taken as it comes.
        assert state_after(status("maintenance", t1, None)) == "maintenance"
    finally:
        records.close()
