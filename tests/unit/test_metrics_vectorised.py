"""The vectorised statistics against straightforward per-bar reference implementations (kept here):
exactly equal, on real bars and on hand-made edge cases."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtest import metrics
from backtest.config import make_config
from backtest.data import load_bars
from backtest.metrics import compute_stats, drawdown_periods, drawdowns, period_returns
from backtest.result import BacktestResult, empty_trades
from backtest.runner import run_backtest
from strategies import get_strategy

ROOT = Path(__file__).resolve().parents[2]
SMA = get_strategy("sma_cross")


# -- reference implementations: the per-bar loops the vectorised code replaced -------------------
def reference_drawdowns(equity: pd.Series) -> tuple[np.ndarray, list[tuple[float, pd.Timedelta]]]:
    values = equity.to_numpy()
    peak = np.maximum.accumulate(values)
    dd = values / peak - 1.0
    periods: list[tuple[float, pd.Timedelta]] = []
    index = equity.index
    start = None
    for i, value in enumerate(dd):
        if value < 0 and start is None:
            start = i - 1 if i > 0 else 0
        elif value >= 0 and start is not None:
            periods.append((float(dd[start:i].min()), index[i] - index[start]))
            start = None
    if start is not None:
        periods.append((float(dd[start:].min()), index[-1] - index[start]))
    return dd, periods


def reference_period_returns(equity: pd.Series, initial_cash: float) -> tuple[np.ndarray, float]:
    index = equity.index
    if len(equity) > 1:
        spacing = pd.Series(index).diff().median()
        if spacing > pd.Timedelta(days=1, hours=12):
            values = np.concatenate([[initial_cash], equity.to_numpy()])
            return values[1:] / values[:-1] - 1.0, pd.Timedelta(days=365.25) / spacing
    daily = equity.groupby(index.normalize()).last()
    values = np.concatenate([[initial_cash], daily.to_numpy()])
    # the calendar's periods per year have their own hand-computed tests (test_annualisation.py)
    return values[1:] / values[:-1] - 1.0, metrics.calendar_days_per_year(daily.index)


def reference_stats(result: BacktestResult) -> dict:
    """compute_stats as it was, on the reference loops above."""
    equity, initial, trades = result.equity, result.initial_cash, result.trades
    stats = dict.fromkeys(metrics.STAT_KEYS)
    if len(equity) == 0:
        stats.update(trades=0, fees=result.fees_total)
        return stats
    start, end = equity.index[0], equity.index[-1]
    duration = end - start
    final = float(equity.iloc[-1])
    returns, annual = reference_period_returns(equity, initial)
    dd, periods = reference_drawdowns(equity)
    num = metrics._num
    stats.update(
        start=start, end=end, duration=duration, exposure_pct=float(np.mean(result.position != 0) * 100.0),
        equity_final=final, equity_peak=float(equity.max()), return_pct=(final / initial - 1.0) * 100.0,
        buy_hold_return_pct=num((result.close.iloc[-1] / result.close.iloc[0] - 1.0) * 100.0),
        max_drawdown_pct=float(dd.min()) * 100.0 if len(dd) else None, fees=result.fees_total,
        periods_per_year=float(annual),
    )
    years = duration / pd.Timedelta(days=365.25)
    if years > 0 and final > 0:
        stats["cagr_pct"] = num(((final / initial) ** (1.0 / years) - 1.0) * 100.0)
    if len(returns) > 1:
        std, mean = float(np.std(returns, ddof=1)), float(np.mean(returns))
        stats["volatility_ann_pct"] = num(std * math.sqrt(annual) * 100.0)
        stats["sharpe"] = num(mean / std * math.sqrt(annual)) if std > 0 else None
        downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
        stats["sortino"] = num(mean * math.sqrt(annual) / downside) if downside > 0 else None
    if stats["cagr_pct"] is not None and stats["max_drawdown_pct"]:
        stats["calmar"] = num(stats["cagr_pct"] / abs(stats["max_drawdown_pct"]))
    if periods:
        stats["avg_drawdown_pct"] = float(np.mean([p[0] for p in periods])) * 100.0
        stats["max_drawdown_duration"] = max(p[1] for p in periods)
        stats["avg_drawdown_duration"] = pd.Series([p[1] for p in periods]).mean()
    n = len(trades)
    stats["trades"] = n
    if n:
        pnl = trades["pnl"].to_numpy(dtype=np.float64)
        ret = trades["return_pct"].to_numpy(dtype=np.float64)
        held = pd.to_datetime(trades["exit_time"]) - pd.to_datetime(trades["entry_time"])
        gains, losses = pnl[pnl > 0].sum(), pnl[pnl < 0].sum()
        stats.update(
            win_rate_pct=float(np.mean(pnl > 0) * 100.0), best_trade_pct=float(ret.max()),
            worst_trade_pct=float(ret.min()), avg_trade_pct=float(ret.mean()),
            max_trade_duration=held.max(), avg_trade_duration=held.mean(),
            profit_factor=num(gains / -losses) if losses < 0 else None, expectancy=float(pnl.mean()),
            sqn=num(math.sqrt(n) * pnl.mean() / np.std(pnl, ddof=1)) if n > 1 and np.std(pnl, ddof=1) > 0 else None,
        )
    return stats


# -- helpers -----------------------------------------------------------------------------------
def same(a, b) -> bool:
    """Exactly equal, NaN equal to NaN; Timedelta/Timestamp compared by value and type."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def assert_stats_identical(result: BacktestResult) -> None:
    got, want = compute_stats(result), reference_stats(result)
    assert list(got) == list(want)
    for key in want:
        assert same(got[key], want[key]), f"{key}: {got[key]!r} != {want[key]!r}"


