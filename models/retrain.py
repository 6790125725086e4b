"""Scheduled retraining with a promotion gate.

Markets drift, so a model is retrained on fresh data on a schedule (APScheduler). A retrained
version is only a candidate: it is promoted to active only if it beats the active version *on
the same bars*: the active model is loaded (seal checked) and re-scored on the candidate's
out-of-sample rows, with the candidate's labels. Comparing with the score the active model got on
its own, older window compared two different periods (an easy period flattered one side). Only
rows after the active model's training window count: before it, the active model saw the labels
and would be scored in-sample. With no such rows (no new bars since it was trained), or when the
metric is undefined on them, the active model keeps trading. Otherwise the candidate is recorded
as rejected. Both outcomes go to the audit log with the two scores and the rows compared, so "why
is v7 trading and not v8?" has an answer in the store.

The schedule refuses an interval shorter than a training run: the first run is made before the
schedule starts and timed; an interval below 60 s is refused at once (`retrain --every 1e-9` spun
APScheduler through 191,654 "skipped" warnings in 5 minutes and slowed training fivefold).

The active version is a status in the models table, so it survives a restart; ml_signal bots
configured with a model *name* load whatever version is active when they start.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import pandas as pd
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from engine.errors import ConfigError
from models.features import compute
from models.registry import ModelRecord, ModelRegistry
from models.training import TrainConfig, TrainResult, evaluate, predict_rows, train

log = logging.getLogger(__name__)

# metric -> True when larger is better
METRICS: dict[str, bool] = {"auc": True, "accuracy": True, "log_loss": False}


@dataclass(frozen=True, slots=True)
class RetrainOutcome:
    candidate: ModelRecord
    promoted: bool
    candidate_score: float
    active_score: float | None
    compared_rows: int = 0   # out-of-sample rows both models were scored on (0: no active model, or none)
    reason: str = ""


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
        bars = self.load_data()
        result = train(bars, self.config)
        candidate = self.registry.register(self.name, result.model, self.config.spec, result.train_window,
                                           result.metrics)
        active = self.registry.active(self.name)
        if active is None:
            new_score = _score(candidate.metrics, self.metric)
            detail = f"{self.metric} {new_score:.6f} vs no active model"
            return self._decide(candidate, True, new_score, None, 0, f"out-of-sample {detail}", detail)
        new_score, old_score, rows, why = self._compare(active, bars, result)
        if old_score is None:
            new_score = _score(candidate.metrics, self.metric) if new_score is None else new_score
            detail = f"{self.metric} {new_score:.6f}; v{active.version} kept: {why}"
            return self._decide(candidate, False, new_score, None, 0, f"{self.metric} not compared: {why}", detail)
        detail = (f"{self.metric} {new_score:.6f} vs {old_score:.6f} of v{active.version}, both on the candidate's "
                  f"{rows:,} out-of-sample rows after v{active.version}'s training window")
        if self._beats(new_score, old_score):
            return self._decide(candidate, True, new_score, old_score, rows, f"out-of-sample {detail}", detail)
        return self._decide(candidate, False, new_score, old_score, rows, f"not better: {detail}", detail)

    def _decide(self, candidate: ModelRecord, promote: bool, new_score: float, old_score: float | None, rows: int,
                reason: str, detail: str) -> RetrainOutcome:
        if promote:
            candidate = self.registry.promote(candidate.id, self.actor, reason)
        else:
            candidate = self.registry.reject(candidate.id, self.actor, reason)
        log.info("retrained %s v%d: %s (%s)", self.name, candidate.version,
                 "promoted" if promote else "kept the active model", detail)
        outcome = RetrainOutcome(candidate, promote, new_score, old_score, rows, reason)
        self.outcomes.append(outcome)
        return outcome

    def _compare(self, active: ModelRecord, bars: pd.DataFrame,
                 result: TrainResult) -> tuple[float | None, float | None, int, str]:
        """Both models' scores on the candidate's out-of-sample rows that lie after the active
        model's training window: (candidate, active, rows, why not) with None when undefined."""
        model, record = self.registry.load(active.id)  # the seal is checked: a tampered row is not compared
        features = compute(bars, record.spec)
        X = features[features.notna().all(axis=1)]
        oos = result.oos_proba.index
        times = oos.as_unit("ns").asi8
        shared = oos[(times > record.train_end) & oos.isin(X.index)]
        if len(shared) == 0:
            return None, None, 0, ("no out-of-sample bars after its training window "
                                   f"(ends {pd.Timestamp(record.train_end, tz='UTC')})")
        positions = X.index.get_indexer(shared)
        first, last = int(positions.min()), int(positions.max())
        try:
            active_proba = predict_rows(model, X, np.arange(first, last + 1)).loc[shared]
            labels = result.oos_labels.loc[shared]
            new = evaluate(result.oos_proba.loc[shared], labels).get(self.metric)
            old = evaluate(active_proba, labels).get(self.metric)
        except (ValueError, KeyError) as exc:  # a class one model never saw, a width that does not fit
            return None, None, 0, f"cannot score both on the same rows ({exc})"
        if new is None or old is None:
            return None, None, 0, f"{self.metric} is undefined on the {len(shared):,} shared rows"
        return float(new), float(old), len(shared), ""

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


MIN_INTERVAL_SECONDS = 60.0


def start_scheduler(job: RetrainJob, every_seconds: float, run_now: bool = True) -> BackgroundScheduler:
    """Run `job` every `every_seconds` in a background thread. One run at a time (max_instances
    1, coalesced): a slow training never overlaps the next one or piles up missed runs.

    With `run_now`, the first run happens here, before the schedule starts, and is timed: an
    interval shorter than that run is refused (ConfigError naming `every`), as is any interval under
    MIN_INTERVAL_SECONDS, without training at all."""
    if not every_seconds > 0:
        raise ConfigError("every", "the retraining interval must be positive")
    if every_seconds < MIN_INTERVAL_SECONDS:
        raise ConfigError("every", f"the retraining interval must be at least {MIN_INTERVAL_SECONDS:g} s (got "
                                   f"{every_seconds:g} s): a training run takes longer than that")
    if run_now:
        started = time.monotonic()
        job.run_once()
        took = time.monotonic() - started
        if every_seconds < took:
            raise ConfigError("every", f"the retraining interval ({every_seconds:g} s) is shorter than one training "
                                       f"run ({took:.0f} s): runs would queue behind each other; use a longer one")
    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_job(job.run_once, IntervalTrigger(seconds=every_seconds), id=f"retrain:{job.name}",
                      max_instances=1, coalesce=True)
    scheduler.start()
    return scheduler
