"""The MQTT side of ingest: a persistent MQTT 5 session with plain subscriptions, acked by hand.

The broker keeps this session's subscriptions and messages while ingest is
down and across its own restarts (clean start off, a session expiry,
persistence on). Several workers split the devices by partition
(``ingest/partitions.py``): each receives every report and keeps its
partition's, acknowledging the others at once. Nothing kept is acknowledged on
receipt: the worker acks a message only once what it carries is durable.
Callbacks only hand messages to the inbox, so the network thread never waits
on a database.

Packet ids belong to one connection. After a disconnect the broker sends every
unacknowledged message again, so acks of the old connection are dropped rather
than sent on the new one, where the same id may name another message.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge_agent.protocol import REPORTS, subscription
from ingest.inbox import Inbound, Inbox
from ingest.metrics import IngestMetrics
from ingest.partitions import keeps
from vigil.config import MqttSettings
from vigil.net import mqtt_client

log = logging.getLogger(__name__)

# Receive Maximum is a 16-bit field: the most unacknowledged messages a broker may send.
MAX_RECEIVE_MAXIMUM = 65535


class BurstReadingClient(mqtt.Client):
    """paho's client, reading the socket in large chunks and every waiting packet per wake-up.

    paho reads a packet with several small ``recv`` calls and handles one packet
    per wake-up of its network loop, so in a flood the system calls, not the
    messages, are the cost, and each one hands the GIL to the worker threads and
    back. Here the socket is read 64 KiB at a time into a buffer, and the loop
    reads packets until both buffer and socket are empty before it writes
    (acknowledgements) and keeps the connection alive as usual. The broker's
    Receive Maximum bounds how long such a burst can be.

    This overrides paho's private ``_sock_recv`` and ``loop_read`` and uses its
    ``_sock``, ``_packet_read`` and ``_loop_rc_handle``: the one class that does,
    for paho 2.x as pinned; a test checks they exist.
    """

    CHUNK = 64 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._chunk_sock: object = None
        self._chunk = bytearray()

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._chunk_sock is not self._sock:  # a new connection: nothing buffered belongs to it
            self._chunk_sock = self._sock
            self._chunk = bytearray()
        chunk = self._chunk
        if not chunk:
            data = super()._sock_recv(max(bufsize, self.CHUNK))
            if len(data) <= bufsize:
                return data
            chunk += data
        data = bytes(chunk[:bufsize])
        del chunk[:bufsize]
        return data

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        while True:
            if self._sock is None:
                return mqtt.MQTTErrorCode.MQTT_ERR_NO_CONN
            rc = self._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
            if rc == mqtt.MQTTErrorCode.MQTT_ERR_AGAIN:
                return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS


def readable_topic(message: mqtt.MQTTMessage) -> str:
    """The message's topic, with bytes that are not UTF-8 shown as escapes.

    MQTT requires UTF-8 topics, but a broker may pass on one that is not, and
    paho's ``topic`` then raises. Its raw bytes are only reachable through the
    private ``_topic``: this is the one place that reads it, so a paho upgrade
    that renames it fails here, in this function's test.
    """
    try:
        return message.topic
    except UnicodeDecodeError:
        raw: bytes = message._topic
        return raw.decode("utf-8", errors="backslashreplace")


def default_client_id(partition: int) -> str:
    """The partition's session: the same whichever host or container runs its worker."""
    return f"vigil-ingest-{partition}"


