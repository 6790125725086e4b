"""Scheduled retraining: a new version trades only if it beats the active one out of sample;
every decision is in the audit log; the active model survives a restart."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from backtest.data import load_bars
from engine.errors import ConfigError
from engine.store.db import make_engine, upgrade
from engine.store.models import AuditRow
from models.registry import ModelRegistry
from models.retrain import RetrainJob, start_scheduler
from models.training import TrainConfig
from tests.conftest import DATA

CONFIG = TrainConfig(kind="logreg", folds=2, min_train=800, horizon=3, seed=0)


@pytest.fixture(scope="module")
def bars():
    return load_bars(DATA / "fx" / "EURUSD_1h.csv")


def audit_rows(url: str) -> list:
    with make_engine(url).connect() as connection:
        return connection.execute(select(AuditRow.__table__).order_by(AuditRow.id)).all()


def test_promotes_only_a_better_model_and_audits_every_decision(database_url, tmp_path, bars):
    upgrade(database_url)
    registry = ModelRegistry(make_engine(database_url), tmp_path / "models")
    data = {"bars": bars.iloc[:2000]}
    job = RetrainJob("eurusd", lambda: data["bars"], CONFIG, registry, metric="auc")

    first = job.run_once()
    assert first.promoted and first.active_score is None
    assert registry.active("eurusd").id == first.candidate.id

    same = job.run_once()  # same data, same seed: the same score, which does not *beat* it
    assert not same.promoted and same.candidate_score == first.candidate_score
    assert registry.active("eurusd").id == first.candidate.id
    assert registry.get(same.candidate.id).status == "rejected"

    data["bars"] = bars.iloc[:3500]  # fresh bars: promoted exactly when its AUC is higher
    third = job.run_once()  # both scored on the candidate's out-of-sample rows the active model never saw
    assert third.compared_rows > 0 and third.promoted == (third.candidate_score > third.active_score)
    expected_active = third.candidate.id if third.promoted else first.candidate.id

    # a restart: a new registry on the same store sees the same active model
    reopened = ModelRegistry(make_engine(database_url), tmp_path / "models")
    assert reopened.active("eurusd").id == expected_active
    assert [m.status for m in reopened.list()].count("active") == 1

    rows = audit_rows(database_url)
    assert [r.action for r in rows] == ["model.promote", "model.reject",
                                        "model.promote" if third.promoted else "model.reject"]
    assert rows[0].detail["model_id"] == first.candidate.id and rows[0].actor == "retrain-scheduler"
    assert "auc" in rows[1].detail["reason"] and rows[1].subject == "model:eurusd"
    if third.promoted:
        assert rows[2].detail["replaced_model_id"] == first.candidate.id


def test_the_scheduler_runs_the_job_in_the_background(tmp_path, bars):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    job = RetrainJob("eurusd", lambda: bars.iloc[:2000], CONFIG, ModelRegistry(make_engine(url), tmp_path / "m"))
    scheduler = start_scheduler(job, every_seconds=3600, run_now=True)
    try:
        deadline = time.monotonic() + 120
        while not job.outcomes and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        scheduler.shutdown(wait=True)
    assert job.outcomes and job.outcomes[0].promoted
    assert scheduler.get_jobs() == [] or not scheduler.running


def test_bad_settings_are_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    registry = ModelRegistry(make_engine(url), tmp_path / "m")
    with pytest.raises(ConfigError, match="unknown metric 'sharpe'"):
        RetrainJob("x", lambda: None, CONFIG, registry, metric="sharpe")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="interval must be positive"):
        start_scheduler(RetrainJob("x", lambda: None, CONFIG, registry), every_seconds=0)
