"""Backtest statistics, defined once and tested against hand computation.

Definitions (the keys of `compute_stats`):
- exposure_pct: share of bars ending with a non-zero position.
- return_pct: equity_final / initial_cash - 1. buy_hold_return_pct: last close / first close - 1.
- Daily returns: the last equity of each calendar day (UTC) with bars, as a return on the previous
  day (the first day against initial_cash). Data coarser than daily uses bar returns.
- periods_per_year A (annualisation), from the data's calendar (`infer_periods_per_year`):
  coarser than daily: bars per year from the median spacing (weekly 52.18, monthly ~12);
  a market open on most Saturdays and Sundays: 365; no weekend bars at all: 252 (exchange
  trading days); anything else, such as hourly FX whose week opens on Sunday evening: the trading
  days per year observed, days with bars / calendar days spanned * 365.25 (EURUSD 2017-18: 310.8;
  guessing 365 there inflated Sharpe, Sortino and volatility by 8 %). The user may set A.
- risk-free rate rf (annual, default 0): per period rf_p = (1 + rf) ** (1 / A) - 1, and the
  excess returns e = r - rf_p.
- cagr_pct: (equity_final / initial_cash) ** (365.25 days / duration) - 1.
- volatility_ann_pct: std(r, ddof=1) * sqrt(A). sharpe: mean(e) / std(r) * sqrt(A).
  sortino: mean(e) * sqrt(A) / sqrt(mean(min(e, 0)^2)). calmar: cagr / |max drawdown|.
- Drawdown dd = equity / running peak - 1 at every bar; max_drawdown_pct = min(dd) (negative).
  A drawdown period runs from the last peak to the bar that regains it (or the last bar);
  avg_drawdown_pct is the mean of each period's deepest point.
- win_rate_pct: trades with pnl > 0. best/worst/avg_trade_pct from return_pct. profit_factor:
  gross profit / gross loss (None with no loss). expectancy: mean pnl per trade (currency).
  sqn: sqrt(n) * mean(pnl) / std(pnl, ddof=1).
Undefined values are None, never NaN or inf.

`compute_stats(..., conventions="backtesting.py")` gives backtesting.py's table instead, with its
own labels and definitions (`backtesting_py_stats`), so a user coming from it compares one to one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import pandas as pd

from backtest.result import BacktestResult
from engine.errors import ConfigError

CONVENTIONS = ("tickbridge", "backtesting.py")

STAT_KEYS = (
    "start", "end", "duration", "exposure_pct", "equity_final", "equity_peak", "return_pct",
    "buy_hold_return_pct", "cagr_pct", "periods_per_year", "volatility_ann_pct", "sharpe", "sortino", "calmar",
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
    return last, calendar_days_per_year(days[last])


def calendar_days_per_year(days: pd.DatetimeIndex) -> float:
    """Trading days per year of a market whose days with bars are `days` (distinct dates, in
    order): 365 when most Saturdays and Sundays of the span have bars, 252 when no weekend day
    does, else the days with bars per calendar year observed over the span."""
    if len(days) == 0:
        return 252.0
    span = int((days[-1] - days[0]) / pd.Timedelta(days=1)) + 1
    first_dow = int(days[0].day_of_week)
    in_span = np.bincount((first_dow + np.arange(span)) % 7, minlength=7)  # calendar days per weekday
    with_bars = np.bincount(np.asarray(days.day_of_week), minlength=7)
    saturdays, sundays = in_span[5], in_span[6]
    if saturdays and sundays and with_bars[5] >= 0.5 * saturdays and with_bars[6] >= 0.5 * sundays:
        return 365.0
    if with_bars[5] + with_bars[6] == 0:
        return 252.0
    return len(days) / span * 365.25


def infer_periods_per_year(index: pd.Index) -> float:
    """The annualisation factor `compute_stats` uses for bars at `index` (module docstring)."""
    return _layout(index)[1] if len(index) else 252.0


def check_periods_per_year(value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError("periods_per_year", f"must be a positive number of return periods per year, got {value!r}")
    return float(value)


def check_stats_options(conventions: str, risk_free: float, periods_per_year: float | None) -> None:
    """Refuse a bad --conventions, --risk-free or --periods-per-year before any work is done."""
    if conventions not in CONVENTIONS:
        raise ConfigError("conventions", f"unknown conventions {conventions!r}; known: {', '.join(CONVENTIONS)}")
    check_risk_free(risk_free)
    check_periods_per_year(periods_per_year)


def check_risk_free(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not -1.0 < value < 1.0:
        raise ConfigError("risk_free", f"an annual rate as a fraction (0.04 = 4 %) between -1 and 1, got {value!r}")
    return float(value)


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
    return values[1:] / values[:-1] - 1.0, calendar_days_per_year(daily.index)


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


@dataclass(frozen=True, slots=True)
class EquitySummary:
    """What the statistics read from a whole equity curve and position series: the rest of
    `compute_stats` works on small arrays (per-period returns, drawdown periods, trades)."""

    final: float
    peak: float
    min_drawdown: float    # dd.min(), as a fraction (negative or 0)
    starts: np.ndarray     # drawdown periods, as drawdown_periods gives them
    ends: np.ndarray
    depths: np.ndarray
    exposure_pct: float


@numba.njit(cache=True)
def _equity_pass(values, position, starts, ends, depths):  # pragma: no cover (compiled)
    """drawdown_periods + max + exposure in one pass, for a curve of positive, finite values (the
    caller checks ok and otherwise takes the numpy reference). The same IEEE operations
    (v / peak - 1.0, comparisons, min), so the same bits; a sweep calls it for every pair, where
    the numpy version made eight million-element passes."""
    n = len(values)
    peak = values[0]
    min_dd = np.inf
    under = False
    start = 0
    depth = 0.0
    prev_dd = 0.0
    k = 0
    exposed = 0
    for t in range(n):
        v = values[t]
        if not v > 0.0 or v == np.inf:
            return False, 0.0, 0.0, 0, 0
        if v > peak:
            peak = v
        dd = v / peak - 1.0
        if dd < min_dd:
            min_dd = dd
        if dd < 0:
            if not under:
                under = True
                start = t - 1 if t > 0 else 0
                depth = prev_dd if t > 0 else dd
            if dd < depth:
                depth = dd
        elif under:
            starts[k] = start
            ends[k] = t
            depths[k] = depth
            k += 1
            under = False
        prev_dd = dd
        if position[t] != 0:
            exposed += 1
    if under:
        starts[k] = start
        ends[k] = n - 1
        depths[k] = depth
        k += 1
    return True, peak, min_dd, k, exposed


def equity_summary(values: np.ndarray, position: np.ndarray, compiled_only: bool = False) -> EquitySummary | None:
    """The EquitySummary of a non-empty curve: one compiled pass when every value is positive and
    finite (always, for a backtest that keeps its cash), else drawdown_periods and numpy's
    reductions (NaN bars, zero or negative equity), or None with `compiled_only`."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    position = np.ascontiguousarray(position)
    n = len(values)
    if position.dtype == np.float64 and len(position) == n:
        size = n // 2 + 1  # periods alternate with recoveries: at most one per two bars
        starts = np.empty(size, dtype=np.int64)
        ends = np.empty(size, dtype=np.int64)
        depths = np.empty(size, dtype=np.float64)
        ok, peak, min_dd, k, exposed = _equity_pass(values, position, starts, ends, depths)
        if ok:
            return EquitySummary(final=float(values[-1]), peak=float(peak), min_drawdown=float(min_dd),
                                 starts=starts[:k].copy(), ends=ends[:k].copy(), depths=depths[:k].copy(),
                                 exposure_pct=float(exposed / n * 100.0))
    if compiled_only:
        return None
    dd, starts, ends, depths = drawdown_periods(values)
    # pandas' max skips NaN; numpy's is the same number when there is none
    peak = float(pd.Series(values).max()) if np.isnan(values).any() else float(values.max())
    return EquitySummary(final=float(values[-1]), peak=peak, min_drawdown=float(dd.min()), starts=starts,
                         ends=ends, depths=depths, exposure_pct=float(np.mean(position != 0) * 100.0))


