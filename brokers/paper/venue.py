"""A simulated venue: the one fill model behind backtests and paper trading.

Fill rules against bars (an order submitted at bar i's close is first eligible at bar i+1):
- MARKET fills at the bar's open, slipped against the trader.
- LIMIT buy at L: the open if open <= L (a gap through the price fills at the open, better
  than L), else L if low <= L. A sell mirrors it with the high. No slippage: it rests.
- STOP buy at S: the open if open >= S (gap), else S if high >= S; slipped, since a triggered
  stop takes liquidity. A sell stop mirrors it with the low.
- STOP_LIMIT buy (S, L): triggers like a stop. Triggered at the open, it is a limit at L for
  the rest of the bar (open if open <= L, else L if low <= L). Triggered inside the bar, it fills
  at S only if S <= L; otherwise it rests as a limit from the next bar, because a bar does not
  say whether the price came back to L after reaching S.
- Several orders in one bar fill in this order: market orders, then stops, then limits, each
  group in submission order. So when a stop and a limit are both touched in one bar (a stop-loss
  and a take-profit), the stop fills first: the pessimistic assumption.

Fill rules against ticks (an order submitted on a tick is first eligible on the next tick):
- MARKET buys at the ask, sells at the bid, slipped.
- LIMIT buy fills when ask <= L: at the ask if it was marketable on its first tick, else at L.
- STOP buy triggers when ask >= S and fills at the ask (slipped); STOP_LIMIT becomes a limit.
- With `partial_fills=True` and a tick that carries a size, a fill takes at most that size.

Sizing: an order with `equity_fraction` is sized at fill time, at the fill price: the largest
quantity on the lot grid whose notional plus fees fits in fraction x equity (and, for a buy, in
the cash there is). Buys that would take more cash than there is are rejected; shorts are not
margin-checked here (that is the risk engine's job). Commission: a percent of notional, rounded
half-even to the currency increment, plus a fixed fee on an order's first fill, plus the
instrument's commission per lot (per unit of quantity) on every fill.

Margin (an instrument with a leverage or a margin, issue 14). A fill that opens or grows a
position needs free margin: the margin of the position after the fill, at the fill price, must
fit in the equity after the fee, else the order is rejected (INSUFFICIENT_FUNDS, as brokers say
"no money"); reductions always pass. An equity-fraction order spends `fraction x equity` as
margin (and fee), within the free margin; with `Instrument.fraction_sizing` "notional" (as live
MT5 and ccxt USD-M bots size) it buys `fraction x equity` of exposure, within what the free margin
carries. Every bar (every tick) the venue then
- charges swap for each rollover (`rollover`, UTC, Monday to Friday, three nights on
  `triple_swap_weekday`) passed since the last one, on the position held through it;
- stops out: when the margin level (equity / margin used) is at or below the account's
  `stop_out_level`, it closes the whole position at market with an order of its own
  (`STOPOUT-<n>`, which the engine adopts as external). On a bar the level is tested at the
  open, then along the bar towards the adverse extreme: the fill is at the first price on the
  grid where the level is breached (like a stop at that price; at the open if it gapped
  through), slipped. On ticks it is tested at the price the position would close at.
A conversion rate the account needs (a USDJPY position on a USD account) comes from the
portfolio's ConversionRates; the runner feeds the instrument's own prices when its base is the
account currency. The level is tested with the rate of the bar, not one that moves inside it.

Protective orders (issue 17), the same for backtests and paper:
- A child (`parent_id`: a bracket's stop-loss / take-profit, or any one-triggers-other order) is
  accepted and held until its parent fills, then works sized to what the parent filled; each
  partial fill of the parent grows it (engine.orders.protective_qty). Its parent must be working
  at this venue when it arrives (else INVALID_ORDER). A parent canceled or rejected before any
  fill cancels its held children (PARENT_CANCELED); one canceled after a partial fill leaves them
  protecting that part.
- Children activated inside a bar are matched in the same bar, from the parent's fill price: a
  stop-loss can fill in the bar its entry filled in. A take-profit (a limit) can too only when
  the entry filled at the bar's open (the rest of the bar came after it); after an entry filled
  inside the bar, the bar does not say whether its high came before or after the fill, so the
  take-profit waits for the next bar. On ticks, an activated child works from the next tick.
- A bracket's children in one OCO group are one exit: a partial take-profit shrinks the stop by
  the same quantity, and when the exit has closed what the entry filled the rest of the group is
  canceled (OCO), and so is the entry's unfilled rest (EXIT_FILLED: an entry that went on filling
  would open a position nothing protects). A standalone OCO group (no parent) cancels the other
  members on a member's first fill, as Binance and Alpaca do.
- **A bar that touches both the stop-loss and the take-profit fills the stop-loss** (stops match
  before limits, see above: the conservative assumption, since a bar does not say which came
  first), and the OCO cancels the take-profit.
- A trailing stop (`trail_distance` or `trail_percent`, a STOP) keeps its stop_price at the best
  price since it started working less the trail (a sell stop: highest high or bid minus the trail;
  a buy stop mirrored), rounded away from the price to the tick, never loosened. On a bar it is
  matched at the level the previous bars set and ratcheted with this bar's high (low) after, the
  conservative reading of a bar; on a tick it is matched, then ratcheted with that bid (ask). A
  trailing child starts from its parent's fill price.
- Expiry: a GTD order (`expire_ns`, ns UTC; a pending order only) ends at the first bar or tick
  whose time is at or after its expiry, before matching (so it never fills on that bar), reported
  as a cancel with reason EXPIRED. A bar is matched at its timestamp: a bar stamped before the
  expiry may still fill it. A bracket child held for an entry that expired unfilled is
  canceled with it (PARENT_CANCELED); a child works GTC.
- `amend(order, price, qty)` changes a working (or held) order: `price` is a LIMIT or STOP_LIMIT
  order's limit and a STOP's stop (engine.orders.amend_terms); the new quantity must be on the grid
  and above what has filled. It returns None, or the reason it changed nothing (NOT_WORKING for an
  order that is filled, canceled or unknown). A bracket child's quantity follows its bracket: an
  amended quantity lasts until the next fill of the entry or of the exit resizes it.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from fractions import Fraction

from engine.errors import ConfigError
from brokers.base import ExecutionSink, RejectReason, missing_price
from engine.instrument import Instrument
from engine.money import (ConversionRates, FeeModel, Slippage, div_round_half_even, estimate_qty, fraction_parts,
                          fee_raw, floor_to_step, max_qty_for_budget, qty_from_raw, qty_to_raw, slipped_price, to_raw)
from engine.orders import Fill, Liquidity, Order, OrderSide, OrderType, TimeInForce, amend_terms, protective_qty
from engine.portfolio import Portfolio

_RANK = {OrderType.MARKET: 0, OrderType.STOP: 1, OrderType.STOP_LIMIT: 1, OrderType.LIMIT: 2}
# The members the order path compares with, as module names: CPython 3.12 does not specialise an
# attribute read on an enum class (its type is EnumType, not type), so `OrderType.MARKET` is a full
# lookup each time, and the path makes a dozen of them per order.
_MARKET, _LIMIT, _BUY, _GTD = OrderType.MARKET, OrderType.LIMIT, OrderSide.BUY, TimeInForce.GTD
_TAKER, _MAKER = Liquidity.TAKER, Liquidity.MAKER


def _rank(order: Order) -> int:
    """The matching order of a working order's type (see the module docstring)."""
    return _RANK[order.type]


