"""OMS-side emulation of protective orders a venue lacks (issue 17 item 3, engine/emulation.py).

The venue is the real paper venue (SimulatedVenue behind PaperAdapter) with its capability flags
turned off, as a venue that does not carry the links declares them; the same scenario on the same
venue with the flags on is the reference: emulated and native protection must end the same."""

from __future__ import annotations

from decimal import Decimal

from brokers.paper.adapter import PaperAdapter
from brokers.paper.venue import SimulatedVenue
from engine.clock import SimulatedClock
from engine.instrument import Instrument
from engine.market import Tick
from engine.oms import OrderManager
from engine.orders import Order, OrderSide, OrderState, OrderType
from engine.portfolio import Portfolio
from engine.risk import AccountRisk, RiskEngine, RiskLimits, TradingState

INSTRUMENT = Instrument("TEST", price_increment=Decimal("0.01"))
D = Decimal


class NoLinks(PaperAdapter):
    """A venue that carries no protective links: brackets, OCO and trailing stops are the OMS's."""

    protective_orders = False


class NoTrailing(PaperAdapter):
    """A venue with server-side brackets but no trailing stop (MetaTrader 5's flags)."""

    native_brackets = True
    native_oco = False
    native_trailing = False


def _bot(adapter_cls: type[PaperAdapter], partial: bool = False) -> tuple[OrderManager, PaperAdapter]:
    adapter = adapter_cls(SimulatedVenue(INSTRUMENT, D(10_000), partial_fills=partial))
    oms = OrderManager("b", SimulatedClock(), adapter, Portfolio.for_instrument(D(10_000), INSTRUMENT),
                       {"TEST": INSTRUMENT})
    return oms, adapter


def _tick(oms: OrderManager, adapter: PaperAdapter, bid: str, ask: str, size: float = 0.0) -> None:
    """One tick as the runner hands it on: the OMS's emulated orders first, then the venue."""
    clock = oms.clock
    assert isinstance(clock, SimulatedClock)
    clock.ts += 1
    tick = Tick("TEST", clock.ts, bid=float(bid), ask=float(ask), size=size)
    oms.on_quote(tick)
    adapter.on_quote(tick)


def _bracket(oms: OrderManager, qty: str = "10", trail: str | None = "5.00", stop: str = "95.00",
             take: str | None = "120.00") -> tuple[Order, Order, Order | None]:
    entry = Order(oms.next_client_order_id(), "b", "TEST", OrderSide.BUY, OrderType.MARKET, D(qty), 0)
    oms.submit(entry)
    group = entry.client_order_id if take is not None else None
    sl = Order(oms.next_client_order_id(), "b", "TEST", OrderSide.SELL, OrderType.STOP, D(qty), 0,
               stop_price=D(stop), parent_id=entry.client_order_id, oco_group=group,
               trail_distance=None if trail is None else D(trail), tag="trail" if trail else "sl")
    oms.submit(sl)
    tp = None
    if take is not None:
        tp = Order(oms.next_client_order_id(), "b", "TEST", OrderSide.SELL, OrderType.LIMIT, D(qty), 0,
                   limit_price=D(take), parent_id=entry.client_order_id, oco_group=group, tag="tp")
        oms.submit(tp)
    return entry, sl, tp


PATH = [("99.99", "100.00"), ("107.99", "108.00"), ("104.00", "104.01"), ("102.50", "102.51"), ("101.00", "101.01")]


def test_a_trailing_bracket_on_a_venue_without_links_is_emulated_and_ends_as_the_native_one():
    ends = {}
    for adapter_cls in (PaperAdapter, NoLinks):
        oms, adapter = _bot(adapter_cls)
        entry, trail, take = _bracket(oms)
        assert take is not None
        for bid, ask in PATH:
            _tick(oms, adapter, bid, ask)
        fills = [(f.client_order_id, f.price, f.qty) for f in oms.fills]
        ends[adapter_cls.__name__] = (oms.portfolio.cash, trail.state, take.state, fills[-1][1:])
        if adapter_cls is NoLinks:
            assert trail.emulated and take.emulated and not entry.emulated
            assert trail.as_dict()["emulated"] is True
            assert trail.client_order_id not in adapter._book.orders  # the venue never saw it
            trigger = oms.orders[fills[-1][0]]
            assert trigger.trigger_of == trail.client_order_id and trigger.reduce_only
            assert trigger.type is OrderType.MARKET and trigger.tag == "trail"
            assert any(e.reason == "TRAILED stop=102.99" for e in trail.events) and trail.stop_price == D("102.99")
            assert take.reason == "OCO"
    native, emulated = ends["PaperAdapter"], ends["NoLinks"]
    assert emulated == native
    assert emulated[1] is OrderState.FILLED and emulated[3] == (D("102.50"), D(10))


