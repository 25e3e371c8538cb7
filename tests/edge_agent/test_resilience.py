"""Nothing acknowledged is lost: broker crashes, agent power cuts, and a full outbox."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from edge_agent import protocol
from tests.conftest import start_or_skip
from tests.edge_agent.conftest import AgentProcess, Recorder, wait_for, write_config
from vigil.servers import Mosquitto

pytestmark = [pytest.mark.servers, pytest.mark.slow]

# Save the broker's state on every change, so a SIGKILLed broker loses no
# session or queued message either: the test then measures the agent alone.
DURABLE_BROKER = ["autosave_interval 1", "autosave_on_changes true"]


def _check_complete(rec: Recorder, device: str, kept: set[int], allowed_gap_ms: int) -> dict:
    by_seq: dict[int, protocol.Telemetry] = {}
    for t, p in rec.of_kind("telemetry"):
        if f"/{device}/" not in t:
            continue
        m = protocol.decode_telemetry(p)
        if m.seq in by_seq:
            assert by_seq[m.seq] == m, f"seq {m.seq} was resent with different content"
        by_seq[m.seq] = m
    seqs = sorted(by_seq)
    event_seqs = {protocol.decode_event(p).seq for t, p in rec.of_kind("events")
                  if f"/{device}/" in t}
    missing = set(range(seqs[-1] + 1)) - set(seqs) - event_seqs
    assert not missing, f"messages never delivered: seq {sorted(missing)[:20]}"
    ts = sorted({s.ts for m in by_seq.values() for s in m.samples} | kept)
    gaps = [(a, b) for a, b in zip(ts, ts[1:], strict=False) if b - a > allowed_gap_ms]
    largest = max(len(m.samples) for m in by_seq.values())
    return {"messages": len(seqs), "samples": len(ts), "gaps": gaps, "largest_batch": largest,
            "dup_messages": len(rec.of_kind("telemetry")) - len(seqs)}


def _unsent(outbox: Path) -> set[int]:
    """Sample times still in the agent's outbox (read beside the running agent: WAL)."""
    try:
        db = sqlite3.connect(outbox, timeout=5)
        try:
            kept = {json.loads(b)["ts"] for (b,) in db.execute("SELECT body FROM pending")}
            for (payload,) in db.execute("SELECT payload FROM messages"):
                kept |= {s.ts for s in protocol.decode_telemetry(payload).samples}
        finally:
            db.close()
    except sqlite3.OperationalError:  # created by the agent a moment later
        return set()
    return kept


