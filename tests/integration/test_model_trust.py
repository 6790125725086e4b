"""Models you can trust at run time (issue 18, item 2).

- the registry's seal covers artifact, kind, feature spec, parameters and training window: a row
  edited after registration (a spec with the same number of features) is refused;
- ml_signal checks its model against its spec at start, not at the first warmed-up bar;
- the promotion gate re-scores the active model on the candidate's out-of-sample rows;
- a retraining interval shorter than a training run is refused;
- an in-sample ml_signal backtest says so above its table and in its title.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select, update

import models.retrain as retrain_module
from backtest.config import make_config
from backtest.data import load_bars
from backtest.runner import run_backtest
from engine.errors import ConfigError, DataError
from engine.store.db import make_engine, upgrade
from engine.store.models import AuditRow, ModelRow
from models.estimators import make_model
from models.features import FeatureSpec, compute
from models.registry import ModelIntegrityError, ModelRegistry, sha256_of
from models.retrain import RetrainJob, start_scheduler
from models.training import TrainConfig, evaluate, predict_rows, train
from strategies import get_strategy
from strategies.base import BarData, parse_params
from tests.conftest import DATA

MlSignal = get_strategy("ml_signal")
CONFIG = TrainConfig(kind="logreg", folds=2, min_train=800, horizon=3, seed=0)
MODELS = ModelRow.__table__


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return load_bars(DATA / "fx" / "EURUSD_1h.csv")


@pytest.fixture(scope="module")
def trained(bars):
    return train(bars.iloc[:2000], CONFIG)


def registry_at(url: str, tmp_path) -> ModelRegistry:
    upgrade(url)
    return ModelRegistry(make_engine(url), tmp_path / "models")


def edit_row(registry: ModelRegistry, model_id: int, **values) -> None:
    with registry.engine.begin() as connection:
        connection.execute(update(MODELS).where(MODELS.c.id == model_id).values(**values))


# -- the seal ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("edit", [
    {"feature_spec": FeatureSpec(rsi=[7]).model_dump(mode="json")},   # same 12 features, other RSI
    {"params": {"seed": 0, "C": 0.001}},
    {"kind": "gbm"},
    {"train_end": 1},                                                  # would hide an in-sample run
])
def test_a_row_edited_after_registration_is_refused(database_url, tmp_path, trained, bars, edit):
    registry = registry_at(database_url, tmp_path)
    record = registry.register("eurusd", trained.model, CONFIG.spec, trained.train_window, trained.metrics)
    registry.load(record.id)  # as registered: loads
    assert (len(compute(bars.iloc[:100], FeatureSpec(rsi=[7])).columns)
            == len(compute(bars.iloc[:100], CONFIG.spec).columns))
    edit_row(registry, record.id, **edit)
    with pytest.raises(ModelIntegrityError, match="changed since it was registered"):
        registry.load(record.id)
    with pytest.raises(ModelIntegrityError):
        run_backtest(bars.iloc[2000:2600], MlSignal, {"model_id": record.id, "database_url": database_url},
                     make_config(path="fast"))


def test_a_row_sealed_over_its_artifact_only_is_refused_until_resealed(tmp_path, trained):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    registry = registry_at(url, tmp_path)
    record = registry.register("eurusd", trained.model, CONFIG.spec, trained.train_window, trained.metrics)
    edit_row(registry, record.id, sha256=sha256_of(Path(record.artifact)))  # as registered before
    with pytest.raises(ModelIntegrityError, match="artifact only"):
        registry.load(record.id)
    resealed = registry.reseal(record.id, actor="ops", reason="checked after the upgrade")
    assert resealed.sha256 == record.sha256
    registry.load(record.id)
    with registry.engine.connect() as connection:
        actions = [r.action for r in connection.execute(select(AuditRow.__table__)).all()]
    assert actions == ["model.reseal"]


# -- checked at start -------------------------------------------------------------------------------
def test_ml_signal_refuses_a_model_that_does_not_fit_its_spec_at_start(tmp_path, bars):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    registry = registry_at(url, tmp_path)
    X = np.random.default_rng(2).normal(size=(200, 5))
    narrow = registry.register("narrow", make_model("logreg").fit(X, (X[:, 0] > 0) * 2.0 - 1), FeatureSpec(),
                               (0, 1), {})
    strategy = MlSignal(parse_params(MlSignal.Params, {"model_id": narrow.id, "database_url": url}))
    strategy.attach(BarData(bars.iloc[:600]), "EURUSD")
    with pytest.raises(DataError, match="gives 12 features, the model was trained on 5"):
        strategy.init()  # before any bar is processed (a live bot on 1h bars learnt it 35 hours later)


# -- the promotion gate -----------------------------------------------------------------------------
def test_the_active_model_is_rescored_on_the_candidates_out_of_sample_rows(database_url, tmp_path, bars):
    registry = registry_at(database_url, tmp_path)
    data = {"bars": bars.iloc[:2000]}
    job = RetrainJob("eurusd", lambda: data["bars"], CONFIG, registry, metric="auc")
    first = job.run_once()
    assert first.promoted
    # the active model's own recorded score, from its older window, must not be the yardstick
    edit_row(registry, first.candidate.id, metrics={**first.candidate.metrics, "auc": 0.999})
    # (metrics are not sealed: they are the evaluation, not the model)
    data["bars"] = bars.iloc[:3600]
    second = job.run_once()
    active_model, active = registry.load(first.candidate.id)
    result = train(data["bars"], CONFIG)  # same data and seed: the candidate's own out-of-sample rows
    features = compute(data["bars"], active.spec)
    X = features[features.notna().all(axis=1)]
    oos = result.oos_proba.index
    shared = oos[oos.as_unit("ns").asi8 > active.train_end]
    positions = X.index.get_indexer(shared)
    proba = predict_rows(active_model, X, np.arange(positions.min(), positions.max() + 1)).loc[shared]
    expected_active = evaluate(proba, result.oos_labels.loc[shared])["auc"]
    expected_candidate = evaluate(result.oos_proba.loc[shared], result.oos_labels.loc[shared])["auc"]
    assert second.compared_rows == len(shared) > 500
    assert second.active_score == pytest.approx(expected_active) and second.active_score != 0.999
    assert second.candidate_score == pytest.approx(expected_candidate)
    assert second.promoted == (expected_candidate > expected_active)
    assert f"{len(shared):,} out-of-sample rows" in second.reason


def test_with_no_bars_after_the_active_models_window_the_active_model_is_kept(tmp_path, bars):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    job = RetrainJob("eurusd", lambda: bars.iloc[:2000], CONFIG, registry_at(url, tmp_path), metric="auc")
    first, again = job.run_once(), job.run_once()
    assert first.promoted and not again.promoted and again.compared_rows == 0
    assert "no out-of-sample bars after its training window" in again.reason


# -- the retraining interval ------------------------------------------------------------------------
def test_cli_refuses_a_retraining_interval_of_a_nanosecond_before_training(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    done = subprocess.run([sys.executable, "-m", "app.cli", "retrain", "--name", "x", "--model", "logreg",
                           "--data", str(DATA / "fx" / "EURUSD_1h.csv"), "--every", "1e-9", "--url", url],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "every" in done.stderr and "at least 60 s" in done.stderr
    assert "Traceback" not in done.stderr
    assert ModelRegistry(make_engine(url)).list() == []  # refused before any training


def test_an_interval_shorter_than_a_training_run_is_refused(tmp_path, bars, monkeypatch):
    monkeypatch.setattr(retrain_module, "MIN_INTERVAL_SECONDS", 0.001)  # a run here takes well over 0.01 s
    url = f"sqlite:///{tmp_path / 'store.db'}"
    job = RetrainJob("eurusd", lambda: bars.iloc[:2000], CONFIG, registry_at(url, tmp_path))
    with pytest.raises(ConfigError, match="shorter than one training run") as err:
        start_scheduler(job, every_seconds=0.01)
    assert err.value.field == "every"


# -- in-sample warning ------------------------------------------------------------------------------
def test_an_in_sample_backtest_says_so_above_the_table_and_in_its_title(tmp_path, trained):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    record = registry_at(url, tmp_path).register("eurusd", trained.model, CONFIG.spec, trained.train_window,
                                                 trained.metrics)
    done = subprocess.run([sys.executable, "-m", "app.cli", "backtest", "--strategy", "ml_signal", "--data",
                           str(DATA / "fx" / "EURUSD_1h.csv"), "--param", f"model_id={record.id}",
                           "--param", f"database_url={url}"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert done.returncode == 0, done.stdout
    out = done.stdout
    assert "in-sample" in out and "IN-SAMPLE" in out
    assert out.index("warning:") < out.index("Sharpe")  # read before the figures
    assert out.index("IN-SAMPLE") < out.index("Sharpe")
