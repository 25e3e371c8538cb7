"""Diagnosis sessions end to end: the API, a real Mosquitto and simulated devices."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edge_agent import protocol
from tests.api.conftest import World
from tests.diagnosis.conftest import SimulatedDevice, make_app, serve, set_device, wait_for
from vigil.audit.models import AuditLog
from vigil.diagnosis import rules
from vigil.diagnosis.bus import store_result
from vigil.diagnosis.models import TranscriptEntry
from vigil.telemetry.embedded import EmbeddedStore
from vigil.telemetry.store import Point

Headers = Callable[[str], dict[str, str]]
BASE = "/api/v1/diagnosis/sessions"


def open_session(client: TestClient, headers: Headers, device_id: str,
                 user: str = "engineer", **extra: Any) -> dict[str, Any]:
    answer = client.post(BASE, headers=headers(user), json={"device_id": device_id, **extra})
    assert answer.status_code == 201, answer.text
    return answer.json()


def transcript(client: TestClient, headers: Headers, session_id: int) -> list[dict[str, Any]]:
    answer = client.get(f"{BASE}/{session_id}", headers=headers("engineer"))
    assert answer.status_code == 200, answer.text
    return answer.json()["transcript"]


def outcome(client: TestClient, headers: Headers, session_id: int, command_id: str,
            kind: str = "result", timeout: float = 20.0) -> dict[str, Any]:
    """The result (or timeout) entry of a command, once it is in the transcript."""
    return wait_for(lambda: next((e for e in transcript(client, headers, session_id)
                                  if e["command_id"] == command_id and e["kind"] == kind), None),
                    timeout=timeout, what=f"the {kind} of command {command_id}")


def audit_actions(sessions: sessionmaker[Session], session_id: int) -> list[str]:
    with sessions() as db:
        return list(db.scalars(select(AuditLog.action).where(
            AuditLog.object_type == "diagnosis_session", AuditLog.object_id == str(session_id))
            .order_by(AuditLog.id)))


def sse_events(body: str) -> list[dict[str, Any]]:
    events = []
    for block in body.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        assert fields["event"] == "transcript"
        data = json.loads(fields["data"])
        assert int(fields["id"]) == data["id"]
        events.append(data)
    return events


def test_self_test_result_lands_in_the_transcript_the_audit_log_and_the_live_view(
    client: TestClient, headers: Headers, world: World,
    devices: Callable[..., SimulatedDevice], sessions: sessionmaker[Session],
) -> None:
    device_id = world.devices["a"][0]  # the device of customer A's ticket
    set_device(sessions, device_id)
    device = devices(device_id)
    session = open_session(client, headers, device_id, ticket_id=world.ticket_ids["a"])
    assert session["active"] and session["device_id"] == device_id
    assert session["ticket_id"] == world.ticket_ids["a"]

    sent = client.post(f"{BASE}/{session['id']}/commands", headers=headers("engineer"),
                       json={"cmd": "self_test"})
    assert sent.status_code == 202, sent.text
    command = sent.json()
    assert command["kind"] == "command"
    assert command["payload"]["reply_to"] == f"vigil/v1/dev/{device_id}/cmd/result"

    result = outcome(client, headers, session["id"], command["command_id"])
    assert result["payload"]["ok"] is True
    assert result["payload"]["output"] == {"passed": True, "checks": {"pump": {"ok": True}}}
    assert [c.id for c in device.received] == [command["command_id"]]
    assert device.received[0].expires == command["payload"]["expires"]
    assert audit_actions(sessions, session["id"]) == [
        "diagnosis.open", "diagnosis.command", "diagnosis.result"]

    closed = client.post(f"{BASE}/{session['id']}/close", headers=headers("engineer"))
    assert closed.status_code == 200 and closed.json()["active"] is False
    live = client.get(f"{BASE}/{session['id']}/events", headers=headers("manager"))
    assert live.status_code == 200
    assert live.headers["content-type"].startswith("text/event-stream")
    events = sse_events(live.text)
    assert [(e["kind"], e["command_id"]) for e in events] == [
        ("command", command["command_id"]), ("result", command["command_id"])]
    resumed = client.get(f"{BASE}/{session['id']}/events",
                         headers={**headers("engineer"), "Last-Event-ID": str(events[0]["id"])})
    assert [e["kind"] for e in sse_events(resumed.text)] == ["result"]
    refused = client.post(f"{BASE}/{session['id']}/commands", headers=headers("engineer"),
                          json={"cmd": "self_test"})
    assert refused.status_code == 409 and "closed" in refused.json()["detail"]


def test_a_device_that_never_answers_gives_a_timeout(
    app: FastAPI, client: TestClient, headers: Headers, world: World,
    sessions: sessionmaker[Session],
) -> None:
    app.state.allow_list = rules.AllowList.parse(
        {"commands": {"self_test": {"timeout_s": 0.5}}, "models": {"*": ["self_test"]}})
    device_id = world.devices["a"][2]
    set_device(sessions, device_id)  # online, but nothing answers on its topics
    session = open_session(client, headers, device_id)
    sent = client.post(f"{BASE}/{session['id']}/commands", headers=headers("engineer"),
                       json={"cmd": "self_test"}).json()

    timeout = outcome(client, headers, session["id"], sent["command_id"], kind="timeout")
    assert timeout["payload"]["cmd"] == "self_test"
    assert [e["kind"] for e in transcript(client, headers, session["id"])] == [
        "command", "timeout"]
    assert audit_actions(sessions, session["id"])[-1] == "diagnosis.timeout"


def test_set_sampling_needs_the_maintenance_state(
    client: TestClient, headers: Headers, world: World,
    devices: Callable[..., SimulatedDevice], sessions: sessionmaker[Session],
) -> None:
    device_id = world.devices["a"][1]
    device = devices(device_id)
    session = open_session(client, headers, device_id)
    url = f"{BASE}/{session['id']}/commands"
    capture = {"cmd": "set_sampling", "args": {"interval_s": 0.1, "duration_s": 30}}

    listed = {c["name"]: c for c in client.get(url, headers=headers("engineer")).json()}
    assert listed["set_sampling"]["available"] is False
    assert listed["set_sampling"]["changes_device"] is True
    assert listed["self_test"]["available"] is True
    refused = client.post(url, headers=headers("engineer"), json=capture)
    assert refused.status_code == 409, refused.text
    assert "maintenance" in refused.json()["detail"]
    assert transcript(client, headers, session["id"]) == []
    assert device.received == []

    # The platform believes maintenance, the device does not: the agent refuses too.
    set_device(sessions, device_id, state="maintenance")
    sent = client.post(url, headers=headers("engineer"), json=capture).json()
    result = outcome(client, headers, session["id"], sent["command_id"])
    assert result["payload"]["ok"] is False and result["payload"]["output"]["refused"] is True
    assert device.sampling_s == 1.0

    device.state = "maintenance"
    sent = client.post(url, headers=headers("engineer"), json=capture).json()
    result = outcome(client, headers, session["id"], sent["command_id"])
    assert result["payload"] == {"cmd": "set_sampling", "ok": True, "ts": result["payload"]["ts"],
                                 "output": {"interval_s": 0.1}, "late": False}
    assert device.sampling_s == 0.1


def test_who_may_open_a_session_and_on_what(
    client: TestClient, headers: Headers, world: World,
) -> None:
    online, offline = world.devices["a"][1], world.devices["a"][0]
    for user in ("customer-a", "admin"):
        answer = client.post(BASE, headers=headers(user), json={"device_id": online})
        assert answer.status_code == 403, (user, answer.text)
    answer = client.post(BASE, headers=headers("engineer"), json={"device_id": offline})
    assert answer.status_code == 409 and "offline" in answer.json()["detail"]
    answer = client.post(BASE, headers=headers("engineer"),
                         json={"device_id": online, "ticket_id": world.ticket_ids["b"]})
    assert answer.status_code == 422 and "ticket_id" in answer.json()["detail"]
    session = open_session(client, headers, online, user="manager")
    assert client.get(f"{BASE}/{session['id']}", headers=headers("customer-a")).status_code == 403
    answer = client.post(f"{BASE}/{session['id']}/commands", headers=headers("engineer"),
                         json={"cmd": "format_disk"})
    assert answer.status_code == 422 and "not allowed" in answer.json()["detail"]


def test_results_survive_an_api_restart(
    app: FastAPI, client: TestClient, headers: Headers, world: World,
    devices: Callable[..., SimulatedDevice], sessions: sessionmaker[Session],
) -> None:
    """The broker keeps the API's session: a result sent while the API is down is recorded."""
    device_id = world.devices["a"][1]
    device = devices(device_id)
    device.client.on_message = lambda *a: None  # answers later, by hand
    session = open_session(client, headers, device_id)
    sent = client.post(f"{BASE}/{session['id']}/commands", headers=headers("engineer"),
                       json={"cmd": "self_test"}).json()
    client.__exit__(None, None, None)  # the API stops; its bus disconnects

    result = protocol.CommandResult(id=sent["command_id"], ok=True, ts=sent["payload"]["expires"],
                                    output={"passed": True})
    device.client.publish(protocol.topic(device_id, "cmd/result"), protocol.encode(result),
                          qos=1).wait_for_publish(5)

    restarted = serve(make_app(app.state.settings, app.state.engine, app.state.telemetry(),
                               app.state.diagnosis.shared_group))
    try:
        entry = outcome(restarted, headers, session["id"], sent["command_id"])
        assert entry["payload"]["output"] == {"passed": True}
    finally:
        restarted.__exit__(None, None, None)
        client.__enter__()  # the fixture closes it again


