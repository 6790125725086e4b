"""Protective orders that stay protective: the defects an outside probe found in issue 17
(D1, D3, D7, D12, D13), each driven through the real components as the probe drove them (real
ccxt / alpaca-py against the loopback fakes, the MT5 adapter on FakeMT5, the real OMS, emulator
and kill sequence), each asserting what the venue and the books hold in the end.

- D7: a bracket exit refused or lost after its entry filled never leaves the position bare: a
  stop the market is already through exits at once (reduce-only, an emulated stand-in journaled
  TAKEN_OVER); a lost exit the lookup proves absent is sent again under the same client id; an
  MT5 SLTP during a terminal hiccup goes on at the next poll.
- D12: an emulated take-profit's trigger on MT5 goes as IOC (a deal bounded by its price), not as
  a pending limit MT5 refuses INVALID_PRICE.
- D1: an emulated stop fires though its sibling take-profit's trigger limit rests partly filled.
- D13: USD-M futures: after a restart (OrderManager.restore) a bracket's exits are linked again.
- D3: a kill that races an entry's fill (Alpaca's asynchronous cancel) ends flat.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from brokers.ccxt.adapter import CcxtAdapter
from brokers.paper.adapter import PaperAdapter
from brokers.paper.venue import SimulatedVenue
from engine import controls
from engine.clock import LiveClock, SimulatedClock
from engine.emulation import TAKEN_OVER
from engine.instrument import Instrument
from engine.market import Tick
from engine.oms import OrderManager
from engine.orders import Order, OrderSide, OrderState, OrderType
from engine.portfolio import Portfolio
from engine.risk import AccountRisk, RiskEngine, RiskLimits, TradingState
from tests.conformance.harness_ccxt import binanceusdm_on
from tests.fakes.binance_fake import BinanceFake
from tests.fakes.binance_futures_fake import BinanceFuturesFake
from tests.integration.test_alpaca_protective import Bot, children
from tests.integration.test_ccxt_protective_futures import MARKET_ID, SYMBOL as FUTURES_SYMBOL, algo, bracket
from tests.integration.test_ccxt_venue_behaviour import make_oms
from tests.integration.test_mt5_adapter import Venue
from tests.unit.test_emulation import NoLinks, _bot, _bracket, _tick

D = Decimal
BTC = "BTC/USDT"


def _taken_over(order: Order) -> bool:
    return any((e.reason or "").startswith(TAKEN_OVER) for e in order.events)


# -- D7: ccxt spot (Binance) ------------------------------------------------------------------------------
def _spot_bracket(oms: OrderManager, entry: Order) -> tuple[Order, Order]:
    with oms.linked():
        oms.submit(entry)
        link = entry.client_order_id
        sl = Order(oms.next_client_order_id(), "t", BTC, OrderSide.SELL, OrderType.STOP, D("0.02"), 0,
                   stop_price=D("45000.00"), parent_id=link, oco_group=link, tag="sl")
        tp = Order(oms.next_client_order_id(), "t", BTC, OrderSide.SELL, OrderType.LIMIT, D("0.02"), 0,
                   limit_price=D("60000.00"), parent_id=link, oco_group=link, tag="tp")
        oms.submit(sl)
        oms.submit(tp)
    return sl, tp


def test_ccxt_a_gap_through_the_stop_is_sold_by_the_venue_then_the_rest_at_once():
    """The entry's first fill is protected at the venue (D7a); the market gaps through the stop as the
    rest fills: the venue's stop sells the first part, the adapter sells the rest at once as the stop's."""
    fake = BinanceFake().start()
    try:
        oms = make_oms(fake)
        btc0 = fake.balances["BTC"]
        entry = Order(oms.next_client_order_id(), "t", BTC, OrderSide.BUY, OrderType.LIMIT, D("0.02"), 0,
                      limit_price=D("49000.00"))
        sl, tp = _spot_bracket(oms, entry)
        fake.fill(entry.client_order_id, D("0.01"))
        oms.adapter.poll()
        fake.set_quote("BTCUSDT", D("40000.00"), D("40000.01"))  # the rest fills; the stop is passed
        oms.adapter.poll()
        oms.adapter.poll()
        assert entry.state is OrderState.FILLED
        assert sl.state is OrderState.FILLED and sl.filled_qty == D("0.02") and not _taken_over(sl)
        assert tp.state is OrderState.CANCELED
        assert oms.portfolio.positions[BTC].quantity == 0
        assert fake.balances["BTC"] - btc0 == 0  # the venue holds nothing either
    finally:
        fake.stop()


def test_ccxt_a_stop_refused_because_the_market_is_through_it_exits_at_once():
    """A limit entry that fills whole in one go at a gap through its stop: the order list is refused
    (INVALID_STOPS) and the engine's stand-in exits at once."""
    fake = BinanceFake().start()
    try:
        oms = make_oms(fake)
        btc0 = fake.balances["BTC"]
        entry = Order(oms.next_client_order_id(), "t", BTC, OrderSide.BUY, OrderType.LIMIT, D("0.02"), 0,
                      limit_price=D("49000.00"))
        sl, tp = _spot_bracket(oms, entry)
        oms.adapter.poll()
        fake.set_quote("BTCUSDT", D("40000.00"), D("40000.01"))  # the entry fills whole; the stop is passed
        oms.adapter.poll()
        oms.adapter.poll()
        assert entry.state is OrderState.FILLED
        assert sl.state is OrderState.REJECTED and sl.reason == "INVALID_STOPS" and _taken_over(sl)
        exits = [o for o in oms.orders.values() if o.side is OrderSide.SELL and o.type is OrderType.MARKET]
        assert len(exits) == 1 and exits[0].reduce_only and exits[0].state is OrderState.FILLED
        assert exits[0].filled_qty == D("0.02")
        assert oms.portfolio.positions[BTC].quantity == 0
        assert fake.balances["BTC"] - btc0 == 0  # the venue holds nothing either
    finally:
        fake.stop()


