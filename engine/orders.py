"""Orders and their state machine.

An order moves only along the transitions in `_ALLOWED`; every transition is recorded as an
event (state, time, reason) so the store can persist it and a restart can replay it. The client
order id is the idempotency key: deterministic per bot (bot id + sequence) and never reused.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from decimal import Decimal
from enum import StrEnum
from typing import Any

from engine.errors import InvalidTransition


class OrderSide(StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        return 1 if self is OrderSide.BUY else -1


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP = "STOP"
    STOP_LIMIT = "STOP_LIMIT"


class TimeInForce(StrEnum):
    GTC = "GTC"
    DAY = "DAY"
    IOC = "IOC"
    FOK = "FOK"
    GTD = "GTD"  # good till `Order.expire_ns`; the OMS sends it only to an adapter with `supports_expiry`


class OrderState(StrEnum):
    INITIALIZED = "INITIALIZED"
    DENIED = "DENIED"
    PENDING_SUBMIT = "PENDING_SUBMIT"
    SUBMITTED = "SUBMITTED"
    ACCEPTED = "ACCEPTED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    PENDING_CANCEL = "PENDING_CANCEL"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"


S = OrderState
_FILLABLE = {S.PARTIALLY_FILLED, S.FILLED}
_ALLOWED: dict[OrderState, frozenset[OrderState]] = {
    S.INITIALIZED: frozenset({S.DENIED, S.PENDING_SUBMIT}),
    S.PENDING_SUBMIT: frozenset({S.SUBMITTED, S.REJECTED, S.ACCEPTED, *_FILLABLE, S.CANCELED}),
    S.SUBMITTED: frozenset({S.ACCEPTED, S.REJECTED, S.PENDING_CANCEL, S.CANCELED, S.EXPIRED, *_FILLABLE}),
    S.ACCEPTED: frozenset({S.PENDING_CANCEL, S.CANCELED, S.EXPIRED, *_FILLABLE}),
    S.PARTIALLY_FILLED: frozenset({S.PENDING_CANCEL, S.CANCELED, S.EXPIRED, *_FILLABLE}),
    # A cancel can lose the race with a fill, or be refused (back to ACCEPTED / PARTIALLY_FILLED).
    S.PENDING_CANCEL: frozenset({S.CANCELED, S.ACCEPTED, S.EXPIRED, *_FILLABLE}),
}
# the table itself, for a caller that makes the transition inline (OrderManager._move, three per order)
ALLOWED_TRANSITIONS = _ALLOWED
TERMINAL_STATES = frozenset({S.DENIED, S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED})
OPEN_STATES = frozenset({S.SUBMITTED, S.ACCEPTED, S.PARTIALLY_FILLED, S.PENDING_CANCEL})


_NONE: frozenset[OrderState] = frozenset()


def quick_frozen_init(cls: type) -> type:
    """Give a frozen dataclass a faster `__init__` with the same signature and effect.

    Why: the generated one calls `object.__setattr__` once per field (a frozen class refuses plain
    assignment), and a long backtest builds one Fill and one ClosedTrade per order round trip (tens
    of thousands). For a class with an instance dict (Fill and ClosedTrade: no slots, for this)
    the new `__init__` stores each field into the instance's `__dict__` by key (the frozen
    `__setattr__` is not involved: the dict is read, then written item by item), a quarter of the
    time of the per-field calls. Stored so, in the fields' order, the instance keeps CPython's
    shared-key layout (the keys once per class, the values per instance): about half the memory of
    a dict built whole and set as `__dict__`, which the previous version did (a long run keeps
    every Fill and ClosedTrade, and fresh memory is page faults). For a slots class it binds the
    setter once, as a default argument. Defaults and keyword use are kept; field factories are not
    supported (none here)."""
    params, body = [], []
    defaults: dict[str, object] = {}
    for f in fields(cls):
        if f.default_factory is not MISSING:  # pragma: no cover - a programming error, caught at import
            raise TypeError(f"{cls.__name__}.{f.name}: quick_frozen_init takes plain defaults only")
        if f.default is MISSING:
            params.append(f.name)
        else:
            defaults[f"_d_{f.name}"] = f.default
            params.append(f"{f.name}=_d_{f.name}")
        body.append(f"    _set(self, {f.name!r}, {f.name})")
    if "__slots__" not in cls.__dict__:  # item by item into the instance dict (not through __setattr__)
        body = ["    _values = self.__dict__", *(f"    _values[{f.name!r}] = {f.name}" for f in fields(cls))]
    source = f"def __init__(self, {', '.join(params)}, *, _set=object.__setattr__) -> None:\n" + "\n".join(body)
    namespace: dict[str, object] = {}
    exec(source, dict(defaults), namespace)  # noqa: S102 - source built from the class's own field names
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"  # type: ignore[attr-defined]
    init.__doc__ = cls.__init__.__doc__  # type: ignore[misc]
    cls.__init__ = init  # type: ignore[misc]
    return cls


def can_transition(current: OrderState, new: OrderState) -> bool:
    return new in _ALLOWED.get(current, frozenset())


@dataclass(slots=True)
class OrderEvent:
    """One stored transition of an order."""

    client_order_id: str
    state: OrderState
    ts: int
    reason: str | None = None


@dataclass(slots=True, eq=False)
class Order:
    """An order from intent to terminal state.

    `qty` is the quantity in units. A market order may instead carry `equity_fraction`: the
    venue turns it into units at fill time, at the fill price, so it never spends cash that is
    not there (a backtest convention that live adapters resolve at submit with the last price).
    """

    client_order_id: str
    bot_id: str
    symbol: str
    side: OrderSide
    type: OrderType
    qty: Decimal | None
    ts_init: int
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    tif: TimeInForce = TimeInForce.GTC
    reduce_only: bool = False
    equity_fraction: Decimal | None = None
    tag: str = ""
    state: OrderState = OrderState.INITIALIZED
    venue_order_id: str | None = None
    filled_qty: Decimal = Decimal(0)
    avg_fill_price: Decimal | None = None
    reason: str | None = None
    stop_triggered: bool = False
    # Protective links (issue 17). `parent_id`: a one-triggers-other child (a bracket's stop-loss or
    # take-profit) that works only once its parent has filled, sized to what the parent filled.
    # `oco_group`: orders in one group cancel each other (see protective_qty for a bracket's exits).
    # `trail_distance` (price units) / `trail_percent` (of the price): a STOP whose stop_price the
    # venue ratchets behind the best price since it started working; stop_price is then its level.
    parent_id: str | None = None
    oco_group: str | None = None
    trail_distance: Decimal | None = None
    trail_percent: Decimal | None = None
    # A working order's expiry (tif GTD): ns UTC. The venue ends it at the first bar/tick (or server
    # time) at or after this moment, reported as a cancel with reason EXPIRED.
    expire_ns: int | None = None
    # Emulation (issue 17 item 3, engine/emulation.py). `emulated`: the OMS holds this order itself
    # (its venue lacks the link or the trail) and watches the bot's ticks for its trigger; it never
    # reaches a venue and protects only while the bot runs. `trigger_of`: on the market order an
    # emulated order sent when triggered, that order's client id (its fills are that order's).
    # `stop_attached`: an entry whose bracket stop follows in the same linked() block (the risk
    # rule require_stop reads it; not journaled: the check happens once, at submit).
    emulated: bool = False
    trigger_of: str | None = None
    stop_attached: bool = False
    # The transitions as OrderEvents are `events`, made on first read: the OMS's hot path
    # (OrderManager._move, three transitions per order, no journal waiting for the event) records
    # a transition as (state, ts) in `_pending`, and `events` turns those into OrderEvents, in
    # order, before anything is read or appended. Three OrderEvent objects per order, made for a
    # backtest that never reads them, were a twentieth of its order path. Not init fields: an
    # Order is made without events, and dataclasses.replace() gives a copy with none (the
    # adapters' replaced order terms, a stored order as the journal returns it, before its events).
    _events: list[OrderEvent] | None = field(default=None, init=False, repr=False)
    _pending: list[Any] | None = field(default=None, init=False, repr=False)

    @property
    def events(self) -> list[OrderEvent]:
        """Every transition (and noted change of terms) of this order, oldest first."""
        events = self._events
        if events is None:
            events = self._events = []
        pending = self._pending
        if pending:
            cid = self.client_order_id
            for k in range(0, len(pending), 2):
                events.append(OrderEvent(cid, pending[k], pending[k + 1], None))
            pending.clear()
        return events

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def is_trailing(self) -> bool:
        return self.trail_distance is not None or self.trail_percent is not None

    @property
    def leaves_qty(self) -> Decimal:
        return (self.qty or Decimal(0)) - self.filled_qty

    def transition(self, new: OrderState, ts: int, reason: str | None = None) -> OrderEvent:
        """Move to `new` or raise InvalidTransition; returns the event to store."""
        if new not in _ALLOWED.get(self.state, _NONE):
            raise InvalidTransition(f"order {self.client_order_id}: {self.state} -> {new} is not allowed")
        self.state = new
        if reason is not None:
            self.reason = reason
        event = OrderEvent(self.client_order_id, new, ts, reason)
        self.events.append(event)
        return event

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view for reports and the API."""
        return {
            "client_order_id": self.client_order_id,
            "symbol": self.symbol,
            "side": self.side.value,
            "type": self.type.value,
            "qty": None if self.qty is None else str(self.qty),
            "equity_fraction": None if self.equity_fraction is None else str(self.equity_fraction),
            "limit_price": None if self.limit_price is None else str(self.limit_price),
            "stop_price": None if self.stop_price is None else str(self.stop_price),
            "tif": self.tif.value,
            "state": self.state.value,
            "filled_qty": str(self.filled_qty),
            "avg_fill_price": None if self.avg_fill_price is None else str(self.avg_fill_price),
            "reason": self.reason,
            "tag": self.tag,
            "ts_init": self.ts_init,
            "parent_id": self.parent_id,
            "oco_group": self.oco_group,
            "trail_distance": None if self.trail_distance is None else str(self.trail_distance),
            "trail_percent": None if self.trail_percent is None else str(self.trail_percent),
            "expire_ns": self.expire_ns,
            "emulated": self.emulated,
            "trigger_of": self.trigger_of,
        }


