"""The risk rule "every position must carry a stop" (issue 17 item 5, engine/risk.py require_stop):
an order that opens or grows a position without a stop attached, or working stops covering the
position after it, is denied NO_STOP; exits and protective orders pass."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest

from engine.errors import ConfigError
from engine.orders import Order, OrderSide, OrderState, OrderType
from engine.risk import AccountRisk, RiskEngine, RiskLimits, parse_risk_config
from strategies.base import BarData, Strategy
from tests.conftest import Harness, make_harness

D = Decimal


class Plain(Strategy):
    name = "plain"

    def next(self) -> None:
        pass


def _gated(require_stop: bool = True) -> Harness:
    h = make_harness()
    gate = RiskEngine("bot1", RiskLimits(require_stop=require_stop), AccountRisk(), h.clock,
                      {"TEST": h.instrument}, last_price=lambda _s: D("100.00"))
    gate.bind(h.oms)
    h.oms.risk = gate
    return h


def _fill_at(h: Harness, price: int) -> None:
    h.clock.ts += 1
    h.venue.on_tick(price * 100 - 1, price * 100, 0, h.clock.ts)


def _strategy(h: Harness) -> Strategy:
    frame = pd.DataFrame({"open": [100.0], "high": [100.0], "low": [100.0], "close": [100.0], "volume": [1.0]},
                         index=pd.DatetimeIndex([pd.Timestamp("2024-01-01", tz="UTC")]))
    strategy = Plain(Plain.Params())
    strategy.attach(BarData(frame), "TEST")
    strategy.connect(h.oms)
    strategy.i = 0
    return strategy


def test_the_limit_is_read_from_the_risk_yaml_and_must_be_a_boolean():
    assert parse_risk_config({"default_bot": {"require_stop": True}}).default_bot.require_stop is True
    assert RiskLimits().require_stop is False
    with pytest.raises(ConfigError) as error:
        parse_risk_config({"bots": {"a": {"require_stop": "yes"}}})
    assert error.value.field == "bots.a.require_stop"


def test_an_entry_without_a_stop_is_denied_and_one_with_a_bracket_stop_passes():
    h = _gated()
    bare = h.order("BUY", "10")
    assert bare.state is OrderState.DENIED and bare.reason == "NO_STOP"
    strategy = _strategy(h)
    entry = strategy.buy(qty=D(10), sl=95)
    assert entry is not None and entry.stop_attached and entry.state is not OrderState.DENIED
    (stop,) = strategy.protection(entry)  # type: ignore[arg-type]
    assert stop.state is not OrderState.DENIED
    only_tp = strategy.buy(qty=D(10), tp=110)  # a take-profit is no stop (nor is another entry's held stop)
    assert only_tp is not None and only_tp.state is OrderState.DENIED and only_tp.reason == "NO_STOP"
    trailed = strategy.sell(qty=D(10), sl=105, trail=2)
    assert trailed is not None and trailed.state is not OrderState.DENIED


def test_go_with_a_stop_passes_and_go_without_one_is_denied():
    h = _gated()
    strategy = _strategy(h)
    strategy.go(1)
    assert h.oms.denied and h.oms.denied[-1].reason == "NO_STOP" and h.oms.denied[-1].tag == "open"
    strategy.go(1, sl_distance=5)
    assert [o.tag for o in h.oms.open_orders] == ["open", "sl"]


def test_a_working_stop_must_cover_the_whole_position_after_the_order():
    h = _gated()
    strategy = _strategy(h)
    strategy.buy(qty=D(10), sl=95)
    _fill_at(h, 100)
    assert h.portfolio.positions["TEST"].quantity == 10
    more = h.order("BUY", "5")
    assert more.state is OrderState.DENIED and more.reason == "NO_STOP"  # the stop covers 10, not 15
    cover = h.order("SELL", "5", kind=OrderType.STOP, stop="94.00")  # leaves no position on its side
    assert cover.state is not OrderState.DENIED
    again = h.order("BUY", "5")
    assert again.state is not OrderState.DENIED


def test_exits_and_the_rule_switched_off_pass():
    h = _gated()
    strategy = _strategy(h)
    strategy.buy(qty=D(10), sl=95)
    _fill_at(h, 100)
    part = h.order("SELL", "4")
    assert part.state is not OrderState.DENIED  # a reduction carries no stop
    reversal = Order(h.oms.next_client_order_id(), "bot1", "TEST", OrderSide.SELL, OrderType.MARKET, D(20), 0)
    h.oms.submit(reversal)
    assert reversal.state is OrderState.DENIED and reversal.reason == "NO_STOP"  # it opens a short of 10
    free = _gated(require_stop=False)
    plain = free.order("BUY", "10")
    assert plain.state is not OrderState.DENIED
