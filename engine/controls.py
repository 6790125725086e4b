"""What a stop and a kill do to a bot's orders, in one place for the live runtime, the parity
replay and the backtester's tick path (a recorded session replays its stops and kills at the
ticks they happened after).

- stop, on_stop "cancel": every open order is cancelled; "keep": nothing is touched, the orders
  stay working at the venue and are restored with the bot on its next start.
- kill: the kill switch. With a risk engine, engine.risk.KillSwitch does it (REDUCING so the
  flattening order passes, cancel, flatten, HALTED). Without one the runtime does the same
  steps itself; either way the strategy is no longer called until a person starts the bot again.
  Protective orders (engine.emulation.is_protective: a bracket's stop-loss / take-profit of an
  entry that filled, a trailing stop) are canceled only once the position they protect is flat:
  first the entries and other orders, then the flattening market order, then, when a fill leaves
  the symbol flat, its protection. If the flatten cannot fill (the venue unreachable: the order is
  rejected), the stop stays working; a symbol already flat loses its protection at once.
  An entry whose cancel is not final yet (Alpaca's asynchronous cancels: pending_cancel, and a
  fill may still land) keeps its bracket children until it has ended; a fill that lands on the
  killed bot after the kill (such an entry's) is flattened at once, reduce-only, by the kill's fill
  listener, and the symbol's protection goes once it is flat with no entry left that could fill.
"""

from __future__ import annotations

from typing import Any, Protocol

from engine.emulation import is_protective
from engine.oms import OrderManager
from decimal import Decimal

from engine.orders import Fill, Order, OrderSide, OrderType
from engine.portfolio import ClosedTrade
from engine.risk import KillSwitch, RiskEngine, TradingState


class Driven(Protocol):
    """What drives a strategy (live/driver.py's StrategyDriver, the backtester's tick path): whether
    it still calls the strategy, whether order entry is muted, and the strategy (`close()`)."""

    trading: bool
    muted: bool
    strategy: Any

START = "start"
CANCEL = "cancel"
KILL = "kill"


def cancel_open_orders(oms: OrderManager) -> int:
    """Cancel every open order; returns how many were open."""
    count = len(oms.open_orders)
    oms.cancel_all()
    return count


def _protecting(oms: OrderManager, order: Order) -> bool:
    """A protective order that protects something now, or may have to: a trailing stop, a child of
    an entry that has filled, or of an entry that has not ended yet (its cancel may lose the race
    with a fill; the child goes with the entry once it ends unfilled, the venue's or adapter's way)."""
    if not is_protective(order):
        return False
    parent = oms.orders.get(order.parent_id) if order.parent_id is not None else None
    return parent is None or bool(parent.filled_qty) or not parent.is_terminal


def cancel_unprotective(oms: OrderManager) -> None:
    """A kill's first step: cancel every open order but the ones protecting a position."""
    for order in oms.open_orders:
        if not _protecting(oms, order):
            oms.cancel(order)


def flatten(oms: OrderManager) -> list[Order]:
    """A kill's second step: a reduce-only market order closing each position (tag "close", as
    Strategy.close makes it), protective orders left working; returns the orders."""
    out = []
    for symbol, position in oms.portfolio.positions.items():
        if not position.qty:
            continue
        side = OrderSide.SELL if position.qty > 0 else OrderSide.BUY
        order = Order(oms.next_client_order_id(), oms.bot_id, symbol, side, OrderType.MARKET,
                      position.scales.qty(abs(position.qty)), oms.clock.now_ns(), reduce_only=True, tag="close")
        oms.submit(order)
        out.append(order)
    return out


def _opens(order: Order) -> bool:
    """An order whose fill may open or grow a position: not a close, an exit or a trigger."""
    return not (order.reduce_only or is_protective(order) or order.trigger_of is not None or order.tag == "close")


def _held(oms: OrderManager, symbol: str) -> bool:
    position = oms.portfolio.positions.get(symbol)
    return position is not None and bool(position.qty)


