"""A loopback fake of bybit's v5 REST API (spot, unified account), for driving real ccxt in tests.

It is the binance fake's exchange (tests/fakes/binance_fake.py: the same scripted matching,
exact balances, faults, fee modes, market depth, holdings at start) behind bybit's wire format, so
the conformance suite runs the ccxt adapter on a second exchange family without a second
matching engine. Written from ccxt 4.5.90's bybit.py (the endpoints it calls for spot, the fields
its parse_market / parse_order / parse_trade / parse_balance read, its retCode table) and the
payloads of ccxt's static bybit fixtures (tests/fixtures/ccxt/bybit.json).

Endpoints: GET /v5/market/time, /v5/market/instruments-info, /v5/market/tickers,
/v5/asset/coin/query-info, /v5/account/wallet-balance, /v5/order/realtime, /v5/order/history,
/v5/execution/list; POST /v5/order/create, /v5/order/cancel. Private calls must carry
X-BAPI-API-KEY, X-BAPI-SIGN and X-BAPI-TIMESTAMP (present, not verified). Errors are HTTP 200
with bybit's retCode and retMsg (170131 insufficient balance, 170141 duplicate orderLinkId,
170136 quantity below the minimum, 170137 too many decimals, 170140 notional below the minimum,
170213 order does not exist, 10001 parameter error).

Venue behaviours it reproduces (bybit spot): a create is answered with the ids alone (orderId,
orderLinkId: no status, side or quantity); fees are taken in the coin received (`fee_asset`
"received", bybit's default for spot and this fake's default here); an orderLinkId is unique
among open orders only; time in force GTC / IOC / FOK / PostOnly (a crossing PostOnly is
refused); market orders in base units (marketUnit baseCoin, as ccxt sends them on a unified
account); executions newest first, paged by cursor; an account that starts with holdings;
a rate limit as HTTP 200 with retCode 10006 (`inject("429", ...)`) and 5xx (the binance fake's
other faults, on bybit's paths).
What it does not reproduce: stop / take-profit orders (tpslOrder, StopOrder: refused with
10001), quote-unit market buys, the 7-day window of execution/list, the IP limit (HTTP 403),
per-endpoint limit accounting, the private websocket, margin and borrowing, classic
(non-unified) accounts.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tests.fakes.binance_fake import BinanceError, BinanceFake, FakeOrder, FakeTrade, _Drop, _ms, fmt

D = Decimal
_STATUS = {"NEW": "New", "PARTIALLY_FILLED": "PartiallyFilled", "FILLED": "Filled", "CANCELED": "Cancelled",
           "EXPIRED": "Cancelled", "REJECTED": "Rejected"}
_PRIVATE = ("/v5/account/wallet-balance", "/v5/order/realtime", "/v5/order/history", "/v5/execution/list",
            "/v5/order/create", "/v5/order/cancel", "/v5/asset/coin/query-info")


class BybitError(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code, self.msg = code, msg


@dataclass
class BybitFake(BinanceFake):
    """bybit v5 spot on the binance fake's exchange. Symbols are bybit's ids (BTCUSDT)."""

    fee_asset: str = "received"  # bybit spot: the fee is taken in the coin received

    def handle(self, method: str, path: str, params: dict[str, str], headers: Any) -> Any:
        if path in _PRIVATE and not (headers.get("X-BAPI-API-KEY") and headers.get("X-BAPI-SIGN")):
            return _error(10003, "API key is invalid.")
        if self.stream_down and method == "GET" and path in ("/v5/order/realtime", "/v5/order/history",
                                                              "/v5/execution/list"):
            raise _Drop()
        try:
            with self.lock:
                return {"retCode": 0, "retMsg": "OK", "result": self._route(method, path, params),
                        "retExtInfo": {}, "time": _ms()}
        except BybitError as e:
            return _error(e.code, e.msg)
        except BinanceError as e:
            return _error(*_translate(e))

    def _route(self, method: str, path: str, p: dict[str, str]) -> Any:
        route = (method, path)
        if route == ("GET", "/v5/market/time"):
            now = _ms()
            return {"timeSecond": str(now // 1000), "timeNano": str(now * 1_000_000)}
        if route == ("GET", "/v5/market/instruments-info"):
            return {"category": "spot", "list": [_instrument(m) for m in self.markets]}
        if route == ("GET", "/v5/market/tickers"):
            markets = [self._market(p["symbol"])] if "symbol" in p else self.markets
            return {"category": "spot", "list": [_ticker(m) for m in markets]}
        if route == ("GET", "/v5/asset/coin/query-info"):
            return {"rows": []}
        if route == ("GET", "/v5/account/wallet-balance"):
            return {"list": [{"accountType": "UNIFIED", "coin": [
                {"coin": a, "walletBalance": fmt(v), "locked": fmt(self.locked.get(a, D(0))), "borrowAmount": "0",
                 "accruedInterest": "0", "totalOrderIM": "0", "totalPositionIM": "0", "equity": fmt(v)}
                for a, v in self.balances.items()]}]}
        if route == ("POST", "/v5/order/create"):
            return self._create(p)
        if route == ("POST", "/v5/order/cancel"):
            order = self._lookup(p)
            self._cancel({"symbol": order.symbol, "orderId": str(order.order_id)})
            return {"orderId": str(order.order_id), "orderLinkId": order.client_order_id}
        if route == ("GET", "/v5/order/realtime"):
            return self._orders(p, open_only=True)
        if route == ("GET", "/v5/order/history"):
            return self._orders(p, open_only=False)
        if route == ("GET", "/v5/execution/list"):
            return self._executions(p)
        raise BybitError(10001, f"no route {method} {path}")

    def throttled(self, kind: str) -> tuple[int, Any, dict[str, str]]:
        """bybit answers an API rate limit with HTTP 200 and retCode 10006 (and its reset time)."""
        reset = str(_ms() + 1000)
        return 200, _error(10006, "Too many visits!"), {"X-Bapi-Limit-Status": "0",
                                                        "X-Bapi-Limit-Reset-Timestamp": reset}

    # -- orders -----------------------------------------------------------------------------------
    def _create(self, p: dict[str, str]) -> dict[str, Any]:
        if p.get("category") != "spot":
            raise BybitError(10001, "category only support spot here.")
        if p.get("triggerPrice") or p.get("orderFilter") not in (None, "Order"):
            raise BybitError(10001, "conditional orders are not supported by this fake.")
        kind = {"Market": "MARKET", "Limit": "LIMIT"}.get(p.get("orderType", ""))
        if kind is None:
            raise BybitError(10001, "orderType invalid.")
        if kind == "MARKET" and p.get("side") == "Buy" and p.get("marketUnit") != "baseCoin":
            raise BybitError(10001, "quote-unit market buys are not supported by this fake.")
        tif = p.get("timeInForce", "GTC")
        request = {"symbol": p.get("symbol", ""), "side": p.get("side", "").upper(), "type": kind,
                   "quantity": p.get("qty", ""), "newClientOrderId": p.get("orderLinkId") or f"x-{_ms()}"}
        if kind == "LIMIT":
            request["price"] = p.get("price", "")
            if tif == "PostOnly":
                request["type"] = "LIMIT_MAKER"
            else:
                request["timeInForce"] = tif
        self._new_order(request)
        order = self.orders[self.by_client[request["newClientOrderId"]]]
        return {"orderId": str(order.order_id), "orderLinkId": order.client_order_id}

    def _lookup(self, p: dict[str, str]) -> FakeOrder:
        if p.get("orderId"):
            order = self.orders.get(int(p["orderId"]))
        else:
            order = self.orders.get(self.by_client.get(p.get("orderLinkId", ""), -1))
        if order is None or ("symbol" in p and order.symbol != p["symbol"]):
            raise BybitError(170213, "Order does not exist.")
        return order

    def _orders(self, p: dict[str, str], open_only: bool) -> dict[str, Any]:
        rows = [o for o in self.orders.values() if ("symbol" not in p or o.symbol == p["symbol"])
                and (o.status in ("NEW", "PARTIALLY_FILLED")) == open_only]
        if p.get("orderId"):
            rows = [o for o in rows if str(o.order_id) == p["orderId"]]
        if p.get("orderLinkId"):
            rows = [o for o in rows if o.client_order_id == p["orderLinkId"]]
        if "startTime" in p:
            rows = [o for o in rows if o.time >= int(p["startTime"])]
        rows.sort(key=lambda o: o.order_id, reverse=True)  # newest first
        limit = min(int(p.get("limit", 20)), 50)
        return {"category": "spot", "nextPageCursor": "", "list": [_order(o) for o in rows[:limit]]}

    def _executions(self, p: dict[str, str]) -> dict[str, Any]:
        rows = [t for t in self.trades if "symbol" not in p or t.symbol == p["symbol"]]
        if "startTime" in p:
            rows = [t for t in rows if t.time >= int(p["startTime"])]
        rows.sort(key=lambda t: t.trade_id, reverse=True)  # newest first, paged by cursor
        start = int(p.get("cursor") or 0)
        limit = min(int(p.get("limit", 50)), 100)
        page = rows[start:start + limit]
        cursor = str(start + limit) if start + limit < len(rows) else ""
        return {"category": "spot", "nextPageCursor": cursor,
                "list": [_execution(t, self.orders[t.order_id]) for t in page]}


def _error(code: int, msg: str) -> dict[str, Any]:
    return {"retCode": code, "retMsg": msg, "result": {}, "retExtInfo": {}, "time": _ms()}


def _translate(e: BinanceError) -> tuple[int, str]:
    """The binance engine's refusal as bybit's retCode and message."""
    msg = e.msg
    if "Duplicate" in msg:
        return 170141, "Duplicate clientOrderId."
    if "insufficient balance" in msg:
        return 170131, "Insufficient balance."
    if "would immediately match" in msg:
        return 170210, "New order rejected."
    if "LOT_SIZE" in msg:
        return 170136, "Order quantity lower than the minimum."
    if "PRICE_FILTER" in msg:
        return 170134, "Order price decimal too long."
    if "NOTIONAL" in msg:
        return 170140, "Transaction amount lower than the minimum."
    if "Invalid symbol" in msg:
        return 10001, "Not supported symbols."
    if "does not exist" in msg or "Unknown order" in msg:
        return 170213, "Order does not exist."
    return 10001, msg


def _instrument(m: Any) -> dict[str, Any]:
    return {"symbol": m.symbol, "baseCoin": m.base, "quoteCoin": m.quote, "innovation": "0", "status": "Trading",
            "marginTrading": "none", "lotSizeFilter": {
                "basePrecision": str(m.step_size.normalize()), "quotePrecision": "0.00000001",
                "minOrderQty": str(m.min_qty.normalize()), "maxOrderQty": str(m.max_qty.normalize()),
                "minOrderAmt": str(m.min_notional.normalize()), "maxOrderAmt": "2000000"},
            "priceFilter": {"tickSize": str(m.tick_size.normalize())},
            "riskParameters": {"limitParameter": "0.05", "marketParameter": "0.05"}}


def _ticker(m: Any) -> dict[str, Any]:
    return {"symbol": m.symbol, "bid1Price": fmt(m.bid), "bid1Size": "1", "ask1Price": fmt(m.ask), "ask1Size": "1",
            "lastPrice": fmt(m.bid), "prevPrice24h": fmt(m.bid), "price24hPcnt": "0", "highPrice24h": fmt(m.ask),
            "lowPrice24h": fmt(m.bid), "turnover24h": fmt(m.bid * 100), "volume24h": "100", "usdIndexPrice": ""}


def _order(o: FakeOrder) -> dict[str, Any]:
    average = o.quote / o.executed if o.executed else None
    return {"symbol": o.symbol, "orderType": "Market" if o.type == "MARKET" else "Limit",
            "orderLinkId": o.client_order_id,
            "orderId": str(o.order_id), "cancelType": "UNKNOWN", "avgPrice": "" if average is None else fmt(average),
            "stopOrderType": "", "orderStatus": _STATUS[o.status], "cumExecValue": fmt(o.quote), "smpType": "None",
            "triggerDirection": "0", "blockTradeId": "", "rejectReason": "EC_NoError", "isLeverage": "0",
            "price": fmt(o.price) if o.price else "0", "orderIv": "", "createdTime": str(o.time), "positionIdx": "0",
            "timeInForce": "PostOnly" if o.type == "LIMIT_MAKER" else (o.time_in_force or "IOC"),
            "leavesValue": "0", "updatedTime": str(o.update_time), "side": o.side.title(), "smpGroup": "0",
            "triggerPrice": "0", "cumExecFee": "0", "leavesQty": fmt(o.qty - o.executed if o.status in
                                                                  ("NEW", "PARTIALLY_FILLED") else D(0)),
            "closeOnTrigger": False, "placeType": "", "cumExecQty": fmt(o.executed), "reduceOnly": False,
            "qty": fmt(o.qty), "stopLoss": "0", "takeProfit": "0",
            "marketUnit": "baseCoin" if o.type == "MARKET" else "",
            "smpOrderId": "", "triggerBy": ""}


def _execution(t: FakeTrade, o: FakeOrder) -> dict[str, Any]:
    return {"symbol": t.symbol, "orderType": "Market" if o.type == "MARKET" else "Limit", "underlyingPrice": "",
            "orderLinkId": o.client_order_id, "orderId": str(o.order_id), "stopOrderType": "", "execTime": str(t.time),
            "feeCurrency": t.commission_asset, "feeRate": "0.001", "tradeIv": "", "blockTradeId": "", "markPrice": "",
            "execPrice": fmt(t.price), "markIv": "", "orderQty": fmt(o.qty), "orderPrice": fmt(o.price),
            "execValue": fmt(t.price * t.qty), "closedSize": "", "execType": "Trade", "seq": str(t.trade_id),
            "side": "Buy" if t.is_buyer else "Sell", "indexPrice": "", "leavesQty": "0", "isMaker": t.is_maker,
            "execFee": fmt(t.commission), "execId": str(t.trade_id), "marketUnit": "baseCoin", "execQty": fmt(t.qty)}