def protective_qty(parent_filled: Any, exits_filled: Any, own_filled: Any) -> Any:
    """The quantity a bracket child must have, or None when its exit is done (cancel what is left).

    A child protects what its parent has filled and its exit has not yet closed: `exits_filled` is
    what the child's OCO group (all the parent's children in it) has filled, or the child's own
    fills when it has no group. So a partial entry fill grows the children, and a partial
    take-profit shrinks its stop-loss sibling by the same amount. The venue (raw ints) and the OMS
    (Decimals) both call this, on the same fills, so their views of the child agree; it is
    absolute, not incremental, so applying it twice to one order (a backtest shares the order
    objects) changes nothing. None before the parent's first fill too (nothing to protect yet)."""
    remaining = parent_filled - exits_filled
    if remaining <= 0:
        return None
    return own_filled + remaining


def amend_terms(order: Order, price: Decimal | None, qty: Decimal | None) -> None:
    """Apply an amend to `order`: `price` is the limit price of a LIMIT or STOP_LIMIT order and
    the stop price of a STOP order (a trailing stop's current level); `qty` the new total quantity.
    The venue and the OMS both apply it through here, so they agree on what `price` means."""
    if price is not None:
        if order.type is OrderType.STOP:
            order.stop_price = price
        else:
            order.limit_price = price
    if qty is not None:
        order.qty = qty


