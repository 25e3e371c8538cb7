"""`vigil bench nab` end to end on a tiny NAB-shaped corpus (no servers)."""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from analytics.bench import nab


def write_series(path: Path, n: int, spike_at: int) -> list[str]:
    rng = random.Random(1)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    stamps = [(start + timedelta(minutes=5 * i)).strftime("%Y-%m-%d %H:%M:%S") for i in range(n)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "value"])
        for i, s in enumerate(stamps):
            w.writerow([s, 10 + math.sin(i / 20) + rng.gauss(0, 0.1) + (8 if i == spike_at else 0)])
    return stamps


def test_bench_writes_scores_and_ends_with_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    stamps = write_series(data / "synthetic/spike.csv", 2000, spike_at=1500)
    write_series(data / "synthetic/quiet.csv", 1500, spike_at=-1)
    windows = tmp_path / "windows.json"
    windows.write_text(json.dumps({
        "synthetic/spike.csv": [[stamps[1450] + ".000000", stamps[1550] + ".000000"]],
        "synthetic/quiet.csv": [],
    }))
    parser = argparse.ArgumentParser()
    nab.configure(parser)
    args = parser.parse_args(["--data", str(data), "--windows", str(windows), "--out", str(out)])
    if not args.scorer.exists():
        args.windows = tmp_path / "absent.json"
    assert nab.run(args) == 0

    with (out / "synthetic/spike.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["timestamp"] for r in rows] == stamps
    scores = [float(r["anomaly_score"]) for r in rows]
    assert max(scores) == scores[1500]

    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["bench"] == "nab" and last["files"] == 2 and last["samples"] == 3500
    assert last["samples_per_s"] > 0
    if args.windows.exists():
        assert last["standard"] >= 90.0  # the spike found mid-window, no false alarm


def test_defaults_point_at_the_shared_data_set() -> None:
    parser = argparse.ArgumentParser()
    nab.configure(parser)
    args = parser.parse_args([])
    assert args.data.parts[-3:] == ("datasets", "nab", "data")
    assert args.windows.name == "windows.json"


def test_plateau_choice_prefers_a_plateau_to_a_sharp_peak() -> None:
    # one axis: a lone peak at 1, a broad plateau around 4
    line = [50.0, 80.0, 50.0, 74.0, 75.0, 74.0, 50.0]
    assert nab.plateau_choice({(i,): v for i, v in enumerate(line)}, [len(line)]) == (4,)
    # two axes: a neighbour along either axis counts
    grid = {(i, j): 40.0 for i in range(3) for j in range(2)}
    grid[(0, 0)] = 90.0
    grid[(2, 1)] = grid[(2, 0)] = grid[(1, 1)] = 70.0
    assert nab.plateau_choice(grid, [3, 2]) == (2, 1)


class SumScorer:
    """Stands in for NabScorer: a file's result is its score, a subset's score their sum."""

    def __init__(self, rels: list[str]) -> None:
        self.labels = dict.fromkeys(rels)

    def evaluate(self, results: dict[str, float]) -> tuple[float, float]:
        return float(sum(results.values())), 0.5


def test_holdout_never_uses_the_held_out_category_to_choose() -> None:
    series = [nab.Series(f"{cat}/{i}.csv", [], [], []) for cat in "abc" for i in range(2)]
    rng = random.Random(4)
    table = {(p,): {s.rel: rng.uniform(0, 10) for s in series} for p in range(5)}
    grid = {"knob": tuple(range(5))}
    scorer = SumScorer([s.rel for s in series])
    chosen, held_out = nab.leave_one_category_out(
        series, grid, lambda p: table[p], scorer  # type: ignore[arg-type]
    )
    assert set(held_out) == {s.rel for s in series}
    assert all(held_out[s.rel] == table[chosen[s.category]][s.rel] for s in series)
    for category in "abc":
        # make some other setting overwhelmingly best on the held-out category only
        other = next(p for p in table if p != chosen[category])
        rigged = {p: dict(v) for p, v in table.items()}
        for s in series:
            if s.category == category:
                rigged[other][s.rel] = 1e6
        again, _ = nab.leave_one_category_out(
            series, grid, lambda p, r=rigged: r[p], scorer  # type: ignore[arg-type]
        )
        assert again[category] == chosen[category]
        assert any(again[c] == other for c in "abc" if c != category)


def test_holdout_command_reports_both_scores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if not nab.DEFAULT_SCORER.exists():
        pytest.skip("the shared NAB scorer is not present")
    data = tmp_path / "data"
    windows = {}
    for cat in ("one", "two"):
        stamps = write_series(data / f"{cat}/spike.csv", 1200, spike_at=1000)
        windows[f"{cat}/spike.csv"] = [[stamps[980], stamps[1020]]]
    (tmp_path / "windows.json").write_text(json.dumps(windows))
    monkeypatch.setattr(nab, "HOLDOUT_GRID", {"history": (200, 400)})
    parser = argparse.ArgumentParser()
    nab.configure(parser)
    args = parser.parse_args(["--data", str(data), "--windows", str(tmp_path / "windows.json"),
                              "--out", str(tmp_path / "out"), "--holdout", "category"])
    assert nab.run(args) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["holdout_settings"] == 2
    assert 0.0 <= last["holdout_standard"] <= 100.0 and "standard" in last
    assert (tmp_path / "out/holdout/one/spike.csv").exists()
