"""What a backtest shows a person (a rich table) and a program (JSON, CSV)."""

from __future__ import annotations

import base64
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
            columns[name] = _iso(pd.DatetimeIndex(series), "%Y-%m-%dT%H:%M:%S.%f%z")
        elif pd.api.types.is_float_dtype(series):
            values = series.to_numpy(dtype=np.float64)
            columns[name] = [None if not math.isfinite(v) else v for v in values.tolist()]
        else:
            columns[name] = [_json_value(v) for v in series.tolist()]
    names = list(columns)
    return [dict(zip(names, row)) for row in zip(*columns.values())]


JSON_FORMAT = "tickbridge.backtest"
JSON_VERSION_FULL = 1      # every table as a list of records (the shape before version 2)
JSON_VERSION_COMPACT = 2   # every table stored by column (COMPACT_LAYOUT)
COMPACT_LAYOUT = (
    'equity, trades, orders and signals are tables stored by column: {"rows": n, "columns": {name: column}}, '
    'columns in their order. A column is {"dtype": d, "values": [...]} (a JSON list; null where undefined), '
    'or {"dtype": d, "base64": s} (the array\'s bytes, little-endian: float64, int64 or bool; NaN kept as NaN); '
    'times are {"dtype": "datetime64[ns, UTC]", "start": t0, "steps": [[step, count], ...]} (t0, then each '
    'step repeated count times, in nanoseconds) or base64 int64 nanoseconds since 1970-01-01 UTC (the int64 '
    'minimum: no time); text with few distinct values is {"dtype": "object", "categories": [...], "codes": '
    '"uint8", "base64": s} (one byte per row: the index of its value in categories, one past the end for none). '
    'backtest.report.read_json decodes either shape; --json-full writes version 1, each table a list of records.'
)
_PACK_MIN_ROWS = 64  # tables shorter than this keep plain lists: readable, and the size does not matter


def _iso(index: pd.DatetimeIndex, pattern: str) -> list[str | None]:
    """`index.strftime(pattern)` (None for NaT) for the two patterns the JSON uses. For UTC times
    numpy formats them in C: pandas' strftime took 29 s for a million bars."""
    if index.tz is None or str(index.tz) not in ("UTC", "utc") or not pattern.endswith("%S%z") \
            and not pattern.endswith("%S.%f%z"):
        return [None if v is None or v is pd.NaT or (isinstance(v, float) and math.isnan(v)) else v
                for v in index.strftime(pattern).tolist()]
    unit = "us" if pattern.endswith(".%f%z") else "s"
    naive = index.tz_localize(None).as_unit("us").to_numpy()
    if unit == "s":  # strftime truncates below the second; datetime_as_string must not round
        naive = naive.astype("M8[s]")
    text = np.char.add(np.datetime_as_string(naive, unit=unit), "+0000")
    if index.hasnans:
        return [None if missing else t for t, missing in zip(text.tolist(), index.isna().tolist())]
    return text.tolist()


def to_json_dict(result: BacktestResult, stats: dict[str, Any], *, full: bool = True) -> dict[str, Any]:
    """The run as a JSON-safe dict. `full` (version 1, the API's stored result and the dashboard's
    input): every table as a list of records, times as ISO text. Otherwise version 2, the same
    content stored by column (COMPACT_LAYOUT): on 1,000,000 bars the records took 98 MB and half a
    minute to format, the columns take a tenth of that in well under a second."""
    orders = result.orders if isinstance(result.orders, pd.DataFrame) else pd.DataFrame(result.orders)
    head = {"stats": {k: _json_value(v) for k, v in stats.items()}}
    tail = {"unsized_orders": result.unsized_orders, "note": result.sizing_note, "meta": result.meta}
    if full:
        equity = result.equity
        times = _iso(pd.DatetimeIndex(equity.index), "%Y-%m-%dT%H:%M:%S%z")
        return {
            "format": {"name": JSON_FORMAT, "version": JSON_VERSION_FULL, "shape": "full"},
            **head,
            "equity": [{"time": t, "equity": v}
                       for t, v in zip(times, equity.to_numpy(dtype=np.float64).tolist())],
            "trades": _records(result.trades),
            "orders": _records(orders),
            "denied": result.denied,
            "signals": result.signals,
            **tail,
        }
    equity = pd.DataFrame({"time": result.equity.index, "equity": result.equity.to_numpy(dtype=np.float64)})
    return {
        "format": {"name": JSON_FORMAT, "version": JSON_VERSION_COMPACT, "shape": "compact",
                   "layout": COMPACT_LAYOUT},
        **head,
        "equity": _table(equity),
        "trades": _table(result.trades),
        "orders": _table(orders),
        "denied": result.denied,
        "signals": _table(pd.DataFrame.from_records(result.signals) if result.signals else pd.DataFrame()),
        **tail,
    }


