"""The agent in-process against the shared broker: clock sanity, command source, status."""

from __future__ import annotations

import sys
import threading
import uuid
from pathlib import Path

import pytest

from edge_agent import protocol
from edge_agent.agent import Agent
from edge_agent.config import load_config
from tests.edge_agent.conftest import Recorder, wait_for, write_config
from vigil.servers import Mosquitto

pytestmark = pytest.mark.servers


def test_far_off_device_clock_is_flagged_not_silently_accepted(mosquitto: Mosquitto,
                                                               tmp_path: Path) -> None:
    script = tmp_path / "port.py"
    # A device whose clock battery died: it believes it is January 2001.
    script.write_text(
        "import json, time\n"
        "for i in range(3):\n"
        "    print(json.dumps({'ts': 978307200000 + i * 1000, 'metrics': {'flow': 1.0}}))\n"
        "print(json.dumps({'metrics': {'flow': 2.0}}))\n"
        "print('not json at all')\n"
        "print(json.dumps({'event': {'code': 'E-042', 'severity': 'error', 'text': 'occlusion'}}),"
        " flush=True)\n"
        "time.sleep(3600)\n")
    device = f"pump-{uuid.uuid4().hex[:8]}"
    config = load_config(write_config(
        tmp_path / "agent.toml", device_id=device, port=mosquitto.port,
        outbox_path=tmp_path / "outbox.db",
        source={"kind": "command", "command": [sys.executable, str(script)]},
        sampling={"interval_s": 0.2, "status_interval_s": 1.0}), environ={})
    rec = Recorder(mosquitto.host, mosquitto.port, [f"{protocol.TOPIC_ROOT}/{device}/#"])
    agent = Agent(config)
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(rec.sample_ts()) == 4, 30, "all four readings, suspect ones too")

        def events() -> list[protocol.Event]:
            return [protocol.decode_event(p) for _, p in rec.of_kind("events")]

        # The source's own event is its last line, and events leave the outbox in order:
        # once it is here, every event the readings before it raised is here too.
        wait_for(lambda: any(e.code == "E-042" for e in events()), 30, "the source's event")
        codes = [e.code for e in events()]
        assert codes.count("CLOCK_SUSPECT") == 1, "one event per episode, not one per sample"
        assert "E-042" in codes
        clock_event = next(e for e in events() if e.code == "CLOCK_SUSPECT")
        assert "floor" in clock_event.text
        wait_for(lambda: any(s.extra.get("clock_suspect") == 3 for s in rec.statuses()), 30,
                 "the suspect count in the status")
        assert agent.source.self_test()["bad_lines"] == 1
        agent.stop()
        thread.join(30)
        # A clean stop leaves an offline status behind.
        wait_for(lambda: rec.statuses()[-1].state == "offline", 30, "the offline status")
    finally:
        agent.stop()
        thread.join(30)
        rec.close()
