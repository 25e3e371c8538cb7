"""Pure parts of ingest: validation beyond the protocol, dedup window, batch policy, presence."""

from __future__ import annotations

import json
import threading
import time

import pytest

from edge_agent.protocol import MAX_PAYLOAD_BYTES, Status, Telemetry
from ingest.batcher import BatchPolicy, StatusItem
from ingest.dedup import RecentSequences
from ingest.inbox import Inbound, Inbox
from ingest.presence import (
    MAX_STATUS_DETAIL_BYTES,
    LastSeen,
    latest_per_device,
    status_order,
    supersedes,
)
from ingest.registry import DeviceTags, KnownDevices
from ingest.validation import Rejected, RejectReason, Rules, check_message
from tests.ingest.support import wait_for

NOW = 1_763_900_000_000
KNOWN = {"pump-1", "mon-2"}


def telemetry(seq: int = 1, ts: int = NOW, **metrics: float) -> bytes:
    return json.dumps(
        {"v": 1, "seq": seq, "samples": [{"ts": ts, "metrics": metrics or {"temp": 21.5}}]}
    ).encode()


DEFAULT_RULES = Rules()


def check(topic: str, payload: bytes, *, size: int | None = None, rules: Rules = DEFAULT_RULES):
    return check_message(
        topic,
        payload,
        size=len(payload) if size is None else size,
        now_ms=NOW,
        is_known=KNOWN.__contains__,
        rules=rules,
    )


def rejection(topic: str, payload: bytes, **kw) -> Rejected:
    with pytest.raises(Rejected) as info:
        check(topic, payload, **kw)
    return info.value


# --- validation ---------------------------------------------------------------


def test_good_telemetry_is_accepted_with_its_device() -> None:
    accepted = check("vigil/v1/dev/pump-1/telemetry", telemetry(7, temp=20.0, flow=1.5))
    assert accepted.device == "pump-1" and accepted.kind == "telemetry"
    assert isinstance(accepted.message, Telemetry)
    assert accepted.message.seq == 7
    assert accepted.message.samples[0].metrics == {"temp": 20.0, "flow": 1.5}


def test_status_and_events_are_accepted() -> None:
    status = check(
        "vigil/v1/dev/mon-2/status", json.dumps({"v": 1, "state": "offline", "ts": NOW}).encode()
    )
    assert isinstance(status.message, Status) and status.message.state == "offline"
    event = check(
        "vigil/v1/dev/mon-2/events",
        json.dumps({"v": 1, "seq": 3, "ts": NOW, "code": "E42", "severity": "error"}).encode(),
    )
    assert event.kind == "events"


def test_unknown_device_is_rejected_with_its_id() -> None:
    r = rejection("vigil/v1/dev/stranger/telemetry", telemetry())
    assert r.kind is RejectReason.UNKNOWN_DEVICE and "stranger" in r.reason


@pytest.mark.parametrize(
    "topic",
    [
        "vigil/v1/dev/pump-1/cmd",  # a kind ingest does not take
        "vigil/v1/dev/pu mp/telemetry",  # not a device id
        "vigil/v1/dev/p\u00fcmp/telemetry",
        "other/pump-1/telemetry",
    ],
)
def test_bad_topics_are_rejected(topic: str) -> None:
    assert rejection(topic, telemetry()).kind is RejectReason.TOPIC


def test_clock_ahead_beyond_skew_is_rejected_but_within_is_accepted() -> None:
    rules = Rules(max_clock_skew_ms=60_000)
    check("vigil/v1/dev/pump-1/telemetry", telemetry(ts=NOW + 59_000), rules=rules)
    r = rejection("vigil/v1/dev/pump-1/telemetry", telemetry(ts=NOW + 61_000), rules=rules)
    assert r.kind is RejectReason.CLOCK and "61 s ahead" in r.reason


