"""What a stop and a kill do to a bot's orders, in one place for the live runtime, the parity
replay and the backtester's tick path (a recorded session replays its stops and kills at the
ticks they happened after).

- stop, on_stop "cancel": every open order is cancelled; "keep": nothing is touched, the orders
  stay working at the venue and are restored with the bot on its next start.
- kill: the kill switch. With a risk engine, engine.risk.KillSwitch does it (REDUCING so the
  flattening order passes, cancel all, flatten, HALTED). Without one the runtime does the same
  steps itself; either way the strategy is no longer called until a person starts the bot again.
"""

from __future__ import annotations

from typing import Any, Protocol

from engine.oms import OrderManager
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


def kill(oms: OrderManager, driver: Driven, gate: RiskEngine | None, reason: str) -> None:
    driver.trading = False
    strategy = driver.strategy
    was_muted, driver.muted = driver.muted, False
    try:
        if gate is not None:
            switch = KillSwitch(gate.account, oms.clock)
            switch.register(oms.bot_id, oms.cancel_all, strategy.close)
            switch.trip("bot", reason, oms.bot_id)
        else:
            oms.cancel_all()
            strategy.close()
    finally:
        driver.muted = was_muted


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