class Subscriber:
    def __init__(
        self,
        settings: MqttSettings,
        inbox: Inbox,
        metrics: IngestMetrics,
        *,
        client_id: str,
        shared_group: str,
        session_expiry_s: int,
        partition: int = 0,
        partitions: int = 1,
        receive_maximum: int,
        keep_bytes: int,
        max_payload_bytes: int,
    ) -> None:
        if not 1 <= receive_maximum <= MAX_RECEIVE_MAXIMUM:
            raise ValueError(
                f"receive_maximum must be 1..{MAX_RECEIVE_MAXIMUM}, got {receive_maximum}"
            )
        self.settings = settings
        self.inbox = inbox
        self.metrics = metrics
        self.client_id = client_id
        self.shared_group = shared_group
        self.partition = partition
        self.partitions = partitions
        self.session_expiry_s = session_expiry_s
        self.receive_maximum = receive_maximum
        self.keep_bytes = keep_bytes
        self.max_payload_bytes = max_payload_bytes
        self._lock = threading.Lock()
        self._epoch = 0
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self.connections = 0
        self.client = self._make_client()

    # --- lifecycle ------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        client = mqtt_client(
            self.settings, self.client_id, client_class=BurstReadingClient, manual_ack=True
        )
        client.reconnect_delay_set(min_delay=1, max_delay=15)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        props.ReceiveMaximum = self.receive_maximum
        self.client.connect_async(
            self.settings.host,
            self.settings.port,
            keepalive=self.settings.keepalive,
            clean_start=False,
            properties=props,
        )
        self.client.loop_start()

    def wait_subscribed(self, timeout: float) -> bool:
        return self._subscribed.wait(timeout)

    def stop(self) -> None:
        """Disconnect, keeping the session (and its unacknowledged messages) at the broker."""
        self.inbox.close()
        self.client.disconnect()
        self.client.loop_stop()
        self._connected.clear()
        self.metrics.connected.set(0)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def subscribed(self) -> bool:
        """Connected with the subscriptions granted: messages published from now on reach us."""
        return self._connected.is_set() and self._subscribed.is_set()

    @property
    def epoch(self) -> int:
        return self._epoch

    # --- acknowledgement --------------------------------------------------------

    def ack(self, acks: list[tuple[int, int]]) -> int:
        """Acknowledge (packet id, epoch) pairs of the current connection; returns how many."""
        sent = 0
        with self._lock:
            current = self._epoch
            if not self._connected.is_set():
                return 0
            for mid, epoch in acks:
                if epoch == current and mid:
                    self.client.ack(mid, 1)
                    sent += 1
        return sent

    # --- callbacks (network thread: keep them quick) ----------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            log.warning("broker refused the connection", extra={"reason": str(reason_code)})
            return
        with self._lock:
            self._epoch += 1
            self._connected.set()
        self.connections += 1
        self.metrics.connected.set(1)
        # Subscribe on every connection, whatever session_present says: a broker that lost or
        # did not restore the session (Mosquitto 2.0 drops shared subscriptions on restart)
        # gets the subscriptions back; one that kept them replaces them with the same.
        log.info(
            "connected to broker",
            extra={
                "session_present": bool(flags.session_present),
                "client_id": self.client_id,
                "host": self.settings.host,
                "port": self.settings.port,
            },
        )
        options = SubscribeOptions(qos=1)
        client.subscribe(
            [(subscription(kind, shared_group=self.shared_group), options) for kind in REPORTS]
        )

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any
    ) -> None:
        failed = [str(rc) for rc in reason_codes if rc.is_failure]
        if failed:
            log.error("broker refused a subscription", extra={"reasons": failed})
            return
        self._subscribed.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        with self._lock:
            self._epoch += 1
            self._connected.clear()
        self._subscribed.clear()
        self.metrics.connected.set(0)
        log.warning("disconnected from broker", extra={"reason": str(reason_code)})

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        topic = readable_topic(message)
        if not keeps(topic, self.partition, self.partitions):
            # Another partition's worker keeps it, from its own session's copy.
            if message.qos:
                client.ack(message.mid, message.qos)
            self.metrics.foreign.inc()
            return
        payload = message.payload
        size = len(payload)
        if size > self.max_payload_bytes:
            # Refused anyway; keep only what the dead letter stores.
            payload = payload[: self.keep_bytes]
        self.inbox.put(
            Inbound(
                mid=message.mid if message.qos else 0,
                epoch=self._epoch,
                topic=topic,
                payload=bytes(payload),
                size=size,
                received_at=time.monotonic(),
                received_ms=int(time.time() * 1000),
            )
        )
