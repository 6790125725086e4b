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
- Sizing: a market order carrying an equity fraction goes as a `notional` order (the bot's
  equity x fraction in dollars, brokers.base.fraction_equity, within the account's buying
  power): Alpaca sizes it at the fill price. Its quantity
  is what filled (set on the order once Alpaca says it is filled). Fractional and notional equity
  orders go as DAY orders, as Alpaca requires (mapping.time_in_force).
- Fills are read from the FILL activities page by page (`page_token`, 100 a page) wherever they
  are read: after a reconnect, for one order, and in `fills_since`.
- Crypto fees: Alpaca posts them apart from the fills, at the end of the day, as CFEE
  activities (a NonTradeActivity in alpaca-py: date, symbol, qty, price, net_amount, no order
  id), so no fill carries one. `charges_since(ts)` lists them (paged like the FILL activities)
  as account-level FEE charges (engine.charges, mapping.cfee_charge): in the coin on a buy, in
  dollars on a sell. The engine books one into a bot only when that bot alone held and traded
  the symbol that day (engine.reconcile.ChargeBooker); the rest are the account's.
- Extended hours: with `extended_hours=True` (the account's setting, brokers/factory.py) LIMIT
  DAY orders on US equities go with extended_hours=True, the only ones Alpaca takes it on;
  every other order goes without it (mapping.extended_hours).

Protective orders (issue 17 item 3; the mapping is brokers/alpaca/protective.py):
- The OMS submits a bracket as three calls, the entry first (engine/oms.py: each order is
  journaled PENDING_SUBMIT, flushed, then handed over). To send it as ONE bracket / OTO request,
  the adapter must see all three before sending: inside `with adapter.hold():` submits are only
  queued (each already in the write-ahead journal, reported nothing: still PENDING_SUBMIT), and
  at the block's end an entry whose children were queued with it goes as one order_class=bracket
  (or oto) request; Alpaca creates the legs. So on a crash nothing is double-sent (nothing left
  before the block ended; after, the lookup by the entry's client id finds the bracket) and
  nothing is lost (all three are journaled before the request). The OMS / Strategy do not open
  that block yet: the change is proposed in the integrator's notes (OrderManager.linked()).
- Children whose entry went out alone (no hold, today's call order, or a trailing stop, which
  Alpaca takes as a single order only) wait in the adapter, still PENDING_SUBMIT, until the entry
  has filled, then go as an exit sized to what it filled: two in one OCO group as order_class=oco,
  one alone as a plain STOP / LIMIT or a trailing_stop (`trail_price` / `trail_percent`). That
  protects from the entry's fill on, but only while this process runs to send it (the entry's
  fill and the exit's send are one stream message apart); an entry canceled unfilled cancels them.
- Two orders of one OCO group with no parent (Strategy.order(oco=...)) go as one order_class=oco
  request once the second arrives; the first waits for it.
- Legs: Alpaca gives each leg its own order id and client_order_id; the adapter maps the leg's id
  to the engine child's client id by the leg's type, learned from the parent's JSON (REST answer,
  stream message, or reconciliation with `nested=true`), so every report and fill of a leg reaches
  the engine under the child's id. `track(orders)` teaches a restarted adapter the links.
- `amend` replaces the order (replace_order_by_id: PATCH /v2/orders/{id}); Alpaca makes a new
  order (new id) and marks the old one `replaced`. The replacement is sent with the client id
  `<engine id>~<n>`, so it reads back as the same engine order; its `replaced` predecessor is no
  cancel. Lookups by client id follow `replaced_by` to the working order.
- `protective_orders = True`: the OMS sends linked orders here. What Alpaca cannot take is
  refused UNSUPPORTED with the reason (crypto, fractional or notional legs, a trailing stop as a
  leg, stop entries, IOC/FOK, amend of a trailing stop's level or of a partly filled order).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from decimal import ROUND_DOWN, Decimal
from typing import Any, Callable, Iterator, Sequence

import requests

from brokers.alpaca import mapping as m
from brokers.alpaca import protective as P
from brokers.base import (AccountSnapshot, ExecutionSink, OrderReporter, RejectReason, SizingEquity, VenueOrder,
                          VenuePosition, VenueUnreachable, fraction_equity, price_refusal)
from engine.charges import AccountCharge
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
    sizing_equity: SizingEquity | None = None  # the bot's equity (brokers.base.fraction_equity); the runtime sets it
    protective_orders = True   # brackets, OTO, OCO, trailing stops: mapped to Alpaca's own (module docstring)

    def __init__(self, api_key: str, secret_key: str, symbols: Sequence[str], *, paper: bool = True,
                 url_override: str | None = None, stream_url: str | None = None, http_timeout_s: float = 10.0,
                 max_attempts: int = 3, backoff_s: float = 0.5, sleep: Callable[[float], None] = time.sleep,
                 clock_ns: Callable[[], int] = time.time_ns, stream_backoff_s: tuple[float, float] = (1.0, 30.0),
                 connect_timeout_s: float = 30.0, submit_timeout_s: float | None = None,
                 extended_hours: bool = False) -> None:
        self.api_key, self.secret_key = api_key, secret_key
        self.extended_hours = extended_hours
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
        # protective orders (module docstring)
        self._local = threading.local()               # hold(): depth and queue, per thread
        self._venue_ids: dict[str, str] = {}          # engine client id -> the venue order working for it
        self._legs_for: dict[str, dict[str, Order]] = {}   # main client id -> leg role -> engine order
        self._main_of: dict[str, str] = {}            # a leg's engine client id -> its main's
        self._late: dict[str, list[Order]] = {}       # parent client id -> children waiting for its fill
        self._oco: dict[str, list[Order]] = {}        # OCO group -> members waiting for their sibling
        self._outcome: dict[str, Decimal] = {}        # client id -> filled qty, once the order is done
        self._replacing: set[str] = set()             # venue ids this adapter asked Alpaca to replace
        self._replacements: dict[str, int] = {}       # engine client id -> replacements asked so far

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
        with self.lock:
            self._reporter.track(order)
            self._note_links(order)
        if getattr(self._local, "depth", 0):
            self._local.queue.append(order)   # sent at the end of hold(), with its group
            return
        self._dispatch(order)

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Queue this thread's submits until the block ends, then send them, an entry together
        with the children queued with it (one bracket / OTO request): module docstring."""
        local = self._local
        local.depth = getattr(local, "depth", 0) + 1
        if local.depth == 1:
            local.queue = []
        try:
            yield
        finally:
            local.depth -= 1
            if local.depth == 0:
                queue, local.queue = local.queue, []
                self._release(queue)

    def _release(self, queue: list[Order]) -> None:
        ids = {o.client_order_id for o in queue}
        children: dict[str, list[Order]] = {}
        for order in queue:
            if order.parent_id in ids:
                children.setdefault(order.parent_id, []).append(order)  # type: ignore[arg-type]
        for order in queue:
            if order.parent_id in ids:
                continue  # goes with its entry
            kids = children.get(order.client_order_id)
            if kids:
                self._send_bracket(order, kids)
            else:
                self._dispatch(order)

    def _dispatch(self, order: Order) -> None:
        if order.parent_id is not None:
            self._wait_for_parent(order)
        elif order.oco_group is not None:
            self._oco_member(order)
        else:
            self._send_simple(order)

    def _note_links(self, order: Order) -> None:
        """Remember which engine order an Alpaca leg will be (under the lock)."""
        if order.parent_id is not None and P.role(order) is not None:
            self._legs_for.setdefault(order.parent_id, {})[P.role(order)] = order  # type: ignore[index]
            self._main_of[order.client_order_id] = order.parent_id

    def track(self, orders: Sequence[Order]) -> None:
        """Orders restored from the journal after a restart: their links (which engine order each
        Alpaca leg is) and their reports go through this adapter as if it had sent them."""
        with self.lock:
            for order in orders:
                self._reporter.track(order)
                self._note_links(order)
            groups: dict[str, list[Order]] = {}
            for order in orders:
                if order.parent_id is None and order.oco_group is not None:
                    groups.setdefault(order.oco_group, []).append(order)
            for members in groups.values():
                self._note_oco(members)

    def _note_oco(self, members: Sequence[Order]) -> None:
        """An OCO exit: its LIMIT is the order Alpaca returns, its stop the leg (under the lock)."""
        main = next((o for o in members if P.role(o) == P.TAKE_PROFIT), None)
        stop = next((o for o in members if P.role(o) == P.STOP_LOSS), None)
        if main is not None and stop is not None:
            self._legs_for.setdefault(main.client_order_id, {})[P.STOP_LOSS] = stop
            self._main_of[stop.client_order_id] = main.client_order_id

    def _refuse(self, orders: Sequence[Order], reason: str) -> None:
        for order in orders:
            self._report("rejected", order, reason)

    def _send_bracket(self, entry: Order, children: list[Order]) -> None:
        """An entry and its children, submitted together: one bracket / OTO request when Alpaca
        takes it; a trailing child or a notional entry: the entry alone, the children after its fill."""
        if any(c.is_trailing for c in children) or entry.qty is None:
            if len(children) > 1 and any(c.is_trailing for c in children):
                self._refuse([entry, *children], P.unsupported(
                    "takes a trailing stop as a single order only, never with a take-profit in one OCO group"))
                return
            self._send_simple(entry)
            for child in children:
                self._wait_for_parent(child)
            return
        try:
            instrument = self._load_asset(entry.symbol)
        except Exception:  # noqa: BLE001 - the venue could not be asked: nothing was sent
            self._refuse([entry, *children], RejectReason.VENUE_ERROR)
            return
        if instrument is None:
            self._refuse([entry, *children], RejectReason.UNKNOWN_SYMBOL)
            return
        plan = P.bracket_plan(entry, children, instrument)
        if isinstance(plan, str):
            self._refuse([entry, *children], plan)
            return
        self._send_plan(plan, instrument)

    def _send_plan(self, plan: P.Plan, instrument: Instrument) -> None:
        from pydantic import ValidationError
        reason = next((r for o in plan.orders if (r := price_refusal(o, instrument)) is not None), None)
        tif = m.time_in_force(replace(plan.main, qty=plan.qty), instrument)
        if reason is None and tif is None:
            reason = P.unsupported(f"takes no {plan.main.tif.value} {plan.kind} order for {instrument.symbol}")
        request = None
        if reason is None:
            try:
                request = P.plan_request(plan, tif)  # type: ignore[arg-type]
            except ValidationError:
                reason = RejectReason.INVALID_ORDER
        if reason is not None:
            self._refuse(plan.orders, reason)
            return
        with self.lock:
            self._legs_for[plan.main.client_order_id] = dict(plan.legs)
            for leg in plan.legs.values():
                self._main_of[leg.client_order_id] = plan.main.client_order_id
        self._send(plan.main, request, list(plan.legs.values()))

    def _wait_for_parent(self, child: Order) -> None:
        """A child whose entry was sent without it: held until the entry is done (module docstring)."""
        with self.lock:
            self._late.setdefault(child.parent_id, []).append(child)  # type: ignore[arg-type]
        self._release_children(child.parent_id)  # type: ignore[arg-type]

    def _release_children(self, parent_id: str) -> None:
        """Send (or cancel) the children waiting for `parent_id` once all have arrived and it is done."""
        with self.lock:
            group = self._late.get(parent_id)
            filled = self._outcome.get(parent_id)
            if not group or filled is None or len(group) < P.expected_members(group[0]):
                return
            del self._late[parent_id]
            if filled <= 0:
                for child in group:
                    self._reporter.canceled(child, self.clock_ns(), "PARENT_NOT_FILLED")
                return
        if len(group) == 2:
            self._send_oco(group, filled)
        elif group[0].is_trailing:
            self._send_trailing(group[0], filled)
        else:
            self._send_simple(group[0], filled)

    def _oco_member(self, order: Order) -> None:
        with self.lock:
            group = self._oco.setdefault(order.oco_group, [])  # type: ignore[arg-type]
            group.append(order)
            if len(group) < 2:
                return  # its sibling follows (Strategy.order(oco=first))
            del self._oco[order.oco_group]  # type: ignore[arg-type]
        qty = group[0].qty
        if qty is None or group[1].qty != qty:
            self._refuse(group, P.unsupported(f"takes an OCO order of one quantity, got {group[0].qty} and "
                                              f"{group[1].qty}"))
            return
        self._send_oco(group, qty)

    def _send_oco(self, members: list[Order], qty: Decimal) -> None:
        try:
            instrument = self._load_asset(members[0].symbol)
        except Exception:  # noqa: BLE001 - the venue could not be asked: nothing was sent
            self._refuse(members, RejectReason.VENUE_ERROR)
            return
        if instrument is None:
            self._refuse(members, RejectReason.UNKNOWN_SYMBOL)
            return
        plan = P.oco_plan(members, instrument, qty)
        if isinstance(plan, str):
            self._refuse(members, plan)
            return
        self._send_plan(plan, instrument)

    def _send_trailing(self, order: Order, qty: Decimal | None) -> None:
        from pydantic import ValidationError
        try:
            instrument = self._load_asset(order.symbol)
        except Exception:  # noqa: BLE001
            self._report("rejected", order, RejectReason.VENUE_ERROR)
            return
        if instrument is None or qty is None:
            self._report("rejected", order, RejectReason.UNKNOWN_SYMBOL if instrument is None else
                         P.unsupported("sizes a trailing stop by quantity only"))
            return
        reason = P.trailing_refusal(order, instrument) or _refusal(replace(order, qty=qty, stop_price=None,
                                                                           type=OrderType.MARKET), instrument)
        tif = m.time_in_force(replace(order, qty=qty), instrument)
        if reason is None and tif is None:
            reason = P.unsupported(f"takes no {order.tif.value} trailing stop for {qty} {order.symbol}")
        if reason is None:
            try:
                request = P.trailing_request(order, qty, tif)  # type: ignore[arg-type]
            except ValidationError:
                reason = RejectReason.INVALID_ORDER
        if reason is not None:
            self._report("rejected", order, reason)
            return
        self._send(order, request)

    def _send_simple(self, order: Order, qty: Decimal | None = None) -> None:
        """A single order; `qty` overrides its quantity (a child sized to its parent's fill)."""
        from alpaca.common.exceptions import APIError
        from pydantic import ValidationError
        if order.is_trailing:
            self._send_trailing(order, qty if qty is not None else order.qty)
            return
        terms = order if qty is None else replace(order, qty=qty)
        notional = None
        try:
            instrument = self._load_asset(order.symbol)
            reason = RejectReason.UNKNOWN_SYMBOL if instrument is None else _refusal(terms, instrument)
            if reason is None and terms.qty is None:
                notional, reason = self._notional(terms, instrument)  # type: ignore[arg-type]
        except (APIError, requests.RequestException):
            self._report("rejected", order, RejectReason.VENUE_ERROR)
            return
        if reason is None:
            tif = m.time_in_force(terms, instrument, notional)  # type: ignore[arg-type]
            reason = RejectReason.UNSUPPORTED if tif is None else None
        if reason is None:
            try:
                extended = m.extended_hours(terms, instrument, tif, self.extended_hours)  # type: ignore[arg-type]
                request = m.order_request(terms, tif, notional, extended)  # type: ignore[arg-type]
            except ValidationError:
                reason = RejectReason.INVALID_ORDER
        if reason is not None:
            self._report("rejected", order, reason)
            return
        self._send(order, request)

    def _send(self, order: Order, request: Any, legs: Sequence[Order] = ()) -> None:
        """POST one request for `order` (its legs ride on it), never twice (module docstring)."""
        from alpaca.common.exceptions import APIError
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
        self._refuse([order, *legs], reason)

    def _notional(self, order: Order, instrument: Instrument) -> tuple[Decimal | None, str | None]:
        """Dollars for an equity-fraction market order: the bot's equity x fraction
        (brokers.base.fraction_equity: not the account's), cents down, a buy within the account's
        buying power (crypto: the non-marginable one). Alpaca's minimum is $1."""
        if order.type is not OrderType.MARKET or order.equity_fraction is None:
            return None, RejectReason.UNSUPPORTED
        if not instrument.size_increment < 1:
            return None, RejectReason.UNSUPPORTED  # whole shares only: Alpaca takes no notional for it
        data = self.client.get_account()
        equity = fraction_equity(self.sizing_equity, lambda: Decimal(data.get("equity") or data["cash"]))
        if equity is None:
            return None, RejectReason.NO_LIQUIDITY  # the bot's books cannot be valued now (no price, no rate)
        budget = equity * order.equity_fraction
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

    def _cid_of(self, data: dict[str, Any]) -> str:
        """The engine's client id for an Alpaca order JSON: a leg's child, a replacement's original
        (under the lock)."""
        known = self._order_ids.get(data["id"])
        return known if known is not None else P.engine_id(data["client_order_id"])

    def _register(self, data: dict[str, Any]) -> list[tuple[Order, dict[str, Any]]]:
        """Learn the ids in an order JSON: its own, and its legs' (the engine children they are).
        Returns the legs that are engine orders (under the lock)."""
        cid = self._cid_of(data)
        self._order_ids[data["id"]] = cid
        if data.get("status") != "replaced":
            self._venue_ids[cid] = data["id"]
        out = []
        roles = self._legs_for.get(cid) or {}
        for leg in data.get("legs") or []:
            child = roles.get(P.leg_role(leg))  # type: ignore[arg-type]
            if child is None:
                continue
            self._order_ids[leg["id"]] = child.client_order_id
            if leg.get("status") != "replaced":
                self._venue_ids[child.client_order_id] = leg["id"]
            out.append((child, leg))
        return out

    def _venue_as_engine(self, data: dict[str, Any]) -> VenueOrder:
        """The order JSON in domain terms, under the engine's client id."""
        venue = self._venue(data)
        with self.lock:
            cid = self._cid_of(data)
        return venue if cid == venue.client_order_id else replace(venue, client_order_id=cid)

    def _apply(self, order: Order, data: dict[str, Any]) -> None:
        """Report what an order JSON from REST says (fills from the activities if it has any), and
        what its legs say."""
        with self.lock:
            legs = self._register(data)
        venue = self._venue_as_engine(data)
        with self.lock:
            if order.qty is None and venue.state is OrderState.FILLED:
                order.qty = venue.qty   # a notional order: its quantity is what filled
        try:
            fills = self._fills_of(data) if venue.filled_qty else []
        except VenueUnreachable as error:
            # fills unknown, not "no fills": the order is reported as far as its reported fills go
            # and stays open in the books (OrderReporter reports neither filled nor canceled/expired
            # while its fills fall short of filled_qty); the next reconciliation reads them and ends it
            log.warning("alpaca: fills of %s not read: %s (the order stays open until they are)",
                        venue.client_order_id, error)
            fills = []
        with self.lock:
            self._reporter.catch_up(_with_terms(venue, order), fills)
        for child, leg in legs:
            self._apply(child, leg)
        self._done(venue.client_order_id, data)

    def _done(self, cid: str, data: dict[str, Any]) -> None:
        """An order's end (filled, or canceled / expired / rejected with what it filled) releases
        the children waiting for it."""
        status = data.get("status")
        if status not in ("filled", "canceled", "expired", "rejected"):
            return
        with self.lock:
            self._outcome[cid] = m.dec(data.get("filled_qty")) or Decimal(0)
            waiting = cid in self._late
        if waiting:
            self._release_children(cid)

    def cancel(self, order: Order) -> None:
        from alpaca.common.exceptions import APIError
        if self._drop_waiting(order):
            return
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

    def _drop_waiting(self, order: Order) -> bool:
        """Cancel an order the adapter still holds (never sent): True if it was one."""
        cid = order.client_order_id
        with self.lock:
            for store in (self._late, self._oco):
                for key, group in list(store.items()):
                    if any(o.client_order_id == cid for o in group):
                        group[:] = [o for o in group if o.client_order_id != cid]
                        if not group:
                            del store[key]
                        self._reporter.canceled(order, self.clock_ns(), None)
                        return True
        return False

    def amend(self, order: Order, price: Decimal | None, qty: Decimal | None) -> str | None:
        """Change a working order through replace_order_by_id (module docstring): None when Alpaca
        took it, else why nothing changed."""
        from alpaca.common.exceptions import APIError
        reason = P.amend_refusal(order, price, qty)
        if reason is not None:
            return reason
        try:
            data = self._venue_order_json(order.client_order_id)
        except (APIError, requests.RequestException):
            return RejectReason.VENUE_ERROR
        if data is None or self._venue(data).state is not OrderState.ACCEPTED:
            return "NOT_WORKING"
        cid = order.client_order_id
        with self.lock:
            n = self._replacements[cid] = self._replacements.get(cid, 0) + 1
            self._replacing.add(data["id"])
        try:
            new = self.client.replace_order_by_id(data["id"], P.replace_request(order, price, qty,
                                                                                P.replacement_id(cid, n)))
        except APIError as error:
            with self.lock:
                self._replacing.discard(data["id"])
            return str(m.classify_error(error.status_code, m.error_message(str(error)))[1])
        except requests.RequestException:
            return RejectReason.TIMEOUT   # Alpaca may have replaced it: lookups follow `replaced_by`
        with self.lock:
            self._register(new)
        return None

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
        `expired`), `replaced` ends this order (its replacement arrives as a new one) unless this
        adapter asked for the replacement (amend: the replacement continues the engine's order).
        A leg's update is reported under the engine child's client id."""
        event = data.get("event")
        order_json = data["order"]
        with self.lock:
            self._register(order_json)
        venue = self._venue_as_engine(order_json)
        instrument = self._load_asset(venue.symbol)
        if instrument is None:
            return
        status = order_json.get("status")
        unread = False
        with self.lock:
            cid = venue.client_order_id
            order = self._reporter.orders.get(cid) or venue.to_order()
            ts = m.ns(data.get("timestamp"))
            if event in ("fill", "partial_fill"):
                if order.qty is None and status == "filled":
                    order.qty = venue.qty   # a notional order: its quantity is what filled
                self._reporter.fill(order, m.fill(instrument, cid, order_json["id"], order_json["side"],
                                                  m.dec(data["qty"]), m.dec(data["price"]),  # type: ignore[arg-type]
                                                  m.dec(order_json["filled_qty"]), ts))  # type: ignore[arg-type]
            elif event in ("canceled", "expired") and self._reporter.filled(cid) < venue.filled_qty:
                unread = True   # it ended with fills the stream never brought: read them first
            elif event == "canceled":
                self._reporter.canceled(order, ts, None)
            elif event == "expired":
                self._reporter.canceled(order, ts, "EXPIRED")
            elif event == "rejected":
                self._reporter.rejected(order, ts, RejectReason.INVALID_ORDER)
            elif event == "replaced" or status == "replaced":
                if order_json["id"] not in self._replacing:
                    self._reporter.canceled(order, ts, m.REPLACED)
            else:  # new, accepted, pending_new, pending_cancel, pending_replace, restated, done_for_day
                self._reporter.accepted(order, ts)
        if unread:
            self._apply(order, order_json)   # fills from the activities, then the end (calls _done)
        elif status != "replaced":
            self._done(cid, order_json)

    # -- reconciliation ---------------------------------------------------------------------------
    def reconcile(self) -> None:
        """Make the engine's view agree with Alpaca's (after a reconnect, or on demand). Orders are
        read nested: a bracket's legs under their parent, where the adapter learns which engine
        child each leg is."""
        from alpaca.trading.enums import QueryOrderStatus
        from alpaca.trading.requests import GetOrdersRequest
        open_rows = self.client.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=500, nested=True))
        seen = set()
        for data in open_rows:
            with self.lock:
                legs = self._register(data)
                cid = self._cid_of(data)
                seen.add(cid)
                seen.update(child.client_order_id for child, _ in legs)
            own = self._reporter.orders.get(cid)
            self._apply(own or self._venue_as_engine(data).to_order(), data)
        with self.lock:
            pending = [o for cid, o in self._reporter.orders.items()
                       if cid not in seen and self._reporter.reported(cid) not in _FINAL_STATES
                       and not self._waiting(cid)]
            pending += [o for cid, o in self._unresolved.items() if o not in pending]
        for order in pending:
            data = self._venue_order_json(order.client_order_id)
            if data is not None:
                self._apply(order, data)
            elif order.client_order_id in self._unresolved:
                self._report("rejected", order, RejectReason.TIMEOUT)
            with self.lock:
                self._unresolved.pop(order.client_order_id, None)

    def _waiting(self, cid: str) -> bool:
        """Held by this adapter, never sent (under the lock)."""
        return any(o.client_order_id == cid for store in (self._late, self._oco) for g in store.values() for o in g)

    # -- queries ----------------------------------------------------------------------------------
    def _venue_order_json(self, client_order_id: str) -> dict[str, Any] | None:
        """The Alpaca order working for an engine client id: by the venue id the adapter knows (a
        leg, a replacement), else by client id; a leg after a restart through its main order; an
        order this adapter replaced followed to its replacement (`replaced_by`)."""
        from alpaca.common.exceptions import APIError
        with self.lock:
            venue_id = self._venue_ids.get(client_order_id)
            main = self._main_of.get(client_order_id)
        try:
            data = (self.client.get_order_by_id(venue_id) if venue_id is not None
                    else self.client.get_order_by_client_id(client_order_id))
        except APIError as error:
            if error.status_code != 404:
                raise
            data = None
        if data is None and venue_id is None and main is not None and main != client_order_id:
            parent = self._venue_order_json(main)
            with self.lock:
                if parent is not None:
                    self._register(parent)   # learns the legs' ids
                venue_id = self._venue_ids.get(client_order_id)
            if parent is None or venue_id is None:
                return None
            data = self.client.get_order_by_id(venue_id)
        while data is not None and data.get("status") == "replaced" and data.get("replaced_by"):
            successor = self.client.get_order_by_id(data["replaced_by"])
            with self.lock:
                if P.engine_id(successor["client_order_id"]) != self._cid_of(data):
                    break   # someone else replaced it (the dashboard): this order ended
                self._register(data)
                self._register(successor)
            data = successor
        return data

    def order_status(self, client_order_id: str) -> VenueOrder | None:
        data = self._call(self._venue_order_json, client_order_id)
        return None if data is None else self._venue_as_engine(data)

    def open_orders(self) -> list[VenueOrder]:
        """Open orders, a bracket's legs included (under the engine children's ids where known)."""
        from alpaca.trading.enums import QueryOrderStatus
        from alpaca.trading.requests import GetOrdersRequest
        rows = self._call(self.client.get_orders, GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=500,
                                                                   nested=True))
        out = []
        for row in rows:
            with self.lock:
                self._register(row)
            for data in (row, *(row.get("legs") or [])):
                venue = self._venue_as_engine(data)
                if venue.is_open:
                    out.append(venue)
        return out

    def _venue(self, data: dict[str, Any]) -> VenueOrder:
        return m.venue_order(data, self._instruments)

    def positions(self) -> list[VenuePosition]:
        return [m.position(row, self._instruments) for row in self._call(self.client.get_all_positions)]

    def account(self) -> AccountSnapshot:
        return m.account(self._call(self.client.get_account))

    def fills_since(self, ts: int) -> list[Fill]:
        return [fill for fill in self._activity_fills(ts) if fill.ts >= ts]

    def charges_since(self, ts: int) -> list[AccountCharge]:
        """The account's crypto fees (CFEE activities) charged from `ts` (ns) on, oldest first
        (engine.charges.ChargeSource; module docstring). Asked for from a day earlier: the
        activities are dated, not timed."""
        after = m.iso(ts - m.NS_PER_DAY) if ts > m.NS_PER_DAY else None
        out = []
        for row in self._activity_rows(after, "CFEE"):
            if row.get("activity_type", "CFEE") != "CFEE":
                continue
            charge = m.cfee_charge(row, self._instruments)
            if charge is not None and charge.ts >= ts:
                out.append(charge)
        return sorted(out, key=lambda c: (c.ts, c.charge_id))

    def _activity_rows(self, after: str | None, kind: str = "FILL") -> list[dict[str, Any]]:
        """Every `kind` activity (FILL, CFEE) after `after`, oldest first, all pages (Alpaca
        pages at 100)."""
        params: dict[str, Any] = {"direction": "asc", "page_size": _PAGE_SIZE, **({"after": after} if after else {})}
        rows: list[dict[str, Any]] = []
        while True:
            page = self._call(self.client.get, f"/account/activities/{kind}", params)
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
                data = self._call(self.client.get_order_by_id, row["order_id"])
                with self.lock:
                    cid = self._cid_of(data)
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
