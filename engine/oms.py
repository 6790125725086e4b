"""The order-management system: one place where orders are born, checked, sent and booked.

Flow (DESIGN.md §2): a strategy's intent becomes an Order with a deterministic client order id;
the risk gate may deny it (DENIED, with a reason, never sent); otherwise it is journaled as
PENDING_SUBMIT *before* the adapter sees it (the write-ahead rule that lets a restart find every
order it may have sent), then handed to the adapter. The adapter reports back through the
ExecutionSink methods; each transition is journaled; fills are de-duplicated by execution id and
booked into the portfolio.

A protective link or trail the adapter does not carry (its capability flags) is emulated rather
than refused: the order is checked and journaled, then held here, never sent, and triggered on the
bot's ticks (engine/emulation.py). A restart parks such orders while reconciling (no venue knows
them) and `rearm()` puts them back to work before the first new tick.
"""

from __future__ import annotations

import re
from decimal import ROUND_FLOOR, Decimal
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, Callable, Protocol

from engine.errors import InvalidTransition
from engine.clock import Clock
from engine.emulation import EMULATED, Emulator, is_protective
from engine.instrument import Instrument
from engine.money import qty_from_raw
from engine.orders import (ALLOWED_TRANSITIONS, TERMINAL_STATES, Fill, Order, OrderEvent, OrderSide, OrderState,
                           TimeInForce, amend_terms, protective_qty)
from engine.portfolio import ClosedTrade, Portfolio

if TYPE_CHECKING:  # brokers depend on engine, never the other way round at runtime

    from engine.ports import BrokerAdapter



# states in which a report of SUBMITTED / ACCEPTED is old news, not a transition
_PAST_ACCEPTED = frozenset({OrderState.ACCEPTED, OrderState.PARTIALLY_FILLED}) | TERMINAL_STATES
_PAST_SUBMITTED = _PAST_ACCEPTED | {OrderState.SUBMITTED, OrderState.PENDING_CANCEL}

# enum members the order path uses, as module names: CPython 3.12 does not specialise an attribute read
# on an enum class (`OrderState.FILLED` is a full lookup each time), and each order makes several
_BUY = OrderSide.BUY
ZERO = Decimal(0)
SHORT_SALE = "SHORT_SALE"  # a sell beyond the bot's holdings on a venue that cannot short (Instrument.shortable)
_INITIALIZED, _PENDING_SUBMIT, _SUBMITTED = OrderState.INITIALIZED, OrderState.PENDING_SUBMIT, OrderState.SUBMITTED
_FILLED, _PARTIALLY_FILLED = OrderState.FILLED, OrderState.PARTIALLY_FILLED
_GTD = TimeInForce.GTD
_NO_MOVES: frozenset[OrderState] = frozenset()  # the transitions out of a final state


class RiskGate(Protocol):
    """Pre-trade check: None to pass, or a reason code to deny. The risk engine implements it."""

    def check(self, order: Order, portfolio: Portfolio) -> str | None: ...


class OrderJournal(Protocol):
    """Durable record of order transitions and fills. The SQL store implements it."""

    def record_event(self, order: Order, event: OrderEvent) -> None: ...
    def record_fill(self, order: Order, fill: Fill) -> None: ...
    def record_position(self, portfolio: Portfolio, symbol: str, ts: int) -> None: ...
    def flush(self) -> None: ...
    def write_ahead(self) -> None: ...  # before the venue call: what `flush` makes durable, durable
    def settle(self) -> None: ...  # after it: whatever write_ahead left for the tables (or nothing)


FillListener = Callable[[Order, Fill, list[ClosedTrade]], None]


class DuplicateClientOrderId(Exception):
    """A client order id the OMS has already seen: sending it again could double an order."""


