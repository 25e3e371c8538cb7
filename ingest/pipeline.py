"""From received messages to durable writes and acknowledgements.

Two threads: the worker decodes and validates what the network thread put in
the inbox and fills batches; the writer makes each batch durable (telemetry
store, then the SQL database) and only then acknowledges its messages. Batches
are written one after another, in order, so a repeat dropped by the dedup
memory is never acknowledged before the copy it repeats is durable.

When a store is down the writer retries with capped exponential backoff and
the worker stops at a small number of waiting batches; the inbox then fills,
and the broker stops sending once Receive Maximum messages are unacknowledged.
Memory stays bounded and the rest waits at the broker. What a backlog held is
handed back to the system after it is written (``vigil.memory``): the writer
trims at most every ``TRIM_EVERY_S`` after it wrote something.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from edge_agent.protocol import Event, Status, Telemetry, topic
from ingest.batcher import Batch, BatchPolicy, DeadLetterItem, EventItem, StatusItem
from ingest.dedup import RecentSequences
from ingest.inbox import Inbound, Inbox
from ingest.metrics import IngestMetrics
from ingest.presence import LastSeen
from ingest.records import IngestRecords
from ingest.registry import KnownDevices
from ingest.validation import Accepted, FastTelemetry, Rejected, RejectReason, Rules, check_message
from vigil.config import IngestSettings
from vigil.memory import MemoryRelease
from vigil.telemetry.store import Point, TelemetryError, TelemetryStore, WriteRefused

log = logging.getLogger(__name__)

Acker = Callable[[list[tuple[int, int]]], int]

# Batches in memory at once: one being filled, one waiting for the writer, one being written.
BATCHES_IN_MEMORY = 3

# A store error about the data written (permanent), not about the store (passing).
REFUSED_DATA = (TelemetryError, WriteRefused)

# A trim walks the arena's free chunks: 0.2 ms when there is nothing to return, 12 ms
# when it returns 134 MB freed in 64 kB holes (measured on the 2-core development
# machine). Twice a minute costs nothing and keeps what a store outage's backlog
# held from staying resident for the rest of the process's life.
TRIM_EVERY_S = 30.0


@dataclass(frozen=True, slots=True)
class PipelineOptions:
    """How the pipeline batches, judges and retries; the service builds it ``from_settings``."""

    policy: BatchPolicy
    rules: Rules
    dedup_span: int
    last_seen_interval_s: float
    max_backoff_s: float
    min_backoff_s: float = 0.2

    # The writer's queue holds what is neither being filled nor being written.
    max_waiting_batches = BATCHES_IN_MEMORY - 2

    @classmethod
    def from_settings(cls, settings: IngestSettings) -> PipelineOptions:
        return cls(
            policy=batch_policy(settings),
            rules=Rules(max_clock_skew_ms=int(settings.max_clock_skew_s * 1000)),
            dedup_span=settings.dedup_span,
            last_seen_interval_s=settings.last_seen_interval_s,
            max_backoff_s=settings.max_backoff_s,
        )


def batch_policy(settings: IngestSettings) -> BatchPolicy:
    """Batch limits that fit the broker's unacknowledged window and the memory budget.

    Every message of the batches in memory is unacknowledged, so together they
    must fit in Receive Maximum, or the broker would stop sending before a
    batch fills and each batch would wait for its timer.
    """
    s = settings
    return BatchPolicy(
        max_samples=max(1, min(s.batch_size, s.max_buffered_samples // BATCHES_IN_MEMORY)),
        max_messages=max(1, min(s.batch_size, s.receive_maximum // BATCHES_IN_MEMORY)),
        max_age_s=s.batch_interval_s,
    )


@dataclass(frozen=True, slots=True)
class Handover:
    """What the worker hands the writer: a batch and the presence gathered since the last one."""

    batch: Batch
    seen: dict[str, int]


class Pipeline:
    def __init__(
        self,
        inbox: Inbox,
        store: TelemetryStore,
        records: IngestRecords,
        registry: KnownDevices,
        acker: Acker,
        metrics: IngestMetrics,
        options: PipelineOptions,
        *,
        memory: MemoryRelease | None = None,
    ) -> None:
        """``memory``: hands freed memory back after writes (None: never)."""
        self.inbox = inbox
        self.store = store
        self.records = records
        self.registry = registry
        self.acker = acker
        self.metrics = metrics
        self.options = options
        self.dedup = RecentSequences(options.dedup_span)
        self.fast = FastTelemetry()
        self.last_seen = LastSeen()
        self._last_seen_at = time.monotonic()
        self._handovers: queue.Queue[Handover | None] = queue.Queue(
            maxsize=options.max_waiting_batches
        )
        self._stopping = threading.Event()  # finish what was received, then stop
        self._abandon = threading.Event()  # stop now; unacknowledged messages come back later
        self._worker = threading.Thread(target=self._work, name="ingest-worker", daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name="ingest-writer", daemon=True)
        self.buffered_samples = 0
        self._buffered_lock = threading.Lock()
        self.store_failing_since: float | None = None
        self.sql_failing_since: float | None = None
        self.batches_written = 0
        self.memory = memory
        self._trimmed_at = time.monotonic()
        self._wrote_since_trim = False

    # --- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        self._worker.start()
        self._writer.start()

    @property
    def alive(self) -> bool:
        return self._worker.is_alive() and self._writer.is_alive()

    def stop(self, timeout: float = 30.0) -> bool:
        """Write and acknowledge what was received; True if that finished within ``timeout``."""
        self._stopping.set()
        deadline = time.monotonic() + timeout
        self._worker.join(max(0.0, deadline - time.monotonic()))
        self._writer.join(max(0.0, deadline - time.monotonic()))
        clean = not self._worker.is_alive() and not self._writer.is_alive()
        if not clean:
            self._abandon.set()
            self._worker.join(5)
            self._writer.join(5)
        return clean

    # --- worker: decode, validate, batch ---------------------------------------

    def _work(self) -> None:
        policy = self.options.policy
        batch: Batch | None = None
        try:
            while not self._abandon.is_set():
                if not self.registry.loaded:
                    # Without the registry every device looks unknown: judge nothing until it
                    # loads. What was received waits, unacknowledged.
                    if self._stopping.is_set():
                        break
                    self.registry.refresh()
                    if not self.registry.loaded:
                        self._abandon.wait(1.0)
                    continue
                if batch is None:
                    wait = 0.2
                else:
                    wait = policy.wait_s(batch.messages, time.monotonic() - batch.opened_at)
                room = policy.max_messages - (batch.messages if batch else 0)
                items = (
                    self.inbox.take(max(1, room), wait)
                    if not self._stopping.is_set()
                    else self.inbox.take(max(1, room), 0)
                )
                if items:
                    if batch is None:
                        batch = Batch(opened_at=time.monotonic())
                    self._accept(items, batch)
                self.metrics.inbox_messages.set(len(self.inbox))
                self.metrics.buffer_fill.set(self.inbox.fill)
                if batch is not None and (
                    policy.due(batch.samples, batch.messages, time.monotonic() - batch.opened_at)
                    or (self._stopping.is_set() and not items)
                ):
                    self._hand_over(batch)
                    batch = None
                elif self._stopping.is_set() and not items:
                    break
                if not self._stopping.is_set():
                    self.registry.maybe_refresh()
        except Exception:
            log.exception("ingest worker failed")
            raise
        finally:
            self._put(None)

    def _accept(self, items: list[Inbound], batch: Batch) -> None:
        """Sort each message into the batch: points, a dead letter, a status or an event."""
        now_ms = int(time.time() * 1000)
        outcomes: Counter[tuple[str, str]] = Counter()
        rejected: Counter[str] = Counter()
        registry = self.registry
        rules = self.options.rules
        fast = self.fast
        for item in items:
            try:
                accepted = check_message(
                    item.topic,
                    item.payload,
                    size=item.size,
                    now_ms=now_ms,
                    is_known=registry.is_known,
                    rules=rules,
                    fast=fast,
                )
            except Rejected as exc:
                letter = DeadLetterItem.of(
                    item.topic, item.payload, exc.reason, exc.kind, item.size
                )
            except Exception as exc:
                # A bug here must not turn one message into a poison pill redelivered forever.
                log.exception("could not process a message; dead-lettering it")
                letter = DeadLetterItem.of(
                    item.topic,
                    item.payload,
                    f"ingest could not process the message ({type(exc).__name__}: {exc})",
                    RejectReason.INTERNAL,
                    item.size,
                )
            else:
                outcomes[self._sort(accepted, item, batch)] += 1
                batch.add_message(item.mid, item.epoch, item.received_at)
                continue
            batch.dead_letters.append(letter)
            rejected[letter.kind] += 1
            if letter.kind is not RejectReason.INTERNAL:
                outcomes["unknown", "rejected"] += 1
            batch.add_message(item.mid, item.epoch, item.received_at)
        for (kind, outcome), n in outcomes.items():
            self.metrics.messages.labels(kind, outcome).inc(n)
        for reason, n in rejected.items():
            self.metrics.dead_letters.labels(reason).inc(n)

    def _sort(self, accepted: Accepted, item: Inbound, batch: Batch) -> tuple[str, str]:
        """Put an accepted message where it belongs; returns its (kind, outcome) for the metrics."""
        device = accepted.device
        message = accepted.message
        if isinstance(message, Status):
            batch.statuses.append(StatusItem(device, message, item.received_ms))
            return "status", "accepted"
        self.last_seen.record(device, item.received_ms)
        if isinstance(message, Telemetry):
            if not self.dedup.add(("t", device), message.seq):
                return "telemetry", "duplicate"
            tags = self.registry.get(device)
            model, site = (tags.model, tags.site) if tags else ("", "")
            points = batch.points
            for sample in message.samples:
                points.append(Point(device, sample.ts, sample.metrics, model, site))
            return "telemetry", "accepted"
        assert isinstance(message, Event)
        if not self.dedup.add(("e", device), message.seq):
            return "events", "duplicate"
        batch.events.append(EventItem(device, message))
        return "events", "accepted"

    def _hand_over(self, batch: Batch) -> None:
        if (
            time.monotonic() - self._last_seen_at >= self.options.last_seen_interval_s
            or self._stopping.is_set()
        ):
            batch_seen = self.last_seen.drain()
            self._last_seen_at = time.monotonic()
        else:
            batch_seen = {}
        with self._buffered_lock:
            self.buffered_samples += batch.samples
            self.metrics.buffered_samples.set(self.buffered_samples)
        self._put(Handover(batch, batch_seen))

    def _put(self, item: Handover | None) -> None:
        """Queue for the writer, waiting while it is behind (this is the backpressure)."""
        while True:
            try:
                self._handovers.put(item, timeout=0.5)
                return
            except queue.Full:
                if self._abandon.is_set():
                    return

    # --- writer: make durable, then acknowledge ---------------------------------

    def _write_loop(self) -> None:
        while True:
            try:
                item = self._handovers.get(timeout=0.5)
            except queue.Empty:
                if self._abandon.is_set():
                    return
                self._release_memory()
                continue
            if item is None:
                return
            batch, seen = item.batch, item.seen
            started = time.monotonic()
            if not self._make_durable(batch):
                return  # abandoned while a store was down: the broker redelivers
            acked = self.acker(batch.acks)
            done = time.monotonic()
            self.batches_written += 1
            with self._buffered_lock:
                self.buffered_samples -= batch.samples
                self.metrics.buffered_samples.set(self.buffered_samples)
            m = self.metrics
            m.acks.inc(acked)
            m.samples.inc(batch.samples)
            m.batch_seconds.observe(done - started)
            m.batch_samples.observe(batch.samples)
            if batch.oldest_received is not None:
                m.lag.set(done - batch.oldest_received)
            if seen:
                self._write_last_seen(seen)
            self._wrote_since_trim = True
            self._release_memory()

    def _release_memory(self) -> None:
        """Freed memory back to the system, if something was written since the last time and
        the last time is ``TRIM_EVERY_S`` ago."""
        if self.memory is None or not self._wrote_since_trim:
            return
        now = time.monotonic()
        if now - self._trimmed_at < TRIM_EVERY_S:
            return
        self._trimmed_at, self._wrote_since_trim = now, False
        released = self.memory.after_pass()
        if released is not None:
            self.metrics.resident.set(released.after)
            self.metrics.memory_returned.inc(released.returned)

    def _make_durable(self, batch: Batch) -> bool:
        if batch.points and not self._retry("telemetry", lambda: self._write_points(batch)):
            return False
        if batch.has_sql_work and not self._retry("sql", lambda: self._write_sql(batch)):
            return False
        return True

    def _retry(self, store: str, write: Callable[[], None]) -> bool:
        """Run ``write`` until it succeeds; False only if abandoned meanwhile."""
        delay = self.options.min_backoff_s
        while True:
            try:
                write()
            except Exception as exc:
                if self._abandon.is_set():
                    return False
                self.metrics.store_errors.labels(store).inc()
                now = time.monotonic()
                if store == "telemetry":
                    self.metrics.store_up.set(0)
                    self.store_failing_since = self.store_failing_since or now
                else:
                    self.sql_failing_since = self.sql_failing_since or now
                log.warning(
                    "write failed, retrying",
                    extra={
                        "store": store,
                        "error": f"{type(exc).__name__}: {str(exc)[:300]}",
                        "retry_in_s": round(delay, 2),
                    },
                )
                if self._abandon.wait(delay):
                    return False
                delay = min(delay * 2, self.options.max_backoff_s)
                continue
            if store == "telemetry":
                self.metrics.store_up.set(1)
                self.store_failing_since = None
            else:
                self.sql_failing_since = None
            return True

    def _write_points(self, batch: Batch) -> None:
        try:
            self.store.write(batch.points)
        except REFUSED_DATA as exc:
            # Any other error means the store is away or failing: the whole batch is retried.
            # The store is up but refuses some of this data (say, samples older than its
            # retention policy): retrying would stall everyone, so find the points it refuses.
            log.error(
                "store refused a batch; looking for the points it refuses",
                extra={"error": str(exc)[:300]},
            )
            refused: list[DeadLetterItem] = []
            written = self._write_good(batch.points, refused)
            # Only now, so a retry after the store went away meanwhile adds nothing twice.
            batch.points = written
            batch.dead_letters.extend(refused)
            self.metrics.dead_letters.labels(RejectReason.STORE).inc(len(refused))

    def _write_good(self, points: list[Point], refused: list[DeadLetterItem]) -> list[Point]:
        """Write every point the store accepts; the others go to ``refused``. Returns those written.

        A failure that is not about the data (the store went away) propagates, and
        the whole batch is retried; rewriting the points already written is harmless.
        """
        try:
            self.store.write(points)
            return points
        except REFUSED_DATA as exc:
            if len(points) == 1:
                point = points[0]
                refused.append(
                    DeadLetterItem.of(
                        topic(point.device, "telemetry"),
                        repr(point).encode(),
                        f"telemetry store refused the sample: {exc}",
                        RejectReason.STORE,
                    )
                )
                return []
        half = len(points) // 2
        return self._write_good(points[:half], refused) + self._write_good(points[half:], refused)

    def _write_sql(self, batch: Batch) -> None:
        try:
            self.records.write(batch.dead_letters, batch.statuses, batch.events)
        except (OperationalError, InterfaceError):
            raise  # the database is unreachable: retry the whole batch
        except DBAPIError as exc:
            log.error(
                "database refused a batch; writing item by item", extra={"error": str(exc)[:300]}
            )
            self._write_sql_one_by_one(batch)

    def _write_sql_one_by_one(self, batch: Batch) -> None:
        """Dead-letter a status or event the database refuses (say, its device was just deleted)."""
        refused: list[DeadLetterItem] = []
        for status in batch.statuses:
            try:
                self.records.write([], [status], [])
            except (OperationalError, InterfaceError):
                raise
            except DBAPIError as exc:
                refused.append(
                    DeadLetterItem.of(
                        topic(status.device, "status"),
                        repr(status.status).encode(),
                        str(exc)[:500],
                        RejectReason.STORE,
                    )
                )
        for event in batch.events:
            try:
                self.records.write([], [], [event])
            except (OperationalError, InterfaceError):
                raise
            except DBAPIError as exc:
                refused.append(
                    DeadLetterItem.of(
                        topic(event.device, "events"),
                        repr(event.event).encode(),
                        str(exc)[:500],
                        RejectReason.STORE,
                    )
                )
        self.records.write(batch.dead_letters + refused, [], [])
        batch.statuses, batch.events = [], []
        batch.dead_letters = batch.dead_letters + refused

    def _write_last_seen(self, seen: dict[str, int]) -> None:
        try:
            self.records.write_last_seen(seen)
        except Exception as exc:
            # Presence only, never acknowledged data: the next telemetry moves last_seen again.
            self.metrics.store_errors.labels("sql").inc()
            log.warning("last_seen update failed", extra={"error": str(exc)[:300]})