def test_one_future_sample_rejects_the_whole_message() -> None:
    body = {
        "v": 1,
        "seq": 1,
        "samples": [{"ts": NOW, "metrics": {"a": 1}}, {"ts": NOW + 3_600_000, "metrics": {"a": 2}}],
    }
    assert (
        rejection("vigil/v1/dev/pump-1/telemetry", json.dumps(body).encode()).kind
        is RejectReason.CLOCK
    )


def test_oversize_is_judged_on_the_wire_size_even_when_cut_short() -> None:
    r = rejection("vigil/v1/dev/pump-1/telemetry", b'{"v":1', size=MAX_PAYLOAD_BYTES + 1)
    assert r.kind is RejectReason.OVERSIZE and str(MAX_PAYLOAD_BYTES + 1) in r.reason


@pytest.mark.parametrize(
    "payload, words",
    [
        (b"\xff\xfe garbage", "UTF-8 JSON"),
        (b'\xef\xbb\xbf{"v":1,"seq":1,"samples":[{"ts":1763900000000,"metrics":{"a":1}}]}',
         "UTF-8 JSON"),
        ('{"v":1,"seq":1,"samples":[{"ts":1763900000000,"metrics":{"a":1}}]}'.encode("utf-16"),
         "UTF-8 JSON"),
        (b"[1,2]", "object"),
        (b'{"v":2,"seq":1,"samples":[]}', "version"),
        (b'{"v":1,"seq":-1,"samples":[{"ts":1763900000000,"metrics":{"a":1}}]}', "seq"),
        (b'{"v":1,"seq":1,"samples":[{"ts":1763900000000,"metrics":{"a":NaN}}]}', "NaN"),
        (b'{"v":1,"seq":1,"samples":[{"ts":1763900000000,"metrics":{"a":1e308}}]}', "finite"),
        (b'{"v":1,"seq":1,"samples":[{"ts":0,"metrics":{"a":1}}]}', "2000-01-01"),
        (b'{"v":1,"seq":1,"samples":[{"ts":7258118400000,"metrics":{"a":1}}]}', "2100-01-01"),
        (
            '{"v":1,"seq":1,"samples":[{"ts":1763900000000,"metrics":{"t\u00e9mp":1}}]}'.encode(),
            "metric name",
        ),
        (b'{"v":1,"seq":"1","samples":[{"ts":1763900000000,"metrics":{"a":1}}]}', "seq"),
        (b"[" * 5000 + b"]" * 5000, "JSON"),
    ],
)
def test_schema_violations_are_rejected_with_a_reason(payload: bytes, words: str) -> None:
    r = rejection("vigil/v1/dev/pump-1/telemetry", payload)
    assert r.kind is RejectReason.SCHEMA
    assert words.lower() in r.reason.lower()


# --- dedup window -------------------------------------------------------------


def test_repeats_of_a_stream_are_spotted_in_any_order() -> None:
    seen = RecentSequences(span=8)
    assert seen.add("a", 5) and seen.add("a", 3) and seen.add("a", 7)
    assert not seen.add("a", 3) and not seen.add("a", 5) and not seen.add("a", 7)
    assert seen.add("a", 4)  # below the highest, not seen yet: new
    assert seen.add("b", 3)  # another stream keeps its own numbers
    assert not seen.add("a", 4)


def test_numbers_too_far_below_the_highest_are_let_through() -> None:
    seen = RecentSequences(span=8)
    assert seen.add("a", 1) and seen.add("a", 9)  # 1 is 8 below 9: outside the span
    assert seen.add("a", 1)  # written again, which the stores make harmless
    assert not seen.add("a", 9) and seen.add("a", 100) and not seen.add("a", 100)
    assert seen.add("a", 9)


def test_memory_is_bounded_by_streams_not_traffic() -> None:
    seen = RecentSequences(span=64, max_streams=100)
    for i in range(50_000):
        seen.add(f"dev-{i % 1000}", i)
    assert len(seen) == 100
    assert not seen.add("dev-999", 49_999)  # the stream heard of last is still known


