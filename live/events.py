"""The typed events a bot's runner consumes: market data, the venue's reports, commands.

Everything that reaches a running bot is one of these, on one queue, taken by the bot's own
thread (live/runner.py): a feed's ticks, what the adapter says about its orders (the five
ExecutionSink reports, as values), and what a person or the API asks (stop, kill, resume). The
runner dispatches on the type, so a misspelt event is an import error, not a silent no-op.
"""

from __future__ import annotations

from decimal import Decimal

import queue
import threading
from dataclasses import dataclass, field

from engine.market import Tick
from engine.orders import Fill, Order


@dataclass(frozen=True, slots=True)
class TickReceived:
    """A quote or trade from the bot's feed. `seq`: its position in a replayed feed (the bot's
    checkpoint counts these); None from a live venue's stream."""

    tick: Tick
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class OrderSubmitted:
    order: Order
    ts: int


@dataclass(frozen=True, slots=True)
class OrderAccepted:
    order: Order
    ts: int


@dataclass(frozen=True, slots=True)
class OrderRejected:
    order: Order
    ts: int
    reason: str


@dataclass(frozen=True, slots=True)
class OrderFilled:
    order: Order
    fill: Fill
    bar: int = -1


@dataclass(frozen=True, slots=True)
class OrderCanceled:
    order: Order
    ts: int
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class OrderTrailed:
    """The venue moved a working trailing stop's trigger to `stop_price` (not a change of state:
    the OMS journals the new level, so the books and a restart show where the stop works now)."""
    order: Order
    stop_price: Decimal
    ts: int


VenueReport = OrderSubmitted | OrderAccepted | OrderRejected | OrderFilled | OrderCanceled | OrderTrailed


@dataclass(frozen=True, slots=True)
class StopBot:
    """Stop cleanly: open orders cancelled or kept per the bot's on_stop, books flushed."""

    done: threading.Event = field(default_factory=threading.Event, compare=False)


@dataclass(frozen=True, slots=True)
class KillBot:
    """The kill switch: cancel everything, flatten, halt until a person resumes the bot."""

    reason: str = ""
    done: threading.Event = field(default_factory=threading.Event, compare=False)


@dataclass(frozen=True, slots=True)
class ResumeBot:
    """Lift a kill: the strategy trades again."""

    done: threading.Event = field(default_factory=threading.Event, compare=False)


Command = StopBot | KillBot | ResumeBot
BotEvent = TickReceived | VenueReport | Command


class QueuedSink:
    """The ExecutionSink an adapter reports to: each report becomes a typed event.

    Reports made on another thread (a websocket, a poller) go onto the bot's queue. Reports made
    on the bot's own thread while it runs (an in-process venue matching a tick, a REST answer to
    a submit) are handled at once, in order, as an in-process venue has always reported: the
    strategy then decides on books that include the fills of the tick it is deciding on. Before
    the runner has reconciled (`direct` unset), everything is queued, so no report reaches an OMS
    that does not yet know its orders."""

    def __init__(self, inbox: "queue.Queue[BotEvent]") -> None:
        self.inbox = inbox
        self.direct = None  # (thread id, handler) once the runner has reconciled

    def _put(self, event: VenueReport) -> None:
        direct = self.direct
        if direct is not None and direct[0] == threading.get_ident():
            direct[1](event)
        else:
            self.inbox.put(event)

    def on_submitted(self, order: Order, ts: int) -> None:
        self._put(OrderSubmitted(order, ts))

    def on_accepted(self, order: Order, ts: int) -> None:
        self._put(OrderAccepted(order, ts))

    def on_rejected(self, order: Order, ts: int, reason: str) -> None:
        self._put(OrderRejected(order, ts, reason))

    def on_fill(self, order: Order, fill: Fill, bar: int) -> None:
        self._put(OrderFilled(order, fill, bar))

    def on_canceled(self, order: Order, ts: int, reason: str | None) -> None:
        self._put(OrderCanceled(order, ts, reason))

    def on_trailed(self, order: Order, stop_price: Decimal, ts: int) -> None:
        self._put(OrderTrailed(order, stop_price, ts))
