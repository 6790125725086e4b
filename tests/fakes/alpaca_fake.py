"""Loopback fakes of Alpaca's trading REST API, trade_updates stream and market-data streams,
for driving the real alpaca-py SDK (0.44.0) in tests.

Shapes follow what alpaca-py sends and parses (BROKER_SDKS.md §2, read from the SDK), and every
JSON it serves passes alpaca-py's own models (tests/integration/test_alpaca_adapter.py):
- REST on http://127.0.0.1:<port>/v2/...: TradingClient(url_override=fake.rest_url). Orders,
  order by client id, cancel, positions, account, assets, and fill activities
  (/v2/account/activities/FILL). Errors are JSON `{"code": ..., "message": ...}`.
- The trade_updates stream on ws://127.0.0.1:<port>/stream (JSON): authenticate -> authorization,
  listen -> listening, then `{"stream": "trade_updates", "data": {event, execution_id, order,
  timestamp, position_qty, price, qty}}`. A connection is subscribed before "listening" is sent.
- Market data on ws://127.0.0.1:<port>/v2/iex and /v1beta3/crypto/us (msgpack): connected,
  auth -> authenticated, subscribe -> subscription, then arrays of `{"T": "q"|"t"|"b", "S": ...}`
  with `t` a msgpack Timestamp.

Venue behaviours it reproduces (Alpaca's documentation and alpaca-py's fixtures):
- activities paginated: `page_size` (default and maximum 100), `page_token` (the last row's id),
  `direction` (default desc), `after`;
- statuses new, pending_new, accepted, partially_filled, filled, pending_cancel, canceled,
  done_for_day (`done_for_day`, then `next_day`: GTC works again, DAY expires), expired,
  pending_replace and replaced (`replace_at_venue`: a new order with its own id takes the place),
  and trailing stops (`place_trailing_stop`, stop price from the high-water mark);
- asynchronous cancels: DELETE answers 204 with the order pending_cancel; the cancel happens
  after the answer on the fake's worker thread (or at `release_cancels` under `hold_cancels`);
- market orders outside market hours are accepted and queued for the open (`close_market`,
  `open_market`); limit orders rest as usual;
- notional orders (market only; fractionable or crypto assets; $1 minimum), fractional equity
  orders DAY only, crypto time in force gtc/ioc only, whole shares for non-fractionable assets;
- crypto symbols both ways: orders and assets "BTC/USD", positions "BTCUSD" (alpaca-py's own
  fixture), assets looked up by either;
- the client_order_id uniqueness refusal, insufficient buying power, unknown assets.
Modelled, not observed: error codes and messages for an unknown asset and a non-cancelable order;
activity ids "<time>::<uuid>"; fill activities writing crypto symbols without the slash.
- advanced orders (Alpaca's "Orders at Alpaca": bracket, OCO, OTO; alpaca-py's OrderClass,
  TakeProfitRequest, StopLossRequest): `order_class` bracket (market or limit entry, take_profit
  limit leg and stop_loss stop / stop-limit leg), oto (one of them), oco (an exit: the order is
  the take-profit limit, its leg the stop); US equities only, whole shares, day or gtc. Legs get
  their own ids and client ids (Alpaca's, not the caller's), sit in the parent's `legs`, are
  `held` until the entry has filled completely, then `new`; one leg filling cancels the others;
  an entry canceled or expired cancels its legs. `GET /v2/orders?nested=true` rolls legs up under
  their parent (a parent done but with working legs is listed); without it legs are rows too;
- trailing stops from the client (`type=trailing_stop`, `trail_price` or `trail_percent`): `hwm`
  and `stop_price` follow the price on `set_price` (a sell's up only, a buy's down only);
- `set_price` triggers the orders Alpaca would act on by itself: trailing stops and the working
  orders of advanced classes (a stop at or through its stop price, a limit at or better than its
  limit), filled at the new price (a limit at its limit price); simple orders still fill only
  through `fill` (the conformance suite drives them);
- replace (`PATCH /v2/orders/{id}`: qty, limit_price, stop_price, trail, time_in_force,
  client_order_id): the old order `pending_replace` then `replaced` (`replaced_by`), a new order
  with a new id (`replaces`) takes its place, in its parent's legs too; a partly filled, pending
  or closed order is refused (422).
Modelled, not observed: that a partly filled entry keeps its legs held until it is filled, that
a leg's cancel leaves its sibling working, the error texts for advanced orders.
- crypto fees as Alpaca documents them ("Crypto Activities"): posted at the end of the day
  (`post_crypto_fees`) as CFEE activities, in the coin on a buy, in dollars on a sell, taken
  from the position / the cash; GET /v2/account/activities/{type} serves them, paged like fills;
- extended hours: `extended_hours=true` only on LIMIT DAY orders, anything else 422 "extended
  hours order must be DAY limit orders" (code 42210000);
Not reproduced: equity fees (REG/TAF), the extended-hours session itself (the flag is checked
and kept on the order, orders fill as in regular hours), partial fills of a
notional order, corporate actions, margin and shorting rules (shorts are allowed, unchecked),
rate limits other than the injected 429s, and the real market calendar (sessions are controls).

Test controls: `add_asset`, `set_price`, `advance` (the venue clock), `fill` (partial or full),
`fail_next` / `fail_all` / `heal` (HTTP faults on POST /v2/orders), `fail_lookups`,
`fail_activities`, `lose_next_submit` (the order is booked, then the connection is dropped
without an answer, or held until the client closes it), `drop_streams` (close every trade_updates
connection and refuse new ones until `restore_streams`), `place_external` (an order someone else
made), the venue behaviours above, `publish_quote` / `publish_trade` / `publish_bar`.
`adapter_settled(fake, adapter)` says when an adapter has caught up with everything the fake did.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import msgpack
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

KEY, SECRET = "PKTEST", "SECRETTEST"
OPEN_STATUSES = {"new", "accepted", "pending_new", "partially_filled", "held", "pending_cancel", "pending_replace",
                 "done_for_day"}
PAGE_SIZE = 100   # activities per page (Alpaca's default and maximum)


def _iso(ns: int) -> str:
    """RFC 3339 with nanoseconds, as Alpaca writes its times."""
    seconds, rest = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{rest:09d}Z"


def _parse(stamp: str) -> int:
    main, _, fraction = stamp.rstrip("Z").partition(".")
    seconds = int(datetime.fromisoformat(main).replace(tzinfo=timezone.utc).timestamp())
    return seconds * 1_000_000_000 + int((fraction + "000000000")[:9])


def _activity_ns(row: dict[str, Any]) -> int:
    """When an activity happened: a fill's transaction_time; a non-trade activity (CFEE) is
    dated only, and counts from the start of its day."""
    if row.get("transaction_time"):
        return _parse(row["transaction_time"])
    return _parse(row["date"] + "T00:00:00Z")


def _plain(symbol: str) -> str:
    """"BTC/USD" -> "BTCUSD": how Alpaca writes crypto symbols in positions (alpaca-py's own
    fixture) and, modelled here, in fill activities."""
    return symbol.replace("/", "")


def _s(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


@dataclass
class _Asset:
    symbol: str
    asset_class: str = "us_equity"
    fractionable: bool = True
    min_order_size: Decimal | None = None
    min_trade_increment: Decimal | None = None
    price_increment: Decimal | None = None
    price: Decimal = Decimal("100")
    market_open: bool = True
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def json(self) -> dict[str, Any]:
        crypto = self.asset_class == "crypto"
        return {"id": self.id, "class": self.asset_class, "exchange": "CRYPTO" if crypto else "NASDAQ",
                "symbol": self.symbol, "name": self.symbol, "status": "active", "tradable": True,
                "marginable": not crypto, "shortable": not crypto, "easy_to_borrow": not crypto,
                "fractionable": self.fractionable,
                "min_order_size": None if self.min_order_size is None else float(self.min_order_size),
                "min_trade_increment": None if self.min_trade_increment is None else float(self.min_trade_increment),
                "price_increment": None if self.price_increment is None else float(self.price_increment),
                "attributes": []}


class FakeAlpaca:
    """One fake Alpaca account: a REST server and a WebSocket server on loopback ports."""

    def __init__(self, cash: str = "100000") -> None:
        self.lock = threading.RLock()
        self.cash = Decimal(cash)
        self.assets: dict[str, _Asset] = {}
        self.orders: dict[str, dict[str, Any]] = {}        # id -> order json (strings for numbers)
        self._parent_of: dict[str, str] = {}                # a leg's id -> its parent's id
        self.positions: dict[str, tuple[Decimal, Decimal]] = {}  # symbol -> (signed qty, avg price)
        self.activities: list[dict[str, Any]] = []
        self._fees_for: set[str] = set()                    # FILL activity ids whose CFEE is posted
        self.bars: dict[str, list[dict[str, Any]]] = {}     # symbol -> historical bars (JSON rows)
        self.requests: list[tuple[str, str, Any]] = []     # (method, path, body)
        self.posted_orders = 0
        self._clock_ns = 1_767_225_600_000_000_000         # 2026-01-01T00:00:00Z
        self._faults: list[tuple[int, dict]] = []
        self._fail_all: tuple[int, dict] | None = None
        self._lookup_faults = 0
        self._activity_faults = 0
        self._lose: list[str] = []
        self._release = threading.Event()
        self.streams_refused = False
        self.trade_updates_sent = 0
        self.stream_connections = 0                         # trade_updates subscriptions confirmed so far
        self.sent_on: dict[int, int] = {}                   # subscription number -> trade updates sent on it
        self._trading_sessions: set[ServerConnection] = set()   # every /stream connection, listening or not
        self._ws_clients: dict[ServerConnection, int] = {}  # listening connection -> its subscription number
        self._busy = 0                                      # venue work still under way (asynchronous cancels)
        self._hold_cancels = False
        self._work: "queue.Queue[Any]" = queue.Queue()
        threading.Thread(target=self._worker, name="fake-alpaca-venue", daemon=True).start()
        self._data_clients: dict[ServerConnection, dict[str, set[str]]] = {}
        self.account_id = str(uuid.uuid4())
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._http.daemon_threads = True
        self._http_thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.02},
                                             name="fake-alpaca-rest", daemon=True)
        self._http_thread.start()
        self._loop = asyncio.new_event_loop()
        self._ws_ready = threading.Event()
        self._ws_thread = threading.Thread(target=self._run_ws, name="fake-alpaca-ws", daemon=True)
        self._ws_thread.start()
        self._ws_ready.wait(10)

    # -- addresses ---------------------------------------------------------------------------------
    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    @property
    def stream_url(self) -> str:
        return f"ws://127.0.0.1:{self._ws_port}/stream"

    @property
    def stock_data_url(self) -> str:
        return f"ws://127.0.0.1:{self._ws_port}/v2/iex"

    @property
    def crypto_data_url(self) -> str:
        return f"ws://127.0.0.1:{self._ws_port}/v1beta3/crypto/us"

    def close(self) -> None:
        self._release.set()
        self._http.shutdown()
        self._http.server_close()
        asyncio.run_coroutine_threadsafe(self._shutdown_ws(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._ws_thread.join(10)

    # -- test controls -----------------------------------------------------------------------------
    def add_asset(self, symbol: str, price: str, **spec: Any) -> None:
        spec = {k: Decimal(v) if k in ("min_order_size", "min_trade_increment", "price_increment") and v is not None
                else v for k, v in spec.items()}
        self.assets[symbol] = _Asset(symbol, price=Decimal(price), **spec)

    def set_price(self, symbol: str, price: str) -> None:
        """The price moves: trailing stops ratchet, and trailing stops and the working orders of
        advanced classes that it reaches fill (module docstring)."""
        with self.lock:
            new = Decimal(price)
            self.assets[symbol].price = new
            for order in list(self.orders.values()):
                if order["symbol"] != symbol or order["status"] not in ("new", "accepted", "partially_filled"):
                    continue
                if order["type"] == "trailing_stop":
                    self._ratchet(order, new)
                if order["type"] != "trailing_stop" and order["order_class"] == "simple":
                    continue
                at = self._reached(order, new)
                if at is not None:
                    self._execute(order, self._leaves(order, at), at)

    def _ratchet(self, order: dict[str, Any], price: Decimal) -> None:
        sell = order["side"] == "sell"
        hwm = Decimal(order["hwm"])
        if (price > hwm) if sell else (price < hwm):
            order["hwm"] = _s(price)
            order["stop_price"] = _s(self._trail_stop(order, price))

    @staticmethod
    def _trail_stop(order: dict[str, Any], hwm: Decimal) -> Decimal:
        sign = -1 if order["side"] == "sell" else 1
        if order.get("trail_price") is not None:
            return hwm + sign * Decimal(order["trail_price"])
        return (hwm * (1 + sign * Decimal(order["trail_percent"]) / 100)).quantize(Decimal("0.01"))

    @staticmethod
    def _reached(order: dict[str, Any], price: Decimal) -> Decimal | None:
        """The fill price if `price` triggers the order, else None."""
        sell = order["side"] == "sell"
        if order["type"] in ("stop", "stop_limit", "trailing_stop"):
            stop = Decimal(order["stop_price"])
            if (price <= stop) if sell else (price >= stop):
                return price
            return None
        if order["type"] == "limit":
            limit = Decimal(order["limit_price"])
            if (price >= limit) if sell else (price <= limit):
                return limit
        return None

    def asset(self, symbol: str) -> _Asset | None:
        """By "BTC/USD" or "BTCUSD", as Alpaca's /v2/assets/{symbol} takes either."""
        return self.assets.get(symbol) or next((a for a in self.assets.values() if _plain(a.symbol) == symbol), None)

    def close_market(self, symbol: str) -> None:
        self.assets[symbol].market_open = False

    def open_market(self, symbol: str) -> None:
        """The session opens: market orders queued outside hours execute at the current price."""
        with self.lock:
            asset = self.assets[symbol]
            asset.market_open = True
            for order in list(self.orders.values()):
                if order["symbol"] == symbol and order["type"] == "market" and order["status"] in OPEN_STATUSES:
                    self._execute(order, self._leaves(order, asset.price), asset.price)

    def hold_cancels(self, hold: bool = True) -> None:
        """Cancels stay pending_cancel until `release_cancels` (default: they finish on the fake's
        own worker thread just after the DELETE was answered, as Alpaca's do: asynchronously)."""
        self._hold_cancels = hold

    def release_cancels(self) -> None:
        with self.lock:
            for order in list(self.orders.values()):
                if order["status"] == "pending_cancel":
                    self._cancel(order)

    def done_for_day(self, cid: str) -> None:
        """The session ended with the order still working: done for the day (GTC: back tomorrow)."""
        with self.lock:
            order = self.order_by_cid(cid)
            assert order is not None and order["status"] in OPEN_STATUSES
            order.update(status="done_for_day", updated_at=_iso(self.now()))
            self._emit("done_for_day", order)

    def next_day(self, cid: str) -> None:
        """The next session: a GTC order done for the day is working again, a DAY order expires."""
        with self.lock:
            order = self.order_by_cid(cid)
            assert order is not None
            ts = _iso(self.now())
            if order["time_in_force"] == "day":
                order.update(status="expired", expired_at=ts, updated_at=ts)
                self._emit("expired", order)
            else:
                order.update(status="partially_filled" if Decimal(order["filled_qty"]) else "new", updated_at=ts)

    def expire(self, cid: str) -> None:
        with self.lock:
            order = self.order_by_cid(cid)
            assert order is not None and order["status"] in OPEN_STATUSES
            ts = _iso(self.now())
            order.update(status="expired", expired_at=ts, updated_at=ts)
            self._emit("expired", order)

    def replace_at_venue(self, cid: str, qty: str | None = None, limit_price: str | None = None,
                         new_cid: str | None = None) -> dict[str, Any]:
        """Someone amends the order (PATCH /v2/orders/{id}, e.g. from Alpaca's dashboard): the old
        order goes pending_replace then replaced, a new order (new id) takes its place."""
        with self.lock:
            old = self.order_by_cid(cid)
            assert old is not None and old["status"] in OPEN_STATUSES
            old.update(status="pending_replace", updated_at=_iso(self.now()))
            self._emit("pending_replace", old)
            body = {"symbol": old["symbol"], "qty": qty or old["qty"], "side": old["side"], "type": old["type"],
                    "time_in_force": old["time_in_force"], "limit_price": limit_price or old["limit_price"],
                    "stop_price": old["stop_price"], "client_order_id": new_cid or str(uuid.uuid4())}
            new = self._order_json(body, self.assets[old["symbol"]])
            new["replaces"] = old["id"]
            self.orders[new["id"]] = new
            ts = _iso(self.now())
            old.update(status="replaced", replaced_at=ts, replaced_by=new["id"], updated_at=ts)
            self._emit("replaced", old)
            self._emit("new", new)
            return new

    def place_trailing_stop(self, symbol: str, side: str, qty: str, trail_price: str, cid: str | None = None) -> dict:
        """A trailing stop someone else placed: its stop_price follows the high-water mark."""
        with self.lock:
            asset = self.assets[symbol]
            order = self._order_json({"symbol": symbol, "qty": qty, "side": side, "type": "trailing_stop",
                                      "time_in_force": "gtc", "client_order_id": cid or str(uuid.uuid4())}, asset)
            sign = -1 if side == "sell" else 1
            order.update(trail_price=trail_price, hwm=_s(asset.price), status="new",
                         stop_price=_s(asset.price + sign * Decimal(trail_price)))
            self.orders[order["id"]] = order
            self._emit("new", order)
            return order

    def advance(self, ns: int) -> None:
        """Move the venue's clock on (quotes, fills and activities carry its time)."""
        with self.lock:
            self._clock_ns += ns

    def post_crypto_fees(self, taker_bps: Decimal = Decimal(25)) -> list[dict[str, Any]]:
        """Alpaca's end-of-day crypto fee posting ("Crypto Activities": fees are calculated and
        posted at the end of the day, charged in what the trade credits): one CFEE activity per
        crypto fill not charged yet, dated the fill's (UTC) day, with Alpaca's documented shape
        (id "<YYYYMMDD>000000000::<uuid>", date, net_amount, description, symbol without the
        slash, qty, price, status). A buy's fee is `taker_bps` of the quantity, in the coin
        (qty negative, rounded down to the asset's increment, net_amount "0"), taken from the
        position; a sell's is of the notional, in dollars (net_amount negative, to the cent),
        taken from the cash. Returns the rows posted."""
        posted: list[dict[str, Any]] = []
        with self.lock:
            for fill in [a for a in self.activities if a["activity_type"] == "FILL" and a["id"] not in self._fees_for]:
                self._fees_for.add(fill["id"])
                order = self.orders[fill["order_id"]]
                if order["asset_class"] != "crypto":
                    continue
                asset = self.assets[order["symbol"]]
                qty, price = Decimal(fill["qty"]), Decimal(fill["price"])
                day = _iso(_parse(fill["transaction_time"]))[:10]
                row: dict[str, Any] = {"id": f"{day.replace('-', '')}000000000::{uuid.uuid4()}",
                                       "activity_type": "CFEE", "date": day, "symbol": _plain(order["symbol"]),
                                       "status": "executed"}
                if fill["side"] == "buy":
                    step = asset.min_trade_increment or Decimal("0.000000001")
                    fee = (qty * taker_bps / 10_000 / step).to_integral_value(rounding="ROUND_DOWN") * step
                    if not fee:
                        continue
                    held, avg = self.positions[order["symbol"]]
                    self.positions[order["symbol"]] = (held - fee, avg)
                    row.update(net_amount="0", qty=_s(-fee), price=_s(price),
                               description="Coin Pair Transaction Fee (Non USD)")
                else:
                    fee = (qty * price * taker_bps / 10_000).quantize(Decimal("0.01"))
                    if not fee:
                        continue
                    self.cash -= fee
                    row.update(net_amount=_s(-fee), qty="0", price=_s(price),
                               description="Coin Pair Transaction Fee (USD)")
                self.activities.append(row)
                posted.append(row)
        return posted

    def now(self) -> int:
        self._clock_ns += 1_000_000
        return self._clock_ns

    def fail_next(self, status: int, code: int = 50010000, message: str = "internal server error") -> None:
        self._faults.append((status, {"code": code, "message": message}))

    def fail_all(self, status: int, code: int = 50010000, message: str = "internal server error") -> None:
        self._fail_all = (status, {"code": code, "message": message})

    def idle(self) -> bool:
        """No venue work (an asynchronous cancel) is still to happen."""
        return self._busy == 0

    def heal(self) -> None:
        self._faults.clear()
        self._fail_all = None
        self._lookup_faults = 0

    def fail_activities(self, count: int) -> None:
        """The next `count` GET /v2/account/activities/FILL answer 503."""
        self._activity_faults = count

    def fail_lookups(self, count: int) -> None:
        """The next `count` GET /v2/orders:by_client_order_id answer 503."""
        self._lookup_faults = count

    def lose_next_submit(self, how: str = "drop") -> None:
        """The next POST /v2/orders books the order, then `drop`s the connection without an answer
        or holds it (`timeout`) until the client gives up."""
        self._lose.append(how)

    def order_by_cid(self, cid: str) -> dict[str, Any] | None:
        return next((o for o in self.orders.values() if o["client_order_id"] == cid), None)

    def count_by_cid(self, cid: str) -> int:
        return sum(1 for o in self.orders.values() if o["client_order_id"] == cid)

    def fill(self, cid: str, qty: str | Decimal | None = None, price: str | Decimal | None = None) -> None:
        with self.lock:
            order = self.order_by_cid(cid)
            assert order is not None and order["status"] in OPEN_STATUSES, f"{cid} is not open"
            if price is None:
                price = order["limit_price"] or self.assets[order["symbol"]].price
            amount = self._leaves(order, Decimal(price)) if qty is None else Decimal(qty)
            self._execute(order, amount, Decimal(price))

    def cancel_at_venue(self, cid: str) -> None:
        with self.lock:
            order = self.order_by_cid(cid)
            assert order is not None
            self._cancel(order)

    def place_external(self, symbol: str, side: str, qty: str, limit_price: str, cid: str | None = None) -> dict:
        with self.lock:
            order = self._book({"symbol": symbol, "qty": qty, "side": side, "type": "limit",
                                "time_in_force": "gtc", "limit_price": limit_price,
                                "client_order_id": cid or str(uuid.uuid4())})
            return order

    def drop_streams(self, refuse: bool = True) -> None:
        """Close every trade_updates connection (listening already or not yet); with `refuse`, new
        ones are refused until restore."""
        self.streams_refused = refuse
        asyncio.run_coroutine_threadsafe(self._close_trading_clients(), self._loop).result(10)

    def restore_streams(self) -> None:
        self.streams_refused = False

    def add_bars(self, symbol: str, rows: list[tuple[int, float, float, float, float, float]]) -> None:
        """Historical bars: (ns, open, high, low, close, volume) each."""
        self.bars.setdefault(symbol, []).extend(
            {"t": _iso(t), "o": o, "h": h, "l": low, "c": c, "v": v, "n": 1, "vw": c} for t, o, h, low, c, v in rows)

    def subscribed(self, channel: str, symbol: str) -> bool:
        return any(symbol in channels[channel] for channels in list(self._data_clients.values()))

    def publish_quote(self, symbol: str, bid: float, ask: float, bid_size: float = 1, ask_size: float = 1) -> int:
        return self._publish("quotes", symbol, {"T": "q", "S": symbol, "bx": "V", "bp": bid, "bs": bid_size,
                                                "ax": "V", "ap": ask, "as": ask_size, "c": ["R"], "z": "C"})

    def publish_trade(self, symbol: str, price: float, size: float) -> int:
        return self._publish("trades", symbol, {"T": "t", "S": symbol, "i": 1, "x": "V", "p": price, "s": size,
                                                "c": ["@"], "z": "C"})

    def publish_bar(self, symbol: str, o: float, h: float, low: float, c: float, v: float) -> int:
        return self._publish("bars", symbol, {"T": "b", "S": symbol, "o": o, "h": h, "l": low, "c": c, "v": v,
                                              "n": 10, "vw": (o + c) / 2})

    # -- the venue ---------------------------------------------------------------------------------
    def _order_json(self, body: dict[str, Any], asset: _Asset) -> dict[str, Any]:
        ts = _iso(self.now())
        kind = body.get("type", "market")
        return {
            "id": str(uuid.uuid4()), "client_order_id": body.get("client_order_id") or str(uuid.uuid4()),
            "created_at": ts, "updated_at": ts, "submitted_at": ts, "filled_at": None, "expired_at": None,
            "expires_at": None, "canceled_at": None, "failed_at": None, "replaced_at": None, "replaced_by": None,
            "replaces": None, "asset_id": asset.id, "symbol": asset.symbol, "asset_class": asset.asset_class,
            "notional": None if body.get("notional") is None else _s(Decimal(str(body["notional"]))),
            "qty": None if body.get("qty") is None else _s(Decimal(str(body["qty"]))),
            "filled_qty": "0", "filled_avg_price": None,
            "order_class": body.get("order_class") or "simple", "order_type": kind, "type": kind,
            "side": body["side"],
            "time_in_force": body.get("time_in_force", "day"),
            "limit_price": None if body.get("limit_price") is None else _s(Decimal(str(body["limit_price"]))),
            "stop_price": None if body.get("stop_price") is None else _s(Decimal(str(body["stop_price"]))),
            "status": "pending_new" if kind == "market" else "new", "extended_hours": bool(body.get("extended_hours")),
            "legs": None,
            "trail_percent": None, "trail_price": None, "hwm": None,
        }

    def _validate(self, body: dict[str, Any]) -> tuple[int, dict] | None:
        cid = body.get("client_order_id")
        if cid and self.count_by_cid(cid):
            return 422, {"code": 40010001, "message": "client_order_id must be unique"}
        asset = self.asset(body.get("symbol", ""))
        if asset is None:
            return 422, {"code": 40010001, "message": f'asset "{body.get("symbol")}" not found'}
        crypto = asset.asset_class == "crypto"
        tif = body.get("time_in_force")
        if crypto and tif not in ("gtc", "ioc"):
            return 422, {"code": 42210000, "message": "invalid crypto time_in_force"}
        if (body.get("qty") is None) == (body.get("notional") is None):
            return 422, {"code": 40010001, "message": "qty or notional is required"}
        if body.get("extended_hours") and not (body.get("type") == "limit" and tif == "day"):
            return 422, {"code": 42210000, "message": "extended hours order must be DAY limit orders"}
        refusal = self._validate_advanced(body, asset)
        if refusal is not None:
            return refusal
        if body.get("notional") is not None:
            notional = Decimal(str(body["notional"]))
            if body.get("type") != "market":
                return 422, {"code": 42210000, "message": "notional orders must be market orders"}
            if not (asset.fractionable or crypto):
                return 422, {"code": 42210000, "message": "fractional orders are not supported for this asset"}
            if not crypto and tif != "day":
                return 422, {"code": 42210000, "message": "fractional orders must be DAY orders"}
            if notional < 1:
                return 422, {"code": 40010001, "message": "notional must be >= 1"}
            if body.get("side") == "buy" and notional > self._buying_power():
                return 403, {"code": 40310000, "message": "insufficient buying power"}
            return None
        qty = Decimal(str(body.get("qty", "0")))
        if qty <= 0:
            return 422, {"code": 40010001, "message": "qty must be > 0"}
        if not asset.fractionable and qty != qty.to_integral_value():
            return 422, {"code": 40010001, "message": "fractional orders are not supported for this asset"}
        if not crypto and qty != qty.to_integral_value() and tif != "day":
            return 422, {"code": 42210000, "message": "fractional orders must be DAY orders"}
        if asset.min_trade_increment is not None and qty % asset.min_trade_increment:
            return 422, {"code": 40010001, "message": f"qty must be a multiple of {asset.min_trade_increment}"}
        if asset.min_order_size is not None and qty < asset.min_order_size:
            return 422, {"code": 40010001, "message": f"qty must be >= {asset.min_order_size}"}
        if (body.get("type") in ("limit", "stop_limit") and body.get("limit_price") is None
                and not (body.get("order_class") == "oco" and (body.get("take_profit") or {}).get("limit_price"))):
            return 422, {"code": 40010001, "message": "limit_price is required"}
        if body.get("side") == "buy":
            price = Decimal(str(body.get("limit_price") or body.get("stop_price") or asset.price))
            if qty * price > self._buying_power():
                return 403, {"code": 40310000, "message": "insufficient buying power"}
        return None

    def _validate_advanced(self, body: dict[str, Any], asset: _Asset) -> tuple[int, dict] | None:
        order_class = body.get("order_class") or "simple"
        kind = body.get("type")
        if kind == "trailing_stop":
            if (body.get("trail_price") is None) == (body.get("trail_percent") is None):
                return 422, {"code": 40010001, "message": "trail_price or trail_percent is required"}
            if order_class != "simple":
                return 422, {"code": 42210000, "message": "trailing stop orders must be simple orders"}
        if order_class == "simple":
            return None
        if order_class not in ("bracket", "oco", "oto"):
            return 422, {"code": 42210000, "message": f"invalid order_class {order_class}"}
        if asset.asset_class != "us_equity":
            return 422, {"code": 42210000, "message": "crypto orders must be simple orders"}
        if body.get("qty") is None or Decimal(str(body["qty"])) != Decimal(str(body["qty"])).to_integral_value():
            return 422, {"code": 42210000, "message": f"{order_class} orders require whole-share qty"}
        if body.get("time_in_force") not in ("day", "gtc"):
            return 422, {"code": 42210000, "message": f"{order_class} orders must be day or gtc"}
        tp, sl = body.get("take_profit"), body.get("stop_loss")
        if order_class in ("bracket", "oco") and (not tp or not sl):
            return 422, {"code": 40010001, "message": f"{order_class} orders require take_profit and stop_loss"}
        if order_class == "oto" and not tp and not sl:
            return 422, {"code": 40010001, "message": "oto orders require take_profit or stop_loss"}
        if order_class == "oco" and kind != "limit":
            return 422, {"code": 42210000, "message": "oco orders must be limit orders"}
        if order_class != "oco" and kind not in ("market", "limit"):
            return 422, {"code": 42210000, "message": f"{order_class} entries must be market or limit orders"}
        return None

    def _legs(self, parent: dict[str, Any], body: dict[str, Any], asset: _Asset) -> list[dict[str, Any]]:
        """The legs Alpaca makes for an advanced order, with client ids of its own."""
        exit_side = parent["side"] if parent["order_class"] == "oco" else ("sell" if parent["side"] == "buy" else "buy")
        legs = []
        specs = []
        if body.get("take_profit") and parent["order_class"] != "oco":
            specs.append({"type": "limit", "limit_price": body["take_profit"]["limit_price"]})
        if body.get("stop_loss"):
            stop = body["stop_loss"]
            specs.append({"type": "stop_limit" if stop.get("limit_price") is not None else "stop",
                          "stop_price": stop["stop_price"], "limit_price": stop.get("limit_price")})
        for spec in specs:
            leg = self._order_json({"symbol": parent["symbol"], "qty": parent["qty"], "side": exit_side,
                                    "time_in_force": parent["time_in_force"], "order_class": parent["order_class"],
                                    **spec}, asset)
            leg["status"] = "new" if parent["order_class"] == "oco" else "held"
            self._parent_of[leg["id"]] = parent["id"]
            self.orders[leg["id"]] = leg
            legs.append(leg)
        return legs

    def _book(self, body: dict[str, Any]) -> dict[str, Any]:
        asset = self.asset(body["symbol"])
        assert asset is not None
        if body.get("order_class") == "oco" and body.get("limit_price") is None:
            body = {**body, "limit_price": body["take_profit"]["limit_price"]}
        order = self._order_json(body, asset)
        if order["type"] == "trailing_stop":
            order.update(trail_price=None if body.get("trail_price") is None else _s(Decimal(str(body["trail_price"]))),
                         trail_percent=None if body.get("trail_percent") is None
                         else _s(Decimal(str(body["trail_percent"]))), hwm=_s(asset.price))
            order["stop_price"] = _s(self._trail_stop(order, asset.price))
        self.orders[order["id"]] = order
        if order["order_class"] != "simple":
            order["legs"] = self._legs(order, body, asset)
        self._emit("new" if order["type"] != "market" else "pending_new", order)
        for leg in order["legs"] or []:
            self._emit("new", leg)   # a held leg too: "held" is a status, no trade-update event
        if order["type"] == "market":
            if not asset.market_open:  # outside hours: accepted and queued for the open
                order["status"] = "accepted"
                self._emit("accepted", order)
                return order
            order["status"] = "new"
            self._execute(order, self._leaves(order, asset.price), asset.price)
        return order

    def _leaves(self, order: dict[str, Any], price: Decimal) -> Decimal:
        """What is left to fill; a notional order is sized at the fill price (9 decimals, down)."""
        if order["qty"] is None:
            spent = Decimal(order["filled_qty"]) * Decimal(order["filled_avg_price"] or 0)
            return ((Decimal(order["notional"]) - spent) / price).quantize(Decimal("1E-9"), rounding="ROUND_DOWN")
        return Decimal(order["qty"]) - Decimal(order["filled_qty"])

    def _execute(self, order: dict[str, Any], qty: Decimal, price: Decimal) -> None:
        filled = Decimal(order["filled_qty"]) + qty
        total = filled if order["qty"] is None else Decimal(order["qty"])  # a notional order: one execution
        avg = Decimal(order["filled_avg_price"] or 0)
        avg = (avg * Decimal(order["filled_qty"]) + price * qty) / filled
        sign = 1 if order["side"] == "buy" else -1
        held, held_avg = self.positions.get(order["symbol"], (Decimal(0), Decimal(0)))
        new = held + sign * qty
        if held == 0 or (held > 0) == (sign > 0):
            held_avg = (held_avg * abs(held) + price * qty) / abs(new)
        elif new != 0 and (new > 0) != (held > 0):
            held_avg = price
        if new == 0:
            self.positions.pop(order["symbol"], None)
        else:
            self.positions[order["symbol"]] = (new, held_avg)
        self.cash -= sign * qty * price
        ts = self.now()
        # a partial fill does not undo an accepted cancel: Alpaca's pending_cancel order still ends
        # canceled (with what it filled), so the status stays pending_cancel until the cancel lands
        working = "pending_cancel" if order["status"] == "pending_cancel" else "partially_filled"
        order.update(filled_qty=_s(filled), filled_avg_price=_s(avg), updated_at=_iso(ts),
                     status="filled" if filled >= total else working)
        if filled >= total:
            order["filled_at"] = _iso(ts)
        execution_id = str(uuid.uuid4())
        event = "fill" if filled >= total else "partial_fill"
        self.activities.append({
            "id": f"{ts // 1_000_000}::{execution_id}", "activity_type": "FILL", "transaction_time": _iso(ts),
            "type": event, "price": _s(price), "qty": _s(qty), "side": order["side"], "symbol": _plain(order["symbol"]),
            "leaves_qty": _s(total - filled), "order_id": order["id"], "cum_qty": _s(filled),
            "order_status": order["status"]})
        self._emit(event, order, execution_id=execution_id, price=price, qty=qty,
                   position_qty=self.positions.get(order["symbol"], (Decimal(0),))[0])
        self._after_fill(order)

    def _group(self, order: dict[str, Any]) -> list[dict[str, Any]]:
        """The exits linked with an order: a bracket's / OTO's legs, an OCO's order and its leg."""
        parent = self.orders.get(self._parent_of.get(order["id"], order["id"]))
        if parent is None:
            return [order]
        legs = list(parent["legs"] or [])
        return [parent, *legs] if parent["order_class"] == "oco" else legs

    def _after_fill(self, order: dict[str, Any]) -> None:
        if order["order_class"] == "simple":
            return
        if order["id"] not in self._parent_of and order["order_class"] != "oco":   # an entry
            if order["status"] == "filled":
                for leg in order["legs"] or []:
                    if leg["status"] == "held":
                        leg.update(status="new", updated_at=_iso(self.now()))
                        self._emit("new", leg)
            return
        for sibling in self._group(order):   # an exit: one filling cancels the others
            if sibling is not order and sibling["status"] in OPEN_STATUSES | {"held"}:
                self._cancel(sibling, force=True)

    def replace_order(self, order: dict[str, Any], body: dict[str, Any]) -> tuple[int, dict]:
        """PATCH /v2/orders/{id}."""
        if order["status"] not in ("new", "accepted", "held") or Decimal(order["filled_qty"]):
            return 422, {"code": 42210000, "message": "order is not replaceable"}
        cid = body.get("client_order_id")
        if cid and self.count_by_cid(cid):
            return 422, {"code": 40010001, "message": "client_order_id must be unique"}
        if body.get("qty") is not None and Decimal(str(body["qty"])) <= 0:
            return 422, {"code": 40010001, "message": "qty must be > 0"}
        changes = {k: _s(Decimal(str(body[k]))) for k in ("qty", "limit_price", "stop_price")
                   if body.get(k) is not None}
        if body.get("trail") is not None:
            if order["type"] != "trailing_stop":
                return 422, {"code": 42210000, "message": "trail is for trailing_stop orders only"}
            trail = "trail_price" if order["trail_price"] is not None else "trail_percent"
            changes[trail] = _s(Decimal(str(body["trail"])))
        if body.get("time_in_force"):
            changes["time_in_force"] = body["time_in_force"]
        return 200, self._replace(order, changes, cid or str(uuid.uuid4()))

    def _replace(self, old: dict[str, Any], changes: dict[str, Any], cid: str) -> dict[str, Any]:
        status = "held" if old["status"] == "held" else None
        old.update(status="pending_replace", updated_at=_iso(self.now()))
        self._emit("pending_replace", old)
        new = {**old, **changes, "id": str(uuid.uuid4()), "client_order_id": cid, "replaces": old["id"],
               "replaced_by": None, "replaced_at": None, "created_at": _iso(self.now())}
        new["updated_at"] = new["submitted_at"] = new["created_at"]
        new["status"] = status or ("new" if old["type"] != "market" else "accepted")
        if new["type"] == "trailing_stop":
            new["stop_price"] = _s(self._trail_stop(new, Decimal(new["hwm"])))
        self.orders[new["id"]] = new
        parent_id = self._parent_of.get(old["id"])
        if parent_id is not None:   # a leg: the replacement takes its place
            self._parent_of[new["id"]] = parent_id
            parent = self.orders[parent_id]
            parent["legs"] = [new if leg is old else leg for leg in parent["legs"]]
        elif old["legs"]:
            for leg in old["legs"]:
                self._parent_of[leg["id"]] = new["id"]
        ts = _iso(self.now())
        old.update(status="replaced", replaced_at=ts, replaced_by=new["id"], updated_at=ts)
        self._emit("replaced", old)
        self._emit("new", new)
        return new

    def _cancel(self, order: dict[str, Any], force: bool = False) -> bool:
        if order["status"] not in OPEN_STATUSES and not (force and order["status"] == "held"):
            return False
        ts = _iso(self.now())
        order.update(status="canceled", canceled_at=ts, updated_at=ts)
        self._emit("canceled", order)
        self._end_legs(order)
        return True

    def _end_legs(self, order: dict[str, Any]) -> None:
        """An entry that ends unfilled (canceled, expired) takes its held legs with it; an OCO's
        order its leg."""
        if order["id"] in self._parent_of or not order.get("legs"):
            return
        if Decimal(order["filled_qty"]) and order["order_class"] != "oco":
            return
        for leg in order["legs"]:
            if leg["status"] in OPEN_STATUSES | {"held"}:
                self._cancel(leg, force=True)

    def _request_cancel(self, order: dict[str, Any]) -> bool:
        """DELETE /v2/orders/{id}: accepted (204) as pending_cancel; the cancel itself happens
        after the answer, on the fake's worker (or at `release_cancels` when held)."""
        if order["status"] not in OPEN_STATUSES or order["status"] == "pending_cancel":
            return order["status"] == "pending_cancel"
        order.update(status="pending_cancel", updated_at=_iso(self.now()))
        self._emit("pending_cancel", order)
        if not self._hold_cancels:
            self._busy += 1
            self._work.put(order["id"])
        return True

    def _worker(self) -> None:
        while True:
            order_id = self._work.get()
            with self.lock:
                order = self.orders.get(order_id)
                if order is not None and order["status"] == "pending_cancel":
                    self._cancel(order)
                self._busy -= 1

    def _buying_power(self) -> Decimal:
        return max(self.cash, Decimal(0))

    def _equity(self) -> Decimal:
        return self.cash + sum((q * self.assets[s].price for s, (q, _) in self.positions.items()), Decimal(0))

    def _position_json(self, symbol: str) -> dict[str, Any]:
        qty, avg = self.positions[symbol]
        asset = self.assets[symbol]
        value = qty * asset.price
        shown = _plain(symbol) if asset.asset_class == "crypto" else symbol
        return {"asset_id": asset.id, "symbol": shown,
                "exchange": "CRYPTO" if asset.asset_class == "crypto" else "NASDAQ",
                "asset_class": asset.asset_class, "asset_marginable": True, "avg_entry_price": _s(avg),
                "qty": _s(qty), "side": "long" if qty > 0 else "short", "market_value": _s(value),
                "cost_basis": _s(qty * avg), "unrealized_pl": _s(value - qty * avg), "current_price": _s(asset.price),
                "qty_available": _s(qty)}

    def client_positions(self) -> list[dict[str, Any]]:
        """GET /v2/positions as Alpaca answers it."""
        with self.lock:
            return [self._position_json(s) for s in self.positions]

    def _account_json(self) -> dict[str, Any]:
        return {"id": self.account_id, "account_number": "PA1234567", "status": "ACTIVE", "crypto_status": "ACTIVE",
                "currency": "USD", "buying_power": _s(self._buying_power()), "cash": _s(self.cash),
                "portfolio_value": _s(self._equity()), "equity": _s(self._equity()), "last_equity": _s(self._equity()),
                "pattern_day_trader": False, "trading_blocked": False, "transfers_blocked": False,
                "account_blocked": False, "created_at": _iso(self._clock_ns), "shorting_enabled": True,
                "multiplier": "1", "long_market_value": "0", "short_market_value": "0", "initial_margin": "0",
                "maintenance_margin": "0", "daytrade_count": 0}

    # -- HTTP --------------------------------------------------------------------------------------
    def handle(self, method: str, url: str, body: Any, headers: Any) -> tuple[int, Any, str | None]:
        """(status, json body or None, lose mode) for one request."""
        if headers.get("APCA-API-KEY-ID") != KEY or headers.get("APCA-API-SECRET-KEY") != SECRET:
            return 401, {"code": 40110000, "message": "request is not authorized"}, None
        parsed = urlparse(url)
        path, query = parsed.path, {k: v[0] for k, v in parse_qs(parsed.query).items()}
        with self.lock:
            self.requests.append((method, path, body))
            if method == "POST" and path == "/v2/orders":
                self.posted_orders += 1
                if self._faults:
                    return (*self._faults.pop(0), None)
                if self._fail_all is not None:
                    return (*self._fail_all, None)
                refusal = self._validate(body)
                if refusal is not None:
                    return (*refusal, None)
                order = self._book(body)
                return 200, order, (self._lose.pop(0) if self._lose else None)
            if method == "GET" and path == "/v2/orders:by_client_order_id" and self._lookup_faults:
                self._lookup_faults -= 1
                return 503, {"code": 50310000, "message": "service unavailable"}, None
            if method == "GET" and path == "/v2/orders:by_client_order_id":
                order = self.order_by_cid(query.get("client_order_id", ""))
                return (200, order, None) if order else (404, {"code": 40410000, "message": "order not found"}, None)
            if method == "GET" and path == "/v2/orders":
                status = query.get("status", "open")

                def wanted(o: dict[str, Any]) -> bool:
                    return status == "all" or (o["status"] in OPEN_STATUSES) == (status == "open")

                if query.get("nested", "").lower() == "true":   # legs rolled up under their parent
                    rows = [o for o in self.orders.values() if o["id"] not in self._parent_of
                            and (wanted(o) or (status == "open" and any(wanted(leg) for leg in o["legs"] or [])))]
                else:
                    rows = [o for o in self.orders.values() if wanted(o)]
                if "symbols" in query:
                    rows = [o for o in rows if o["symbol"] in query["symbols"].split(",")]
                return 200, rows, None
            if path.startswith("/v2/orders/"):
                order = self.orders.get(path.rsplit("/", 1)[1])
                if order is None:
                    return 404, {"code": 40410000, "message": "order not found"}, None
                if method == "GET":
                    return 200, order, None
                if method == "DELETE":
                    if self._request_cancel(order):
                        return 204, None, None
                    return 422, {"code": 42210000, "message": "order is not cancelable"}, None
                if method == "PATCH":
                    return (*self.replace_order(order, body or {}), None)
            if method == "GET" and path == "/v2/positions":
                return 200, [self._position_json(s) for s in self.positions], None
            if method == "GET" and path == "/v2/account":
                return 200, self._account_json(), None
            if method == "GET" and path.startswith("/v2/assets/"):
                asset = self.asset(unquote(path[len("/v2/assets/"):]))
                return ((200, asset.json(), None) if asset
                        else (404, {"code": 40410000, "message": "asset not found"}, None))
            if method == "GET" and path == "/v2/account/activities/FILL" and self._activity_faults:
                self._activity_faults -= 1
                return 503, {"code": 50310000, "message": "service unavailable"}, None
            if method == "GET" and path.startswith("/v2/account/activities/"):
                kind = path[len("/v2/account/activities/"):]
                after = query.get("after")
                rows = [a for a in self.activities if a["activity_type"] == kind
                        and (after is None or _activity_ns(a) > _parse(after))]
                if query.get("direction", "desc") == "desc":
                    rows.reverse()
                if "page_token" in query:  # the id of the last row of the previous page
                    ids = [a["id"] for a in rows]
                    rows = rows[ids.index(query["page_token"]) + 1:] if query["page_token"] in ids else []
                return 200, rows[:min(int(query.get("page_size", PAGE_SIZE)), PAGE_SIZE)], None
            if method == "GET" and path in ("/v2/stocks/bars", "/v1beta3/crypto/us/bars"):
                start, end = _parse(query["start"]), _parse(query["end"]) if "end" in query else 2**63
                out = {s: [b for b in self.bars.get(s, []) if start <= _parse(b["t"]) <= end]
                       for s in query.get("symbols", "").split(",")}
                return 200, {"bars": out, "next_page_token": None}, None
        return 404, {"code": 40400000, "message": f"no route {method} {path}"}, None

    # -- WebSocket ---------------------------------------------------------------------------------
    def _run_ws(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._ws_server = await serve(self._ws_handler, "127.0.0.1", 0)
            self._ws_port = self._ws_server.sockets[0].getsockname()[1]
            self._ws_ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    async def _shutdown_ws(self) -> None:
        self._ws_server.close()
        for ws in list(self._trading_sessions) + list(self._data_clients):
            await ws.close()

    async def _ws_handler(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else ""
        try:
            if path == "/stream":
                await self._trading_session(ws)
            else:
                await self._data_session(ws)
        except ConnectionClosed:
            pass
        finally:
            self._trading_sessions.discard(ws)
            self._ws_clients.pop(ws, None)
            self._data_clients.pop(ws, None)

    async def _trading_session(self, ws: ServerConnection) -> None:
        if self.streams_refused:
            await ws.close(1011, "unavailable")
            return
        self._trading_sessions.add(ws)
        async for raw in ws:
            msg = json.loads(raw)
            if msg.get("action") == "authenticate":
                data = msg.get("data", {})
                ok = data.get("key_id") == KEY and data.get("secret_key") == SECRET
                await ws.send(json.dumps({"stream": "authorization", "data": {
                    "status": "authorized" if ok else "unauthorized", "action": "authenticate"}}))
                if not ok:
                    await ws.close()
                    return
            elif msg.get("action") == "listen":
                streams = msg.get("data", {}).get("streams", [])
                if "trade_updates" in streams and ws not in self._ws_clients:
                    # subscribed before "listening" goes out: nothing emitted after the client
                    # hears it can be missed (the frame is written before any broadcast can run)
                    self.stream_connections += 1
                    self._ws_clients[ws] = self.stream_connections
                    self.sent_on[self.stream_connections] = 0
                await ws.send(json.dumps({"stream": "listening", "data": {"streams": streams}}))

    async def _close_trading_clients(self) -> None:
        for ws in list(self._trading_sessions):
            self._trading_sessions.discard(ws)
            self._ws_clients.pop(ws, None)
            await ws.close(1011, "dropped by the fake")

    def _emit(self, event: str, order: dict[str, Any], **extra: Any) -> None:
        data: dict[str, Any] = {"event": event, "order": dict(order), "timestamp": order["updated_at"]}
        for key, value in extra.items():
            data[key] = _s(value) if isinstance(value, Decimal) else value
        message = json.dumps({"stream": "trade_updates", "data": data})
        asyncio.run_coroutine_threadsafe(self._broadcast(message), self._loop).result(10)

    async def _broadcast(self, message: str) -> None:
        for ws, number in list(self._ws_clients.items()):
            try:
                await ws.send(message)
                self.trade_updates_sent += 1
                self.sent_on[number] += 1
            except ConnectionClosed:
                self._ws_clients.pop(ws, None)

    async def _data_session(self, ws: ServerConnection) -> None:
        await ws.send(msgpack.packb([{"T": "success", "msg": "connected"}]))
        async for raw in ws:
            msg = msgpack.unpackb(raw)
            if msg.get("action") == "auth":
                ok = msg.get("key") == KEY and msg.get("secret") == SECRET
                reply = {"T": "success", "msg": "authenticated"} if ok else {"T": "error", "code": 402,
                                                                              "msg": "auth failed"}
                await ws.send(msgpack.packb([reply]))
                self._data_clients[ws] = {"trades": set(), "quotes": set(), "bars": set()}
            elif msg.get("action") == "subscribe":
                channels = self._data_clients.setdefault(ws, {"trades": set(), "quotes": set(), "bars": set()})
                for name in channels:
                    channels[name].update(msg.get(name, []))
                await ws.send(msgpack.packb([{"T": "subscription", **{k: sorted(v) for k, v in channels.items()}}]))

    def _publish(self, channel: str, symbol: str, payload: dict[str, Any]) -> int:
        ts = self.now()
        payload["t"] = msgpack.Timestamp.from_unix_nano(ts)
        packed = msgpack.packb([payload], datetime=False)

        async def send() -> int:
            sent = 0
            for ws, channels in list(self._data_clients.items()):
                if symbol in channels[channel] or "*" in channels[channel]:
                    await ws.send(packed)
                    sent += 1
            return sent

        return asyncio.run_coroutine_threadsafe(send(), self._loop).result(10)


def adapter_settled(fake: FakeAlpaca, adapter: Any) -> bool:
    """True when the adapter has handled every trade update the fake sent on the adapter's current
    subscription, has reconciled after its latest (re)connection, and the fake has no venue work
    (asynchronous cancels) still under way.

    Counted per subscription, not in total: a message the fake sent on a connection that then
    dropped may never be read, and the reconciliation after the reconnect stands in for it."""
    generation = adapter.stream_generation
    return (fake.idle() and fake.stream_connections == generation
            and adapter.connection_messages >= fake.sent_on.get(generation, 0)
            and adapter.reconciled_generation >= generation)


def _client_gone(sock: Any) -> bool:
    """The client closed its end (it gave up waiting): the socket reads EOF."""
    import select
    import socket
    readable, _, _ = select.select([sock], [], [], 0.05)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _handler(fake: FakeAlpaca) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            status, payload, lose = fake.handle(method, self.path, body, self.headers)
            if lose is not None:
                if lose == "timeout":  # held until the client gives up (closes), however long that takes
                    while not fake._release.is_set() and not _client_gone(self.connection):
                        pass
                self.close_connection = True
                return  # booked, but no answer goes back
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            if data:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        def do_PATCH(self) -> None:
            self._serve("PATCH")

    return Handler