@pytest.mark.parametrize("bad", [{"span": 0}, {"max_streams": 0}])
def test_recent_sequences_refuse_empty_bounds(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        RecentSequences(**bad)


# --- batch policy -------------------------------------------------------------


def test_batch_is_due_by_samples_messages_or_age() -> None:
    p = BatchPolicy(max_samples=100, max_messages=50, max_age_s=0.5)
    assert not p.due(samples=0, messages=0, age_s=10)  # nothing to write
    assert not p.due(samples=99, messages=49, age_s=0.49)
    assert p.due(samples=100, messages=1, age_s=0)
    assert p.due(samples=1, messages=50, age_s=0)
    assert p.due(samples=1, messages=1, age_s=0.5)


def test_batch_wait_counts_down_from_the_first_message() -> None:
    p = BatchPolicy(max_age_s=0.5)
    assert p.wait_s(messages=0, age_s=3) == 0.5
    assert p.wait_s(messages=3, age_s=0.2) == pytest.approx(0.3)
    assert p.wait_s(messages=3, age_s=2) == 0


def test_batch_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        BatchPolicy(max_samples=0)
    with pytest.raises(ValueError):
        BatchPolicy(max_age_s=0)


# --- presence ---------------------------------------------------------------


def status_item(device: str, state: str, received: int, **extra: object) -> StatusItem:
    return StatusItem(
        device,
        Status(state=state, ts=received - 5, fw="2.1", model="X1", extra=dict(extra)),
        received,
    )


def test_last_status_per_device_wins_and_offline_means_not_online() -> None:
    updates = latest_per_device(
        [
            status_item("a", "online", 1),
            status_item("b", "maintenance", 2),
            status_item("a", "offline", 3, battery=40),
        ]
    )
    by_device = {u.device: u for u in updates}
    assert by_device["a"].state == "offline" and by_device["a"].online is False
    assert by_device["a"].detail == {"battery": 40, "reported_model": "X1", "status_ts": -2}
    assert by_device["b"].online is True and by_device["b"].firmware == "2.1"


def test_a_will_ends_its_own_connection_and_no_later_one() -> None:
    t1 = 1_764_000_000_000
    online = status_order("online", t1, t1 + 60_000)  # a periodic status, a minute into it
    will = status_order("offline", t1, t1)  # stamped when the connection opened
    assert will is not None and online is not None and will > online
    reconnected = status_order("online", t1 + 90_000, t1 + 90_000)
    assert reconnected is not None and reconnected > will  # a late will loses
    from_2001 = status_order("offline", 978_307_200_000, 978_307_200_000)
    assert from_2001 is not None and from_2001 < reconnected


def test_statuses_without_a_session_are_taken_as_they_arrive() -> None:
    assert status_order("offline", None, 5) is None
    assert supersedes(None, (10, 10)) and supersedes((1, 1), None)
    assert supersedes((10, 10), (10, 10)) and not supersedes((9, 99), (10, 10))


def test_in_a_batch_a_late_will_does_not_override_the_newer_connection() -> None:
    items = [
        status_item("a", "online", 100, session_ts=50),
        status_item("a", "offline", 120, session_ts=10),  # the previous connection's will
    ]
    assert latest_per_device(items)[0].state == "online"
    items.append(status_item("a", "offline", 130, session_ts=50))  # this connection's will
    assert latest_per_device(items)[0].state == "offline"


def test_huge_status_detail_is_replaced_by_a_note() -> None:
    update = latest_per_device([status_item("a", "online", 1, blob="x" * MAX_STATUS_DETAIL_BYTES)])[
        0
    ]
    assert "blob" not in update.detail and "note" in update.detail


def test_last_seen_keeps_the_newest_and_drains() -> None:
    seen = LastSeen()
    seen.record("a", 10)
    seen.record("a", 5)
    seen.record("b", 7)
    assert seen.drain() == {"a": 10, "b": 7}
    assert len(seen) == 0
    seen.record("a", 3)
    seen.record("c", 1)
    assert seen.drain() == {"a": 3, "c": 1}


# --- registry cache ----------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_registry_reloads_on_a_miss_at_most_once_per_interval() -> None:
    clock = FakeClock()
    table = {"a": DeviceTags("X1", "1")}
    loads: list[int] = []

    def load() -> dict[str, DeviceTags]:
        loads.append(1)
        return dict(table)

    known = KnownDevices(load, refresh_s=30, miss_refresh_s=2, clock=clock)
    known.refresh()
    table["b"] = DeviceTags("X2", "")
    assert known.get("a") == DeviceTags("X1", "1")
    assert not known.is_known("b")  # the last load was just now: no reload yet
    assert len(loads) == 1
    clock.now += 2
    assert known.is_known("b")  # a miss after the interval reloads
    assert len(loads) == 2
    for _ in range(100):
        known.is_known("nobody")
    assert len(loads) == 2  # a flood of unknown ids does not reload every time


def test_registry_keeps_the_old_set_when_the_database_fails() -> None:
    clock = FakeClock()
    fail = [False]

    def load() -> dict[str, DeviceTags]:
        if fail[0]:
            raise ConnectionError("database down")
        return {"a": DeviceTags("X1", "")}

    known = KnownDevices(load, refresh_s=30, miss_refresh_s=2, clock=clock)
    known.refresh()
    fail[0] = True
    clock.now += 60
    known.maybe_refresh()
    assert known.is_known("a")


# --- inbox ------------------------------------------------------------------


def inbound(i: int, size: int = 10) -> Inbound:
    return Inbound(
        mid=i, epoch=1, topic="t", payload=b"x" * size, size=size, received_at=0.0, received_ms=0
    )


def test_inbox_hands_over_in_order_and_counts_bytes() -> None:
    box = Inbox(max_messages=10, max_bytes=1000)
    for i in range(5):
        box.put(inbound(i))
    assert box.bytes == 50
    assert [m.mid for m in box.take(3, timeout=0)] == [0, 1, 2]
    assert box.bytes == 20 and len(box) == 2


def test_inbox_makes_the_producer_wait_when_full_and_close_releases_it() -> None:
    box = Inbox(max_messages=2, max_bytes=1000)
    box.put(inbound(1))
    box.put(inbound(2))
    result: list[bool] = []
    producer = threading.Thread(target=lambda: result.append(box.put(inbound(3))))
    producer.start()
    wait_for(lambda: box.producer_waiting, 5, "the producer waiting for room")
    assert producer.is_alive() and len(box) == 2  # waiting, not overfilling
    box.take(1, timeout=0)
    producer.join(5)
    assert result == [True] and len(box) == 2
    blocked = threading.Thread(target=lambda: result.append(box.put(inbound(4))))
    blocked.start()
    box.close()
    blocked.join(5)
    assert result == [True, False]


def test_inbox_take_times_out_empty() -> None:
    box = Inbox(max_messages=2, max_bytes=1000)
    started = time.monotonic()
    assert box.take(5, timeout=0.2) == []
    assert time.monotonic() - started >= 0.15


# --- the fast telemetry decoder agrees with the protocol's --------------------


def corpus() -> list[bytes]:
    """Good messages, the hostile test's bad ones, and one-byte mutations of a good one."""
    import random

    from tests.ingest.test_hostile import hostile_messages

    rng = random.Random(7)
    good = [telemetry(s, NOW - s, temp=20.5 + s, flow=s, z=-1e15, big=1e15) for s in range(50)]
    good.append(
        json.dumps(
            {
                "v": 1,
                "seq": 2**63 - 1,
                "samples": [
                    {"ts": 946_684_800_000 + i, "metrics": {f"m{k}": k for k in range(64)}}
                    for i in range(3)
                ],
            }
        ).encode()
    )
    payloads = good + [p for _, _, p in hostile_messages(rng, NOW) if len(p) < 300_000][::7]
    base = good[0]
    for i in range(len(base)):
        for replacement in (b"", b" ", b"1", b"-", b'"', b"e", b"[", b"{", b"\x00", b"9" * 400):
            payloads.append(base[:i] + replacement + base[i + 1 :])
    payloads += [
        b'{"v":1,"seq":1,"samples":[{"ts":1763900000000,"metrics":{"a":' + b"9" * 400 + b"}}]}",
        b'{"v":true,"seq":1,"samples":[{"ts":1763900000000,"metrics":{"a":1}}]}',
        b'{"v":1,"seq":true,"samples":[{"ts":1763900000000,"metrics":{"a":1}}]}',
        b'{"v":1,"seq":1,"samples":[{"ts":true,"metrics":{"a":1}}]}',
        b'{"v":1,"seq":1,"samples":[{"ts":1763900000000,"metrics":{"a":false}}]}',
        b'{"v":1,"seq":1,"samples":[{"ts":1763900000000,"metrics":{"a":1e15}}]}',
        b'{"v":1,"seq":1,"samples":[{"ts":1763900000000,"metrics":{"a":1000000000000001}}]}',
        b'{"v":1,"seq":1,"samples":[{"ts":1763900000000,"metrics":{"a":1}}],"x":[[[[[[[[[1]]]]]]]]]}',
        b'{"v":1,"seq":1,"samples":[{"ts":1763900000000,"metrics":{"a":1},"x":1}]}',
        b'{"v":1,"seq":1,"samples":[{"ts":1763900000000,"metrics":{"a":1}}],"seq":-1}',
    ]
    return payloads


def test_fast_decoder_accepts_only_what_the_protocol_accepts_with_the_same_result() -> None:
    from edge_agent.protocol import decode_telemetry
    from ingest.validation import FastTelemetry

    fast = FastTelemetry()
    accepted = 0
    for payload in corpus():
        decoded = fast.decode(payload)
        if decoded is None:
            continue
        accepted += 1
        assert decode_telemetry(payload) == decoded, payload[:200]
    assert accepted >= 51  # and it does take the ordinary messages


def test_a_decoder_gap_is_a_dead_letter_not_a_crash() -> None:
    huge = b'{"v":1,"seq":1,"samples":[{"ts":1763900000000,"metrics":{"a":' + b"9" * 400 + b"}}]}"
    r = rejection("vigil/v1/dev/pump-1/telemetry", huge)
    assert r.kind is RejectReason.SCHEMA


def test_metric_names_the_store_reserves_are_rejected() -> None:
    r = rejection("vigil/v1/dev/pump-1/telemetry", telemetry(temp=1.0, time=2.0))
    assert r.kind is RejectReason.SCHEMA and "'time' is reserved" in r.reason


# --- the one reader of paho's internals ----------------------------------------


def test_a_topic_that_is_not_utf8_is_shown_with_escapes() -> None:
    import paho.mqtt.client as mqtt

    from ingest.subscriber import readable_topic

    assert readable_topic(mqtt.MQTTMessage(1, b"vigil/v1/dev/a/status")) == "vigil/v1/dev/a/status"
    message = mqtt.MQTTMessage(1, b"vigil/v1/dev/\xff/telemetry")
    assert readable_topic(message) == "vigil/v1/dev/\\xff/telemetry"


def test_the_paho_internals_the_burst_reading_client_overrides_exist() -> None:
    """BurstReadingClient replaces paho's private socket reads; a paho that renames them
    fails here rather than silently reading packet by packet."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    for name in ("_sock", "_sock_recv", "_packet_read", "_loop_rc_handle", "loop_read"):
        assert hasattr(client, name), name
