"""MQTT sessions of devices, driven by one selector loop.

``Link`` is one device's MQTT 5 session: persistent (``clean_start=False`` and a
session expiry), QoS 1, keepalive, TLS and username/password, a retained
offline status as its will, and reconnects with exponential backoff and jitter.
``Reactor`` drives any number of links from one thread with a selector, using
paho's external-loop hooks, so one process can carry hundreds of devices
without a thread each. The agent runs one link on it, the simulator many.
"""

from __future__ import annotations

import contextlib
import logging
import random
import selectors
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent import protocol
from edge_agent.backoff import Backoff

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """Where and how to connect; the device id is the MQTT client id and default user name."""

    host: str = "127.0.0.1"
    port: int = 1883
    keepalive_s: int = 30
    username: str = ""
    password: str = ""
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    session_expiry_s: int = 7 * 86400
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    connect_timeout_s: float = 10.0


class LinkListener(Protocol):
    """What a link reports to its owner."""

    def on_online(self, link: Link) -> None: ...

    def on_offline(self, link: Link) -> None: ...

    def on_ack(self, link: Link, seq: int) -> None: ...

    def on_refused(self, link: Link, seq: int) -> None: ...

    def on_command(self, link: Link, payload: bytes) -> None: ...


class Link:
    """One device's MQTT session; publish only through here so acknowledgements are tracked."""

    def __init__(self, device_id: str, settings: BrokerSettings, listener: LinkListener,
                 *, offline_status: Callable[[], bytes], rng: random.Random | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.device_id = protocol.validate_device_id(device_id)
        self.settings = settings
        self.listener = listener
        self._offline_status = offline_status
        self._monotonic = monotonic
        self.backoff = Backoff(settings.backoff_initial_s, settings.backoff_max_s, rng=rng)
        self.connected = False
        self.next_attempt = 0.0
        self.connects = 0
        self.last_error = ""
        self._started = False
        self._tracked: dict[int, int] = {}
        self.reactor: Reactor | None = None
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id,
                             protocol=mqtt.MQTTv5, reconnect_on_failure=False)
        client.max_queued_messages = 0
        client.max_inflight_messages = 0
        client.connect_timeout = settings.connect_timeout_s
        client.username_pw_set(settings.username or device_id, settings.password or None)
        if settings.ca_file or settings.cert_file:
            client.tls_set(ca_certs=settings.ca_file or None,
                           certfile=settings.cert_file or None,
                           keyfile=settings.key_file or None,
                           cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.suppress_exceptions = True
        self.client = client

    # --- topics --------------------------------------------------------------

    def topic(self, kind: protocol.Kind) -> str:
        return protocol.topic(self.device_id, kind)

    # --- connection ----------------------------------------------------------

    def attempt(self) -> None:
        """Try to (re)connect now; on failure schedule the next try."""
        self.client.will_set(self.topic("status"), self._offline_status(), qos=1, retain=True)
        try:
            if not self._started:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = self.settings.session_expiry_s
                self._started = True
                self.client.connect(self.settings.host, self.settings.port,
                                    keepalive=self.settings.keepalive_s, clean_start=False,
                                    properties=props)
            else:
                self.client.reconnect()
        except (OSError, ssl.SSLError, ValueError) as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._schedule_retry()

    def _schedule_retry(self) -> None:
        delay = self.backoff.next_delay()
        self.next_attempt = self._monotonic() + delay
        log.debug("%s: next connection attempt in %.1f s", self.device_id, delay)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any,
                    reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused the connection: {reason}"
            log.warning("%s: %s", self.device_id, self.last_error)
            client.disconnect()
            return
        self.connected = True
        self.connects += 1
        self.last_error = ""
        self.backoff.reset()
        client.subscribe(self.topic("cmd"), qos=1)
        self.listener.on_online(self)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any,
                       reason: Any, properties: Any) -> None:
        was = self.connected
        self.connected = False
        if str(reason) not in ("Success", "Normal disconnection"):
            self.last_error = f"disconnected: {reason}"
        self._schedule_retry()
        if was:
            self.listener.on_offline(self)

    def close(self) -> None:
        """Leave cleanly: the broker discards the will, so publish the offline status first."""
        self._started = True
        self.connected = False
        with contextlib.suppress(Exception):
            self.client.disconnect()
            self.client.loop_write()
        self.next_attempt = float("inf")

    # --- publishing ------------------------------------------------------------

    def publish(self, kind: protocol.Kind, payload: bytes, *, retain: bool = False,
                seq: int | None = None, topic: str | None = None) -> None:
        """QoS 1 publish; with ``seq`` the acknowledgement is reported to the listener."""
        info = self.client.publish(topic or self.topic(kind), payload, qos=1, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise RuntimeError(f"publish refused by the client: {mqtt.error_string(info.rc)}")
        if seq is not None:
            self._tracked[info.mid] = seq

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int,
                    reason: Any, properties: Any) -> None:
        seq = self._tracked.pop(mid, None)
        if seq is None:
            return
        if reason is not None and reason.is_failure:
            log.error("%s: broker refused message seq %d: %s", self.device_id, seq, reason)
            self.listener.on_refused(self, seq)
        else:
            self.listener.on_ack(self, seq)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == self.topic("cmd"):
            self.listener.on_command(self, bytes(message.payload))


class Reactor:
    """One selector loop for many links: reads, writes, keepalives and reconnects."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.selector = selectors.DefaultSelector()
        self.links: list[Link] = []
        self._monotonic = monotonic
        self._next_misc = 0.0
        # Another thread calls wake() to cut a select() short (new data to publish).
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, None)

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    def add(self, link: Link) -> None:
        link.reactor = self
        c = link.client
        c.on_socket_open = lambda client, userdata, sock: self._register(sock, link)
        c.on_socket_close = lambda client, userdata, sock: self._unregister(sock)
        c.on_socket_register_write = lambda client, userdata, sock: self._want(sock, link, True)
        c.on_socket_unregister_write = lambda client, userdata, sock: self._want(sock, link, False)
        self.links.append(link)

    def _register(self, sock: Any, link: Link) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(sock)
        self.selector.register(sock, selectors.EVENT_READ, link)

    def _unregister(self, sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.selector.unregister(sock)

    def _want(self, sock: Any, link: Link, write: bool) -> None:
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if write else 0)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.selector.modify(sock, events, link)

    def poll(self, timeout: float) -> None:
        """Wait up to ``timeout`` for network events and handle them, then the housekeeping."""
        events = self.selector.select(max(0.0, timeout))
        for key, mask in events:
            if key.data is None:
                with contextlib.suppress(BlockingIOError, OSError):
                    self._wake_r.recv(4096)
                continue
            link: Link = key.data
            if mask & selectors.EVENT_READ:
                link.client.loop_read()
                sock = link.client.socket()
                while sock is not None and getattr(sock, "pending", lambda: 0)() > 0:
                    link.client.loop_read()
                    sock = link.client.socket()
            if mask & selectors.EVENT_WRITE:
                link.client.loop_write()
        now = self._monotonic()
        if now >= self._next_misc:
            self._next_misc = now + 0.5
            for link in self.links:
                if link.client.socket() is not None:
                    link.client.loop_misc()
                elif not link.connected and now >= link.next_attempt:
                    link.attempt()

    def flush(self) -> None:
        """Write whatever is queued without waiting for the selector."""
        for link in self.links:
            if link.client.want_write():
                link.client.loop_write()

    def close(self) -> None:
        for link in self.links:
            link.close()
        self.selector.close()
        self._wake_r.close()
        self._wake_w.close()
