"""Hostile text is stored and read back exactly, or refused with a clear error.

Either way nothing else changes: every table still exists with the rows it had.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import DataError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from vigil.db.models import AuditLog, Customer, Device, InvalidValue, KnowledgeArticle, Site, Ticket
from vigil.db.session import transaction

HOSTILE = [
    "O'Brien",
    "''",
    'say "hi"',
    "back\\slash\\",
    "\\'",
    "line one\nline two\r\nline three\ttab",
    "'; DROP TABLE devices; --",
    "Robert'); DROP TABLE tickets;--",
    '"; DELETE FROM audit_log; --',
    "1 OR 1=1",
    "%s %(name)s {0} $1 ? :param",
    "SELECT * FROM users /* comment */",
    "\\x00 written out, not a NUL",
    "\u00e9\u0301 combining, \u202eright-to-left\u202c, zero\u200bwidth",
    "\U0001f691 \U0001d518\U0001d52b\U0001d526 \u4e2d\u6587 \uffff \u2028",
    "\x01\x07\x1b[31m control characters",
    "  padded  ",
    "",
]


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_text_round_trips_exactly(factory: sessionmaker[Session], device: Device,
                                          snapshot: Callable[[], dict[str, int]],
                                          value: str) -> None:
    before = snapshot()
    with transaction(factory) as s:
        site = Site(name=value, customer=Customer(name=value), address=value)
        s.add(site)
        s.add(Device(id="dev-h", serial=value, model=value[:64], site=site, firmware=value[:64],
                     status_detail={value: value, "list": [value]}))
        s.add(Ticket(device_id="dev-h", priority="P3", category="software", source="customer",
                     signature=value, title=value, description=value, evidence={"text": value}))
        s.add(KnowledgeArticle(title=value, body=value * 10, category="software",
                               symptoms=[value], tags=[value]))
        s.add(AuditLog(actor=value, action=value[:64], object_type=value[:64], object_id=value,
                       details={value: value}))
    with factory() as s:
        # The value is a parameter of the query too: it finds exactly the row written.
        found = s.scalars(select(Device).where(Device.serial == value)).one()
        assert found.id == "dev-h"
        assert found.status_detail == {value: value, "list": [value]}
        assert found.site is not None
        assert (found.site.name, found.site.customer.name, found.site.address) == (value,) * 3
        ticket = s.scalars(select(Ticket).where(Ticket.signature == value)).one()
        assert (ticket.title, ticket.description, ticket.evidence) == (value, value,
                                                                        {"text": value})
        article = s.scalars(select(KnowledgeArticle).where(KnowledgeArticle.title == value)).one()
        assert (article.body, article.symptoms, article.tags) == (value * 10, [value], [value])
        audit = s.scalars(select(AuditLog).where(AuditLog.actor == value)).one()
        assert (audit.object_id, audit.details) == (value, {value: value})
    after = snapshot()
    added = {"customers": 1, "sites": 1, "devices": 1, "tickets": 1, "knowledge_articles": 1,
             "audit_log": 1}
    assert after == {name: count + added.get(name, 0) for name, count in before.items()}


def test_text_at_the_length_limit_round_trips(factory: sessionmaker[Session],
                                              device: Device) -> None:
    body = ("\U0001f691'\\\n" * 25_000)[:100_000]  # characters, not bytes, are counted
    with transaction(factory) as s:
        s.add(KnowledgeArticle(title="t" * 200, body=body, category="software"))
    with factory() as s:
        article = s.scalars(select(KnowledgeArticle)).one()
        assert article.body == body and article.title == "t" * 200


@pytest.mark.parametrize("length", [201, 1_000_000])
def test_too_long_text_is_refused_and_nothing_changes(
        factory: sessionmaker[Session], device: Device,
        snapshot: Callable[[], dict[str, int]], length: int) -> None:
    before = snapshot()
    with pytest.raises(InvalidValue, match=f"Ticket.title: {length} characters, at most 200"):
        with transaction(factory) as s:
            s.add(Ticket(device_id=device.id, priority="P3", category="software",
                         source="customer", signature="s", title="x" * length))
    assert snapshot() == before


@pytest.mark.parametrize("value", ["\x00", "abc\x00'; DROP TABLE devices; --", "\x00" * 10])
def test_nul_in_text_is_refused_on_both_databases(factory: sessionmaker[Session],
                                                  device: Device,
                                                  snapshot: Callable[[], dict[str, int]],
                                                  value: str) -> None:
    """PostgreSQL cannot store NUL in text; SQLite could, but the embedded mode must not
    accept what production refuses."""
    before = snapshot()
    with pytest.raises(InvalidValue, match="Site.name: contains a NUL character"):
        with transaction(factory) as s:
            s.add(Site(name=value, customer=Customer(name="c")))
    assert snapshot() == before


def test_nul_written_in_raw_sql(db: Engine, factory: sessionmaker[Session], device: Device,
                                snapshot: Callable[[], dict[str, int]]) -> None:
    """Past the models, SQLite stores NUL exactly and PostgreSQL refuses it with a clear error."""
    before = snapshot()
    value = "a\x00b'; DROP TABLE devices; --"

    def write() -> None:
        with transaction(factory) as s:
            s.execute(text("UPDATE devices SET firmware = :fw WHERE id = :id"),
                      {"fw": value, "id": device.id})

    if db.dialect.name == "postgresql":
        with pytest.raises(DataError, match="NUL"):
            write()
        expected = "2.4.1"
    else:
        write()
        expected = value
    with factory() as s:
        assert s.get_one(Device, device.id).firmware == expected
    assert snapshot() == before


def test_nul_and_odd_unicode_inside_json_round_trip(factory: sessionmaker[Session],
                                                    device: Device) -> None:
    detail = {"nul": "a\x00b", "quote": "'\"", "emoji": "\U0001f691", "\x00key": [None, True]}
    with transaction(factory) as s:
        s.get_one(Device, device.id).status_detail = detail
    with factory() as s:
        assert s.get_one(Device, device.id).status_detail == detail


def test_invalid_unicode_is_refused(factory: sessionmaker[Session], device: Device,
                                    snapshot: Callable[[], dict[str, int]]) -> None:
    before = snapshot()
    with pytest.raises(InvalidValue, match="Site.name: not valid Unicode"):
        Site(name="lone \udc80 surrogate", customer=Customer(name="c"))
    with pytest.raises((StatementError, UnicodeEncodeError)):
        with transaction(factory) as s:
            s.get_one(Device, device.id).status_detail = {"x": "lone \udc80 surrogate"}
    assert snapshot() == before


@pytest.mark.parametrize("device_id", ["'; DROP TABLE devices; --", "a/b", "a+", "dev#1", "",
                                       "x" * 65, "dev\n1", "d\u00e9v"])
def test_device_ids_follow_the_wire_protocol(device_id: str) -> None:
    with pytest.raises(InvalidValue, match="Device.id"):
        Device(id=device_id)


@pytest.mark.parametrize("value", [b"bytes", 42, ["list"]])
def test_non_text_is_refused_for_text_columns(value: object) -> None:
    with pytest.raises(InvalidValue, match="Site.name: expected text"):
        Site(name=value)
