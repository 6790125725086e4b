"""An execution reported after its order's cancel or expiry (helper Z's probe, D5).

Venues report out of order: Alpaca's order status says canceled before its fill activities post,
two streams race, a restart's fills_since brings trades of orders the store holds as final. The
money moved at the venue, so the OMS books the fill; the order keeps its final state, with a
LATE_FILL note journaled. Before: `on_fill` raised InvalidTransition CANCELED -> PARTIALLY_FILLED
after it had already counted the execution as seen, so the books said position 0.04 and cash
8,800 against the venue's 0.06 and 8,200, and the replay of the same execution was dropped."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.clock import SimulatedClock
from engine.oms import LATE_FILL, OrderManager
from engine.orders import Order, OrderSide, OrderState, OrderType
from engine.portfolio import Portfolio
from engine.store.db import make_engine, upgrade
from engine.store.journal import SqlJournal
from tests.unit.test_fees_any_currency import BTC, _NoVenue, fill


def _resting_limit(oms: OrderManager) -> Order:
    order = Order("bot-00000001", "bot", BTC.symbol, OrderSide.BUY, OrderType.LIMIT, Decimal("0.10"), 0,
                  limit_price=Decimal("30000.00"))
    oms.submit(order)
    oms.on_accepted(order, 1)
    oms.on_fill(order, fill("e1", OrderSide.BUY, "0.04", "30000.00"), -1)
    return order


@pytest.mark.parametrize("reason", [None, "EXPIRED"])  # a venue's expiry reaches the OMS as a cancel with its reason
def test_a_fill_after_the_cancel_is_booked_once_and_the_order_stays_final(reason):
    oms = OrderManager("bot", SimulatedClock(), _NoVenue(), Portfolio.for_instrument(Decimal("10000"), BTC),
                       {BTC.symbol: BTC})
    order = _resting_limit(oms)
    oms.on_canceled(order, 2, reason)
    state = order.state
    late = fill("e2", OrderSide.BUY, "0.02", "30000.00")
    oms.on_fill(order, late, -1)
    oms.on_fill(order, late, -1)  # the same execution again (a replay): booked once
    position = oms.portfolio.positions[BTC.symbol]
    assert position.quantity == Decimal("0.06")                     # the venue's 0.04 + 0.02
    assert oms.portfolio.cash == Decimal("8200")                      # 10,000 - 0.06 * 30,000
    assert [f.execution_id for f in oms.fills] == ["e1", "e2"]
    assert order.state is state and order.filled_qty == Decimal("0.06")
    assert order.events[-1].reason == f"{LATE_FILL} e2 after {state}"


def test_a_late_fill_survives_a_restart(database_url):
    upgrade(database_url)
    engine = make_engine(database_url)
    oms = OrderManager("bot", SimulatedClock(), _NoVenue(), Portfolio.for_instrument(Decimal("10000"), BTC),
                       {BTC.symbol: BTC}, journal=SqlJournal(engine, "bot", "B"))
    order = _resting_limit(oms)
    oms.on_canceled(order, 2, None)
    oms.on_fill(order, fill("e2", OrderSide.BUY, "0.02", "30000.00"), -1)
    oms.journal.flush()  # type: ignore[union-attr]

    stored = SqlJournal(engine, "bot", "B").load({BTC.symbol: BTC})
    replay = Portfolio.for_instrument(Decimal("10000"), BTC)
    rebuilt = OrderManager("bot", SimulatedClock(), _NoVenue(), replay, {BTC.symbol: BTC}, connect=False)
    rebuilt.restore(stored.orders, stored.fills, stored.next_order_seq)
    again = rebuilt.orders[order.client_order_id]
    assert again.state is OrderState.CANCELED and again.filled_qty == Decimal("0.06")
    assert replay.positions[BTC.symbol].quantity == Decimal("0.06") and replay.cash == Decimal("8200")
    rebuilt.on_fill(again, fill("e2", OrderSide.BUY, "0.02", "30000.00"), -1)  # redelivered after the restart
    assert replay.positions[BTC.symbol].quantity == Decimal("0.06")
    engine.dispose()
