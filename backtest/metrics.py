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


def period_returns(equity: pd.Series, initial_cash: float) -> tuple[np.ndarray, float]:
    """Returns per day (or per bar for coarser data) and the annualisation factor."""
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


def drawdowns(equity: pd.Series) -> tuple[np.ndarray, list[tuple[float, pd.Timedelta]]]:
    """Bar-level drawdown series and each drawdown period's (deepest point, duration)."""
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


def compute_stats(result: BacktestResult) -> dict[str, Any]:
    equity = result.equity
    initial = result.initial_cash
    trades = result.trades
    stats: dict[str, Any] = dict.fromkeys(STAT_KEYS)
    if len(equity) == 0:
        stats.update(trades=0, fees=result.fees_total)
        return stats
    start, end = equity.index[0], equity.index[-1]
    duration = end - start
    final = float(equity.iloc[-1])
    returns, annual = period_returns(equity, initial)
    dd, periods = drawdowns(equity)
    stats.update(
        start=start, end=end, duration=duration,
        exposure_pct=float(np.mean(result.position != 0) * 100.0),
        equity_final=final, equity_peak=float(equity.max()),
        return_pct=(final / initial - 1.0) * 100.0,
        buy_hold_return_pct=_num((result.close.iloc[-1] / result.close.iloc[0] - 1.0) * 100.0),
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
    if periods:
        stats["avg_drawdown_pct"] = float(np.mean([p[0] for p in periods])) * 100.0
        stats["max_drawdown_duration"] = max(p[1] for p in periods)
        stats["avg_drawdown_duration"] = pd.Series([p[1] for p in periods]).mean()
    stats.update(_trade_stats(trades))
    return stats


def _trade_stats(trades: pd.DataFrame) -> dict[str, Any]:
    n = len(trades)
    out: dict[str, Any] = {"trades": n}
    if n == 0:
        return out
    pnl = trades["pnl"].to_numpy(dtype=np.float64)
    ret = trades["return_pct"].to_numpy(dtype=np.float64)
    held = pd.to_datetime(trades["exit_time"]) - pd.to_datetime(trades["entry_time"])
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
