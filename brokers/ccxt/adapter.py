"""Any ccxt exchange, by id, behind the BrokerAdapter contract (binance and bybit are the tested ones).

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
  the next poll resolves it (found: reported; absent: rejected as TIMEOUT, never sent late; except
  a bracket's exit whose entry has filled, which is sent again under the same client id, one poll
  apart, up to `max_attempts`: a position must not stay bare for want of its stop).
- Time in force goes out in ccxt's unified params (GTC / IOC / FOK; `postOnly` for an order
  tagged "post_only"); DAY is refused (UNSUPPORTED). Amounts and prices are checked with ccxt's
  own `amount_to_precision` / `price_to_precision` for every precision mode (a value they would
  change is refused, never silently altered) and against the market's limits.
- An equity-fraction market order is a fraction of the bot's equity (`sizing_equity`, which the
  runtime sets: brokers.base.fraction_equity), within the account's free balance (futures: free
  margin x leverage), sized from the last price the adapter was given (`on_tick`, fed by the
  bot's own quotes), else one ticker read; if the price, the balance or the bot's equity cannot
  be read the order is REJECTED with the reason, never left in flight.
- Reads (fetch_*) retry with exponential backoff and jitter on 429 / 418 / 5xx / network errors;
  ccxt's own throttle (`enableRateLimit`) stays on. Submits are never retried blindly (above).
- A 429 / 418's Retry-After is a quiet period (`_quiet_until`): nothing is sent to the venue
  until it ends (binance lengthens an IP ban for every call made during it), by this adapter nor
  by any other of this process calling the same hosts (brokers/ccxt/quiet.py: bans are per IP). One that ends within
  `max_backoff_s` is waited out inside the call; a longer one (binance's 418 ban: 2 minutes to
  3 days) never is, the bot's thread is not held: the call returns or raises at once. During it
  a read raises VenueQuiet (a ccxt RateLimitExceeded, the transient error every reader handles,
  and the port's VenueUnreachable), a submit is REJECTED RATE_LIMITED unsent, a cancel does
  nothing (as a cancel the venue could not be reached for: the next poll shows the order), the
  poll is skipped; a submit answered 429 / 418 stays SUBMITTED, unresolved, for the first poll
  after the quiet period to look up (found: reported; absent: the unresolved path above).
- The REST execution stream is a poll of open orders and trades (`poll()`, or a thread): each poll
  reports only what is new (OrderReporter), so a poll after a dropped connection reconciles
  everything missed, and open orders nobody sent through this adapter are reported and adopted
  by the engine as external. The thread polls every `poll_interval_s` while orders are open and
  every `idle_poll_s` when none are, backing off (with jitter) while the venue fails.
- Push first (brokers/ccxt/stream.py): where ccxt.pro can watch the account (`push`), order
  updates and trades arrive from `watch_orders` / `watch_my_trades`; an order update waits for
  its trades (fetched over REST if the stream lost them), every (re)subscription reconciles over
  REST, and while the stream is live the poll thread is the slow backup (`idle_poll_s`).
- Connect looks back a bounded window (`lookback_s`, default a day): the trades of that window,
  and the ids of their orders in one `fetch_orders` per symbol, not the whole history one order
  at a time.
- Balances and positions: `positions()` are what the fills made (per market, exactly), never
  the wallet; `wallet()` is the account's holdings as the venue reports them, exactly; cash and
  equity are floored to the currency grid (never more than the account has).
- USD-M futures (binanceusdm's linear perpetuals, e.g. BTC/USDT:USDT; brokers/ccxt/futures.py):
  the same adapter over contract markets, push first as on spot (ccxt.pro binanceusdm over the
  account's listenKey stream, the same UserStream). An account in hedge mode (binance
  dualSidePosition=true) is refused at the first load, a ConfigError naming `dualSidePosition`:
  the engine nets one position per symbol per bot. Instruments are FUTUREs on margin at the account's
  leverage for the symbol; `leverage` / `margin_mode` given to the adapter are set on every
  traded symbol at the first load (checked first: a value the venue would refuse, or a margin
  mode change under an open position or order, is a ConfigError naming the field and nothing is
  changed); left out, the venue's own settings are read. A futures position is the venue's
  (positionRisk, signed), not the fills'; the account is the margin wallet (cash = wallet
  balance, equity = margin balance, buying power = available balance). Reduce-only orders carry
  `reduceOnly`; a plain stop is refused (UNSUPPORTED: ccxt sends it to binance's algo service),
  a protective one goes there and is followed (below). Funding is not a trade: `funding_since(ts)`
  lists the payments (FundingFee records) for the engine to book.
- Protective orders (issue 17 item 3; the mapping and its reasons: brokers/ccxt/protective.py):
  binance spot and USD-M futures declare `protective_orders` (and native_brackets /
  native_trailing; native_oco on spot only), every other exchange none. A bracket's children wait
  here, still PENDING_SUBMIT, until their entry is done, then go sized to what it filled (none
  filled: canceled PARENT_NOT_FILLED); a bracket's two exits go from the entry's first fill while it
  still works, sized to what filled, and grow with its later fills (replaced under `<id>.r<n>`:
  `_grow`); spot sends two exits as one OCO order list, futures as a
  reduce-only limit and a reduce-only algo stop that this adapter links (one filling cancels the
  other); trailing stops go as trailingDelta (spot) / callbackRate (futures). What cannot be
  expressed is refused at submit with the field named. `amend`: spot cancel-replace (the
  replacement `<id>.r<n>` reads back as the engine's order), futures modify of a LIMIT.

Thread-safety: one lock serialises every ccxt call and every report to the sink.
"""

from __future__ import annotations

import random
import re
import threading
import time
from dataclasses import replace
from decimal import Decimal
from typing import Any, Callable, TypeVar

import ccxt

from brokers.base import (AccountSnapshot, ExecutionSink, OrderReporter, RejectReason, SizingEquity, VenueOrder,
                          VenuePosition, VenueUnreachable, fraction_equity)
from brokers.ccxt import futures, mapping, quiet
from brokers.ccxt import protective as P
from brokers.ccxt.futures import FundingFee
from brokers.ccxt.stream import UserStream
from engine.errors import ConfigError
from engine.instrument import Instrument
from engine.orders import Fill, Order, OrderSide, OrderState, OrderType, amend_terms

T = TypeVar("T")
_DONE = (OrderState.FILLED, OrderState.CANCELED, OrderState.REJECTED, OrderState.EXPIRED)   # an entry's end
NS_PER_MS = 1_000_000
FUTURES_TRADE_WINDOW_MS = 7 * 86_400_000   # binance USD-M userTrades: one week per request

_UNKNOWN_OUTCOME = (ccxt.OperationFailed,)           # NetworkError, RequestTimeout, ExchangeNotAvailable, DDoS...
_TRANSIENT_READ = (ccxt.NetworkError, ccxt.OperationFailed)
# ccxt passes `clientOrderId` through as is in these exchanges' cancel_order: their own name for it
CANCEL_CLIENT_ID_PARAM = {"bybit": "orderLinkId"}
# The client ids a venue takes. Binance (spot and USD-M) refuses any newClientOrderId / clientAlgoId /
# OCO leg id outside ^[.A-Z:/a-z0-9_-]{1,36}$ with -1100. The engine's ids are `<bot id>-<8 digits>`
# (engine/oms.py next_client_order_id) and an amend's replacement adds `.r<n>` (protective.py), so
# a bot id has a length budget on these venues: refused when the bot starts (brokers/factory.py,
# `bot_id_refusal`) rather than mapped to shorter ids, so that the id at the venue stays the one in
# the books and a lookup after a crash needs no table; an order whose id is over anyway is refused
# before it is sent.
CLIENT_ID_RULES: dict[str, tuple[int, re.Pattern[str]]] = {
    "binance": (36, re.compile(r"[.A-Z:/a-z0-9_-]{1,36}")),
    "binanceusdm": (36, re.compile(r"[.A-Z:/a-z0-9_-]{1,36}")),
}
CLIENT_ID_SUFFIX_CHARS = len("-00000001") + len(".r99")   # a sequence number and up to 99 amends


def client_id_refusal(exchange_id: str, client_order_id: str) -> str | None:
    """Why `exchange_id` would refuse this client id, or None."""
    rule = CLIENT_ID_RULES.get(exchange_id)
    if rule is None or rule[1].fullmatch(client_order_id):
        return None
    return (f"{RejectReason.INVALID_ORDER}: client id of {len(client_order_id)} characters; {exchange_id} "
            f"takes 1-{rule[0]} of A-Z a-z 0-9 . : / _ -")


def bot_id_refusal(exchange_id: str, bot_id: str | None) -> str | None:
    """Why a bot with this id cannot trade on `exchange_id` (its client ids would be refused), or None."""
    rule = CLIENT_ID_RULES.get(exchange_id)
    if rule is None or bot_id is None:
        return None
    most = rule[0] - CLIENT_ID_SUFFIX_CHARS
    if len(bot_id) > most or client_id_refusal(exchange_id, bot_id) is not None:
        return (f"bot id too long for this venue: {exchange_id} takes client ids of at most {rule[0]} "
                f"characters, and a bot's are its id + '-<8 digits>' (+ '.r<n>' when amended), so a bot "
                f"id there has at most {most} characters (this one has {len(bot_id)})")
    return None
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "binance": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "fetchMargins": False,
                "fetchOpenOrders": {"warnWithoutSymbol": False}},
    "bybit": {"fetchMarkets": {"types": ["spot"]}},
    "binanceusdm": {"fetchMarkets": {"types": ["linear"]}, "fetchCurrencies": False,
                    "fetchOpenOrders": {"warnWithoutSymbol": False}},
}


