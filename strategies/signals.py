"""The signals of a rule strategy: one each time the direction it goes to changes.

ml_signal publishes its own (its model's probabilities and version); a rule strategy's signal
is observed where it decides, in `go()`, through the Supervisor hook (strategies/base.py): confidence
1, model 0 version 0, the entry's equity fraction as target weight. Every driver uses this one
class (the backtester's event path, paper, live, the parity replay), so a backtest emits the same
signals as live.
"""

from __future__ import annotations

from decimal import Decimal

from engine.signals import Signal, SignalSink
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
