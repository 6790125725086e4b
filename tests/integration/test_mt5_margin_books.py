"""MT5 Forex symbols are margin instruments, as the terminal margins them (found at stop 27).

Before: MT5 symbols were cash instruments, so a bot's books moved cash by the full notional of
an open position and the risk gate's BUYING_POWER compared a buy's notional with the bot's cash:
with any risk limit, a bot given 10,000 could not BUY 0.10 lot of EURUSD (11,000 of notional, 110
of margin at the terminal's 1:100) while it could SELL 5 lots (550,000 of notional) unchecked.
Now a Forex symbol whose profit currency is the account's carries the account's leverage: the
books hold margin, and a buy and a sell are both checked against the bot's free margin, as the
terminal checks them. An equity-fraction order is estimated as the adapter sizes it (a fraction
of the bot's equity as exposure), not as the paper venue does (as margin: 100 times more here).
"""

from __future__ import annotations

from decimal import Decimal

from engine.clock import LiveClock
from engine.oms import OrderManager
from engine.orders import Order, OrderSide, OrderState, OrderType
from engine.risk import AccountRisk, RiskEngine, RiskLimits
from live.rates import live_portfolio
from tests.integration.test_mt5_adapter import Venue

D = Decimal


def bot(limits: RiskLimits, cash: str = "10000") -> tuple[Venue, OrderManager]:
    """A bot given `cash` on the fake terminal (10,000 USD, 1:100), its risk gate in front of the adapter."""
    venue = Venue()
    instruments = venue.adapter.instruments()
    eurusd = instruments["EURUSD"]
    oms = OrderManager("bot1", LiveClock(), venue.adapter, live_portfolio(D(cash), eurusd, venue.adapter), instruments)
    gate = RiskEngine("bot1", limits, AccountRisk(), oms.clock, instruments, last_price=lambda _s: D("1.10010"))
    gate.bind(oms)
    oms.risk = gate
    return venue, oms


def send(oms: OrderManager, side: str, qty: str | None, fraction: str | None = None) -> Order:
    order = Order(oms.next_client_order_id(), "bot1", "EURUSD", OrderSide(side), OrderType.MARKET,
                  None if qty is None else D(qty), 0, equity_fraction=None if fraction is None else D(fraction))
    oms.submit(order)
    return order


def test_a_forex_symbol_is_a_margin_instrument_at_the_accounts_leverage():
    venue = Venue()
    eurusd = venue.adapter.instruments()["EURUSD"]
    assert eurusd.on_margin and eurusd.leverage == D(100) and eurusd.fraction_sizing == "notional"


def test_a_normal_lot_passes_the_gate_and_the_books_hold_its_margin_not_its_notional():
    venue, oms = bot(RiskLimits(max_order_qty=D(10)))
    buy = send(oms, "BUY", "0.10")                       # 11,002 of notional, 110 of margin at 1:100
    assert buy.state is OrderState.FILLED, buy.reason     # was DENIED BUYING_POWER (11,002 > 10,000 cash)
    portfolio = oms.portfolio
    assert portfolio.cash == D(10_000)                   # no commission on this terminal: cash untouched
    mark = {"EURUSD": int(D("1.10000").scaleb(5))}
    assert D(portfolio.margin_used_raw(mark)).scaleb(-portfolio.cash_dp) == D("110.00")   # 0.10 x 100,000 x 1.1 / 100
    account = venue.fake.account_info()
    assert account.margin == 110.02                      # the terminal's own figure, at its open price 1.10020


def test_a_sell_is_checked_against_the_free_margin_as_a_buy_is():
    _, oms = bot(RiskLimits(max_order_qty=D(100)))
    too_big = send(oms, "SELL", "10")                    # 1,100,000 of notional: 11,000 of margin > 10,000 free
    assert too_big.state is OrderState.DENIED and too_big.reason == "INSUFFICIENT_MARGIN"   # by the gate, never sent
    fits = send(oms, "SELL", "5")                        # 5,500 of margin
    assert fits.state is OrderState.FILLED, fits.reason


def test_an_equity_fraction_order_is_estimated_as_the_adapter_sizes_it():
    """Half of the bot's 10,000 as exposure: 5,000 / (1.1001 x 100,000) = 0.045 -> 0.04 lots; the
    paper venue's rule (fraction x equity as margin) would estimate 4.54 lots and the qty cap of
    1 lot would refuse an order the adapter sends at 0.04."""
    _, oms = bot(RiskLimits(max_order_qty=D(1)))
    order = send(oms, "BUY", None, fraction="0.5")
    assert order.state is OrderState.FILLED, order.reason
    assert order.qty == D("0.04")
