"""Any ccxt exchange, by id, behind the BrokerAdapter contract (binance is the tested one).

- Instruments come from `load_markets()`: precision (a step in TICK_SIZE mode, a count of decimals
  in DECIMAL_PLACES mode) and limits become the Instrument's increments and min/max quantity.
- Orders go out with the engine's client order id as ccxt's `clientOrderId` (binance:
  `newClientOrderId`); stops through params (`triggerPrice`: binance makes STOP_LOSS of a market
  order and STOP_LOSS_LIMIT of a limit order). Quantities and prices are sent as the exact decimal
  strings of the order, which the adapter first checks against the grid (a refusal it can predict
  costs no round trip and has the same reason the venue would give).
- A submit whose outcome is unknown (RequestTimeout, NetworkError, ExchangeNotAvailable, 429,
  any OperationFailed) is never resent blindly: the order is looked up by client order id; found,
  it is reported as the venue has it; provably absent (OrderNotFound), it is sent again after a
  backoff, up to `max_attempts`; if even the lookup cannot be made, the order stays SUBMITTED and
  the next poll resolves it (found: reported; absent: rejected as TIMEOUT, never sent late).
- Reads (fetch_*) retry with exponential backoff on 429 / 5xx / network errors. ccxt's own
  throttle (`enableRateLimit`) stays on.
- The execution stream is a poll of open orders and trades (`poll()`, or a thread every
  `poll_interval_s` seconds): each poll reports only what is new (OrderReporter), so a poll after
  a dropped connection reconciles everything missed, and open orders nobody sent through this
  adapter are reported and adopted by the engine as external. ccxt.pro's watch_orders is not used
  yet.

Thread-safety: one lock serialises every ccxt call and every report to the sink.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from typing import Any, Callable, TypeVar

import ccxt

from brokers.base import (AccountSnapshot, ExecutionSink, OrderReporter, RejectReason, VenueOrder, VenuePosition)
from brokers.ccxt import mapping
from engine.instrument import Instrument
from engine.orders import Fill, Order, OrderSide, OrderState, OrderType

T = TypeVar("T")

_UNKNOWN_OUTCOME = (ccxt.OperationFailed,)           # NetworkError, RequestTimeout, ExchangeNotAvailable, DDoS...
_TRANSIENT_READ = (ccxt.NetworkError, ccxt.OperationFailed)
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "binance": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "fetchMargins": False,
                "fetchOpenOrders": {"warnWithoutSymbol": False}},
}


class CcxtAdapter:
    """BrokerAdapter over one ccxt exchange account (spot)."""

    def __init__(self, exchange_id: str, config: dict[str, Any] | None = None, symbols: list[str] | None = None,
                 exchange: Any = None, currency: str | None = None, max_attempts: int = 3,
                 backoff_s: float = 0.5, max_backoff_s: float = 8.0, poll_interval_s: float | None = 1.0,
                 sandbox: bool = False) -> None:
        """`exchange`: an already built ccxt exchange (tests point one at a fake); otherwise one is
        built from `exchange_id` and `config` (apiKey, secret, ...). `symbols` limits the markets
        the adapter trades and polls (unified symbols, e.g. "BTC/USDT")."""
        if exchange is None:
            cls = getattr(ccxt, exchange_id)
            options = {**DEFAULT_OPTIONS.get(exchange_id, {}), **(config or {}).get("options", {})}
            exchange = cls({"enableRateLimit": True, **(config or {}), "options": options})
            if sandbox:
                exchange.set_sandbox_mode(True)
        self.exchange = exchange
        self.name = exchange.id.upper()
        self.symbols = list(symbols or [])
        self.currency = currency
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.poll_interval_s = poll_interval_s
        self.connected = False
        self._lock = threading.RLock()
        self._reporter = OrderReporter()
        self._instruments: dict[str, Instrument] = {}
        self._venue_ids: dict[str, str] = {}         # venue order id -> client order id
        self._sides: dict[str, OrderSide] = {}       # client order id -> side
        self._fills: dict[str, Fill] = {}            # execution id -> fill
        self._fills_by_order: dict[str, list[Fill]] = {}
        self._trade_cursor: dict[str, int] = {}      # symbol -> ms of the newest trade seen
        self._unresolved: set[str] = set()           # submits whose outcome is still unknown
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def connect(self, sink: ExecutionSink) -> None:
        with self._lock:
            self._reporter.sink = sink
            self._load_instruments()
            self.connected = True
        self.poll()
        if self.poll_interval_s and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"{self.name}-stream", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.connected = False

    def instruments(self) -> dict[str, Instrument]:
        with self._lock:
            if not self._instruments:
                self._load_instruments()
            return dict(self._instruments)

    def _load_instruments(self) -> None:
        markets = self._read(self.exchange.load_markets)
        symbols = self.symbols or [s for s, m in markets.items() if m.get("spot") and m.get("active") is not False]
        mode = self.exchange.precisionMode
        self._instruments = {s: mapping.instrument_from_market(markets[s], mode, self.name)
                             for s in symbols if s in markets}
        if self.currency is None and self._instruments:
            self.currency = next(iter(self._instruments.values())).quote_currency

    # -- orders ---------------------------------------------------------------------------------
    def submit(self, order: Order) -> None:
        with self._lock:
            self._reporter.track(order)
            self._sides[order.client_order_id] = order.side
            instrument = self._instruments.get(order.symbol)
            market = self.exchange.markets.get(order.symbol) if instrument is not None else None
            reason = mapping.check_order(order, instrument, None if market is None else mapping.min_cost(market))
            if reason is None and order.qty is None:
                reason = self._size_by_fraction(order, instrument)  # type: ignore[arg-type]
            if reason is not None:
                self._reporter.rejected(order, time.time_ns(), reason)
                return
            self._submit(order, instrument)  # type: ignore[arg-type]

    def _submit(self, order: Order, instrument: Instrument) -> None:
        kind, params = mapping.ccxt_type_and_params(order, _text)
        price = _text(order.limit_price) if order.limit_price is not None else None
        reason: RejectReason = RejectReason.VENUE_ERROR
        for attempt in range(self.max_attempts):
            try:
                raw = self.exchange.create_order(order.symbol, kind, mapping.ccxt_side(order.side), _text(order.qty),
                                                 price, dict(params))
            except (ccxt.InsufficientFunds, ccxt.BadSymbol, ccxt.MarketClosed, ccxt.AuthenticationError,
                    ccxt.PermissionDenied, ccxt.NotSupported) as error:
                self._reporter.rejected(order, time.time_ns(), mapping.reject_reason(error, order, instrument))
                return
            except ccxt.InvalidOrder as error:
                if mapping.reject_reason(error) is RejectReason.DUPLICATE and self._resolve(order):
                    return  # the venue has an order with this id: it is this one
                self._reporter.rejected(order, time.time_ns(), mapping.reject_reason(error, order, instrument))
                return
            except _UNKNOWN_OUTCOME as error:
                reason = mapping.reject_reason(error, order, instrument)
                found = self._lookup(order)
                if found is None:       # the lookup itself failed: resolve on a later poll
                    self._unresolved.add(order.client_order_id)
                    self._reporter.submitted(order, time.time_ns())
                    return
                if found is not False:  # the venue has it: report, never send again
                    return
                self._sleep(attempt, error)
                continue
            except ccxt.ExchangeError as error:  # a refusal we cannot name: the venue may still hold it
                if not self._resolve(order):
                    self._reporter.rejected(order, time.time_ns(), mapping.reject_reason(error, order, instrument))
                return
            self._on_order_answer(order, raw, instrument)
            return
        self._reporter.rejected(order, time.time_ns(), reason)

    def _on_order_answer(self, order: Order, raw: dict[str, Any], instrument: Instrument) -> None:
        venue = mapping.venue_order(raw, instrument, order.client_order_id)
        self._venue_ids[venue.venue_order_id] = order.client_order_id
        market_id = self.exchange.market(order.symbol)["id"]
        for trade in raw.get("trades") or []:
            fill = mapping.fill_from_trade(trade, market_id, order.client_order_id, order.side, instrument, venue.ts)
            self._remember_fill(venue.venue_order_id, fill)
        self._report(venue)

    def _lookup(self, order: Order) -> bool | None:
        """After an unknown outcome: True if the venue has the order (reported), False if it
        provably has not, None if the venue could not be asked."""
        try:
            found = self._resolve(order, raise_errors=True)
        except _TRANSIENT_READ:
            return None
        return found

    def _resolve(self, order: Order, raise_errors: bool = False) -> bool:
        """Look the order up by client order id and report what the venue has; False if absent."""
        try:
            raw = self._read(self.exchange.fetch_order, None, order.symbol, {"clientOrderId": order.client_order_id})
        except ccxt.OrderNotFound:
            return False
        except _TRANSIENT_READ:
            if raise_errors:
                raise
            return False
        self._unresolved.discard(order.client_order_id)
        instrument = self._instruments[order.symbol]
        venue = mapping.venue_order(raw, instrument, order.client_order_id)
        self._venue_ids[venue.venue_order_id] = order.client_order_id
        if venue.filled_qty:
            self._fetch_trades(order.symbol)
        self._report(venue)
        return True

    def cancel(self, order: Order) -> None:
        with self._lock:
            instrument = self._instruments.get(order.symbol)
            if instrument is None:
                return
            try:
                raw = self._read(self.exchange.cancel_order, None, order.symbol,
                                 {"clientOrderId": order.client_order_id})
            except (ccxt.OrderNotFound, ccxt.OperationRejected, ccxt.InvalidOrder, ccxt.ExchangeError):
                self._resolve(order)  # filled or canceled already, or unknown: report what the venue has
                return
            except _TRANSIENT_READ:
                return  # the next poll shows whether the cancel happened
            self._report(mapping.venue_order(raw, instrument, order.client_order_id))

    def _size_by_fraction(self, order: Order, instrument: Instrument) -> RejectReason | None:
        """A market order sized by equity fraction: resolved now, at the last price."""
        ticker = self._read(self.exchange.fetch_ticker, order.symbol)
        price = mapping.dec(ticker.get("ask") if order.side is OrderSide.BUY else ticker.get("bid")) or \
            mapping.dec(ticker.get("last"))
        if not price:
            return RejectReason.NO_LIQUIDITY
        account = self._account_locked()
        budget = account.equity * order.equity_fraction  # type: ignore[operator]
        if order.side is OrderSide.BUY:
            budget = min(budget, account.cash)
        qty = (budget / price // instrument.size_increment) * instrument.size_increment
        if instrument.max_qty is not None:
            qty = min(qty, instrument.max_qty)
        if qty <= 0 or qty < instrument.min_qty:
            return RejectReason.INSUFFICIENT_FUNDS
        order.qty = qty
        return None

    # -- the stream (polled) --------------------------------------------------------------------
    def poll(self) -> bool:
        """One pass of the execution stream: report every change since the last pass. False if
        the venue could not be reached (nothing is lost: the next pass reports it)."""
        with self._lock:
            try:
                self._poll()
            except _TRANSIENT_READ:
                self.connected = False
                return False
            self.connected = True
            return True

    def reconnect(self) -> bool:
        return self.poll()

    def _poll(self) -> None:
        open_raw: dict[str, dict[str, Any]] = {}
        for symbol in self._poll_symbols():
            self._fetch_trades(symbol)
            for raw in self._read(self.exchange.fetch_open_orders, symbol):
                open_raw[str(raw["id"])] = raw
        seen: set[str] = set()
        for venue_id, raw in open_raw.items():
            instrument = self._instruments[raw["symbol"]]
            cid = self._venue_ids.get(venue_id) or raw.get("clientOrderId")
            venue = mapping.venue_order(raw, instrument, cid)
            self._venue_ids[venue_id] = venue.client_order_id
            seen.add(venue.client_order_id)
            self._report(venue)
        for cid, order in list(self._reporter.orders.items()):
            state = self._reporter.reported(cid)
            if cid in seen or order.symbol not in self._instruments:
                continue
            if state in (OrderState.SUBMITTED, OrderState.ACCEPTED, OrderState.PARTIALLY_FILLED):
                if cid in self._unresolved:
                    if not self._resolve(order, raise_errors=True):
                        self._unresolved.discard(cid)
                        self._reporter.rejected(order, time.time_ns(), RejectReason.TIMEOUT)
                    continue
                self._resolve(order, raise_errors=True)
        for cid in list(self._unresolved):  # the answer was lost before anything was reported
            order = self._reporter.orders[cid]
            if not self._resolve(order, raise_errors=True):
                self._unresolved.discard(cid)
                self._reporter.rejected(order, time.time_ns(), RejectReason.TIMEOUT)

    def _poll_symbols(self) -> list[str]:
        symbols = set(self.symbols)
        symbols.update(o.symbol for cid, o in self._reporter.orders.items()
                       if o.symbol in self._instruments and self._reporter.reported(cid) not in
                       (OrderState.FILLED, OrderState.CANCELED, OrderState.REJECTED))
        return sorted(symbols)

    def _fetch_trades(self, symbol: str) -> list[Fill]:
        instrument = self._instruments[symbol]
        market_id = self.exchange.market(symbol)["id"]
        since = self._trade_cursor.get(symbol)
        trades = self._read(self.exchange.fetch_my_trades, symbol, since)
        new = []
        for trade in trades:
            venue_id = str(trade.get("order"))
            cid = self._venue_ids.get(venue_id)
            if cid is None:  # an order we have not seen: ask the venue whose it is
                raw = self._read(self.exchange.fetch_order, venue_id, symbol)
                cid = mapping.venue_order(raw, instrument).client_order_id
                self._venue_ids[venue_id] = cid
            side = OrderSide.BUY if trade.get("side") == "buy" else OrderSide.SELL
            fill = mapping.fill_from_trade(trade, market_id, cid, side, instrument, time.time_ns())
            if self._remember_fill(venue_id, fill):
                new.append(fill)
            if trade.get("timestamp"):
                self._trade_cursor[symbol] = max(self._trade_cursor.get(symbol, 0), int(trade["timestamp"]))
        return new

    def _remember_fill(self, venue_id: str, fill: Fill) -> bool:
        if fill.execution_id in self._fills:
            return False
        self._fills[fill.execution_id] = fill
        self._fills_by_order.setdefault(venue_id, []).append(fill)
        return True

    def _report(self, venue: VenueOrder) -> None:
        self._reporter.catch_up(venue, self._fills_by_order.get(venue.venue_order_id, []))

    def _run(self) -> None:
        while not self._stop.wait(self.poll_interval_s):
            self.poll()

    # -- queries --------------------------------------------------------------------------------
    def order_status(self, client_order_id: str) -> VenueOrder | None:
        with self._lock:
            order = self._reporter.orders.get(client_order_id)
            symbols = [order.symbol] if order is not None else sorted(self._instruments)
            for symbol in symbols:
                try:
                    raw = self._read(self.exchange.fetch_order, None, symbol, {"clientOrderId": client_order_id})
                except ccxt.OrderNotFound:
                    continue
                return mapping.venue_order(raw, self._instruments[symbol], client_order_id)
            return None

    def open_orders(self) -> list[VenueOrder]:
        with self._lock:
            out = []
            for symbol in sorted(set(self.symbols) | set(self._poll_symbols())):
                for raw in self._read(self.exchange.fetch_open_orders, symbol):
                    cid = self._venue_ids.get(str(raw["id"]))
                    out.append(mapping.venue_order(raw, self._instruments[symbol], cid))
            return out

    def positions(self) -> list[VenuePosition]:
        with self._lock:
            balance = self._read(self.exchange.fetch_balance)
            out = []
            for symbol, instrument in self._instruments.items():
                base = self.exchange.markets[symbol]["base"]
                total = mapping.dec((balance.get(base) or {}).get("total"))
                if total:
                    out.append(VenuePosition(symbol, mapping.snap(total, instrument.size_increment), None))
            return out

    def account(self) -> AccountSnapshot:
        with self._lock:
            return self._account_locked()

    def _account_locked(self) -> AccountSnapshot:
        balance = self._read(self.exchange.fetch_balance)
        currency = self.currency or "USDT"
        entry = balance.get(currency) or {}
        step = min((i.currency_increment for i in self._instruments.values()), default=Decimal("0.00000001"))
        cash = mapping.snap(mapping.dec(entry.get("total")) or Decimal(0), step)
        free = mapping.dec(entry.get("free"))
        equity = cash
        for symbol, instrument in self._instruments.items():
            market = self.exchange.markets[symbol]
            if market.get("quote") != currency:
                continue
            held = mapping.dec((balance.get(market["base"]) or {}).get("total"))
            if held:
                ticker = self._read(self.exchange.fetch_ticker, symbol)
                mark = mapping.dec(ticker.get("bid")) or mapping.dec(ticker.get("last")) or Decimal(0)
                equity += held * mark
        buying_power = None if free is None else mapping.snap(free, step)
        return AccountSnapshot(currency, cash, mapping.snap(equity, step), buying_power)

    def fills_since(self, ts: int) -> list[Fill]:
        with self._lock:
            for symbol in self._instruments if self.symbols else self._poll_symbols():
                self._fetch_trades(symbol)
            return sorted((f for f in self._fills.values() if f.ts >= ts), key=lambda f: (f.ts, f.execution_id))

    # -- calls ----------------------------------------------------------------------------------
    def _read(self, call: Callable[..., T], *args: Any) -> T:
        """A call that is safe to repeat, retried with backoff on 429 / 5xx / network errors."""
        for attempt in range(self.max_attempts):
            try:
                return call(*args)
            except (ccxt.OrderNotFound, ccxt.BadSymbol, ccxt.InvalidOrder):
                raise
            except _TRANSIENT_READ as error:
                if attempt == self.max_attempts - 1:
                    raise
                self._sleep(attempt, error)
        raise AssertionError("unreachable")

    def _sleep(self, attempt: int, error: Exception) -> None:
        delay = self.backoff_s * 2**attempt
        if isinstance(error, (ccxt.DDoSProtection, ccxt.RateLimitExceeded)):
            headers = getattr(self.exchange, "last_response_headers", None) or {}
            retry_after = headers.get("Retry-After") or headers.get("retry-after")
            if retry_after and str(retry_after).isdigit():
                delay = max(delay, float(retry_after))
        time.sleep(min(delay, self.max_backoff_s))


def _text(value: Decimal | None) -> str | None:
    """An exact decimal as the plain string ccxt passes through its precision functions."""
    return None if value is None else format(value.normalize(), "f")
