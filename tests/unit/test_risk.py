"""The risk engine: each check denies with its reason; states, monitors, kill switch, config.

Most tests run the engine over books set by hand (`Desk`); those that need orders to rest, fill
or be canceled run it inside the OMS harness of tests/conftest.py.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from engine.clock import SimulatedClock
from engine.errors import ConfigError
from engine.instrument import Instrument
from engine.orders import Order, OrderSide, OrderState, OrderType
from engine.portfolio import Portfolio
from engine.risk import (AccountLimits, AccountRisk, KillSwitch, RiskEngine, RiskLimits, RiskReason, StateChange,
                         TradingState, load_risk_config)
from tests.conftest import ROOT, Harness, make_harness

SECOND = 1_000_000_000
DAY = 86_400 * SECOND
PRICE = Decimal("100.00")
TEST = Instrument("TEST")  # ticks of 0.01, lots of 1: the harness's instrument
LOTS = Instrument("LOTS", price_increment=Decimal("0.05"), size_increment=Decimal("10"), min_qty=Decimal("20"),
                  max_qty=Decimal("1000"))


def at(when: str) -> int:
    """A UTC time as ns since the epoch."""
    return int(datetime.fromisoformat(when).replace(tzinfo=timezone.utc).timestamp()) * SECOND


class Desk:
    """A risk engine over books the test sets by hand: positions, working orders, last prices, cash."""

    def __init__(self, limits: RiskLimits = RiskLimits(), account: AccountRisk | None = None, bot_id: str = "bot1",
                 cash: str = "100000", reference: dict[str, Decimal] | None = None) -> None:
        self.clock = SimulatedClock(at("2024-01-02 15:00"))  # a Tuesday afternoon
        self.prices: dict[str, Decimal] = {"TEST": PRICE, "LOTS": Decimal("10.00")}
        self.positions: dict[str, Decimal] = {}
        self.working: list[Order] = []
        self.portfolio = Portfolio(Decimal(cash), cash_dp=2)
        self.bot_id = bot_id
        self.engine = RiskEngine(bot_id, limits, account or AccountRisk(), self.clock,
                                 {"TEST": TEST, "LOTS": LOTS}, last_price=self.prices.get,
                                 open_orders=lambda: self.working, positions=lambda: self.positions,
                                 **({} if reference is None else {"reference_price": reference.get}))
        self._seq = 0

    def order(self, side: str, qty: str | None = "1", limit: str | None = None, stop: str | None = None,
              symbol: str = "TEST", fraction: str | None = None, reduce_only: bool = False) -> Order:
        self._seq += 1
        kind = (OrderType.STOP_LIMIT if stop and limit else OrderType.STOP if stop else
                OrderType.LIMIT if limit else OrderType.MARKET)
        return Order(f"{self.bot_id}-{self._seq}", self.bot_id, symbol, OrderSide(side), kind,
                     None if qty is None else Decimal(qty), self.clock.ts,
                     limit_price=None if limit is None else Decimal(limit),
                     stop_price=None if stop is None else Decimal(stop),
                     equity_fraction=None if fraction is None else Decimal(fraction), reduce_only=reduce_only)

    def check(self, *args: str | None, **kwargs: object) -> str | None:
        return self.engine.check(self.order(*args, **kwargs), self.portfolio)  # type: ignore[arg-type]

    def rest(self, *args: str | None, **kwargs: object) -> Order:
        """An order that passes and is then working at the venue."""
        order = self.order(*args, **kwargs)  # type: ignore[arg-type]
        assert self.engine.check(order, self.portfolio) is None
        self.working.append(order)
        return order


def armed(limits: RiskLimits, cash: str = "100000") -> tuple[Harness, RiskEngine]:
    """The OMS harness with a risk engine bound to it, the last price fixed at PRICE."""
    h = make_harness(cash=cash)
    risk = RiskEngine("bot1", limits, AccountRisk(), h.clock, {"TEST": h.instrument}, last_price=lambda _: PRICE)
    risk.bind(h.oms)
    h.oms.risk = risk
    return h, risk


def fill(h: Harness, side: str, qty: str) -> None:
    """Trade at PRICE past the risk gate: how a test gets a position."""
    risk, h.oms.risk = h.oms.risk, None
    h.order(side, qty)
    h.bar("100.00", "100.00", "100.00", "100.00")
    h.oms.risk = risk


# -- the OMS never sends a denied order -------------------------------------------------------------

def test_denied_order_never_reaches_the_venue_and_is_recorded_denied_with_its_reason():
    risk = RiskEngine("bot1", RiskLimits(max_order_qty=Decimal(10)), AccountRisk(), SimulatedClock(),
                      {"TEST": TEST}, last_price=lambda _: PRICE)
    h = make_harness(risk=risk)
    risk.bind(h.oms)
    sent: list[Order] = []
    submit = h.venue.submit
    h.venue.submit = lambda order: (sent.append(order), submit(order))  # type: ignore[method-assign]

    denied = h.order("BUY", "11")
    passed = h.order("BUY", "10")

    assert denied.state is OrderState.DENIED and denied.reason == "MAX_ORDER_QTY"
    assert [(e.state, e.reason) for e in denied.events] == [(OrderState.DENIED, "MAX_ORDER_QTY")]
    assert h.oms.denied == [denied] and sent == [passed]


# -- one check, one reason ---------------------------------------------------------------------------

def test_order_above_max_qty_is_denied_with_reason():
    desk = Desk(RiskLimits(max_order_qty=Decimal(10)))
    assert desk.check("BUY", "11") == RiskReason.MAX_ORDER_QTY
    assert desk.check("BUY", "10") is None


def test_market_order_notional_is_valued_at_the_last_price():
    desk = Desk(RiskLimits(max_order_notional=Decimal(500)))
    assert desk.check("BUY", "6") == "MAX_ORDER_NOTIONAL"
    assert desk.check("BUY", "5") is None


def test_limit_order_notional_is_valued_at_its_limit_price():
    desk = Desk(RiskLimits(max_order_notional=Decimal(500)))
    assert desk.check("BUY", "6", limit="83.33") is None
    assert desk.check("BUY", "6", limit="83.34") == "MAX_ORDER_NOTIONAL"


def test_market_order_with_a_notional_limit_and_no_last_price_is_denied_for_no_price():
    desk = Desk(RiskLimits(max_order_notional=Decimal(1000)))
    del desk.prices["TEST"]
    assert desk.check("BUY", "1") == "NO_PRICE"


def test_symbol_outside_allowed_symbols_is_denied():
    desk = Desk(RiskLimits(allowed_symbols=["LOTS"]))
    assert desk.check("BUY", "1") == "SYMBOL_NOT_ALLOWED"
    assert desk.check("BUY", "20", symbol="LOTS") is None


def test_symbol_without_an_instrument_is_denied():
    assert Desk().check("BUY", "1", symbol="NOPE") == "SYMBOL_NOT_ALLOWED"


@pytest.mark.parametrize("order, reason", [
    (dict(qty="1", limit="100.001"), "PRICE_OFF_GRID"),
    (dict(qty="20", limit="10.02", symbol="LOTS"), "PRICE_OFF_GRID"),
    (dict(qty="1", limit="-1.00"), "PRICE_OFF_GRID"),
    (dict(qty="1.5"), "QTY_OFF_GRID"),
    (dict(qty="25", symbol="LOTS"), "QTY_OFF_GRID"),
    (dict(qty="0"), "QTY_BELOW_MIN"),
    (dict(qty="10", symbol="LOTS"), "QTY_BELOW_MIN"),
    (dict(qty="1010", symbol="LOTS"), "QTY_ABOVE_MAX"),
], ids=["price-decimals", "price-tick", "price-negative", "qty-decimals", "qty-lot", "qty-zero", "qty-min",
        "qty-max"])
def test_order_off_the_instrument_grid_is_denied(order, reason):
    assert Desk().check("BUY", **order) == reason


def test_client_order_id_seen_before_is_denied_as_duplicate():
    desk = Desk()
    order = desk.order("BUY", "1")
    assert desk.engine.check(order, desk.portfolio) is None
    assert desk.engine.check(order, desk.portfolio) == "DUPLICATE_CLIENT_ORDER_ID"


def test_client_order_id_of_a_working_order_is_denied_as_duplicate():
    desk = Desk()
    restored = desk.order("BUY", "1", limit="99.00")
    desk.working.append(restored)  # working at the venue, never checked by this gate (a restart)
    assert desk.engine.check(restored, desk.portfolio) == "DUPLICATE_CLIENT_ORDER_ID"


def test_limit_price_outside_the_band_is_denied_and_inside_passes():
    desk = Desk(RiskLimits(price_band_pct=Decimal(5)))
    assert desk.check("BUY", "1", limit="94.99") == "PRICE_BAND"
    assert desk.check("SELL", "1", limit="105.01") == "PRICE_BAND"
    assert desk.check("BUY", "1", limit="95.00") is None
    assert desk.check("BUY", "1") is None  # a market order trades at the last price


def test_stop_price_is_held_to_the_band_too():
    desk = Desk(RiskLimits(price_band_pct=Decimal(5)))
    assert desk.check("SELL", "1", stop="90.00") == "PRICE_BAND"


def test_price_band_without_a_last_price_denies_for_no_price():
    desk = Desk(RiskLimits(price_band_pct=Decimal(5)))
    del desk.prices["TEST"]
    assert desk.check("BUY", "1", limit="100.00") == "NO_PRICE"


def test_a_market_order_is_held_to_the_band_around_the_reference_price():
    """The last price ran to 10x the recent median (a bad print): a market order would fill
    there, so it is denied, whichever side; back near the median it passes."""
    reference = {"TEST": PRICE}
    desk = Desk(RiskLimits(price_band_pct=Decimal(5)), reference=reference)
    desk.prices["TEST"] = Decimal("1000.00")
    assert desk.check("BUY", "1") == "PRICE_BAND"
    assert desk.check("SELL", "1") == "PRICE_BAND"
    desk.prices["TEST"] = Decimal("104.99")
    assert desk.check("BUY", "1") is None
    desk.prices["TEST"] = Decimal("94.99")
    assert desk.check("SELL", "1") == "PRICE_BAND"


def test_limit_and_stop_prices_are_held_to_the_reference_not_to_a_bad_last_price():
    desk = Desk(RiskLimits(price_band_pct=Decimal(5)), reference={"TEST": PRICE})
    desk.prices["TEST"] = Decimal("1000.00")
    assert desk.check("BUY", "1", limit="999.00") == "PRICE_BAND"   # inside a band around the bad last
    assert desk.check("SELL", "1", stop="990.00") == "PRICE_BAND"
    assert desk.check("BUY", "1", limit="101.00") is None


def test_a_reference_without_a_last_price_denies_a_market_order_for_no_price():
    desk = Desk(RiskLimits(price_band_pct=Decimal(5)), reference={"TEST": PRICE})
    del desk.prices["TEST"]
    assert desk.check("BUY", "1") == "NO_PRICE"
    desk = Desk(RiskLimits(price_band_pct=Decimal(5)), reference={})
    assert desk.check("BUY", "1") == "NO_PRICE"


def test_position_limit_counts_the_position_already_held():
    desk = Desk(RiskLimits(max_position_qty=Decimal(10)))
    desk.positions["TEST"] = Decimal(8)
    assert desk.check("BUY", "3") == "MAX_POSITION"
    assert desk.check("BUY", "2") is None
    assert desk.check("SELL", "19") == "MAX_POSITION"  # flips to a short of 11


def test_closing_order_passes_a_position_limit_the_position_is_already_over():
    desk = Desk(RiskLimits(max_position_qty=Decimal(10)))
    desk.positions["TEST"] = Decimal(15)  # the limit was lowered after the position was built
    assert desk.check("SELL", "5") is None


def test_gross_exposure_counts_resting_orders_before_they_fill():
    desk = Desk(RiskLimits(max_gross_exposure=Decimal(1000)))
    desk.rest("BUY", "6", limit="99.00")
    assert desk.check("BUY", "5", limit="99.00") == "MAX_GROSS_EXPOSURE"  # 11 x 100 if both fill
    assert desk.check("BUY", "4", limit="99.00") is None


def test_reversal_counts_the_position_once_so_close_and_open_fit_the_exposure():
    desk = Desk(RiskLimits(max_gross_exposure=Decimal(1000)))
    desk.positions["TEST"] = Decimal(10)
    desk.rest("SELL", "10", reduce_only=True)
    assert desk.check("SELL", "10") is None  # worst case: long 10 (nothing fills) or short 10
    assert desk.check("SELL", "11") == "MAX_GROSS_EXPOSURE"


def test_buy_larger_than_cash_is_denied_for_buying_power():
    desk = Desk(cash="500")
    assert desk.check("BUY", "6") == "BUYING_POWER"
    assert desk.check("BUY", "5") is None


def test_cash_promised_to_working_buys_is_not_buying_power_again():
    desk = Desk(cash="1000")
    desk.rest("BUY", "6", limit="100.00")
    assert desk.check("BUY", "5", limit="100.00") == "BUYING_POWER"
    assert desk.check("BUY", "4", limit="100.00") is None


def test_capital_allocation_caps_what_the_bot_commits():
    desk = Desk(RiskLimits(capital_allocation=Decimal(1000)))
    desk.positions["TEST"] = Decimal(7)
    assert desk.check("BUY", "4") == "BUYING_POWER"
    assert desk.check("BUY", "3") is None


def test_short_sale_is_held_by_the_allocation_not_by_cash():
    desk = Desk(RiskLimits(capital_allocation=Decimal(1000)), cash="0")
    assert desk.check("SELL", "10") is None
    assert desk.check("SELL", "11") == "BUYING_POWER"


def test_open_orders_cap_counts_working_orders():
    h, _ = armed(RiskLimits(max_open_orders=2))
    h.order("BUY", "1", OrderType.LIMIT, limit="99.00")
    h.order("BUY", "1", OrderType.LIMIT, limit="98.00")
    assert h.order("BUY", "1", OrderType.LIMIT, limit="97.00").reason == "MAX_OPEN_ORDERS"


def test_order_rate_window_slides_with_the_clock():
    desk = Desk(RiskLimits(max_orders_per_second=2))
    start = desk.clock.ts
    assert desk.check("BUY", "1") is None
    desk.clock.ts = start + SECOND // 2
    assert desk.check("BUY", "1") is None
    assert desk.check("BUY", "1") == "ORDER_RATE"
    desk.clock.ts = start + SECOND  # the first order has left the window
    assert desk.check("BUY", "1") is None
    assert desk.check("BUY", "1") == "ORDER_RATE"


def test_denied_order_does_not_use_up_the_rate_window():
    desk = Desk(RiskLimits(max_orders_per_second=1, max_order_qty=Decimal(10)))
    assert desk.check("BUY", "11") == "MAX_ORDER_QTY"
    assert desk.check("BUY", "1") is None


def test_market_hours_deny_outside_every_window():
    desk = Desk(RiskLimits(market_hours=["08:00-12:00", "13:30-20:00"]))
    for when, reason in [("07:59", "MARKET_CLOSED"), ("08:00", None), ("12:00", "MARKET_CLOSED"),
                         ("13:30", None), ("19:59", None), ("20:00", "MARKET_CLOSED")]:
        desk.clock.ts = at(f"2024-01-02 {when}")
        assert desk.check("BUY", "1") == reason, when


def test_market_weekdays_deny_the_weekend():
    desk = Desk(RiskLimits(market_weekdays=["MON", "TUE", "WED", "THU", "FRI"]))
    desk.clock.ts = at("2024-01-06 15:00")  # a Saturday
    assert desk.check("BUY", "1") == "MARKET_CLOSED"
    desk.clock.ts = at("2024-01-08 00:00")  # Monday
    assert desk.check("BUY", "1") is None


# -- states and reductions ---------------------------------------------------------------------------

def test_reducing_state_lets_a_closing_order_through_and_denies_an_opening_one():
    h, risk = armed(RiskLimits())
    fill(h, "BUY", "5")
    risk.set_state(TradingState.REDUCING, 0, "test")
    assert h.order("BUY", "1").reason == "REDUCING_ONLY"
    assert h.order("SELL", "6").reason == "REDUCING_ONLY"  # would flip to short: not a reduction
    assert h.order("SELL", "5").state is OrderState.SUBMITTED


def test_two_closing_orders_for_the_whole_position_are_not_both_reductions():
    desk = Desk()
    desk.positions["TEST"] = Decimal(5)
    desk.engine.set_state(TradingState.REDUCING, 0, "test")
    desk.rest("SELL", "3", limit="101.00")
    assert desk.check("SELL", "3") == "REDUCING_ONLY"  # 3 + 3 would leave a short of 1
    assert desk.check("SELL", "2") is None


def test_reduce_only_order_that_would_open_is_denied():
    desk = Desk()
    assert desk.check("SELL", "1", reduce_only=True) == "REDUCING_ONLY"
    desk.positions["TEST"] = Decimal(1)
    assert desk.check("SELL", "1", reduce_only=True) is None


def test_halted_denies_even_a_closing_order():
    desk = Desk()
    desk.positions["TEST"] = Decimal(5)
    desk.engine.set_state(TradingState.HALTED, 0, "test")
    assert desk.check("SELL", "5") == "TRADING_HALTED"


def test_first_failing_check_in_the_documented_order_wins():
    desk = Desk(RiskLimits(max_order_qty=Decimal(10), price_band_pct=Decimal(5), max_position_qty=Decimal(5)))
    assert desk.check("BUY", "11", limit="50.00") == "MAX_ORDER_QTY"  # before PRICE_BAND and MAX_POSITION
    assert desk.check("BUY", "6", limit="50.00") == "PRICE_BAND"       # before MAX_POSITION
    desk.engine.set_state(TradingState.HALTED, 0, "test")
    assert desk.check("BUY", "1.5", symbol="NOPE") == "TRADING_HALTED"  # state before symbol and grid


def test_equity_fraction_order_is_sized_at_the_last_price_for_the_limits():
    desk = Desk(RiskLimits(max_order_qty=Decimal(50)), cash="10000")
    assert desk.check("BUY", None, fraction="0.5") is None   # 5,000 / 100 = 50 units
    assert desk.check("BUY", None, fraction="0.51") == "MAX_ORDER_QTY"
    del desk.prices["TEST"]
    assert desk.check("BUY", None, fraction="0.1") == "NO_PRICE"


# -- the account binds its bots --------------------------------------------------------------------

def test_account_gross_exposure_binds_two_bots_together():
    account = AccountRisk(AccountLimits(max_gross_exposure=Decimal(1500)))
    one, two = Desk(account=account, bot_id="one"), Desk(account=account, bot_id="two")
    one.positions["TEST"] = Decimal(10)  # bot one holds 1,000 of exposure
    assert two.check("BUY", "6") == "ACCOUNT:MAX_GROSS_EXPOSURE"
    assert two.check("BUY", "5") is None


def test_account_open_orders_cap_binds_two_bots_together():
    account = AccountRisk(AccountLimits(max_open_orders=2))
    one, two = Desk(account=account, bot_id="one"), Desk(account=account, bot_id="two")
    one.rest("BUY", "1", limit="99.00")
    two.rest("BUY", "1", limit="99.00")
    assert one.check("BUY", "1", limit="98.00") == "ACCOUNT:MAX_OPEN_ORDERS"


def test_account_halt_stops_every_bot():
    account = AccountRisk()
    one, two = Desk(account=account, bot_id="one"), Desk(account=account, bot_id="two")
    account.set_state(TradingState.HALTED, 0, "test")
    assert one.check("BUY", "1") == two.check("BUY", "1") == "ACCOUNT:TRADING_HALTED"


def test_account_daily_loss_lets_only_reductions_through_for_every_bot():
    account = AccountRisk(AccountLimits(daily_loss_limit=Decimal(500)))
    desk = Desk(account=account)
    desk.positions["TEST"] = Decimal(5)
    account.on_equity(Decimal(10_000), desk.clock.ts)
    account.on_equity(Decimal(9_500), desk.clock.ts + 1)
    assert account.state is TradingState.REDUCING
    assert desk.check("BUY", "1") == "ACCOUNT:REDUCING_ONLY"
    assert desk.check("SELL", "5") is None


def test_one_bot_id_cannot_have_two_engines_in_an_account():
    account = AccountRisk()
    Desk(account=account, bot_id="one")
    with pytest.raises(ValueError, match="one"):
        Desk(account=account, bot_id="one")


# -- monitors --------------------------------------------------------------------------------------

def test_daily_loss_limit_switches_bot_to_reducing():
    risk = Desk(RiskLimits(daily_loss_limit=Decimal(100))).engine
    risk.on_equity(Decimal(10_000), 0)
    risk.on_equity(Decimal(9_901), 1)
    assert risk.state is TradingState.ACTIVE
    risk.on_equity(Decimal(9_900), 2)
    assert risk.state is TradingState.REDUCING
    assert risk.state_changes == [StateChange(2, TradingState.ACTIVE, TradingState.REDUCING, "DAILY_LOSS", "bot1")]


def test_new_utc_day_ends_a_daily_loss_reducing_state():
    risk = Desk(RiskLimits(daily_loss_limit=Decimal(100))).engine
    risk.on_equity(Decimal(10_000), DAY - 2)
    risk.on_equity(Decimal(9_900), DAY - 1)
    risk.on_equity(Decimal(9_900), DAY)  # midnight UTC: today's loss starts from 9,900
    assert risk.state is TradingState.ACTIVE and risk.state_changes[-1].reason == "NEW_DAY"


def test_drawdown_halts_and_new_day_does_not_resume():
    risk = Desk(RiskLimits(max_drawdown_pct=Decimal(10))).engine
    risk.on_equity(Decimal(10_000), 0)
    risk.on_equity(Decimal(12_000), 1)
    risk.on_equity(Decimal(10_800), 2)  # exactly 10 % below the high-water mark
    assert risk.state is TradingState.HALTED and risk.state_changes[-1].reason == "MAX_DRAWDOWN"
    risk.on_equity(Decimal(12_500), DAY + 1)
    assert risk.state is TradingState.HALTED


def test_resume_after_a_halt_counts_the_drawdown_from_there():
    risk = Desk(RiskLimits(max_drawdown_pct=Decimal(10))).engine
    risk.on_equity(Decimal(10_000), 0)
    risk.on_equity(Decimal(9_000), 1)
    risk.resume(2, "alice")
    risk.on_equity(Decimal(8_500), 3)  # 15 % below the old peak, 5.6 % below the resume point
    assert risk.state is TradingState.ACTIVE and risk.state_changes[-1].reason == "RESUMED_BY:alice"


def test_state_change_listeners_are_told():
    risk = Desk(RiskLimits(max_drawdown_pct=Decimal(10))).engine
    heard: list[StateChange] = []
    risk.listeners.append(heard.append)
    risk.on_equity(Decimal(10_000), 0)
    risk.on_equity(Decimal(8_000), 1)
    assert heard == risk.state_changes and heard[0].new is TradingState.HALTED


# -- kill switch -----------------------------------------------------------------------------------

def test_kill_switch_cancels_flattens_and_halts():
    h, risk = armed(RiskLimits())
    fill(h, "BUY", "5")
    resting = h.order("BUY", "1", OrderType.LIMIT, limit="90.00")
    switch = KillSwitch(risk.account, h.clock)
    switch.register("bot1", h.oms.cancel_all, lambda: h.order("SELL", "5"))

    switch.trip("bot", "operator", bot_id="bot1")
    h.bar("100.00", "100.00", "100.00", "100.00")

    assert resting.state is OrderState.CANCELED
    assert h.portfolio.positions["TEST"].qty == 0
    assert risk.state is TradingState.HALTED and risk.account.state is TradingState.ACTIVE
    assert [c.new for c in risk.state_changes] == [TradingState.REDUCING, TradingState.HALTED]
    assert h.order("BUY", "1").reason == "TRADING_HALTED"


def test_kill_switch_flatten_passes_even_with_the_rate_window_full():
    desk = Desk(RiskLimits(max_orders_per_second=1))
    desk.positions["TEST"] = Decimal(5)
    assert desk.check("BUY", "1") is None  # the window is now full
    flattened: list[str | None] = []
    switch = KillSwitch(desk.engine.account, desk.clock)
    switch.register("bot1", desk.working.clear, lambda: flattened.append(desk.check("SELL", "5")))
    switch.trip("bot", "runaway orders", bot_id="bot1")
    assert flattened == [None] and desk.engine.state is TradingState.HALTED


def test_account_kill_switch_halts_every_bot_even_if_one_fails_to_cancel():
    account = AccountRisk()
    one, two = Desk(account=account, bot_id="one"), Desk(account=account, bot_id="two")
    flattened: list[str] = []

    def broken() -> None:
        raise ConnectionError("venue unreachable")

    switch = KillSwitch(account, one.clock)
    switch.register("one", broken, lambda: flattened.append("one"))
    switch.register("two", two.working.clear, lambda: flattened.append("two"))
    with pytest.raises(ExceptionGroup) as failed:
        switch.trip("account", "operator")
    assert [type(e) for e in failed.value.exceptions] == [ConnectionError]
    assert flattened == ["two"]
    assert one.engine.state is two.engine.state is account.state is TradingState.HALTED


# -- configuration ---------------------------------------------------------------------------------

def load(tmp_path, text: str):
    path = tmp_path / "risk.yaml"
    path.write_text(text)
    return load_risk_config(path)


def test_invalid_limit_names_its_field(tmp_path):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, "bots:\n  x:\n    max_order_qty: -5\n")
    assert err.value.field == "bots.x.max_order_qty"


@pytest.mark.parametrize("text, field", [
    ("default_bot:\n  max_order_quantity: 5\n", "default_bot.max_order_quantity"),
    ("default_bot:\n  market_hours: ['13:30-20:00', '20:00-13:30']\n", "default_bot.market_hours.1"),
    ("default_bot:\n  market_hours: ['9:30-16:00']\n", "default_bot.market_hours.0"),
    ("default_bot:\n  market_weekdays: [MON, FUNDAY]\n", "default_bot.market_weekdays.1"),
    ("account:\n  max_open_orders: 2.5\n", "account.max_open_orders"),
    ("account:\n  max_open_orders: yes\n", "account.max_open_orders"),
    ("account:\n  max_drawdown_pct: 120\n", "account.max_drawdown_pct"),
    ("default_bot:\n  allowed_symbols: []\n", "default_bot.allowed_symbols"),
    ("bots: [a, b]\n", "bots"),
], ids=["unknown", "window-backwards", "window-format", "weekday", "count-fraction", "count-bool", "pct",
        "empty-list", "bots-not-mapping"])
def test_bad_config_value_is_refused_naming_its_field(tmp_path, text, field):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text)
    assert err.value.field == field


def test_missing_file_and_bad_yaml_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_risk_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(tmp_path, "bots: [unclosed\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load(tmp_path, "- just a list\n")


def test_config_values_are_exact_decimals_and_days_any_case(tmp_path):
    config = load(tmp_path, "bots:\n  a:\n    max_order_notional: 0.1\n    market_weekdays: [mon, Tue]\n")
    assert config.for_bot("a").max_order_notional == Decimal("0.1")
    assert config.for_bot("a").market_weekdays == ["MON", "TUE"]
    assert config.for_bot("other") == config.default_bot


def test_bundled_risk_configs_load():
    default = load_risk_config(ROOT / "config" / "risk" / "default.yaml")
    two = load_risk_config(ROOT / "config" / "risk" / "example_two_bots.yaml")
    assert default.default_bot.max_order_qty is not None
    assert len(two.bots) == 2 and all(b.capital_allocation for b in two.bots.values())


def test_a_market_exit_is_not_trapped_by_the_band_but_a_market_entry_is():
    """A real crash past the band around a lagging median: the long may still be sold at market
    (refusing to close is the larger risk; spikes never reach fills, the tick guard drops them),
    while an order that opens or grows exposure there is denied."""
    desk = Desk(RiskLimits(price_band_pct=Decimal(5)), reference={"TEST": PRICE})
    desk.positions["TEST"] = Decimal(3)
    desk.prices["TEST"] = Decimal("80.00")
    assert desk.check("SELL", "3") is None            # closes the long
    assert desk.check("BUY", "1") == "PRICE_BAND"     # grows it
    assert desk.check("SELL", "5") == "PRICE_BAND"    # flips it short: not a pure reduction
    assert desk.check("SELL", "3", limit="79.00") == "PRICE_BAND"  # a limit exit: its price is banded