def test_a_repeated_result_is_recorded_once_and_a_strangers_not_at_all(
    client: TestClient, headers: Headers, world: World,
    devices: Callable[..., SimulatedDevice], sessions: sessionmaker[Session],
) -> None:
    device_id = world.devices["a"][1]
    devices(device_id)
    session = open_session(client, headers, device_id)
    sent = client.post(f"{BASE}/{session['id']}/commands", headers=headers("engineer"),
                       json={"cmd": "self_test"}).json()
    outcome(client, headers, session["id"], sent["command_id"])
    again = protocol.encode(protocol.CommandResult(id=sent["command_id"], ok=False,
                                                   ts=sent["payload"]["expires"], output={}))
    assert store_result(sessions, protocol.topic(device_id, "cmd/result"), again) is False
    assert store_result(sessions, protocol.topic("pump-b1", "cmd/result"), again) is False
    assert store_result(sessions, protocol.topic(device_id, "cmd/result"), b"{}") is False
    with sessions() as db:
        kinds = list(db.scalars(select(TranscriptEntry.kind).where(
            TranscriptEntry.command_id == sent["command_id"])))
    assert sorted(kinds) == ["command", "result"]


def test_with_two_api_processes_each_result_is_recorded_once_and_seen_by_both(
    app: FastAPI, client: TestClient, headers: Headers, world: World,
    devices: Callable[..., SimulatedDevice], sessions: sessionmaker[Session],
) -> None:
    device_id = world.devices["a"][1]
    devices(device_id)
    other = serve(make_app(app.state.settings, app.state.engine, app.state.telemetry(),
                           app.state.diagnosis.shared_group, client_id="second-api"))
    try:
        session = open_session(client, headers, device_id)
        sent = [client.post(f"{BASE}/{session['id']}/commands", headers=headers("engineer"),
                            json={"cmd": "self_test"}).json()["command_id"] for _ in range(6)]
        for command_id in sent:
            outcome(other, headers, session["id"], command_id)
        entries = transcript(client, headers, session["id"])
        results = [e["command_id"] for e in entries if e["kind"] == "result"]
        assert sorted(results) == sorted(sent)
        # The broker shared the results between the two processes.
        assert app.state.diagnosis.recorded > 0 and other.app.state.diagnosis.recorded > 0
        assert app.state.diagnosis.recorded + other.app.state.diagnosis.recorded == len(sent)
    finally:
        other.__exit__(None, None, None)


