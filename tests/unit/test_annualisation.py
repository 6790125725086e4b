"""Annualisation follows the data's calendar, the user can set it, and the report shows it.

Before: any market with weekend bars on over 10 % of its days was annualised as a 365-day market;
hourly FX, whose week opens on Sunday evening (UTC), qualified, and its Sharpe, Sortino and
volatility came out sqrt(365 / 311) - 1 = 8 % too high.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from backtest.data import load_bars
from backtest.metrics import compute_stats, infer_periods_per_year
from backtest.report import stats_table
from backtest.result import BacktestResult, empty_trades
from engine.errors import ConfigError
from tests.conftest import DATA


def fx_week_hours(weeks: int) -> pd.DatetimeIndex:
    """Hourly bars of an FX week: Sunday 22:00 UTC to Friday 21:00 UTC, `weeks` times."""
    first_sunday = pd.Timestamp("2024-01-07 22:00", tz="UTC")
    hours = [first_sunday + pd.Timedelta(weeks=w) + pd.Timedelta(hours=h) for w in range(weeks) for h in range(120)]
    return pd.DatetimeIndex(hours)


def result_on(index: pd.DatetimeIndex, equity: np.ndarray, initial: float = 100.0) -> BacktestResult:
    eq = pd.Series(equity, index=index)
    return BacktestResult(equity=eq, position=np.ones(len(eq)), trades=empty_trades(),
                          close=pd.Series(np.linspace(1.0, 2.0, len(eq)), index=index), initial_cash=initial)


def daily_closes(index: pd.DatetimeIndex, equity: np.ndarray, initial: float) -> np.ndarray:
    """By hand: the last equity of each UTC day, as returns on the day before (cash first)."""
    days = {}
    for t, e in zip(index, equity):
        days[t.date()] = e
    values = [initial, *days.values()]
    return np.array([values[i] / values[i - 1] - 1 for i in range(1, len(values))])


def test_hourly_fx_with_sunday_evening_bars_is_not_a_365_day_market():
    index = fx_week_hours(4)
    # 4 weeks of Sunday..Friday: 24 days with bars over a span of 27 calendar days (Sun 7 Jan .. Fri 2 Feb)
    expected_a = 24 / 27 * 365.25
    assert infer_periods_per_year(index) == pytest.approx(expected_a)
    rng = np.random.default_rng(7)
    equity = 100.0 * np.cumprod(1 + rng.normal(0.0002, 0.002, len(index)))
    stats = compute_stats(result_on(index, equity))
    daily = daily_closes(index, equity, 100.0)
    assert len(daily) == 24
    mean, std = daily.mean(), daily.std(ddof=1)
    assert stats["periods_per_year"] == pytest.approx(expected_a)
    assert stats["sharpe"] == pytest.approx(mean / std * math.sqrt(expected_a))
    assert stats["volatility_ann_pct"] == pytest.approx(std * math.sqrt(expected_a) * 100)
    downside = math.sqrt(np.mean(np.minimum(daily, 0) ** 2))
    assert stats["sortino"] == pytest.approx(mean * math.sqrt(expected_a) / downside)


def test_real_eurusd_hourly_file_is_annualised_by_its_observed_trading_days():
    bars = load_bars(DATA / "fx" / "EURUSD_1h.csv")
    # 251 days with bars (Sunday..Friday) between 2017-04-19 and 2018-02-07, 295 calendar days
    assert bars.index.normalize().nunique() == 251
    assert infer_periods_per_year(bars.index) == pytest.approx(251 / 295 * 365.25)  # 310.8, not 365


@pytest.mark.parametrize("index, expected", [
    (pd.date_range("2024-01-01", periods=30, freq="B", tz="UTC"), 252.0),            # exchange days
    (pd.date_range("2024-01-01", periods=30, freq="D", tz="UTC"), 365.0),            # every day: crypto
    (pd.date_range("2024-01-01", periods=24 * 21, freq="h", tz="UTC"), 365.0),       # 24/7 hourly
    (pd.date_range("2024-01-05", periods=40, freq="7D", tz="UTC"), 365.25 / 7),       # weekly bars
])
def test_periods_per_year_of_common_calendars(index, expected):
    assert infer_periods_per_year(index) == pytest.approx(expected)


def test_the_user_sets_periods_per_year_and_the_report_shows_it():
    index = fx_week_hours(2)
    equity = 100.0 * np.cumprod(1 + np.where(np.arange(len(index)) % 3, 0.001, -0.0015))
    stats = compute_stats(result_on(index, equity), periods_per_year=260)
    daily = daily_closes(index, equity, 100.0)
    assert stats["periods_per_year"] == 260
    assert stats["sharpe"] == pytest.approx(daily.mean() / daily.std(ddof=1) * math.sqrt(260))
    from rich.console import Console

    console = Console(record=True, width=120)
    console.print(stats_table(stats, "t"))
    text = console.export_text()
    assert "Periods per year (annualisation)" in text and "260.00" in text


@pytest.mark.parametrize("bad", [0, -5, float("nan"), float("inf"), True])
def test_a_bad_periods_per_year_is_refused_naming_the_field(bad):
    with pytest.raises(ConfigError) as err:
        compute_stats(result_on(fx_week_hours(1), np.full(120, 100.0)), periods_per_year=bad)
    assert err.value.field == "periods_per_year"


def test_risk_free_rate_enters_sharpe_and_sortino_per_period():
    index = pd.date_range("2024-01-01", periods=6, freq="B", tz="UTC")
    equity = np.array([100, 110, 99, 108.9, 108.9, 119.79])
    daily = np.array([0.0, 0.10, -0.10, 0.10, 0.0, 0.10])
    rf_day = 1.04 ** (1 / 252) - 1
    excess = daily - rf_day
    stats = compute_stats(result_on(index, equity), risk_free=0.04)
    assert stats["sharpe"] == pytest.approx(excess.mean() / daily.std(ddof=1) * math.sqrt(252))
    assert stats["sortino"] == pytest.approx(excess.mean() * math.sqrt(252)
                                             / math.sqrt(np.mean(np.minimum(excess, 0) ** 2)))
    assert stats["volatility_ann_pct"] == pytest.approx(daily.std(ddof=1) * math.sqrt(252) * 100)  # unchanged
    with pytest.raises(ConfigError) as err:
        compute_stats(result_on(index, equity), risk_free=4.0)  # 400 %: surely meant 0.04
    assert err.value.field == "risk_free"


def test_cli_sets_periods_per_year_and_risk_free_and_refuses_bad_ones(tmp_path):
    out = tmp_path / "r.json"
    base = [sys.executable, "-m", "app.cli", "backtest", "--strategy", "sma_cross", "--data",
            str(DATA / "fx" / "EURUSD_1h.csv"), "--param", "fast=10", "--param", "slow=40"]
    done = subprocess.run([*base, "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    inferred = json.loads(out.read_text())["stats"]
    assert inferred["periods_per_year"] == pytest.approx(251 / 295 * 365.25)
    done = subprocess.run([*base, "--periods-per-year", "260", "--risk-free", "0.04", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Periods per year" in done.stdout
    assert json.loads(out.read_text())["stats"]["periods_per_year"] == 260
    done = subprocess.run([*base, "--periods-per-year", "0"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "periods_per_year" in done.stderr and "Traceback" not in done.stderr
