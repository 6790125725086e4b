"""The broker contract: one suite every adapter passes (brokers/base.py, DESIGN.md §7).

Each case runs once per registered adapter (tests/conformance/registry.py) against that adapter's
fake venue, with the real OrderManager as the sink. How an adapter joins: harness.py.
"""

from __future__ import annotations

import contextlib

import importlib
from decimal import Decimal
from typing import Iterator

import pytest

from brokers.base import AccountSnapshot, RejectReason, VenueOrder, VenuePosition
from engine.clock import LiveClock
from engine.oms import OrderManager
from engine.orders import Order, OrderSide, OrderState, OrderType
from engine.portfolio import Portfolio
from engine.reconcile import reconcile_with_adapter
from tests.conformance.harness import AdapterHarness
from tests.conformance.registry import HARNESSES


def _load(name: str) -> AdapterHarness:
    module_name, _, cls = HARNESSES[name].partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, cls)()


@pytest.fixture(params=sorted(HARNESSES))
def adapter_harness(request) -> Iterator[AdapterHarness]:
    harness = _load(request.param)
    try:
        yield harness
    finally:
        harness.close()


def wallet_moved(bot: "Bot", fills: list) -> Decimal:
    """What these fills moved the venue's position by: a fee the venue took in the coin bought
    (bybit, Binance without BNB) leaves that much less in the wallet than the quantity filled."""
    base = bot.harness.symbol.split("/")[0]
    return sum((f.side.sign * f.qty - (f.fee_native if f.fee_currency == base else 0) for f in fills), Decimal(0))


class _VenueClock:
    """The fake venue's own clock (a harness with `now_ns`): a fake that keeps its own time
    (MT5, Alpaca) stamps fills in it, and reconciliation bounds its queries by the engine's."""

    def __init__(self, harness: AdapterHarness) -> None:
        self.harness = harness

    def now_ns(self) -> int:
        return self.harness.now_ns()  # type: ignore[attr-defined]


class Bot:
    """An OMS on the adapter, and a few words to make orders with."""

    def __init__(self, harness: AdapterHarness) -> None:
        self.harness = harness
        self.adapter = harness.make_adapter()
        self.clock: LiveClock | _VenueClock = _VenueClock(harness) if hasattr(harness, "now_ns") else LiveClock()
        # connect() loads the instruments; the OMS connects the adapter as its sink afterwards
        self.oms = OrderManager("conf", self.clock, self.adapter, Portfolio(Decimal(0), 18), {})
        self.instruments = self.adapter.instruments()
        self.oms.instruments.update(self.instruments)
        self.instrument = self.instruments[harness.symbol]
        cash_dp = self.instrument.scales.cash_dp
        self.start_cash = self.adapter.account().cash
        self.oms.portfolio = Portfolio(self.start_cash, cash_dp)

    def order(self, side: OrderSide = OrderSide.BUY, kind: OrderType = OrderType.MARKET, qty: Decimal | None = None,
              limit: Decimal | None = None, stop: Decimal | None = None, symbol: str | None = None) -> Order:
        return Order(self.oms.next_client_order_id(), "conf", symbol or self.harness.symbol, side, kind,
                     self.harness.qty() if qty is None else qty, self.clock.now_ns(),
                     limit_price=limit, stop_price=stop)

    def submit(self, order: Order) -> Order:
        self.oms.submit(order)
        self.harness.settle()
        return self.oms.orders[order.client_order_id]


@pytest.fixture
def bot(adapter_harness: AdapterHarness) -> Bot:
    return Bot(adapter_harness)


def _require(harness: AdapterHarness, feature: str) -> None:
    if not harness.supports(feature):
        pytest.skip(f"{harness.name} does not support {feature}")


# -- instruments, account ---------------------------------------------------------------------
def test_instruments_carry_the_venues_grid(bot: Bot):
    instrument = bot.instrument
    assert instrument.symbol == bot.harness.symbol
    assert instrument.price_increment > 0 and instrument.size_increment > 0
    assert bot.harness.qty() % instrument.size_increment == 0


