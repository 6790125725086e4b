"""A bracket's stop-loss and take-profit as MetaTrader 5 keeps them: the SL and TP of a position.

MT5 has no linked orders. What protects a position on the server, whether or not the bot runs, is
the position's own SL and TP (TRADE_ACTION_SLTP), or the sl/tp of the pending order that opens it
(the server copies them onto the position it opens). So an engine bracket (issue 17: children of
an entry, one OCO group) maps onto those two levels:
- the children arrive after their entry (the OMS sends the entry first), so they cannot ride on
  the entry's own request. While the entry is a pending order, they are put on it
  (TRADE_ACTION_MODIFY: sl/tp), so the position is protected from its first deal; once the entry
  has dealt, on its position (TRADE_ACTION_SLTP on the position its deal names);
- a level the server hits closes the whole position with an order of its own (ORDER_REASON_SL /
  ORDER_REASON_TP, the position's id): that order is reported as the matching child's fill, and
  the other child is canceled (OCO). A position closed any other way cancels both;
- canceling or amending a child changes that level only (the other stays).

What does not map is refused UNSUPPORTED at submit, never sent as a plain order (a stop-loss sent
as a plain stop before the entry filled would open a position):
- a trailing stop: MetaTrader trails in the client terminal only, not on the server and not over
  the Python API. An emulation that ratchets the SL from the adapter's polls would trail only while
  the bot runs; that belongs to the OMS's emulation of what a venue lacks (issue 17 item 3), once
  for every venue, not here;
- a standalone OCO group (no parent), a child that is not a stop-loss (a STOP) or a take-profit
  (a LIMIT) on the other side of its entry, a second stop-loss or take-profit for one entry, a
  child with its own expiry: MT5 has one SL and one TP per position;
- on a netting account, a position that holds more than the entry filled (the symbol's one
  position, grown by other orders): its SL/TP would close more than the bracket protects. The
  children are then canceled UNSUPPORTED when the entry fills.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from brokers.base import RejectReason
from engine.orders import Order, OrderSide, OrderType


@dataclass(slots=True)
class Bracket:
    """One entry's protective children and where their levels live at the venue."""

    parent: Order
    stop: Order | None = None        # the stop-loss child (STOP): the position's SL
    take: Order | None = None        # the take-profit child (LIMIT): the position's TP
    position: int | None = None      # the position ticket once the levels are on it
    on_pending: bool = False         # the levels ride on the entry's pending order
    done: bool = False
    restored: bool = False           # rebuilt after a restart: its levels are at the venue already

    @property
    def children(self) -> list[Order]:
        return [c for c in (self.stop, self.take) if c is not None]

    def levels(self, replacing: Order | None = None, price: object = None,
               dropping: Order | None = None) -> tuple[float, float]:
        """(sl, tp) as a request carries them (0 = none), with `replacing` at `price` (an amend)
        or without `dropping` (a cancel)."""
        def level(child: Order | None, of: str) -> float:
            if child is None or child is dropping or child.is_terminal:
                return 0.0
            value = price if child is replacing else getattr(child, of)
            return float(value) if value is not None else 0.0  # type: ignore[arg-type]
        return level(self.stop, "stop_price"), level(self.take, "limit_price")


@dataclass(slots=True)
class Brackets:
    """The adapter's brackets, by entry id and by position ticket."""

    by_parent: dict[str, Bracket] = field(default_factory=dict)
    by_position: dict[int, Bracket] = field(default_factory=dict)

    def child_of(self, client_order_id: str) -> Bracket | None:
        for bracket in self.by_parent.values():
            if any(c.client_order_id == client_order_id for c in bracket.children):
                return bracket
        return None

    def open(self) -> list[Bracket]:
        return [b for b in self.by_parent.values() if not b.done]


def refusal(child: Order, parent: Order | None, bracket: Bracket | None) -> str | None:
    """Why `child` (an order with a parent, an OCO group or a trail) cannot be an MT5 SL/TP: None
    when it can (see the module docstring)."""
    if child.is_trailing or child.parent_id is None or parent is None:
        return RejectReason.UNSUPPORTED
    if child.oco_group not in (None, child.parent_id) or child.expire_ns is not None:
        return RejectReason.UNSUPPORTED
    if parent.is_terminal and not parent.filled_qty:
        return RejectReason.INVALID_ORDER  # an entry that can no longer fill protects nothing
    opposite = OrderSide.SELL if parent.side is OrderSide.BUY else OrderSide.BUY
    if child.side is not opposite or child.type not in (OrderType.STOP, OrderType.LIMIT):
        return RejectReason.UNSUPPORTED
    if bracket is not None and (bracket.stop if child.type is OrderType.STOP else bracket.take) is not None:
        return RejectReason.UNSUPPORTED  # one SL and one TP per position
    return None