def _send_marker(host: str, port: int) -> str:
    """Publish telemetry of a device of its own; the topic it went to."""
    import paho.mqtt.client as mqtt

    topic = protocol.topic("zz-marker", "telemetry")
    payload = protocol.encode(protocol.Telemetry(
        seq=0, samples=(protocol.Sample(ts=int(time.time() * 1000), metrics={"m": 1.0}),)))
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="zz-marker",
                         protocol=mqtt.MQTTv5)
    client.connect(host, port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(30)
    finally:
        client.disconnect()
        client.loop_stop()
    return topic


def test_broker_killed_three_times_and_agent_killed_once_loses_nothing(tmp_path: Path) -> None:
    broker = start_or_skip(Mosquitto(tmp_path / "broker", extra_config=DURABLE_BROKER))
    rec = None
    agent = None
    try:
        rec = Recorder(broker.host, broker.port, [protocol.subscription("telemetry"),
                                                  protocol.subscription("events")])
        interval_s = 0.1
        config = write_config(tmp_path / "agent.toml", device_id="ct-resilient", port=broker.port,
                              outbox_path=tmp_path / "outbox.db",
                              sampling={"interval_s": interval_s, "status_interval_s": 5.0})
        agent = AgentProcess(config, tmp_path / "agent.log").start()
        wait_for(lambda: len(rec.sample_ts()) >= 20, 60, "first samples")

        agent_down: tuple[int, int] | None = None
        outbox = tmp_path / "outbox.db"
        for round_ in range(3):
            broker.kill()
            # The agent keeps sampling into its outbox meanwhile.
            queued = len(_unsent(outbox))
            wait_for(lambda queued=queued: len(_unsent(outbox)) >= queued + 15, 30,
                     "samples queued while the broker is down")
            if round_ == 1:
                killed_at = int(time.time() * 1000)
                agent.kill()  # power cut while the broker is down, outbox full of unsent data
                time.sleep(0.5)
                agent.start()
                agent_down = (killed_at, int(time.time() * 1000))
            broker.start()
            assert rec.connected.wait(60), "recorder did not reconnect"
            seen = len(rec.sample_ts())
            wait_for(lambda seen=seen: len(rec.sample_ts()) > seen + 30, 90,
                     f"samples flowing again after broker restart {round_ + 1}")

        # Let the outbox drain, then stop the agent cleanly.
        wait_for(lambda: len(_unsent(outbox)) <= 10, 60, "the outbox drained")
        assert agent.stop() == 0, agent.tail()
        # What was sampled last may still be in the outbox: it is kept for the next start.
        kept = _unsent(outbox)
        assert len(kept) <= 20, f"{len(kept)} samples never sent although the broker was up"

        # The broker hands the recorder what it accepted in order: once a later marker
        # has arrived, everything the agent sent has.
        marker = _send_marker(broker.host, broker.port)
        wait_for(lambda: rec.of_kind("telemetry") and any(
            t == marker for t, _ in rec.of_kind("telemetry")), 30, "the marker")
        report = _check_complete(rec, "ct-resilient", kept, 1500)
        # Only the agent's own power cut may leave a hole in the sampling (it was off).
        assert agent_down is not None
        unexplained = [(a, b) for a, b in report["gaps"]
                       if not (a <= agent_down[1] and b >= agent_down[0])]
        assert not unexplained, f"sample time gaps outside the agent's downtime: {unexplained}"
        assert report["samples"] >= 100
        assert report["largest_batch"] >= 10, "the backlog after an outage travels in batches"
        print(report, file=sys.stderr)
    finally:
        if agent:
            agent.stop()
        if rec:
            rec.close()
        broker.stop()


def test_outbox_over_its_bound_drops_oldest_counts_exactly_and_reports(tmp_path: Path) -> None:
    """A source delivers 300 readings while the broker is away; the outbox holds 100."""
    script = tmp_path / "readings.py"
    script.write_text(
        "import json, time\n"
        "base = int(time.time() * 1000) - 300_000\n"
        "for i in range(300):\n"
        "    print(json.dumps({'ts': base + i * 1000, 'metrics': {'index': i}}))\n"
        "print(json.dumps({'ts': base + 300_000, 'metrics': {'index': 300}}), flush=True)\n"
        "time.sleep(3600)\n")
    broker = Mosquitto(tmp_path / "broker")
    config = write_config(tmp_path / "agent.toml", device_id="pump-bounded", port=broker.port,
                          outbox_path=tmp_path / "outbox.db",
                          outbox={"max_entries": 100},
                          source={"kind": "command", "command": [sys.executable, str(script)]})
    agent = AgentProcess(config, tmp_path / "agent.log").start()
    rec = None
    try:
        def depth_and_dropped() -> tuple[int, int] | None:
            try:
                db = sqlite3.connect(tmp_path / "outbox.db")
                d = db.execute("SELECT COUNT(*) FROM pending").fetchone()[0]
                row = db.execute("SELECT dropped FROM counters WHERE device='pump-bounded'"
                                 ).fetchone()
                db.close()
            except sqlite3.Error:
                return None
            return (d, row[0]) if row and row[0] else None

        wait_for(lambda: (depth_and_dropped() or (0, 0))[0] == 100
                 and depth_and_dropped()[1] == 201, 60, "301 readings queued into 100 places")
        start_or_skip(broker)
        rec = Recorder(broker.host, broker.port, [protocol.subscription("telemetry"),
                                                  protocol.subscription("status")])
        wait_for(lambda: len(rec.sample_ts()) >= 100, 60, "the kept readings")
        indices = sorted(int(s.metrics["index"]) for m in rec.telemetry() for s in m.samples)
        assert indices == list(range(201, 301)), "the newest 100 readings are the ones kept"
        status = wait_for(lambda: [s for s in rec.statuses()
                                   if s.extra.get("outbox_dropped") == 201], 30,
                          "the drop count in the retained status")
        assert status[-1].state == "online"
    finally:
        agent.stop()
        if rec:
            rec.close()
        broker.stop()