def test_account_is_exact_and_flat_at_start(bot: Bot):
    account = bot.adapter.account()
    assert isinstance(account, AccountSnapshot)
    assert isinstance(account.cash, Decimal) and account.cash > 0
    assert account.equity >= account.cash
    assert all(p.qty == 0 for p in bot.adapter.positions() if p.symbol == bot.harness.symbol)


# -- each order type ------------------------------------------------------------------------------
def test_market_order_fills_and_the_position_and_account_follow(bot: Bot):
    order = bot.submit(bot.order())
    bot.harness.drive_market()
    bot.harness.settle()
    assert order.state is OrderState.FILLED
    assert order.filled_qty == bot.harness.qty()
    fills = [f for f in bot.oms.fills if f.client_order_id == order.client_order_id]
    assert sum(f.qty for f in fills) == bot.harness.qty()
    assert all(isinstance(f.price, Decimal) and f.price % bot.instrument.price_increment == 0 for f in fills)
    positions = {p.symbol: p for p in bot.adapter.positions()}
    assert isinstance(positions[bot.harness.symbol], VenuePosition)
    assert positions[bot.harness.symbol].qty == wallet_moved(bot, fills)
    assert bot.adapter.account().cash < bot.start_cash
    assert [f.execution_id for f in bot.adapter.fills_since(0)] == [f.execution_id for f in fills]


@pytest.mark.parametrize("side", [OrderSide.BUY, OrderSide.SELL])
def test_limit_order_rests_then_fills_at_its_price(bot: Bot, side: OrderSide):
    _require(bot.harness, OrderType.LIMIT)
    qty = None
    if side is OrderSide.SELL:
        _buy_inventory(bot)
        if not bot.instrument.shortable:  # spot: sell what the bot holds (a fee in the coin leaves less)
            qty = bot.oms.portfolio.positions[bot.harness.symbol].quantity
    price = bot.harness.resting_limit(side)
    order = bot.submit(bot.order(side, OrderType.LIMIT, qty=qty, limit=price))
    assert order.state is OrderState.ACCEPTED
    assert [v.client_order_id for v in bot.adapter.open_orders()] == [order.client_order_id]
    bot.harness.fill(order.client_order_id)
    bot.harness.settle()
    assert order.state is OrderState.FILLED and order.avg_fill_price == price
    assert bot.adapter.open_orders() == []


def test_stop_order_rests_until_triggered(bot: Bot):
    _require(bot.harness, OrderType.STOP)
    order = bot.submit(bot.order(kind=OrderType.STOP, stop=bot.harness.resting_stop(OrderSide.BUY)))
    assert order.state is OrderState.ACCEPTED
    venue = bot.adapter.order_status(order.client_order_id)
    assert venue is not None and venue.type is OrderType.STOP and venue.stop_price == order.stop_price
    bot.harness.fill(order.client_order_id)
    bot.harness.settle()
    assert order.state is OrderState.FILLED


def test_stop_limit_order_rests_until_triggered(bot: Bot):
    _require(bot.harness, OrderType.STOP_LIMIT)
    stop = bot.harness.resting_stop(OrderSide.BUY)
    order = bot.submit(bot.order(kind=OrderType.STOP_LIMIT, stop=stop, limit=stop))
    assert order.state is OrderState.ACCEPTED
    venue = bot.adapter.order_status(order.client_order_id)
    assert venue is not None and venue.type is OrderType.STOP_LIMIT
    assert venue.limit_price == stop and venue.stop_price == stop
    bot.harness.fill(order.client_order_id)
    bot.harness.settle()
    assert order.state is OrderState.FILLED and order.avg_fill_price == stop


def test_cancel_a_resting_order(bot: Bot):
    order = bot.submit(bot.order(kind=OrderType.LIMIT, limit=bot.harness.resting_limit(OrderSide.BUY)))
    bot.oms.cancel(order)
    bot.harness.settle()
    assert order.state is OrderState.CANCELED
    venue = bot.adapter.order_status(order.client_order_id)
    assert venue is not None and venue.state is OrderState.CANCELED
    assert bot.adapter.open_orders() == []


