"""Walk-forward training: out of sample by construction, deterministic, registered; bad input early."""

from __future__ import annotations

import subprocess
import sys

import pytest

from backtest.data import load_bars
from engine.errors import ConfigError
from models.training import TrainConfig, train
from tests.conftest import DATA

EURUSD = DATA / "fx" / "EURUSD_1h.csv"


@pytest.fixture(scope="module")
def bars():
    return load_bars(EURUSD)


def test_predictions_are_out_of_sample_and_metrics_are_sane(bars):
    config = TrainConfig(kind="logreg", folds=4, min_train=800, horizon=4, embargo=6)
    result = train(bars, config)
    m = result.metrics
    first_test = result.oos_proba.index[0]
    # the first prediction comes after the warm-up, min_train usable bars, the purge and the embargo
    earliest = (config.spec.lookback - 1) + config.min_train + config.horizon + config.embargo
    assert bars.index.get_loc(first_test) >= earliest
    assert 0 <= m["accuracy"] <= 1 and m["log_loss"] > 0 and 0 <= m["auc"] <= 1
    assert m["oos_rows"] == len(result.oos_labels) == len(result.oos_proba)
    assert sum(b["rows"] for b in m["calibration_up"]) == m["oos_rows"]
    assert abs(result.oos_proba.sum(axis=1) - 1).max() < 1e-9


def test_same_seed_gives_the_same_metrics(bars):
    config = TrainConfig(kind="gbm", folds=3, min_train=1500, seed=11)
    assert train(bars, config).metrics == train(bars, config).metrics


def test_too_little_history_is_refused_before_fitting(bars):
    with pytest.raises(ConfigError, match="too few"):
        train(bars.iloc[:600], TrainConfig(min_train=1000))


def test_cli_trains_registers_and_refuses_bad_input(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    done = subprocess.run([sys.executable, "-m", "app.cli", "train", "--model", "logreg", "--data", str(EURUSD),
                           "--folds", "3", "--url", url], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "out of sample" in done.stdout and "registered EURUSD_1h_logreg v1" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "app.cli", "train", "--model", "forest", "--data", str(EURUSD),
                          "--url", url], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown model 'forest'" in bad.stderr and "Traceback" not in bad.stderr


def test_cli_trains_a_torch_model_and_reports_its_signal_backtest(tmp_path):
    pytest.importorskip("torch", reason="the torch extra is not installed: `make test` installs it")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    done = subprocess.run([sys.executable, "-m", "app.cli", "train", "--model", "mlp", "--data", str(EURUSD),
                           "--folds", "2", "--param", "epochs=2", "--param", "hidden=8", "--long-short",
                           "--url", url], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "out-of-sample signal backtest" in done.stdout and "registered EURUSD_1h_mlp v1" in done.stdout
    listed = subprocess.run([sys.executable, "-m", "app.cli", "models", "show", "1", "--url", url],
                            capture_output=True, text=True)
    assert "mlp" in listed.stdout and "signal_backtest" in listed.stdout
    bad = subprocess.run([sys.executable, "-m", "app.cli", "train", "--model", "gru", "--data", str(EURUSD),
                          "--param", "layers=3", "--url", url], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown gru parameter 'layers'" in bad.stderr and "Traceback" not in bad.stderr
