"""The interactive backtest report: one self-contained HTML file (zoom, hover, the trade list,
price with the trades, equity and drawdown) that works offline.

The page is backtest/report_assets/report.js drawing a JSON model with the vendored Lightweight
Charts (report_assets/vendor/README.md: version, licence, origin); both scripts and the stylesheet
are inlined, so the file opens from a disk, a mail or a server without internet. The dashboard
serves the same report.js and draws the same model (api/dashboard), so the CLI's report and the
dashboard's backtest page are one component.

Long runs are decimated before they are written: each series keeps its per-bucket min and max
(envelope_indices), and every bar a trade entered or left is kept, so a million bars make a file
of a few hundred kB that looks like the full series and has every trade on it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from backtest.result import BacktestResult

ASSETS = Path(__file__).parent / "report_assets"
VENDOR_JS = ASSETS / "vendor" / "lightweight-charts.standalone.production.js"
REPORT_JS = ASSETS / "report.js"
REPORT_CSS = ASSETS / "report.css"
MAX_POINTS = 4000


def envelope_indices(values: np.ndarray, buckets: int = MAX_POINTS // 2) -> np.ndarray:
    """Positions that keep each bucket's min and max, in order: a faithful outline of a long series."""
    n = len(values)
    if n <= 2 * buckets:
        return np.arange(n)
    edges = np.linspace(0, n, buckets + 1).astype(int)
    keep: list[int] = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        chunk = values[lo:hi]
        a, b = lo + int(np.nanargmin(chunk)), lo + int(np.nanargmax(chunk))
        keep.extend(sorted((a, b)))
    return np.asarray(keep)


def _seconds(index: pd.DatetimeIndex) -> np.ndarray:
    """Unix seconds (the charts' time unit), whatever the index's resolution."""
    if index.tz is None:
        index = index.tz_localize("UTC")
    return np.asarray((index - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1), dtype=np.int64)


def _number(value: Any) -> float | None:
    """A JSON-safe float: NaN and infinities (an empty drawdown, a zero division) become null."""
    number = float(value)
    return number if math.isfinite(number) else None


def _text(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return "n/a" if not math.isfinite(float(value)) else f"{float(value):,.6g}"
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return str(value)


def report_model(result: BacktestResult, stats: dict[str, Any] | None = None) -> dict[str, Any]:
    """What report.js draws: the title, the stats as rows, the decimated series on one time
    axis (unix seconds, strictly increasing: bars sharing a second keep the last), the trades."""
    equity = result.equity.to_numpy(dtype=np.float64)
    close = result.close.to_numpy(dtype=np.float64)
    peak = np.maximum.accumulate(np.where(np.isnan(equity), -np.inf, equity))
    with np.errstate(divide="ignore", invalid="ignore"):
        drawdown = (equity / peak - 1.0) * 100.0
    times = _seconds(pd.DatetimeIndex(result.equity.index))
    last_of_second = np.append(times[1:] != times[:-1], True) if len(times) else np.zeros(0, dtype=bool)
    trades = result.trades
    trade_bars = np.concatenate([trades["entry_bar"].to_numpy(dtype=np.int64),
                                 trades["exit_bar"].to_numpy(dtype=np.int64)]) if len(trades) else np.zeros(0, int)
    keep = np.unique(np.concatenate([envelope_indices(equity), envelope_indices(close), envelope_indices(drawdown),
                                     np.clip(trade_bars, 0, max(len(times) - 1, 0))]).astype(np.int64))
    keep = keep[last_of_second[keep]] if len(keep) else keep
    trade_rows = []
    for row in trades.itertuples(index=False):
        entry = int(_seconds(pd.DatetimeIndex([row.entry_time]))[0])
        exit_ = int(_seconds(pd.DatetimeIndex([row.exit_time]))[0])
        trade_rows.append({"side": row.side, "entry_time": entry, "exit_time": exit_,
                           "entry_price": _number(row.entry_price), "exit_price": _number(row.exit_price),
                           "size": _number(row.size), "fees": _number(row.fees), "pnl": _number(row.pnl),
                           "return_pct": _number(row.return_pct)})
    meta = result.meta
    title = f"{meta.get('strategy', 'backtest')} on {meta.get('symbol', '')}".strip()
    return {
        "title": title,
        "note": result.sizing_note,
        "stats": [[str(k), _text(v)] for k, v in (stats or {}).items() if not isinstance(v, (dict, list))],
        "series": {"time": times[keep].tolist(),
                   "price": [_number(v) for v in close[keep]],
                   "equity": [_number(v) for v in equity[keep]],
                   "drawdown": [_number(v) for v in drawdown[keep]]},
        "trades": trade_rows,
    }


def _inline_script(source: str) -> str:
    """A script's text made safe inside <script>: it cannot close the element early."""
    return source.replace("</script", "<\\/script").replace("<!--", "<\\!--")


def render_report(model: dict[str, Any]) -> str:
    """The self-contained page: styles, the vendored charts, report.js and the model, all inline."""
    # no "<" at all in the data: nothing in it can end or re-open the script element it sits in
    data = json.dumps(model, allow_nan=False, separators=(",", ":")).replace("<", "\\u003c")
    title = (model["title"].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")) + " - backtest report"
    boot = ("TickbridgeReport.render(document.getElementById('report'), "
            "JSON.parse(document.getElementById('report-data').textContent));")
    return ("<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{title}</title><style>{REPORT_CSS.read_text()}</style></head><body>"
            "<main id='report'></main>"
            f"<script type='application/json' id='report-data'>{data}</script>"
            f"<script>{_inline_script(VENDOR_JS.read_text())}</script>"
            f"<script>{_inline_script(REPORT_JS.read_text())}</script>"
            f"<script>{boot}</script></body></html>\n")


def write_report(path: str | Path, result: BacktestResult, stats: dict[str, Any] | None = None) -> None:
    """Write the interactive report of `result` (and its stats table) to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(report_model(result, stats)), encoding="utf-8")
