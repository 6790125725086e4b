"""ML speed: per-bar live inference latency and training time.

Live inference is what a bot pays at every bar close: update IncrementalFeatures with the bar
(each indicator's recursive state), then predict from the last `context` feature rows. Measured
per bar over `--live-bars` bars after a `--window`-bar warm-up, for each model kind; p50 and p99.

Training: one fit of each model kind on `--train-bars` bars (default 100,000), bootstrapped from
the real EURUSD hourly bars as in bench/backtest_speed.py (features computed once, timed apart).

    .venv/bin/python bench/ml_speed.py [--train-bars 100000] [--live-bars 1000] [--window 1000]

Not a test: figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import time
from collections import deque

import numpy as np

from bench.backtest_speed import bootstrap_bars
from models.estimators import make_model
from models.features import FeatureSpec, IncrementalFeatures, compute
from models.labels import forward_return_labels

KINDS = {"gbm": {}, "logreg": {}, "mlp": {"epochs": 10}, "gru": {"epochs": 3}}


def training_set(n: int) -> tuple[np.ndarray, np.ndarray, float]:
    bars = bootstrap_bars(n, seed=7)
    started = time.perf_counter()
    features = compute(bars, FeatureSpec())
    elapsed = time.perf_counter() - started
    labels = forward_return_labels(bars["close"], horizon=4, threshold=0.0005)
    usable = features.notna().all(axis=1) & labels.notna()
    return features[usable].to_numpy(), labels[usable].to_numpy(), elapsed


def live_latency(kind: str, model: object, live_bars: int, window: int) -> tuple[float, float, float]:
    """p50, p99 of features + predict per bar (ms), and the features-only p50."""
    spec = FeatureSpec()
    bars = bootstrap_bars(window + live_bars, seed=11)
    features = IncrementalFeatures(spec)
    rows: deque[np.ndarray] = deque(maxlen=model.context)  # type: ignore[attr-defined]
    totals, feature_only = [], []
    for n, bar in enumerate(bars.itertuples()):
        ts = bar.Index
        started = time.perf_counter()
        row = features.update_array(ts, bar.open, bar.high, bar.low, bar.close, bar.volume)
        after_features = time.perf_counter()
        if np.isnan(row).any():
            continue
        rows.append(row)
        if len(rows) == rows.maxlen:
            model.predict_proba(np.asarray(rows))  # type: ignore[attr-defined]
        done = time.perf_counter()
        if n >= window:  # measure once the window is full, as in a running bot
            totals.append(done - started)
            feature_only.append(after_features - started)
    ms = np.asarray(totals) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), float(np.median(feature_only) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-bars", type=int, default=100_000)
    parser.add_argument("--live-bars", type=int, default=1_000)
    parser.add_argument("--window", type=int, default=1_000)
    parser.add_argument("--kinds", default=",".join(KINDS))
    args = parser.parse_args()
    X, y, feature_s = training_set(args.train_bars)
    print(f"features over {args.train_bars:,} bars (batch): {feature_s:.2f} s; "
          f"{len(X):,} usable rows, {X.shape[1]} features")
    for kind in args.kinds.split(","):
        started = time.perf_counter()
        model = make_model(kind, seed=0, **KINDS[kind]).fit(X, y)
        fit_s = time.perf_counter() - started
        p50, p99, feat = live_latency(kind, model, args.live_bars, args.window)
        print(f"{kind:7s} train {fit_s:7.2f} s ({KINDS[kind] or 'defaults'}) | live per bar: p50 {p50:6.2f} ms, "
              f"p99 {p99:6.2f} ms (features alone p50 {feat:.2f} ms)")


if __name__ == "__main__":
    main()
