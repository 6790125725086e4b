"""Protective orders the venue does not carry, held and triggered by the OMS (issue 17 items 3-4).

A venue declares what it carries itself with capability attributes on its adapter; an adapter
that declares none of them falls back on `protective_orders` (True: it carries every link):
- `native_brackets`: children of an entry (`parent_id`), held until the entry fills and sized to
  it, a bracket's stop-loss and take-profit as one OCO exit;
- `native_oco`: a standalone one-cancels-other group (no parent);
- `native_trailing`: a trailing stop.
An order that needs what its adapter lacks is *emulated*: `Order.emulated` is set (journaled, in
the order's dict view), it is risk-checked and journaled like any order (PENDING_SUBMIT, then
ACCEPTED with reason EMULATED) but never sent: the OMS holds it and watches the bot's guarded
ticks (`on_quote`, called by the runner before the venue and the strategy see the tick). It
protects only while the bot runs; a restart re-arms it from the store (OrderManager.restore
parks it, so reconciliation never asks the venue for an order the venue never saw, and `rearm`
puts it back before the first new tick).

A bracket with one emulated member is emulated whole: an order joins emulation when its OCO group
already has an emulated member (the stop is sent first, so a trailing stop takes its
take-profit with it), since a venue cannot link its own order with one it never saw.

On a tick (the bid for a sell, the ask for a buy, on the price grid), a working emulated order:
- STOP (trailing or not) triggers when the price reaches its stop; a trailing stop that did not
  trigger is then ratcheted behind the price as SimulatedVenue does it (rounded away from the price
  to the tick, never loosened), the new level journaled (TRAILED) so a restart resumes at it;
- LIMIT triggers when the price reaches its limit; STOP_LIMIT when it reaches its stop;
- a MARKET child triggers on the first tick after its parent filled.
Triggered, it sends one real order through the OMS's normal path (write-ahead journal, risk
gate): a market order for a stop, a limit at its price for a limit or stop-limit (a take-profit
never fills worse than its price), `trigger_of` naming the emulated order. A protective one (a
bracket child, a trailing stop) sends it reduce-only, for at most what the position still holds
once the closing orders already in flight are counted (a kill's flattening order), and the risk
engine checks it as an exit (engine/risk.py: a stop must fire in any trading state). While that
order is working the emulated order waits; each of its fills is the emulated order's (filled
quantity, average price, PARTIALLY_FILLED / FILLED), so the OMS resizes the bracket as a venue
would; if it ends without filling all (rejected, canceled), the emulated order is armed again. An
entry's trigger (not protective) that the risk gate denies cancels the emulated order
(TRIGGER_DENIED:<reason>) instead of being denied again at every tick.
An OCO member's fill (emulated or not) cancels the group's other emulated members as the venue
does: a standalone group at the first fill, a bracket's exit once it has closed what the entry
filled (and then the entry's unfilled rest too). A parent canceled or rejected before any fill
cancels its held emulated children (PARENT_CANCELED). A protective order whose position is gone
when it triggers is canceled (NOTHING_TO_PROTECT): firing it would open a position.
OCO while firing: an OCO sibling's working trigger (a take-profit's limit resting at 110) is not a
closing order in flight for the stop at 80: the member that fires cancels its siblings' triggers.
A venue that refuses a pending limit already through the market (MT5: `rests_marketable_limits`
False on its adapter) gets a limit trigger as IOC, which it sends as a deal bounded by the price.
A protective order the venue refused or lost after its entry filled (`on_refused`: the market
through its stop, a transport failure the adapter could not repair) is taken over by an emulated
stand-in (TAKEN_OVER journaled on both), fired at once when the market is through its stop.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from engine.market import Tick
from engine.money import raw_price, to_raw
from engine.orders import Fill, Order, OrderSide, OrderState, OrderType, TimeInForce, protective_qty

if TYPE_CHECKING:
    from engine.oms import OrderManager

EMULATED = "EMULATED"
TRIGGERED = "TRIGGERED"
TRAILED = "TRAILED"
NOTHING_TO_PROTECT = "NOTHING_TO_PROTECT"
PARENT_CANCELED = "PARENT_CANCELED"
OCO_CANCELED = "OCO"
EXIT_FILLED = "EXIT_FILLED"
TAKEN_OVER = "TAKEN_OVER"
# a protective order's refusal the OMS takes over (on_refused): the market already through its level,
# or a failure of transport / the venue after which no order is working (the adapter proved it or gave
# up); a refusal of the order's terms (UNSUPPORTED, a quantity off the grid ...) stays a refusal
TAKE_OVER_REASONS = ("INVALID_STOPS", "VENUE_ERROR", "TIMEOUT", "RATE_LIMITED", "PRICE_CHANGED",
                     "SUBMIT_FAILED", "CONNECTION", "NO_LIQUIDITY")
ZERO = Decimal(0)
# a trigger that did not fill (the venue down, a reject) is sent again after 0.5 s, then 1, 2, 4 ...
# up to 30 s: a stop keeps trying (a bare position is worse than a refused order), but not at every
# tick, which wrote one REJECTED order per tick into the journal for as long as a venue was down
RETRY_FIRST_NS = 500_000_000
RETRY_MAX_NS = 30_000_000_000


def is_protective(order: Order) -> bool:
    """An order that protects a position (a bracket's child, a trailing stop): a kill leaves it
    working until the position is flat, and an exit is checked without counting it as closing."""
    return order.parent_id is not None or order.trail_distance is not None or order.trail_percent is not None


def native(adapter: object, capability: str) -> bool:
    """Whether `adapter` carries `capability` (native_brackets, native_oco, native_trailing) itself."""
    return bool(getattr(adapter, capability, getattr(adapter, "protective_orders", False)))


class Emulator:
    """The OMS's emulated orders (module docstring). One per OrderManager."""

    def __init__(self, oms: "OrderManager") -> None:
        self.oms = oms
        # prices on the raw grid, memoised by the Decimal they were made from (a tick compares ints;
        # a Decimal conversion per order and tick would cost more than the rest of the tick)
        self._raw: dict[tuple[Decimal, int], int] = {}
        self._fired: dict[str, tuple[int, int]] = {}  # client id -> (triggers sent, not again before ns)

    # -- at submit ------------------------------------------------------------------------------------
    def needs(self, order: Order) -> bool:
        """Whether `order` must be held by the OMS: a link or trail its adapter lacks, or an OCO
        group that already has an emulated member."""
        adapter = self.oms.adapter
        if order.parent_id is not None and not native(adapter, "native_brackets"):
            return True
        if order.is_trailing and not native(adapter, "native_trailing"):
            return True
        if order.oco_group is not None:
            if order.parent_id is None and not native(adapter, "native_oco"):
                return True
            return any(o.emulated and o.oco_group == order.oco_group for o in self.oms.open_orders)
        return False

    def held(self, order: Order) -> None:
        """`order` was just accepted as emulated: a parent that can no longer fill protects nothing."""
        parent = self.oms.orders.get(order.parent_id) if order.parent_id is not None else None
        if parent is not None and parent.is_terminal and not parent.filled_qty:
            self.cancel(order, PARENT_CANCELED)

    # -- ticks ------------------------------------------------------------------------------------------
    def on_quote(self, tick: Tick) -> None:
        """Trigger or ratchet the working emulated orders of `tick`'s symbol (module docstring)."""
        oms = self.oms
        open_orders = oms.open_orders
        held = [o for o in open_orders if o.emulated and o.symbol == tick.symbol]
        if not held:
            return
        firing = {o.trigger_of for o in open_orders if o.trigger_of is not None}
        s = oms.instruments[tick.symbol].scales
        bid_raw = raw_price(tick.bid, s.price_dp, s.price_step)
        ask_raw = raw_price(tick.ask, s.price_dp, s.price_step)
        if bid_raw <= 0 or ask_raw <= 0:
            return
        dp = s.price_dp
        for order in held:
            if order.is_terminal or order.client_order_id in firing or not self._working(order):
                continue
            buy = order.side is OrderSide.BUY
            touch = ask_raw if buy else bid_raw
            kind = order.type
            if kind is OrderType.MARKET:
                touched = True
            elif kind is OrderType.LIMIT:
                limit = order.limit_price
                touched = limit is not None and (touch <= self.raw(limit, dp) if buy else touch >= self.raw(limit, dp))
            else:  # STOP, STOP_LIMIT: the stop
                stop = order.stop_price
                touched = stop is not None and (touch >= self.raw(stop, dp) if buy else touch <= self.raw(stop, dp))
            if touched:
                fired = self._fired.get(order.client_order_id)
                if fired is None or oms.clock.now_ns() >= fired[1]:
                    self._fire(order)
            elif order.is_trailing:
                self._ratchet(order, touch)

    def raw(self, price: Decimal, dp: int) -> int:
        """`price` on the raw grid of `dp` decimals, memoised."""
        key = (price, dp)
        value = self._raw.get(key)
        if value is None:
            if len(self._raw) > 4096:
                self._raw.clear()
            value = self._raw[key] = to_raw(price, dp)
        return value

    def _working(self, order: Order) -> bool:
        """Armed: a child once its parent has filled (and the OMS sized it), any other at once."""
        if order.qty is None or order.leaves_qty <= 0:
            return False
        if order.parent_id is None:
            return True
        parent = self.oms.orders.get(order.parent_id)
        return parent is not None and bool(parent.filled_qty)

    def _fire(self, order: Order) -> None:
        oms = self.oms
        qty = order.leaves_qty
        protective = is_protective(order) or order.reduce_only
        if protective:
            available = self._closable(order)
            if available is None:
                self.cancel(order, NOTHING_TO_PROTECT)
                return
            qty = min(qty, available)
            if qty <= 0:
                return  # a closing order already in flight covers the position: wait for it
            self._cancel_sibling_triggers(order)  # OCO: the member that fires ends its siblings' triggers
        tif = TimeInForce.GTC
        if order.type in (OrderType.LIMIT, OrderType.STOP_LIMIT):
            kind, limit = OrderType.LIMIT, order.limit_price
            if not getattr(oms.adapter, "rests_marketable_limits", True):
                tif = TimeInForce.IOC  # MT5 refuses a pending limit through the market: a deal bounded by it
        else:
            kind, limit = OrderType.MARKET, None
        trigger = Order(oms.next_client_order_id(), order.bot_id, order.symbol, order.side, kind, qty,
                        oms.clock.now_ns(), limit_price=limit, tif=tif, reduce_only=protective, tag=order.tag,
                        trigger_of=order.client_order_id)
        oms._note(order, f"{TRIGGERED} by {trigger.client_order_id}")
        count = self._fired.get(order.client_order_id, (0, 0))[0]
        wait = min(RETRY_MAX_NS, RETRY_FIRST_NS << min(count, 16))
        self._fired[order.client_order_id] = (count + 1, trigger.ts_init + wait)
        oms.submit(trigger)
        if trigger.state is OrderState.DENIED and not protective:
            # an entry the gate refuses now would be refused at every tick: it ends here, saying why
            # (a stop keeps trying: leaving the position bare is worse than a denied order per tick)
            self.cancel(order, f"TRIGGER_DENIED:{trigger.reason}")

    def _closable(self, order: Order) -> Decimal | None:
        """What a protective `order` may close: the position on its other side less the closing
        orders in flight (not protective, not emulated); None when there is no such position."""
        oms = self.oms
        position = oms.portfolio.positions.get(order.symbol)
        held = position.quantity if position is not None else ZERO
        available = held if order.side is OrderSide.SELL else -held
        if available <= 0:
            return None
        siblings = self._siblings(order)
        for other in oms.open_orders:
            if (other.symbol == order.symbol and other.side is order.side and not other.emulated
                    and not is_protective(other) and other.qty is not None and other.trigger_of not in siblings):
                available -= other.leaves_qty
        return available

    def _siblings(self, order: Order) -> set[str]:
        """The client ids of `order`'s OCO siblings: their triggers (a take-profit's limit resting at
        110) close nothing at the stop's price, and the member that fires cancels them."""
        group = order.oco_group
        if group is None:
            return set()
        return {o.client_order_id for o in self.oms.open_orders
                if o.oco_group == group and o is not order and o.emulated}

    def _cancel_sibling_triggers(self, order: Order) -> None:
        siblings = self._siblings(order)
        if not siblings:
            return
        for other in self.oms.open_orders:
            if other.trigger_of in siblings and not other.is_terminal:
                self.oms.cancel(other)

    def _ratchet(self, order: Order, best_raw: int) -> None:
        """Move a trailing stop behind `best_raw` (the raw price), as SimulatedVenue._ratchet does;
        journal a move."""
        s = self.oms.instruments[order.symbol].scales
        step = s.price_step
        sell = order.side is OrderSide.SELL
        if order.trail_distance is not None:
            distance = self.raw(order.trail_distance, s.price_dp)
            level = best_raw - distance if sell else best_raw + distance
        else:
            percent = order.trail_percent
            assert percent is not None
            exact = Decimal(best_raw) * ((100 - percent) if sell else (100 + percent)) / 100
            level = int(exact.to_integral_value(rounding="ROUND_FLOOR" if sell else "ROUND_CEILING"))
        level = (level // step) * step if sell else -(-level // step) * step
        if level <= 0:
            return
        current = self.raw(order.stop_price, s.price_dp) if order.stop_price is not None else None
        if current is None or (level > current if sell else level < current):
            order.stop_price = s.price(level)
            self.oms._note(order, f"{TRAILED} stop={order.stop_price}")

    # -- reports ----------------------------------------------------------------------------------------
    def on_fill(self, order: Order, fill: Fill) -> None:
        """After the OMS booked `fill` of its `order`: a trigger's fill is its emulated order's; an
        OCO member's fill may end the group; a parent's fill starts its trailing children."""
        oms = self.oms
        if order.trigger_of is not None:
            origin = oms.orders.get(order.trigger_of)
            if origin is None or origin.is_terminal:
                return
            previous = origin.filled_qty
            origin.filled_qty = previous + fill.qty
            origin.avg_fill_price = fill.price if not previous else (
                (origin.avg_fill_price * previous + fill.price * fill.qty) / origin.filled_qty)  # type: ignore[operator]
            done = origin.qty is not None and origin.filled_qty >= origin.qty
            oms._record(origin, origin.transition(OrderState.FILLED if done else OrderState.PARTIALLY_FILLED,
                                                  fill.ts))
            if done:
                self._fired.pop(origin.client_order_id, None)
            oms._resize_children(origin)
            order = origin
        if order.oco_group is not None:
            self._after_member_fill(order)
        for child in oms._children.get(order.client_order_id, ()):
            if child.emulated and child.is_trailing and not child.is_terminal:
                self._ratchet(child, fill.price_raw)  # a trailing child starts from its parent's fill

    def _after_member_fill(self, member: Order) -> None:
        oms = self.oms
        group = member.oco_group
        others = [o for o in (*oms.open_orders, *oms._parked.values())  # parked: a fill booked while reconciling
                  if o.oco_group == group and o is not member and o.emulated and not o.is_terminal]
        if not member.emulated and not others:
            return  # a group the venue links itself
        if member.parent_id is None:
            done = True  # a standalone group: the first fill cancels the others
        else:
            parent = oms.orders.get(member.parent_id)
            exits = [o for o in oms._children.get(member.parent_id, ()) if o.oco_group == group]
            done = parent is not None and protective_qty(parent.filled_qty, sum((o.filled_qty for o in exits), ZERO),
                                                         ZERO) is None
            if done and parent is not None and parent.is_open:
                oms.cancel(parent)  # the exit closed what filled: the rest of the entry would be bare
        if done:
            for other in others:
                self.cancel(other, OCO_CANCELED)

    def on_refused(self, order: Order, reason: str) -> Order | None:
        """A protective order the venue refused or lost (TAKE_OVER_REASONS) while what it protects
        is, or may still be, held: an emulated stand-in takes its place (same terms, group and parent,
        a new client id; both journaled, TAKEN_OVER), so the position is never left bare. A stop the
        market is already through (INVALID_STOPS) fires at once: a reduce-only exit for what is held.
        Returns the stand-in, or None when nothing is taken over."""
        oms = self.oms
        if (order.emulated or order.trigger_of is not None or not is_protective(order) or order.qty is None
                or not str(reason).startswith(TAKE_OVER_REASONS)):
            return None
        parent = oms.orders.get(order.parent_id) if order.parent_id is not None else None
        if parent is not None and parent.is_terminal and not parent.filled_qty:
            return None  # its entry never filled: it protects nothing
        stand_in = Order(oms.next_client_order_id(), order.bot_id, order.symbol, order.side, order.type,
                         order.qty - order.filled_qty, oms.clock.now_ns(), limit_price=order.limit_price,
                         stop_price=order.stop_price, reduce_only=order.reduce_only, tag=order.tag,
                         parent_id=order.parent_id, oco_group=order.oco_group, trail_distance=order.trail_distance,
                         trail_percent=order.trail_percent, emulated=True)
        oms._emulating = True
        oms._note(order, f"{TAKEN_OVER} by {stand_in.client_order_id}: {reason}")
        oms.submit(stand_in)
        if stand_in.is_open and str(reason).startswith("INVALID_STOPS") and stand_in.type is not OrderType.LIMIT \
                and self._working(stand_in):
            self._fire(stand_in)  # the market is through the stop already: exit now, not at the next tick
        return stand_in

    def on_done(self, order: Order) -> None:
        """`order` was canceled or rejected: its held emulated children go if it filled nothing."""
        if order.filled_qty:
            return
        for child in list(self.oms._children.get(order.client_order_id, ())):
            if child.emulated and not child.is_terminal:
                self.cancel(child, PARENT_CANCELED)

    # -- canceling ----------------------------------------------------------------------------------------
    def cancel(self, order: Order, reason: str | None = None) -> None:
        """End an emulated order here (no venue holds it), and the order it sent if still working."""
        oms = self.oms
        if order.is_terminal:
            return
        self._fired.pop(order.client_order_id, None)
        oms._record(order, order.transition(OrderState.CANCELED, oms.clock.now_ns(), reason))
        for other in oms.open_orders:
            if other.trigger_of == order.client_order_id:
                oms.cancel(other)

