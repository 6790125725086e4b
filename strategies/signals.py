"""The signals of a rule strategy: one each time the direction it goes to changes.

ml_signal publishes its own (its model's probabilities and version); a rule strategy's signal
is observed where it decides, in `go()`, through the Supervisor hook (strategies/base.py): confidence
1, model 0 version 0, the entry's equity fraction as target weight. Every driver uses this one
class (the backtester's event path, paper, live, the parity replay), so a backtest emits the same
signals as live.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np

from engine.signals import Signal, SignalSink, emitted
from strategies.base import Strategy

ONE = Decimal(1)
ZERO = Decimal(0)


class DirectionSignals:
    """A Supervisor that publishes a Signal when go()'s direction changes (never mutes)."""

    muted = False

    def __init__(self, bot_id: str, symbol: str, sink: SignalSink) -> None:
        self.bot_id = bot_id
        self.symbol = symbol
        self.sink = sink
        self.last_direction: int | None = None
        self.published = 0

    def on_go(self, strategy: Strategy, direction: int, fraction: Decimal | None) -> None:
        if direction == self.last_direction:
            return
        self.last_direction = direction
        self.sink.publish(direction_signal(self.bot_id, self.symbol, strategy, direction, fraction))
        self.published += 1


class RecordedDirections:
    """A Supervisor for backtests: records (bar, direction, fraction) at each change of go()'s
    direction and makes the Signals only when they are read (`signals()`): the same signals as
    DirectionSignals, at a fraction of the cost inside the event loop."""

    muted = False

    def __init__(self, bot_id: str, symbol: str) -> None:
        self.bot_id = bot_id
        self.symbol = symbol
        self.last_direction: int | None = None
        # (bar, direction, fraction) of each change, flat: a tuple per change would be one more
        # object for the collector to walk per order of a long run
        self._flat: list[int | Decimal | None] = []

    @property
    def changes(self) -> list[tuple[int, int, Decimal | None]]:
        """(bar, direction, fraction) at each change of direction, oldest first."""
        flat = self._flat
        return list(zip(flat[0::3], flat[1::3], flat[2::3]))  # type: ignore[arg-type]

    def on_go(self, strategy: Strategy, direction: int, fraction: Decimal | None) -> None:
        if direction != self.last_direction:
            self.last_direction = direction
            self._flat.extend((strategy.i, direction, fraction))

    def signals(self, strategy: Strategy) -> list[Signal]:
        data = strategy.data
        return [direction_signal(self.bot_id, self.symbol, strategy, direction, fraction,
                                 at=(int(data.time[i]), float(data.close[i])))
                for i, direction, fraction in self.changes]


def direction_signal(bot_id: str, symbol: str, strategy: Strategy, direction: int,
                     fraction: Decimal | None, at: tuple[int, float] | None = None) -> Signal:
    """The Signal of go(direction, fraction) at the strategy's current bar (its time and close),
    or `at` (time, price) for a decision taken on a tick."""
    weight = ZERO if direction == 0 else (fraction if fraction is not None else strategy.p.size)
    if at is None:
        i, data = strategy.i, strategy.data
        at = int(data.time[i]), float(data.close[i])
    return Signal(bot_id, symbol, at[0], direction, ONE, weight,
                  1.0 if direction > 0 else 0.0, 1.0 if direction < 0 else 0.0, float(at[1]), 0, 0)


def vector_signals(strategy: Strategy, bot_id: str, symbol: str) -> list[Signal]:
    """The signals of a strategy with vectorised `signals()` (the backtester's fast path), as its
    next() would publish them through go(): one at each bar where the wanted direction changes,
    stamped with the bar's time and close, weighted by `sizes()` or the size parameter."""
    target = strategy.signals()
    if target is None:
        return []
    target = np.asarray(target, dtype=np.float64)
    sizes = strategy.sizes()
    data = strategy.data
    out = []
    for row in emitted(target).tolist():
        direction = int(target[row])
        fraction = None if sizes is None else Decimal(repr(float(sizes[row])))
        out.append(direction_signal(bot_id, symbol, strategy, direction, fraction,
                                    at=(int(data.time[row]), float(data.close[row]))))
    return out
