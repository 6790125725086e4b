"""MetaTrader 5 venue facts in domain terms: retcodes to reasons, filling modes, client ids,
order types, volumes and prices. Pure functions; the adapter does the I/O.

Client order ids. MT5 orders have no client id field. An order carries two free fields: `magic`
(an integer an Expert Advisor uses to recognise its own orders) and `comment` (at most 31
characters; a longer one makes order_send fail). The mapping:
- `magic` = the adapter's magic number (one per engine account; default TICKBRIDGE_MAGIC), so
  orders placed by hand or by other EAs are told apart from ours;
- `comment` = the client order id itself when it fits (31 printable ASCII characters, e.g. the
  OMS's `<bot>-<sequence>`), else `#` + 30 characters of its SHA-256 (base32). The hash is
  deterministic, so after a restart `order_status(client_id)` still finds the order by computing
  the comment again; only an *open-orders listing* cannot turn a hashed comment back into the id
  (it reports the comment, which is unique per id).
- An order with another magic, or ours with an empty comment, is external: its client id is
  `MT5-<ticket>`.
Deals are tied to their order by ticket (`deal.order`), never by the deal's comment, which the
server may rewrite (e.g. "[sl 1.0712]").
"""

from __future__ import annotations

import base64
import hashlib
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from brokers.base import RejectReason
from engine.orders import OrderSide, OrderState, OrderType

TICKBRIDGE_MAGIC = 7_770_301
COMMENT_MAX = 31
EXTERNAL_PREFIX = "MT5-"

# MetaTrader-specific reasons, kept under these names for the mapping tables below.
INVALID_PRICE = RejectReason.INVALID_PRICE
INVALID_STOPS = RejectReason.INVALID_STOPS
TRADE_DISABLED = RejectReason.TRADE_DISABLED
PRICE_CHANGED = RejectReason.PRICE_CHANGED

# Constants of the module, by name: an mt5linux bridge carries them on an instance, and one
# (10046 HEDGE_PROHIBITED) exists in MQL5 but not in the Python module.
RETCODE_PLACED, RETCODE_DONE, RETCODE_DONE_PARTIAL = 10008, 10009, 10010
SUCCESS_RETCODES = frozenset({RETCODE_PLACED, RETCODE_DONE, RETCODE_DONE_PARTIAL})
RETCODE_TIMEOUT = 10012
# The request provably did not execute and may be sent again (with a fresh price).
RETRYABLE_RETCODES = frozenset({10004, 10020, 10021, 10024, 10031})

