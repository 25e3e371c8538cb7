"""Ingest's SQL side on SQLite and PostgreSQL: the dead-letter bound and status ordering."""

from __future__ import annotations

import pytest

from ingest.batcher import DeadLetterItem
from ingest.records import IngestRecords
from ingest.validation import RejectReason
from tests.ingest.support import dead_letters, prepare_registry


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
