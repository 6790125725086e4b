"""A loopback fake of the binance spot REST API, for driving real ccxt in tests.

Written from BROKER_SDKS.md §3 and ccxt 4.5.90's binance.py (the endpoints it calls, the fields
its parse_market / parse_order / parse_trade / parse_balance read, the error codes and messages
its exception tables map). It serves on 127.0.0.1 with an ephemeral port in a daemon thread;
point ccxt at it with `redirect(exchange, fake.url)`, which rewrites the scheme and host of every
entry of `exchange.urls['api']` and keeps the paths.

Endpoints: GET /api/v3/time, /api/v3/exchangeInfo, /api/v3/ticker/24hr, /api/v3/ticker/bookTicker,
/api/v3/klines, /api/v3/account, /api/v3/openOrders, /api/v3/allOrders, /api/v3/myTrades;
POST|GET|DELETE /api/v3/order; POST /api/v3/orderList/oco; POST /api/v3/order/cancelReplace.
Signed calls must carry timestamp, signature and X-MBX-APIKEY (checked for presence, not verified).

The matching is scripted, not a book: a MARKET order executes at once at the ask (buy) or bid
(sell); LIMIT, LIMIT_MAKER, STOP_LOSS(_LIMIT) and TAKE_PROFIT(_LIMIT) orders rest (status NEW)
until the test calls `fill(client_order_id, qty)`, which executes `qty` (default: all that is
left) at the order's price, or moves the market with `set_quote(symbol, bid, ask)`: a stop type
whose stopPrice the price (bid for a sell, ask for a buy) reaches triggers (STOP_LOSS when it
falls to it for a sell / rises for a buy, TAKE_PROFIT the other way; the market ones execute at
once at that price, the *_LIMIT ones then rest as limits), a trailing stop ratchets, and a
resting limit the price reaches executes at its own price as maker. Balances move exactly (Decimal).

Venue behaviours it reproduces (binance spot, as documented and as ccxt's fixtures show them):
- fees: `fee_asset="quote"` (the default, the simple case), `"received"` (binance without BNB:
  the fee is taken from the asset received, the coin bought or the quote sold for) or `"BNB"`
  (the discount: 75% of the fee, in BNB at `bnb_price`, taken from the BNB balance; the BNBUSDT
  tickers quote `bnb_price`, the price a live bot values those fees at);
- time in force: IOC executes what crosses now and EXPIREs the rest, FOK all or nothing
  (EXPIRED), LIMIT_MAKER (ccxt's postOnly) is refused with -2010 if it would take; a GTC limit
  that crosses still rests (see below);
- `market_depth`: a market order executes at most this much and the rest EXPIREs (a thin book);
- a client order id is unique among OPEN orders only: a finished order's id may be used again;
- myTrades: with startTime, the trades from then (oldest first, `limit`); with fromId, from
  that id; with neither, the most RECENT `limit` trades; allOrders likewise for orders;
- an account that starts with holdings (`balances`: BTC and ETH besides USDT by default);
- 429 and 418 answers with Retry-After (`inject("429")`, `inject("418")`), `retry_after_s` seconds
  (1 by default; an IP ban's is 2 minutes up to 3 days);
- client ids (newClientOrderId, an OCO leg's) outside ^[.A-Z:/a-z0-9_-]{1,36}$: -1100, as Binance;
- stop types on the wrong side of the market at placement: -2010 "Stop price would trigger
  immediately." (spot's code; USD-M's is -2021 "Order would immediately trigger.");
- trailing stops: `trailingDelta` (basis points, TRAILING_DELTA filter 10 to 2000, else -1013)
  on the stop types, without a stopPrice: trailing from the price at placement (a sell: the
  highest bid since, triggering at delta below it);
- OCO order lists (POST /api/v3/orderList/oco): above/below legs with their own client ids, the
  limit leg LIMIT_MAKER above the market for a SELL (below for a BUY), the price rule (a SELL:
  limit > last > stop, else -1013 "The relationship of the prices for the orders is not
  correct."), one lock for the list; a leg that executes or triggers EXPIREs the other
  (listStatusType ALL_DONE), canceling one leg cancels both; legs read back with `orderListId`;
- cancel-replace (POST /api/v3/order/cancelReplace, STOP_ON_FAILURE only): `cancelRestrictions
  ONLY_NEW` refuses a partly filled order (-2022 "Order cancel-replace failed."), an OCO leg is
  refused too; a new order the checks refuse leaves the old one canceled (-2021 "Order
  cancel-replace partially failed.").
- the user-data stream: every order change is an executionReport (NEW, TRADE, CANCELED,
  EXPIRED; on a cancel "c" names the cancel request and "C" the order), carried by
  `BinanceWsFake.attach(fake)` over the websocket API (`userDataStream.subscribe.signature`,
  events as {"subscriptionId", "event"}), which is what ccxt.pro 4.5.90 uses for spot.
What it does not reproduce: a real book (a crossing GTC limit rests until `fill`); the legacy
listenKey stream and its keep-alive; outboundAccountPosition / balanceUpdate events; the 24-hour window limit on
myTrades startTime/endTime; request weights and the per-minute limits themselves (429 only when injected);
signature verification; the recvWindow clock check; OTO / OTOCO lists, the order-list queries and
DELETE /api/v3/orderList (a list is read through its legs), listClientOrderId uniqueness; a
trailing stop's activation stopPrice (refused, -1000 "fake: ..."); self-trade prevention.

Faults (`inject`), each consumed by the first request that matches its method and path:
- "429" / "418": HTTP 429 (or 418, binance's IP ban) {"code":-1003} with Retry-After, nothing done.
- "500" / "503": HTTP 5xx with an HTML body (ccxt: ExchangeNotAvailable), nothing done.
- "hang": the request is processed (an order is booked), then the answer is held until the
  client gives up (ccxt's timeout: RequestTimeout); the connection is then closed unanswered.
- "drop": the request is processed, then the connection is closed without an answer.
- "drop_before": the connection is closed before anything is done.
`stream_down = True` drops every read of orders and trades (what an adapter polls as its
execution stream) until it is set back to False.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

D = Decimal


def fmt(value: Decimal) -> str:
    return f"{value:.8f}"


@dataclass
class FakeMarket:
    symbol: str                      # exchange id, e.g. BTCUSDT
    base: str
    quote: str
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_notional: Decimal
    bid: Decimal
    ask: Decimal

    def filters(self) -> list[dict[str, Any]]:
        return [
            {"filterType": "PRICE_FILTER", "minPrice": fmt(self.tick_size), "maxPrice": "1000000.00000000",
             "tickSize": fmt(self.tick_size)},
            {"filterType": "LOT_SIZE", "minQty": fmt(self.min_qty), "maxQty": fmt(self.max_qty),
             "stepSize": fmt(self.step_size)},
            {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": fmt(self.max_qty),
             "stepSize": "0.00000000"},
            {"filterType": "NOTIONAL", "minNotional": fmt(self.min_notional), "applyMinToMarket": True,
             "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
        ]

    def info(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol, "status": "TRADING", "baseAsset": self.base, "baseAssetPrecision": 8,
            "quoteAsset": self.quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT",
                           "TAKE_PROFIT_LIMIT"],
            "icebergAllowed": True, "ocoAllowed": True, "otoAllowed": True, "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": True, "cancelReplaceAllowed": True, "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False, "filters": self.filters(), "permissions": [],
            "permissionSets": [["SPOT"]], "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }


@dataclass
class FakeOrder:
    order_id: int
    client_order_id: str
    symbol: str
    side: str
    type: str
    qty: Decimal
    price: Decimal           # 0 for market
    stop_price: Decimal      # 0 when none
    time_in_force: str | None
    time: int                # ms
    update_time: int
    status: str = "NEW"
    executed: Decimal = D(0)
    quote: Decimal = D(0)
    locked: Decimal = D(0)   # what this order holds of its asset (quote for buys, base for sells)
    trailing_delta: int = 0  # basis points (a trailing stop); 0: none
    peak: Decimal = D(0)     # a trailing stop's best price since it started (sell: highest bid, buy: lowest ask)
    order_list_id: int = -1  # the OCO order list it is a leg of
    triggered: bool = False  # a conditional order whose stop was reached (a *_LIMIT one then rests as a limit)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "symbol": self.symbol, "orderId": self.order_id, "orderListId": self.order_list_id,
            "clientOrderId": self.client_order_id, "price": fmt(self.price), "origQty": fmt(self.qty),
            "executedQty": fmt(self.executed), "cummulativeQuoteQty": fmt(self.quote), "status": self.status,
            "timeInForce": self.time_in_force or "GTC", "type": self.type, "side": self.side,
            "stopPrice": fmt(self.stop_price), "icebergQty": "0.00000000", "time": self.time,
            "updateTime": self.update_time,
            "isWorking": self.type in ("LIMIT", "LIMIT_MAKER", "MARKET") or self.triggered or self.status != "NEW",
            "workingTime": self.time, "origQuoteOrderQty": "0.00000000", "selfTradePreventionMode": "EXPIRE_MAKER",
        }
        if self.trailing_delta:
            out["trailingDelta"] = self.trailing_delta
        return out


@dataclass
class FakeTrade:
    trade_id: int
    order_id: int
    symbol: str
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    time: int
    is_buyer: bool
    is_maker: bool

    def as_json(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "id": self.trade_id, "orderId": self.order_id, "orderListId": -1,
                "price": fmt(self.price), "qty": fmt(self.qty), "quoteQty": fmt(self.price * self.qty),
                "commission": fmt(self.commission), "commissionAsset": self.commission_asset, "time": self.time,
                "isBuyer": self.is_buyer, "isMaker": self.is_maker, "isBestMatch": True}

    def fill_json(self) -> dict[str, Any]:
        return {"price": fmt(self.price), "qty": fmt(self.qty), "commission": fmt(self.commission),
                "commissionAsset": self.commission_asset, "tradeId": self.trade_id}


@dataclass
class Fault:
    kind: str                 # "429", "418", "500", "503", "hang", "drop", "drop_before"
    method: str = "POST"
    path: str = "/api/v3/order"


class BinanceError(Exception):
    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


CLIENT_ID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")   # binance's legal range for every client id


def legal_client_id(p: dict[str, str], name: str) -> str | None:
    """A client id parameter as Binance checks it: absent is fine (Binance makes one), anything
    outside ^[.A-Z:/a-z0-9_-]{1,36}$ is refused -1100 (spot and USD-M alike)."""
    value = p.get(name)
    if value is not None and not CLIENT_ID.fullmatch(value):
        raise BinanceError(400, -1100, f"Illegal characters found in parameter '{name}'; legal range is "
                                       "'^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.")
    return value or None


class _Drop(Exception):
    """Close the connection without answering."""


def default_markets() -> list[FakeMarket]:
    return [
        FakeMarket("BTCUSDT", "BTC", "USDT", D("0.01"), D("0.00001"), D("0.00010"), D("9000"), D("5"),
                   D("50000.00"), D("50000.01")),
        FakeMarket("ETHUSDT", "ETH", "USDT", D("0.01"), D("0.0001"), D("0.0010"), D("9000"), D("5"),
                   D("3000.00"), D("3000.01")),
        # the fee coin: its tickers quote `bnb_price` (BinanceFake._quote), what a live bot values BNB fees at
        FakeMarket("BNBUSDT", "BNB", "USDT", D("0.01"), D("0.001"), D("0.001"), D("9000"), D("5"),
                   D("600.00"), D("600.01")),
    ]


@dataclass
class BinanceFake:
    markets: list[FakeMarket] = field(default_factory=default_markets)
    balances: dict[str, Decimal] = field(default_factory=lambda: {"USDT": D(100_000), "BTC": D("0.5"),
                                                                      "ETH": D("2"), "BNB": D("10")})
    fee_rate: Decimal = D("0.001")
    fee_asset: str = "quote"            # "quote", "received" or "BNB" (see the module docstring)
    bnb_price: Decimal = D("600")       # quote per BNB, for fees paid in BNB
    market_depth: Decimal | None = None  # most a market order executes; the rest EXPIREs
    retry_after_s: int = 1              # the Retry-After of a 429 / 418 (an IP ban: 120 s up to 3 days)

    def __post_init__(self) -> None:
        self.by_symbol = {m.symbol: m for m in self.markets}
        self.locked: dict[str, Decimal] = {asset: D(0) for asset in self.balances}
        self.orders: dict[int, FakeOrder] = {}
        self.by_client: dict[str, int] = {}
        self.trades: list[FakeTrade] = []
        self.faults: deque[Fault] = deque()
        self.stream_down = False
        self.requests: list[tuple[str, str]] = []
        self.handler_ns: list[int] = []    # time spent inside the fake per request (for the benchmark;
        # also sent back as the X-Fake-Handler-Ns header, for a fake in another process)
        self.lock = threading.RLock()
        self.release = threading.Event()    # frees requests held by a "hang" fault
        self.listeners: list[Any] = []      # called with each executionReport (the user-data stream)
        self._order_ids = itertools.count(1000)
        self._list_ids = itertools.count(1)
        self._trade_ids = itertools.count(5000)
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> "BinanceFake":
        fake = self

        class Handler(_Handler):
            pass

        Handler.fake = fake
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.02,), name="binance-fake", daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- test controls ----------------------------------------------------------------------------
    def inject(self, kind: str, method: str = "POST", path: str = "/api/v3/order", times: int = 1) -> None:
        with self.lock:
            for _ in range(times):
                self.faults.append(Fault(kind, method, path))

    def heal(self) -> None:
        with self.lock:
            self.faults.clear()

    def fill(self, client_order_id: str, qty: Decimal | None = None, price: Decimal | None = None) -> None:
        """Execute `qty` (default: what is left) of a resting order at its price (or `price`)."""
        with self.lock:
            order = self.orders[self.by_client[client_order_id]]
            assert order.status in ("NEW", "PARTIALLY_FILLED"), f"{client_order_id} is {order.status}"
            left = order.qty - order.executed
            qty = left if qty is None else min(qty, left)
            if price is None:
                price = order.price if order.price else order.stop_price
            self._execute(order, qty, price, maker=order.type == "LIMIT")

    def count_client_id(self, client_order_id: str) -> int:
        with self.lock:
            return sum(1 for o in self.orders.values() if o.client_order_id == client_order_id)

    def place_external(self, client_order_id: str, symbol: str, side: str, qty: Decimal, price: Decimal) -> None:
        """An order someone else placed (another program, a person), straight into the venue."""
        with self.lock:
            self._new_order({"symbol": symbol, "side": side, "type": "LIMIT", "quantity": fmt(qty),
                             "price": fmt(price), "timeInForce": "GTC", "newClientOrderId": client_order_id})

    def set_quote(self, symbol: str, bid: Decimal, ask: Decimal) -> None:
        """The market moves: conditional orders whose stop it reaches trigger (STOP_LOSS /
        TAKE_PROFIT execute at once at the touch, the *_LIMIT ones rest as limits), trailing stops
        ratchet, and resting limits it reaches execute at their price (as maker)."""
        with self.lock:
            m = self.by_symbol[symbol]
            m.bid, m.ask = bid, ask
            for order in list(self.orders.values()):
                if order.symbol == symbol and order.status in ("NEW", "PARTIALLY_FILLED"):
                    self._on_quote(order, m)

    def _on_quote(self, order: FakeOrder, m: FakeMarket) -> None:
        sell = order.side == "SELL"
        touch = m.bid if sell else m.ask
        if order.type in CONDITIONAL and not order.triggered:
            if order.trailing_delta:
                order.peak = max(order.peak, touch) if sell else min(order.peak, touch)
                level = order.peak * (1 - D(order.trailing_delta) / 10_000 * (1 if sell else -1))
                reached = touch <= level if sell else touch >= level
            else:
                reached = _stop_reached(order.type, order.side, order.stop_price, m)
            if not reached:
                return
            order.triggered = True
            self._expire_siblings(order)
            if order.type in ("STOP_LOSS", "TAKE_PROFIT"):
                self._execute(order, order.qty - order.executed, touch, maker=False)
                return
        if order.type in ("LIMIT", "LIMIT_MAKER") or order.triggered:
            if order.price and (touch >= order.price if sell else touch <= order.price):
                self._execute(order, order.qty - order.executed, order.price, maker=True)

    def _expire_siblings(self, order: FakeOrder) -> None:
        """A leg of an OCO list executed or triggered: binance expires the other leg (ALL_DONE)."""
        if order.order_list_id < 0:
            return
        for other in list(self.orders.values()):
            if (other.order_list_id == order.order_list_id and other is not order
                    and other.status in ("NEW", "PARTIALLY_FILLED")):
                self._end(other, "EXPIRED")

    def _end(self, order: FakeOrder, status: str) -> None:
        order.status = status
        order.update_time = _ms()
        if order.locked:
            m = self.by_symbol[order.symbol]
            self.locked[m.quote if order.side == "BUY" else m.base] -= order.locked
            order.locked = D(0)
        self._emit(order, status)

    # -- the exchange -----------------------------------------------------------------------------
    def handle(self, method: str, path: str, params: dict[str, str], headers: Any) -> Any:
        route = (method, path)
        if path in ("/api/v3/account", "/api/v3/order", "/api/v3/openOrders", "/api/v3/myTrades",
                    "/api/v3/orderList/oco", "/api/v3/order/cancelReplace"):
            if "signature" not in params or "timestamp" not in params or not headers.get("X-MBX-APIKEY"):
                raise BinanceError(401, -2014, "API-key format invalid.")
        if path == "/api/v3/allOrders" and ("signature" not in params or not headers.get("X-MBX-APIKEY")):
            raise BinanceError(401, -2014, "API-key format invalid.")
        if self.stream_down and method == "GET" and path in ("/api/v3/openOrders", "/api/v3/myTrades", "/api/v3/order",
                                                              "/api/v3/allOrders"):
            raise _Drop()
        with self.lock:
            if route == ("GET", "/api/v3/time"):
                return {"serverTime": _ms()}
            if route == ("GET", "/api/v3/exchangeInfo"):
                return {"timezone": "UTC", "serverTime": _ms(), "rateLimits": [], "exchangeFilters": [],
                        "symbols": [m.info() for m in self.markets]}
            if route == ("GET", "/api/v3/ticker/24hr"):
                return self._ticker(params)
            if route == ("GET", "/api/v3/ticker/bookTicker"):
                m = self._market(params.get("symbol", ""))
                bid, ask = self._quote(m)
                return {"symbol": m.symbol, "bidPrice": fmt(bid), "bidQty": "1.00000000",
                        "askPrice": fmt(ask), "askQty": "1.00000000"}
            if route == ("GET", "/api/v3/klines"):
                return self._klines(params)
            if route == ("GET", "/api/v3/account"):
                return self._account()
            if route == ("POST", "/api/v3/order"):
                return self._new_order(params)
            if route == ("POST", "/api/v3/orderList/oco"):
                return self._new_oco(params)
            if route == ("POST", "/api/v3/order/cancelReplace"):
                return self._cancel_replace(params)
            if route == ("GET", "/api/v3/order"):
                return self._find(params).as_json()
            if route == ("DELETE", "/api/v3/order"):
                return self._cancel(params)
            if route == ("GET", "/api/v3/openOrders"):
                symbol = params.get("symbol")
                return [o.as_json() for o in self.orders.values()
                        if o.status in ("NEW", "PARTIALLY_FILLED") and (symbol is None or o.symbol == symbol)]
            if route == ("GET", "/api/v3/myTrades"):
                return self._my_trades(params)
            if route == ("GET", "/api/v3/allOrders"):
                return self._all_orders(params)
        raise BinanceError(404, -1000, f"no route {method} {path}")

    def _market(self, symbol: str) -> FakeMarket:
        market = self.by_symbol.get(symbol)
        if market is None:
            raise BinanceError(400, -1121, "Invalid symbol.")
        return market

    def _quote(self, m: FakeMarket) -> tuple[Decimal, Decimal]:
        """A market's bid and ask as its tickers show them: BNB/USDT follows `bnb_price`, the
        price BNB fees are charged at, so a bot valuing its BNB fees from the ticker agrees."""
        if m.base == "BNB" and m.quote == "USDT":
            return self.bnb_price, self.bnb_price + m.tick_size
        return m.bid, m.ask

    def _ticker(self, params: dict[str, str]) -> Any:
        def one(m: FakeMarket) -> dict[str, Any]:
            bid, ask = self._quote(m)
            last = bid
            return {"symbol": m.symbol, "priceChange": "0.00000000", "priceChangePercent": "0.000",
                    "weightedAvgPrice": fmt(last), "prevClosePrice": fmt(last), "lastPrice": fmt(last),
                    "lastQty": "0.01000000", "bidPrice": fmt(bid), "bidQty": "1.00000000", "askPrice": fmt(ask),
                    "askQty": "1.00000000", "openPrice": fmt(last), "highPrice": fmt(ask), "lowPrice": fmt(bid),
                    "volume": "100.00000000", "quoteVolume": fmt(last * 100), "openTime": _ms() - 86_400_000,
                    "closeTime": _ms(), "firstId": 1, "lastId": 100, "count": 100}
        if "symbol" in params:
            return one(self._market(params["symbol"]))
        return [one(m) for m in self.markets]

    def _klines(self, params: dict[str, str]) -> list[list[Any]]:
        m = self._market(params["symbol"])
        step = {"1m": 60_000, "5m": 300_000, "1h": 3_600_000, "1d": 86_400_000}[params.get("interval", "1m")]
        start = -(-int(params.get("startTime", _ms() - 10 * step)) // step) * step  # first open >= startTime
        end = int(params.get("endTime", _ms()))
        limit = int(params.get("limit", 500))
        rows = []
        t = start
        while t <= end and len(rows) < limit:
            px = m.bid + D(len(rows)) * m.tick_size
            rows.append([t, fmt(px), fmt(px + m.tick_size), fmt(px - m.tick_size), fmt(px), "1.00000000",
                         t + step - 1, fmt(px), 1, "0.5", fmt(px / 2), "0"])
            t += step
        return rows

    def _account(self) -> dict[str, Any]:
        return {"makerCommission": 10, "takerCommission": 10, "buyerCommission": 0, "sellerCommission": 0,
                "commissionRates": {"maker": "0.00100000", "taker": "0.00100000", "buyer": "0.00000000",
                                    "seller": "0.00000000"},
                "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
                "requireSelfTradePrevention": False, "preventSor": False, "updateTime": _ms(),
                "accountType": "SPOT",
                "balances": [{"asset": a, "free": fmt(v - self.locked[a]), "locked": fmt(self.locked[a])}
                             for a, v in self.balances.items()],
                "permissions": ["SPOT"], "uid": 354937868}

    def _new_order(self, p: dict[str, str]) -> dict[str, Any]:
        m = self._market(p.get("symbol", ""))
        cid = legal_client_id(p, "newClientOrderId") or f"x-{next(self._order_ids)}"
        previous = self.orders.get(self.by_client.get(cid, -1))
        if previous is not None and previous.status in ("NEW", "PARTIALLY_FILLED"):
            raise BinanceError(400, -2010, "Duplicate order sent.")  # unique among open orders only
        kind, side = p.get("type", ""), p.get("side", "")
        if kind not in ("MARKET", "LIMIT", "LIMIT_MAKER", *CONDITIONAL) or side not in ("BUY", "SELL"):
            raise BinanceError(400, -1116, "Invalid orderType.")
        tif = p.get("timeInForce")
        if kind == "MARKET" and tif is not None:
            raise BinanceError(400, -1106, "Parameter 'timeInForce' sent when not required.")
        if kind in ("LIMIT", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT") and tif not in ("GTC", "IOC", "FOK"):
            raise BinanceError(400, -1102,
                               "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.")
        try:
            qty = D(p["quantity"])
        except KeyError:
            raise BinanceError(400, -1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.")
        price = D(p.get("price", "0"))
        stop = D(p.get("stopPrice", "0"))
        trailing = self._trailing_delta(kind, p.get("trailingDelta"), stop)
        touch = m.ask if side == "BUY" else m.bid
        self._check_leg(m, kind, side, qty, price, stop, trailing)
        crosses = bool(price) and not stop and not trailing and (price >= m.ask if side == "BUY" else price <= m.bid)
        # funds: a resting order locks them, a market order must find them now
        need_asset = m.quote if side == "BUY" else m.base
        need = (price or stop or touch) * qty * (1 + self.fee_rate) if side == "BUY" else qty
        if self.balances.get(need_asset, D(0)) - self.locked.get(need_asset, D(0)) < need:
            raise BinanceError(400, -2010, "Account has insufficient balance for requested action.")
        now = _ms()
        order = FakeOrder(next(self._order_ids), cid, m.symbol, side, kind, qty, price, stop,
                          tif, now, now, trailing_delta=trailing, peak=touch)
        self.orders[order.order_id] = order
        self.by_client[cid] = order.order_id
        first_trade = len(self.trades)
        if kind == "MARKET":
            depth = qty if self.market_depth is None else min(qty, self.market_depth)
            if depth > 0:
                self._execute(order, depth, touch, maker=False)
            if order.executed < qty:
                order.status = "EXPIRED"  # binance: what the book could not take expires
        elif tif in ("IOC", "FOK") and kind == "LIMIT":
            if crosses and not (tif == "FOK" and self.market_depth is not None and self.market_depth < qty):
                depth = qty if self.market_depth is None else min(qty, self.market_depth)
                self._execute(order, depth, touch, maker=False)
            if order.executed < qty:
                order.status = "EXPIRED"  # nothing of an IOC / FOK order ever rests
        else:
            order.locked = need
            self.locked[need_asset] += need
        if not self.trades[first_trade:]:
            self._emit(order, "NEW" if order.status == "NEW" else order.status)
        if order.status == "EXPIRED" and self.trades[first_trade:]:
            self._emit(order, "EXPIRED")
        out = order.as_json()
        del out["time"], out["updateTime"], out["isWorking"], out["icebergQty"]
        if not order.stop_price:
            del out["stopPrice"]
        out["transactTime"] = now
        out["fills"] = [t.fill_json() for t in self.trades[first_trade:]]
        return out

    @staticmethod
    def _trailing_delta(kind: str, value: str | None, stop: Decimal) -> int:
        """trailingDelta (basis points) on a conditional type, within the TRAILING_DELTA filter."""
        if value is None:
            return 0
        if kind not in CONDITIONAL:
            raise BinanceError(400, -1106, "Parameter 'trailingDelta' sent when not required.")
        if not value.isdigit() or not TRAILING_MIN_BPS <= int(value) <= TRAILING_MAX_BPS:
            raise BinanceError(400, -1013, "Filter failure: TRAILING_DELTA")
        if stop:  # an activation price: not reproduced (module docstring)
            raise BinanceError(400, -1000, "fake: a trailing stop with an activation stopPrice is not reproduced")
        return int(value)

    def _check_leg(self, m: FakeMarket, kind: str, side: str, qty: Decimal, price: Decimal, stop: Decimal,
                   trailing: int) -> None:
        """binance's checks of one order (or one OCO leg): mandatory prices, LOT_SIZE, PRICE_FILTER,
        post-only, NOTIONAL, a stop on the wrong side of the market."""
        if kind in ("LIMIT", "LIMIT_MAKER", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT") and not price:
            raise BinanceError(400, -1102, "Mandatory parameter 'price' was not sent, was empty/null, or malformed.")
        if kind in CONDITIONAL and not stop and not trailing:
            raise BinanceError(400, -1102,
                               "Mandatory parameter 'stopPrice' was not sent, was empty/null, or malformed.")
        if qty < m.min_qty or qty > m.max_qty or (qty - m.min_qty) % m.step_size:
            raise BinanceError(400, -1013, "Filter failure: LOT_SIZE")
        for px in (price, stop):
            if px and px % m.tick_size:
                raise BinanceError(400, -1013, "Filter failure: PRICE_FILTER")
        touch = m.ask if side == "BUY" else m.bid
        crosses = bool(price) and not stop and (price >= m.ask if side == "BUY" else price <= m.bid)
        if kind == "LIMIT_MAKER" and crosses:
            raise BinanceError(400, -2010, "Order would immediately match and take.")
        if (price or stop or touch) * qty < m.min_notional:
            raise BinanceError(400, -1013, "Filter failure: NOTIONAL")
        if stop and kind in CONDITIONAL and _stop_reached(kind, side, stop, m):
            raise BinanceError(400, -2010, "Stop price would trigger immediately.")

    def _new_oco(self, p: dict[str, str]) -> dict[str, Any]:
        """POST /api/v3/orderList/oco: two legs, one above the market and one below, as one list.
        A SELL's limit leg is above (price > last > the stop leg's stopPrice), a BUY's below."""
        m = self._market(p.get("symbol", ""))
        side = p.get("side", "")
        if side not in ("BUY", "SELL"):
            raise BinanceError(400, -1102, "Mandatory parameter 'side' was not sent, was empty/null, or malformed.")
        try:
            qty = D(p["quantity"])
        except KeyError:
            raise BinanceError(400, -1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.")
        legs = []
        for pos in ("above", "below"):
            kind = p.get(f"{pos}Type", "")
            allowed = ("LIMIT_MAKER", *CONDITIONAL)
            if kind not in allowed:
                raise BinanceError(400, -1102, f"Mandatory parameter '{pos}Type' was not sent, was empty/null, or "
                                               "malformed.")
            price, stop = D(p.get(f"{pos}Price", "0")), D(p.get(f"{pos}StopPrice", "0"))
            trailing = self._trailing_delta(kind, p.get(f"{pos}TrailingDelta"), stop)
            tif = p.get(f"{pos}TimeInForce")
            if kind in ("STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT") and tif not in ("GTC", "IOC", "FOK"):
                raise BinanceError(400, -1102, f"Mandatory parameter '{pos}TimeInForce' was not sent, was "
                                               "empty/null, or malformed.")
            self._check_leg(m, kind, side, qty, price, stop, trailing)
            cid = legal_client_id(p, f"{pos}ClientOrderId") or f"x-{next(self._order_ids)}"
            previous = self.orders.get(self.by_client.get(cid, -1))
            if previous is not None and previous.status in ("NEW", "PARTIALLY_FILLED"):
                raise BinanceError(400, -2010, "Duplicate order sent.")
            legs.append((kind, price, stop, trailing, tif, cid))
        # exactly one leg is the limit one; a SELL's is above the market, a BUY's below
        limit_pos = [i for i, leg in enumerate(legs) if leg[0] == "LIMIT_MAKER"]
        if len(limit_pos) != 1 or limit_pos[0] != (0 if side == "SELL" else 1):
            raise BinanceError(400, -1013, "The relationship of the prices for the orders is not correct.")
        limit = legs[limit_pos[0]][1]
        other = legs[1 - limit_pos[0]]
        last = m.bid if side == "SELL" else m.ask
        trigger = other[2]
        if (not (limit > last) if side == "SELL" else not (limit < last)) or \
                (trigger and (not (trigger < last) if side == "SELL" else not (trigger > last))):
            raise BinanceError(400, -1013, "The relationship of the prices for the orders is not correct.")
        need_asset = m.quote if side == "BUY" else m.base
        need = max(limit, trigger) * qty * (1 + self.fee_rate) if side == "BUY" else qty
        if self.balances.get(need_asset, D(0)) - self.locked.get(need_asset, D(0)) < need:
            raise BinanceError(400, -2010, "Account has insufficient balance for requested action.")
        list_id = next(self._list_ids)
        now = _ms()
        orders = []
        for i, (kind, price, stop, trailing, tif, cid) in enumerate(legs):
            order = FakeOrder(next(self._order_ids), cid, m.symbol, side, kind, qty, price, stop, tif, now, now,
                              trailing_delta=trailing, peak=m.bid if side == "SELL" else m.ask,
                              order_list_id=list_id)
            if i == 0:  # one lock for the list: the quantity (or its cost) once
                order.locked = need
                self.locked[need_asset] += need
            self.orders[order.order_id] = order
            self.by_client[cid] = order.order_id
            self._emit(order, "NEW")
            orders.append(order)

        def report(order: FakeOrder) -> dict[str, Any]:
            out = order.as_json()
            for key in ("time", "updateTime", "isWorking", "icebergQty", "workingTime", "origQuoteOrderQty"):
                out.pop(key, None)
            out["transactTime"] = now
            if not order.stop_price:
                out.pop("stopPrice", None)
            return out

        return {"orderListId": list_id, "contingencyType": "OCO", "listStatusType": "EXEC_STARTED",
                "listOrderStatus": "EXECUTING", "listClientOrderId": p.get("listClientOrderId") or f"list-{list_id}",
                "transactionTime": now, "symbol": m.symbol,
                "orders": [{"symbol": o.symbol, "orderId": o.order_id, "clientOrderId": o.client_order_id}
                           for o in orders],
                "orderReports": [report(o) for o in orders]}

    def _cancel_replace(self, p: dict[str, str]) -> dict[str, Any]:
        """POST /api/v3/order/cancelReplace (cancelReplaceMode STOP_ON_FAILURE): cancel the order,
        then place the new one. `cancelRestrictions=ONLY_NEW` cancels only an order with no fill.
        The cancel failing places nothing (-2022); the new order failing leaves the old one
        canceled (-2021 "partially failed"), as binance documents."""
        if p.get("cancelReplaceMode") != "STOP_ON_FAILURE":
            raise BinanceError(400, -1000, "fake: only cancelReplaceMode STOP_ON_FAILURE is reproduced")
        lookup = {"symbol": p.get("symbol", "")}
        if "cancelOrigClientOrderId" in p:
            lookup["origClientOrderId"] = p["cancelOrigClientOrderId"]
        elif "cancelOrderId" in p:
            lookup["orderId"] = p["cancelOrderId"]
        try:
            old = self._find(lookup)
        except BinanceError:
            raise BinanceError(400, -2022, "Order cancel-replace failed.") from None
        allowed = ("NEW",) if p.get("cancelRestrictions") == "ONLY_NEW" else ("NEW", "PARTIALLY_FILLED")
        if old.status not in allowed or old.order_list_id >= 0:
            raise BinanceError(400, -2022, "Order cancel-replace failed.")
        self._end(old, "CANCELED")
        new = {k: v for k, v in p.items() if not k.startswith("cancel") and k not in ("cancelReplaceMode",)}
        try:
            answer = self._new_order(new)
        except BinanceError:
            raise BinanceError(400, -2021, "Order cancel-replace partially failed.") from None
        cancel = old.as_json()
        cancel["origClientOrderId"], cancel["clientOrderId"] = old.client_order_id, f"cancel-{old.order_id}"
        return {"cancelResult": "SUCCESS", "newOrderResult": "SUCCESS", "cancelResponse": cancel,
                "newOrderResponse": answer}

    def _execute(self, order: FakeOrder, qty: Decimal, price: Decimal, maker: bool) -> None:
        self._expire_siblings(order)
        m = self.by_symbol[order.symbol]
        notional = qty * price
        fee = (notional * self.fee_rate).quantize(D("0.00000001"), ROUND_HALF_EVEN)
        buy = order.side == "BUY"
        if order.locked:
            release = (order.locked * qty / (order.qty - order.executed)) if buy else qty
            release = min(release, order.locked)
            order.locked -= release
            self.locked[m.quote if buy else m.base] -= release
        fee_asset = m.quote
        if self.fee_asset == "received" and buy:
            fee_asset = m.base
            fee = (qty * self.fee_rate).quantize(D("0.00000001"), ROUND_HALF_EVEN)
        elif self.fee_asset == "BNB":
            fee_asset = "BNB"
            fee = (notional * self.fee_rate * D("0.75") / self.bnb_price).quantize(D("0.00000001"), ROUND_HALF_EVEN)
        for asset in (m.base, m.quote, fee_asset):
            self.balances.setdefault(asset, D(0))
            self.locked.setdefault(asset, D(0))
        if buy:
            self.balances[m.quote] -= notional
            self.balances[m.base] += qty
        else:
            self.balances[m.base] -= qty
            self.balances[m.quote] += notional
        self.balances[fee_asset] -= fee
        order.executed += qty
        order.quote += notional
        order.status = "FILLED" if order.executed == order.qty else "PARTIALLY_FILLED"
        if order.status == "FILLED" and order.locked:
            self.locked[m.quote if buy else m.base] -= order.locked
            order.locked = D(0)
        order.update_time = _ms()
        self.trades.append(FakeTrade(next(self._trade_ids), order.order_id, order.symbol, price, qty, fee, fee_asset,
                                     order.update_time, buy, maker))
        self._emit(order, "TRADE", self.trades[-1])

    def _find(self, p: dict[str, str]) -> FakeOrder:
        order_id = p.get("orderId")
        if order_id is None:
            order_id = self.by_client.get(p.get("origClientOrderId", ""))
        order = self.orders.get(int(order_id)) if order_id is not None else None
        if order is None or order.symbol != p.get("symbol"):
            raise BinanceError(400, -2013, "Order does not exist.")
        return order

    def _cancel(self, p: dict[str, str]) -> dict[str, Any]:
        try:
            order = self._find(p)
        except BinanceError:
            raise BinanceError(400, -2011, "Unknown order sent.") from None
        if order.status not in ("NEW", "PARTIALLY_FILLED"):
            raise BinanceError(400, -2011, "Unknown order sent.")
        self._end(order, "CANCELED")
        for other in list(self.orders.values()):  # a leg's cancel cancels its whole list
            if (order.order_list_id >= 0 and other.order_list_id == order.order_list_id
                    and other.status in ("NEW", "PARTIALLY_FILLED")):
                self._end(other, "CANCELED")
        out = order.as_json()
        out["origClientOrderId"] = order.client_order_id
        out["clientOrderId"] = f"cancel-{next(self._order_ids)}"  # binance names the cancel request, not the order
        out["transactTime"] = order.update_time
        for key in ("time", "updateTime", "isWorking", "icebergQty", "workingTime", "origQuoteOrderQty"):
            out.pop(key, None)
        return out

    def _my_trades(self, p: dict[str, str]) -> list[dict[str, Any]]:
        symbol = p.get("symbol")
        if symbol is None:
            raise BinanceError(400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        limit = min(int(p.get("limit", 500)), 1000)
        rows = [t for t in self.trades if t.symbol == symbol]
        if "startTime" not in p and "fromId" not in p:
            return [t.as_json() for t in rows[-limit:]]  # binance: the most recent trades
        start = int(p.get("startTime", 0))
        from_id = int(p.get("fromId", 0))
        rows = [t for t in rows if t.time >= start and t.trade_id >= from_id]
        return [t.as_json() for t in rows[:limit]]

    def _all_orders(self, p: dict[str, str]) -> list[dict[str, Any]]:
        symbol = p.get("symbol")
        if symbol is None:
            raise BinanceError(400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        limit = min(int(p.get("limit", 500)), 1000)
        rows = [o for o in self.orders.values() if o.symbol == symbol]
        if "startTime" not in p and "orderId" not in p:
            return [o.as_json() for o in rows[-limit:]]
        start = int(p.get("startTime", 0))
        rows = [o for o in rows if o.time >= start and o.order_id >= int(p.get("orderId", 0))]
        return [o.as_json() for o in rows[:limit]]

    def add_history(self, symbol: str, side: str, qty: Decimal, price: Decimal, count: int,
                    client_prefix: str = "old", age_ms: int = 10 * 86_400_000) -> None:
        """`count` filled market orders made long ago by someone (a history the account has)."""
        with self.lock:
            for i in range(count):
                t = _ms() - age_ms + i
                order = FakeOrder(next(self._order_ids), f"{client_prefix}-{i}", symbol, side, "MARKET", qty, D(0),
                                  D(0), None, t, t, status="FILLED", executed=qty, quote=qty * price)
                self.orders[order.order_id] = order
                self.by_client[order.client_order_id] = order.order_id
                self.trades.append(FakeTrade(next(self._trade_ids), order.order_id, symbol, price, qty, D(0),
                                             self.by_symbol[symbol].quote, t, side == "BUY", False))

    def _emit(self, order: FakeOrder, execution: str, trade: FakeTrade | None = None) -> None:
        """Tell the user-data stream (binance's executionReport) what just happened to `order`."""
        if not self.listeners:
            return
        report = {
            "e": "executionReport", "E": _ms(), "s": order.symbol, "c": order.client_order_id, "S": order.side,
            "o": order.type, "f": order.time_in_force or "GTC", "q": fmt(order.qty), "p": fmt(order.price),
            "P": fmt(order.stop_price), "F": "0.00000000", "g": -1, "C": "", "x": execution,
            "X": order.status, "r": "NONE", "i": order.order_id,
            "l": fmt(trade.qty) if trade else "0.00000000", "z": fmt(order.executed),
            "L": fmt(trade.price) if trade else "0.00000000",
            "n": fmt(trade.commission) if trade else "0", "N": trade.commission_asset if trade else None,
            "T": order.update_time, "t": trade.trade_id if trade else -1, "I": 0,
            "w": order.status == "NEW", "m": bool(trade and trade.is_maker), "M": False, "O": order.time,
            "Z": fmt(order.quote), "Y": fmt(trade.price * trade.qty) if trade else "0.00000000",
            "Q": "0.00000000", "W": order.time, "V": "EXPIRE_MAKER"}
        if execution == "CANCELED":  # binance: "c" names the cancel request, "C" the order
            report["C"], report["c"] = order.client_order_id, f"cancel-{order.order_id}"
        for listener in list(self.listeners):
            listener(report)

    def throttled(self, kind: str) -> tuple[int, Any, dict[str, str]]:
        """The answer to a throttled request: binance's 429 (or 418, its IP ban) with Retry-After."""
        message = ("Too many requests; current limit is 6000 request weight per 1 MINUTE." if kind == "429"
                   else "Way too many requests; IP banned until 1700000000000.")
        return int(kind), {"code": -1003, "msg": message}, {"Retry-After": str(self.retry_after_s)}

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.method == method and fault.path == path:
                    self.faults.remove(fault)
                    return fault
        return None


def _ms() -> int:
    return time.time_ns() // 1_000_000


CONDITIONAL = ("STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT")
TRAILING_MIN_BPS, TRAILING_MAX_BPS = 10, 2000   # the TRAILING_DELTA filter


def _stop_reached(kind: str, side: str, stop: Decimal, m: FakeMarket) -> bool:
    """A STOP_LOSS triggers when the price falls to its stop (a sell) or rises to it (a buy); a
    TAKE_PROFIT the other way round. The price: the bid for a sell, the ask for a buy."""
    touch = m.bid if side == "SELL" else m.ask
    falls = side == "SELL" if kind.startswith("STOP_LOSS") else side == "BUY"
    return touch <= stop if falls else touch >= stop


class _Handler(BaseHTTPRequestHandler):
    fake: BinanceFake
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def _serve(self, method: str) -> None:
        started = time.perf_counter_ns()
        fake = self.fake
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        params = dict(parse_qsl(split.query))
        if body.startswith("{"):  # a JSON body (bybit's POSTs); binance posts a form
            params.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in json.loads(body).items()})
        else:
            params.update(parse_qsl(body))
        fake.requests.append((method, split.path))
        fault = fake.take_fault(method, split.path)
        if fault is not None and fault.kind == "drop_before":
            self._drop()
            return
        if fault is not None and fault.kind in ("429", "418"):
            self._send(*fake.throttled(fault.kind))
            return
        if fault is not None and fault.kind in ("500", "503"):
            self._send(int(fault.kind), None, raw=b"<html><body><h1>Service Unavailable</h1></body></html>")
            return
        try:
            status, payload = 200, fake.handle(method, split.path, params, self.headers)
        except _Drop:
            self._drop()
            return
        except BinanceError as e:
            status, payload = e.status, {"code": e.code, "msg": e.msg}
        spent = time.perf_counter_ns() - started
        fake.handler_ns.append(spent)
        if fault is not None and fault.kind == "hang":
            fake.release.wait(30)  # the client times out meanwhile
            self._drop()
            return
        if fault is not None and fault.kind == "drop":
            self._drop()
            return
        self._send(status, payload, {"X-Fake-Handler-Ns": str(spent)})

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(2)
        except OSError:
            pass

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html" if raw is not None else "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


def serve_forever_in_child(connection: Any, with_ws: bool = False) -> None:
    """Run a fake in this (child) process: send its url (and, `with_ws`, then the url of a
    websocket fake carrying its user-data stream), serve until told "stop". "fill:<client id>"
    fills that order and answers with the monotonic time (ns) just before the fill."""
    fake = BinanceFake(balances={"USDT": D(10) ** 12, "BTC": D(0), "ETH": D(0)}).start()
    connection.send(fake.url)
    if with_ws:
        connection.send(BinanceWsFake().attach(fake).url)
    while True:
        message = connection.recv()
        if not isinstance(message, str) or not message.startswith("fill:"):
            break
        started = time.monotonic_ns()
        fake.fill(message[len("fill:"):])
        connection.send(started)
    fake.stop()


def redirect(exchange: Any, base_url: str, ws_url: str | None = None) -> None:
    """Point every REST url of a ccxt exchange at `base_url` (scheme and host), keeping paths;
    and every websocket url at `ws_url` when given (ccxt.pro)."""
    target = urlsplit(base_url)
    ws_target = urlsplit(ws_url) if ws_url else None

    def rewrite(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: rewrite(v) for k, v in value.items()}
        if isinstance(value, str) and value.startswith("http"):
            parts = urlsplit(value)
            return urlunsplit((target.scheme, target.netloc, parts.path, parts.query, parts.fragment))
        if isinstance(value, str) and value.startswith("ws") and ws_target is not None:
            parts = urlsplit(value)
            return urlunsplit((ws_target.scheme, ws_target.netloc, parts.path, parts.query, parts.fragment))
        return value

    exchange.urls["api"] = rewrite(exchange.urls["api"])


class BinanceWsFake:
    """The binance spot market stream (wss://stream.binance.com:9443/ws/<n>) for ccxt.pro's
    watch_ticker: `{"method":"SUBSCRIBE","params":["btcusdt@ticker"],"id":1}` is answered with
    `{"result":null,"id":1}`; `push` then sends a 24hrTicker event to every subscriber of its
    stream. `drop()` closes every connection (ccxt.pro raises on the pending watch). Built on
    aiohttp, which ccxt itself depends on."""

    def __init__(self) -> None:
        import asyncio

        self._asyncio = asyncio
        self.loop = asyncio.new_event_loop()
        self.subscriptions: dict[Any, set[str]] = {}
        self.user_streams: dict[Any, int] = {}  # websocket -> subscriptionId (user-data stream)
        self.subscribed = threading.Condition()
        self.refuse = False              # refuse new connections (HTTP 503 on the upgrade)
        self.port = 0
        self._runner: Any = None
        threading.Thread(target=self.loop.run_forever, name="binance-ws-fake", daemon=True).start()
        self._call(self._start())

    def _call(self, coro: Any, timeout: float = 10) -> Any:
        return self._asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/ws/{stream}", self._serve)
        app.router.add_get("/ws", self._serve)
        app.router.add_get("/ws-api/v3", self._serve_api)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def _serve(self, request: Any) -> Any:
        from aiohttp import WSMsgType, web

        if self.refuse:
            return web.Response(status=503, text="Service Unavailable")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.subscriptions[ws] = set()
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                body = json.loads(message.data)
                if body.get("method") == "SUBSCRIBE":
                    self.subscriptions[ws].update(body.get("params", []))
                    await ws.send_str(json.dumps({"result": None, "id": body.get("id")}))
                    with self.subscribed:
                        self.subscribed.notify_all()
                elif body.get("method") == "UNSUBSCRIBE":
                    self.subscriptions[ws].difference_update(body.get("params", []))
                    await ws.send_str(json.dumps({"result": None, "id": body.get("id")}))
        finally:
            self.subscriptions.pop(ws, None)
        return ws

    def attach(self, fake: "BinanceFake") -> "BinanceWsFake":
        """Carry `fake`'s executionReports to the clients subscribed to the user-data stream."""
        fake.listeners.append(self.push_user_event)
        return self

    async def _serve_api(self, request: Any) -> Any:
        """The websocket API (wss://ws-api.binance.com/ws-api/v3): `userDataStream.subscribe.signature`
        (params apiKey, timestamp, signature: present, not verified) subscribes this connection to
        the account's events, sent as {"subscriptionId": n, "event": {...}}."""
        from aiohttp import WSMsgType, web

        if self.refuse:
            return web.Response(status=503, text="Service Unavailable")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                body = json.loads(message.data)
                params = body.get("params") or {}
                if body.get("method") == "userDataStream.subscribe.signature" and params.get("signature") \
                        and params.get("apiKey"):
                    self.user_streams[ws] = len(self.user_streams)
                    await ws.send_str(json.dumps({"id": body.get("id"), "status": 200,
                                                  "result": {"subscriptionId": self.user_streams[ws]}}))
                    with self.subscribed:
                        self.subscribed.notify_all()
                else:
                    await ws.send_str(json.dumps({"id": body.get("id"), "status": 400,
                                                  "error": {"code": -1102, "msg": "unsupported request"}}))
        finally:
            self.user_streams.pop(ws, None)
        return ws

    def push_user_event(self, event: dict[str, Any]) -> None:
        """Send one account event to every user-data subscriber (called from the REST fake's thread)."""
        async def send() -> None:
            for ws, sid in list(self.user_streams.items()):
                if not ws.closed:
                    await ws.send_str(json.dumps({"subscriptionId": sid, "event": event}))

        if self.user_streams:
            self._asyncio.run_coroutine_threadsafe(send(), self.loop)

    def wait_user_stream(self, timeout: float = 10) -> bool:
        with self.subscribed:
            return self.subscribed.wait_for(lambda: bool(self.user_streams), timeout)

    def wait_subscribed(self, stream: str, timeout: float = 10) -> bool:
        with self.subscribed:
            return self.subscribed.wait_for(lambda: any(stream in s for s in list(self.subscriptions.values())),
                                            timeout)

    def push(self, market_id: str, bid: Decimal, ask: Decimal, last: Decimal | None = None) -> int:
        """Send a 24hrTicker to the subscribers of `<market id>@ticker`; returns how many got it."""
        now = _ms()
        last = bid if last is None else last
        event = {"e": "24hrTicker", "E": now, "s": market_id, "p": "0.00", "P": "0.000", "w": fmt(last),
                 "x": fmt(last), "c": fmt(last), "Q": "0.01000000", "b": fmt(bid), "B": "1.00000000",
                 "a": fmt(ask), "A": "1.00000000", "o": fmt(last), "h": fmt(ask), "l": fmt(bid),
                 "v": "100.00000000", "q": fmt(last * 100), "O": now - 86_400_000, "C": now, "F": 1, "L": 100,
                 "n": 100}
        stream = market_id.lower() + "@ticker"

        async def send() -> int:
            sent = 0
            for ws, streams in list(self.subscriptions.items()):
                if stream in streams and not ws.closed:
                    await ws.send_str(json.dumps(event))
                    sent += 1
            return sent

        return self._call(send())

    def drop(self) -> None:
        async def close_all() -> None:
            for ws in list(self.subscriptions) + list(self.user_streams):
                await ws.close()

        self._call(close_all())

    def stop(self) -> None:
        try:
            self.drop()
            self._call(self._runner.cleanup())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
