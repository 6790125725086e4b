"""Walk-forward splits with purging and an embargo.

Fold k trains on bars before its test window and tests on the window. A label at bar t looks
`horizon` bars ahead, so the last `horizon` training bars before a test window have labels that
overlap it: they are purged. An embargo of `embargo` more bars widens that gap, so serial
correlation of features across the boundary cannot leak either. Training windows expand from
the start (`expanding`) or keep a fixed length (`rolling`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from engine.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Split:
    train: np.ndarray   # bar positions
    test: np.ndarray


def walk_forward_splits(n: int, folds: int, min_train: int, horizon: int, embargo: int = 0,
                        window: Literal["expanding", "rolling"] = "expanding") -> list[Split]:
    """`folds` consecutive test windows covering the bars after `min_train` (+ purge/embargo)."""
    if folds < 1 or min_train < 1 or horizon < 0 or embargo < 0:
        raise ConfigError("walk_forward", "folds and min_train must be >= 1, horizon and embargo >= 0")
    gap = horizon + embargo
    first_test = min_train + gap
    if first_test >= n:
        raise ConfigError("walk_forward", f"{n} bars are too few: training needs {min_train} plus a gap of {gap}")
    edges = np.linspace(first_test, n, folds + 1).astype(int)
    if np.any(np.diff(edges) < 1):
        raise ConfigError("walk_forward.folds", f"{folds} folds do not fit in {n - first_test} test bars")
    splits = []
    for start, end in zip(edges[:-1], edges[1:]):
        train_end = start - gap
        train_start = 0 if window == "expanding" else max(0, train_end - min_train)
        splits.append(Split(np.arange(train_start, train_end), np.arange(start, end)))
    return splits
