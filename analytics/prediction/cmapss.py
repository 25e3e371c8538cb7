"""Reader for NASA's C-MAPSS turbofan text files.

The files are as published: space separated, no header, rows ending in spaces,
and ``RUL_FD*.txt`` ends with blank lines. This is the only I/O of the
prediction package, so the models themselves work on any DataFrame of
run-to-failure histories.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

UNIT = "unit"
CYCLE = "cycle"
SETTINGS: tuple[str, ...] = ("setting_1", "setting_2", "setting_3")
SENSORS: tuple[str, ...] = tuple(f"sensor_{i}" for i in range(1, 22))
COLUMNS: tuple[str, ...] = (UNIT, CYCLE, *SETTINGS, *SENSORS)


def read_history(path: str | Path) -> pd.DataFrame:
    """One ``train_FD*.txt`` or ``test_FD*.txt`` file, one row per unit and cycle."""
    frame = pd.read_csv(path, sep=r"\s+", header=None, engine="python", skip_blank_lines=True)
    frame = frame.dropna(axis=1, how="all")
    if frame.shape[1] != len(COLUMNS):
        raise ValueError(f"{path}: expected {len(COLUMNS)} columns, found {frame.shape[1]}")
    frame.columns = list(COLUMNS)
    frame[[UNIT, CYCLE]] = frame[[UNIT, CYCLE]].astype(np.int64)
    return frame.sort_values([UNIT, CYCLE], kind="stable").reset_index(drop=True)


def read_rul(path: str | Path) -> np.ndarray:
    """``RUL_FD*.txt``: true remaining cycles of each test unit, in unit order."""
    values = [line.strip() for line in Path(path).read_text().splitlines()]
    return np.array([int(float(v)) for v in values if v], dtype=np.int64)


@dataclass(frozen=True)
class Subset:
    """One C-MAPSS subset: training histories, truncated test histories, test truth."""

    train: pd.DataFrame
    test: pd.DataFrame
    test_rul: np.ndarray


def subset_files(directory: str | Path, name: str = "FD001") -> tuple[Path, Path, Path]:
    """The paths of ``train_<name>.txt``, ``test_<name>.txt`` and ``RUL_<name>.txt``."""
    directory = Path(directory)
    return (directory / f"train_{name}.txt", directory / f"test_{name}.txt",
            directory / f"RUL_{name}.txt")


def load_files(train: str | Path, test: str | Path, rul: str | Path) -> Subset:
    """A subset from its three files; the test file and the RUL file must agree."""
    subset = Subset(train=read_history(train), test=read_history(test), test_rul=read_rul(rul))
    if subset.test[UNIT].nunique() != len(subset.test_rul):
        raise ValueError(
            f"{test} has {subset.test[UNIT].nunique()} engines but {rul} "
            f"has {len(subset.test_rul)} rows"
        )
    return subset


def load_subset(directory: str | Path, name: str = "FD001") -> Subset:
    """Reads ``train_<name>.txt``, ``test_<name>.txt`` and ``RUL_<name>.txt``."""
    return load_files(*subset_files(directory, name))