def drawdowns(equity: pd.Series) -> tuple[np.ndarray, list[tuple[float, pd.Timedelta]]]:
    """Bar-level drawdown series and each drawdown period's (deepest point, duration)."""
    dd, starts, ends, depths = drawdown_periods(equity.to_numpy())
    durations = equity.index[ends] - equity.index[starts]
    return dd, list(zip(depths.tolist(), durations))


def compute_stats(result: BacktestResult, *, periods_per_year: float | None = None, risk_free: float = 0.0,
                  conventions: str = "tickbridge", opens: np.ndarray | None = None,
                  first_tradable_bar: int = 0) -> dict[str, Any]:
    """The statistics of `result` (module docstring). `periods_per_year` overrides the calendar's;
    `risk_free` is an annual rate (0.04 = 4 %). conventions="backtesting.py" gives that library's
    table (`backtesting_py_stats`, which also reads `opens` and `first_tradable_bar`)."""
    periods_per_year = check_periods_per_year(periods_per_year)
    risk_free = check_risk_free(risk_free)
    if conventions == "backtesting.py":
        return backtesting_py_stats(result, opens=opens, first_tradable_bar=first_tradable_bar,
                                    risk_free=risk_free, periods_per_year=periods_per_year)
    if conventions != "tickbridge":
        raise ConfigError("conventions", f"unknown conventions {conventions!r}; known: {', '.join(CONVENTIONS)}")
    equity = result.equity
    stats: dict[str, Any] = dict.fromkeys(STAT_KEYS)
    if len(equity) == 0:
        stats.update(trades=0, fees=result.fees_total)
        return stats
    returns, annual = period_returns(equity, result.initial_cash)
    summary = equity_summary(equity.to_numpy(), np.asarray(result.position))
    assert summary is not None
    return stats_of(equity.index, summary, result.initial_cash, result.close.to_numpy(), result.fees_total,
                    returns, annual, _trade_stats(result.trades), periods_per_year=periods_per_year,
                    risk_free=risk_free)


