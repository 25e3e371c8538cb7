"""Wire protocol v1: what is accepted, what is refused and why."""

from __future__ import annotations

import json

import pytest

from edge_agent import protocol as p

TS = 1_700_000_000_000


def telemetry(**overrides: object) -> bytes:
    body = {"v": 1, "seq": 7, "samples": [{"ts": TS, "metrics": {"motor_current": 1.25}}]}
    body.update(overrides)
    return json.dumps(body).encode()


def test_round_trip_of_every_message_type() -> None:
    messages = [
        (p.Telemetry(seq=3, samples=(p.Sample(TS, {"a": 1.0}), p.Sample(TS + 1, {"b": -2.5}))),
         p.decode_telemetry),
        (p.Status(state="maintenance", ts=TS, fw="1.2.3", model="pump",
                  extra={"outbox_dropped": 4}),
         p.decode_status),
        (p.Event(seq=1, ts=TS, code="E-042", severity="critical", text="occlusion"),
         p.decode_event),
        (p.Command(id="c-1", cmd="self_test", args={"deep": True}, reply_to="", expires=TS),
         p.decode_command),
        (p.CommandResult(id="c-1", ok=False, ts=TS, output={"error": "boom"}),
         p.decode_command_result),
    ]
    for message, decode in messages:
        assert decode(p.encode(message)) == message


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe", "not valid UTF-8 JSON"),
        (b"\xef\xbb\xbf" + telemetry(), "not valid UTF-8 JSON"),  # a byte-order mark
        (telemetry().decode().encode("utf-16"), "not valid UTF-8 JSON"),
        (telemetry().decode().encode("utf-16-le"), "not valid UTF-8 JSON"),
        (telemetry().decode().encode("utf-32"), "not valid UTF-8 JSON"),
        (b'{"v":1,"x":"\xed\xa0\x80"}', "not valid UTF-8 JSON"),  # an encoded surrogate
        (b"[1, 2]", "must be a JSON object"),
        (telemetry(v=2), "unsupported protocol version 2"),
        (telemetry(v=True), "unsupported protocol version"),
        (telemetry(seq=-1), "'seq' must be an integer"),
        (telemetry(seq=1.5), "'seq' must be an integer"),
        (telemetry(seq="1"), "'seq' must be an integer"),
        (telemetry(samples=[]), "non-empty list"),
        (telemetry(samples=[{"ts": 0, "metrics": {"a": 1}}]), "outside 2000-01-01..2100-01-01"),
        (telemetry(samples=[{"ts": 7_258_118_400_000, "metrics": {"a": 1}}]), "outside 2000"),
        (telemetry(samples=[{"ts": TS, "metrics": {"a": "1"}}]), "is not a number"),
        (telemetry(samples=[{"ts": TS, "metrics": {"a": True}}]), "is not a number"),
        (telemetry(samples=[{"ts": TS, "metrics": {"a": 1e308}}]), "not finite or beyond"),
        (telemetry(samples=[{"ts": TS, "metrics": {"bad name": 1}}]), "invalid metric name"),
        (telemetry(samples=[{"ts": TS, "metrics": {"\u00e9t\u00e9": 1}}]), "invalid metric name"),
        (telemetry(samples=[{"ts": TS, "metrics": {}}]), "non-empty object"),
        (telemetry(samples=[{"ts": TS, "metrics": {"a": 1}}] * (p.MAX_SAMPLES_PER_MESSAGE + 1)),
         "samples in one message"),
        (b'{"v":1,"seq":1,"samples":[{"ts":1700000000000,"metrics":{"a":NaN}}]}', "NaN"),
        (b'{"v":1,"seq":1,"samples":[{"ts":1700000000000,"metrics":{"a":1e999}}]}', "not finite"),
        (b"[" * 100_000 + b"]" * 100_000, "too deeply"),
        (b'{"v":1,"x":' + b'{"a":' * 20 + b"1" + b"}" * 21, "nested deeper"),
        (b'{"v":1,"seq":' + b"9" * 5000 + b"}", "not valid UTF-8 JSON"),
        (b" " * (p.MAX_PAYLOAD_BYTES + 1), "bytes, at most"),
    ],
)
def test_bad_telemetry_is_refused_with_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(p.ProtocolError, match=None) as excinfo:
        p.decode_telemetry(payload)
    assert reason in str(excinfo.value)


@pytest.mark.parametrize("device", ["", "a/b", "+", "#", "x" * 65, "-lead", "a b", "é", "a\nb",
                                    None, 5])
def test_bad_device_ids_are_refused(device: object) -> None:
    with pytest.raises(p.ProtocolError, match="invalid device id"):
        p.validate_device_id(device)


def test_topics_round_trip_and_shared_subscription() -> None:
    assert p.topic("pump-01", "telemetry") == "vigil/v1/dev/pump-01/telemetry"
    assert p.parse_topic("vigil/v1/dev/pump-01/cmd/result") == ("pump-01", "cmd/result")
    shared = p.subscription("telemetry", shared_group="ingest")
    assert shared == "$share/ingest/vigil/v1/dev/+/telemetry"
    for bad in ("vigil/v2/dev/a/telemetry", "vigil/v1/dev/a/other", "vigil/v1/dev/a+b/status"):
        with pytest.raises(p.ProtocolError):
            p.parse_topic(bad)


def test_encode_refuses_non_finite_values() -> None:
    with pytest.raises(p.ProtocolError, match="cannot encode"):
        p.encode(p.Telemetry(seq=1, samples=(p.Sample(TS, {"a": float("nan")}),)))


def test_status_and_event_fields_are_checked() -> None:
    with pytest.raises(p.ProtocolError, match="'state' must be one of"):
        p.decode_status(json.dumps({"v": 1, "state": "broken", "ts": TS}).encode())
    with pytest.raises(p.ProtocolError, match="'severity' must be one of"):
        p.decode_event(
            json.dumps({"v": 1, "seq": 1, "ts": TS, "code": "E1", "severity": "x"}).encode())
    with pytest.raises(p.ProtocolError, match="invalid event code"):
        p.decode_event(
            json.dumps({"v": 1, "seq": 1, "ts": TS, "code": "a b", "severity": "info"}).encode())


def test_text_no_database_can_store_is_refused() -> None:
    event = {"v": 1, "seq": 1, "ts": TS, "code": "E1", "severity": "info"}
    with pytest.raises(p.ProtocolError, match="'text' contains a NUL character"):
        p.decode_event(json.dumps(event | {"text": "a\x00b"}).encode())
    with pytest.raises(p.ProtocolError, match="'fw' contains an unpaired surrogate"):
        p.decode_status(b'{"v": 1, "state": "online", "ts": %d, "fw": "\\udc00"}' % TS)
    with pytest.raises(p.ProtocolError, match="'status.detail.k' contains a NUL"):
        p.decode_status(json.dumps({"v": 1, "state": "online", "ts": TS,
                                    "detail": {"k": ["ok", "x\x00"]}}).encode())
    paired = p.decode_event(json.dumps(event | {"text": "pump \U0001F489 ok"}).encode())
    assert paired.text == "pump \U0001F489 ok"


def test_clock_check_allows_small_skew_only() -> None:
    assert p.check_clock(TS + 60_000, TS)
    assert not p.check_clock(TS + 3_600_000, TS)