# -- ownership: which orders on an account are this bot's ----------------------------------------
# A bot owns the orders it sent (`<bot>-<8+ digits>`, next_client_order_id, carried to the venue as
# its client id, or MT5 magic + comment) and the orders its venue made on its behalf
# (`<bot>-venue-<ref>`: the server closing the bot's own position at its SL/TP). Everything else
# on the account (other bots, other programs, a person) is foreign: reported, never booked.
_SENT_SEQ = re.compile(r"[0-9]{8,}")
VENUE_MADE = "venue"
# The bot id an in-process simulated venue (brokers/paper) gives the orders it makes itself on the
# account it simulates for one bot (a margin stop-out, `STOPOUT-<n>`): that account is the bot's.
VENUE_BOT_ID = "venue"
# The note journaled on a final order when an execution of it is reported after its cancel, expiry
# or reject: the fill is booked (the money moved at the venue) and the order keeps its final state.
LATE_FILL = "LATE_FILL"


def sent_by(bot_id: str, client_order_id: str) -> bool:
    """An id this bot's OMS made (next_client_order_id): bot "a" never claims "a-b-00000001"."""
    prefix = f"{bot_id}-"
    return client_order_id.startswith(prefix) and _SENT_SEQ.fullmatch(client_order_id[len(prefix):]) is not None


def venue_made_id(bot_id: str, ref: object) -> str:
    """The client id of an order a venue made on the bot's behalf (`ref`: the venue's ticket)."""
    return f"{bot_id}-{VENUE_MADE}-{ref}"


def made_for(bot_id: str, client_order_id: str) -> bool:
    """An id from venue_made_id for this bot."""
    prefix = venue_made_id(bot_id, "")
    return client_order_id.startswith(prefix) and len(client_order_id) > len(prefix)


def owns(bot_id: str, client_order_id: str) -> bool:
    """Whether an order belongs in this bot's books: one it sent, or one its venue made for it."""
    return sent_by(bot_id, client_order_id) or made_for(bot_id, client_order_id)