def test_ccxt_exits_lost_in_an_outage_are_sent_again_under_their_client_ids():
    fake = BinanceFake().start()
    try:
        oms = make_oms(fake)
        fake.inject("503", "POST", "/api/v3/orderList/oco")
        entry = Order(oms.next_client_order_id(), "t", BTC, OrderSide.BUY, OrderType.MARKET, D("0.02"), 0)
        sl, tp = _spot_bracket(oms, entry)
        for _ in range(3):
            oms.adapter.poll()
        assert sl.state is OrderState.ACCEPTED and tp.state is OrderState.ACCEPTED
        fake.set_quote("BTCUSDT", D("44000.00"), D("44000.01"))
        for _ in range(3):
            oms.adapter.poll()
        assert sl.state is OrderState.FILLED and sl.filled_qty == D("0.02")
        assert oms.portfolio.positions[BTC].quantity == 0
        assert [o.client_order_id for o in fake.orders.values() if o.type == "STOP_LOSS"] == [sl.client_order_id]
    finally:
        fake.stop()


def test_futures_an_algo_stop_refused_as_already_triggered_exits_at_once():
    """binance USD-M -2021 "Order would immediately trigger": a long's stop above the market."""
    fake = BinanceFuturesFake().start()
    try:
        adapter = CcxtAdapter("binanceusdm", exchange=binanceusdm_on(fake), symbols=[FUTURES_SYMBOL],
                              backoff_s=0.001, max_backoff_s=0.005, poll_interval_s=None)
        instruments = adapter.instruments()
        oms = OrderManager("t", LiveClock(), adapter,
                           Portfolio.for_instrument(adapter.account().cash, instruments[FUTURES_SYMBOL]),
                           dict(instruments))
        entry, stop = bracket(oms, stop="50500.0", take=None)
        assert stop.state is OrderState.REJECTED and stop.reason == "INVALID_STOPS" and _taken_over(stop)
        adapter.poll()
        adapter.poll()
        assert oms.portfolio.positions[FUTURES_SYMBOL].quantity == 0
        assert not fake.positions[MARKET_ID].amount
    finally:
        fake.stop()


