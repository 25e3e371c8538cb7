"""`vigil bench multivariate`: which steps it counts as healthy and as before a failure."""

from __future__ import annotations

from analytics.bench.multivariate import DAY_MS, labels, simulate


def test_steps_are_labelled_from_the_ground_truth() -> None:
    frames, truth = simulate(devices=20, days=40, seed=3, every_min=60, fault_fraction=0.5)
    faults = [f for f in truth["faults"] if f["predictable"]]
    assert faults and truth["maintenance"]
    counted = 0
    for frame in frames.values():
        marks = labels(frame, truth, days_before=7.0)
        t = frame.index.as_unit("ms").asi8
        device = frame["device"].to_numpy()
        before = marks["before"].to_numpy()
        counted += int(before.sum())
        for i in before.nonzero()[0]:
            assert any(f["device"] == device[i]
                       and f["failure_ms"] - 7 * DAY_MS <= t[i] < f["failure_ms"]
                       for f in faults)
        assert not (before & marks["healthy"].to_numpy()).any()
        assert (marks["healthy"] >= marks["quiet"]).all()
        for w in truth["maintenance"]:
            inside = (device == w["device"]) & (t >= w["start_ms"]) & (t < w["end_ms"])
            assert not marks["healthy"].to_numpy()[inside].any()
    assert counted > 0
