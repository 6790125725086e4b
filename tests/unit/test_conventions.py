"""Peer conventions: backtesting.py's statistics table, a risk-free rate, a buy-and-hold baseline.

`--conventions backtesting.py` is held to backtesting.py's own published test values: its
`TestBacktest.test_compute_stats` (backtesting 0.6.6, backtesting/test/_test.py) runs a 10/30 SMA
cross, always in the market (close and reverse at each cross), all-in with 0.9999 of the equity,
on its GOOG daily file, closing the last trade at the end (`finalize_trades=True`). The same file
ships here as data/stocks/GOOG_daily.csv (data/README.md gives its origin and licence); only the
expected numbers below are taken from that test, which compares at rtol 1e-8 as we do.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from backtest.config import make_config
from backtest.data import load_bars
from backtest.metrics import backtesting_py_stats, compute_stats
from backtest.report import run_stats
from backtest.result import BacktestResult
from backtest.runner import run_backtest
from engine.errors import ConfigError
from strategies.registry import resolve_strategy
from tests.conftest import DATA

GOOG = DATA / "stocks" / "GOOG_daily.csv"
PARAMS = {"fast": 10, "slow": 30, "mode": "long_short", "size": "0.9999"}

# backtesting 0.6.6, backtesting/test/_test.py, TestBacktest.test_compute_stats ("also used on the website")
PUBLISHED = {
    "# Trades": 66,
    "Avg. Drawdown Duration": pd.Timedelta("41 days 00:00:00"),
    "Avg. Drawdown [%]": -5.925851581948801,
    "Avg. Trade Duration": pd.Timedelta("46 days 00:00:00"),
    "Avg. Trade [%]": 2.531715975158555,
    "Best Trade [%]": 53.59595229490424,
    "Buy & Hold Return [%]": 522.0601851851852,
    "Calmar Ratio": 0.44166409202994605,
    "Duration": pd.Timedelta("3116 days 00:00:00"),
    "End": pd.Timestamp("2013-03-01 00:00:00"),
    "Equity Final [$]": 51422.98999999996,
    "Equity Peak [$]": 75787.44,
    "Expectancy [%]": 3.2748078066748834,
    "Exposure Time [%]": 96.74115456238361,
    "Max. Drawdown Duration": pd.Timedelta("584 days 00:00:00"),
    "Max. Drawdown [%]": -47.98012705007589,
    "Max. Trade Duration": pd.Timedelta("183 days 00:00:00"),
    "Profit Factor": 2.167945974262033,
    "Return (Ann.) [%]": 21.191099249053224,
    "Return [%]": 414.2298999999996,
    "Volatility (Ann.) [%]": 36.49716090702389,
    "CAGR [%]": 21.160245705962623,
    "SQN": 1.0766187356697705,
    "Kelly Criterion": 0.1518705127029717,
    "Sharpe Ratio": 0.5806232244485349,
    "Sortino Ratio": 1.0853434352488662,
    "Start": pd.Timestamp("2004-08-19 00:00:00"),
    "Win Rate [%]": 46.96969696969697,
    "Worst Trade [%]": -18.39887353835481,
    "Alpha [%]": 394.37391142027462,
    "Beta": 0.03803390709192,
}


@pytest.fixture(scope="module")
def goog_run() -> tuple[pd.DataFrame, BacktestResult]:
    frame = load_bars(GOOG)
    return frame, run_backtest(frame, resolve_strategy("sma_cross", False), PARAMS, make_config(symbol="GOOG"))


def test_backtesting_py_conventions_reproduce_its_published_goog_table(goog_run):
    frame, result = goog_run
    stats = run_stats(result, frame, resolve_strategy("sma_cross", False), PARAMS, conventions="backtesting.py")
    for key, expected in PUBLISHED.items():
        got = stats[key]
        if isinstance(expected, pd.Timestamp):
            assert got.tz_localize(None) == expected, key  # ours are UTC, theirs naive
        elif isinstance(expected, pd.Timedelta):
            assert got == expected, key
        else:
            assert got == pytest.approx(expected, rel=1e-8, abs=0), key
    assert stats["Commissions [$]"] is None  # backtesting.py leaves the row out without commissions


def test_the_end_of_data_close_is_at_the_last_open_only_in_backtesting_py_conventions(goog_run):
    frame, result = goog_run
    ours = compute_stats(result)
    theirs = compute_stats(result, conventions="backtesting.py", opens=frame["open"].to_numpy())
    held = result.position[-1]
    assert held != 0  # the run ends in a position, closed by the end of the data
    moved = held * (frame["open"].iloc[-1] - frame["close"].iloc[-1])
    assert theirs["Equity Final [$]"] == pytest.approx(ours["equity_final"] + moved)
    assert result.trades["exit_price"].iloc[-1] == frame["close"].iloc[-1]  # the run itself is untouched


def test_backtesting_py_risk_free_rate_by_hand(goog_run):
    frame, result = goog_run
    base = compute_stats(result, conventions="backtesting.py", opens=frame["open"].to_numpy(), first_tradable_bar=29)
    with_rf = compute_stats(result, conventions="backtesting.py", opens=frame["open"].to_numpy(),
                            first_tradable_bar=29, risk_free=0.04)
    assert with_rf["Sharpe Ratio"] == pytest.approx((base["Return (Ann.) [%]"] - 4.0) / base["Volatility (Ann.) [%]"])
    ann = base["Return (Ann.) [%]"] / 100
    assert with_rf["Sortino Ratio"] == pytest.approx(base["Sortino Ratio"] * (ann - 0.04) / ann)
    assert with_rf["Alpha [%]"] == pytest.approx(base["Return [%]"] - 4.0
                                                 - base["Beta"] * (base["Buy & Hold Return [%]"] - 4.0))


def test_backtesting_py_definitions_on_a_small_series_by_hand():
    index = pd.date_range("2024-01-01", periods=5, freq="B", tz="UTC")
    equity = pd.Series([100.0, 110.0, 99.0, 99.0, 121.0], index=index)
    trades = pd.DataFrame({"entry_time": [index[0], index[2]], "exit_time": [index[1], index[4]],
                           "entry_bar": [0, 2], "exit_bar": [1, 4], "side": ["long", "long"], "size": [1.0, 1.0],
                           "entry_price": [10.0, 10.0], "exit_price": [11.0, 9.0], "fees": [0.0, 0.0],
                           "pnl": [10.0, -5.0], "return_pct": [10.0, -5.0]})
    result = BacktestResult(equity=equity, position=np.zeros(5), trades=trades,
                            close=pd.Series([10.0, 11.0, 10.0, 10.0, 12.0], index=index), initial_cash=100.0)
    s = backtesting_py_stats(result)
    daily = np.array([0.10, -0.10, 0.0, 121 / 99 - 1])  # the first day has no return in backtesting.py
    g = math.exp(np.log(1 + daily).mean()) - 1
    assert s["Return (Ann.) [%]"] == pytest.approx(((1 + g) ** 252 - 1) * 100)
    var = daily.var(ddof=1)
    assert s["Volatility (Ann.) [%]"] == pytest.approx(math.sqrt((var + (1 + g) ** 2) ** 252 - (1 + g) ** 504) * 100)
    assert s["Exposure Time [%]"] == pytest.approx(100.0)  # entry and exit bars both count
    assert s["Avg. Trade [%]"] == pytest.approx((math.sqrt(1.10 * 0.95) - 1) * 100)  # geometric
    assert s["Profit Factor"] == pytest.approx(0.10 / 0.05)  # on returns
    assert s["Max. Drawdown [%]"] == pytest.approx(-10.0)
    assert s["Max. Drawdown Duration"] == index[4] - index[1]
    assert s["Kelly Criterion"] == pytest.approx(0.5 - 0.5 / (10 / 5))


def test_unknown_conventions_are_refused_naming_the_field(goog_run):
    with pytest.raises(ConfigError) as err:
        compute_stats(goog_run[1], conventions="vectorbt")
    assert err.value.field == "conventions"


def test_cli_prints_backtesting_py_table():
    done = subprocess.run([sys.executable, "-m", "app.cli", "backtest", "--strategy", "sma_cross", "--data",
                           str(GOOG), *[a for k, v in PARAMS.items() for a in ("--param", f"{k}={v}")],
                           "--conventions", "backtesting.py"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Sharpe Ratio" in done.stdout and "0.58" in done.stdout and "51,422.99" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "app.cli", "backtest", "--strategy", "sma_cross", "--data",
                          str(GOOG), "--conventions", "zipline"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "conventions" in bad.stderr and "Traceback" not in bad.stderr


# -- the buy-and-hold baseline ---------------------------------------------------------------------
def test_buy_and_hold_buys_at_the_second_open_and_holds_to_the_end(tmp_path):
    frame = load_bars(GOOG)
    strategy = resolve_strategy("buy_and_hold", allow_code_refs=False)
    for path in ("fast", "event"):
        result = run_backtest(frame, strategy, {}, make_config(cash="10000", path=path, symbol="GOOG"))
        units = math.floor(10000 / frame["open"].iloc[1])  # whole units, all the cash, at the first fill
        assert len(result.trades) == 1 and result.trades["size"].iloc[0] == units
        expected = 10000 - units * frame["open"].iloc[1] + units * frame["close"].iloc[-1]
        assert result.equity.iloc[-1] == pytest.approx(expected, abs=1e-6), path
        assert (result.position[1:] == units).all() and result.position[0] == 0
    out = tmp_path / "bh.json"
    done = subprocess.run([sys.executable, "-m", "app.cli", "backtest", "--strategy", "buy_and_hold", "--data",
                           str(GOOG), "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["stats"]["trades"] == 1
    listed = subprocess.run([sys.executable, "-m", "app.cli", "strategies"], capture_output=True, text=True,
                            timeout=300)
    assert "buy_and_hold" in listed.stdout
