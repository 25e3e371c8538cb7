"""Score the streaming anomaly detector on the Numenta Anomaly Benchmark.

Runs the default detector over every CSV under --data, one fresh detector per
file (no parameter changes per file), writes category/name.csv with
timestamp,anomaly_score under --out, reports the detector's throughput, then
runs the NAB scorer (one global threshold per profile) when the label windows
are present. The last line of output is one JSON object with the figures.

``--holdout category`` also measures how the tuning carries over to data it
did not see: for each category (top-level folder), a setting is chosen from a
small grid on the other categories only, and that category is scored with it.
The held-out results of all categories are then scored together, as NAB
scores a corpus, and reported as ``holdout_standard`` beside ``standard``.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SHARED = Path(__file__).resolve().parents[2].parent / "shared"
DEFAULT_DATA = _SHARED / "datasets/nab/data"
DEFAULT_WINDOWS = _SHARED / "datasets/nab/windows.json"
DEFAULT_SCORER = _SHARED / "tools/nab_score.py"
PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")

# The leave-one-category-out grid: the settings the README's sweep found
# sensitive (the calibration window and the shape span), each a factor of two
# either side of the default, and the alarm margin that starts a refractory
# period. 3 x 3 x 2 = 18 settings, about 2 s of CPU each over the 41 series.
HOLDOUT_GRID: dict[str, tuple[Any, ...]] = {
    "history": (250, 500, 1000),
    "shape_block_size": (4, 8, 16),
    "alarm_margin": (2.0, 4.0),
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="NAB data folder")
    parser.add_argument(
        "--windows", type=Path, default=DEFAULT_WINDOWS, help="NAB label windows (JSON)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="results folder (default: a new temporary one)"
    )
    parser.add_argument("--scorer", type=Path, default=DEFAULT_SCORER, help="nab_score.py")
    parser.add_argument(
        "--holdout",
        choices=("none", "category"),
        default="none",
        help="also tune on all categories but one and score the one left out, for each",
    )


@dataclass
class Series:
    """One NAB data file, read once."""

    rel: str
    stamps: list[str]
    seconds: list[float]
    values: list[float]

    @property
    def category(self) -> str:
        return self.rel.split("/", 1)[0]


def read_series(data_dir: Path, path: Path) -> Series:
    import csv
    from datetime import UTC, datetime

    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    stamps = [r["timestamp"] for r in rows]
    seconds = [datetime.fromisoformat(s).replace(tzinfo=UTC).timestamp() for s in stamps]
    return Series(path.relative_to(data_dir).as_posix(), stamps, seconds,
                  [float(r["value"]) for r in rows])


def grid_settings(grid: Mapping[str, Sequence[Any]]) -> list[tuple[int, ...]]:
    """Every point of the grid, as a tuple of indices into its axes."""
    return list(itertools.product(*(range(len(v)) for v in grid.values())))


def setting_params(grid: Mapping[str, Sequence[Any]], point: tuple[int, ...]) -> dict[str, Any]:
    return {name: values[i] for (name, values), i in zip(grid.items(), point, strict=True)}


def plateau_choice(
    scores: Mapping[tuple[int, ...], float], sizes: Sequence[int]
) -> tuple[int, ...]:
    """The grid point whose neighbourhood scores best on average.

    A point's neighbourhood is itself and the points one step away along one
    axis. Averaging over it prefers a setting on a plateau to a sharp peak,
    whose neighbours show how much of its score is luck on the tuning data.
    Ties go to the better point itself, then to the earlier one.
    """

    def neighbourhood(p: tuple[int, ...]) -> float:
        near = [scores[p]]
        for axis, size in enumerate(sizes):
            for step in (-1, 1):
                j = p[axis] + step
                if 0 <= j < size:
                    near.append(scores[p[:axis] + (j,) + p[axis + 1 :]])
        return sum(near) / len(near)

    return max(sorted(scores), key=lambda p: (neighbourhood(p), scores[p]))


class NabScorer:
    """The shared NAB scorer's own functions, applied in memory to any subset of files.

    Loading the tool as a module (not rewriting its rules) keeps every figure
    here identical to what ``nab_score.py`` prints for the same results.
    """

    def __init__(self, scorer_path: Path, windows_path: Path, series: Sequence[Series]) -> None:
        import importlib.util
        import json

        spec = importlib.util.spec_from_file_location("nab_score", scorer_path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {scorer_path}")
        self.tool = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.tool)
        windows = json.loads(windows_path.read_text())
        self.labels: dict[str, tuple[Any, Any, int]] = {}
        for s in series:
            if s.rel not in windows:
                continue
            wins = [[self.tool._norm(a, s.stamps), self.tool._norm(b, s.stamps)]
                    for a, b in windows[s.rel]]
            wid, sweep, _ = self.tool.file_rows(s.stamps, wins, s.rel)
            self.labels[s.rel] = (wid, sweep, len(wins))

    def windows(self, rels: Sequence[str]) -> int:
        return sum(self.labels[r][2] for r in rels if r in self.labels)

    def evaluate(
        self, results: Mapping[str, Any], profile: str = "standard"
    ) -> tuple[float, float]:
        """(normalised score, threshold) of these files' results, one global threshold."""
        import numpy as np

        rows, offset = [], 0
        for rel in sorted(results):
            if rel not in self.labels:
                continue
            wid, sweep, n = self.labels[rel]
            gwid = np.where(wid >= 0, wid + offset, wid)
            offset += n
            rows.append({"score": np.asarray(results[rel], dtype=float), "s": sweep,
                         "gwid": gwid})
        score, threshold = self.tool.corpus_scores(rows, offset, self.tool.PROFILES[profile])
        return float(score), float(threshold)


