"""What ingest reads from and writes to the SQL database.

Reads: the registered devices with the tags their telemetry carries. Writes, in
one transaction per batch: dead letters, presence from status messages, and
device events (once per (device, seq), so a redelivered event is a no-op).
``last_seen`` from telemetry is written separately and coarsely.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import Engine, Table, bindparam, case, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from ingest.batcher import DeadLetterItem, EventItem, StatusItem
from ingest.presence import PresenceUpdate, latest_per_device, stored_order, supersedes
from ingest.registry import DeviceTags
from vigil.db.models import DeadLetter, Device, DeviceEvent
from vigil.db.session import make_engine, make_session_factory, transaction

# Core tables for bulk statements; declarative models type ``__table__`` as a FromClause.
DEVICES = cast(Table, Device.__table__)
EVENTS = cast(Table, DeviceEvent.__table__)
DEAD_LETTERS = cast(Table, DeadLetter.__table__)


def utc_from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _later_seen() -> object:
    """``last_seen`` moved forward only: an old receipt never hides a newer one."""
    seen = bindparam("b_seen", type_=DEVICES.c.last_seen.type)
    return case(
        (DEVICES.c.last_seen.is_(None), seen),
        (DEVICES.c.last_seen < seen, seen),
        else_=DEVICES.c.last_seen,
    )


class IngestRecords:
    """The SQL side of ingest, over one engine.

    ``max_dead_letters`` bounds the dead-letter table: each batch that adds
    some removes those beyond the newest ``max_dead_letters`` (None: no bound).
    """

    def __init__(self, engine: Engine, *, max_dead_letters: int | None = None) -> None:
        if max_dead_letters is not None and max_dead_letters < 1:
            raise ValueError(f"max_dead_letters must be at least 1, got {max_dead_letters}")
        self.engine = engine
        self.sessions: sessionmaker[Session] = make_session_factory(engine)
        self.max_dead_letters = max_dead_letters
        self._dialect = engine.dialect.name

    @classmethod
    def from_url(cls, url: str, *, max_dead_letters: int | None = None) -> IngestRecords:
        return cls(make_engine(url), max_dead_letters=max_dead_letters)

    def close(self) -> None:
        self.engine.dispose()

    def load_devices(self) -> dict[str, DeviceTags]:
        with self.sessions() as session:
            rows = session.execute(select(Device.id, Device.model, Device.site_id)).all()
        return {
            row.id: DeviceTags(
                model=row.model or "", site="" if row.site_id is None else str(row.site_id)
            )
            for row in rows
        }

    def write(
        self,
        dead_letters: list[DeadLetterItem],
        statuses: list[StatusItem],
        events: list[EventItem],
    ) -> None:
        """Make one batch's SQL part durable, all or nothing."""
        with transaction(self.sessions) as session:
            if dead_letters:
                session.execute(
                    insert(DEAD_LETTERS), [self._dead_letter_row(d) for d in dead_letters]
                )
                if self.max_dead_letters is not None:
                    self._prune_dead_letters(session, self.max_dead_letters)
            if statuses:
                self._write_statuses(session, statuses)
            if events:
                self._write_events(session, events)

    def write_last_seen(self, seen: dict[str, int]) -> None:
        if not seen:
            return
        stmt = (
            update(DEVICES).where(DEVICES.c.id == bindparam("b_id")).values(last_seen=_later_seen())
        )
        with transaction(self.sessions) as session:
            session.connection().execute(
                stmt,
                [
                    {"b_id": device, "b_seen": utc_from_ms(ms)}
                    for device, ms in sorted(seen.items())
                ],
            )

    @staticmethod
    def _prune_dead_letters(session: Session, keep: int) -> None:
        """Remove all but the newest ``keep`` dead letters: one range delete on the primary key.

        Ids only grow, so the newest ``keep`` rows have ids above ``max(id) - keep``;
        gaps in the ids (rolled-back inserts) only make it keep fewer.
        """
        newest = select(func.max(DEAD_LETTERS.c.id)).scalar_subquery()
        session.execute(delete(DEAD_LETTERS).where(DEAD_LETTERS.c.id <= newest - keep))

    @staticmethod
    def _dead_letter_row(item: DeadLetterItem) -> dict[str, object]:
        """The model makes any input storable (cut short, NUL and bad UTF-8 escaped)."""
        letter = DeadLetter.from_message(item.topic, item.payload, item.reason)
        return {
            "received_at": datetime.now(UTC),
            "topic": letter.topic,
            "reason": letter.reason,
            "payload": letter.payload,
            "payload_size": item.size,
        }

    def _write_statuses(self, session: Session, statuses: list[StatusItem]) -> None:
        updates = self._newer_than_held(session, latest_per_device(statuses))
        with_fw = [u for u in updates if u.firmware is not None]
        without_fw = [u for u in updates if u.firmware is None]
        base = {
            "online": bindparam("b_online"),
            "state": bindparam("b_state"),
            "status_detail": bindparam("b_detail", type_=DEVICES.c.status_detail.type),
            "last_seen": _later_seen(),
        }
        conn = session.connection()
        for group, values in (
            (with_fw, {**base, "firmware": bindparam("b_fw")}),
            (without_fw, base),
        ):
            if not group:
                continue
            stmt = update(DEVICES).where(DEVICES.c.id == bindparam("b_id")).values(**values)
            params = []
            for u in group:
                row: dict[str, object] = {
                    "b_id": u.device,
                    "b_online": u.online,
                    "b_state": u.state,
                    "b_detail": u.detail,
                    "b_seen": utc_from_ms(u.seen_ms),
                }
                if u.firmware is not None:
                    row["b_fw"] = u.firmware
                params.append(row)
            conn.execute(stmt, params)

    def _newer_than_held(
        self, session: Session, updates: list[PresenceUpdate]
    ) -> list[PresenceUpdate]:
        """The updates at least as new as the status each device's row holds.

        A will delayed past the device's reconnection, a retained status replayed
        from an old session, or a device clock in 2001 then changes nothing. The
        rows are locked on PostgreSQL so that two workers cannot interleave.
        """
        if not updates:
            return updates
        query = select(DEVICES.c.id, DEVICES.c.state, DEVICES.c.status_detail).where(
            DEVICES.c.id.in_([u.device for u in updates])
        )
        if self._dialect == "postgresql":
            query = query.with_for_update()
        held = {
            row.id: stored_order(row.state, row.status_detail)
            for row in session.connection().execute(query)
        }
        return [u for u in updates if supersedes(u.order, held.get(u.device))]

    def _write_events(self, session: Session, events: Iterable[EventItem]) -> None:
        rows = [
            {
                "device_id": e.device,
                "seq": e.event.seq,
                "ts": utc_from_ms(e.event.ts),
                "code": e.event.code,
                "severity": e.event.severity,
                "text": e.event.text,
                "received_at": datetime.now(UTC),
            }
            for e in events
        ]
        dialect = postgresql if self._dialect == "postgresql" else sqlite
        stmt = dialect.insert(EVENTS).on_conflict_do_nothing(index_elements=["device_id", "seq"])
        session.connection().execute(stmt, rows)
