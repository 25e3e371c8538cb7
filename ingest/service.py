"""The ingest service: subscriber, pipeline and HTTP endpoint, wired from settings.

Start order: registry, pipeline, HTTP endpoint, then the MQTT session (so no
message arrives before something can take it). Stop order is the reverse of
what matters for data: refuse new messages, write and acknowledge everything
already received, then disconnect, keeping the broker session.
"""

from __future__ import annotations

import logging
import time

from edge_agent.protocol import MAX_PAYLOAD_BYTES
from ingest.batcher import DEAD_LETTER_KEEP_BYTES
from ingest.endpoints import Endpoints
from ingest.inbox import Inbox
from ingest.metrics import IngestMetrics
from ingest.pipeline import Pipeline, PipelineOptions
from ingest.records import IngestRecords
from ingest.registry import KnownDevices
from ingest.subscriber import Subscriber, default_client_id
from vigil.config import Settings
from vigil.memory import MemoryRelease
from vigil.telemetry.store import TelemetryStore

log = logging.getLogger(__name__)


class IngestService:
    def __init__(
        self,
        settings: Settings,
        store: TelemetryStore,
        records: IngestRecords,
        *,
        metrics_port: int | None = None,
        owns_stores: bool = False,
        memory: MemoryRelease | None = None,
    ) -> None:
        """``owns_stores``: ``stop`` closes the store and the records too (``open_service``);
        ``memory``: the writer hands freed memory back through it (``vigil.memory``)."""
        s = settings.ingest
        self.settings = settings
        self.store = store
        self.records = records
        self.owns_stores = owns_stores
        self.metrics = IngestMetrics()
        self.inbox = Inbox(max_messages=s.receive_maximum + 1, max_bytes=s.max_inbox_bytes)
        self.registry = KnownDevices(records.load_devices, refresh_s=s.registry_refresh_s)
        self.subscriber = Subscriber(
            settings.mqtt,
            self.inbox,
            self.metrics,
            client_id=s.client_id or default_client_id(s.partition),
            shared_group=s.shared_group,
            session_expiry_s=s.session_expiry_s,
            partition=s.partition,
            partitions=s.partitions,
            receive_maximum=s.receive_maximum,
            keep_bytes=DEAD_LETTER_KEEP_BYTES,
            max_payload_bytes=MAX_PAYLOAD_BYTES,
        )
        self.pipeline = Pipeline(
            self.inbox,
            store,
            records,
            self.registry,
            self.subscriber.ack,
            self.metrics,
            PipelineOptions.from_settings(s),
            memory=memory,
        )
        port = s.metrics_port if metrics_port is None else metrics_port
        # Port 0 lets the system choose one (several workers on one host); it is logged.
        self.endpoints = Endpoints(
            s.metrics_host, port, self.metrics.registry, self.healthy, self.ready
        )
        self.started = False

    def start(self) -> None:
        self.registry.refresh()
        self.metrics.store_up.set(1)
        self.pipeline.start()
        self.endpoints.start()
        self.subscriber.start()
        self.started = True
        log.info(
            "ingest started",
            extra={
                "client_id": self.subscriber.client_id,
                "group": self.subscriber.shared_group,
                "partition": f"{self.subscriber.partition} of {self.subscriber.partitions}",
                "devices": len(self.registry),
                "http_port": self.endpoints.port,
            },
        )

    def stop(self, timeout: float = 30.0) -> bool:
        """Flush and acknowledge what was received, then disconnect; True if all was flushed."""
        self.inbox.close()
        clean = self.pipeline.stop(timeout)
        self.subscriber.stop()
        self.endpoints.stop()
        if self.owns_stores:
            self.store.close()
            self.records.close()
        log.info("ingest stopped", extra={"flushed": clean})
        return clean

    @property
    def alive(self) -> bool:
        """Whether the worker threads run; a service that is not alive should be restarted."""
        return self.pipeline.alive

    def healthy(self) -> tuple[bool, dict[str, object]]:
        return self.pipeline.alive, {"threads": self.pipeline.alive}

    def ready(self) -> tuple[bool, dict[str, object]]:
        failing = self.pipeline.store_failing_since
        detail: dict[str, object] = {
            # Subscribed, not merely connected: on a first start the broker keeps no
            # session for ingest yet, and drops what is published before the subscription.
            "broker": self.subscriber.subscribed,
            "registry": self.registry.loaded,
            "store": failing is None,
            "sql": self.pipeline.sql_failing_since is None,
        }
        if failing is not None:
            detail["store_failing_s"] = round(time.monotonic() - failing, 1)
        return all(
            v for k, v in detail.items() if k != "store_failing_s"
        ) and self.pipeline.alive, detail


def open_service(settings: Settings, *, metrics_port: int | None = None,
                 memory: MemoryRelease | None = None) -> IngestService:
    """The service with the telemetry store and SQL database the settings name, closed on stop."""
    from vigil.telemetry import open_store

    return IngestService(
        settings,
        open_store(settings),
        IngestRecords.from_url(
            settings.sql_url, max_dead_letters=settings.ingest.max_dead_letters
        ),
        metrics_port=metrics_port,
        owns_stores=True,
        memory=memory,
    )