class Liquidity(StrEnum):
    MAKER = "MAKER"
    TAKER = "TAKER"


@quick_frozen_init
@dataclass(frozen=True)  # no slots: quick_frozen_init sets its instance dict in one call
class Fill:
    """One execution. `execution_id` is unique per venue; a repeated one is ignored.

    Amounts are held as the raw integers the books use (engine.money); the Decimal views are
    built on demand, since a long backtest makes tens of thousands of fills and reads few.
    """

    execution_id: str
    client_order_id: str
    symbol: str
    side: OrderSide
    qty_raw: int
    price_raw: int
    fee_raw: int
    qty_dp: int
    price_dp: int
    cash_dp: int
    ts: int
    liquidity: Liquidity = Liquidity.TAKER
    # The fee as the venue charged it, when that was not in the cash currency (Binance takes it in
    # the coin bought, or in BNB): its currency and amount, on their own grid. "" = in the cash
    # currency, and then fee_raw holds it. When set, an adapter leaves fee_raw 0 and the books
    # value the fee (Portfolio.valued): the OMS then keeps, journals and replays the fill with
    # fee_raw = that value in the account currency at the fill's time, so a restart needs no rate.
    # A fee in the base asset also changes the position: it equals what the wallet received.
    fee_currency: str = ""
    fee_native_raw: int = 0
    fee_native_dp: int = 0

    @property
    def fee_native(self) -> Decimal:
        return Decimal(self.fee_native_raw).scaleb(-self.fee_native_dp)

    @property
    def qty(self) -> Decimal:
        return Decimal(self.qty_raw).scaleb(-self.qty_dp)

    @property
    def price(self) -> Decimal:
        return Decimal(self.price_raw).scaleb(-self.price_dp)

    @property
    def fee(self) -> Decimal:
        return Decimal(self.fee_raw).scaleb(-self.cash_dp)
