"""Shared by the runtime tests: tick slices of the bundled real data, a strategy that leaves an
order resting (to see what a stop does with it), and a `tickbridge` entry point that knows it.

    python -m tests.integration.runtime_helpers run CONFIG --state-dir DIR
"""

from __future__ import annotations

import shutil
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field

from backtest.data import load_ticks
from strategies import STRATEGIES
from strategies.base import Strategy, StrategyParams
from tests.conftest import DATA

EURUSD_TICKS = DATA / "ticks" / "EURUSD_fxcm_20140505.csv.gz"
USDJPY_TICKS = DATA / "ticks" / "USDJPY_truefx_ticks.csv"


class RestingLimit(Strategy):
    """At the second bar's close, a buy limit `offset` below the close: it rests, unfilled."""

    name = "resting_limit"

    class Params(StrategyParams):
        offset: float = Field(0.01, gt=0, lt=1)

    def next(self) -> None:
        if self.i == 1:
            self.buy(qty=Decimal(1000), limit=self.data.close[self.i] * (1 - self.p.offset))


def register() -> None:
    STRATEGIES.setdefault(RestingLimit.name, RestingLimit)


def tick_dir(root: Path, eurusd_ticks: int = 3000) -> Path:
    """A feed directory: the first `eurusd_ticks` EURUSD ticks and the whole USDJPY file."""
    root.mkdir(parents=True, exist_ok=True)
    ticks = load_ticks(EURUSD_TICKS)[["bid", "ask"]].iloc[:eurusd_ticks]
    ticks.to_csv(root / "EURUSD_slice.csv")
    shutil.copy(USDJPY_TICKS, root / USDJPY_TICKS.name)
    return root


def sma_bot(bot_id: str = "sma1", **overrides: Any) -> dict[str, Any]:
    bot = {"id": bot_id, "strategy": "sma_cross", "symbol": "EURUSD", "bar": "1min",
           "params": {"fast": 5, "slow": 20, "mode": "long_short", "fixed_size": 5000},
           "commission": "0.00002"}
    bot.update(overrides)
    return bot


def rsi_bot(bot_id: str = "rsi1", **overrides: Any) -> dict[str, Any]:
    bot = {"id": bot_id, "strategy": "rsi_reversion", "symbol": "USDJPY", "bar": "1min", "cash": "1000000",
           "params": {"period": 7, "mode": "long_short", "fixed_size": 500},
           "risk": yaml.safe_load((DATA.parent / "config" / "risk" / "default.yaml").read_text())}  # limits as data
    bot.update(overrides)
    return bot


def write_config(path: Path, bots: list[dict[str, Any]], feed: Path, database_url: str, speed: float = 0) -> Path:
    path.write_text(yaml.safe_dump({"bots": bots, "feed": {"path": str(feed), "speed": speed},
                                    "database_url": database_url}))
    return path


if __name__ == "__main__":
    register()
    from app.cli import main

    sys.argv[0] = "tickbridge"
    main()


def rows(url: str, table: Any, *where: Any) -> list:
    """The rows of `table` (an ORM class or a Table) matching `where`, read on a fresh engine."""
    from sqlalchemy import select

    from engine.store.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(select(getattr(table, "__table__", table)).where(*where)).all()
    finally:
        engine.dispose()


def wait_for(condition: Any, what: str, timeout: float = 120.0) -> None:
    """Poll until `condition()` holds; the timeout only turns a hang into a failure."""
    import time

    import pytest

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)
