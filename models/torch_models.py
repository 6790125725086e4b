"""torch models behind the SignalModel interface: an MLP over one feature row, a GRU over a window.

Both standardise their inputs with the training set's mean and deviation (stored with the
weights, so live inference scales exactly as training did) and compute in float64: the backtest
predicts thousands of rows in one batch while live predicts one window at a time, and in float32
the two could differ in the last bits and flip a signal that sits on its threshold.

Deterministic with a seed: weights are initialised after `torch.manual_seed(seed)` and batches
are shuffled by a generator of that seed, on one thread (intra-op threads split sums
differently with the thread count).

The GRU reads the last `seq_len` feature rows: its prediction for row t uses rows t-seq_len+1..t,
so it needs `context = seq_len` rows and returns NaN for the first `seq_len - 1` rows of a batch.
Callers that predict a slice of a longer history (walk-forward folds, live windows) pass the
`context - 1` rows before it and drop them from the answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

try:
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("the mlp and gru models need torch: pip install 'tickbridge[torch]'") from exc

from engine.errors import DataError
from models.estimators import check_features, check_labels

TorchKind = Literal["mlp", "gru"]
DEFAULTS: dict[str, dict[str, Any]] = {
    "mlp": {"hidden": 64, "epochs": 30, "lr": 1e-3, "batch_size": 256, "weight_decay": 1e-4},
    "gru": {"hidden": 32, "epochs": 15, "lr": 2e-3, "batch_size": 256, "weight_decay": 1e-4, "seq_len": 16},
}


class _Mlp(nn.Module):
    def __init__(self, n_in: int, hidden: int, n_out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _Gru(nn.Module):
    def __init__(self, n_in: int, hidden: int, n_out: int) -> None:
        super().__init__()
        self.gru = nn.GRU(n_in, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, last = self.gru(x)          # last hidden state: (1, batch, hidden)
        return self.head(last[0])


class TorchModel:
    """An MLP or a GRU classifier: fit, predict_proba, save, load."""

    def __init__(self, kind: TorchKind, seed: int = 0, **params: Any) -> None:
        if kind not in DEFAULTS:
            raise ValueError(f"unknown torch model {kind!r}")
        unknown = set(params) - set(DEFAULTS[kind])
        if unknown:
            raise DataError(f"unknown {kind} parameter {sorted(unknown)[0]!r}; known: {', '.join(DEFAULTS[kind])}")
        self.kind = kind
        self.seed = seed
        self.params = {**DEFAULTS[kind], **params}
        self.classes = np.array([])
        self.net: nn.Module | None = None
        self.mean = np.array([])
        self.std = np.array([])

    @property
    def context(self) -> int:
        """Feature rows one prediction reads (1 for the MLP, the window for the GRU)."""
        return int(self.params["seq_len"]) if self.kind == "gru" else 1

    @property
    def n_features(self) -> int:
        return len(self.mean)

    def _build(self, n_in: int) -> nn.Module:
        n_out, hidden = len(self.classes), int(self.params["hidden"])
        net = _Mlp(n_in, hidden, n_out) if self.kind == "mlp" else _Gru(n_in, hidden, n_out)
        return net.double()

    def _inputs(self, X: np.ndarray) -> torch.Tensor:
        """Standardised rows (MLP) or sliding windows ending at each row from `context - 1` on (GRU)."""
        Z = (X - self.mean) / self.std
        if self.kind == "mlp":
            return torch.from_numpy(np.ascontiguousarray(Z))
        windows = np.lib.stride_tricks.sliding_window_view(Z, self.context, axis=0)  # (n-L+1, F, L)
        return torch.from_numpy(windows.transpose(0, 2, 1).copy())  # a writable, contiguous copy

    def fit(self, X: np.ndarray, y: np.ndarray) -> "TorchModel":
        X, y = check_features(X), check_labels(X, y)
        if len(X) < self.context + 1:
            raise DataError(f"{len(X)} rows are too few for a {self.kind} with a window of {self.context}")
        self.classes = np.unique(y)
        self.mean = X.mean(axis=0)
        self.std = np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)
        targets = torch.from_numpy(np.searchsorted(self.classes, y[self.context - 1:]).astype(np.int64))
        with _single_thread():
            torch.manual_seed(self.seed)
            net = self._build(X.shape[1])
            inputs = self._inputs(X)
            optimiser = torch.optim.AdamW(net.parameters(), lr=float(self.params["lr"]),
                                          weight_decay=float(self.params["weight_decay"]))
            loss_fn = nn.CrossEntropyLoss()
            order = torch.Generator().manual_seed(self.seed)
            batch = int(self.params["batch_size"])
            net.train()
            for _ in range(int(self.params["epochs"])):
                for idx in torch.randperm(len(inputs), generator=order).split(batch):
                    optimiser.zero_grad()
                    loss_fn(net(inputs[idx]), targets[idx]).backward()
                    optimiser.step()
            net.eval()
        self.net = net
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if self.net is None:
            raise DataError(f"the {self.kind} model is not fitted")
        X = check_features(X)
        out = np.full((len(X), len(self.classes)), np.nan)
        if len(X) < self.context:
            return out
        with _single_thread(), torch.no_grad():
            proba = torch.softmax(self.net(self._inputs(X)), dim=1).numpy()
        out[self.context - 1:] = proba
        return out

    def save(self, path: Path) -> None:
        assert self.net is not None, "fit before saving"
        torch.save({"kind": self.kind, "seed": self.seed, "params": self.params,
                    "classes": self.classes.tolist(), "mean": torch.from_numpy(self.mean),
                    "std": torch.from_numpy(self.std), "state": self.net.state_dict()}, path)

    @classmethod
    def load(cls, path: Path) -> "TorchModel":
        data = torch.load(path, weights_only=True)  # no pickle: a model file cannot run code
        model = cls(data["kind"], data["seed"], **data["params"])
        model.classes = np.asarray(data["classes"], dtype=np.float64)
        model.mean, model.std = data["mean"].numpy(), data["std"].numpy()
        model.net = model._build(len(model.mean))
        model.net.load_state_dict(data["state"])
        model.net.eval()
        return model


class _single_thread:
    """Run torch on one intra-op thread, then restore the caller's setting."""

    def __enter__(self) -> None:
        self.before = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.before)
