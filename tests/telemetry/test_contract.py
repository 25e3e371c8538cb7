"""The telemetry store contract, run against the embedded store and the real InfluxDB."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from vigil.telemetry.store import Point, TelemetryError, TelemetryStore

HOUR = 3_600_000
T0 = 472_222 * HOUR  # 2023-11-14 22:00 UTC, a whole hour so intervals align with it


def series(device: str, n: int, *, start: int = T0, step: int = 1000, **tags: str) -> list[Point]:
    """n samples of three metrics whose values encode device, index and metric."""
    base = sum(map(ord, device))
    return [Point(device, start + i * step, {"temp": base + i, "load": i / 8, "volt": -i * 1.5},
                  **tags) for i in range(n)]


def test_write_then_query_returns_exactly_the_device_samples(store: TelemetryStore) -> None:
    assert store.write(series("pump-1", 60, model="P1", site="s1")) == 60
    store.write(series("pump-2", 60, model="P1"))
    frame = store.query("pump-1", T0, T0 + 60_000)
    assert list(frame.columns) == ["load", "temp", "volt"]
    assert frame.index.name == "time"
    assert str(frame.index.tz) == "UTC"
    assert len(frame) == 60
    assert frame.index[0] == pd.Timestamp(T0, unit="ms", tz="UTC")
    assert frame.index[-1] == pd.Timestamp(T0 + 59_000, unit="ms", tz="UTC")
    base = sum(map(ord, "pump-1"))
    np.testing.assert_array_equal(frame["temp"].to_numpy(), base + np.arange(60))
    np.testing.assert_array_equal(frame["load"].to_numpy(), np.arange(60) / 8)
    np.testing.assert_array_equal(frame["volt"].to_numpy(), -np.arange(60) * 1.5)


def test_query_of_chosen_metrics_keeps_their_order_and_fills_unknown_ones(
    store: TelemetryStore,
) -> None:
    store.write(series("pump-1", 5))
    frame = store.query("pump-1", T0, T0 + 5000, metrics=["volt", "nothing", "temp"])
    assert list(frame.columns) == ["volt", "nothing", "temp"]
    assert frame["nothing"].isna().all()
    assert frame["volt"].tolist() == [0.0, -1.5, -3.0, -4.5, -6.0]


def test_query_accepts_aware_datetimes_like_epoch_ms(store: TelemetryStore) -> None:
    store.write(series("pump-1", 10))
    start = datetime.fromtimestamp(T0 / 1000, tz=timezone.utc)
    by_datetime = store.query("pump-1", start, start + timedelta(seconds=10))
    by_ms = store.query("pump-1", T0, T0 + 10_000)
    pd.testing.assert_frame_equal(by_datetime, by_ms)
    assert len(by_ms) == 10


def test_range_is_half_open(store: TelemetryStore) -> None:
    store.write(series("pump-1", 20))
    frame = store.query("pump-1", T0 + 5000, T0 + 10_000)
    assert [ts.value // 1_000_000 for ts in frame.index] == [T0 + i * 1000 for i in range(5, 10)]


def test_query_without_data_is_empty(store: TelemetryStore) -> None:
    store.write(series("pump-1", 5))
    assert store.query("pump-1", T0 + HOUR, T0 + 2 * HOUR).empty
    assert store.query("nobody", T0, T0 + HOUR).empty
    frame = store.query("pump-1", T0 + HOUR, T0 + 2 * HOUR, metrics=["temp"])
    assert frame.empty and list(frame.columns) == ["temp"]


def test_same_batch_twice_is_stored_once(store: TelemetryStore) -> None:
    batch = series("pump-1", 30, model="P1", site="s1")
    store.write(batch)
    first = store.query("pump-1", T0, T0 + HOUR)
    store.write(batch)
    again = store.query("pump-1", T0, T0 + HOUR)
    pd.testing.assert_frame_equal(first, again)
    counts = store.query("pump-1", T0, T0 + HOUR, interval=timedelta(hours=1), aggregate="count")
    assert counts["temp"].tolist() == [30.0]


def test_replay_of_an_overlapping_batch_adds_only_the_new_samples(store: TelemetryStore) -> None:
    samples = series("pump-1", 90)
    store.write(samples[:60])
    store.write(samples[30:])
    frame = store.query("pump-1", T0, T0 + HOUR)
    assert len(frame) == 90
    np.testing.assert_array_equal(frame["load"].to_numpy(), np.arange(90) / 8)


def test_a_point_written_again_with_new_values_overwrites_itself(store: TelemetryStore) -> None:
    store.write([Point("pump-1", T0, {"temp": 1.0, "load": 2.0})])
    store.write([Point("pump-1", T0, {"temp": 5.0})])
    frame = store.query("pump-1", T0, T0 + 1)
    assert len(frame) == 1
    assert frame.iloc[0].to_dict() == {"load": 2.0, "temp": 5.0}


def test_samples_may_carry_different_metrics(store: TelemetryStore) -> None:
    store.write([
        Point("pump-1", T0, {"temp": 20.5}),
        Point("pump-1", T0 + 1000, {"load": 0.25}),
        Point("pump-1", T0 + 2000, {"temp": 21.0, "load": 0.5}),
    ])
    store.write([Point("pump-1", T0, {"load": 0.125})])
    frame = store.query("pump-1", T0, T0 + 3000)
    assert list(frame.columns) == ["load", "temp"]
    assert frame["temp"].tolist()[0] == 20.5 and math.isnan(frame["temp"].tolist()[1])
    assert frame["load"].tolist() == [0.125, 0.25, 0.5]


def test_metric_names_are_case_sensitive(store: TelemetryStore) -> None:
    store.write([Point("pump-1", T0, {"Temp": 1.0, "temp": 2.0})])
    frame = store.query("pump-1", T0, T0 + 1000)
    assert frame.iloc[0].to_dict() == {"Temp": 1.0, "temp": 2.0}


def test_integers_and_extreme_finite_values_round_trip(store: TelemetryStore) -> None:
    values = {"big": 1.7976931348623157e308, "tiny": 5e-324, "neg": -1e-300, "int": 7,
              "third": 1 / 3}
    store.write([Point("pump-1", T0, values)])
    row = store.query("pump-1", T0, T0 + 1).iloc[0].to_dict()
    assert row == {name: float(value) for name, value in values.items()}


@pytest.mark.parametrize(("aggregate", "expected"), [
    ("mean", [4.5, 14.5, 24.5]),
    ("min", [0.0, 10.0, 20.0]),
    ("max", [9.0, 19.0, 29.0]),
    ("sum", [45.0, 145.0, 245.0]),
    ("count", [10.0, 10.0, 10.0]),
    ("first", [0.0, 10.0, 20.0]),
    ("last", [9.0, 19.0, 29.0]),
    ("median", [4.5, 14.5, 24.5]),
])
def test_downsampling_aggregates_each_interval(store: TelemetryStore, aggregate: str,
                                               expected: list[float]) -> None:
    store.write([Point("pump-1", T0 + i * 1000, {"x": float(i), "y": 2.0 * i}) for i in range(30)])
    frame = store.query("pump-1", T0, T0 + 30_000, interval=timedelta(seconds=10),
                        aggregate=aggregate)  # type: ignore[arg-type]
    assert frame["x"].tolist() == expected
    assert frame["y"].tolist() == [2 * v if aggregate != "count" else v for v in expected]
    assert [ts.value // 1_000_000 for ts in frame.index] == [T0, T0 + 10_000, T0 + 20_000]


def test_downsampling_leaves_out_intervals_without_data(store: TelemetryStore) -> None:
    store.write([Point("pump-1", T0 + i * 60_000, {"x": float(i)}) for i in (0, 1, 2, 7, 8)])
    frame = store.query("pump-1", T0, T0 + HOUR, interval=timedelta(minutes=5),
                        metrics=["x"], aggregate="mean")
    assert [ts.value // 1_000_000 for ts in frame.index] == [T0, T0 + 300_000]
    assert frame["x"].tolist() == [1.0, 7.5]


def test_downsampling_intervals_are_aligned_to_the_epoch(store: TelemetryStore) -> None:
    store.write([Point("pump-1", T0 + 90_000 + i * 1000, {"x": 1.0}) for i in range(60)])
    frame = store.query("pump-1", T0 + 90_000, T0 + HOUR, interval=timedelta(minutes=1),
                        aggregate="count")
    assert [ts.value // 1_000_000 for ts in frame.index] == [T0 + 60_000, T0 + 120_000]
    assert frame["x"].tolist() == [30.0, 30.0]


def test_latest_gives_each_device_its_newest_values(store: TelemetryStore) -> None:
    store.write([
        Point("pump-1", T0, {"temp": 1.0, "load": 0.5}),
        Point("pump-1", T0 + 5000, {"temp": 2.0}),
        Point("pump-2", T0 + 1000, {"load": 0.75}),
    ])
    frame = store.latest()
    assert list(frame.index) == ["pump-1", "pump-2"]
    assert frame.index.name == "device"
    assert frame.loc["pump-1", "time"] == pd.Timestamp(T0 + 5000, unit="ms", tz="UTC")
    assert frame.loc["pump-1", "temp"] == 2.0
    assert frame.loc["pump-1", "load"] == 0.5
    assert frame.loc["pump-2", "load"] == 0.75 and math.isnan(frame.loc["pump-2", "temp"])
    only = store.latest(["pump-2"])
    assert list(only.index) == ["pump-2"]
    assert store.latest(["nobody"]).empty


def test_devices_and_metrics_are_listed_sorted(store: TelemetryStore) -> None:
    assert store.devices() == [] and store.metrics() == []
    store.write([Point("pump-b", T0, {"temp": 1.0}),
                 Point("pump-a", T0, {"load": 1.0, "flow": 2.0})])
    assert store.devices() == ["pump-a", "pump-b"]
    assert store.metrics() == ["flow", "load", "temp"]
    assert store.metrics("pump-a") == ["flow", "load"]
    assert store.metrics("nobody") == []


def test_measurements_are_kept_apart(store: TelemetryStore) -> None:
    store.write([Point("pump-1", T0, {"temp": 1.0}),
                 Point("pump-2", T0, {"cpu": 3.0}, measurement="health")])
    assert store.devices() == ["pump-1"]
    assert store.devices(measurement="health") == ["pump-2"]
    assert store.query("pump-2", T0, T0 + 1, measurement="health")["cpu"].tolist() == [3.0]
    assert store.query("pump-2", T0, T0 + 1).empty


def test_ping_answers(store: TelemetryStore) -> None:
    store.ping()


GOOD = Point("pump-1", T0, {"temp": 1.0})


@pytest.mark.parametrize(("bad", "words"), [
    (Point("", T0, {"temp": 1.0}), "device id"),
    (Point("pump 1", T0, {"temp": 1.0}), "device id"),
    (Point("-pump", T0, {"temp": 1.0}), "device id"),
    (Point("p" * 65, T0, {"temp": 1.0}), "device id"),
    (Point("pump-1", T0, {"1temp": 1.0}), "metric name"),
    (Point("pump-1", T0, {"te mp": 1.0}), "metric name"),
    (Point("pump-1", T0, {"time": 1.0}), "reserved"),
    (Point("pump-1", T0, {"device": 1.0}), "reserved"),
    (Point("pump-1", T0, {"Time": 1.0}), "reserved"),
    (Point("pump-1", T0, {"DEVICE": 1.0}), "reserved"),
    (Point("pump-1", T0, {"temp": 1.0}, extra_tags={"device": "x"}), "extra tag 'device'"),
    (Point("pump-1", T0, {"temp": 1.0}, extra_tags={"site": "x"}), "extra tag 'site'"),
    (Point("pump-1", T0, {"temp": 1.0}, extra_tags={"temp": "x"}), "name of a metric"),
    (Point("pump-1", T0, {"temp": 1.0}, extra_tags={"room": "a\\b"}), "backslash"),
    (Point("pump-1", T0, {"temp": 1.0}, extra_tags={"room": "a\tb"}), "control characters"),
    (Point("pump-1", T0, {"temp": 1.0}, site="C:\\ward"), "backslash"),
    (Point("pump-1", T0, {"temp": 1.0}, model="x\x7f"), "control characters"),
    (Point("pump-1", T0, {}), "no metrics"),
    (Point("pump-1", T0, {"temp": math.nan}), "not a finite number"),
    (Point("pump-1", T0, {"temp": math.inf}), "not a finite number"),
    (Point("pump-1", T0, {"temp": -math.inf}), "not a finite number"),
    (Point("pump-1", T0, {"temp": "1.0"}), "not a finite number"),  # type: ignore[dict-item]
    (Point("pump-1", T0, {"temp": True}), "not a finite number"),
    (Point("pump-1", T0, {"temp": None}), "not a finite number"),  # type: ignore[dict-item]
    (Point("pump-1", T0, {"temp": 10**5000}), "not a finite number"),
    (Point("pump-9", T0 + HOUR, {"temp": 10**400}), "not a finite number"),  # a device seen before
    (Point("pump-1", 1.7e12, {"temp": 1.0}), "timestamp"),  # type: ignore[arg-type]
    (Point("pump-1", 5, {"temp": 1.0}), "timestamp"),
    (Point("pump-1", 4_200_000_000_000, {"temp": 1.0}), "timestamp"),
    (Point("pump-1", T0, {"temp": 1.0}, model="a\nb"), "tag 'model'"),
    (Point("pump-1", T0, {"temp": 1.0}, site="x" * 129), "tag 'site'"),
    (Point("pump-1", T0, {"temp": 1.0}, site=None), "tag 'site'"),  # type: ignore[arg-type]
    (Point("pump-1", T0, {"temp": 1.0}, site="lone \ud800"), "tag 'site'"),
    (Point("pump-1", T0, {"temp": 1.0}, measurement="Bad-Name"), "measurement"),
    ("pump-1,temp=1", "not a telemetry Point"),
])
def test_a_bad_point_rejects_its_whole_batch(store: TelemetryStore, bad: Point, words: str) -> None:
    batch = [*series("pump-9", 10), bad, *series("pump-8", 10)]
    with pytest.raises(TelemetryError, match=words):
        store.write(batch)  # type: ignore[list-item]
    assert store.devices() == []
    assert store.query("pump-9", T0, T0 + HOUR).empty


NAIVE = datetime(2024, 1, 1)


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"device": "pump 1"}, "device id"),
    ({"device": "x' OR '1'='1"}, "device id"),
    ({"start": NAIVE, "end": datetime(2024, 1, 2, tzinfo=timezone.utc)}, "no time zone"),
    ({"start": T0 + 1000, "end": T0}, "empty time range"),
    ({"start": T0, "end": T0}, "empty time range"),
    ({"start": "yesterday"}, "neither epoch ms nor a datetime"),
    ({"start": 5}, "2000-01-01"),
    ({"aggregate": "avg", "interval": timedelta(minutes=1)}, "unknown aggregate"),
    ({"aggregate": "mean); DROP", "interval": timedelta(minutes=1)}, "unknown aggregate"),
    ({"interval": timedelta(milliseconds=500)}, "whole number of seconds"),
    ({"interval": timedelta(seconds=-60)}, "whole number of seconds"),
    ({"metrics": ["te mp"]}, "metric name"),
    ({"metrics": "temp"}, "list of names"),
    ({"metrics": ["time"]}, "reserved"),
    ({"metrics": ["TIME"]}, "reserved"),
    ({"measurement": 'telemetry" WHERE 1=1'}, "measurement"),
])
def test_bad_query_arguments_are_refused(store: TelemetryStore, kwargs: dict, words: str) -> None:
    store.write(series("pump-1", 5))
    args = {"device": "pump-1", "start": T0, "end": T0 + HOUR, **kwargs}
    with pytest.raises(TelemetryError, match=words):
        store.query(args.pop("device"), args.pop("start"), args.pop("end"), **args)


def test_listing_arguments_are_validated(store: TelemetryStore) -> None:
    with pytest.raises(TelemetryError, match="device id"):
        store.latest(["pump-1", "a'b"])
    with pytest.raises(TelemetryError, match="device id"):
        store.metrics("a b")
    with pytest.raises(TelemetryError, match="measurement"):
        store.devices(measurement="x;y")


def test_latest_of_many_devices_at_once(store: TelemetryStore) -> None:
    names = [f"pump-{i:04d}" for i in range(600)]
    store.write([Point(name, T0 + i, {"temp": float(i)}) for i, name in enumerate(names)])
    frame = store.latest(names[::2])
    assert list(frame.index) == names[::2]
    assert frame["temp"].tolist() == [float(i) for i in range(0, 600, 2)]
