"""ml_signal: the same signals from batch and incremental inference, stored, and never run on a
model or data it cannot trust."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest.config import make_config
from backtest.data import load_bars
from backtest.runner import run_backtest
from engine.errors import ConfigError, DataError
from engine.store.db import make_engine, upgrade
from models.estimators import SklearnModel, make_model
from models.features import FeatureSpec
from models.registry import ModelIntegrityError, ModelRegistry
from models.signals import MemorySignals, SqlSignals
from models.training import TrainConfig, train
from strategies import get_strategy
from strategies.base import BarData, parse_params
from tests.conftest import DATA

MlSignal = get_strategy("ml_signal")
TRAIN_BARS, TEST_START = 2400, 2300


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return load_bars(DATA / "fx" / "EURUSD_1h.csv")


@pytest.fixture(scope="module")
def store(tmp_path_factory, bars):
    """A registry with a gbm and (with the torch extra) a GRU trained on the first bars."""
    root = tmp_path_factory.mktemp("ml")
    url = f"sqlite:///{root / 'store.db'}"
    upgrade(url)
    registry = ModelRegistry(make_engine(url), root / "models")
    ids = {}
    kinds = {"gbm": {}, "gru": {"epochs": 2, "hidden": 8, "seq_len": 6}}
    for kind, params in kinds.items():
        if kind == "gru":
            pytest.importorskip("torch", reason="the torch extra is not installed: `make test` installs it")
        config = TrainConfig(kind=kind, folds=2, min_train=1000, horizon=3, threshold=0.0003, seed=1,
                             model_params=params)
        result = train(bars.iloc[:TRAIN_BARS], config)
        ids[kind] = registry.register(f"eurusd_{kind}", result.model, config.spec, result.train_window,
                                      result.metrics).id
    return url, registry, ids


def params(store, kind: str, **extra) -> dict:
    url, _, ids = store
    return {"model_id": ids[kind], "database_url": url, "enter": 0.5000001, "exit": 0.3,
            "mode": "long_short", "units": "fractional", **extra}


def same_signals(a: list[dict], b: list[dict]) -> bool:
    """Equal signals: every field exact but the raw probabilities, which batch and incremental
    features (equal to ~1e-12) and a batch vs a one-row forward pass may round differently in the
    last bits; 1e-8 is far below any threshold."""
    def exact(s: dict) -> dict:
        return {k: v for k, v in s.items() if k not in ("p_up", "p_down")}
    return len(a) == len(b) and all(exact(x) == exact(y) and abs(x["p_up"] - y["p_up"]) < 1e-8
                                    and abs(x["p_down"] - y["p_down"]) < 1e-8 for x, y in zip(a, b))


@pytest.mark.parametrize("kind", ["gbm", "gru"])
def test_batch_and_incremental_inference_give_identical_signals_orders_and_fills(store, bars, kind):
    frame = bars.iloc[TEST_START:TEST_START + 500]
    tuned = params(store, kind, exit=0.49, min_fraction=0.001)  # a small model is seldom sure
    fast = run_backtest(frame, MlSignal, tuned, make_config(path="fast"))
    event = run_backtest(frame, MlSignal, tuned, make_config(path="event"))
    assert (fast.meta["path"], event.meta["path"]) == ("fast", "event")
    directions = {s["direction"] for s in fast.signals}
    assert len(directions) >= 2 and directions - {0}, ("a parity test that never changes its mind proves little: "
                                                       f"{directions}")
    assert len({s["target_weight"] for s in fast.signals if s["direction"]}) > 1, "sizes must follow confidence"
    assert same_signals(fast.signals, event.signals)
    assert len(event.trades) > 0
    np.testing.assert_array_equal(fast.equity.to_numpy(), event.equity.to_numpy())
    pd.testing.assert_frame_equal(fast.orders, event.orders, check_exact=True)
    pd.testing.assert_frame_equal(fast.trades, event.trades, check_exact=True)
    first = fast.signals[0]
    assert first["model_id"] == store[2][kind] and first["model_version"] == 1
    entry = next(o for _, o in fast.orders.iterrows() if o["tag"] == "open")
    signal = next(s for s in fast.signals if s["direction"] != 0)
    assert str(entry["equity_fraction"]) == signal["target_weight"], "the entry is sized by the signal's confidence"


def test_changing_bars_after_t_changes_no_signal_at_or_before_t(store, bars):
    frame = bars.iloc[TEST_START:TEST_START + 500]
    t = 350
    perturbed = frame.copy()
    rng = np.random.default_rng(0)
    perturbed.iloc[t + 1:, :4] = frame.iloc[t + 1:, :4].to_numpy() * rng.uniform(0.97, 1.03,
                                                                                  size=(len(frame) - t - 1, 1))
    before = run_backtest(frame, MlSignal, params(store, "gbm"), make_config(path="fast")).signals
    after = run_backtest(perturbed, MlSignal, params(store, "gbm"), make_config(path="fast")).signals
    cutoff = int(frame.index[t].value)
    early = [s for s in before if s["ts"] <= cutoff]
    assert early and early == [s for s in after if s["ts"] <= cutoff]
    assert before != after, "the perturbation must change later signals, or the test shows nothing"


def test_every_signal_is_stored_and_reads_back_equal(store, bars, database_url):
    frame = bars.iloc[TEST_START:TEST_START + 400]
    strategy = MlSignal(parse_params(MlSignal.Params, params(store, "gbm")))
    strategy.attach(BarData(frame), "EURUSD")
    strategy.init()
    upgrade(database_url)
    sink = SqlSignals(make_engine(database_url))
    sink.ensure_bot("backtest", "ml_signal")
    memory = MemorySignals()
    strategy.signal_sink = sink
    strategy.signals()
    strategy.signal_sink = memory
    strategy._last_emitted = None
    strategy.signals()
    stored = SqlSignals(make_engine(database_url)).load("backtest")  # a new connection: as after a restart
    assert stored == memory.signals and len(stored) > 5


def test_a_changed_model_file_is_refused_before_anything_trades(store, bars, tmp_path):
    url, registry, _ = store
    X = np.random.default_rng(1).normal(size=(200, 14))
    record = registry.register("tampered", SklearnModel("logreg").fit(X, (X[:, 0] > 0) * 2.0 - 1), FeatureSpec(),
                               (0, 1), {})
    with open(record.artifact, "ab") as artifact:
        artifact.write(b"\0")
    with pytest.raises(ModelIntegrityError, match="sha256"):
        run_backtest(bars.iloc[:600], MlSignal, {**params(store, "gbm"), "model_id": record.id},
                     make_config(path="event"))


def test_a_spec_that_does_not_fit_the_model_and_too_little_history_are_refused(store, bars):
    url, registry, _ = store
    X = np.random.default_rng(2).normal(size=(200, 5))
    narrow = registry.register("narrow", make_model("logreg").fit(X, (X[:, 0] > 0) * 2.0 - 1), FeatureSpec(),
                               (0, 1), {})
    with pytest.raises(DataError, match="gives 12 features, the model was trained on 5"):
        run_backtest(bars.iloc[:600], MlSignal, {**params(store, "gbm"), "model_id": narrow.id},
                     make_config(path="fast"))
    with pytest.raises(DataError, match="gives 12 features, the model was trained on 5"):
        run_backtest(bars.iloc[:600], MlSignal, {**params(store, "gbm"), "model_id": narrow.id},
                     make_config(path="event"))
    with pytest.raises(ConfigError, match="too few"):
        run_backtest(bars.iloc[:30], MlSignal, params(store, "gbm"), make_config(path="fast"))


def test_a_model_name_trades_its_active_version_only(store, bars):
    url, registry, ids = store
    by_name = {**params(store, "gbm"), "model_id": None, "model": "eurusd_gbm"}
    with pytest.raises(ConfigError, match="no active version"):
        run_backtest(bars.iloc[:600], MlSignal, by_name, make_config(path="fast"))
    registry.promote(ids["gbm"], actor="test", reason="first deployment")
    result = run_backtest(bars.iloc[TEST_START:TEST_START + 400], MlSignal, by_name, make_config(path="fast"))
    assert {s["model_id"] for s in result.signals} == {ids["gbm"]}
    with pytest.raises(ConfigError, match="give exactly one of model_id or model"):
        run_backtest(bars.iloc[:600], MlSignal, {**by_name, "model_id": ids["gbm"]}, make_config(path="fast"))


def test_a_backtest_over_the_models_training_bars_is_flagged_in_sample(store, bars):
    overlapping = run_backtest(bars.iloc[TEST_START:TEST_START + 400], MlSignal, params(store, "gbm"),
                               make_config(path="fast"))
    assert any("training window" in w and "in-sample" in w for w in overlapping.meta["warnings"])
    after = run_backtest(bars.iloc[TRAIN_BARS:TRAIN_BARS + 400], MlSignal, params(store, "gbm"),
                         make_config(path="fast"))
    assert "warnings" not in after.meta
