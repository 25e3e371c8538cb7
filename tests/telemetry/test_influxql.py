"""Pure parts of the telemetry stores: InfluxQL quoting, statements, tag and batch checks."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from vigil.telemetry.batch import check_metrics, validate_batch
from vigil.telemetry.influx import InfluxStore, _retry_after
from vigil.telemetry.influxql import (
    quote_ident,
    quote_literal,
    select_latest,
    select_range,
    show_devices,
    time_literal,
)
from vigil.telemetry.store import Point, TelemetryError, validate_tag

T0 = 1_700_000_000_000


@pytest.mark.parametrize(("name", "quoted"), [
    ("temp", '"temp"'),
    ('a"b', '"a\\"b"'),
    ("a\\b", '"a\\\\b"'),
    ('\\"', '"\\\\\\""'),
    ('" OR 1=1 --', '"\\" OR 1=1 --"'),
    ("'", "\"'\""),
    ("", '""'),
])
def test_quote_ident_escapes_backslash_and_double_quote(name: str, quoted: str) -> None:
    assert quote_ident(name) == quoted


@pytest.mark.parametrize(("value", "quoted"), [
    ("pump-1", "'pump-1'"),
    ("O'Brien", "'O\\'Brien'"),
    ("a\\b", "'a\\\\b'"),
    ("\\'", "'\\\\\\''"),
    ("'; DROP DATABASE vigil; --", "'\\'; DROP DATABASE vigil; --'"),
    ('"', "'\"'"),
    ("/.*/", "'/.*/'"),
])
def test_quote_literal_escapes_backslash_and_single_quote(value: str, quoted: str) -> None:
    assert quote_literal(value) == quoted


def unquote(text: str, quote: str) -> str:
    """InfluxQL's reading of a quoted token, as its scanner does it."""
    assert text[0] == quote and text[-1] == quote
    out, i, body = [], 0, text[1:-1]
    while i < len(body):
        if body[i] == "\\":
            out.append(body[i + 1])
            i += 2
        else:
            assert body[i] != quote, "an unescaped quote would end the token early"
            out.append(body[i])
            i += 1
    return "".join(out)


@pytest.mark.parametrize("value", ["", "plain", "'", '"', "\\", "\\\\'", "a'b\"c\\d",
                                   "x' OR '1'='1", '" OR 1=1 --', "trailing\\", "🙂", "x" * 500])
def test_quoted_tokens_read_back_as_the_original(value: str) -> None:
    assert unquote(quote_literal(value), "'") == value
    assert unquote(quote_ident(value), '"') == value


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\0b", 5, None])
def test_quoting_refuses_line_breaks_nul_and_non_strings(bad: object) -> None:
    with pytest.raises(TelemetryError):
        quote_ident(bad)  # type: ignore[arg-type]
    with pytest.raises(TelemetryError):
        quote_literal(bad)  # type: ignore[arg-type]


def test_time_literals_are_integers_with_a_unit() -> None:
    assert time_literal(T0) == "1700000000000ms"
    for bad in (1.5, True, "1700000000000", None):
        with pytest.raises(TelemetryError):
            time_literal(bad)  # type: ignore[arg-type]


class Sneaky(int):
    def __format__(self, spec: str) -> str:
        return "0ms OR 1=1 --"

    __str__ = __repr__ = lambda self: "0ms OR 1=1 --"  # noqa: E731


def test_time_literals_refuse_int_subclasses_that_format_themselves() -> None:
    with pytest.raises(TelemetryError):
        time_literal(Sneaky(T0))


def test_select_range_statements() -> None:
    assert select_range("telemetry", "pump-1", T0, T0 + 1000, None) == (
        "SELECT *::field FROM \"telemetry\" WHERE \"device\" = 'pump-1' "
        "AND time >= 1700000000000ms AND time < 1700000001000ms")
    statement = select_range("telemetry", "pump-1", T0, T0 + 1000, ["a", "b"], 60_000, "max",
                             "week")
    assert statement == (
        "SELECT max(\"a\") AS \"a\",max(\"b\") AS \"b\" FROM \"week\".\"telemetry\" "
        "WHERE \"device\" = 'pump-1' AND time >= 1700000000000ms AND time < 1700000001000ms "
        "GROUP BY time(60s) fill(none)")
    assert "mean(*)" in select_range("telemetry", "pump-1", T0, T0 + 1, None, 1000, "mean")
    with pytest.raises(TelemetryError, match="unknown aggregate"):
        select_range("telemetry", "pump-1", T0, T0 + 1, None, 1000, "stddev); DROP")
    with pytest.raises(TelemetryError, match="whole number of seconds"):
        select_range("telemetry", "pump-1", T0, T0 + 1, None, 1500, "mean")


def test_listing_statements_quote_their_names() -> None:
    assert show_devices("telemetry") == 'SHOW TAG VALUES FROM "telemetry" WITH KEY = "device"'
    latest = select_latest("telemetry", ["a", "b"])
    assert "WHERE \"device\" = 'a' OR \"device\" = 'b' GROUP BY \"device\"" in latest
    assert latest.count(";") == 1


@pytest.mark.parametrize("value", ["ward 3", "a,b=c", "O'Brien \"x\"", "🙂", " ", "x" * 128])
def test_line_protocol_tag_values_that_survive_are_accepted(value: str) -> None:
    validate_tag("site", value)


@pytest.mark.parametrize("value", ["tab\there", "bell\x07", "del\x7f", "trailing\\", "a\\ b",
                                   "a\\,b", "a\\=b", "a\\\\b", "back\\slash", "C:\\x\\y"])
def test_line_protocol_tag_values_that_would_change_are_refused(value: str) -> None:
    with pytest.raises(TelemetryError, match="cannot be stored"):
        validate_tag("site", value)


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert _retry_after("3") == 3.0
    assert _retry_after("100000") == 60.0
    assert _retry_after("-5") == 0.0
    assert _retry_after(None) is None and _retry_after("soon") is None
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=10), usegmt=True)
    assert 5 < (_retry_after(later) or 0) <= 10


def test_batch_check_catches_a_bad_point_after_good_ones_of_the_same_device() -> None:
    good = [Point("pump-1", T0 + i, {"temp": 1.0}) for i in range(5)]
    for bad in (Point("pump-1", T0, {"temp": math.nan}), Point("pump-1", T0, {"temp": True}),
                Point("pump-1", T0, {"temp": "1"}), Point("pump-1", 10, {"temp": 1.0}),  # type: ignore[dict-item]
                Point("pump-1", T0, {}),
                Point("pump-1", T0, {"temp": 1.0}, extra_tags={"x y": "1"}),
                Point("pump-1", float(T0), {"temp": 1.0})):  # type: ignore[arg-type]
        with pytest.raises(TelemetryError):
            validate_batch([*good, bad])
    assert validate_batch(good) == good
    assert validate_batch(iter(good)) == good


def test_query_metric_lists_are_checked() -> None:
    assert check_metrics(None) is None
    assert check_metrics([]) is None
    assert check_metrics(("a", "B")) == ["a", "B"]
    with pytest.raises(TelemetryError, match="twice"):
        check_metrics(["a", "a"])


def test_bodies_are_compressed_only_for_remote_servers() -> None:
    assert InfluxStore("http://127.0.0.1:1", "db").gzip_body is False
    assert InfluxStore("https://influx.example", "db").gzip_body is True
    assert InfluxStore("http://127.0.0.1:1", "db", gzip_body=True).gzip_body is True
