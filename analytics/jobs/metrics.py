"""Prometheus metrics of one `vigil jobs` worker (its own registry, so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class JobMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.runs = Counter(
            "vigil_job_runs", "Job passes that did work, by job", ["job"], registry=r)
        self.failures = Counter(
            "vigil_job_failures", "Job passes or units of work that failed, by job", ["job"],
            registry=r)
        self.duration = Histogram(
            "vigil_job_duration_seconds", "Duration of one job pass", ["job"],
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900), registry=r)
        self.units = Counter(
            "vigil_job_units", "Units of work done (devices scored, fleet-wide runs), by job",
            ["job"], registry=r)
        self.lag = Gauge(
            "vigil_job_lag_seconds",
            "Newest telemetry minus the oldest scoring watermark among devices that have data",
            ["job"], registry=r)
        self.last_success = Gauge(
            "vigil_job_last_success_timestamp_seconds", "When a pass of the job last succeeded",
            ["job"], registry=r)
        self.scored_steps = Counter(
            "vigil_scoring_steps", "Resampled device steps scored", registry=r)
        self.scored_samples = Counter(
            "vigil_scoring_samples", "Metric values scored (steps x metrics present)", registry=r)
        self.alarms = Counter("vigil_scoring_alarms", "Anomaly alarms raised", registry=r)
        self.resets = Counter(
            "vigil_scoring_resets",
            "Devices whose detectors started afresh (repair, step change, unreadable state)",
            registry=r)
        self.leases_lost = Counter(
            "vigil_job_leases_lost", "Units whose lease another worker took over", ["job"],
            registry=r)
        self.resident = Gauge(
            "vigil_job_resident_memory_bytes",
            "Resident memory of the worker after its last pass that did work", registry=r)
        self.returned = Counter(
            "vigil_job_memory_returned_bytes",
            "Memory freed by passes and handed back to the system after them, by job", ["job"],
            registry=r)
