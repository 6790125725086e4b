"""The torch models (MLP, GRU) behind the same interface: seeded, round-trip, windowed honestly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch", reason="the torch extra is not installed: `make test` installs it")

from backtest.data import load_bars  # noqa: E402
from engine.errors import DataError  # noqa: E402
from models.estimators import load_model, make_model  # noqa: E402
from models.features import FeatureSpec, compute  # noqa: E402
from models.labels import forward_return_labels  # noqa: E402
from models.training import predict_rows  # noqa: E402
from tests.conftest import DATA  # noqa: E402

SMALL = {"mlp": {"epochs": 4, "hidden": 16}, "gru": {"epochs": 2, "hidden": 8, "seq_len": 8}}


@pytest.fixture(scope="module")
def dataset():
    bars = load_bars(DATA / "fx" / "EURUSD_1h.csv").iloc[:1600]
    features = compute(bars, FeatureSpec())
    labels = forward_return_labels(bars["close"], horizon=4, threshold=0.0005)
    usable = features.notna().all(axis=1) & labels.notna()
    return features[usable].to_numpy(), labels[usable].to_numpy()


@pytest.mark.parametrize("kind", ["mlp", "gru"])
def test_same_seed_same_probabilities_and_save_load_round_trip(dataset, kind, tmp_path):
    X, y = dataset
    a = make_model(kind, seed=3, **SMALL[kind]).fit(X[:1000], y[:1000])
    b = make_model(kind, seed=3, **SMALL[kind]).fit(X[:1000], y[:1000])
    other = make_model(kind, seed=4, **SMALL[kind]).fit(X[:1000], y[:1000])
    test = X[1000:1200]
    np.testing.assert_array_equal(a.predict_proba(test), b.predict_proba(test))
    assert not np.array_equal(a.predict_proba(test), other.predict_proba(test)), "the seed must matter"
    a.save(tmp_path / "m.pt")
    loaded = load_model(kind, tmp_path / "m.pt")
    np.testing.assert_array_equal(loaded.predict_proba(test), a.predict_proba(test))
    assert list(loaded.classes) == [-1.0, 0.0, 1.0]
    proba = a.predict_proba(test)[a.context - 1:]
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_gru_reads_exactly_its_window(dataset):
    """Row t's prediction depends on rows t-seq_len+1..t: the same window alone gives the same
    answer, and changing a row before the window changes nothing."""
    X, y = dataset
    gru = make_model("gru", seed=0, **SMALL["gru"]).fit(X[:800], y[:800])
    L = gru.context
    batch = gru.predict_proba(X[:300])
    assert np.isnan(batch[: L - 1]).all() and not np.isnan(batch[L - 1:]).any()
    for t in (L - 1, 100, 299):
        alone = gru.predict_proba(X[t - L + 1: t + 1])[-1]
        np.testing.assert_allclose(alone, batch[t], rtol=0, atol=1e-12)
    changed = X[:300].copy()
    changed[: 200 - L + 1] *= 3.0
    np.testing.assert_allclose(gru.predict_proba(changed)[200], batch[200], rtol=0, atol=1e-12)


def test_predict_rows_gives_a_test_fold_its_context_without_its_labels(dataset):
    X, y = dataset
    frame = pd.DataFrame(X)
    gru = make_model("gru", seed=0, **SMALL["gru"]).fit(X[:800], y[:800])
    rows = np.arange(900, 950)
    fold = predict_rows(gru, frame, rows)
    assert list(fold.index) == list(rows) and not fold.isna().any().any()
    np.testing.assert_allclose(fold.to_numpy(), gru.predict_proba(X[:950])[900:950], rtol=0, atol=1e-12)


def test_bad_parameters_and_too_short_data_are_refused(dataset):
    X, y = dataset
    with pytest.raises(DataError, match="unknown gru parameter 'layers'"):
        make_model("gru", layers=3)
    with pytest.raises(DataError, match="too few"):
        make_model("gru", seq_len=16).fit(X[:10], y[:10])
