"""The risk engine: each check denies with its reason; states, monitors, kill switch, config."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.clock import SimulatedClock
from engine.errors import ConfigError
from engine.orders import OrderState, OrderType
from engine.risk import (AccountLimits, AccountRisk, KillSwitch, RiskEngine, RiskLimits, TradingState,
                         load_risk_config)
from tests.conftest import Harness, make_harness

DAY = 86_400_000_000_000
PRICE = Decimal("100.00")


def armed(limits: RiskLimits, account: AccountRisk | None = None, cash: str = "100000",
          price: Decimal | None = PRICE) -> tuple[Harness, RiskEngine]:
    """A harness whose OMS runs a risk engine with `limits`, the last price fixed at `price`."""
    h = make_harness(cash=cash)
    risk = RiskEngine("bot1", limits, account or AccountRisk(), h.clock, {"TEST": h.instrument},
                      last_price=lambda symbol: price)
    risk.bind(h.oms)
    h.oms.risk = risk
    return h, risk


def fill(h: Harness, side: str, qty: str, price: str = "100.00") -> None:
    risk, h.oms.risk = h.oms.risk, None
    h.order(side, qty)
    h.bar(price, price, price, price)
    h.oms.risk = risk


@pytest.mark.parametrize("limits, order, reason", [
    (RiskLimits(max_order_qty=Decimal(10)), ("BUY", "11"), "MAX_ORDER_QTY"),
    (RiskLimits(max_order_notional=Decimal(500)), ("BUY", "6"), "MAX_ORDER_NOTIONAL"),
    (RiskLimits(allowed_symbols=["OTHER"]), ("BUY", "1"), "SYMBOL_NOT_ALLOWED"),
    (RiskLimits(max_position_qty=Decimal(5)), ("SELL", "6"), "MAX_POSITION"),
    (RiskLimits(max_gross_exposure=Decimal(1000)), ("BUY", "11"), "MAX_GROSS_EXPOSURE"),
    (RiskLimits(capital_allocation=Decimal(300)), ("BUY", "4"), "BUYING_POWER"),
    (RiskLimits(), ("BUY", "1.5"), "QTY_OFF_GRID"),
])
def test_order_breaking_a_limit_is_denied_with_its_reason_and_never_sent(limits, order, reason):
    h, _ = armed(limits)
    denied = h.order(*order)
    assert denied.state is OrderState.DENIED and denied.reason == reason
    assert not h.venue.has_working_orders and h.oms.denied == [denied]


def test_buy_larger_than_cash_is_denied_for_buying_power():
    h, _ = armed(RiskLimits(), cash="500")
    assert h.order("BUY", "6").reason == "BUYING_POWER"


def test_limit_price_outside_the_band_is_denied_and_inside_passes():
    h, _ = armed(RiskLimits(price_band_pct=Decimal(5)))
    assert h.order("BUY", "1", OrderType.LIMIT, limit="94.99").reason == "PRICE_BAND"
    assert h.order("BUY", "1", OrderType.LIMIT, limit="95.00").state is OrderState.ACCEPTED


def test_market_order_needing_a_price_when_none_is_known_is_denied():
    h, _ = armed(RiskLimits(max_order_notional=Decimal(1000)), price=None)
    assert h.order("BUY", "1").reason == "NO_PRICE"


def test_open_orders_cap_counts_working_orders():
    h, _ = armed(RiskLimits(max_open_orders=2))
    h.order("BUY", "1", OrderType.LIMIT, limit="99.00")
    h.order("BUY", "1", OrderType.LIMIT, limit="98.00")
    assert h.order("BUY", "1", OrderType.LIMIT, limit="97.00").reason == "MAX_OPEN_ORDERS"


def test_order_rate_window_slides_with_the_clock():
    h, _ = armed(RiskLimits(max_orders_per_second=2))
    h.clock.ts = 0
    assert h.order("BUY", "1", OrderType.LIMIT, limit="90.00").state is OrderState.ACCEPTED
    assert h.order("BUY", "1", OrderType.LIMIT, limit="90.00").state is OrderState.ACCEPTED
    assert h.order("BUY", "1", OrderType.LIMIT, limit="90.00").reason == "ORDER_RATE"
    h.clock.ts = 1_000_000_001  # a second later the window is clear
    assert h.order("BUY", "1", OrderType.LIMIT, limit="90.00").state is OrderState.ACCEPTED


def test_market_hours_deny_outside_the_window():
    h, _ = armed(RiskLimits(market_hours=["13:30-20:00"]))
    h.clock.ts = 12 * 3600 * 10**9
    assert h.order("BUY", "1").reason == "MARKET_CLOSED"
    h.clock.ts = 14 * 3600 * 10**9
    assert h.order("BUY", "1").state is OrderState.SUBMITTED


def test_reducing_state_lets_a_closing_order_through_and_denies_an_opening_one():
    h, risk = armed(RiskLimits())
    fill(h, "BUY", "5")
    risk.set_state(TradingState.REDUCING, 0, "test")
    assert h.order("BUY", "1").reason == "REDUCING_ONLY"
    assert h.order("SELL", "6").reason == "REDUCING_ONLY"  # would flip to short: not a reduction
    assert h.order("SELL", "5").state is OrderState.SUBMITTED


def test_halted_denies_everything():
    h, risk = armed(RiskLimits())
    fill(h, "BUY", "5")
    risk.set_state(TradingState.HALTED, 0, "test")
    assert h.order("SELL", "5").reason == "TRADING_HALTED"


def test_daily_loss_limit_switches_bot_to_reducing_and_a_new_day_resumes():
    _, risk = armed(RiskLimits(daily_loss_limit=Decimal(100)))
    risk.on_equity(Decimal(10_000), 0)
    risk.on_equity(Decimal(9_950), 1)
    assert risk.state is TradingState.ACTIVE
    risk.on_equity(Decimal(9_900), 2)
    assert risk.state is TradingState.REDUCING and risk.state_changes[-1].reason == "DAILY_LOSS"
    risk.on_equity(Decimal(9_900), DAY + 1)
    assert risk.state is TradingState.ACTIVE and risk.state_changes[-1].reason == "NEW_DAY"


def test_drawdown_halts_and_a_new_day_does_not_resume():
    _, risk = armed(RiskLimits(max_drawdown_pct=Decimal(10)))
    risk.on_equity(Decimal(10_000), 0)
    risk.on_equity(Decimal(12_000), 1)
    risk.on_equity(Decimal(10_800), 2)  # exactly 10 % below the high-water mark
    assert risk.state is TradingState.HALTED
    risk.on_equity(Decimal(12_500), DAY + 1)
    assert risk.state is TradingState.HALTED
    risk.resume(DAY + 2, "alice")
    assert risk.state is TradingState.ACTIVE


def test_account_gross_exposure_binds_two_bots_together():
    account = AccountRisk(AccountLimits(max_gross_exposure=Decimal(1500)))
    a, _ = armed(RiskLimits(), account)
    b, risk_b = armed(RiskLimits(), account)
    risk_b.bot_id = risk_b.scope = "bot2"
    fill(a, "BUY", "10")                          # bot1 holds 1,000 of exposure
    assert b.order("BUY", "6").reason == "ACCOUNT:MAX_GROSS_EXPOSURE"
    assert b.order("BUY", "5").state is OrderState.SUBMITTED


def test_account_halt_stops_every_bot():
    account = AccountRisk()
    a, _ = armed(RiskLimits(), account)
    account.set_state(TradingState.HALTED, 0, "test")
    assert a.order("BUY", "1").reason == "ACCOUNT:TRADING_HALTED"


def test_kill_switch_cancels_flattens_and_halts():
    account = AccountRisk()
    h, risk = armed(RiskLimits(), account)
    fill(h, "BUY", "5")
    resting = h.order("BUY", "1", OrderType.LIMIT, limit="90.00")
    switch = KillSwitch(account)
    switch.register(risk, h.oms.cancel_all, lambda: h.order("SELL", "5"))
    switch.trip(0, "operator")
    assert resting.state is OrderState.CANCELED
    h.bar("100.00", "100.00", "100.00", "100.00")
    assert h.portfolio.positions["TEST"].qty == 0
    assert risk.state is TradingState.HALTED and account.state is TradingState.HALTED
    assert h.order("BUY", "1").reason == "TRADING_HALTED"


def test_invalid_limit_names_its_field(tmp_path):
    path = tmp_path / "risk.yaml"
    path.write_text("bots:\n  x:\n    max_order_qty: -5\n")
    with pytest.raises(ConfigError) as err:
        load_risk_config(path)
    assert err.value.field == "bots.x.max_order_qty"


def test_unknown_limit_and_bad_window_are_refused(tmp_path):
    path = tmp_path / "risk.yaml"
    path.write_text("default_bot:\n  max_order_quantity: 5\n")
    with pytest.raises(ConfigError, match="default_bot.max_order_quantity"):
        load_risk_config(path)
    path.write_text("default_bot:\n  market_hours: ['20:00-13:30']\n")
    with pytest.raises(ConfigError, match="default_bot.market_hours"):
        load_risk_config(path)


def test_bundled_risk_configs_load():
    from tests.conftest import ROOT
    for path in (ROOT / "config" / "risk").glob("*.yaml"):
        assert load_risk_config(path)
