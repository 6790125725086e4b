"""Restart and reconciliation: make the engine's books agree with the venue before trading.

After a crash the store holds what the engine wrote, and the venue holds what really happened.
In between may lie: an order journaled as PENDING_SUBMIT that the venue never received (the
process died before sending it) or did receive; fills the venue made that the engine never
booked; orders at the venue the engine never made. In order:

1. every fill the venue reports and the store lacks is booked (by execution id, in venue order);
2. every in-flight order is resolved by client order id: found at the venue, it takes the
   venue's state; not found and never sent (PENDING_SUBMIT), it is canceled as LOST_BEFORE_SUBMIT
   (it provably never traded, so the strategy may decide again); not found but once sent, the
   books cannot be trusted, and reconciliation fails;
3. open venue orders the engine does not know are adopted as external;
4. the engine's position and cash must equal the venue's, or reconciliation fails.

A failure raises ReconciliationError with the reasons: the bot refuses to trade, saying why,
rather than trade on books it knows are wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from engine.errors import TickbridgeError
from engine.oms import OrderManager
from engine.orders import Fill, Order, OrderState

if TYPE_CHECKING:
    from engine.ports import BrokerAdapter, VenueOrder

LOST_BEFORE_SUBMIT = "LOST_BEFORE_SUBMIT"


class ReconciliationError(TickbridgeError):
    """The engine's books and the venue disagree in a way it cannot repair by itself."""


class VenueOrderView(Protocol):
    order: Order
    state: OrderState
    reason: str | None
    fills: list[Fill]


class ReconcilableVenue(Protocol):
    """The queries a venue answers for reconciliation (part of the adapter contract)."""

    def order_status(self, client_order_id: str) -> VenueOrderView | None: ...
    def open_orders(self) -> list[VenueOrderView]: ...
    @property
    def fills(self) -> list[Fill]: ...
    def position_raw(self) -> int: ...
    def cash_raw(self) -> int: ...


@dataclass(slots=True)
class ReconciliationReport:
    fills_replayed: int = 0
    orders_resolved: int = 0
    orders_lost_before_submit: list[str] = field(default_factory=list)
    orders_adopted: list[str] = field(default_factory=list)


def reconcile(oms: OrderManager, venue: ReconcilableVenue, symbol: str, ts: int) -> ReconciliationReport:
    report = ReconciliationReport()
    known = {f.execution_id for f in oms.fills}
    for fill in venue.fills:
        if fill.execution_id in known:
            continue
        record = venue.order_status(fill.client_order_id)
        assert record is not None, "a venue fill always belongs to a venue order"
        _bring_to_submitted(oms, record.order, fill.ts)
        oms.on_fill(record.order, fill, -1)
        report.fills_replayed += 1
    problems: list[str] = []
    for order in list(oms.open_orders):
        record = venue.order_status(order.client_order_id)
        if record is None:
            _missing_at_venue(oms, order, ts, report, problems)
            continue
        _bring_to_submitted(oms, order, ts)
        if record.state is OrderState.ACCEPTED and order.state is OrderState.SUBMITTED:
            oms.on_accepted(record.order, ts)
        elif record.state is OrderState.CANCELED:
            oms.on_canceled(record.order, ts, record.reason)
        elif record.state is OrderState.REJECTED:
            oms.on_rejected(record.order, ts, record.reason or "REJECTED")
        report.orders_resolved += 1
    for record in venue.open_orders():
        if record.order.client_order_id not in oms.orders:
            oms.adopt_external(record.order)
            report.orders_adopted.append(record.order.client_order_id)
    position = oms.portfolio.positions[symbol].qty
    if position != venue.position_raw():
        problems.append(f"position {position} here, {venue.position_raw()} at the venue (raw units)")
    if oms.portfolio.cash_raw != venue.cash_raw():
        problems.append(f"cash {oms.portfolio.cash_raw} here, {venue.cash_raw()} at the venue (raw units)")
    if problems:
        raise ReconciliationError("cannot reconcile with the venue: " + "; ".join(problems))
    return report


