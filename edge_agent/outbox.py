"""The durable outbox: nothing the device measured is lost between sampling and the broker.

Every sample and event is committed to an SQLite file (WAL, ``synchronous=FULL``)
before anything is published, and deleted only when the broker has acknowledged
the message that carried it. A message is formed once, with its ``seq``, and
stored; a replay after a crash or reconnect sends the very same bytes under the
same ``seq``, so the platform can drop duplicates by ``(device, seq)``.

One database can hold the queues of many devices (the simulator runs hundreds
through one file); every row carries its device id.

The queue is bounded by size (samples and events per device) and by age. When a
bound is hit the oldest data not yet formed into a message is dropped first;
every dropped entry is counted per device, persistently, and the count is
reported in the device's status message.
"""

from __future__ import annotations

import functools
import json
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from edge_agent import EdgeAgentError, protocol

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    added REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS pending_device ON pending (device, id);
CREATE TABLE IF NOT EXISTS messages (
    device TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    payload BLOB NOT NULL,
    entries INTEGER NOT NULL,
    added REAL NOT NULL,
    PRIMARY KEY (device, seq)
);
CREATE TABLE IF NOT EXISTS counters (
    device TEXT PRIMARY KEY,
    next_seq INTEGER NOT NULL DEFAULT 0,
    dropped INTEGER NOT NULL DEFAULT 0
);
"""

# Byte overhead of a telemetry message around its samples: {"v":1,"seq":N,"samples":[...]}
_ENVELOPE_BYTES = 64


F = TypeVar("F", bound=Callable[..., Any])


def _locked(method: F) -> F:
    """Serialise a public method: the agent samples on one thread and publishes on another."""

    @functools.wraps(method)
    def wrapper(self: Outbox, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class OutboxError(EdgeAgentError, ValueError):
    """A sample or event that cannot be queued; nothing was written."""


@dataclass(frozen=True, slots=True)
class OutMessage:
    """A formed message waiting for the broker's acknowledgement."""

    device: str
    seq: int
    kind: protocol.Kind
    payload: bytes
    entries: int


