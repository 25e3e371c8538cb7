"""A diagnosis session with the real edge agent (`vigil-agent` as a process) on Mosquitto."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import World
from tests.diagnosis.conftest import set_device, wait_for
from tests.diagnosis.test_sessions import BASE, open_session, outcome
from tests.edge_agent.conftest import AgentProcess, write_config
from vigil.servers import Mosquitto

Headers = Callable[[str], dict[str, str]]


def test_self_test_and_a_capture_with_the_real_agent(
    client: TestClient, headers: Headers, world: World, sessions: sessionmaker[Session],
    mosquitto: Mosquitto, tmp_path: Path,
) -> None:
    device_id = world.devices["a"][1]
    flag = tmp_path / "maintenance"
    config = write_config(tmp_path / "agent.toml", device_id=device_id, port=mosquitto.port,
                          outbox_path=tmp_path / "outbox.db",
                          device={"maintenance_flag": str(flag)})
    agent = AgentProcess(config, tmp_path / "agent.log").start()
    try:
        session = open_session(client, headers, device_id)
        url = f"{BASE}/{session['id']}/commands"

        def answered(cmd: str, wait_s: float = 20, **args: float) -> dict:
            sent = client.post(url, headers=headers("engineer"), json={"cmd": cmd, "args": args})
            assert sent.status_code == 202, sent.text
            return outcome(client, headers, session["id"], sent.json()["command_id"],
                           timeout=wait_s)["payload"]

        def first_answer() -> dict | None:
            try:
                return answered("get_config", wait_s=3)
            except AssertionError:
                return None

        # The agent subscribes once connected; a command sent before that goes unanswered.
        result = wait_for(first_answer, timeout=90,
                          what=f"the agent to answer; its log:\n{agent.tail()}")
        assert result["ok"] is True
        assert result["output"]["config"]["device"]["id"] == device_id
        test = answered("self_test")
        assert test["ok"] is True and set(test["output"]["checks"]) >= {"outbox", "broker"}

        # The device enters maintenance (the agent reads the flag; ingest records the state).
        flag.touch()
        set_device(sessions, device_id, state="maintenance")
        capture = answered("set_sampling", interval_s=0.2, duration_s=5)
        assert capture["ok"] is True and capture["output"]["interval_s"] == 0.2

        # Out of maintenance on the device only: the agent refuses the capture itself.
        flag.unlink()
        refused = answered("set_sampling", interval_s=0.2, duration_s=5)
        assert refused["ok"] is False and refused["output"]["refused"] is True
    finally:
        agent.stop()
