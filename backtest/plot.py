"""One picture of a backtest: equity, drawdown, and price with the trades on it.

PNG for files and chats (matplotlib). A .html name writes the interactive report instead
(backtest/report_html.py: zoom, hover, the trade list; self-contained, offline), which needs no
matplotlib. Long series are reduced to per-pixel min/max envelopes before drawing, so a million
bars plot in about the time a thousand do and look the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from backtest.report_html import MAX_POINTS, envelope_indices, write_report  # noqa: E402
from backtest.result import BacktestResult  # noqa: E402
from engine.errors import ConfigError  # noqa: E402

__all__ = ["MAX_POINTS", "envelope", "plot_result"]


def envelope(series: pd.Series, buckets: int = MAX_POINTS // 2) -> pd.Series:
    """Keep each bucket's min and max, in time order: a faithful outline of a long series."""
    return series.iloc[envelope_indices(series.to_numpy(dtype=np.float64), buckets)]


def _figure(result: BacktestResult) -> plt.Figure:
    equity = result.equity
    peak = equity.cummax()
    drawdown = (equity / peak - 1.0) * 100.0
    fig, (ax_eq, ax_dd, ax_px) = plt.subplots(3, 1, sharex=True, figsize=(12, 8),
                                               gridspec_kw={"height_ratios": [2, 1, 2]})
    eq = envelope(equity)
    ax_eq.plot(eq.index, eq.to_numpy(), color="tab:blue", lw=1)
    ax_eq.set_ylabel("equity")
    ax_eq.set_title(f"{result.meta.get('strategy', 'backtest')} on {result.meta.get('symbol', '')}")
    dd = envelope(drawdown)
    ax_dd.fill_between(dd.index, dd.to_numpy(), 0, color="tab:red", alpha=0.4, lw=0)
    ax_dd.set_ylabel("drawdown %")
    px = envelope(result.close)
    ax_px.plot(px.index, px.to_numpy(), color="black", lw=0.8)
    trades = result.trades
    if len(trades):
        longs = trades[trades["side"] == "long"]
        shorts = trades[trades["side"] == "short"]
        for side, marker, color in ((longs, "^", "tab:green"), (shorts, "v", "tab:red")):
            if len(side):
                ax_px.scatter(side["entry_time"], side["entry_price"], marker=marker, color=color, s=18,
                              label=f"{side['side'].iloc[0]} entry")
        ax_px.scatter(trades["exit_time"], trades["exit_price"], marker="x", color="tab:gray", s=14, label="exit")
        ax_px.legend(loc="upper left", fontsize=8)
    ax_px.set_ylabel("price")
    fig.tight_layout()
    return fig


def plot_result(path: str | Path, result: BacktestResult, stats: dict[str, Any] | None = None) -> None:
    """A .png picture, or for .html the interactive report (with `stats` as its table)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".png", ".html"):
        raise ConfigError("plot", f"{path}: use a .png or .html file name")
    if suffix == ".html":
        write_report(path, result, stats)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = _figure(result)
    try:
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
