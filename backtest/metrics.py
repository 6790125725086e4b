"""Backtest statistics, defined once and tested against hand computation.

Definitions (the keys of `compute_stats`):
- exposure_pct: share of bars ending with a non-zero position.
- return_pct: equity_final / initial_cash - 1. buy_hold_return_pct: last close / first close - 1.
- Daily returns: the last equity of each calendar day with bars, as a return on the previous
  day (the first day against initial_cash). Annualisation A = 365 when more than 10% of those
  days fall on a weekend (24/7 markets), else 252. Data coarser than daily uses bar returns with A
  = bars per year from the median spacing.
- cagr_pct: (equity_final / initial_cash) ** (365.25 days / duration) - 1.
- volatility_ann_pct: std(daily, ddof=1) * sqrt(A). sharpe: mean / std * sqrt(A) (risk-free 0).
  sortino: mean * sqrt(A) / sqrt(mean(min(r, 0)^2)). calmar: cagr / |max drawdown|.
- Drawdown dd = equity / running peak - 1 at every bar; max_drawdown_pct = min(dd) (negative).
  A drawdown period runs from the last peak to the bar that regains it (or the last bar);
  avg_drawdown_pct is the mean of each period's deepest point.
- win_rate_pct: trades with pnl > 0. best/worst/avg_trade_pct from return_pct. profit_factor:
  gross profit / gross loss (None with no loss). expectancy: mean pnl per trade (currency).
  sqn: sqrt(n) * mean(pnl) / std(pnl, ddof=1).
Undefined values are None, never NaN or inf.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from backtest.result import BacktestResult

STAT_KEYS = (
    "start", "end", "duration", "exposure_pct", "equity_final", "equity_peak", "return_pct",
    "buy_hold_return_pct", "cagr_pct", "volatility_ann_pct", "sharpe", "sortino", "calmar",
    "max_drawdown_pct", "avg_drawdown_pct", "max_drawdown_duration", "avg_drawdown_duration",
    "trades", "win_rate_pct", "best_trade_pct", "worst_trade_pct", "avg_trade_pct",
    "max_trade_duration", "avg_trade_duration", "profit_factor", "expectancy", "sqn", "fees",
)


def _num(value: float | np.floating | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _layout(index: pd.Index) -> tuple[np.ndarray | None, float]:
    """Which bars close each period (None: every bar, coarser than daily) and the annualisation
    factor, for `index`; cached by identity for a few indexes (a sweep scores thousands of runs
    on one frame, and its equity series all share the frame's index object)."""
    for cached_index, layout in _LAYOUTS:
        if cached_index is index:
            return layout
    layout = _find_layout(index)
    _LAYOUTS.insert(0, (index, layout))
    del _LAYOUTS[_LAYOUT_SLOTS:]
    return layout


def _find_layout(index: pd.Index) -> tuple[np.ndarray | None, float]:
    n = len(index)
    if n > 1:
        spacing = pd.Series(index).diff().median()
        if spacing > pd.Timedelta(days=1, hours=12):
            return None, pd.Timedelta(days=365.25) / spacing
    days = index.normalize()
    keys = days.asi8
    last = np.flatnonzero(np.r_[keys[1:] != keys[:-1], True]) if n else np.array([], dtype=np.int64)
    weekend = float(np.mean(days[last].day_of_week >= 5)) if len(last) else 0.0
    return last, 365.0 if weekend > 0.10 else 252.0


_LAYOUT_SLOTS = 8
_LAYOUTS: list[tuple[pd.Index, tuple[np.ndarray | None, float]]] = []


def period_returns(equity: pd.Series, initial_cash: float) -> tuple[np.ndarray, float]:
    """Returns per day (or per bar for coarser data) and the annualisation factor."""
    index = equity.index
    values = equity.to_numpy()
    # the last bar of each day is the day's last equity: a gather, when the bars are in time
    # order and no equity is missing (groupby's last() would skip a NaN)
    if index.is_monotonic_increasing and not np.isnan(values).any():
        last, annual = _layout(index)
        closes = values if last is None else values[last]
        values = np.concatenate([[initial_cash], closes])
        return values[1:] / values[:-1] - 1.0, annual
    return _period_returns_grouped(equity, initial_cash)


def _period_returns_grouped(equity: pd.Series, initial_cash: float) -> tuple[np.ndarray, float]:
    index = equity.index
    if len(equity) > 1:
        spacing = pd.Series(index).diff().median()
        if spacing > pd.Timedelta(days=1, hours=12):
            values = np.concatenate([[initial_cash], equity.to_numpy()])
            return values[1:] / values[:-1] - 1.0, pd.Timedelta(days=365.25) / spacing
    daily = equity.groupby(index.normalize()).last()
    values = np.concatenate([[initial_cash], daily.to_numpy()])
    weekend = float(np.mean(daily.index.day_of_week >= 5)) if len(daily) else 0.0
    return values[1:] / values[:-1] - 1.0, 365.0 if weekend > 0.10 else 252.0


def drawdown_periods(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The bar-level drawdown series and, per drawdown period, its first bar (the last peak), its
    last bar (the one that regains the peak, or the last bar) and its deepest point.

    A period starts when dd turns negative (at the bar before) and ends at the first bar with
    dd >= 0 again; a NaN bar neither starts nor ends one. The depth covers the start up to, not
    including, the recovering bar (up to the end when it never recovers)."""
    values = np.asarray(values)
    n = len(values)
    peak = np.maximum.accumulate(values) if n else values.astype(np.float64)
    dd = values / peak - 1.0
    empty = np.array([], dtype=np.int64)
    if n == 0:
        return dd, empty, empty, np.array([], dtype=np.float64)
    under = dd < 0
    known = under | (dd >= 0)
    if not known.all():  # NaN bars keep the state they found
        under = under[np.maximum.accumulate(np.where(known, np.arange(n), 0))]
    change = np.diff(under.view(np.int8), prepend=np.int8(0))
    first = np.flatnonzero(change == 1)
    recovered = np.flatnonzero(change == -1)
    if len(first) == 0:
        return dd, empty, empty, np.array([], dtype=np.float64)
    starts = np.maximum(first - 1, 0)
    open_end = len(recovered) < len(first)
    ends = np.concatenate([recovered, [n - 1]]) if open_end else recovered
    # min over dd[start:recovered) for each period (dd[start:] for one still open), in one pass
    bounds = np.empty(len(starts) + len(recovered), dtype=np.int64)
    bounds[0::2] = starts
    bounds[1::2] = recovered
    depths = np.minimum.reduceat(dd, bounds)[0::2]
    return dd, starts, ends.astype(np.int64), depths


def drawdowns(equity: pd.Series) -> tuple[np.ndarray, list[tuple[float, pd.Timedelta]]]:
    """Bar-level drawdown series and each drawdown period's (deepest point, duration)."""
    dd, starts, ends, depths = drawdown_periods(equity.to_numpy())
    durations = equity.index[ends] - equity.index[starts]
    return dd, list(zip(depths.tolist(), durations))


def compute_stats(result: BacktestResult) -> dict[str, Any]:
    equity = result.equity
    initial = result.initial_cash
    trades = result.trades
    stats: dict[str, Any] = dict.fromkeys(STAT_KEYS)
    if len(equity) == 0:
        stats.update(trades=0, fees=result.fees_total)
        return stats
    index = equity.index
    values = equity.to_numpy()
    start, end = index[0], index[-1]
    duration = end - start
    final = float(values[-1])
    returns, annual = period_returns(equity, initial)
    dd, starts, ends, depths = drawdown_periods(values)
    close = result.close.to_numpy()
    # pandas' max skips NaN; numpy's is the same number when there is none
    peak = float(equity.max()) if np.isnan(values).any() else float(values.max())
    stats.update(
        start=start, end=end, duration=duration,
        exposure_pct=float(np.mean(result.position != 0) * 100.0),
        equity_final=final, equity_peak=peak,
        return_pct=(final / initial - 1.0) * 100.0,
        buy_hold_return_pct=_num((close[-1] / close[0] - 1.0) * 100.0),
        max_drawdown_pct=float(dd.min()) * 100.0 if len(dd) else None,
        fees=result.fees_total,
    )
    years = duration / pd.Timedelta(days=365.25)
    if years > 0 and final > 0:
        stats["cagr_pct"] = _num(((final / initial) ** (1.0 / years) - 1.0) * 100.0)
    if len(returns) > 1:
        std = float(np.std(returns, ddof=1))
        mean = float(np.mean(returns))
        stats["volatility_ann_pct"] = _num(std * math.sqrt(annual) * 100.0)
        stats["sharpe"] = _num(mean / std * math.sqrt(annual)) if std > 0 else None
        downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
        stats["sortino"] = _num(mean * math.sqrt(annual) / downside) if downside > 0 else None
    if stats["cagr_pct"] is not None and stats["max_drawdown_pct"]:
        stats["calmar"] = _num(stats["cagr_pct"] / abs(stats["max_drawdown_pct"]))
    if len(depths):
        durations = (index[ends] - index[starts]).array  # what a Series' max() and mean() reduce
        stats["avg_drawdown_pct"] = float(np.mean(depths)) * 100.0
        stats["max_drawdown_duration"] = durations.max()
        stats["avg_drawdown_duration"] = durations.mean()
    stats.update(_trade_stats(trades))
    return stats


def _trade_stats(trades: pd.DataFrame) -> dict[str, Any]:
    n = len(trades)
    out: dict[str, Any] = {"trades": n}
    if n == 0:
        return out
    pnl = trades["pnl"].to_numpy(dtype=np.float64)
    ret = trades["return_pct"].to_numpy(dtype=np.float64)
    entry, exit_ = trades["entry_time"], trades["exit_time"]
    if _is_datetime(entry) and _is_datetime(exit_):  # to_datetime would return them as they are
        held = exit_.array - entry.array  # the array a Series' max() and mean() reduce
    else:
        held = pd.to_datetime(exit_) - pd.to_datetime(entry)
    gains, losses = pnl[pnl > 0].sum(), pnl[pnl < 0].sum()
    out.update(
        win_rate_pct=float(np.mean(pnl > 0) * 100.0),
        best_trade_pct=float(ret.max()), worst_trade_pct=float(ret.min()), avg_trade_pct=float(ret.mean()),
        max_trade_duration=held.max(), avg_trade_duration=held.mean(),
        profit_factor=_num(gains / -losses) if losses < 0 else None,
        expectancy=float(pnl.mean()),
        sqn=_num(math.sqrt(n) * pnl.mean() / np.std(pnl, ddof=1)) if n > 1 and np.std(pnl, ddof=1) > 0 else None,
    )
    return out


def _is_datetime(column: pd.Series) -> bool:
    return isinstance(column.dtype, pd.DatetimeTZDtype) or column.dtype.kind == "M"