def assert_drawdowns_identical(equity: pd.Series) -> None:
    dd, periods = drawdowns(equity)
    ref_dd, ref_periods = reference_drawdowns(equity)
    np.testing.assert_array_equal(dd, ref_dd)
    assert len(periods) == len(ref_periods)
    for (depth, length), (ref_depth, ref_length) in zip(periods, ref_periods):
        assert same(depth, ref_depth) and type(length) is type(ref_length) and length == ref_length


def series(values: list[float], start: str = "2024-01-01", freq: str = "h") -> pd.Series:
    return pd.Series(np.asarray(values, dtype=np.float64),
                     index=pd.date_range(start, periods=len(values), freq=freq, tz="UTC"), name="equity")


def bare_result(equity: pd.Series) -> BacktestResult:
    return BacktestResult(equity=equity, position=np.ones(len(equity)), trades=empty_trades(),
                          close=pd.Series(np.linspace(10, 20, len(equity)), index=equity.index),
                          initial_cash=100.0, fees_total=0.5)


# -- real data ---------------------------------------------------------------------------------
REAL_RUNS = [
    ("stocks/SPY_daily.csv", {"fast": 10, "slow": 30}, None),
    ("stocks/SPY_daily.csv", {"fast": 5, "slow": 50, "mode": "long_short"}, None),
    ("stocks/GOOG_daily.csv", {"fast": 20, "slow": 60}, None),
    ("fx/EURUSD_1h.csv", {"fast": 10, "slow": 40, "mode": "long_short"}, None),
    ("crypto/BTC-PERP_1m.csv", {"fast": 10, "slow": 30, "units": "fractional"}, 30_000),
    ("crypto/BTC-PERP_1m.csv", {"fast": 50, "slow": 200, "units": "fractional", "mode": "long_short"}, None),
]


