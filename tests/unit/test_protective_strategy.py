"""The Strategy API for protective orders (issue 17): brackets from buy/sell/go, OCO and OTO from
order(), amend, close() canceling the bracket, and the refusals (field named, nothing sent)."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest

from engine.errors import ConfigError
from engine.orders import OrderSide, OrderState, OrderType
from strategies.base import BarData, Strategy, StrategyCodeError
from tests.conftest import Harness, make_harness


class Plain(Strategy):
    name = "plain"

    def next(self) -> None:
        pass


class WithSignals(Plain):
    def signals(self):  # noqa: ANN201
        return None


def _connected(cls: type[Strategy] = Plain, close: float = 100.0) -> tuple[Strategy, Harness]:
    h = make_harness()
    frame = pd.DataFrame({"open": [close], "high": [close], "low": [close], "close": [close], "volume": [1.0]},
                         index=pd.DatetimeIndex([pd.Timestamp("2024-01-01", tz="UTC")]))
    strategy = cls(cls.Params())
    strategy.attach(BarData(frame), "TEST")
    strategy.connect(h.oms)
    strategy.i = 0
    return strategy, h


def test_buy_with_sl_and_tp_sends_an_entry_and_a_bracket():
    strategy, h = _connected()
    entry = strategy.buy(qty=Decimal(3), sl=95, tp=110)
    assert entry is not None
    stop, take = strategy.protection(entry)
    assert (stop.type, stop.side, stop.stop_price, stop.qty) == (OrderType.STOP, OrderSide.SELL, Decimal("95.00"), 3)
    assert (take.type, take.limit_price, take.tag) == (OrderType.LIMIT, Decimal("110.00"), "tp")
    assert stop.parent_id == take.parent_id == entry.client_order_id
    assert stop.oco_group == take.oco_group == entry.client_order_id


def test_distances_are_taken_from_the_reference_price():
    strategy, h = _connected(close=100.0)
    entry = strategy.sell(qty=Decimal(1), sl_distance=2.5, tp_distance=Decimal("5"))
    stop, take = strategy.protection(entry)  # type: ignore[arg-type]
    assert stop.stop_price == Decimal("102.50") and take.limit_price == Decimal("95.00")
    limit_entry = strategy.buy(qty=Decimal(1), limit=90, sl_distance=1)
    (stop,) = strategy.protection(limit_entry)  # type: ignore[arg-type]
    assert stop.stop_price == Decimal("89.00") and stop.oco_group is None  # one leg: no group


def test_trail_as_distance_or_percent():
    strategy, h = _connected(close=100.0)
    entry = strategy.buy(qty=Decimal(1), trail=4)
    (trail,) = strategy.protection(entry)  # type: ignore[arg-type]
    assert trail.stop_price == Decimal("96.00") and trail.trail_distance == Decimal("4.00") and trail.tag == "trail"
    entry = strategy.buy(qty=Decimal(1), trail="2.5%", tp=120)
    trail, take = strategy.protection(entry)  # type: ignore[arg-type]
    assert trail.stop_price == Decimal("97.50") and trail.trail_percent == Decimal("2.5")
    assert trail.oco_group == take.oco_group == entry.client_order_id  # type: ignore[union-attr]


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"sl": 101}, "sl"),                       # a long's stop above its reference price
    ({"sl": 100}, "sl"),                       # ... or at it
    ({"tp": 99}, "tp"),                        # a take-profit on the wrong side
    ({"sl_distance": 0}, "sl_distance"),
    ({"tp_distance": -1}, "tp_distance"),
    ({"trail": 0}, "trail"),
    ({"trail": -2}, "trail"),
    ({"trail": "0%"}, "trail"),
    ({"trail": "100%"}, "trail"),
    ({"trail": 0.001}, "trail"),               # less than one tick
    ({"sl": 95, "sl_distance": 3}, "sl"),
    ({"sl_distance": 150}, "sl_distance"),     # below zero
    ({"tif": "FOREVER"}, "tif"),
])
def test_invalid_long_protection_is_refused_naming_the_field_and_nothing_is_sent(kwargs, field):
    strategy, h = _connected(close=100.0)
    seq = h.oms._seq
    with pytest.raises(ConfigError) as info:
        strategy.buy(qty=Decimal(1), **kwargs)
    assert info.value.field == field
    assert h.oms.orders == {} and h.oms._seq == seq


def test_short_protection_sides_mirror():
    strategy, h = _connected(close=100.0)
    with pytest.raises(ConfigError) as info:
        strategy.sell(qty=Decimal(1), sl=99)
    assert info.value.field == "sl"
    with pytest.raises(ConfigError) as info:
        strategy.go(-1, sl=105, tp=101)
    assert info.value.field == "tp"
    assert h.oms.orders == {}


def test_go_with_a_bracket_and_go_zero_with_one_is_refused():
    strategy, h = _connected(close=100.0)
    with pytest.raises(ConfigError) as info:
        strategy.go(0, sl=90)
    assert info.value.field == "sl"
    strategy.go(+1, sl=95, trail=None, tp=110)
    entry = next(o for o in h.oms.orders.values() if o.tag == "open")
    assert {o.tag for o in strategy.protection(entry)} == {"sl", "tp"}


def test_close_cancels_the_position_bracket_then_flattens():
    strategy, h = _connected(close=100.0)
    strategy.go(+1, sl=95, tp=110)
    h.bar("100.00", "101.00", "99.00", "100.00", index=1)
    entry = next(o for o in h.oms.orders.values() if o.tag == "open")
    stop, take = strategy.protection(entry)
    assert strategy.direction == 1
    closing = strategy.close()
    assert stop.state is OrderState.CANCELED and take.state is OrderState.CANCELED
    h.bar("100.00", "101.00", "90.00", "100.00", index=2)  # would have hit the stop: it is gone
    assert closing is not None and closing.state is OrderState.FILLED
    assert strategy.direction == 0 and stop.filled_qty == 0


def test_oco_and_oto_from_order():
    strategy, h = _connected(close=100.0)
    entry = strategy.buy(qty=Decimal(2), limit=99)
    child = strategy.sell(qty=None, limit=105, parent=entry)
    assert child is not None and child.parent_id == entry.client_order_id and child.qty is None  # type: ignore[union-attr]
    first = strategy.sell(qty=Decimal(1), limit=120, oco=True)
    second = strategy.sell(qty=Decimal(1), stop=80, oco=first)
    assert first.oco_group == second.oco_group == first.client_order_id  # type: ignore[union-attr]
    with pytest.raises(ConfigError) as info:
        strategy.sell(qty=Decimal(1), stop=80, oco=entry)
    assert info.value.field == "oco"
    with pytest.raises(ConfigError) as info:
        strategy.sell(fraction=Decimal("0.5"), limit=105, parent=entry)
    assert info.value.field == "fraction"


def test_amend_through_the_strategy_and_its_refusals():
    strategy, h = _connected(close=100.0)
    order = strategy.buy(qty=Decimal(2), limit=90)
    assert strategy.amend(order, price=91.004, qty=Decimal(3)) is None  # type: ignore[arg-type]
    assert order.limit_price == Decimal("91.00") and order.qty == 3  # type: ignore[union-attr]
    with pytest.raises(ConfigError) as info:
        strategy.amend(order)  # type: ignore[arg-type]
    assert info.value.field == "price"
    market = strategy.buy(qty=Decimal(1))
    with pytest.raises(ConfigError) as info:
        strategy.amend(market, price=100)  # type: ignore[arg-type]
    assert info.value.field == "price"
    h.bar("100.00", "101.00", "99.00", "100.00", index=1)
    assert market.state is OrderState.FILLED  # type: ignore[union-attr]
    with pytest.raises(ConfigError) as info:
        strategy.amend(market, qty=Decimal(5))  # type: ignore[arg-type]
    assert info.value.field == "order"


def test_muted_strategy_sends_nothing_and_amends_nothing():
    class Muted:
        muted = True

        def on_go(self, strategy, direction, fraction):  # noqa: ANN001
            raise AssertionError("not reached while muted")

    strategy, h = _connected()
    order = strategy.buy(qty=Decimal(1), limit=90)
    strategy.supervise(Muted())  # type: ignore[arg-type]
    assert strategy.buy(qty=Decimal(1), sl=95, tp=110) is None
    assert strategy.amend(order, price=91) is None  # type: ignore[arg-type]
    assert order.limit_price == Decimal("90.00")  # type: ignore[union-attr]
    assert len(h.oms.orders) == 1


def test_a_signals_strategy_must_declare_protective_to_send_them():
    strategy, h = _connected(WithSignals)
    with pytest.raises(StrategyCodeError):
        strategy.buy(qty=Decimal(1), sl=95)
    assert h.oms.orders == {}

    class Declared(WithSignals):
        protective = True

    strategy, h = _connected(Declared)
    assert strategy.buy(qty=Decimal(1), sl=95) is not None
