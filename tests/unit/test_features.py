"""ML features and labels: batch equals live at every bar close; no look-ahead; hand-made labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest.data import load_bars
from engine.errors import ConfigError, DataError
from models.features import FeatureSpec, IncrementalFeatures, compute, parse_spec
from models.labels import forward_return_labels, triple_barrier_labels
from tests.conftest import DATA


@pytest.fixture(scope="module")
def eurusd() -> pd.DataFrame:
    return load_bars(DATA / "fx" / "EURUSD_1h.csv")


@pytest.mark.parametrize("dataset", ["fx/EURUSD_1h.csv", "crypto/BTC-PERP_1m.csv", "stocks/SPY_daily.csv"])
def test_live_features_equal_batch_features_at_every_bar_close(dataset):
    bars = load_bars(DATA / dataset).iloc[:6000]
    spec = FeatureSpec(rsi=[7, 14], macd=[(12, 26, 9), (5, 35, 5)], bbands=[10, 20], atr=[14], volatility=[20, 50])
    batch = compute(bars, spec)
    live = IncrementalFeatures(spec)
    rows = [live.update_array(t, *row) for t, row in
            zip(bars.index, bars[["open", "high", "low", "close", "volume"]].itertuples(index=False))]
    incremental = pd.DataFrame(rows, index=bars.index, columns=live.names)
    assert list(incremental.columns) == list(batch.columns)
    assert (incremental.isna() == batch.isna()).all().all()
    assert batch.iloc[spec.lookback:].notna().all().all()
    # bit for bit: a tree model splits on thresholds that are training values, and prices on a
    # grid repeat, so a feature one ulp off can flip a prediction between backtest and live
    np.testing.assert_array_equal(incremental.to_numpy(), batch.to_numpy())


def test_live_features_refuse_a_bar_that_is_not_after_the_last():
    live = IncrementalFeatures(FeatureSpec())
    live.update_array(2, 1.0, 1.0, 1.0, 1.0, 1.0)
    with pytest.raises(DataError, match="not after"):
        live.update_array(2, 1.0, 1.0, 1.0, 1.0, 1.0)


@pytest.mark.parametrize("t", [100, 1000, 3000])
def test_changing_data_after_t_never_changes_a_feature_at_or_before_t(eurusd, t):
    spec = FeatureSpec()
    original = compute(eurusd, spec)
    rng = np.random.default_rng(t)
    perturbed = eurusd.copy()
    noise = rng.uniform(0.9, 1.1, size=(len(eurusd) - t - 1, 1))
    perturbed.iloc[t + 1:, :4] = eurusd.iloc[t + 1:, :4].to_numpy() * noise
    perturbed.iloc[t + 1:, 4] = eurusd.iloc[t + 1:, 4].to_numpy()[::-1]
    after = compute(perturbed, spec)
    pd.testing.assert_frame_equal(after.iloc[: t + 1], original.iloc[: t + 1], check_exact=True)
    assert not after.iloc[t + 1:].equals(original.iloc[t + 1:])


def test_a_bad_feature_spec_names_its_field():
    with pytest.raises(ConfigError) as err:
        parse_spec({"rsi": ["fourteen"]})
    assert err.value.field == "features.rsi.0"
    with pytest.raises(ConfigError, match="features.macd_fast"):
        parse_spec({"macd_fast": 3})


def test_forward_return_labels_by_hand():
    close = pd.Series([100.0, 101.0, 100.5, 99.0, 99.0])
    labels = forward_return_labels(close, horizon=2, threshold=0.004)
    # 100 -> 100.5: +0.5 % -> up; 101 -> 99: -1.98 % -> down; 100.5 -> 99: -1.49 % -> down
    assert labels.tolist()[:3] == [1.0, -1.0, -1.0]
    assert labels.iloc[3:].isna().all()  # no future to label from


def test_triple_barrier_labels_by_hand():
    bars = pd.DataFrame({
        "close": [100.0, 100.0, 100.0, 100.0, 100.0, 100.0],
        "high": [100.0, 101.0, 102.5, 100.5, 103.0, 100.0],
        "low": [100.0, 99.5, 99.0, 98.5, 97.0, 100.0],
    })
    labels = triple_barrier_labels(bars, take_profit=0.02, stop_loss=0.02, horizon=2)
    # t0: bar1 in band, bar2 high 102.5 >= 102 -> +1; t1: bar2 up first -> +1;
    # t2: bar3 in band, bar4 both high >= 102 and low <= 98 -> the stop, -1; t3: bar4 both -> -1
    assert labels.tolist()[:4] == [1.0, 1.0, -1.0, -1.0]
    assert labels.iloc[4:].isna().all()


def test_volume_that_never_varies_scores_zero_not_missing(eurusd):
    bars = eurusd.iloc[:300].copy()
    bars["volume"] = 0.0  # FX quotes carry no volume
    spec = FeatureSpec()
    batch = compute(bars, spec)
    assert (batch["volume_z_20"].iloc[spec.lookback:] == 0.0).all()
    live = IncrementalFeatures(spec)
    rows = [live.update_array(t, *row) for t, row in
            zip(bars.index, bars[["open", "high", "low", "close", "volume"]].itertuples(index=False))]
    np.testing.assert_array_equal(np.asarray(rows), batch.to_numpy())