@pytest.mark.parametrize("path,params,bars", REAL_RUNS)
def test_stats_equal_the_reference_on_real_backtests(path, params, bars):
    frame = load_bars(ROOT / "data" / path)
    if bars is not None:
        frame = frame.iloc[:bars]
    result = run_backtest(frame, SMA, params, make_config(path="fast"))
    assert len(result.trades) > 0
    assert_drawdowns_identical(result.equity)
    returns, annual = period_returns(result.equity, result.initial_cash)
    ref_returns, ref_annual = reference_period_returns(result.equity, result.initial_cash)
    np.testing.assert_array_equal(returns, ref_returns)
    assert annual == ref_annual
    assert_stats_identical(result)
    # and the raw prices of the file as an equity curve: many drawdowns, long and short
    assert_drawdowns_identical(frame["close"])


def test_coarser_than_daily_bars_use_bar_returns():
    frame = load_bars(ROOT / "data" / "stocks" / "SPY_daily.csv").iloc[:600].resample("7D").last().dropna()
    result = run_backtest(frame, SMA, {"fast": 3, "slow": 8}, make_config(path="fast"))
    returns, annual = period_returns(result.equity, result.initial_cash)
    ref_returns, ref_annual = reference_period_returns(result.equity, result.initial_cash)
    np.testing.assert_array_equal(returns, ref_returns)
    assert annual == ref_annual
    assert_stats_identical(result)


# -- hand-made edge cases ------------------------------------------------------------------------
EDGE_CASES = {
    "no drawdown": [100, 101, 102, 102, 103],
    "flat": [100, 100, 100, 100],
    "single bar": [100],
    "drawdown at the end, not recovered": [100, 110, 105, 104, 106],
    "recovered then open": [100, 90, 100, 120, 80, 90],
    "recovery exactly to the peak": [100, 90, 100, 90, 100],
    "down from the first bar": [100, 90, 80, 70],
    "back to back periods": [100, 90, 101, 95, 102, 99, 103],
    "new peak inside no period": [100, 120, 140, 130, 150, 149],
    "nan inside a drawdown": [100, 90, np.nan, 95, 101, 99],
    "nan at a peak": [100, np.nan, 110, 100, np.nan, 120],
    "zero equity": [100, 0, 50, 120],
    "starts at zero": [0, 0, 10, 5],
}


@pytest.mark.parametrize("name", list(EDGE_CASES))
def test_drawdowns_equal_the_reference_on_edge_cases(name):
    with np.errstate(divide="ignore", invalid="ignore"):
        equity = series(EDGE_CASES[name])
        assert_drawdowns_identical(equity)
        assert_stats_identical(bare_result(equity))


def test_edge_cases_by_hand():
    _, starts, ends, depths = drawdown_periods(np.array([100.0, 101, 102, 103]))
    assert len(starts) == len(ends) == len(depths) == 0
    _, starts, ends, depths = drawdown_periods(np.array([100.0, 110, 105, 104, 106]))
    assert starts.tolist() == [1] and ends.tolist() == [4] and depths.tolist() == [104 / 110 - 1]
    _, starts, ends, depths = drawdown_periods(np.array([100.0, 90, 100, 80]))
    assert starts.tolist() == [0, 2] and ends.tolist() == [2, 3] and depths.tolist() == [90 / 100 - 1, 80 / 100 - 1]
    dd, starts, _, _ = drawdown_periods(np.array([100.0]))
    assert dd.tolist() == [0.0] and len(starts) == 0
    dd, starts, _, _ = drawdown_periods(np.array([], dtype=np.float64))
    assert len(dd) == 0 and len(starts) == 0
    stats = compute_stats(bare_result(series([100.0])))
    assert stats["max_drawdown_pct"] == 0.0 and stats["max_drawdown_duration"] is None


def test_random_walks_with_weekends_and_seconds_unit():
    rng = np.random.default_rng(7)
    for trial in range(30):
        n = int(rng.integers(2, 3000))
        values = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
        if trial % 3 == 0:
            values = np.round(values, 0)  # ties with the peak
        freq = ("min", "h", "D", "4h")[trial % 4]
        equity = series(values.tolist(), start="2024-03-01 13:00", freq=freq)
        if trial % 5 == 0:
            equity.index = equity.index.as_unit("s")
        if trial % 7 == 0:
            equity.index = equity.index.tz_convert("America/New_York")
        assert_drawdowns_identical(equity)
        assert_stats_identical(bare_result(equity))


