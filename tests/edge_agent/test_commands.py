"""Diagnostic commands over a real broker: answers, refusals, and a handler that fails."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent import protocol
from edge_agent.agent import Agent
from edge_agent.config import load_config
from tests.edge_agent.conftest import Recorder, wait_for, write_config
from vigil.servers import Mosquitto

pytestmark = pytest.mark.servers


@pytest.fixture
def running_agent(mosquitto: Mosquitto, tmp_path: Path) -> Iterator[tuple[Agent, Recorder, Path]]:
    device = f"vent-{uuid.uuid4().hex[:8]}"
    flag = tmp_path / "maintenance"
    config_path = write_config(tmp_path / "agent.toml", device_id=device, port=mosquitto.port,
                               outbox_path=tmp_path / "outbox.db",
                               device={"model": "ventilator", "maintenance_flag": str(flag)},
                               source={"kind": "simulated", "model": "ventilator"},
                               sampling={"interval_s": 1.0, "status_interval_s": 60.0},
                               broker={"password": "not-shown"})
    agent = Agent(load_config(config_path, environ={}))

    def boom(args: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("sensor board did not answer")

    agent.register_command("read_sensor_board", boom)
    rec = Recorder(mosquitto.host, mosquitto.port, [f"{protocol.TOPIC_ROOT}/{device}/#"])
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    wait_for(lambda: agent.link.connected and rec.statuses(), 30, "agent online")
    yield agent, rec, flag
    agent.stop()
    thread.join(30)
    rec.close()
    assert not thread.is_alive()


def send(rec: Recorder, agent: Agent, cmd: str, args: dict | None = None, *,
         expires_in_ms: int = 60_000, reply_to: str = "") -> protocol.CommandResult:
    cid = f"c-{uuid.uuid4().hex[:10]}"
    payload = protocol.encode(protocol.Command(
        id=cid, cmd=cmd, args=args or {}, reply_to=reply_to,
        expires=int(time.time() * 1000) + expires_in_ms))
    rec.client.publish(protocol.topic(agent.device_id, "cmd"), payload, qos=1)
    return wait_for(lambda: rec.results().get(cid), 30, f"result of {cmd}")


def test_self_test_reports_each_check(running_agent: tuple[Agent, Recorder, Path]) -> None:
    agent, rec, _ = running_agent
    result = send(rec, agent, "self_test")
    assert result.ok
    checks = result.output["checks"]
    assert set(checks) == {"outbox", "disk", "source", "clock", "broker"}
    assert result.output["passed"] is True
    assert checks["broker"]["ok"] is True


def test_get_logs_returns_recent_lines(running_agent: tuple[Agent, Recorder, Path]) -> None:
    agent, rec, _ = running_agent
    result = send(rec, agent, "get_logs", {"lines": 5})
    assert result.ok and 1 <= len(result.output["lines"]) <= 5
    assert any("connected" in line for line in send(rec, agent, "get_logs").output["lines"])
    bad = send(rec, agent, "get_logs", {"lines": "all"})
    assert not bad.ok and "lines" in bad.output["error"]


def test_get_config_hides_secrets(running_agent: tuple[Agent, Recorder, Path]) -> None:
    agent, rec, _ = running_agent
    result = send(rec, agent, "get_config")
    assert result.ok
    assert result.output["config"]["device"]["id"] == agent.device_id
    assert result.output["config"]["broker"]["password"] == "***"
    assert "not-shown" not in str(result.output)
    assert result.output["commands"]["set_sampling"]["changes_device"] is True


def test_set_sampling_needs_maintenance_then_raises_the_rate(
        running_agent: tuple[Agent, Recorder, Path]) -> None:
    agent, rec, flag = running_agent
    refused = send(rec, agent, "set_sampling", {"interval_s": 0.1, "duration_s": 5})
    assert not refused.ok and "maintenance" in refused.output["error"]
    assert agent.current_interval() == 1.0

    flag.touch()
    wait_for(lambda: any(s.state == "maintenance" for s in rec.statuses()), 30,
             "the maintenance status")
    before = len(rec.sample_ts())
    done = send(rec, agent, "set_sampling", {"interval_s": 0.1, "duration_s": 3})
    assert done.ok and done.output["interval_s"] == 0.1
    wait_for(lambda: len(rec.sample_ts()) >= before + 15, 30, "high-rate samples")
    # The fast rate lasts only as long as asked.
    wait_for(lambda: agent.current_interval() == 1.0, 30, "return to the normal rate")
    out_of_range = send(rec, agent, "set_sampling", {"interval_s": 0.001, "duration_s": 3})
    assert not out_of_range.ok and "interval_s" in out_of_range.output["error"]


def test_unknown_expired_and_raising_commands_are_answered_not_fatal(
        running_agent: tuple[Agent, Recorder, Path]) -> None:
    agent, rec, _ = running_agent
    unknown = send(rec, agent, "format_disk")
    assert not unknown.ok and "unknown command 'format_disk'" in unknown.output["error"]
    assert "self_test" in unknown.output["error"]

    expired = send(rec, agent, "self_test", expires_in_ms=-5_000)
    assert not expired.ok and "expired" in expired.output["error"]

    boom = send(rec, agent, "read_sensor_board")
    assert not boom.ok
    assert boom.output["error"] == "RuntimeError: sensor board did not answer"

    # The agent is still alive and answering.
    assert send(rec, agent, "self_test").ok


def test_reply_to_inside_own_subtree_only(running_agent: tuple[Agent, Recorder, Path]) -> None:
    agent, rec, _ = running_agent
    own = protocol.topic(agent.device_id, "cmd/result") + "/session-7"
    result = send(rec, agent, "get_config", reply_to=own)
    assert result.ok
    assert own in rec.seen_topics()
    foreign = send(rec, agent, "get_config", reply_to="vigil/v1/dev/other-device/cmd/result")
    assert not foreign.ok and "outside" in foreign.output["error"]
