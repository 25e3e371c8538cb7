"""An MQTT 5 client for tests that remembers what the broker did to it."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
import pytest

from vigil.servers import Mosquitto


class Peer:
    """An MQTT 5 client that remembers what happened to it."""

    def __init__(self, broker: Mosquitto, username: str, password: str,
                 client_id: str | None = None, will_topic: str | None = None,
                 port: int | None = None) -> None:
        """``port``: another of the broker's listeners than its first."""
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.reason: mqtt.ReasonCode | None = None
        self.messages: list[tuple[str, bytes]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or username, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(username, password)
        if will_topic:
            self.client.will_set(will_topic, b'{"v":1,"state":"offline"}', qos=1, retain=False)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = lambda _c, _u, msg: self.messages.append(
            (msg.topic, msg.payload))
        self.client.connect(broker.host, port or broker.port, keepalive=10)
        self.client.loop_start()

    def _on_connect(self, _c: object, _u: object, _f: object, reason: mqtt.ReasonCode,
                    _p: object) -> None:
        self.reason = reason
        if reason.is_failure:
            self.disconnected.set()
        else:
            self.connected.set()

    def _on_disconnect(self, *_args: object) -> None:
        self.disconnected.set()

    def wait_connected(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.connected.is_set():
                return True
            if self.disconnected.is_set():
                return False
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connect_eventually(broker: Mosquitto, user: str, password: str,
                       timeout: float = 10.0, *, client_id: str | None = None,
                       port: int | None = None) -> Peer:
    """The broker reloads its files asynchronously after SIGHUP: retry until accepted."""
    deadline = time.monotonic() + timeout
    while True:
        peer = Peer(broker, user, password, client_id=client_id, port=port)
        if peer.wait_connected():
            return peer
        peer.close()
        if time.monotonic() > deadline:
            pytest.fail(f"{user} was never accepted: {peer.reason}")
        time.sleep(0.2)