RETCODE_REASONS: dict[int, str] = {
    10004: PRICE_CHANGED,                        # REQUOTE
    10006: RejectReason.INVALID_ORDER,           # REJECT
    10007: RejectReason.INVALID_ORDER,           # CANCEL (by the dealer)
    10011: RejectReason.VENUE_ERROR,             # ERROR
    10012: RejectReason.TIMEOUT,                 # TIMEOUT
    10013: RejectReason.INVALID_ORDER,           # INVALID
    10014: RejectReason.QTY_OFF_GRID,            # INVALID_VOLUME
    10015: INVALID_PRICE,                        # INVALID_PRICE
    10016: INVALID_STOPS,                        # INVALID_STOPS
    10017: TRADE_DISABLED,                       # TRADE_DISABLED
    10018: RejectReason.MARKET_CLOSED,           # MARKET_CLOSED
    10019: RejectReason.INSUFFICIENT_FUNDS,      # NO_MONEY
    10020: PRICE_CHANGED,                        # PRICE_CHANGED
    10021: RejectReason.NO_LIQUIDITY,            # PRICE_OFF: no quotes
    10022: RejectReason.INVALID_ORDER,           # INVALID_EXPIRATION
    10023: RejectReason.INVALID_ORDER,           # ORDER_CHANGED
    10024: RejectReason.RATE_LIMITED,            # TOO_MANY_REQUESTS
    10025: RejectReason.INVALID_ORDER,           # NO_CHANGES
    10026: TRADE_DISABLED,                       # SERVER_DISABLES_AT
    10027: TRADE_DISABLED,                       # CLIENT_DISABLES_AT
    10028: RejectReason.INVALID_ORDER,           # LOCKED
    10029: RejectReason.INVALID_ORDER,           # FROZEN
    10030: RejectReason.UNSUPPORTED,             # INVALID_FILL
    10031: RejectReason.VENUE_ERROR,             # CONNECTION
    10032: RejectReason.UNSUPPORTED,             # ONLY_REAL
    10033: RejectReason.INVALID_ORDER,           # LIMIT_ORDERS
    10034: RejectReason.QTY_ABOVE_MAX,           # LIMIT_VOLUME
    10035: RejectReason.INVALID_ORDER,           # INVALID_ORDER
    10036: RejectReason.INVALID_ORDER,           # POSITION_CLOSED
    10038: RejectReason.QTY_ABOVE_MAX,           # INVALID_CLOSE_VOLUME
    10039: RejectReason.INVALID_ORDER,           # CLOSE_ORDER_EXIST
    10040: RejectReason.INVALID_ORDER,           # LIMIT_POSITIONS
    10041: RejectReason.INVALID_ORDER,           # REJECT_CANCEL
    10042: RejectReason.UNSUPPORTED,             # LONG_ONLY
    10043: RejectReason.UNSUPPORTED,             # SHORT_ONLY
    10044: RejectReason.UNSUPPORTED,             # CLOSE_ONLY
    10045: RejectReason.UNSUPPORTED,             # FIFO_CLOSE
    10046: RejectReason.UNSUPPORTED,             # HEDGE_PROHIBITED (MQL5 only)
}

# last_error() codes after a call that returned None.
TRANSPORT_ERRORS = frozenset({-10000, -10001, -10002, -10003, -10004, -10005})
LAST_ERROR_REASONS: dict[int, str] = {
    -2: RejectReason.INVALID_ORDER, -4: RejectReason.UNKNOWN_SYMBOL, -6: RejectReason.AUTH_FAILED,
    -7: RejectReason.UNSUPPORTED, -8: TRADE_DISABLED,
}


def reason_for_retcode(retcode: int) -> str:
    return str(RETCODE_REASONS.get(retcode, RejectReason.VENUE_ERROR))


def reason_for_last_error(code: int) -> str:
    if code in TRANSPORT_ERRORS:
        return str(RejectReason.TIMEOUT)
    return str(LAST_ERROR_REASONS.get(code, RejectReason.VENUE_ERROR))


# -- client ids ----------------------------------------------------------------------------------
def comment_for(client_order_id: str) -> str:
    """The order comment that carries a client order id (see the module docstring)."""
    if len(client_order_id) <= COMMENT_MAX and client_order_id.isascii() and client_order_id.isprintable() \
            and not client_order_id.startswith("#"):
        return client_order_id
    digest = base64.b32encode(hashlib.sha256(client_order_id.encode()).digest()).decode().lower()
    return "#" + digest[:COMMENT_MAX - 1]


def client_id_of(magic: int, comment: str, ticket: int, our_magic: int, known: dict[str, str]) -> str:
    """The client order id an MT5 order stands for. `known` maps comment -> client id for the
    ids this adapter has seen (needed for hashed comments)."""
    if magic == our_magic and comment:
        return known.get(comment, comment)
    return f"{EXTERNAL_PREFIX}{ticket}"


# -- filling -------------------------------------------------------------------------------------
FILLING_FOK, FILLING_IOC, FILLING_RETURN = 0, 1, 2
SYMBOL_FILLING_FOK, SYMBOL_FILLING_IOC = 1, 2      # bits of symbol_info().filling_mode
EXECUTION_MARKET = 2                               # SYMBOL_TRADE_EXECUTION_MARKET


