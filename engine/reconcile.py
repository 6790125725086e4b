"""Restart and reconciliation: make the engine's books agree with the venue before trading.

After a crash the store holds what the engine wrote, and the venue holds what really happened.
In between may lie: an order journaled as PENDING_SUBMIT that the venue never received (the
process died before sending it) or did receive; fills the venue made that the engine never
booked; on a shared account (issue 14), other programs' and people's orders, fills and positions.
`reconcile_with_adapter` is the one reconciler, for every venue (the paper venue too, through
PaperAdapter), using only the adapter contract's queries. In order:

1. the bot's own fills the store lacks are booked (by execution id, in venue order), asked for
   over a bounded lookback (from its oldest open order or last fill, never more than
   `lookback_ns` back); an own fill of an order the store does not know refuses;
2. every in-flight order is resolved by client order id: found at the venue, it takes the
   venue's state; not found and never sent (PENDING_SUBMIT), it is canceled as LOST_BEFORE_SUBMIT
   (it provably never traded, so the strategy may decide again); not found but once sent, the
   books cannot be trusted, and reconciliation fails, naming the order;
3. foreign fills, foreign open orders and the part of each venue position that is not the bot's
   are reported (ReconciliationReport.external_*), never adopted: a bot's books hold only what it
   sent (engine.oms.owns), and a fresh bot starts on an account that already trades.

A failure raises ReconciliationError with the reasons: the bot refuses to trade, saying why,
rather than trade on books it knows are wrong. A paper bot, whose venue is its own account, also
requires its cash to equal the venue's (live/bot.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from engine.errors import TickbridgeError
from engine.oms import OrderManager, owns, sent_by
from engine.orders import Order, OrderState

if TYPE_CHECKING:
    from engine.ports import BrokerAdapter, VenueOrder

LOST_BEFORE_SUBMIT = "LOST_BEFORE_SUBMIT"
NS_PER_DAY = 86_400 * 10**9
DEFAULT_LOOKBACK_NS = 7 * NS_PER_DAY  # how far back reconcile_with_adapter asks for fills
# The engine's clock and the venue's differ (an MT5 server's zone guessed an hour off at a DST
# change): fills are asked for from this much before the earliest moment one could be missing.
CLOCK_SLACK_NS = 3_600 * 10**9


class ReconciliationError(TickbridgeError):
    """The engine's books and the venue disagree in a way it cannot repair by itself."""


@dataclass(slots=True)
class ReconciliationReport:
    fills_replayed: int = 0
    orders_resolved: int = 0
    orders_lost_before_submit: list[str] = field(default_factory=list)
    orders_adopted: list[str] = field(default_factory=list)  # the venue's orders made for this bot, booked
    # on a shared account (reconcile_with_adapter): what is not the bot's, reported and never booked
    external_fills: list[str] = field(default_factory=list)      # execution ids
    external_orders: list[str] = field(default_factory=list)     # client ids of open orders
    external_positions: dict[str, Decimal] = field(default_factory=dict)  # symbol -> venue qty - bot qty


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


def reconcile_with_adapter(oms: OrderManager, adapter: "BrokerAdapter", ts: int,
                           lookback_ns: int = DEFAULT_LOOKBACK_NS) -> ReconciliationReport:
    """Bring a bot's books to what the venue says about *its own* orders and fills, through the
    adapter contract's queries (fills_since, order_status, open_orders, positions).

    The account may be shared (other bots, other programs, a person): the books hold only what
    the bot owns (engine.oms.owns: the ids it sent, and orders the venue made for it). Foreign
    fills, open orders and the rest of the venue's position are reported, never adopted, so a
    fresh bot starts on an account that already holds positions and history. It refuses only
    when its own books disagree with the venue about its own orders or fills, naming the order.

    Fills are asked for from the earliest moment one of the bot's could be missing (its first open
    order's creation or its last booked fill), but never before `ts - lookback_ns`: a venue's
    history is long and mostly other programs'. The OMS books each execution id once, so asking
    for a little too much is harmless. Cash is not compared: the account holds others' money.
    """
    if lookback_ns <= 0:
        raise ValueError(f"lookback_ns must be a positive number of nanoseconds, not {lookback_ns}")
    report = ReconciliationReport()
    problems: list[str] = []
    _book_own_fills(oms, adapter, _fills_from(oms, ts, lookback_ns), report, problems)
    for order in list(oms.open_orders):
        record = adapter.order_status(order.client_order_id)
        if record is None:
            _missing_at_venue(oms, order, ts, report, problems)
            continue
        _take_venue_state(oms, order, record, ts)
        if record.filled_qty != order.filled_qty:
            problems.append(f"order {order.client_order_id}: {order.filled_qty} filled here, "
                            f"{record.filled_qty} at the venue, whose fills did not all arrive "
                            f"within the {lookback_ns / NS_PER_DAY:g}-day lookback")
        report.orders_resolved += 1
    for record in adapter.open_orders():
        cid = record.client_order_id
        if cid in oms.orders:
            continue
        if not owns(oms.bot_id, cid):
            report.external_orders.append(cid)
        elif sent_by(oms.bot_id, cid):
            problems.append(f"order {cid} is open at the venue, sent by this bot, but its store does not know it")
        else:  # made by the venue for this bot (e.g. a server-side SL/TP): the bot's own
            _take_venue_state(oms, oms.adopt_external(record.to_order(oms.bot_id)), record, ts)
            report.orders_adopted.append(cid)
    report.external_positions = _external_positions(oms, adapter)
    if problems:
        raise ReconciliationError("cannot reconcile with the venue: " + "; ".join(problems))
    return report


