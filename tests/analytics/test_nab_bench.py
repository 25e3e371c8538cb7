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