def leave_one_category_out(
    series: Sequence[Series],
    grid: Mapping[str, Sequence[Any]],
    outputs: Callable[[tuple[int, ...]], Mapping[str, Any]],
    scorer: NabScorer,
) -> tuple[dict[str, tuple[int, ...]], dict[str, Any]]:
    """For each category, the setting chosen on the others; and the held-out results.

    ``outputs(point)`` gives every file's scores under one grid point (the
    caller caches them, so each setting runs over the data once).
    """
    categories = sorted({s.category for s in series})
    points = grid_settings(grid)
    sizes = [len(v) for v in grid.values()]
    chosen: dict[str, tuple[int, ...]] = {}
    held_out: dict[str, Any] = {}
    for category in categories:
        train = [s.rel for s in series if s.category != category]
        scores = {}
        for p in points:
            out = outputs(p)
            scores[p] = scorer.evaluate({r: out[r] for r in train})[0]
        chosen[category] = plateau_choice(scores, sizes)
        out = outputs(chosen[category])
        held_out.update({s.rel: out[s.rel] for s in series if s.category == category})
    return chosen, held_out


def write_results(out_dir: Path, series: Sequence[Series], results: Mapping[str, Any]) -> None:
    import csv

    for s in series:
        target = out_dir / s.rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["timestamp", "anomaly_score"])
            writer.writerows(zip(s.stamps, (repr(float(v)) for v in results[s.rel]),
                                 strict=True))


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    import tempfile
    import time

    from analytics.detectors import NoveltyEnsembleDetector, surprise_to_score

    data_dir: Path = args.data
    files = sorted(p for p in data_dir.rglob("*.csv") if p.is_file())
    if not files:
        print(f"no CSV files under {data_dir}", file=sys.stderr)
        return 2
    series = [read_series(data_dir, p) for p in files]
    out_dir: Path = args.out or Path(tempfile.mkdtemp(prefix="vigil-nab-"))
    print(f"detector NoveltyEnsembleDetector {NoveltyEnsembleDetector().get_params()}")
    print(f"data {data_dir} ({len(files)} files) -> results {out_dir}")

    total_samples = 0
    cpu_seconds = 0.0
    wall_seconds = 0.0
    default_results: dict[str, list[float]] = {}
    for i, s in enumerate(series, 1):
        detector = NoveltyEnsembleDetector()
        threshold = surprise_to_score(detector.alarm_surprise)
        c0, w0 = time.process_time(), time.perf_counter()
        scores = detector.update_many(s.seconds, s.values)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        total_samples += len(s.values)
        cpu_seconds += cpu
        wall_seconds += wall
        default_results[s.rel] = scores
        alarms = sum(1 for v in scores if v >= threshold)
        rate = len(s.values) / cpu if cpu > 0 else float("inf")
        print(f"[{i:2d}/{len(files)}] {s.rel:58s} {len(s.values):6d} rows "
              f"{alarms:3d} alarms {rate:9,.0f} samples/s")
    write_results(out_dir, series, default_results)

    samples_per_s = total_samples / cpu_seconds if cpu_seconds > 0 else float("inf")
    figures: dict[str, object] = {
        "bench": "nab",
        "detector": "NoveltyEnsembleDetector",
        "files": len(files),
        "samples": total_samples,
        "samples_per_s": round(samples_per_s),
        "samples_per_s_wall": round(total_samples / wall_seconds) if wall_seconds else None,
        "results": str(out_dir),
    }
    print(f"detector: {total_samples:,} samples in {cpu_seconds:.2f} s CPU "
          f"({samples_per_s:,.0f} samples/s on one core; wall {wall_seconds:.2f} s)")

    if not (args.windows.exists() and args.scorer.exists()):
        print(f"no label windows at {args.windows} (or no scorer): scores not computed")
        print(json.dumps(figures))
        return 0
    scorer = NabScorer(args.scorer, args.windows, series)
    scored = [r for r in default_results if r in scorer.labels]
    print(f"NAB scores over {len(scored)} files, {scorer.windows(scored)} windows "
          "(0 = null detector, 100 = perfect):")
    for profile in PROFILES:
        score, threshold = scorer.evaluate(default_results, profile)
        print(f"  {profile:20s} {score:6.2f}  (threshold {threshold:.4f})")
        figures[profile] = round(score, 2)
    figures["scored_files"] = len(scored)
    figures["windows"] = scorer.windows(scored)

    if args.holdout == "category":
        figures.update(_holdout(series, scorer, out_dir, default_results))
    print(json.dumps(figures))
    return 0