def _missing_at_venue(oms: OrderManager, order: Order, ts: int, report: ReconciliationReport,
                      problems: list[str]) -> None:
    """An open order the venue does not know: never sent (PENDING_SUBMIT) means it provably never
    traded and is canceled as lost; once sent, the books cannot be trusted."""
    if order.state is OrderState.PENDING_SUBMIT:
        oms.on_canceled(order, ts, LOST_BEFORE_SUBMIT)
        report.orders_lost_before_submit.append(order.client_order_id)
    else:
        problems.append(f"order {order.client_order_id} is {order.state} here but unknown to the venue")


def _bring_to_submitted(oms: OrderManager, order: Order, ts: int) -> None:
    """An order journaled as PENDING_SUBMIT that the venue has was sent: record that first."""
    own = oms.orders.get(order.client_order_id)
    if own is not None and own.state is OrderState.PENDING_SUBMIT:
        oms.on_submitted(order, ts)


def reconcile_with_adapter(oms: OrderManager, adapter: "BrokerAdapter", ts: int) -> ReconciliationReport:
    """The same four steps against any venue, through the adapter contract's queries
    (fills_since, order_status, open_orders, positions) rather than the paper venue's own.

    Fills are asked for since the earliest moment one could be missing: the first open order's
    creation or the last booked fill, whichever is earlier (the OMS books each execution id once,
    so asking for too much is harmless). Positions must then agree symbol by symbol; cash is not
    compared, because a live account holds other assets and other bots' money.
    """
    report = ReconciliationReport()
    known = {f.execution_id for f in oms.fills}
    starts = [o.ts_init for o in oms.open_orders] + [max((f.ts for f in oms.fills), default=0)]
    for fill in adapter.fills_since(min(starts)):
        if fill.execution_id in known:
            continue
        own = oms.orders.get(fill.client_order_id)
        if own is None:
            venue_order = adapter.order_status(fill.client_order_id)
            if venue_order is None:
                raise ReconciliationError(f"the venue reports fill {fill.execution_id} of an order it does not know")
            own = oms.adopt_external(venue_order.to_order(oms.bot_id))
            report.orders_adopted.append(own.client_order_id)
        _bring_to_submitted(oms, own, fill.ts)
        oms.on_fill(own, fill, -1)
        known.add(fill.execution_id)
        report.fills_replayed += 1
    problems: list[str] = []
    for order in list(oms.open_orders):
        record = adapter.order_status(order.client_order_id)
        if record is None:
            _missing_at_venue(oms, order, ts, report, problems)
            continue
        _take_venue_state(oms, order, record, ts)
        if record.filled_qty != order.filled_qty:
            problems.append(f"order {order.client_order_id}: {order.filled_qty} filled here, "
                            f"{record.filled_qty} at the venue, whose fills did not all arrive")
        report.orders_resolved += 1
    for record in adapter.open_orders():
        if record.client_order_id not in oms.orders:
            oms.adopt_external(record.to_order(oms.bot_id))
            report.orders_adopted.append(record.client_order_id)
    venue_positions = {p.symbol: p.qty for p in adapter.positions()}
    for symbol in sorted(set(venue_positions) | set(oms.portfolio.positions)):
        if symbol not in oms.instruments:
            continue
        position = oms.portfolio.positions.get(symbol)
        here = position.quantity if position is not None else Decimal(0)
        there = venue_positions.get(symbol, Decimal(0))
        if here != there:
            problems.append(f"{symbol}: position {here} here, {there} at the venue")
    if problems:
        raise ReconciliationError("cannot reconcile with the venue: " + "; ".join(problems))
    return report


def _take_venue_state(oms: OrderManager, order: Order, record: "VenueOrder", ts: int) -> None:
    """Move an open order to the state the venue reports (fills were booked before this)."""
    _bring_to_submitted(oms, order, ts)
    if record.state in (OrderState.ACCEPTED, OrderState.PARTIALLY_FILLED) and order.state is OrderState.SUBMITTED:
        oms.on_accepted(order, ts)
    elif record.state in (OrderState.CANCELED, OrderState.EXPIRED) and not order.is_terminal:
        oms.on_canceled(order, ts, record.reason)
    elif record.state is OrderState.REJECTED and not order.is_terminal:
        oms.on_rejected(order, ts, record.reason or "REJECTED")