def test_the_oms_refused_these_links_before_emulation():
    """The defect: an adapter without `protective_orders` got PROTECTIVE_UNSUPPORTED, unprotected."""
    oms, _ = _bot(NoLinks)
    _, trail, take = _bracket(oms)
    assert trail.state is OrderState.ACCEPTED and trail.reason == "EMULATED"
    assert take is not None and take.state is OrderState.ACCEPTED


def test_a_partial_take_profit_shrinks_the_emulated_stop_and_the_rest_cancels_it():
    oms, adapter = _bot(NoLinks, partial=True)
    entry, stop, take = _bracket(oms, trail=None, take="110.00")
    assert take is not None
    _tick(oms, adapter, "99.99", "100.00")
    assert entry.state is OrderState.FILLED and stop.qty == 10 and take.qty == 10
    _tick(oms, adapter, "110.00", "110.01", size=4)   # touched: a limit at 110.00 is sent, 4 fill
    assert take.state is OrderState.PARTIALLY_FILLED and take.filled_qty == 4
    assert stop.qty == 6 and stop.state is OrderState.ACCEPTED
    trigger = next(o for o in oms.orders.values() if o.trigger_of == take.client_order_id)
    assert trigger.type is OrderType.LIMIT and trigger.limit_price == D("110.00") and trigger.qty == 10
    _tick(oms, adapter, "110.50", "110.51", size=10)  # the rest of the limit
    assert take.state is OrderState.FILLED and take.avg_fill_price == D("110.00")
    assert stop.state is OrderState.CANCELED and stop.reason == "OCO"
    assert oms.portfolio.positions["TEST"].quantity == 0


def test_a_stop_fired_with_a_partial_entry_closes_only_what_filled():
    oms, adapter = _bot(NoLinks, partial=True)
    entry = Order(oms.next_client_order_id(), "b", "TEST", OrderSide.BUY, OrderType.LIMIT, D(10), 0,
                  limit_price=D("100.00"))
    oms.submit(entry)
    stop = Order(oms.next_client_order_id(), "b", "TEST", OrderSide.SELL, OrderType.STOP, D(10), 0,
                 stop_price=D("95.00"), parent_id=entry.client_order_id, tag="sl")
    oms.submit(stop)
    _tick(oms, adapter, "99.99", "100.00", size=3)
    assert entry.filled_qty == 3 and stop.qty == 3
    oms.cancel(entry)  # the rest of the entry is canceled: the stop keeps protecting the 3 that filled
    assert entry.state is OrderState.CANCELED and stop.state is OrderState.ACCEPTED
    _tick(oms, adapter, "94.00", "94.01")
    assert stop.state is OrderState.FILLED and stop.filled_qty == 3
    assert oms.portfolio.positions["TEST"].quantity == 0


def test_held_children_go_with_a_parent_canceled_before_any_fill():
    oms2, adapter2 = _bot(NoLinks)
    entry2 = Order(oms2.next_client_order_id(), "b", "TEST", OrderSide.BUY, OrderType.LIMIT, D(10), 0,
                   limit_price=D("90.00"))
    oms2.submit(entry2)
    stop2 = Order(oms2.next_client_order_id(), "b", "TEST", OrderSide.SELL, OrderType.STOP, D(10), 0,
                  stop_price=D("85.00"), parent_id=entry2.client_order_id, tag="sl")
    oms2.submit(stop2)
    oms2.cancel(entry2)
    assert entry2.state is OrderState.CANCELED
    assert stop2.state is OrderState.CANCELED and stop2.reason == "PARENT_CANCELED"
    _tick(oms2, adapter2, "80.00", "80.01")
    assert not oms2.fills


def test_a_standalone_oco_is_emulated_where_the_venue_has_none():
    oms, adapter = _bot(NoLinks)
    buy_stop = Order(oms.next_client_order_id(), "b", "TEST", OrderSide.BUY, OrderType.STOP, D(2), 0,
                     stop_price=D("105.00"))
    buy_stop.oco_group = buy_stop.client_order_id
    buy_limit = Order(oms.next_client_order_id(), "b", "TEST", OrderSide.BUY, OrderType.LIMIT, D(2), 0,
                      limit_price=D("95.00"), oco_group=buy_stop.client_order_id)
    oms.submit(buy_stop)
    oms.submit(buy_limit)
    assert buy_stop.emulated and buy_limit.emulated
    _tick(oms, adapter, "100.00", "100.01")
    assert not oms.fills
    _tick(oms, adapter, "105.10", "105.11")
    assert buy_stop.state is OrderState.FILLED and oms.portfolio.positions["TEST"].quantity == 2
    assert buy_limit.state is OrderState.CANCELED and buy_limit.reason == "OCO"
    trigger = next(o for o in oms.orders.values() if o.trigger_of == buy_stop.client_order_id)
    assert not trigger.reduce_only  # an entry OCO opens a position: not an exit