def flatten_late(oms: OrderManager, symbol: str, gate: RiskEngine | None = None) -> Order | None:
    """A fill landed on a killed bot (an entry whose cancel lost the race): close what the
    position holds beyond the closing orders already in flight, reduce-only (tag "close"). A halted
    gate lets it through as the kill's own flatten passes (REDUCING while it is checked)."""
    position = oms.portfolio.positions.get(symbol)
    if position is None or not position.qty:
        return None
    side = OrderSide.SELL if position.qty > 0 else OrderSide.BUY
    in_flight = sum((o.leaves_qty for o in oms.open_orders if o.symbol == symbol and o.side is side
                     and o.reduce_only and not is_protective(o) and o.qty is not None), Decimal(0))
    qty = abs(position.quantity) - in_flight
    if qty <= 0:
        return None
    order = Order(oms.next_client_order_id(), oms.bot_id, symbol, side, OrderType.MARKET, qty, oms.clock.now_ns(),
                  reduce_only=True, tag="close")
    if gate is None or gate.state is not TradingState.HALTED:
        oms.submit(order)
        return order
    ts = oms.clock.now_ns()
    gate.set_state(TradingState.REDUCING, ts, "KILL_SWITCH:LATE_FILL")
    try:
        with gate.flattening():
            oms.submit(order)
    finally:
        gate.set_state(TradingState.HALTED, ts, "KILL_SWITCH:LATE_FILL")
    return order


def _cancel_protection(oms: OrderManager, symbol: str) -> None:
    for order in oms.open_orders:
        if order.symbol == symbol and is_protective(order):
            oms.cancel(order)


def _busy(oms: OrderManager, symbol: str) -> bool:
    """A position held, or an entry that could still fill: protection there may still be needed."""
    return _held(oms, symbol) or any(o.symbol == symbol and _opens(o) for o in oms.open_orders)


def drop_protection_of_flat(oms: OrderManager) -> list[str]:
    """The part of a kill's last step that can be taken at once: cancel the protective orders of
    every symbol that is flat with no entry that could still fill. Returns the symbols that are
    still busy (held, or an entry working). Also run when a killed bot starts again (live/runner.py):
    a crash between the kill's flatten and its fill took the in-memory watch of unprotect_when_flat
    with it, and a stop left working at the venue on a flat account would open a position."""
    symbols = {o.symbol for o in oms.open_orders if is_protective(o)}
    waiting = [symbol for symbol in sorted(symbols | {o.symbol for o in oms.open_orders if _opens(o)})
               if _busy(oms, symbol)]
    for symbol in sorted(symbols - set(waiting)):
        _cancel_protection(oms, symbol)
    return waiting


def unprotect_when_flat(oms: OrderManager, gate: RiskEngine | None = None) -> None:
    """A kill's last step: cancel each symbol's protective orders once it is flat (now, when no
    entry there could still fill, else at the fill that makes it flat: a fill listener that
    removes itself when no symbol is left to watch). A fill of an entry on a watched symbol after
    the kill is flattened at once (flatten_late)."""
    waiting = set(drop_protection_of_flat(oms))
    if not waiting:
        return

    def on_fill(order: Order, fill: Fill, closed: list[ClosedTrade]) -> None:
        symbol = fill.symbol
        if symbol not in waiting:
            return
        if _opens(order) and _held(oms, symbol):
            flatten_late(oms, symbol, gate)  # a fill after the kill: never left held
        if _held(oms, symbol):
            return
        # flat: the protection goes (a later fill of an entry still canceling is flattened again);
        # the symbol is watched while such an entry may still fill
        _cancel_protection(oms, symbol)
        if not _busy(oms, symbol):
            waiting.discard(symbol)
            if not waiting and on_fill in oms.fill_listeners:
                oms.fill_listeners.remove(on_fill)

    on_fill.kill_watch = True  # type: ignore[attr-defined]  # apply(START) drops it
    oms.fill_listeners.append(on_fill)


def kill(oms: OrderManager, driver: Driven, gate: RiskEngine | None, reason: str) -> None:
    """The kill switch on one bot (module docstring): cancel, flatten, then protection once flat."""
    driver.trading = False
    was_muted, driver.muted = driver.muted, False
    try:
        if gate is not None:
            switch = KillSwitch(gate.account, oms.clock)
            switch.register(oms.bot_id, lambda: cancel_unprotective(oms), lambda: flatten(oms))
            switch.trip("bot", reason, oms.bot_id)
        else:
            cancel_unprotective(oms)
            flatten(oms)
    finally:
        driver.muted = was_muted
        unprotect_when_flat(oms, gate)


def apply(action: str, oms: OrderManager, driver: Driven, gate: RiskEngine | None, reason: str = "") -> None:
    """Replay one recorded control action."""
    if action == START:  # a (re)start: a fresh risk engine and a strategy that trades again
        driver.trading = True
        oms.fill_listeners[:] = [f for f in oms.fill_listeners if not getattr(f, "kill_watch", False)]
        if gate is not None and gate.state is not TradingState.ACTIVE:
            gate.set_state(TradingState.ACTIVE, oms.clock.now_ns(), "RESTARTED")
    elif action == CANCEL:
        cancel_open_orders(oms)
    elif action == KILL:
        kill(oms, driver, gate, reason)
    else:
        raise ValueError(f"unknown control action {action!r}")