def _packed(values: np.ndarray, dtype: str) -> dict[str, Any]:
    little = values.astype(values.dtype.newbyteorder("<"), copy=False)
    return {"dtype": dtype, "base64": base64.b64encode(np.ascontiguousarray(little).tobytes()).decode("ascii")}


def _time_column(series: pd.Series | pd.Index, rows: int) -> dict[str, Any]:
    ns = pd.DatetimeIndex(series).as_unit("ns")
    if ns.tz is None:
        ns = ns.tz_localize("UTC")
    stamps = ns.asi8
    if rows and not ns.hasnans:
        steps = np.diff(stamps)
        change = np.flatnonzero(np.r_[True, steps[1:] != steps[:-1]]) if len(steps) else np.array([], dtype=np.int64)
        if len(change) * 8 <= rows:  # regular bars: a few runs instead of a number per bar
            counts = np.diff(np.r_[change, len(steps)])
            return {"dtype": "datetime64[ns, UTC]", "start": int(stamps[0]),
                    "steps": [[int(s), int(c)] for s, c in zip(steps[change].tolist(), counts.tolist())]}
    if rows < _PACK_MIN_ROWS:
        return {"dtype": "datetime64[ns, UTC]", "values": [None if v == _NAT else int(v) for v in stamps.tolist()]}
    return _packed(stamps, "datetime64[ns, UTC]")


_NAT = int(np.iinfo(np.int64).min)


def _column(series: pd.Series, rows: int) -> dict[str, Any]:
    if pd.api.types.is_datetime64_any_dtype(series):
        return _time_column(series, rows)
    kind = series.dtype.kind
    if kind in "fiub" and not isinstance(series.dtype, pd.api.extensions.ExtensionDtype):
        name = {"f": "float64", "i": "int64", "u": "int64", "b": "bool"}[kind]
        values = series.to_numpy(dtype={"float64": np.float64, "int64": np.int64, "bool": np.bool_}[name])
        if rows >= _PACK_MIN_ROWS:
            return _packed(values, name)
        if name == "float64":
            return {"dtype": name, "values": [v if math.isfinite(v) else None for v in values.tolist()]}
        return {"dtype": name, "values": values.tolist()}
    if rows >= _PACK_MIN_ROWS:  # a few distinct labels ("BUY", "FILLED"...): each once, then a code per row
        try:
            codes, labels = pd.factorize(series, use_na_sentinel=True)  # NA (None, NaN) -> -1
        except TypeError:  # an unhashable value (a list, a dict): kept as it is
            labels = None
        if labels is not None and len(labels) < 255:
            codes = np.where(codes < 0, len(labels), codes).astype(np.uint8)  # NA: one past the labels
            return {"dtype": "object", "categories": [_json_value(v) for v in labels], "codes": "uint8",
                    "base64": _packed(codes, "uint8")["base64"]}
    values = series.to_numpy(dtype=object, na_value=None).tolist()
    return {"dtype": "object", "values": [v if type(v) is str else _json_value(v) for v in values]}


def _table(frame: pd.DataFrame) -> dict[str, Any]:
    rows = len(frame)
    return {"rows": rows, "columns": {str(name): _column(frame[name], rows) for name in frame.columns}}