class SimulatedVenue:
    """Matches orders against bars or ticks and keeps its own account (the venue's books)."""

    name = "PAPER"
    protective_orders = True  # carries parent/OCO/trailing links (the OMS refuses them elsewhere)
    supports_expiry = True    # ends GTD orders at their expire_ns (the OMS refuses GTD elsewhere)

    def __init__(self, instrument: Instrument, initial_cash: Decimal, fees: FeeModel = FeeModel(),
                 slippage: Slippage = Slippage(), partial_fills: bool = False,
                 shared_account: Portfolio | None = None, currency: str = "",
                 rates: ConversionRates | None = None, stop_out_level: Decimal | None = None,
                 rollover: str = "22:00", triple_swap_weekday: int = 2, fee_asset: str = "") -> None:
        """`shared_account`: in a backtest the venue may read the engine's own portfolio instead of
        keeping a second copy of the same books (the OMS books every fill into it); a paper venue
        that must outlive the engine keeps its own (the default), in `currency` ("" = the quote
        currency), valued with `rates`, stopped out at `stop_out_level` (margin instruments).
        `fee_asset` charges fees like a Binance account: "base" or a currency (see _fee_in_asset)."""
        self.instrument = instrument
        self.scales = s = instrument.scales
        # read at every order (an Instrument keeps its fields in a dict CPython 3.12 reads slowly)
        self._symbol = instrument.symbol
        self._books_fills = shared_account is None
        self.account = shared_account if shared_account is not None else Portfolio.for_instrument(
            initial_cash, instrument, currency, rates, stop_out_level)
        self._margin = instrument.on_margin
        account = self.account
        account.position(instrument)
        # USDJPY on a USD account: the instrument's own price is the conversion rate, fed here
        self._own_rate = (self._margin and account.rates is not None and instrument.quote_currency != account.currency
                          and instrument.base == account.currency)
        # commission per lot as an exact fraction: the total per fill is rounded, not the rate
        self._per_lot = fraction_parts(instrument.commission_per_lot) if instrument.commission_per_lot else None
        hh, _, mm = rollover.partition(":")
        if not (hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60):
            raise ConfigError("rollover", f"must be HH:MM (UTC), got {rollover!r}")
        if not 0 <= triple_swap_weekday <= 6:
            raise ConfigError("triple_swap_weekday", f"must be 0 (Monday) to 6, got {triple_swap_weekday}")
        self._rollover_ns = (int(hh) * 60 + int(mm)) * 60 * 10**9
        self._triple_day = triple_swap_weekday
        self._last_rollover_check: int | None = None
        self._stop_outs = 0
        self.fee_asset = fee_asset  # "" = fees in the cash currency; "base"; or a currency such as "BNB"
        self.partial_fills = partial_fills
        self._fee_num, self._fee_den = fees.fraction(s)
        self._fee_rate = float(fees.rate)
        self._fixed_fee = fees.fixed_raw(s)
        self._min_fee = fees.min_raw(s)
        self._slip_num, self._slip_den = slippage.fraction()
        self._max_qty = None if instrument.max_qty is None else to_raw(instrument.max_qty, s.qty_dp)
        self._sink: ExecutionSink | None = None
        self._working: list[Order] = []      # accepted, not yet eligible or resting
        self._fresh: set[str] = set()        # ids not yet past their first eligible bar/tick
        self._partly_filled: set[str] = set()  # ids with a fill and quantity left: no second fixed fee
        self._exec_seq = 0
        self._ts = 0
        self._validated: tuple[Order | None, Decimal | None, int] = (None, None, 0)  # the last (order, qty, raw qty)
        # equity-fraction orders that sized below the minimum quantity (a backtest that trades
        # nothing must say why): how many, and the first one's (price, budget, qty), all raw
        self.unsized = 0
        self.first_unsized: tuple[int, int, int] | None = None
        # protective orders: all empty (and `_linked` False) until the first linked order, so the
        # plain backtest loop pays one attribute test per bar for them
        self._linked = False
        self._held: dict[str, list[Order]] = {}      # parent id -> children waiting for its first fill
        self._children: dict[str, list[Order]] = {}  # parent id -> its children (live or done)
        self._parents: dict[str, Order] = {}         # parent id -> the parent
        self._groups: dict[str, list[Order]] = {}    # OCO group -> members
        self._done_groups: set[str] = set()          # standalone OCO groups a fill has settled
        self._filled_raw: dict[str, int] = {}        # linked order id -> raw quantity filled here
        self._trailing: list[Order] = []             # trailing stops that work
        self._activated: list[tuple[Order, int, bool]] = []  # (child, parent fill price, at the open)
        self._on_bar_now = False  # matching a bar: children activated now are matched in it too
        self._resizing = False
        self._expiring = 0  # GTD orders that went to work: 0 keeps the expiry scan off the hot path

    # -- contract -----------------------------------------------------------------------------
    def connect(self, sink: ExecutionSink) -> None:
        self._sink = sink

    @property
    def has_working_orders(self) -> bool:
        return bool(self._working) or bool(self._held)

    def submit(self, order: Order) -> None:
        sink = self._sink
        assert sink is not None, "venue not connected"
        sink.on_submitted(order, self._ts)
        reason = self._validate(order)
        linked = (order.parent_id is not None or order.oco_group is not None or order.trail_distance is not None
                  or order.trail_percent is not None)  # is_trailing, inlined: this is every order's path
        if reason is None and linked:
            reason = self._validate_links(order)
        if reason is not None:
            sink.on_rejected(order, self._ts, reason)
            return
        if order.type is not _MARKET or order.parent_id is not None:
            sink.on_accepted(order, self._ts)  # a child market order rests (held) too
        if linked:
            self._link(order)
            return
        if order.expire_ns is not None:
            self._work(order)
            return
        working = self._working  # _work, inlined for the plain order (every go() order)
        working.append(order)
        if order.type is not _MARKET:  # a market order needs no "first bar" flag (on_bar, on_tick)
            self._fresh.add(order.client_order_id)
        if len(working) > 1:
            working.sort(key=_rank)  # stable: submission order within a rank

    def _work(self, order: Order) -> None:
        if order.expire_ns is not None:
            self._expiring += 1
        self._working.append(order)
        self._fresh.add(order.client_order_id)
        if len(self._working) > 1:
            self._working.sort(key=_rank)  # stable: submission order within a rank

    def cancel(self, order: Order, reason: str | None = None) -> None:
        held = self._held.get(order.parent_id) if order.parent_id is not None else None
        if order in self._working:
            self._working.remove(order)
        elif held is not None and order in held:
            held.remove(order)
        else:
            return
        assert self._sink is not None
        self._sink.on_canceled(order, self._ts, reason)
        if self._linked:
            self._after_done(order)

    def _expire(self, ts: int) -> None:
        """End every working order whose expiry is at or before `ts` (the bar or tick being matched),
        before it can fill on it: reported as a cancel with reason EXPIRED, as the adapters report
        a venue's expiry (brokers.base.OrderReporter.catch_up), with the held children of an entry
        that never filled canceled after it (PARENT_CANCELED)."""
        for order in [o for o in self._working if o.expire_ns is not None and o.expire_ns <= ts]:
            self.cancel(order, "EXPIRED")
        if not any(o.expire_ns is not None for o in self._working):
            self._expiring = 0

    def cancel_all(self, reason: str | None = None) -> None:
        for order in list(self._working):
            self.cancel(order, reason)
        for children in list(self._held.values()):
            for order in list(children):
                self.cancel(order, reason)

    def amend(self, order: Order, price: Decimal | None = None, qty: Decimal | None = None) -> str | None:
        """Change a working or held order's price and/or quantity (see the module docstring):
        None when done, else the reason nothing changed."""
        live = self._live(order.client_order_id)
        if live is None:
            return "NOT_WORKING"
        s = self.scales
        if price is not None:
            if live.type is OrderType.MARKET:
                return RejectReason.UNSUPPORTED
            if self._off_grid(price):
                return RejectReason.PRICE_OFF_GRID
        if qty is not None:
            try:
                raw_qty = to_raw(qty, s.qty_dp)
            except ValueError:
                return RejectReason.QTY_OFF_GRID
            if raw_qty % s.qty_step:
                return RejectReason.QTY_OFF_GRID
            if raw_qty < s.min_qty or raw_qty <= to_raw(live.filled_qty, s.qty_dp):
                return RejectReason.QTY_BELOW_MIN
            if self._max_qty is not None and raw_qty > self._max_qty:
                return RejectReason.QTY_ABOVE_MAX
        amend_terms(live, price, qty)
        return None

    def _live(self, client_order_id: str) -> Order | None:
        for order in self._working:
            if order.client_order_id == client_order_id:
                return order
        for children in self._held.values():
            for order in children:
                if order.client_order_id == client_order_id:
                    return order
        return None

    # -- protective orders ------------------------------------------------------------------------
    def _validate_links(self, order: Order) -> str | None:
        s = self.scales
        if order.is_trailing:
            if order.type is not OrderType.STOP:
                return RejectReason.UNSUPPORTED
            if order.trail_distance is not None:
                try:
                    raw = to_raw(order.trail_distance, s.price_dp)
                except ValueError:
                    return RejectReason.PRICE_OFF_GRID
                if raw <= 0 or raw % s.price_step:
                    return RejectReason.PRICE_OFF_GRID
            elif not 0 < order.trail_percent < 100:  # type: ignore[operator]
                return RejectReason.INVALID_ORDER
        if order.parent_id is not None:
            parent = self._parents.get(order.parent_id) or next(
                (o for o in self._working if o.client_order_id == order.parent_id), None)
            if parent is None or parent not in self._working:
                return RejectReason.INVALID_ORDER  # its parent must be working here (filled ones are gone)
        return None

    def _link(self, order: Order) -> None:
        """Take a child, an OCO member or a trailing stop into the books that link them."""
        self._linked = True
        cid = order.client_order_id
        self._filled_raw[cid] = 0
        if order.oco_group is not None:
            if order.parent_id is None and order.oco_group in self._done_groups:
                self._groups.setdefault(order.oco_group, []).append(order)
                assert self._sink is not None
                self._sink.on_canceled(order, self._ts, "OCO")  # its group was settled by a fill
                return
            self._groups.setdefault(order.oco_group, []).append(order)
        pid = order.parent_id
        if pid is None:
            self._work(order)
            if order.is_trailing:
                self._trailing.append(order)
            return
        parent = self._parents.get(pid)
        if parent is None:
            parent = next(o for o in self._working if o.client_order_id == pid)
            self._parents[pid] = parent
            self._filled_raw.setdefault(pid, to_raw(parent.filled_qty, self.scales.qty_dp))
        self._children.setdefault(pid, []).append(order)
        self._held.setdefault(pid, []).append(order)
        if self._filled_raw[pid]:  # the parent has partly filled already: protect that part now
            self._resize(pid, None, False, False)

    def _after_fill(self, order: Order, qty: int, price: int, at_open: bool, on_bar: bool) -> None:
        cid = order.client_order_id
        if cid not in self._filled_raw:
            return
        self._filled_raw[cid] += qty
        if cid in self._children:
            self._resize(cid, price, at_open, on_bar)
        pid = order.parent_id
        if pid is not None and pid in self._children:
            self._resize(pid, None, False, on_bar)
        elif pid is None and order.oco_group is not None:
            group = order.oco_group
            self._done_groups.add(group)
            for sibling in list(self._groups.get(group, ())):
                if sibling is not order:
                    self.cancel(sibling, "OCO")
            self._groups.pop(group, None)
        if order not in self._working:
            if order in self._trailing:
                self._trailing.remove(order)
            if pid is None and cid not in self._children:
                self._filled_raw.pop(cid, None)  # a standalone OCO member or trailing stop, done

    def _resize(self, pid: str, price: int | None, at_open: bool, on_bar: bool) -> None:
        """Size the parent's children to what it filled and their exits have not closed; activate
        the held ones (from fill `price`); cancel an exit that is done, and then the entry's rest."""
        s = self.scales
        filled = self._filled_raw
        parent_filled = filled[pid]
        if not parent_filled:
            return
        children = self._children[pid]
        held = self._held.get(pid, [])
        self._resizing = True  # cancels below must not drop the bookkeeping this loop reads
        exits: dict[object, list[Order]] = {}
        for child in children:
            exits.setdefault(child.oco_group if child.oco_group is not None else id(child), []).append(child)
        for members in exits.values():
            exits_filled = sum(filled[m.client_order_id] for m in members)
            for member in members:
                target = protective_qty(parent_filled, exits_filled, filled[member.client_order_id])
                is_held = member in held
                if not (is_held or member in self._working):
                    continue
                if target is None:
                    self.cancel(member, "OCO")
                    continue
                member.qty = s.qty(target)
                if is_held:
                    held.remove(member)
                    self._work(member)
                    if member.is_trailing:
                        self._trailing.append(member)
                        if price is not None:
                            self._ratchet(member, price)
                    if on_bar:
                        self._activated.append((member, price if price is not None else 0, at_open))
            if exits_filled >= parent_filled:
                parent = self._parents[pid]
                if parent in self._working:
                    self.cancel(parent, "EXIT_FILLED")
        self._resizing = False
        if not held:
            self._held.pop(pid, None)
        self._forget(pid)

    def _after_done(self, order: Order) -> None:
        """An order left the book without filling completely (canceled, rejected)."""
        cid = order.client_order_id
        if order in self._trailing:
            self._trailing.remove(order)
        held = self._held.get(cid)
        if held and not self._filled_raw.get(cid):
            for child in list(held):
                self.cancel(child, "PARENT_CANCELED")
        if self._resizing:
            return
        if order.parent_id is not None:
            self._forget(order.parent_id)
        elif cid in self._children:
            self._forget(cid)
        else:
            self._filled_raw.pop(cid, None)

    def _forget(self, pid: str) -> None:
        """Drop a bracket's bookkeeping once neither the parent nor any child can act again."""
        parent = self._parents.get(pid)
        if parent is None or parent in self._working or self._held.get(pid):
            return
        children = self._children.get(pid, [])
        if any(child in self._working for child in children):
            return
        self._parents.pop(pid, None)
        self._children.pop(pid, None)
        self._held.pop(pid, None)
        self._filled_raw.pop(pid, None)
        for child in children:
            self._filled_raw.pop(child.client_order_id, None)
            if child.oco_group is not None:
                self._groups.pop(child.oco_group, None)

    def _ratchet(self, order: Order, best: int) -> None:
        """Move a trailing stop behind `best` (a sell stop: the highest price seen; a buy stop: the
        lowest), rounded away from the price to the tick; never loosen it."""
        s = self.scales
        step = s.price_step
        sell = order.side is OrderSide.SELL
        if order.trail_distance is not None:
            distance = to_raw(order.trail_distance, s.price_dp)
            level = best - distance if sell else best + distance
        else:
            num, den = fraction_parts(order.trail_percent)  # type: ignore[arg-type]
            if sell:
                level = best * (100 * den - num) // (100 * den)
            else:
                level = -(-best * (100 * den + num) // (100 * den))
        level = (level // step) * step if sell else -(-level // step) * step
        if level <= 0:
            return
        current = to_raw(order.stop_price, s.price_dp) if order.stop_price is not None else None
        if current is None or (level > current if sell else level < current):
            order.stop_price = s.price(level)

    # -- validation at submit -------------------------------------------------------------------
    def _off_grid(self, price: Decimal) -> bool:
        """A price that is not positive, or not a multiple of the tick (what submit and amend refuse)."""
        s = self.scales
        try:
            raw = to_raw(price, s.price_dp)
        except ValueError:
            return True
        return raw <= 0 or raw % s.price_step != 0

    def _validate(self, order: Order) -> str | None:
        s = self.scales
        if order.symbol != self._symbol:
            return RejectReason.UNKNOWN_SYMBOL
        if order.qty is not None:
            try:
                qty = qty_to_raw(order.qty, s.qty_dp)  # a close's quantity, as close() made it, is known
            except ValueError:
                return RejectReason.QTY_OFF_GRID
            self._validated = (order, order.qty, qty)  # _fill reuses it while order.qty is this very Decimal
            if qty % s.qty_step:
                return RejectReason.QTY_OFF_GRID
            if qty < s.min_qty:
                return RejectReason.QTY_BELOW_MIN
            if self._max_qty is not None and qty > self._max_qty:
                return RejectReason.QTY_ABOVE_MAX
        elif order.parent_id is None and (order.equity_fraction is None or order.type is not _MARKET):
            return RejectReason.UNSUPPORTED  # (a child without a quantity is sized by its parent's fills)
        if order.limit_price is None and order.stop_price is None:
            if order.type is not _MARKET:  # missing_price's answer for an order without prices
                return RejectReason.PRICE_MISSING
        else:
            for price in (order.limit_price, order.stop_price):
                if price is not None and self._off_grid(price):
                    return RejectReason.PRICE_OFF_GRID
            if missing_price(order):
                return RejectReason.PRICE_MISSING
        if order.expire_ns is not None or order.tif is _GTD:
            if order.type is OrderType.MARKET:
                return RejectReason.UNSUPPORTED  # a market order does not rest: nothing to expire
            if order.expire_ns is None or order.tif is not TimeInForce.GTD:
                return RejectReason.INVALID_ORDER  # GTD without a time, or a time on another tif
        return None

    # -- bars ------------------------------------------------------------------------------------
    def on_bar(self, open_: int, high: int, low: int, close: int, ts: int, bar: int) -> None:
        """Match working orders against one bar (raw prices). Call before the strategy's turn;
        on margin, call it at every bar (swap and stop-out need every bar, not only those with
        working orders)."""
        self._ts = ts
        if self._margin:
            if self._own_rate:
                self._feed_rate(s_price=self.scales.price(open_), ts=ts)
            self._rollovers(ts)
        if self._expiring:
            self._expire(ts)
        linked = self._on_bar_now = self._linked
        working, fresh_ids = self._working, self._fresh
        for order in working.copy():
            if linked and order not in working:
                continue  # canceled in this bar by a sibling's fill (OCO, a done exit)
            kind = order.type
            if kind is _MARKET:  # _bar_fill_price's first case, inlined (every go() order)
                if fresh_ids:
                    fresh_ids.discard(order.client_order_id)  # (only _work() flags a market order)
                price: int | None = (open_ if not self._slip_num else
                                     slipped_price(open_, order.side is _BUY, self._slip_num,
                                                   self._slip_den, self.scales.price_step))
            else:
                cid = order.client_order_id
                fresh = cid in fresh_ids
                if fresh:
                    fresh_ids.discard(cid)
                price = self._bar_fill_price(order, open_, high, low, fresh)
            if price is not None:  # (taker, at_open) passed by position: this call is every fill's
                self._fill(order, price, None, ts, bar, kind is not _LIMIT,
                           linked and price in (open_, self._slip(open_, order.side is _BUY)))
        if linked:
            self._children_in_bar(high, low, ts, bar)
            self._on_bar_now = False
        if self._margin and self.account.stop_out_level is not None:
            self._stop_out_on_bar(open_, high, low, ts, bar)

    def _children_in_bar(self, high: int, low: int, ts: int, bar: int) -> None:
        """Match the children this bar's fills activated, from their parent's fill price (see the
        module docstring), then ratchet the trailing stops with this bar's extreme."""
        while self._activated:
            batch = sorted(self._activated, key=lambda item: _RANK[item[0].type])
            self._activated = []
            for child, start, at_open in batch:
                self._fresh.discard(child.client_order_id)
                if child not in self._working or (child.type is OrderType.LIMIT and not at_open):
                    continue
                price = self._bar_fill_price(child, start, high, low, False)
                if price is not None:
                    self._fill(child, price, None, ts, bar, taker=child.type is not OrderType.LIMIT, at_open=False)
        for order in list(self._trailing):
            if order in self._working:
                self._ratchet(order, high if order.side is OrderSide.SELL else low)

    def _bar_fill_price(self, order: Order, open_: int, high: int, low: int, fresh: bool) -> int | None:
        buy = order.side is OrderSide.BUY
        kind = order.type
        if kind is OrderType.MARKET:
            return self._slip(open_, buy)
        s = self.scales
        if kind is OrderType.LIMIT or (kind is OrderType.STOP_LIMIT and order.stop_triggered):
            limit = to_raw(order.limit_price, s.price_dp)  # type: ignore[arg-type]
            if buy:
                return open_ if open_ <= limit else (limit if low <= limit else None)
            return open_ if open_ >= limit else (limit if high >= limit else None)
        stop = to_raw(order.stop_price, s.price_dp)  # type: ignore[arg-type]
        gapped = open_ >= stop if buy else open_ <= stop
        touched = gapped or (high >= stop if buy else low <= stop)
        if not touched:
            return None
        if kind is OrderType.STOP:
            return self._slip(open_ if gapped else stop, buy)
        order.stop_triggered = True
        limit = to_raw(order.limit_price, s.price_dp)  # type: ignore[arg-type]
        if gapped:
            if buy:
                return open_ if open_ <= limit else (limit if low <= limit else None)
            return open_ if open_ >= limit else (limit if high >= limit else None)
        ok = stop <= limit if buy else stop >= limit
        return stop if ok else None

    # -- ticks -----------------------------------------------------------------------------------
    def on_tick(self, bid: int, ask: int, size: int, ts: int, bar: int = -1) -> None:
        """Match working orders against one quote (raw prices; size raw, 0 when unknown)."""
        self._ts = ts
        if self._margin:
            if self._own_rate and bid > 0 and ask > 0:
                self._feed_rate(s_price=(self.scales.price(bid) + self.scales.price(ask)) / 2, ts=ts)
            self._rollovers(ts)
        if self._expiring:
            self._expire(ts)
        for order in list(self._working):
            fresh = order.client_order_id in self._fresh
            self._fresh.discard(order.client_order_id)
            if self._linked and order not in self._working:
                continue  # canceled on this tick by a sibling's fill
            price, taker = self._tick_fill_price(order, bid, ask, fresh)
            if price is not None:
                cap = size if (self.partial_fills and size > 0) else None
                self._fill(order, price, cap, ts, bar, taker)
        if self._linked:
            self._activated.clear()  # activated on a tick: they work from the next tick (in _fresh)
            for order in list(self._trailing):
                if order in self._working and bid > 0 and ask > 0:
                    self._ratchet(order, bid if order.side is OrderSide.SELL else ask)
        if self._margin and self.account.stop_out_level is not None and bid > 0 and ask > 0:
            qty = self.account.positions[self.instrument.symbol].qty
            if qty and self._breached(bid if qty > 0 else ask, ts):
                self._stop_out(bid if qty > 0 else ask, ts, bar)

    def _tick_fill_price(self, order: Order, bid: int, ask: int, fresh: bool) -> tuple[int | None, bool]:
        buy = order.side is OrderSide.BUY
        touch = ask if buy else bid
        if touch <= 0:
            return None, False
        kind = order.type
        s = self.scales
        if kind is OrderType.MARKET:
            return self._slip(touch, buy), True
        if kind is OrderType.STOP or (kind is OrderType.STOP_LIMIT and not order.stop_triggered):
            stop = to_raw(order.stop_price, s.price_dp)  # type: ignore[arg-type]
            if not (touch >= stop if buy else touch <= stop):
                return None, False
            if kind is OrderType.STOP:
                return self._slip(touch, buy), True
            order.stop_triggered = True
            fresh = True  # the limit is marketable now or rests from here
        limit = to_raw(order.limit_price, s.price_dp)  # type: ignore[arg-type]
        if not (touch <= limit if buy else touch >= limit):
            return None, False
        return (touch, True) if fresh else (limit, False)

    # -- filling ---------------------------------------------------------------------------------
    def _slip(self, price: int, buy: bool) -> int:
        return slipped_price(price, buy, self._slip_num, self._slip_den, self.scales.price_step)

    def fee_for(self, qty: int, price: int, first_fill: bool) -> int:
        s = self.scales
        notional = qty * price * s.notional_k
        if first_fill:
            fee = fee_raw(notional, self._fee_num, self._fee_den, s.fee_step, self._fixed_fee, self._min_fee)
        else:
            fee = fee_raw(notional, self._fee_num, self._fee_den, s.fee_step, 0, 0)
        if self._per_lot is not None:  # commission per lot, the fill's total half-even to the increment
            num, den = self._per_lot
            fee += div_round_half_even(qty * num * 10**s.cash_dp, den * 10**s.qty_dp * s.fee_step) * s.fee_step
        return fee

    def budget_for_fraction(self, fraction: Decimal, side_sign: int, price: int) -> int:
        """Raw cash an equity-fraction order may spend at `price`: fraction x equity, and for a
        buy no more than the cash (on margin: no more than the free margin)."""
        account = self.account
        frac_num, frac_den = fraction_parts(fraction)
        if self._margin:
            marks = {self.instrument.symbol: price}
            budget = (account.equity_raw(marks, self._ts) * frac_num) // frac_den
            return min(budget, account.free_margin_raw(marks, self._ts))
        position = account.positions[self.instrument.symbol]
        equity = account.cash_raw + position.qty * price * self.scales.notional_k
        budget = (equity * frac_num) // frac_den
        return min(budget, account.cash_raw) if side_sign > 0 else budget

    def size_for_fraction(self, fraction: Decimal, side_sign: int, price: int) -> int:
        """Units (raw) an equity-fraction order gets at `price`: see the module docstring."""
        return self._size(fraction, side_sign, price)[0]

    def _size(self, fraction: Decimal, side_sign: int, price: int) -> tuple[int, int]:
        """size_for_fraction's units, and the fee of a first fill of them (fee_for(qty, price, True))
        when the sizing computed it on the way, else -1.

        Why: every entry of a backtest is sized here; on a cash account budget_for_fraction is
        inlined, and the fee the estimate's check computed for the answer is the fill's own fee,
        which _fill then does not compute again."""
        if self._margin:
            if self.instrument.fraction_sizing == "notional":
                return self._notional_size(fraction, price), -1
            budget = self.budget_for_fraction(fraction, side_sign, price)
            return (self._margin_size(budget, price) if budget > 0 else 0), -1
        s = self.scales
        account = self.account
        k = s.notional_k
        frac_num, frac_den = fraction_parts(fraction)
        cash = account.cash_raw  # budget_for_fraction, inlined: fraction x equity, and for a buy <= the cash
        budget = ((cash + account.positions[self._symbol].qty * price * k) * frac_num) // frac_den
        if side_sign > 0 and budget > cash:
            budget = cash
        if budget <= 0:
            return 0, -1
        estimate = estimate_qty(budget, price, k, self._fee_rate)
        # the estimate's lots when they are max_qty_for_budget's answer (they fit in the budget and one lot
        # more does not: the cost only grows with quantity); the float estimate is almost always exact, and
        # two costs check it where the search's loop needs a few more
        step, fee_num, fee_den, fee_step = s.qty_step, self._fee_num, self._fee_den, s.fee_step
        fixed, minimum = self._fixed_fee, self._min_fee
        qty = (max(estimate, 0) // step) * step
        fee = -1
        if qty > 0:
            notional = qty * price * k
            fee = fee_raw(notional, fee_num, fee_den, fee_step, fixed, minimum)
            if notional + fee > budget:
                qty = -1
        if qty >= 0:  # a lot more whose notional alone is over the budget does not fit (a fee is never < 0)
            notional = (qty + step) * price * k
            if notional <= budget and notional + fee_raw(notional, fee_num, fee_den, fee_step, fixed,
                                                         minimum) <= budget:
                qty = -1
        if qty < 0:  # the estimate is not the answer: search from it
            qty = max_qty_for_budget(budget, price, k, fee_num, fee_den, fee_step, fixed, step, estimate, minimum)
            fee = -1
        if self._max_qty is not None:
            capped = min(qty, floor_to_step(self._max_qty, step))
            if capped != qty:
                qty, fee = capped, -1
        if self._per_lot is not None or qty <= 0:  # a commission per lot adds to it: fee_for computes it
            fee = -1
        return qty, fee

    def _fill(self, order: Order, price: int, cap: int | None, ts: int, bar: int, taker: bool,
              at_open: bool = False) -> None:
        sink = self._sink
        assert sink is not None
        s = self.scales
        side_sign = 1 if order.side is _BUY else -1  # OrderSide.sign, without the property call
        known_fee = -1  # the fee of a first fill of the whole quantity, when sizing computed it
        if order.qty is None:  # equity fraction: resolve now, at the fill price
            qty, known_fee = self._size(order.equity_fraction, side_sign, price)  # type: ignore[arg-type]
            if qty < s.min_qty:
                self.unsized += 1
                if self.first_unsized is None:
                    budget = self.budget_for_fraction(order.equity_fraction, side_sign, price)  # type: ignore[arg-type]
                    self.first_unsized = (price, budget, qty)
                self._working.remove(order)
                sink.on_rejected(order, ts, RejectReason.INSUFFICIENT_FUNDS)
                if self._linked:
                    self._after_done(order)
                return
            order.qty = qty_from_raw(qty, s.qty_dp)  # s.qty(qty), made once for the fill and a close of it
            leaves = qty
        else:
            seen, seen_qty, seen_raw = self._validated
            # the raw quantity _validate computed, if the order still holds that Decimal object (an
            # amend or a resize assigns a new one): a Decimal is immutable, so the same object is the same value
            leaves = seen_raw if seen is order and seen_qty is order.qty else to_raw(order.qty, s.qty_dp)
            if order.filled_qty:
                leaves -= to_raw(order.filled_qty, s.qty_dp)
        qty = leaves if cap is None else min(leaves, floor_to_step(cap, s.qty_step))
        if qty <= 0:
            return
        partly_filled = self._partly_filled
        cid = order.client_order_id
        first = not partly_filled or cid not in partly_filled
        fee = known_fee if known_fee >= 0 and qty == leaves and first else self.fee_for(qty, price, first)
        if self._margin:
            refused = not self._margin_fits(side_sign * qty, price, fee, ts)
        else:  # a cash account: a buy must not take more cash than there is
            refused = side_sign > 0 and qty * price * s.notional_k + fee > self.account.cash_raw
        if refused:
            self._working.remove(order)
            sink.on_rejected(order, ts, RejectReason.INSUFFICIENT_FUNDS)
            if self._linked:
                self._after_done(order)
            return
        if qty == leaves:
            self._working.remove(order)
            if not first:
                partly_filled.discard(cid)
        else:
            partly_filled.add(cid)
        self._exec_seq += 1
        fill = Fill(f"{self.name}-{self._exec_seq}", cid, order.symbol, order.side,
                    qty, price, fee, s.qty_dp, s.price_dp, s.cash_dp, ts,
                    _TAKER if taker else _MAKER)
        if self.fee_asset and fee:
            fill = self._fee_in_asset(fill)
            if self._books_fills:
                self.account.book_fill(self.instrument, fill, bar)
        elif self._books_fills:
            self.account.apply_fill(self.instrument, side_sign, qty, price, fee, ts, bar)
        sink.on_fill(order, fill, bar)
        if self._linked:
            self._after_fill(order, qty, price, at_open, self._on_bar_now)

    def _fee_in_asset(self, fill: Fill) -> Fill:
        """The fee charged the way `fee_asset` says (a Binance-like account): "base" takes it from
        what a fill receives (the coin on a buy, rounded half-even to the quantity grid; the quote
        on a sell, as usual); another currency (BNB) charges the fee's value at the account's
        rate of the fill's time, at 8 decimals."""
        s = self.scales
        asset = self.fee_asset
        if asset == "base":
            if fill.side is not OrderSide.BUY:
                return fill
            fee_qty = div_round_half_even(fill.fee_raw, fill.price_raw * s.notional_k)
            return replace(fill, fee_raw=0, fee_currency=self.instrument.base, fee_native_raw=fee_qty,
                           fee_native_dp=s.qty_dp)
        rates = self.account.rates
        if rates is None:
            raise ConfigError("fee_asset", f"fees in {asset} need the account's conversion rates")
        rate = rates.rate(asset, self.account.currency, fill.ts, "a fee")
        native = Fraction(fill.fee_raw * 10**8, 10**s.cash_dp) / rate
        return replace(fill, fee_raw=0, fee_currency=asset, fee_native_dp=8,
                       fee_native_raw=div_round_half_even(native.numerator, native.denominator))

    # -- margin ----------------------------------------------------------------------------------
    def _margin_fits(self, signed_qty: int, price: int, fee: int, ts: int) -> bool:
        """Whether a fill of signed_qty at price leaves the margin used within the equity (less
        the fee). A fill that only reduces the position always fits."""
        account, instrument = self.account, self.instrument
        held = account.positions[instrument.symbol].qty
        after = held + signed_qty
        if abs(after) <= abs(held) and after * held >= 0:
            return True
        marks = {instrument.symbol: price}
        used = (account.margin_used_raw(marks, ts) - account.margin_for(instrument, held, price, ts)
                + account.margin_for(instrument, after, price, ts))
        return used <= account.equity_raw(marks, ts) - fee

    def _notional_size(self, fraction: Decimal, price: int) -> int:
        """Instrument.fraction_sizing "notional" (as MT5 and ccxt USD-M size live): the largest
        quantity on the grid whose exposure, in the account currency, is at most fraction x equity,
        and whose margin and fee fit in the free margin."""
        s, account, instrument, ts = self.scales, self.account, self.instrument, self._ts
        marks = {instrument.symbol: price}
        frac_num, frac_den = fraction_parts(fraction)
        target = (account.equity_raw(marks, ts) * frac_num) // frac_den   # exposure, raw cash
        free = account.free_margin_raw(marks, ts)
        if target <= 0 or free <= 0:
            return 0
        per_step = account.exposure_for(instrument, s.qty_step, price, ts)
        if per_step <= 0:
            return 0
        qty = int(target // per_step) * s.qty_step
        if self._max_qty is not None:
            qty = min(qty, floor_to_step(self._max_qty, s.qty_step))
        margin_size = self._margin_size(free, price)   # what the free margin carries, fee included
        return min(qty, margin_size)

    def _margin_size(self, budget: int, price: int) -> int:
        """The largest quantity on the grid whose margin and fee fit in `budget` (raw cash)."""
        s, account, instrument, ts = self.scales, self.account, self.instrument, self._ts
        probe = 1000 * s.qty_step
        per_probe = account.margin_for(instrument, probe, price, ts) + self.fee_for(probe, price, False)
        if per_probe <= 0:
            return 0
        qty = (budget * 1000 // per_probe) * s.qty_step
        if self._max_qty is not None:
            qty = min(qty, floor_to_step(self._max_qty, s.qty_step))
        while qty > 0 and account.margin_for(instrument, qty, price, ts) + self.fee_for(qty, price, True) > budget:
            qty -= s.qty_step
        return qty

    def _feed_rate(self, s_price: Decimal, ts: int) -> None:
        rates = self.account.rates
        assert rates is not None
        rates.update(self.instrument.base, self.instrument.quote_currency, s_price, ts)

    def _rollovers(self, ts: int) -> None:
        """Charge swap for every weekday rollover in (last check, ts] on the position held."""
        last = self._last_rollover_check
        self._last_rollover_check = ts
        if last is None or ts <= last or self.account.positions[self.instrument.symbol].qty == 0:
            return
        day = 86_400 * 10**9
        first = (last - self._rollover_ns) // day + 1   # index of the first rollover after `last`
        final = (ts - self._rollover_ns) // day         # index of the last one at or before `ts`
        nights = 0
        for index in range(first, final + 1):
            weekday = (index + 3) % 7  # day 0 of the epoch (1970-01-01) was a Thursday (3)
            if weekday < 5:
                nights += 3 if weekday == self._triple_day else 1
        if nights:
            self.account.charge_swap(self.instrument, nights, ts)

    def _breached(self, price: int, ts: int) -> bool:
        return self.account.stopped_out({self.instrument.symbol: price}, ts)

    def _stop_out_on_bar(self, open_: int, high: int, low: int, ts: int, bar: int) -> None:
        qty = self.account.positions[self.instrument.symbol].qty
        if qty == 0:
            return
        extreme = low if qty > 0 else high
        if self._breached(open_, ts):
            self._stop_out(open_, ts, bar)
            return
        if not self._breached(extreme, ts):
            return
        step = self.scales.price_step
        safe, hit = open_ // step, extreme // step  # in ticks: the level holds at `safe`, not at `hit`
        while abs(hit - safe) > 1:
            mid = (safe + hit) // 2
            if self._breached(mid * step, ts):
                hit = mid
            else:
                safe = mid
        self._stop_out(hit * step, ts, bar)

    def _stop_out(self, price: int, ts: int, bar: int) -> None:
        """Close the whole position at market (slipped from `price`) on the venue's own order."""
        position = self.account.positions[self.instrument.symbol]
        self._stop_outs += 1
        side = OrderSide.SELL if position.qty > 0 else OrderSide.BUY
        order = Order(f"STOPOUT-{self._stop_outs}", "venue", self.instrument.symbol, side, OrderType.MARKET,
                      self.scales.qty(abs(position.qty)), ts, tag="stop_out", reason="STOP_OUT")
        self._working.append(order)
        self._fill(order, self._slip(price, side is OrderSide.BUY), None, ts, bar, taker=True)

    @property
    def stop_outs(self) -> int:
        return self._stop_outs

    def close_position_at(self, price: int, ts: int, bar: int, order: Order) -> None:
        """Fill a market order at a given price now (end-of-data close at the last close)."""
        self._ts = ts
        if order not in self._working:
            return
        self._fill(order, self._slip(price, order.side is OrderSide.BUY), None, ts, bar, taker=True)

