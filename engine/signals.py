"""Signals: what a bot wants to hold, published as it decides (the core's port, DESIGN.md §7).

A rule strategy publishes one when the direction it goes to changes; ml_signal one per change of
its model's wanted direction. The same Signal goes to subscribers live, to the store, and into a
backtest's result, so live and backtest can be compared signal by signal (tickbridge parity).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True, slots=True)
class Signal:
    bot_id: str
    symbol: str
    ts: int                      # ns, the close of the bar it was decided on
    direction: int               # +1 long, -1 short, 0 flat
    confidence: Decimal          # probability of the direction taken (of the larger side for flat)
    target_weight: Decimal       # equity fraction of an entry, 0 for flat
    p_up: float
    p_down: float
    price: float                 # the bar's close
    model_id: int
    model_version: int

    def as_dict(self) -> dict[str, Any]:
        """The fields by name, the decimals as text (not dataclasses.asdict: it deep-copies each
        field, 5x slower, and a backtest may publish tens of thousands)."""
        return {"bot_id": self.bot_id, "symbol": self.symbol, "ts": self.ts, "direction": self.direction,
                "confidence": str(self.confidence), "target_weight": str(self.target_weight), "p_up": self.p_up,
                "p_down": self.p_down, "price": self.price, "model_id": self.model_id,
                "model_version": self.model_version}



class SignalSink(Protocol):
    def publish(self, signal: Signal) -> None: ...


# Wake-up of this process's signal readers (the API's signal hub) when a signal was stored here.
# Why: the hub polls the store; a signal written in its own process (TICKBRIDGE_RUNTIME=thread,
# tests) should not wait for the next poll. A sink that stores signals calls `announce_stored()`
# after its commit; readers subscribe with `on_stored`. Listeners run on the writer's thread and
# must only set a flag (a threading.Event), never block. PostgreSQL readers in other processes are
# woken by a NOTIFY on STORED_CHANNEL sent in the writer's transaction.
STORED_CHANNEL = "tickbridge_signals"
_listeners: tuple[Callable[[], None], ...] = ()   # copy-on-write: announcing never takes a lock
_listeners_lock = threading.Lock()


def on_stored(listener: Callable[[], None]) -> Callable[[], None]:
    """Call `listener` after each signal this process stores; returns the function that stops it."""
    global _listeners
    with _listeners_lock:
        _listeners = _listeners + (listener,)

    def remove() -> None:
        global _listeners
        with _listeners_lock:
            _listeners = tuple(x for x in _listeners if x is not listener)

    return remove


def announce_stored() -> None:
    """A signal was committed to the store by this process: wake its readers."""
    for listener in _listeners:
        listener()


class MemorySignals:
    """Signals kept in a list: backtests, tests."""

    def __init__(self) -> None:
        self.signals: list[Signal] = []

    def publish(self, signal: Signal) -> None:
        self.signals.append(signal)


def emitted(directions: np.ndarray) -> np.ndarray:
    """Row positions where the wanted direction changes from the last one (NaN rows ignored): the
    rows a signal is published at, for a vector of wanted directions."""
    rows = np.flatnonzero(~np.isnan(directions))
    if len(rows) == 0:
        return rows
    values = directions[rows]
    keep = np.ones(len(rows), dtype=bool)
    keep[1:] = values[1:] != values[:-1]
    return rows[keep]
