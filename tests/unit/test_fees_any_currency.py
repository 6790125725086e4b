"""Fees in any currency (issue 14, item 3): a fee in the coin bought, a fee in BNB, a fee in the
quote currency given as charged. Every figure is computed by hand in the comments.

BTC/USDT here: price grid 0.01 (price_dp 2), size grid 0.00001 (qty_dp 5), so cash counts units
of 10^-7 USDT (cash_dp = 2 + 5) and every notional is exact.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.clock import SimulatedClock
from engine.errors import ConfigError
from engine.instrument import AssetClass, Instrument
from engine.money import ConversionRates
from engine.oms import OrderManager
from engine.orders import Fill, Order, OrderSide, OrderState, OrderType
from engine.portfolio import Portfolio
from engine.store.db import make_engine, upgrade
from engine.store.journal import SqlJournal

BTC = Instrument("BTC/USDT", venue="BINANCE", asset_class=AssetClass.CRYPTO, price_increment=Decimal("0.01"),
                 size_increment=Decimal("0.00001"), quote_currency="USDT")
S = BTC.scales
T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z


def cash(value: str) -> int:
    return S.cash_raw(Decimal(value))


def fill(eid: str, side: OrderSide, qty: str, price: str, *, fee: str = "0", fee_currency: str = "",
         fee_native: str = "0", ts: int = T0, cid: str = "bot-00000001") -> Fill:
    native = Decimal(fee_native)
    dp = max(0, -int(native.normalize().as_tuple().exponent))  # type: ignore[arg-type]
    return Fill(eid, cid, BTC.symbol, side, int(Decimal(qty).scaleb(S.qty_dp)), int(Decimal(price).scaleb(S.price_dp)),
                cash(fee), S.qty_dp, S.price_dp, S.cash_dp, ts,
                fee_currency=fee_currency, fee_native_raw=int(native.scaleb(dp)), fee_native_dp=dp)


def test_a_fee_in_the_base_asset_reduces_the_position_then_the_sell_realizes_it():
    p = Portfolio.for_instrument(Decimal("10000"), BTC)
    # buy 0.01 BTC at 30,000.00, fee 0.00001 BTC taken from the coin bought:
    #   the wallet receives 0.01 - 0.00001 = 0.00999 BTC; cash pays 0.01 * 30,000 = 300.00
    #   the fee is worth 0.00001 * 30,000 = 0.30 USDT
    p.book_fill(BTC, fill("e1", OrderSide.BUY, "0.01", "30000.00", fee_currency="BTC", fee_native="0.00001"))
    position = p.positions["BTC/USDT"]
    assert position.quantity == Decimal("0.00999")
    assert p.cash == Decimal("9700.0000000")
    assert p.fees_raw == cash("0.30") and p.fees_native == {"BTC": Decimal("0.00001")}
    # equity at 30,000: 9,700 + 0.00999 * 30,000 = 9,999.70 (the fee is the only loss)
    assert p.equity_raw({"BTC/USDT": 3_000_000}) == cash("9999.70")
    # sell all 0.00999 at 31,000.00, fee 0.31 USDT in the cash currency:
    #   cash 9,700 + 0.00999 * 31,000 - 0.31 = 9,700 + 309.69 - 0.31 = 10,009.38
    #   realized (31,000 - 30,000) * 0.00999 = 9.99 - 0.30 (entry, in BTC) - 0.31 (exit) = 9.38
    closed = p.book_fill(BTC, fill("e2", OrderSide.SELL, "0.00999", "31000.00", fee="0.31"))
    assert position.qty == 0
    assert p.cash == Decimal("10009.3800000")
    assert [t.pnl for t in closed] == [cash("9.38")] and [t.fees for t in closed] == [cash("0.61")]
    assert p.realized_pnl_raw == cash("9.38") == p.cash_raw - p.initial_cash_raw
    assert p.fees_raw == cash("0.61")


def test_a_fee_in_the_base_asset_on_a_sell_takes_more_than_the_quantity_sold():
    p = Portfolio.for_instrument(Decimal("10000"), BTC)
    p.book_fill(BTC, fill("e1", OrderSide.BUY, "0.01", "30000.00"))
    # sell 0.005 with a fee of 0.00001 BTC: the wallet gives 0.00501, cash receives 0.005 * 31,000 = 155.00
    p.book_fill(BTC, fill("e2", OrderSide.SELL, "0.005", "31000.00", fee_currency="BTC", fee_native="0.00001"))
    assert p.positions["BTC/USDT"].quantity == Decimal("0.00499")
    assert p.cash == Decimal("9855")                          # 10,000 - 300 + 155
    # realized: 0.00501 closed at +1,000 = 5.01, less the fee's value 0.00001 * 31,000 = 0.31 -> 4.70
    assert p.realized_pnl_raw == cash("4.70")


def test_a_bnb_fee_is_valued_at_the_rate_of_the_fill_time():
    rates = ConversionRates()
    rates.update("BNB", "USDT", Decimal("250.00"), T0 - 60 * 10**9)
    rates.update("BNB", "USDT", Decimal("300.00"), T0)        # the rate at the fill's time
    rates.update("BNB", "USDT", Decimal("400.00"), T0 + 1)    # later: not used (no look-ahead)
    p = Portfolio.for_instrument(Decimal("10000"), BTC, rates=rates)
    # buy 0.01 BTC at 30,000.00, fee 0.00075 BNB; 0.00075 BNB * 300 USDT/BNB = 0.225 USDT
    booked = p.valued(BTC, fill("e1", OrderSide.BUY, "0.01", "30000.00", fee_currency="BNB", fee_native="0.00075"))
    assert booked.fee == Decimal("0.2250000")
    p.book_fill(BTC, booked)
    assert p.positions["BTC/USDT"].quantity == Decimal("0.01")  # the coin bought is not touched
    assert p.cash == Decimal("9699.7750000")                     # 10,000 - 300 - 0.225
    assert p.fees_native == {"BNB": Decimal("0.00075")} and p.fees_raw == cash("0.225")
    # round trip at the same price: the loss is exactly the fee
    closed = p.book_fill(BTC, fill("e2", OrderSide.SELL, "0.01", "30000.00"))
    assert [t.pnl for t in closed] == [-cash("0.225")]


def test_a_fee_in_the_cash_currency_given_as_charged_is_booked_to_the_cash_unit():
    p = Portfolio.for_instrument(Decimal("10000"), BTC)
    # 0.1 % of 300.00 = 0.30000000 USDT as binance reports it (8 decimals): 0.3000000 at cash_dp 7
    p.book_fill(BTC, fill("e1", OrderSide.BUY, "0.01", "30000.00", fee_currency="USDT", fee_native="0.30000000"))
    assert p.cash == Decimal("9699.7000000") and p.fees_native == {"USDT": Decimal("0.3")}


def test_a_missing_rate_refuses_the_fill_naming_the_rate_and_books_nothing():
    rates = ConversionRates()
    rates.update("BNB", "USDT", Decimal("300.00"), T0 + 1)   # only after the fill: no rate at its time
    p = Portfolio.for_instrument(Decimal("10000"), BTC, rates=rates)
    oms = OrderManager("bot", SimulatedClock(), _NoVenue(), p, {BTC.symbol: BTC})
    order = Order("bot-00000001", "bot", BTC.symbol, OrderSide.BUY, OrderType.MARKET, Decimal("0.01"), 0)
    oms.submit(order)
    with pytest.raises(ConfigError) as refused:
        oms.on_fill(order, fill("e1", OrderSide.BUY, "0.01", "30000.00", fee_currency="BNB", fee_native="0.00075"), -1)
    assert refused.value.field == "conversion_rate"
    assert "no BNB/USDT rate at 2023-11-14T22:13:20+00:00 to value a fee" in str(refused.value)
    assert p.cash == Decimal("10000") and p.positions["BTC/USDT"].qty == 0 and p.fees_raw == 0
    assert oms.fills == [] and order.state is OrderState.PENDING_SUBMIT and order.filled_qty == 0


def test_a_portfolio_without_rates_refuses_a_third_currency_fee():
    p = Portfolio.for_instrument(Decimal("10000"), BTC)
    with pytest.raises(ConfigError) as refused:
        p.book_fill(BTC, fill("e1", OrderSide.BUY, "0.01", "30000.00", fee_currency="BNB", fee_native="0.00075"))
    assert refused.value.field == "conversion_rate" and p.cash == Decimal("10000")


def test_a_base_fee_finer_than_the_quantity_grid_or_larger_than_the_fill_is_refused():
    p = Portfolio.for_instrument(Decimal("10000"), BTC)
    with pytest.raises(ConfigError) as finer:  # 0.000001 BTC is below the 5-decimal quantity scale
        p.book_fill(BTC, fill("e1", OrderSide.BUY, "0.01", "30000.00", fee_currency="BTC", fee_native="0.000001"))
    assert finer.value.field == "fee_native_dp"
    with pytest.raises(ConfigError) as larger:
        p.book_fill(BTC, fill("e1", OrderSide.BUY, "0.01", "30000.00", fee_currency="BTC", fee_native="0.01"))
    assert larger.value.field == "fee_native_raw"
    assert p.cash == Decimal("10000") and p.positions["BTC/USDT"].qty == 0 and p.fees_raw == 0


def test_the_oms_journals_the_fee_as_charged_and_a_restart_replays_it_without_the_rate(database_url):
    upgrade(database_url)  # migration 0009 adds fills.fee_currency and fills.fee_native
    engine = make_engine(database_url)
    rates = ConversionRates()
    rates.update("BNB", "USDT", Decimal("300.00"), T0)
    p = Portfolio.for_instrument(Decimal("10000"), BTC, rates=rates)
    oms = OrderManager("bot", SimulatedClock(), _NoVenue(), p, {BTC.symbol: BTC},
                       journal=SqlJournal(engine, "bot", "B"))
    buy = Order("bot-00000001", "bot", BTC.symbol, OrderSide.BUY, OrderType.MARKET, Decimal("0.01"), 0)
    sell = Order("bot-00000002", "bot", BTC.symbol, OrderSide.SELL, OrderType.MARKET, Decimal("0.00999"), 0)
    oms.submit(buy)
    oms.on_fill(buy, fill("e1", OrderSide.BUY, "0.01", "30000.00", fee_currency="BTC", fee_native="0.00001"), -1)
    oms.submit(sell)
    oms.on_fill(sell, fill("e2", OrderSide.SELL, "0.00999", "31000.00", fee_currency="BNB", fee_native="0.001",
                           cid="bot-00000002", ts=T0 + 5), -1)
    oms.journal.flush()  # type: ignore[union-attr]

    stored = SqlJournal(engine, "bot", "B").load({BTC.symbol: BTC})
    assert [(f.fee_currency, f.fee_native, f.fee) for f in stored.fills] == [
        ("BTC", Decimal("0.00001"), Decimal("0.3000000")),   # 0.00001 BTC at 30,000
        ("BNB", Decimal("0.001"), Decimal("0.3000000")),     # 0.001 BNB at 300 (the rate at T0 + 5)
    ]
    replay = Portfolio.for_instrument(Decimal("10000"), BTC)  # no rates: the stored value is used
    rebuilt = OrderManager("bot", SimulatedClock(), _NoVenue(), replay, {BTC.symbol: BTC}, connect=False)
    rebuilt.restore(stored.orders, stored.fills, stored.next_order_seq)
    assert replay.cash_raw == p.cash_raw and replay.realized_pnl_raw == p.realized_pnl_raw == cash("9.39")
    assert replay.positions[BTC.symbol].qty == 0 and replay.fees_native == p.fees_native


class _NoVenue:
    """An adapter that accepts everything and reports nothing: fills are driven by the test."""

    def connect(self, sink) -> None:
        pass

    def submit(self, order: Order) -> None:
        pass

    def cancel(self, order: Order) -> None:
        pass


def test_an_instrument_with_the_assets_decimals_books_a_fee_finer_than_the_lot_step():
    fine = Instrument("BTC/USDT", asset_class=AssetClass.CRYPTO, price_increment=Decimal("0.01"),
                      size_increment=Decimal("0.00001"), quote_currency="USDT", asset_dp=8)
    s = fine.scales  # quantities at 8 decimals, orders still on the 0.00001 grid (qty_step 1000)
    assert (s.qty_dp, s.qty_step, s.cash_dp) == (8, 1000, 10)
    p = Portfolio.for_instrument(Decimal("10000"), fine)
    # buy 0.00123 BTC at 30,000.00 with 0.1 % = 0.00000123 BTC of fee: the wallet holds 0.00122877
    f = Fill("e1", "c1", fine.symbol, OrderSide.BUY, 123_000, 3_000_000, 0, 8, 2, 10, T0,
             fee_currency="BTC", fee_native_raw=123, fee_native_dp=8)
    p.book_fill(fine, f)
    assert p.positions[fine.symbol].quantity == Decimal("0.00122877")
    assert p.cash == Decimal("9963.1")                       # 10,000 - 0.00123 * 30,000 = 36.90
    assert s.cash(p.fees_raw) == Decimal("0.0369")           # 0.00000123 * 30,000