def test_partial_fills_accumulate_then_complete(bot: Bot):
    _require(bot.harness, "partial_fill")
    qty = bot.harness.qty()
    step = bot.instrument.size_increment
    part = max(step, (qty / 4 // step) * step)
    price = bot.harness.resting_limit(OrderSide.BUY)
    order = bot.submit(bot.order(kind=OrderType.LIMIT, limit=price))
    bot.harness.fill(order.client_order_id, part)
    bot.harness.settle()
    assert order.state is OrderState.PARTIALLY_FILLED and order.filled_qty == part
    venue = bot.adapter.order_status(order.client_order_id)
    assert venue is not None and venue.state is OrderState.PARTIALLY_FILLED and venue.filled_qty == part
    bot.harness.fill(order.client_order_id)
    bot.harness.settle()
    assert order.state is OrderState.FILLED and order.filled_qty == qty and order.avg_fill_price == price
    assert len({f.execution_id for f in bot.oms.fills}) == 2


def test_partially_filled_order_can_be_canceled(bot: Bot):
    _require(bot.harness, "partial_fill")
    step = bot.instrument.size_increment
    order = bot.submit(bot.order(kind=OrderType.LIMIT, limit=bot.harness.resting_limit(OrderSide.BUY)))
    bot.harness.fill(order.client_order_id, step)
    bot.harness.settle()
    bot.oms.cancel(order)
    bot.harness.settle()
    assert order.state is OrderState.CANCELED and order.filled_qty == step


# -- rejects and bad input -------------------------------------------------------------------------
def test_unknown_symbol_is_rejected_with_a_reason(bot: Bot):
    order = bot.submit(bot.order(symbol=bot.harness.unknown_symbol))
    assert order.state is OrderState.REJECTED and order.reason == RejectReason.UNKNOWN_SYMBOL
    assert bot.adapter.open_orders() == []


def test_quantity_below_the_minimum_is_rejected_with_a_reason(bot: Bot):
    order = bot.submit(bot.order(qty=bot.harness.below_min_qty()))
    assert order.state is OrderState.REJECTED and order.reason == RejectReason.QTY_BELOW_MIN


def test_quantity_off_the_lot_grid_is_rejected_with_a_reason(bot: Bot):
    qty = bot.harness.qty() + bot.instrument.size_increment / 2
    order = bot.submit(bot.order(qty=qty))
    assert order.state is OrderState.REJECTED and order.reason == RejectReason.QTY_OFF_GRID


def test_missing_limit_price_is_rejected_with_a_reason(bot: Bot):
    order = bot.submit(bot.order(kind=OrderType.LIMIT))
    assert order.state is OrderState.REJECTED and order.reason == RejectReason.PRICE_MISSING


def test_insufficient_funds_is_rejected_with_a_reason(bot: Bot):
    order = bot.submit(bot.order(qty=bot.harness.unaffordable_qty()))
    bot.harness.drive_market()
    bot.harness.settle()
    assert order.state is OrderState.REJECTED and order.reason == RejectReason.INSUFFICIENT_FUNDS
    assert bot.oms.fills == []


@pytest.mark.parametrize("kind", ["429", "5xx"])
def test_a_transient_venue_error_is_retried_once_without_a_duplicate(bot: Bot, kind: str):
    _require(bot.harness, "rate_limit" if kind == "429" else "server_error")
    bot.harness.fail_next_submit(kind)  # type: ignore[arg-type]
    order = bot.submit(bot.order(kind=OrderType.LIMIT, limit=bot.harness.resting_limit(OrderSide.BUY)))
    assert order.state is OrderState.ACCEPTED
    assert bot.harness.venue_order_count(order.client_order_id) == 1


@pytest.mark.parametrize("kind, reason", [("429", RejectReason.RATE_LIMITED), ("5xx", RejectReason.VENUE_ERROR)])
def test_a_venue_that_keeps_failing_rejects_with_a_reason_and_no_crash(bot: Bot, kind: str, reason: RejectReason):
    _require(bot.harness, "rate_limit" if kind == "429" else "server_error")
    bot.harness.fail_submits(kind)  # type: ignore[arg-type]
    order = bot.submit(bot.order(kind=OrderType.LIMIT, limit=bot.harness.resting_limit(OrderSide.BUY)))
    bot.harness.heal()
    assert order.state is OrderState.REJECTED and order.reason == reason
    assert bot.harness.venue_order_count(order.client_order_id) == 0
    follow_up = bot.submit(bot.order(kind=OrderType.LIMIT, limit=bot.harness.resting_limit(OrderSide.BUY)))
    assert follow_up.state is OrderState.ACCEPTED


# -- a lost answer, a dropped stream, a stranger's order ---------------------------------------------
def test_a_submit_whose_answer_is_lost_is_resolved_by_client_id_without_a_second_order(bot: Bot):
    _require(bot.harness, "lost_submit")
    bot.harness.lose_next_submit()
    order = bot.submit(bot.order(kind=OrderType.LIMIT, limit=bot.harness.resting_limit(OrderSide.BUY)))
    assert order.state is OrderState.ACCEPTED
    assert bot.harness.venue_order_count(order.client_order_id) == 1
    venue = bot.adapter.order_status(order.client_order_id)
    assert isinstance(venue, VenueOrder) and venue.state is OrderState.ACCEPTED
    bot.harness.fill(order.client_order_id)
    bot.harness.settle()
    assert order.state is OrderState.FILLED


def test_a_lost_answer_to_a_market_order_that_filled_books_the_fill_once(bot: Bot):
    _require(bot.harness, "lost_submit")
    bot.harness.lose_next_submit()
    order = bot.submit(bot.order())
    bot.harness.drive_market()
    bot.harness.settle()
    assert order.state is OrderState.FILLED and order.filled_qty == bot.harness.qty()
    assert bot.harness.venue_order_count(order.client_order_id) == 1
    assert sum(f.qty for f in bot.oms.fills) == bot.harness.qty()


def test_after_a_stream_drop_the_reconnect_reports_what_was_missed(bot: Bot):
    _require(bot.harness, "stream_drop")
    price = bot.harness.resting_limit(OrderSide.BUY)
    filled = bot.submit(bot.order(kind=OrderType.LIMIT, limit=price))
    canceled = bot.submit(bot.order(kind=OrderType.LIMIT, limit=price))
    bot.harness.drop_stream()
    bot.adapter.cancel(canceled)  # the venue cancels; the confirmation is on the dropped stream
    bot.harness.fill(filled.client_order_id)
    assert filled.state is OrderState.ACCEPTED
    bot.harness.restore_stream()
    bot.harness.reconnect()
    bot.harness.settle()
    assert filled.state is OrderState.FILLED and filled.filled_qty == bot.harness.qty()
    assert canceled.state is OrderState.CANCELED
    assert len(bot.oms.fills) == 1
    bot.harness.reconnect()  # a second reconcile changes nothing
    bot.harness.settle()
    assert len(bot.oms.fills) == 1


def test_partial_fills_missed_during_a_drop_are_each_booked_once(bot: Bot):
    _require(bot.harness, "stream_drop")
    _require(bot.harness, "partial_fill")
    step = bot.instrument.size_increment
    order = bot.submit(bot.order(kind=OrderType.LIMIT, limit=bot.harness.resting_limit(OrderSide.BUY)))
    bot.harness.drop_stream()
    bot.harness.fill(order.client_order_id, step)
    bot.harness.fill(order.client_order_id)
    bot.harness.restore_stream()
    bot.harness.reconnect()
    bot.harness.settle()
    assert order.state is OrderState.FILLED and order.filled_qty == bot.harness.qty()
    venue = bot.adapter.order_status(order.client_order_id)
    assert venue is not None and venue.filled_qty == bot.harness.qty() and venue.state is OrderState.FILLED
    assert len(bot.oms.fills) == 2
    positions = {p.symbol: p.qty for p in bot.adapter.positions()}
    assert positions[bot.harness.symbol] == wallet_moved(bot, bot.oms.fills)


def test_a_foreign_venue_order_is_ignored_by_the_bots_books(bot: Bot):
    """Someone else's order on the account (issue 14): whatever the venue's stream says about it,
    the bot's OMS books nothing; the order stays the venue's."""
    _require(bot.harness, "external_order")
    client_id = bot.harness.place_external_order()
    bot.harness.reconnect()
    bot.harness.settle()
    assert client_id not in bot.oms.orders and bot.oms.external == [] and bot.oms.open_orders == []
    assert client_id in {v.client_order_id for v in bot.adapter.open_orders()}


def _buy_inventory(bot: Bot) -> None:
    order = bot.submit(bot.order())
    bot.harness.drive_market()
    bot.harness.settle()
    assert order.state is OrderState.FILLED


def test_a_restarted_engine_reconciles_through_the_contract_alone(bot: Bot):
    """The engine dies; meanwhile the venue fills one order, cancels another and someone places a
    third. A new OMS, rebuilt from what the store held, learns all of it from the adapter's
    queries (fills_since, order_status, open_orders, positions), and a second pass changes nothing."""
    _require(bot.harness, "stream_drop")
    _require(bot.harness, "external_order")
    price = bot.harness.resting_limit(OrderSide.BUY)
    filled = bot.submit(bot.order(kind=OrderType.LIMIT, limit=price))
    canceled = bot.submit(bot.order(kind=OrderType.LIMIT, limit=price))
    resting = bot.submit(bot.order(kind=OrderType.LIMIT, limit=price))
    bot.harness.drop_stream()                       # the engine stops hearing the venue ...
    bot.adapter.cancel(canceled)
    bot.harness.fill(filled.client_order_id)
    external = bot.harness.place_external_order()
    stored = [Order(o.client_order_id, o.bot_id, o.symbol, o.side, o.type, o.qty, o.ts_init,
                    limit_price=o.limit_price, state=OrderState.ACCEPTED) for o in (filled, canceled, resting)]
    restarted = OrderManager("conf", bot.clock, bot.adapter, Portfolio(bot.start_cash, bot.instrument.scales.cash_dp),
                             dict(bot.instruments), connect=False)  # ... and a new engine starts from the store
    restarted.restore(stored, [], 10)
    bot.harness.restore_stream()  # the venue is reachable again (the old engine is gone)
    report = reconcile_with_adapter(restarted, bot.adapter, bot.clock.now_ns())
    restarted.connect()           # from now on the stream reports to the new engine
    bot.harness.reconnect()
    bot.harness.settle()
    # (an adapter whose stream came back may already have told the new OMS some of it)
    expected_fills = {f.execution_id for f in bot.adapter.fills_since(0)}
    assert report.fills_replayed <= len(expected_fills) and {f.execution_id for f in restarted.fills} == expected_fills
    by_id = restarted.orders
    assert by_id[filled.client_order_id].state is OrderState.FILLED
    assert by_id[canceled.client_order_id].state is OrderState.CANCELED
    venue_view = bot.adapter.order_status(resting.client_order_id)  # a quote may have filled it too
    assert by_id[resting.client_order_id].state is venue_view.state
    assert by_id[resting.client_order_id].filled_qty == venue_view.filled_qty
    assert external not in by_id and report.external_orders == [external]  # someone else's: reported only
    venue_position = {p.symbol: p.qty for p in bot.adapter.positions()}[bot.harness.symbol]
    own = [f for f in restarted.fills if f.client_order_id == filled.client_order_id]
    assert restarted.portfolio.positions[bot.harness.symbol].quantity == venue_position >= wallet_moved(bot, own)
    again = reconcile_with_adapter(restarted, bot.adapter, bot.clock.now_ns())
    assert again.fills_replayed == 0 and again.orders_adopted == [] and len(restarted.fills) == len(expected_fills)


# -- a shared account (issue 14: a bot owns what it sent) --------------------------------------------------


def _restarted(bot: Bot, orders: list[Order], fills: list) -> OrderManager:
    """A new OMS for bot "conf" rebuilt from what its store held (nothing, for a fresh bot)."""
    oms = OrderManager("conf", bot.clock, bot.adapter, Portfolio(bot.start_cash, bot.instrument.scales.cash_dp),
                       dict(bot.instruments), connect=False)
    oms.restore(orders, fills, len(orders))
    return oms


def test_a_fresh_bot_starts_beside_a_foreign_open_order_and_reports_it(bot: Bot):
    _require(bot.harness, "external_order")
    foreign = bot.harness.place_external_order()
    fresh = _restarted(bot, [], [])
    report = reconcile_with_adapter(fresh, bot.adapter, bot.clock.now_ns())
    assert report.external_orders == [foreign] and report.orders_adopted == []
    assert fresh.orders == {} and fresh.fills == [] and fresh.open_orders == []


def test_a_foreign_position_is_reported_and_the_bots_books_hold_only_its_own(bot: Bot):
    """The bot buys; someone else then trades the same symbol on the account. Neither the stream
    nor a restart's reconciliation books the other trade: the venue's position is the bot's plus
    the external part the report names."""
    _require(bot.harness, "external_order")
    _buy_inventory(bot)
    own_fills = list(bot.oms.fills)
    own_qty = bot.oms.portfolio.positions[bot.harness.symbol].quantity
    foreign = bot.harness.place_external_order()
    bot.harness.fill(foreign)
    bot.harness.settle()
    assert foreign not in bot.oms.orders and bot.oms.fills == own_fills  # whatever the stream said about it
    assert bot.oms.portfolio.positions[bot.harness.symbol].quantity == own_qty
    venue_qty = {p.symbol: p.qty for p in bot.adapter.positions()}[bot.harness.symbol]
    assert venue_qty != own_qty
    stored = [Order(o.client_order_id, o.bot_id, o.symbol, o.side, o.type, o.qty, o.ts_init, state=o.state,
                    filled_qty=o.filled_qty) for o in bot.oms.orders.values()]
    restarted = _restarted(bot, stored, own_fills)
    report = reconcile_with_adapter(restarted, bot.adapter, bot.clock.now_ns())
    assert report.fills_replayed == 0 and report.orders_adopted == [] and restarted.fills == own_fills
    assert restarted.portfolio.positions[bot.harness.symbol].quantity == own_qty
    assert report.external_positions == {bot.harness.symbol: venue_qty - own_qty}
    foreign_fills = {f.execution_id for f in bot.adapter.fills_since(0)} - {f.execution_id for f in own_fills}
    assert foreign_fills and set(report.external_fills) == foreign_fills


def test_a_bracket_protects_its_entry_and_one_exit_cancels_the_other(bot: Bot):
    """An entry with a stop-loss and a take-profit (one OCO group): both exits work once the entry
    fills; the take-profit filling cancels the stop-loss; the books end flat, nothing foreign."""
    harness = bot.harness
    if not getattr(bot.adapter, "protective_orders", False) or not hasattr(harness, "move_price"):
        pytest.skip(f"{harness.name}: no protective orders through this suite (protective_orders, move_price)")
    entry = bot.order()
    group, ts = entry.client_order_id, bot.clock.now_ns()
    stop = Order(bot.oms.next_client_order_id(), "conf", harness.symbol, OrderSide.SELL, OrderType.STOP,
                 entry.qty, ts, stop_price=harness.resting_limit(OrderSide.BUY), parent_id=group,
                 oco_group=group, tag="sl")
    take = Order(bot.oms.next_client_order_id(), "conf", harness.symbol, OrderSide.SELL, OrderType.LIMIT,
                 entry.qty, ts, limit_price=harness.resting_limit(OrderSide.SELL), parent_id=group,
                 oco_group=group, tag="tp")
    with getattr(harness, "linked", contextlib.nullcontext)():
        for order in (entry, stop, take):
            bot.oms.submit(order)
    harness.drive_market()
    harness.settle()
    assert entry.state is OrderState.FILLED
    assert (stop.state, take.state) == (OrderState.ACCEPTED, OrderState.ACCEPTED)
    harness.move_price(harness.resting_limit(OrderSide.SELL))
    harness.settle()
    assert take.state is OrderState.FILLED and take.filled_qty == entry.qty
    assert stop.state is OrderState.CANCELED and stop.filled_qty == 0
    assert bot.oms.portfolio.positions[harness.symbol].qty == 0
    assert bot.oms.foreign_reports == 0 and not bot.oms.external
