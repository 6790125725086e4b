"""Research runs in the SQL store: one `sweeps` row per sweep, search or walk-forward run.

The table is created by migration 0003_sweeps. It is declared here with SQLAlchemy Core rather
than in engine/store/models.py because research is a backtest concern and the engine must not
depend on it; the columns match the migration (tests/integration/test_sweep.py writes and reads
a row through `tickbridge db upgrade`'s schema).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Engine, Float, Integer, MetaData, String, Table, insert, select

metadata = MetaData()

SWEEPS = Table(
    "sweeps", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),          # grid | optuna | wfo
    Column("strategy", String(64), nullable=False),
    Column("data", String(512), nullable=False),
    Column("objective", String(32), nullable=False),
    Column("space", JSON, nullable=False),               # the grid or search space, and fixed params
    Column("trials", Integer, nullable=False),
    Column("best_params", JSON, nullable=False),
    Column("best_value", Float, nullable=True),
    Column("best_stats", JSON, nullable=False),
    Column("overfitting", JSON, nullable=False),         # DSR and PBO (or the WFO summary)
    Column("result_path", String(512), nullable=False),  # the JSON with every trial
    Column("elapsed_s", Float, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


def save_run(engine: Engine, *, kind: str, strategy: str, data: str, objective: str, space: dict[str, Any],
             trials: int, best_params: dict[str, Any], best_value: float | None, best_stats: dict[str, Any],
             overfitting: dict[str, Any], result_path: str, elapsed_s: float) -> int:
    """Insert one run; returns its id."""
    with engine.begin() as connection:
        row = connection.execute(insert(SWEEPS).values(
            kind=kind, strategy=strategy, data=data, objective=objective, space=space, trials=trials,
            best_params=best_params, best_value=best_value, best_stats=best_stats, overfitting=overfitting,
            result_path=result_path, elapsed_s=elapsed_s, created_at=datetime.now(timezone.utc)))
        return int(row.inserted_primary_key[0])


def load_runs(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(select(SWEEPS).order_by(SWEEPS.c.id))]
