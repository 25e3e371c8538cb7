"""The broker ACL shipped in deploy/mosquitto, and the agent over TLS with a client certificate."""

from __future__ import annotations

import subprocess
import threading
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent import protocol
from edge_agent.agent import Agent
from edge_agent.config import load_config
from tests.conftest import start_or_skip
from tests.edge_agent.conftest import REPO, wait_for, write_config
from vigil.servers import Mosquitto

pytestmark = pytest.mark.servers

ACL = REPO / "deploy" / "mosquitto" / "acl"
PASSWORD = "device-password-for-tests"


def password_file(path: Path, users: list[str]) -> Path:
    for i, user in enumerate(users):
        subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if i == 0 else []), str(path), user,
                        PASSWORD], check=True, capture_output=True)
    return path


class Client:
    """A logged-in MQTT client that records what it receives."""

    def __init__(self, port: int, user: str) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.ready = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2,
                             client_id=f"{user}-{uuid.uuid4().hex[:4]}", protocol=mqtt.MQTTv5)
        self.c.username_pw_set(user, PASSWORD)
        self.c.on_connect = lambda *a: self.ready.set()
        self.c.on_message = lambda c, u, m: self.got.append((m.topic, m.payload))
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert self.ready.wait(30)

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.c.on_subscribe = lambda *a: done.set()
        self.c.subscribe(topic, qos=1)
        assert done.wait(30)

    def publish(self, topic: str, payload: bytes = b"{}") -> None:
        self.c.publish(topic, payload, qos=1).wait_for_publish(30)

    def try_publish(self, topic: str, payload: bytes) -> None:
        """A publish the broker may refuse, even by closing the connection."""
        try:
            self.c.publish(topic, payload, qos=1).wait_for_publish(5)
        except (RuntimeError, ValueError):
            pass

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def test_acl_confines_each_device_to_its_own_topics(tmp_path: Path) -> None:
    pw = password_file(tmp_path / "passwd", ["pump-1", "pump-2", "vigil-ingest", "vigil-api"])
    broker = start_or_skip(Mosquitto(tmp_path / "broker", extra_config=[
        "allow_anonymous false", f"password_file {pw}", f"acl_file {ACL}"]))
    clients: list[Client] = []
    try:
        ingest, api, pump1, pump2 = (Client(broker.port, u) for u in
                                     ("vigil-ingest", "vigil-api", "pump-1", "pump-2"))
        clients += [ingest, api, pump1, pump2]
        for kind in ("telemetry", "status", "events", "cmd/result"):
            ingest.subscribe(protocol.subscription(kind))  # cmd/result: not ingest's to read
        api.subscribe(protocol.subscription("cmd/result"))
        pump1.subscribe(protocol.topic("pump-1", "cmd"))
        pump1.subscribe(protocol.topic("pump-2", "cmd"))  # not allowed: receives nothing
        pump2.subscribe(protocol.topic("pump-2", "cmd"))

        pump1.publish(protocol.topic("pump-1", "telemetry"), b"own")
        pump1.publish(protocol.topic("pump-1", "cmd/result"), b"result")
        api.publish(protocol.topic("pump-2", "cmd"), b"from the api")
        for topic, payload in ((protocol.topic("pump-2", "telemetry"), b"forged"),
                               (protocol.topic("pump-2", "cmd"), b"device sending commands"),
                               (protocol.topic("pump-2", "status"), b"forged status"),
                               (protocol.topic("pump-2", "events"), b"forged event")):
            intruder = Client(broker.port, "pump-1")
            clients.append(intruder)
            intruder.try_publish(topic, payload)
        # The broker has settled every forged publish before this one: once ingest has the
        # marker, a forged message let through would have reached it already.
        pump1.publish(protocol.topic("pump-1", "events"), b"marker")

        wait_for(lambda: (protocol.topic("pump-1", "events"), b"marker") in ingest.got
                 and pump2.got and api.got, 30, "the allowed messages")
        assert sorted(p for _, p in ingest.got) == [b"marker", b"own"]
        assert api.got == [(protocol.topic("pump-1", "cmd/result"), b"result")]
        assert pump2.got == [(protocol.topic("pump-2", "cmd"), b"from the api")]
        assert pump1.got == []
    finally:
        for c in clients:
            c.close()
        broker.stop()


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certificates(d: Path) -> dict[str, Path]:
    """A fleet CA, a broker certificate for 127.0.0.1 and a device client certificate."""
    p = {name: d / name for name in ("ca.key", "ca.crt", "broker.key", "broker.csr", "broker.crt",
                                     "dev.key", "dev.csr", "dev.crt", "san.cnf")}
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             "/CN=vigil test fleet CA", "-keyout", str(p["ca.key"]), "-out", str(p["ca.crt"]))
    p["san.cnf"].write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n")
    for name, cn in (("broker", "127.0.0.1"), ("dev", "pump-tls")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
                 "-keyout", str(p[f"{name}.key"]), "-out", str(p[f"{name}.csr"]))
        extra = ["-extfile", str(p["san.cnf"])] if name == "broker" else []
        _openssl("x509", "-req", "-in", str(p[f"{name}.csr"]), "-CA", str(p["ca.crt"]),
                 "-CAkey", str(p["ca.key"]), "-CAcreateserial", "-days", "2",
                 "-out", str(p[f"{name}.crt"]), *extra)
    return p


