"""Scheduled retraining with a promotion gate.

Markets drift, so a model is retrained on fresh data on a schedule (APScheduler). A retrained
version is only a candidate: it is promoted to active only if its out-of-sample score beats the
active version's, measured the same way (walk-forward, purged, embargoed). Otherwise the active
model keeps trading and the candidate is recorded as rejected. Both outcomes go to the audit
log with the two scores, so "why is v7 trading and not v8?" has an answer in the store.

The active version is a status in the models table, so it survives a restart; ml_signal bots
configured with a model *name* load whatever version is active when they start.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import pandas as pd
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from engine.errors import ConfigError
from models.registry import ModelRecord, ModelRegistry
from models.training import TrainConfig, train

log = logging.getLogger(__name__)

# metric -> True when larger is better
METRICS: dict[str, bool] = {"auc": True, "accuracy": True, "log_loss": False}


@dataclass(frozen=True, slots=True)
class RetrainOutcome:
    candidate: ModelRecord
    promoted: bool
    candidate_score: float
    active_score: float | None


@dataclass(slots=True)
class RetrainJob:
    """Retrain `name` from `load_data()` with `config`; promote on a better `metric`."""

    name: str
    load_data: Callable[[], pd.DataFrame]
    config: TrainConfig
    registry: ModelRegistry
    metric: Literal["auc", "accuracy", "log_loss"] = "auc"
    min_improvement: float = 0.0
    actor: str = "retrain-scheduler"
    outcomes: list[RetrainOutcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ConfigError("metric", f"unknown metric {self.metric!r}; known: {', '.join(METRICS)}")

    def run_once(self) -> RetrainOutcome:
        result = train(self.load_data(), self.config)
        candidate = self.registry.register(self.name, result.model, self.config.spec, result.train_window,
                                           result.metrics)
        active = self.registry.active(self.name)
        new_score = _score(candidate.metrics, self.metric)
        old_score = None if active is None else _score(active.metrics, self.metric)
        detail = (f"{self.metric} {new_score:.6f} vs "
                  + ("no active model" if old_score is None else f"{old_score:.6f} of v{active.version}"))
        if old_score is None or self._beats(new_score, old_score):
            candidate = self.registry.promote(candidate.id, self.actor, f"out-of-sample {detail}")
            outcome = RetrainOutcome(candidate, True, new_score, old_score)
        else:
            candidate = self.registry.reject(candidate.id, self.actor, f"not better: {detail}")
            outcome = RetrainOutcome(candidate, False, new_score, old_score)
        log.info("retrained %s v%d: %s (%s)", self.name, candidate.version,
                 "promoted" if outcome.promoted else "kept the active model", detail)
        self.outcomes.append(outcome)
        return outcome

    def _beats(self, new: float, old: float) -> bool:
        if METRICS[self.metric]:
            return new > old + self.min_improvement
        return new < old - self.min_improvement


def _score(metrics: dict[str, Any], metric: str) -> float:
    value = metrics.get(metric)
    if value is None:
        raise ConfigError("metric", f"the model's metrics have no {metric!r} (have: {', '.join(metrics)})")
    return float(value)


def csv_loader(path: Path) -> Callable[[], pd.DataFrame]:
    """Reload the file at every run: the schedule exists to pick up new bars."""
    from backtest.data import load_bars

    return lambda: load_bars(path)


def start_scheduler(job: RetrainJob, every_seconds: float, run_now: bool = True) -> BackgroundScheduler:
    """Run `job` every `every_seconds` in a background thread. One run at a time (max_instances
    1, coalesced): a slow training never overlaps the next one or piles up missed runs."""
    if every_seconds <= 0:
        raise ConfigError("every", "the retraining interval must be positive")
    scheduler = BackgroundScheduler(timezone="UTC")
    first: dict[str, Any] = {"next_run_time": pd.Timestamp.now(tz="UTC").to_pydatetime()} if run_now else {}
    scheduler.add_job(job.run_once, IntervalTrigger(seconds=every_seconds), id=f"retrain:{job.name}",
                      max_instances=1, coalesce=True, **first)
    scheduler.start()
    return scheduler