def test_live_readings_stream_from_the_telemetry_store(
    client: TestClient, headers: Headers, world: World, store: EmbeddedStore,
) -> None:
    device_id = world.devices["a"][1]
    session = open_session(client, headers, device_id)
    now = int(time.time() * 1000)
    store.write([Point(device=device_id, ts=now - 200 + i * 100, metrics={"flow": float(i)})
                 for i in range(3)])
    store.write([Point(device=world.devices["b"][1], ts=now, metrics={"flow": 9.0})])
    url = f"{BASE}/{session['id']}/readings"

    live = client.get(url, params={"wait_s": 0}, headers=headers("engineer"))
    assert live.status_code == 200
    assert live.headers["content-type"].startswith("text/event-stream")
    blocks = [dict(line.split(": ", 1) for line in b.splitlines())
              for b in live.text.strip().split("\n\n")]
    assert [json.loads(b["data"]) for b in blocks] == [
        {"ts": now - 200 + i * 100, "metrics": {"flow": float(i)}} for i in range(3)]
    assert [int(b["id"]) for b in blocks] == [now - 200, now - 100, now]
    resumed = client.get(url, params={"wait_s": 0},
                         headers={**headers("engineer"), "Last-Event-ID": str(now - 100)})
    assert resumed.text.count("event: reading") == 1 and f"id: {now}\n" in resumed.text
    assert client.get(url, params={"wait_s": 0},
                      headers=headers("customer-a")).status_code == 403


