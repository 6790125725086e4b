"""The MetaTrader 5 adapter: BrokerAdapter over the MetaTrader5 module (or an mt5linux bridge).

The module is injected (`api`): the real module on Windows, an mt5linux instance on Linux (the
same functions and constants on an object, results as RPyC proxies), or tests/fakes/mt5_fake.py.
Every result is converted at once by field name, never by position or type. The module keeps
process-global state, so every call goes through one lock.

Instruments: a Forex symbol (SYMBOL_CALC_MODE_FOREX / FOREX_NO_LEVERAGE) whose profit currency
is the account's is a margin instrument at the account's leverage, as the terminal margins it;
other symbols are cash instruments (`_margin_leverage`).

One adapter is one bot, as an Expert Advisor would be: its magic number is derived from the bot
id (mapping.magic_for), and it sees only its own orders, deals and positions plus those a person
placed (magic 0: external, reported and never booked by the bot). Other EAs and bots on the same
account are invisible to it.

MetaTrader has no execution stream: `poll()` asks the terminal for open orders, finished orders
and deals since the adapter connected, and reports the difference through an OrderReporter (each
deal once, states in an order the OMS accepts). `start_polling` runs it on a thread; tests call
`poll()` themselves. A terminal that stops answering is re-initialized by the next poll, which
then reports whatever happened meanwhile (the "stream drop" of a polled venue).

Orders:
- MARKET -> TRADE_ACTION_DEAL at the current ask/bid with `deviation`; LIMIT, STOP, STOP_LIMIT ->
  TRADE_ACTION_PENDING (STOP_LIMIT: price = stop trigger, stoplimit = limit). type_filling from
  the symbol's mask (mapping.filling_for). Client ids travel as magic + comment (mapping.py).
- Time in force: DAY -> ORDER_TIME_DAY. IOC and FOK are MT5 filling policies and stay so: a
  market order or a stop carries ORDER_FILLING_IOC/FOK (refused UNSUPPORTED when the symbol's
  mask does not allow it); an IOC/FOK limit never rests: on an Exchange-execution symbol it is a
  pending order with that filling; elsewhere, if marketable, a deal bounded by the limit
  (deviation), and if not, canceled without being sent.
- Before sending: unknown symbol, volume off volume_step / below volume_min / above volume_max,
  prices off the tick grid, and a pending price inside trade_stops_level points of the market
  are refused with a reason (`round_volume` floors a quantity onto the grid for callers). Then
  `order_check` runs the server's checks (margin, filling, volume, market closed) before every
  `order_send`.
- Netting accounts: one request. Hedging accounts: an order against this bot's open positions
  first closes them oldest first (requests carrying "position"; another EA's positions are never
  touched), the rest opens a new position; all requests carry the same comment.
- Retcodes (mapping.RETRY_POLICY): REQUOTE, PRICE_CHANGED, PRICE_OFF and TOO_MANY_REQUESTS
  executed nothing and are sent again with a fresh price after backoff; TIMEOUT and CONNECTION,
  and order_send returning None with an IPC error, may have executed: the order is looked up
  (ticket, comment, or an unclaimed order of ours with the same symbol, type and volume sent
  since) and reported if found; it is sent again only if the terminal answered and has no such
  order. If the terminal cannot be asked, the order stays SUBMITTED and the next successful poll
  resolves it (found, or rejected TIMEOUT). Other failures map to a reason (RETCODE_REASONS).
- Fills are the deals (execution id = deal ticket, fee = -(commission + fee) in the account
  currency, never negative). The terminal's deal history lags order_send: the adapter waits for the deal
  (`deal_wait_s`, polling every `deal_poll_s`); if it is still not there the order stays
  ACCEPTED and the poll that sees the deal books it. A fill is never booked from order_send's
  answer alone (it has no commission, fee or swap).
- Swap is no fee of a fill: MT5 books a position's overnight financing on the deal that closes it
  (DEAL_SWAP, "cumulative swap on close"), a debit or a credit (a carry trade's can exceed the
  commission). `charges_since` (engine.charges.ChargeSource) lists it as a SWAP charge
  `swap:<deal ticket>`, and a deal whose commission and fee net to a credit (a rebate) as a FEE
  charge `rebate:<deal ticket>` (its fill's fee is then 0), both of this bot's magic only, dated
  at the deal; the engine books each once into the bot when it solely held the position
  (engine.reconcile.ChargeBooker: a hedging account's positions of this magic are the bot's).
- Times: the server's zone (clock.ServerClock): named (`server_tz`), fixed
  (`server_utc_offset_s`), or derived from the terminal's ticks against UTC, following DST. A
  derived offset is provisional until confirmed (a tick seen to arrive, or an order this adapter
  sent: the server set it up, or dealt it, at its clock of the send). Nothing is dated with a
  provisional offset: fills are held (the order's state is reported without them; the poll
  after the confirmation reports them, re-read from history), `fills_since` waits for a tick
  (`clock_wait_s`) and else raises VenueUnreachable, `charges_since` raises, and a GTD order is
  held (nothing reported, nothing sent: it stays PENDING_SUBMIT) until a poll sees the offset
  known, then reported SUBMITTED and sent (or canceled EXPIRED if its time passed; `cancel`
  drops it unsent). Left PENDING_SUBMIT, a crash meanwhile is repaired by the restart's
  reconciliation: not at the venue and never sent, it is canceled LOST_BEFORE_SUBMIT (reported
  SUBMITTED, it stopped the restart: "SUBMITTED here but unknown to the venue").
- GTD (`Order.expire_ns`, a pending order only) -> ORDER_TIME_SPECIFIED with `expiration` in the
  server's wall clock (clock.ServerClock, rounded up to the second); refused UNSUPPORTED on a
  market order or a symbol whose expiration_mode lacks SYMBOL_EXPIRATION_SPECIFIED. The server
  expires it (ORDER_STATE_EXPIRED), reported as a cancel with reason EXPIRED.
- Protective orders (brokers/mt5/protective.py): a bracket's stop-loss and take-profit become the
  SL/TP of the entry's pending order (TRADE_ACTION_MODIFY) and then of its position
  (TRADE_ACTION_SLTP); the server's SL/TP close is booked as that child's fill and the other
  child canceled (OCO). Trailing stops, standalone OCO groups and other linked orders are refused
  UNSUPPORTED. `amend`: a pending order's price -> TRADE_ACTION_MODIFY; a child's level ->
  TRADE_ACTION_SLTP; a quantity -> UNSUPPORTED.
- `set_position_stops` puts SL/TP on this bot's positions (TRADE_ACTION_SLTP); positions the
  server closes at SL/TP that no bracket child names come back as fills of an order the venue
  made for the bot (client id `<bot>-venue-<ticket>`, which its books take; MT5-<ticket> for an
  adapter without a bot id).
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict
from dataclasses import replace
from decimal import Decimal
from fractions import Fraction
from typing import Any, Callable, Iterable, Sequence

from brokers.base import (AccountSnapshot, ExecutionSink, OrderReporter, RejectReason, SizingEquity, VenueOrder,
                          VenuePosition, VenueUnreachable, fraction_equity, price_refusal)
from brokers.mt5 import mapping as m
from brokers.mt5.clock import ServerClock
from brokers.mt5.protective import Bracket, Brackets, refusal as protective_refusal
from engine.charges import AccountCharge, ChargeKind
from engine.instrument import AssetClass, Instrument
from engine.money import div_round_half_even, to_raw
from engine.orders import Fill, Order, OrderSide, OrderState, OrderType, TimeInForce
from engine.reconcile import DEFAULT_LOOKBACK_NS

_ORDER_FIELDS = ("ticket", "time_setup", "time_setup_msc", "time_done_msc", "type", "state", "magic",
                 "volume_initial", "volume_current", "price_open", "price_stoplimit", "symbol", "comment",
                 "reason", "position_id")
_DEAL_FIELDS = ("ticket", "order", "time", "time_msc", "type", "entry", "magic", "volume", "price",
                "commission", "swap", "fee", "symbol", "comment", "position_id")
_POSITION_FIELDS = ("ticket", "time_msc", "type", "magic", "volume", "price_open", "symbol")
_FAR_FUTURE_S = 86_400 * 2
DEAL_TYPE_BUY, DEAL_TYPE_SELL = 0, 1
HEDGING = 2
ACTION_DEAL, ACTION_PENDING, ACTION_SLTP, ACTION_MODIFY, ACTION_REMOVE = 1, 5, 6, 7, 8
TIME_GTC, TIME_DAY, TIME_SPECIFIED = 0, 1, 2        # ORDER_TIME_*
REASON_SL, REASON_TP = 4, 5                         # ORDER_REASON_SL / _TP (DEAL_REASON_* alike)
SYMBOL_EXPIRATION_SPECIFIED = 4                     # a bit of symbol_info().expiration_mode (MQL5 flag)
RETCODE_NO_CHANGES = 10025
CHECK_OK = frozenset({0, *m.SUCCESS_RETCODES})   # order_check answers 0 ("Done") when the request would pass
_EPS = 1e-9


class MT5Adapter:
    """BrokerAdapter for one bot on a MetaTrader 5 account."""

    name = "MT5"
    sizing_equity: SizingEquity | None = None  # the bot's equity (brokers.base.fraction_equity); the runtime sets it
    protective_orders = True  # a bracket's SL/TP as the position's (brokers/mt5/protective.py); the rest refused
    # what the OMS emulates instead (engine/emulation.py): MT5 trails in the client terminal only and
    # has no standalone OCO; a bracket's SL/TP it carries itself
    native_brackets = True
    native_oco = False
    native_trailing = False
    # a pending limit at or through the market is refused (10015 INVALID_PRICE): an emulated take-profit's
    # trigger, marketable when it fires, goes as IOC, which this adapter sends as a deal bounded by its price
    rests_marketable_limits = False
    supports_expiry = True    # GTD -> ORDER_TIME_SPECIFIED, expiration in the server's time

    def __init__(self, api: Any, symbols: Sequence[str], *, login: int | None = None, password: str | None = None,
                 server: str | None = None, path: str | None = None, bot_id: str | None = None,
                 magic: int | None = None, deviation_points: int = 20, server_utc_offset_s: int | None = None,
                 server_tz: str | None = None, max_attempts: int = 3, backoff_s: float = 0.25,
                 sleep: Callable[[float], None] = time.sleep, clock_ns: Callable[[], int] = time.time_ns,
                 history_lookback_s: int = 86_400, deal_wait_s: float = 2.0, deal_poll_s: float = 0.1,
                 clock_wait_s: float = 10.0) -> None:
        """`bot_id` gives the bot its own magic number (`magic` overrides it; neither: the one
        TICKBRIDGE_MAGIC). `server_tz` / `server_utc_offset_s` name the server's zone; neither:
        derived from the terminal (clock.py). `deal_wait_s` bounds the wait for a deal that
        history has not shown yet; `clock_wait_s` the wait for a derived server clock to be
        confirmed (a tick seen to arrive) before `fills_since` dates fills (clock.py)."""
        self.api = api
        self.symbols = list(symbols)
        self.login, self.password, self.server, self.path = login, password, server, path
        self.bot_id = bot_id
        self.magic = magic if magic is not None else (m.magic_for(bot_id) if bot_id else m.TICKBRIDGE_MAGIC)
        self.deviation_points = deviation_points
        self.server_clock = ServerClock(zone=server_tz, fixed_offset_s=server_utc_offset_s, utc_now_ns=clock_ns)
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.sleep = sleep
        self.clock_ns = clock_ns
        self.history_lookback_s = history_lookback_s
        self.deal_attempts = max(1, math.ceil(deal_wait_s / deal_poll_s)) if deal_poll_s > 0 else 1
        self.deal_poll_s = deal_poll_s
        self.clock_attempts = max(1, math.ceil(clock_wait_s / deal_poll_s)) if deal_poll_s > 0 else 1
        self.lock = threading.RLock()
        self._reporter = OrderReporter()
        self._instruments: dict[str, Instrument] = {}
        self._specs: dict[str, dict[str, Any]] = {}
        self._comments: dict[str, str] = {}          # comment -> client id, for ids we have seen
        self._tickets: dict[int, str] = {}           # ticket -> client id, for orders we identified
        self._unresolved: dict[str, tuple[Order, dict[str, Any], int]] = {}  # lost submits: order, request, sent at
        self._waited: set[int] = set()               # order tickets whose lagging deals a poll waited for
        self._sent: dict[str, int] = {}              # client id -> UTC ns its last request was sent at (this session)
        self._held: dict[str, Order] = {}            # GTD orders waiting for the server's offset to be known
        self._brackets = Brackets()                  # entries' SL/TP children (protective.py)
        self._arming: dict[str, int] = {}            # entry id -> polls its SL/TP failed to go on for a transient cause
        self._connected_at_s = 0
        self._hedging = False
        self._currency = "USD"
        self._currency_dp = 2
        self._connected = False
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()
        self.reconnects = 0

    # -- lifecycle ------------------------------------------------------------------------------
    def connect(self, sink: ExecutionSink) -> None:
        with self.lock:
            self._reporter.sink = sink
            self._open_session()
            for symbol in self.symbols:
                if self._load_symbol(symbol) is None:
                    raise VenueUnreachable(f"MT5 symbol {symbol!r}: {self.api.last_error()}")
            self._observe_clock()
            self._connected_at_s = self._server_now_s()

    def close(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join()
        with self.lock:
            self.api.shutdown()
            self._connected = False

    def start_polling(self, interval_s: float = 0.5) -> None:
        """Poll on a daemon thread until close()."""
        def run() -> None:
            while not self._stop.wait(interval_s):
                self.poll()
        self._poller = threading.Thread(target=run, name="mt5-poll", daemon=True)
        self._poller.start()

    def remember(self, orders: Iterable[Order]) -> None:
        """Orders restored from the store: their tickets (venue_order_id) identify them at the
        venue even if the broker rewrote their comments."""
        orders = list(orders)
        with self.lock:
            for order in orders:
                self._comments.setdefault(m.comment_for(order.client_order_id, self.bot_id), order.client_order_id)
                for ticket in (order.venue_order_id or "").split(","):
                    if ticket.strip().isdigit():
                        self._tickets[int(ticket)] = order.client_order_id
            # brackets: a restored child's level is already at the venue (on the position or the
            # pending entry); the next poll finds its position again, so an SL/TP close after the
            # restart is still booked as the child's fill, not as an order the venue made
            restored = {o.client_order_id: o for o in orders}
            for order in restored.values():
                parent = restored.get(order.parent_id or "")
                if parent is None or order.is_terminal or order.is_trailing or \
                        order.type not in (OrderType.STOP, OrderType.LIMIT):
                    continue
                self._reporter.track(parent)
                self._reporter.track(order)
                bracket = self._brackets.by_parent.setdefault(parent.client_order_id,
                                                              Bracket(parent, restored=True))
                setattr(bracket, "stop" if order.type is OrderType.STOP else "take", order)

    def _open_session(self) -> None:
        kwargs: dict[str, Any] = {}
        if self.login is not None:
            kwargs = {"login": self.login, "password": self.password, "server": self.server}
        args = (self.path,) if self.path else ()
        if not self.api.initialize(*args, **kwargs):
            self._connected = False
            code, message = self.api.last_error()
            if code == -6:
                raise PermissionError(f"MT5 login {self.login} refused: {message}")
            raise VenueUnreachable(f"MT5 initialize failed: {code} {message}")
        account = self.api.account_info()
        if account is None:
            raise VenueUnreachable(f"MT5 account_info failed: {self.api.last_error()}")
        self._hedging = m.field(account, "margin_mode") == HEDGING
        self._currency = m.field(account, "currency")
        self._currency_dp = int(m.field(account, "currency_digits", 2))
        self._leverage = int(m.field(account, "leverage", 0) or 0)
        self._connected = True

    def _ensure_session(self) -> bool:
        """True when the terminal answers; re-initializes (with backoff) when it stopped."""
        if self._connected and self.api.terminal_info() is not None:
            return True
        for attempt in range(self.max_attempts):
            try:
                self._open_session()
                for symbol in self._instruments:
                    self.api.symbol_select(symbol, True)
                self.reconnects += 1
                return True
            except VenueUnreachable:
                self.sleep(self.backoff_s * 2**attempt)
        return False

    def _observe_clock(self) -> None:
        """Let the server clock see the newest tick of our symbols (DST follows from it)."""
        if not self.server_clock.derived:
            return
        newest = None
        for symbol in self._instruments:
            tick = self.api.symbol_info_tick(symbol)
            if tick is not None and m.field(tick, "time_msc"):
                newest = max(newest or 0, int(m.field(tick, "time_msc")))
        self.server_clock.observe(newest)

    # -- instruments ------------------------------------------------------------------------------
    def instruments(self) -> dict[str, Instrument]:
        return dict(self._instruments)

    def _load_symbol(self, symbol: str) -> Instrument | None:
        if symbol in self._instruments:
            return self._instruments[symbol]
        if not self.api.symbol_select(symbol, True):
            return None
        info = self.api.symbol_info(symbol)
        if info is None:
            return None
        spec = {name: m.field(info, name) for name in (
            "digits", "point", "trade_tick_size", "volume_min", "volume_max", "volume_step", "volume_limit",
            "trade_stops_level", "filling_mode", "trade_exemode", "trade_mode", "trade_contract_size",
            "currency_profit", "path", "expiration_mode", "trade_calc_mode")}
        tick_size = spec["trade_tick_size"] or spec["point"]
        contract = m.float_increment(spec["trade_contract_size"] or 1)
        path = str(spec["path"] or "")
        instrument = Instrument(
            symbol=symbol, venue=self.name,
            asset_class=AssetClass.FX if path.lower().startswith("forex") else AssetClass.CFD,
            price_increment=m.to_decimal(tick_size, int(spec["digits"])).normalize(),
            size_increment=m.float_increment(spec["volume_step"]),
            min_qty=m.float_increment(spec["volume_min"]),
            max_qty=m.float_increment(spec["volume_max"]) if spec["volume_max"] else None,
            multiplier=contract if contract == contract.to_integral_value() else Decimal(1),
            quote_currency=str(spec["currency_profit"] or self._currency),
            currency_increment=Decimal(1).scaleb(-self._currency_dp),
            leverage=self._margin_leverage(spec), fraction_sizing="notional")
        self._instruments[symbol] = instrument
        self._specs[symbol] = spec
        return instrument

    def _margin_leverage(self, spec: dict[str, Any]) -> Decimal | None:
        """The leverage a symbol is traded at, as the terminal margins it: a Forex symbol
        (SYMBOL_CALC_MODE_FOREX: lots x contract size / the account's leverage; FOREX_NO_LEVERAGE:
        1) is a margin instrument, so the books hold margin, not the notional, and the risk gate
        checks a buy or a sell against the bot's free margin as the terminal does. Left as a cash
        instrument (None): other calculation modes (CFD, futures, exchange stocks: their margin
        rates are not in the Python API) and a symbol whose profit currency is not the account's
        (its margin needs a conversion rate the books may not have yet)."""
        profit = str(spec["currency_profit"] or self._currency)
        if profit != self._currency:
            return None
        mode = int(spec["trade_calc_mode"] or 0)
        if mode == m.CALC_MODE_FOREX and self._leverage > 0:
            return Decimal(self._leverage)
        if mode == m.CALC_MODE_FOREX_NO_LEVERAGE:
            return Decimal(1)
        return None

    def round_volume(self, symbol: str, qty: Decimal) -> Decimal:
        """`qty` floored onto the symbol's volume_step (refusal of what is left is submit's job)."""
        return m.floor_to_increment(qty, self._instruments[symbol].size_increment)

    # -- orders ---------------------------------------------------------------------------------
    def submit(self, order: Order) -> None:
        with self.lock:
            self._track(order)
            ts = self.clock_ns()
            instrument = self._load_symbol(order.symbol) if self._ensure_session() else None
            if instrument is None:
                if order.parent_id is not None and order.symbol in self._instruments:
                    self._submit_child(order, ts, unreachable=True)  # held: the poll puts its level on
                    return
                reason = RejectReason.UNKNOWN_SYMBOL if self._connected else RejectReason.VENUE_ERROR
                self._reporter.rejected(order, ts, reason)
                return
            if order.parent_id is not None or order.oco_group is not None or order.is_trailing:
                self._submit_child(order, ts)
                return
            reason = self._refusal(order, instrument)
            if reason is not None:
                self._reporter.rejected(order, ts, reason)
                return
            if order.expire_ns is not None and not self._clock_known():
                # held, unreported (PENDING_SUBMIT): the poll that sees the offset known reports and sends it
                self._held[order.client_order_id] = order
                return
            self._place(order, instrument, ts)

    def _clock_known(self) -> bool:
        """Whether the server's offset is known, after a fresh look at the ticks."""
        if not self.server_clock.known:
            self._observe_clock()
        return self.server_clock.known

    def _release_held(self) -> None:
        """Send the GTD orders held for the server's offset (submit), now that it is known: each
        checked again as submit would (the market moved meanwhile); one whose time has passed
        is canceled EXPIRED without being sent."""
        for cid, order in list(self._held.items()):
            del self._held[cid]
            ts = self.clock_ns()
            if order.expire_ns is not None and order.expire_ns <= ts:
                self._reporter.canceled(order, ts, "EXPIRED")
                continue
            instrument = self._instruments[order.symbol]
            reason = self._refusal(order, instrument)
            if reason is not None:
                self._reporter.rejected(order, ts, reason)
                continue
            self._place(order, instrument, ts)

    def _place(self, order: Order, instrument: Instrument, ts: int) -> None:
        """Plan and send a checked order's requests (submit; a held GTD order once the offset is known)."""
        planned = self._requests(order, instrument)
        if isinstance(planned, str):
            self._reporter.rejected(order, ts, planned)
            return
        self._reporter.submitted(order, ts)
        if not planned:  # an IOC/FOK limit the market is not at: it would expire unfilled
            self._reporter.canceled(order, ts, "IOC_NOT_MARKETABLE")
            return
        limit = order.limit_price if order.type is OrderType.LIMIT and planned[0]["action"] == ACTION_DEAL else None
        sent = Decimal(0)  # volume this order has at the venue once `request` is through
        for request in planned:
            sent += Decimal(repr(request["volume"]))
            if not self._send(order, request, sent, limit):
                return

    def _track(self, order: Order) -> None:
        self._reporter.track(order)
        self._comments[m.comment_for(order.client_order_id, self.bot_id)] = order.client_order_id

    def _refusal(self, order: Order, instrument: Instrument) -> str | None:
        spec = self._specs[order.symbol]
        if spec["trade_mode"] == 0:
            return m.TRADE_DISABLED
        if order.qty is None:
            if order.equity_fraction is None or order.type is not OrderType.MARKET:
                return RejectReason.UNSUPPORTED
            order.qty = self._size_for_fraction(order, instrument)
        step = instrument.size_increment
        if order.qty % step:
            return RejectReason.QTY_OFF_GRID
        if order.qty < instrument.min_qty or order.qty <= 0:
            return RejectReason.QTY_BELOW_MIN
        limit = instrument.max_qty
        if spec["volume_limit"]:
            limit = min(limit or Decimal("Infinity"), m.float_increment(spec["volume_limit"]))
        if limit is not None and order.qty > limit:
            return RejectReason.QTY_ABOVE_MAX
        refusal = price_refusal(order, instrument)
        if refusal is not None:
            return refusal
        if order.tif is TimeInForce.GTD or order.expire_ns is not None:
            if order.type is OrderType.MARKET or order.expire_ns is None or order.tif is not TimeInForce.GTD:
                return RejectReason.UNSUPPORTED  # a deal does not rest; GTD needs its time
            if not int(spec["expiration_mode"] or 0) & SYMBOL_EXPIRATION_SPECIFIED:
                return RejectReason.UNSUPPORTED  # the symbol takes no expiry time
        immediate_limit = order.type is OrderType.LIMIT and order.tif in (TimeInForce.IOC, TimeInForce.FOK)
        if order.type is not OrderType.MARKET and not immediate_limit:
            return self._stops_level_refusal(order)
        return None

    def _stops_level_refusal(self, order: Order) -> str | None:
        spec = self._specs[order.symbol]
        tick = self.api.symbol_info_tick(order.symbol)
        if tick is None:
            return RejectReason.NO_LIQUIDITY
        dp = int(spec["digits"])
        bid, ask = m.to_decimal(m.field(tick, "bid"), dp), m.to_decimal(m.field(tick, "ask"), dp)
        gap = int(spec["trade_stops_level"] or 0) * m.to_decimal(spec["point"], dp)
        buy = order.side is OrderSide.BUY
        trigger = order.stop_price if order.stop_price is not None else order.limit_price
        assert trigger is not None
        if order.type is OrderType.LIMIT:
            ok = trigger <= ask - gap if buy else trigger >= bid + gap
        else:
            ok = trigger >= ask + gap if buy else trigger <= bid - gap
        return None if ok else m.INVALID_PRICE

    def _size_for_fraction(self, order: Order, instrument: Instrument) -> Decimal:
        """Lots for an equity-fraction market order: the fraction of the bot's equity as exposure
        (brokers.base.fraction_equity: not the terminal account's, which other EAs share), at the
        side's price; 0 (refused below the minimum) when a price or the equity cannot be read."""
        tick = self.api.symbol_info_tick(order.symbol)
        if tick is None:
            return Decimal(0)
        equity = fraction_equity(self.sizing_equity, self._terminal_equity)
        if equity is None or equity <= 0:
            return Decimal(0)
        price = Decimal(repr(m.field(tick, "ask" if order.side is OrderSide.BUY else "bid")))
        contract = m.float_increment(self._specs[order.symbol]["trade_contract_size"] or 1)
        raw = equity * order.equity_fraction / (price * contract)  # type: ignore[operator]  # exposure, not margin
        return self.round_volume(order.symbol, raw)

    def _terminal_equity(self) -> Decimal | None:
        """The terminal account's equity (None when it does not answer): what a fraction is of for
        an adapter used without a bot (brokers.base.fraction_equity)."""
        account = self.api.account_info()
        return None if account is None else Decimal(repr(m.field(account, "equity")))

    def _requests(self, order: Order, instrument: Instrument) -> list[dict[str, Any]] | str:
        """The requests that carry `order`, [] for an IOC/FOK limit that cannot trade now, or a
        refusal reason."""
        spec = self._specs[order.symbol]
        mask, exemode = int(spec["filling_mode"] or 0), int(spec["trade_exemode"] or 0)
        immediate = order.tif in (TimeInForce.IOC, TimeInForce.FOK)
        filling = m.filling_for_tif(order.tif, mask) if immediate else None
        if immediate and filling is None:
            return RejectReason.UNSUPPORTED
        as_deal = order.type is OrderType.MARKET or \
            (order.type is OrderType.LIMIT and immediate and exemode != m.EXECUTION_EXCHANGE)
        if as_deal and order.type is OrderType.LIMIT and not self._marketable(order):
            return []
        kind = OrderType.MARKET if as_deal else order.type
        base: dict[str, Any] = {
            "action": ACTION_DEAL if as_deal else ACTION_PENDING, "symbol": order.symbol, "magic": self.magic,
            "comment": m.comment_for(order.client_order_id, self.bot_id),
            "type": m.mt5_order_type(order.side, kind),
            "type_filling": filling if filling is not None else m.filling_for(mask, exemode, not as_deal),
            "type_time": TIME_DAY if order.tif is TimeInForce.DAY else TIME_GTC, "deviation": self.deviation_points,
        }
        if order.tif is TimeInForce.GTD and order.expire_ns is not None:
            # the server reads `expiration` as its own wall clock (clock.py): UTC + its offset then
            base |= {"type_time": TIME_SPECIFIED, "expiration": self._expiration(order.expire_ns)}
        if not as_deal:
            if order.type is OrderType.STOP_LIMIT:
                base |= {"price": float(order.stop_price), "stoplimit": float(order.limit_price)}  # type: ignore[arg-type]
            else:
                base["price"] = float(order.limit_price if order.type is OrderType.LIMIT else order.stop_price)  # type: ignore[arg-type]
            return [base | {"volume": float(order.qty)}]  # type: ignore[arg-type]
        qty: Decimal = order.qty  # type: ignore[assignment]
        requests = []
        if self._hedging:
            for position in self._opposite_positions(order):
                if qty <= 0:
                    break
                close = min(qty, position[1])
                requests.append(base | {"volume": float(close), "position": position[0]})
                qty -= close
        if qty > 0 and not (order.reduce_only and self._hedging):
            requests.append(base | {"volume": float(qty)})
        return requests

    def _market_price(self, order: Order) -> Decimal | None:
        tick = self.api.symbol_info_tick(order.symbol)
        if tick is None:
            return None
        dp = int(self._specs[order.symbol]["digits"])
        return m.to_decimal(m.field(tick, "ask" if order.side is OrderSide.BUY else "bid"), dp)

    def _marketable(self, order: Order, price: Decimal | None = None) -> bool:
        price = self._market_price(order) if price is None else price
        if price is None or not price or order.limit_price is None:
            return False
        return price <= order.limit_price if order.side is OrderSide.BUY else price >= order.limit_price

    def _opposite_positions(self, order: Order) -> list[tuple[int, Decimal]]:
        """This bot's positions on the other side, oldest first (never another EA's)."""
        rows = self.api.positions_get(symbol=order.symbol) or ()
        opposite_type = 1 if order.side is OrderSide.BUY else 0
        dp = _dp(self._instruments[order.symbol].size_increment)
        found = [(m.field(p, "time_msc"), m.field(p, "ticket"), m.to_decimal(m.field(p, "volume"), dp))
                 for p in rows if m.field(p, "type") == opposite_type and m.field(p, "magic") == self.magic]
        return [(ticket, volume) for _, ticket, volume in sorted(found)]

    def _send(self, order: Order, request: dict[str, Any], expected: Decimal, limit: Decimal | None = None) -> bool:
        """One request: order_check, then order_send, with the retry policy. True when the order
        may go on (more requests). `expected`: the volume of this client order at the venue if
        this request went through, which is how a lost answer is told from a request that never
        arrived. `limit`: the price bound of an IOC/FOK limit sent as a deal."""
        reason: str = RejectReason.VENUE_ERROR
        for attempt in range(self.max_attempts):
            if request["action"] == ACTION_DEAL and not self._price(order, request, limit):
                self._reporter.canceled(order, self.clock_ns(), "IOC_NOT_MARKETABLE")
                return False
            verdict = self._check(request)
            if isinstance(verdict, tuple):           # refused before anything was sent
                retry, reason = verdict
                if not retry:
                    self._reporter.rejected(order, self.clock_ns(), reason)
                    return False
            else:
                sent_at = self._server_now_s()
                # the order it makes is set up (ORDER_TIME_SETUP) at the server's clock about now
                self._sent[order.client_order_id] = self.clock_ns()
                result = self.api.order_send(request)
                policy: m.Retry | None
                if result is None:
                    code, _ = self.api.last_error()
                    if code not in m.TRANSPORT_ERRORS:
                        self._reporter.rejected(order, self.clock_ns(), m.reason_for_last_error(code))
                        return False
                    policy, reason = m.Retry.LOOKUP, RejectReason.TIMEOUT
                else:
                    retcode = int(m.field(result, "retcode"))
                    if retcode in m.SUCCESS_RETCODES:
                        self._on_result(order, request, result, retcode)
                        return retcode != m.RETCODE_DONE_PARTIAL
                    policy = m.RETRY_POLICY.get(retcode)
                    reason = m.reason_for_retcode(retcode)
                    if policy is None:
                        self._reporter.rejected(order, self.clock_ns(), reason)
                        return False
                if policy is m.Retry.LOOKUP:
                    found = self._resolve_lost(order, request, expected, sent_at)
                    if found is _UNREACHABLE:
                        self._unresolved[order.client_order_id] = (order, request, sent_at)  # the next poll resolves it
                        return False
                    if found:
                        return True  # the venue has it: reported, never resent
            if attempt + 1 < self.max_attempts:
                self.sleep(self.backoff_s * 2**attempt)
        # a refusal; the reporter turns it into a cancel if an earlier request of this order traded
        self._reporter.rejected(order, self.clock_ns(), reason)
        return False

    def _price(self, order: Order, request: dict[str, Any], limit: Decimal | None) -> bool:
        """A deal's fresh price (and for a bounded deal its deviation); False when the market
        moved beyond the limit."""
        price = self._market_price(order)
        if price is None:
            return True  # no quote: the server answers (PRICE_OFF)
        if limit is not None:
            if not self._marketable(order, price):
                return False
            point = m.to_decimal(self._specs[order.symbol]["point"], int(self._specs[order.symbol]["digits"]))
            request["deviation"] = int(abs(limit - price) / point)
        request["price"] = float(price)
        return True

    def _check(self, request: dict[str, Any]) -> tuple[bool, str] | None:
        """order_check before order_send: None when the request would pass, else (retry?, reason)."""
        check = self.api.order_check(request)
        if check is None:
            code, _ = self.api.last_error()
            if code in m.TRANSPORT_ERRORS:
                return True, RejectReason.VENUE_ERROR   # nothing was sent: try again
            return False, m.reason_for_last_error(code)
        retcode = int(m.field(check, "retcode"))
        if retcode in CHECK_OK:
            return None
        return m.RETRY_POLICY.get(retcode) is m.Retry.RESEND, m.reason_for_retcode(retcode)

    def _on_result(self, order: Order, request: dict[str, Any], result: Any, retcode: int) -> None:
        cid = order.client_order_id
        ticket = int(m.field(result, "order") or 0)
        if ticket:
            self._claim(order, ticket)
        if retcode == m.RETCODE_PLACED or (retcode == m.RETCODE_DONE and not m.field(result, "deal")):
            if ticket and not self.server_clock.known:
                self._confirm_from_orders(cid, [m.as_dict(r, _ORDER_FIELDS) for r in
                                                (self.api.orders_get(ticket=ticket) or
                                                 self.api.history_orders_get(ticket=ticket) or ())])
            self._reporter.accepted(order, self.clock_ns())
            if retcode == m.RETCODE_DONE:
                self._catch_up(cid)  # an IOC/FOK that filled nothing: history says canceled
            return
        deals = self._await_deals(ticket, Decimal(repr(float(m.field(result, "volume") or 0))))
        if deals:  # executed by this very order_send: the deal's time is the server's clock when it was sent
            self.server_clock.confirm(min(int(d["time_msc"]) for d in deals), self._sent.get(cid))
        if deals is None or not self.server_clock.known:
            # history has not shown the deal yet, or the server's offset is provisional (a fill is
            # never dated with it): the poll that sees the deal with the offset known books it
            self._reporter.accepted(order, self.clock_ns())
            return
        for deal in deals:
            self._reporter.fill(order, self._fill(cid, self._instruments[order.symbol], deal))
        if retcode == m.RETCODE_DONE_PARTIAL and request["type_filling"] != m.FILLING_RETURN:
            self._reporter.canceled(order, self.clock_ns(), "IOC_REMAINDER")

    def _claim(self, order: Order, ticket: int) -> None:
        self._tickets[ticket] = order.client_order_id
        tickets = [t for t in (order.venue_order_id or "").split(",") if t]
        if str(ticket) not in tickets:
            order.venue_order_id = ",".join([*tickets, str(ticket)])

    def _await_deals(self, ticket: int, volume: Decimal) -> list[dict] | None:
        """The deals of an order ticket once history shows `volume` of them; None if it does not
        within the bound."""
        for attempt in range(self.deal_attempts):
            rows = self.api.history_deals_get(ticket=ticket) or ()
            deals = [d for d in (m.as_dict(r, _DEAL_FIELDS) for r in rows)
                     if d["type"] in (DEAL_TYPE_BUY, DEAL_TYPE_SELL)]
            if sum((Decimal(repr(float(d["volume"]))) for d in deals), Decimal(0)) >= volume:
                return deals
            if attempt + 1 < self.deal_attempts:
                self.sleep(self.deal_poll_s)
        self._waited.add(ticket)  # waited for once: the polls book its deals when they come
        return None

    def _resolve_lost(self, order: Order, request: dict[str, Any], expected: Decimal, sent_at: int) -> bool | object:
        """After an answer that was lost: True if the venue has the request (reported), False if
        it provably does not, _UNREACHABLE if the terminal cannot say."""
        cid = order.client_order_id
        snapshot = self._snapshot()
        if snapshot is None:
            return _UNREACHABLE
        if self._sent_volume(snapshot, cid) < expected:
            ticket = self._unclaimed_match(snapshot, request, sent_at)
            if ticket is None:
                return False
            self._claim(order, ticket)  # its comment was rewritten: known now by its ticket
            snapshot = self._snapshot()
            if snapshot is None:
                return _UNREACHABLE
        if cid in snapshot[0]:
            self._report(cid, snapshot[0][cid], snapshot[1])
        return True

    def _unclaimed_match(self, snapshot: tuple[dict[str, list[dict]], dict[int, list[dict]]],
                         request: dict[str, Any], sent_at: int) -> int | None:
        """An order of ours that nothing names yet with the request's symbol, type and volume,
        placed since it was sent: the request, under a comment the broker rewrote."""
        for cid, rows in snapshot[0].items():
            for row in rows:
                if m.unnamed(cid, self.bot_id) and row["magic"] == self.magic and \
                        row["symbol"] == request["symbol"] and row["type"] == request["type"] and \
                        abs(float(row["volume_initial"]) - float(request["volume"])) < _EPS and \
                        row["time_setup"] >= sent_at - 60:
                    return int(row["ticket"])
        return None

    def cancel(self, order: Order) -> None:
        with self.lock:
            if self._held.pop(order.client_order_id, None) is not None:  # never sent: nothing at the venue
                self._reporter.canceled(order, self.clock_ns(), None)
                return
            if not self._ensure_session():
                return
            bracket = self._brackets.child_of(order.client_order_id)
            if bracket is not None:
                self._cancel_child(bracket, order)
                return
            self._track_comment(order.client_order_id)
            snapshot = self._snapshot()
            if snapshot is None:
                return
            open_rows = [r for r in snapshot[0].get(order.client_order_id, ()) if r["open"]]
            for row in open_rows:
                request = {"action": ACTION_REMOVE, "order": int(row["ticket"]), "symbol": order.symbol,
                           "magic": self.magic, "comment": m.comment_for(order.client_order_id, self.bot_id)}
                if self._check(request) is not None:
                    return  # refused (filled meanwhile, frozen): the next poll reports the truth
                result = self.api.order_send(request)
                if result is None or int(m.field(result, "retcode")) not in m.SUCCESS_RETCODES:
                    return
            if open_rows:
                self._catch_up(order.client_order_id)
            if order.client_order_id in self._brackets.by_parent:
                self._settle_brackets(snapshot[0])  # an entry canceled unfilled takes its held children

    # -- protective orders (protective.py) ----------------------------------------------------------
    def _submit_child(self, child: Order, ts: int, unreachable: bool = False) -> None:
        """A bracket child: held until its entry deals, its level put on the entry's pending order
        or on the position (protective.py). Refused (UNSUPPORTED...) when MT5 has no such thing.
        The terminal unreachable (`unreachable`, or a transient failure of the SLTP / MODIFY): the
        child is kept in its bracket, reported SUBMITTED, and the poll puts its level on
        (_settle_brackets: retried once per poll, then refused, which the OMS takes over)."""
        pid = child.parent_id
        parent = self._reporter.orders.get(pid) if pid is not None else None
        bracket = self._brackets.by_parent.get(pid) if pid is not None else None
        reason = protective_refusal(child, parent, bracket)
        if reason is not None:
            self._reporter.rejected(child, ts, reason)
            return
        assert parent is not None and pid is not None
        fresh = bracket is None
        if bracket is None:
            bracket = Bracket(parent)
        slot = "stop" if child.type is OrderType.STOP else "take"
        setattr(bracket, slot, child)
        problem = RejectReason.VENUE_ERROR if unreachable else self._apply_levels(bracket)
        if problem is not None and _transient(problem) and parent.filled_qty:
            self._unarm(bracket)
            if fresh:
                self._brackets.by_parent[pid] = bracket
            self._reporter.submitted(child, ts)
            return
        if problem is not None:
            setattr(bracket, slot, None)
            self._reporter.rejected(child, ts, problem)
            return
        if fresh:
            self._brackets.by_parent[pid] = bracket
        self._reporter.accepted(child, ts)

    def _unarm(self, bracket: Bracket) -> None:
        """The bracket's levels did not go on (a transient failure): the next poll puts them on."""
        if bracket.position is not None:
            self._brackets.by_position.pop(bracket.position, None)
        bracket.position, bracket.on_pending = None, False

    def _rearm(self, bracket: Bracket, live: list[Order]) -> None:
        """A poll putting the levels of an entry that has dealt on its position. A child not yet
        accepted (held after a transient failure) is accepted once they are on; a transient failure
        is tried again at the next poll, `max_attempts` polls in all; then, or for a refusal, the
        children not yet accepted are REJECTED (the OMS takes a refused exit over: engine/emulation.py
        on_refused) and the accepted ones canceled, as before."""
        pid = bracket.parent.client_order_id
        problem = self._apply_levels(bracket)
        ts = self.clock_ns()
        held = [c for c in live if self._reporter.reported(c.client_order_id) in (None, OrderState.SUBMITTED)]
        if problem is None:
            self._arming.pop(pid, None)
            for child in held:
                self._reporter.accepted(child, ts)
            return
        if _transient(problem):
            self._unarm(bracket)
            tries = self._arming[pid] = self._arming.get(pid, 0) + 1
            if tries < self.max_attempts:
                return
        self._arming.pop(pid, None)
        for child in held:
            self._reporter.rejected(child, ts, problem)
        self._drop(bracket, [c for c in live if c not in held], problem)

    def _cancel_child(self, bracket: Bracket, child: Order) -> None:
        """Take one level off (the other stays); reported canceled once the venue took it. A level
        the venue no longer has (the position closed) is left to the poll to report."""
        if child.is_terminal or bracket.done:
            return
        if self._apply_levels(bracket, dropping=child) is None:
            self._reporter.canceled(child, self.clock_ns(), None)

    def _apply_levels(self, bracket: Bracket, replacing: Order | None = None, price: Decimal | None = None,
                      dropping: Order | None = None) -> str | None:
        """Put the bracket's SL/TP where they protect now: the position once the entry has dealt
        (TRADE_ACTION_SLTP), else the entry's pending order (TRADE_ACTION_MODIFY). None when
        done or nothing to do yet (the entry in flight, its deal not in history: the poll arms
        it), else the reason the venue refused."""
        parent = bracket.parent
        sl, tp = bracket.levels(replacing, price, dropping)
        if bracket.position is None and parent.filled_qty:
            position = self._position_of(parent)
            if position is None:
                return None
            rows = self.api.positions_get(ticket=position)
            if rows is None:
                return RejectReason.VENUE_ERROR
            if not rows:
                return "POSITION_CLOSED"
            dp = _dp(self._instruments[parent.symbol].size_increment)
            if m.to_decimal(m.field(rows[0], "volume"), dp) > parent.filled_qty:
                return RejectReason.UNSUPPORTED  # a netted position bigger than the entry: SL/TP would close more
            bracket.position, bracket.on_pending = position, False
            self._brackets.by_position[position] = bracket
        if bracket.position is not None:
            return self._send_change({"action": ACTION_SLTP, "symbol": parent.symbol, "position": bracket.position,
                                      "sl": sl, "tp": tp, "magic": self.magic})
        row = self._pending_row(parent)
        if row is None:
            return None  # not placed yet (or a lost answer): levels go on when the poll sees it deal
        bracket.on_pending = True
        return self._send_change(self._modify(parent, row, sl=sl, tp=tp))

    def _position_of(self, parent: Order) -> int | None:
        """The position the entry's first deal went into (DEAL_POSITION_ID)."""
        for ticket in (parent.venue_order_id or "").split(","):
            if not ticket.strip().isdigit():
                continue
            for row in self.api.history_deals_get(ticket=int(ticket)) or ():
                deal = m.as_dict(row, _DEAL_FIELDS)
                if deal["type"] in (DEAL_TYPE_BUY, DEAL_TYPE_SELL) and deal["position_id"]:
                    return int(deal["position_id"])
        return None

    def _pending_row(self, order: Order) -> Any:
        """The order's working pending order at the terminal (TradeOrder), or None."""
        for ticket in (order.venue_order_id or "").split(","):
            if ticket.strip().isdigit():
                rows = self.api.orders_get(ticket=int(ticket)) or ()
                if rows:
                    return rows[0]
        return None

    def _modify(self, order: Order, row: Any, *, sl: float | None = None, tp: float | None = None,
                price: Decimal | None = None) -> dict[str, Any]:
        """TRADE_ACTION_MODIFY of a pending order: every term as it is at the terminal but those
        given (MQL5 takes the whole set: price, stoplimit, sl, tp, type_time, expiration)."""
        price_open, stoplimit = float(m.field(row, "price_open")), float(m.field(row, "price_stoplimit") or 0.0)
        if price is not None:
            if order.type is OrderType.STOP_LIMIT:
                stoplimit = float(price)  # the amended price of a stop-limit is its limit (engine.orders.amend_terms)
            else:
                price_open = float(price)
        return {"action": ACTION_MODIFY, "order": int(m.field(row, "ticket")), "symbol": order.symbol,
                "price": price_open, "stoplimit": stoplimit,
                "sl": float(m.field(row, "sl") or 0.0) if sl is None else sl,
                "tp": float(m.field(row, "tp") or 0.0) if tp is None else tp,
                "type_time": int(m.field(row, "type_time") or 0),
                "expiration": int(m.field(row, "time_expiration") or 0), "magic": self.magic}

    def _send_change(self, request: dict[str, Any]) -> str | None:
        """order_check, then order_send, of a change (SLTP, MODIFY): None when the venue has it
        (NO_CHANGES included: it had it already), else the reason. Never resent: a change sent
        twice is harmless, but a lost answer is left to the caller to look at again."""
        check = self.api.order_check(request)
        if check is None:
            return m.reason_for_last_error(self.api.last_error()[0])
        retcode = int(m.field(check, "retcode"))
        if retcode not in CHECK_OK and retcode != RETCODE_NO_CHANGES:
            return m.reason_for_retcode(retcode)
        result = self.api.order_send(request)
        if result is None:
            return m.reason_for_last_error(self.api.last_error()[0])
        retcode = int(m.field(result, "retcode"))
        return None if retcode in m.SUCCESS_RETCODES or retcode == RETCODE_NO_CHANGES else m.reason_for_retcode(retcode)

    def _settle_brackets(self, by_cid: dict[str, list[dict]]) -> None:
        """After a poll: arm the brackets whose entry has dealt since; cancel the children of an
        entry that ended unfilled (PARENT_CANCELED); when a protected position is gone, cancel the
        child that did not close it (OCO), or both when neither did (POSITION_CLOSED). The child
        whose level closed it is reported filled by the poll itself (_cid names its close order)."""
        for bracket in self._brackets.open():
            parent, live = bracket.parent, [c for c in bracket.children if not c.is_terminal]
            if not live:
                bracket.done = True
                continue
            if bracket.position is None:
                if parent.filled_qty:
                    self._rearm(bracket, live)
                elif self._reporter.reported(parent.client_order_id) in _ENDED or parent.is_terminal:
                    self._drop(bracket, live, "PARENT_CANCELED")
                continue
            rows = self.api.positions_get(ticket=bracket.position)
            if rows is None or rows:
                continue  # unreachable (the next poll looks again), or still open: protected
            hit = [c for c in bracket.children if c.client_order_id in by_cid]
            self._drop(bracket, [c for c in live if c not in hit], "OCO" if hit else "POSITION_CLOSED")

    def _drop(self, bracket: Bracket, children: list[Order], reason: str) -> None:
        ts = self.clock_ns()
        for child in children:
            self._reporter.canceled(child, ts, reason)
        bracket.done = True

    def amend(self, order: Order, price: Decimal | None = None, qty: Decimal | None = None) -> str | None:
        """Change a working order (engine.ports.AmendingAdapter): a pending order's price ->
        TRADE_ACTION_MODIFY (its sl, tp and expiration kept); a bracket child's level -> the
        position's SL/TP (TRADE_ACTION_SLTP), or the entry's pending order while it has not dealt.
        Quantity: UNSUPPORTED (MT5 cannot change a pending order's volume, and SL/TP close the whole
        position). None when the venue took it (the OMS then updates its order), else the reason."""
        with self.lock:
            if qty is not None:
                return RejectReason.UNSUPPORTED
            if price is None:
                return None
            if not self._ensure_session():
                return RejectReason.VENUE_ERROR
            bracket = self._brackets.child_of(order.client_order_id)
            if bracket is not None:
                if order.is_terminal or bracket.done:
                    return "NOT_WORKING"
                return self._apply_levels(bracket, replacing=order, price=price)
            if order.type is OrderType.MARKET:
                return RejectReason.UNSUPPORTED
            row = self._pending_row(order)
            if row is None:
                return "NOT_WORKING"
            return self._send_change(self._modify(order, row, price=price))

    def _await_clock(self) -> bool:
        """Whether the server's offset is known, looking at the ticks every `deal_poll_s` for up to
        `clock_wait_s` (a market that quotes confirms it within a tick or two)."""
        for _ in range(self.clock_attempts):
            if self.server_clock.known:
                return True
            self.sleep(self.deal_poll_s)
            self._observe_clock()
        return self.server_clock.known

    def _expiration(self, expire_ns: int) -> int:
        """A GTD order's `expiration`: the server's wall clock (seconds) at `expire_ns`, rounded up
        to the second (an order never ends before its time)."""
        self._observe_clock()
        return self.server_clock.to_server_s(-(-expire_ns // 1_000_000_000) * 1_000_000_000)

    def set_position_stops(self, symbol: str, sl: Decimal | None, tp: Decimal | None) -> list[str | None]:
        """SL and TP on each of this bot's positions in `symbol` (TRADE_ACTION_SLTP; None or 0
        removes a level). One entry per position: None when set, else the reason it was refused."""
        with self.lock:
            rows = self.api.positions_get(symbol=symbol) if self._ensure_session() else None
            if rows is None:
                raise VenueUnreachable("MT5 terminal unreachable")
            outcome: list[str | None] = []
            for row in rows:
                if m.field(row, "magic") != self.magic:
                    continue
                request = {"action": ACTION_SLTP, "symbol": symbol, "position": int(m.field(row, "ticket")),
                           "sl": float(sl or 0), "tp": float(tp or 0), "magic": self.magic}
                verdict = self._check(request)
                if verdict is not None:
                    outcome.append(verdict[1])
                    continue
                result = self.api.order_send(request)
                if result is None:
                    outcome.append(m.reason_for_last_error(self.api.last_error()[0]))
                    continue
                retcode = int(m.field(result, "retcode"))
                outcome.append(None if retcode in m.SUCCESS_RETCODES else m.reason_for_retcode(retcode))
            return outcome

    # -- polling ----------------------------------------------------------------------------------
    def poll(self) -> bool:
        """Report what the terminal did since the last poll. False if it cannot be reached."""
        with self.lock:
            if not self._ensure_session():
                return False
            self._observe_clock()
            snapshot = self._snapshot()
            if snapshot is None:
                self._connected = False
                return False
            for cid, (order, request, sent_at) in list(self._unresolved.items()):
                found = self._resolve_lost(order, request, Decimal(repr(float(request["volume"]))), sent_at)
                if found is _UNREACHABLE:
                    return False
                if not found:
                    self._reporter.rejected(order, self.clock_ns(), RejectReason.TIMEOUT)
                del self._unresolved[cid]
                snapshot = self._snapshot() or snapshot
            for bracket in self._brackets.open():
                if bracket.restored and bracket.position is None and bracket.parent.filled_qty:
                    position = self._position_of(bracket.parent)  # before _cid names its SL/TP close
                    if position is not None:
                        bracket.position = position
                        self._brackets.by_position[position] = bracket
                        snapshot = self._snapshot() or snapshot
            snapshot = self._settled(snapshot)
            by_cid, deals_by_ticket = snapshot
            for cid, rows in by_cid.items():
                if self._reporter.reported(cid) in (OrderState.FILLED, OrderState.CANCELED, OrderState.REJECTED,
                                                    OrderState.EXPIRED):
                    if not self._has_new_deals(rows, deals_by_ticket):
                        continue
                known = self._reporter.knows(cid)
                is_open = any(r["open"] for r in rows)
                recent = any(r["time_setup"] >= self._connected_at_s for r in rows)
                if known or is_open or recent:
                    self._report(cid, rows, deals_by_ticket)
            if self._brackets.by_parent:
                self._settle_brackets(by_cid)
            if self._held and self.server_clock.known:
                self._release_held()
            return True

    def _settled(self, snapshot: tuple[dict[str, list[dict]], dict[int, list[dict]]]
                 ) -> tuple[dict[str, list[dict]], dict[int, list[dict]]]:
        """The snapshot once history shows the deals of every order that says it executed, asking
        again within the deal wait bound (a fill is seen a moment after the order says so). Each
        order is waited for once: one whose deals never come (a terminal that reports volumes
        differently) costs one bounded wait, not one per poll; the polls after book its deals
        whenever they appear."""
        lagging = _lagging(snapshot) - self._waited
        for _ in range(self.deal_attempts - 1):
            if not lagging:
                break
            self.sleep(self.deal_poll_s)
            snapshot = self._snapshot() or snapshot
            lagging &= _lagging(snapshot)
        self._waited |= lagging
        return snapshot

    def _has_new_deals(self, rows: list[dict], deals_by_ticket: dict[int, list[dict]]) -> bool:
        return any(not self._reporter.has_fill(str(d["ticket"]))
                   for r in rows for d in deals_by_ticket.get(r["ticket"], ()))

    def _mine(self, magic: int) -> bool:
        """Ours, or a person's (reported as external); other EAs' are not this bot's."""
        return magic in (self.magic, m.MANUAL_MAGIC)

    def _snapshot(self) -> tuple[dict[str, list[dict]], dict[int, list[dict]]] | None:
        """Open and recent finished orders grouped by client id, and deals by order ticket."""
        start = self._connected_at_s - self.history_lookback_s
        end = self._server_now_s() + _FAR_FUTURE_S
        open_rows = self.api.orders_get()
        history = self.api.history_orders_get(start, end)
        deals = self.api.history_deals_get(start, end)
        if open_rows is None or history is None or deals is None:
            return None
        by_cid: dict[str, list[dict]] = defaultdict(list)
        for row, is_open in [(r, True) for r in open_rows] + [(r, False) for r in history]:
            d = m.as_dict(row, _ORDER_FIELDS) | {"open": is_open}
            if d["type"] not in range(8) or not self._mine(d["magic"]):
                continue
            cid = self._cid(d)
            if cid is not None:
                by_cid[cid].append(d)
        deals_by_ticket: dict[int, list[dict]] = defaultdict(list)
        for deal in deals:
            d = m.as_dict(deal, _DEAL_FIELDS)
            if d["type"] in (DEAL_TYPE_BUY, DEAL_TYPE_SELL) and self._mine(d["magic"]):
                deals_by_ticket[d["order"]].append(d)
        return by_cid, deals_by_ticket

    def _cid(self, row: dict) -> str | None:
        if row.get("reason") in (REASON_SL, REASON_TP) and row["magic"] == self.magic:
            bracket = self._brackets.by_position.get(int(row.get("position_id") or 0))
            child = None if bracket is None else bracket.stop if row["reason"] == REASON_SL else bracket.take
            if child is not None:  # the server closing the position at the child's level: the child's fill
                return child.client_order_id
        return m.client_id_of(row["magic"], row["comment"], row["ticket"], self.magic, self._comments,
                              self.bot_id, self._tickets)

    def _report(self, cid: str, rows: list[dict], deals_by_ticket: dict[int, list[dict]]) -> None:
        venue_order = self._venue_order(cid, rows, deals_by_ticket)
        if venue_order is None:
            return
        instrument = self._instruments[venue_order.symbol]
        if not self.server_clock.known:
            self._confirm_from_orders(cid, rows)
        fills = [self._fill(cid, instrument, d) for r in rows for d in deals_by_ticket.get(r["ticket"], ())]
        if not self.server_clock.known:
            # held: a fill is never dated with a provisional offset (clock.py); the order's state
            # is reported without them (it is not final before its fills are: OrderReporter.catch_up),
            # and a poll once a tick confirmed the offset reports them, re-read from history
            fills = []
        own = self._reporter.orders.get(cid)
        if own is not None:
            self._reporter.catch_up(_with_terms(venue_order, own), fills)
        else:
            self._reporter.catch_up(venue_order, fills)

    def _confirm_from_orders(self, cid: str, rows: list[dict]) -> None:
        """An order this adapter sent in this session (a lost answer, a pending order, a deal whose
        history lags): the server set it up (ORDER_TIME_SETUP_MSC) as the request arrived, so its
        time is the server's clock at the send, which confirms the offset (ServerClock.confirm)."""
        sent = self._sent.get(cid)
        setups = [int(r["time_setup_msc"]) for r in rows if r.get("time_setup_msc")]
        if sent is not None and setups:
            self.server_clock.confirm(max(setups), sent)

    def _catch_up(self, cid: str) -> None:
        snapshot = self._snapshot()
        if snapshot is not None and cid in snapshot[0]:
            self._report(cid, snapshot[0][cid], snapshot[1])

    def _track_comment(self, cid: str) -> None:
        self._comments.setdefault(m.comment_for(cid, self.bot_id), cid)

    # -- queries ----------------------------------------------------------------------------------
    @staticmethod
    def _sent_volume(snapshot: tuple[dict[str, list[dict]], dict[int, list[dict]]], cid: str) -> Decimal:
        return sum((Decimal(repr(float(r["volume_initial"]))) for r in snapshot[0].get(cid, ())), Decimal(0))

    def order_status(self, client_order_id: str) -> VenueOrder | None:
        with self.lock:
            self._track_comment(client_order_id)
            if not self._ensure_session():
                raise VenueUnreachable("MT5 terminal unreachable")
            snapshot = self._snapshot()
            if snapshot is None:
                raise VenueUnreachable("MT5 terminal unreachable")
            rows = snapshot[0].get(client_order_id)
            return None if not rows else self._venue_order(client_order_id, rows, snapshot[1])

    def open_orders(self) -> list[VenueOrder]:
        with self.lock:
            snapshot = self._snapshot() if self._ensure_session() else None
            if snapshot is None:
                raise VenueUnreachable("MT5 terminal unreachable")
            out = []
            for cid, rows in snapshot[0].items():
                if any(r["open"] for r in rows):
                    venue_order = self._venue_order(cid, rows, snapshot[1])
                    if venue_order is not None:
                        out.append(venue_order)
            return out

    def positions(self) -> list[VenuePosition]:
        """This bot's positions (and a person's): on a hedging account the positions carrying
        its magic; on a netting account, where the venue keeps one position per symbol for
        everyone, the sum of its deals."""
        with self.lock:
            if not self._ensure_session():
                raise VenueUnreachable("MT5 terminal unreachable")
            return self._hedged_positions() if self._hedging else self._netted_positions()

    def _hedged_positions(self) -> list[VenuePosition]:
        rows = self.api.positions_get()
        if rows is None:
            raise VenueUnreachable("MT5 terminal unreachable")
        grouped: dict[str, list[dict]] = defaultdict(list)
        for row in rows:
            d = m.as_dict(row, _POSITION_FIELDS)
            if self._mine(d["magic"]):
                grouped[d["symbol"]].append(d)
        out = []
        for symbol, items in grouped.items():
            instrument = self._load_symbol(symbol)
            assert instrument is not None
            qty_dp, price_dp = _dp(instrument.size_increment), _dp(instrument.price_increment)
            signed = [(m.to_decimal(p["volume"], qty_dp) * (1 if p["type"] == 0 else -1),
                       m.to_decimal(p["price_open"], price_dp)) for p in items]
            net = sum((q for q, _ in signed), Decimal(0))
            if not net:
                continue
            same = [(q, p) for q, p in signed if (q > 0) == (net > 0)]  # the net side's average
            volume = sum((q for q, _ in same), Decimal(0))
            avg = sum((q * p for q, p in same), Decimal(0)) / volume
            out.append(VenuePosition(symbol, net, avg))
        return out

    def _netted_positions(self) -> list[VenuePosition]:
        deals = self._settled_deals(0)
        if deals is None:
            raise VenueUnreachable("MT5 terminal unreachable")
        net: dict[str, Decimal] = defaultdict(Decimal)
        for d in deals:
            instrument = self._load_symbol(d["symbol"])
            if instrument is None:
                continue
            qty = m.to_decimal(d["volume"], _dp(instrument.size_increment))
            net[d["symbol"]] += qty if d["type"] == DEAL_TYPE_BUY else -qty
        out = []
        for symbol, qty in sorted(net.items()):
            if qty:
                out.append(VenuePosition(symbol, qty, self._netted_price(symbol, qty)))
        return out

    def _netted_price(self, symbol: str, qty: Decimal) -> Decimal | None:
        """The venue's average price when its one position is exactly ours (else unknown)."""
        instrument = self._instruments[symbol]
        for row in self.api.positions_get(symbol=symbol) or ():
            d = m.as_dict(row, _POSITION_FIELDS)
            volume = m.to_decimal(d["volume"], _dp(instrument.size_increment)) * (1 if d["type"] == 0 else -1)
            if volume == qty:
                return m.to_decimal(d["price_open"], _dp(instrument.price_increment))
        return None

    def _settled_deals(self, start_s: int) -> list[dict] | None:
        """Our (and a person's) buy/sell deals since `start_s` (server time), after waiting
        (bounded, once per order) for history to show the deals of orders that say they executed."""
        end = self._server_now_s() + _FAR_FUTURE_S
        waiting: set[int] | None = None
        for attempt in range(self.deal_attempts):
            rows = self.api.history_deals_get(start_s, end)
            orders = self.api.history_orders_get(start_s, end)
            working = self.api.orders_get()
            if rows is None or orders is None or working is None:
                return None
            deals = [d for d in (m.as_dict(r, _DEAL_FIELDS) for r in rows)
                     if d["type"] in (DEAL_TYPE_BUY, DEAL_TYPE_SELL) and self._mine(d["magic"])]
            dealt: dict[int, float] = defaultdict(float)
            for d in deals:
                dealt[d["order"]] += float(d["volume"])
            lagging = {int(m.field(o, "ticket")) for o in (*orders, *working) if self._mine(m.field(o, "magic"))
                       and float(m.field(o, "volume_initial")) - float(m.field(o, "volume_current") or 0)
                       > dealt[int(m.field(o, "ticket"))] + _EPS}
            waiting = lagging - self._waited if waiting is None else waiting & lagging
            if not waiting or attempt + 1 == self.deal_attempts:
                break
            self.sleep(self.deal_poll_s)
        self._waited |= waiting or set()
        return deals

    def account(self) -> AccountSnapshot:
        with self.lock:
            info = self.api.account_info() if self._ensure_session() else None
            if info is None:
                raise VenueUnreachable("MT5 terminal unreachable")
            dp = int(m.field(info, "currency_digits", 2))
            return AccountSnapshot(str(m.field(info, "currency")), m.to_decimal(m.field(info, "balance"), dp),
                                   m.to_decimal(m.field(info, "equity"), dp),
                                   m.to_decimal(m.field(info, "margin_free"), dp))

    def fills_since(self, ts: int) -> list[Fill]:
        with self.lock:
            if not self._ensure_session():
                raise VenueUnreachable("MT5 terminal unreachable")
            self._observe_clock()
            deals = self._settled_deals(self.server_clock.to_server_s(ts))
            if deals is None:
                raise VenueUnreachable("MT5 terminal unreachable")
            if deals and not self.server_clock.known:
                if not self._await_clock():
                    raise VenueUnreachable("MT5 server clock not confirmed (no tick arrived): fills are not dated "
                                           "with a provisional offset; name the server's zone (server_tz) or "
                                           "retry once the market quotes")
                deals = self._settled_deals(self.server_clock.to_server_s(ts))  # the window, in the known offset
                if deals is None:
                    raise VenueUnreachable("MT5 terminal unreachable")
            out = []
            for d in deals:
                rows = self.api.orders_get(ticket=d["order"]) or self.api.history_orders_get(ticket=d["order"]) or ()
                cid = self._cid(m.as_dict(rows[0], _ORDER_FIELDS)) if rows else \
                    m.client_id_of(d["magic"], "", d["order"], self.magic, {}, self.bot_id, self._tickets)
                if cid is None:
                    continue
                instrument = self._load_symbol(d["symbol"])
                fill = self._fill(cid, instrument, d)  # type: ignore[arg-type]
                if fill.ts >= ts:
                    out.append(fill)
            return sorted(out, key=lambda f: (f.ts, f.execution_id))

    def charges_since(self, ts: int) -> list[AccountCharge]:
        """This bot's account charges (engine.charges.ChargeSource) from `ts` (ns UTC; 0: the
        reconciliation lookback) on, oldest first: the swap a closing deal of its magic realized
        (DEAL_SWAP, "cumulative swap on close": the position's overnight financing, + credit, -
        debit) as a SWAP charge `swap:<deal ticket>`, and a deal whose commission and fee net to
        a credit (a rebate) as a FEE charge `rebate:<deal ticket>`, each dated at its deal (the
        fill it comes with) so the sole-holder rule sees the position around it. Another EA's or
        a person's deals are not listed: their charges are not this bot's to decide. Held (raises
        VenueUnreachable, asked again by the next poll) while the server's clock is provisional."""
        with self.lock:
            if not self._ensure_session():
                raise VenueUnreachable("MT5 terminal unreachable")
            self._observe_clock()
            if not self.server_clock.known:
                raise VenueUnreachable("MT5 server clock not confirmed yet: charges are dated once a tick "
                                       "arrives (or name the server's zone, server_tz)")
            start = self.server_clock.to_server_s(ts) - 1 if ts > 0 else \
                self.server_clock.to_server_s(self.clock_ns() - DEFAULT_LOOKBACK_NS)
            rows = self.api.history_deals_get(start, self._server_now_s() + _FAR_FUTURE_S)
            if rows is None:
                raise VenueUnreachable("MT5 terminal unreachable")
            out = []
            for deal in (m.as_dict(r, _DEAL_FIELDS) for r in rows):
                if deal["type"] not in (DEAL_TYPE_BUY, DEAL_TYPE_SELL) or deal["magic"] != self.magic:
                    continue
                instrument = self._load_symbol(deal["symbol"])
                if instrument is not None:
                    out.extend(c for c in self._deal_charges(deal, instrument) if c.ts >= ts)
            return sorted(out, key=lambda c: (c.ts, c.charge_id))

    def _deal_charges(self, deal: dict, instrument: Instrument) -> list[AccountCharge]:
        """The charges a deal carries besides its fill's fee: its swap, and a net rebate."""
        costs, swap = self._deal_costs(deal)
        ts = self._utc_ns(deal["time_msc"])
        out = []
        rebate = max(costs, Decimal(0))
        for kind, prefix, amount in ((ChargeKind.SWAP, "swap", swap), (ChargeKind.FEE, "rebate", rebate)):
            if amount:
                asset, value = self._charge_terms(instrument, deal, amount)
                out.append(AccountCharge(f"{prefix}:{deal['ticket']}", kind, instrument.symbol, asset, value, ts))
        return out

    def _charge_terms(self, instrument: Instrument, deal: dict, amount: Decimal) -> tuple[str, Decimal]:
        """(asset, amount) of a charge of `amount` in the account currency. When that currency is
        the pair's base (an EUR account on EURUSD) the charge is given in the quote at the deal's
        price, exactly (what the books do with a fee in an FX pair's base): the books would take
        a charge in the base for coins held (engine.portfolio.charge_value), which an FX pair's
        base is not."""
        if self._currency == instrument.base and self._currency != instrument.quote_currency:
            return instrument.quote_currency, amount * m.to_decimal(deal["price"], instrument.scales.price_dp)
        return self._currency, amount

    def _deal_costs(self, deal: dict) -> tuple[Decimal, Decimal]:
        """(commission + fee, swap) of a deal in the account currency, signed as MT5 books them
        (negative = charged)."""
        costs = sum((m.to_decimal(deal.get(k) or 0.0, self._currency_dp) for k in ("commission", "fee")), Decimal(0))
        return costs, m.to_decimal(deal.get("swap") or 0.0, self._currency_dp)

    # -- conversions --------------------------------------------------------------------------------
    def _venue_order(self, cid: str, rows: list[dict], deals_by_ticket: dict[int, list[dict]]) -> VenueOrder | None:
        first = min(rows, key=lambda r: r["ticket"])
        instrument = self._load_symbol(first["symbol"])
        if instrument is None:
            return None
        qty_dp, price_dp = _dp(instrument.size_increment), _dp(instrument.price_increment)
        side, kind = m.domain_order_type(first["type"])
        limit, stop = m.prices_of(first["type"], first["price_open"], first["price_stoplimit"], price_dp)
        qty = sum((m.to_decimal(r["volume_initial"], qty_dp) for r in rows), Decimal(0))
        executed = sum((m.to_decimal(r["volume_initial"], qty_dp) - m.to_decimal(r["volume_current"] or 0, qty_dp)
                        for r in rows), Decimal(0))
        deals = [d for r in rows for d in deals_by_ticket.get(r["ticket"], ())]
        filled = sum((m.to_decimal(d["volume"], qty_dp) for d in deals), Decimal(0))
        avg = None
        if filled:
            avg = sum((m.to_decimal(d["volume"], qty_dp) * m.to_decimal(d["price"], price_dp) for d in deals),
                      Decimal(0)) / filled
        if any(r["open"] for r in rows) or filled < executed:
            # working, or finished with deals that history has not shown yet: not final until it has
            state = OrderState.PARTIALLY_FILLED if filled else OrderState.ACCEPTED
        else:
            state = m.final_state([r["state"] for r in rows], qty, filled)
        last_msc = max([r["time_done_msc"] or r["time_setup_msc"] for r in rows] + [d["time_msc"] for d in deals])
        return VenueOrder(cid, ",".join(str(r["ticket"]) for r in sorted(rows, key=lambda r: r["ticket"])),
                          first["symbol"], side, kind, qty, filled, avg, limit, stop, state,
                          None if state is not OrderState.REJECTED else RejectReason.INVALID_ORDER,
                          self._utc_ns(last_msc))

    def _fill(self, cid: str, instrument: Instrument, deal: dict) -> Fill:
        """A deal as a fill; its commission and fee (account currency, negative = charged) are the
        fill's fee, never negative: a net rebate and the deal's swap are account charges
        (`charges_since`)."""
        s = instrument.scales
        qty = m.to_decimal(deal["volume"], s.qty_dp)
        price = m.to_decimal(deal["price"], s.price_dp)
        charged = min(self._deal_costs(deal)[0], Decimal(0))
        side = OrderSide.BUY if deal["type"] == DEAL_TYPE_BUY else OrderSide.SELL
        fill = Fill(str(deal["ticket"]), cid, instrument.symbol, side, to_raw(qty, s.qty_dp), to_raw(price, s.price_dp),
                    to_raw(-charged, s.cash_dp), s.qty_dp, s.price_dp, s.cash_dp, self._utc_ns(deal["time_msc"]))
        if self._currency != instrument.quote_currency:  # charged in the account currency, not the books'
            fill = replace(fill, fee_raw=self._fee_in_quote(instrument, -charged), fee_currency=self._currency,
                           fee_native_raw=to_raw(-charged, self._currency_dp), fee_native_dp=self._currency_dp)
        return fill

    def _fee_in_quote(self, instrument: Instrument, fee: Decimal) -> int:
        """A fee in the account currency as raw cash in the instrument's quote currency (the
        books'), when the account currency is neither the pair's base nor its quote (an EUR
        account on GBPUSD): valued at the mid of the terminal's own conversion symbol (EURUSD,
        else USDEUR inverted), the terminal being the one source of that rate every MT5 account
        has, and the value travelling with the fill (journaled, replayed without a rate). 0 when
        there is nothing to value or no such symbol quotes: the books value it then (a fee in
        the base at the fill's price, engine.portfolio), or keep it pending for a rate."""
        account, quote = self._currency, instrument.quote_currency
        if not fee or account == instrument.base:
            return 0
        rate = self._rate(account, quote)
        if rate is None:
            return 0
        value = Fraction(fee) * rate * 10**instrument.scales.cash_dp
        return div_round_half_even(value.numerator, value.denominator)

    def conversion_rate(self, base: str, quote: str) -> Decimal | None:
        """1 `base` in `quote` now, from the terminal's quotes (`_rate`), or None. live.rates asks
        it to value what is charged in a third currency: an EUR account's swap on a GBPUSD bot
        (`charges_since` gives it in the account currency, the books are in the quote's)."""
        with self.lock:
            rate = self._rate(base, quote)
        return None if rate is None else Decimal(rate.numerator) / Decimal(rate.denominator)

    def _rate(self, base: str, quote: str) -> Fraction | None:
        """1 `base` in `quote`: the mid of the terminal's `base+quote` symbol, else 1 / the mid of
        `quote+base` (exact fractions); None when neither quotes."""
        for symbol, inverted in ((base + quote, False), (quote + base, True)):
            if not self.api.symbol_select(symbol, True):
                continue
            info, tick = self.api.symbol_info(symbol), self.api.symbol_info_tick(symbol)
            if info is None or tick is None:
                continue
            digits = int(m.field(info, "digits"))
            bid, ask = m.field(tick, "bid"), m.field(tick, "ask")
            if not bid or not ask or bid <= 0 or ask <= 0:
                continue
            mid = (Fraction(m.to_decimal(bid, digits)) + Fraction(m.to_decimal(ask, digits))) / 2
            return 1 / mid if inverted else mid
        return None

    def _utc_ns(self, server_msc: int) -> int:
        return self.server_clock.to_utc_ns(int(server_msc))

    def _server_now_s(self) -> int:
        return self.server_clock.server_now_s()


_UNREACHABLE = object()
_ENDED = (OrderState.FILLED, OrderState.CANCELED, OrderState.REJECTED, OrderState.EXPIRED)


def _lagging(snapshot: tuple[dict[str, list[dict]], dict[int, list[dict]]]) -> set[int]:
    """The tickets of orders that say they executed more than history has deals for."""
    by_cid, deals_by_ticket = snapshot
    return {r["ticket"] for rows in by_cid.values() for r in rows
            if float(r["volume_initial"]) - float(r["volume_current"] or 0)
            > sum(float(d["volume"]) for d in deals_by_ticket.get(r["ticket"], ())) + _EPS}


def _dp(increment: Decimal) -> int:
    return max(0, -increment.normalize().as_tuple().exponent)  # type: ignore[operator]


def _with_terms(venue_order: VenueOrder, own: Order) -> VenueOrder:
    """The venue's state under the engine's own terms (qty, type, prices) for an order we sent:
    a triggered stop-limit, a hedging split or an IOC limit sent as a deal looks different there."""
    qty = own.qty if own.qty is not None else venue_order.qty
    state = venue_order.state
    if state is OrderState.FILLED and venue_order.filled_qty < qty:
        state = OrderState.PARTIALLY_FILLED
    return replace(venue_order, qty=qty, type=own.type, limit_price=own.limit_price, stop_price=own.stop_price,
                   state=state)


__all__ = ["MT5Adapter"]


def _transient(problem: str) -> bool:
    """A failure of the terminal or the link (a hiccup), not a refusal of the levels: tried again."""
    return str(problem) in (RejectReason.VENUE_ERROR, RejectReason.TIMEOUT)
