"""Models behind one interface: fit, predict_proba, save, load; deterministic with a seed.

Classes are the label values (-1 down, 0 flat, +1 up, or a subset); `predict_proba` returns one
column per class in `classes` order, so a signal can read P(up) whatever the model. scikit-learn
models are saved with joblib; the torch models (MLP, GRU, in models.torch_models) are saved
with torch's weights-only format and need the torch extra. `make_model` and `load_model` pick
the class from the kind, so callers never import torch themselves.

`context` is how many consecutive feature rows one prediction reads: 1 for every model but the
GRU, whose prediction for a row reads the window ending there.

Threads: scikit-learn's OpenMP team (the gbm's histograms) and BLAS default to every CPU of the
machine, not the ones this process may run on. On a loaded 2-core box pinned to one core, or in a
container given fewer cores than the host has, the extra threads spin waiting for each other
(gbm training took 4 to 12 minutes instead of about one). `fit` and large predictions therefore
run with `training_threads()`: the model's `threads` (the CLI's `--threads`), else
OMP_NUM_THREADS when set, else the number of CPUs in os.sched_getaffinity. `threads` is a run
setting, not a model parameter: it changes no prediction and is not saved or hashed. The CPUs a
process may use can still be busy with other work: OMP_WAIT_POLICY defaults to PASSIVE (below).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, Literal, Protocol

import os

# Before scikit-learn loads its OpenMP runtime (the variable is read once, at load): threads that
# wait at a barrier sleep instead of spinning. On a busy machine spinning threads take the cores
# the working ones need; measured on a 2-core box at load 10, `tickbridge train --model gbm` on
# EURUSD_1h took 86.8 s (54 s CPU) spinning and 16.9 s (10 s CPU) passive. A user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import joblib  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import Pipeline, make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from threadpoolctl import ThreadpoolController  # noqa: E402

from engine.errors import ConfigError, DataError  # noqa: E402

ModelKind = Literal["gbm", "logreg", "mlp", "gru"]
MODEL_KINDS: tuple[str, ...] = ("gbm", "logreg", "mlp", "gru")
TORCH_KINDS = frozenset({"mlp", "gru"})


class SignalModel(Protocol):
    kind: str
    seed: int
    params: dict[str, Any]
    classes: np.ndarray

    @property
    def context(self) -> int: ...
    @property
    def n_features(self) -> int: ...

    def fit(self, X: np.ndarray, y: np.ndarray) -> "SignalModel": ...
    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...
    def save(self, path: Path) -> None: ...


class SklearnModel:
    """HistGradientBoosting or a scaled logistic regression."""

    def __init__(self, kind: ModelKind, seed: int = 0, **params: object) -> None:
        self.kind = kind
        self.seed = seed
        self.params = params
        self.pipeline = self._build(kind, seed, params)
        self.classes = np.array([])
        self.threads: int | None = None  # None: training_threads() decides

    @property
    def context(self) -> int:
        return 1

    @property
    def n_features(self) -> int:
        return int(self.pipeline.n_features_in_)

    @staticmethod
    def _build(kind: str, seed: int, params: dict[str, object]) -> Pipeline:
        if kind == "gbm":
            return make_pipeline(HistGradientBoostingClassifier(random_state=seed, **params))  # type: ignore[arg-type]
        if kind == "logreg":
            return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed,
                                                                      **params))  # type: ignore[arg-type]
        raise ConfigError("model", f"unknown model {kind!r}; known: {', '.join(MODEL_KINDS)}")

    def fit(self, X: np.ndarray, y: np.ndarray) -> "SklearnModel":
        X = check_features(X)
        y = check_labels(X, y)
        with _threads().limit(limits=training_threads(self.threads)):
            self.pipeline.fit(X, y)
        self.classes = self.pipeline.classes_
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = check_features(X)
        if len(X) > SMALL_BATCH:
            with _threads().limit(limits=training_threads(self.threads)):
                return self.pipeline.predict_proba(X)
        # a live bar predicts one row: OpenMP's thread team costs more than it saves there, and on a
        # busy machine waking it is what makes the slow tail (p99 37 ms -> see docs/benchmarks.md)
        with _threads().limit(limits=1, user_api="openmp"):
            return self.pipeline.predict_proba(X)

    def save(self, path: Path) -> None:
        joblib.dump({"kind": self.kind, "seed": self.seed, "params": self.params, "pipeline": self.pipeline,
                     "classes": self.classes}, path)

    @classmethod
    def load(cls, path: Path) -> "SklearnModel":
        data = joblib.load(path)
        model = cls(data["kind"], data["seed"], **data["params"])
        model.pipeline, model.classes = data["pipeline"], data["classes"]
        return model


SMALL_BATCH = 64


@cache
def _threads() -> ThreadpoolController:
    return ThreadpoolController()


def training_threads(threads: int | None = None) -> int:
    """Threads for OpenMP and BLAS: `threads` when given, else OMP_NUM_THREADS when set to a
    positive integer, else the CPUs this process may run on (os.sched_getaffinity, which follows
    taskset, cgroup cpusets and container limits; os.cpu_count where there is no affinity)."""
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ConfigError("threads", f"must be a positive whole number, got {threads!r}")
        return threads
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity API (macOS, Windows)
        return max(1, os.cpu_count() or 1)


def make_model(kind: str, seed: int = 0, threads: int | None = None, **params: Any) -> SignalModel:
    """A new, unfitted model of `kind`; `threads` caps scikit-learn's OpenMP/BLAS threads (the torch
    models always train on one thread, for determinism)."""
    if kind in TORCH_KINDS:
        return _torch_models().TorchModel(kind, seed, **params)
    model = SklearnModel(kind, seed, **params)  # type: ignore[arg-type]  # refuses unknown kinds
    if threads is not None:
        training_threads(threads)  # refuses 0, negatives, non-integers
        model.threads = threads
    return model


def load_model(kind: str, path: Path) -> SignalModel:
    if kind in TORCH_KINDS:
        return _torch_models().TorchModel.load(path)
    return SklearnModel.load(path)


def artifact_suffix(kind: str) -> str:
    return ".pt" if kind in TORCH_KINDS else ".joblib"


def _torch_models() -> Any:
    try:
        from models import torch_models
    except ImportError:
        raise ConfigError("model", "the mlp and gru models need torch: pip install 'tickbridge[torch]'") from None
    return torch_models


def check_labels(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    if len(X) != len(y):
        raise DataError(f"{len(X)} feature rows but {len(y)} labels")
    if np.isnan(y).any():
        raise DataError("labels contain NaN: drop the rows whose future is unknown before fitting")
    if len(np.unique(y)) < 2:
        raise DataError("only one class in the training labels: nothing to learn")
    return y


def check_features(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise DataError(f"features must be a 2-D table, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise DataError("features contain NaN or inf: drop the warm-up rows before fitting or predicting")
    return X