# -- D7: MT5 -------------------------------------------------------------------------------------------------
def _mt5_with_stop(between: Any) -> tuple[Venue, OrderManager, Order]:
    v = Venue(bot_id="a")
    inst = v.adapter.instruments()["EURUSD"]
    oms = OrderManager("a", LiveClock(), v.adapter, Portfolio.for_instrument(D(1_000_000), inst), {"EURUSD": inst})
    entry = Order(oms.next_client_order_id(), "a", "EURUSD", OrderSide.BUY, OrderType.MARKET, D("0.10"), 0)
    oms.submit(entry)
    between(v)
    sl = Order(oms.next_client_order_id(), "a", "EURUSD", OrderSide.SELL, OrderType.STOP, D("0.10"), 0,
               stop_price=D("1.09500"), parent_id=entry.client_order_id)
    oms.submit(sl)
    v.fake.restore()
    return v, oms, sl


def test_mt5_a_stop_set_while_the_terminal_is_unreachable_goes_on_at_the_next_poll():
    v, oms, sl = _mt5_with_stop(lambda v: v.fake.disconnect())
    assert sl.state is OrderState.SUBMITTED  # held, not refused
    v.adapter.poll()
    assert sl.state is OrderState.ACCEPTED and [p.sl for p in v.fake.positions_get()] == [1.095]
    v.fake.set_tick("EURUSD", 1.09000, 1.09020)
    v.adapter.poll()
    v.adapter.poll()
    assert sl.state is OrderState.FILLED and oms.portfolio.positions["EURUSD"].quantity == 0
    assert not v.fake.positions_get()


def test_mt5_a_stop_the_market_is_through_exits_at_once():
    v, oms, sl = _mt5_with_stop(lambda v: v.fake.set_tick("EURUSD", 1.09400, 1.09420))
    assert sl.state is OrderState.REJECTED and sl.reason == "INVALID_STOPS" and _taken_over(sl)
    v.adapter.poll()
    assert oms.portfolio.positions["EURUSD"].quantity == 0 and not v.fake.positions_get()


# -- D12: MT5 emulated take-profit --------------------------------------------------------------------------
def test_mt5_an_emulated_take_profit_executes_as_a_bounded_deal():
    v = Venue(bot_id="a")
    inst = v.adapter.instruments()["EURUSD"]
    clock = SimulatedClock()
    oms = OrderManager("a", clock, v.adapter, Portfolio.for_instrument(D(1_000_000), inst), {"EURUSD": inst})
    entry = Order(oms.next_client_order_id(), "a", "EURUSD", OrderSide.BUY, OrderType.MARKET, D("0.10"), 0)
    with oms.linked():
        oms.submit(entry)
        trail = Order(oms.next_client_order_id(), "a", "EURUSD", OrderSide.SELL, OrderType.STOP, D("0.10"), 0,
                      stop_price=D("1.09500"), trail_distance=D("0.00500"), parent_id=entry.client_order_id,
                      oco_group=entry.client_order_id, tag="trail")
        tp = Order(oms.next_client_order_id(), "a", "EURUSD", OrderSide.SELL, OrderType.LIMIT, D("0.10"), 0,
                   limit_price=D("1.10500"), parent_id=entry.client_order_id, oco_group=entry.client_order_id, tag="tp")
        oms.submit(trail)
        oms.submit(tp)
    assert trail.emulated and tp.emulated
    for bid in (1.10300, 1.10520, 1.10540):
        clock.ts += 1_000_000_000
        v.fake.set_tick("EURUSD", bid, bid + 0.0002)
        oms.on_quote(Tick("EURUSD", clock.ts, bid=bid, ask=bid + 0.0002))
        v.adapter.poll()
    triggers = [o for o in oms.orders.values() if o.trigger_of == tp.client_order_id]
    assert [o.state for o in triggers] == [OrderState.FILLED]
    assert triggers[0].avg_fill_price is not None and triggers[0].avg_fill_price >= D("1.10500")
    assert tp.state is OrderState.FILLED and trail.state is OrderState.CANCELED
    assert oms.portfolio.positions["EURUSD"].quantity == 0 and not v.fake.positions_get()


