"""Score the streaming anomaly detector on the Numenta Anomaly Benchmark.

Runs the default detector over every CSV under --data, one fresh detector per
file (no parameter changes per file), writes category/name.csv with
timestamp,anomaly_score under --out, reports the detector's throughput, then
runs the NAB scorer (one global threshold per profile) when the label windows
are present. The last line of output is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
from pathlib import Path

_SHARED = Path(__file__).resolve().parents[2].parent / "shared"
DEFAULT_DATA = _SHARED / "datasets/nab/data"
DEFAULT_WINDOWS = _SHARED / "datasets/nab/windows.json"
DEFAULT_SCORER = _SHARED / "tools/nab_score.py"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="NAB data folder")
    parser.add_argument(
        "--windows", type=Path, default=DEFAULT_WINDOWS, help="NAB label windows (JSON)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="results folder (default: a new temporary one)"
    )
    parser.add_argument("--scorer", type=Path, default=DEFAULT_SCORER, help="nab_score.py")


def run(args: argparse.Namespace) -> int:
    import csv
    import json
    import subprocess
    import sys
    import tempfile
    import time
    from datetime import UTC, datetime

    from analytics.detectors import NoveltyEnsembleDetector, surprise_to_score

    data_dir: Path = args.data
    files = sorted(p for p in data_dir.rglob("*.csv") if p.is_file())
    if not files:
        print(f"no CSV files under {data_dir}", file=sys.stderr)
        return 2
    out_dir: Path = args.out or Path(tempfile.mkdtemp(prefix="vigil-nab-"))
    print(f"detector NoveltyEnsembleDetector {NoveltyEnsembleDetector().get_params()}")
    print(f"data {data_dir} ({len(files)} files) -> results {out_dir}")

    total_samples = 0
    cpu_seconds = 0.0
    wall_seconds = 0.0
    for i, path in enumerate(files, 1):
        rel = path.relative_to(data_dir)
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        stamps = [r["timestamp"] for r in rows]
        seconds = [
            datetime.fromisoformat(s).replace(tzinfo=UTC).timestamp() for s in stamps
        ]
        values = [float(r["value"]) for r in rows]
        detector = NoveltyEnsembleDetector()
        threshold = surprise_to_score(detector.alarm_surprise)
        c0, w0 = time.process_time(), time.perf_counter()
        scores = detector.score_many(seconds, values)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        total_samples += len(values)
        cpu_seconds += cpu
        wall_seconds += wall
        target = out_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["timestamp", "anomaly_score"])
            writer.writerows(zip(stamps, (repr(s) for s in scores), strict=True))
        alarms = sum(1 for s in scores if s >= threshold)
        rate = len(values) / cpu if cpu > 0 else float("inf")
        print(f"[{i:2d}/{len(files)}] {str(rel):58s} {len(values):6d} rows "
              f"{alarms:3d} alarms {rate:9,.0f} samples/s")

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

    if args.windows.exists() and args.scorer.exists():
        cmd = [sys.executable, str(args.scorer), "--data", str(data_dir),
               "--windows", str(args.windows), "--results", str(out_dir), "--json"]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(done.stdout + done.stderr, file=sys.stderr)
            print(json.dumps(figures))
            return 1
        scored = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"NAB scores over {scored['files']} files, {scored['windows']} windows "
              "(0 = null detector, 100 = perfect):")
        for profile in ("standard", "reward_low_FP_rate", "reward_low_FN_rate"):
            if profile in scored:
                print(f"  {profile:20s} {scored[profile]['score']:6.2f}  "
                      f"(threshold {scored[profile]['threshold']:.4f})")
                figures[profile] = scored[profile]["score"]
        figures["scored_files"] = scored["files"]
        figures["windows"] = scored["windows"]
    else:
        print(f"no label windows at {args.windows} (or no scorer): scores not computed")
    print(json.dumps(figures))
    return 0
