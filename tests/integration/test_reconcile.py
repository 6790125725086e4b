"""Restart reconciliation of a paper bot, through the adapter contract as for every venue
(reconcile_with_adapter over PaperAdapter and the durable paper venue's log)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from brokers.paper.adapter import PaperAdapter
from brokers.paper.durable import DurablePaperVenue
from engine.clock import SimulatedClock
from engine.oms import OrderManager
from engine.orders import Order, OrderSide, OrderState, OrderType
from engine.portfolio import Portfolio
from engine.reconcile import LOST_BEFORE_SUBMIT, ReconciliationError, reconcile_with_adapter
from tests.e2e.crash_bot import EURUSD

CASH = Decimal(10_000)
BID, ASK = 110000, 110002  # raw prices on the 0.00001 grid


def adapter_on(tmp_path) -> PaperAdapter:
    """The paper venue as a restarted process finds it: rebuilt from its input log."""
    return PaperAdapter(DurablePaperVenue(tmp_path / "v.log", EURUSD, CASH))


def fresh_oms(adapter: PaperAdapter, connect: bool = True) -> OrderManager:
    return OrderManager("bot", SimulatedClock(), adapter, Portfolio.for_instrument(CASH, EURUSD), {"EURUSD": EURUSD},
                        connect=connect)


def market(oms: OrderManager, side: str = "BUY", qty: str = "1000") -> Order:
    return Order(oms.next_client_order_id(), "bot", "EURUSD", OrderSide(side), OrderType.MARKET, Decimal(qty), 0)


def test_fills_the_engine_missed_are_replayed_and_books_agree(tmp_path):
    adapter = adapter_on(tmp_path)
    before = fresh_oms(adapter)
    order = market(before)
    before.submit(order)
    adapter.drop_stream()  # the engine dies: the venue fills with nobody listening
    adapter.venue.on_tick(0, BID, ASK, 0, 1)
    restarted = fresh_oms(adapter_on(tmp_path), connect=False)
    restarted.restore([_as_stored(order, OrderState.SUBMITTED)], [], 1)
    report = reconcile_with_adapter(restarted, restarted.adapter, 2)
    assert report.fills_replayed == 1
    assert restarted.orders[order.client_order_id].state is OrderState.FILLED
    assert restarted.portfolio.positions["EURUSD"].qty == 1000


def test_pending_order_the_venue_never_saw_is_canceled_as_lost(tmp_path):
    oms = fresh_oms(adapter_on(tmp_path), connect=False)
    order = _as_stored(market(oms), OrderState.PENDING_SUBMIT)
    oms.restore([order], [], 1)
    report = reconcile_with_adapter(oms, oms.adapter, 5)
    assert report.orders_lost_before_submit == [order.client_order_id]
    assert order.state is OrderState.CANCELED and order.reason == LOST_BEFORE_SUBMIT


def test_pending_order_the_venue_did_receive_is_resolved_not_resent(tmp_path):
    first = fresh_oms(adapter_on(tmp_path))
    order = market(first)
    first.submit(order)                      # the venue has it; the engine died before SUBMITTED was stored
    restarted = adapter_on(tmp_path)
    oms = fresh_oms(restarted, connect=False)
    oms.restore([_as_stored(order, OrderState.PENDING_SUBMIT)], [], 1)
    reconcile_with_adapter(oms, restarted, 5)
    assert oms.orders[order.client_order_id].state is OrderState.ACCEPTED
    assert restarted.venue.duplicate_submits == [] and len(restarted.venue.book.orders) == 1


def test_a_foreign_open_order_is_reported_never_adopted(tmp_path):
    someone_else = fresh_oms(adapter_on(tmp_path))
    foreign = Order("manual-1", "human", "EURUSD", OrderSide.BUY, OrderType.LIMIT, Decimal(1000), 0,
                    limit_price=Decimal("1.00000"))
    someone_else.submit(foreign)
    oms = fresh_oms(adapter_on(tmp_path), connect=False)
    report = reconcile_with_adapter(oms, oms.adapter, 5)
    assert report.external_orders == ["manual-1"] and report.orders_adopted == []
    assert "manual-1" not in oms.orders and not oms.open_orders


def test_an_own_order_the_venue_never_had_refuses_to_trade_and_names_it(tmp_path):
    oms = fresh_oms(adapter_on(tmp_path), connect=False)
    order = _as_stored(market(oms), OrderState.SUBMITTED)  # the store says sent; the venue log says not
    oms.restore([order], [], 1)
    with pytest.raises(ReconciliationError, match=order.client_order_id):
        reconcile_with_adapter(oms, oms.adapter, 5)


def _as_stored(order: Order, state: OrderState) -> Order:
    """The order as a restart reads it from the store: same fields, the stored state."""
    return Order(order.client_order_id, order.bot_id, order.symbol, order.side, order.type, order.qty,
                 order.ts_init, state=state)