def test_only_what_the_venue_lacks_is_emulated_and_a_bracket_is_emulated_whole():
    oms, adapter = _bot(NoTrailing)
    _, fixed, fixed_tp = _bracket(oms, trail=None)
    assert not fixed.emulated and fixed_tp is not None and not fixed_tp.emulated
    assert fixed.client_order_id in adapter._book.orders
    oms2, _ = _bot(NoTrailing)
    _, trail, take = _bracket(oms2)
    assert trail.emulated and take is not None and take.emulated  # its OCO sibling joins it


def test_a_triggered_stop_passes_a_halted_gate_as_an_exit_that_reduces():
    oms, adapter = _bot(NoLinks)
    gate = RiskEngine("b", RiskLimits(max_open_orders=1), AccountRisk(), oms.clock, {"TEST": INSTRUMENT},
                      last_price=lambda _s: D("100.00"))
    gate.bind(oms)
    _, stop, _ = _bracket(oms, trail=None, take=None)
    oms.risk = gate
    _tick(oms, adapter, "99.99", "100.00")
    assert oms.portfolio.positions["TEST"].quantity == 10
    gate.set_state(TradingState.HALTED, oms.clock.now_ns(), "test")
    plain = Order(oms.next_client_order_id(), "b", "TEST", OrderSide.SELL, OrderType.MARKET, D(10), 0)
    oms.submit(plain)
    assert plain.state is OrderState.DENIED and plain.reason == "TRADING_HALTED"
    _tick(oms, adapter, "94.00", "94.01")  # the open-order cap (the stop is open) and HALTED do not stop it
    assert stop.state is OrderState.FILLED and oms.portfolio.positions["TEST"].quantity == 0


def test_an_emulated_order_is_amended_and_canceled_here():
    oms, adapter = _bot(NoLinks)
    entry, stop, _ = _bracket(oms, trail=None, take=None)
    assert oms.amend(stop, price=D("96.00")) is None and stop.stop_price == D("96.00")
    assert any(e.reason == "AMENDED price=96.00" for e in stop.events)
    oms.cancel_all()
    assert stop.state is OrderState.CANCELED and entry.state is OrderState.CANCELED
    assert list(adapter._book.orders) == [entry.client_order_id]  # only the entry ever reached the venue


def test_an_emulated_entry_whose_trigger_the_gate_denies_ends_instead_of_retrying_at_every_tick():
    oms, adapter = _bot(NoLinks)
    gate = RiskEngine("b", RiskLimits(max_order_qty=D(5)), AccountRisk(), oms.clock, {"TEST": INSTRUMENT},
                      last_price=lambda _s: D("100.00"))
    gate.bind(oms)
    buy_stop = Order(oms.next_client_order_id(), "b", "TEST", OrderSide.BUY, OrderType.STOP, D(5), 0,
                     stop_price=D("105.00"))
    buy_stop.oco_group = buy_stop.client_order_id
    oms.submit(buy_stop)
    oms.risk = gate
    gate.limits = RiskLimits(max_order_qty=D(1))  # the limit tightened after the order was accepted
    _tick(oms, adapter, "105.10", "105.11")
    assert buy_stop.state is OrderState.CANCELED and buy_stop.reason == "TRIGGER_DENIED:MAX_ORDER_QTY"
    _tick(oms, adapter, "105.20", "105.21")
    assert len([o for o in oms.denied if o.trigger_of == buy_stop.client_order_id]) == 1


def test_a_stop_whose_trigger_the_venue_refuses_retries_with_backoff_not_at_every_tick():
    """The venue down: the emulated stop's market order is refused. It keeps trying (a bare position
    is worse than a refused order), after 0.5 s, 1 s, 2 s ... up to 30 s, not at every tick: a
    minute of ticks every 100 ms wrote 600 REJECTED orders into the journal before."""
    from engine.ports import VenueUnreachable

    class Down(NoLinks):
        down = False

        def _send(self, order: Order) -> None:
            if self.down:
                raise VenueUnreachable("the venue is down")
            super()._send(order)

    oms, adapter = _bot(Down)
    entry, sl, _ = _bracket(oms, trail=None, take=None)
    _tick(oms, adapter, "99.99", "100.00")
    assert entry.state is OrderState.FILLED and sl.emulated and sl.is_open
    clock = oms.clock
    assert isinstance(clock, SimulatedClock)
    adapter.down = True
    for _ in range(600):  # one minute at 10 ticks a second, the venue refusing everything
        clock.ts += 100_000_000 - 1
        _tick(oms, adapter, "94.00", "94.01")
    triggers = [o for o in oms.orders.values() if o.trigger_of == sl.client_order_id]
    assert 6 <= len(triggers) <= 8, len(triggers)  # at 0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s
    assert all(t.state is OrderState.REJECTED for t in triggers) and sl.is_open
    adapter.down = False
    clock.ts += 31_000_000_000
    _tick(oms, adapter, "94.00", "94.01")  # the venue is back: the next try fills and flattens
    assert sl.state is OrderState.FILLED and oms.portfolio.positions["TEST"].quantity == 0
