"""Streaming detectors: causality, score range, resumable state, bounded memory, detection."""

from __future__ import annotations

import json
import math
import pickle
import random
import time

import pytest

from analytics.detectors import (
    DailyProfileDetector,
    NoveltyEnsembleDetector,
    RangeNoveltyDetector,
    ShapeNoveltyDetector,
    StreamingDetector,
    score_to_surprise,
    surprise_to_score,
)
from analytics.detectors.tail import EmpiricalTail

START = 1_700_000_000.0  # a Tuesday, 22:13 UTC
STEP = 300.0  # five-minute samples, 288 a day


def daily_stream(n: int, seed: int = 7, noise: float = 0.3) -> tuple[list[float], list[float]]:
    """A daily cycle with Gaussian noise, the shape of most device telemetry."""
    rng = random.Random(seed)
    ts = [START + i * STEP for i in range(n)]
    xs = [10.0 + 3.0 * math.sin(2 * math.pi * i / 288) + rng.gauss(0.0, noise) for i in range(n)]
    return ts, xs


DETECTORS = [NoveltyEnsembleDetector, RangeNoveltyDetector, DailyProfileDetector,
             ShapeNoveltyDetector]


def alarm_score() -> float:
    return surprise_to_score(NoveltyEnsembleDetector().alarm_surprise)


@pytest.mark.parametrize("cls", DETECTORS)
def test_scores_stay_in_unit_interval_even_on_odd_input(cls: type[StreamingDetector]) -> None:
    ts, xs = daily_stream(3000)
    xs[1500] = 1e9
    xs[1600] = -1e9
    xs[1700:1800] = [5.0] * 100
    det = cls()
    scores = det.update_many(ts, xs)
    scores += [det.update(ts[-1] + STEP, float("nan")), det.update(ts[-1] + 2 * STEP, math.inf)]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert cls().update_many([START] * 50, [0.0] * 50) == [0.0] * 50


def test_tail_surprise_is_empirical_inside_the_range_and_graded_beyond() -> None:
    tail = EmpiricalTail(history=100)
    for v in range(100):
        tail.add(float(v))
    assert tail.surprise(90.0) == pytest.approx(math.log(101 / 11))
    beyond = [tail.surprise(x) for x in (99.5, 105.0, 150.0, 1e6)]
    assert beyond == sorted(beyond) and beyond[0] > math.log(101)
    assert beyond[-1] == pytest.approx(math.log(101) + EmpiricalTail.MAX_EXCESS)
    tail.add(-1.0)  # the oldest value (0.0) leaves the window
    assert len(tail.sorted_) == 100 and tail.sorted_[0] == -1.0


def test_heavy_tailed_history_gets_a_heavier_than_exponential_tail() -> None:
    rng = random.Random(0)
    heavy = EmpiricalTail()
    for _ in range(500):
        heavy.add(rng.paretovariate(1.5))
    top = heavy.sorted_[-heavy.tail_size :]
    mean_excess = sum(top) / len(top) - top[0]
    record = top[-1]
    x = 2 * record
    exponential = math.log(501) + (x - record) / mean_excess
    assert math.log(501) < heavy.surprise(x) < exponential - 1.0


def test_score_is_monotone_in_surprise() -> None:
    values = [0.0, 0.5, 3.0, 9.0, 20.0, 60.0]
    scores = [surprise_to_score(v) for v in values]
    assert scores == sorted(scores) and scores[-1] < 1.0
    assert score_to_surprise(surprise_to_score(9.0)) == pytest.approx(9.0)


@pytest.mark.parametrize("cls", DETECTORS)
def test_scores_never_depend_on_future_rows(cls: type[StreamingDetector]) -> None:
    ts, xs = daily_stream(2500)
    xs[1800] += 8.0
    full = cls().update_many(ts, xs)
    for k in (400, 1801, 2100):
        assert cls().update_many(ts[:k], xs[:k]) == full[:k]
    altered = xs[:1000] + [x * 3.0 - 5.0 for x in xs[1000:]]
    assert cls().update_many(ts, altered)[:1000] == full[:1000]


