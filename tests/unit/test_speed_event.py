"""The event path's shortcuts (issue 18 item 4) change no outcome.

The event path carries raw integers further and skips work it can prove redundant: a faster
constructor for the frozen records it makes per order (Fill, ClosedTrade), the venue reusing the
raw quantity it validated at submit, the OMS booking a cash-currency fee without the valuation
step, `close()` skipping the protective-order scan when no bracket was ever sent. Each test here
drives a case where a wrong shortcut would give a different answer."""

from __future__ import annotations

import pickle
from dataclasses import FrozenInstanceError, replace
from decimal import Decimal

import pytest

from engine.orders import Fill, Liquidity, Order, OrderSide, OrderState, OrderType
from engine.portfolio import ClosedTrade
from tests.conftest import Harness, make_harness


def _fill(**changes: object) -> Fill:
    values: dict[str, object] = {"execution_id": "PAPER-1", "client_order_id": "bot1-00000001", "symbol": "TEST",
                                 "side": OrderSide.BUY, "qty_raw": 5, "price_raw": 10_000, "fee_raw": 3,
                                 "qty_dp": 0, "price_dp": 2, "cash_dp": 2, "ts": 7}
    values.update(changes)
    return Fill(**values)  # type: ignore[arg-type]


def test_fill_keeps_its_dataclass_contract():
    fill = _fill()
    assert fill.liquidity is Liquidity.TAKER and fill.fee_currency == "" and fill.fee_native_raw == 0  # defaults
    assert fill == Fill("PAPER-1", "bot1-00000001", "TEST", OrderSide.BUY, 5, 10_000, 3, 0, 2, 2, 7)  # positional
    assert fill.qty == Decimal(5) and fill.price == Decimal("100.00") and fill.fee == Decimal("0.03")
    with pytest.raises(FrozenInstanceError):
        fill.qty_raw = 6  # type: ignore[misc]
    changed = replace(fill, fee_raw=0, fee_currency="BNB", fee_native_raw=12, fee_native_dp=8)
    assert (changed.fee_raw, changed.fee_currency, changed.qty_raw) == (0, "BNB", 5)
    assert changed.fee_native == Decimal("1.2E-7")
    assert pickle.loads(pickle.dumps(changed)) == changed
    with pytest.raises(TypeError):
        Fill("PAPER-1", "bot1-00000001")  # type: ignore[call-arg]  # required fields stay required


def test_closed_trade_keeps_its_dataclass_contract():
    trade = ClosedTrade("TEST", 1, 5, 10_000, 10_100, 1, 2, 0, 1, 6, 494)
    assert trade == ClosedTrade(symbol="TEST", direction=1, qty=5, entry_price=10_000, exit_price=10_100,
                                entry_ts=1, exit_ts=2, entry_bar=0, exit_bar=1, fees=6, pnl=494)
    with pytest.raises(FrozenInstanceError):
        trade.pnl = 0  # type: ignore[misc]


def _market(h: Harness, side: str, qty: str) -> Order:
    order = Order(h.oms.next_client_order_id(), h.oms.bot_id, h.instrument.symbol, OrderSide(side), OrderType.MARKET,
                  Decimal(qty), h.clock.ts)
    h.oms.submit(order)
    return order


def test_a_quantity_amended_after_submit_fills_as_amended():
    h = make_harness()
    order = _market(h, "BUY", "5")
    assert h.oms.amend(order, qty=Decimal("3")) is None  # a new Decimal: the one validated at submit is stale
    h.bar("100.00", "101.00", "99.00", "100.00")
    assert order.state is OrderState.FILLED and order.filled_qty == 3
    assert h.portfolio.positions["TEST"].quantity == 3 and h.oms.fills[-1].qty_raw == 3


def test_orders_validated_in_turn_each_fill_their_own_quantity():
    h = make_harness()
    first, second = _market(h, "BUY", "5"), _market(h, "BUY", "2")  # the venue remembers the last one only
    h.bar("100.00", "101.00", "99.00", "100.00")
    assert [f.qty_raw for f in h.oms.fills] == [5, 2] and first.filled_qty == 5 and second.filled_qty == 2
    assert h.portfolio.positions["TEST"].quantity == 7


def test_a_fee_in_another_asset_is_still_valued_before_booking():
    """The OMS skips Portfolio.valued only for a fee in the cash currency: a fee charged in the
    base asset still moves the position by what the wallet received."""
    h = make_harness()
    order = _market(h, "BUY", "5")
    fill = Fill("EXT-1", order.client_order_id, "TEST", OrderSide.BUY, 5, 10_000, 0, 0, 2, 2, 1,
                fee_currency="TEST", fee_native_raw=1, fee_native_dp=0)
    h.oms.on_fill(order, fill, 0)
    assert h.portfolio.positions["TEST"].quantity == 4  # 5 bought, 1 taken as the fee
    assert h.oms.fills[-1].fee_raw == 100_00  # valued at the fill price: 1 x 100.00


def test_close_still_cancels_a_bracket_once_one_was_sent():
    """Strategy.close skips the protective scan only while the OMS has never seen a child."""
    h = make_harness()
    assert not h.oms.has_children
    entry = _market(h, "BUY", "5")
    stop = Order(h.oms.next_client_order_id(), h.oms.bot_id, "TEST", OrderSide.SELL, OrderType.STOP, Decimal(5),
                 h.clock.ts, stop_price=Decimal("90.00"), parent_id=entry.client_order_id)
    h.oms.submit(stop)
    assert h.oms.has_children
    h.bar("100.00", "101.00", "99.00", "100.00")
    assert entry.state is OrderState.FILLED and stop.state is OrderState.ACCEPTED