def filling_for(mask: int, exemode: int, pending: bool) -> int:
    """The type_filling a request must carry. A market deal takes FOK if the symbol allows it,
    else IOC, else RETURN (BROKER_SDKS.md; a wrong one is retcode 10030). A pending order rests
    in the book, so it takes RETURN (a partial fill keeps the rest working) unless the symbol is
    in Market execution, where RETURN is not allowed and the mask decides as for a deal."""
    if pending and exemode != EXECUTION_MARKET:
        return FILLING_RETURN
    if mask & SYMBOL_FILLING_FOK:
        return FILLING_FOK
    if mask & SYMBOL_FILLING_IOC:
        return FILLING_IOC
    return FILLING_RETURN


# -- order types -----------------------------------------------------------------------------------
BUY, SELL, BUY_LIMIT, SELL_LIMIT, BUY_STOP, SELL_STOP, BUY_STOP_LIMIT, SELL_STOP_LIMIT = range(8)
_TO_MT5 = {(OrderSide.BUY, OrderType.MARKET): BUY, (OrderSide.SELL, OrderType.MARKET): SELL,
           (OrderSide.BUY, OrderType.LIMIT): BUY_LIMIT, (OrderSide.SELL, OrderType.LIMIT): SELL_LIMIT,
           (OrderSide.BUY, OrderType.STOP): BUY_STOP, (OrderSide.SELL, OrderType.STOP): SELL_STOP,
           (OrderSide.BUY, OrderType.STOP_LIMIT): BUY_STOP_LIMIT,
           (OrderSide.SELL, OrderType.STOP_LIMIT): SELL_STOP_LIMIT}
_FROM_MT5 = {v: k for k, v in _TO_MT5.items()}


def mt5_order_type(side: OrderSide, kind: OrderType) -> int:
    return _TO_MT5[(side, kind)]


def domain_order_type(mt5_type: int) -> tuple[OrderSide, OrderType]:
    return _FROM_MT5[mt5_type]


def prices_of(mt5_type: int, price_open: float, price_stoplimit: float,
              price_dp: int) -> tuple[Decimal | None, Decimal | None]:
    """(limit_price, stop_price) of an MT5 order."""
    kind = domain_order_type(mt5_type)[1]
    price = to_decimal(price_open, price_dp)
    if kind is OrderType.LIMIT:
        return price, None
    if kind is OrderType.STOP:
        return None, price
    if kind is OrderType.STOP_LIMIT:
        return to_decimal(price_stoplimit, price_dp), price
    return None, None


ORDER_STATE_CANCELED, ORDER_STATE_REJECTED, ORDER_STATE_EXPIRED = 2, 5, 6


def final_state(mt5_states: list[int], qty: Decimal, filled: Decimal) -> OrderState:
    """The domain state of a client order whose MT5 orders are all finished."""
    if qty > 0 and filled >= qty:
        return OrderState.FILLED
    if ORDER_STATE_REJECTED in mt5_states and not filled:
        return OrderState.REJECTED
    if ORDER_STATE_EXPIRED in mt5_states:
        return OrderState.EXPIRED
    if ORDER_STATE_CANCELED in mt5_states or ORDER_STATE_REJECTED in mt5_states:
        return OrderState.CANCELED
    return OrderState.FILLED if filled else OrderState.CANCELED


# -- numbers -------------------------------------------------------------------------------------
def to_decimal(value: float, dp: int) -> Decimal:
    """A float from the terminal as the exact decimal it stands for at `dp` places."""
    return Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-dp))


def float_increment(value: float) -> Decimal:
    """An increment the terminal gives as a float (0.01, 1e-05) as an exact decimal."""
    return Decimal(repr(float(value))).normalize()


def floor_to_increment(qty: Decimal, step: Decimal) -> Decimal:
    return (qty / step).to_integral_value(rounding=ROUND_FLOOR) * step


def field(obj: Any, name: str, default: Any = None) -> Any:
    """A field of a terminal result by name (named tuple, RPyC proxy or dict)."""
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def as_dict(obj: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    return {name: field(obj, name) for name in fields}
