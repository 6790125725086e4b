"""`tickbridge backtest --plot out.html`: one self-contained interactive report that works offline
(every script and style inline, nothing fetched), holding the run's trades; a long run is
decimated without losing a trade; the PNG path still draws a picture."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd

from backtest.report_html import VENDOR_JS, render_report, report_model
from backtest.result import TRADE_COLUMNS, BacktestResult
from tests.integration.test_cli import SPY, tickbridge

EXTERNAL = re.compile(r"""<[a-z]+\b[^>]*\s(?:src|href|action|srcset|data)\s*=\s*["']?\s*(?:https?:)?//""", re.I)
REFERENCE = re.compile(r"""<(?:script|link|img|iframe|object|embed)\b[^>]*\s(?:src|href)\s*=""", re.I)


def _model(html: str) -> dict:
    found = re.search(r"<script type='application/json' id='report-data'>(.*?)</script>", html, re.S)
    assert found is not None
    return json.loads(found.group(1))


def test_the_html_report_is_self_contained_and_holds_every_trade(tmp_path):
    report, trades_csv = tmp_path / "r.html", tmp_path / "t.csv"
    done = tickbridge("backtest", "--strategy", "sma_cross", "--data", SPY, "--param", "fast=10", "--param", "slow=30",
                      "--trades", trades_csv, "--plot", report)
    assert done.returncode == 0, done.stderr
    html = report.read_text()
    assert not EXTERNAL.search(html), EXTERNAL.search(html)
    assert not REFERENCE.search(html), "the report refers to a file instead of inlining it"
    assert "TradingView Lightweight Charts" in html and VENDOR_JS.read_text()[:200] in html
    model = _model(html)
    trades = pd.read_csv(trades_csv)
    assert len(trades) > 10 and len(model["trades"]) == len(trades)
    for drawn, (_, row) in zip(model["trades"], trades.iterrows()):
        assert drawn["side"] == row["side"]
        assert drawn["entry_price"] == row["entry_price"] and drawn["exit_price"] == row["exit_price"]
        assert drawn["entry_time"] == int(pd.Timestamp(row["entry_time"]).timestamp())
    times = model["series"]["time"]
    assert times == sorted(set(times))  # the charts need strictly increasing times
    assert {t["entry_time"] for t in model["trades"]} <= set(times)  # every trade on the price line
    assert {"start", "return_pct", "sharpe"} <= {name for name, _ in model["stats"]}


def test_the_png_path_still_draws_a_picture(tmp_path):
    picture = tmp_path / "p.png"
    done = tickbridge("backtest", "--strategy", "sma_cross", "--data", SPY, "--param", "fast=10", "--param", "slow=30",
                      "--plot", picture)
    assert done.returncode == 0, done.stderr
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _long_result(bars: int, trade_bars: list[tuple[int, int]]) -> BacktestResult:
    index = pd.date_range("2024-01-01", periods=bars, freq="1min", tz="UTC")
    close = pd.Series(100 + np.cumsum(np.random.default_rng(7).normal(0, 0.1, bars)), index=index)
    rows = [{"entry_time": index[a], "exit_time": index[b], "entry_bar": a, "exit_bar": b, "side": "long",
             "size": 1.0, "entry_price": close.iloc[a], "exit_price": close.iloc[b], "fees": 0.0,
             "pnl": close.iloc[b] - close.iloc[a], "return_pct": 0.0} for a, b in trade_bars]
    return BacktestResult(equity=close * 100, position=np.zeros(bars), trades=pd.DataFrame(rows, columns=TRADE_COLUMNS),
                          close=close, initial_cash=10_000.0, meta={"strategy": "s", "symbol": "X"})


def test_a_long_run_is_decimated_but_keeps_every_trade_bar(tmp_path):
    trade_bars = [(1_001 + 997 * k, 1_500 + 997 * k) for k in range(150)]
    result = _long_result(200_000, trade_bars)
    model = report_model(result)
    times = model["series"]["time"]
    assert len(times) < 20_000  # three envelopes of 2,000 buckets and the trade bars, not 200,000 points
    index_seconds = (result.equity.index.asi8 // 10**9 if result.equity.index.unit == "ns"
                     else result.equity.index.as_unit("s").asi8)
    kept = set(times)
    assert all(int(index_seconds[a]) in kept and int(index_seconds[b]) in kept for a, b in trade_bars)
    assert int(index_seconds[int(np.argmax(result.close.to_numpy()))]) in kept  # the extremes survive
    assert int(index_seconds[int(np.argmin(result.close.to_numpy()))]) in kept
    html = render_report(model)
    assert len(html) < 2_000_000


def test_a_title_cannot_close_the_data_script_early():
    result = _long_result(50, [(5, 9)])
    result.meta["strategy"] = "</script><script>alert(1)</script>"
    html = render_report(report_model(result))
    assert "<script>alert(1)" not in html
    assert _model(html)["title"].startswith("</script><script>alert(1)")