# -- D1: an emulated stop behind a resting take-profit trigger ----------------------------------------------
@pytest.mark.parametrize("adapter_cls", [PaperAdapter, NoLinks], ids=["native", "emulated"])
def test_an_emulated_stop_fires_while_its_take_profits_trigger_rests(adapter_cls):
    oms, adapter = _bot(adapter_cls, partial=True)
    entry, stop, take = _bracket(oms, trail=None, stop="95.00", take="110.00")
    _tick(oms, adapter, "99.99", "100.00", size=10)
    _tick(oms, adapter, "110.00", "110.01", size=1)  # the take-profit touched: 1 of 10 fills
    for bid in ("94.00", "90.00", "85.00", "80.00"):
        _tick(oms, adapter, bid, str(D(bid) + D("0.01")), size=100)
    assert take is not None
    assert stop.state is OrderState.FILLED and stop.filled_qty == 9 and take.filled_qty == 1
    assert oms.portfolio.positions["TEST"].quantity == 0
    assert oms.portfolio.cash == D("9956.00")  # what the native venue gives
    assert not oms.open_orders


# -- D13: USD-M futures, a bracket's exits after a restart --------------------------------------------------
def test_futures_a_restarted_bot_still_cancels_the_stop_when_the_take_profit_fills():
    fake = BinanceFuturesFake().start()
    try:
        adapter = CcxtAdapter("binanceusdm", exchange=binanceusdm_on(fake), symbols=[FUTURES_SYMBOL],
                              backoff_s=0.001, max_backoff_s=0.005, poll_interval_s=None)
        instruments = adapter.instruments()
        cash = adapter.account().cash
        old = OrderManager("t", LiveClock(), adapter, Portfolio.for_instrument(cash, instruments[FUTURES_SYMBOL]),
                           dict(instruments))
        entry, stop, take = bracket(old)
        # the restart: a fresh adapter and OMS, the books restored from what the old one journaled
        fresh = CcxtAdapter("binanceusdm", exchange=binanceusdm_on(fake), symbols=[FUTURES_SYMBOL],
                            backoff_s=0.001, max_backoff_s=0.005, poll_interval_s=None)
        oms = OrderManager("t", LiveClock(), fresh, Portfolio.for_instrument(cash, instruments[FUTURES_SYMBOL]),
                           dict(instruments), connect=False)
        oms.restore(list(old.orders.values()), list(old.fills), old._seq)
        oms.connect()
        fake.set_quote(MARKET_ID, D("51000.0"), D("51000.0"))  # the take-profit fills
        fresh.poll()
        fresh.poll()
        assert take.state is OrderState.FILLED
        assert stop.state is OrderState.CANCELED and algo(fake, stop).status == "CANCELED"
        new = Order(oms.next_client_order_id(), "t", FUTURES_SYMBOL, OrderSide.BUY, OrderType.MARKET, D("0.01"), 0)
        oms.submit(new)
        fresh.poll()
        fake.set_quote(MARKET_ID, D("48900.0"), D("48900.0"))  # below the old bracket's stop
        fresh.poll()
        fresh.poll()
        assert oms.portfolio.positions[FUTURES_SYMBOL].quantity == D("0.01")
        assert fake.positions[MARKET_ID].amount == D("0.01")
    finally:
        fake.stop()


# -- D3: a kill racing an entry's fill (Alpaca) ---------------------------------------------------------------
@dataclass
class Driver:
    trading: bool = True
    muted: bool = False
    strategy: Any = None


