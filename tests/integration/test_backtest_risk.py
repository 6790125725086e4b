"""The backtester runs the live risk engine: denials and halts show in the report."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal

from backtest.config import make_config
from backtest.data import load_bars
from backtest.runner import run_backtest
from engine.risk import RiskConfig, RiskLimits
from strategies import get_strategy
from tests.conftest import DATA

SPY = DATA / "stocks" / "SPY_daily.csv"


def test_denied_orders_are_reported_with_their_reason_and_never_trade():
    bars = load_bars(SPY)
    risk = RiskConfig(default_bot=RiskLimits(max_order_qty=Decimal(20)))
    result = run_backtest(bars, get_strategy("sma_cross"), {"fast": 10, "slow": 30}, make_config(), risk=risk)
    assert result.meta["path"] == "event"
    assert len(result.denied) > 0 and {d["reason"] for d in result.denied} == {"MAX_ORDER_QTY"}
    assert len(result.trades) == 0 and result.equity.iloc[-1] == 10_000


def test_drawdown_limit_halts_the_bot_and_later_entries_are_denied():
    bars = load_bars(SPY)
    risk = RiskConfig(default_bot=RiskLimits(max_drawdown_pct=Decimal(10)))
    free = run_backtest(bars, get_strategy("sma_cross"), {"fast": 10, "slow": 30}, make_config(path="event"))
    limited = run_backtest(bars, get_strategy("sma_cross"), {"fast": 10, "slow": 30}, make_config(), risk=risk)
    halts = [c for c in limited.meta["risk_state_changes"] if c["to"] == "HALTED"]
    assert halts and halts[0]["reason"] == "MAX_DRAWDOWN"
    assert {d["reason"] for d in limited.denied} <= {"TRADING_HALTED"} and limited.denied
    assert len(limited.trades) < len(free.trades)
    # nothing opened after the halt
    halt_time = halts[0]["ts"]
    assert (limited.trades["entry_time"].astype("int64") <= halt_time).all()


def test_cli_reports_denials_and_writes_them_to_json(tmp_path):
    risk = tmp_path / "risk.yaml"
    risk.write_text("default_bot:\n  max_order_qty: 20\n")
    out = tmp_path / "r.json"
    done = subprocess.run([sys.executable, "-m", "app.cli", "backtest", "--strategy", "sma_cross", "--data",
                           str(SPY), "--risk", str(risk), "--json", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "orders denied by risk: MAX_ORDER_QTY" in done.stdout
    assert json.loads(out.read_text())["denied"][0]["reason"] == "MAX_ORDER_QTY"


def test_cli_refuses_a_bad_risk_file_naming_the_field(tmp_path):
    risk = tmp_path / "risk.yaml"
    risk.write_text("default_bot:\n  max_order_qty: -1\n")
    done = subprocess.run([sys.executable, "-m", "app.cli", "backtest", "--strategy", "sma_cross", "--data",
                           str(SPY), "--risk", str(risk)], capture_output=True, text=True)
    assert done.returncode == 2 and "default_bot.max_order_qty" in done.stderr and "Traceback" not in done.stderr


def test_fast_path_with_a_risk_engine_is_refused_not_silently_unchecked():
    import pytest

    from engine.errors import ConfigError

    risk = RiskConfig(default_bot=RiskLimits(max_order_qty=Decimal(20)))
    with pytest.raises(ConfigError) as err:
        run_backtest(load_bars(SPY), get_strategy("sma_cross"), {}, make_config(path="fast"), risk=risk)
    assert err.value.field == "path"
