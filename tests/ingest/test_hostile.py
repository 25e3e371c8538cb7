"""Over 10,000 malformed or hostile messages mixed into good traffic.

`vigil ingest` runs as a subprocess so its memory can be measured. Every bad
message must become a dead letter with the right reason, every good sample must
be stored, memory must stay bounded and the process must stop cleanly.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.ingest.support import (
    Publisher,
    dead_letters,
    ingest_env,
    points_per_device,
    prepare_registry,
    rss_kib,
    start_ingest,
    telemetry_payload,
    wait_for,
)
from vigil.servers import InfluxDB, Mosquitto, free_port

pytestmark = [pytest.mark.servers, pytest.mark.slow]

GOOD_DEVICES = [f"ok-{i:02d}" for i in range(50)]
GOOD_PER_DEVICE = 100
MAX_RSS_MIB = 400

# Category -> a phrase its dead letters' reason must contain (and no other category's).
REASONS = {
    "random_bytes": "not valid UTF-8 JSON",
    "deep_json": "nested",
    "huge_json": "metrics, at most 64",
    "too_many_samples": "samples in one message",
    "wrong_types": "must be a non-empty",
    "bad_seq": "'seq' must be an integer",
    "nan": "NaN is not a number",
    "infinity": "Infinity is not a number",
    "not_finite": "is not finite or beyond",
    "old_or_far_ts": "is outside 2000-01-01..2100-01-01",
    "megabyte": "bytes, at most 262144",
    "odd_unicode_metric": "invalid metric name",
    "unknown_device": "is not registered",
    "bad_device_id": "invalid device id",
    "future_clock": "ahead of the platform clock",
    "wrong_version": "unsupported protocol version",
    "bad_status": "'state' must be one of",
    "bad_event": "'severity' must be one of",
    "huge_integer": "undecodable payload",
    "reserved_metric": "is reserved by the telemetry store",
}


def hostile_messages(rng: random.Random, now_ms: int) -> list[tuple[str, str, bytes]]:
    """(category, topic, payload) of every bad message."""
    out: list[tuple[str, str, bytes]] = []

    def add(category: str, n: int, make) -> None:  # type: ignore[no-untyped-def]
        for i in range(n):
            device = rng.choice(GOOD_DEVICES)
            topic, payload = make(i, device)
            out.append(
                (category, topic, payload if isinstance(payload, bytes) else payload.encode())
            )

    def tele(device: str) -> str:
        return f"vigil/v1/dev/{device}/telemetry"

    def body(metrics: object = None, ts: object = now_ms, seq: object = 1, v: object = 1) -> dict:
        return {"v": v, "seq": seq, "samples": [{"ts": ts, "metrics": metrics or {"a": 1.0}}]}

    add("random_bytes", 1500, lambda i, d: (tele(d), b"\xff" + rng.randbytes(rng.randint(0, 3000))))
    add(
        "deep_json",
        500,
        lambda i, d: (
            tele(d),
            '{"a":' * (20 if i % 2 else 40_000) + "1" + "}" * (20 if i % 2 else 40_000),
        ),
    )
    add(
        "huge_json",
        200,
        lambda i, d: (tele(d), json.dumps(body({f"m{k}": float(k) for k in range(5000)}))),
    )
    add(
        "too_many_samples",
        200,
        lambda i, d: (
            tele(d),
            json.dumps({"v": 1, "seq": 1, "samples": [{"ts": now_ms, "metrics": {"a": 1}}] * 1500}),
        ),
    )
    add(
        "wrong_types",
        800,
        lambda i, d: (
            tele(d),
            json.dumps(
                [
                    {"v": 1, "seq": 1, "samples": "many"},
                    body(metrics=["a"]),
                    {"v": 1, "seq": 1, "samples": [{"ts": now_ms, "metrics": {}}]},
                    {"v": 1, "seq": 1, "samples": []},
                ][i % 4]
            ),
        ),
    )
    add(
        "bad_seq",
        800,
        lambda i, d: (tele(d), json.dumps(body(seq=[-1, "7", 2**64, None, 1.5][i % 5]))),
    )
    add(
        "nan",
        600,
        lambda i, d: (
            tele(d),
            '{"v":1,"seq":1,"samples":[{"ts":%d,"metrics":{"a":NaN}}]}' % now_ms,
        ),
    )
    add(
        "infinity",
        300,
        lambda i, d: (
            tele(d),
            '{"v":1,"seq":1,"samples":[{"ts":%d,"metrics":{"a":-Infinity}}]}' % now_ms,
        ),
    )
    add(
        "not_finite",
        600,
        lambda i, d: (
            tele(d),
            json.dumps(body({"a": [1e308, -1e300, 1e16][i % 3]}))
            if i % 4
            else '{"v":1,"seq":1,"samples":[{"ts":%d,"metrics":{"a":1e999}}]}' % now_ms,
        ),
    )
    add(
        "old_or_far_ts",
        1000,
        lambda i, d: (
            tele(d),
            json.dumps(body(ts=[0, 1000, 86_400_000, 7_258_118_400_000][i % 4])),
        ),
    )
    add("megabyte", 12, lambda i, d: (tele(d), b"{" + b" " * (1024 * 1024) + b"}"))
    add(
        "odd_unicode_metric",
        1000,
        lambda i, d: (
            tele(d),
            json.dumps(
                body(
                    {
                        [
                            "t\u00e9mp",
                            "\u6e29\u5ea6",
                            "a\u202eb",
                            "a\u0000b",
                            "\U0001f525",
                            "a b",
                            "",
                            "9lives",
                        ][i % 8]: 1.0
                    }
                ),
                ensure_ascii=bool(i % 2),
            ),
        ),
    )
    add(
        "unknown_device",
        1000,
        lambda i, d: (tele(f"ghost-{i}"), telemetry_payload(1, now_ms, {"a": 1.0})),
    )
    add(
        "bad_device_id",
        300,
        lambda i, d: (
            [
                "vigil/v1/dev/d\u00e9v/telemetry",
                "vigil/v1/dev/-lead/telemetry",
                f"vigil/v1/dev/{'x' * 65}/telemetry",
            ][i % 3],
            telemetry_payload(1, now_ms, {"a": 1.0}),
        ),
    )
    add(
        "future_clock",
        500,
        lambda i, d: (tele(d), json.dumps(body(ts=now_ms + 86_400_000 * (1 + i % 30)))),
    )
    add(
        "wrong_version",
        300,
        lambda i, d: (tele(d), json.dumps(body(v=[2, 0, "1", True, None][i % 5]))),
    )
    add(
        "bad_status",
        200,
        lambda i, d: (
            f"vigil/v1/dev/{d}/status",
            json.dumps({"v": 1, "state": "exploded", "ts": now_ms}),
        ),
    )
    add(
        "bad_event",
        200,
        lambda i, d: (
            f"vigil/v1/dev/{d}/events",
            json.dumps({"v": 1, "seq": i, "ts": now_ms, "code": "E1", "severity": "apocalyptic"}),
        ),
    )
    add(
        "huge_integer",
        100,
        lambda i, d: (
            tele(d),
            '{"v":1,"seq":1,"samples":[{"ts":%d,"metrics":{"a":%s}}]}' % (now_ms, "9" * (310 + i)),
        ),
    )
    add(
        "reserved_metric",
        100,
        lambda i, d: (tele(d), json.dumps(body({["time", "device", "model", "site"][i % 4]: 1.0}))),
    )
    return out


def category_of(reason: str) -> str:
    found = [c for c, phrase in REASONS.items() if phrase in reason]
    assert len(found) == 1, f"reason {reason!r} matches {found}"
    return found[0]


def test_hostile_traffic_is_dead_lettered_and_good_traffic_stored(
    mosquitto: Mosquitto, influxdb: InfluxDB, influx_database: str, tmp_path: Path
) -> None:
    sql_url = f"sqlite:///{tmp_path / 'vigil.db'}"
    prepare_registry(sql_url, GOOD_DEVICES)
    http_port = free_port()
    env = ingest_env(
        mosquitto.port,
        influxdb,
        influx_database,
        sql_url,
        client_id="hostile-ingest",
        shared_group="hostile",
        metrics_port=http_port,
    )
    ingest = start_ingest(env, tmp_path)
    peak_kib = [0]
    sampling = threading.Event()

    def sample_rss() -> None:
        while not sampling.wait(0.1):
            peak_kib[0] = max(peak_kib[0], rss_kib(ingest.pid))

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    publisher: Publisher | None = None
    try:
        wait_for(lambda: ingest.poll() is not None or _ready(http_port), 60, "ingest ready")
        assert ingest.poll() is None, "ingest exited at start"
        rng = random.Random(20261123)
        now_ms = int(time.time() * 1000)
        bad = hostile_messages(rng, now_ms)
        assert len(bad) >= 10_000
        base = (now_ms // 1000 - 3600) * 1000
        good = [
            (f"vigil/v1/dev/{d}/telemetry", telemetry_payload(s, base + s * 1000, {"m0": float(s)}))
            for s in range(GOOD_PER_DEVICE)
            for d in GOOD_DEVICES
        ]
        mixed = [("good", t, p.encode()) for t, p in good] + bad
        rng.shuffle(mixed)

        publisher = Publisher(mosquitto.port, "hostile-pub")
        for _, topic, payload in mixed:
            publisher.publish(topic, payload)
            if publisher.sent - publisher.acked > 2000:
                wait_for(lambda: publisher.sent - publisher.acked < 500, 60, "broker keeping up")
        # Last, a message for an unregistered device: one worker takes and writes messages in
        # order, so once its dead letter is stored every earlier one is.
        marker = "vigil/v1/dev/zz-marker/telemetry"
        publisher.publish(marker, telemetry_payload(1, now_ms, {"m0": 1.0}))
        publisher.wait_acked(120)

        expected = {d: GOOD_PER_DEVICE for d in GOOD_DEVICES}
        wait_for(
            lambda: points_per_device(influxdb, influx_database) == expected,
            180,
            "every good sample stored",
        )
        wait_for(
            lambda: any(d.topic == marker for d in dead_letters(sql_url)),
            180,
            "every bad message dead-lettered",
        )
        letters = [d for d in dead_letters(sql_url) if d.topic != marker]
        assert len(letters) == len(bad)
        assert Counter(category_of(d.reason) for d in letters) == Counter(c for c, _, _ in bad)
        megabytes = [d for d in letters if category_of(d.reason) == "megabyte"]
        assert all(d.payload_size == 1024 * 1024 + 2 and len(d.payload) <= 4096 for d in megabytes)
        assert ingest.poll() is None, "ingest crashed"
        ingest.send_signal(signal.SIGTERM)
        assert ingest.wait(60) == 0
        assert peak_kib[0] > 0
        assert peak_kib[0] / 1024 < MAX_RSS_MIB, f"ingest peaked at {peak_kib[0] / 1024:.0f} MiB"
        print(f"ingest peak RSS {peak_kib[0] / 1024:.0f} MiB over {len(mixed)} messages")
    finally:
        sampling.set()
        if publisher is not None:
            publisher.close()
        if ingest.poll() is None:
            ingest.kill()
            ingest.wait()


def _ready(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return json.loads(r.read())["ok"]
    except OSError:
        return False