def _until(check: Any, what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


@pytest.mark.parametrize("linked", [True, False], ids=["one-request", "children-wait"])
def test_a_kill_that_races_the_entrys_fill_ends_flat(linked):
    bot = Bot()
    try:
        if linked:
            with bot.adapter.hold():
                entry = bot.strategy.buy(qty=D(10), limit=149, sl=140, tp=160)
        else:  # the entry alone; its children wait in the adapter for its fill
            bot.oms.linked = contextlib.nullcontext  # type: ignore[method-assign]
            entry = bot.strategy.buy(qty=D(10), limit=149, sl=140, tp=160)
        stop, take = children(bot, entry)
        bot.settle()
        bot.fake.hold_cancels(True)
        before = (stop.state, take.state)
        controls.kill(bot.oms, Driver(), None, "test")
        assert (stop.state, take.state) == before  # an entry still canceling keeps its children
        cid = entry.client_order_id
        _until(lambda: bot.fake.order_by_cid(cid)["status"] == "pending_cancel", "the cancel never arrived")
        assert len([r for r in bot.fake.requests if r[0] == "DELETE"]) == 1  # the entry's cancel, not its legs'
        bot.fake.fill(cid, "4")  # the fill that races the cancel
        if bot.fake.order_by_cid(cid)["status"] != "canceled":
            bot.fake.cancel_at_venue(cid)  # the fake drops a pending cancel on a fill; Alpaca does not
        bot.fake.release_cancels()
        bot.fake.hold_cancels(False)
        _until(lambda: not bot.oms.open_orders and bot.oms.portfolio.positions["AAPL"].quantity == 0
               and entry.state is OrderState.CANCELED, "the books did not end flat")
        assert entry.filled_qty == 4
        closes = [o for o in bot.oms.orders.values() if o.tag == "close"]
        assert len(closes) == 1 and closes[0].reduce_only and closes[0].filled_qty == 4
        assert stop.state is OrderState.CANCELED and take.state is OrderState.CANCELED
        _until(lambda: not bot.fake.client_positions(), "the venue still holds a position")
    finally:
        bot.close()


def test_a_late_fill_on_a_killed_bot_is_flattened_exactly_through_the_halted_gate():
    """flatten_late, which the kill's fill listener calls: a fractional position is closed whole
    (on the size grid), reduce-only, although the kill left the gate HALTED; the gate stays HALTED."""
    instrument = Instrument("FRAC", price_increment=D("0.01"), size_increment=D("0.001"), min_qty=D("0.001"))
    adapter = PaperAdapter(SimulatedVenue(instrument, D(10_000)))
    clock = SimulatedClock()
    oms = OrderManager("b", clock, adapter, Portfolio.for_instrument(D(10_000), instrument), {"FRAC": instrument})
    gate = RiskEngine("b", RiskLimits(), AccountRisk(), clock, {"FRAC": instrument}, last_price=lambda _s: D("100.00"))
    gate.bind(oms)
    oms.risk = gate

    def tick(bid: str) -> None:
        clock.ts += 1
        quote = Tick("FRAC", clock.ts, bid=float(bid), ask=float(D(bid) + D("0.01")))
        oms.on_quote(quote)
        adapter.on_quote(quote)

    oms.submit(Order(oms.next_client_order_id(), "b", "FRAC", OrderSide.BUY, OrderType.MARKET, D("0.537"), 0))
    tick("100.00")
    assert oms.portfolio.positions["FRAC"].quantity == D("0.537")
    gate.set_state(TradingState.HALTED, clock.ts, "KILL_SWITCH:test")
    close = controls.flatten_late(oms, "FRAC", gate)
    assert close is not None and close.qty == D("0.537") and close.reduce_only and close.state is not OrderState.DENIED
    assert controls.flatten_late(oms, "FRAC", gate) is None  # the close in flight covers it
    tick("99.00")
    assert close.state is OrderState.FILLED and oms.portfolio.positions["FRAC"].quantity == 0
    assert gate.state is TradingState.HALTED
