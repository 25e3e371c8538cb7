"""The declarative base every domain's tables derive from, and its column rules.

The same schema runs on SQLite (the embedded default) and PostgreSQL, so every
rule is written in a form both enforce: enumerated values and text lengths are
CHECK constraints (SQLite ignores VARCHAR lengths), and timestamps are stored
as UTC and always come back timezone-aware. Values are also checked when
assigned, so a bad one fails early with a message naming the attribute, before
any SQL runs.

The checks are attached to each model as it is mapped (``Base.__init_subclass__``),
so a table defined in any domain's ``models.py`` gets them, whenever it is imported.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    event,
)
from sqlalchemy.ext.mutable import MutableDict, MutableList
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Stable constraint names, so migrations (and SQLite's batch mode, which
# rebuilds tables) can refer to every constraint by name.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Big surrogate keys for the tables that grow with the fleet; SQLite only
# auto-numbers a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")

ValueRule = Callable[[Any], object]


class InvalidValue(ValueError):
    """A value the schema cannot hold: the message names the attribute and the rule."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every database.

    PostgreSQL keeps the zone (timestamptz); SQLite keeps none, so values are
    stored as naive UTC (which also sorts correctly as text) and given their
    zone back when read. Naive datetimes are refused: their meaning is a guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
            raise InvalidValue(f"timestamp {value!r} is not a timezone-aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    # JSON documents notice in-place changes at their top level (``detail["x"] = 1``),
    # which a plain JSON column would silently not save; nested changes need reassignment.
    type_annotation_map = {
        datetime: UTCDateTime(),
        dict[str, Any]: MutableDict.as_mutable(JSON()),
        list[Any]: MutableList.as_mutable(JSON()),
    }
    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)  # maps the class: its table exists after this
        if "__table__" in cls.__dict__:
            install_table_checks(cls.__table__)  # type: ignore[arg-type]


def enum_column(enum: type[StrEnum], **kwargs: Any) -> Mapped[Any]:
    """A text column that accepts only the values of ``enum`` (checked in the database too)."""
    width = max(len(member.value) for member in enum)
    return mapped_column(String(width), info={"enum": enum}, **kwargs)


def storable_text(raw: str | bytes, limit: int) -> str:
    """Text any database stores, at most ``limit`` characters.

    Undecodable bytes and NUL become backslash escapes (PostgreSQL refuses NUL
    in text), and the result is cut to ``limit``.
    """
    if isinstance(raw, bytes):
        text = raw[: limit * 4].decode("utf-8", errors="backslashreplace")
    else:
        text = raw[: limit * 4].encode("utf-8", errors="backslashreplace").decode("utf-8")
    return text.replace("\x00", "\\x00")[:limit]


# --- rules shared by several models -------------------------------------------


def finite_number(value: Any) -> None:
    """NaN and infinities: SQLite turns NaN into NULL, PostgreSQL keeps it; neither is a reading."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number")


def timezone_name(value: str) -> None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone name") from None


def in_range(low: float, high: float, *, whole: bool = False) -> ValueRule:
    kind = "a whole number" if whole else "a number"

    def rule(value: Any) -> None:
        number = not isinstance(value, bool) and isinstance(value, int if whole else int | float)
        if not number or not low <= value <= high:
            raise ValueError(f"{value!r} is not {kind} between {low:g} and {high:g}")

    return rule


# --- checks on assignment and in the database ------------------------------

Listener = Callable[[Any, Any, Any, Any], Any]


def _check_text(name: str, limit: int | None) -> Listener:
    def check(target: Any, value: Any, oldvalue: Any, initiator: Any) -> Any:
        if value is None:
            return value
        if not isinstance(value, str):
            raise InvalidValue(f"{name}: expected text, got {type(value).__name__}")
        if limit is not None and len(value) > limit:
            raise InvalidValue(f"{name}: {len(value)} characters, at most {limit}")
        if "\x00" in value:
            raise InvalidValue(f"{name}: contains a NUL character, which databases cannot store")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidValue(f"{name}: not valid Unicode ({exc.reason} at {exc.start})") from None
        return value

    return check


def _check_enum(name: str, enum: type[StrEnum]) -> Listener:
    allowed = {member.value for member in enum}

    def check(target: Any, value: Any, oldvalue: Any, initiator: Any) -> Any:
        if value is None:
            return value
        if isinstance(value, str) and value in allowed:
            return str.__str__(value)  # the plain text, whichever way it was given
        raise InvalidValue(f"{name}: {value!r} is not one of {', '.join(m.value for m in enum)}")

    return check


def _check_timestamp(name: str) -> Listener:
    def check(target: Any, value: Any, oldvalue: Any, initiator: Any) -> Any:
        if value is None:
            return value
        if not isinstance(value, datetime) or value.utcoffset() is None:
            raise InvalidValue(f"{name}: {value!r} is not a timezone-aware datetime")
        return value

    return check


def _check_with(name: str, rule: ValueRule) -> Listener:
    def check(target: Any, value: Any, oldvalue: Any, initiator: Any) -> Any:
        if value is not None:
            try:
                rule(value)
            except InvalidValue:
                raise
            except (ValueError, TypeError) as exc:
                raise InvalidValue(f"{name}: {exc}") from None
        return value

    return check


def install_table_checks(table: Table) -> None:
    """The portable CHECK constraints: enumerated values and text lengths."""
    for column in table.columns:
        enum = column.info.get("enum")
        if enum is not None:
            values = ", ".join(f"'{member.value}'" for member in enum)
            table.append_constraint(
                CheckConstraint(f"{column.name} IN ({values})", name=f"{column.name}_valid")
            )
        elif isinstance(column.type, String) and column.type.length:
            # SQLite ignores VARCHAR lengths; this makes both databases enforce them.
            table.append_constraint(
                CheckConstraint(
                    f"length({column.name}) <= {column.type.length}",
                    name=f"{column.name}_length",
                )
            )


@event.listens_for(Base, "mapper_configured", propagate=True)
def install_attribute_checks(mapper: Any, cls: type[Base]) -> None:
    """The on-assignment checks of one model, once its relationships can be resolved.

    Mappers are configured before the first object of any model is made, so no
    assignment escapes these checks.
    """
    for attr in cls.__mapper__.column_attrs:
        mapped: Any = attr.columns[0]
        name = f"{cls.__name__}.{attr.key}"
        checks: list[Listener] = []
        if mapped.info.get("enum") is not None:
            checks.append(_check_enum(name, mapped.info["enum"]))
        elif isinstance(mapped.type, String):
            checks.append(_check_text(name, mapped.type.length))
        elif isinstance(mapped.type, UTCDateTime):
            checks.append(_check_timestamp(name))
        elif isinstance(mapped.type, Float):
            checks.append(_check_with(name, finite_number))
        # A rule beyond the column's type: ``mapped_column(..., info={"rule": f})``.
        rule = mapped.info.get("rule")
        if rule is not None:
            checks.append(_check_with(name, rule))
        for check in checks:
            event.listen(getattr(cls, attr.key), "set", check, retval=True)
