"""A faithful stand-in for the MetaTrader5 Python module (5.0.6231), for tests.

Same function names and argument handling as the documented module, results as named tuples
with the documented field lists (converted by field name, as the adapter does), the module's
constants with their real values (tests/unit/test_mt5_constants.py compares them, offline, with
the table extracted from the real wheel: tests/fixtures/mt5/constants_5.0.6231.json), and
last_error() codes and messages. Behind it, a deterministic terminal: initialize/login first,
symbols that must be selected, netting or hedging books, market deals, pending orders matched by
`set_tick`, deals and order history.

What it reproduces of a real terminal (MQL5 documentation: OrderSend, OrderCheck,
HistoryDealsGet, TradeDeal/TradeOrder/TradePosition properties, trade server return codes):
- Deal history that lags order_send (`deal_lag_queries`, `hold_deals`/`release_deals`): the
  result names the deal at once, history_deals_get shows it later. Orders and positions do not lag.
- Commission (`commission_per_lot`, DEAL_COMMISSION, negative), fee (`fee_per_deal`, DEAL_FEE)
  on every deal, and swap: `rollover()` charges swap_long/swap_short per lot to open positions
  (POSITION_SWAP); a closing deal carries the swap of the volume it closes (DEAL_SWAP).
- A server time zone: every time the module returns (deal, order, position, tick times) is the
  server's wall clock as if it were UTC. `server_tz` (an IANA zone, e.g. "EET": UTC+2, UTC+3 in
  EU summer time) follows DST; `server_offset_s` is a fixed offset.
- Comments the broker rewrites (`rewrite_comments(fn)`, e.g. truncation to 16 characters or a
  bridge's own tag) on the orders, deals and positions it stores; a comment over 31 characters is
  refused by order_send (RES_E_INVALID_PARAMS, 'Invalid "comment" argument'). Deals closed by
  SL/TP carry "[sl PRICE]" / "[tp PRICE]".
- Filling modes: `liquidity[symbol]` caps what one execution can fill. FOK: all or nothing
  (10006); IOC: the rest canceled (10010); RETURN: the rest stays working (10010). A market deal
  in Request/Instant execution is requoted (10004, with the new bid/ask) when the price moved
  beyond `deviation` points (`move_on_next_send`); in Market execution it fills at the new price.
- order_check runs the same validation as order_send without executing (retcode 0, "Done").
- Several EAs on one account: every order, deal and position keeps its magic; on a hedging
  account a deal closes only the position its request names (`position`), whoever opened it.
- TRADE_ACTION_SLTP on a position (ticks reaching SL/TP close it with an order and a deal of the
  server's: ORDER_REASON_SL/TP, DEAL_REASON_SL/TP, the position's id, comment "[sl PRICE]"); sl/tp
  on a pending order, copied onto the position it opens; TRADE_ACTION_MODIFY of a pending order
  (price, stoplimit, sl, tp, type_time, expiration: the whole set, as MqlTradeRequest carries it;
  10025 NO_CHANGES when nothing changes); ORDER_TIME_SPECIFIED expiry at `expiration` in the
  server's time (a past one is 10022 INVALID_EXPIRATION), the order then ORDER_STATE_EXPIRED.

Modelled, not observed (BROKER_SDKS.md "unconfirmed"): order_send on an unselected or unknown
symbol returns None with RES_E_INVALID_PARAMS; calls before initialize return None with
RES_E_INTERNAL_FAIL_CONNECT; orders_get/positions_get return () when there are none; a triggered
stop-limit turns into a limit order under the same ticket; pending orders are placed with 10008;
in Exchange execution a limit order sent with FOK/IOC filling executes at once what it can and
never rests (nothing filled: IOC answers 10009 with deal 0 and the order CANCELED, FOK answers
10006), elsewhere a pending order's FOK/IOC applies when it triggers; the lag is a count of
history_deals_get calls, not a time.

What it does not reproduce: margin calls and stop-outs, exchange (order book) execution,
CLOSE_BY, freeze levels, partial closes by SL/TP, client-side trailing stops, symbol sessions,
swap modes other than "per lot in the deposit currency", triple swap days.

Test knobs (not part of the module's API): `add_symbol`, `set_tick`, `fill_order` (a partial or
full fill of a pending order), `fail_next` (next order_send answers a retcode), `lose_next_answer`
(next order_send executes, then returns None: an IPC timeout), `drop_next_call` (next order_send
fails before reaching the server), `disconnect`/`restore`, `market_open`, `liquidity`
(volume available to each execution), `expire_order`, `place_external` (an order made
elsewhere: a phone, another EA), `rollover`, `hold_deals`/`release_deals`, `rewrite_comments`,
`move_on_next_send`.
"""

from __future__ import annotations

import threading
from collections import namedtuple
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable
from zoneinfo import ZoneInfo

import numpy as np

SymbolInfo = namedtuple("SymbolInfo", [
    "custom", "chart_mode", "select", "visible", "session_deals", "session_buy_orders",
    "session_sell_orders", "volume", "volumehigh", "volumelow", "time", "digits", "spread",
    "spread_float", "ticks_bookdepth", "trade_calc_mode", "trade_mode", "start_time",
    "expiration_time", "trade_stops_level", "trade_freeze_level", "trade_exemode", "swap_mode",
    "swap_rollover3days", "margin_hedged_use_leg", "expiration_mode", "filling_mode", "order_mode",
    "order_gtc_mode", "option_mode", "option_right", "bid", "bidhigh", "bidlow", "ask", "askhigh",
    "asklow", "last", "lasthigh", "lastlow", "volume_real", "volumehigh_real", "volumelow_real",
    "option_strike", "point", "trade_tick_value", "trade_tick_value_profit", "trade_tick_value_loss",
    "trade_tick_size", "trade_contract_size", "trade_accrued_interest", "trade_face_value",
    "trade_liquidity_rate", "volume_min", "volume_max", "volume_step", "volume_limit", "swap_long",
    "swap_short", "margin_initial", "margin_maintenance", "session_volume", "session_turnover",
    "session_interest", "session_buy_orders_volume", "session_sell_orders_volume", "session_open",
    "session_close", "session_aw", "session_price_settlement", "session_price_limit_min",
    "session_price_limit_max", "margin_hedged", "price_change", "price_volatility",
    "price_theoretical", "price_greeks_delta", "price_greeks_theta", "price_greeks_gamma",
    "price_greeks_vega", "price_greeks_rho", "price_greeks_omega", "price_sensitivity", "basis",
    "category", "currency_base", "currency_profit", "currency_margin", "bank", "description",
    "exchange", "formula", "isin", "name", "page", "path"])
Tick = namedtuple("Tick", ["time", "bid", "ask", "last", "volume", "time_msc", "flags", "volume_real"])
AccountInfo = namedtuple("AccountInfo", [
    "login", "trade_mode", "leverage", "limit_orders", "margin_so_mode", "trade_allowed",
    "trade_expert", "margin_mode", "currency_digits", "fifo_close", "balance", "credit", "profit",
    "equity", "margin", "margin_free", "margin_level", "margin_so_call", "margin_so_so",
    "margin_initial", "margin_maintenance", "assets", "liabilities", "commission_blocked", "name",
    "server", "currency", "company"])
TradeRequest = namedtuple("TradeRequest", [
    "action", "magic", "order", "symbol", "volume", "price", "stoplimit", "sl", "tp", "deviation",
    "type", "type_filling", "type_time", "expiration", "comment", "position", "position_by"])
OrderSendResult = namedtuple("OrderSendResult", [
    "retcode", "deal", "order", "volume", "price", "bid", "ask", "comment", "request_id",
    "retcode_external", "request"])
OrderCheckResult = namedtuple("OrderCheckResult", [
    "retcode", "balance", "equity", "profit", "margin", "margin_free", "margin_level", "comment",
    "request"])
TradePosition = namedtuple("TradePosition", [
    "ticket", "time", "time_msc", "time_update", "time_update_msc", "type", "magic", "identifier",
    "reason", "volume", "price_open", "sl", "tp", "price_current", "swap", "profit", "symbol",
    "comment", "external_id"])
TradeOrder = namedtuple("TradeOrder", [
    "ticket", "time_setup", "time_setup_msc", "time_done", "time_done_msc", "time_expiration",
    "type", "type_time", "type_filling", "state", "magic", "position_id", "position_by_id",
    "reason", "volume_initial", "volume_current", "price_open", "sl", "tp", "price_current",
    "price_stoplimit", "symbol", "comment", "external_id"])