@pytest.mark.parametrize("cls", DETECTORS)
@pytest.mark.parametrize("codec", ["json", "pickle"])
def test_saved_state_resumes_with_identical_scores(
    cls: type[StreamingDetector], codec: str
) -> None:
    ts, xs = daily_stream(4000, seed=3)
    xs[3000] += 10.0
    uninterrupted = cls().update_many(ts, xs)
    for cut in (100, 1237, 2999, 3003):  # warm-up, mid-block, before and after an alarm
        first = cls()
        head = first.update_many(ts[:cut], xs[:cut])
        state = first.get_state()
        blob = json.dumps(state) if codec == "json" else pickle.dumps(state)
        state = json.loads(blob) if codec == "json" else pickle.loads(blob)
        resumed = StreamingDetector.from_state(state)
        assert type(resumed) is cls
        assert head + resumed.update_many(ts[cut:], xs[cut:]) == uninterrupted


def test_state_refuses_a_detector_with_other_parameters() -> None:
    state = NoveltyEnsembleDetector().get_state()
    with pytest.raises(ValueError):
        NoveltyEnsembleDetector(history=200).set_state(state)
    with pytest.raises(TypeError):
        RangeNoveltyDetector.from_state(state)
    with pytest.raises(TypeError):
        StreamingDetector.from_state({**state, "detector": "os.system"})


def test_state_size_does_not_grow_with_stream_length() -> None:
    ts, xs = daily_stream(30_000, seed=11)
    det = NoveltyEnsembleDetector()
    det.update_many(ts[:6000], xs[:6000])
    early = len(json.dumps(det.get_state()))
    det.update_many(ts[6000:], xs[6000:])
    late = len(json.dumps(det.get_state()))
    assert late <= early * 1.05
    for scale in det.shape_.scales_:
        assert len(scale.tail.window_) == det.history
        assert scale.shapes.shape == (det.shape_blocks, det.shape_memory)


def test_flags_an_injected_spike_and_nothing_else() -> None:
    ts, xs = daily_stream(3000)
    xs[2500] += 4.0  # about 13 noise deviations, inside the daily range
    scores = NoveltyEnsembleDetector().update_many(ts, xs)
    after_warmup = scores[800:]
    assert max(after_warmup) == scores[2500]
    assert scores[2500] >= alarm_score()
    assert sum(s >= alarm_score() for s in after_warmup) <= 3


def test_flags_a_level_shift_promptly() -> None:
    ts, xs = daily_stream(3000)
    xs[2400:] = [x + 2.0 for x in xs[2400:]]  # within the daily range: not a new extreme
    scores = NoveltyEnsembleDetector().update_many(ts, xs)
    assert max(scores[800:2400]) < alarm_score()
    assert max(scores[2400:2420]) >= alarm_score()


def test_flags_a_daily_cycle_that_stops() -> None:
    ts, xs = daily_stream(4000, noise=0.1)
    xs[3000:3300] = [10.0 + random.Random(5).gauss(0.0, 0.1) for _ in range(300)]
    scores = NoveltyEnsembleDetector().update_many(ts, xs)
    assert max(scores[800:3000]) < alarm_score()
    assert max(scores[3000:3300]) >= alarm_score()


def test_stays_quiet_after_an_alarm() -> None:
    ts, xs = daily_stream(3000)
    for i in range(2500, 2530):
        xs[i] += 6.0 * (-1) ** i  # a burst of spikes: one incident
    det = NoveltyEnsembleDetector()
    scores = det.update_many(ts, xs)
    first = next(i for i, s in enumerate(scores) if i >= 800 and s >= alarm_score())
    assert 2500 <= first < 2503
    assert scores[first + 1 : first + 1 + det.refractory] == [0.0] * det.refractory


def test_is_fast_enough_for_a_fleet() -> None:
    ts, xs = daily_stream(20_000)
    det = NoveltyEnsembleDetector()
    start = time.process_time()
    det.update_many(ts, xs)
    rate = len(xs) / max(time.process_time() - start, 1e-9)
    assert rate > 10_000  # the benchmark target is 20,000 on an idle core


# Live streams: replays, missing readings, glitches, gaps, stuck sensors, restarts.


def learned(det: StreamingDetector) -> str:
    """The learned part of a detector's state, for comparing before and after."""
    return json.dumps(det.get_state()["learned"], sort_keys=True)