class OrderManager:
    """Order lifecycle for one bot on one adapter, booking into one portfolio."""

    def __init__(self, bot_id: str, clock: Clock, adapter: "BrokerAdapter", portfolio: Portfolio,
                 instruments: dict[str, Instrument], risk: RiskGate | None = None,
                 journal: OrderJournal | None = None, start_seq: int = 0, connect: bool = True) -> None:
        """`connect=False` for a restart: `restore()` the books from the store first, reconcile,
        then `connect()`, so no venue report reaches an OMS that does not yet know its orders."""
        self.bot_id = bot_id
        self.clock = clock
        self.adapter = adapter
        self.portfolio = portfolio
        self.instruments = instruments
        self._cancel_asked: set[str] = set()  # sells whose cancel was asked, where the venue cannot short
        self._base_fees: dict[str, Decimal] = {}  # a buy's fees taken in the coin bought (`_count_base_fee`)
        self.risk = risk
        self.journal = journal
        self.orders: dict[str, Order] = {}
        self.denied: list[Order] = []
        self.rejected: list[Order] = []
        self.fills: list[Fill] = []
        self.external: list[Order] = []
        self._open: dict[str, Order] = {}  # not terminal: PENDING_SUBMIT included (in flight)
        self.fill_listeners: list[FillListener] = []
        self._seq = start_seq
        self._execution_ids: set[str] = set()
        self._children: dict[str, list[Order]] = {}  # parent id -> its protective children (issue 17)
        # whether any order this OMS knows has a parent (a bracket's child): without one there is no
        # protection to cancel. A plain attribute, set with the first child (children are never
        # forgotten), since Strategy.close asks at every exit.
        self.has_children = False
        # emulated orders (engine/emulation.py): `_emulating` once there is one (the plain path
        # skips the emulator's hooks); `_parked`: restored ones reconciliation must not see, until rearm()
        self.emulator = Emulator(self)
        self._emulating = False
        self._parked: dict[str, Order] = {}
        if connect:
            adapter.connect(self)

    def connect(self) -> None:
        """Become the adapter's sink (after `restore` and reconciliation, on a restart); re-arms
        the restored emulated orders."""
        self.rearm()
        self.adapter.connect(self)

    def rearm(self) -> list[Order]:
        """Put the emulated orders `restore` parked back to work (after reconciliation, before the
        first new tick: the runner calls this); returns them. Idempotent."""
        parked = list(self._parked.values())
        self._parked.clear()
        for order in parked:
            self._open[order.client_order_id] = order
        return parked

    def on_quote(self, tick: Any) -> None:
        """A guarded tick of the bot's feed: the emulated orders trigger or trail on it (the runner
        calls this before the venue and the strategy see the tick)."""
        if self._emulating:
            self.emulator.on_quote(tick)

    def next_client_order_id(self) -> str:
        """Deterministic and unique per bot: the bot id and a sequence that only grows."""
        self._seq = seq = self._seq + 1
        return self.bot_id + "-" + str(seq).zfill(8)  # f"{bot_id}-{seq:08d}", at half the cost (every order)

    @property
    def open_orders(self) -> list[Order]:
        """Orders a venue may still act on (in flight included), oldest first."""
        return list(self._open.values())

    def linked(self) -> AbstractContextManager[Any]:
        """A block whose submits the adapter may send together (an entry and its bracket as one
        venue request: Alpaca's order_class=bracket). Each order is still journaled and flushed
        before the adapter sees it; an adapter without `hold` sends each at once."""
        hold = getattr(self.adapter, "hold", None)
        return hold() if hold is not None else nullcontext()

    def has_open(self, tags: frozenset[str]) -> bool:
        """Whether an order tagged with one of `tags` may still be acted on (the go() hot path:
        no list is built)."""
        open_ = self._open
        if not open_:  # nothing in flight (go()'s usual answer)
            return False
        for order in open_.values():  # a loop, not any(genexpr): go() asks at every decision
            if order.tag in tags:
                return True
        return False

    def restore(self, orders: list[Order], fills: list[Fill], next_seq: int) -> None:
        """Rebuild from the store after a restart: orders, the id sequence, and the books,
        replayed fill by fill, so positions and realized P&L are recomputed, not trusted."""
        clash = [o.client_order_id for o in orders if o.client_order_id in self.orders]
        if clash:
            raise InvalidTransition(f"restore() after the venue already reported {clash[0]}: construct the "
                                    "OrderManager with connect=False, restore, then connect()")
        self._seq = max(self._seq, next_seq)
        for order in orders:
            self.orders[order.client_order_id] = order
            if order.emulated or order.trigger_of is not None:
                self._emulating = True
            if order.emulated and not order.is_terminal:
                self._parked[order.client_order_id] = order  # never at a venue: not reconciled, re-armed
            elif not order.is_terminal:
                self._open[order.client_order_id] = order
            if order.parent_id is not None:
                self._children.setdefault(order.parent_id, []).append(order)
                self.has_children = True
        track = getattr(self.adapter, "track", None)  # a restarted adapter learns the orders' links (Alpaca legs)
        if track is not None:
            track([o for o in orders if not o.emulated])
        for fill in fills:
            if fill.execution_id in self._execution_ids:
                continue
            self._execution_ids.add(fill.execution_id)
            self.fills.append(fill)
            instrument = self.instruments[fill.symbol]
            if fill.fee_currency:
                self._count_base_fee(instrument, fill.client_order_id, fill)
            self.portfolio.book_fill(instrument, fill)

    def submit(self, order: Order) -> bool:
        """Check, journal and send. Returns False if the order was denied."""
        cid, orders = order.client_order_id, self.orders
        if cid in orders:
            raise DuplicateClientOrderId(cid)
        orders[cid] = order
        ts = self.clock.now_ns()
        if (order.parent_id is not None or order.oco_group is not None or order.trail_distance is not None
                or order.trail_percent is not None or order.expire_ns is not None or order.tif is _GTD):
            if order.parent_id is not None:  # (a plain order's path skips this test too)
                self._children.setdefault(order.parent_id, []).append(order)
                self.has_children = True
                if order.parent_id in self._base_fees and order.qty is not None:
                    self._size_to_delivered(order)
            if (order.parent_id is not None or order.oco_group is not None or order.is_trailing) \
                    and self.emulator.needs(order):
                order.emulated = True  # held here, never sent (engine/emulation.py)
                self._emulating = True
            refusal = self._unsupported(order)  # the plain order's path skips this: one test above
            if refusal is not None:
                self._record(order, order.transition(OrderState.DENIED, ts, refusal))
                self.denied.append(order)
                return False
        if order.side is not _BUY:  # self._shortable, inlined (every sell of a backtest passes here)
            instrument = self.instruments.get(order.symbol)
            refusal = None if instrument is None or instrument.shortable else self._short_sale(order)
            if refusal is not None:
                self._record(order, order.transition(OrderState.DENIED, ts, refusal))
                self.denied.append(order)
                return False
        if self.risk is not None:
            reason = self.risk.check(order, self.portfolio)
            if reason is not None:
                self._record(order, order.transition(OrderState.DENIED, ts, reason))
                self.denied.append(order)
                return False
        journal = self.journal
        if journal is None and order.state is _INITIALIZED and order._pending is None and not self._parked:
            # self._move(order, PENDING_SUBMIT, ts) for the plain case, inlined (every order's first
            # transition): INITIALIZED -> PENDING_SUBMIT is allowed, no journal waits for the event
            # (Order.events makes it when read) and no order is parked: the same state, recorded
            # transition and open book as _move's, without its call and its checks
            order.state = _PENDING_SUBMIT
            order._pending = [_PENDING_SUBMIT, ts]
            self._open[cid] = order
        else:
            self._move(order, _PENDING_SUBMIT, ts)
        if order.emulated:
            self._record(order, order.transition(OrderState.ACCEPTED, ts, EMULATED))
            if self.journal is not None:
                self.journal.flush()
            self.emulator.held(order)
            return True
        if journal is not None:
            journal.write_ahead()  # durable before any venue can have seen it
        try:
            self.adapter.submit(order)
        except Exception as error:  # noqa: BLE001 - an adapter bug or an unreachable venue must not wedge the bot
            # Still PENDING_SUBMIT means the adapter reported nothing: it failed before sending
            # (sizing, a price read; an adapter reports SUBMITTED before a request leaves it), so
            # no venue holds the order. Left in flight it would block
            # every later go(); it ends REJECTED, naming the error's type only (a message may
            # quote a signed URL). Once SUBMITTED, the venue may hold it: the error is the caller's.
            if order.state is not OrderState.PENDING_SUBMIT:
                if journal is not None:
                    journal.settle()
                raise
            self.on_rejected(order, self.clock.now_ns(), f"SUBMIT_FAILED: {type(error).__name__}")
        if journal is not None:
            journal.settle()  # the write-ahead's rows into their tables (engine/store/write_ahead.py)
        return True

    def _unsupported(self, order: Order) -> str | None:
        """Why the adapter cannot take this order, or None. An adapter that does not say it carries
        the links would send a bracket's stop-loss as a plain stop at once (with no position yet,
        that opens one); one that does not say it honours expiry would leave a GTD order working
        past its time."""
        if (order.parent_id is not None or order.oco_group is not None or order.is_trailing) and not order.emulated:
            if not getattr(self.adapter, "protective_orders", False):
                return "PROTECTIVE_UNSUPPORTED"
        if order.expire_ns is not None or order.tif is TimeInForce.GTD:
            if order.emulated or not getattr(self.adapter, "supports_expiry", False):
                return "EXPIRY_UNSUPPORTED"  # an emulated order never meets the venue's clock
        return None

    def _shortable(self, symbol: str) -> bool:
        """Whether the venue lets the bot sell more than it holds there (Instrument.shortable: not
        spot). Read from `instruments` each time: an adapter may fill them in after construction."""
        instrument = self.instruments.get(symbol)
        return instrument is None or instrument.shortable

    def _short_sale(self, order: Order) -> str | None:
        """SHORT_SALE when a sell on a venue that cannot short (Instrument.shortable: spot) would
        sell more than the bot holds: there the venue takes the rest from whatever else the
        account holds (the trader's coins, another bot's). A protective sell (a bracket's exits,
        a trailing stop: one of them fills) is held to the position alone; any other sell also
        to what the bot's other working sells leave of it. A bracket's child acts on its entry's
        fill, sized to what filled (its adapter holds it until then): not checked here. An
        equity-fraction sell is refused: the venue sizes it from equity, not from the coins held
        (a rule's closes go by quantity: Strategy.close; a fraction sell is a short entry)."""
        if order.parent_id is not None:
            return None
        if order.qty is None:
            return SHORT_SALE
        position = self.portfolio.positions.get(order.symbol)
        held = ZERO if position is None else position.quantity
        if is_protective(order) or order.trigger_of is not None:
            return SHORT_SALE if order.qty > held else None
        asked = self._cancel_asked
        if len(asked) > 2 * len(self._open) + 64:  # forget the ones no longer open
            asked.intersection_update(self._open)
        # a reduce-only sell (Strategy.close, a kill's flatten) does not wait for sells whose cancel is
        # asked (Alpaca's cancels are asynchronous: a kill cancels, then flattens at once)
        skip = asked if order.reduce_only else ()
        selling, groups = ZERO, {}  # the legs of one OCO group are alternatives: the largest counts
        for o in self._open.values():
            if (o.symbol != order.symbol or o.side is _BUY or o is order or is_protective(o) or o.qty is None
                    or o.client_order_id in skip):
                continue
            if o.oco_group is None:
                selling += o.leaves_qty
            elif o.oco_group != order.oco_group:  # the order's own siblings are its alternatives
                groups[o.oco_group] = max(groups.get(o.oco_group, ZERO), o.leaves_qty)
        return SHORT_SALE if order.qty > held - selling - sum(groups.values(), ZERO) else None

    def cancel(self, order: Order) -> None:
        if order.emulated:
            own = self.orders.get(order.client_order_id, order)
            if own.is_open:
                self.emulator.cancel(own)  # held here: canceled here
        elif order.is_open or order.state is OrderState.PENDING_SUBMIT:
            # PENDING_SUBMIT once submit() returned: the adapter holds it unsent (a bracket child
            # waiting for its entry's fill on Alpaca or ccxt, an MT5 GTD order waiting for the
            # server's clock): the adapter's to drop
            if not self._shortable(order.symbol):
                self._cancel_asked.add(order.client_order_id)
            self.adapter.cancel(order)

    def cancel_all(self) -> None:
        for order in self.open_orders:
            self.cancel(order)

    def amend(self, order: Order, price: "Decimal | None" = None, qty: "Decimal | None" = None) -> str | None:
        """Change a working order's price and/or quantity (engine.orders.amend_terms says which
        price): None when the venue took it, else the reason nothing changed: NOT_WORKING (unknown,
        in flight or terminal), UNSUPPORTED (an adapter without `amend`, engine.ports.AmendingAdapter:
        no cancel + replace emulation, which could double the exposure), or the venue's refusal.
        Journaled as an AMENDED event on the order (its row gets the new terms) once the venue took it."""
        own = self.orders.get(order.client_order_id)
        if own is None or own.is_terminal or own.state is OrderState.PENDING_SUBMIT:
            return "NOT_WORKING"
        if own.emulated:  # held here: its terms are ours to change (a restart reads them from the store)
            amend_terms(own, price, qty)
            terms = " ".join(f"{k}={v}" for k, v in (("price", price), ("qty", qty)) if v is not None)
            self._note(own, f"AMENDED {terms}")
            if self.journal is not None:
                self.journal.flush()
            return None
        amend = getattr(self.adapter, "amend", None)
        if amend is None:
            return "UNSUPPORTED"
        reason = amend(own, price, qty)
        if reason is not None:
            return str(reason)
        amend_terms(own, price, qty)  # the venue changed its copy (in a backtest, this very order)
        terms = " ".join(f"{k}={v}" for k, v in (("price", price), ("qty", qty)) if v is not None)
        self._note(own, f"AMENDED {terms}")
        if self.journal is not None:
            self.journal.flush()
        return None

    def on_trailed(self, order: Order, stop_price: "Decimal", ts: int) -> None:
        """The venue moved a trailing stop it holds: keep and journal the level where it works now
        (TRAILED, as the emulator journals its own moves), so the books, the API and parity show the
        venue's stop, not the one it started at."""
        own = self.orders.get(order.client_order_id)
        if own is None or not own.is_open or own.stop_price == stop_price:
            return
        own.stop_price = stop_price
        self._note(own, f"TRAILED stop={stop_price}")

    def _note(self, order: Order, reason: str) -> None:
        """Journal a change of an order's terms that is not a change of state (amend, resize)."""
        event = OrderEvent(order.client_order_id, order.state, self.clock.now_ns(), reason)
        order.events.append(event)
        self._record(order, event)

    def _count_base_fee(self, instrument: Instrument, cid: str, fill: Fill) -> None:
        """Keep a buy's fee taken in the coin bought (the wallet received that much less: `_delivered`).
        A long-running bot forgets the older half, but what open orders and their children need."""
        if fill.fee_currency != instrument.base or fill.side is not _BUY:
            return
        fees = self._base_fees
        if len(fees) > 4096:
            for old in list(fees)[:2048]:
                if old not in self._open and not any(not c.is_terminal for c in self._children.get(old, ())):
                    del fees[old]
        fees[cid] = fees.get(cid, ZERO) + fill.fee_native

    def _delivered(self, parent: Order) -> Decimal:
        """What a bracket's exits protect: the entry's fills, less a fee the venue took in the coin
        bought (Binance spot without BNB), on the lot grid, rounded down: the exits sell what the
        wallet received, as the adapter sizes them (brokers/ccxt/adapter.py `_protected`)."""
        filled = parent.filled_qty
        fee = self._base_fees.get(parent.client_order_id)
        if not fee or parent.symbol not in self.instruments:
            return filled
        step = self.instruments[parent.symbol].size_increment
        return ((filled - fee) / step).to_integral_value(ROUND_FLOOR) * step

    def _size_to_delivered(self, child: Order) -> None:
        """A child sent after its entry filled with a fee in the coin bought: no more than that entry
        delivered (its first terms; later fills resize it as `_resize_children` does)."""
        parent = self.orders.get(child.parent_id)  # type: ignore[arg-type]
        if parent is None or child.qty is None:
            return
        target = self._child_qty(self._delivered(parent), child, self._children.get(parent.client_order_id, []))
        if target is not None and target < child.qty:
            child.qty = target

    @staticmethod
    def _child_qty(protected: Decimal, child: Order, children: list[Order]) -> Decimal | None:
        """engine.orders.protective_qty for one child: what `protected` leaves once its OCO group's
        exits (the child alone without a group) have filled."""
        exits = [c for c in children if c.oco_group == child.oco_group] if child.oco_group else [child]
        return protective_qty(protected, sum((c.filled_qty for c in exits), ZERO), child.filled_qty)

    def _resize_children(self, order: Order) -> None:
        """Keep the OMS's bracket children sized as the venue sizes them (engine.orders.protective_qty),
        after a fill of a parent or of a child: the venue reports fills and cancels, not resizes."""
        for pid in (order.client_order_id, order.parent_id):
            children = self._children.get(pid) if pid is not None else None
            parent = self.orders.get(pid) if children else None
            if parent is None:
                continue
            protected = self._delivered(parent)
            for child in children:  # type: ignore[union-attr]
                if child.is_terminal:
                    continue
                target = self._child_qty(protected, child, children)  # type: ignore[arg-type]
                if target is not None and target != child.qty:
                    child.qty = target
                    self._note(child, f"RESIZED qty={target}")

    # -- ExecutionSink ---------------------------------------------------------------------------
    # A venue may report on its own copy of an order (a separate process, a restarted engine):
    # the OMS always updates *its* order, found by client order id.
    # A report about an order that is not the bot's (another bot or program on a shared account)
    # is counted and ignored: it never reaches the books (issue 14: a bot owns what it sent).
    foreign_reports: int = 0  # per OMS: `+=` makes the count the instance's own

    def _foreign(self, order: Order) -> bool:
        """True (and counted) for a report the OMS ignores: an order it does not know and does not own."""
        if order.client_order_id in self.orders or self._adoptable(order):
            return False
        self.foreign_reports += 1
        return True

    def _adoptable(self, order: Order) -> bool:
        """An unknown order the books take: the bot's own id (sent by a twin process, or made by
        the venue for it), or a liquidation an in-process simulated venue made on the account it
        keeps for this bot alone, in one of the bot's symbols."""
        if owns(self.bot_id, order.client_order_id):
            return True
        return order.bot_id == VENUE_BOT_ID and order.symbol in self.instruments

    def _own(self, order: Order) -> Order:
        own = self.orders.get(order.client_order_id)
        if own is None:
            own = self.adopt_external(order)
        return own

    def adopt_external(self, venue_order: Order) -> Order:
        """An order the venue has and this OMS never made, taken into the books flagged external.
        The caller decides it is the bot's (`_adoptable`, reconcile_with_adapter): foreign orders
        are never adopted."""
        own = Order(
            client_order_id=venue_order.client_order_id, bot_id=self.bot_id, symbol=venue_order.symbol,
            side=venue_order.side, type=venue_order.type, qty=venue_order.qty, ts_init=venue_order.ts_init,
            limit_price=venue_order.limit_price, stop_price=venue_order.stop_price, tif=venue_order.tif,
            tag="external",
        )
        self.orders[own.client_order_id] = own
        self.external.append(own)
        self._record(own, own.transition(OrderState.PENDING_SUBMIT, venue_order.ts_init))
        self._record(own, own.transition(OrderState.SUBMITTED, venue_order.ts_init))
        return own

    def on_submitted(self, order: Order, ts: int) -> None:
        own = self.orders.get(order.client_order_id)  # known: neither foreign nor to adopt (the hot path)
        if own is None:
            if self._foreign(order):
                return
            own = self._own(order)
        state = own.state
        if state in _PAST_SUBMITTED:
            return  # a repeated or late report (a reconnect, a restart): the books already know more
        if state is _PENDING_SUBMIT and own._pending is not None and self.journal is None and not self._parked:
            # self._move(own, SUBMITTED, ts) for an order recorded without a journal, inlined (every
            # order's second transition, as submit() makes its first): allowed, and it stays open
            own.state = _SUBMITTED
            own._pending += (_SUBMITTED, ts)
            self._open[own.client_order_id] = own
        else:
            self._move(own, _SUBMITTED, ts)

    def on_accepted(self, order: Order, ts: int) -> None:
        if self._foreign(order):
            return
        own = self._own(order)
        if own.state in _PAST_ACCEPTED:
            return  # as above: e.g. an adapter that restarted reports a restored order from the start
        self._record(own, own.transition(OrderState.ACCEPTED, ts))

    def on_rejected(self, order: Order, ts: int, reason: str) -> None:
        if self._foreign(order):
            return
        own = self._own(order)
        if own.is_terminal:
            return  # a repeated report (a reconnect replays what reconciliation already booked)
        self._record(own, own.transition(OrderState.REJECTED, ts, str(reason)))
        self.rejected.append(own)
        if self._emulating:
            self.emulator.on_done(own)
        if own.parent_id is not None or own.is_trailing:
            self.emulator.on_refused(own, str(reason))  # a refused protective order is taken over, never left bare

    def on_canceled(self, order: Order, ts: int, reason: str | None) -> None:
        if self._foreign(order):
            return
        own = self._own(order)
        if own.is_terminal:
            return  # as above; a cancel reported after the last fill changes nothing either
        self._record(own, own.transition(OrderState.CANCELED, ts, None if reason is None else str(reason)))
        if self._emulating:
            self.emulator.on_done(own)

    def on_fill(self, order: Order, fill: Fill, bar: int) -> None:
        execution_id, execution_ids = fill.execution_id, self._execution_ids
        if execution_id in execution_ids:
            return  # a venue may report one execution twice (reconnects, replays): book it once
        own = self.orders.get(order.client_order_id)  # known: neither foreign nor to adopt (the hot path)
        if own is None and self._foreign(order):
            return
        instrument = self.instruments[fill.symbol]
        # the fill's fields read once (a Fill keeps them in a dict, where each read is a full lookup)
        valued_fee = fill.fee_currency  # a fee in any currency (the cash currency's needs nothing)
        if valued_fee:  # valued or refused
            self._count_base_fee(instrument, order.client_order_id, fill)
            fill = self.portfolio.valued(instrument, fill)
        if own is None:
            own = self._own(order)
        late = own.state in TERMINAL_STATES  # an execution reported after the cancel/expiry/reject
        execution_ids.add(execution_id)
        self.fills.append(fill)
        if own.qty is None:  # sized by the venue at fill time
            own.qty = order.qty
        qty_raw, price_raw, ts = fill.qty_raw, fill.price_raw, fill.ts
        previous = own.filled_qty
        fill_qty = qty_from_raw(qty_raw, fill.qty_dp)  # fill.qty: the order's own when the venue sized it
        fill_price = Decimal(price_raw).scaleb(-fill.price_dp)  # fill.price, inlined
        if not previous:
            own.filled_qty = fill_qty
            own.avg_fill_price = fill_price
        else:
            own.filled_qty = previous + fill_qty
            own.avg_fill_price = (own.avg_fill_price * previous + fill_price * fill_qty) / own.filled_qty  # type: ignore[operator]
        if late:
            # The venue executed it before its cancel (or expiry) took effect and said so afterwards
            # (Alpaca's fill activities lag its order status; two streams; a restart's fills_since).
            # The money moved: book it. The order stays in its final state, with the fill noted.
            self._note(own, f"{LATE_FILL} {execution_id} after {own.state}")
        else:
            done = own.qty is not None and own.filled_qty >= own.qty
            new = _FILLED if done else _PARTIALLY_FILLED
            if own.state is _SUBMITTED and own._pending is not None and self.journal is None and not self._parked:
                # self._move(own, new, ts) for a submitted order recorded without a journal, inlined
                # (a market order's last transition): allowed; filled, it leaves the open book
                own.state = new
                own._pending += (new, ts)
                if done:
                    self._open.pop(own.client_order_id, None)
                else:
                    self._open[own.client_order_id] = own
            else:
                self._move(own, new, ts)
        if self._children:
            self._resize_children(own)
        if valued_fee:
            closed = self.portfolio.book_fill(instrument, fill, bar)
        else:  # book_fill's own first branch, without the call (every simulated fill)
            closed = self.portfolio.apply_fill(instrument, 1 if fill.side is _BUY else -1,  # fill.side.sign, inlined
                                               qty_raw, price_raw, fill.fee_raw, ts, bar)
        if self.journal is not None:
            self.journal.record_fill(own, fill)
            self.journal.record_position(self.portfolio, fill.symbol, ts)
        if self._emulating:
            self.emulator.on_fill(own, fill)
        if self.fill_listeners:
            for listener in tuple(self.fill_listeners):  # a listener may remove itself (engine.controls)
                listener(own, fill, closed)

    def _move(self, order: Order, new: OrderState, ts: int) -> None:
        """`_record(order, order.transition(new, ts))` in one call, the transition made inline (the
        same check, state and event as Order.transition, which raises for an illegal one; without a
        journal the event is recorded as (state, ts) and made when `order.events` is read): every
        order makes three such transitions (pending, submitted, filled), a measurable part of a
        backtest's time."""
        if new not in ALLOWED_TRANSITIONS.get(order.state, _NO_MOVES):
            order.transition(new, ts)  # raises InvalidTransition, naming the order and the states
        order.state = new
        journal = self.journal
        if journal is None:  # nobody needs the OrderEvent now: Order.events makes it when read
            pending = order._pending
            if pending is None:
                order._pending = [new, ts]
            else:
                pending += (new, ts)
        cid = order.client_order_id
        if new in TERMINAL_STATES:
            self._open.pop(cid, None)
            if self._parked:
                self._parked.pop(cid, None)
        elif not self._parked or cid not in self._parked:
            self._open[cid] = order
        if journal is not None:
            event = OrderEvent(cid, new, ts, None)
            order.events.append(event)
            journal.record_event(order, event)

    def _record(self, order: Order, event: OrderEvent) -> None:
        if order.state in TERMINAL_STATES:
            self._open.pop(order.client_order_id, None)
            if self._parked:
                self._parked.pop(order.client_order_id, None)
        elif not self._parked or order.client_order_id not in self._parked:
            self._open[order.client_order_id] = order
        if self.journal is not None:
            self.journal.record_event(order, event)