def _holdout(
    series: Sequence[Series], scorer: NabScorer, out_dir: Path,
    default_results: Mapping[str, list[float]],
) -> dict[str, object]:
    """Runs the leave-one-category-out protocol and prints what it chose and scored."""
    from analytics.detectors import NoveltyEnsembleDetector

    default = NoveltyEnsembleDetector().get_params()
    cache: dict[tuple[int, ...], Mapping[str, Any]] = {}

    def outputs(point: tuple[int, ...]) -> Mapping[str, Any]:
        if point not in cache:
            params = setting_params(HOLDOUT_GRID, point)
            if all(default[k] == v for k, v in params.items()):
                cache[point] = default_results
            else:
                cache[point] = {
                    s.rel: NoveltyEnsembleDetector(**params).update_many(s.seconds, s.values)
                    for s in series
                }
        return cache[point]

    print(f"leave one category out over {len(grid_settings(HOLDOUT_GRID))} settings "
          f"{dict(HOLDOUT_GRID)}; choice: best average over each setting and its grid "
          "neighbours on the other categories")
    chosen, held_out = leave_one_category_out(series, HOLDOUT_GRID, outputs, scorer)
    for category, point in chosen.items():
        rels = [s.rel for s in series if s.category == category]
        alone = (f"{scorer.evaluate({r: held_out[r] for r in rels})[0]:6.2f}"
                 if scorer.windows(rels) else "  (no windows)")
        print(f"  {category:24s} held out: chose {setting_params(HOLDOUT_GRID, point)}"
              f", scores {alone} on it alone")
    everywhere = {p: scorer.evaluate(outputs(p))[0] for p in grid_settings(HOLDOUT_GRID)}
    print("  every setting on all categories (standard): " + ", ".join(
        f"{tuple(setting_params(HOLDOUT_GRID, p).values())} {v:.1f}"
        for p, v in everywhere.items()))
    write_results(out_dir / "holdout", series, held_out)
    figures: dict[str, object] = {}
    print("held-out results of all categories together:")
    for profile in PROFILES:
        score, threshold = scorer.evaluate(held_out, profile)
        print(f"  {profile:20s} {score:6.2f}  (threshold {threshold:.4f})")
        figures[f"holdout_{profile}"] = round(score, 2)
    figures["holdout_settings"] = len(grid_settings(HOLDOUT_GRID))
    return figures
