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
"""

from __future__ import annotations

from typing import Any, Protocol

from engine.emulation import is_protective
from engine.oms import OrderManager
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
    """A protective order that protects something now: a trailing stop, or a child of an entry
    that has filled (a child of an unfilled entry protects nothing and goes with the entry)."""
    if not is_protective(order):
        return False
    parent = oms.orders.get(order.parent_id) if order.parent_id is not None else None
    return parent is None or bool(parent.filled_qty)


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


def unprotect_when_flat(oms: OrderManager) -> None:
    """A kill's last step: cancel each symbol's protective orders once it is flat (now, or at the
    fill that makes it flat: a fill listener that removes itself when every symbol is flat)."""
    def cancel_protection(symbol: str) -> None:
        for order in oms.open_orders:
            if order.symbol == symbol and is_protective(order):
                oms.cancel(order)

    def held(symbol: str) -> bool:
        position = oms.portfolio.positions.get(symbol)
        return position is not None and bool(position.qty)

    symbols = {o.symbol for o in oms.open_orders if is_protective(o)}
    waiting = {symbol for symbol in symbols if held(symbol)}
    for symbol in symbols - waiting:
        cancel_protection(symbol)
    if not waiting:
        return

    def on_fill(order: Order, fill: Fill, closed: list[ClosedTrade]) -> None:
        if fill.symbol in waiting and not held(fill.symbol):
            waiting.discard(fill.symbol)
            cancel_protection(fill.symbol)
            if not waiting:
                oms.fill_listeners.remove(on_fill)

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
        unprotect_when_flat(oms)


def apply(action: str, oms: OrderManager, driver: Driven, gate: RiskEngine | None, reason: str = "") -> None:
    """Replay one recorded control action."""
    if action == START:  # a (re)start: a fresh risk engine and a strategy that trades again
        driver.trading = True
        if gate is not None and gate.state is not TradingState.ACTIVE:
            gate.set_state(TradingState.ACTIVE, oms.clock.now_ns(), "RESTARTED")
    elif action == CANCEL:
        cancel_open_orders(oms)
    elif action == KILL:
        kill(oms, driver, gate, reason)
    else:
        raise ValueError(f"unknown control action {action!r}")
