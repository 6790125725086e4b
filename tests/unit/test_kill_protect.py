"""The kill switch and protective orders (issue 17 item 5, engine/controls.py kill): entries and
other orders are canceled first, the position is flattened, and the stop protecting it is canceled
only once the flattening order has filled; if the flatten cannot fill (the venue unreachable), the
stop stays working and still protects the position."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from brokers.paper.adapter import PaperAdapter
from brokers.paper.venue import SimulatedVenue
from engine import controls
from engine.clock import SimulatedClock
from engine.instrument import Instrument
from engine.market import Tick
from engine.oms import OrderManager
from engine.orders import Order, OrderSide, OrderState, OrderType
from engine.portfolio import Portfolio
from engine.risk import AccountRisk, RiskEngine, RiskLimits, TradingState

INSTRUMENT = Instrument("TEST", price_increment=Decimal("0.01"))
D = Decimal


@dataclass
class Driver:
    """What kill() reads of the strategy's driver (engine.controls.Driven)."""

    trading: bool = True
    muted: bool = False
    strategy: Any = None


class NoLinks(PaperAdapter):
    protective_orders = False  # the OMS emulates the stop


def _bot(adapter_cls: type[PaperAdapter] = PaperAdapter, gated: bool = True) -> tuple[OrderManager, PaperAdapter,
                                                                                      RiskEngine | None]:
    adapter = adapter_cls(SimulatedVenue(INSTRUMENT, D(10_000)))
    clock = SimulatedClock()
    oms = OrderManager("b", clock, adapter, Portfolio.for_instrument(D(10_000), INSTRUMENT), {"TEST": INSTRUMENT})
    gate = None
    if gated:
        gate = RiskEngine("b", RiskLimits(), AccountRisk(), clock, {"TEST": INSTRUMENT},
                          last_price=lambda _s: D("100.00"))
        gate.bind(oms)
        oms.risk = gate
    return oms, adapter, gate


def _tick(oms: OrderManager, adapter: PaperAdapter, bid: str) -> None:
    clock = oms.clock
    assert isinstance(clock, SimulatedClock)
    clock.ts += 1
    tick = Tick("TEST", clock.ts, bid=float(bid), ask=float(D(bid) + D("0.01")))
    oms.on_quote(tick)
    adapter.on_quote(tick)


def _protected_long(oms: OrderManager, adapter: PaperAdapter) -> tuple[Order, Order, Order]:
    """Long 10 at 100.01 with a stop at 95 and a take-profit at 120 (a bracket), and a resting
    limit buy that has nothing to do with them."""
    entry = Order(oms.next_client_order_id(), "b", "TEST", OrderSide.BUY, OrderType.MARKET, D(10), 0)
    oms.submit(entry)
    stop = Order(oms.next_client_order_id(), "b", "TEST", OrderSide.SELL, OrderType.STOP, D(10), 0,
                 stop_price=D("95.00"), parent_id=entry.client_order_id, oco_group=entry.client_order_id, tag="sl")
    take = Order(oms.next_client_order_id(), "b", "TEST", OrderSide.SELL, OrderType.LIMIT, D(10), 0,
                 limit_price=D("120.00"), parent_id=entry.client_order_id, oco_group=entry.client_order_id, tag="tp")
    oms.submit(stop)
    oms.submit(take)
    _tick(oms, adapter, "100.00")
    assert entry.state is OrderState.FILLED and oms.portfolio.positions["TEST"].quantity == 10
    other = Order(oms.next_client_order_id(), "b", "TEST", OrderSide.BUY, OrderType.LIMIT, D(5), 0,
                  limit_price=D("90.00"), tag="open")
    oms.submit(other)
    return stop, take, other


@pytest.mark.parametrize("adapter_cls", [PaperAdapter, NoLinks], ids=["native", "emulated"])
@pytest.mark.parametrize("gated", [True, False], ids=["risk", "no-risk"])
def test_kill_keeps_the_stop_working_until_the_flatten_has_filled(adapter_cls, gated):
    oms, adapter, gate = _bot(adapter_cls, gated)
    stop, take, other = _protected_long(oms, adapter)
    controls.kill(oms, Driver(), gate, "test")
    assert other.state is OrderState.CANCELED
    assert stop.is_open and take.is_open  # the position is not flat yet: still protected
    (flatten,) = [o for o in oms.open_orders if o.tag == "close"]
    assert flatten.reduce_only and flatten.side is OrderSide.SELL and flatten.qty == 10
    if gate is not None:
        assert gate.state is TradingState.HALTED
    _tick(oms, adapter, "99.00")  # the flatten fills: now the protection goes
    assert flatten.state is OrderState.FILLED and oms.portfolio.positions["TEST"].quantity == 0
    assert stop.state is OrderState.CANCELED and take.state is OrderState.CANCELED
    assert not oms.open_orders and not oms.fill_listeners
    _tick(oms, adapter, "90.00")  # below the old stop: nothing opens a short
    assert oms.portfolio.positions["TEST"].quantity == 0


