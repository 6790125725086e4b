"""Defects an outside probe found (/tmp/notes/V.md), below the API: each test failed on the code
as found. The API's side of them is tests/api/test_probe_fixes.py."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pandas_ta as ta
import pytest

from backtest.data import load_bars
from engine.errors import ConfigError
from live.bars import BarHistory
from live.config import parse_bot_config
from live.indicators import LiveIndicators
from strategies.base import Strategy, StrategyParams, parse_params
from strategies.rsi_reversion import RsiReversionParams
from strategies.sma_cross import SmaCrossParams
from tests.conftest import DATA
from tests.unit.test_incremental_indicators import bar_of

HUGE = 2_000_000   # a window far longer than the bars there are (the probe asked for 1e9: 8 GB)
BARS = 60
MB = 1 << 20


class HugeWindows(Strategy):
    """sma over a window no bar history fills, through TA-Lib (when installed) and pandas-ta."""

    name = "huge_windows"

    def init(self) -> None:
        self.sma = self.I(ta.sma, self.data.Close, length=HUGE)
        self.sma_plain = self.I(ta.sma, self.data.Close, length=HUGE, talib=False)
        self.ema = self.I(ta.ema, self.data.Close, length=HUGE)
        self.rsi = self.I(ta.rsi, self.data.Close, length=HUGE)


def test_live_indicators_allocate_for_the_bars_they_have_not_for_the_window():
    """#4: the sma kernel made its weights (8 bytes a bar of window) at once, and TA-Lib's check
    of a kernel ran it over a probe series of 3 windows: memory grew with the window a config
    asked for, not with the data."""
    bars = load_bars(DATA / "stocks/SPY_daily.csv")
    strategy = HugeWindows(StrategyParams())
    indicators = LiveIndicators(strategy)
    history = BarHistory()
    history.append(bar_of(bars, 0))
    tracemalloc.start()
    try:
        indicators.start(history)
        for i in range(1, BARS):
            history.append(bar_of(bars, i))
            indicators.refresh(history)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MB, f"peak {peak / MB:.1f} MB for {BARS} bars"  # a 2e6-bar window is 16 MB of weights alone
    assert all(len(getattr(strategy, name)) == BARS for name in ("sma", "sma_plain", "ema", "rsi"))
    assert np.isnan(strategy.sma).all() and np.isnan(strategy.sma_plain).all()  # no mean before a full window


@pytest.mark.parametrize("params, cls, field", [({"fast": 1, "slow": 100_001}, SmaCrossParams, "param.slow"),
                                                ({"fast": 100_000, "slow": 100_000}, SmaCrossParams, "param.fast"),
                                                ({"period": 100_001}, RsiReversionParams, "param.period")])
def test_windows_have_a_documented_upper_bound(params, cls, field):
    with pytest.raises(ConfigError) as refused:
        parse_params(cls, params)
    assert refused.value.field == field and "less than or equal to" in refused.value.message


def test_the_bound_itself_is_accepted():
    assert parse_params(SmaCrossParams, {"fast": 99_999, "slow": 100_000}).slow == 100_000
    assert parse_params(RsiReversionParams, {"period": 100_000}).period == 100_000


@pytest.mark.parametrize("bar", ["0min", "-1min", "0s", "-1D"])
def test_a_bar_must_be_a_positive_duration(bar):
    """#7: "0min" stopped the bot with ZeroDivisionError at start, "-1min" ran as 1min."""
    with pytest.raises(ConfigError) as refused:
        parse_bot_config({"id": "b", "strategy": "sma_cross", "symbol": "SPY", "bar": bar})
    assert refused.value.field == "bar" and "positive" in refused.value.message


def test_the_operators_yaml_may_still_name_a_data_file_of_any_symbol(tmp_path: Path):
    """#8's check is for data sources the API looks up; the operator's own file is theirs to name."""
    config = parse_bot_config({"id": "b", "strategy": "sma_cross", "symbol": "XXXYYY",
                               "data": str(DATA / "stocks/SPY_daily.csv")}, allow_code_refs=True)
    assert config.symbol == "XXXYYY"


def test_a_failed_jobs_error_names_no_server_path(tmp_path: Path):
    """#13: the loaders' CLI wording, for an API caller."""
    from api.routers.backtests import for_caller  # (imported here: the module as found had no such function)

    data = tmp_path / "data"
    said = for_caller(f"{data}/ticks/X_1.csv.gz: this is a tick file; pass --bar RULE (e.g. --bar 1min) to resample "
                      f"it; see /usr/lib/python3/site.py, line 3; BTC/USDT at 1/2", data)
    assert said == ('ticks/X_1.csv.gz: this is a tick file; give "bar" (e.g. "1min") to resample it; '
                    "see <server path>, line 3; BTC/USDT at 1/2")