def test_unsorted_index_and_trades_with_object_times_fall_back_to_the_reference():
    equity = series([100, 95, 105, 90, 110, 108], freq="7h")
    shuffled = equity.iloc[[0, 2, 1, 3, 5, 4]]
    assert_stats_identical(bare_result(shuffled))
    trades = pd.DataFrame({
        "entry_time": [equity.index[0], equity.index[2]], "exit_time": [equity.index[1], equity.index[5]],
        "pnl": [5.0, -2.0], "return_pct": [5.0, -2.0],
    }).astype({"entry_time": object, "exit_time": object})
    result = bare_result(equity)
    result.trades = trades
    assert_stats_identical(result)


def test_layout_cache_follows_the_index_object():
    a = series([100, 99, 101, 102], freq="D")
    b = series([100, 99, 101, 102], freq="8D")  # same values, coarser bars: bar returns
    ra, rb = period_returns(a, 100.0), period_returns(b, 100.0)
    assert ra[1] == 252.0 or ra[1] == 365.0
    assert rb[1] == pytest.approx(365.25 / 8)
    for equity in (a, b, a):
        got, want = period_returns(equity, 100.0), reference_period_returns(equity, 100.0)
        np.testing.assert_array_equal(got[0], want[0])
        assert got[1] == want[1]


# -- the sweep's evaluator: the same stats as compute_stats(run_backtest(...)) -----------------------
def test_sweep_trades_columns_equal_the_full_trades_frame_and_evaluations_equal_direct_runs():
    from backtest.evaluate import Evaluator, stats_trades
    from backtest.frames import trades_frame
    from backtest.report import _json_value
    from backtest.runner import build_instrument

    frame = load_bars(ROOT / "data" / "crypto" / "BTC-PERP_1m.csv").iloc[:40_000]
    config = make_config(path="fast")
    evaluator = Evaluator(frame, SMA, config, "sharpe")
    combos = [{"fast": 10, "slow": 30, "units": "fractional"}, {"fast": 5, "slow": 60, "mode": "long_short"},
              {"fast": 10, "slow": 90, "units": "fractional", "size": "0.5"}]
    for params in combos:
        direct = run_backtest(frame, SMA, params, config)
        light = evaluator.run(params)
        pd.testing.assert_series_equal(light.equity, direct.equity)
        np.testing.assert_array_equal(light.position, direct.position)
        assert light.fees_total == direct.fees_total and light.meta["path"] == direct.meta["path"] == "fast"
        for column in ("entry_time", "exit_time", "pnl", "return_pct"):
            pd.testing.assert_series_equal(light.trades[column], direct.trades[column])
        expected = {k: _json_value(v) for k, v in compute_stats(direct).items()}
        assert evaluator.evaluate(params).stats == expected
        window = evaluator.evaluate(params, 5_000, 25_000)
        assert window.stats == {k: _json_value(v) for k, v in
                                compute_stats(run_backtest(frame.iloc[5_000:25_000], SMA, params, config)).items()}
    # stats_trades is trades_frame's formulas on the kernel's raw trades
    instrument = build_instrument(frame, config, "fractional")
    raw = {"direction": np.array([1, -1, 1]), "qty": np.array([150, 20, 0]),
           "entry_price": np.array([4_000, 4_100, 4_050]),
           "exit_price": np.array([4_100, 4_000, 4_060]), "entry_bar": np.array([1, 5, 9]),
           "exit_bar": np.array([4, 8, 12]), "fees": np.array([3, 2, 0]), "pnl": np.array([1_497, 198, 0])}
    full, light = trades_frame(raw, frame.index, instrument.scales), stats_trades(raw, frame.index, instrument.scales)
    for column in light.columns:
        pd.testing.assert_series_equal(light[column], full[column])