class Outbox:
    """On-disk queue of samples and events, per device, with persistent ``seq``."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_entries: int = 1_000_000,
        max_age_s: float = 30 * 86400.0,
        max_samples_per_message: int = protocol.MAX_SAMPLES_PER_MESSAGE,
        max_payload_bytes: int = protocol.MAX_PAYLOAD_BYTES,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if max_entries < 1:
            raise OutboxError("max_entries must be at least 1")
        self.path = Path(path)
        self.max_entries = max_entries
        self.max_age_s = max_age_s
        self.max_samples = min(max_samples_per_message, protocol.MAX_SAMPLES_PER_MESSAGE)
        self.max_bytes = min(max_payload_bytes, protocol.MAX_PAYLOAD_BYTES)
        self._wall = wall
        self._lock = threading.RLock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed sample survives a power cut, not only a killed process.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(_SCHEMA)
        self._depth: dict[str, int] = {}
        self._dropped: dict[str, int] = {}
        self._next_seq: dict[str, int] = {}
        for device, n in self._db.execute("SELECT device, COUNT(*) FROM pending GROUP BY device"):
            self._depth[device] = self._depth.get(device, 0) + n
        for device, n in self._db.execute(
                "SELECT device, SUM(entries) FROM messages GROUP BY device"):
            self._depth[device] = self._depth.get(device, 0) + int(n)
        for device, next_seq, dropped in self._db.execute(
                "SELECT device, next_seq, dropped FROM counters"):
            self._next_seq[device] = next_seq
            self._dropped[device] = dropped

    # --- reporting ---------------------------------------------------------

    def depth(self, device: str) -> int:
        """Samples and events of ``device`` not yet acknowledged by the broker."""
        return self._depth.get(device, 0)

    def dropped(self, device: str) -> int:
        """Entries of ``device`` dropped by the bounds, ever."""
        return self._dropped.get(device, 0)

    def total_depth(self) -> int:
        return sum(self._depth.values())

    def next_seq(self, device: str) -> int:
        return self._next_seq.get(device, 0)

    @_locked
    def integrity_ok(self) -> bool:
        return self._db.execute("PRAGMA quick_check").fetchone()[0] == "ok"

    # --- writing -----------------------------------------------------------

    @_locked
    def add_samples(self, rows: Iterable[tuple[str, int, Mapping[str, float]]]) -> int:
        """Queue samples ``(device, ts_ms, metrics)`` in one transaction; all or none."""
        now = self._wall()
        records = [(device, "sample", _sample_body(device, ts, metrics), now)
                   for device, ts, metrics in rows]
        self._insert(records)
        return len(records)

    @_locked
    def add_event(self, device: str, ts: int, code: str, severity: str, text: str = "") -> None:
        """Queue a device-raised fault code."""
        event = protocol.Event(seq=0, ts=ts, code=code, severity=severity, text=text)
        try:
            protocol.validate_device_id(device)
            protocol.decode_event(protocol.encode(event))
        except protocol.ProtocolError as exc:
            raise OutboxError(f"event refused: {exc}") from exc
        body = json.dumps({"ts": ts, "code": code, "severity": severity, "text": text},
                          separators=(",", ":"))
        self._insert([(device, "event", body, self._wall())])

    @_locked
    def add_history(self, device: str, samples: Sequence[tuple[int, Mapping[str, float]]]) -> int:
        """Queue historical samples already cut into full messages (backfill).

        The same path as live samples, minus one copy: the rows become messages
        straight away, each with its ``seq``, and are published and deleted on
        acknowledgement like any other.
        """
        bodies = [_sample_body(device, ts, metrics) for ts, metrics in samples]
        now = self._wall()
        with self._atomic():
            seq = self._seq_from_db(device)
            for chunk in self._chunks(bodies):
                payload = _telemetry_payload(seq, chunk)
                self._db.execute("INSERT INTO messages VALUES (?, ?, 'telemetry', ?, ?, ?)",
                                 (device, seq, payload, len(chunk), now))
                seq += 1
            self._store_seq(device, seq)
        self._next_seq[device] = seq
        self._depth[device] = self._depth.get(device, 0) + len(bodies)
        self._enforce({device})
        return len(bodies)

    def _insert(self, records: list[tuple[str, str, str, float]]) -> None:
        if not records:
            return
        with self._atomic():
            self._db.executemany(
                "INSERT INTO pending (device, kind, body, added) VALUES (?, ?, ?, ?)", records)
        touched: set[str] = set()
        for device, *_ in records:
            self._depth[device] = self._depth.get(device, 0) + 1
            touched.add(device)
        self._enforce(touched)

    # --- forming and acknowledging -----------------------------------------

    @_locked
    def messages(self, limits: Mapping[str, tuple[int, int]]) -> dict[str, list[OutMessage]]:
        """Messages to send, per device: ``limits[device] = (after_seq, count)``.

        Returns up to ``count`` stored messages with ``seq > after_seq`` in
        order, forming new ones from queued entries when the stored ones run
        out. All forming happens in one transaction.
        """
        out: dict[str, list[OutMessage]] = {}
        with self._atomic():
            for device, (after_seq, count) in limits.items():
                if count <= 0 or self._depth.get(device, 0) == 0:
                    continue
                found = [OutMessage(device, seq, kind, bytes(payload), entries)
                         for seq, kind, payload, entries in self._db.execute(
                             "SELECT seq, kind, payload, entries FROM messages "
                             "WHERE device = ? AND seq > ? ORDER BY seq LIMIT ?",
                             (device, after_seq, count))]
                if len(found) < count:
                    found.extend(self._form(device, count - len(found)))
                if found:
                    out[device] = found
        return out

    def _form(self, device: str, count: int) -> list[OutMessage]:
        rows = self._db.execute(
            "SELECT id, kind, body FROM pending WHERE device = ? ORDER BY id LIMIT ?",
            (device, count * self.max_samples)).fetchall()
        if not rows:
            return []
        seq = self._seq_from_db(device)
        formed: list[OutMessage] = []
        now = self._wall()
        last_id = None
        batch: list[str] = []
        size = _ENVELOPE_BYTES

        def flush() -> None:
            nonlocal seq, batch, size
            if batch:
                formed.append(OutMessage(device, seq, "telemetry",
                                         _telemetry_payload(seq, batch), len(batch)))
                seq += 1
                batch, size = [], _ENVELOPE_BYTES

        for row_id, kind, body in rows:
            if len(formed) >= count:
                break
            if kind == "event":
                flush()
                if len(formed) >= count:
                    break
                e = json.loads(body)
                payload = protocol.encode(protocol.Event(seq=seq, ts=e["ts"], code=e["code"],
                                                         severity=e["severity"], text=e["text"]))
                formed.append(OutMessage(device, seq, "events", payload, 1))
                seq += 1
            else:
                if batch and (len(batch) >= self.max_samples
                              or size + len(body) + 1 > self.max_bytes):
                    flush()
                    if len(formed) >= count:
                        break
                batch.append(body)
                size += len(body) + 1
            last_id = row_id
        if len(formed) < count:
            flush()
        if last_id is None:
            return []
        self._db.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?)",
                             [(m.device, m.seq, m.kind, m.payload, m.entries, now)
                              for m in formed])
        self._db.execute("DELETE FROM pending WHERE device = ? AND id <= ?", (device, last_id))
        self._store_seq(device, seq)
        self._next_seq[device] = seq
        return formed

    @_locked
    def ack(self, acknowledged: Iterable[tuple[str, int]]) -> int:
        """Delete messages the broker acknowledged; unknown ones are ignored."""
        pairs = list(acknowledged)
        if not pairs:
            return 0
        removed = 0
        with self._atomic():
            for device, seq in pairs:
                row = self._db.execute(
                    "DELETE FROM messages WHERE device = ? AND seq = ? RETURNING entries",
                    (device, seq)).fetchone()
                if row:
                    self._depth[device] = self._depth.get(device, 0) - row[0]
                    removed += row[0]
        return removed

    # --- bounds ------------------------------------------------------------

    @_locked
    def expire(self) -> dict[str, int]:
        """Drop entries older than ``max_age_s``; returns the count per device."""
        cutoff = self._wall() - self.max_age_s
        dropped: dict[str, int] = {}
        with self._atomic():
            for device, n in self._db.execute(
                    "SELECT device, COUNT(*) FROM pending WHERE added < ? GROUP BY device",
                    (cutoff,)).fetchall():
                dropped[device] = dropped.get(device, 0) + n
            self._db.execute("DELETE FROM pending WHERE added < ?", (cutoff,))
            for device, n in self._db.execute(
                    "SELECT device, SUM(entries) FROM messages WHERE added < ? GROUP BY device",
                    (cutoff,)).fetchall():
                dropped[device] = dropped.get(device, 0) + int(n)
            self._db.execute("DELETE FROM messages WHERE added < ?", (cutoff,))
            self._count_dropped(dropped)
        return dropped

    def _enforce(self, devices: Iterable[str]) -> None:
        over = {d: self._depth.get(d, 0) - self.max_entries for d in devices}
        over = {d: n for d, n in over.items() if n > 0}
        if not over:
            return
        dropped: dict[str, int] = {}
        with self._atomic():
            for device, excess in over.items():
                cur = self._db.execute(
                    "DELETE FROM pending WHERE id IN (SELECT id FROM pending WHERE device = ? "
                    "ORDER BY id LIMIT ?)", (device, excess))
                n = cur.rowcount
                while n < excess:
                    # Only formed messages left: drop the oldest whole message.
                    row = self._db.execute(
                        "DELETE FROM messages WHERE device = ? AND seq = (SELECT MIN(seq) "
                        "FROM messages WHERE device = ?) RETURNING entries",
                        (device, device)).fetchone()
                    if row is None:
                        break
                    n += row[0]
                dropped[device] = n
            self._count_dropped(dropped)

    def _count_dropped(self, dropped: Mapping[str, int]) -> None:
        for device, n in dropped.items():
            if n <= 0:
                continue
            self._db.execute(
                "INSERT INTO counters (device, next_seq, dropped) VALUES (?, 0, ?) "
                "ON CONFLICT (device) DO UPDATE SET dropped = dropped + excluded.dropped",
                (device, n))
            self._dropped[device] = self._dropped.get(device, 0) + n
            self._depth[device] = self._depth.get(device, 0) - n

    # --- internals ---------------------------------------------------------

    def _chunks(self, bodies: list[str]) -> Iterable[list[str]]:
        batch: list[str] = []
        size = _ENVELOPE_BYTES
        for body in bodies:
            if batch and (len(batch) >= self.max_samples or size + len(body) + 1 > self.max_bytes):
                yield batch
                batch, size = [], _ENVELOPE_BYTES
            batch.append(body)
            size += len(body) + 1
        if batch:
            yield batch

    def _seq_from_db(self, device: str) -> int:
        row = self._db.execute("SELECT next_seq FROM counters WHERE device = ?",
                               (device,)).fetchone()
        return row[0] if row else 0

    def _store_seq(self, device: str, next_seq: int) -> None:
        self._db.execute(
            "INSERT INTO counters (device, next_seq, dropped) VALUES (?, ?, 0) "
            "ON CONFLICT (device) DO UPDATE SET next_seq = excluded.next_seq",
            (device, next_seq))

    def _atomic(self) -> _Atomic:
        return _Atomic(self._db)

    @_locked
    def close(self) -> None:
        self._db.close()


class _Atomic:
    """BEGIN IMMEDIATE .. COMMIT, rolled back on error so bad input changes nothing.

    Nested uses join the outermost one, which alone commits or rolls back.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.outer = False

    def __enter__(self) -> None:
        self.outer = not self.db.in_transaction
        if self.outer:
            self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        if not self.outer:
            return
        if exc_type is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")