class CcxtAdapter:
    """BrokerAdapter over one ccxt exchange account (spot, or USD-M futures)."""

    sizing_equity: SizingEquity | None = None  # the bot's equity (brokers.base.fraction_equity); the runtime sets it

    def __init__(self, exchange_id: str, config: dict[str, Any] | None = None, symbols: list[str] | None = None,
                 exchange: Any = None, currency: str | None = None, max_attempts: int = 3,
                 backoff_s: float = 0.5, max_backoff_s: float = 8.0, poll_interval_s: float | None = 1.0,
                 sandbox: bool = False, idle_poll_s: float | None = None, lookback_s: float = 86_400.0,
                 push: Any = "auto", leverage: Any = None, margin_mode: Any = None,
                 clock: Callable[[], float] | None = None, sleep: Callable[[float], Any] | None = None) -> None:
        """`exchange`: an already built ccxt exchange (tests point one at a fake); otherwise one is
        built from `exchange_id` and `config` (apiKey, secret, ...). `symbols` limits the markets
        the adapter trades and polls (unified symbols, e.g. "BTC/USDT"). `sandbox` switches ccxt
        to the exchange's testnet (`set_sandbox_mode`) before any call is made. `push`: a ccxt.pro
        exchange for the account's push stream; "auto" builds one when the adapter builds its own
        exchange and ccxt.pro has `watchOrders` for it; None: poll only. `leverage` / `margin_mode`
        ("isolated" or "cross"): the account's futures settings (see the module docstring);
        refused here, naming the field, if malformed. `clock` (seconds, monotonic) and `sleep`
        (a wait of that many seconds): what backoffs and a Retry-After's quiet period are timed
        and waited with (tests inject their own; by default time.monotonic, time.sleep for a
        backoff and a wait that `close` ends early for a Retry-After)."""
        self.settings = futures.parse_settings(leverage, margin_mode)
        if exchange is None:
            cls = getattr(ccxt, exchange_id)
            options = {**DEFAULT_OPTIONS.get(exchange_id, {}), **(config or {}).get("options", {})}
            exchange = cls({"enableRateLimit": True, **(config or {}), "options": options})
            if sandbox:
                exchange.set_sandbox_mode(True)
            if push == "auto":
                push = _pro_exchange(exchange_id, {"enableRateLimit": True, **(config or {}), "options": options},
                                     sandbox)
        elif push == "auto":
            push = None
        self.exchange = exchange
        self.name = exchange.id.upper()
        self.symbols = list(symbols or [])
        self.currency = currency
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.poll_interval_s = poll_interval_s
        self.idle_poll_s = idle_poll_s if idle_poll_s is not None else (None if poll_interval_s is None
                                                                        else max(poll_interval_s, 10 * poll_interval_s))
        self.lookback_ms = int(lookback_s * 1000)
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
        self._marks: dict[str, tuple[Decimal | None, Decimal | None]] = {}  # symbol -> (bid, ask) last given
        self._trade_floor: dict[str, int] = {}       # symbol -> ms: the earliest time trades were fetched from
        self._failures = 0                           # polls failed in a row (the thread's backoff)
        self._push = push
        self._stream: UserStream | None = None
        self._pending: dict[str, dict[str, Any]] = {}  # venue order id -> pushed order awaiting its trades
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._clock: Callable[[], float] = clock or time.monotonic
        self._quiet_key = quiet.origin(exchange)  # quiet periods are shared with every adapter calling these hosts
        self._pause: Callable[[float], Any] = sleep or time.sleep           # a backoff
        self._wait: Callable[[float], Any] = sleep or self._stop.wait       # a short Retry-After (close ends it)
        self.futures = False                         # the markets are linear contracts (USD-M futures)
        self._funding: dict[str, FundingFee] = {}    # funding id -> payment seen
        # protective orders (brokers/ccxt/protective.py): linked orders held until they can go
        self._waiting = P.Waiting()
        self._aliases: dict[str, str] = {}           # engine client id -> the venue client id working for it
        self._replacements: dict[str, int] = {}      # engine client id -> replacements asked so far
        self._replaced: set[str] = set()             # venue ids an amend replaced: their cancel is no cancel
        self._algo: set[str] = set()                 # engine client ids sent to binance's algo service (futures)
        self._pairs: list[list[Order]] = []          # futures bracket exits the adapter links (no OCO list there)
        self._resent: dict[str, int] = {}            # exits sent again after a lookup proved them absent
        # a bracket whose entry still works, partly filled (D7a): its exits went to the venue sized to what had
        # filled and grow with each later fill (`_grow`): entry id -> (its exits, the quantity they protect)
        self._growing: dict[str, tuple[list[Order], Decimal]] = {}
        self._exits_now: dict[str, Order] = {}       # a fired stop's market exit for a later fill, by engine id

    @property
    def protective_orders(self) -> bool:
        """Brackets and trailing stops mapped to the venue's own orders: binance spot and USD-M
        futures (brokers/ccxt/protective.py). Elsewhere False, so the OMS refuses or emulates them."""
        return P.supported(self.exchange.id, self.futures)

    # the capabilities engine/emulation.py reads
    native_brackets = native_trailing = protective_orders

    @property
    def native_oco(self) -> bool:
        """A standalone OCO group: an order list on binance spot; futures have none (the OMS emulates)."""
        return self.protective_orders and not self.futures

    # -- lifecycle ------------------------------------------------------------------------------
    def connect(self, sink: ExecutionSink) -> None:
        with self._lock:
            self._reporter.sink = sink
            self._load_instruments()
            self.connected = True
        self.poll()
        if self._push is not None and self._stream is None:
            self._stream = UserStream(self._push, self._on_push_orders, self._on_push_trades, self._on_push_live,
                                      backoff_s=self.backoff_s, max_backoff_s=max(self.max_backoff_s, self.backoff_s),
                                      quiet_s=self._quiet_left)
            self._stream.start()
        if self.poll_interval_s and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"{self.name}-stream", daemon=True)
            self._thread.start()

    @property
    def pushing(self) -> bool:
        """True while the push stream is subscribed (the REST poll is then the slow backup)."""
        return self._stream is not None and self._stream.live

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
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
        symbols = self.symbols or [s for s, m in markets.items() if (m.get("spot") or futures.is_futures_market(m))
                                   and m.get("active") is not False]
        symbols = [s for s in symbols if s in markets]
        kinds = {futures.is_futures_market(markets[s]) for s in symbols}
        if len(kinds) > 1:
            raise ConfigError("symbols", f"{self.name}: spot and futures markets in one adapter; use one account each")
        self.futures = kinds == {True}
        if self.futures:
            self._refuse_hedge_mode(symbols)
        leverages = self._futures_settings(symbols) if self.futures else {}
        if not self.futures and self.settings.given:
            field = "leverage" if self.settings.leverage is not None else "margin_mode"
            raise ConfigError(field, f"{self.name} trades spot markets here: only futures markets take a {field}")
        mode = self.exchange.precisionMode
        self._instruments = {s: mapping.instrument_from_market(markets[s], mode, self.name, leverages.get(s))
                             for s in symbols}
        if self.currency is None and self._instruments:
            self.currency = next(iter(self._instruments.values())).quote_currency

    def _refuse_hedge_mode(self, symbols: list[str]) -> None:
        """A futures account in hedge mode (binance dualSidePosition=true) is refused before
        anything is set or sent: there every order must name a LONG or SHORT leg and one symbol
        holds two positions, while the engine nets one position per symbol per bot (orders without
        a leg would all be refused, and the venue's positions would not be the bot's)."""
        if not symbols or not self.exchange.has.get("fetchPositionMode"):
            return
        try:
            mode = self._read(self.exchange.fetch_position_mode, symbols[0])
        except ccxt.NotSupported:
            return
        if mode.get("hedged"):
            raise ConfigError("dualSidePosition", f"{self.name}: the account is in hedge mode (dualSidePosition="
                                                  "true); the engine nets one position per symbol per bot: switch "
                                                  "the account to one-way mode (dualSidePosition=false) to trade it")

    def _futures_settings(self, symbols: list[str]) -> dict[str, Decimal]:
        """Apply the account's leverage and margin mode to `symbols` and return each symbol's
        leverage (the venue's own where the config gives none; 1 if the venue cannot say, the
        most margin a position could need). Everything is checked before anything is set: a
        leverage above a symbol's maximum, or a margin mode change on a symbol with an open
        position or order, is refused (ConfigError naming the field), as is what the venue
        still refuses."""
        if not symbols:
            return {}
        wanted = self.settings
        current: dict[str, Any] = {}
        if self.exchange.has.get("fetchLeverages"):
            current = self._read(self.exchange.fetch_leverages, symbols)
        if wanted.leverage is not None and self.exchange.has.get("fetchLeverageTiers"):
            tiers = self._read(self.exchange.fetch_leverage_tiers, symbols)
            for symbol in symbols:
                top = max((int(t.get("maxLeverage") or 0) for t in tiers.get(symbol) or []), default=0)
                if top and wanted.leverage > top:
                    raise ConfigError("leverage", f"{symbol} allows at most {top}x, not {wanted.leverage}x")
        to_switch = [s for s in symbols if wanted.margin_mode is not None
                     and (current.get(s) or {}).get("marginMode") != wanted.margin_mode]
        if to_switch:
            held = futures.positions_from_venue(self._read(self.exchange.fetch_positions, to_switch), set(to_switch))
            busy = [p.symbol for p in held] + [s for s in to_switch if self._read(self.exchange.fetch_open_orders, s)]
            if busy:
                raise ConfigError("margin_mode", f"{busy[0]} has an open position or order: its margin mode "
                                                 f"cannot change to {wanted.margin_mode} until it is flat")
        out: dict[str, Decimal] = {}
        for symbol in symbols:
            have = current.get(symbol) or {}
            try:
                if symbol in to_switch:
                    self._call(self.exchange.set_margin_mode, wanted.margin_mode, symbol)
                if wanted.leverage is not None and have.get("longLeverage") != wanted.leverage:
                    self._call(self.exchange.set_leverage, wanted.leverage, symbol)
            except ccxt.ExchangeError as error:  # the venue's refusal, its message kept (no secrets in it)
                field = "leverage" if "everage" in str(error) else "margin_mode"
                raise ConfigError(field, f"{symbol}: the venue refused it: {str(error)[:200]}") from None
            value = wanted.leverage or have.get("longLeverage")
            out[symbol] = Decimal(int(value)) if value else Decimal(1)
        return out

    # -- orders ---------------------------------------------------------------------------------
    def submit(self, order: Order) -> None:
        with self._lock:
            self._reporter.track(order)
            self._sides[order.client_order_id] = order.side
            if order.parent_id is not None or order.oco_group is not None or order.is_trailing:
                self._submit_linked(order)
            else:
                self._send_checked(order)
            self._release_waiting()

    def _send_checked(self, order: Order, qty: Decimal | None = None) -> None:
        """Check, then send one order (`qty`: a child sized to what its entry filled)."""
        terms = order if qty is None else replace(order, qty=qty)
        if self.futures and order.parent_id is not None:
            terms = replace(terms, reduce_only=True)   # an exit: it may never open a position
        instrument = self._instruments.get(order.symbol)
        reason = self._refusal(terms, instrument)
        if reason is None and terms.qty is None:
            reason = self._size_by_fraction(order, instrument)  # type: ignore[arg-type]
            terms = order
        if reason is None:
            reason = self._precision_refusal(terms)
        if reason is None:
            reason = self._quiet_refusal()
        if reason is not None:
            self._reporter.rejected(order, time.time_ns(), reason)
            return
        # from here the venue may get it: an error past this point leaves it SUBMITTED, for a
        # lookup by client id, never REJECTED by the engine while the venue may hold it
        self._reporter.submitted(order, time.time_ns())
        if P.is_algo(terms, self.futures):
            self._algo.add(order.client_order_id)
        self._submit(terms, instrument,  # type: ignore[arg-type]
                     P.trailing_params(terms, self.futures) if terms.is_trailing else None,
                     venue_cid=self._aliases.get(order.client_order_id))

    def _quiet_refusal(self) -> str | None:
        """Why no order can go now (a 429 / 418's Retry-After still runs), or None. Refused at once,
        never queued: an order sent when the quiet ends would go out at prices nobody decided on."""
        left = self._quiet_left()
        if left <= 0:
            return None
        return f"{RejectReason.RATE_LIMITED}: {VenueQuiet.left(self.name, left)}"

    def _refusal(self, order: Order, instrument: Instrument | None) -> RejectReason | str | None:
        illegal = client_id_refusal(self.exchange.id, order.client_order_id)
        if illegal is not None:
            return illegal   # the venue would refuse every such order: say why before sending
        market = self.exchange.markets.get(order.symbol) if instrument is not None else None
        cost_min = None if market is None or (self.futures and order.reduce_only) else mapping.min_cost(market)
        # futures stops go to the algo service, followed only for the protective orders mapped here
        linked = order.parent_id is not None or order.is_trailing
        return mapping.check_order(order, instrument, cost_min,
                                   stops=not self.futures or (linked and self.protective_orders))

    # -- protective orders (brokers/ccxt/protective.py) -------------------------------------------------
    def _submit_linked(self, order: Order) -> None:
        """A bracket child, an OCO member or a trailing stop (under the lock): refused now if the
        venue cannot take it; a child waits for its entry, an OCO member for its sibling."""
        reason = P.refusal(order, self.futures) if self.protective_orders else \
            f"{RejectReason.UNSUPPORTED}: {self.exchange.id} protective orders are not mapped here"
        if reason is None and order.parent_id is not None and not self._reporter.knows(order.parent_id):
            reason = f"{RejectReason.INVALID_ORDER}: parent {order.parent_id} was never sent through this adapter"
        if reason is not None:
            self._reporter.rejected(order, time.time_ns(), reason)
            return
        if order.parent_id is not None:
            self._waiting.add_child(order)
        elif order.oco_group is not None:
            group = self._waiting.add_oco(order)
            if group is None:
                return  # its sibling follows (Strategy.order(oco=first))
            if group[0].qty is None or group[0].qty != group[1].qty:
                for member in group:
                    self._reporter.rejected(member, time.time_ns(), P.unsupported(
                        f"takes an OCO order list of one quantity, got {group[0].qty} and {group[1].qty}"))
                return
            self._send_oco(group, group[0].qty)
        else:
            self._send_checked(order)

    def _release_waiting(self) -> None:
        """Send (or cancel) the children whose entry is done (under the lock): sized to what it filled;
        an entry that filled nothing cancels them. A bracket's two exits (one OCO group) go from the
        entry's first fill while it still works, sized to what filled, and grow with its later fills
        (`_grow`), so the part that filled is protected at the venue, not only while the bot runs."""
        for parent_id in list(self._waiting.children):
            group = self._waiting.complete(parent_id)
            state = self._reporter.reported(parent_id)
            if group is None:
                continue
            parent = self._reporter.orders.get(parent_id)
            filled = self._protected(parent)
            if state not in _DONE:
                if state is OrderState.PARTIALLY_FILLED and filled > 0 and self._grows(group, filled):
                    self._waiting.take(parent_id)
                    self._growing[parent_id] = (group, filled)
                    self._send_exits(group, filled)
                continue
            self._waiting.take(parent_id)
            if filled <= 0:
                for child in group:
                    self._reporter.canceled(child, time.time_ns(), "PARENT_NOT_FILLED")
                continue
            grouped = [c for c in group if c.oco_group is not None]
            if len(grouped) == 2 and not self.futures:
                self._send_oco(grouped, filled)
            for child in group:
                if child.oco_group is None or self.futures:
                    self._send_checked(child, filled)
            if len(grouped) == 2 and self.futures:
                self._pairs.append(grouped)   # no OCO list on futures: the adapter links them
        for parent_id in list(self._growing):
            self._grow(parent_id)
        self._settle_pairs()

    def _protected(self, parent: Order | None) -> Decimal:
        """What a bracket's exits sell: the entry's fills, less a fee the venue took in the coin
        bought (Binance spot without BNB takes 0.1 % of it): the wallet received that much, and exits
        for the whole filled quantity were refused for want of the fee's coins (-2010: the position
        left bare) or sold the account's other coins. On the lot grid, rounded down."""
        if parent is None:
            return Decimal(0)
        filled = parent.filled_qty
        instrument = self._instruments.get(parent.symbol)
        if self.futures or parent.side is not OrderSide.BUY or instrument is None or not filled:
            return filled
        fee = self._reporter.fee_in(parent.client_order_id, instrument.base)
        return mapping.floor_to(filled - fee, instrument.size_increment) if fee else filled

    # -- a partly filled entry's exits (D7a) -----------------------------------------------------------
    def _grows(self, group: list[Order], qty: Decimal) -> bool:
        """Whether a waiting bracket's exits go before its entry is done: exactly one OCO pair (a
        take-profit and a plain stop, not trailing: a replaced trailing stop would trail afresh) that the
        venue would take at `qty` (a first fill below the market's minimum waits for more)."""
        if len(group) != 2 or any(c.oco_group is None or c.is_trailing for c in group):
            return False
        if {P.role(c) for c in group} != {P.TAKE_PROFIT, P.STOP_LOSS}:
            return False
        return self._sizable(group, qty)

    def _sizable(self, group: list[Order], qty: Decimal) -> bool:
        instrument = self._instruments.get(group[0].symbol)
        for child in group:
            terms = replace(child, qty=qty, reduce_only=self.futures)
            if self._refusal(terms, instrument) is not None or self._precision_refusal(terms) is not None:
                return False
        return True

    def _send_exits(self, group: list[Order], qty: Decimal) -> None:
        """A bracket's two exits at `qty`: spot one OCO list, futures two reduce-only orders it links."""
        if self.futures:
            for child in group:
                self._send_checked(child, qty)
            if not any(group is pair or set(map(id, group)) == set(map(id, pair)) for pair in self._pairs):
                self._pairs.append(group)
        else:
            self._send_oco(group, qty)

    def _grow(self, parent_id: str) -> None:
        """Bring a partly filled entry's exits up to what it has filled (under the lock). While neither
        exit has a fill, they are replaced (Binance cannot amend an order list, nor a USD-M algo order):
        cancel, then the same exits for the whole filled quantity under `<id>.r<n>`, so the venue never
        holds more protection than what filled. Once the stop has executed (the market went through it),
        what the entry fills after is sold at once: a MARKET `<stop id>.r<n>` (reduce-only on futures), the
        stop's own fill. Done once the entry is done and protected whole, or an exit ended otherwise."""
        group, protected = self._growing[parent_id]
        parent = self._reporter.orders.get(parent_id)
        done = self._reporter.reported(parent_id) in _DONE
        filled = self._protected(parent)
        ids = [c.client_order_id for c in group]
        if any(cid in self._unresolved for cid in ids):
            return   # a send whose outcome is unknown: the poll looks it up first
        states = [self._reporter.reported(cid) for cid in ids]
        if filled <= protected:
            if done:
                del self._growing[parent_id]
            return
        if any(state is OrderState.SUBMITTED for state in states):
            return
        fills = [self._reporter.filled(cid) for cid in ids]
        if all(state is OrderState.ACCEPTED for state in states) and not any(fills):
            if self._sizable(group, filled) and self._replace_exits(group, filled):
                self._growing[parent_id] = (group, filled)
            return
        stop = next(c for c in group if P.role(c) == P.STOP_LOSS)
        if self._reporter.filled(stop.client_order_id) > 0:
            if self._exit_now(stop, filled - protected):
                self._growing[parent_id] = (group, filled)
            return
        del self._growing[parent_id]   # an exit ended (canceled, or the take-profit executed): no more growth

    def _next_id(self, cid: str) -> str | None:
        """The next replacement client id for an engine order (`<id>.r<n>`), or None past the venue's limit."""
        n = self._replacements.get(cid, 0) + 1
        new_cid = P.replacement_id(cid, n)
        if client_id_refusal(self.exchange.id, new_cid) is not None:
            return None
        self._replacements[cid] = n
        return new_cid

    def _replace_exits(self, group: list[Order], qty: Decimal) -> bool:
        """Cancel a bracket's working exits and send them again at `qty` under new client ids. A cancel the
        venue refuses (an exit executed meanwhile) sends nothing: what it holds is reported instead."""
        counts = {c.client_order_id: self._replacements.get(c.client_order_id, 0) + 1 for c in group}
        new_ids = {cid: P.replacement_id(cid, n) for cid, n in counts.items()}
        if any(client_id_refusal(self.exchange.id, new_cid) for new_cid in new_ids.values()):
            return False   # no id left for a replacement: the exits stay as they are
        if self._quiet_left() > 0:
            return False
        cancels = group[:1] if not self.futures else group   # one leg's cancel cancels the whole order list
        for child in cancels:
            params: dict[str, Any] = {"clientOrderId": self._aliases.get(child.client_order_id, child.client_order_id)}
            if child.client_order_id in self._algo:
                params["trigger"] = True
            try:
                self._call(self.exchange.cancel_order, None, child.symbol, params)
            except (ccxt.OrderNotFound, ccxt.OperationRejected, ccxt.InvalidOrder, ccxt.ExchangeError,
                    *_TRANSIENT_READ):
                for member in group:   # executed meanwhile, or the venue could not be reached: what it holds
                    try:
                        self._resolve(member)
                    except ccxt.BaseError:
                        pass
                return False
        for cid, new_cid in new_ids.items():
            self._replaced.update(v for v, c in self._venue_ids.items() if c == cid)
            self._replacements[cid] = counts[cid]
            self._aliases[cid] = new_cid
        self._send_exits(group, qty)
        return True

    def _exit_now(self, stop: Order, qty: Decimal) -> bool:
        """What an entry filled after its stop executed, sold at once as the stop's: a MARKET order under
        `<stop id>.r<n>` (on futures reduce-only, in the matching engine, not the algo service), its fills
        the stop's. False when nothing was sent (the venue would refuse it, or a quiet period runs): the next
        pass tries again."""
        terms = replace(stop, qty=qty, type=OrderType.MARKET, stop_price=None, limit_price=None,
                        reduce_only=self.futures or stop.reduce_only)
        instrument = self._instruments[stop.symbol]
        if self._refusal(terms, instrument) is not None or self._precision_refusal(terms) is not None or \
                self._quiet_left() > 0:
            return False
        new_cid = self._next_id(stop.client_order_id)
        if new_cid is None:
            return False
        self._aliases[stop.client_order_id] = new_cid
        self._exits_now[stop.client_order_id] = terms
        self._submit(terms, instrument, venue_cid=new_cid)
        return True

    def track(self, orders: list[Order]) -> None:
        """Orders restored from the journal after a restart (OrderManager.restore calls this): on
        futures, a bracket's two working exits are linked again (`_pairs`), so the one that fills
        still cancels the other; without it the orphan stop would close the bot's next position."""
        with self._lock:
            if not self._instruments:
                self._load_instruments()
            if not self.futures:
                return  # spot: the venue's order list links them itself
            linked = {id(o) for pair in self._pairs for o in pair}
            groups: dict[tuple[str, str], list[Order]] = {}
            for order in orders:
                if order.parent_id is None or order.oco_group is None or order.is_terminal or id(order) in linked:
                    continue
                groups.setdefault((order.parent_id, order.oco_group), []).append(order)
            for group in groups.values():
                if len(group) != 2:
                    continue
                for order in group:
                    self._reporter.track(order)
                    self._sides[order.client_order_id] = order.side
                    if P.is_algo(order, self.futures):
                        self._algo.add(order.client_order_id)
                self._pairs.append(group)

    def _settle_pairs(self) -> None:
        """Futures bracket exits (under the lock): once one has a fill, or has ended, cancel the other
        (reported as its cancel), as binance spot's order list does by itself."""
        for pair in list(self._pairs):
            states = [self._reporter.reported(o.client_order_id) for o in pair]
            if not any(s in (OrderState.PARTIALLY_FILLED, *_DONE) for s in states):
                continue
            self._pairs.remove(pair)
            for order, state in zip(pair, states):
                if state in (OrderState.SUBMITTED, OrderState.ACCEPTED):
                    self._cancel(order)

    def _send_oco(self, members: list[Order], qty: Decimal) -> None:
        """Two exits as one Binance order list (POST /api/v3/orderList/oco), never sent twice: an
        unknown outcome leaves both SUBMITTED for the poll to look up by client id."""
        instrument = self._instruments.get(members[0].symbol)
        # each leg under the client id working for its engine order (a replacement's `<id>.r<n>`, else its own)
        sized = [replace(m, qty=qty, client_order_id=self._aliases.get(m.client_order_id, m.client_order_id))
                 for m in members]
        reason: str | None = next((str(r) for s in sized if (r := self._refusal(s, instrument)) is not None), None)
        if reason is None:
            reason = next((str(r) for s in sized if (r := self._precision_refusal(s)) is not None), None)
        plan = None if reason is not None else P.oco_plan(sized, qty, self.exchange.market(members[0].symbol)["id"],
                                                          _text)
        if isinstance(plan, str):
            reason = plan
        if reason is None:
            reason = self._quiet_refusal()
        if reason is not None or plan is None:
            for member in members:
                self._reporter.rejected(member, time.time_ns(), reason or RejectReason.INVALID_ORDER)
            return
        for member in members:
            self._reporter.submitted(member, time.time_ns())
        try:
            answer = self._call(self.exchange.privatePostOrderListOco, plan.params)
        except (ccxt.InsufficientFunds, ccxt.BadSymbol, ccxt.MarketClosed, ccxt.AuthenticationError,
                ccxt.PermissionDenied, ccxt.NotSupported, ccxt.InvalidOrder) as error:
            for member in members:
                self._reporter.rejected(member, time.time_ns(), mapping.reject_reason(error, member, instrument))
            return
        except (_UNKNOWN_OUTCOME + (ccxt.ExchangeError,)):
            self._unresolved.update(m.client_order_id for m in members)   # the poll looks them up
            return
        market = self.exchange.market(members[0].symbol)
        by_id = {s.client_order_id: m for s, m in zip(sized, members)}
        for report in answer.get("orderReports") or []:
            raw = self.exchange.parse_order(report, market)
            member = by_id.get(str(raw.get("clientOrderId")))
            if member is not None:
                self._on_order_answer(member, raw, instrument)  # type: ignore[arg-type]

    def _submit(self, order: Order, instrument: Instrument, terms: tuple[str, dict[str, Any]] | None = None,
                venue_cid: str | None = None) -> None:
        """Send one order; `venue_cid`: the client id it goes under when not the engine's (a bracket exit's
        replacement `<id>.r<n>`, reported as the engine's order)."""
        kind, params = terms or mapping.ccxt_type_and_params(order, _text, contract=self.futures)
        if venue_cid is not None:
            params = {**params, "clientOrderId": venue_cid}
        price = _text(order.limit_price) if order.limit_price is not None else None
        reason: RejectReason = RejectReason.VENUE_ERROR
        for attempt in range(self.max_attempts):
            try:
                raw = self._call(self.exchange.create_order, order.symbol, kind, mapping.ccxt_side(order.side),
                                 _text(order.qty), price, dict(params))
            except (ccxt.InsufficientFunds, ccxt.BadSymbol, ccxt.MarketClosed, ccxt.AuthenticationError,
                    ccxt.PermissionDenied, ccxt.NotSupported) as error:
                self._reporter.rejected(order, time.time_ns(), mapping.reject_reason(error, order, instrument))
                return
            except ccxt.InvalidOrder as error:
                if mapping.reject_reason(error) is RejectReason.DUPLICATE and self._resolve(order):
                    return  # the venue has an order with this id: it is this one
                self._reporter.rejected(order, time.time_ns(), mapping.reject_reason(error, order, instrument))
                return
            except VenueQuiet:  # not sent (a quiet period began; any earlier attempt was proved absent)
                reason = RejectReason.RATE_LIMITED
                break
            except _UNKNOWN_OUTCOME as error:
                reason = mapping.reject_reason(error, order, instrument)
                # a 429 / 418 (Retry-After) holds the lookup too: a short one is waited out first; during
                # a longer one the lookup is not made (no call) and the poll after it resolves the order
                if 0 < self._quiet_left() <= self.max_backoff_s:
                    self._wait(self._quiet_left())
                found = self._lookup(order)
                if found is None:       # the lookup itself failed, or was not made: resolve on a later poll
                    self._unresolved.add(order.client_order_id)
                    self._reporter.submitted(order, time.time_ns())
                    return
                if found is not False:  # the venue has it: report, never send again
                    return
                try:
                    self._sleep(attempt)
                except VenueQuiet:      # provably absent, and the venue asks for quiet: not sent again
                    reason = RejectReason.RATE_LIMITED
                    break
                continue
            except ccxt.ExchangeError as error:  # a refusal we cannot name: the venue may still hold it
                if not self._resolve(order):
                    self._reporter.rejected(order, time.time_ns(), mapping.reject_reason(error, order, instrument))
                return
            self._on_order_answer(order, raw, instrument)
            return
        self._reporter.rejected(order, time.time_ns(), reason)

    def _on_order_answer(self, order: Order, raw: dict[str, Any], instrument: Instrument) -> None:
        if order.client_order_id in self._algo and P.is_algo(order, self.futures):  # not a fired stop's market exit
            raw = _algo_raw(raw)
        venue = mapping.venue_order(raw, instrument, order.client_order_id, order)
        self._venue_ids[venue.venue_order_id] = order.client_order_id
        market_id = self.exchange.market(order.symbol)["id"]
        for trade in raw.get("trades") or []:
            fill = mapping.fill_from_trade(trade, market_id, order.client_order_id, order.side, instrument, venue.ts)
            self._remember_fill(venue.venue_order_id, fill)
        if venue.filled_qty and not raw.get("trades"):  # binance futures answers with the status, no fills
            try:
                self._fetch_trades(order.symbol)
            except _TRANSIENT_READ:
                pass  # the order is reported without them; the next poll brings them
        self._report(venue)

    def _lookup(self, order: Order) -> bool | None:
        """After an unknown outcome: True if the venue has the order (reported), False if it
        provably has not, None if the venue could not be asked."""
        try:
            found = self._resolve(order, raise_errors=True)
        except _TRANSIENT_READ:
            return None
        return found

    def _record(self, symbol: str, cid: str) -> dict[str, Any]:
        """The venue's order for an engine client id (OrderNotFound if none): the one working for it
        (an amend's replacement, found by its `<id>.r<n>` id even after a restart), or a futures stop
        at the algo service, followed to its matching-engine order once triggered."""
        try:
            raw = self._read(self._fetch_order, None, symbol, {"clientOrderId": self._aliases.get(cid, cid)})
        except ccxt.OrderNotFound:
            if not (self.futures and self.protective_orders):
                raise
            raw = self._algo_record(symbol, cid)
        if raw.get("status") == "canceled" and self.native_oco and cid not in self._aliases:
            return self._replacement(symbol, cid) or raw
        return raw

    def _algo_record(self, symbol: str, cid: str) -> dict[str, Any]:
        """A futures stop's record: the algo service's (not triggered: working), else the order it
        placed in the matching engine (`actualOrderId`), whose fills are the engine order's."""
        raw = _algo_raw(self._read(self.exchange.fetch_order, None, symbol,
                                   {"clientOrderId": self._aliases.get(cid, cid), "trigger": True}))
        self._algo.add(cid)
        if raw.get("status") != "closed":
            return raw
        actual = (raw.get("info") or {}).get("actualOrderId")
        if not actual:
            return {**raw, "status": "open"}   # triggering: still working until the order is placed
        self._venue_ids[str(actual)] = cid
        known = self._fills_by_order.get(str(actual), [])   # read before its id was known: re-owned
        self._fills_by_order[str(actual)] = [replace(f, client_order_id=cid) for f in known]
        self._fills.update({f.execution_id: f for f in self._fills_by_order[str(actual)]})
        return self._read(self._fetch_order, str(actual), symbol)

    def _replacement(self, symbol: str, cid: str) -> dict[str, Any] | None:
        """The latest cancel-replace of a canceled order (`<cid>.r<n>`) in the lookback window, learned
        as the order working for `cid`; None if it was never replaced."""
        if not self.exchange.has.get("fetchOrders"):
            return None
        since = self.exchange.milliseconds() - self.lookback_ms
        ours = [r for r in self._read(self.exchange.fetch_orders, symbol, since)
                if P.engine_id(str(r.get("clientOrderId") or "")) == cid]
        found = [r for r in ours if str(r.get("clientOrderId")) != cid]
        if not found:
            return None
        latest = max(found, key=lambda r: int(str(r["clientOrderId"]).rpartition(P.REPLACEMENT_MARK)[2]))
        self._replaced.update(str(r.get("id")) for r in ours if r is not latest)
        self._aliases[cid] = str(latest["clientOrderId"])
        self._venue_ids[str(latest.get("id"))] = cid
        return latest

    def _resolve(self, order: Order, raise_errors: bool = False) -> bool:
        """Look the order up by client order id and report what the venue has; False if absent."""
        try:
            raw = self._record(order.symbol, order.client_order_id)
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
            if self._waiting.drop(order.client_order_id) is not None:  # held here, never sent
                self._reporter.canceled(order, time.time_ns(), None)
                return
            try:
                self._cancel(order)
            finally:
                self._release_waiting()   # an entry canceled: its children go sized to its fills, or end

    def _cancel(self, order: Order) -> None:
        """Cancel at the venue (under the lock). An OCO leg's cancel cancels its list (binance)."""
        instrument = self._instruments.get(order.symbol)
        if instrument is None:
            return
        by_client_id = {CANCEL_CLIENT_ID_PARAM.get(self.exchange.id, "clientOrderId"):
                        self._aliases.get(order.client_order_id, order.client_order_id)}
        if order.client_order_id in self._algo:
            by_client_id["trigger"] = True   # binance's algo service (DELETE /fapi/v1/algoOrder)
        try:
            raw = self._read(self.exchange.cancel_order, None, order.symbol, by_client_id)
        except (ccxt.OrderNotFound, ccxt.OperationRejected, ccxt.InvalidOrder, ccxt.ExchangeError):
            self._resolve(order)  # filled or canceled already, or unknown: report what the venue has
            return
        except _TRANSIENT_READ:
            return  # the next poll shows whether the cancel happened
        if raw.get("status") is None:  # an answer with ids only (bybit): ask what the order is now
            self._resolve(order)
            return
        self._report(mapping.venue_order(raw, instrument, order.client_order_id))

    def amend(self, order: Order, price: Decimal | None, qty: Decimal | None) -> str | None:
        """Change a working order (engine.orders.amend_terms says which price): binance spot replaces
        it (edit_order: POST /api/v3/order/cancelReplace, STOP_ON_FAILURE, cancelRestrictions
        ONLY_NEW so a partly filled order is never replaced), the replacement under the client id
        `<id>.r<n>`, read back as the engine's order; USD-M futures modify a LIMIT order in place
        (PUT /fapi/v1/order: same ids). None when the venue took it, else why nothing changed.
        Elsewhere (other exchanges) refused: not mapped."""
        with self._lock:
            if not self.protective_orders:
                return f"{RejectReason.UNSUPPORTED}: {self.exchange.id} amend is not mapped here"
            reason = P.amend_refusal(order, price, qty, self.futures)
            if reason is not None:
                return reason
            if self.futures:
                return self._modify(order, price, qty)
            terms = replace(order, qty=order.qty if qty is None else qty)
            amend_terms(terms, price, None)
            instrument = self._instruments.get(order.symbol)
            refusal = self._refusal(terms, instrument) or self._precision_refusal(terms)
            if refusal is not None:
                return str(refusal)
            cid = order.client_order_id
            n = self._replacements.get(cid, 0) + 1
            new_cid = P.replacement_id(cid, n)
            illegal = client_id_refusal(self.exchange.id, new_cid)
            if illegal is not None:
                return illegal   # nothing sent: the order works on unchanged
            self._replacements[cid] = n
            kind, params = mapping.ccxt_type_and_params(terms, _text)
            params.pop("triggerPrice", None)
            if terms.stop_price is not None:
                params["stopPrice"] = _text(terms.stop_price)  # edit_order reads (and drops) stopPrice
            params.update({"clientOrderId": new_cid, "cancelRestrictions": "ONLY_NEW",
                           "cancelOrigClientOrderId": self._aliases.get(cid, cid)})
            try:
                raw = self._call(self.exchange.edit_order, None, order.symbol, kind, mapping.ccxt_side(order.side),
                                 _text(terms.qty), _text(terms.limit_price), params)
            except ccxt.BaseError as error:
                # the cancel may have happened without the replacement (binance "partially failed"),
                # or the answer was lost: what the venue now holds decides
                if self._adopt_replacement(order, new_cid):
                    return None
                self._resolve(order)
                return str(mapping.reject_reason(error, terms, instrument))
            self._replaced.update(v for v, c in self._venue_ids.items() if c == cid)
            self._aliases[cid] = new_cid
            self._venue_ids[str(raw.get("id"))] = cid
            return None

    def _modify(self, order: Order, price: Decimal | None, qty: Decimal | None) -> str | None:
        """A USD-M LIMIT order changed in place (edit_order: PUT /fapi/v1/order), under the lock."""
        terms = replace(order, qty=order.qty if qty is None else qty)
        amend_terms(terms, price, None)
        instrument = self._instruments.get(order.symbol)
        refusal = self._refusal(terms, instrument) or self._precision_refusal(terms)
        if refusal is not None:
            return str(refusal)
        venue_id = next((v for v, c in self._venue_ids.items() if c == order.client_order_id
                         and not v.startswith("algo:")), None)
        if venue_id is None:
            return "NOT_WORKING"
        try:
            self._call(self.exchange.edit_order, venue_id, order.symbol, "limit", mapping.ccxt_side(order.side),
                       _text(terms.qty), _text(terms.limit_price), {})
        except ccxt.BaseError as error:
            self._resolve(order)
            return str(mapping.reject_reason(error, terms, instrument))
        return None

    def _engine_cid(self, venue_cid: Any) -> str | None:
        """The engine's client id for a venue's: an amend's replacement (`<id>.r<n>`, binance spot)
        is its original's."""
        if venue_cid is None:
            return None
        return P.engine_id(str(venue_cid)) if self.native_oco else str(venue_cid)

    def _adopt_replacement(self, order: Order, new_cid: str) -> bool:
        """Whether the venue holds the replacement `new_cid` (then it works for the engine's order)."""
        try:
            raw = self._read(self._fetch_order, None, order.symbol, {"clientOrderId": new_cid})
        except (ccxt.OrderNotFound, *_TRANSIENT_READ):
            return False
        self._replaced.update(v for v, c in self._venue_ids.items() if c == order.client_order_id)
        self._aliases[order.client_order_id] = new_cid
        self._venue_ids[str(raw.get("id"))] = order.client_order_id
        return True

    def on_tick(self, tick: Any) -> None:
        """The bot's latest quote for a symbol (its feed's tick): what equity-fraction orders are
        sized at, so sizing needs no extra round trip and works while REST reads fail."""
        bid = None if tick.bid != tick.bid else mapping.dec(tick.bid)   # NaN: no side
        ask = None if tick.ask != tick.ask else mapping.dec(tick.ask)
        with self._lock:
            self._marks[tick.symbol] = (bid, ask)

    def on_quote(self, tick: Any, seq: int | None = None) -> None:
        """The runner's hook for every admitted tick (live/runner.py): the quote, as on_tick."""
        self.on_tick(tick)

    def _mark(self, symbol: str, side: OrderSide) -> Decimal | None:
        bid, ask = self._marks.get(symbol, (None, None))
        price = ask if side is OrderSide.BUY else bid
        if price:
            return price
        ticker = self._read(self.exchange.fetch_ticker, symbol)
        return mapping.dec(ticker.get("ask") if side is OrderSide.BUY else ticker.get("bid")) or \
            mapping.dec(ticker.get("last"))

    def _size_by_fraction(self, order: Order, instrument: Instrument) -> RejectReason | None:
        """A market order sized by equity fraction: resolved now, at the last price, a fraction of
        the bot's equity (brokers.base.fraction_equity), within what the account has free. A price
        or balance that cannot be read refuses the order with the reason (it was never sent)."""
        try:
            price = self._mark(order.symbol, order.side)
            if not price:
                return RejectReason.NO_LIQUIDITY
            account = self._account_locked()
        except ccxt.BaseError as error:
            return mapping.reject_reason(error, order, instrument)
        equity = fraction_equity(self.sizing_equity, lambda: account.equity)
        if equity is None:
            return RejectReason.NO_LIQUIDITY  # the bot's books cannot be valued now (no price, no rate)
        budget = equity * order.equity_fraction  # type: ignore[operator]
        if self.futures:  # a notional whose margin fits in what is available (a reduce-only order needs none)
            if not order.reduce_only:
                budget = min(budget, (account.buying_power or Decimal(0)) * (instrument.leverage or Decimal(1)))
        elif order.side is OrderSide.BUY:
            budget = min(budget, account.buying_power if account.buying_power is not None else account.cash)
        qty = (budget / price // instrument.size_increment) * instrument.size_increment
        if instrument.max_qty is not None:
            qty = min(qty, instrument.max_qty)
        if qty > 0 and self.exchange.precisionMode == ccxt.SIGNIFICANT_DIGITS:
            qty = Decimal(self.exchange.amount_to_precision(order.symbol, _text(qty)))  # truncates
        if qty <= 0 or qty < instrument.min_qty:
            return RejectReason.INSUFFICIENT_FUNDS
        order.qty = qty
        return None

    def _precision_refusal(self, order: Order) -> RejectReason | None:
        """What ccxt's own precision functions would change (they truncate amounts and round
        prices, for every precision mode): refused, never sent altered."""
        try:
            if Decimal(self.exchange.amount_to_precision(order.symbol, _text(order.qty))) != order.qty:
                return RejectReason.QTY_OFF_GRID
            for price in (order.limit_price, order.stop_price):
                if price is not None and Decimal(self.exchange.price_to_precision(order.symbol, _text(price))) != price:
                    return RejectReason.PRICE_OFF_GRID
        except ccxt.InvalidOrder:  # ccxt refuses a value that rounds to 0
            return RejectReason.QTY_BELOW_MIN
        return None

    # -- the stream (polled) --------------------------------------------------------------------
    def poll(self) -> bool:
        """One pass of the execution stream: report every change since the last pass. False if
        the venue could not be reached (nothing is lost: the next pass reports it), or asked for
        quiet (a 429 / 418's Retry-After still runs: skipped, nothing sent)."""
        with self._lock:
            if self._quiet_left() > 0:
                self.connected = False
                return False
            try:
                self._poll()
            except _TRANSIENT_READ:
                self.connected = False
                return False
            self.connected = True
            self._release_waiting()
            return True

    def reconnect(self) -> bool:
        return self.poll()

    def _poll(self) -> None:
        open_raw: dict[str, dict[str, Any]] = {}
        for symbol in self._poll_symbols():
            self._fetch_trades(symbol)
            for raw in self._read(self.exchange.fetch_open_orders, symbol):
                open_raw[str(raw["id"])] = raw
            if self._algo:  # futures stops the adapter sent: the algo service's open ones
                for raw in self._read(self.exchange.fetch_open_orders, symbol, None, None, {"trigger": True}):
                    raw = _algo_raw(raw)
                    open_raw[str(raw["id"])] = raw
        seen: set[str] = set()
        for venue_id, raw in open_raw.items():
            instrument = self._instruments[raw["symbol"]]
            cid = self._venue_ids.get(venue_id) or self._engine_cid(raw.get("clientOrderId"))
            venue = mapping.venue_order(raw, instrument, cid)
            self._venue_ids[venue_id] = venue.client_order_id
            seen.add(venue.client_order_id)
            self._report(venue)
        absent: list[Order] = []  # proved never taken by the venue: sent again or rejected, below
        try:
            for cid, order in list(self._reporter.orders.items()):
                state = self._reporter.reported(cid)
                if cid in seen or order.symbol not in self._instruments:
                    continue
                if state in (OrderState.SUBMITTED, OrderState.ACCEPTED, OrderState.PARTIALLY_FILLED):
                    if cid in self._unresolved:
                        if not self._resolve(order, raise_errors=True):
                            self._unresolved.discard(cid)
                            absent.append(order)
                        continue
                    self._resolve(order, raise_errors=True)
            for cid in list(self._unresolved):  # the answer was lost before anything was reported
                order = self._reporter.orders[cid]
                if not self._resolve(order, raise_errors=True):
                    self._unresolved.discard(cid)
                    absent.append(order)
        finally:
            self._resend_or_reject(absent)

    def _resend_or_reject(self, absent: list[Order]) -> None:
        """Orders whose send had an unknown outcome and that the lookup proved the venue never took
        (under the lock): a bracket's exit whose entry filled is sent again under the same client id
        (safe: the venue has no order with it), at most `max_attempts` times, one per poll (the poll's
        own backoff spaces them); anything else, or an exit that ran out of attempts, is REJECTED
        TIMEOUT (the OMS then takes a refused exit over: engine/emulation.py on_refused)."""
        again: dict[str, list[Order]] = {}
        for order in absent:
            parent = self._reporter.orders.get(order.parent_id) if order.parent_id is not None else None
            tries = self._resent.get(order.client_order_id, 0)
            if parent is None or parent.filled_qty <= 0 or tries >= self.max_attempts:
                self._reporter.rejected(order, time.time_ns(), RejectReason.TIMEOUT)
                continue
            self._resent[order.client_order_id] = tries + 1
            if order.client_order_id in self._exits_now:   # a fired stop's market exit (`_exit_now`)
                self._submit(self._exits_now[order.client_order_id], self._instruments[order.symbol],
                             venue_cid=self._aliases.get(order.client_order_id))
                continue
            again.setdefault(order.oco_group or order.client_order_id, []).append(order)
        for group in again.values():
            parent = self._reporter.orders[group[0].parent_id]  # type: ignore[index]
            filled = self._protected(parent)
            if len(group) == 2 and not self.futures:
                self._send_oco(group, filled)
            else:
                for child in group:
                    self._send_checked(child, filled)

    def _poll_symbols(self) -> list[str]:
        symbols = set(self.symbols)
        symbols.update(o.symbol for cid, o in self._reporter.orders.items()
                       if o.symbol in self._instruments and self._reporter.reported(cid) not in
                       (OrderState.FILLED, OrderState.CANCELED, OrderState.REJECTED))
        return sorted(symbols)

    def _fetch_trades(self, symbol: str, since: int | None = None) -> list[Fill]:
        """The trades of `symbol` since `since` (ms), else since the newest one seen, else over
        the lookback window; new ones are remembered and returned."""
        instrument = self._instruments[symbol]
        market_id = self.exchange.market(symbol)["id"]
        if since is None:
            since = self._trade_cursor.get(symbol)
        if since is None:  # first look at this market: a bounded window, not the whole history
            since = self.exchange.milliseconds() - self.lookback_ms
            self._trade_floor.setdefault(symbol, since)
        trades = self._trades_since(symbol, since)
        unknown = {str(t.get("order")) for t in trades} - set(self._venue_ids)
        if unknown:  # whose orders? one listing of the window, not one request per order
            self._learn_orders(symbol, min(int(t["timestamp"]) for t in trades if t.get("timestamp")) if any(
                t.get("timestamp") for t in trades) else since, unknown)
        new = []
        for trade in trades:
            venue_id = str(trade.get("order"))
            cid = self._venue_ids.get(venue_id)
            if cid is None:  # not in the listing (archived, or the venue has no fetch_orders)
                raw = self._read(self._fetch_order, venue_id, symbol)
                cid = mapping.venue_order(raw, instrument).client_order_id
                self._venue_ids[venue_id] = cid
            side = OrderSide.BUY if trade.get("side") == "buy" else OrderSide.SELL
            fill = mapping.fill_from_trade(trade, market_id, cid, side, instrument, time.time_ns())
            if self._remember_fill(venue_id, fill):
                new.append(fill)
            if trade.get("timestamp"):
                self._trade_cursor[symbol] = max(self._trade_cursor.get(symbol, 0), int(trade["timestamp"]))
        return new

    def _fetch_order(self, venue_id: str | None, symbol: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """One order by venue id or `clientOrderId` param. Where ccxt has no plain fetch_order for
        the market (bybit: only over its last 500 orders, and only once that is acknowledged), it
        is found in the open orders, then the closed ones of the lookback window; OrderNotFound if
        in neither."""
        params = dict(params or {})
        try:
            return self.exchange.fetch_order(venue_id, symbol, params)
        except (ccxt.NotSupported, ccxt.ArgumentsRequired):  # bybit: only with a caveat it wants acknowledged
            pass
        cid = params.get("clientOrderId")
        since = self.exchange.milliseconds() - self.lookback_ms

        def match(raw: dict[str, Any]) -> bool:
            return (venue_id is not None and str(raw.get("id")) == str(venue_id)) or \
                (cid is not None and raw.get("clientOrderId") == cid)

        for raw in self.exchange.fetch_open_orders(symbol):
            if match(raw):
                return raw
        if self.exchange.has.get("fetchClosedOrders"):
            for raw in self.exchange.fetch_closed_orders(symbol, since):
                if match(raw):
                    return raw
        raise ccxt.OrderNotFound(f"{self.name}: order {venue_id or cid} not found")

    def _trades_since(self, symbol: str, since: int) -> list[dict[str, Any]]:
        """Every trade of `symbol` from `since` (ms), paging forward: binance answers at most
        `limit` trades from the start time, oldest first. On futures a start time more than a
        week back is answered for one week only (ccxt asks binance USD-M for [since, since + 7 d]):
        a short page then moves on to the next week, up to now."""
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        limit = 1000
        while True:
            page = self._read(self.exchange.fetch_my_trades, symbol, since, limit)
            fresh = [t for t in page if str(t.get("id")) not in seen]
            for trade in fresh:
                seen.add(str(trade.get("id")))
            out.extend(fresh)
            stamps = [int(t["timestamp"]) for t in page if t.get("timestamp")]
            if len(page) >= limit and fresh and stamps:
                since = max(stamps)  # the next page starts at the newest seen (ids already taken are skipped)
                continue
            if self.futures and self.exchange.milliseconds() - since >= FUTURES_TRADE_WINDOW_MS:
                since += FUTURES_TRADE_WINDOW_MS
                continue
            return out

    def _learn_orders(self, symbol: str, since: int, wanted: set[str]) -> None:
        """Client ids of the orders behind `wanted` trades, from one order listing since `since`."""
        if not self.exchange.has.get("fetchOrders"):
            return
        try:
            orders = self._read(self.exchange.fetch_orders, symbol, since)
        except (ccxt.NotSupported, ccxt.BadRequest):
            return
        for raw in orders:
            venue_id = str(raw.get("id"))
            if venue_id in wanted and raw.get("clientOrderId"):
                self._venue_ids.setdefault(venue_id, str(raw["clientOrderId"]))

    # -- the push stream ----------------------------------------------------------------------------
    def _on_push_live(self, live: bool) -> None:
        """(Re)subscribed: reconcile over REST what the stream may have missed while it was down."""
        if live:
            self.poll()

    def _on_push_orders(self, raws: list[dict[str, Any]]) -> None:
        """Order updates from the stream. One whose fills have not all arrived waits for its trades
        (a cancel reported before the fill it followed would be an illegal transition)."""
        with self._lock:
            for raw in raws:
                instrument = self._instruments.get(raw.get("symbol") or "")
                if instrument is None:
                    continue
                venue_id = str(raw.get("id"))
                cid = self._venue_ids.get(venue_id) or raw.get("clientOrderId")
                if cid is None or venue_id in self._replaced:
                    continue
                self._venue_ids[venue_id] = cid
                self._pending[venue_id] = raw
            self._flush_pending()
            # ccxt.pro hands over a trade only if a watch was waiting when it came: one that came
            # between two watches waits in its cache for the next event. An order update whose
            # fills are still missing is completed from REST rather than left waiting.
            missing = {raw["symbol"] for raw in self._pending.values() if raw}
            for symbol in sorted(missing):
                try:
                    self._fetch_trades(symbol)
                except _TRANSIENT_READ:
                    return  # the poll (backup) completes it
            if missing:
                self._flush_pending()
            self._release_waiting()

    def _on_push_trades(self, trades: list[dict[str, Any]]) -> None:
        with self._lock:
            for trade in trades:
                symbol = trade.get("symbol") or ""
                instrument = self._instruments.get(symbol)
                venue_id = str(trade.get("order"))
                cid = self._venue_ids.get(venue_id)
                if instrument is None or cid is None:
                    continue  # not ours to know yet: the order update or the poll brings it
                side = OrderSide.BUY if trade.get("side") == "buy" else OrderSide.SELL
                fill = mapping.fill_from_trade(trade, self.exchange.market(symbol)["id"], cid, side, instrument,
                                               time.time_ns())
                self._remember_fill(venue_id, fill)
                if trade.get("timestamp"):
                    self._trade_cursor[symbol] = max(self._trade_cursor.get(symbol, 0), int(trade["timestamp"]))
                self._pending.setdefault(venue_id, {})
            self._flush_pending()
            self._release_waiting()

    def _flush_pending(self) -> None:
        for venue_id, raw in list(self._pending.items()):
            cid = self._venue_ids[venue_id]
            known = sum((f.qty for f in self._fills_by_order.get(venue_id, [])), Decimal(0))
            if not raw:  # fills without an order update yet: report them on the order as we know it
                order = self._reporter.orders.get(cid)
                if order is not None:
                    for fill in self._fills_by_order.get(venue_id, []):
                        self._reporter.fill(order, fill)
                del self._pending[venue_id]
                continue
            venue = mapping.venue_order(raw, self._instruments[raw["symbol"]], cid)
            if known >= venue.filled_qty:
                self._report(venue)
                del self._pending[venue_id]

    def _remember_fill(self, venue_id: str, fill: Fill) -> bool:
        if fill.execution_id in self._fills:
            return False
        self._fills[fill.execution_id] = fill
        self._fills_by_order.setdefault(venue_id, []).append(fill)
        return True

    def _report(self, venue: VenueOrder) -> None:
        self._reporter.catch_up(venue, self._fills_by_order.get(venue.venue_order_id, []))

    def _run(self) -> None:
        while not self._stop.wait(self._next_poll_s()):
            self._failures = 0 if self.poll() else self._failures + 1

    def _next_poll_s(self) -> float:
        """Fast while orders are working, slow when none are; after failures, exponential backoff
        with jitter (so many bots do not hammer a venue that is coming back in step)."""
        base = float(self.poll_interval_s or 1.0)
        with self._lock:
            working = any(self._reporter.reported(cid) in (OrderState.SUBMITTED, OrderState.ACCEPTED,
                                                           OrderState.PARTIALLY_FILLED)
                          for cid in self._reporter.orders) or bool(self._unresolved)
        interval = base if working and not self.pushing else float(self.idle_poll_s or base)
        if self._failures:
            interval = min(max(interval, base * 2 ** self._failures), max(self.max_backoff_s, base))
            interval *= random.uniform(0.5, 1.0)
        # a 429 / 418's Retry-After outranks every schedule: no poll before it has passed
        return max(interval, self._quiet_left())

    # -- queries --------------------------------------------------------------------------------
    def order_status(self, client_order_id: str) -> VenueOrder | None:
        with self._lock:
            order = self._reporter.orders.get(client_order_id)
            symbols = [order.symbol] if order is not None else sorted(self._instruments)
            for symbol in symbols:
                try:
                    raw = self._record(symbol, client_order_id)
                except ccxt.OrderNotFound:
                    continue
                return mapping.venue_order(raw, self._instruments[symbol], client_order_id)
            return None

    def open_orders(self) -> list[VenueOrder]:
        with self._lock:
            out = []
            for symbol in sorted(set(self.symbols) | set(self._poll_symbols())):
                for raw in self._read(self.exchange.fetch_open_orders, symbol):
                    cid = self._venue_ids.get(str(raw["id"])) or self._engine_cid(raw.get("clientOrderId"))
                    out.append(mapping.venue_order(raw, self._instruments[symbol], cid))
            return out

    def wallet(self) -> dict[str, Decimal]:
        """The account's holdings per asset, exactly as the venue reports them (no grid); on
        futures, each asset's wallet balance (without unrealized P&L)."""
        with self._lock:
            balance = self._read(self.exchange.fetch_balance)
            out = {}
            if self.futures:
                for entry in (balance.get("info") or {}).get("assets") or []:
                    total = mapping.dec(entry.get("walletBalance"))
                    if total:
                        out[str(entry.get("asset"))] = total
                return out
            for asset, entry in (balance.get("total") or {}).items():
                total = mapping.dec(entry)
                if total:
                    out[asset] = total
            return out

    def positions(self) -> list[VenuePosition]:
        """The position each tracked market's fills made: the trades of the lookback window and
        since (refreshed now), net, exactly. Not the wallet: an account holds coins nobody traded
        through this adapter (bought by hand, by another bot, long ago), and a base asset shared
        by two markets (BTC for BTC/USDT and BTC/EUR) cannot be split by the wallet. `wallet()`
        reports the holdings beside it.

        On futures the position is the venue's own (positionRisk, signed: short < 0), per symbol:
        a contract position exists at the venue, not in a wallet, and is what liquidation and
        funding act on."""
        with self._lock:
            if self.futures:
                symbols = sorted(self._instruments)
                return futures.positions_from_venue(self._read(self.exchange.fetch_positions, symbols), set(symbols))
            for symbol in self._instruments:
                self._fetch_trades(symbol)
            net: dict[str, Decimal] = {}
            for fill in self._fills.values():
                moved = fill.side.sign * fill.qty
                market = self.exchange.markets.get(fill.symbol) or {}
                if fill.fee_currency and fill.fee_currency == market.get("base"):
                    moved -= fill.fee_native  # a fee taken in the coin: the wallet moved by less
                net[fill.symbol] = net.get(fill.symbol, Decimal(0)) + moved
            return [VenuePosition(symbol, qty, None) for symbol, qty in sorted(net.items()) if qty]

    # -- rates (live.rates) ------------------------------------------------------------------------
    def conversion_rate(self, base: str, quote: str) -> Decimal | None:
        """1 `base` in `quote` at the venue now, from its ticker (the last price, else the mid of
        bid and ask): what the books value a fee in a third coin with (BNB on BTC/USDT). The
        inverse market (USDT/BNB) answers inverted, a perpetual (BNB/USDT:USDT) when there is no
        spot one; None when the venue lists none or quotes no price. One request, no retry: the
        caller (live.rates.VenueRates) caches the answer and asks again later, so a fill never
        waits on a venue that cannot answer (its error goes to the caller)."""
        markets = self.exchange.markets or {}
        for symbol, inverted in ((f"{base}/{quote}", False), (f"{quote}/{base}", True),
                                 (f"{base}/{quote}:{quote}", False)):
            if symbol not in markets:
                continue
            with self._lock:
                ticker = self._call(self.exchange.fetch_ticker, symbol)
            price = mapping.dec(ticker.get("last"))
            if not price:
                bid, ask = mapping.dec(ticker.get("bid")), mapping.dec(ticker.get("ask"))
                price = (bid + ask) / 2 if bid and ask else None
            if price is None or not price.is_finite() or price <= 0:
                return None
            return 1 / price if inverted else price
        return None

    def account(self) -> AccountSnapshot:
        with self._lock:
            return self._account_locked()

    def _account_locked(self) -> AccountSnapshot:
        balance = self._read(self.exchange.fetch_balance)
        currency = self.currency or "USDT"
        entry = balance.get(currency) or {}
        step = min((i.currency_increment for i in self._instruments.values()), default=Decimal("0.00000001"))
        if self.futures:  # the margin wallet: unrealized P&L is in equity, not cash
            margin = futures.margin_account(balance, currency)
            return AccountSnapshot(currency, mapping.floor_to(margin.wallet, step),
                                   mapping.floor_to(margin.margin_balance, step),
                                   mapping.floor_to(margin.available, step))
        cash = mapping.floor_to(mapping.dec(entry.get("total")) or Decimal(0), step)
        free = mapping.dec(entry.get("free"))
        equity = cash
        for symbol, instrument in self._instruments.items():
            market = self.exchange.markets[symbol]
            if market.get("quote") != currency:
                continue
            held = mapping.dec((balance.get(market["base"]) or {}).get("total"))
            if held:
                mark = self._marks.get(symbol, (None, None))[0]
                if not mark:
                    ticker = self._read(self.exchange.fetch_ticker, symbol)
                    mark = mapping.dec(ticker.get("bid")) or mapping.dec(ticker.get("last")) or Decimal(0)
                equity += held * mark
        buying_power = None if free is None else mapping.floor_to(free, step)
        return AccountSnapshot(currency, cash, mapping.floor_to(equity, step), buying_power)

    def fills_since(self, ts: int) -> list[Fill]:
        """Fills from `ts` (ns) on; 0 asks for the lookback window. An earlier `ts` than was
        fetched so far (a restart's last booked fill) is fetched from that time."""
        with self._lock:
            if not self._instruments:
                self._load_instruments()
            floor = ts // NS_PER_MS if ts > 0 else None
            for symbol in self._instruments if self.symbols else self._poll_symbols():
                if floor is not None and floor < self._trade_floor.get(symbol, floor + 1):
                    self._fetch_trades(symbol, since=floor)
                    self._trade_floor[symbol] = floor
                self._fetch_trades(symbol)
            return sorted((f for f in self._fills.values() if f.ts >= ts), key=lambda f: (f.ts, f.execution_id))

    def funding_since(self, ts: int) -> list[FundingFee]:
        """Funding paid or received on the adapter's futures markets from `ts` (ns) on; 0 asks for
        the lookback window. Funding is not a fill (no order, no quantity) and the ExecutionSink
        has no channel for cash movements, so the engine asks for it here and books it (an empty
        list on spot). Paged forward from the start time (binance's income history, oldest
        first), each payment once."""
        if not self.futures:
            return []
        with self._lock:
            since = ts // NS_PER_MS if ts > 0 else self.exchange.milliseconds() - self.lookback_ms
            limit = 1000
            while True:
                page = self._read(self.exchange.fetch_funding_history, None, since, limit)
                fresh = 0
                for raw in page:
                    fee = futures.funding_from_income(raw)
                    if fee.funding_id not in self._funding:
                        self._funding[fee.funding_id] = fee
                        fresh += 1
                stamps = [int(r["timestamp"]) for r in page if r.get("timestamp")]
                if len(page) < limit or not fresh or not stamps:
                    break
                since = max(stamps)
            return sorted((f for f in self._funding.values() if f.ts >= ts and f.symbol in self._instruments),
                          key=lambda f: (f.ts, f.funding_id))

    def charges_since(self, ts: int) -> list[futures.AccountCharge]:
        """The account's charges (engine.charges.ChargeSource): the funding of `funding_since`, each
        as a FUNDING charge under its tranId, for the engine to book once into its sole holder."""
        return [futures.funding_charge(fee) for fee in self.funding_since(ts)]

    # -- calls ----------------------------------------------------------------------------------
    def _read(self, call: Callable[..., T], *args: Any) -> T:
        """A call that is safe to repeat, retried with backoff on 429 / 5xx / network errors. During
        a quiet period (a 429 / 418's Retry-After) nothing is sent: VenueQuiet at once."""
        for attempt in range(self.max_attempts):
            self._check_quiet()
            try:
                return call(*args)
            except (ccxt.OrderNotFound, ccxt.BadSymbol, ccxt.InvalidOrder):
                raise
            except _TRANSIENT_READ as error:
                self._note_throttle(error)
                if attempt == self.max_attempts - 1:
                    raise
                self._sleep(attempt)
        raise AssertionError("unreachable")

    def _call(self, call: Callable[..., T], *args: Any) -> T:
        """One call that is not repeated here (a submit, an amend, a setting): VenueQuiet at once,
        nothing sent, during a quiet period; a 429 / 418's Retry-After starts one."""
        self._check_quiet()
        try:
            return call(*args)
        except (ccxt.DDoSProtection, ccxt.RateLimitExceeded) as error:
            self._note_throttle(error)
            raise

    @property
    def _quiet_until(self) -> float:
        """The adapter's clock before which the venue asked not to be called (Retry-After): asked of
        this adapter or of any other of this process calling the same hosts (brokers/ccxt/quiet.py)."""
        return quiet.until(self._quiet_key, self._clock)

    def _quiet_left(self) -> float:
        """Seconds of the venue's Retry-After still to run (0: calls may go)."""
        return max(0.0, self._quiet_until - self._clock())

    def _check_quiet(self) -> None:
        left = self._quiet_left()
        if left > 0:
            raise VenueQuiet.left(self.name, left)

    def _note_throttle(self, error: Exception) -> None:
        """A 429 / 418 that gave a Retry-After starts a quiet period (never shortens one): Binance
        answers 418 (an IP ban, 2 minutes to 3 days) to an IP that kept calling through 429s, and
        lengthens a ban for every call made during it, so until it ends the adapter sends nothing, nor
        does any other adapter of this process on the same hosts (the ban is the IP's)."""
        retry_after = _retry_after_s(self.exchange, error)
        if retry_after is not None:
            quiet.extend(self._quiet_key, self._clock, self._clock() + retry_after)

    def _sleep(self, attempt: int) -> None:
        """Exponential backoff with jitter (at most `max_backoff_s`) before a call is repeated. A
        quiet period that ends within `max_backoff_s` is waited out (`close` ends the wait early);
        a longer one is never slept inside a call (the adapter's lock would be held meanwhile and
        the bot's thread with it: no tick, no stop, no kill): VenueQuiet is raised instead, and the
        poll thread waits it out (`_next_poll_s`)."""
        delay = min(self.backoff_s * 2**attempt * random.uniform(0.5, 1.0), self.max_backoff_s)
        left = self._quiet_left()
        if left > self.max_backoff_s:
            raise VenueQuiet.left(self.name, left)
        if left > 0:
            self._wait(max(delay, left))
        else:
            self._pause(delay)


class VenueQuiet(ccxt.RateLimitExceeded, VenueUnreachable):
    """Nothing was sent: the venue asked for quiet (a 429 / 418's Retry-After) and it has not ended.
    A ccxt RateLimitExceeded (so a transient error to every caller of a read, RATE_LIMITED for an
    order) and the port's VenueUnreachable."""

    @classmethod
    def left(cls, venue: str, left_s: float) -> "VenueQuiet":
        return cls(f"{venue}: not sent: the venue asked for no calls for {left_s:.0f} s more (429 / 418 Retry-After)")


def _retry_after_s(exchange: Any, error: Exception) -> float | None:
    """The Retry-After (seconds) of the answer behind a 429 / 418, if it gave one."""
    if not isinstance(error, (ccxt.DDoSProtection, ccxt.RateLimitExceeded)):
        return None
    headers = getattr(exchange, "last_response_headers", None) or {}
    value = str(headers.get("Retry-After") or headers.get("retry-after") or "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None   # absent, or an HTTP date (binance sends seconds)
    return seconds if 0 <= seconds < float("inf") else None


def _pro_exchange(exchange_id: str, config: dict[str, Any], sandbox: bool) -> Any:
    """The ccxt.pro twin of a REST exchange, if ccxt.pro can watch this exchange's orders."""
    try:
        import ccxt.pro as ccxtpro
    except ImportError:  # pragma: no cover - ccxt.pro ships with ccxt
        return None
    cls = getattr(ccxtpro, exchange_id, None)
    if cls is None:
        return None
    pro = cls(config)
    if not (pro.has.get("watchOrders") and pro.has.get("watchMyTrades")):
        return None
    if sandbox:
        pro.set_sandbox_mode(True)
    return pro


def _algo_raw(raw: dict[str, Any]) -> dict[str, Any]:
    """An algo-service order with its id marked: algo ids and matching-engine order ids are
    separate number spaces at binance."""
    return {**raw, "id": f"algo:{raw.get('id')}"}


def _text(value: Decimal | None) -> str | None:
    """An exact decimal as the plain string ccxt passes through its precision functions."""
    return None if value is None else format(value.normalize(), "f")
