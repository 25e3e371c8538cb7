"""Diagnosis over MQTT: commands out on each device's ``cmd`` topic, results into the transcript.

One ``DiagnosisBus`` runs in each API process, started and stopped by the
app's lifespan. It publishes the commands the API put on record (QoS 1), and
takes its share of every device's ``cmd/result`` through an MQTT 5 shared
subscription (``$share/diagnosis/vigil/v1/dev/+/cmd/result``): with two API
processes each result reaches one of them and is written to the database,
which every process reads, so the engineer sees it whichever serves them.

A result is acknowledged to the broker only once its transcript entry is
committed, and the session at the broker persists (a stable client id, no
clean start), so a result that arrives while the API restarts is delivered
when it is back. Mosquitto also gives a stopped member of a shared group its
share of the messages, queued until it returns: with two processes, half the
results of the time one is down wait for it (and may show as timeouts first,
then as late results). So the session at the broker lasts minutes, not days:
a process retired for good strands its share only that long.

The bus also sweeps, every ``sweep_s``, the commands past their expiry into
timeout entries, and closes expired sessions.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy.orm import Session, sessionmaker

from edge_agent import protocol
from vigil.config import MqttSettings
from vigil.db.base import utcnow
from vigil.db.session import transaction
from vigil.diagnosis import service
from vigil.net import mqtt_client

log = logging.getLogger(__name__)

SHARED_GROUP = "diagnosis"
SESSION_EXPIRY_S = 120
PUBLISH_TIMEOUT_S = 5.0
# Attempts to write one result before it is left unacknowledged (redelivered on reconnect).
WRITE_ATTEMPTS = 5


class BrokerUnavailable(RuntimeError):
    """The broker did not take a command in time."""


def default_client_id(port: int) -> str:
    """Stable across restarts of the API on one host and port, so the broker resumes its session."""
    return f"vigil-api-diag-{socket.gethostname()}-{port}"[:64]


def sweep(sessions: sessionmaker[Session]) -> int:
    """Timeouts for unanswered commands past their expiry, and expired sessions closed.

    Looks first in a read transaction, so an idle sweep never takes SQLite's write lock.
    """
    with sessions() as db, db.begin():
        if not service.sweep_due(db, now=utcnow()):
            return 0
    with transaction(sessions) as db:
        now = utcnow()
        timed_out = service.record_timeouts(db, now=now)
        service.expire_sessions(db, now=now)
        return len(timed_out)


def store_result(sessions: sessionmaker[Session], topic: str, payload: bytes) -> bool:
    """Write one ``cmd/result`` message; False when it is not a result to keep (logged)."""
    try:
        device_id, kind = protocol.parse_topic(topic)
        if kind != "cmd/result":
            raise protocol.ProtocolError(f"topic {topic!r} is not a cmd/result topic")
        result = protocol.decode_command_result(payload)
    except protocol.ProtocolError as exc:
        log.warning("refused a command result", extra={"topic": topic, "reason": str(exc)})
        return False
    with transaction(sessions) as db:
        entry = service.record_result(db, device_id=device_id, result=result, now=utcnow())
    return entry is not None


class DiagnosisBus:
    """The API process's MQTT link for diagnosis: publish commands, record results, sweep."""

    def __init__(self, settings: MqttSettings, sessions: sessionmaker[Session], *,
                 client_id: str, shared_group: str = SHARED_GROUP, sweep_s: float = 1.0,
                 session_expiry_s: int = SESSION_EXPIRY_S) -> None:
        self.settings = settings
        self.sessions = sessions
        self.client_id = client_id
        self.shared_group = shared_group
        self.sweep_s = sweep_s
        self.session_expiry_s = session_expiry_s
        self._subscribed = threading.Event()
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None
        # Results this process wrote to a transcript (a repeat or a stranger's is not counted).
        self.recorded = 0
        self.client = mqtt_client(settings, client_id, manual_ack=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=15)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    def start(self) -> None:
        self._stop.clear()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        self.client.connect_async(self.settings.host, self.settings.port,
                                  keepalive=self.settings.keepalive, clean_start=False,
                                  properties=props)
        self.client.loop_start()
        self._sweeper = threading.Thread(target=self._sweep_loop, name="diagnosis-sweep",
                                         daemon=True)
        self._sweeper.start()

    def stop(self) -> None:
        """Disconnect, keeping the session at the broker for results that come meanwhile."""
        self._stop.set()
        if self._sweeper is not None:
            self._sweeper.join(timeout=10)
        self.client.disconnect()
        self.client.loop_stop()

    def wait_subscribed(self, timeout: float) -> bool:
        return self._subscribed.wait(timeout)

    def deliver(self, outgoing: service.Outgoing) -> bool:
        """Publish a committed command; if the broker does not take it, say so in the transcript.

        Runs after the commit that put the command on record, so a failure here is
        recorded in a transaction of its own, and the engineer need not wait for the expiry.
        """
        try:
            self.publish(outgoing)
        except BrokerUnavailable as exc:
            log.warning("command %s not delivered: %s", outgoing.message.id, exc)
            with transaction(self.sessions) as db:
                service.record_undelivered(db, command_id=outgoing.message.id, reason=str(exc),
                                           now=utcnow())
            return False
        return True

    def publish(self, outgoing: service.Outgoing) -> None:
        """Send a committed command at QoS 1 and wait for the broker to take it."""
        info = self.client.publish(outgoing.topic, protocol.encode(outgoing.message), qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise BrokerUnavailable(f"the broker is not connected ({mqtt.error_string(info.rc)})")
        info.wait_for_publish(PUBLISH_TIMEOUT_S)
        if not info.is_published():
            raise BrokerUnavailable("the broker did not acknowledge the command in time")

    # --- the sweep thread ------------------------------------------------------

    def _sweep_loop(self) -> None:
        while not self._stop.wait(self.sweep_s):
            try:
                sweep(self.sessions)
            except Exception:  # a busy or absent database must not end the sweeps
                log.exception("diagnosis sweep failed")

    # --- callbacks (network thread) -------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                    properties: Any) -> None:
        if reason_code.is_failure:
            log.warning("broker refused the connection", extra={"reason": str(reason_code)})
            return
        client.subscribe([(protocol.subscription("cmd/result", shared_group=self.shared_group),
                           SubscribeOptions(qos=1))])

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any,
                      properties: Any) -> None:
        if any(rc.is_failure for rc in reason_codes):
            log.error("broker refused the cmd/result subscription")
            return
        self._subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        self._subscribed.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        for attempt in range(WRITE_ATTEMPTS):
            try:
                if store_result(self.sessions, message.topic, bytes(message.payload)):
                    self.recorded += 1
            except Exception:
                log.exception("could not record a command result (attempt %d)", attempt + 1)
                time.sleep(min(0.2 * 2 ** attempt, 2.0))
                continue
            if message.qos:
                client.ack(message.mid, message.qos)
            return
