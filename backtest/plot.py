"""One picture of a backtest: equity, drawdown, and price with the trades on it.

PNG for files and chats, or a self-contained HTML page (the figure embedded as SVG, no CDN).
Long series are reduced to per-pixel min/max envelopes before drawing, so a million bars plot
in about the time a thousand do and look the same.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from backtest.result import BacktestResult  # noqa: E402
from engine.errors import ConfigError  # noqa: E402

MAX_POINTS = 4000


def envelope(series: pd.Series, buckets: int = MAX_POINTS // 2) -> pd.Series:
    """Keep each bucket's min and max, in time order: a faithful outline of a long series."""
    n = len(series)
    if n <= 2 * buckets:
        return series
    edges = np.linspace(0, n, buckets + 1).astype(int)
    keep: list[int] = []
    values = series.to_numpy()
    for lo, hi in zip(edges[:-1], edges[1:]):
        chunk = values[lo:hi]
        a, b = lo + int(np.argmin(chunk)), lo + int(np.argmax(chunk))
        keep.extend(sorted((a, b)))
    return series.iloc[keep]


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


def plot_result(path: str | Path, result: BacktestResult) -> None:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".png", ".html"):
        raise ConfigError("plot", f"{path}: use a .png or .html file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = _figure(result)
    try:
        if suffix == ".png":
            fig.savefig(path, dpi=110)
        else:
            buffer = io.StringIO()
            fig.savefig(buffer, format="svg")
            svg = buffer.getvalue()
            svg = svg[svg.index("<svg"):]
            title = f"{result.meta.get('strategy', 'backtest')} backtest"
            path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
                            f"<body style='margin:0'>{svg}</body></html>")
    finally:
        plt.close(fig)
