"""Statistics against hand computation on small series."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from backtest.metrics import compute_stats
from backtest.result import BacktestResult, empty_trades

DAYS = pd.date_range("2024-01-01", periods=6, freq="B", tz="UTC")  # Mon..Mon, weekdays only


def result(equity: list[float], position: list[float], trades: pd.DataFrame | None = None,
           index: pd.DatetimeIndex = DAYS, close: list[float] | None = None) -> BacktestResult:
    eq = pd.Series(equity, index=index[: len(equity)])
    return BacktestResult(
        equity=eq, position=np.array(position, dtype=float), trades=trades if trades is not None else empty_trades(),
        close=pd.Series(close or [10, 11, 12, 11, 13, 14][: len(equity)], index=eq.index, dtype=float),
        initial_cash=100.0, fees_total=1.5,
    )


def test_returns_sharpe_sortino_and_volatility_by_hand():
    stats = compute_stats(result([100, 110, 99, 108.9, 108.9, 119.79], [0, 1, 1, 1, 0, 1]))
    daily = [0.0, 0.10, -0.10, 0.10, 0.0, 0.10]  # first day against initial cash 100
    mean = sum(daily) / 6
    std = math.sqrt(sum((r - mean) ** 2 for r in daily) / 5)
    assert stats["return_pct"] == pytest.approx(19.79)
    assert stats["sharpe"] == pytest.approx(mean / std * math.sqrt(252))
    assert stats["volatility_ann_pct"] == pytest.approx(std * math.sqrt(252) * 100)
    downside = math.sqrt(0.01 / 6)
    assert stats["sortino"] == pytest.approx(mean * math.sqrt(252) / downside)
    assert stats["exposure_pct"] == pytest.approx(4 / 6 * 100)
    assert stats["buy_hold_return_pct"] == pytest.approx(40.0)
    assert stats["fees"] == 1.5


def test_drawdown_with_recovery_and_without():
    stats = compute_stats(result([100, 120, 90, 120, 130, 104], [1] * 6))
    # first dip: 120 -> 90 (-25 %) recovered on day 4; second: 130 -> 104 (-20 %), never recovered
    assert stats["max_drawdown_pct"] == pytest.approx(-25.0)
    assert stats["avg_drawdown_pct"] == pytest.approx(-22.5)
    # the second period spans a weekend (Fri -> Mon): 3 days, longer than the first's 2
    assert stats["max_drawdown_duration"] == DAYS[5] - DAYS[4] == pd.Timedelta(days=3)
    assert stats["avg_drawdown_duration"] == ((DAYS[3] - DAYS[1]) + (DAYS[5] - DAYS[4])) / 2
    assert stats["equity_peak"] == 130


def test_cagr_and_calmar_by_hand():
    index = pd.DatetimeIndex(["2020-01-01", "2021-01-01"], tz="UTC")
    stats = compute_stats(result([100, 150], [1, 1], index=index, close=[1, 2]))
    years = (index[1] - index[0]) / pd.Timedelta(days=365.25)
    assert stats["cagr_pct"] == pytest.approx((1.5 ** (1 / years) - 1) * 100)
    assert stats["max_drawdown_pct"] == 0.0 and stats["calmar"] is None


def trades(pnls: list[float], returns: list[float], hours: list[int]) -> pd.DataFrame:
    entry = pd.Timestamp("2024-01-01", tz="UTC")
    return pd.DataFrame({
        "entry_time": [entry] * len(pnls), "exit_time": [entry + pd.Timedelta(hours=h) for h in hours],
        "entry_bar": 0, "exit_bar": 1, "side": "long", "size": 1.0, "entry_price": 1.0, "exit_price": 1.0,
        "fees": 0.0, "pnl": pnls, "return_pct": returns,
    })


def test_trade_statistics_by_hand():
    t = trades([10.0, -5.0, 20.0, -5.0], [2.0, -1.0, 4.0, -1.0], [1, 2, 3, 6])
    stats = compute_stats(result([100, 101, 102, 103, 104, 120], [1] * 6, trades=t))
    assert stats["trades"] == 4 and stats["win_rate_pct"] == 50.0
    assert stats["profit_factor"] == pytest.approx(30 / 10)
    assert stats["expectancy"] == pytest.approx(5.0)
    std = math.sqrt(((10 - 5) ** 2 + (-5 - 5) ** 2 + (20 - 5) ** 2 + (-5 - 5) ** 2) / 3)
    assert stats["sqn"] == pytest.approx(math.sqrt(4) * 5 / std)
    assert (stats["best_trade_pct"], stats["worst_trade_pct"], stats["avg_trade_pct"]) == (4.0, -1.0, 1.0)
    assert stats["max_trade_duration"] == pd.Timedelta(hours=6)
    assert stats["avg_trade_duration"] == pd.Timedelta(hours=3)


def test_profit_factor_without_losses_is_none_not_infinite():
    stats = compute_stats(result([100] * 6, [0] * 6, trades=trades([1.0, 2.0], [1.0, 2.0], [1, 1])))
    assert stats["profit_factor"] is None


def test_flat_curve_with_no_trades_has_no_nan_anywhere():
    stats = compute_stats(result([100] * 6, [0] * 6))
    assert stats["trades"] == 0 and stats["sharpe"] is None and stats["sortino"] is None
    assert all(not (isinstance(v, float) and not math.isfinite(v)) for v in stats.values())


def test_weekend_days_switch_annualisation_to_365():
    index = pd.date_range("2024-01-01", periods=14, freq="D", tz="UTC")  # includes two weekends
    equity = [100 * (1.01 if i % 2 else 0.995) ** (i + 1) for i in range(14)]
    stats = compute_stats(result(equity, [1] * 14, index=index, close=[1.0] * 14))
    values = np.array([100.0] + equity)
    daily = values[1:] / values[:-1] - 1
    assert stats["sharpe"] == pytest.approx(daily.mean() / daily.std(ddof=1) * math.sqrt(365))
