"""What a backtest shows a person (a rich table) and a program (JSON, CSV)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table

from backtest.result import BacktestResult

LABELS = {
    "start": "Start", "end": "End", "duration": "Duration", "exposure_pct": "Exposure [%]",
    "equity_final": "Equity final", "equity_peak": "Equity peak", "return_pct": "Return [%]",
    "buy_hold_return_pct": "Buy & hold return [%]", "cagr_pct": "CAGR [%]",
    "volatility_ann_pct": "Volatility (ann.) [%]", "sharpe": "Sharpe", "sortino": "Sortino",
    "calmar": "Calmar", "max_drawdown_pct": "Max drawdown [%]", "avg_drawdown_pct": "Avg drawdown [%]",
    "max_drawdown_duration": "Max drawdown duration", "avg_drawdown_duration": "Avg drawdown duration",
    "trades": "Trades", "win_rate_pct": "Win rate [%]", "best_trade_pct": "Best trade [%]",
    "worst_trade_pct": "Worst trade [%]", "avg_trade_pct": "Avg trade [%]",
    "max_trade_duration": "Max trade duration", "avg_trade_duration": "Avg trade duration",
    "profit_factor": "Profit factor", "expectancy": "Expectancy", "sqn": "SQN", "fees": "Fees",
    "periods_per_year": "Periods per year (annualisation)",
}


def _text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, pd.Timestamp):
        return str(value)
    if isinstance(value, pd.Timedelta):
        return str(value.floor("s"))
    if isinstance(value, (int, np.integer)):
        return f"{value:,}"
    if isinstance(value, float):
        return (f"{value:,.2f}" if abs(value) >= 100
                else f"{value:.4g}" if abs(value) < 0.01 and value else f"{value:.2f}")
    return str(value)


def run_stats(result: BacktestResult, frame: pd.DataFrame, strategy_cls: Any, params: dict[str, Any],
              conventions: str = "tickbridge", risk_free: float = 0.0,
              periods_per_year: float | None = None) -> dict[str, Any]:
    """The statistics a command shows for a run of `strategy_cls(params)` over `frame`. With
    backtesting.py's conventions, its buy & hold starts at the first bar where every indicator
    is defined, so the strategy's indicators are computed once more to find that bar."""
    from backtest.metrics import compute_stats, first_tradable_bar

    first = 0
    if conventions == "backtesting.py":
        from strategies.base import BarData, parse_params

        strategy = strategy_cls(parse_params(strategy_cls.Params, params))
        strategy.attach(BarData(frame), result.meta.get("symbol") or "")
        strategy.init()
        first = first_tradable_bar(strategy)
    opens = frame["open"].to_numpy(dtype=np.float64) if "open" in frame.columns else None
    return compute_stats(result, periods_per_year=periods_per_year, risk_free=risk_free, conventions=conventions,
                         opens=opens, first_tradable_bar=first)


def backtest_title(result: BacktestResult, title: str) -> str:
    """The table's title; a run with warnings (an ml_signal run over its model's training bars is
    in-sample, and its Sharpe flatters) says so in the title itself, not only after the table."""
    warnings = result.meta.get("warnings", [])
    if any("in-sample" in w for w in warnings):
        return f"[bold yellow]IN-SAMPLE (the model saw these bars; see the warning above)[/bold yellow]: {title}"
    if warnings:
        return f"[bold yellow]{len(warnings)} warning(s) above[/bold yellow]: {title}"
    return title


def stats_table(stats: dict[str, Any], title: str, result: BacktestResult | None = None) -> Table:
    """The statistics; with the run's `result`, also the orders that could not be sized, the
    reason and the fix under the table (a table of zeros alone says nothing)."""
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("Metric")
    table.add_column("Value", justify="right")
    for key, value in stats.items():
        table.add_row(LABELS.get(key, key), _text(value))
    if result is not None and result.sizing_note is not None:
        table.add_row("[yellow]Orders not sized[/yellow]", f"[yellow]{result.unsized_orders:,}[/yellow]")
        table.caption = f"[yellow]{result.sizing_note}[/yellow]"
        table.caption_justify = "left"
    return table


def _json_value(value: Any) -> Any:
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, pd.Timedelta):
        return str(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame -> JSON-safe records, converting whole columns at once (fast on big tables)."""
    columns: dict[str, list[Any]] = {}
    for name in frame.columns:
        series = frame[name]
        if pd.api.types.is_datetime64_any_dtype(series):
            iso = series.dt.strftime("%Y-%m-%dT%H:%M:%S.%f%z")
            columns[name] = [None if pd.isna(v) else v for v in iso.tolist()]
        elif pd.api.types.is_float_dtype(series):
            values = series.to_numpy(dtype=np.float64)
            columns[name] = [None if not math.isfinite(v) else v for v in values.tolist()]
        else:
            columns[name] = [_json_value(v) for v in series.tolist()]
    names = list(columns)
    return [dict(zip(names, row)) for row in zip(*columns.values())]


def to_json_dict(result: BacktestResult, stats: dict[str, Any]) -> dict[str, Any]:
    equity = result.equity
    times = equity.index.strftime("%Y-%m-%dT%H:%M:%S%z").tolist()
    orders = result.orders if isinstance(result.orders, pd.DataFrame) else pd.DataFrame(result.orders)
    return {
        "stats": {k: _json_value(v) for k, v in stats.items()},
        "equity": [{"time": t, "equity": v} for t, v in zip(times, equity.to_numpy(dtype=np.float64).tolist())],
        "trades": _records(result.trades),
        "orders": _records(orders),
        "denied": result.denied,
        "signals": result.signals,
        "unsized_orders": result.unsized_orders,
        "note": result.sizing_note,
        "meta": result.meta,
    }


def write_json(path: str | Path, result: BacktestResult, stats: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_json_dict(result, stats), allow_nan=False, default=str))


def write_trades_csv(path: str | Path, result: BacktestResult) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    result.trades.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S%z")