# Ids and names already checked against the protocol; a device reports the same few every time.
_CHECKED_DEVICES: set[str] = set()
_CHECKED_METRICS: set[str] = set()
_CHECKED_LIMIT = 10_000


def _sample_body(device: str, ts: int, metrics: Mapping[str, float]) -> str:
    """Validate one sample and render it as it will appear on the wire."""
    try:
        if device not in _CHECKED_DEVICES:
            protocol.validate_device_id(device)
            _remember(_CHECKED_DEVICES, device)
        if type(ts) is not int:
            raise protocol.ProtocolError(f"timestamp must be integer epoch ms, got {ts!r}")
        if not protocol.MIN_TS_MS <= ts < protocol.MAX_TS_MS:
            raise protocol.ProtocolError(f"timestamp {ts} outside 2000..2100")
        if not metrics:
            raise protocol.ProtocolError("a sample needs at least one metric")
        if len(metrics) > protocol.MAX_METRICS_PER_SAMPLE:
            raise protocol.ProtocolError(f"{len(metrics)} metrics, at most "
                                         f"{protocol.MAX_METRICS_PER_SAMPLE}")
        for name, value in metrics.items():
            if name not in _CHECKED_METRICS:
                protocol.validate_metric_name(name)
                _remember(_CHECKED_METRICS, name)
            kind = type(value)
            if kind is not float and kind is not int and (
                    isinstance(value, bool) or not isinstance(value, (int, float))):
                raise protocol.ProtocolError(f"metric {name!r} is not a number: {value!r}")
            if not math.isfinite(value) or abs(value) > protocol.MAX_ABS_VALUE:
                raise protocol.ProtocolError(f"metric {name!r} is not a finite number: {value!r}")
        return json.dumps({"ts": ts, "metrics": metrics}, separators=(",", ":"))
    except protocol.ProtocolError as exc:
        raise OutboxError(f"sample of {device!r} refused: {exc}") from exc


def _remember(checked: set[str], name: str) -> None:
    if len(checked) < _CHECKED_LIMIT:
        checked.add(name)


def _telemetry_payload(seq: int, bodies: list[str]) -> bytes:
    return f'{{"v":{protocol.VERSION},"seq":{seq},"samples":[{",".join(bodies)}]}}'.encode()
