"""Sweep inputs: grid parsing, objectives, the Ray address, and bad input refused before Ray starts."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app import research_cli
from backtest import ray_pool
from backtest.config import make_config
from backtest.data import load_bars
from backtest.evaluate import PeriodLayout, cached_strategy, score, validate_objective
from backtest.metrics import period_returns
from backtest.ray_pool import check_ray_address
from backtest.runner import run_backtest
from backtest.sweep import expand_grid, parse_grid
from engine.errors import ConfigError
from strategies import get_strategy

ROOT = Path(__file__).resolve().parents[2]
SPY = ROOT / "data" / "stocks" / "SPY_daily.csv"
SMA = get_strategy("sma_cross")


def test_a_range_includes_its_stop_and_lists_and_decimals_parse():
    grid = parse_grid(["fast=5:50:5", "size=0.2:1:0.2", "mode=long_only,long_short", "slow=200"])
    assert grid["fast"] == [5, 10, 15, 20, 25, 30, 35, 40, 45, 50]
    assert grid["size"] == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert grid["mode"] == ["long_only", "long_short"]
    assert grid["slow"] == [200]


@pytest.mark.parametrize("spec, message", [
    ("fast=50:5:5", "inverted range"),
    ("fast=", "expected name="),
    ("fast", "expected name="),
    ("fast=5:50:0", "step must be positive"),
    ("fast=5:50", "start:stop:step"),
    ("fast=a:b:c", "must be numbers"),
    ("fast=5,,6", "empty value"),
    # hostile numbers (an outside probe of the sweeps API): these were a ValueError ("Exceeds the
    # limit (4300 digits) for integer string conversion"), OverflowError or decimal.Overflow, a 500
    ("fast=1:1e5000:1", "finite numbers under 1e18"),
    ("fast=1:1e100000000:1", "finite numbers under 1e18"),
    ("fast=1:Infinity:1", "finite numbers under 1e18"),
    ("fast=NaN:5:1", "finite numbers under 1e18"),
    ("fast=1:5:1e-999999999", "more than 1,000,000 values"),
    ("fast=0:1:1e-30", "more than 1,000,000 values"),
    ("fast=5,1e100000000", "finite numbers under 1e18"),
    ("fast=5,Infinity", "finite numbers under 1e18"),
    ("fast=5,-NaN", "finite numbers under 1e18"),
])
def test_bad_grids_are_refused_with_the_reason(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_grid([spec])


def test_no_grid_and_a_repeated_parameter_are_refused():
    with pytest.raises(ConfigError, match="at least one"):
        parse_grid([])
    with pytest.raises(ConfigError, match="given twice"):
        parse_grid(["fast=5", "fast=6"])


def test_combinations_the_strategy_refuses_are_skipped_and_counted():
    combos, skipped, reason = expand_grid(SMA, parse_grid(["fast=10:30:10", "slow=20:30:10"]), {})
    assert combos == [{"fast": 10, "slow": 20}, {"fast": 10, "slow": 30}, {"fast": 20, "slow": 30}]
    assert skipped == 3 and "greater than fast" in reason


def test_unknown_parameters_and_a_grid_with_nothing_valid_are_refused():
    with pytest.raises(ConfigError, match="unknown parameter"):
        expand_grid(SMA, parse_grid(["fsat=5:10:5"]), {})
    with pytest.raises(ConfigError, match="refuses every combination"):
        expand_grid(SMA, parse_grid(["fast=50:60:10", "slow=20:30:10"]), {})
    with pytest.raises(ConfigError, match="both as --grid and as --param"):
        expand_grid(SMA, parse_grid(["fast=5"]), {"fast": "6"})


def test_objectives_are_numeric_stats_and_undefined_values_rank_last():
    assert validate_objective("sortino") == "sortino"
    for bad in ("sharp", "duration"):
        with pytest.raises(ConfigError, match="unknown objective"):
            validate_objective(bad)
    assert score({"sharpe": None}, "sharpe") == -np.inf
    assert score({"volatility_ann_pct": 12.0}, "volatility_ann_pct") == -12.0  # minimised


def test_an_unreachable_ray_address_is_refused_quickly():
    with socket.socket() as s:  # a port nothing listens on: bind, never listen
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        with pytest.raises(ConfigError, match="cannot reach a Ray cluster"):
            check_ray_address(f"127.0.0.1:{port}")
    with pytest.raises(ConfigError, match="host:port"):
        check_ray_address("localhost")
    check_ray_address(None)


def test_period_layout_gives_the_returns_metrics_uses():
    frame = load_bars(ROOT / "data" / "crypto" / "BTC-PERP_1m.csv").iloc[:20_000]
    result = run_backtest(frame, SMA, {"fast": 10, "slow": 30, "units": "fractional"}, make_config(path="fast"))
    expected, annual = period_returns(result.equity, result.initial_cash)
    layout = PeriodLayout.of(frame.index)
    np.testing.assert_array_equal(layout.returns(result.equity.to_numpy(), result.initial_cash), expected)
    assert layout.annual == annual
    daily = load_bars(SPY).iloc[:300].resample("7D").last().dropna()  # coarser than daily: bar returns
    assert PeriodLayout.of(daily.index).annual == pytest.approx(365.25 / 7)


def test_cached_indicators_give_the_same_backtest():
    frame = load_bars(SPY)
    cached = cached_strategy(SMA)
    config = make_config(path="fast")
    for params in ({"fast": 10, "slow": 30}, {"fast": 20, "slow": 30}, {"fast": 10, "slow": 30}):
        a = run_backtest(frame, SMA, params, config)
        b = run_backtest(frame, cached, params, config)
        pd.testing.assert_series_equal(a.equity, b.equity)
        pd.testing.assert_frame_equal(a.trades, b.trades)


@pytest.mark.parametrize("args, message", [
    (["--grid", "fast=50:5:5", "--grid", "slow=20:40:10"], "inverted range"),
    (["--grid", "fast=5:10:5", "--objective", "sharpness"], "unknown objective"),
    (["--grid", "fast=5:10:5", "--ray-address", "127.0.0.1:9"], "cannot reach a Ray cluster"),
    (["--grid", "fast=5:10:5", "--heatmap", "x.svg"], "use a .png or .html"),
    (["--grid", "fast=5:10:5", "--search", "optuna", "--trials", "0"], "trials"),
])
def test_bad_input_is_refused_before_ray_starts(args, message, monkeypatch, tmp_path):
    def no_ray(*_args, **_kwargs):
        raise AssertionError("Ray was started for bad input")

    monkeypatch.setattr(ray_pool, "ray_session", no_ray)
    import typer
    from typer.testing import CliRunner

    app = typer.Typer()
    research_cli.register(app)
    result = CliRunner().invoke(app, ["sweep", "--strategy", "sma_cross", "--data", str(SPY), "--no-store",
                                      "--out", str(tmp_path), *args])
    assert isinstance(result.exception, ConfigError), result.output
    assert message in str(result.exception)
    assert not list(tmp_path.iterdir())


def test_the_command_prints_one_line_and_exits_2_for_bad_input():
    script = ("from app.cli import app, main; from app.research_cli import register; "
              "register(app); main()")
    for args in (["--strategy", "sma_cros", "--grid", "fast=5:10:5"],
                 ["--strategy", "sma_cross", "--grid", "fast=50:5:5"]):
        done = subprocess.run([sys.executable, "-c", script, "sweep", "--data", str(SPY), "--no-store", *args],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert done.returncode == 2, done.stderr
        assert "error:" in done.stderr and "Traceback" not in done.stderr
