"""The Alpaca adapter: BrokerAdapter over alpaca-py's TradingClient and TradingStream.

- Orders, positions, account and assets through TradingClient (paper by default), run with
  `raw_data=True` so numbers stay the strings Alpaca sent (mapping.py). The order's
  client_order_id is the engine's client order id.
- Executions through TradingStream's trade_updates (new, fill, partial_fill, canceled, expired,
  rejected), on a thread of its own. The SDK reconnects a dropped stream by itself; the adapter
  subclasses the stream to learn when a connection (re)opens, and then reconciles over REST:
  open orders (unknown ones are reported and adopted as external), every order the engine still
  thinks is open, and the fills it missed (FILL activities). Every report goes through one
  OrderReporter, so what arrives twice is told once.
- Submit: 429 is retried with exponential backoff (the SDK's own 3 s retry is switched off);
  a 5xx, a timeout or a dropped connection may hide a booked order, so the order is first looked
  up by client id: found, its state is reported and it is never sent again; provably absent, it is
  sent again; the lookup itself failing leaves it SUBMITTED for `reconcile()` to resolve. An
  answer "client_order_id must be unique" is a lookup, too.
- requests has no default timeout and alpaca-py sets none, so the adapter gives the client's
  session one (`http_timeout_s`; submits may have a shorter `submit_timeout_s`).
- Sizing: a market order carrying an equity fraction goes as a `notional` order (equity x
  fraction in dollars, within the buying power): Alpaca sizes it at the fill price. Its quantity
  is what filled (set on the order once Alpaca says it is filled). Fractional and notional equity
  orders go as DAY orders, as Alpaca requires (mapping.time_in_force).
- Fills are read from the FILL activities page by page (`page_token`, 100 a page) wherever they
  are read: after a reconnect, for one order, and in `fills_since`.
- Crypto fees are not booked: Alpaca posts them as CFEE activities (a NonTradeActivity in
  alpaca-py: date, symbol, qty, price, no order id), which no fill can be matched to.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from decimal import ROUND_DOWN, Decimal
from typing import Any, Callable, Sequence

import requests

from brokers.alpaca import mapping as m
from brokers.base import (AccountSnapshot, ExecutionSink, OrderReporter, RejectReason, price_refusal, VenueOrder,
                          VenuePosition, VenueUnreachable)
from engine.instrument import AssetClass, Instrument
from engine.orders import Fill, Order, OrderSide, OrderState, OrderType

log = logging.getLogger(__name__)


class _TimeoutSession(requests.Session):
    """A requests session with a timeout on every call; order submissions may have their own (a
    submit that hangs holds up the bot, and its answer is recovered by a lookup anyway)."""

    def __init__(self, timeout_s: float, submit_timeout_s: float | None = None) -> None:
        super().__init__()
        self.timeout_s = timeout_s
        self.submit_timeout_s = timeout_s if submit_timeout_s is None else submit_timeout_s

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        submit = method.upper() == "POST" and url.rstrip("/").endswith("/v2/orders")
        kwargs.setdefault("timeout", self.submit_timeout_s if submit else self.timeout_s)
        return super().request(method, url, **kwargs)


def _stream_class() -> type:
    from alpaca.trading.stream import TradingStream

    class ReconcilingStream(TradingStream):
        """TradingStream that tells the adapter when a subscription is live (the first, or again).

        The SDK sends "listen" and reads on without waiting for Alpaca's "listening" answer; only
        that answer says the subscription is in place. Reconciling on it (and not when "listen"
        was sent) leaves no gap: whatever happens after the REST snapshot comes on the stream.
        The stream's messages queue meanwhile and are handled after the reconciliation."""

        def __init__(self, adapter: "AlpacaAdapter", *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._adapter = adapter

        async def _dispatch(self, msg: dict[str, Any]) -> None:
            if msg.get("stream") == "listening" and "trade_updates" in (msg.get("data") or {}).get("streams", []):
                await asyncio.get_running_loop().run_in_executor(None, self._adapter._on_stream_open)
            await super()._dispatch(msg)

    return ReconcilingStream


class AlpacaAdapter:
    """BrokerAdapter for one Alpaca account."""

    name = "ALPACA"

    def __init__(self, api_key: str, secret_key: str, symbols: Sequence[str], *, paper: bool = True,
                 url_override: str | None = None, stream_url: str | None = None, http_timeout_s: float = 10.0,
                 max_attempts: int = 3, backoff_s: float = 0.5, sleep: Callable[[float], None] = time.sleep,
                 clock_ns: Callable[[], int] = time.time_ns, stream_backoff_s: tuple[float, float] = (1.0, 30.0),
                 connect_timeout_s: float = 30.0, submit_timeout_s: float | None = None) -> None:
        self.api_key, self.secret_key = api_key, secret_key
        self.symbols = list(symbols)
        self.paper = paper
        self.url_override, self.stream_url = url_override, stream_url
        self.http_timeout_s, self.submit_timeout_s = http_timeout_s, submit_timeout_s
        self.max_attempts, self.backoff_s, self.sleep = max_attempts, backoff_s, sleep
        self.clock_ns = clock_ns
        self.stream_backoff_s = stream_backoff_s
        self.connect_timeout_s = connect_timeout_s
        self.lock = threading.RLock()
        self._reporter = OrderReporter()
        self._instruments: dict[str, Instrument] = {}
        self._order_ids: dict[str, str] = {}          # venue order id -> client id
        self._unresolved: dict[str, Order] = {}       # lost submits the venue could not be asked about
        self._since_ns = 0
        self.client: Any = None
        self.stream: Any = None
        self._stream_thread: threading.Thread | None = None
        self._stream_loop: asyncio.AbstractEventLoop | None = None
        self._opened = threading.Event()
        self.stream_generation = 0                   # subscriptions confirmed ("listening") so far
        self.reconciled_generation = 0
        self.stream_messages = 0                     # trade_updates handled
        self.connection_messages = 0                 # trade_updates handled on the current subscription

    # -- lifecycle ------------------------------------------------------------------------------
    def connect(self, sink: ExecutionSink) -> None:
        """Log in, load the instruments, start the stream. Connecting again (a restarted engine
        taking over the adapter) only changes the sink: a second stream would report twice."""
        from alpaca.trading.client import TradingClient
        with self.lock:
            self._reporter.sink = sink
        if self._stream_thread is not None and self._stream_thread.is_alive():
            return
        self._since_ns = self.clock_ns()
        self.client = TradingClient(self.api_key, self.secret_key, paper=self.paper, raw_data=True,
                                    url_override=self.url_override)
        self.client._retry = 0                       # 429s are retried here, with backoff
        self.client._session = _TimeoutSession(self.http_timeout_s, self.submit_timeout_s)
        for symbol in self.symbols:
            if self._load_asset(symbol) is None:
                raise KeyError(f"Alpaca has no asset {symbol!r}")
        self._start_stream()

    def _start_stream(self) -> None:
        stream = _stream_class()(self, self.api_key, self.secret_key, paper=self.paper, raw_data=True,
                                 url_override=self.stream_url)
        stream._reconnect_min_backoff, stream._reconnect_max_backoff = self.stream_backoff_s
        stream.subscribe_trade_updates(self._on_trade_update)
        self.stream = stream

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._stream_loop = loop
            try:
                loop.run_until_complete(stream._run_forever())
            finally:
                loop.close()

        self._stream_thread = threading.Thread(target=run, name="alpaca-trade-updates", daemon=True)
        self._stream_thread.start()
        if not self._opened.wait(self.connect_timeout_s):
            raise VenueUnreachable("Alpaca trade_updates stream did not open")

    def close(self) -> None:
        stream, loop = self.stream, self._stream_loop
        if stream is not None and loop is not None and loop.is_running():
            async def stop() -> None:
                await stream.stop_ws()
                await stream.close()   # wakes the consumer now rather than at its next 5 s poll
            asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        if self._stream_thread is not None:
            self._stream_thread.join(10)

    def _on_stream_open(self) -> None:
        """Runs on every (re)subscription of the trade_updates stream, before its messages."""
        self.connection_messages = 0
        self.stream_generation += 1
        try:
            if self.stream_generation > 1:
                self.reconcile()
        except Exception:  # noqa: BLE001 - the venue may still be failing; the next reconnect retries
            log.exception("alpaca: reconciliation after reconnect failed")
        finally:
            self.reconciled_generation = self.stream_generation
            self._opened.set()

    # -- instruments ------------------------------------------------------------------------------
    def instruments(self) -> dict[str, Instrument]:
        return dict(self._instruments)

    def _load_asset(self, symbol: str) -> Instrument | None:
        if symbol in self._instruments:
            return self._instruments[symbol]
        from alpaca.common.exceptions import APIError
        try:
            asset = self.client.get_asset(symbol)
        except APIError as error:
            if error.status_code == 404:
                return None
            raise
        instrument = m.instrument(asset)
        self._instruments[symbol] = instrument
        return instrument

    # -- orders ---------------------------------------------------------------------------------
    def submit(self, order: Order) -> None:
        from alpaca.common.exceptions import APIError
        from pydantic import ValidationError
        with self.lock:
            self._reporter.track(order)
        notional = None
        try:
            instrument = self._load_asset(order.symbol)
            reason = RejectReason.UNKNOWN_SYMBOL if instrument is None else _refusal(order, instrument)
            if reason is None and order.qty is None:
                notional, reason = self._notional(order, instrument)  # type: ignore[arg-type]
        except (APIError, requests.RequestException):
            self._report("rejected", order, RejectReason.VENUE_ERROR)
            return
        if reason is None:
            tif = m.time_in_force(order, instrument, notional)  # type: ignore[arg-type]
            reason = RejectReason.UNSUPPORTED if tif is None else None
        if reason is None:
            try:
                request = m.order_request(order, tif, notional)  # type: ignore[arg-type]
            except ValidationError:
                reason = RejectReason.INVALID_ORDER
        if reason is not None:
            self._report("rejected", order, reason)
            return
        self._report("submitted", order)
        for attempt in range(self.max_attempts):
            try:
                self._apply(order, self.client.submit_order(request))
                return
            except APIError as error:
                action, reason = m.classify_error(error.status_code, m.error_message(str(error)))
            except requests.RequestException:
                action, reason = m.LOOKUP, RejectReason.TIMEOUT
            if action == m.FINAL:
                break
            if action == m.LOOKUP:
                try:
                    found = self._venue_order_json(order.client_order_id)
                except (APIError, requests.RequestException):
                    with self.lock:
                        self._unresolved[order.client_order_id] = order   # reconcile() resolves it
                    return
                if found is not None:
                    self._apply(order, found)  # the venue has it: report, never send again
                    return
                if reason == RejectReason.DUPLICATE:
                    break
            if attempt + 1 < self.max_attempts:
                self.sleep(self.backoff_s * 2**attempt)
        self._report("rejected", order, reason)

    def _notional(self, order: Order, instrument: Instrument) -> tuple[Decimal | None, str | None]:
        """Dollars for an equity-fraction market order: equity x fraction, cents down, a buy
        within the buying power (crypto: the non-marginable one). Alpaca's minimum is $1."""
        if order.type is not OrderType.MARKET or order.equity_fraction is None:
            return None, RejectReason.UNSUPPORTED
        if not instrument.size_increment < 1:
            return None, RejectReason.UNSUPPORTED  # whole shares only: Alpaca takes no notional for it
        data = self.client.get_account()
        budget = Decimal(data.get("equity") or data["cash"]) * order.equity_fraction
        if order.side is OrderSide.BUY:
            power = data.get("non_marginable_buying_power") if instrument.asset_class is AssetClass.CRYPTO else None
            budget = min(budget, Decimal(power or data.get("buying_power") or data["cash"]))
        notional = budget.quantize(Decimal("0.01"), rounding=ROUND_DOWN)
        if notional < 1:
            return None, RejectReason.INSUFFICIENT_FUNDS
        return notional, None

    def _report(self, what: str, order: Order, reason: str | None = None) -> None:
        with self.lock:
            ts = self.clock_ns()
            if what == "submitted":
                self._reporter.submitted(order, ts)
            elif what == "rejected":
                self._reporter.rejected(order, ts, str(reason))

    def _apply(self, order: Order, data: dict[str, Any]) -> None:
        """Report what an order JSON from REST says (fills from the activities if it has any)."""
        venue = self._venue(data)
        with self.lock:
            if order.qty is None and venue.state is OrderState.FILLED:
                order.qty = venue.qty   # a notional order: its quantity is what filled
        try:
            fills = self._fills_of(data) if venue.filled_qty else []
        except VenueUnreachable as error:
            # the stream or the next reconciliation brings them: until then the order is reported
            # as far as its known fills go (OrderReporter never marks it filled without them)
            log.warning("alpaca: fills of %s not read: %s", venue.client_order_id, error)
            fills = []
        with self.lock:
            self._order_ids[venue.venue_order_id] = venue.client_order_id
            self._reporter.catch_up(_with_terms(venue, order), fills)

    def cancel(self, order: Order) -> None:
        from alpaca.common.exceptions import APIError
        try:
            data = self._venue_order_json(order.client_order_id)
            if data is None or self._venue(data).state not in (OrderState.ACCEPTED, OrderState.PARTIALLY_FILLED):
                return
            self.client.cancel_order_by_id(data["id"])
            data = self._venue_order_json(order.client_order_id)
        except (APIError, requests.RequestException) as error:
            log.warning("alpaca: cancel of %s failed: %s (the stream or reconcile tells what happened)",
                        order.client_order_id, error)
            return
        if data is not None:
            self._apply(order, data)

    # -- the stream -------------------------------------------------------------------------------
    async def _on_trade_update(self, message: dict[str, Any]) -> None:
        try:
            self._handle_update(message.get("data") or {})
        except Exception:  # noqa: BLE001 - one bad message must not kill the stream
            log.exception("alpaca: trade update not understood: %r", message)
        finally:
            self.stream_messages += 1
            self.connection_messages += 1

    def _handle_update(self, data: dict[str, Any]) -> None:
        """One trade update. What it means is read from the event and the order's status:
        `done_for_day` ends nothing (a GTC order works again tomorrow; a DAY one is then
        `expired`), `replaced` ends this order (its replacement arrives as a new one)."""
        event = data.get("event")
        order_json = data["order"]
        venue = self._venue(order_json)
        instrument = self._load_asset(venue.symbol)
        if instrument is None:
            return
        status = order_json.get("status")
        with self.lock:
            cid = order_json["client_order_id"]
            self._order_ids[order_json["id"]] = cid
            order = self._reporter.orders.get(cid) or venue.to_order()
            ts = m.ns(data.get("timestamp"))
            if event in ("fill", "partial_fill"):
                if order.qty is None and status == "filled":
                    order.qty = venue.qty   # a notional order: its quantity is what filled
                self._reporter.fill(order, m.fill(instrument, cid, order_json["id"], order_json["side"],
                                                  m.dec(data["qty"]), m.dec(data["price"]),  # type: ignore[arg-type]
                                                  m.dec(order_json["filled_qty"]), ts))  # type: ignore[arg-type]
            elif event == "canceled":
                self._reporter.canceled(order, ts, None)
            elif event == "expired":
                self._reporter.canceled(order, ts, "EXPIRED")
            elif event == "rejected":
                self._reporter.rejected(order, ts, RejectReason.INVALID_ORDER)
            elif event == "replaced" or status == "replaced":
                self._reporter.canceled(order, ts, m.REPLACED)
            else:  # new, accepted, pending_new, pending_cancel, pending_replace, restated, done_for_day
                self._reporter.accepted(order, ts)

    # -- reconciliation ---------------------------------------------------------------------------
    def reconcile(self) -> None:
        """Make the engine's view agree with Alpaca's (after a reconnect, or on demand)."""
        from alpaca.trading.enums import QueryOrderStatus
        from alpaca.trading.requests import GetOrdersRequest
        open_rows = self.client.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=500))
        seen = set()
        for data in open_rows:
            seen.add(data["client_order_id"])
            own = self._reporter.orders.get(data["client_order_id"])
            self._apply(own or self._venue(data).to_order(), data)
        with self.lock:
            pending = [o for cid, o in self._reporter.orders.items()
                       if cid not in seen and self._reporter.reported(cid) not in _FINAL_STATES]
            pending += [o for cid, o in self._unresolved.items() if o not in pending]
        for order in pending:
            data = self._venue_order_json(order.client_order_id)
            if data is not None:
                self._apply(order, data)
            elif order.client_order_id in self._unresolved:
                self._report("rejected", order, RejectReason.TIMEOUT)
            with self.lock:
                self._unresolved.pop(order.client_order_id, None)

    # -- queries ----------------------------------------------------------------------------------
    def _venue_order_json(self, client_order_id: str) -> dict[str, Any] | None:
        from alpaca.common.exceptions import APIError
        try:
            return self.client.get_order_by_client_id(client_order_id)
        except APIError as error:
            if error.status_code == 404:
                return None
            raise

    def order_status(self, client_order_id: str) -> VenueOrder | None:
        data = self._call(self._venue_order_json, client_order_id)
        return None if data is None else self._venue(data)

    def open_orders(self) -> list[VenueOrder]:
        from alpaca.trading.enums import QueryOrderStatus
        from alpaca.trading.requests import GetOrdersRequest
        rows = self._call(self.client.get_orders, GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=500))
        return [self._venue(row) for row in rows]

    def _venue(self, data: dict[str, Any]) -> VenueOrder:
        return m.venue_order(data, self._instruments)

    def positions(self) -> list[VenuePosition]:
        return [m.position(row, self._instruments) for row in self._call(self.client.get_all_positions)]

    def account(self) -> AccountSnapshot:
        return m.account(self._call(self.client.get_account))

    def fills_since(self, ts: int) -> list[Fill]:
        return [fill for fill in self._activity_fills(ts) if fill.ts >= ts]

    def _activity_rows(self, after: str | None) -> list[dict[str, Any]]:
        """Every FILL activity after `after`, oldest first, all pages (Alpaca pages at 100)."""
        params: dict[str, Any] = {"direction": "asc", "page_size": _PAGE_SIZE, **({"after": after} if after else {})}
        rows: list[dict[str, Any]] = []
        while True:
            page = self._call(self.client.get, "/account/activities/FILL", params)
            rows.extend(page)
            if len(page) < _PAGE_SIZE:
                return rows
            params["page_token"] = page[-1]["id"]

    def _activity_fills(self, ts: int, order_id: str | None = None) -> list[Fill]:
        after = m.iso(ts - 1) if ts > 0 else None
        rows = self._activity_rows(after)
        out = []
        for row in rows:
            if row.get("activity_type", "FILL") != "FILL" or (order_id is not None and row["order_id"] != order_id):
                continue
            cid = self._order_ids.get(row["order_id"])
            if cid is None:
                cid = self._call(self.client.get_order_by_id, row["order_id"])["client_order_id"]
                self._order_ids[row["order_id"]] = cid
            instrument = self._load_asset(m.symbol_of(row["symbol"], None, self._instruments))
            if instrument is None:
                continue
            out.append(m.activity_fill(row, instrument, cid))
        return sorted(out, key=lambda f: (f.ts, f.execution_id))

    def _fills_of(self, data: dict[str, Any]) -> list[Fill]:
        return self._activity_fills(m.ns(data.get("submitted_at") or data.get("created_at")) - 1, data["id"])

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        from alpaca.common.exceptions import APIError
        try:
            return fn(*args)
        except (APIError, requests.RequestException) as error:
            raise VenueUnreachable(f"alpaca: {error}") from error


_FINAL_STATES = (OrderState.FILLED, OrderState.CANCELED, OrderState.REJECTED, OrderState.EXPIRED)
_PAGE_SIZE = 100


def _refusal(order: Order, instrument: Instrument) -> str | None:
    if order.qty is None:  # equity fraction: a notional market order (submit sizes it)
        return None if order.type is OrderType.MARKET and order.equity_fraction else RejectReason.UNSUPPORTED
    if order.qty % instrument.size_increment:
        return RejectReason.QTY_OFF_GRID
    if order.qty <= 0 or order.qty < instrument.min_qty:
        return RejectReason.QTY_BELOW_MIN
    return price_refusal(order, instrument)


def _with_terms(venue: VenueOrder, own: Order) -> VenueOrder:
    """The venue's state, reported about the engine's own order object."""
    from dataclasses import replace
    if own.client_order_id != venue.client_order_id:
        return venue
    return replace(venue, qty=own.qty if own.qty is not None else venue.qty)


__all__ = ["AlpacaAdapter"]
