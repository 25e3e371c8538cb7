"""Prometheus metrics of one ingest service.

Each service has its own registry, so several can run in one process (tests)
without their counts mixing. Rates (messages and samples per second) are
``rate()`` over the counters in Prometheus.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.messages = Counter(
            "vigil_ingest_messages",
            "Messages received, by kind and outcome",
            ["kind", "outcome"],
            registry=r,
        )
        self.samples = Counter(
            "vigil_ingest_samples", "Telemetry samples written durably to the store", registry=r
        )
        self.dead_letters = Counter(
            "vigil_ingest_dead_letters", "Messages dead-lettered, by reason", ["reason"], registry=r
        )
        self.store_errors = Counter(
            "vigil_ingest_store_errors",
            "Failed writes to the telemetry store or SQL database",
            ["store"],
            registry=r,
        )
        self.acks = Counter("vigil_ingest_acks", "Messages acknowledged to the broker", registry=r)
        self.foreign = Counter(
            "vigil_ingest_foreign_messages",
            "Messages of devices in other workers' partitions, acknowledged unprocessed",
            registry=r,
        )
        self.batch_seconds = Histogram(
            "vigil_ingest_batch_seconds",
            "Time to make one batch durable (retries included)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )
        self.batch_samples = Histogram(
            "vigil_ingest_batch_samples",
            "Samples per batch",
            buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 25000),
            registry=r,
        )
        self.lag = Gauge(
            "vigil_ingest_lag_seconds",
            "From receipt of the oldest message of the last batch to its acknowledgement",
            registry=r,
        )
        self.inbox_messages = Gauge(
            "vigil_ingest_inbox_messages", "Received messages waiting for the worker", registry=r
        )
        self.buffer_fill = Gauge(
            "vigil_ingest_buffer_fill", "Fill of the bounded in-memory buffers, 0 to 1", registry=r
        )
        self.buffered_samples = Gauge(
            "vigil_ingest_buffered_samples", "Samples held in memory, not yet durable", registry=r
        )
        self.connected = Gauge(
            "vigil_ingest_broker_connected", "1 while connected to the MQTT broker", registry=r
        )
        self.store_up = Gauge(
            "vigil_ingest_store_up", "1 while the last telemetry write succeeded", registry=r
        )
        self.resident = Gauge(
            "vigil_ingest_resident_memory_bytes",
            "Resident memory of the process after the writer's last trim",
            registry=r,
        )
        self.memory_returned = Counter(
            "vigil_ingest_memory_returned_bytes",
            "Freed memory handed back to the system by the writer's trims",
            registry=r,
        )