def test_agent_over_tls_with_client_certificate_and_password(tmp_path: Path) -> None:
    certs = make_certificates(tmp_path)
    pw = password_file(tmp_path / "passwd", ["pump-tls", "vigil-ingest"])
    broker = Mosquitto(tmp_path / "broker")
    tls_port = broker.port
    # The TLS listener replaces the plain one; the ingest user reads on a second, plain port.
    plain = Mosquitto(tmp_path / "unused")  # only to borrow a free port number
    broker.extra_config = [
        f"cafile {certs['ca.crt']}", f"certfile {certs['broker.crt']}",
        f"keyfile {certs['broker.key']}", "require_certificate true",
        f"listener {plain.port} 127.0.0.1",
        "allow_anonymous false", f"password_file {pw}", f"acl_file {ACL}"]
    start_or_skip(broker)
    reader = None
    agent = None
    thread = None
    try:
        reader = Client(plain.port, "vigil-ingest")
        reader.subscribe(f"{protocol.TOPIC_ROOT}/+/telemetry")
        config = load_config(write_config(
            tmp_path / "agent.toml", device_id="pump-tls", port=tls_port,
            outbox_path=tmp_path / "outbox.db",
            device={"model": "infusion_pump"}, source={"model": "infusion_pump"},
            sampling={"interval_s": 0.2},
            broker={"ca_file": str(certs["ca.crt"]), "cert_file": str(certs["dev.crt"]),
                    "key_file": str(certs["dev.key"]), "password": PASSWORD}), environ={})
        agent = Agent(config)
        thread = threading.Thread(target=agent.run, daemon=True)
        thread.start()
        wait_for(lambda: len(reader.got) >= 3, 60, "telemetry over TLS")
        assert all(t == protocol.topic("pump-tls", "telemetry") for t, _ in reader.got)

        # Without the client certificate the broker refuses the device at the TLS handshake.
        bad = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        bad.tls_set(ca_certs=str(certs["ca.crt"]))
        bad.username_pw_set("pump-tls", PASSWORD)
        connected = threading.Event()
        bad.on_connect = lambda c, u, f, reason, p: connected.set() if not reason.is_failure \
            else None
        try:
            bad.connect("127.0.0.1", tls_port)
            bad.loop_start()
            assert not connected.wait(3)
        except OSError:
            pass  # refused during the handshake itself
        finally:
            bad.loop_stop()
    finally:
        if agent:
            agent.stop()
        if thread:
            thread.join(30)
        if reader:
            reader.close()
        broker.stop()
