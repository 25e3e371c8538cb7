"""The outbox on its own: order, seq, batching limits, bounds, restarts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_agent import protocol
from edge_agent.outbox import Outbox, OutboxError

TS = 1_760_000_000_000


def samples(device: str, n: int, start: int = 0) -> list[tuple[str, int, dict[str, float]]]:
    return [(device, TS + (start + i) * 1000, {"value": float(start + i)}) for i in range(n)]


def values(messages: list) -> list[float]:
    return [s.metrics["value"] for m in messages
            for s in protocol.decode_telemetry(m.payload).samples]


def test_messages_keep_order_and_seq_survives_reopening(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.add_samples(samples("d1", 5))
    first = box.messages({"d1": (-1, 10)})["d1"]
    assert [m.seq for m in first] == [0]
    assert values(first) == [0, 1, 2, 3, 4]
    box.ack([("d1", 0)])
    box.add_samples(samples("d1", 3, start=5))
    box.close()

    box = Outbox(tmp_path / "o.db")
    assert box.depth("d1") == 3
    again = box.messages({"d1": (-1, 10)})["d1"]
    assert [m.seq for m in again] == [1] and values(again) == [5, 6, 7]


def test_unacknowledged_message_is_resent_with_same_seq_and_bytes(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.add_samples(samples("d1", 4))
    sent = box.messages({"d1": (-1, 1)})["d1"][0]
    box.close()  # as if the process died before the PUBACK
    box = Outbox(tmp_path / "o.db")
    resent = box.messages({"d1": (-1, 1)})["d1"][0]
    assert (resent.seq, resent.payload) == (sent.seq, sent.payload)
    box.ack([("d1", sent.seq)])
    assert box.depth("d1") == 0
    assert box.ack([("d1", sent.seq)]) == 0  # a duplicate PUBACK changes nothing


def test_batches_respect_sample_and_byte_limits(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_samples_per_message=100, max_payload_bytes=2000)
    box.add_samples(samples("d1", 450))
    msgs = box.messages({"d1": (-1, 100)})["d1"]
    assert all(len(m.payload) <= 2000 for m in msgs)
    assert all(len(protocol.decode_telemetry(m.payload).samples) <= 100 for m in msgs)
    assert values(msgs) == [float(i) for i in range(450)]
    assert [m.seq for m in msgs] == list(range(len(msgs)))
    big = Outbox(tmp_path / "big.db")
    big.add_samples(samples("d1", 2500))
    full = big.messages({"d1": (-1, 10)})["d1"]
    assert [len(protocol.decode_telemetry(m.payload).samples) for m in full] == [1000, 1000, 500]


def test_events_travel_in_order_between_samples(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.add_samples(samples("d1", 2))
    box.add_event("d1", TS + 1500, "E-042", "critical", "occlusion")
    box.add_samples(samples("d1", 2, start=2))
    msgs = box.messages({"d1": (-1, 10)})["d1"]
    assert [m.kind for m in msgs] == ["telemetry", "events", "telemetry"]
    event = protocol.decode_event(msgs[1].payload)
    assert (event.seq, event.code, event.ts) == (1, "E-042", TS + 1500)


def test_window_limits_and_cursor(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_samples_per_message=1)
    box.add_samples(samples("d1", 5))
    assert [m.seq for m in box.messages({"d1": (-1, 2)})["d1"]] == [0, 1]
    assert [m.seq for m in box.messages({"d1": (1, 2)})["d1"]] == [2, 3]
    assert [m.seq for m in box.messages({"d1": (-1, 10)})["d1"]] == [0, 1, 2, 3, 4]


def test_bound_drops_oldest_and_counts_exactly(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_entries=100)
    box.add_samples(samples("d1", 60))
    box.add_samples(samples("d1", 70, start=60))
    box.add_samples(samples("other", 10))
    assert box.depth("d1") == 100 and box.dropped("d1") == 30
    assert box.dropped("other") == 0
    box.close()
    box = Outbox(tmp_path / "o.db", max_entries=100)
    assert box.dropped("d1") == 30  # the count is persistent, for the status message
    kept = values(box.messages({"d1": (-1, 10)})["d1"])
    assert kept == [float(i) for i in range(30, 130)]


def test_age_bound_counts_what_it_drops(tmp_path: Path) -> None:
    clock = [1000.0]
    box = Outbox(tmp_path / "o.db", max_age_s=60, wall=lambda: clock[0])
    box.add_samples(samples("d1", 5))
    clock[0] += 30
    box.add_samples(samples("d1", 3, start=5))
    clock[0] += 40
    assert box.expire() == {"d1": 5}
    assert box.dropped("d1") == 5 and box.depth("d1") == 3


@pytest.mark.parametrize("bad", [
    ("bad device!", TS, {"v": 1.0}),
    ("d1", TS, {"9lives": 1.0}),
    ("d1", TS, {"v": float("nan")}),
    ("d1", TS, {"v": "1"}),
    ("d1", TS, {"v": True}),
    ("d1", 12, {"v": 1.0}),
    ("d1", TS, {}),
])
def test_bad_sample_refused_and_nothing_written(tmp_path: Path, bad: tuple) -> None:
    box = Outbox(tmp_path / "o.db")
    with pytest.raises(OutboxError):
        box.add_samples([*samples("d1", 3), bad])
    assert box.depth("d1") == 0
    assert box.messages({"d1": (-1, 5)}) == {}


def test_bad_event_refused(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    with pytest.raises(OutboxError, match="severity"):
        box.add_event("d1", TS, "E-1", "apocalyptic")
    assert box.depth("d1") == 0


def test_history_goes_straight_into_full_messages(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.add_samples(samples("d1", 2))
    n = box.add_history("d1", [(TS + i, {"value": float(i)}) for i in range(2500)])
    assert n == 2500 and box.depth("d1") == 2502
    msgs = box.messages({"d1": (-1, 10)})["d1"]
    sizes = [len(protocol.decode_telemetry(m.payload).samples) for m in msgs]
    assert sizes == [1000, 1000, 500, 2]
    assert [m.seq for m in msgs] == [0, 1, 2, 3]
    assert json.loads(msgs[0].payload)["samples"][0]["ts"] == TS