def stats_of(index: pd.Index, summary: EquitySummary, initial: float, close: np.ndarray, fees_total: float,
             returns: np.ndarray, annual: float, trade_stats: dict[str, Any], *,
             periods_per_year: float | None = None, risk_free: float = 0.0) -> dict[str, Any]:
    """compute_stats' table from its parts (a sweep builds them without a BacktestResult): the
    non-empty curve's EquitySummary, its per-period returns and annualisation (period_returns),
    and the trade statistics (trade_stats_of)."""
    stats: dict[str, Any] = dict.fromkeys(STAT_KEYS)
    if periods_per_year is not None:
        annual = periods_per_year
    start, end = index[0], index[-1]
    duration = end - start
    final = summary.final
    starts, ends, depths = summary.starts, summary.ends, summary.depths
    stats.update(
        start=start, end=end, duration=duration,
        exposure_pct=summary.exposure_pct,
        equity_final=final, equity_peak=summary.peak,
        return_pct=(final / initial - 1.0) * 100.0,
        buy_hold_return_pct=_num((close[-1] / close[0] - 1.0) * 100.0),
        max_drawdown_pct=summary.min_drawdown * 100.0,
        fees=fees_total, periods_per_year=float(annual),
    )
    years = duration / pd.Timedelta(days=365.25)
    if years > 0 and final > 0:
        stats["cagr_pct"] = _num(((final / initial) ** (1.0 / years) - 1.0) * 100.0)
    if len(returns) > 1:
        std = float(np.std(returns, ddof=1))
        excess = returns - ((1.0 + risk_free) ** (1.0 / annual) - 1.0) if risk_free else returns
        mean = float(np.mean(excess))
        stats["volatility_ann_pct"] = _num(std * math.sqrt(annual) * 100.0)
        stats["sharpe"] = _num(mean / std * math.sqrt(annual)) if std > 0 else None
        downside = math.sqrt(float(np.mean(np.minimum(excess, 0.0) ** 2)))
        stats["sortino"] = _num(mean * math.sqrt(annual) / downside) if downside > 0 else None
    if stats["cagr_pct"] is not None and stats["max_drawdown_pct"]:
        stats["calmar"] = _num(stats["cagr_pct"] / abs(stats["max_drawdown_pct"]))
    if len(depths):
        durations = (index[ends] - index[starts]).array  # what a Series' max() and mean() reduce
        stats["avg_drawdown_pct"] = float(np.mean(depths)) * 100.0
        stats["max_drawdown_duration"] = durations.max()
        stats["avg_drawdown_duration"] = durations.mean()
    stats.update(trade_stats)
    return stats