def _fills_from(oms: OrderManager, ts: int, lookback_ns: int) -> int:
    """Where to ask for fills: the earliest open order or the last booked fill (less the clock
    slack), bounded by the lookback; a bot with neither asks for the lookback only (to see its
    own fills a lost store forgot, and to report the others')."""
    floor = ts - lookback_ns
    starts = [o.ts_init for o in oms.open_orders]
    if oms.fills:
        starts.append(max(f.ts for f in oms.fills))
    return max(floor, min(starts) - CLOCK_SLACK_NS) if starts else floor


def _book_own_fills(oms: OrderManager, adapter: "BrokerAdapter", since: int, report: ReconciliationReport,
                    problems: list[str]) -> None:
    """Book the bot's own fills the store lacks; list the others as external."""
    known = {f.execution_id for f in oms.fills}
    for fill in adapter.fills_since(since):
        if fill.execution_id in known:
            continue
        cid = fill.client_order_id
        if not owns(oms.bot_id, cid):
            report.external_fills.append(fill.execution_id)
            continue
        own = oms.orders.get(cid)
        if own is None:
            if sent_by(oms.bot_id, cid):
                problems.append(f"order {cid}: the venue has its fill {fill.execution_id}, "
                                "but this bot's store does not know the order")
                continue
            venue_order = adapter.order_status(cid)  # made by the venue for this bot: the bot's own
            if venue_order is None:
                problems.append(f"order {cid}: the venue reports its fill {fill.execution_id} but not the order")
                continue
            own = oms.adopt_external(venue_order.to_order(oms.bot_id))
            report.orders_adopted.append(cid)
        _bring_to_submitted(oms, own, fill.ts)
        oms.on_fill(own, fill, -1)
        known.add(fill.execution_id)
        report.fills_replayed += 1


def _external_positions(oms: OrderManager, adapter: "BrokerAdapter") -> dict[str, Decimal]:
    """The venue's position per symbol minus the bot's: what others hold on the account (and,
    negative, what of the bot's position someone else closed). Zero differences are left out."""
    venue_positions = {p.symbol: p.qty for p in adapter.positions()}
    out: dict[str, Decimal] = {}
    for symbol in sorted(set(venue_positions) | set(oms.portfolio.positions)):
        position = oms.portfolio.positions.get(symbol)
        here = position.quantity if position is not None else Decimal(0)
        rest = venue_positions.get(symbol, Decimal(0)) - here
        if rest:
            out[symbol] = rest
    return out


def _take_venue_state(oms: OrderManager, order: Order, record: "VenueOrder", ts: int) -> None:
    """Move an open order to the state the venue reports (fills were booked before this)."""
    _bring_to_submitted(oms, order, ts)
    if record.state in (OrderState.ACCEPTED, OrderState.PARTIALLY_FILLED) and order.state is OrderState.SUBMITTED:
        oms.on_accepted(order, ts)
    elif record.state in (OrderState.CANCELED, OrderState.EXPIRED) and not order.is_terminal:
        oms.on_canceled(order, ts, record.reason)
    elif record.state is OrderState.REJECTED and not order.is_terminal:
        oms.on_rejected(order, ts, record.reason or "REJECTED")
