"""Models are deterministic and round-trip; walk-forward splits never let labels leak."""

from __future__ import annotations

import numpy as np
import pytest

from backtest.data import load_bars
from engine.errors import ConfigError, DataError
from models.estimators import SklearnModel
from models.features import FeatureSpec, compute
from models.labels import forward_return_labels
from models.walkforward import walk_forward_splits
from tests.conftest import DATA


@pytest.fixture(scope="module")
def dataset():
    bars = load_bars(DATA / "fx" / "EURUSD_1h.csv")
    features = compute(bars, FeatureSpec())
    labels = forward_return_labels(bars["close"], horizon=4, threshold=0.0005)
    usable = features.notna().all(axis=1) & labels.notna()
    return features[usable].to_numpy(), labels[usable].to_numpy()


@pytest.mark.parametrize("kind", ["gbm", "logreg"])
def test_same_seed_same_probabilities_and_save_load_round_trip(dataset, kind, tmp_path):
    X, y = dataset
    a = SklearnModel(kind, seed=7).fit(X[:2000], y[:2000])
    b = SklearnModel(kind, seed=7).fit(X[:2000], y[:2000])
    np.testing.assert_array_equal(a.predict_proba(X[2000:2100]), b.predict_proba(X[2000:2100]))
    a.save(tmp_path / "m.joblib")
    loaded = SklearnModel.load(tmp_path / "m.joblib")
    np.testing.assert_array_equal(loaded.predict_proba(X[2000:2100]), a.predict_proba(X[2000:2100]))
    assert list(loaded.classes) == [-1.0, 0.0, 1.0]
    proba = a.predict_proba(X[2000:2100])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_unknown_model_and_unusable_inputs_are_refused(dataset):
    X, y = dataset
    with pytest.raises(ConfigError, match="unknown model 'forest'"):
        SklearnModel("forest")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="NaN"):
        SklearnModel("gbm").fit(np.full((10, 3), np.nan), np.arange(10) % 2)
    with pytest.raises(DataError, match="one class"):
        SklearnModel("gbm").fit(X[:50], np.ones(50))


@pytest.mark.parametrize("window", ["expanding", "rolling"])
def test_walk_forward_purges_and_embargoes_so_no_training_label_sees_a_test_bar(window):
    horizon, embargo = 4, 3
    splits = walk_forward_splits(1000, folds=5, min_train=300, horizon=horizon, embargo=embargo, window=window)
    assert len(splits) == 5
    tested = np.concatenate([s.test for s in splits])
    assert np.array_equal(tested, np.arange(tested[0], 1000))  # test windows tile the rest, in order
    for split in splits:
        last_label_end = split.train.max() + horizon          # the furthest bar a training label looks at
        assert last_label_end + embargo < split.test.min()
        assert split.train.max() < split.test.min()
        if window == "rolling":
            assert len(split.train) == 300


def test_too_little_history_is_refused_before_any_work():
    with pytest.raises(ConfigError, match="too few"):
        walk_forward_splits(100, folds=3, min_train=95, horizon=10)