def _trade_stats(trades: pd.DataFrame) -> dict[str, Any]:
    if len(trades) == 0:
        return {"trades": 0}
    entry, exit_ = trades["entry_time"], trades["exit_time"]
    if _is_datetime(entry) and _is_datetime(exit_):  # to_datetime would return them as they are
        held = exit_.array - entry.array  # the array a Series' max() and mean() reduce
    else:
        held = pd.to_datetime(exit_) - pd.to_datetime(entry)
    return trade_stats_of(trades["pnl"].to_numpy(dtype=np.float64), trades["return_pct"].to_numpy(dtype=np.float64),
                          held)


def trade_stats_of(pnl: np.ndarray, ret: np.ndarray, held: Any) -> dict[str, Any]:
    """The trade statistics from the trades' pnl, return_pct and holding times (anything with
    max() and mean() over Timedeltas: a sweep passes the kernel's columns without a DataFrame)."""
    n = len(pnl)
    out: dict[str, Any] = {"trades": n}
    if n == 0:
        return out
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


# -- backtesting.py's conventions -----------------------------------------------------------------
BACKTESTING_PY_KEYS = (
    "Start", "End", "Duration", "Exposure Time [%]", "Equity Final [$]", "Equity Peak [$]", "Commissions [$]",
    "Return [%]", "Buy & Hold Return [%]", "Return (Ann.) [%]", "Volatility (Ann.) [%]", "CAGR [%]",
    "Sharpe Ratio", "Sortino Ratio", "Calmar Ratio", "Alpha [%]", "Beta", "Max. Drawdown [%]",
    "Avg. Drawdown [%]", "Max. Drawdown Duration", "Avg. Drawdown Duration", "# Trades", "Win Rate [%]",
    "Best Trade [%]", "Worst Trade [%]", "Avg. Trade [%]", "Max. Trade Duration", "Avg. Trade Duration",
    "Profit Factor", "Expectancy [%]", "SQN", "Kelly Criterion",
)