TradeDeal = namedtuple("TradeDeal", [
    "ticket", "order", "time", "time_msc", "type", "entry", "magic", "position_id", "reason",
    "volume", "price", "commission", "swap", "profit", "fee", "symbol", "comment", "external_id"])

TICK_DTYPE = np.dtype([("time", "<i8"), ("bid", "<f8"), ("ask", "<f8"), ("last", "<f8"),
                       ("volume", "<u8"), ("time_msc", "<i8"), ("flags", "<u4"), ("volume_real", "<f8")])
RATE_DTYPE = np.dtype([("time", "<i8"), ("open", "<f8"), ("high", "<f8"), ("low", "<f8"),
                       ("close", "<f8"), ("tick_volume", "<u8"), ("spread", "<i4"), ("real_volume", "<u8")])

_TRADE_REQUEST_DEFAULTS = {f: 0 for f in TradeRequest._fields} | {"symbol": "", "comment": ""}
_MESSAGES = {1: "Success", -1: "Terminal: Call failed", -2: "Terminal: Invalid params",
             -4: "Terminal: Not found", -6: "Terminal: Authorization failed",
             -10004: "No IPC connection", -10005: "IPC timeout"}


def _seconds(value: Any) -> int:
    """The module takes datetime or epoch seconds for dates."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return int(value.timestamp())
    return int(value)


@dataclass
class _Symbol:
    name: str
    digits: int = 5
    point: float = 0.00001
    volume_min: float = 0.01
    volume_max: float = 100.0
    volume_step: float = 0.01
    volume_limit: float = 0.0
    contract_size: float = 100000.0
    stops_level: int = 0
    freeze_level: int = 0
    filling_mode: int = 1 | 2           # bit 1 FOK, bit 2 IOC
    trade_mode: int = 4                 # SYMBOL_TRADE_MODE_FULL
    trade_exemode: int = 2              # SYMBOL_TRADE_EXECUTION_MARKET
    currency_base: str = "EUR"
    currency_profit: str = "USD"
    currency_margin: str = "EUR"
    path: str = "Forex\\EURUSD"
    selected: bool = False
    bid: float = 0.0
    ask: float = 0.0
    time_msc: int = 0
    ticks: list[tuple] = field(default_factory=list)
    rates: dict[int, np.ndarray] = field(default_factory=dict)
    market_open: bool = True

    def info(self) -> SymbolInfo:
        values = {f: 0 for f in SymbolInfo._fields}
        values.update(
            select=self.selected, visible=self.selected, digits=self.digits,
            spread=round((self.ask - self.bid) / self.point) if self.ask else 0, point=self.point,
            trade_mode=self.trade_mode, trade_exemode=self.trade_exemode,
            trade_stops_level=self.stops_level, trade_freeze_level=self.freeze_level,
            filling_mode=self.filling_mode, expiration_mode=15, order_mode=127,
            bid=self.bid, ask=self.ask, time=self.time_msc // 1000, trade_tick_size=self.point,
            trade_tick_value=self.contract_size * self.point, trade_contract_size=self.contract_size,
            volume_min=self.volume_min, volume_max=self.volume_max, volume_step=self.volume_step,
            volume_limit=self.volume_limit, currency_base=self.currency_base,
            currency_profit=self.currency_profit, currency_margin=self.currency_margin,
            name=self.name, path=self.path, description=self.name, bank="", basis="", category="",
            exchange="", formula="", isin="", page="")
        return SymbolInfo(**values)


class FakeMT5:
    """One fake terminal. Use an instance where the adapter expects the module."""

    __version__ = "5.0.6231"

    TIMEFRAME_M1 = 1
    TIMEFRAME_M2 = 2
    TIMEFRAME_M3 = 3
    TIMEFRAME_M4 = 4
    TIMEFRAME_M5 = 5
    TIMEFRAME_M6 = 6
    TIMEFRAME_M10 = 10
    TIMEFRAME_M12 = 12
    TIMEFRAME_M15 = 15
    TIMEFRAME_M20 = 20
    TIMEFRAME_M30 = 30
    TIMEFRAME_H1 = 16385
    TIMEFRAME_H2 = 16386
    TIMEFRAME_H4 = 16388
    TIMEFRAME_H3 = 16387
    TIMEFRAME_H6 = 16390
    TIMEFRAME_H8 = 16392
    TIMEFRAME_H12 = 16396
    TIMEFRAME_D1 = 16408
    TIMEFRAME_W1 = 32769
    TIMEFRAME_MN1 = 49153
    COPY_TICKS_ALL = -1
    COPY_TICKS_INFO = 1
    COPY_TICKS_TRADE = 2
    TICK_FLAG_BID = 2
    TICK_FLAG_ASK = 4
    TICK_FLAG_LAST = 8
    TICK_FLAG_VOLUME = 16
    TICK_FLAG_BUY = 32
    TICK_FLAG_SELL = 64
    POSITION_TYPE_BUY = 0
    POSITION_TYPE_SELL = 1
    POSITION_REASON_CLIENT = 0
    POSITION_REASON_MOBILE = 1
    POSITION_REASON_WEB = 2
    POSITION_REASON_EXPERT = 3
    ORDER_TYPE_BUY = 0
    ORDER_TYPE_SELL = 1
    ORDER_TYPE_BUY_LIMIT = 2
    ORDER_TYPE_SELL_LIMIT = 3
    ORDER_TYPE_BUY_STOP = 4
    ORDER_TYPE_SELL_STOP = 5
    ORDER_TYPE_BUY_STOP_LIMIT = 6
    ORDER_TYPE_SELL_STOP_LIMIT = 7
    ORDER_TYPE_CLOSE_BY = 8
    ORDER_STATE_STARTED = 0
    ORDER_STATE_PLACED = 1
    ORDER_STATE_CANCELED = 2
    ORDER_STATE_PARTIAL = 3
    ORDER_STATE_FILLED = 4
    ORDER_STATE_REJECTED = 5
    ORDER_STATE_EXPIRED = 6
    ORDER_STATE_REQUEST_ADD = 7
    ORDER_STATE_REQUEST_MODIFY = 8
    ORDER_STATE_REQUEST_CANCEL = 9
    ORDER_FILLING_FOK = 0
    ORDER_FILLING_IOC = 1
    ORDER_FILLING_RETURN = 2
    ORDER_FILLING_BOC = 3
    ORDER_TIME_GTC = 0
    ORDER_TIME_DAY = 1
    ORDER_TIME_SPECIFIED = 2
    ORDER_TIME_SPECIFIED_DAY = 3
    ORDER_REASON_CLIENT = 0
    ORDER_REASON_MOBILE = 1
    ORDER_REASON_WEB = 2
    ORDER_REASON_EXPERT = 3
    ORDER_REASON_SL = 4
    ORDER_REASON_TP = 5
    ORDER_REASON_SO = 6
    DEAL_TYPE_BUY = 0
    DEAL_TYPE_SELL = 1
    DEAL_TYPE_BALANCE = 2
    DEAL_TYPE_CREDIT = 3
    DEAL_TYPE_CHARGE = 4
    DEAL_TYPE_CORRECTION = 5
    DEAL_TYPE_BONUS = 6
    DEAL_TYPE_COMMISSION = 7
    DEAL_TYPE_COMMISSION_DAILY = 8
    DEAL_TYPE_COMMISSION_MONTHLY = 9
    DEAL_TYPE_COMMISSION_AGENT_DAILY = 10
    DEAL_TYPE_COMMISSION_AGENT_MONTHLY = 11
    DEAL_TYPE_INTEREST = 12
    DEAL_TYPE_BUY_CANCELED = 13
    DEAL_TYPE_SELL_CANCELED = 14
    DEAL_DIVIDEND = 15
    DEAL_DIVIDEND_FRANKED = 16
    DEAL_TAX = 17
    DEAL_ENTRY_IN = 0
    DEAL_ENTRY_OUT = 1
    DEAL_ENTRY_INOUT = 2
    DEAL_ENTRY_OUT_BY = 3
    DEAL_REASON_CLIENT = 0
    DEAL_REASON_MOBILE = 1
    DEAL_REASON_WEB = 2
    DEAL_REASON_EXPERT = 3
    DEAL_REASON_SL = 4
    DEAL_REASON_TP = 5
    DEAL_REASON_SO = 6
    DEAL_REASON_ROLLOVER = 7
    DEAL_REASON_VMARGIN = 8
    DEAL_REASON_SPLIT = 9
    TRADE_ACTION_DEAL = 1
    TRADE_ACTION_PENDING = 5
    TRADE_ACTION_SLTP = 6
    TRADE_ACTION_MODIFY = 7
    TRADE_ACTION_REMOVE = 8
    TRADE_ACTION_CLOSE_BY = 10
    SYMBOL_CHART_MODE_BID = 0
    SYMBOL_CHART_MODE_LAST = 1
    SYMBOL_CALC_MODE_FOREX = 0
    SYMBOL_CALC_MODE_FUTURES = 1
    SYMBOL_CALC_MODE_CFD = 2
    SYMBOL_CALC_MODE_CFDINDEX = 3
    SYMBOL_CALC_MODE_CFDLEVERAGE = 4
    SYMBOL_CALC_MODE_FOREX_NO_LEVERAGE = 5
    SYMBOL_CALC_MODE_EXCH_STOCKS = 32
    SYMBOL_CALC_MODE_EXCH_FUTURES = 33
    SYMBOL_CALC_MODE_EXCH_OPTIONS = 34
    SYMBOL_CALC_MODE_EXCH_OPTIONS_MARGIN = 36
    SYMBOL_CALC_MODE_EXCH_BONDS = 37
    SYMBOL_CALC_MODE_EXCH_STOCKS_MOEX = 38
    SYMBOL_CALC_MODE_EXCH_BONDS_MOEX = 39
    SYMBOL_CALC_MODE_SERV_COLLATERAL = 64
    SYMBOL_TRADE_MODE_DISABLED = 0
    SYMBOL_TRADE_MODE_LONGONLY = 1
    SYMBOL_TRADE_MODE_SHORTONLY = 2
    SYMBOL_TRADE_MODE_CLOSEONLY = 3
    SYMBOL_TRADE_MODE_FULL = 4
    SYMBOL_TRADE_EXECUTION_REQUEST = 0
    SYMBOL_TRADE_EXECUTION_INSTANT = 1
    SYMBOL_TRADE_EXECUTION_MARKET = 2
    SYMBOL_TRADE_EXECUTION_EXCHANGE = 3
    SYMBOL_SWAP_MODE_DISABLED = 0
    SYMBOL_SWAP_MODE_POINTS = 1
    SYMBOL_SWAP_MODE_CURRENCY_SYMBOL = 2
    SYMBOL_SWAP_MODE_CURRENCY_MARGIN = 3
    SYMBOL_SWAP_MODE_CURRENCY_DEPOSIT = 4
    SYMBOL_SWAP_MODE_INTEREST_CURRENT = 5
    SYMBOL_SWAP_MODE_INTEREST_OPEN = 6
    SYMBOL_SWAP_MODE_REOPEN_CURRENT = 7
    SYMBOL_SWAP_MODE_REOPEN_BID = 8
    DAY_OF_WEEK_SUNDAY = 0
    DAY_OF_WEEK_MONDAY = 1
    DAY_OF_WEEK_TUESDAY = 2
    DAY_OF_WEEK_WEDNESDAY = 3
    DAY_OF_WEEK_THURSDAY = 4
    DAY_OF_WEEK_FRIDAY = 5
    DAY_OF_WEEK_SATURDAY = 6
    SYMBOL_ORDERS_GTC = 0
    SYMBOL_ORDERS_DAILY = 1
    SYMBOL_ORDERS_DAILY_NO_STOPS = 2
    SYMBOL_OPTION_RIGHT_CALL = 0
    SYMBOL_OPTION_RIGHT_PUT = 1
    SYMBOL_OPTION_MODE_EUROPEAN = 0
    SYMBOL_OPTION_MODE_AMERICAN = 1
    ACCOUNT_TRADE_MODE_DEMO = 0
    ACCOUNT_TRADE_MODE_CONTEST = 1
    ACCOUNT_TRADE_MODE_REAL = 2
    ACCOUNT_STOPOUT_MODE_PERCENT = 0
    ACCOUNT_STOPOUT_MODE_MONEY = 1
    ACCOUNT_MARGIN_MODE_RETAIL_NETTING = 0
    ACCOUNT_MARGIN_MODE_EXCHANGE = 1
    ACCOUNT_MARGIN_MODE_RETAIL_HEDGING = 2
    BOOK_TYPE_SELL = 1
    BOOK_TYPE_BUY = 2
    BOOK_TYPE_SELL_MARKET = 3
    BOOK_TYPE_BUY_MARKET = 4
    TRADE_RETCODE_REQUOTE = 10004
    TRADE_RETCODE_REJECT = 10006
    TRADE_RETCODE_CANCEL = 10007
    TRADE_RETCODE_PLACED = 10008
    TRADE_RETCODE_DONE = 10009
    TRADE_RETCODE_DONE_PARTIAL = 10010
    TRADE_RETCODE_ERROR = 10011
    TRADE_RETCODE_TIMEOUT = 10012
    TRADE_RETCODE_INVALID = 10013
    TRADE_RETCODE_INVALID_VOLUME = 10014
    TRADE_RETCODE_INVALID_PRICE = 10015
    TRADE_RETCODE_INVALID_STOPS = 10016
    TRADE_RETCODE_TRADE_DISABLED = 10017
    TRADE_RETCODE_MARKET_CLOSED = 10018
    TRADE_RETCODE_NO_MONEY = 10019
    TRADE_RETCODE_PRICE_CHANGED = 10020
    TRADE_RETCODE_PRICE_OFF = 10021
    TRADE_RETCODE_INVALID_EXPIRATION = 10022
    TRADE_RETCODE_ORDER_CHANGED = 10023
    TRADE_RETCODE_TOO_MANY_REQUESTS = 10024
    TRADE_RETCODE_NO_CHANGES = 10025
    TRADE_RETCODE_SERVER_DISABLES_AT = 10026
    TRADE_RETCODE_CLIENT_DISABLES_AT = 10027
    TRADE_RETCODE_LOCKED = 10028
    TRADE_RETCODE_FROZEN = 10029
    TRADE_RETCODE_INVALID_FILL = 10030
    TRADE_RETCODE_CONNECTION = 10031
    TRADE_RETCODE_ONLY_REAL = 10032
    TRADE_RETCODE_LIMIT_ORDERS = 10033
    TRADE_RETCODE_LIMIT_VOLUME = 10034
    TRADE_RETCODE_INVALID_ORDER = 10035
    TRADE_RETCODE_POSITION_CLOSED = 10036
    TRADE_RETCODE_INVALID_CLOSE_VOLUME = 10038
    TRADE_RETCODE_CLOSE_ORDER_EXIST = 10039
    TRADE_RETCODE_LIMIT_POSITIONS = 10040
    TRADE_RETCODE_REJECT_CANCEL = 10041
    TRADE_RETCODE_LONG_ONLY = 10042
    TRADE_RETCODE_SHORT_ONLY = 10043
    TRADE_RETCODE_CLOSE_ONLY = 10044
    TRADE_RETCODE_FIFO_CLOSE = 10045
    RES_S_OK = 1
    RES_E_FAIL = -1
    RES_E_INVALID_PARAMS = -2
    RES_E_NO_MEMORY = -3
    RES_E_NOT_FOUND = -4
    RES_E_INVALID_VERSION = -5
    RES_E_AUTH_FAILED = -6
    RES_E_UNSUPPORTED = -7
    RES_E_AUTO_TRADING_DISABLED = -8
    RES_E_INTERNAL_FAIL = -10000
    RES_E_INTERNAL_FAIL_SEND = -10001
    RES_E_INTERNAL_FAIL_RECEIVE = -10002
    RES_E_INTERNAL_FAIL_INIT = -10003
    RES_E_INTERNAL_FAIL_CONNECT = -10004
    RES_E_INTERNAL_FAIL_TIMEOUT = -10005

    def __init__(self, *, login: int = 5001, password: str = "secret", server: str = "FakeBroker-Demo",
                 margin_mode: int = 0, balance: float = 10_000.0, leverage: int = 100,
                 currency: str = "USD", server_offset_s: int = 0, start_msc: int = 1_700_000_000_000,
                 commission_per_lot: float = 0.0, fee_per_deal: float = 0.0, server_tz: str | None = None,
                 deal_lag_queries: int = 0) -> None:
        self._lock = threading.RLock()
        self._accounts = {login: (password, server)}
        self._login = 0
        self._initialized = False
        self._reachable = True
        self._error: tuple[int, str] = (1, "Success")
        self.margin_mode = margin_mode
        self.commission_per_lot = commission_per_lot  # charged on every deal, as on raw-spread accounts
        self.balance = balance
        self.leverage = leverage
        self.currency = currency
        self.server_offset_s = server_offset_s
        self.server_tz = ZoneInfo(server_tz) if server_tz else None
        self.fee_per_deal = fee_per_deal              # DEAL_FEE, charged on every deal (negative on the deal)
        self.deal_lag_queries = deal_lag_queries      # history_deals_get calls before a new deal shows
        self._deal_visible_after: dict[int, int] = {}  # deal ticket -> history query count it shows at
        self._deal_queries = 0
        self._holding_deals = False
        self._comment_rewrite: Callable[[str], str] | None = None
        self._move_on_send: tuple[float, float] | None = None
        self.check_calls: list[dict] = []          # every order_check request
        self.now_msc = start_msc
        self.symbols: dict[str, _Symbol] = {}
        self.orders: dict[int, dict] = {}          # active (pending) orders
        self.history: dict[int, dict] = {}         # finished orders
        self.deals: list[TradeDeal] = []
        self.positions: dict[int, dict] = {}
        self.liquidity: dict[str, float] = {}
        self.requests: list[dict] = []             # every order_send request that reached the server
        self._next_ticket = 100_000
        self._next_deal = 500_000
        self._fail_next: list[int] = []
        self._lose_next = 0
        self._lose_disconnects = False
        self._lose_as: int | None = None
        self._drop_next = 0

    # -- test knobs ----------------------------------------------------------------------------
    def add_symbol(self, name: str, bid: float, ask: float, **spec: Any) -> None:
        self.symbols[name] = _Symbol(name, **spec)
        self.set_tick(name, bid, ask)

    def set_tick(self, name: str, bid: float, ask: float, last: float = 0.0, volume: float = 0.0,
                 time_msc: int | None = None) -> None:
        """A new quote: recorded in the tick history, then pending orders are matched."""
        with self._lock:
            symbol = self.symbols[name]
            self.now_msc = max(self.now_msc + 1, time_msc or 0)
            symbol.bid, symbol.ask, symbol.time_msc = bid, ask, self.now_msc
            server_msc = self._server_msc()
            symbol.ticks.append((server_msc // 1000, bid, ask, last, int(volume), server_msc, 6, volume))
            self._expire(symbol)
            self._match(symbol)
            self._stops(symbol)

    def set_rates(self, name: str, timeframe: int, rows: list[tuple]) -> None:
        self.symbols[name].rates[timeframe] = np.array(rows, dtype=RATE_DTYPE)

    def fill_order(self, ticket: int, volume: float, price: float | None = None) -> None:
        """Fill part or all of a pending order now (a partial fill the test controls)."""
        with self._lock:
            order = self.orders[ticket]
            symbol = self.symbols[order["symbol"]]
            buy = order["type"] in (self.ORDER_TYPE_BUY_LIMIT, self.ORDER_TYPE_BUY_STOP,
                                    self.ORDER_TYPE_BUY_STOP_LIMIT)
            self._fill_pending(order, volume, price if price is not None else (symbol.ask if buy else symbol.bid))

    def expire_order(self, ticket: int) -> None:
        with self._lock:
            self._finish(self.orders.pop(ticket), self.ORDER_STATE_EXPIRED)

    def fail_next(self, retcode: int) -> None:
        self._fail_next.append(retcode)

    def hold_deals(self) -> None:
        """Deals made from now on stay out of history_deals_get until `release_deals`."""
        self._holding_deals = True

    def release_deals(self) -> None:
        """Every deal held back shows from the next history_deals_get on."""
        self._holding_deals = False
        for ticket, when in self._deal_visible_after.items():
            self._deal_visible_after[ticket] = min(when, self._deal_queries + 1)

    def rewrite_comments(self, rewrite: Callable[[str], str] | None) -> None:
        """The broker's server rewrites the comment of every order it stores (and its deals)."""
        self._comment_rewrite = rewrite

    def move_on_next_send(self, bid: float, ask: float) -> None:
        """The market moves while the next order_send travels to the server."""
        self._move_on_send = (bid, ask)

    def rollover(self, swap_long_per_lot: float, swap_short_per_lot: float) -> None:
        """The daily rollover: swap charged (negative) or paid to every open position, per lot."""
        with self._lock:
            for p in self.positions.values():
                per_lot = swap_long_per_lot if p["type"] == self.POSITION_TYPE_BUY else swap_short_per_lot
                p["swap"] = round(p["swap"] + per_lot * p["volume"], 2)

    def lose_next_answer(self, disconnect: bool = False, retcode: int | None = None) -> None:
        """The next order_send executes, then returns None (IPC timeout), or with `retcode` a
        result carrying that code (e.g. 10012 TIMEOUT); with `disconnect` the terminal also stops
        answering until `restore`."""
        self._lose_next += 1
        self._lose_disconnects = disconnect
        self._lose_as = retcode

    def drop_next_call(self) -> None:
        self._drop_next += 1

    def disconnect(self) -> None:
        """The terminal goes away: every call fails until `restore` and a new initialize."""
        self._reachable = False
        self._initialized = False

    def restore(self) -> None:
        self._reachable = True

    def market_open(self, name: str, is_open: bool) -> None:
        self.symbols[name].market_open = is_open

    def place_external(self, request: dict) -> OrderSendResult:
        """An order made outside the adapter (another EA, the mobile app)."""
        with self._lock:
            return self._send(dict(_TRADE_REQUEST_DEFAULTS) | request)

    # -- session ---------------------------------------------------------------------------------
    def _fail(self, code: int, message: str | None = None) -> None:
        self._error = (code, message or _MESSAGES.get(code, "Terminal: Call failed"))

    def _ready(self) -> bool:
        if not self._reachable or not self._initialized:
            self._fail(self.RES_E_INTERNAL_FAIL_CONNECT)
            return False
        self._error = (self.RES_S_OK, "Success")
        return True

    def initialize(self, path: str | None = None, *, login: int | None = None, password: str | None = None,
                   server: str | None = None, timeout: int = 60_000, portable: bool = False) -> bool:
        if not self._reachable:
            self._fail(self.RES_E_INTERNAL_FAIL_TIMEOUT)
            return False
        self._initialized = True
        if login is not None:
            return self.login(login, password=password, server=server, timeout=timeout)
        self._login = self._login or next(iter(self._accounts))  # the terminal's last account
        self._error = (self.RES_S_OK, "Success")
        return True

    def login(self, login: int, password: str | None = None, server: str | None = None, timeout: int = 60_000) -> bool:
        if not self._ready():
            return False
        expected = self._accounts.get(login)
        if expected is None or expected[0] != password or (server is not None and server != expected[1]):
            self._fail(self.RES_E_AUTH_FAILED)
            return False
        self._login = login
        return True

    def shutdown(self) -> None:
        self._initialized = False

    def version(self) -> tuple[int, int, str] | None:
        return (500, 5000, "01 Jan 2026") if self._ready() else None

    def last_error(self) -> tuple[int, str]:
        return self._error

    def terminal_info(self) -> Any:
        return None if not self._ready() else namedtuple("TerminalInfo", ["connected", "trade_allowed", "name"])(
            True, True, "FakeTerminal")

    def account_info(self) -> AccountInfo | None:
        if not self._ready() or not self._login:
            return None
        profit = sum(self._floating(p) + p["swap"] for p in self.positions.values())  # ACCOUNT_PROFIT counts swap
        margin = sum(self._margin(p["symbol"], p["volume"], p["price_open"]) for p in self.positions.values())
        equity = self.balance + profit
        values = {f: 0 for f in AccountInfo._fields} | dict(
            login=self._login, trade_mode=self.ACCOUNT_TRADE_MODE_DEMO, leverage=self.leverage,
            limit_orders=200, trade_allowed=True, trade_expert=True, margin_mode=self.margin_mode,
            currency_digits=2, balance=round(self.balance, 2), profit=round(profit, 2),
            equity=round(equity, 2), margin=round(margin, 2), margin_free=round(equity - margin, 2),
            margin_level=(equity / margin * 100) if margin else 0.0, margin_so_call=50.0,
            margin_so_so=30.0, name="Test Account", server=self._accounts[self._login][1],
            currency=self.currency, company="Fake Broker Ltd")
        return AccountInfo(**values)

    # -- symbols and ticks -------------------------------------------------------------------------
    def symbols_total(self) -> int:
        return len(self.symbols) if self._ready() else 0

    def symbols_get(self, group: str = "*") -> tuple | None:
        if not self._ready():
            return None
        return tuple(s.info() for s in self.symbols.values() if _in_group(s.name, group))

    def symbol_select(self, symbol: str, enable: bool = True) -> bool:
        if not self._ready():
            return False
        if symbol not in self.symbols:
            self._fail(self.RES_E_NOT_FOUND)
            return False
        self.symbols[symbol].selected = enable
        return True

    def symbol_info(self, symbol: str) -> SymbolInfo | None:
        if not self._ready():
            return None
        if symbol not in self.symbols:
            self._fail(self.RES_E_NOT_FOUND)
            return None
        return self.symbols[symbol].info()

    def symbol_info_tick(self, symbol: str) -> Tick | None:
        if not self._ready():
            return None
        s = self.symbols.get(symbol)
        if s is None or not s.selected or not s.ticks:
            self._fail(self.RES_E_NOT_FOUND)
            return None
        return Tick(*s.ticks[-1])

    def copy_ticks_from(self, symbol: str, date_from: Any, count: int, flags: int) -> np.ndarray | None:
        if not self._ready():
            return None
        s = self.symbols.get(symbol)
        if s is None:
            self._fail(self.RES_E_INVALID_PARAMS)
            return None
        start = _seconds(date_from) * 1000
        rows = [t for t in s.ticks if t[5] >= start][:count]
        return np.array(rows, dtype=TICK_DTYPE)

    def copy_ticks_range(self, symbol: str, date_from: Any, date_to: Any, flags: int) -> np.ndarray | None:
        if not self._ready():
            return None
        s = self.symbols.get(symbol)
        if s is None:
            self._fail(self.RES_E_INVALID_PARAMS)
            return None
        start, end = _seconds(date_from) * 1000, _seconds(date_to) * 1000
        return np.array([t for t in s.ticks if start <= t[5] <= end], dtype=TICK_DTYPE)

    def copy_rates_range(self, symbol: str, timeframe: int, date_from: Any, date_to: Any) -> np.ndarray | None:
        if not self._ready():
            return None
        s = self.symbols.get(symbol)
        if s is None:
            self._fail(self.RES_E_INVALID_PARAMS)
            return None
        rates = s.rates.get(timeframe, np.array([], dtype=RATE_DTYPE))
        start, end = _seconds(date_from), _seconds(date_to)
        return rates[(rates["time"] >= start) & (rates["time"] <= end)]

    # -- orders, positions, history ------------------------------------------------------------------
    def orders_total(self) -> int:
        return len(self.orders) if self._ready() else 0

    def orders_get(self, symbol: str | None = None, group: str | None = None,
                   ticket: int | None = None) -> tuple | None:
        if not self._ready():
            return None
        return tuple(_order_tuple(o) for o in self.orders.values()
                     if _match(o, symbol, group, ticket, "ticket"))

    def positions_total(self) -> int:
        return len(self.positions) if self._ready() else 0

    def positions_get(self, symbol: str | None = None, group: str | None = None,
                      ticket: int | None = None) -> tuple | None:
        if not self._ready():
            return None
        out = []
        for p in self.positions.values():
            if _match(p, symbol, group, ticket, "ticket"):
                s = self.symbols[p["symbol"]]
                current = s.bid if p["type"] == self.POSITION_TYPE_BUY else s.ask
                out.append(TradePosition(**(p | {"price_current": current, "profit": round(self._floating(p), 2)})))
        return tuple(out)

    def history_orders_total(self, date_from: Any, date_to: Any) -> int:
        found = self.history_orders_get(date_from, date_to)
        return 0 if found is None else len(found)

    def history_orders_get(self, date_from: Any = None, date_to: Any = None, group: str | None = None,
                           ticket: int | None = None, position: int | None = None) -> tuple | None:
        if not self._ready():
            return None
        rows = self.history.values()
        if ticket is not None:
            rows = [o for o in rows if o["ticket"] == ticket]
        elif position is not None:
            rows = [o for o in rows if o["position_id"] == position]
        else:
            if date_from is None or date_to is None:
                self._fail(self.RES_E_INVALID_PARAMS)
                return None
            start, end = _seconds(date_from), _seconds(date_to)
            rows = [o for o in rows if start <= o["time_setup"] <= end and _in_group(o["symbol"], group or "*")]
        return tuple(_order_tuple(o) for o in rows)

    def history_deals_total(self, date_from: Any, date_to: Any) -> int:
        found = self.history_deals_get(date_from, date_to)
        return 0 if found is None else len(found)

    def history_deals_get(self, date_from: Any = None, date_to: Any = None, group: str | None = None,
                          ticket: int | None = None, position: int | None = None) -> tuple | None:
        if not self._ready():
            return None
        self._deal_queries += 1
        deals = [d for d in self.deals if self._deal_visible_after.get(d.ticket, 0) <= self._deal_queries]
        if ticket is not None:
            return tuple(d for d in deals if d.order == ticket)
        if position is not None:
            return tuple(d for d in deals if d.position_id == position)
        if date_from is None or date_to is None:
            self._fail(self.RES_E_INVALID_PARAMS)
            return None
        start, end = _seconds(date_from), _seconds(date_to)
        return tuple(d for d in deals if start <= d.time <= end and _in_group(d.symbol, group or "*"))

    def order_calc_margin(self, action: int, symbol: str, volume: float, price: float) -> float | None:
        return round(self._margin(symbol, volume, price), 2) if self._ready() else None

    def order_check(self, request: dict) -> OrderCheckResult | None:
        """The documented pre-flight: the checks order_send makes, nothing executed. Success is
        retcode 0 with comment "Done"; a refusal carries the retcode order_send would answer."""
        with self._lock:
            if not self._ready():
                return None
            if not isinstance(request, dict) or "action" not in request:
                self._fail(self.RES_E_INVALID_PARAMS)
                return None
            if len(str(request.get("comment", ""))) > 31:
                self._fail(self.RES_E_INVALID_PARAMS, 'Invalid "comment" argument')
                return None
            request = dict(_TRADE_REQUEST_DEFAULTS) | request
            self.check_calls.append(request)
            if request["action"] not in (self.TRADE_ACTION_REMOVE, self.TRADE_ACTION_SLTP):
                s = self.symbols.get(request["symbol"])
                if s is None or not s.selected:
                    self._fail(self.RES_E_INVALID_PARAMS)
                    return None
            retcode = self._refusal(request)
            account = self.account_info()
            assert account is not None
            return OrderCheckResult(retcode or 0, account.balance, account.equity, account.profit, account.margin,
                                    account.margin_free, account.margin_level,
                                    "Done" if not retcode else _RETCODE_TEXT.get(retcode, "Request rejected"),
                                    _request(request))

    def order_send(self, request: dict) -> OrderSendResult | None:
        with self._lock:
            if not self._ready():
                return None
            if self._drop_next:
                self._drop_next -= 1
                self._fail(self.RES_E_INTERNAL_FAIL_TIMEOUT)
                return None
            if not isinstance(request, dict) or "action" not in request:
                self._fail(self.RES_E_INVALID_PARAMS)
                return None
            if len(str(request.get("comment", ""))) > 31:
                self._fail(self.RES_E_INVALID_PARAMS, 'Invalid "comment" argument')
                return None
            request = dict(_TRADE_REQUEST_DEFAULTS) | request
            if request["action"] not in (self.TRADE_ACTION_REMOVE, self.TRADE_ACTION_SLTP):
                s = self.symbols.get(request["symbol"])
                if s is None or not s.selected:
                    self._fail(self.RES_E_INVALID_PARAMS)
                    return None
            if self._fail_next:
                return self._result(request, self._fail_next.pop(0))
            if self._move_on_send is not None and request["symbol"] in self.symbols:
                (bid, ask), self._move_on_send = self._move_on_send, None
                self.set_tick(request["symbol"], bid, ask)
            result = self._send(request)
            if self._lose_next:
                self._lose_next -= 1
                if self._lose_as is not None:
                    return self._result(request, self._lose_as)
                if self._lose_disconnects:
                    self.disconnect()
                self._fail(self.RES_E_INTERNAL_FAIL_TIMEOUT)
                return None
            return result

    # -- the server ----------------------------------------------------------------------------------
    def _result(self, request: dict, retcode: int, deal: int = 0, order: int = 0, volume: float = 0.0,
                price: float = 0.0, comment: str = "") -> OrderSendResult:
        s = self.symbols.get(request["symbol"])
        return OrderSendResult(retcode, deal, order, volume, price, s.bid if s else 0.0, s.ask if s else 0.0,
                               comment or _RETCODE_TEXT.get(retcode, "Request rejected"), 0, 0, _request(request))

    def _send(self, request: dict) -> OrderSendResult:
        self.requests.append(request)
        action = request["action"]
        if action == self.TRADE_ACTION_REMOVE:
            order = self.orders.pop(request["order"], None)
            if order is None:
                return self._result(request, self.TRADE_RETCODE_INVALID_ORDER)
            self._finish(order, self.ORDER_STATE_CANCELED)
            return self._result(request, self.TRADE_RETCODE_DONE, order=order["ticket"])
        if action == self.TRADE_ACTION_SLTP:
            return self._sltp(request)
        if action == self.TRADE_ACTION_MODIFY:
            refusal = self._refusal(request)
            return self._result(request, refusal) if refusal else self._modify(request)
        refusal = self._refusal(request)
        if refusal:
            return self._result(request, refusal)
        s, volume = self.symbols[request["symbol"]], float(request["volume"])
        if action == self.TRADE_ACTION_DEAL:
            return self._deal(request, s, volume)
        return self._pending(request, s, volume)

    def _refusal(self, request: dict) -> int:
        """The retcode a request is refused with before anything executes, or 0."""
        action = request["action"]
        if action == self.TRADE_ACTION_REMOVE:
            return 0 if request["order"] in self.orders else self.TRADE_RETCODE_INVALID_ORDER
        if action == self.TRADE_ACTION_SLTP:
            return 0 if int(request["position"] or 0) in self.positions else self.TRADE_RETCODE_POSITION_CLOSED
        if action == self.TRADE_ACTION_MODIFY:
            if int(request["order"] or 0) not in self.orders:
                return self.TRADE_RETCODE_INVALID_ORDER
            if request["type_time"] == self.ORDER_TIME_SPECIFIED and \
                    int(request["expiration"] or 0) <= self._server_s():
                return self.TRADE_RETCODE_INVALID_EXPIRATION
            return 0
        if action not in (self.TRADE_ACTION_DEAL, self.TRADE_ACTION_PENDING):
            return self.TRADE_RETCODE_INVALID
        s = self.symbols[request["symbol"]]
        volume = float(request["volume"])
        steps = volume / s.volume_step
        if volume < s.volume_min - 1e-12 or volume > s.volume_max + 1e-12 or abs(steps - round(steps)) > 1e-7:
            return self.TRADE_RETCODE_INVALID_VOLUME
        if s.trade_mode == self.SYMBOL_TRADE_MODE_DISABLED:
            return self.TRADE_RETCODE_TRADE_DISABLED
        if not s.market_open:
            return self.TRADE_RETCODE_MARKET_CLOSED
        filling = request["type_filling"]
        # MQL5 ENUM_ORDER_TYPE_FILLING: RETURN is not allowed in Market execution; FOK/IOC as the
        # symbol's SYMBOL_FILLING_MODE bits say
        allowed = {self.ORDER_FILLING_FOK: bool(s.filling_mode & 1), self.ORDER_FILLING_IOC: bool(s.filling_mode & 2),
                   self.ORDER_FILLING_RETURN: s.trade_exemode != self.SYMBOL_TRADE_EXECUTION_MARKET}
        if not allowed.get(filling, False):
            return self.TRADE_RETCODE_INVALID_FILL
        if request["type_time"] == self.ORDER_TIME_SPECIFIED and int(request["expiration"] or 0) <= self._server_s():
            return self.TRADE_RETCODE_INVALID_EXPIRATION
        if action == self.TRADE_ACTION_DEAL:
            buy = request["type"] == self.ORDER_TYPE_BUY
            price = s.ask if buy else s.bid
            if not price:
                return self.TRADE_RETCODE_PRICE_OFF
            closing = self._closing_volume(request, s.name, buy)
            if volume > closing + 1e-12 and self._margin(s.name, volume - closing, price) > self._free_margin():
                return self.TRADE_RETCODE_NO_MONEY
        return 0

    def _sltp(self, request: dict) -> OrderSendResult:
        position = self.positions.get(int(request["position"] or 0))
        if position is None:
            return self._result(request, self.TRADE_RETCODE_POSITION_CLOSED)
        s = self.symbols[position["symbol"]]
        buy = position["type"] == self.POSITION_TYPE_BUY
        sl, tp = float(request["sl"] or 0.0), float(request["tp"] or 0.0)
        gap = s.stops_level * s.point
        market = s.bid if buy else s.ask     # the price the position would close at
        if (sl and (sl > market - gap if buy else sl < market + gap)) or \
                (tp and (tp < market + gap if buy else tp > market - gap)):
            return self._result(request, self.TRADE_RETCODE_INVALID_STOPS)
        if (sl, tp) == (position["sl"], position["tp"]):
            return self._result(request, self.TRADE_RETCODE_NO_CHANGES)
        position.update(sl=sl, tp=tp, time_update=self._server_s(), time_update_msc=self._server_msc())
        return self._result(request, self.TRADE_RETCODE_DONE)

    def _modify(self, request: dict) -> OrderSendResult:
        """TRADE_ACTION_MODIFY: the pending order takes the request's price, stoplimit, sl, tp,
        type_time and expiration, checked as a new pending order's are (stops level)."""
        order = self.orders[int(request["order"])]
        s = self.symbols[order["symbol"]]
        kind, price = order["type"], float(request["price"] or 0.0)
        gap = s.stops_level * s.point
        ok = {self.ORDER_TYPE_BUY_LIMIT: price <= s.ask - gap, self.ORDER_TYPE_SELL_LIMIT: price >= s.bid + gap,
              self.ORDER_TYPE_BUY_STOP: price >= s.ask + gap, self.ORDER_TYPE_SELL_STOP: price <= s.bid - gap,
              self.ORDER_TYPE_BUY_STOP_LIMIT: price >= s.ask + gap,
              self.ORDER_TYPE_SELL_STOP_LIMIT: price <= s.bid - gap}.get(kind, False)
        if not ok or price <= 0:
            return self._result(request, self.TRADE_RETCODE_INVALID_PRICE)
        sl, tp = float(request["sl"] or 0.0), float(request["tp"] or 0.0)
        buy = self._is_buy(kind)
        if (sl and (sl > price - gap if buy else sl < price + gap)) or \
                (tp and (tp < price + gap if buy else tp > price - gap)):
            return self._result(request, self.TRADE_RETCODE_INVALID_STOPS)
        terms = dict(price_open=price, price_stoplimit=float(request["stoplimit"] or 0.0), sl=sl, tp=tp,
                     type_time=int(request["type_time"] or 0), time_expiration=int(request["expiration"] or 0))
        if all(order[k] == v for k, v in terms.items()):
            return self._result(request, self.TRADE_RETCODE_NO_CHANGES)
        order.update(terms)
        return self._result(request, self.TRADE_RETCODE_DONE, order=order["ticket"], volume=order["volume_current"],
                            price=price)

    def _deal(self, request: dict, s: _Symbol, volume: float) -> OrderSendResult:
        buy = request["type"] == self.ORDER_TYPE_BUY
        price = s.ask if buy else s.bid
        requested = float(request["price"] or 0.0)
        if s.trade_exemode in (self.SYMBOL_TRADE_EXECUTION_REQUEST, self.SYMBOL_TRADE_EXECUTION_INSTANT) \
                and requested and abs(requested - price) > int(request["deviation"] or 0) * s.point + 1e-12:
            return self._result(request, self.TRADE_RETCODE_REQUOTE)  # the result carries the new bid/ask
        filled = self._available(s.name, volume)
        filling = request["type_filling"]
        if filled <= 0 or (filled < volume and filling == self.ORDER_FILLING_FOK):
            return self._result(request, self.TRADE_RETCODE_REJECT)
        order = self._new_order(request, s, volume)
        order["price_open"] = price
        deal = self._execute(order, filled, price)
        partial = filled < volume - 1e-12
        if partial and filling == self.ORDER_FILLING_RETURN:  # the rest keeps working (exchange execution)
            order["state"] = self.ORDER_STATE_PARTIAL
            self.orders[order["ticket"]] = order
        else:
            self._finish(order, self.ORDER_STATE_CANCELED if partial else self.ORDER_STATE_FILLED)
        code = self.TRADE_RETCODE_DONE_PARTIAL if partial else self.TRADE_RETCODE_DONE
        return self._result(request, code, deal=deal.ticket, order=order["ticket"], volume=filled, price=price)

    def _available(self, symbol: str, volume: float) -> float:
        """What one execution can fill of `volume` (`liquidity` caps it; unset: everything)."""
        available = self.liquidity.get(symbol)
        return volume if available is None else round(min(volume, available), 8)

    def _immediate_limit(self, request: dict, s: _Symbol, volume: float) -> OrderSendResult:
        """A limit order sent with FOK/IOC filling in Exchange execution: executes at once what it
        can, never rests. (In Market execution a pending order carries FOK/IOC too, as RETURN is
        not allowed there; it rests and the filling applies when it triggers.)"""
        buy = request["type"] == self.ORDER_TYPE_BUY_LIMIT
        limit = float(request["price"])
        market = s.ask if buy else s.bid
        marketable = market and (market <= limit + 1e-12 if buy else market >= limit - 1e-12)
        filled = self._available(s.name, volume) if marketable else 0.0
        if request["type_filling"] == self.ORDER_FILLING_FOK and filled < volume - 1e-12:
            return self._result(request, self.TRADE_RETCODE_REJECT)
        order = self._new_order(request, s, volume)
        order["price_open"] = limit
        deal = self._execute(order, filled, market) if filled > 0 else None
        done = filled >= volume - 1e-12
        self._finish(order, self.ORDER_STATE_FILLED if done else self.ORDER_STATE_CANCELED)
        code = self.TRADE_RETCODE_DONE if done or not filled else self.TRADE_RETCODE_DONE_PARTIAL
        return self._result(request, code, deal=deal.ticket if deal else 0, order=order["ticket"], volume=filled,
                            price=market if filled else 0.0)

    def _pending(self, request: dict, s: _Symbol, volume: float) -> OrderSendResult:
        kind, price = request["type"], float(request["price"])
        if kind in (self.ORDER_TYPE_BUY_LIMIT, self.ORDER_TYPE_SELL_LIMIT) and \
                s.trade_exemode == self.SYMBOL_TRADE_EXECUTION_EXCHANGE and \
                request["type_filling"] in (self.ORDER_FILLING_FOK, self.ORDER_FILLING_IOC):
            return self._immediate_limit(request, s, volume)
        gap = s.stops_level * s.point
        ok = {self.ORDER_TYPE_BUY_LIMIT: price <= s.ask - gap, self.ORDER_TYPE_SELL_LIMIT: price >= s.bid + gap,
              self.ORDER_TYPE_BUY_STOP: price >= s.ask + gap, self.ORDER_TYPE_SELL_STOP: price <= s.bid - gap,
              self.ORDER_TYPE_BUY_STOP_LIMIT: price >= s.ask + gap,
              self.ORDER_TYPE_SELL_STOP_LIMIT: price <= s.bid - gap}.get(kind)
        if ok is None:
            return self._result(request, self.TRADE_RETCODE_INVALID)
        if not ok or price <= 0:
            return self._result(request, self.TRADE_RETCODE_INVALID_PRICE)
        for level in (request["sl"], request["tp"]):
            if level and abs(float(level) - price) < gap:
                return self._result(request, self.TRADE_RETCODE_INVALID_STOPS)
        order = self._new_order(request, s, volume)
        order.update(price_open=price, price_stoplimit=float(request["stoplimit"] or 0.0),
                     state=self.ORDER_STATE_PLACED)
        self.orders[order["ticket"]] = order
        return self._result(request, self.TRADE_RETCODE_PLACED, order=order["ticket"], volume=volume, price=price)

    def _new_order(self, request: dict, s: _Symbol, volume: float) -> dict:
        self._next_ticket += 1
        t = self._server_s()
        return dict(ticket=self._next_ticket, time_setup=t, time_setup_msc=self._server_msc(), time_done=0,
                    time_done_msc=0, time_expiration=int(request["expiration"] or 0), type=request["type"],
                    type_time=request["type_time"], type_filling=request["type_filling"],
                    state=self.ORDER_STATE_STARTED, magic=int(request["magic"]), position_id=0,
                    position_by_id=0, reason=self.ORDER_REASON_EXPERT, volume_initial=volume,
                    volume_current=volume, price_open=0.0, sl=float(request["sl"] or 0.0),
                    tp=float(request["tp"] or 0.0), price_current=s.ask, price_stoplimit=0.0,
                    symbol=s.name, comment=self._stored_comment(str(request["comment"])), external_id="",
                    position=int(request["position"] or 0))

    def _stored_comment(self, comment: str) -> str:
        return self._comment_rewrite(comment) if self._comment_rewrite is not None and comment else comment

    def _finish(self, order: dict, state: int) -> None:
        order.update(state=state, time_done=self._server_s(), time_done_msc=self._server_msc())
        self.history[order["ticket"]] = order

    def _match(self, s: _Symbol) -> None:
        for order in [o for o in self.orders.values() if o["symbol"] == s.name]:
            kind, price = order["type"], order["price_open"]
            if kind == self.ORDER_TYPE_BUY_STOP_LIMIT and s.ask >= price:
                order.update(type=self.ORDER_TYPE_BUY_LIMIT, price_open=order["price_stoplimit"], price_stoplimit=0.0)
            elif kind == self.ORDER_TYPE_SELL_STOP_LIMIT and s.bid <= price:
                order.update(type=self.ORDER_TYPE_SELL_LIMIT, price_open=order["price_stoplimit"], price_stoplimit=0.0)
            kind, price = order["type"], order["price_open"]
            fill_at = {self.ORDER_TYPE_BUY_LIMIT: price if s.ask <= price else None,
                       self.ORDER_TYPE_SELL_LIMIT: price if s.bid >= price else None,
                       self.ORDER_TYPE_BUY_STOP: s.ask if s.ask >= price else None,
                       self.ORDER_TYPE_SELL_STOP: s.bid if s.bid <= price else None,
                       self.ORDER_TYPE_BUY: s.ask, self.ORDER_TYPE_SELL: s.bid}.get(kind)  # a market remainder
            if fill_at is None:
                continue
            volume = self._available(s.name, order["volume_current"])
            filling = order["type_filling"]
            if filling == self.ORDER_FILLING_FOK and volume < order["volume_current"] - 1e-12:
                del self.orders[order["ticket"]]  # a triggered FOK stop that cannot fill whole
                self._finish(order, self.ORDER_STATE_CANCELED)
                continue
            if volume > 0:
                self._fill_pending(order, volume, fill_at)
            if filling == self.ORDER_FILLING_IOC and order["ticket"] in self.orders:
                del self.orders[order["ticket"]]  # a triggered IOC stop: the rest is canceled
                self._finish(order, self.ORDER_STATE_CANCELED)

    def _expire(self, s: _Symbol) -> None:
        """ORDER_TIME_SPECIFIED orders whose expiration (server time) has passed."""
        now = self._server_s()
        for order in [o for o in self.orders.values() if o["symbol"] == s.name]:
            if order["type_time"] == self.ORDER_TIME_SPECIFIED and order["time_expiration"] and \
                    order["time_expiration"] <= now:
                self.expire_order(order["ticket"])

    def _stops(self, s: _Symbol) -> None:
        """Positions whose SL or TP the quote reached are closed by the server, at that quote."""
        for p in [p for p in self.positions.values() if p["symbol"] == s.name]:
            buy = p["type"] == self.POSITION_TYPE_BUY
            price = s.bid if buy else s.ask
            hit_sl = p["sl"] and (price <= p["sl"] if buy else price >= p["sl"])
            hit_tp = p["tp"] and (price >= p["tp"] if buy else price <= p["tp"])
            if not (hit_sl or hit_tp):
                continue
            level = p["sl"] if hit_sl else p["tp"]
            tag = f"[{'sl' if hit_sl else 'tp'} {level:.{s.digits}f}]"
            self._next_ticket += 1
            order = dict(ticket=self._next_ticket, time_setup=self._server_s(), time_setup_msc=self._server_msc(),
                         time_done=0, time_done_msc=0, time_expiration=0,
                         type=self.ORDER_TYPE_SELL if buy else self.ORDER_TYPE_BUY, type_time=self.ORDER_TIME_GTC,
                         type_filling=self.ORDER_FILLING_FOK, state=self.ORDER_STATE_STARTED, magic=p["magic"],
                         position_id=p["ticket"], position_by_id=0,
                         reason=self.ORDER_REASON_SL if hit_sl else self.ORDER_REASON_TP, volume_initial=p["volume"],
                         volume_current=p["volume"], price_open=price, sl=0.0, tp=0.0, price_current=price,
                         price_stoplimit=0.0, symbol=s.name, comment=tag, external_id="", position=p["ticket"])
            self._execute(order, p["volume"], price, reason=self.DEAL_REASON_SL if hit_sl else self.DEAL_REASON_TP)
            order["volume_current"] = 0.0
            self._finish(order, self.ORDER_STATE_FILLED)

    def _fill_pending(self, order: dict, volume: float, price: float) -> None:
        volume = min(volume, order["volume_current"])
        self._execute(order, volume, price)
        if order["volume_current"] <= 1e-12:
            del self.orders[order["ticket"]]
            self._finish(order, self.ORDER_STATE_FILLED)
        else:
            order["state"] = self.ORDER_STATE_PARTIAL

    def _is_buy(self, order_type: int) -> bool:
        return order_type in (self.ORDER_TYPE_BUY, self.ORDER_TYPE_BUY_LIMIT, self.ORDER_TYPE_BUY_STOP,
                              self.ORDER_TYPE_BUY_STOP_LIMIT)

    def _execute(self, order: dict, volume: float, price: float, reason: int | None = None) -> TradeDeal:
        """Book one deal into the positions (netting or hedging) and the deal history, with its
        commission, fee and (closing) swap; the order's remaining volume goes down by it."""
        buy = self._is_buy(order["type"])
        symbol = order["symbol"]
        entry, profit, position_id, swap = self.DEAL_ENTRY_IN, 0.0, 0, 0.0
        if self.margin_mode == self.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING:
            target = self.positions.get(order["position"]) if order["position"] else None
            if target is not None:
                entry, position_id = self.DEAL_ENTRY_OUT, target["ticket"]
                swap = self._swap_of(target, volume)
                profit = self._reduce(target, volume, price)
            else:
                position_id = self._open_position(order, volume, price, buy)
        else:
            current = next((p for p in self.positions.values() if p["symbol"] == symbol), None)
            if current is None:
                position_id = self._open_position(order, volume, price, buy)
            elif (current["type"] == self.POSITION_TYPE_BUY) == buy:
                total = current["volume"] + volume
                current["price_open"] = (current["price_open"] * current["volume"] + price * volume) / total
                current["volume"] = round(total, 8)
                position_id = current["ticket"]
            else:
                position_id = current["ticket"]
                closed = min(volume, current["volume"])
                swap = self._swap_of(current, closed)
                profit = self._reduce(current, closed, price)
                rest = round(volume - closed, 8)
                entry = self.DEAL_ENTRY_OUT
                if rest > 0:
                    entry = self.DEAL_ENTRY_INOUT
                    current.update(type=self.POSITION_TYPE_BUY if buy else self.POSITION_TYPE_SELL,
                                   volume=rest, price_open=price)
                    self.positions[current["ticket"]] = current
        commission = -round(self.commission_per_lot * volume, 2)
        fee = -round(self.fee_per_deal, 2)
        self.balance += round(profit, 2) + commission + fee + swap
        self._next_deal += 1
        deal = TradeDeal(self._next_deal, order["ticket"], self._server_s(), self._server_msc(),
                         self.DEAL_TYPE_BUY if buy else self.DEAL_TYPE_SELL, entry, order["magic"], position_id,
                         self.DEAL_REASON_EXPERT if reason is None else reason, volume, price, commission, swap,
                         round(profit, 2), fee, symbol, order["comment"], "")
        self.deals.append(deal)
        self._deal_visible_after[deal.ticket] = (1 << 62) if self._holding_deals \
            else self._deal_queries + self.deal_lag_queries + 1
        order["position_id"] = position_id
        order["volume_current"] = round(order["volume_current"] - volume, 8)
        return deal

    def _swap_of(self, position: dict, volume: float) -> float:
        """The part of a position's accrued swap that a deal closing `volume` of it realizes."""
        swap = position["swap"] if volume >= position["volume"] - 1e-12 else \
            round(position["swap"] * volume / position["volume"], 2)
        position["swap"] = round(position["swap"] - swap, 2)
        return swap

    def _open_position(self, order: dict, volume: float, price: float, buy: bool) -> int:
        ticket = order["ticket"]
        while ticket in self.positions:
            ticket += 1_000_000
        self.positions[ticket] = dict(
            ticket=ticket, time=self._server_s(), time_msc=self._server_msc(), time_update=self._server_s(),
            time_update_msc=self._server_msc(), type=self.POSITION_TYPE_BUY if buy else self.POSITION_TYPE_SELL,
            magic=order["magic"], identifier=ticket, reason=self.POSITION_REASON_EXPERT, volume=volume,
            price_open=price, sl=order["sl"], tp=order["tp"], price_current=price, swap=0.0, profit=0.0,
            symbol=order["symbol"], comment=order["comment"], external_id="")
        return ticket

    def _reduce(self, position: dict, volume: float, price: float) -> float:
        sign = 1 if position["type"] == self.POSITION_TYPE_BUY else -1
        size = self.symbols[position["symbol"]].contract_size
        profit = (price - position["price_open"]) * volume * size * sign
        position["volume"] = round(position["volume"] - volume, 8)
        if position["volume"] <= 1e-12:
            del self.positions[position["ticket"]]
        return profit

    def _closing_volume(self, request: dict, symbol: str, buy: bool) -> float:
        if self.margin_mode == self.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING:
            p = self.positions.get(int(request["position"] or 0))
            return p["volume"] if p else 0.0
        p = next((p for p in self.positions.values() if p["symbol"] == symbol), None)
        opposite = p is not None and (p["type"] == self.POSITION_TYPE_BUY) != buy
        return p["volume"] if opposite else 0.0

    def _margin(self, symbol: str, volume: float, price: float) -> float:
        return volume * self.symbols[symbol].contract_size * price / self.leverage

    def _free_margin(self) -> float:
        account = self.account_info()
        return account.margin_free if account else 0.0

    def _floating(self, p: dict) -> float:
        s = self.symbols[p["symbol"]]
        buy = p["type"] == self.POSITION_TYPE_BUY
        current = s.bid if buy else s.ask
        return (current - p["price_open"]) * p["volume"] * s.contract_size * (1 if buy else -1)

    def utc_offset_s(self, utc_msc: int | None = None) -> int:
        """The server zone's offset from UTC at a moment (now by default)."""
        if self.server_tz is None:
            return self.server_offset_s
        moment = datetime.fromtimestamp((self.now_msc if utc_msc is None else utc_msc) / 1000, tz=self.server_tz)
        offset = moment.utcoffset()
        assert offset is not None
        return int(offset.total_seconds())

    def _server_msc(self) -> int:
        return self.now_msc + self.utc_offset_s() * 1000

    def _server_s(self) -> int:
        return self._server_msc() // 1000


