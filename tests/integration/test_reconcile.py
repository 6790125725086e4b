"""Reconciliation after a restart, case by case, against the durable paper venue."""

from __future__ import annotations

from decimal import Decimal

import pytest

from brokers.paper.durable import DurablePaperVenue
from engine.clock import SimulatedClock
from engine.oms import OrderManager
from engine.orders import Order, OrderSide, OrderState, OrderType
from engine.portfolio import Portfolio
from engine.reconcile import LOST_BEFORE_SUBMIT, ReconciliationError, reconcile
from tests.e2e.crash_bot import EURUSD

CASH = Decimal(10_000)
BID, ASK = 110000, 110002  # raw prices on the 0.00001 grid


def fresh_oms(venue: DurablePaperVenue) -> OrderManager:
    return OrderManager("bot", SimulatedClock(), venue, Portfolio.for_instrument(CASH, EURUSD), {"EURUSD": EURUSD})


def market(oms: OrderManager, side: str = "BUY", qty: str = "1000") -> Order:
    return Order(oms.next_client_order_id(), "bot", "EURUSD", OrderSide(side), OrderType.MARKET, Decimal(qty), 0)


def test_fills_the_engine_missed_are_replayed_and_books_agree(tmp_path):
    venue = DurablePaperVenue(tmp_path / "v.log", EURUSD, CASH)
    before = fresh_oms(venue)
    order = market(before)
    before.submit(order)
    venue.connect(None)  # type: ignore[arg-type]  # the engine dies: the venue fills with nobody listening
    venue.on_tick(0, BID, ASK, 0, 1)
    restarted = fresh_oms(DurablePaperVenue(tmp_path / "v.log", EURUSD, CASH))
    restarted.restore([_as_stored(order, OrderState.SUBMITTED)], [], 1)
    report = reconcile(restarted, restarted.adapter, "EURUSD", 2)  # type: ignore[arg-type]
    assert report.fills_replayed == 1
    assert restarted.orders[order.client_order_id].state is OrderState.FILLED
    assert restarted.portfolio.positions["EURUSD"].qty == 1000


def test_pending_order_the_venue_never_saw_is_canceled_as_lost(tmp_path):
    venue = DurablePaperVenue(tmp_path / "v.log", EURUSD, CASH)
    oms = fresh_oms(venue)
    order = _as_stored(market(oms), OrderState.PENDING_SUBMIT)
    oms.restore([order], [], 1)
    report = reconcile(oms, venue, "EURUSD", 5)
    assert report.orders_lost_before_submit == [order.client_order_id]
    assert order.state is OrderState.CANCELED and order.reason == LOST_BEFORE_SUBMIT


def test_pending_order_the_venue_did_receive_is_resolved_not_resent(tmp_path):
    venue = DurablePaperVenue(tmp_path / "v.log", EURUSD, CASH)
    first = fresh_oms(venue)
    order = market(first)
    first.submit(order)                      # the venue has it; the engine died before SUBMITTED was stored
    restarted_venue = DurablePaperVenue(tmp_path / "v.log", EURUSD, CASH)
    oms = fresh_oms(restarted_venue)
    oms.restore([_as_stored(order, OrderState.PENDING_SUBMIT)], [], 1)
    reconcile(oms, restarted_venue, "EURUSD", 5)
    assert oms.orders[order.client_order_id].state is OrderState.SUBMITTED
    assert restarted_venue.duplicate_submits == [] and len(restarted_venue.book.orders) == 1


def test_unknown_open_venue_order_is_adopted_as_external(tmp_path):
    venue = DurablePaperVenue(tmp_path / "v.log", EURUSD, CASH)
    someone_else = fresh_oms(venue)
    foreign = Order("manual-1", "human", "EURUSD", OrderSide.BUY, OrderType.LIMIT, Decimal(1000), 0,
                    limit_price=Decimal("1.00000"))
    someone_else.submit(foreign)
    oms = fresh_oms(DurablePaperVenue(tmp_path / "v.log", EURUSD, CASH))
    report = reconcile(oms, oms.adapter, "EURUSD", 5)  # type: ignore[arg-type]
    assert report.orders_adopted == ["manual-1"]
    adopted = oms.orders["manual-1"]
    assert adopted.tag == "external" and adopted.state is OrderState.SUBMITTED


def test_books_that_disagree_with_the_venue_refuse_to_trade(tmp_path):
    venue = DurablePaperVenue(tmp_path / "v.log", EURUSD, CASH)
    oms = fresh_oms(venue)
    oms.portfolio.cash_raw += 1  # a store that lost a cent somewhere
    with pytest.raises(ReconciliationError, match="cash"):
        reconcile(oms, venue, "EURUSD", 5)


def _as_stored(order: Order, state: OrderState) -> Order:
    """The order as a restart reads it from the store: same fields, the stored state."""
    return Order(order.client_order_id, order.bot_id, order.symbol, order.side, order.type, order.qty,
                 order.ts_init, state=state)