@pytest.mark.parametrize("adapter_cls", [PaperAdapter, NoLinks], ids=["native", "emulated"])
def test_kill_with_the_venue_down_keeps_the_stop_and_it_still_fires(adapter_cls):
    oms, adapter, gate = _bot(adapter_cls)
    stop, take, _ = _protected_long(oms, adapter)
    for _ in range(adapter.max_attempts):
        adapter.inject("unavailable")
    controls.kill(oms, Driver(), gate, "venue down")
    flatten = [o for o in oms.orders.values() if o.tag == "close"]
    assert len(flatten) == 1 and flatten[0].state is OrderState.REJECTED
    assert stop.is_open and take.is_open  # the flatten cannot fill: the stop stays
    assert gate is not None and gate.state is TradingState.HALTED
    _tick(oms, adapter, "94.00")  # the stop fires (venue-held or emulated: halted, the exit still passes)
    assert stop.state is OrderState.FILLED and take.state is OrderState.CANCELED
    assert oms.portfolio.positions["TEST"].quantity == 0
    assert not oms.open_orders and not oms.fill_listeners


def test_kill_when_flat_cancels_protection_at_once():
    oms, adapter, gate = _bot(NoLinks)
    entry = Order(oms.next_client_order_id(), "b", "TEST", OrderSide.BUY, OrderType.LIMIT, D(10), 0,
                  limit_price=D("90.00"))
    oms.submit(entry)
    stop = Order(oms.next_client_order_id(), "b", "TEST", OrderSide.SELL, OrderType.STOP, D(10), 0,
                 stop_price=D("85.00"), parent_id=entry.client_order_id, tag="sl")
    oms.submit(stop)
    controls.kill(oms, Driver(), gate, "test")
    assert entry.state is OrderState.CANCELED and stop.state is OrderState.CANCELED
    assert not [o for o in oms.orders.values() if o.tag == "close"] and not oms.fill_listeners


def test_a_killed_bot_restarted_after_its_flatten_filled_unseen_drops_the_orphaned_stop(tmp_path):
    """The kill cancels a position's protection only once its flatten has filled, through a fill
    listener held in memory. A crash before that fill reached the bot (the venue filled the flatten
    while nobody listened) took the listener with it: the stop and take-profit stayed working on a
    flat account, and below the old stop the stop would sell 10 the bot does not hold (a short
    nobody asked for). A killed bot's start (live/runner.py, restored.close_gap False) now takes the
    kill's last step again after reconciliation: drop_protection_of_flat."""
    from dataclasses import replace

    from brokers.paper.durable import DurablePaperVenue
    from engine.reconcile import reconcile_with_adapter

    def venue() -> PaperAdapter:
        return PaperAdapter(DurablePaperVenue(tmp_path / "v.log", INSTRUMENT, D(10_000)))

    def oms_on(adapter: PaperAdapter, connect: bool = True) -> OrderManager:
        return OrderManager("b", SimulatedClock(), adapter, Portfolio.for_instrument(D(10_000), INSTRUMENT),
                            {"TEST": INSTRUMENT}, connect=connect)

    def tick(adapter: PaperAdapter, ts: int, bid: str) -> None:
        adapter.on_quote(Tick("TEST", ts, bid=float(bid), ask=float(D(bid) + D("0.01"))))

    def run(drop: bool) -> tuple[OrderManager, Order, Order]:
        (tmp_path / "v.log").unlink(missing_ok=True)
        adapter = venue()
        oms = oms_on(adapter)
        stop, take, _ = _protected_long(oms, adapter)
        controls.kill(oms, Driver(), None, "test")
        assert stop.is_open and take.is_open  # not flat yet: still protected
        adapter.drop_stream()                  # the process dies; the venue fills the flatten unseen
        tick(adapter, 10, "99.00")
        stored = [replace(o) for o in oms.orders.values()]  # what the store held
        restarted_adapter = venue()
        restarted = oms_on(restarted_adapter, connect=False)
        restarted.restore(stored, list(oms.fills), 20)
        reconcile_with_adapter(restarted, restarted_adapter, 20)
        restarted_adapter.connect(restarted)
        assert restarted.portfolio.positions["TEST"].quantity == 0  # the flatten's fill, booked
        if drop:
            assert controls.drop_protection_of_flat(restarted) == []
        tick(restarted_adapter, 30, "90.00")    # below the old stop
        return restarted, restarted.orders[stop.client_order_id], restarted.orders[take.client_order_id]

    before, stop, take = run(drop=False)  # what a restart did
    assert stop.state is OrderState.FILLED and before.portfolio.positions["TEST"].quantity == -10
    after, stop, take = run(drop=True)
    assert stop.state is OrderState.CANCELED and take.state is OrderState.CANCELED
    assert after.portfolio.positions["TEST"].quantity == 0 and not after.open_orders