def backtesting_py_stats(result: BacktestResult, *, opens: np.ndarray | None = None, first_tradable_bar: int = 0,
                         risk_free: float = 0.0, periods_per_year: float | None = None) -> dict[str, Any]:
    """backtesting.py's statistics table (its `_stats.compute_stats`, version 0.6), on this run.

    Its definitions, where they differ from ours:
    - a position still open at the end is closed at the last bar's *open* (its `finalize_trades`
      re-runs the broker on the last bar), ours at the last close: with `opens`, the final
      equity and those trades are moved to the last open (their exit fees are left as booked);
    - exposure counts every bar from a trade's entry bar to its exit bar, both included;
    - buy & hold runs from the first tradable bar (every indicator defined), not the first bar;
    - daily returns are the last equity of each calendar day against the day before (the first
      day has none); A = 365 when over 17 % of the *bars* fall on a weekend, else 252 (52, 12, 1
      for weekly, monthly, yearly data); `periods_per_year` overrides it;
    - Return (Ann.) = (1 + g) ** A - 1 with g the geometric mean daily return; volatility is
      sqrt((var + (1 + g)^2)^A - (1 + g)^(2A)); Sharpe = (Return (Ann.) - rf) / volatility;
      Sortino = (Return (Ann.) - rf) / (sqrt(mean(min(r, 0)^2)) * sqrt(A)); Calmar = Return (Ann.)
      / max drawdown; Alpha and Beta from log returns against the close;
    - trade returns are fractions of the entry notional; Avg. Trade is their geometric mean,
      Profit Factor is on returns, Expectancy the mean return, Kelly from win rate and mean P&L;
    - drawdown durations and trade durations are rounded up to the data's resolution (days).
    NaN where undefined there is None here."""
    index = result.equity.index
    n = len(index)
    out: dict[str, Any] = dict.fromkeys(BACKTESTING_PY_KEYS)
    out["# Trades"] = len(result.trades)
    if n == 0:
        return out
    equity = result.equity.to_numpy(dtype=np.float64).copy()
    trades = result.trades.copy()
    held = float(result.position[-1]) if len(result.position) else 0.0
    if opens is not None and held != 0 and len(trades):
        shift = float(opens[-1]) - float(result.close.iloc[-1])
        equity[-1] += held * shift
        final = (trades["exit_bar"].to_numpy() == n - 1) & (trades["exit_time"] == index[-1]).to_numpy()
        for row in np.flatnonzero(final):
            sign = 1.0 if trades["side"].iloc[row] == "long" else -1.0
            size, entry = float(trades["size"].iloc[row]), float(trades["entry_price"].iloc[row])
            pnl = float(trades["pnl"].iloc[row]) + sign * size * shift
            trades.iloc[row, trades.columns.get_loc("exit_price")] = float(opens[-1])
            trades.iloc[row, trades.columns.get_loc("pnl")] = pnl
            trades.iloc[row, trades.columns.get_loc("return_pct")] = pnl / (entry * size) * 100.0
    close = result.close.to_numpy(dtype=np.float64)
    series = pd.Series(equity, index=index)
    dd = 1.0 - equity / np.maximum.accumulate(equity)
    durations, peaks = _bt_drawdown_periods(dd, index)
    period = _bt_data_period(index)
    resolution = getattr(period, "resolution_string", None) if isinstance(period, pd.Timedelta) else None

    def rounded(value: Any) -> Any:
        if value is None or value is pd.NaT or not isinstance(value, pd.Timedelta):
            return None if value is None or value is pd.NaT else value
        return value.ceil(resolution) if resolution else value

    exposure = np.zeros(n, dtype=np.int64)
    for entry_bar, exit_bar in zip(trades["entry_bar"].astype(int), trades["exit_bar"].astype(int)):
        exposure[entry_bar:exit_bar + 1] = 1
    start, end = index[0], index[-1]
    out.update({"Start": start, "End": end, "Duration": end - start,
                "Exposure Time [%]": float(exposure.mean() * 100.0),
                "Equity Final [$]": float(equity[-1]), "Equity Peak [$]": float(equity.max()),
                "Commissions [$]": float(result.fees_total) if result.fees_total else None,
                "Return [%]": float((equity[-1] - equity[0]) / equity[0] * 100.0)})
    first = min(max(int(first_tradable_bar), 0), n - 1)
    out["Buy & Hold Return [%]"] = _num((close[-1] - close[first]) / close[first] * 100.0)

    freq_days = period.days if isinstance(period, pd.Timedelta) else 1
    weekend_bars = float(np.mean(np.asarray(index.day_of_week) >= 5))
    annual = (52.0 if freq_days == 7 else 12.0 if freq_days == 31 else 1.0 if freq_days == 365
              else 365.0 if weekend_bars > 2 / 7 * 0.6 else 252.0)
    if periods_per_year is not None:
        annual = periods_per_year
    rule = {7: "W", 31: "ME", 365: "YE"}.get(freq_days, "D")
    day_returns = series.resample(rule).last().dropna().pct_change().dropna()
    g = _geometric_mean(day_returns.to_numpy())
    annualised = (1.0 + g) ** annual - 1.0
    variance = float(day_returns.var(ddof=1)) if len(day_returns) > 1 else math.nan
    volatility = math.sqrt((variance + (1.0 + g) ** 2) ** annual - (1.0 + g) ** (2.0 * annual)) * 100.0 \
        if variance == variance else math.nan
    out["Return (Ann.) [%]"] = _num(annualised * 100.0)
    out["Volatility (Ann.) [%]"] = _num(volatility)
    duration = end - start
    years = (duration.days + duration.seconds / 86400) / 365.25
    out["CAGR [%]"] = _num(((equity[-1] / equity[0]) ** (1.0 / years) - 1.0) * 100.0) if years else None
    out["Sharpe Ratio"] = _num((annualised * 100.0 - risk_free * 100.0) / volatility) if volatility else None
    downside = math.sqrt(float(np.mean(np.minimum(day_returns.to_numpy(), 0.0) ** 2))) if len(day_returns) else 0.0
    out["Sortino Ratio"] = _num((annualised - risk_free) / (downside * math.sqrt(annual))) if downside else None
    max_dd = float(np.nan_to_num(dd.max()))
    out["Calmar Ratio"] = _num(annualised / max_dd) if max_dd else None
    with np.errstate(divide="ignore", invalid="ignore"):
        equity_log = np.log(equity[1:] / equity[:-1])
        market_log = np.log(close[1:] / close[:-1])
    beta = math.nan
    if len(equity_log) > 1:
        cov = np.cov(equity_log, market_log)
        beta = cov[0, 1] / cov[1, 1]
    buy_hold = out["Buy & Hold Return [%]"]
    out["Alpha [%]"] = _num(out["Return [%]"] - risk_free * 100.0 - beta * ((buy_hold or math.nan) - risk_free * 100.0))
    out["Beta"] = _num(beta)
    out["Max. Drawdown [%]"] = -max_dd * 100.0
    if len(peaks):
        out["Avg. Drawdown [%]"] = float(-np.mean(peaks) * 100.0)
        out["Max. Drawdown Duration"] = rounded(durations.max())
        out["Avg. Drawdown Duration"] = rounded(durations.mean())
    n_trades = len(trades)
    if n_trades:
        pl = trades["pnl"].to_numpy(dtype=np.float64)
        returns = trades["return_pct"].to_numpy(dtype=np.float64) / 100.0
        held_for = pd.Series(pd.to_datetime(trades["exit_time"]).array - pd.to_datetime(trades["entry_time"]).array)
        win_rate = float(np.mean(pl > 0))
        gains, losses = returns[returns > 0].sum(), abs(returns[returns < 0].sum())
        avg_win, avg_loss = ((pl[pl > 0].mean() if (pl > 0).any() else math.nan),
                             (-pl[pl < 0].mean() if (pl < 0).any() else math.nan))
        std = float(np.std(pl, ddof=1)) if n_trades > 1 else math.nan
        out.update({
            "Win Rate [%]": win_rate * 100.0, "Best Trade [%]": float(returns.max() * 100.0),
            "Worst Trade [%]": float(returns.min() * 100.0), "Avg. Trade [%]": _num(_geometric_mean(returns) * 100.0),
            "Max. Trade Duration": rounded(held_for.max()), "Avg. Trade Duration": rounded(held_for.mean()),
            "Profit Factor": _num(gains / losses) if losses else None,
            "Expectancy [%]": float(returns.mean() * 100.0),
            "SQN": _num(math.sqrt(n_trades) * pl.mean() / std) if std else None,
            "Kelly Criterion": _num(win_rate - (1.0 - win_rate) / (avg_win / avg_loss)),
        })
    return out


