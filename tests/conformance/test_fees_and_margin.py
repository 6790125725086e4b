"""Conformance cases for fees in any currency and margin accounts (issue 14), through the broker
contract: a PaperAdapter in front of a simulated venue that charges fees like a Binance account
(in the coin bought, or in BNB) or trades on margin, with the real OrderManager as the sink.

What must hold at every venue, and is checked here for the paper venue:
- a fee in the base asset: the bot's position equals the venue's wallet, the fee's value is in
  the bot's fees, and the whole position can be sold (no dust, no INSUFFICIENT_FUNDS);
- a fee in a third currency: the bot books the same value in the account currency as the venue,
  and keeps the amount as charged;
- an order without free margin is rejected by the venue and nothing is booked;
- a stop-out closes the position at the venue; the bot's books follow it (the venue's own order
  reaches the engine as an external one) and positions agree.
Other adapters join by adding the same cases against their fakes (binance charges fees in the
base asset and in BNB; MT5 refuses with "no money" and stops out).
"""

from __future__ import annotations

from decimal import Decimal

from brokers.base import RejectReason
from brokers.paper.adapter import PaperAdapter
from brokers.paper.venue import SimulatedVenue
from engine.clock import SimulatedClock
from engine.instrument import AssetClass, Instrument
from engine.money import ConversionRates, FeeModel
from engine.oms import OrderManager
from engine.orders import Order, OrderSide, OrderState, OrderType
from engine.portfolio import Portfolio

BTC = Instrument("BTC/USDT", asset_class=AssetClass.CRYPTO, price_increment=Decimal("0.01"),
                 size_increment=Decimal("0.00001"), min_qty=Decimal("0.00001"), quote_currency="USDT")
EURUSD = Instrument("EURUSD", asset_class=AssetClass.FX, price_increment=Decimal("0.00001"),
                    size_increment=Decimal("0.01"), min_qty=Decimal("0.01"), multiplier=Decimal(100_000),
                    leverage=Decimal(100))
T0 = 1_700_000_000_000_000_000


class Bot:
    """An OMS with its own books on a paper adapter, as a live bot runs."""

    def __init__(self, venue: SimulatedVenue, instrument: Instrument, cash: str,
                 rates: ConversionRates | None = None) -> None:
        self.instrument = instrument
        self.adapter = PaperAdapter(venue, currency=instrument.quote_currency)
        self.clock = SimulatedClock(T0)
        self.portfolio = Portfolio.for_instrument(Decimal(cash), instrument, rates=rates)
        self.oms = OrderManager("bot", self.clock, self.adapter, self.portfolio, {instrument.symbol: instrument})

    def market(self, side: OrderSide, qty: Decimal | str) -> Order:
        order = Order(self.oms.next_client_order_id(), "bot", self.instrument.symbol, side, OrderType.MARKET,
                      Decimal(qty), self.clock.ts)
        self.oms.submit(order)
        return order

    def quote(self, bid: str, ask: str) -> None:
        self.clock.ts += 10**9
        self.adapter.on_tick(Decimal(bid), Decimal(ask), ts=self.clock.ts)

    @property
    def qty(self) -> Decimal:
        return self.portfolio.positions[self.instrument.symbol].quantity

    def venue_qty(self) -> Decimal:
        held = {p.symbol: p.qty for p in self.adapter.positions()}
        return held.get(self.instrument.symbol, Decimal(0))


def test_a_fee_in_the_coin_bought_leaves_the_bot_holding_what_the_wallet_holds():
    venue = SimulatedVenue(BTC, Decimal(10_000), FeeModel(Decimal("0.001")), fee_asset="base")
    bot = Bot(venue, BTC, "10000")
    buy = bot.market(OrderSide.BUY, "0.01")
    bot.quote("29999.99", "30000.00")
    # fee 0.1 % of 300.00 = 0.30 USDT = 0.00001 BTC at 30,000: the wallet receives 0.00999
    assert buy.state is OrderState.FILLED
    assert bot.oms.fills[0].fee_currency == "BTC" and bot.oms.fills[0].fee_native == Decimal("0.00001")
    assert bot.qty == bot.venue_qty() == Decimal("0.00999")
    assert bot.portfolio.fees_raw == BTC.scales.cash_raw(Decimal("0.30"))
    sell = bot.market(OrderSide.SELL, bot.qty)  # the whole position sells: no dust, no missing coin
    bot.quote("30000.00", "30000.01")
    assert sell.state is OrderState.FILLED and bot.qty == bot.venue_qty() == 0
    assert bot.portfolio.cash_raw == venue.account.cash_raw


def test_a_fee_in_bnb_is_valued_like_the_venue_values_it():
    rates = ConversionRates()
    rates.update("BNB", "USDT", Decimal("300"), T0)
    venue = SimulatedVenue(BTC, Decimal(10_000), FeeModel(Decimal("0.001")), rates=rates, fee_asset="BNB")
    bot = Bot(venue, BTC, "10000", rates=rates)
    bot.market(OrderSide.BUY, "0.01")
    bot.quote("29999.99", "30000.00")
    # fee 0.1 % of 300.00 = 0.30 USDT, charged as 0.30 / 300 = 0.001 BNB; the coin bought is whole
    fill = bot.oms.fills[0]
    assert (fill.fee_currency, fill.fee_native, fill.fee) == ("BNB", Decimal("0.001"), Decimal("0.3000000"))
    assert bot.qty == bot.venue_qty() == Decimal("0.01")
    assert bot.portfolio.cash_raw == venue.account.cash_raw == BTC.scales.cash_raw(Decimal("9699.70"))
    assert bot.portfolio.fees_native == {"BNB": Decimal("0.001")}


def test_an_order_without_free_margin_is_rejected_and_nothing_is_booked():
    venue = SimulatedVenue(EURUSD, Decimal(1_000))
    bot = Bot(venue, EURUSD, "1000")
    # 1 lot at 1.10000 needs 110,000 / 100 = 1,100.00 of margin: more than the 1,000.00 there is
    order = bot.market(OrderSide.BUY, "1")
    bot.quote("1.09999", "1.10000")
    assert order.state is OrderState.REJECTED and order.reason == RejectReason.INSUFFICIENT_FUNDS
    assert bot.oms.fills == [] and bot.qty == bot.venue_qty() == 0 and bot.portfolio.cash == Decimal(1000)


def test_a_stop_out_at_the_venue_reaches_the_bots_books():
    venue = SimulatedVenue(EURUSD, Decimal(1_000), stop_out_level=Decimal("0.5"))
    bot = Bot(venue, EURUSD, "1000")
    bot.market(OrderSide.BUY, "0.5")
    bot.quote("1.09999", "1.10000")
    assert bot.qty == bot.venue_qty() == Decimal("0.5")
    bot.quote("1.09000", "1.09001")       # equity 1,000 - 0.01 * 50,000 = 500 vs margin 545: holds
    assert bot.qty == Decimal("0.5")
    bot.quote("1.08500", "1.08501")       # equity 250.00 <= 0.5 * 542.50: stopped out at the bid
    assert bot.venue_qty() == bot.qty == 0
    stop_out = bot.oms.orders["STOPOUT-1"]
    assert stop_out.state is OrderState.FILLED and stop_out in bot.oms.external
    # realized (1.08500 - 1.10000) * 50,000 = -750.00
    assert bot.portfolio.cash == Decimal(250) and bot.portfolio.cash_raw == venue.account.cash_raw
