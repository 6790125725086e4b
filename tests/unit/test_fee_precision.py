"""Fees: precision follows the account currency, a charged commission is never booked as 0, and
a minimum fee per order is available (--min-fee). Every figure below is computed by hand.

The backtests reuse test_cross_rule's prices: sma_cross 2/4 trades once, buying at bar 9's open
(120) and selling at bar 11's open (128).
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from backtest.config import make_config
from backtest.runner import build_instrument, run_backtest
from engine.errors import ConfigError
from engine.money import FeeModel, Scales, currency_increment_for, fee_raw
from strategies.sma_cross import SmaCross
from tests.unit.test_cross_rule import CLOSES, frame


def fee(rate: str, notional: str, currency_increment: str = "0.01", minimum: str = "0") -> Decimal:
    """The fee one fill of `notional` (price 1 x quantity) books, in currency units."""
    s = Scales.build(Decimal("0.01"), Decimal("0.000001"), Decimal(0), Decimal(currency_increment), Decimal(1))
    model = FeeModel(Decimal(rate), minimum=Decimal(minimum))
    num, den = model.fraction(s)
    notional_raw = s.cash_raw(Decimal(notional))
    return s.cash(fee_raw(notional_raw, num, den, s.fee_step, model.fixed_raw(s), model.min_raw(s)))


def test_a_charged_commission_is_never_booked_as_zero():
    # 0.2 % of $1.10 is $0.0022: half-even to the cent was $0.00; at least one cent now
    assert fee("0.002", "1.10") == Decimal("0.01")
    assert fee("0.002", "0.01") == Decimal("0.01")


def test_fees_above_one_increment_still_round_half_even():
    assert fee("0.002", "10") == Decimal("0.02")
    assert fee("0.002", "12.50") == Decimal("0.02")   # 0.025 -> 0.02 (half to even)
    assert fee("0.002", "13.75") == Decimal("0.03")   # 0.0275 -> 0.03
    assert fee("0", "1000") == 0                      # no commission, no fee
    assert fee("0.002", "0") == 0                     # nothing traded, nothing charged


def test_fee_precision_follows_the_account_currency():
    assert currency_increment_for("USD") == Decimal("0.01")
    assert currency_increment_for("JPY") == Decimal("1")
    assert currency_increment_for("USDT") == Decimal("0.00000001")
    assert currency_increment_for("BTC") == Decimal("0.00000001")
    assert fee("0.002", "1.10", currency_increment_for("USDT")) == Decimal("0.0022")  # exact in USDT
    assert fee("0.002", "400", currency_increment_for("JPY")) == Decimal("1")          # 0.8 yen -> 1
    spec_free = build_instrument(frame(CLOSES), make_config(account_currency="USDT"), "whole")
    assert spec_free.currency_increment == Decimal("0.00000001")
    assert build_instrument(frame(CLOSES), make_config(), "whole").currency_increment == Decimal("0.01")
    given = build_instrument(frame(CLOSES), make_config(account_currency="USDT", currency_increment="0.01"), "whole")
    assert given.currency_increment == Decimal("0.01")  # an explicit increment wins


def test_minimum_fee_per_order():
    assert fee("0.002", "100", minimum="1") == Decimal("1.00")      # 0.20 -> the minimum
    assert fee("0.002", "1000", minimum="1") == Decimal("2.00")     # above the minimum: unchanged
    assert fee("0", "100", minimum="1") == Decimal("1.00")          # a minimum alone applies too
    with pytest.raises(ConfigError) as err:
        FeeModel(Decimal("0.001"), minimum=Decimal("-1"))
    assert err.value.field == "min_fee"
    with pytest.raises(ConfigError) as err:
        make_config(min_fee="-1")
    assert err.value.field == "min_fee"


@pytest.mark.parametrize("path", ["fast", "event"])
def test_a_small_commission_is_charged_on_both_paths(path):
    # one unit: 0.002 % of 120 is 0.0024 and of 128 is 0.00256; each fill books one cent
    result = run_backtest(frame(CLOSES), SmaCross, {"fast": 2, "slow": 4, "fixed_size": "1"},
                          make_config(path=path, price_increment="1", commission="0.00002"))
    assert result.meta["path"] == path
    assert len(result.trades) == 1
    assert float(result.trades["fees"].iloc[0]) == 0.02
    assert float(result.trades["pnl"].iloc[0]) == pytest.approx(8 - 0.02, abs=1e-12)
    assert result.fees_total == 0.02


@pytest.mark.parametrize("path", ["fast", "event"])
def test_minimum_fee_on_both_paths_and_in_sizing(path):
    # the whole account (964) at 120 buys 8 units without fees (960); with a minimum fee of 5 per
    # order 8 units cost 965 > 964, so 7 are bought (840 + 5). The exit pays the minimum too.
    result = run_backtest(frame(CLOSES), SmaCross, {"fast": 2, "slow": 4},
                          make_config(path=path, price_increment="1", cash="964", min_fee="5"))
    assert result.meta["path"] == path
    trade = result.trades.iloc[0]
    assert float(trade["size"]) == 7
    assert float(trade["fees"]) == 10.0
    assert float(trade["pnl"]) == 7 * 8 - 10


def test_min_fee_option_of_the_backtest_command(tmp_path):
    """`tickbridge backtest --min-fee` reaches the fee model; a bad value names the option's field."""
    import subprocess
    import sys

    from backtest.report import read_json

    data = tmp_path / "bars.csv"
    frame(CLOSES).to_csv(data)
    out = tmp_path / "run.json"
    run = subprocess.run([sys.executable, "-m", "app.cli", "backtest", "--strategy", "sma_cross", "--data", str(data),
                          "--param", "fast=2", "--param", "slow=4", "--cash", "964", "--min-fee", "5",
                          "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    trades = read_json(out)["trades"]  # stored by column since format version 2
    assert list(zip(trades["size"], trades["fees"])) == [(7.0, 10.0)]  # as in the test above
    bad = subprocess.run([sys.executable, "-m", "app.cli", "backtest", "--strategy", "sma_cross", "--data", str(data),
                          "--min-fee", "-1"], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "min_fee" in bad.stderr and str(tmp_path) not in bad.stderr
