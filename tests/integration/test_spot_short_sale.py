"""On a spot market a bot sells only what it holds (found at stop 28).

A spot account cannot be short: a sell beyond the bot's own coins is filled from whatever else the
account holds. Before, a Binance spot bot holding no BTC, on an account where the trader keeps 0.5
BTC of their own, sent SELL 0.01 BTC (a long_short rule's short entry): the venue sold 0.01 of the
trader's coins, and the bot's books showed a short of -0.01 BTC that a spot account cannot hold.
Now the OMS refuses such a sell (DENIED SHORT_SALE) before any venue sees it, for every bot,
with or without risk limits: a sell may take the bot's position less what its other working
sells already take; a protective sell (a stop, a take-profit, a trailing stop: one of an OCO
fills) the position alone; a bracket's child is sized to its entry's fill by its adapter; an
equity-fraction sell (sized from equity, not from the coins held: a short entry) not at all.
Futures, margin FX and shortable stocks are unaffected (Instrument.shortable).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Iterator

import pytest

pytest.importorskip("ccxt")

from engine.market import Tick  # noqa: E402
from engine.oms import SHORT_SALE  # noqa: E402
from engine.orders import Order, OrderSide, OrderState, OrderType  # noqa: E402
from tests.fakes.binance_fake import BinanceFake  # noqa: E402
from tests.integration.test_ccxt_venue_behaviour import SYMBOL, adapter_of, make_oms, order  # noqa: E402

D = Decimal


@pytest.fixture
def fake() -> Iterator[BinanceFake]:
    fake = BinanceFake().start()
    fake.balances.update(BTC=D("0.5"), ETH=D(0), BNB=D(0))   # the trader's own 0.5 BTC on the account
    yield fake
    fake.stop()


def posted(fake: BinanceFake) -> int:
    return sum(1 for request in fake.requests if request == ("POST", "/api/v3/order"))


def spot_bot(fake: BinanceFake):
    oms = make_oms(fake)
    adapter_of(oms).on_tick(Tick(SYMBOL, 1, 39999.99, 40000.00, 40000.00))
    return oms


def test_a_spot_bot_holding_nothing_cannot_sell_the_accounts_other_coins(fake):
    oms = spot_bot(fake)
    assert not oms.instruments[SYMBOL].shortable
    short = order(oms, "SELL", qty="0.01")
    oms.submit(short)
    assert short.state is OrderState.DENIED and short.reason == SHORT_SALE
    assert posted(fake) == 0 and fake.balances["BTC"] == D("0.5")        # the trader's coins untouched
    assert oms.portfolio.positions[SYMBOL].qty == 0
    fraction = order(oms, "SELL", qty=None, fraction="0.5")                # sized by the venue: nothing to sell
    oms.submit(fraction)
    assert fraction.state is OrderState.DENIED and fraction.reason == SHORT_SALE


def test_a_spot_bot_sells_what_it_bought_and_no_more(fake):
    oms = spot_bot(fake)
    buy = order(oms, "BUY", qty="0.02")
    oms.submit(buy)
    assert buy.state is OrderState.FILLED
    held = oms.portfolio.positions[SYMBOL].quantity                         # 0.02 less a fee taken in BTC, if any
    by_equity = order(oms, "SELL", qty=None, fraction="1")                  # sized from equity: beyond the coins
    oms.submit(by_equity)
    assert by_equity.state is OrderState.DENIED and by_equity.reason == SHORT_SALE
    too_much = order(oms, "SELL", qty=str(held + D("0.01")))
    oms.submit(too_much)
    assert too_much.state is OrderState.DENIED and too_much.reason == SHORT_SALE
    resting = order(oms, "SELL", OrderType.LIMIT, qty=str(held), limit="45000.00")   # takes all it holds
    oms.submit(resting)
    assert resting.state is OrderState.ACCEPTED
    more = order(oms, "SELL", qty="0.001")                                  # nothing left once the limit fills
    oms.submit(more)
    assert more.state is OrderState.DENIED and more.reason == SHORT_SALE
    oms.cancel(resting)
    close = order(oms, "SELL", qty=str(held))
    oms.submit(close)
    assert close.state is OrderState.FILLED and oms.portfolio.positions[SYMBOL].qty == 0


def test_a_protective_sell_is_held_to_the_position_alone(fake):
    oms = spot_bot(fake)
    buy = order(oms, "BUY", qty="0.02")
    oms.submit(buy)
    held = oms.portfolio.positions[SYMBOL].quantity
    stop = Order(oms.next_client_order_id(), "t", SYMBOL, OrderSide.SELL, OrderType.STOP, held, 0,
                 stop_price=D("39000.00"), trail_percent=D("2"), tag="sl")  # a trailing stop: protective, no parent
    oms.submit(stop)
    assert stop.state is not OrderState.DENIED, stop.reason
    bigger = Order(oms.next_client_order_id(), "t", SYMBOL, OrderSide.SELL, OrderType.STOP, held * 2, 0,
                   stop_price=D("39000.00"), trail_percent=D("2"), tag="sl")
    oms.submit(bigger)
    assert bigger.state is OrderState.DENIED and bigger.reason == SHORT_SALE


def test_a_futures_bot_may_still_open_a_short():
    from tests.fakes.binance_futures_fake import BinanceFuturesFake
    from tests.integration.test_ccxt_futures import BTC, make_oms as futures_oms

    fake = BinanceFuturesFake().start()
    try:
        oms = futures_oms(fake, leverage=2)
        assert oms.instruments[BTC].shortable
        short = Order(oms.next_client_order_id(), "t", BTC, OrderSide.SELL, OrderType.MARKET, D("0.010"), 0)
        oms.submit(short)
        assert short.state is OrderState.FILLED and oms.portfolio.positions[BTC].quantity == D("-0.010")
    finally:
        fake.stop()


def test_alpaca_crypto_is_not_shortable_and_a_shortable_stock_is():
    from tests.integration.test_alpaca_adapter import Venue

    venue = Venue()
    try:
        instruments = venue.adapter.instruments()
        assert not instruments["BTC/USD"].shortable and instruments["AAPL"].shortable
    finally:
        venue.close()


def test_a_kill_flattens_at_once_while_the_cancel_of_a_resting_sell_is_pending():
    """Alpaca's cancels are asynchronous (pending_cancel): a kill cancels a resting sell and sends
    its reduce-only flatten at once. The flatten is held to the position alone, not to the sell
    whose cancel it asked for; any other sell still counts it."""
    pytest.importorskip("alpaca")
    from brokers.alpaca.adapter import AlpacaAdapter
    from engine.clock import LiveClock
    from engine.oms import OrderManager
    from engine.portfolio import Portfolio
    from tests.fakes.alpaca_fake import KEY, SECRET, FakeAlpaca, adapter_settled
    from tests.integration.test_alpaca_adapter import wait_until

    fake = FakeAlpaca(cash="100000")
    fake.add_asset("BTC/USD", "50000", asset_class="crypto", min_order_size="0.0001",
                   min_trade_increment="0.000000001", price_increment="1")
    adapter = AlpacaAdapter(KEY, SECRET, ["BTC/USD"], url_override=fake.rest_url, stream_url=fake.stream_url,
                            sleep=lambda _s: None, stream_backoff_s=(0.01, 0.05))
    try:
        oms = OrderManager("t", LiveClock(), adapter, Portfolio(D(0), 2), {})
        oms.instruments.update(adapter.instruments())          # known once connected (as the Alpaca tests do)
        oms.portfolio = Portfolio.for_instrument(D(100_000), oms.instruments["BTC/USD"])

        def send(side: str, qty: str, kind: OrderType = OrderType.MARKET, limit: str | None = None,
                 reduce_only: bool = False) -> Order:
            sent = Order(oms.next_client_order_id(), "t", "BTC/USD", OrderSide(side), kind, D(qty), 0,
                         limit_price=None if limit is None else D(limit), reduce_only=reduce_only)
            oms.submit(sent)
            wait_until(lambda: adapter_settled(fake, adapter), "the adapter to settle")
            return sent

        buy = send("BUY", "0.01")
        wait_until(lambda: buy.state is OrderState.FILLED, "the buy's fill")
        resting = send("SELL", "0.01", OrderType.LIMIT, limit="60000")
        fake.hold_cancels()
        oms.cancel(resting)                                   # pending_cancel at Alpaca: still open here
        assert resting.is_open
        other = send("SELL", "0.01")                          # not reduce-only: the resting sell still counts
        assert other.state is OrderState.DENIED and other.reason == SHORT_SALE
        flatten = send("SELL", "0.01", reduce_only=True)      # the kill's flatten: not held back
        assert flatten.state is not OrderState.DENIED, flatten.reason
    finally:
        adapter.close()
        fake.close()
