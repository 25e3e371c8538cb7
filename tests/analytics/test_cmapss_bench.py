"""`vigil bench cmapss --quick` end to end on small synthetic files in C-MAPSS format."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from analytics.bench import cmapss


def write_engines(path: Path, lives: list[int], cut: list[int], seed: int) -> list[int]:
    """Run-to-failure engines (or cut short), 26 columns; returns the cycles left at each cut."""
    rng = np.random.default_rng(seed)
    rows = []
    for unit, (life, stop) in enumerate(zip(lives, cut, strict=True), start=1):
        for t in range(1, stop + 1):
            wear = max(0.0, (t - 0.4 * life) / (0.6 * life)) ** 1.5
            sensors = rng.normal(0, 0.3, 21)
            sensors[1] += 10 + 3 * wear
            sensors[3] += 50 - 2 * wear
            sensors[5] = 7.0  # constant: dropped
            rows.append([unit, t, *rng.normal(0, 0.001, 3), *sensors])
    np.savetxt(path, np.array(rows), fmt="%.5f")
    return [life - stop for life, stop in zip(lives, cut, strict=True)]


def test_quick_bench_prints_cv_first_and_test_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    lives = [int(v) for v in rng.integers(120, 260, 15)]
    write_engines(tmp_path / "train_X.txt", lives, lives, seed=1)
    test_lives = [int(v) for v in rng.integers(120, 260, 8)]
    cut = [int(rng.integers(30, life - 5)) for life in test_lives]
    left = write_engines(tmp_path / "test_X.txt", test_lives, cut, seed=2)
    (tmp_path / "RUL_X.txt").write_text("\n".join(str(v) for v in left) + "\n")
    parser = argparse.ArgumentParser()
    cmapss.configure(parser)
    args = parser.parse_args(["--data", str(tmp_path), "--subset", "X", "--quick", "--folds", "3"])
    assert cmapss.run(args) == 0

    out = capsys.readouterr().out.splitlines()
    figures = json.loads(out[-1])
    for key in ("rmse", "band_coverage", "band_coverage_far", "brier", "brier_far", "cv_rmse",
                "cv_band_coverage", "cv_band_coverage_far", "calibration_bins"):
        assert key in figures
    assert figures["test_engines"] == 8
    text = "\n".join(out[:-1])
    assert text.index("CV (out-of-fold") < text.index("test (8 engines")
    assert sum(line.lstrip().startswith("RMSE") for line in out) == 1  # the test figures, once
    assert all(name in text for name in cmapss.FIXED)
