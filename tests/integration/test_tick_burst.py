"""A burst of bad ticks never fills (a regression of issue 11 item 4, found by an outside probe).

Real EURUSD ticks (FXCM, 2014-05-05, ~1.3876) with a run of consecutive ticks at 10x their price,
as the probe built them: 40 ticks (36 s of feed) and 11 ticks (5 s). The guard used to take 10
agreeing outliers for a new level, restart its window there and admit the rest: the strategy saw
bars at 13.87, the risk band's reference (the median of the guarded mids) moved with it, and a
paper bot bought 2 x 5000 at 13.8766 (-124,921 on a 1M account). Now a level must hold for
`confirm_seconds` of feed time too, and a 10x move for `large_shift_confirm_seconds`: neither
burst is adopted, nothing fills at the bad level and the bot is not halted.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from backtest.data import load_ticks
from engine.store.db import upgrade
from engine.store.models import FillRow
from live.config import FeedConfig, parse_bot_config
from live.manager import BotManager
from tests.integration.runtime_helpers import EURUSD_TICKS, rows

START = 2999  # the probe's burst starts at the 3000th tick, 01:37:34 UTC


def burst_feed(root: Path, length: int, factor: float = 10.0, n_ticks: int = 6000) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    frame = load_ticks(EURUSD_TICKS)[["bid", "ask"]].iloc[:n_ticks].copy()
    frame.iloc[START:START + length] *= factor
    frame.to_csv(root / "EURUSD_burst.csv")
    return root


@pytest.mark.parametrize("length", [40, 11])
def test_a_burst_at_ten_times_the_price_neither_fills_nor_halts(tmp_path, length):
    feed = burst_feed(tmp_path / "ticks", length)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    config = {"id": "burst", "strategy": "sma_cross", "symbol": "EURUSD", "bar": "10s", "cash": "1000000",
              "params": {"fast": 1, "slow": 2, "mode": "long_short", "fixed_size": 5000}}
    with BotManager(FeedConfig(path=str(feed)), url, tmp_path, record=False) as manager:
        manager.start(parse_bot_config(config))
        assert manager.wait(300)
        status = manager.status("burst")
    fills = rows(url, FillRow, FillRow.bot_id == "burst")
    assert fills, "the strategy trades the real market (the test must see orders fill)"
    away = [(f.side, f.qty, f.price) for f in fills if not Decimal("1.3") < f.price < Decimal("1.5")]
    # before: 40 ticks -> [('BUY', 5000, 13.8766), ('BUY', 5000, 13.8766)], 2 level shifts
    assert away == []
    assert status["tick_level_shifts"] == 0
    assert status["ticks_dropped"]["OUTLIER"] == length
    assert not status.get("halted")
    assert Decimal("900000") < status["equity"] < Decimal("1100000")