@pytest.mark.parametrize("cls", DETECTORS)
def test_replayed_and_duplicate_samples_are_ignored(cls: type[StreamingDetector]) -> None:
    ts, xs = daily_stream(2000)
    det = cls()
    det.update_many(ts[:1500], xs[:1500])
    before = learned(det)
    replay = det.update_many(ts[1000:1500], [x + 50.0 for x in xs[1000:1500]])
    assert replay == [0.0] * 500
    assert det.update(ts[1499], 1e6) == 0.0  # same timestamp as the last accepted
    assert learned(det) == before and det.last_timestamp_ == ts[1499]
    # the stream then continues as if the replay had never come
    assert det.update_many(ts[1500:], xs[1500:]) == cls().update_many(ts, xs)[1500:]


@pytest.mark.parametrize("cls", DETECTORS)
@pytest.mark.parametrize("missing", [math.nan, math.inf, -math.inf, None])
def test_a_missing_reading_teaches_nothing(cls: type[StreamingDetector], missing: object) -> None:
    ts, xs = daily_stream(1500)
    det = cls()
    det.update_many(ts[:1000], xs[:1000])
    before = learned(det)
    assert det.update(ts[1000], missing) == 0.0  # type: ignore[arg-type]
    assert learned(det) == before and det.last_timestamp_ == ts[1000]
    assert det.update(ts[1000], xs[1000]) == 0.0  # its time slot is taken


@pytest.mark.parametrize("cls", [NoveltyEnsembleDetector, RangeNoveltyDetector])
def test_a_glitch_is_forgotten(cls: type[StreamingDetector]) -> None:
    """One absurd value widens the range for one window, not for ever."""
    ts, xs = daily_stream(9000)
    xs[1000] = 1e9
    det = cls(range_window=4000) if cls is NoveltyEnsembleDetector else cls(window=4000)
    scores = det.update_many(ts[:8000], xs[:8000])
    assert scores[1000] >= alarm_score()
    # 20 (far beyond the daily 7..13) is new again once the glitch has left the window
    assert det.update(ts[8000], 20.0) >= alarm_score()
    blind = cls(range_window=10**9) if cls is NoveltyEnsembleDetector else cls(window=10**9)
    blind.update_many(ts[:8000], xs[:8000])
    assert blind.update(ts[8000], 20.0) < alarm_score()


def test_a_shape_never_spans_a_gap() -> None:
    ts, xs = daily_stream(2000)
    det = ShapeNoveltyDetector(max_gap=3600.0)
    det.update_many(ts[:1500], xs[:1500])
    later = ts[1500] + 7200.0  # two hours of silence
    span = det.blocks * det.block_size  # the finest scale's; the next is twice as long
    stats = [det.distances(later + i * STEP, xs[1501 + i]) for i in range(2 * span)]
    fine, coarse = [s[0] for s in stats], [s[1] for s in stats]
    assert fine[: span - 1] == [None] * (span - 1)  # a full new shape is needed first
    assert fine[span - 1] is not None
    assert coarse[: 2 * span - 1] == [None] * (2 * span - 1)
    assert coarse[-1] is not None
    steady = ShapeNoveltyDetector(max_gap=3600.0)  # no gap: shapes keep coming
    steady.update_many(ts[:1501], xs[:1501])
    assert any(steady.distances(ts[1501 + i], xs[1501 + i])[0] is not None for i in range(8))


def test_a_second_scale_adds_to_the_first_and_sees_a_slowed_cycle() -> None:
    """A 128-sample cycle that slows to half its speed: both scales notice, and the
    64-sample shapes, which hold half a cycle, are far more surprised than the
    32-sample ones."""
    n, change = 6000, 5000
    ts = [START + i * STEP for i in range(n)]
    rng = random.Random(3)
    phase = [i / 128 if i < change else change / 128 + (i - change) / 256 for i in range(n)]
    xs = [math.sin(2 * math.pi * p) + rng.gauss(0.0, 0.02) for p in phase]
    one = ShapeNoveltyDetector(block_size=4, scales=1, memory=2000, history=2000)
    two = ShapeNoveltyDetector(block_size=4, scales=2, memory=2000, history=2000)
    s1, s2 = one.update_many(ts, xs), two.update_many(ts, xs)
    assert all(b >= a for a, b in zip(s1, s2, strict=True))  # the finest scale is the same
    assert max(s2[3000:change]) < alarm_score()
    assert max(s2[change : change + 400]) >= alarm_score()
    assert max(s2[change : change + 400]) > max(s1[change : change + 400])