_RETCODE_TEXT = {10008: "Order placed", 10009: "Request executed", 10010: "Request executed partially",
                 10004: "Requote", 10006: "Request rejected", 10014: "Invalid volume", 10015: "Invalid price",
                 10016: "Invalid stops", 10018: "Market closed", 10019: "No money", 10024: "Too many requests",
                 10022: "Invalid expiration", 10025: "No changes", 10030: "Unsupported filling mode",
                 10036: "Position already closed", 10013: "Invalid request", 10035: "Invalid order"}


def _request(request: dict) -> TradeRequest:
    values = dict(_TRADE_REQUEST_DEFAULTS) | {k: v for k, v in request.items() if k in TradeRequest._fields}
    return TradeRequest(**values)


def _order_tuple(order: dict) -> TradeOrder:
    return TradeOrder(**{f: order[f] for f in TradeOrder._fields})


def _in_group(name: str, group: str) -> bool:
    from fnmatch import fnmatchcase
    result = False
    for part in group.split(","):
        part = part.strip()
        if part.startswith("!") and fnmatchcase(name, part[1:]):
            return False
        if fnmatchcase(name, part):
            result = True
    return result


def _match(row: dict, symbol: str | None, group: str | None, ticket: int | None, key: str) -> bool:
    if ticket is not None:
        return row[key] == ticket
    if symbol is not None:
        return row["symbol"] == symbol
    return group is None or _in_group(row["symbol"], group)


def _serialised(method: Callable[..., Any]) -> Callable[..., Any]:
    def call(self: FakeMT5, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)
    call.__name__, call.__doc__ = method.__name__, method.__doc__
    return call


# The module is one terminal: every call is serialised (the adapter holds its own lock too, but a
# test's thread moves the market while a bot's thread polls).
for _name in ("initialize", "login", "shutdown", "version", "last_error", "terminal_info", "account_info",
              "symbols_total", "symbols_get", "symbol_select", "symbol_info", "symbol_info_tick", "copy_ticks_from",
              "copy_ticks_range", "copy_rates_range", "orders_total", "orders_get", "positions_total",
              "positions_get", "history_orders_total", "history_orders_get", "history_deals_total",
              "history_deals_get", "order_calc_margin", "order_check", "order_send", "disconnect", "restore",
              "market_open", "expire_order", "hold_deals", "release_deals", "fail_next", "lose_next_answer"):
    setattr(FakeMT5, _name, _serialised(getattr(FakeMT5, _name)))