def _decode_column(column: dict[str, Any], rows: int) -> np.ndarray | pd.DatetimeIndex | list[Any]:
    dtype = column["dtype"]
    if dtype.startswith("datetime64"):
        if "steps" in column:
            steps = [s for s, _ in column["steps"]]
            counts = [c for _, c in column["steps"]]
            offsets = np.r_[np.int64(0), np.cumsum(np.repeat(np.asarray(steps, dtype=np.int64), counts))]
            stamps = np.int64(column["start"]) + offsets
        elif "base64" in column:
            stamps = np.frombuffer(base64.b64decode(column["base64"]), dtype="<i8").astype(np.int64)
        else:
            stamps = np.asarray([_NAT if v is None else v for v in column["values"]], dtype=np.int64)
        return pd.DatetimeIndex(stamps.view("M8[ns]")).tz_localize("UTC")
    if "categories" in column:  # codes into the labels
        codes = np.frombuffer(base64.b64decode(column["base64"]), dtype=np.uint8)
        return list(np.asarray(column["categories"] + [None], dtype=object)[codes])
    if "base64" in column:
        numpy_dtype = {"float64": "<f8", "int64": "<i8", "bool": "?"}[dtype]
        return np.frombuffer(base64.b64decode(column["base64"]), dtype=numpy_dtype).astype(
            {"float64": np.float64, "int64": np.int64, "bool": np.bool_}[dtype])
    if dtype == "float64":
        return np.asarray([math.nan if v is None else v for v in column["values"]], dtype=np.float64)
    if dtype in ("int64", "bool"):
        return np.asarray(column["values"], dtype=np.int64 if dtype == "int64" else np.bool_)
    return column["values"]


def decode_table(table: dict[str, Any] | list[dict[str, Any]]) -> pd.DataFrame:
    """A table of either shape (version 2 columns, or version 1 records) as a DataFrame."""
    if isinstance(table, list):
        return pd.DataFrame.from_records(table)
    rows = int(table["rows"])
    return pd.DataFrame({name: _decode_column(column, rows) for name, column in table["columns"].items()},
                        index=pd.RangeIndex(rows))


def tables_of(document: dict[str, Any]) -> dict[str, Any]:
    """A backtest JSON document (either version) with its tables decoded: "equity" a float Series
    indexed by time, "trades" and "orders" DataFrames, "signals" a list of dicts; other keys as
    they are. Version 1 times stay ISO text, as written."""
    out = dict(document)
    equity = decode_table(document.get("equity", []))
    if "equity" in equity.columns:
        index = pd.Index(equity["time"]) if "time" in equity.columns else None
        out["equity"] = pd.Series(equity["equity"].to_numpy(dtype=np.float64), index=index, name="equity")
    else:
        out["equity"] = pd.Series(dtype=np.float64, name="equity")
    out["trades"] = decode_table(document.get("trades", []))
    out["orders"] = decode_table(document.get("orders", []))
    signals = document.get("signals", [])
    out["signals"] = signals if isinstance(signals, list) else [
        {k: _python(v) for k, v in row.items()} for row in decode_table(signals).to_dict("records")]
    return out


def _python(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    return value


def read_json(path: str | Path) -> dict[str, Any]:
    """`tickbridge backtest --json` output (compact or --json-full) with its tables decoded."""
    return tables_of(json.loads(Path(path).read_text()))


def write_json(path: str | Path, result: BacktestResult, stats: dict[str, Any], *, full: bool = False) -> None:
    """The run as JSON: compact (version 2, by column) unless `full` (version 1, records)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = to_json_dict(result, stats, full=full)
    # dumps, not dump: json.dump streams through the pure-Python encoder, several times slower
    path.write_text(json.dumps(document, allow_nan=False, default=str,
                               separators=None if full else (",", ":")), encoding="utf-8")


def write_trades_csv(path: str | Path, result: BacktestResult) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    result.trades.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S%z")