def test_a_command_the_broker_never_took_is_closed_at_once(
    app: FastAPI, client: TestClient, headers: Headers, world: World,
    sessions: sessionmaker[Session],
) -> None:
    """With its bus disconnected the API cannot publish: the command is recorded as undelivered."""
    session = open_session(client, headers, world.devices["a"][1])
    app.state.diagnosis.client.disconnect()
    wait_for(lambda: not app.state.diagnosis.client.is_connected(), what="the bus to disconnect")
    sent = client.post(f"{BASE}/{session['id']}/commands", headers=headers("engineer"),
                       json={"cmd": "self_test"})
    assert sent.status_code == 202, sent.text
    entries = transcript(client, headers, session["id"])
    assert [e["kind"] for e in entries] == ["command", "timeout"]
    assert "not connected" in entries[1]["payload"]["undelivered"]
    assert audit_actions(sessions, session["id"])[-1] == "diagnosis.undelivered"


def test_the_live_transcript_shows_a_result_that_arrives_while_it_waits(
    client: TestClient, headers: Headers, world: World,
    devices: Callable[..., SimulatedDevice],
) -> None:
    device_id = world.devices["a"][1]
    device = devices(device_id)
    device.processor.register("self_test", lambda args: time.sleep(1.0) or {"passed": True})
    session = open_session(client, headers, device_id)
    sent = client.post(f"{BASE}/{session['id']}/commands", headers=headers("engineer"),
                       json={"cmd": "self_test"}).json()
    assert [e["kind"] for e in transcript(client, headers, session["id"])] == ["command"]
    started = time.monotonic()
    live = client.get(f"{BASE}/{session['id']}/events", params={"wait_s": 4},
                      headers=headers("engineer"))
    assert [(e["kind"], e["command_id"]) for e in sse_events(live.text)] == [
        ("command", sent["command_id"]), ("result", sent["command_id"])]
    assert time.monotonic() - started >= 4  # it stayed open for its wait
