"""A loopback fake of binance's USD-M futures REST API (fapi), for driving real ccxt `binanceusdm`.

Written from ccxt 4.5.90's binance.py (the endpoints binanceusdm calls, the fields its
parse_market / parse_order / parse_trade / parse_balance / parse_position_risk / parse_income /
parse_leverage read, its exception tables) and binance's USD-M API documentation. It serves on
127.0.0.1 with an ephemeral port, through the spot fake's HTTP handler and faults
(tests/fakes/binance_fake.py: `redirect(exchange, fake.url)`, `inject`, `stream_down`).

Endpoints (prefix /fapi): GET v1/time, v1/exchangeInfo, v1/ticker/24hr, v1/ticker/bookTicker,
v1/leverageBracket, v1/symbolConfig, v2|v3/account, v2|v3/positionRisk, v1/openOrders,
v1/allOrders, v1/userTrades, v1/income; POST v1/leverage, v1/marginType; POST|GET|DELETE
v1/order. Signed calls must carry timestamp, signature and X-MBX-APIKEY (present, not verified).

Matching is scripted, as in the spot fake: a MARKET order executes at once at the ask (buy) or
bid (sell), at most `market_depth` of it (the rest EXPIREs); LIMIT orders rest until the test
calls `fill(client_order_id, qty)`.

Venue behaviours it reproduces (USD-M, one-way position mode):
- positions are the venue's: per symbol, signed `positionAmt`, entry price averaged on the way
  up, realized P&L (into the wallet) on the way down, flipping through zero; positionRisk v3
  lists only symbols with a position (v2 lists every symbol, with leverage and marginType);
- the account is a margin wallet: walletBalance moves by realized P&L, commission and funding;
  marginBalance adds unrealized P&L at the mark (the bid/ask mid); availableBalance is the
  margin balance less the initial margin of positions and open orders (notional / leverage);
  an order that needs more is refused with -2019 "Margin is insufficient.";
- leverage per symbol (POST leverage; -4028 beyond the symbol's maximum from leverageBracket),
  margin type per symbol (POST marginType ISOLATED / CROSSED; -4046 "No need to change margin
  type." when it already is, -4048 with a position, -4047 with open orders);
- reduceOnly: refused with -2022 "ReduceOnly Order is rejected." if it would open or grow the
  position (or exceed it); exempt from the minimum notional (-4164 otherwise);
- time in force GTC / IOC / FOK, and GTX (ccxt's postOnly) refused with -5022 when it would
  take; a client order id unique among OPEN orders only (-4116 "ClientOrderId is duplicated.");
  the order answer is newOrderRespType RESULT: the order's status, no fills;
- userTrades with commission and commissionAsset (USDT, or BNB at `bnb_price` with binance's
  10 % discount when `fee_asset="BNB"`), realizedPnl, side; without startTime / fromId the most
  RECENT `limit` trades, with startTime the trades from then (oldest first, within 7 days);
- income: FUNDING_FEE, COMMISSION and REALIZED_PNL records (tranId, income as a signed decimal
  string); `charge_funding(symbol, rate)` books a funding payment on the open position
  (longs pay a positive rate), filtered by incomeType / symbol / startTime, oldest first;
  `run_funding(until_ms, rate, since_ms)` follows binance's schedule: every 8 hours (00:00,
  08:00, 16:00 UTC) on every open position;
- 429 / 418 with Retry-After, 5xx, lost answers (the spot fake's `inject`);
- the user-data stream (`start_stream()`, BinanceFuturesWsFake below): POST /fapi/v1/listenKey
  starts one (the account's active key again, extended, if it has one), PUT keeps it alive
  (-1125 "This listenKey does not exist." once it has expired), DELETE closes it (API key
  header only, no signature: binance's USER_STREAM security); the socket at
  `<ws url>/private/ws?listenKey=<key>` (what ccxt.pro 4.5.90 binanceusdm dials; the legacy
  `/ws/<key>` too) carries ORDER_TRADE_UPDATE on every order change (x NEW / TRADE / CANCELED /
  EXPIRED, X status, l/L last qty/price, z cumulative, n/N commission and asset on a trade,
  t trade id (the REST trade's id), c client id, T/E times, ps position side, R reduce only, rp
  realized profit, m maker) and ACCOUNT_UPDATE after each trade (reason ORDER: wallet balances
  and the symbol's position); `expire_listen_key()` pushes listenKeyExpired and, as binance
  documents, nothing more reaches a socket of that key (the socket stays open);
  `ws.drop()` closes every socket, `ws.refuse` refuses new ones;
- position mode: GET /fapi/v1/positionSide/dual ({"dualSidePosition": bool}, `dual_side`), POST
  to switch it (-4059 "No need to change position side.", -4068 with a position, -4067 with open
  orders); in hedge mode an order without positionSide LONG / SHORT is refused with -4061.
- conditional orders through the algo service (binance's "New Algo Order", which ccxt 4.5.90 uses
  for every futures stop): POST / GET / DELETE /fapi/v1/algoOrder (by algoId or clientAlgoId),
  GET /fapi/v1/openAlgoOrders and /fapi/v1/allAlgoOrders; STOP_MARKET, TAKE_PROFIT_MARKET, STOP,
  TAKE_PROFIT (triggerPrice) and TRAILING_STOP_MARKET (callbackRate 0.1 to 10 in tenths, else
  -1013); a trigger the price has already reached: -2021 "Order would immediately trigger.";
  reduceOnly with no position to reduce: -2022. `set_quote` triggers them (a stop when the price
  falls to it for a sell, rises for a buy; a take-profit the other way; a trailing stop
  callbackRate % off its best price): algoStatus TRIGGERED, and the order goes to the matching
  engine under the client algo id (`actualOrderId`; ASSUMED: binance documents the field, not the
  triggered order's client id; `triggered_client_id = "own"` gives it another one, which the
  adapter must then follow through actualOrderId), FINISHED once done, REJECTED
  if the matching engine refuses it (a reduce-only with nothing left);
- `set_quote` also executes resting LIMIT orders the new price reaches, at their price (maker);
- modify (PUT /fapi/v1/order): a LIMIT order's quantity and price changed in place.
What it does not reproduce: hedge-mode positions (an order with positionSide LONG / SHORT is
refused: the fake books one net position per symbol); closePosition, activatePrice, workingType
MARK_PRICE and priceProtect on algo orders; the ALGO_UPDATE user-data event; liquidation, ADL
and the maintenance margin; mark price and index
from a separate feed (the mark is the quote's mid); multi-asset mode; leverage brackets beyond the
first; signature and recvWindow checks; request weights; the 24-hour limit of one stream
connection (`ws.drop()` stands for it); what a socket dialled with an unknown key gets (binance
does not document it: the fake accepts it and sends nothing, the harsher reading).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import threading
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from http.server import ThreadingHTTPServer
from typing import Any, Callable

from tests.fakes.binance_fake import BinanceError, Fault, _Drop, _Handler, _ms, legal_client_id

D = Decimal
WEEK_MS = 7 * 86_400_000
LISTEN_KEY_TTL_MS = 60 * 60_000   # binance: a listenKey lives 60 minutes from its last POST / PUT


def fmt(value: Decimal, dp: int = 8) -> str:
    return f"{value:.{dp}f}"


@dataclass
class FuturesMarket:
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
    max_leverage: int = 125

    @property
    def mark(self) -> Decimal:
        return (self.bid + self.ask) / 2

    def info(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol, "pair": self.symbol, "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
            "onboardDate": 1569398400000, "status": "TRADING", "maintMarginPercent": "2.5000",
            "requiredMarginPercent": "5.0000", "baseAsset": self.base, "quoteAsset": self.quote,
            "marginAsset": self.quote, "pricePrecision": 2, "quantityPrecision": 3, "baseAssetPrecision": 8,
            "quotePrecision": 8, "underlyingType": "COIN", "underlyingSubType": ["PoW"], "settlePlan": 0,
            "triggerProtect": "0.0500", "liquidationFee": "0.012500", "marketTakeBound": "0.05",
            "maxMoveOrderLimit": 10000,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": fmt(self.tick_size, 2), "maxPrice": "4529764",
                 "tickSize": fmt(self.tick_size, 2)},
                {"filterType": "LOT_SIZE", "minQty": fmt(self.min_qty, 3), "maxQty": fmt(self.max_qty, 3),
                 "stepSize": fmt(self.step_size, 3)},
                {"filterType": "MARKET_LOT_SIZE", "minQty": fmt(self.min_qty, 3), "maxQty": fmt(self.max_qty, 3),
                 "stepSize": fmt(self.step_size, 3)},
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                {"filterType": "MIN_NOTIONAL", "notional": str(self.min_notional)},
                {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
                 "multiplierDecimal": "4"},
            ],
            "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                           "TRAILING_STOP_MARKET"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"], "permissionSets": ["GRID", "COPY"],
        }


@dataclass
class FuturesOrder:
    order_id: int
    client_order_id: str
    symbol: str
    side: str
    type: str
    qty: Decimal
    price: Decimal           # 0 for market
    time_in_force: str
    reduce_only: bool
    time: int                # ms
    update_time: int
    status: str = "NEW"
    executed: Decimal = D(0)
    quote: Decimal = D(0)

    def as_json(self) -> dict[str, Any]:
        avg = self.quote / self.executed if self.executed else D(0)
        return {
            "orderId": self.order_id, "symbol": self.symbol, "status": self.status,
            "clientOrderId": self.client_order_id, "price": fmt(self.price, 2), "avgPrice": fmt(avg, 5),
            "origQty": fmt(self.qty, 3), "executedQty": fmt(self.executed, 3), "cumQty": fmt(self.executed, 3),
            "cumQuote": fmt(self.quote), "timeInForce": self.time_in_force, "type": self.type,
            "reduceOnly": self.reduce_only, "closePosition": False, "side": self.side, "positionSide": "BOTH",
            "stopPrice": "0", "workingType": "CONTRACT_PRICE", "priceProtect": False, "origType": self.type,
            "priceMatch": "NONE", "selfTradePreventionMode": "EXPIRE_MAKER", "goodTillDate": 0,
            "time": self.time, "updateTime": self.update_time,
        }


@dataclass
class AlgoOrder:
    """A conditional order of the algo service (POST /fapi/v1/algoOrder, algoType CONDITIONAL)."""

    algo_id: int
    client_algo_id: str
    symbol: str
    side: str
    type: str                # STOP_MARKET, TAKE_PROFIT_MARKET, STOP, TAKE_PROFIT, TRAILING_STOP_MARKET
    qty: Decimal
    price: Decimal           # STOP / TAKE_PROFIT: the limit once triggered; else 0
    trigger: Decimal         # 0 for a trailing stop
    callback_rate: Decimal   # percent, a trailing stop's; else 0
    reduce_only: bool
    time_in_force: str
    time: int
    update_time: int
    peak: Decimal = D(0)     # a trailing stop's best price since it was placed
    status: str = "NEW"      # NEW, TRIGGERED, FINISHED, CANCELED, REJECTED
    actual_order_id: int | None = None
    trigger_time: int = 0

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "algoId": self.algo_id, "clientAlgoId": self.client_algo_id, "algoType": "CONDITIONAL",
            "orderType": self.type, "symbol": self.symbol, "side": self.side, "positionSide": "BOTH",
            "timeInForce": self.time_in_force, "quantity": fmt(self.qty, 3), "algoStatus": self.status,
            "triggerPrice": fmt(self.trigger, 2), "price": fmt(self.price, 2), "icebergQuantity": None,
            "selfTradePreventionMode": "EXPIRE_MAKER", "workingType": "CONTRACT_PRICE", "priceMatch": "NONE",
            "closePosition": False, "priceProtect": False, "reduceOnly": self.reduce_only,
            "createTime": self.time, "updateTime": self.update_time, "triggerTime": self.trigger_time,
            "goodTillDate": 0,
        }
        if self.callback_rate:
            out["callbackRate"] = str(self.callback_rate)
        if self.actual_order_id is not None:
            out["actualOrderId"] = str(self.actual_order_id)
        return out


ALGO_TYPES = ("STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET")


def _reached(kind: str, side: str, trigger: Decimal, touch: Decimal) -> bool:
    """A stop (STOP / STOP_MARKET) triggers when the price falls to it (a sell) or rises to it (a
    buy); a take-profit the other way round."""
    falls = (side == "SELL") == kind.startswith("STOP")
    return touch <= trigger if falls else touch >= trigger


@dataclass
class FuturesTrade:
    trade_id: int
    order_id: int
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    realized: Decimal
    commission: Decimal
    commission_asset: str
    time: int
    maker: bool

    def as_json(self) -> dict[str, Any]:
        return {"buyer": self.side == "BUY", "commission": fmt(self.commission),
                "commissionAsset": self.commission_asset, "id": self.trade_id, "maker": self.maker,
                "orderId": self.order_id, "price": fmt(self.price, 2), "qty": fmt(self.qty, 3),
                "quoteQty": fmt(self.price * self.qty), "realizedPnl": fmt(self.realized), "side": self.side,
                "positionSide": "BOTH", "symbol": self.symbol, "time": self.time}


@dataclass
class Income:
    tran_id: int
    symbol: str
    income_type: str         # FUNDING_FEE, COMMISSION, REALIZED_PNL
    amount: Decimal
    asset: str
    time: int
    trade_id: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "incomeType": self.income_type, "income": fmt(self.amount),
                "asset": self.asset, "info": self.income_type, "time": self.time, "tranId": self.tran_id,
                "tradeId": self.trade_id}


@dataclass
class Position:
    amount: Decimal = D(0)   # signed
    entry: Decimal = D(0)
    update_time: int = 0


def default_markets() -> list[FuturesMarket]:
    return [
        FuturesMarket("BTCUSDT", "BTC", "USDT", D("0.10"), D("0.001"), D("0.001"), D("1000"), D("100"),
                      D("50000.00"), D("50000.10")),
        FuturesMarket("ETHUSDT", "ETH", "USDT", D("0.01"), D("0.001"), D("0.001"), D("10000"), D("20"),
                      D("3000.00"), D("3000.01"), max_leverage=100),
    ]


@dataclass
class BinanceFuturesFake:
    markets: list[FuturesMarket] = field(default_factory=default_markets)
    wallet: dict[str, Decimal] = field(default_factory=lambda: {"USDT": D(10_000), "BNB": D(0)})
    taker_rate: Decimal = D("0.0005")
    maker_rate: Decimal = D("0.0002")
    fee_asset: str = "USDT"             # "USDT" or "BNB"
    bnb_price: Decimal = D("600")
    market_depth: Decimal | None = None
    leverage: int = 20                  # every symbol's leverage at start
    retry_after_s: int = 1              # the Retry-After of a 429 / 418 (an IP ban: 120 s up to 3 days)
    margin_type: str = "CROSSED"        # every symbol's margin type at start
    dual_side: bool = False             # hedge mode (dualSidePosition) at start

    def __post_init__(self) -> None:
        self.by_symbol = {m.symbol: m for m in self.markets}
        self.leverages = {m.symbol: self.leverage for m in self.markets}
        self.margin_types = {m.symbol: self.margin_type for m in self.markets}
        self.positions: dict[str, Position] = {m.symbol: Position() for m in self.markets}
        self.orders: dict[int, FuturesOrder] = {}
        self.by_client: dict[str, int] = {}
        self.trades: list[FuturesTrade] = []
        self.incomes: list[Income] = []
        self.faults: list[Fault] = []
        self.stream_down = False
        self.requests: list[tuple[str, str]] = []
        self.handler_ns: list[int] = []
        self.lock = threading.RLock()
        self.release = threading.Event()
        self._order_ids = itertools.count(8_000_000)
        self.algo_orders: dict[int, AlgoOrder] = {}        # the algo service's conditional orders
        self.triggered_client_id = "algo"   # a triggered order's client id: the client algo id, or "own" (another)
        self._algo_ids = itertools.count(3_000)
        self._trade_ids = itertools.count(600_000)
        self._tran_ids = itertools.count(9_000_000_000)
        self._server: ThreadingHTTPServer | None = None
        # the user-data stream: the account's listenKey (None: none active), and who hears its events
        self.listen_key: str | None = None
        self.listen_key_expires_ms = 0
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []   # (listenKey, event)
        self.ws: BinanceFuturesWsFake | None = None

    # -- lifecycle (the spot fake's handler serves it) ------------------------------------------------
    def start(self) -> "BinanceFuturesFake":
        class Handler(_Handler):
            pass

        Handler.fake = self  # type: ignore[assignment]
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.02,), name="binance-futures-fake",
                         daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start_stream(self) -> "BinanceFuturesWsFake":
        """Serve the user-data stream's websocket too (its url: `ws_url`)."""
        if self.ws is None:
            self.ws = BinanceFuturesWsFake(self)
        return self.ws

    @property
    def ws_url(self) -> str:
        return self.start_stream().url

    def stop(self) -> None:
        if self.ws is not None:
            self.ws.stop()
            self.ws = None
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def inject(self, kind: str, method: str = "POST", path: str = "/fapi/v1/order", times: int = 1) -> None:
        with self.lock:
            self.faults.extend(Fault(kind, method, path) for _ in range(times))

    def heal(self) -> None:
        with self.lock:
            self.faults.clear()

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.method == method and fault.path == path:
                    self.faults.remove(fault)
                    return fault
        return None

    def throttled(self, kind: str) -> tuple[int, Any, dict[str, str]]:
        message = ("Too many requests; current limit is 2400 request weight per 1 MINUTE." if kind == "429"
                   else "Way too many requests; IP banned until 1700000000000.")
        return int(kind), {"code": -1003, "msg": message}, {"Retry-After": str(self.retry_after_s)}

    # -- test controls --------------------------------------------------------------------------------
    def fill(self, client_order_id: str, qty: Decimal | None = None, price: Decimal | None = None) -> None:
        """Execute `qty` (default: what is left) of a resting order at its price (or `price`)."""
        with self.lock:
            order = self.orders[self.by_client[client_order_id]]
            assert order.status in ("NEW", "PARTIALLY_FILLED"), f"{client_order_id} is {order.status}"
            left = order.qty - order.executed
            self._execute(order, left if qty is None else min(qty, left), price or order.price, maker=True)

    def place_external(self, client_order_id: str, symbol: str, side: str, qty: Decimal, price: Decimal) -> None:
        """An order someone else placed on the account (another program, a person)."""
        with self.lock:
            self._new_order({"symbol": symbol, "side": side, "type": "LIMIT", "quantity": str(qty),
                             "price": str(price), "timeInForce": "GTC", "newClientOrderId": client_order_id})

    def count_client_id(self, client_order_id: str) -> int:
        with self.lock:
            return sum(1 for o in self.orders.values() if o.client_order_id == client_order_id)

    def add_history(self, client_order_id: str, symbol: str, side: str, qty: Decimal, price: Decimal,
                    age_ms: int) -> None:
        """A market order filled `age_ms` ago (the account's history; positions are not moved)."""
        with self.lock:
            t = _ms() - age_ms
            order = FuturesOrder(next(self._order_ids), client_order_id, symbol, side, "MARKET", qty, D(0), "GTC",
                                 False, t, t, status="FILLED", executed=qty, quote=qty * price)
            self.orders[order.order_id] = order
            self.by_client[client_order_id] = order.order_id
            self.trades.append(FuturesTrade(next(self._trade_ids), order.order_id, symbol, side, price, qty, D(0),
                                            D(0), self.by_symbol[symbol].quote, t, False))
            self.trades.sort(key=lambda trade: trade.time)
            self.orders = dict(sorted(self.orders.items(), key=lambda item: item[1].time))

    def set_quote(self, symbol: str, bid: Decimal, ask: Decimal) -> None:
        """The market moves: conditional (algo) orders it reaches trigger, trailing ones ratchet, and
        resting limits it reaches execute at their price (as maker)."""
        with self.lock:
            m = self.by_symbol[symbol]
            m.bid, m.ask = bid, ask
            for algo in list(self.algo_orders.values()):
                if algo.symbol == symbol and algo.status == "NEW":
                    self._algo_on_quote(algo, m)
            for order in list(self.orders.values()):
                if (order.symbol == symbol and order.type == "LIMIT" and order.status in ("NEW", "PARTIALLY_FILLED")
                        and (m.bid >= order.price if order.side == "SELL" else m.ask <= order.price)):
                    self._execute(order, order.qty - order.executed, order.price, maker=True)

    # -- the algo service (conditional orders) ----------------------------------------------------------
    def _algo_on_quote(self, algo: AlgoOrder, m: FuturesMarket) -> None:
        sell = algo.side == "SELL"
        touch = m.bid if sell else m.ask
        if algo.type == "TRAILING_STOP_MARKET":
            algo.peak = max(algo.peak, touch) if sell else min(algo.peak, touch)
            level = algo.peak * (1 - algo.callback_rate / 100 * (1 if sell else -1))
            reached = touch <= level if sell else touch >= level
        else:
            reached = _reached(algo.type, algo.side, algo.trigger, touch)
        if not reached:
            return
        # triggered: the algo service places the order in the matching engine, under the client
        # algo id (module docstring); a refusal there (a reduce-only with nothing left) rejects it
        algo.status, algo.trigger_time = "TRIGGERED", _ms()
        client_id = algo.client_algo_id if self.triggered_client_id == "algo" else f"autoalgo-{algo.algo_id}"
        request = {"symbol": algo.symbol, "side": algo.side, "quantity": str(algo.qty),
                   "newClientOrderId": client_id, "reduceOnly": str(algo.reduce_only).lower(),
                   "type": "LIMIT" if algo.price else "MARKET"}
        if algo.price:
            request.update({"price": str(algo.price), "timeInForce": algo.time_in_force})
        try:
            answer = self._new_order(request)
        except BinanceError:
            algo.status = "REJECTED"
        else:
            algo.actual_order_id = int(answer["orderId"])
            if answer["status"] in ("FILLED", "EXPIRED", "CANCELED"):
                algo.status = "FINISHED"
        algo.update_time = _ms()

    def _new_algo(self, p: dict[str, str]) -> dict[str, Any]:
        """POST /fapi/v1/algoOrder: a conditional order, checked as binance checks it."""
        if p.get("algoType") != "CONDITIONAL":
            raise BinanceError(400, -1102, "Mandatory parameter 'algoType' was not sent, was empty/null, or "
                                           "malformed.")
        m = self._market(p.get("symbol", ""))
        kind, side = p.get("type", ""), p.get("side", "")
        if kind not in ALGO_TYPES or side not in ("BUY", "SELL"):
            raise BinanceError(400, -1116, "Invalid orderType.")
        cid = legal_client_id(p, "clientAlgoId") or f"algo-{next(self._algo_ids)}"
        if any(a.client_algo_id == cid and a.status == "NEW" for a in self.algo_orders.values()):
            raise BinanceError(400, -4116, "ClientOrderId is duplicated.")
        if p.get("closePosition", "false").lower() == "true":
            raise BinanceError(400, -1000, "fake: closePosition is not reproduced")
        try:
            qty = D(p["quantity"])
        except KeyError:
            raise BinanceError(400, -1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.")
        if qty <= 0 or qty < m.min_qty or qty % m.step_size:
            raise BinanceError(400, -4023, "Qty not increased by step size.")
        price, trigger = D(p.get("price", "0")), D(p.get("triggerPrice", "0"))
        rate = D(p.get("callbackRate", "0"))
        if kind == "TRAILING_STOP_MARKET":
            if not D("0.1") <= rate <= D("10") or rate % D("0.1"):
                raise BinanceError(400, -1013, "Invalid callbackRate.")
            if "activatePrice" in p:
                raise BinanceError(400, -1000, "fake: an activatePrice is not reproduced")
        elif not trigger:
            raise BinanceError(400, -1102, "Mandatory parameter 'triggerPrice' was not sent, was empty/null, or "
                                           "malformed.")
        if kind in ("STOP", "TAKE_PROFIT") and not price:
            raise BinanceError(400, -1102, "Mandatory parameter 'price' was not sent, was empty/null, or malformed.")
        for px in (price, trigger):
            if px and px % m.tick_size:
                raise BinanceError(400, -4014, "Price not increased by tick size.")
        touch = m.bid if side == "SELL" else m.ask
        if trigger and _reached(kind, side, trigger, touch):
            raise BinanceError(400, -2021, "Order would immediately trigger.")
        reduce_only = p.get("reduceOnly", "false").lower() == "true"
        position = self.positions[m.symbol].amount
        if reduce_only and (position * (1 if side == "BUY" else -1) >= 0 or qty > abs(position)):
            raise BinanceError(400, -2022, "ReduceOnly Order is rejected.")
        now = _ms()
        algo = AlgoOrder(next(self._algo_ids), cid, m.symbol, side, kind, qty, price, trigger, rate, reduce_only,
                         p.get("timeInForce", "GTC"), now, now, peak=touch)
        self.algo_orders[algo.algo_id] = algo
        return algo.as_json()

    def _modify(self, p: dict[str, str]) -> dict[str, Any]:
        """PUT /fapi/v1/order: a LIMIT order's quantity and price changed in place (same ids)."""
        try:
            order = self._find(p)
        except BinanceError:
            raise BinanceError(400, -2013, "Order does not exist.") from None
        if order.status not in ("NEW", "PARTIALLY_FILLED"):
            raise BinanceError(400, -2013, "Order does not exist.")
        if order.type != "LIMIT" or p.get("side") != order.side:
            raise BinanceError(400, -1116, "Invalid orderType.")
        m = self.by_symbol[order.symbol]
        try:
            qty, price = D(p["quantity"]), D(p["price"])
        except KeyError:
            raise BinanceError(400, -1102, "Mandatory parameter 'quantity' or 'price' was not sent, was empty/null, "
                                           "or malformed.") from None
        if qty <= order.executed or qty % m.step_size or qty > m.max_qty:
            raise BinanceError(400, -4023, "Qty not increased by step size.")
        if price % m.tick_size:
            raise BinanceError(400, -4014, "Price not increased by tick size.")
        order.qty, order.price, order.update_time = qty, price, _ms()
        return order.as_json()

    def _find_algo(self, p: dict[str, str]) -> AlgoOrder:
        if "algoId" in p:
            algo = self.algo_orders.get(int(p["algoId"]))
        else:
            matches = [a for a in self.algo_orders.values() if a.client_algo_id == p.get("clientAlgoId")]
            algo = matches[-1] if matches else None
        if algo is None:
            raise BinanceError(400, -2013, "Order does not exist.")
        return algo

    def _cancel_algo(self, p: dict[str, str]) -> dict[str, Any]:
        try:
            algo = self._find_algo(p)
        except BinanceError:
            raise BinanceError(400, -2011, "Unknown order sent.") from None
        if algo.status != "NEW":
            raise BinanceError(400, -2011, "Unknown order sent.")
        algo.status, algo.update_time = "CANCELED", _ms()
        return {"algoId": algo.algo_id, "clientAlgoId": algo.client_algo_id, "code": "200", "msg": "success"}

    def _algo_list(self, p: dict[str, str], open_only: bool) -> list[dict[str, Any]]:
        rows = [a for a in self.algo_orders.values() if p.get("symbol") in (None, a.symbol)
                and (not open_only or a.status == "NEW") and a.time >= int(p.get("startTime", 0))]
        return [a.as_json() for a in rows[:min(int(p.get("limit", 500)), 1000)]]

    def charge_funding(self, symbol: str, rate: Decimal, at_ms: int | None = None) -> Decimal:
        """A funding event: the position pays (rate > 0, long) or receives `amount * mark * rate`,
        booked in the wallet and as a FUNDING_FEE income record; returns the signed amount."""
        with self.lock:
            position = self.positions[symbol]
            if not position.amount:
                return D(0)
            amount = (-position.amount * self.by_symbol[symbol].mark * rate).quantize(D("0.00000001"),
                                                                                      ROUND_HALF_EVEN)
            asset = self.by_symbol[symbol].quote
            self.wallet[asset] = self.wallet.get(asset, D(0)) + amount
            self.incomes.append(Income(next(self._tran_ids), symbol, "FUNDING_FEE", amount, asset,
                                       _ms() if at_ms is None else at_ms))
            return amount

    # -- the user-data stream -------------------------------------------------------------------------
    def _listen_key(self, method: str) -> dict[str, Any]:
        """POST / PUT / DELETE /fapi/v1/listenKey, as binance documents them: a key lives 60 minutes
        from its last POST or PUT; a POST while one is active returns that one, extended."""
        now = _ms()
        active = self._key_active(now)
        if method == "POST":
            if not active:
                self.listen_key = secrets.token_hex(32)
            self.listen_key_expires_ms = now + LISTEN_KEY_TTL_MS
            return {"listenKey": self.listen_key}
        if method == "PUT":
            if not active:
                raise BinanceError(400, -1125, "This listenKey does not exist.")
            self.listen_key_expires_ms = now + LISTEN_KEY_TTL_MS
            return {"listenKey": self.listen_key}
        if method == "DELETE":
            self.listen_key, self.listen_key_expires_ms = None, 0
            return {}
        raise BinanceError(404, -1000, f"no route {method} /fapi/v1/listenKey")

    def _key_active(self, now: int | None = None) -> bool:
        """Whether the account's listenKey is alive; one that has just run out is announced
        (listenKeyExpired) to its sockets, which then hear nothing more."""
        if self.listen_key is None:
            return False
        if (now if now is not None else _ms()) < self.listen_key_expires_ms:
            return True
        self.expire_listen_key()
        return False

    def expire_listen_key(self) -> None:
        """The key runs out now (no keep-alive came): listenKeyExpired to its sockets, then
        silence on them until a client starts a new key (POST) and dials with it."""
        with self.lock:
            key = self.listen_key
            if key is None:
                return
            self.listen_key, self.listen_key_expires_ms = None, 0
            event = {"e": "listenKeyExpired", "E": _ms(), "listenKey": key}
            for listener in list(self.listeners):
                listener(key, event)

    def _publish(self, event: dict[str, Any]) -> None:
        if self.listeners and self._key_active():
            for listener in list(self.listeners):
                listener(self.listen_key, event)  # type: ignore[arg-type]

    def _emit(self, order: FuturesOrder, execution: str, trade: FuturesTrade | None = None) -> None:
        """ORDER_TRADE_UPDATE for one change of `order` (binance USD-M's fields; n / N only with
        a commission, as binance pushes them)."""
        if not self.listeners:
            return
        avg = order.quote / order.executed if order.executed else D(0)
        working = [o for o in self.orders.values() if o.symbol == order.symbol
                   and o.status in ("NEW", "PARTIALLY_FILLED")]
        bids = sum(((o.qty - o.executed) * o.price for o in working if o.side == "BUY"), D(0))
        asks = sum(((o.qty - o.executed) * o.price for o in working if o.side == "SELL"), D(0))
        body: dict[str, Any] = {
            "s": order.symbol, "c": order.client_order_id, "S": order.side, "o": order.type,
            "f": order.time_in_force, "q": fmt(order.qty, 3), "p": fmt(order.price, 2), "ap": fmt(avg, 5),
            "sp": "0", "x": execution, "X": order.status, "i": order.order_id,
            "l": fmt(trade.qty, 3) if trade else "0", "z": fmt(order.executed, 3),
            "L": fmt(trade.price, 2) if trade else "0", "T": order.update_time,
            "t": trade.trade_id if trade else 0, "b": fmt(bids), "a": fmt(asks), "m": bool(trade and trade.maker),
            "R": order.reduce_only, "wt": "CONTRACT_PRICE", "ot": order.type, "ps": "BOTH", "cp": False,
            "rp": fmt(trade.realized) if trade else "0", "pP": False, "si": 0, "ss": 0, "V": "EXPIRE_MAKER",
            "pm": "NONE", "gtd": 0,
        }
        if trade is not None:
            body["N"], body["n"] = trade.commission_asset, fmt(trade.commission)
        self._publish({"e": "ORDER_TRADE_UPDATE", "E": _ms(), "T": order.update_time, "o": body})

    def _emit_account(self, symbol: str, assets: set[str]) -> None:
        """ACCOUNT_UPDATE after a trade (reason ORDER): the moved wallets and the symbol's position."""
        if not self.listeners:
            return
        p, now = self.positions[symbol], _ms()
        isolated = self.margin_types[symbol] == "ISOLATED"
        realized = sum((t.realized for t in self.trades if t.symbol == symbol), D(0))
        balances = [{"a": a, "wb": fmt(self.wallet.get(a, D(0))), "cw": fmt(self.wallet.get(a, D(0))), "bc": "0"}
                    for a in sorted(assets)]
        position = {"s": symbol, "pa": fmt(p.amount, 3), "ep": fmt(p.entry, 8) if p.amount else "0",
                    "bep": fmt(p.entry, 8) if p.amount else "0", "cr": fmt(realized),
                    "up": fmt(self._unrealized(symbol)), "mt": "isolated" if isolated else "cross",
                    "iw": fmt(self._position_margin(symbol) if isolated else D(0)), "ps": "BOTH"}
        self._publish({"e": "ACCOUNT_UPDATE", "E": now, "T": now, "a": {"m": "ORDER", "B": balances, "P": [position]}})

    def _set_dual_side(self, p: dict[str, str]) -> dict[str, Any]:
        wanted = p.get("dualSidePosition", "").lower()
        if wanted not in ("true", "false"):
            raise BinanceError(400, -1102, "Mandatory parameter 'dualSidePosition' was not sent, was empty/null, or "
                                           "malformed.")
        if (wanted == "true") == self.dual_side:
            raise BinanceError(400, -4059, "No need to change position side.")
        if any(position.amount for position in self.positions.values()):
            raise BinanceError(400, -4068, "Position side cannot be changed if there exists position.")
        if any(o.status in ("NEW", "PARTIALLY_FILLED") for o in self.orders.values()):
            raise BinanceError(400, -4067, "Position side cannot be changed if there exists open orders.")
        self.dual_side = wanted == "true"
        return {"code": 200, "msg": "success"}

    def run_funding(self, until_ms: int, rate: Decimal, since_ms: int) -> list[Income]:
        """Binance's funding schedule (USD-M perpetuals: every 8 hours, at 00:00, 08:00 and 16:00
        UTC): each funding time in (since_ms, until_ms] charges every open position at `rate`
        (charge_funding: longs pay a positive rate), as FUNDING_FEE income at that time."""
        every = 8 * 3_600_000
        booked: list[Income] = []
        at = (since_ms // every + 1) * every
        while at <= until_ms:
            for symbol in self.by_symbol:
                if self.charge_funding(symbol, rate, at_ms=at):
                    booked.append(self.incomes[-1])
            at += every
        return booked

    # -- the exchange ---------------------------------------------------------------------------------
    def handle(self, method: str, path: str, params: dict[str, str], headers: Any) -> Any:
        route = (method, path)
        if path == "/fapi/v1/listenKey":  # USER_STREAM: the API key header, no signature
            if not headers.get("X-MBX-APIKEY"):
                raise BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.")
            with self.lock:
                return self._listen_key(method)
        public = path in ("/fapi/v1/time", "/fapi/v1/exchangeInfo", "/fapi/v1/ticker/24hr",
                          "/fapi/v1/ticker/bookTicker", "/fapi/v1/premiumIndex")
        if not public and ("signature" not in params or "timestamp" not in params
                           or not headers.get("X-MBX-APIKEY")):
            raise BinanceError(401, -2014, "API-key format invalid.")
        if self.stream_down and method == "GET" and path in ("/fapi/v1/openOrders", "/fapi/v1/userTrades",
                                                              "/fapi/v1/order", "/fapi/v1/allOrders"):
            raise _Drop()
        with self.lock:
            if route == ("GET", "/fapi/v1/time"):
                return {"serverTime": _ms()}
            if route == ("GET", "/fapi/v1/exchangeInfo"):
                return {"timezone": "UTC", "serverTime": _ms(), "futuresType": "U_MARGINED", "rateLimits": [],
                        "exchangeFilters": [], "assets": [{"asset": "USDT", "marginAvailable": True,
                                                           "autoAssetExchange": "-10000"}],
                        "symbols": [m.info() for m in self.markets]}
            if route == ("GET", "/fapi/v1/ticker/24hr"):
                return self._ticker(params)
            if route == ("GET", "/fapi/v1/ticker/bookTicker"):
                m = self._market(params.get("symbol", ""))
                return {"symbol": m.symbol, "bidPrice": fmt(m.bid, 2), "bidQty": "1.000", "askPrice": fmt(m.ask, 2),
                        "askQty": "1.000", "time": _ms()}
            if route == ("GET", "/fapi/v1/leverageBracket"):
                return [self._brackets(m) for m in self._some(params)]
            if route == ("GET", "/fapi/v1/symbolConfig"):
                return [{"symbol": m.symbol, "marginType": self.margin_types[m.symbol], "isAutoAddMargin": "false",
                         "leverage": self.leverages[m.symbol], "maxNotionalValue": "1000000"}
                        for m in self._some(params)]
            if method == "GET" and path in ("/fapi/v2/account", "/fapi/v3/account"):
                return self._account(v2=path.startswith("/fapi/v2"))
            if method == "GET" and path in ("/fapi/v2/positionRisk", "/fapi/v3/positionRisk"):
                return self._position_risk(params, v2=path.startswith("/fapi/v2"))
            if route == ("POST", "/fapi/v1/leverage"):
                return self._set_leverage(params)
            if route == ("POST", "/fapi/v1/marginType"):
                return self._set_margin_type(params)
            if route == ("PUT", "/fapi/v1/order"):
                return self._modify(params)
            if route == ("POST", "/fapi/v1/algoOrder"):
                return self._new_algo(params)
            if route == ("GET", "/fapi/v1/algoOrder"):
                return self._find_algo(params).as_json()
            if route == ("DELETE", "/fapi/v1/algoOrder"):
                return self._cancel_algo(params)
            if route == ("GET", "/fapi/v1/openAlgoOrders"):
                return self._algo_list(params, open_only=True)
            if route == ("GET", "/fapi/v1/allAlgoOrders"):
                return self._algo_list(params, open_only=False)
            if route == ("POST", "/fapi/v1/order"):
                return self._new_order(params)
            if route == ("GET", "/fapi/v1/order"):
                return self._find(params).as_json()
            if route == ("DELETE", "/fapi/v1/order"):
                return self._cancel(params)
            if route == ("GET", "/fapi/v1/openOrders"):
                symbol = params.get("symbol")
                return [o.as_json() for o in self.orders.values()
                        if o.status in ("NEW", "PARTIALLY_FILLED") and symbol in (None, o.symbol)]
            if route == ("GET", "/fapi/v1/allOrders"):
                return self._all_orders(params)
            if route == ("GET", "/fapi/v1/userTrades"):
                return self._user_trades(params)
            if route == ("GET", "/fapi/v1/positionSide/dual"):
                return {"dualSidePosition": self.dual_side}
            if route == ("POST", "/fapi/v1/positionSide/dual"):
                return self._set_dual_side(params)
            if route == ("GET", "/fapi/v1/income"):
                return self._income(params)
        raise BinanceError(404, -1000, f"no route {method} {path}")

    def _market(self, symbol: str) -> FuturesMarket:
        market = self.by_symbol.get(symbol)
        if market is None:
            raise BinanceError(400, -1121, "Invalid symbol.")
        return market

    def _some(self, params: dict[str, str]) -> list[FuturesMarket]:
        return [self._market(params["symbol"])] if "symbol" in params else list(self.markets)

    def _ticker(self, params: dict[str, str]) -> Any:
        def one(m: FuturesMarket) -> dict[str, Any]:
            last = m.bid
            return {"symbol": m.symbol, "priceChange": "0.00", "priceChangePercent": "0.000",
                    "weightedAvgPrice": fmt(last, 2), "lastPrice": fmt(last, 2), "lastQty": "0.010",
                    "openPrice": fmt(last, 2), "highPrice": fmt(m.ask, 2), "lowPrice": fmt(m.bid, 2),
                    "volume": "100.000", "quoteVolume": fmt(last * 100, 2), "openTime": _ms() - 86_400_000,
                    "closeTime": _ms(), "firstId": 1, "lastId": 100, "count": 100}
        if "symbol" in params:
            return one(self._market(params["symbol"]))
        return [one(m) for m in self.markets]

    def _brackets(self, m: FuturesMarket) -> dict[str, Any]:
        return {"symbol": m.symbol, "brackets": [
            {"bracket": 1, "initialLeverage": m.max_leverage, "notionalCap": 50000, "notionalFloor": 0,
             "maintMarginRatio": 0.004, "cum": 0.0},
            {"bracket": 2, "initialLeverage": 50, "notionalCap": 600000, "notionalFloor": 50000,
             "maintMarginRatio": 0.005, "cum": 50.0}]}

    # -- account ----------------------------------------------------------------------------------------
    def _unrealized(self, symbol: str) -> Decimal:
        p = self.positions[symbol]
        return (self.by_symbol[symbol].mark - p.entry) * p.amount if p.amount else D(0)

    def _position_margin(self, symbol: str) -> Decimal:
        p = self.positions[symbol]
        return abs(p.amount) * self.by_symbol[symbol].mark / self.leverages[symbol]

    def _order_margin(self) -> Decimal:
        return sum((((o.qty - o.executed) * o.price) / self.leverages[o.symbol] for o in self.orders.values()
                    if o.status in ("NEW", "PARTIALLY_FILLED") and not o.reduce_only), D(0))

    def available(self, asset: str = "USDT") -> Decimal:
        margin_balance = self.wallet.get(asset, D(0)) + sum((self._unrealized(s) for s in self.positions), D(0))
        used = sum((self._position_margin(s) for s in self.positions), D(0)) + self._order_margin()
        return margin_balance - used

    def _account(self, v2: bool) -> dict[str, Any]:
        unrealized = sum((self._unrealized(s) for s in self.positions), D(0))
        position_margin = sum((self._position_margin(s) for s in self.positions), D(0))
        order_margin = self._order_margin()
        now = _ms()
        assets = []
        for asset, balance in self.wallet.items():
            upnl = unrealized if asset == "USDT" else D(0)
            pim = position_margin if asset == "USDT" else D(0)
            oim = order_margin if asset == "USDT" else D(0)
            available = balance + upnl - pim - oim if asset == "USDT" else balance
            assets.append({"asset": asset, "walletBalance": fmt(balance), "unrealizedProfit": fmt(upnl),
                           "marginBalance": fmt(balance + upnl), "maintMargin": fmt(pim * D("0.1")),
                           "initialMargin": fmt(pim + oim), "positionInitialMargin": fmt(pim),
                           "openOrderInitialMargin": fmt(oim), "crossWalletBalance": fmt(balance),
                           "crossUnPnl": fmt(upnl), "availableBalance": fmt(available),
                           "maxWithdrawAmount": fmt(max(available, D(0))), "updateTime": now if balance else 0,
                           **({"marginAvailable": True} if v2 else {})})
        usdt = self.wallet.get("USDT", D(0))
        out: dict[str, Any] = {
            "totalInitialMargin": fmt(position_margin + order_margin), "totalMaintMargin": fmt(position_margin / 10),
            "totalWalletBalance": fmt(usdt), "totalUnrealizedProfit": fmt(unrealized),
            "totalMarginBalance": fmt(usdt + unrealized), "totalPositionInitialMargin": fmt(position_margin),
            "totalOpenOrderInitialMargin": fmt(order_margin), "totalCrossWalletBalance": fmt(usdt),
            "totalCrossUnPnl": fmt(unrealized), "availableBalance": fmt(self.available()),
            "maxWithdrawAmount": fmt(max(self.available(), D(0))), "assets": assets,
            "positions": [self._position_json(s, v2) for s in self.positions if v2 or self.positions[s].amount],
        }
        if v2:
            out.update({"feeTier": 0, "canTrade": True, "canDeposit": True, "canWithdraw": True, "feeBurn": True,
                        "tradeGroupId": -1, "updateTime": 0, "multiAssetsMargin": False})
        return out

    def _position_json(self, symbol: str, v2: bool) -> dict[str, Any]:
        p, m = self.positions[symbol], self.by_symbol[symbol]
        margin = self._position_margin(symbol)
        isolated = self.margin_types[symbol] == "ISOLATED"
        out: dict[str, Any] = {
            "symbol": symbol, "positionSide": "BOTH", "positionAmt": fmt(p.amount, 3),
            "entryPrice": fmt(p.entry, 8) if p.amount else "0.0",
            "breakEvenPrice": fmt(p.entry, 8) if p.amount else "0.0",
            "markPrice": fmt(m.mark, 8), "unRealizedProfit": fmt(self._unrealized(symbol)),
            "liquidationPrice": "0", "isolatedMargin": fmt(margin if isolated else D(0)),
            "notional": fmt(p.amount * m.mark), "isolatedWallet": fmt(margin if isolated else D(0)),
            "updateTime": p.update_time, "marginAsset": m.quote,
        }
        if v2:
            out.update({"leverage": str(self.leverages[symbol]), "maxNotionalValue": "1000000",
                        "marginType": self.margin_types[symbol].lower().replace("crossed", "cross"),
                        "isAutoAddMargin": "false", "isolated": isolated, "adlQuantile": 0})
        else:
            out.update({"initialMargin": fmt(margin), "maintMargin": fmt(margin / 10),
                        "positionInitialMargin": fmt(margin), "openOrderInitialMargin": "0", "adl": 0,
                        "bidNotional": "0", "askNotional": "0"})
        return out

    def _position_risk(self, params: dict[str, str], v2: bool) -> list[dict[str, Any]]:
        symbols = [m.symbol for m in self._some(params)]
        return [self._position_json(s, v2) for s in symbols if v2 or self.positions[s].amount]

    def _set_leverage(self, p: dict[str, str]) -> dict[str, Any]:
        m = self._market(p.get("symbol", ""))
        try:
            leverage = int(p["leverage"])
        except (KeyError, ValueError):
            raise BinanceError(400, -1102, "Mandatory parameter 'leverage' was not sent, was empty/null, or malformed.")
        if not 1 <= leverage <= m.max_leverage:
            raise BinanceError(400, -4028, f"Leverage {leverage} is not valid")
        self.leverages[m.symbol] = leverage
        return {"leverage": leverage, "maxNotionalValue": "1000000", "symbol": m.symbol}

    def _set_margin_type(self, p: dict[str, str]) -> dict[str, Any]:
        m = self._market(p.get("symbol", ""))
        kind = p.get("marginType", "")
        if kind not in ("ISOLATED", "CROSSED"):
            raise BinanceError(400, -1102, "Mandatory parameter 'marginType' was not sent, was empty/null, or "
                                           "malformed.")
        if self.margin_types[m.symbol] == kind:
            raise BinanceError(400, -4046, "No need to change margin type.")
        if self.positions[m.symbol].amount:
            raise BinanceError(400, -4048, "Margin type cannot be changed if there exists position.")
        if any(o.symbol == m.symbol and o.status in ("NEW", "PARTIALLY_FILLED") for o in self.orders.values()):
            raise BinanceError(400, -4047, "Margin type cannot be changed if there exists open orders.")
        self.margin_types[m.symbol] = kind
        return {"code": 200, "msg": "success"}

    # -- orders -----------------------------------------------------------------------------------------
    def _new_order(self, p: dict[str, str]) -> dict[str, Any]:
        m = self._market(p.get("symbol", ""))
        cid = legal_client_id(p, "newClientOrderId") or f"x-{next(self._order_ids)}"
        previous = self.orders.get(self.by_client.get(cid, -1))
        if previous is not None and previous.status in ("NEW", "PARTIALLY_FILLED"):
            raise BinanceError(400, -4116, "ClientOrderId is duplicated.")  # unique among open orders only
        if self.dual_side:  # hedge mode: every order names its leg; the fake books no legs (see above)
            raise BinanceError(400, -4061, "Order's position side does not match user's setting.")
        kind, side = p.get("type", ""), p.get("side", "")
        if kind in ("STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"):
            raise BinanceError(400, -4120, "Order type not supported for this endpoint. Please use the Algo Order "
                                           "API endpoints instead.")
        if kind not in ("MARKET", "LIMIT") or side not in ("BUY", "SELL"):
            raise BinanceError(400, -1116, "Invalid orderType.")
        tif = p.get("timeInForce")
        if kind == "MARKET" and tif is not None:
            raise BinanceError(400, -1106, "Parameter 'timeInForce' sent when not required.")
        if kind == "LIMIT" and tif not in ("GTC", "IOC", "FOK", "GTX"):
            raise BinanceError(400, -1102, "Mandatory parameter 'timeInForce' was not sent, was empty/null, or "
                                           "malformed.")
        try:
            qty = D(p["quantity"])
        except KeyError:
            raise BinanceError(400, -1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.")
        price = D(p.get("price", "0"))
        if kind == "LIMIT" and not price:
            raise BinanceError(400, -1102, "Mandatory parameter 'price' was not sent, was empty/null, or malformed.")
        if qty <= 0:
            raise BinanceError(400, -4003, "Quantity less than or equal to zero.")
        if qty < m.min_qty or qty % m.step_size:
            raise BinanceError(400, -4023, "Qty not increased by step size.")
        if qty > m.max_qty:
            raise BinanceError(400, -4005, "Quantity greater than max quantity.")
        if price and price % m.tick_size:
            raise BinanceError(400, -4014, "Price not increased by tick size.")
        reduce_only = p.get("reduceOnly", "false").lower() == "true"
        touch = m.ask if side == "BUY" else m.bid
        crosses = bool(price) and (price >= m.ask if side == "BUY" else price <= m.bid)
        position = self.positions[m.symbol].amount
        sign = 1 if side == "BUY" else -1
        if reduce_only and (position * sign >= 0 or qty > abs(position)):
            raise BinanceError(400, -2022, "ReduceOnly Order is rejected.")
        if not reduce_only and (price or touch) * qty < m.min_notional:
            raise BinanceError(400, -4164, f"Order's notional must be no smaller than {m.min_notional} (unless you "
                                           "choose reduce only).")
        if tif == "GTX" and crosses:
            raise BinanceError(400, -5022, "Due to the order could not be executed as maker, the Post Only order "
                                           "will be rejected.")
        opening = max(D(0), qty - max(D(0), -position * sign))  # the part that opens or grows a position
        if opening and opening * (price or touch) / self.leverages[m.symbol] > self.available(m.quote):
            raise BinanceError(400, -2019, "Margin is insufficient.")
        now = _ms()
        order = FuturesOrder(next(self._order_ids), cid, m.symbol, side, kind, qty, price, tif or "GTC",
                             reduce_only, now, now)
        self.orders[order.order_id] = order
        self.by_client[cid] = order.order_id
        self._emit(order, "NEW")
        if kind == "MARKET":
            depth = qty if self.market_depth is None else min(qty, self.market_depth)
            if depth > 0:
                self._execute(order, depth, touch, maker=False)
            if order.executed < qty:
                order.status = "EXPIRED"
        elif tif in ("IOC", "FOK"):
            if crosses and not (tif == "FOK" and self.market_depth is not None and self.market_depth < qty):
                depth = qty if self.market_depth is None else min(qty, self.market_depth)
                self._execute(order, depth, touch, maker=False)
            if order.executed < qty:
                order.status = "EXPIRED"
        if order.status == "EXPIRED":
            self._emit(order, "EXPIRED")
        return order.as_json()  # newOrderRespType RESULT: the order, no fills

    def _execute(self, order: FuturesOrder, qty: Decimal, price: Decimal, maker: bool) -> None:
        m = self.by_symbol[order.symbol]
        sign = 1 if order.side == "BUY" else -1
        position = self.positions[order.symbol]
        realized = D(0)
        if position.amount * sign < 0:  # reduces (and perhaps flips) the position
            closed = min(qty, abs(position.amount))
            realized = (price - position.entry) * closed * (1 if position.amount > 0 else -1)
            position.amount += sign * closed
            rest = qty - closed
            if not position.amount:
                position.entry = D(0)
            if rest:
                position.amount, position.entry = sign * rest, price
        else:
            total = abs(position.amount) + qty
            position.entry = (position.entry * abs(position.amount) + price * qty) / total
            position.amount += sign * qty
        notional = price * qty
        fee = (notional * (self.maker_rate if maker else self.taker_rate)).quantize(D("0.00000001"), ROUND_HALF_EVEN)
        fee_asset = m.quote
        if self.fee_asset == "BNB":
            fee_asset = "BNB"
            fee = (fee * D("0.9") / self.bnb_price).quantize(D("0.00000001"), ROUND_HALF_EVEN)
        self.wallet[m.quote] = self.wallet.get(m.quote, D(0)) + realized
        self.wallet[fee_asset] = self.wallet.get(fee_asset, D(0)) - fee
        order.executed += qty
        order.quote += notional
        order.status = "FILLED" if order.executed == order.qty else "PARTIALLY_FILLED"
        order.update_time = position.update_time = _ms()
        trade = FuturesTrade(next(self._trade_ids), order.order_id, order.symbol, order.side, price, qty, realized,
                             fee, fee_asset, order.update_time, maker)
        self.trades.append(trade)
        if realized:
            self.incomes.append(Income(next(self._tran_ids), order.symbol, "REALIZED_PNL", realized, m.quote,
                                       trade.time, str(trade.trade_id)))
        self.incomes.append(Income(next(self._tran_ids), order.symbol, "COMMISSION", -fee, fee_asset, trade.time,
                                   str(trade.trade_id)))
        self._emit(order, "TRADE", trade)
        self._emit_account(order.symbol, {m.quote, fee_asset})

    def _find(self, p: dict[str, str]) -> FuturesOrder:
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
        order.status = "CANCELED"
        order.update_time = _ms()
        self._emit(order, "CANCELED")
        return order.as_json()  # futures: the order's own client id (spot names the cancel request)

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

    def _user_trades(self, p: dict[str, str]) -> list[dict[str, Any]]:
        symbol = p.get("symbol")
        if symbol is None:
            raise BinanceError(400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        if "fromId" in p and ("startTime" in p or "endTime" in p):
            raise BinanceError(400, -4133, "fromId cannot be sent with startTime or endTime.")
        limit = min(int(p.get("limit", 500)), 1000)
        rows = [t for t in self.trades if t.symbol == symbol]
        if "startTime" not in p and "fromId" not in p:  # binance: the most recent trades (of the last 7 days)
            end = int(p.get("endTime", _ms()))
            rows = [t for t in rows if end - WEEK_MS <= t.time <= end]
            return [t.as_json() for t in rows[-limit:]]
        if "fromId" in p:
            rows = [t for t in rows if t.trade_id >= int(p["fromId"])]
        else:
            start = int(p["startTime"])
            end = int(p.get("endTime", start + WEEK_MS))
            if end - start > WEEK_MS:
                raise BinanceError(400, -4166, "The interval between startTime and endTime cannot exceed 7 days.")
            rows = [t for t in rows if start <= t.time <= end]
        return [t.as_json() for t in rows[:limit]]

    def _income(self, p: dict[str, str]) -> list[dict[str, Any]]:
        limit = min(int(p.get("limit", 100)), 1000)
        rows = [i for i in self.incomes if p.get("incomeType") in (None, i.income_type)
                and p.get("symbol") in (None, i.symbol)]
        end = int(p.get("endTime", _ms()))
        start = int(p.get("startTime", end - WEEK_MS))  # neither given: the last 7 days
        rows = [i for i in rows if start <= i.time <= end]
        return [i.as_json() for i in rows[:limit]]


class BinanceFuturesWsFake:
    """binance USD-M's user-data stream socket (wss://fstream.binance.com/private/ws?listenKey=<key>,
    which ccxt.pro 4.5.90 binanceusdm dials after POST /fapi/v1/listenKey; the legacy
    /ws/<key> path too). A socket hears the account's events while its key is the account's
    active one; the stream takes no requests (dialling is subscribing). Built on aiohttp, which
    ccxt itself depends on, on its own loop in a daemon thread.

    A socket is registered before its handshake completes and its events queue until then, so an
    event can never fall between "the client is connected" and "the server sends to it".
    `drop()` closes every socket (ccxt.pro raises on the pending watches); `refuse = True` answers
    new dials with 503 until set back."""

    def __init__(self, fake: BinanceFuturesFake) -> None:
        self.fake = fake
        self.loop = asyncio.new_event_loop()
        self.sockets: dict[Any, tuple[str, asyncio.Queue[str]]] = {}
        self.changed = threading.Condition()
        self.refuse = False
        self.dials = 0                     # sockets accepted over the fake's life
        self.waiting = 0                   # dials held before their handshake (see `admit`)
        self.admit = threading.Event()     # cleared: hold every dial before its handshake until set
        self.admit.set()
        self.port = 0
        self._runner: Any = None
        threading.Thread(target=self.loop.run_forever, name="binance-futures-ws-fake", daemon=True).start()
        self._call(self._start())
        fake.listeners.append(self._on_event)

    def _call(self, coro: Any, timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/private/ws", self._serve)
        app.router.add_get("/ws/{key}", self._serve)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    @property
    def url(self) -> str:
        """The base to point ccxt.pro's `urls['api']['ws']` at (`redirect(pro, fake.url, ws.url)`)."""
        return f"ws://127.0.0.1:{self.port}"

    async def _serve(self, request: Any) -> Any:
        from aiohttp import web

        if self.refuse:
            return web.Response(status=503, text="Service Unavailable")
        key = request.query.get("listenKey") or request.match_info.get("key", "")
        if not self.admit.is_set():  # a slow handshake, held by the test
            self.waiting += 1
            with self.changed:
                self.changed.notify_all()
            while not self.admit.is_set():
                await asyncio.sleep(0.005)
            self.waiting -= 1
        ws = web.WebSocketResponse(autoping=True)
        queue: asyncio.Queue[str] = asyncio.Queue()
        self.sockets[ws] = (key, queue)   # before the handshake: events queue until it is done
        sender = None
        try:
            await ws.prepare(request)
            self.dials += 1
            sender = asyncio.ensure_future(self._send(ws, queue))
            with self.changed:
                self.changed.notify_all()
            async for _ in ws:
                pass  # nothing to answer: pings are aiohttp's
        finally:
            self.sockets.pop(ws, None)
            if sender is not None:
                sender.cancel()
            with self.changed:
                self.changed.notify_all()
        return ws

    @staticmethod
    async def _send(ws: Any, queue: "asyncio.Queue[str]") -> None:
        while True:
            text = await queue.get()
            if ws.closed:
                return
            await ws.send_str(text)

    def _on_event(self, key: str, event: dict[str, Any]) -> None:
        """From the REST fake's thread, in the order the account changed: each socket of `key`
        gets the event after everything queued before it."""
        text = json.dumps(event)
        for _, (socket_key, queue) in list(self.sockets.items()):
            if socket_key == key:
                self.loop.call_soon_threadsafe(queue.put_nowait, text)

    def listening(self) -> int:
        """Sockets that hear the account now (dialled with its active key)."""
        key = self.fake.listen_key
        return sum(1 for k, _ in list(self.sockets.values()) if key is not None and k == key)

    def wait_listening(self, timeout: float = 10) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.listening() > 0, timeout)

    def drop(self) -> None:
        """Close every socket now (the venue's side: a restart, the 24-hour limit, a network cut)."""
        async def close_all() -> None:
            for ws in list(self.sockets):
                await ws.close()

        self._call(close_all())

    def stop(self) -> None:
        try:
            self.drop()
            self._call(self._runner.cleanup())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