def _geometric_mean(returns: np.ndarray) -> float:
    """backtesting.py's: exp(mean(log(1 + r))) - 1, NaN counted as 0, and 0 if any 1 + r <= 0."""
    growth = np.nan_to_num(np.asarray(returns, dtype=np.float64), nan=0.0) + 1.0
    if len(growth) == 0:
        return math.nan
    if np.any(growth <= 0):
        return 0.0
    return float(np.exp(np.log(growth).sum() / len(growth)) - 1.0)


def _bt_data_period(index: pd.Index) -> Any:
    """backtesting.py's `_data_period`: the median spacing of the last 100 bars."""
    return pd.Series(index[-100:]).diff().dropna().median()


def _bt_drawdown_periods(dd: np.ndarray, index: pd.Index) -> tuple[pd.Series, np.ndarray]:
    """backtesting.py's `compute_drawdown_duration_peaks`: periods run between bars at their peak
    (dd == 0, and the last bar); one counts when at least one bar lies strictly between; its
    duration is the time between the two ends and its depth the largest dd over both ends."""
    ends = np.unique(np.r_[np.flatnonzero(dd == 0), len(dd) - 1])
    prev, stop = ends[:-1], ends[1:]
    keep = stop > prev + 1
    prev, stop = prev[keep], stop[keep]
    durations = pd.Series(index[stop] - index[prev])
    peaks = np.array([dd[a:b + 1].max() for a, b in zip(prev, stop)], dtype=np.float64)
    return durations, peaks


def first_tradable_bar(strategy: Any) -> int:
    """backtesting.py's `_indicator_warmup_nbars`: the first bar at which every indicator the
    strategy declared with `I()` is defined (0 without indicators); its buy & hold starts there."""
    first = 0
    for values in getattr(strategy, "_indicators", []):
        for row in np.atleast_2d(np.asarray(values, dtype=np.float64)):
            first = max(first, int(np.isnan(row).argmin()) if len(row) else 0)
    return first
