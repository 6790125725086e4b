"""The MetaTrader 5 adapter: BrokerAdapter over the MetaTrader5 module (or an mt5linux bridge).

The module is injected (`api`): the real module on Windows, an mt5linux instance on Linux, or
tests/fakes/mt5_fake.py. Every result is converted at once by field name. The module keeps
process-global state, so every call goes through one lock.

MetaTrader has no execution stream: `poll()` asks the terminal for open orders, finished orders
and deals since the adapter connected, and reports the difference through an OrderReporter (each
deal once, states in an order the OMS accepts). `start_polling` runs it on a thread; tests call
`poll()` themselves. A terminal that stops answering is re-initialized by the next poll, which
then reports whatever happened meanwhile (the "stream drop" of a polled venue).

Orders:
- MARKET -> TRADE_ACTION_DEAL at the current ask/bid with `deviation`; LIMIT, STOP, STOP_LIMIT ->
  TRADE_ACTION_PENDING (STOP_LIMIT: price = stop trigger, stoplimit = limit). type_filling from
  the symbol's mask (mapping.filling_for). Client ids travel as magic + comment (mapping.py).
- Before sending: unknown symbol, volume off volume_step / below volume_min / above volume_max,
  prices off the tick grid, and a pending price inside trade_stops_level points of the market
  are refused with a reason (`round_volume` floors a quantity onto the grid for callers).
- Netting accounts: one request. Hedging accounts: an order against open positions first closes
  them oldest first (requests carrying "position"), the rest opens a new position, so the
  engine's netted books match the venue's; all requests carry the same comment.
- Retcodes 10004/10020/10021/10024/10031 (nothing executed) are retried with exponential backoff
  and a fresh price; other failures map to a reason (mapping.RETCODE_REASONS).
- An answer that is lost (order_send returns None with an IPC error, or retcode 10012) is never
  resent blindly: the order is looked up by its comment. Found: its state and deals are
  reported. Provably absent (the terminal answered the lookup): sent again. The terminal cannot be
  asked: the order stays SUBMITTED and the next successful poll resolves it (found, or rejected
  TIMEOUT).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from decimal import Decimal
from typing import Any, Callable, Sequence

from brokers.base import (AccountSnapshot, ExecutionSink, OrderReporter, RejectReason, price_refusal, VenueOrder, VenuePosition,
                          VenueUnreachable)
from brokers.mt5 import mapping as m
from engine.instrument import AssetClass, Instrument
from engine.money import to_raw
from engine.orders import Fill, Order, OrderSide, OrderState, OrderType, TimeInForce

_ORDER_FIELDS = ("ticket", "time_setup", "time_setup_msc", "time_done_msc", "type", "state", "magic",
                 "volume_initial", "volume_current", "price_open", "price_stoplimit", "symbol", "comment")
_DEAL_FIELDS = ("ticket", "order", "time", "time_msc", "type", "entry", "magic", "volume", "price",
                "commission", "fee", "symbol", "comment")
_POSITION_FIELDS = ("ticket", "time_msc", "type", "volume", "price_open", "symbol")
_FAR_FUTURE_S = 86_400 * 2
DEAL_TYPE_BUY, DEAL_TYPE_SELL = 0, 1
HEDGING = 2


class MT5Adapter:
    """BrokerAdapter for one MetaTrader 5 account."""

    name = "MT5"

    def __init__(self, api: Any, symbols: Sequence[str], *, login: int | None = None, password: str | None = None,
                 server: str | None = None, path: str | None = None, magic: int = m.TICKBRIDGE_MAGIC,
                 deviation_points: int = 20, server_utc_offset_s: int = 0, max_attempts: int = 3,
                 backoff_s: float = 0.25, sleep: Callable[[float], None] = time.sleep,
                 clock_ns: Callable[[], int] = time.time_ns, history_lookback_s: int = 86_400) -> None:
        self.api = api
        self.symbols = list(symbols)
        self.login, self.password, self.server, self.path = login, password, server, path
        self.magic = magic
        self.deviation_points = deviation_points
        self.offset_s = server_utc_offset_s
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.sleep = sleep
        self.clock_ns = clock_ns
        self.history_lookback_s = history_lookback_s
        self.lock = threading.RLock()
        self._reporter = OrderReporter()
        self._instruments: dict[str, Instrument] = {}
        self._specs: dict[str, dict[str, Any]] = {}
        self._comments: dict[str, str] = {}          # comment -> client id, for ids we have seen
        self._unresolved: dict[str, Order] = {}      # lost submits the terminal could not be asked about
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
            self._connected_at_s = self._server_now_s()
            for symbol in self.symbols:
                if self._load_symbol(symbol) is None:
                    raise VenueUnreachable(f"MT5 symbol {symbol!r}: {self.api.last_error()}")

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
            "currency_profit", "path")}
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
            currency_increment=Decimal(1).scaleb(-self._currency_dp))
        self._instruments[symbol] = instrument
        self._specs[symbol] = spec
        return instrument

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
                reason = RejectReason.UNKNOWN_SYMBOL if self._connected else RejectReason.VENUE_ERROR
                self._reporter.rejected(order, ts, reason)
                return
            reason = self._refusal(order, instrument)
            if reason is not None:
                self._reporter.rejected(order, ts, reason)
                return
            requests = self._requests(order, instrument)
            self._reporter.submitted(order, ts)
            sent = Decimal(0)  # volume this order has at the venue once `request` is through
            for request in requests:
                sent += Decimal(repr(request["volume"]))
                if not self._send(order, request, sent):
                    return

    def _track(self, order: Order) -> None:
        self._reporter.track(order)
        self._comments[m.comment_for(order.client_order_id)] = order.client_order_id

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
        if order.type is not OrderType.MARKET:
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
        account = self.api.account_info()
        tick = self.api.symbol_info_tick(order.symbol)
        if account is None or tick is None:
            return Decimal(0)
        price = Decimal(repr(m.field(tick, "ask" if order.side is OrderSide.BUY else "bid")))
        equity = Decimal(repr(m.field(account, "equity")))
        contract = m.float_increment(self._specs[order.symbol]["trade_contract_size"] or 1)
        raw = equity * order.equity_fraction / (price * contract)  # type: ignore[operator]  # exposure, not margin
        return self.round_volume(order.symbol, raw)

    def _requests(self, order: Order, instrument: Instrument) -> list[dict[str, Any]]:
        spec = self._specs[order.symbol]
        pending = order.type is not OrderType.MARKET
        base: dict[str, Any] = {
            "action": 5 if pending else 1, "symbol": order.symbol, "magic": self.magic,
            "comment": m.comment_for(order.client_order_id),
            "type": m.mt5_order_type(order.side, order.type),
            "type_filling": m.filling_for(int(spec["filling_mode"] or 0), int(spec["trade_exemode"] or 0), pending),
            "type_time": 1 if order.tif is TimeInForce.DAY else 0, "deviation": self.deviation_points,
        }
        if pending:
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

    def _opposite_positions(self, order: Order) -> list[tuple[int, Decimal]]:
        rows = self.api.positions_get(symbol=order.symbol) or ()
        opposite_type = 1 if order.side is OrderSide.BUY else 0
        dp = _dp(self._instruments[order.symbol].size_increment)
        found = [(m.field(p, "time_msc"), m.field(p, "ticket"), m.to_decimal(m.field(p, "volume"), dp))
                 for p in rows if m.field(p, "type") == opposite_type]
        return [(ticket, volume) for _, ticket, volume in sorted(found)]

    def _send(self, order: Order, request: dict[str, Any], expected: Decimal) -> bool:
        """One request, with retries. True when the order may go on (more requests).
        `expected`: the volume of this client order at the venue if this request went through,
        which is how a lost answer is told from a request that never arrived."""
        reason = RejectReason.VENUE_ERROR
        for attempt in range(self.max_attempts):
            if request["action"] == 1:
                tick = self.api.symbol_info_tick(order.symbol)
                if tick is not None:
                    request["price"] = m.field(tick, "ask" if order.side is OrderSide.BUY else "bid")
            result = self.api.order_send(request)
            if result is None:
                code, _ = self.api.last_error()
                if code not in m.TRANSPORT_ERRORS:
                    self._reporter.rejected(order, self.clock_ns(), m.reason_for_last_error(code))
                    return False
                lost = True
            else:
                retcode = int(m.field(result, "retcode"))
                lost = retcode == m.RETCODE_TIMEOUT
                if retcode in m.SUCCESS_RETCODES:
                    self._on_result(order, result, retcode)
                    return retcode != m.RETCODE_DONE_PARTIAL
                if not lost and retcode not in m.RETRYABLE_RETCODES:
                    self._reporter.rejected(order, self.clock_ns(), m.reason_for_retcode(retcode))
                    return False
                reason = m.reason_for_retcode(retcode)
            if lost:
                answer = self._lookup(order.client_order_id)
                if answer is _UNREACHABLE:
                    self._unresolved[order.client_order_id] = order  # the next poll resolves it
                    return False
                if answer is not None and self._sent_volume(order.client_order_id) >= expected:
                    self._catch_up(order.client_order_id)  # the venue has it: report, never resend
                    return True
                reason = RejectReason.TIMEOUT
            if attempt + 1 < self.max_attempts:
                self.sleep(self.backoff_s * 2**attempt)
        # a refusal; the reporter turns it into a cancel if an earlier request of this order traded
        self._reporter.rejected(order, self.clock_ns(), reason)
        return False

    def _on_result(self, order: Order, result: Any, retcode: int) -> None:
        cid = order.client_order_id
        ticket = int(m.field(result, "order"))
        if retcode == m.RETCODE_PLACED or (retcode == m.RETCODE_DONE and not m.field(result, "deal")):
            self._reporter.accepted(order, self.clock_ns())
            return
        deals = self.api.history_deals_get(ticket=ticket)
        if deals:
            for deal in deals:
                self._report_fill(order, deal)
        else:  # history not there yet: the result names the deal; the same id comes from history later
            instrument = self._instruments[order.symbol]
            self._reporter.fill(order, self._fill(cid, instrument, {
                "ticket": m.field(result, "deal"), "type": DEAL_TYPE_BUY if order.side is OrderSide.BUY else DEAL_TYPE_SELL,
                "volume": m.field(result, "volume"), "price": m.field(result, "price"), "commission": 0.0, "fee": 0.0,
                "time_msc": self._server_now_s() * 1000}))
        if retcode == m.RETCODE_DONE_PARTIAL:
            self._reporter.canceled(order, self.clock_ns(), "IOC_REMAINDER")

    def cancel(self, order: Order) -> None:
        with self.lock:
            if not self._ensure_session():
                return
            comment = m.comment_for(order.client_order_id)
            open_rows = [o for o in (self.api.orders_get(symbol=order.symbol) or ())
                         if m.field(o, "comment") == comment and m.field(o, "magic") == self.magic]
            for row in open_rows:
                result = self.api.order_send({"action": 8, "order": int(m.field(row, "ticket")),
                                              "symbol": order.symbol, "magic": self.magic, "comment": comment})
                if result is None or int(m.field(result, "retcode")) not in m.SUCCESS_RETCODES:
                    return  # refused (filled meanwhile, frozen): the next poll reports the truth
            if open_rows:
                self._catch_up(order.client_order_id)

    # -- polling ----------------------------------------------------------------------------------
    def poll(self) -> bool:
        """Report what the terminal did since the last poll. False if it cannot be reached."""
        with self.lock:
            if not self._ensure_session():
                return False
            snapshot = self._snapshot()
            if snapshot is None:
                self._connected = False
                return False
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
            for cid, order in list(self._unresolved.items()):
                if cid not in by_cid and self._lookup(cid) is None:
                    self._reporter.rejected(order, self.clock_ns(), RejectReason.TIMEOUT)
                del self._unresolved[cid]
            return True

    def _has_new_deals(self, rows: list[dict], deals_by_ticket: dict[int, list[dict]]) -> bool:
        return any(not self._reporter.has_fill(str(d["ticket"])) for r in rows for d in deals_by_ticket.get(r["ticket"], ()))

    def _snapshot(self, symbol: str | None = None) -> tuple[dict[str, list[dict]], dict[int, list[dict]]] | None:
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
            if d["type"] not in range(8):
                continue
            by_cid[self._cid(d)].append(d)
        deals_by_ticket: dict[int, list[dict]] = defaultdict(list)
        for deal in deals:
            d = m.as_dict(deal, _DEAL_FIELDS)
            if d["type"] in (DEAL_TYPE_BUY, DEAL_TYPE_SELL):
                deals_by_ticket[d["order"]].append(d)
        return by_cid, deals_by_ticket

    def _cid(self, row: dict) -> str:
        return m.client_id_of(row["magic"], row["comment"], row["ticket"], self.magic, self._comments)

    def _report(self, cid: str, rows: list[dict], deals_by_ticket: dict[int, list[dict]]) -> None:
        venue_order = self._venue_order(cid, rows, deals_by_ticket)
        if venue_order is None:
            return
        instrument = self._instruments[venue_order.symbol]
        fills = [self._fill(cid, instrument, d) for r in rows for d in deals_by_ticket.get(r["ticket"], ())]
        own = self._reporter.orders.get(cid)
        if own is not None:
            self._reporter.catch_up(_with_terms(venue_order, own), fills)
        else:
            self._reporter.catch_up(venue_order, fills)

    def _catch_up(self, cid: str) -> None:
        snapshot = self._snapshot()
        if snapshot is not None and cid in snapshot[0]:
            self._report(cid, snapshot[0][cid], snapshot[1])

    def _report_fill(self, order: Order, deal: Any) -> None:
        d = m.as_dict(deal, _DEAL_FIELDS)
        if d["type"] in (DEAL_TYPE_BUY, DEAL_TYPE_SELL):
            self._reporter.fill(order, self._fill(order.client_order_id, self._instruments[order.symbol], d))

    # -- queries ----------------------------------------------------------------------------------
    def _lookup(self, cid: str) -> VenueOrder | None | object:
        """The venue's view of a client order, None if it has none, _UNREACHABLE if it cannot say."""
        snapshot = self._snapshot()
        if snapshot is None:
            return _UNREACHABLE
        rows = snapshot[0].get(cid)
        return None if not rows else self._venue_order(cid, rows, snapshot[1])

    def _sent_volume(self, cid: str) -> Decimal:
        snapshot = self._snapshot()
        if snapshot is None:
            return Decimal(0)
        return sum((Decimal(repr(r["volume_initial"])) for r in snapshot[0].get(cid, ())), Decimal(0))

    def order_status(self, client_order_id: str) -> VenueOrder | None:
        with self.lock:
            self._comments.setdefault(m.comment_for(client_order_id), client_order_id)
            if not self._ensure_session():
                raise VenueUnreachable("MT5 terminal unreachable")
            found = self._lookup(client_order_id)
            if found is _UNREACHABLE:
                raise VenueUnreachable("MT5 terminal unreachable")
            return found  # type: ignore[return-value]

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
        with self.lock:
            rows = self.api.positions_get() if self._ensure_session() else None
            if rows is None:
                raise VenueUnreachable("MT5 terminal unreachable")
            grouped: dict[str, list[dict]] = defaultdict(list)
            for row in rows:
                d = m.as_dict(row, _POSITION_FIELDS)
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
                same = [(q, p) for q, p in signed if (q > 0) == (net > 0)]  # hedging: the net side's average
                volume = sum((q for q, _ in same), Decimal(0))
                avg = sum((q * p for q, p in same), Decimal(0)) / volume
                out.append(VenuePosition(symbol, net, avg))
            return out

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
            start = ts // 1_000_000_000 + self.offset_s
            deals = self.api.history_deals_get(start, self._server_now_s() + _FAR_FUTURE_S)
            if deals is None:
                raise VenueUnreachable("MT5 terminal unreachable")
            out = []
            for deal in deals:
                d = m.as_dict(deal, _DEAL_FIELDS)
                if d["type"] not in (DEAL_TYPE_BUY, DEAL_TYPE_SELL):
                    continue
                rows = self.api.orders_get(ticket=d["order"]) or self.api.history_orders_get(ticket=d["order"]) or ()
                cid = self._cid(m.as_dict(rows[0], _ORDER_FIELDS)) if rows else f"{m.EXTERNAL_PREFIX}{d['order']}"
                instrument = self._load_symbol(d["symbol"])
                fill = self._fill(cid, instrument, d)  # type: ignore[arg-type]
                if fill.ts >= ts:
                    out.append(fill)
            return sorted(out, key=lambda f: (f.ts, f.execution_id))

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
        deals = [d for r in rows for d in deals_by_ticket.get(r["ticket"], ())]
        filled = sum((m.to_decimal(d["volume"], qty_dp) for d in deals), Decimal(0))
        avg = None
        if filled:
            avg = sum((m.to_decimal(d["volume"], qty_dp) * m.to_decimal(d["price"], price_dp) for d in deals),
                      Decimal(0)) / filled
        if any(r["open"] for r in rows):
            state = OrderState.PARTIALLY_FILLED if filled else OrderState.ACCEPTED
        else:
            state = m.final_state([r["state"] for r in rows], qty, filled)
        last_msc = max([r["time_done_msc"] or r["time_setup_msc"] for r in rows] + [d["time_msc"] for d in deals])
        return VenueOrder(cid, ",".join(str(r["ticket"]) for r in sorted(rows, key=lambda r: r["ticket"])),
                          first["symbol"], side, kind, qty, filled, avg, limit, stop, state,
                          None if state is not OrderState.REJECTED else RejectReason.INVALID_ORDER,
                          self._utc_ns(last_msc))

    def _fill(self, cid: str, instrument: Instrument, deal: dict) -> Fill:
        s = instrument.scales
        qty = m.to_decimal(deal["volume"], s.qty_dp)
        price = m.to_decimal(deal["price"], s.price_dp)
        fee = -m.to_decimal((deal.get("commission") or 0.0) + (deal.get("fee") or 0.0), self._currency_dp)
        side = OrderSide.BUY if deal["type"] == DEAL_TYPE_BUY else OrderSide.SELL
        return Fill(str(deal["ticket"]), cid, instrument.symbol, side, to_raw(qty, s.qty_dp), to_raw(price, s.price_dp),
                    to_raw(fee, s.cash_dp), s.qty_dp, s.price_dp, s.cash_dp, self._utc_ns(deal["time_msc"]))

    def _utc_ns(self, server_msc: int) -> int:
        return (int(server_msc) - self.offset_s * 1000) * 1_000_000

    def _server_now_s(self) -> int:
        return self.clock_ns() // 1_000_000_000 + self.offset_s


_UNREACHABLE = object()


def _dp(increment: Decimal) -> int:
    return max(0, -increment.normalize().as_tuple().exponent)  # type: ignore[operator]


def _with_terms(venue_order: VenueOrder, own: Order) -> VenueOrder:
    """The venue's state under the engine's own terms (qty, type, prices) for an order we sent:
    a triggered stop-limit or a hedging split looks different at the venue."""
    from dataclasses import replace
    qty = own.qty if own.qty is not None else venue_order.qty
    state = venue_order.state
    if state is OrderState.FILLED and venue_order.filled_qty < qty:
        state = OrderState.PARTIALLY_FILLED
    return replace(venue_order, qty=qty, type=own.type, limit_price=own.limit_price, stop_price=own.stop_price,
                   state=state)


__all__ = ["MT5Adapter"]
