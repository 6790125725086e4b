"""Walk-forward training: out-of-sample metrics a trader can trust, then the model to deploy.

Features and labels are built once over the whole history (features are causal; labels are NaN
where their future is missing). Each walk-forward fold fits on its purged, embargoed training
bars and predicts its test window; the concatenated test predictions are out of sample by
construction. Metrics: accuracy, log loss, AUC (one-vs-rest, macro), and a calibration table of
P(up) in ten bins against the realised share of up labels. The model to deploy is then fitted on
every usable bar, with the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from engine.errors import DataError
from models.estimators import ModelKind, SignalModel, make_model
from models.features import FeatureSpec, compute
from models.labels import forward_return_labels
from models.walkforward import walk_forward_splits


@dataclass(frozen=True, slots=True)
class TrainConfig:
    kind: ModelKind = "gbm"
    horizon: int = 4
    threshold: float = 0.0005
    folds: int = 5
    min_train: int = 1000
    embargo: int = 10
    window: Literal["expanding", "rolling"] = "expanding"
    seed: int = 0
    spec: FeatureSpec = field(default_factory=FeatureSpec)
    model_params: dict[str, Any] = field(default_factory=dict)
    threads: int | None = None  # OpenMP/BLAS threads for gbm/logreg; None: estimators.training_threads()


@dataclass(slots=True)
class TrainResult:
    model: SignalModel                  # fitted on every usable bar: the one to deploy
    oos_proba: pd.DataFrame             # out-of-sample class probabilities, one column per class
    oos_labels: pd.Series
    metrics: dict[str, Any]
    train_window: tuple[int, int]       # ns of the first and last bar the deployed model saw


def train(bars: pd.DataFrame, config: TrainConfig, progress: Callable[[int, int], None] | None = None) -> TrainResult:
    features = compute(bars, config.spec)
    labels = forward_return_labels(bars["close"], config.horizon, config.threshold)
    usable = features.notna().all(axis=1) & labels.notna()
    X, y = features[usable], labels[usable]
    splits = walk_forward_splits(len(X), config.folds, config.min_train, config.horizon, config.embargo,
                                 config.window)  # refuses too little history before any fitting
    probas, truths = [], []
    for done, split in enumerate(splits):
        model = make_model(config.kind, config.seed, config.threads, **config.model_params).fit(
            X.iloc[split.train].to_numpy(), y.iloc[split.train].to_numpy())
        probas.append(predict_rows(model, X, split.test))
        truths.append(y.iloc[split.test])
        if progress is not None:
            progress(done + 1, len(splits))
    oos = pd.concat(probas).fillna(0.0)  # a class a fold never saw has probability 0
    oos_labels = pd.concat(truths)
    final = make_model(config.kind, config.seed, config.threads, **config.model_params).fit(X.to_numpy(), y.to_numpy())
    times = X.index.as_unit("ns").asi8
    return TrainResult(final, oos, oos_labels, evaluate(oos, oos_labels), (int(times[0]), int(times[-1])))


def predict_rows(model: SignalModel, X: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """Class probabilities for the consecutive rows `rows` of X, reading the `context - 1` rows
    before them too (a GRU's window); rows are features only, so this sees no label."""
    start, stop = int(rows[0]), int(rows[-1]) + 1
    first = max(0, start - (model.context - 1))
    proba = model.predict_proba(X.iloc[first:stop].to_numpy())[start - first:]
    return pd.DataFrame(proba, index=X.index[start:stop], columns=model.classes)


def evaluate(proba: pd.DataFrame, labels: pd.Series) -> dict[str, Any]:
    """Out-of-sample accuracy, log loss, AUC and a P(up) calibration table."""
    if len(labels) == 0:
        raise DataError("no out-of-sample rows to evaluate")
    classes = list(proba.columns)
    predicted = np.asarray(classes)[proba.to_numpy().argmax(axis=1)]
    present = sorted(set(labels.tolist()))
    metrics: dict[str, Any] = {
        "oos_rows": int(len(labels)),
        "accuracy": float(accuracy_score(labels, predicted)),
        "log_loss": float(log_loss(labels, proba.to_numpy(), labels=classes)),
        "base_rate": {str(int(c)): float((labels == c).mean()) for c in present},
    }
    if len(present) > 1:
        if len(classes) == 2:
            metrics["auc"] = float(roc_auc_score(labels, proba.iloc[:, 1]))
        else:
            metrics["auc"] = float(roc_auc_score(labels, proba.to_numpy(), multi_class="ovr", average="macro",
                                                 labels=classes))
    if 1.0 in classes:
        p_up = proba[1.0].to_numpy()
        bins = np.minimum((p_up * 10).astype(int), 9)
        metrics["calibration_up"] = [
            {"bin": f"{b / 10:.1f}-{(b + 1) / 10:.1f}", "rows": int((bins == b).sum()),
             "mean_p": float(p_up[bins == b].mean()), "realised": float((labels.to_numpy()[bins == b] == 1.0).mean())}
            for b in range(10) if (bins == b).any()]
    return metrics