@pytest.mark.parametrize("cls", DETECTORS)
def test_a_constant_stream_is_never_anomalous(cls: type[StreamingDetector]) -> None:
    ts = [START + i * STEP for i in range(3000)]
    assert cls().update_many(ts, [4.2] * 3000) == [0.0] * 3000


def test_a_stuck_sensor_raises_one_alarm_and_its_recovery_another() -> None:
    ts, xs = daily_stream(6000)
    xs[3000:4500] = [xs[3000]] * 1500
    scores = NoveltyEnsembleDetector().update_many(ts, xs)
    alarms = [i for i, s in enumerate(scores) if i >= 800 and s >= alarm_score()]
    assert len(alarms) == 2
    assert 3000 < alarms[0] < 3000 + 288 // 4  # within six hours of sticking
    assert alarms[1] == 4500  # the first reading that moves again


def test_state_carries_version_and_last_timestamp() -> None:
    ts, xs = daily_stream(1200)
    det = NoveltyEnsembleDetector()
    det.update_many(ts, xs)
    state = json.loads(json.dumps(det.get_state()))
    assert state["last_timestamp"] == ts[-1] and state["version"] >= 2
    resumed = StreamingDetector.from_state(state)
    assert resumed.update(ts[-5], 1e9) == 0.0  # an old sample replayed after the restart
    old = ({**state, "version": v} for v in (1, 2))  # version 2 had one shape scale
    for bad in ({k: v for k, v in state.items() if k != "version"}, *old):
        with pytest.raises(ValueError, match="version"):
            StreamingDetector.from_state(bad)


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"history": 0}, ValueError),
        ({"history": 500.5}, TypeError),
        ({"history": True}, TypeError),
        ({"alarm_margin": math.nan}, ValueError),
        ({"profile_alpha": 1.5}, ValueError),
        ({"shape_block_size": 0}, ValueError),
        ({"range_window": "30d"}, TypeError),
        ({"max_gap": -1.0}, ValueError),
    ],
)
def test_bad_parameters_fail_at_construction(params: dict[str, object], error: type) -> None:
    with pytest.raises(error):
        NoveltyEnsembleDetector(**params)  # type: ignore[arg-type]


@pytest.mark.parametrize(("cls", "params"), [
    (RangeNoveltyDetector, {"window": 3}), (DailyProfileDetector, {"slots": 0}),
    (ShapeNoveltyDetector, {"memory": 5}), (ShapeNoveltyDetector, {"max_gap": "1h"}),
])
def test_every_view_checks_its_parameters(cls: type, params: dict[str, object]) -> None:
    with pytest.raises((TypeError, ValueError)):
        cls(**params)


def test_sample_counts_can_be_stated_as_durations() -> None:
    five_min = NoveltyEnsembleDetector.with_durations("5min", history="2d", refractory="100min")
    assert (five_min.history, five_min.refractory) == (576, 20)
    one_min = NoveltyEnsembleDetector.with_durations(60.0, history="2d", refractory=20)
    assert (one_min.history, one_min.refractory) == (2880, 20)  # a plain int stays a count
    assert NoveltyEnsembleDetector.with_durations("1h", max_gap="2h").max_gap == 7200.0
    assert NoveltyEnsembleDetector.with_durations("1h", max_gap=None).max_gap is None
    with pytest.raises(ValueError):
        NoveltyEnsembleDetector.with_durations("5min", history="two days")


@pytest.mark.parametrize("cls", DETECTORS)
def test_a_gap_in_a_normal_stream_raises_no_alarm(cls: type[StreamingDetector]) -> None:
    """A day and a half of silence, then the same daily rhythm: nothing happened to the device."""
    ts, xs = daily_stream(4000)
    gap = 1.5 * 86400.0  # not a whole number of days: counting samples would misplace the hour
    ts = ts[:2500] + [t + gap for t in ts[2500:]]
    rng = random.Random(9)
    xs = [10.0 + 3.0 * math.sin(2 * math.pi * (t - START) / 86400) + rng.gauss(0.0, 0.3)
          for t in ts]
    scores = cls().update_many(ts, xs)
    assert max(scores[2500:2800]) < alarm_score()
